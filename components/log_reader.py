"""Beam reading of a click log described by a `log_config.DatasetConfig`, with quarantine.

Every input row ends as exactly one of: an example, or a quarantine record
{"file", "line", "reason", "detail", "raw"}. Files are read whole by one worker each, which
is what gives every row its line number; a large log scales out by being sharded into files.
"""
import dataclasses
import json
import os
import zlib
from typing import Any, Dict, Iterable, List, Sequence

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
import numpy as np
import tensorflow as tf

from components import example_io
from components.log_config import (LINE_COLUMN, BadRow, ConfigError, DatasetConfig, TableSpec,
                                   decode, join, parse_row, referenced_columns, split_line)

RAW_CHARS = 500  # characters of a bad line kept in the quarantine


# ----------------------------------------------------------------------------- before any work

def table_files(input_base: str, spec: TableSpec) -> List[str]:
    files = []
    for pattern in spec.files:
        full = pattern if "://" in pattern or os.path.isabs(pattern) else os.path.join(input_base, pattern)
        matched = sorted(tf.io.gfile.glob(full))
        if not matched:
            raise FileNotFoundError(f"no input file matches {full!r}")
        files += matched
    # `x` and `x.gz` are the same table (e.g. ratings.dat[.gz]): read the uncompressed one.
    return [f for f in files if not (f.endswith(".gz") and f[:-3] in files)]


def _first_line(path: str, encoding: str) -> str:
    with FileSystems.open(path) as f:
        line = f.readline()
    if not line.strip():
        raise ConfigError(f"{path} is empty (expected a header line)")
    return decode(line, encoding).rstrip("\r\n")


def _header(path: str, spec: TableSpec) -> List[str]:
    if spec.format == "parquet":
        import pyarrow.parquet as pq  # pylint: disable=import-outside-toplevel
        with FileSystems.open(path) as f:
            return list(pq.read_schema(f).names)
    if spec.format == "tfrecord":
        for record in tf.data.TFRecordDataset([path], compression_type=_tfrecord_compression(path)).take(1):
            return sorted(tf.train.Example.FromString(record.numpy()).features.feature)
        raise ConfigError(f"{path} holds no records")
    line = _first_line(path, spec.encoding)
    if spec.format == "csv":
        import csv  # pylint: disable=import-outside-toplevel
        return next(csv.reader([line], delimiter=spec.sep))
    return line.split(spec.sep)


def resolve(config: DatasetConfig, input_base: str) -> DatasetConfig:
    """Checks that every table has files, that none is empty and that every column the config
    reads exists; returns the config with each table's column names filled in. Raises
    FileNotFoundError or ConfigError with the file and column named."""
    if not tf.io.gfile.isdir(input_base):
        raise FileNotFoundError(f"input folder {input_base!r} does not exist")

    def resolved(spec: TableSpec, where: str) -> TableSpec:
        files = table_files(input_base, spec)
        for path in files:
            if tf.io.gfile.stat(path).length == 0:
                raise ConfigError(f"{where}: input file {path} is empty")
        if spec.format in ("sequences", "json_map") or (spec.columns and not spec.header):
            return spec
        header = _header(files[0], spec)
        return dataclasses.replace(spec, columns=tuple(spec.columns or header))

    log = resolved(config.log, "log")
    joins = tuple(resolved(j, f"joins[{i}]") for i, j in enumerate(config.joins))
    available = {c: "log" for c in log.columns}
    for i, spec in enumerate(joins):
        if spec.log_key not in available:
            raise ConfigError(f"joins[{i}]: `log_key` column {spec.log_key!r} is not in "
                              f"{sorted(available)}")
        if spec.key not in spec.columns:
            raise ConfigError(f"joins[{i}]: key column {spec.key!r} is not among the columns "
                              f"{list(spec.columns)} of {spec.files[0]}")
        for column in spec.columns:
            available.setdefault(column, spec.files[0])
    if log.format == "sequences":
        available["position"] = "log"
    available[LINE_COLUMN] = "log"
    for column in referenced_columns(config):
        if column not in available:
            raise ConfigError(f"the config reads column {column!r}, which no input has; columns: "
                              f"{sorted(c for c in available if c != LINE_COLUMN)}")
    return dataclasses.replace(config, log=log, joins=joins)


# ----------------------------------------------------------------------------- Beam

def _tfrecord_compression(path: str) -> str:
    return "GZIP" if path.endswith(".gz") else ""


def _bad(path: str, line: int, err: BadRow, raw: Any) -> Dict[str, Any]:
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", errors="replace")
    elif not isinstance(raw, str):
        raw = json.dumps(raw, default=str)
    return {"file": path, "line": line, "reason": err.reason, "detail": err.detail,
            "raw": raw.rstrip("\r\n")[:RAW_CHARS]}


