"""Evaluation protocols (trainer/protocols): parameters, each protocol's pure split on hand-built
logs with the expected rows written out, the Beam split against the pure one, and
ProtocolSplitGen against ItemSplitGen (same files) in a real TFX run."""
import gzip
import hashlib
import json
import os
import random
import tempfile
import unittest

import apache_beam as beam
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to
import tensorflow as tf
from tfx import v1 as tfx

from components import example_gen, example_io, log_config
from components.protocol_split import ProtocolSplitGen
from components.split_component import ItemSplitGen
from pipeline import beam_presets
from trainer import protocols
from trainer.protocols import leave_last_out, per_domain
import schemas

ML1M = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "datasets",
                    "ml-1m-users1-2999")
D = 86400


def rows_of(table, keys):
    return [dict(zip(keys, values)) for values in table]


def by_split(result, rows, name=lambda r: f"{r['user_id']}:{r['item_id']}"):
    """{split: sorted row names}, None (written nowhere) left out."""
    out = {}
    for row, split in zip(rows, result.splits):
        if split is not None:
            out.setdefault(split, []).append(name(row))
    return {k: sorted(v) for k, v in out.items()}


def run_beam(protocol, rows, decode):
    """Runs protocol.beam_split() on `rows` as tf.Examples and returns ({split: sorted decoded
    rows}, stats dict), read back from files."""
    out = tempfile.mkdtemp()
    examples = [example_io.to_example(r).SerializeToString() for r in rows]
    with test_pipeline.TestPipeline() as p:
        splits, stats = p | beam.Create(examples) | protocol.beam_split()
        for name in protocol.splits:
            _ = (splits[name] | f"Decode[{name}]" >> beam.Map(
                lambda r: json.dumps(decode(example_io.from_example(tf.train.Example.FromString(r)))))
                 | f"Write[{name}]" >> beam.io.WriteToText(os.path.join(out, name)))
        _ = stats | beam.io.WriteToText(os.path.join(out, "stats"))
    got = {}
    for name in protocol.splits:
        lines = [json.loads(line) for path in tf.io.gfile.glob(os.path.join(out, name) + "*")
                 for line in open(path)]
        got[name] = sorted(tuple(x) for x in lines)
    stats = [json.loads(line) for path in tf.io.gfile.glob(os.path.join(out, "stats*"))
             for line in open(path)]
    assert len(stats) == 1, stats
    return got, stats[0]


class RegistryTest(tf.test.TestCase):

    def test_three_protocols_with_roles_and_stages(self):
        self.assertEqual(sorted(protocols.PROTOCOLS), ["item_frequency", "leave_last_out",
                                                       "per_domain"])
        item = protocols.build("item_frequency", N=7, K=2)
        self.assertEqual((item.pretrain_split, item.validation_split, item.eval_split),
                         ("base", None, "test"))
        self.assertEqual([(s.name, s.adapt_split, s.trains) for s in item.stages()],
                         [("cold", None, None), ("warm_a", "warm_a", "item_table"),
                          ("warm_b", "warm_b", "item_table"), ("warm_c", "warm_c", "item_table")])
        self.assertEqual(item.slice_features, ("phase",))
        llo = protocols.build("leave_last_out")
        self.assertEqual((llo.pretrain_split, llo.validation_split, llo.slice_features),
                         ("train", "validation", ("user_group",)))
        domains = protocols.build("per_domain", cold_domains=["0"])
        self.assertEqual([(s.name, s.adapt_split, s.trains, s.adapt_where)
                          for s in domains.stages()],
                         [("pretrained", None, None, None),
                          ("adapted", "train", "domain", ("domain", ("0",)))])
        self.assertEqual(domains.slice_features, ("domain",))
        json.dumps(domains.describe())  # JSON-ready

    def test_parameters_are_checked_in_one_line(self):
        cases = [
            (("nope", {}), "unknown protocol 'nope'; known: item_frequency, leave_last_out"),
            (("item_frequency", {"M": 1}),
             r"^protocol item_frequency: unknown options \['M'\]; known: \['K', 'N', "),
            (("item_frequency", {"N": "200"}), "^protocol item_frequency: N takes an integer, not '200'$"),
            (("item_frequency", {"N": True}), "^protocol item_frequency: N takes an integer, not True$"),
            (("item_frequency", {"N": 5, "K": 2}), "3K <= N"),
            (("item_frequency", {"view": "val"}), "view must be final or tuning, not 'val'$"),
            (("item_frequency", {"holdout_fraction": 1.5}), "must be between 0 and 1, not 1.5$"),
            (("leave_last_out", {"cut_low": 90, "cut_high": 60}),
             "^protocol leave_last_out: need 0 < cut_low < cut_high"),
            (("per_domain", {"cold_domains": "music"}),
             "^protocol per_domain: cold_domains takes a list of strings, not 'music'$"),
            (("per_domain", {"cold_domains": ["music", 3]}), "takes a list of strings"),
            (("per_domain", {"files": {"*.csv": 1}}), "takes a mapping of strings to strings"),
            (("per_domain", {"assign": "files"}), "needs `files`"),
            (("per_domain", {"assign": "files", "files": {"*.csv": "dev"}}), r"unknown splits \['dev'\]"),
            (("per_domain", {"train_fraction": 0.9, "validation_fraction": 0.2}), "> 1"),
        ]
        for (name, params), message in cases:
            with self.assertRaisesRegex(ValueError, message):
                protocols.build(name, **params)
        self.assertEqual(protocols.build("leave_last_out", cut_low=50).params["cut_low"], 50.0)


