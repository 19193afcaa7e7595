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
    history: {length: 50, unit: day}     # optional: user-history features (hist_*)
    dedupe: true                         # drop (true) or keep (false) exact duplicate log rows
    file_field: source_file              # optional: the row's file, as a feature (not a model's)

`user_id`, `item_id` and `timestamp` are required field names. Every key is checked when the
config is read: booleans must be true/false, enumerated keys one of their values, names and
label values strings (YAML reads the label values and the names as written: `positive: [yes]` is
the string "yes"). `negative: other` makes every value that is not positive a 0; otherwise a
value in neither list is a bad row. A timestamp outside `range` (default 1990-01-01 .. now + 1
day; not for line-number or position times) is a bad row. A row that cannot be parsed raises
`BadRow` with one of REASONS; the reader quarantines it with its file and line number.

`history` (off when absent) gives every example the user's positive items strictly before it in
time (`unit: day`: from earlier UTC days), oldest first, the newest `length` of them, as
`hist_item_id` and `hist_<field>` for each listed categorical item field, and their count before
the cap, `hist_len` (`components/history.py`).

`file_field` (off when absent) gives every example the base name of the log file its row was
read from, as a string feature of that name. No model reads it: it is for protocols that split by
file (`per_domain` with `assign: files`, e.g. Douban's train/val/test files).
"""
import calendar
import codecs
import dataclasses
import datetime
import math
import re
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

FORMATS = ("csv", "tsv", "delimited", "parquet", "tfrecord", "sequences", "json_map")
FIELD_TYPES = ("categorical", "multi", "text", "numeric", "timestamp")
ROLES = ("user", "item", "context")
REASONS = ("bad_encoding", "field_count", "empty_id", "bad_number", "bad_timestamp",
           "implausible_timestamp", "missing_value", "bad_label", "unknown_key", "duplicate_key")
REQUIRED_FIELDS = ("user_id", "item_id", "timestamp")
SAMPLING = ("popularity", "uniform", "matched", "din")  # how implicit logs' negatives are drawn
HISTORY_UNITS = ("event", "day")  # history: earlier timestamps, or earlier UTC days
LINE_COLUMN = "_line"  # pseudo-column: the row's line number in its file (for logs without time)
POSITION_COLUMN = "position"  # pseudo-column of `sequences` logs: the item's place in the line
OTHER = "other"  # `negative: other`: every value that is not positive is a negative
TIME_FROM = "1990-01-01"  # default plausible range of a timestamp field: from this date ...
TIME_SLACK = 86400  # ... to now + one day (seconds)
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
    header_names: Tuple[str, ...] = ()  # set by the reader: the header line's names, in order


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
    default: Any = None  # numeric: value of an empty or null cell; categorical: of a null cell
    required: bool = False  # categorical: an empty value makes the row bad
    range: Tuple[int, ...] = ()  # timestamp: plausible [from, to] (unix); () = TIME_FROM .. now+1d

    @property
    def seq_len(self) -> int:
        return self.max_len or 8


@dataclasses.dataclass(frozen=True)
class LabelSpec:
    column: str = ""
    positive: Tuple[str, ...] = ()  # categorical rule: these values are 1 ...
    negative: Tuple[str, ...] = ()  # ... these 0, anything else is a bad row ...
    other_negative: bool = False  # ... unless `negative: other`: anything else is 0
    threshold: Optional[float] = None  # numeric rule: value >= threshold is 1
    range: Tuple[float, ...] = ()  # numeric rule: [lo, hi] of valid values
    implicit: bool = False  # every row is a positive; negatives are sampled


@dataclasses.dataclass(frozen=True)
class HistorySpec:
    length: int = 50  # newest items kept
    unit: str = "event"  # "event": rows at an earlier timestamp; "day": rows of earlier days
    fields: Tuple[str, ...] = ()  # categorical item fields also given as histories


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
    negative_sampling: str = "popularity"  # or "uniform", "matched", "din" (see log_reader)
    # protocol name -> its sampling rule, where it differs (`negatives: {by_protocol: ...}`);
    # applied by `for_protocol`
    negative_sampling_by_protocol: Dict[str, str] = dataclasses.field(default_factory=dict)
    dedupe: bool = True  # exact duplicate log rows: dropped (True) or kept (False); counted
    # Evaluation protocol: {"name": the default protocol, <protocol>: {its parameters}}; the
    # item_frequency parameters default to `split: {N, K}`. Checked by trainer/protocols.
    protocol: Dict[str, Any] = dataclasses.field(default_factory=dict)
    history: Optional[HistorySpec] = None  # user-history features (components/history.py)
    file_field: str = ""  # feature naming each example's log file (base name); "" = none

    def field(self, name: str) -> FieldSpec:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    def for_protocol(self, protocol: str, sampling: str = "") -> "DatasetConfig":
        """This config as a run of `protocol` reads it: negatives drawn by `sampling` (the command
        line's `--set negatives.sampling`) if given, else by the rule `negatives.by_protocol`
        gives `protocol`, else by `negatives.sampling`. The result has no `by_protocol` left, so
        it records the one rule used, and applying it again changes nothing."""
        if not self.negative_sampling_by_protocol and not sampling:
            return self
        if sampling and not self.label.implicit:
            raise ConfigError(f"negatives.sampling={sampling}: {self.name}'s log has its own "
                              "negatives (label is not implicit), none are sampled")
        chosen = sampling or self.negative_sampling_by_protocol.get(protocol,
                                                                    self.negative_sampling)
        _check_sampling(chosen, self.negatives_per_positive, "negatives")
        return dataclasses.replace(self, negative_sampling=chosen,
                                   negative_sampling_by_protocol={})


def _check(where: str, key: str, value: Any, kind: str) -> Any:
    """`value` of config key `key` if it is of `kind` (bool, int, number, str, strings); else
    a ConfigError saying what was expected (YAML reads yes/no/on/off as booleans, 01 as 1)."""
    ok = {"bool": isinstance(value, bool),
          "int": isinstance(value, int) and not isinstance(value, bool),
          "number": isinstance(value, (int, float)) and not isinstance(value, bool),
          "str": isinstance(value, str),
          "strings": isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)}
    if not ok[kind]:
        expected = {"bool": "true or false", "int": "an integer", "number": "a number",
                    "str": "a string (quote it)", "strings": "a list of strings"}[kind]
        raise ConfigError(f"{where}: `{key}` must be {expected}, not {value!r}")
    return value


def _get(raw: Dict[str, Any], key: str, default: Any, kind: str, where: str) -> Any:
    return _check(where, key, raw[key], kind) if key in raw else default


def _choice(raw: Dict[str, Any], key: str, default: str, choices, where: str) -> str:
    value = _get(raw, key, default, "str", where)
    if value not in choices:
        raise ConfigError(f"{where}: {key} {value!r} is not one of {', '.join(choices)}")
    return value


def _table(raw: Dict[str, Any], where: str, join: bool) -> TableSpec:
    allowed = {f.name for f in dataclasses.fields(TableSpec)} - {"header_names"}
    _no_unknown(raw, allowed, where)
    files = raw.get("files")
    if isinstance(files, str):
        files = [files]
    if not files:
        raise ConfigError(f"{where}: `files` (glob patterns) is required")
    _check(where, "files", files, "strings")
    fmt = _choice(raw, "format", "csv", FORMATS, where)
    sep = _get(raw, "sep", {"tsv": "\t", "sequences": " "}.get(fmt, ","), "str", where)
    if not sep:
        raise ConfigError(f"{where}: `sep` must not be empty")
    if fmt == "csv" and len(sep) != 1:
        raise ConfigError(f"{where}: csv needs a one-character sep; use format: delimited for {sep!r}")
    encoding = _get(raw, "encoding", "utf-8", "str", where)
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise ConfigError(f"{where}: unknown encoding {encoding!r}") from None
    columns = _get(raw, "columns", [], "strings", where)
    if len(set(columns)) != len(columns):
        raise ConfigError(f"{where}: `columns` names a column twice: {list(columns)}")
    spec = TableSpec(files=tuple(files), format=fmt, sep=sep,
                     header=_get(raw, "header", fmt in ("csv", "tsv", "delimited"), "bool", where),
                     columns=tuple(columns), encoding=encoding,
                     key=_get(raw, "key", "", "str", where),
                     log_key=_get(raw, "log_key", "", "str", where),
                     required=_get(raw, "required", True, "bool", where))
    if fmt in ("sequences", "json_map") and len(spec.columns) != 2:
        raise ConfigError(f"{where}: format {fmt} needs `columns: [key, value]`")
    if join and not (spec.key and spec.log_key):
        raise ConfigError(f"{where}: a join needs `key` (its column) and `log_key` (the log column)")
    if not join and ("key" in raw or "log_key" in raw or "required" in raw):
        raise ConfigError(f"{where}: `key`, `log_key` and `required` are for joins only")
    if not spec.header and not spec.columns and fmt not in ("parquet", "tfrecord"):
        raise ConfigError(f"{where}: without a header line, `columns` must name the columns")
    return spec


def _no_unknown(raw: Dict[str, Any], allowed, where: str) -> None:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping of keys, not {raw!r}")
    unknown = sorted(set(raw) - set(allowed))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")


def _unix_time(value: Any, where: str) -> int:
    """A config time: unix seconds, or a "YYYY-MM-DD[ HH:MM:SS]" date (UTC)."""
    if isinstance(value, (datetime.date, datetime.datetime)):  # YAML reads unquoted dates
        value = value.isoformat()
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        for fmt in ("%Y-%m-%d", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S"):
            try:
                return calendar.timegm(time.strptime(value, fmt))
            except ValueError:
                pass
    raise ConfigError(f"{where}: {value!r} is neither unix seconds nor a YYYY-MM-DD date")


def _field(f: Dict[str, Any], i: int) -> FieldSpec:
    where = f"fields[{i}]"
    _no_unknown(f, {x.name for x in dataclasses.fields(FieldSpec)}, where)
    if "name" not in f:
        raise ConfigError(f"{where}: `name` is required")
    name = _check(where, "name", f["name"], "str")
    where = f"field {name}"
    kind = _choice(f, "type", "categorical", FIELD_TYPES, where)
    values = {"name": name, "type": kind, "role": _choice(f, "role", "context", ROLES, where),
              "column": _get(f, "column", name, "str", where),
              "max_len": _get(f, "max_len", 0, "int", where),
              "required": _get(f, "required", False, "bool", where)}
    for key in ("sep", "extract", "strip", "format"):
        if key in f:
            values[key] = _check(where, key, f[key], "str")
    for key in ("extract", "strip"):
        try:
            pattern = re.compile(values.get(key, ""))
        except re.error as err:
            raise ConfigError(f"{where}: `{key}` is not a valid regex: {err}") from None
        if key == "extract" and values.get(key) and pattern.groups < 1:
            raise ConfigError(f"{where}: `extract` needs a group, e.g. '(\\d{{4}})'")
    if values["max_len"] < 0:
        raise ConfigError(f"{where}: `max_len` must be >= 0")
    if "default" in f:
        if kind not in ("numeric", "categorical"):
            raise ConfigError(f"{where}: `default` is for numeric and categorical fields only")
        values["default"] = _check(where, "default", f["default"],
                                   "number" if kind == "numeric" else "str")
    if kind != "timestamp" and ("format" in f or "range" in f):
        raise ConfigError(f"{where}: `format` and `range` are for timestamp fields only")
    if "range" in f:
        bounds = f["range"]
        if not isinstance(bounds, (list, tuple)) or len(bounds) != 2:
            raise ConfigError(f"{where}: `range` must be [from, to] (dates or unix seconds)")
        bounds = tuple(_unix_time(b, f"{where}: range") for b in bounds)
        if bounds[0] >= bounds[1]:
            raise ConfigError(f"{where}: `range` must go from an earlier to a later time")
        values["range"] = bounds
    return FieldSpec(**values)


def _label(raw: Any) -> LabelSpec:
    _no_unknown(raw, {"column", "positive", "negative", "threshold", "range", "implicit"}, "label")

    def values(key):
        value = raw.get(key, [])
        value = [value] if not isinstance(value, (list, tuple)) else value
        for v in value:
            if isinstance(v, bool) or not isinstance(v, (str, int)):
                written = str(v).lower() if isinstance(v, bool) else v
                raise ConfigError(f"label: {key} value {v!r} is not a string: quote it "
                                  f"(e.g. {key}: [\"{written}\"], as written in the file)")
        return tuple(str(v) for v in value)

    other = raw.get("negative") == OTHER  # the scalar `other`; [other] is the value "other"
    label = LabelSpec(column=_get(raw, "column", "", "str", "label"), positive=values("positive"),
                      negative=() if other else values("negative"), other_negative=other,
                      threshold=_get(raw, "threshold", None, "number", "label"),
                      range=tuple(raw["range"]) if isinstance(raw.get("range"), (list, tuple))
                      else (raw["range"],) if "range" in raw else (),
                      implicit=_get(raw, "implicit", False, "bool", "label"))
    rules = [bool(label.positive), label.threshold is not None, label.implicit]
    if sum(rules) != 1:
        raise ConfigError("label: give exactly one rule: `positive` (+ `negative`) values, "
                          "a numeric `threshold`, or `implicit: true`")
    if "negative" in raw and not label.positive:
        raise ConfigError("label: `negative` goes with `positive`")
    if label.positive and not (label.negative or label.other_negative):
        raise ConfigError("label: with `positive`, list the `negative` values, or say "
                          "`negative: other` to make every other value a 0")
    both = sorted(set(label.positive) & set(label.negative))
    if both:
        raise ConfigError(f"label: {both} are both positive and negative")
    if "range" in raw:
        if label.threshold is None:
            raise ConfigError("label: `range` goes with `threshold`")
        numbers = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in label.range)
        if len(label.range) != 2 or not numbers or label.range[0] > label.range[1]:
            raise ConfigError(f"label: `range` must be [low, high] numbers, not {raw['range']!r}")
    if not label.implicit and not label.column:
        raise ConfigError("label: `column` is required")
    if label.implicit and label.column:
        raise ConfigError("label: an implicit log has no label `column`")
    return label


def from_dict(raw: Dict[str, Any]) -> DatasetConfig:
    """Validates a config (as loaded from YAML) and returns it; raises ConfigError saying why."""
    _no_unknown(raw, ("name", "log", "joins", "fields", "label", "side_info", "split",
                      "negatives", "dedupe", "protocol", "history", "file_field"), "config")
    for key in ("name", "log", "fields", "label"):
        if key not in raw:
            raise ConfigError(f"config: `{key}` is required")
    log = _table(raw["log"], "log", join=False)
    joins = raw.get("joins", [])
    if not isinstance(joins, list):
        raise ConfigError("config: `joins` must be a list of tables")
    joins = tuple(_table(j, f"joins[{i}]", join=True) for i, j in enumerate(joins))
    if not isinstance(raw["fields"], list):
        raise ConfigError("config: `fields` must be a list")
    fields = []
    for i, f in enumerate(raw["fields"]):
        spec = _field(f, i)
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
    file_field = _get(raw, "file_field", "", "str", "config")
    if "file_field" in raw and not file_field:
        raise ConfigError("config: `file_field` must name a feature, not be empty")
    if file_field in (*names, "label", "count", "user_group") or file_field.startswith("hist_"):
        raise ConfigError(f"config: file_field {file_field!r} is already a feature's name")
    label = _label(raw["label"])
    negatives = raw.get("negatives", {})
    _no_unknown(negatives, ("per_positive", "seed", "sampling", "by_protocol"), "negatives")
    sampling = _choice(negatives, "sampling", "popularity", SAMPLING, "negatives")
    by_protocol = negatives.get("by_protocol", {})
    if not isinstance(by_protocol, dict):
        raise ConfigError(f"negatives: `by_protocol` maps protocol names to sampling rules, not "
                          f"{by_protocol!r}")
    for name in by_protocol:
        _choice(by_protocol, name, "", SAMPLING, "negatives.by_protocol")
    per_positive = _get(negatives, "per_positive", 0, "int", "negatives")
    if label.implicit and per_positive < 1:
        raise ConfigError("label: an implicit log needs `negatives: {per_positive: n}` (n >= 1)")
    if _get(negatives, "seed", 0, "int", "negatives") < 0:
        raise ConfigError("negatives: `seed` must be >= 0")
    if negatives and not label.implicit:
        raise ConfigError("negatives: sampled negatives are for `label: {implicit: true}` only")
    for rule in (sampling, *by_protocol.values()):
        _check_sampling(rule, per_positive, "negatives")
    split = raw.get("split", {})
    _no_unknown(split, ("N", "K"), "split")
    item_fields = [f.name for f in fields if f.role == "item"]
    side_info = raw.get("side_info") or [*item_fields, "count"]
    for name in _check("config", "side_info", side_info, "strings"):
        if name != "count" and name not in item_fields:
            raise ConfigError(f"side_info: {name!r} is not a field with role item")
    return DatasetConfig(name=_check("config", "name", raw["name"], "str"), log=log,
                         fields=tuple(fields), label=label, joins=joins,
                         side_info=tuple(side_info), N=_get(split, "N", 200, "int", "split"),
                         K=_get(split, "K", 20, "int", "split"),
                         negatives_per_positive=per_positive,
                         negative_seed=_get(negatives, "seed", 0, "int", "negatives"),
                         negative_sampling=sampling,
                         negative_sampling_by_protocol={str(k): v for k, v in by_protocol.items()},
                         dedupe=_get(raw, "dedupe", True, "bool", "config"),
                         protocol=_protocol(raw.get("protocol", {}), split),
                         history=_history(raw["history"], fields, log)
                         if "history" in raw else None, file_field=file_field)


def _check_sampling(sampling: str, per_positive: int, where: str) -> None:
    if sampling not in SAMPLING:
        raise ConfigError(f"{where}: sampling must be one of {', '.join(SAMPLING)}, "
                          f"not {sampling!r}")
    if sampling == "din" and per_positive != 1:
        raise ConfigError(f"{where}: `sampling: din` draws exactly one negative per positive "
                          "(per_positive: 1)")


def _protocol(raw: Any, split: Dict[str, Any]) -> Dict[str, Any]:
    """`protocol: {name: NAME, NAME: {params}, OTHER: {params}}`; `split: {N, K}` gives the
    item_frequency parameters too (not both)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"protocol: must be a mapping, not {raw!r}")
    out = {"name": _get(raw, "name", "item_frequency", "str", "protocol")}
    for key, params in raw.items():
        if key != "name":
            if not isinstance(params, dict):
                raise ConfigError(f"protocol: `{key}` must map parameter names to values")
            out[key] = dict(params)
    twice = sorted(set(split) & set(out.get("item_frequency", {})))
    if twice:
        raise ConfigError(f"{twice} given in both `split` and `protocol: item_frequency`")
    return out


def _history(raw: Any, fields: Sequence[FieldSpec], log: TableSpec) -> HistorySpec:
    _no_unknown(raw, ("length", "unit", "fields"), "history")
    spec = HistorySpec(length=_get(raw, "length", 50, "int", "history"),
                       unit=_choice(raw, "unit", "event", HISTORY_UNITS, "history"),
                       fields=tuple(_get(raw, "fields", [], "strings", "history")))
    if spec.length < 1:
        raise ConfigError("history: `length` must be >= 1")
    by_name = {f.name: f for f in fields}
    for name in spec.fields:
        field = by_name.get(name)
        if field is None or field.role != "item" or field.type != "categorical" \
                or name == "item_id":
            raise ConfigError(f"history: fields: {name!r} is not a categorical field with role "
                              f"item (other than item_id)")
    if len(set(spec.fields)) != len(spec.fields):
        raise ConfigError(f"history: fields names a field twice: {list(spec.fields)}")
    taken = sorted(n for n in by_name if n == "hist_len" or n.startswith("hist_"))
    if taken:
        raise ConfigError(f"history: the names hist_* are the history features; rename {taken}")
    column = by_name["timestamp"].column
    if spec.unit == "day" and (column == LINE_COLUMN
                               or (log.format == "sequences" and column == POSITION_COLUMN)):
        raise ConfigError("history: `unit: day` needs a real timestamp, not a line number or "
                          "sequence position")
    return spec


# Config keys whose values are names or values as written in the files: YAML must not turn
# `yes` into True or `01` into 1 there (path from the top; "*" = every list item).
_AS_WRITTEN = [("name",), ("file_field",), ("side_info", "*"), ("label", "column"),
               ("label", "positive"),
               ("label", "positive", "*"), ("label", "negative"), ("label", "negative", "*"),
               ("history", "fields", "*"),
               *[(*table, key) for table in (("log",), ("joins", "*"))
                 for key in ("key", "log_key", "sep", "encoding")],
               *[(*table, key, "*") for table in (("log",), ("joins", "*"))
                 for key in ("files", "columns")],
               *[("fields", "*", key) for key in ("name", "column", "sep", "extract", "strip",
                                                   "format")]]


def _keep_as_written(node, path=()) -> None:
    """Retags the plain scalars at _AS_WRITTEN paths of a composed YAML node as strings; a key
    given twice in one mapping is an error."""
    import yaml  # pylint: disable=import-outside-toplevel
    if isinstance(node, yaml.ScalarNode):
        if path in _AS_WRITTEN and node.value != "":  # `key:` alone stays null
            node.tag = "tag:yaml.org,2002:str"
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _keep_as_written(item, (*path, "*"))
    elif isinstance(node, yaml.MappingNode):
        keys = [key.value for key, _ in node.value]
        twice = sorted({k for k in keys if keys.count(k) > 1})
        if twice:  # YAML would keep the last one silently
            raise ConfigError(f"{'.'.join(path) or 'config'}: key(s) {twice} given twice "
                              f"(line {node.start_mark.line + 1})")
        for key, value in node.value:
            _keep_as_written(value, (*path, key.value))


def load(path: str) -> DatasetConfig:
    import yaml  # pylint: disable=import-outside-toplevel
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    with tf.io.gfile.GFile(path) as f:
        try:
            loader = yaml.SafeLoader(f.read())
            try:
                node = loader.get_single_node()
                if node is not None:
                    _keep_as_written(node)
                raw = loader.construct_document(node) if node is not None else None
            finally:
                loader.dispose()
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML: {' '.join(str(err).split())}") from None
        except ConfigError as err:
            raise ConfigError(f"{path}: {err}") from None
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
    tables = lambda t: TableSpec(**{  # noqa: E731
        **t, "files": tuple(t["files"]), "columns": tuple(t["columns"]),
        "header_names": tuple(t.get("header_names", ()))})
    return DatasetConfig(**{
        **raw, "log": tables(raw["log"]), "joins": tuple(tables(j) for j in raw["joins"]),
        "fields": tuple(FieldSpec(**{**f, "range": tuple(f.get("range", ()))})
                        for f in raw["fields"]),
        "label": LabelSpec(**{**raw["label"], "positive": tuple(raw["label"]["positive"]),
                              "negative": tuple(raw["label"]["negative"]),
                              "range": tuple(raw["label"]["range"])}),
        "side_info": tuple(raw["side_info"]),
        "history": HistorySpec(**{**raw["history"], "fields": tuple(raw["history"]["fields"])})
        if raw.get("history") else None})


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
    if isinstance(value, datetime.datetime):  # a Parquet timestamp column (naive = UTC)
        return calendar.timegm(value.utctimetuple())
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
    """A cell -> str (categorical), [str] (multi, text), float (numeric) or int (timestamp).

    None is a missing cell (a Parquet null, a feature absent from a TFRecord): no tokens for
    multi/text, the field's `default` if it has one, else a bad row (`missing_value`, or
    `empty_id` for the ids); it is never the category ""."""
    if field.type == "multi":
        if value is None:
            return []
        tokens = value if isinstance(value, (list, tuple)) else _text(value, field).split(field.sep)
        return [str(t).strip() for t in tokens if str(t).strip()]
    if field.type == "text" and value is None:
        return []
    if isinstance(value, (list, tuple)):
        raise BadRow("field_count", f"{field.name} has {len(value)} values, expected one")
    if value is None:
        if field.required:
            raise BadRow("empty_id", f"{field.name} is missing (null)")
        if field.default is None or field.type == "timestamp":
            raise BadRow("missing_value", f"{field.name} is missing (null) and has no default")
        return float(field.default) if field.type == "numeric" else field.default
    if field.type == "numeric":
        return _number(value, field)
    if field.type == "timestamp":
        return _timestamp(value, field)
    if field.type == "text":
        return _WORD.findall(_text(value, field))
    text = _text(value, field)
    if field.required and not text:
        raise BadRow("empty_id", f"{field.name} is empty")
    return text


def is_position_time(config: DatasetConfig) -> bool:
    """Whether the timestamp is a line number or a sequence position (no plausible range)."""
    column = config.field("timestamp").column
    return column == LINE_COLUMN or (config.log.format == "sequences" and column == POSITION_COLUMN)


def timestamp_range(config: DatasetConfig,
                    now: Optional[float] = None) -> Optional[Tuple[int, int]]:
    """[from, to] of plausible times: the field's `range`, else TIME_FROM .. now + one day;
    None for line-number and position times."""
    if is_position_time(config):
        return None
    field = config.field("timestamp")
    if field.range:
        return field.range[0], field.range[1]
    now = time.time() if now is None else now
    return calendar.timegm(time.strptime(TIME_FROM, "%Y-%m-%d")), int(now) + TIME_SLACK


def parse_label(row: Dict[str, Any], label: LabelSpec) -> int:
    if label.implicit:
        return 1
    value = row.get(label.column)
    if value is None:
        raise BadRow("bad_label", f"{label.column} is missing (null)")
    value = str(value).strip()
    if label.positive:
        if value in label.positive:
            return 1
        if label.other_negative or value in label.negative:
            return 0
        raise BadRow("bad_label", f"{label.column}={value[:40]!r} is not one of "
                                  f"{[*label.positive, *label.negative]}")
    try:
        number = float(value)
    except ValueError:
        raise BadRow("bad_label", f"{label.column} is not a number: {value[:40]!r}") from None
    if not math.isfinite(number):
        raise BadRow("bad_label", f"{label.column} is not finite: {value[:40]!r}")
    if label.range and not label.range[0] <= number <= label.range[1]:
        raise BadRow("bad_label", f"{label.column}={value} outside {list(label.range)}")
    return int(number >= label.threshold)


def parse_row(row: Dict[str, Any], config: DatasetConfig,
              time_range: Optional[Tuple[int, int]] = ()) -> Dict[str, Any]:
    """A joined row {column: cell} -> example features {field name: value, label: 0/1}.

    `time_range`: plausible [from, to] of the timestamp (default: `timestamp_range(config)`;
    None: no check). A column absent from the row is a missing cell."""
    out = {f.name: parse_field(row.get(f.column), f) for f in config.fields}
    out["label"] = parse_label(row, config.label)
    time_range = timestamp_range(config) if time_range == () else time_range
    if time_range and not time_range[0] <= out["timestamp"] <= time_range[1]:
        when = lambda t: time.strftime("%Y-%m-%d", time.gmtime(t))  # noqa: E731
        raise BadRow("implausible_timestamp",
                     f"timestamp {out['timestamp']} ({when(out['timestamp'])}) is outside "
                     f"{when(time_range[0])} .. {when(time_range[1])} (field `range`)")
    return out


def join(row: Dict[str, Any], tables: Sequence[Dict[str, Dict[str, Any]]],
         config: DatasetConfig, unmatched: Optional[List[int]] = None) -> Dict[str, Any]:
    """Adds the side tables' columns to a log row. An absent optional key gives empty cells (as
    the reference code does), and its join's index is appended to `unmatched` (to be counted)."""
    joined = dict(row)
    for index, (spec, table) in enumerate(zip(config.joins, tables)):
        key = "" if row.get(spec.log_key) is None else str(row[spec.log_key]).strip()
        if not key and spec.required:
            raise BadRow("empty_id", f"{spec.log_key} is empty")
        side = table.get(key)
        if side is None:
            if spec.required:
                raise BadRow("unknown_key", f"{spec.log_key}={key[:40]!r} is not in {spec.files[0]}")
            side = {}
            if unmatched is not None:
                unmatched.append(index)
        for column in spec.columns:  # known: the reader resolves every table's columns first
            if column != spec.key:
                joined.setdefault(column, side.get(column, ""))
    return joined
