"""Cold-start methods: one registry, one small interface (spec section 4).

A method sees the pretrained backbone and the splits at two points of the protocol (spec 3.2):
- `prepare(backbone, splits)`: before the cold evaluation (train a generator on `base`, write
  warm embeddings into new items' rows of `backbone.item_table`);
- `after_warm(backbone, split, splits)`: after the item-ID fine-tune on each warm split.
The pipeline never special-cases a method: it looks the name up here.
"""
from typing import Dict, Type

from trainer.methods.base import Base, ColdStartMethod

METHODS: Dict[str, Type[ColdStartMethod]] = {Base.name: Base}


def build(name: str, **options) -> ColdStartMethod:
    if name not in METHODS:
        raise ValueError(f"unknown cold-start method {name!r}; known: {', '.join(sorted(METHODS))}")
    return METHODS[name](**options)