# ----- leave_last_out ---------------------------------------------------------------------------

EVENT_LOG = rows_of([
    # a: t=5 holds a positive and its sampled negative: both are the last event
    ("a", "i1", 1, 1), ("a", "i2", 2, 1), ("a", "i3", 3, 1), ("a", "i4", 4, 1), ("a", "i5", 5, 1),
    ("a", "n5", 5, 0),
    # b: two clicks tie at t=10 (both train)
    ("b", "i4", 30, 1), ("b", "i1", 10, 1), ("b", "i2", 10, 1), ("b", "i3", 20, 1),
    # c: one event: test only, no history
    ("c", "i1", 7, 1),
    # d: a negative in its training rows (L counts positives: 4)
    ("d", "i1", 1, 1), ("d", "i2", 2, 0), ("d", "i3", 3, 1), ("d", "i4", 4, 1), ("d", "i5", 5, 1),
    ("d", "i6", 6, 1), ("d", "i7", 7, 1),
    ("e", "i1", 1, 1), ("e", "i2", 2, 1), ("e", "i3", 3, 1),
    # f: two events: validation and test, no history
    ("f", "i1", 1, 1), ("f", "i2", 2, 1),
    ("g", "i1", 1, 1), ("g", "i2", 2, 1), ("g", "i3", 3, 1), ("g", "i4", 4, 1), ("g", "i5", 5, 1),
    ("g", "i6", 6, 1), ("g", "i7", 7, 1),
    ("h", "i1", 1, 1), ("h", "i2", 2, 1), ("h", "i3", 3, 1), ("h", "i4", 4, 1), ("h", "i5", 5, 1),
    ("h", "i6", 6, 1),
], ("user_id", "item_id", "timestamp", "label"))

# L over the 8 users: c 0, f 0, e 1, b 2, a 3, d 4, h 4, g 5. cut_low=60: rank ceil(4.8) = 5 -> 3;
# cut_high=75: rank 6 -> 4 (h, 7th, ties with d at 4 and goes to the lower group).
EVENT_CUTS = {"cut_low": 60, "cut_high": 75}
EVENT_SPLITS = {
    "train": ["a:i1", "a:i2", "a:i3", "b:i1", "b:i2", "d:i1", "d:i2", "d:i3", "d:i4", "d:i5",
              "e:i1", "g:i1", "g:i2", "g:i3", "g:i4", "g:i5", "h:i1", "h:i2", "h:i3", "h:i4"],
    "validation": ["a:i4", "b:i3", "d:i6", "e:i2", "f:i1", "g:i6", "h:i5"],
    "test": ["a:i5", "a:n5", "b:i4", "c:i1", "d:i7", "e:i3", "f:i2", "g:i7", "h:i6"],
}
EVENT_GROUPS = {"a": "non_active", "b": "non_active", "c": "non_active", "e": "non_active",
                "f": "non_active", "d": "slightly_active", "h": "slightly_active",
                "g": "highly_active"}


