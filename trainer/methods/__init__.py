"""Cold-start methods: one registry, one small interface (spec section 4).

A method sees the pretrained backbone and a protocol context (trainer/context.py: the
pretraining data, the items to warm up, each stage's adaptation data; never split names) at the
points of the protocol's stages (spec 3.2 for item phases):
- `prepare(backbone, context, config)`: before the first evaluation (e.g. train a generator on the
  pretraining data, write warm embeddings into new items' rows of `backbone.item_table`);
- `after_warm(backbone, stage, context, config)`: after each stage's adaptation.
A method declares the protocols it runs on (`protocols`); another is an error before any work.
The pipeline never special-cases a method: it looks the name up here. A run can hold several
variants of one method under labels `name/variant` (e.g. `csdm/code`), each with its own options.
"""
from typing import Dict, Type

from trainer.methods.aqcl import AQCL, DMR, ICL, DeepMCP, DropoutNetRegulariser
from trainer.methods.base import Base, ColdStartMethod
from trainer.methods.csdm import CSDM
from trainer.methods.cvar import CVAR
from trainer.methods.diffmsr import Diff, DiffMSR, FineTune, Single
from trainer.methods.dropoutnet import DropoutNet
from trainer.methods.emerg import EmerG
from trainer.methods.metae import MetaEmbedding
from trainer.methods.mwuf import MWUF
from trainer.methods.velf import VELF

METHODS: Dict[str, Type[ColdStartMethod]] = {
    cls.name: cls for cls in (Base, DropoutNet, MetaEmbedding, MWUF, CVAR, VELF, CSDM, EmerG,
                              FineTune, Single, Diff, DiffMSR)}
METHODS.update({cls.name: cls for cls in (ICL, AQCL, DeepMCP, DMR, DropoutNetRegulariser)})


def method_class(label: str) -> Type[ColdStartMethod]:
    """The class behind a label `name` or `name/variant`."""
    name = label.split("/", 1)[0]
    if name not in METHODS:
        raise ValueError(f"unknown cold-start method {name!r}; known: {', '.join(sorted(METHODS))}")
    return METHODS[name]


def build(label: str, **options) -> ColdStartMethod:
    return method_class(label)(**options)