class ReadTable(beam.DoFn):
    """File path -> (path, line, sub, {column: cell}, raw line); bad rows go to the `bad` output.

    `line` counts from 1 (header included); `sub` orders the rows one line yields (sequences);
    the raw line (a JSON of the record for Parquet / TFRecord) is what the quarantine keeps."""

    def __init__(self, spec: TableSpec):
        self._spec = spec

    def process(self, path: str) -> Iterable:
        spec = self._spec
        if spec.format == "parquet":
            yield from self._parquet(path)
        elif spec.format == "tfrecord":
            yield from self._tfrecord(path)
        elif spec.format == "json_map":
            yield from self._json_map(path)
        else:
            with FileSystems.open(path) as f:
                for number, raw in enumerate(iter(f.readline, b""), start=1):
                    if number == 1 and spec.header:
                        continue
                    if not raw.strip():
                        continue  # blank lines (a trailing newline) are not rows
                    try:
                        line = decode(raw, spec.encoding)
                        if spec.format == "sequences":
                            yield from self._sequence(path, number, line)
                        else:
                            yield path, number, 0, split_line(line, spec, spec.columns), line
                    except BadRow as err:
                        yield beam.pvalue.TaggedOutput("bad", _bad(path, number, err, raw))

    def _sequence(self, path, number, line):
        tokens = line.split()
        if len(tokens) < 2:
            raise BadRow("field_count", "a sequence line needs a key and at least one item")
        key, value = self._spec.columns
        for position, token in enumerate(tokens[1:]):
            yield (path, number, position,
                   {key: tokens[0], value: token, "position": position}, line)

    def _parquet(self, path):
        import pyarrow.parquet as pq  # pylint: disable=import-outside-toplevel
        with FileSystems.open(path) as f:
            table = pq.read_table(f)
        for number, row in enumerate(table.to_pylist(), start=1):
            row = {k: ("" if v is None else v) for k, v in row.items()}
            yield path, number, 0, row, row

    def _tfrecord(self, path):
        dataset = tf.data.TFRecordDataset([path], compression_type=_tfrecord_compression(path))
        for number, record in enumerate(dataset.as_numpy_iterator(), start=1):
            values = example_io.from_example(tf.train.Example.FromString(record))
            row = {k: (v[0] if len(v) == 1 else v) for k, v in values.items()}
            row = {k: (v.decode("utf-8", "replace") if isinstance(v, bytes) else v)
                   for k, v in row.items()}
            yield path, number, 0, row, row

    def _json_map(self, path):
        with FileSystems.open(path) as f:
            mapping = json.loads(decode(f.read(), self._spec.encoding))
        key, value = self._spec.columns
        for number, (k, v) in enumerate(mapping.items(), start=1):
            cell = " ".join(str(x) for x in v) if isinstance(v, list) else str(v)
            yield path, number, 0, {key: str(k), value: cell}, f"{k}: {v}"


class ParseRow(beam.DoFn):
    """(path, line, sub, row, raw) -> (order key, example features), joining the side tables."""

    def __init__(self, config: DatasetConfig):
        self._config = config

    def process(self, element, *tables) -> Iterable:
        path, number, sub, row, raw = element
        try:
            row = {**row, LINE_COLUMN: number}
            parsed = parse_row(join(row, tables, self._config), self._config)
            yield (path, number, sub), parsed
        except BadRow as err:
            yield beam.pvalue.TaggedOutput("bad", _bad(path, number, err, raw))


def _first_row(rows):
    return min(rows, key=lambda r: r[0])


class SampleNegatives(beam.DoFn):
    """(user, [(order, features)]) -> negatives: per positive, `n` items the user never had, with
    the item's own features and the positive's other fields. Items are drawn
    - `popularity`: in proportion to their positives (every item keeps about as many negatives as
      positives, so item frequency says nothing about the label);
    - `matched`: uniformly among the MATCH_WINDOW items on either side of the positive's item in
      the popularity ranking (as `popularity`, and each user's negatives fall on items as
      popular as their positives, so a user's label rate is the same on old and new items);
    - `uniform`: uniformly over all items."""

    MAX_TRIES = 1000  # then draw uniformly among the items the user never had
    MATCH_WINDOW = 50

    def __init__(self, config: DatasetConfig):
        self._n = config.negatives_per_positive
        self._seed = config.negative_seed
        self._popularity = config.negative_sampling == "popularity"
        self._matched = config.negative_sampling == "matched"
        self._pool_id = None

    def _setup_pool(self, items) -> None:
        pool = sorted(items, key=lambda kv: kv[0])  # (item, (positives, features))
        self._items = [item for item, _ in pool]
        self._features = [features for _, (_, features) in pool]
        weights = np.array([n if self._popularity else 1 for _, (n, _) in pool], dtype=np.float64)
        self._cumulative = np.cumsum(weights) / weights.sum()
        positives = np.array([n for _, (n, _) in pool])
        self._by_rank = np.lexsort((np.arange(len(pool)), -positives))  # most positives first
        self._rank = {self._items[index]: rank for rank, index in enumerate(self._by_rank)}
        self._pool_id = id(items)

    def _candidate(self, rng, item) -> int:
        if self._matched:
            rank = self._rank[item]
            low = max(0, rank - self.MATCH_WINDOW)
            high = min(len(self._items), rank + self.MATCH_WINDOW + 1)
            return int(self._by_rank[int(rng.integers(low, high))])
        index = int(np.searchsorted(self._cumulative, rng.random(), side="right"))
        return min(index, len(self._items) - 1)

    def _draw(self, rng, seen, item) -> int:
        for _ in range(self.MAX_TRIES):
            index = self._candidate(rng, item)
            if self._items[index] not in seen:
                return index
        unseen = [i for i, item in enumerate(self._items) if item not in seen]
        return unseen[int(rng.integers(len(unseen)))]

    def process(self, element, items) -> Iterable:
        user, positives = element
        if self._pool_id != id(items):
            self._setup_pool(items)
        seen = {features["item_id"] for _, features in positives}
        if len(seen) >= len(self._items):
            return
        rng = np.random.default_rng([self._seed, zlib.crc32(user.encode("utf-8"))])
        for order, features in sorted(positives, key=lambda p: p[0]):
            for k in range(self._n):
                index = self._draw(rng, seen, features["item_id"])
                yield (*order, "negative", k), {**features, **self._features[index], "label": 0}