class LeaveLastOutTest(tf.test.TestCase):

    def test_event_unit_rows_groups_and_stats(self):
        protocol = protocols.build("leave_last_out", **EVENT_CUTS)
        result = protocol.split(EVENT_LOG)
        self.assertEqual(by_split(result, EVENT_LOG), EVENT_SPLITS)
        self.assertEqual([f["user_group"] for f in result.features],
                         [EVENT_GROUPS[r["user_id"]] for r in EVENT_LOG])
        stats = result.stats
        self.assertEqual({k: stats[k] for k in (
            "users", "users_without_history", "users_test_only", "train", "validation", "test",
            "users_non_active", "users_slightly_active", "users_highly_active", "cut_low_value",
            "cut_high_value", "test_non_active", "test_slightly_active", "test_highly_active",
            "train_highly_active")},
            {"users": 8, "users_without_history": 2, "users_test_only": 1, "train": 20,
             "validation": 7, "test": 9, "users_non_active": 5, "users_slightly_active": 2,
             "users_highly_active": 1, "cut_low_value": 3, "cut_high_value": 4,
             "test_non_active": 6, "test_slightly_active": 2, "test_highly_active": 1,
             "train_highly_active": 5})

    def test_history_of_rows_counts_negatives_too(self):
        # d's L becomes 5 (its negative counts). Lengths c0 f0 e1 b2 a3 h4 d5 g5: rank 5 -> 3,
        # rank 6 -> 4; d joins g among the highly active.
        result = protocols.build("leave_last_out", **EVENT_CUTS, history="rows").split(EVENT_LOG)
        groups = {r["user_id"]: f["user_group"] for r, f in zip(EVENT_LOG, result.features)}
        self.assertEqual(groups, {**EVENT_GROUPS, "d": "highly_active"})

    def test_day_unit(self):
        log = rows_of([
            ("p", "i1", 100, 1), ("p", "i2", 200, 1), ("p", "i3", D + 5, 1),
            ("p", "i4", 2 * D + 1, 1), ("p", "i5", 2 * D + 50000, 1),
            # q: every purchase on one day: all test, no history
            ("q", "i1", 3 * D + 1, 1), ("q", "i2", 3 * D + 2, 1), ("q", "i3", 3 * D + 3, 1),
            ("r", "i1", 50, 1), ("r", "i2", 5 * D, 1),
            ("s", "i1", D, 1), ("s", "i2", 2 * D, 1), ("s", "i3", 3 * D, 1),
            ("s", "i4", 3 * D + 86399, 1),
        ], ("user_id", "item_id", "timestamp", "label"))
        result = protocols.build("leave_last_out", unit="day").split(log)
        self.assertEqual(by_split(result, log), {
            "train": ["p:i1", "p:i2", "s:i1"],
            "validation": ["p:i3", "r:i1", "s:i2"],
            "test": ["p:i4", "p:i5", "q:i1", "q:i2", "q:i3", "r:i2", "s:i3", "s:i4"]})
        # L: q 0, r 0, s 1, p 2; rank ceil(2.4) = 3 -> 1, rank ceil(3.6) = 4 -> 2.
        groups = {r["user_id"]: f["user_group"] for r, f in zip(log, result.features)}
        self.assertEqual(groups, {"p": "slightly_active", "q": "non_active", "r": "non_active",
                                  "s": "non_active"})
        self.assertEqual((result.stats["users_without_history"], result.stats["users_test_only"],
                          result.stats["cut_low_value"], result.stats["cut_high_value"]),
                         (2, 1, 1, 2))
        # The same log by event: q's three purchases are three events.
        by_event = by_split(protocols.build("leave_last_out").split(log), log)
        self.assertIn("q:i1", by_event["train"])
        self.assertEqual(by_event["test"], ["p:i5", "q:i3", "r:i2", "s:i4"])

    def test_cut_values_are_exact_nearest_rank(self):
        # 5 users, L = 1..5: 0.6 * 5 is 3.0000000000000004 in floats; the rank is 3.
        self.assertEqual(leave_last_out.cut_values({1: 1, 2: 1, 3: 1, 4: 1, 5: 1}, 60, 90), (3, 5))
        self.assertEqual(leave_last_out.cut_values({0: 6, 7: 3, 9: 1}, 60, 90), (0, 7))
        self.assertEqual(leave_last_out.cut_values({}, 60, 90), (0, 0))

    def test_beam_matches_pure(self):
        assert_user_beam_matches_pure(self, protocols.build("leave_last_out", **EVENT_CUTS),
                                      EVENT_LOG)


