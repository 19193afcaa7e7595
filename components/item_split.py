"""The item-frequency split (spec csdm_and_baselines.md section 1.5), as pure functions and Beam.

counts[i] = rows of item i in the whole log.
  count > N        -> old item: every row to `base`;
  3K <= count <= N -> new item: rows in time order, K each to warm_a, warm_b, warm_c, rest to test;
  count < 3K       -> `dropped` (kept as a split so that analyzers see the whole log, and counted).
Every row gains the feature `count` (the item's total count; it leaks future popularity, as in
the reference protocol, spec D17).
"""
import functools
import json
from typing import Dict, List, Sequence, Tuple

import apache_beam as beam
import tensorflow as tf

SPLITS = ("base", "warm_a", "warm_b", "warm_c", "test", "dropped")
WARM_SPLITS = ("warm_a", "warm_b", "warm_c")


def item_group(count: int, N: int, K: int) -> str:
    """'old', 'new' or 'dropped' for an item seen `count` times."""
    if count > N:
        return "old"
    if 3 * K <= count:
        return "new"
    return "dropped"


def new_item_splits(n_rows: int, K: int) -> List[str]:
    """Split names of a new item's rows, given in time order."""
    return [WARM_SPLITS[i // K] if i < 3 * K else "test" for i in range(n_rows)]


def check_params(N: int, K: int) -> None:
    if K < 1 or 3 * K > N:
        raise ValueError(f"need K >= 1 and 3K <= N, got N={N}, K={K}: no item could be new")


def split_log(rows: Sequence[Tuple[str, int]], N: int, K: int) -> List[str]:
    """Reference implementation on an in-memory log of (item_id, timestamp) rows.

    Returns the split of every row. Ties in time keep the input order. Used by tests and as the
    specification of the Beam version.
    """
    check_params(N, K)
    counts: Dict[str, int] = {}
    for item, _ in rows:
        counts[item] = counts.get(item, 0) + 1
    out = [""] * len(rows)
    by_item: Dict[str, List[int]] = {}
    for index, (item, _) in enumerate(rows):
        group = item_group(counts[item], N, K)
        if group == "new":
            by_item.setdefault(item, []).append(index)
        else:
            out[index] = "base" if group == "old" else "dropped"
    for indices in by_item.values():
        indices.sort(key=lambda i: rows[i][1])
        for index, split in zip(indices, new_item_splits(len(indices), K)):
            out[index] = split
    return out


def _key(example: tf.train.Example) -> Tuple[int, bytes]:
    """(timestamp, user id): the order of a new item's rows; ties go by user id."""
    feature = example.features.feature
    return feature["timestamp"].int64_list.value[0], feature["user_id"].bytes_list.value[0]


@functools.lru_cache(maxsize=4096)
def count_feature(count: int) -> bytes:
    """A serialized Example holding only `count`. Appended to a serialized Example it adds (or
    replaces) the feature: protobuf parses concatenated messages as one merged message, and a
    map entry given twice keeps the last. Saves a parse and a re-serialisation per row."""
    example = tf.train.Example()
    example.features.feature["count"].int64_list.value.append(count)
    return example.SerializeToString()


def _keyed_by_item(record: bytes) -> Tuple[bytes, bytes]:
    item = tf.train.Example.FromString(record).features.feature["item_id"].bytes_list.value[0]
    return item, record


@beam.ptransform_fn
def KeyAndCountItems(examples: beam.PCollection):
    """Serialized tf.Examples -> ((item, record) pairs, (item, rows of the item) counts); each
    record is parsed once, here."""
    keyed = examples | "KeyByItem" >> beam.Map(_keyed_by_item)
    counts = keyed | "Items" >> beam.Keys() | "CountItems" >> beam.combiners.Count.PerElement()
    return keyed, counts


class _SplitNewItem(beam.DoFn):
    def __init__(self, K: int):
        self._K = K

    def process(self, element):
        _, records = element
        ordered = sorted(records, key=lambda r: _key(tf.train.Example.FromString(r)))
        suffix = count_feature(len(ordered))
        for record, split in zip(ordered, new_item_splits(len(ordered), self._K)):
            yield beam.pvalue.TaggedOutput(split, record + suffix)


class _RouteByCount(beam.DoFn):
    def __init__(self, N: int, K: int):
        self._N, self._K = N, K

    def process(self, element, counts):
        item, record = element
        count = counts[item]
        group = item_group(count, self._N, self._K)
        if group == "new":
            yield beam.pvalue.TaggedOutput("new", element)
        else:
            yield beam.pvalue.TaggedOutput("base" if group == "old" else "dropped",
                                           record + count_feature(count))


@beam.ptransform_fn
def ItemFrequencySplit(examples: beam.PCollection, N: int, K: int):
    """Serialized tf.Examples -> {split: serialized tf.Examples with `count`}, plus `stats`.

    Old and dropped items stream through; only the rows of new items (at most N per item) are
    grouped, so memory per worker is bounded by N rows. Rows travel between steps serialized and
    are parsed once for their item (new items' rows once more, to be ordered): the in-process
    DirectRunner keeps whole PCollections in memory.
    """
    check_params(N, K)
    keyed, counts = examples | "KeyAndCount" >> KeyAndCountItems()  # pylint: disable=no-value-for-parameter
    routed = keyed | "Route" >> beam.ParDo(_RouteByCount(N, K), beam.pvalue.AsDict(counts)) \
        .with_outputs("base", "dropped", "new")
    new_rows = (routed.new | "GroupNewItems" >> beam.GroupByKey()
                | "SplitNewItems" >> beam.ParDo(_SplitNewItem(K)).with_outputs(*WARM_SPLITS, "test"))
    out = {"base": routed.base, "dropped": routed.dropped,
           **{name: new_rows[name] for name in (*WARM_SPLITS, "test")}}

    row_counts = [out[name] | f"Count[{name}]" >> beam.combiners.Count.Globally()
                  | f"Name[{name}]" >> beam.Map(lambda n, name=name: (name, n)) for name in SPLITS]
    item_counts = (counts | "Group" >> beam.Map(lambda kv: (item_group(kv[1], N, K) + "_items", 1))
                   | "CountGroups" >> beam.CombinePerKey(sum))
    stats = ((*row_counts, item_counts) | "AllStats" >> beam.Flatten()
             | "ToDict" >> beam.combiners.ToDict()
             | "Complete" >> beam.Map(_complete_stats, N=N, K=K))
    return out, stats


def _complete_stats(stats: Dict[str, int], N: int, K: int) -> str:
    full = {name: int(stats.get(name, 0)) for name in SPLITS}
    full.update({key: int(stats.get(key, 0)) for key in ("old_items", "new_items", "dropped_items")})
    full.update({"N": N, "K": K})
    return json.dumps(full, sort_keys=True)
