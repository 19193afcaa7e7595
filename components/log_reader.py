"""Beam reading of a click log described by a `log_config.DatasetConfig`, with quarantine.

Every input row ends as exactly one of: an example, a quarantine record
{"file", "line", "reason", "detail", "raw"}, or a counted exact duplicate (`dedupe: true`).
Files are read whole by one worker each, which is what gives every row its line number; a
large log scales out by being sharded into files.
"""
import dataclasses
import hashlib
import json
import os
import pickle
import zlib
from typing import Any, Dict, Iterable, List, Sequence, Tuple

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
import numpy as np
import tensorflow as tf

from components import example_io, history
from components.log_config import (LINE_COLUMN, POSITION_COLUMN, BadRow, ConfigError,
                                   DatasetConfig, TableSpec, decode, join, parse_row,
                                   referenced_columns, split_line, timestamp_range)

RAW_CHARS = 500  # characters of a bad line kept in the quarantine


# ----------------------------------------------------------------------------- before any work

def matched_files(input_base: str, spec: TableSpec) -> Tuple[List[str], List[str]]:
    """(files of the table, each once; files left out as repeats): a file matched by two of the
    patterns is read once, and `x.gz` beside `x` (e.g. ratings.dat[.gz]) is the same table."""
    files, repeats = [], []
    for pattern in spec.files:
        full = pattern if "://" in pattern or os.path.isabs(pattern) else os.path.join(input_base, pattern)
        matched = sorted(tf.io.gfile.glob(full))
        if not matched:
            raise FileNotFoundError(f"no input file matches {full!r}")
        for path in matched:
            (repeats if path in files else files).append(path)
    gz_twins = [f for f in files if f.endswith(".gz") and f[:-3] in files]
    return [f for f in files if f not in gz_twins], repeats + gz_twins


def table_files(input_base: str, spec: TableSpec) -> List[str]:
    return matched_files(input_base, spec)[0]


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
    try:
        line = _first_line(path, spec.encoding)
    except BadRow as err:
        raise ConfigError(f"{path}: the header line is {err}") from None
    return parse_header(line, spec)


def parse_header(line: str, spec: TableSpec) -> List[str]:
    if spec.format == "csv":
        import csv  # pylint: disable=import-outside-toplevel
        return next(csv.reader([line], delimiter=spec.sep))
    return line.split(spec.sep)


def _check_headers(spec: TableSpec, files: Sequence[str], config: DatasetConfig,
                   where: str) -> List[str]:
    """Reads every file's header; all must name the same columns (in any order: rows are mapped
    by name), once each. Returns the reference header: the one naming most of the columns the
    config reads (then the commonest, then the first file's). Raises ConfigError naming the
    file and what is wrong: no header line, missing columns, unknown extra columns."""
    headers = [_header(path, spec) for path in files]
    for path, header in zip(files, headers):
        twice = sorted({c for c in header if header.count(c) > 1})
        if twice:
            raise ConfigError(f"{where}: the header of {path} names column(s) {twice} twice")
    wanted = set(referenced_columns(config)) | {spec.key, spec.log_key} | {
        j.log_key for j in config.joins}
    if spec.columns:  # the config names the columns itself: the header's names are not those
        wanted = set()

    def score(i):
        return (len(wanted & set(headers[i])),
                sum(set(h) == set(headers[i]) for h in headers), -i)
    ref = max(range(len(files)), key=score)
    reference = headers[ref]
    for path, header in zip(files, headers):
        if set(header) == set(reference):
            continue
        missing = [c for c in reference if c not in header]
        extra = [c for c in header if c not in reference]
        if len(missing) == len(reference):
            raise ConfigError(
                f"{where}: {path} has no header line: its first line {spec.sep.join(header)[:80]!r}"
                f" names none of the columns {reference} of {files[ref]} (header: true: every file "
                f"starts with the header)")
        raise ConfigError(f"{where}: the header of {path} " + " and ".join(
            ([f"lacks column(s) {missing}"] if missing else [])
            + ([f"has unknown column(s) {extra}"] if extra else []))
            + f" (the header of {files[ref]}: {reference})")
    if spec.columns and len(spec.columns) != len(reference):
        raise ConfigError(f"{where}: `columns` names {len(spec.columns)} columns, the header of "
                          f"{files[ref]} {len(reference)}: {reference}")
    return reference


