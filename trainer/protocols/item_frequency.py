"""`item_frequency`: item cold-start phases (CSDM and its baselines, csdm_and_baselines.md 1.5;
EmerG, emerg.md 2.3).

view `final` is exactly the split of `components/item_split.py` (it calls it): old items
(count > N) pretrain on `base`; each new item (3K <= count <= N) gives its first K rows in time
order to warm_a, warm_b and warm_c and the rest to `test`; rarer items go to `dropped`.
Stages: cold (no adaptation), then warm_a, warm_b, warm_c, each training the item-ID table on
its split before the test split is evaluated again; the slice is the phase (the stage name).

view `tuning` (EmerG App. B, emerg.md 2.5): `holdout_fraction` of the old items, drawn with
`seed`, play the new items: their rows, in time order, go to warm_a/b/c/test as new items' rows
do; `base` keeps the other old items' rows only. The real new items' rows are written nowhere
(stats `withheld`), so tuning never sees them. The final run puts everything back.
"""
import json
import random
from fractions import Fraction
from typing import Any, Dict, List, Mapping, Sequence

import apache_beam as beam

from components import item_split
from trainer.protocols import Protocol, SplitResult, Stage, register

TUNING_STATS = ("base", "warm_a", "warm_b", "warm_c", "test", "dropped", "withheld")


def holdout_items(old_items: Sequence, fraction: float, seed: int) -> List:
    """round(fraction * #old) old items (halves up), drawn with `seed` from the sorted old items:
    the same set whatever the input order. Items are str (pure) or bytes (Beam): UTF-8 bytes sort
    as their strings do, so both draw the same items."""
    ordered = sorted(old_items)
    n = int(Fraction(str(fraction)) * len(ordered) + Fraction(1, 2))
    return sorted(random.Random(seed).sample(ordered, n))


@register("item_frequency")
class ItemFrequency(Protocol):
    defaults = {"N": 200, "K": 20, "view": "final", "holdout_fraction": 0.2, "seed": 0}
    choices = {"view": ("final", "tuning")}
    bounds = {"N": (1, None), "K": (1, None), "holdout_fraction": (0.0, 1.0)}
    splits = item_split.SPLITS
    pretrain_split = "base"
    validation_split = None  # the tuning view is this protocol's validation
    eval_split = "test"
    slice_features = ("phase",)
    row_features = ("count",)
    model_features = ("count",)

    @classmethod
    def check(cls, params) -> None:
        item_split.check_params(params["N"], params["K"])

    def stages(self) -> List[Stage]:
        return [Stage("cold")] + [Stage(name, adapt_split=name, trains="item_table")
                                  for name in item_split.WARM_SPLITS]

    def split(self, rows: Sequence[Mapping[str, Any]]) -> SplitResult:
        """rows: dicts with item_id, timestamp (and user_id for the tuning view)."""
        N, K = self.params["N"], self.params["K"]
        counts: Dict[Any, int] = {}
        for row in rows:
            counts[row["item_id"]] = counts.get(row["item_id"], 0) + 1
        if self.params["view"] == "final":
            splits = item_split.split_log([(r["item_id"], r["timestamp"]) for r in rows], N, K)
            stats = _final_stats(counts, splits, N, K)
            return SplitResult(list(splits), [{"count": counts[r["item_id"]]} for r in rows], stats)
        holdout = set(holdout_items([i for i, c in counts.items() if c > N],
                                    self.params["holdout_fraction"], self.params["seed"]))
        out: List[Any] = [None] * len(rows)
        pseudo_new: Dict[Any, List[int]] = {}
        for index, row in enumerate(rows):
            group = _tuning_group(row["item_id"], counts, holdout, N, K)
            if group == "new":
                pseudo_new.setdefault(row["item_id"], []).append(index)
            else:
                out[index] = {"old": "base", "dropped": "dropped", "withheld": None}[group]
        for indices in pseudo_new.values():
            # time, then user id: the order of the Beam split (item_split._SplitNewItem)
            indices.sort(key=lambda i: (rows[i]["timestamp"], rows[i]["user_id"]))
            for index, name in zip(indices, item_split.new_item_splits(len(indices), K)):
                out[index] = name
        features = [{} if s is None else {"count": counts[r["item_id"]]} for r, s in zip(rows, out)]
        counted = {name: sum(1 for s in out if s == name) for name in item_split.SPLITS}
        counted["withheld"] = out.count(None)
        for item in counts:
            key = _tuning_group(item, counts, holdout, N, K) + "_items"
            counted[key] = counted.get(key, 0) + 1
        return SplitResult(out, features, self._tuning_stats(counted))

    def _tuning_stats(self, counted: Dict[str, int]) -> Dict[str, Any]:
        """counted: rows per split (and `withheld`), items per group (`<group>_items`)."""
        stats = {name: int(counted.get(name, 0)) for name in TUNING_STATS}
        stats.update({"old_items": counted.get("old_items", 0),
                      "holdout_items": counted.get("new_items", 0),
                      "new_items": counted.get("withheld_items", 0),
                      "dropped_items": counted.get("dropped_items", 0)})
        stats.update({key: self.params[key] for key in ("N", "K", "view", "holdout_fraction", "seed")})
        return stats

    def beam_split(self):
        if self.params["view"] == "final":
            return item_split.ItemFrequencySplit(self.params["N"], self.params["K"])  # pylint: disable=no-value-for-parameter
        return _TuningSplit(self)  # pylint: disable=no-value-for-parameter