def assert_user_beam_matches_pure(test, protocol, log):
    """leave_last_out's Beam split of `log` (reversed) writes the rows and groups of the pure one."""
    expected = protocol.split(log)
    got, stats = run_beam(protocol, list(reversed(log)), lambda e: (
        e["user_id"][0].decode(), e["item_id"][0].decode(), e["user_group"][0].decode()))
    for name in protocol.splits:
        test.assertEqual(got[name], sorted(
            (r["user_id"], r["item_id"], f["user_group"])
            for r, f, s in zip(log, expected.features, expected.splits) if s == name))
    test.assertEqual(stats, expected.stats)


# ----- per_domain -------------------------------------------------------------------------------

FILES = {"movie_val.csv": "train", "movie_test.csv": "test", "*_train.csv": "train",
         "*_val.csv": "validation", "*_test.csv": "test"}
FILE_LOG = rows_of([
    ("0", "u1", "m1", 1, 1, "music_train.csv"), ("0", "u2", "m2", 2, 0, "music_train.csv"),
    ("0", "u3", "m3", 1, 1, "music_val.csv"), ("0", "u1", "m4", 1, 1, "music_test.csv"),
    ("2", "u1", "v1", 1, 1, "movie_val.csv"), ("2", "u2", "v2", 2, 1, "movie_val.csv"),
    ("2", "u3", "v3", 1, 0, "movie_test.csv"),
], ("domain", "user_id", "item_id", "timestamp", "label", "source_file"))