def resolve(config: DatasetConfig, input_base: str) -> DatasetConfig:
    """Checks that every table has files, that none is empty, that every file's header names the
    same columns and that every column the config reads exists; returns the config with each
    table's column names filled in. Raises FileNotFoundError or ConfigError with the file and
    column named."""
    if not tf.io.gfile.isdir(input_base):
        raise FileNotFoundError(f"input folder {input_base!r} does not exist")

    def resolved(spec: TableSpec, where: str) -> TableSpec:
        files = table_files(input_base, spec)
        for path in files:
            if tf.io.gfile.stat(path).length == 0:
                raise ConfigError(f"{where}: input file {path} is empty")
        if spec.format in ("sequences", "json_map") or (
                not spec.header and spec.format not in ("parquet", "tfrecord")):
            return spec
        if spec.format == "tfrecord":  # features may be absent from a record: checked per row
            return dataclasses.replace(spec, columns=tuple(spec.columns or _header(files[0], spec)))
        header = _check_headers(spec, files, config, where)
        return dataclasses.replace(spec, columns=tuple(spec.columns or header),
                                   header_names=tuple(header))

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
        available[POSITION_COLUMN] = "log"
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


class _Pairs(dict):
    """A JSON object that also keeps its (key, value) pairs, repeated keys included."""

    def __init__(self, pairs):
        super().__init__(pairs)
        self.pairs = pairs


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
            columns = spec.columns
            with FileSystems.open(path) as f:
                for number, raw in enumerate(iter(f.readline, b""), start=1):
                    if number == 1 and spec.header:
                        columns = self._columns(path, raw)
                        continue
                    if not raw.strip():
                        continue  # blank lines (a trailing newline) are not rows
                    try:
                        line = decode(raw, spec.encoding)
                        if spec.format == "sequences":
                            yield from self._sequence(path, number, line)
                        else:
                            yield path, number, 0, split_line(line, spec, columns), line
                    except BadRow as err:
                        yield beam.pvalue.TaggedOutput("bad", _bad(path, number, err, raw))

    def _columns(self, path: str, raw: bytes) -> Sequence[str]:
        """This file's column names, from its header line, in its order (`resolve` checked that
        every file's header names the same columns as `header_names`)."""
        spec = self._spec
        if not spec.header_names:
            return spec.columns
        names = parse_header(decode(raw, spec.encoding).rstrip("\r\n"), spec)
        if sorted(names) != sorted(spec.header_names):
            raise ConfigError(f"{path}: the header {names} is not the one checked before the run "
                              f"({list(spec.header_names)}); was the file changed?")
        return [spec.columns[spec.header_names.index(name)] for name in names]

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
            yield path, number, 0, row, row  # a null stays None: a missing cell

    def _tfrecord(self, path):
        dataset = tf.data.TFRecordDataset([path], compression_type=_tfrecord_compression(path))
        for number, record in enumerate(dataset.as_numpy_iterator(), start=1):
            values = example_io.from_example(tf.train.Example.FromString(record))
            row = {k: (v[0] if len(v) == 1 else None if not v else v) for k, v in values.items()}
            row = {k: (v.decode("utf-8", "replace") if isinstance(v, bytes) else v)
                   for k, v in row.items()}
            yield path, number, 0, row, row

    def _json_map(self, path):
        with FileSystems.open(path) as f:
            mapping = json.loads(decode(f.read(), self._spec.encoding), object_pairs_hook=_Pairs)
        key, value = self._spec.columns
        for number, (k, v) in enumerate(mapping.pairs, start=1):  # a repeated key too
            cell = " ".join(str(x) for x in v) if isinstance(v, list) else str(v)
            yield path, number, 0, {key: str(k), value: cell}, f"{k}: {v}"