def _to_example(features: Dict[str, Any]) -> bytes:
    return example_io.to_example(features).SerializeToString()


def _read(pipeline, spec: TableSpec, files: Sequence[str], label: str):
    return (pipeline | f"Files[{label}]" >> beam.Create(files)
            | f"Spread[{label}]" >> beam.Reshuffle()
            | f"Read[{label}]" >> beam.ParDo(ReadTable(spec)).with_outputs("bad", main="rows"))


@beam.ptransform_fn
def ReadClickLog(pipeline: beam.Pipeline, config: DatasetConfig, input_base: str):
    """-> (serialized tf.Examples, quarantine records as dicts, stats dict (one element)).

    `config` must come from `resolve` (column names known)."""
    bad = []
    tables = []
    for i, spec in enumerate(config.joins):
        read = _read(pipeline, spec, table_files(input_base, spec), f"join{i}")
        bad.append(read.bad)
        tables.append(beam.pvalue.AsDict(
            read.rows
            | f"Key[join{i}]" >> beam.Map(lambda r, key=spec.key: (str(r[3][key]).strip(), r))
            | f"First[join{i}]" >> beam.CombinePerKey(_first_row)
            | f"Row[join{i}]" >> beam.Map(lambda kv: (kv[0], kv[1][3]))))
    log = _read(pipeline, config.log, table_files(input_base, config.log), "log")
    bad.append(log.bad)
    parsed = log.rows | "Parse" >> beam.ParDo(ParseRow(config), *tables).with_outputs(
        "bad", main="examples")
    bad.append(parsed.bad)
    positives = parsed.examples
    outputs = [positives]
    if config.negatives_per_positive:
        item_fields = [f.name for f in config.fields if f.role == "item"]
        item_rows = positives | "ItemRows" >> beam.Map(lambda kv: (kv[1]["item_id"], (
            kv[0], {name: kv[1][name] for name in item_fields})))
        first = item_rows | "FirstItemRow" >> beam.CombinePerKey(_first_row)
        positives_per_item = item_rows | "PositivesPerItem" >> beam.combiners.Count.PerKey()
        items = (({"first": first, "n": positives_per_item}) | "JoinItem" >> beam.CoGroupByKey()
                 | "ItemFeatures" >> beam.Map(lambda kv: (kv[0], (kv[1]["n"][0],
                                                                  kv[1]["first"][0][1]))))
        negatives = (positives | "ByUser" >> beam.Map(lambda kv: (kv[1]["user_id"], kv))
                     | "GroupUsers" >> beam.GroupByKey()
                     | "Negatives" >> beam.ParDo(SampleNegatives(config), beam.pvalue.AsList(items)))
        outputs.append(negatives)
    examples = (outputs | "AllExamples" >> beam.Flatten()
                | "ToExample" >> beam.Map(lambda kv: _to_example(kv[1])))
    quarantine = bad | "AllBad" >> beam.Flatten()

    def count(pcoll, name):
        return (pcoll | f"Count[{name}]" >> beam.combiners.Count.Globally()
                | f"Name[{name}]" >> beam.Map(lambda n, name=name: (name, n)))

    reasons = (quarantine | "Reason" >> beam.Map(lambda r: (r["reason"], 1))
               | "CountReasons" >> beam.CombinePerKey(sum) | "ReasonDict" >> beam.combiners.ToDict())
    counts = ([count(positives, "positives"), count(quarantine, "quarantined")]
              + ([count(outputs[1], "negatives")] if len(outputs) > 1 else []))
    stats = ((counts | "Counts" >> beam.Flatten() | "CountDict" >> beam.combiners.ToDict())
             | "Stats" >> beam.Map(lambda c, by_reason: {
                 "rows": c.get("positives", 0) + c.get("quarantined", 0),
                 "examples": c.get("positives", 0) + c.get("negatives", 0),
                 "negatives": c.get("negatives", 0), "quarantined": c.get("quarantined", 0),
                 "by_reason": dict(sorted(by_reason.items()))},
                 by_reason=beam.pvalue.AsSingleton(reasons)))
    return examples, quarantine, stats
