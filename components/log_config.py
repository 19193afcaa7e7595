"""Click-log description (YAML) and row parsing: pure functions, no Beam.

A data set is a log table (one row per impression or interaction), optional side tables joined on
a key, and a list of fields. Every built-in data set is such a config
(`schemas/<name>/dataset.yaml`); a user's own log needs only a YAML file of the same form:

    name: my-log
    log: {files: [clicks-*.csv], format: csv, header: true}
    joins:                          # optional side tables, looked up by key
      - {files: [items.tsv], format: tsv, header: true, key: item, log_key: item_id, required: true}
    fields:                         # role: user | item | context; type: see FIELD_TYPES
      - {name: user_id, column: user, type: categorical, role: user}
      - {name: item_id, column: item_id, type: categorical, role: item}
      - {name: tags, column: tags, type: multi, sep: "|", max_len: 8, role: item}
      - {name: price, column: price, type: numeric, role: item, default: 0}
      - {name: timestamp, column: ts, type: timestamp, format: "%Y-%m-%d %H:%M:%S"}
    label: {column: clicked, positive: ["1"], negative: ["0"]}   # or {column: r, threshold: 4, range: [1, 5]}
    side_info: [item_id, tags, count]    # default: every item field, then count
    split: {N: 200, K: 20}

`user_id`, `item_id` and `timestamp` are required field names. A row that cannot be parsed raises
`BadRow` with one of REASONS; the reader quarantines it with its file and line number.
"""
import calendar
import dataclasses
import math
import re
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

FORMATS = ("csv", "tsv", "delimited", "parquet", "tfrecord", "sequences", "json_map")
FIELD_TYPES = ("categorical", "multi", "text", "numeric", "timestamp")
ROLES = ("user", "item", "context")
REASONS = ("bad_encoding", "field_count", "empty_id", "bad_number", "bad_timestamp",
           "bad_label", "unknown_key")
REQUIRED_FIELDS = ("user_id", "item_id", "timestamp")
SAMPLING = ("popularity", "uniform", "matched")  # how implicit logs' negative items are drawn
LINE_COLUMN = "_line"  # pseudo-column: the row's line number in its file (for logs without time)
_WORD = re.compile(r"\w+")


class ConfigError(ValueError):
    """The config is wrong or does not match the input files."""