class ParseRow(beam.DoFn):
    """(path, line, sub, row, raw) -> (order key, example features), joining the side tables;
    the `unmatched` output names the optional join each example's row found no match in."""

    def __init__(self, config: DatasetConfig):
        self._config = config
        self._time_range = None

    def setup(self):
        self._time_range = timestamp_range(self._config)  # now + 1 day: when the run starts

    def process(self, element, *tables) -> Iterable:
        path, number, sub, row, raw = element
        unmatched = []
        try:
            row = {**row, LINE_COLUMN: number}
            parsed = parse_row(join(row, tables, self._config, unmatched), self._config,
                               self._time_range)
            if self._config.file_field:
                parsed[self._config.file_field] = file_name(path)
        except BadRow as err:
            yield beam.pvalue.TaggedOutput("bad", _bad(path, number, err, raw))
            return
        yield (path, number, sub), parsed
        for index in unmatched:
            spec = self._config.joins[index]
            yield beam.pvalue.TaggedOutput("unmatched", f"joins[{index}] {spec.files[0]}")


def file_name(path: str) -> str:
    """The base name of a local or remote (gs://...) path: what `file_field` holds."""
    return path.replace("\\", "/").rsplit("/", 1)[-1]


def _first_row(rows):
    return min(rows, key=lambda r: r[0])


DIGEST_BYTES = 20  # sha1
BUCKET_BYTES = 2  # rows are grouped by the first two bytes of their digest: 65,536 groups


class RowDigest:
    """element -> (bucket, digest + the element pickled, its file as an index into `files`).

    The rows wait for the grouping as bytes, in 65,536 buckets rather than one group per row:
    the in-process runner holds every grouped value as a Python object and every group as a key
    and a list, which took about 1 KB per row (20M rows did not fit in 24 GB)."""

    def __init__(self, files: Sequence[str]):
        self._index = {path: i for i, path in enumerate(files)}

    def __call__(self, element) -> Tuple[bytes, bytes]:
        digest = hashlib.sha1(_canonical(element[3]).encode("utf-8")).digest()
        return digest[:BUCKET_BYTES], digest + pickle.dumps(
            (self._index[element[0]], *element[1:]), pickle.HIGHEST_PROTOCOL)


def _canonical(row: Dict[str, Any]) -> str:
    return json.dumps(row, sort_keys=True, default=repr)


class Dedupe(beam.DoFn):
    """(bucket, RowDigest values) -> the first of every set of identical rows (by file, line),
    and, when not `drop`, the others too; each row that repeats an earlier one goes to
    `duplicate`. `files` is the list RowDigest indexed."""

    def __init__(self, drop: bool, files: Sequence[str]):
        self._drop = drop
        self._files = list(files)

    def _row(self, value: bytes):
        index, *rest = pickle.loads(value[DIGEST_BYTES:])
        return (self._files[index], *rest)

    def process(self, element) -> Iterable:
        by_digest = {}
        for value in element[1]:
            by_digest.setdefault(value[:DIGEST_BYTES], []).append(value)
        for values in by_digest.values():
            if len(values) == 1:  # the usual case: a unique digest is a unique row
                yield self._row(values[0])
                continue
            seen = set()
            for row in sorted(map(self._row, values), key=lambda r: r[:3]):
                cells = _canonical(row[3])
                if cells in seen:
                    yield beam.pvalue.TaggedOutput("duplicate", row[0])
                    if self._drop:
                        continue
                seen.add(cells)
                yield row


