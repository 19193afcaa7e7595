"""Feature layout of the transformed data, in the reference `description` order (spec 1.2).

Kinds: `spr` categorical id [B], `seq` padded id list [B, L] (0 = padding), `ctn` float [B].
The item-ID field is what cold-start methods read and overwrite.
"""
import dataclasses
import json
from typing import Any, Dict, Sequence, Tuple

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

_KINDS = {"categorical": "spr", "multi": "seq", "text": "seq", "numeric": "ctn", "timestamp": "ctn"}
DEFAULT_SEQ_LEN = 8


def from_dataset(config: Dict[str, Any], row_features: Sequence[str] = ("count",)) -> FeatureConfig:
    """The model's features of a data set config (`DatasetConfig.to_dict()`): its fields in
    order, then the numeric `row_features` the protocol's split adds (item_frequency: `count`;
    leave it out of side_info where the protocol adds none)."""
    fields = []
    for f in config["fields"]:
        kind = _KINDS[f["type"]]
        fields.append(Field(f["name"], kind, (f.get("max_len") or DEFAULT_SEQ_LEN) if kind == "seq" else 0))
    fields += [Field(name, "ctn") for name in row_features]
    names = {f.name for f in fields}
    return FeatureConfig(tuple(fields), tuple(n for n in config["side_info"] if n in names))


def to_json(config: FeatureConfig) -> str:
    return json.dumps(dataclasses.asdict(config), sort_keys=True)


def from_json(text: str) -> FeatureConfig:
    raw = json.loads(text)
    return FeatureConfig(tuple(Field(**f) for f in raw["fields"]), tuple(raw["item_side"]))
