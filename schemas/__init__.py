"""Built-in data sets: one folder each with `dataset.yaml` (how to read the raw files) and
`schema.pbtxt` (the examples after the item split, used through ImportSchemaGen).

The schemas are generated from the configs (`python -m schemas` rewrites them); a test checks
that the checked-in files match, so the two never drift.
"""
import os
from typing import List

HERE = os.path.dirname(os.path.abspath(__file__))


def builtin() -> List[str]:
    return sorted(d for d in os.listdir(HERE) if os.path.exists(os.path.join(HERE, d, "dataset.yaml")))


def config_path(name: str) -> str:
    path = os.path.join(HERE, name, "dataset.yaml")
    if not os.path.exists(path):
        raise FileNotFoundError(f"no built-in data set {name!r}; built in: {', '.join(builtin())}")
    return path


def schema_path(name: str) -> str:
    path = os.path.join(HERE, name, "schema.pbtxt")
    if not os.path.exists(path):
        raise FileNotFoundError(f"no checked-in schema for {name!r} at {path}")
    return path


# The features a protocol's split adds to every row (trainer/protocols: row_features).
ROW_FEATURES = {"count": ("INT", ["  int_domain { min: 1 }"]), "user_group": ("BYTES", [])}


def schema_text(config, row_features=("count",), protocol: str = "item-frequency") -> str:
    """schema.pbtxt of a `log_config.DatasetConfig`'s examples after the protocol's split: one
    entry per field (and `file_field`, when set), then `label` (0/1) and the split's
    `row_features` (item_frequency: `count`, the item's rows, >= 1), then with `history` the
    history features (item ids and fields: at most `length` values; `hist_len` >= 0)."""
    lines = [f"# Schema of the {config.name} examples after the {protocol} split (input of",
             f"# Transform). Generated from dataset.yaml by `python -m schemas`; do not edit."]

    def feature(name, kind, body):
        lines.extend(["feature {", f'  name: "{name}"', f"  type: {kind}", *body, "}"])

    single = ["  presence { min_fraction: 1.0 }", "  shape { dim { size: 1 } }"]
    for field in config.fields:
        if field.type in ("multi", "text"):
            feature(field.name, "BYTES", ["  presence { min_fraction: 1.0 }",
                                          "  value_count { min: 0 }"])
        elif field.type == "numeric":
            feature(field.name, "FLOAT", single)
        else:
            feature(field.name, "INT" if field.type == "timestamp" else "BYTES", single)
    if config.file_field:  # the row's log file (base name), for splits by file
        feature(config.file_field, "BYTES", single)
    feature("label", "INT", ["  int_domain { min: 0 max: 1 is_categorical: true }", *single])
    for name in row_features:
        kind, body = ROW_FEATURES[name]
        feature(name, kind, [*body, *single])
    if config.history:  # components/history.py
        length = config.history.length
        for name in ("item_id", *config.history.fields):
            feature(f"hist_{name}", "BYTES", ["  presence { min_fraction: 1.0 }",
                                              f"  value_count {{ min: 0 max: {length} }}"])
        feature("hist_len", "INT", ["  int_domain { min: 0 }", *single])
    return "\n".join(lines) + "\n"


def main() -> None:
    from components import log_config  # pylint: disable=import-outside-toplevel
    for name in builtin():
        config = log_config.load(config_path(name))
        with open(os.path.join(HERE, name, "schema.pbtxt"), "w") as f:
            f.write(schema_text(config))
        print(f"wrote schemas/{name}/schema.pbtxt")