class KeyedTable(beam.DoFn):
    """(key, side-table rows) -> (key, the first row's cells, by file and line). A repeated key
    with the same cells is counted (`identical` output); with other cells it is quarantined as
    `duplicate_key`, as is a row with an empty key."""

    def __init__(self, spec: TableSpec):
        self._spec = spec

    def process(self, element) -> Iterable:
        key, rows = element
        rows = sorted(rows, key=lambda r: r[:3])
        if not key:
            for path, number, _, _, raw in rows:
                yield beam.pvalue.TaggedOutput("bad", _bad(path, number, BadRow(
                    "empty_id", f"{self._spec.key} is empty"), raw))
            return
        first = rows[0]
        yield key, first[3]
        for path, number, _, cells, raw in rows[1:]:
            if cells == first[3]:
                yield beam.pvalue.TaggedOutput("identical", path)
            else:
                yield beam.pvalue.TaggedOutput("bad", _bad(path, number, BadRow(
                    "duplicate_key", f"{self._spec.key}={key[:40]!r} is also at line {first[1]} "
                                     f"of {first[0]}, with other values"), raw))


class SampleNegatives(beam.DoFn):
    """(user, [(order, features)]) -> negatives: per positive, `n` items the user never had, with
    the item's own features and the positive's other fields. Items are drawn
    - `popularity`: in proportion to their positives (every item keeps about as many negatives as
      positives, so item frequency says nothing about the label);
    - `matched`: uniformly among the MATCH_WINDOW items on either side of the positive's item in
      the popularity ranking (as `popularity`, and each user's negatives fall on items as
      popular as their positives, so a user's label rate is the same on old and new items);
    - `uniform`: uniformly over all items;
    - `din` (the DIN convention, one per positive): uniformly over all items, each positive's
      draw seeded by (seed, user, item, timestamp, repeat), so it does not depend on the
      user's other rows or on how the log is sharded into files."""

    MAX_TRIES = 1000  # then draw uniformly among the items the user never had
    MATCH_WINDOW = 50

    def __init__(self, config: DatasetConfig):
        self._n = config.negatives_per_positive
        self._seed = config.negative_seed
        self._popularity = config.negative_sampling == "popularity"
        self._matched = config.negative_sampling == "matched"
        self._din = config.negative_sampling == "din"
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
        repeats = {}
        for order, features in sorted(positives, key=lambda p: p[0]):
            if self._din:
                key = (features["item_id"], features["timestamp"])
                repeats[key] = repeats.get(key, -1) + 1
                rng = np.random.default_rng([self._seed, _digest(user, *key, repeats[key])])
            for k in range(self._n):
                index = self._draw(rng, seen, features["item_id"])
                yield (*order, "negative", k), {**features, **self._features[index], "label": 0}


def _digest(*parts) -> int:
    """A 128-bit integer of the parts (a seed that no file order can change)."""
    text = "\x00".join(str(p) for p in parts).encode("utf-8")
    return int.from_bytes(hashlib.sha256(text).digest()[:16], "little")


class AddHistory(beam.DoFn):
    """(user, [(order, features)]) -> (order, features + the user-history features)."""

    def __init__(self, spec):
        self._spec = spec

    def process(self, element) -> Iterable:
        _, rows = element
        yield from history.user_histories(list(rows), self._spec)


def _to_example(features: Dict[str, Any]) -> bytes:
    return example_io.to_example(features).SerializeToString()


def _read(pipeline, spec: TableSpec, files: Sequence[str], label: str):
    return (pipeline | f"Files[{label}]" >> beam.Create(files)
            | f"Spread[{label}]" >> beam.Reshuffle()
            | f"Read[{label}]" >> beam.ParDo(ReadTable(spec)).with_outputs("bad", main="rows"))