class PerDomainTest(tf.test.TestCase):

    def test_files_decide_and_a_domain_without_validation_rows_is_listed(self):
        protocol = protocols.build("per_domain", assign="files", files=FILES, cold_domains=["0"])
        result = protocol.split(FILE_LOG)
        self.assertEqual(by_split(result, FILE_LOG), {
            "train": ["u1:m1", "u1:v1", "u2:m2", "u2:v2"], "validation": ["u3:m3"],
            "test": ["u1:m4", "u3:v3"]})
        stats = result.stats
        self.assertEqual((stats["train"], stats["validation"], stats["test"]), (4, 1, 2))
        self.assertEqual(stats["domains"], {"0": {"train": 2, "validation": 1, "test": 1},
                                            "2": {"train": 2, "validation": 0, "test": 1}})
        self.assertEqual(stats["domains_without_rows"],
                         {"train": [], "validation": ["2"], "test": []})
        self.assertEqual(stats["missing_cold_domains"], [])

    def test_a_file_no_pattern_maps_stops_the_run(self):
        protocol = protocols.build("per_domain", assign="files", files=FILES)
        with self.assertRaisesRegex(ValueError, "file 'music_sparse.csv' matches none"):
            protocol.split(FILE_LOG + rows_of([("0", "u9", "m9", 1, 1, "/data/music_sparse.csv")],
                                              FILE_LOG[0].keys()))

    def test_a_file_name_wins_over_patterns_whatever_the_order(self):
        # Configs reach the pipeline as JSON with sorted keys, where "*_val.csv" comes before
        # "movie_val.csv": the split must not depend on the mapping's order.
        expected = protocols.build("per_domain", assign="files", files=FILES).split(FILE_LOG).splits
        for files in (dict(sorted(FILES.items())), dict(reversed(list(FILES.items())))):
            got = protocols.build("per_domain", assign="files", files=files).split(FILE_LOG)
            self.assertEqual(got.splits, expected)
            self.assertEqual(got.stats["domains"]["2"], {"train": 2, "validation": 0, "test": 1})
        self.assertEqual(per_domain.file_split("/d/movie_val.csv", dict(sorted(FILES.items()))),
                         "train")

    def test_patterns_that_disagree_stop_the_run(self):
        files = {"*_val.csv": "validation", "movie_*": "train", "music_*.csv": "validation"}
        self.assertEqual(per_domain.file_split("music_val.csv", files), "validation")  # agree
        with self.assertRaisesRegex(ValueError, r"file 'movie_val.csv' matches patterns "
                                    r"\['\*_val.csv', 'movie_\*'\] of `files` that name different "
                                    r"splits; name the file itself"):
            per_domain.file_split("movie_val.csv", files)

    def test_random_draw_sizes_and_order(self):
        # A: 10 rows -> 8/1/1; B: 3 rows -> floor(2.4)=2 / floor(0.3)=0 / 1; C: 1 row -> 0/0/1.
        log = rows_of([("A", f"u{i}", f"a{i}", i, i % 2) for i in range(10)]
                      + [("B", f"u{i}", f"b{i}", i, 1) for i in range(3)] + [("C", "u0", "c0", 0, 0)],
                      ("domain", "user_id", "item_id", "timestamp", "label"))
        result = protocols.build("per_domain", seed=3, cold_domains=["B", "Z"]).split(log)

        def key(r):  # the documented draw: 63 bits of sha256("seed|domain|user|item|time|label")
            text = "\x1f".join(str(v) for v in (3, r["domain"], r["user_id"], r["item_id"],
                                                r["timestamp"], r["label"]))
            return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1
        expected = {"train": [], "validation": [], "test": []}
        for domain, sizes in (("A", (8, 1, 1)), ("B", (2, 0, 1)), ("C", (0, 0, 1))):
            ordered = sorted((r for r in log if r["domain"] == domain), key=key)
            names = ["train"] * sizes[0] + ["validation"] * sizes[1] + ["test"] * sizes[2]
            for row, name in zip(ordered, names):
                expected[name].append(row["item_id"])
        got = by_split(result, log, name=lambda r: r["item_id"])
        self.assertEqual(got, {k: sorted(v) for k, v in expected.items() if v})
        self.assertEqual(result.stats["domains"], {
            "A": {"train": 8, "validation": 1, "test": 1}, "B": {"train": 2, "validation": 0, "test": 1},
            "C": {"train": 0, "validation": 0, "test": 1}})
        self.assertEqual(result.stats["domains_without_rows"],
                         {"train": ["C"], "validation": ["B", "C"], "test": []})
        self.assertEqual(result.stats["missing_cold_domains"], ["Z"])
        other = protocols.build("per_domain", seed=4).split(log)
        self.assertNotEqual(other.splits, result.splits)  # the seed matters
        self.assertEqual(protocols.build("per_domain", seed=3).split(log).splits, result.splits)

    def test_douban_file_sizes_follow_floor_8_1_1(self):
        # Shipped Douban files (diff_msr.md 2.3): music 3,123 -> 2,498 / 312 / 313,
        # book 96,041 -> 76,832 / 9,604 / 9,605.
        self.assertEqual(per_domain.draw_sizes(3123, 0.8, 0.1), (2498, 312))
        self.assertEqual(per_domain.draw_sizes(96041, 0.8, 0.1), (76832, 9604))

    def test_beam_matches_pure(self):
        for params, log in (({"assign": "files", "files": FILES}, FILE_LOG),
                            ({"seed": 3}, rows_of(
                                [("A", f"u{i}", f"a{i}", i, i % 2) for i in range(10)]
                                + [("B", "u0", "b0", 0, 1)],
                                ("domain", "user_id", "item_id", "timestamp", "label")))):
            assert_domain_beam_matches_pure(self, protocols.build("per_domain", **params), log)


def assert_domain_beam_matches_pure(test, protocol, log):
    """per_domain's Beam split of `log` writes the rows and statistics of the pure one."""
    expected = protocol.split(log)
    got, stats = run_beam(protocol, log, lambda e: (e["domain"][0].decode(),
                                                    e["item_id"][0].decode()))
    for name in protocol.splits:
        test.assertEqual(got[name], sorted((r["domain"], r["item_id"])
                                           for r, s in zip(log, expected.splits) if s == name))
    test.assertEqual(stats, expected.stats)


# ----- item_frequency ---------------------------------------------------------------------------

def tuning_log():
    """N=7, K=2: old items o0..o9 with 8 rows each, new items n7 (7 rows) and n6 (6), rare r (5)."""
    rows = []
    for i in range(10):
        rows += [(f"o{i}", f"u{t}", (t * 7 + i) % 8 * 10 + i) for t in range(8)]
    rows += [("n7", f"u{t}", 70 - t) for t in range(7)] + [("n6", f"u{t}", t) for t in range(6)]
    rows += [("r", f"u{t}", t) for t in range(5)]
    return rows_of(rows, ("item_id", "user_id", "timestamp"))


