"""`leave_last_out`: per-user leave-last-out, judged overall and per user-activeness group (AQCL,
aqcl.md 2.2 and 2.4).

Per user, in time order: the rows of the last time unit are `test`, those of the unit before are
`validation`, the rest `train`. The unit is
- `event`: one distinct timestamp (Amazon: the position in the user's sequence). Rows that share
  a timestamp stay together: a positive and its sampled negatives, or two clicks in one second;
- `day`: one UTC day, timestamp // 86400 (Ta Feng; per user, the natural reading of 2.2).
The history length L of a user is the number of their `train` rows that are positives
(`history: positives`, the click history of 2.3/2.4) or all their `train` rows (`history: rows`).
Users are grouped by L with cut points taken over all users (L = 0 for a user without `train`
rows: "sort the users", each by the L of its test sample, 2.4), at the `cut_low` and `cut_high`
percentiles (nearest rank: the smallest L that at least p % of the users do not exceed); ties go to
the lower group (2.4):
  L <= c_low -> non_active;  c_low < L <= c_high -> slightly_active;  L > c_high -> highly_active.
Users without `train` rows (one or two units) are kept, with L = 0 (so in non_active), and
counted (`users_without_history`, of which `users_test_only` have a test unit only). They are the
least active users, the ones the groups exist to measure (aqcl.md 12.2 leaves this open); dropping
them would remove exactly the coldest users from the evaluation. On Ta Feng by day they are 56 %
of the users, and counting them in the percentiles is what gives groups of about 60/30/10 %.
Every row gains the feature `user_group`; the slice is the group, plus `overall`.

view `tuning` (issue 17; AQCL chooses w1, w2 and w on validation data, aqcl.md 9 eq. 7 and 10):
the same split of the log without each user's test unit. Per user, the last unit is written
nowhere (stats `withheld`), the second-to-last (the final view's validation) is `test`, the one
before `validation`, the rest `train`; a user with one unit has no row in this view
(`users_withheld`). L and the groups are computed as above on this view's own `train` rows, over
the users it holds. So the tuning view of a log is the final view of the log without its final
test rows, and tuning never reads them.
"""
import json
import math
from fractions import Fraction
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import apache_beam as beam
import tensorflow as tf

from trainer.protocols import Protocol, SplitResult, Stage, register

GROUPS = ("non_active", "slightly_active", "highly_active")
SPLITS = ("train", "validation", "test")
DAY_SECONDS = 86400


def unit_of(timestamp: int, unit: str) -> int:
    return timestamp if unit == "event" else timestamp // DAY_SECONDS


def user_splits(units: Sequence[int], skip: int = 0) -> List[Optional[str]]:
    """The split of each of one user's rows, given the time unit of each row; the last `skip`
    units are written nowhere (None; the tuning view skips 1)."""
    distinct = sorted(set(units), reverse=True)
    last = {unit: name for unit, name in zip(distinct[skip:], ("test", "validation"))}
    return [None if u in distinct[:skip] else last.get(u, "train") for u in units]


def cut_values(histogram: Mapping[int, int], cut_low: float, cut_high: float) -> Tuple[int, int]:
    """Nearest-rank percentiles of L over users: histogram {L: users}. (0, 0) without users."""
    n = sum(histogram.values())
    if n == 0:
        return 0, 0
    out = []
    for p in (cut_low, cut_high):
        rank = math.ceil(Fraction(str(p)) * n / 100)  # exact: 0.6 * 5 is not 3 in floats
        seen = 0
        for length in sorted(histogram):
            seen += histogram[length]
            if seen >= rank:
                out.append(length)
                break
    return out[0], out[1]


def group_of(length: int, cuts: Tuple[int, int]) -> str:
    return GROUPS[0] if length <= cuts[0] else GROUPS[1] if length <= cuts[1] else GROUPS[2]


def _history(splits: Sequence[str], labels: Sequence[int], history: str) -> int:
    return sum(1 for s, y in zip(splits, labels) if s == "train" and (history == "rows" or y == 1))


def _user_stats(splits: Sequence[Optional[str]], group: str) -> Dict[str, int]:
    """One user's contribution to the statistics (None: a row withheld by the tuning view)."""
    withheld = sum(1 for name in splits if name is None)
    splits = [name for name in splits if name is not None]
    if not splits:
        return {"users_withheld": 1, "withheld": withheld}
    stats = {"users": 1, f"users_{group}": 1, **({"withheld": withheld} if withheld else {})}
    if "train" not in splits:
        stats["users_without_history"] = 1
        if "validation" not in splits:
            stats["users_test_only"] = 1
    for name in splits:
        stats[name] = stats.get(name, 0) + 1
        stats[f"{name}_{group}"] = stats.get(f"{name}_{group}", 0) + 1
    return stats


def _add(total: Dict[str, int], part: Mapping[str, int]) -> Dict[str, int]:
    for key, value in part.items():
        total[key] = total.get(key, 0) + value
    return total