def _final_stats(counts: Mapping[Any, int], splits: Sequence[str], N: int, K: int) -> Dict[str, Any]:
    """The statistics ItemFrequencySplit writes (same keys and values)."""
    groups = [item_split.item_group(c, N, K) for c in counts.values()]
    stats = {name: list(splits).count(name) for name in item_split.SPLITS}
    stats.update({f"{g}_items": groups.count(g) for g in ("old", "new", "dropped")})
    stats.update({"N": N, "K": K})
    return stats


def _tuning_group(item, counts, holdout, N: int, K: int) -> str:
    """'old' (pretrains), 'new' (a held-out old item), 'dropped', or 'withheld' (a real new item)."""
    group = item_split.item_group(counts[item], N, K)
    if group == "old":
        return "new" if item in holdout else "old"
    return "withheld" if group == "new" else "dropped"


class _RouteTuning(beam.DoFn):
    def __init__(self, N: int, K: int):
        self._N, self._K = N, K

    def process(self, element, counts, holdout):
        item, record = element
        group = _tuning_group(item, counts, holdout, self._N, self._K)
        if group == "new":
            yield beam.pvalue.TaggedOutput("new", element)
        elif group == "withheld":
            yield beam.pvalue.TaggedOutput("withheld", record)
        else:
            yield beam.pvalue.TaggedOutput("base" if group == "old" else "dropped",
                                           record + item_split.count_feature(counts[item]))


@beam.ptransform_fn
def _TuningSplit(examples: beam.PCollection, protocol: ItemFrequency):
    """The tuning view in Beam: ItemFrequencySplit with the held-out old items routed as new
    (through the same per-item split, item_split._SplitNewItem) and real new items withheld."""
    N, K = protocol.params["N"], protocol.params["K"]
    fraction, seed = protocol.params["holdout_fraction"], protocol.params["seed"]
    keyed, counts = examples | "KeyAndCount" >> item_split.KeyAndCountItems()  # pylint: disable=no-value-for-parameter
    holdout = (counts | "OldItems" >> beam.Filter(lambda kv: kv[1] > N) | "Keys" >> beam.Keys()
               | "AllOld" >> beam.combiners.ToList()
               | "Holdout" >> beam.Map(lambda items: frozenset(holdout_items(items, fraction, seed))))
    routed = keyed | "Route" >> beam.ParDo(
        _RouteTuning(N, K), beam.pvalue.AsDict(counts), beam.pvalue.AsSingleton(holdout)
    ).with_outputs("base", "dropped", "new", "withheld")
    new_rows = (routed.new | "GroupNewItems" >> beam.GroupByKey()
                | "SplitNewItems" >> beam.ParDo(item_split._SplitNewItem(K))  # pylint: disable=protected-access
                .with_outputs(*item_split.WARM_SPLITS, "test"))
    out = {"base": routed.base, "dropped": routed.dropped,
           **{name: new_rows[name] for name in (*item_split.WARM_SPLITS, "test")}}
    row_counts = [rows | f"Count[{name}]" >> beam.combiners.Count.Globally()
                  | f"Name[{name}]" >> beam.Map(lambda n, name=name: (name, n))
                  for name, rows in (*out.items(), ("withheld", routed.withheld))]
    groups = (counts | "Group" >> beam.Map(
        lambda kv, holdout: _tuning_group(kv[0], {kv[0]: kv[1]}, holdout, N, K),
        beam.pvalue.AsSingleton(holdout))
        | "Ones" >> beam.Map(lambda g: (g + "_items", 1)) | "CountGroups" >> beam.CombinePerKey(sum))
    stats = ((*row_counts, groups) | "AllStats" >> beam.Flatten() | "ToDict" >> beam.combiners.ToDict()
             | "Complete" >> beam.Map(lambda d: json.dumps(protocol._tuning_stats(d), sort_keys=True)))  # pylint: disable=protected-access
    return out, stats