class ItemFrequencyTest(tf.test.TestCase):

    def test_final_view_is_item_split(self):
        rows = rows_of([("old", t) for t in (5, 1, 9, 3, 7, 2, 8, 4)]
                       + [("new7", t) for t in (70, 10, 60, 20, 50, 30, 40)]
                       + [("rare", t) for t in (1, 2, 3, 4, 5)], ("item_id", "timestamp"))
        result = protocols.build("item_frequency", N=7, K=2).split(rows)
        named = by_split(result, rows, name=lambda r: f"{r['item_id']}@{r['timestamp']}")
        self.assertEqual(named, {
            "base": sorted(f"old@{t}" for t in range(1, 10) if t != 6),
            "warm_a": ["new7@10", "new7@20"], "warm_b": ["new7@30", "new7@40"],
            "warm_c": ["new7@50", "new7@60"], "test": ["new7@70"],
            "dropped": [f"rare@{t}" for t in range(1, 6)]})
        self.assertEqual(result.stats, {"base": 8, "warm_a": 2, "warm_b": 2, "warm_c": 2,
                                        "test": 1, "dropped": 5, "old_items": 1, "new_items": 1,
                                        "dropped_items": 1, "N": 7, "K": 2})
        self.assertEqual([f["count"] for f in result.features], [8] * 8 + [7] * 7 + [5] * 5)

    def test_tuning_view(self):
        rows = tuning_log()
        protocol = protocols.build("item_frequency", N=7, K=2, view="tuning", seed=0)
        result = protocol.split(rows)
        # 20 % of the 10 old items, drawn with random.Random(0) from the sorted old items.
        holdout = sorted(random.Random(0).sample([f"o{i}" for i in range(10)], 2))
        self.assertLen(holdout, 2)
        held = {r["item_id"] for r, s in zip(rows, result.splits) if s and s != "base"
                and s != "dropped"}
        self.assertEqual(sorted(held), holdout)
        # No row of a real new item is written; base holds the other 8 old items' 64 rows.
        for row, split in zip(rows, result.splits):
            if row["item_id"] in ("n7", "n6"):
                self.assertIsNone(split)
            elif row["item_id"] == "r":
                self.assertEqual(split, "dropped")
            elif row["item_id"] not in holdout:
                self.assertEqual(split, "base")
        # Each held-out item's rows, in time order: a a b b c c test test.
        for item in holdout:
            ordered = sorted((r["timestamp"], s) for r, s in zip(rows, result.splits)
                             if r["item_id"] == item)
            self.assertEqual([s for _, s in ordered], ["warm_a", "warm_a", "warm_b", "warm_b",
                                                       "warm_c", "warm_c", "test", "test"])
        self.assertEqual({k: result.stats[k] for k in (
            "base", "warm_a", "warm_b", "warm_c", "test", "dropped", "withheld", "old_items",
            "holdout_items", "new_items", "dropped_items")},
            {"base": 64, "warm_a": 4, "warm_b": 4, "warm_c": 4, "test": 4, "dropped": 5,
             "withheld": 13, "old_items": 8, "holdout_items": 2, "new_items": 2, "dropped_items": 1})
        # Deterministic: the same items whatever the input order; another seed draws others.
        shuffled = list(rows)
        random.Random(5).shuffle(shuffled)
        again = protocol.split(shuffled)
        self.assertEqual({r["item_id"] for r, s in zip(shuffled, again.splits) if s == "warm_a"},
                         set(holdout))
        draws = {tuple(sorted({r["item_id"] for r, s in zip(rows, protocols.build(
            "item_frequency", N=7, K=2, view="tuning", seed=seed).split(rows).splits)
            if s == "test"})) for seed in range(5)}
        self.assertGreater(len(draws), 1)

    def test_tuning_view_beam_matches_pure(self):
        rows = tuning_log()
        protocol = protocols.build("item_frequency", N=7, K=2, view="tuning", seed=1)
        expected = protocol.split(rows)
        got, stats = run_beam(protocol, rows, lambda e: (
            e["item_id"][0].decode(), e["timestamp"][0], e["count"][0]))
        for name in protocol.splits:
            self.assertEqual(got[name], sorted(
                (r["item_id"], r["timestamp"], f["count"])
                for r, f, s in zip(rows, expected.features, expected.splits) if s == name))
        self.assertEqual(stats, expected.stats)

    @unittest.skipUnless(os.path.isdir(ML1M), f"real data not found at {ML1M}")
    def test_ml1m_reference_counts(self):
        config = log_config.load(schemas.config_path("ml-1m"))
        with gzip.open(os.path.join(ML1M, "ratings.dat.gz"), "rt") as f:
            raw = [log_config.split_line(line, config.log, config.log.columns) for line in f]
        timestamp = config.field("timestamp")
        rows = [{"item_id": r["item"], "timestamp": log_config.parse_field(r["timestamp"], timestamp)}
                for r in raw]
        stats = protocols.build("item_frequency", N=200, K=20).split(rows).stats
        self.assertEqual({k: v for k, v in stats.items() if k != "dropped_items"},
                         {"base": 324415, "warm_a": 21740, "warm_b": 21740, "warm_c": 21740,
                          "test": 61105, "dropped": 36910, "old_items": 765, "new_items": 1087,
                          "N": 200, "K": 20})