@beam.ptransform_fn
def ReadClickLog(pipeline: beam.Pipeline, config: DatasetConfig, input_base: str):
    """-> (serialized tf.Examples, quarantine records as dicts, stats dict (one element)).

    `config` must come from `resolve` (column names known). Besides the quarantine, the stats
    count what is read but does not become an example, or is kept as it is: `duplicate_files`
    (read once), `duplicate_rows` (exact repeats of an earlier log row; `dropped_duplicates` of
    them dropped when `config.dedupe`), `identical_side_rows` (a side-table key repeated with the
    same cells; conflicting ones are quarantined as `duplicate_key`), `unmatched` (examples per
    optional join whose key was not in the side table: their side columns are empty)."""
    bad = []
    tables = []
    identical = []
    repeats = 0
    for i, spec in enumerate(config.joins):
        files, repeated = matched_files(input_base, spec)
        repeats += len(repeated)
        read = _read(pipeline, spec, files, f"join{i}")
        bad.append(read.bad)
        keyed = (read.rows
                 | f"Key[join{i}]" >> beam.Map(lambda r, key=spec.key: (
                     "" if r[3].get(key) is None else str(r[3][key]).strip(), r))
                 | f"Group[join{i}]" >> beam.GroupByKey()
                 | f"First[join{i}]" >> beam.ParDo(KeyedTable(spec)).with_outputs(
                     "bad", "identical", main="rows"))
        bad.append(keyed.bad)
        identical.append(keyed.identical)
        tables.append(beam.pvalue.AsDict(keyed.rows))
    files, repeated = matched_files(input_base, config.log)
    repeats += len(repeated)
    log = _read(pipeline, config.log, files, "log")
    bad.append(log.bad)
    deduped = (log.rows | "Digest" >> beam.Map(RowDigest(files)) | "GroupRows" >> beam.GroupByKey()
               | "Dedupe" >> beam.ParDo(Dedupe(config.dedupe, files)).with_outputs(
                   "duplicate", main="rows"))
    parsed = deduped.rows | "Parse" >> beam.ParDo(ParseRow(config), *tables).with_outputs(
        "bad", "unmatched", main="examples")
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
    examples = outputs | "AllExamples" >> beam.Flatten()
    if config.history:  # after the negatives, which take their positive's time
        examples = (examples | "ByUserForHistory" >> beam.Map(lambda kv: (kv[1]["user_id"], kv))
                    | "GroupUsersForHistory" >> beam.GroupByKey()
                    | "History" >> beam.ParDo(AddHistory(config.history)))
    examples = examples | "ToExample" >> beam.Map(lambda kv: _to_example(kv[1]))
    quarantine = bad | "AllBad" >> beam.Flatten()

    def count(pcoll, name):
        return (pcoll | f"Count[{name}]" >> beam.combiners.Count.Globally()
                | f"Name[{name}]" >> beam.Map(lambda n, name=name: (name, n)))

    def per_key(pcoll, name):
        return beam.pvalue.AsSingleton(
            pcoll | f"Key[{name}]" >> beam.Map(lambda key: (key, 1))
            | f"Sum[{name}]" >> beam.CombinePerKey(sum)
            | f"Dict[{name}]" >> beam.combiners.ToDict())

    side_identical = identical | "AllIdentical" >> beam.Flatten(pipeline=pipeline.pipeline)
    counts = ([count(positives, "positives"), count(quarantine, "quarantined"),
               count(deduped.duplicate, "duplicates"), count(side_identical, "identical")]
              + ([count(outputs[1], "negatives")] if len(outputs) > 1 else []))
    drop = config.dedupe

    def stats_of(c, by_reason, unmatched):
        dropped = c.get("duplicates", 0) if drop else 0
        return {"rows": c.get("positives", 0) + c.get("quarantined", 0) + dropped,
                "examples": c.get("positives", 0) + c.get("negatives", 0),
                "negatives": c.get("negatives", 0), "quarantined": c.get("quarantined", 0),
                "by_reason": dict(sorted(by_reason.items())),
                "duplicate_files": repeats, "duplicate_rows": c.get("duplicates", 0),
                "dropped_duplicates": dropped, "identical_side_rows": c.get("identical", 0),
                "unmatched": dict(sorted(unmatched.items()))}

    stats = ((counts | "Counts" >> beam.Flatten() | "CountDict" >> beam.combiners.ToDict())
             | "Stats" >> beam.Map(stats_of, by_reason=per_key(
                 quarantine | "Reason" >> beam.Map(lambda r: r["reason"]), "reasons"),
                 unmatched=per_key(parsed.unmatched, "unmatched")))
    return examples, quarantine, stats
