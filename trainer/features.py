"""Feature layout of the transformed data, in the reference `description` order (spec 1.2).

Kinds: `spr` categorical id [B], `seq` padded id list [B, L] (0 = padding), `ctn` float [B]
(min-max scaled), and the user-history features (data sets with `history:`, components/history.py):
`hist` padded id list [B, L] in the vocabulary of the field `vocab` (index + 1, 0 = padding,
oldest first), `raw` float [B] as it is (`hist_len`). Backbones that do not read histories see
only spr, seq and ctn. The item-ID field is what cold-start methods read and overwrite.
"""
import dataclasses
import json
from typing import Any, Dict, Sequence, Tuple

LABEL = "label"
ITEM_ID = "item_id"
USER_ID = "user_id"
HIST_ITEM_ID = "hist_item_id"
HIST_LEN = "hist_len"


@dataclasses.dataclass(frozen=True)
class Field:
    name: str
    kind: str  # "spr" | "seq" | "ctn" | "hist" | "raw"
    seq_len: int = 0
    vocab: str = ""  # hist: the field whose vocabulary this one shares


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
    left out of side_info where the protocol adds none), then, with `history`, `hist_item_id`,
    `hist_<field>` for each history field, and `hist_len`."""
    fields = []
    for f in config["fields"]:
        kind = _KINDS[f["type"]]
        fields.append(Field(f["name"], kind, (f.get("max_len") or DEFAULT_SEQ_LEN) if kind == "seq" else 0))
    fields += [Field(name, "ctn") for name in row_features]
    history = config.get("history")
    if history:
        for name in (ITEM_ID, *history["fields"]):
            fields.append(Field(f"hist_{name}", "hist", history["length"], vocab=name))
        fields.append(Field(HIST_LEN, "raw"))
    names = {f.name for f in fields}
    return FeatureConfig(tuple(fields), tuple(n for n in config["side_info"] if n in names))


def to_json(config: FeatureConfig) -> str:
    return json.dumps(dataclasses.asdict(config), sort_keys=True)


def from_json(text: str) -> FeatureConfig:
    raw = json.loads(text)
    return FeatureConfig(tuple(Field(**f) for f in raw["fields"]), tuple(raw["item_side"]))
