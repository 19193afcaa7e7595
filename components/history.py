"""User-history features (issue 14, spec aqcl.md 2.3): pure functions, no Beam.

With `history: {length, unit, fields}` in the data set's config, every example gets the user's
positive (label 1) rows strictly before it in time, oldest first, newest last, the newest
`length` of them:
- `hist_item_id`: their item ids (Transform maps them with the item_id vocabulary, + 1; 0 pads);
- `hist_<field>`: the same rows' value of each categorical item field in `fields`;
- `hist_len`: how many such rows there are, before the cap.
"Before" compares timestamps (`unit: event`) or UTC days (`unit: day`, Ta Feng: earlier days), so
rows at the same time as the example (its own, its basket's, its sampled negatives) are not in
its history. Earlier rows that share a time keep the order of their order key (file, line,
position). Negatives never enter a history; a sampled negative has its positive's timestamp and
so its positive's history. Every row counts, so an item bought twice is in a history twice.
"""
import bisect
from typing import Any, Dict, List, Sequence, Tuple

from components.log_config import HistorySpec

ITEM_ID = "item_id"
HIST_LEN = "hist_len"
DAY = 86400  # seconds


def hist_name(field: str) -> str:
    return f"hist_{field}"


def feature_names(spec: HistorySpec) -> List[str]:
    """The history features, in the order the model's feature config lists them."""
    return [hist_name(ITEM_ID), *(hist_name(f) for f in spec.fields), HIST_LEN]


def time_key(timestamp: int, unit: str) -> int:
    return timestamp // DAY if unit == "day" else timestamp


def user_histories(rows: Sequence[Tuple[Any, Dict[str, Any]]],
                   spec: HistorySpec) -> List[Tuple[Any, Dict[str, Any]]]:
    """One user's examples [(order key, features)] -> the same, in the same order, with the
    history features added. The order key breaks ties in time between positives."""
    positives = sorted(((time_key(f["timestamp"], spec.unit), order, f) for order, f in rows
                        if f["label"] == 1), key=lambda p: p[:2])
    times = [t for t, _, _ in positives]
    columns = {hist_name(name): [f[name] for _, _, f in positives]
               for name in (ITEM_ID, *spec.fields)}
    out = []
    for order, features in rows:
        earlier = bisect.bisect_left(times, time_key(features["timestamp"], spec.unit))
        start = max(0, earlier - spec.length)
        out.append((order, {**features, **{name: values[start:earlier]
                                           for name, values in columns.items()},
                            HIST_LEN: earlier}))
    return out


def reference_histories(rows: Sequence[Dict[str, Any]], spec: HistorySpec) -> List[Dict[str, Any]]:
    """The history features of every row of a whole log (dicts with user_id, item_id, timestamp,
    label and the `fields`), by direct search; ties in time keep the list order. The
    specification of `user_histories` (tests compare the Beam step with it)."""
    out = []
    for row in rows:
        when = time_key(row["timestamp"], spec.unit)
        earlier = [r for r in rows if r["user_id"] == row["user_id"] and r["label"] == 1
                   and time_key(r["timestamp"], spec.unit) < when]
        earlier.sort(key=lambda r: time_key(r["timestamp"], spec.unit))  # stable
        kept = earlier[-spec.length:]
        out.append({**{hist_name(name): [r[name] for r in kept]
                       for name in (ITEM_ID, *spec.fields)}, HIST_LEN: len(earlier)})
    return out