class BadRow(ValueError):
    """A row that cannot become an example; `reason` is one of REASONS."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclasses.dataclass(frozen=True)
class TableSpec:
    files: Tuple[str, ...]  # glob patterns, relative to the input folder
    format: str = "csv"
    sep: str = ","
    header: bool = True  # first line names the columns
    columns: Tuple[str, ...] = ()  # column names when there is no header (or to override it)
    encoding: str = "utf-8"
    key: str = ""  # joins only: the table's key column
    log_key: str = ""  # joins only: the log column looked up
    required: bool = True  # joins only: a log row whose key is absent is quarantined


@dataclasses.dataclass(frozen=True)
class FieldSpec:
    name: str
    column: str
    type: str = "categorical"
    role: str = "context"
    sep: str = "|"  # multi
    max_len: int = 0  # multi/text: tokens kept by the model (0: 8)
    extract: str = ""  # regex; the value becomes its first group ("" when it does not match)
    strip: str = ""  # regex; matches are removed from the value
    format: str = "unix"  # timestamp: unix seconds, or a strptime format (UTC)
    default: Optional[float] = None  # numeric: value of an empty cell (else the row is bad)
    required: bool = False  # categorical: an empty value makes the row bad

    @property
    def seq_len(self) -> int:
        return self.max_len or 8


@dataclasses.dataclass(frozen=True)
class LabelSpec:
    column: str = ""
    positive: Tuple[str, ...] = ()  # categorical rule: these values are 1 ...
    negative: Tuple[str, ...] = ()  # ... these 0, anything else is a bad row
    threshold: Optional[float] = None  # numeric rule: value >= threshold is 1
    range: Tuple[float, ...] = ()  # numeric rule: [lo, hi] of valid values
    implicit: bool = False  # every row is a positive; negatives are sampled


@dataclasses.dataclass(frozen=True)
class DatasetConfig:
    name: str
    log: TableSpec
    fields: Tuple[FieldSpec, ...]
    label: LabelSpec
    joins: Tuple[TableSpec, ...] = ()
    side_info: Tuple[str, ...] = ()
    N: int = 200
    K: int = 20
    negatives_per_positive: int = 0  # implicit logs: sampled non-interacted items per positive
    negative_seed: int = 0
    negative_sampling: str = "popularity"  # or "uniform", or "matched" (see log_reader)

    def field(self, name: str) -> FieldSpec:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


def _table(raw: Dict[str, Any], where: str, join: bool) -> TableSpec:
    allowed = {f.name for f in dataclasses.fields(TableSpec)}
    _no_unknown(raw, allowed, where)
    files = raw.get("files")
    if isinstance(files, str):
        files = [files]
    if not files:
        raise ConfigError(f"{where}: `files` (glob patterns) is required")
    fmt = raw.get("format", "csv")
    if fmt not in FORMATS:
        raise ConfigError(f"{where}: format {fmt!r} is not one of {', '.join(FORMATS)}")
    sep = raw.get("sep", {"tsv": "\t", "sequences": " "}.get(fmt, ","))
    if fmt == "csv" and len(sep) != 1:
        raise ConfigError(f"{where}: csv needs a one-character sep; use format: delimited for {sep!r}")
    spec = TableSpec(files=tuple(files), format=fmt, sep=sep,
                     header=bool(raw.get("header", fmt in ("csv", "tsv", "delimited"))),
                     columns=tuple(raw.get("columns", ())), encoding=raw.get("encoding", "utf-8"),
                     key=raw.get("key", ""), log_key=raw.get("log_key", ""),
                     required=bool(raw.get("required", True)))
    if fmt in ("sequences", "json_map") and len(spec.columns) != 2:
        raise ConfigError(f"{where}: format {fmt} needs `columns: [key, value]`")
    if join and not (spec.key and spec.log_key):
        raise ConfigError(f"{where}: a join needs `key` (its column) and `log_key` (the log column)")
    if not spec.header and not spec.columns and fmt not in ("parquet", "tfrecord"):
        raise ConfigError(f"{where}: without a header line, `columns` must name the columns")
    return spec


def _no_unknown(raw: Dict[str, Any], allowed, where: str) -> None:
    unknown = sorted(set(raw) - set(allowed))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")


def from_dict(raw: Dict[str, Any]) -> DatasetConfig:
    """Validates a config (as loaded from YAML) and returns it; raises ConfigError saying why."""
    _no_unknown(raw, ("name", "log", "joins", "fields", "label", "side_info", "split",
                      "negatives"), "config")
    for key in ("name", "log", "fields", "label"):
        if key not in raw:
            raise ConfigError(f"config: `{key}` is required")
    log = _table(raw["log"], "log", join=False)
    joins = tuple(_table(j, f"joins[{i}]", join=True) for i, j in enumerate(raw.get("joins", [])))
    allowed = {f.name for f in dataclasses.fields(FieldSpec)}
    fields = []
    for i, f in enumerate(raw["fields"]):
        _no_unknown(f, allowed, f"fields[{i}]")
        if "name" not in f:
            raise ConfigError(f"fields[{i}]: `name` is required")
        spec = FieldSpec(**{"column": f["name"], **f})
        if spec.type not in FIELD_TYPES:
            raise ConfigError(f"field {spec.name}: type {spec.type!r} is not one of {FIELD_TYPES}")
        if spec.role not in ROLES:
            raise ConfigError(f"field {spec.name}: role {spec.role!r} is not one of {ROLES}")
        if spec.name in ("user_id", "item_id"):
            spec = dataclasses.replace(spec, type="categorical", required=True,
                                       role=spec.name.split("_")[0])
        fields.append(spec)
    names = [f.name for f in fields]
    if len(set(names)) != len(names):
        raise ConfigError(f"fields: duplicate names in {names}")
    for name in REQUIRED_FIELDS:
        if name not in names:
            raise ConfigError(f"fields: a field named {name!r} is required")
    if fields[names.index("timestamp")].type != "timestamp":
        raise ConfigError("field timestamp: type must be timestamp")
    for reserved in ("label", "count"):
        if reserved in names:
            raise ConfigError(f"fields: {reserved!r} is reserved (the label / the item's count)")
    label_raw = dict(raw["label"])
    _no_unknown(label_raw, {f.name for f in dataclasses.fields(LabelSpec)}, "label")
    label = LabelSpec(**{k: tuple(str(x) for x in v) if k in ("positive", "negative") else
                         tuple(v) if k == "range" else v for k, v in label_raw.items()})
    rules = [bool(label.positive), label.threshold is not None, label.implicit]
    if sum(rules) != 1:
        raise ConfigError("label: give exactly one rule: `positive` (+ `negative`) values, "
                          "a numeric `threshold`, or `implicit: true`")
    if not label.implicit and not label.column:
        raise ConfigError("label: `column` is required")
    negatives = raw.get("negatives", {})
    _no_unknown(negatives, ("per_positive", "seed", "sampling"), "negatives")
    if negatives.get("sampling", "popularity") not in SAMPLING:
        raise ConfigError(f"negatives: sampling must be one of {SAMPLING}")
    if label.implicit and not negatives.get("per_positive"):
        raise ConfigError("label: an implicit log needs `negatives: {per_positive: n}`")
    split = raw.get("split", {})
    _no_unknown(split, ("N", "K"), "split")
    item_fields = [f.name for f in fields if f.role == "item"]
    side_info = tuple(raw.get("side_info") or [*item_fields, "count"])
    for name in side_info:
        if name != "count" and name not in item_fields:
            raise ConfigError(f"side_info: {name!r} is not a field with role item")
    return DatasetConfig(name=str(raw["name"]), log=log, fields=tuple(fields), label=label,
                         joins=joins, side_info=side_info, N=int(split.get("N", 200)),
                         K=int(split.get("K", 20)),
                         negatives_per_positive=int(negatives.get("per_positive", 0)),
                         negative_seed=int(negatives.get("seed", 0)),
                         negative_sampling=negatives.get("sampling", "popularity"))


def load(path: str) -> DatasetConfig:
    import yaml  # pylint: disable=import-outside-toplevel
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    with tf.io.gfile.GFile(path) as f:
        try:
            raw = yaml.safe_load(f)
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    try:
        return from_dict(raw)
    except (TypeError, ConfigError) as err:
        raise ConfigError(f"{path}: {err}") from None


def from_json(text: str) -> DatasetConfig:
    """Inverse of `dataclasses.asdict` + json (how components receive the config)."""
    import json  # pylint: disable=import-outside-toplevel
    raw = json.loads(text)
    tables = lambda t: TableSpec(**{**t, "files": tuple(t["files"]), "columns": tuple(t["columns"])})  # noqa: E731
    return DatasetConfig(**{
        **raw, "log": tables(raw["log"]), "joins": tuple(tables(j) for j in raw["joins"]),
        "fields": tuple(FieldSpec(**f) for f in raw["fields"]),
        "label": LabelSpec(**{**raw["label"], "positive": tuple(raw["label"]["positive"]),
                              "negative": tuple(raw["label"]["negative"]),
                              "range": tuple(raw["label"]["range"])}),
        "side_info": tuple(raw["side_info"])})


# ----------------------------------------------------------------------------- row parsing

def referenced_columns(config: DatasetConfig) -> List[str]:
    """Columns of the (joined) row that fields and the label read."""
    cols = [f.column for f in config.fields if f.column != LINE_COLUMN]
    if config.label.column:
        cols.append(config.label.column)
    return cols


def decode(raw: bytes, encoding: str) -> str:
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as err:
        raise BadRow("bad_encoding", f"not {encoding} at byte {err.start}") from None


def split_line(line: str, table: TableSpec, columns: Sequence[str]) -> Dict[str, str]:
    """One text line -> {column: value}; the field count must match the columns."""
    line = line.rstrip("\r\n")
    if table.format == "csv":
        import csv  # pylint: disable=import-outside-toplevel
        try:
            values = next(csv.reader([line], delimiter=table.sep, strict=True))
        except (csv.Error, StopIteration) as err:
            raise BadRow("field_count", f"not a CSV row: {err}") from None
    else:
        values = line.split(table.sep)
    if len(values) != len(columns):
        raise BadRow("field_count", f"expected {len(columns)} fields separated by "
                                    f"{table.sep!r}, got {len(values)}")
    return dict(zip(columns, values))


def _finite(value: Any, name: str, reason: str, what: str) -> float:
    """float(value), or BadRow(reason) saying that `name` is not `what` / not finite."""
    try:
        number = float(value)
    except ValueError:
        raise BadRow(reason, f"{name} is not {what}: {str(value)[:40]!r}") from None
    if not math.isfinite(number):
        raise BadRow(reason, f"{name} is not finite: {value!r}")
    return number


def _number(value: Any, field: FieldSpec) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _finite(value, field.name, "bad_number", "a number")
    text = str(value).strip()
    if not text:
        if field.default is None:
            raise BadRow("bad_number", f"{field.name} is empty")
        return float(field.default)
    return _finite(text, field.name, "bad_number", "a number")


def _timestamp(value: Any, field: FieldSpec) -> int:
    text = str(value).strip()
    if field.format == "unix":
        return int(_finite(text, field.name, "bad_timestamp", "a unix time"))
    try:
        return calendar.timegm(time.strptime(text, field.format))
    except ValueError:
        raise BadRow("bad_timestamp",
                     f"{field.name} {text[:40]!r} does not match {field.format!r}") from None


def _text(value: Any, field: FieldSpec) -> str:
    text = "" if value is None else str(value)
    if field.strip:
        text = re.sub(field.strip, "", text)
    if field.extract:
        match = re.search(field.extract, text)
        text = match.group(1) if match else ""
    return text.strip()


def parse_field(value: Any, field: FieldSpec):
    """A cell -> str (categorical), [str] (multi, text), float (numeric) or int (timestamp)."""
    if field.type == "numeric":
        return _number(value, field)
    if field.type == "timestamp":
        return _timestamp(value, field)
    if field.type == "multi":
        tokens = value if isinstance(value, (list, tuple)) else _text(value, field).split(field.sep)
        return [str(t).strip() for t in tokens if str(t).strip()]
    if field.type == "text":
        return _WORD.findall(_text(value, field))
    text = _text(value, field)
    if field.required and not text:
        raise BadRow("empty_id", f"{field.name} is empty")
    return text


def parse_label(row: Dict[str, Any], label: LabelSpec) -> int:
    if label.implicit:
        return 1
    value = str(row[label.column]).strip()
    if label.positive:
        if value in label.positive:
            return 1
        if not label.negative or value in label.negative:
            return 0
        raise BadRow("bad_label", f"{label.column}={value[:40]!r} is not one of "
                                  f"{[*label.positive, *label.negative]}")
    try:
        number = float(value)
    except ValueError:
        raise BadRow("bad_label", f"{label.column} is not a number: {value[:40]!r}") from None
    if label.range and not label.range[0] <= number <= label.range[1]:
        raise BadRow("bad_label", f"{label.column}={value} outside {list(label.range)}")
    return int(number >= label.threshold)


def parse_row(row: Dict[str, Any], config: DatasetConfig) -> Dict[str, Any]:
    """A joined row {column: cell} -> example features {field name: value, label: 0/1}."""
    out = {f.name: parse_field(row[f.column], f) for f in config.fields}
    out["label"] = parse_label(row, config.label)
    return out


def join(row: Dict[str, Any], tables: Sequence[Dict[str, Dict[str, Any]]],
         config: DatasetConfig) -> Dict[str, Any]:
    """Adds the side tables' columns to a log row (absent optional keys give empty cells)."""
    joined = dict(row)
    for spec, table in zip(config.joins, tables):
        key = str(row[spec.log_key]).strip()
        if not key and spec.required:
            raise BadRow("empty_id", f"{spec.log_key} is empty")
        side = table.get(key)
        if side is None:
            if spec.required:
                raise BadRow("unknown_key", f"{spec.log_key}={key[:40]!r} is not in {spec.files[0]}")
            side = {}
        for column in spec.columns:  # known: the reader resolves every table's columns first
            if column != spec.key:
                joined.setdefault(column, side.get(column, ""))
    return joined