# ----- the component ----------------------------------------------------------------------------

TINY = {"name": "tiny", "log": {"files": ["log.csv"]},
        "label": {"column": "click", "positive": ["1"], "negative": ["0"]},
        "fields": [{"name": "user_id", "column": "user"}, {"name": "item_id", "column": "item"},
                   {"name": "timestamp", "column": "time", "type": "timestamp"}]}


def _records(uri, split):
    """Every record of a split, in file order (files sorted), decompressed."""
    return list(example_io.read_records(uri, split))


class ComponentTest(tf.test.TestCase):

    def test_protocol_split_gen_writes_the_files_of_item_split_gen(self):
        root = self.create_tempdir().full_path
        data = os.path.join(root, "data")
        os.makedirs(data)
        with open(os.path.join(data, "log.csv"), "w") as f:
            f.write("user,item,time,click\n")
            for i in range(120):  # a: 30 rows, b: 20, c: 12 (new with N=20, K=3), d..: rare
                item = "a" if i < 30 else "b" if i < 50 else "c" if i < 62 else f"r{i % 9}"
                f.write(f"u{i % 13},{item},{1500000000 + (i * 37) % 101},{i % 2}\n")
        gen = example_gen.ClickLogExampleGen(
            input_base=data, dataset_config=json.dumps(log_config.from_dict(TINY).to_dict()))
        old = ItemSplitGen(examples=gen.outputs["examples"], N=20, K=3)
        new = ProtocolSplitGen(examples=gen.outputs["examples"], protocol="item_frequency",
                               params=json.dumps({"N": 20, "K": 3}))
        llo = ProtocolSplitGen(examples=gen.outputs["examples"], protocol="leave_last_out",
                               params="{}").with_id("LeaveLastOut")
        tfx.orchestration.LocalDagRunner().run(tfx.dsl.Pipeline(
            pipeline_name="split", pipeline_root=os.path.join(root, "tfx"),
            components=[gen, old, new, llo],
            metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
                os.path.join(root, "m.sqlite")),
            beam_pipeline_args=beam_presets.beam_args("direct")))
        uris = {}
        for name in ("ItemSplitGen", "ProtocolSplitGen", "LeaveLastOut"):
            [uri] = tf.io.gfile.glob(os.path.join(root, "tfx", name, "split_examples", "*"))
            uris[name] = uri
        for split in ("base", "warm_a", "warm_b", "warm_c", "test", "dropped"):
            self.assertEqual(_records(uris["ProtocolSplitGen"], split),
                             _records(uris["ItemSplitGen"], split), split)
        with open(os.path.join(uris["ItemSplitGen"], "split_stats.json"), "rb") as f:
            old_stats = f.read()
        with open(os.path.join(uris["ProtocolSplitGen"], "split_stats.json"), "rb") as f:
            self.assertEqual(f.read(), old_stats)
        # b (20 rows) and c (12) are new: 20 - 9 and 12 - 9 test rows; a (30) is old.
        self.assertEqual({k: json.loads(old_stats)[k] for k in ("base", "warm_a", "test")},
                         {"base": 30, "warm_a": 6, "test": 14})
        llo_rows = sum(len(_records(uris["LeaveLastOut"], s)) for s in ("train", "validation", "test"))
        self.assertEqual(llo_rows, 120)
