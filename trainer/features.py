"""Feature layout of the transformed data, in the reference `description` order (spec 1.2).

Kinds: `spr` categorical id [B], `seq` padded id list [B, L] (0 = padding), `ctn` float [B].
The item-ID field is what cold-start methods read and overwrite.
"""
import dataclasses
from typing import Tuple

LABEL = "label"
ITEM_ID = "item_id"
USER_ID = "user_id"


@dataclasses.dataclass(frozen=True)
class Field:
    name: str
    kind: str  # "spr" | "seq" | "ctn"
    seq_len: int = 0


@dataclasses.dataclass(frozen=True)
class FeatureConfig:
    fields: Tuple[Field, ...]
    item_side: Tuple[str, ...]  # item features used as side information, in this order

    def by_kind(self, kind: str) -> Tuple[Field, ...]:
        return tuple(f for f in self.fields if f.kind == kind)

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)


MOVIELENS = FeatureConfig(
    fields=(
        Field("user_id", "spr"), Field("gender", "spr"), Field("age", "spr"),
        Field("occupation", "spr"), Field("zip_code", "spr"), Field("item_id", "spr"),
        Field("year", "spr"), Field("title", "seq", 15), Field("genres", "seq", 6),
        Field("timestamp", "ctn"), Field("count", "ctn"),
    ),
    item_side=("item_id", "year", "title", "genres", "count"),
)

FEATURE_CONFIGS = {"movielens": MOVIELENS}