@register("leave_last_out")
class LeaveLastOut(Protocol):
    defaults = {"unit": "event", "cut_low": 60.0, "cut_high": 90.0, "history": "positives",
                "view": "final"}
    choices = {"unit": ("event", "day"), "history": ("positives", "rows"),
               "view": ("final", "tuning")}
    bounds = {"cut_low": (0.0, 100.0), "cut_high": (0.0, 100.0)}
    splits = SPLITS
    pretrain_split = "train"
    validation_split = "validation"
    eval_split = "test"
    slice_features = ("user_group",)
    slice_values = GROUPS
    row_features = ("user_group",)

    @classmethod
    def check(cls, params) -> None:
        if not 0 < params["cut_low"] < params["cut_high"] <= 100:
            raise ValueError(f"need 0 < cut_low < cut_high <= 100, got "
                             f"{params['cut_low']}, {params['cut_high']}")

    def stages(self) -> List[Stage]:
        return [Stage("overall")]

    def _stats(self, per_user: Sequence[Dict[str, int]], cuts: Tuple[int, int]) -> Dict[str, Any]:
        stats = {key: 0 for key in ("users", "users_without_history", "users_test_only", *SPLITS,
                                    *(f"users_{g}" for g in GROUPS),
                                    *(f"{s}_{g}" for s in SPLITS for g in GROUPS),
                                    *(("withheld", "users_withheld")
                                      if self.params["view"] == "tuning" else ()))}
        for part in per_user:
            _add(stats, part)
        stats.update({"cut_low_value": cuts[0], "cut_high_value": cuts[1], **self.params})
        return stats

    def split(self, rows: Sequence[Mapping[str, Any]]) -> SplitResult:
        """rows: dicts with user_id, timestamp, label."""
        unit, history = self.params["unit"], self.params["history"]
        by_user: Dict[Any, List[int]] = {}
        for index, row in enumerate(rows):
            by_user.setdefault(row["user_id"], []).append(index)
        out: List[Any] = [None] * len(rows)
        lengths: Dict[Any, int] = {}
        histogram: Dict[int, int] = {}
        skip = 1 if self.params["view"] == "tuning" else 0
        for user, indices in by_user.items():
            names = user_splits([unit_of(rows[i]["timestamp"], unit) for i in indices], skip)
            for index, name in zip(indices, names):
                out[index] = name
            if any(name is not None for name in names):  # a user of this view
                lengths[user] = _history(names, [rows[i]["label"] for i in indices], history)
                histogram[lengths[user]] = histogram.get(lengths[user], 0) + 1
        cuts = cut_values(histogram, self.params["cut_low"], self.params["cut_high"])
        groups = {user: group_of(length, cuts) for user, length in lengths.items()}
        per_user = [_user_stats([out[i] for i in by_user[u]], groups.get(u, "")) for u in by_user]
        return SplitResult(out, [{} if s is None else {"user_group": groups[r["user_id"]]}
                                 for r, s in zip(rows, out)], self._stats(per_user, cuts))

    def beam_split(self):
        return _LeaveLastOutSplit(self)  # pylint: disable=no-value-for-parameter


def _parse(record: bytes) -> Tuple[bytes, int, int]:
    feature = tf.train.Example.FromString(record).features.feature
    return (feature["user_id"].bytes_list.value[0], feature["timestamp"].int64_list.value[0],
            feature["label"].int64_list.value[0])


class _SplitUser(beam.DoFn):
    """(user, records) -> (L, [(split, record)])."""

    def __init__(self, unit: str, history: str, skip: int):
        self._unit, self._history, self._skip = unit, history, skip

    def process(self, element):
        _, records = element
        records = sorted(records)  # canonical order: the output does not depend on the input's
        parsed = [_parse(r) for r in records]
        names = user_splits([unit_of(t, self._unit) for _, t, _ in parsed], self._skip)
        if all(name is None for name in names):  # no row in the tuning view
            yield beam.pvalue.TaggedOutput("withheld", _user_stats(names, ""))
            return
        yield _history(names, [y for _, _, y in parsed], self._history), list(zip(names, records))


class _EmitWithGroup(beam.DoFn):
    def process(self, element, cuts):
        length, rows = element
        group = group_of(length, tuple(cuts))
        for name, record in rows:
            if name is None:  # withheld by the tuning view
                continue
            example = tf.train.Example.FromString(record)
            example.features.feature["user_group"].bytes_list.value[:] = [group.encode()]
            yield beam.pvalue.TaggedOutput(name, example.SerializeToString())
        yield beam.pvalue.TaggedOutput("stats", _user_stats([name for name, _ in rows], group))


@beam.ptransform_fn
def _LeaveLastOutSplit(examples: beam.PCollection, protocol: LeaveLastOut):
    """Groups rows per user (memory per worker: one user's rows), cuts over a histogram of L."""
    p = protocol.params
    skip = 1 if p["view"] == "tuning" else 0
    split_users = (examples | "ByUser" >> beam.Map(lambda r: (_parse(r)[0], r))
                   | "GroupUsers" >> beam.GroupByKey()
                   | "SplitUsers" >> beam.ParDo(_SplitUser(p["unit"], p["history"], skip))
                   .with_outputs("withheld", main="users"))
    per_user = split_users.users
    cuts = (per_user | "Lengths" >> beam.Map(lambda u: u[0])
            | "Histogram" >> beam.combiners.Count.PerElement()
            | "AllLengths" >> beam.combiners.ToDict()
            | "Cuts" >> beam.Map(lambda h: cut_values(h, p["cut_low"], p["cut_high"])))
    emitted = per_user | "Emit" >> beam.ParDo(
        _EmitWithGroup(), beam.pvalue.AsSingleton(cuts)).with_outputs(*SPLITS, "stats")
    totals = ((emitted.stats, split_users.withheld) | "AllStats" >> beam.Flatten()
              | "SumStats" >> beam.CombineGlobally(_sum))
    stats = totals | "Complete" >> beam.Map(
        lambda total, cuts: json.dumps(protocol._stats([total], tuple(cuts)), sort_keys=True),  # pylint: disable=protected-access
        beam.pvalue.AsSingleton(cuts))
    return {name: emitted[name] for name in SPLITS}, stats


def _sum(parts) -> Dict[str, int]:
    total: Dict[str, int] = {}
    for part in parts:
        _add(total, part)
    return total
