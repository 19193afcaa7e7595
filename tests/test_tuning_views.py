"""The tuning views of leave_last_out and per_domain (issue 17): exact splits on hand-built logs,
the Beam split against the pure one, tuning never reading the final view's test rows, and each
protocol's Tuner objective."""
import hashlib

import tensorflow as tf

from tests.test_protocols import (assert_domain_beam_matches_pure, assert_user_beam_matches_pure,
                                  by_split, rows_of)
from trainer import protocols

# ----- leave_last_out ---------------------------------------------------------------------------

LLO_LOG = rows_of([
    # u1: one event: all of it is the final test, so nothing of u1 is in the tuning view
    ("u1", "i1", 5, 1),
    # u2: two events: final validation i1 is the tuning test; no history
    ("u2", "i1", 1, 1), ("u2", "i2", 2, 0),
    # u3: three events: tuning validation t1, test t2
    ("u3", "i1", 1, 1), ("u3", "i2", 2, 1), ("u3", "i3", 3, 0),
    # u4: ties at t=2 (a positive and a negative) and t=4 (two clicks, the tuning test)
    ("u4", "i1", 1, 1), ("u4", "i2", 2, 1), ("u4", "i3", 2, 0), ("u4", "i4", 3, 1),
    ("u4", "i5", 4, 1), ("u4", "i6", 4, 1), ("u4", "i7", 5, 1),
    # u5: its final test unit is a tie (i6, i7), withheld together; a negative in its history
    ("u5", "i3", 12, 1), ("u5", "i1", 10, 1), ("u5", "i2", 11, 1), ("u5", "i4", 13, 0),
    ("u5", "i5", 14, 1), ("u5", "i6", 15, 1), ("u5", "i7", 15, 0),
    ("u6", "i1", 1, 1), ("u6", "i2", 2, 1), ("u6", "i3", 3, 1), ("u6", "i4", 4, 1),
], ("user_id", "item_id", "timestamp", "label"))
LLO_CUTS = {"cut_low": 60, "cut_high": 75}
# Per user, drop the last unit, then: last left -> test, the one before -> validation, rest train.
LLO_TUNING = {
    "train": ["u4:i1", "u4:i2", "u4:i3", "u5:i1", "u5:i2", "u5:i3", "u6:i1"],
    "validation": ["u3:i1", "u4:i4", "u5:i4", "u6:i2"],
    "test": ["u2:i1", "u3:i2", "u4:i5", "u4:i6", "u5:i5", "u6:i3"],
}
LLO_WITHHELD = ["u1:i1", "u2:i2", "u3:i3", "u4:i7", "u5:i6", "u5:i7", "u6:i4"]
# L = tuning train positives over the 5 users of the view: u2 0, u3 0, u6 1, u4 2, u5 3.
# cut_low 60: rank ceil(3) = 3 -> 1; cut_high 75: rank ceil(3.75) = 4 -> 2.
LLO_GROUPS = {"u2": "non_active", "u3": "non_active", "u6": "non_active",
              "u4": "slightly_active", "u5": "highly_active"}


def row_name(row):
    return f"{row['user_id']}:{row['item_id']}"


class LeaveLastOutTuningTest(tf.test.TestCase):

    def test_rows_groups_and_stats(self):
        result = protocols.build("leave_last_out", **LLO_CUTS, view="tuning").split(LLO_LOG)
        self.assertEqual(by_split(result, LLO_LOG), LLO_TUNING)
        self.assertEqual(sorted(row_name(r) for r, s in zip(LLO_LOG, result.splits) if s is None),
                         LLO_WITHHELD)
        self.assertEqual([f.get("user_group") for f in result.features],
                         [None if s is None else LLO_GROUPS[r["user_id"]]
                          for r, s in zip(LLO_LOG, result.splits)])
        stats = result.stats
        self.assertEqual({k: stats[k] for k in (
            "users", "users_withheld", "withheld", "users_without_history", "users_test_only",
            "train", "validation", "test", "users_non_active", "users_slightly_active",
            "users_highly_active", "cut_low_value", "cut_high_value", "test_non_active",
            "test_slightly_active", "test_highly_active", "train_highly_active", "view")},
            {"users": 5, "users_withheld": 1, "withheld": 7, "users_without_history": 2,
             "users_test_only": 1, "train": 7, "validation": 4, "test": 6,
             "users_non_active": 3, "users_slightly_active": 1, "users_highly_active": 1,
             "cut_low_value": 1, "cut_high_value": 2, "test_non_active": 3,
             "test_slightly_active": 2, "test_highly_active": 1, "train_highly_active": 3,
             "view": "tuning"})
        final = protocols.build("leave_last_out", **LLO_CUTS).split(LLO_LOG).stats
        self.assertNotIn("withheld", final)
        self.assertEqual((final["users"], final["test"]), (6, 7))

    def test_is_the_final_view_of_the_log_without_its_test_rows(self):
        final = protocols.build("leave_last_out", **LLO_CUTS).split(LLO_LOG)
        self.assertEqual(sorted(row_name(r) for r in (LLO_LOG[i] for i in final.rows("test"))),
                         LLO_WITHHELD)
        rest = [r for r, s in zip(LLO_LOG, final.splits) if s != "test"]
        without = protocols.build("leave_last_out", **LLO_CUTS).split(rest)
        tuning = protocols.build("leave_last_out", **LLO_CUTS, view="tuning").split(LLO_LOG)
        self.assertEqual([s for s in tuning.splits if s is not None], without.splits)
        self.assertEqual([f for f in tuning.features if f], without.features)

    def test_final_test_labels_do_not_change_the_tuning_view(self):
        protocol = protocols.build("leave_last_out", **LLO_CUTS, view="tuning")
        result = protocol.split(LLO_LOG)
        test_rows = set(protocols.build("leave_last_out", **LLO_CUTS).split(LLO_LOG).rows("test"))
        flipped = [{**r, "label": 1 - r["label"]} if i in test_rows else r
                   for i, r in enumerate(LLO_LOG)]
        again = protocol.split(flipped)
        self.assertEqual((again.splits, again.features, again.stats),
                         (result.splits, result.features, result.stats))
        # The check can fail: flipping the tuning view's own train labels changes the groups.
        train_rows = set(result.rows("train"))
        other = protocol.split([{**r, "label": 1 - r["label"]} if i in train_rows else r
                                for i, r in enumerate(LLO_LOG)])
        self.assertNotEqual(other.features, result.features)

    def test_day_unit(self):
        day = 86400
        log = rows_of([("p", "i1", 100, 1), ("p", "i2", 200, 1), ("p", "i3", day + 5, 1),
                       ("p", "i4", 2 * day + 1, 1), ("p", "i5", 2 * day + 9, 1),
                       ("q", "i1", 3 * day, 1), ("q", "i2", 4 * day - 1, 1)],
                      ("user_id", "item_id", "timestamp", "label"))
        result = protocols.build("leave_last_out", unit="day", view="tuning").split(log)
        # p's days 0, 1, 2: day 2 withheld, day 1 test, day 0 validation; q: one day, withheld.
        self.assertEqual(by_split(result, log), {"validation": ["p:i1", "p:i2"],
                                                 "test": ["p:i3"]})
        self.assertEqual((result.stats["withheld"], result.stats["users_withheld"]), (4, 1))

    def test_beam_matches_pure(self):
        assert_user_beam_matches_pure(
            self, protocols.build("leave_last_out", **LLO_CUTS, view="tuning"), LLO_LOG)


# ----- per_domain -------------------------------------------------------------------------------

DOMAIN_FILES = {"movie_val.csv": "train", "*_train.csv": "train", "*_val.csv": "validation",
                "*_test.csv": "test"}
DOMAIN_LOG = rows_of(
    [("0", f"u{i}", f"m{i}", i, i % 2, "music_train.csv") for i in range(5)]
    + [("0", "u7", "m7", 7, 1, "music_val.csv"), ("0", "u8", "m8", 8, 0, "music_val.csv"),
       ("0", "u9", "m9", 9, 1, "music_test.csv"), ("0", "u1", "m10", 10, 0, "music_test.csv")]
    + [("1", f"u{i}", f"b{i}", i, 1, "book_train.csv") for i in range(3)]
    + [("1", "u5", "b5", 5, 0, "book_val.csv"), ("1", "u6", "b6", 6, 1, "book_test.csv")]
    # movie: no validation rows of its own (its val file trains), so none in the tuning test
    + [("2", f"u{i}", f"v{i}", i, i % 2, "movie_val.csv") for i in range(4)]
    + [("2", "u4", "v4", 4, 1, "movie_test.csv")],
    ("domain", "user_id", "item_id", "timestamp", "label", "source_file"))
DOMAIN_PARAMS = {"assign": "files", "files": DOMAIN_FILES, "cold_domains": ["0"],
                 "train_fraction": 0.7, "validation_fraction": 0.25, "seed": 5}


def draw_key(seed, r):
    """The documented draw: 63 bits of sha256 of (seed, domain, user, item, time, label)."""
    text = "\x1f".join(str(v) for v in (seed, r["domain"], r["user_id"], r["item_id"],
                                        r["timestamp"], r["label"]))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1


def item(row):
    return row["item_id"]


class PerDomainTuningTest(tf.test.TestCase):

    def test_files_rows_and_stats(self):
        result = protocols.build("per_domain", **DOMAIN_PARAMS, view="tuning").split(DOMAIN_LOG)
        # validation: per domain the last floor(0.25 n_train) final train rows in draw order:
        # music 5 -> 1, book 3 -> 0, movie 4 -> 1.
        validation = []
        for domain, size in (("0", 1), ("1", 0), ("2", 1)):
            train = sorted((r for r in DOMAIN_LOG if r["domain"] == domain
                            and r["source_file"].endswith(("_train.csv", "movie_val.csv"))),
                           key=lambda r: draw_key(5, r))
            validation += [item(r) for r in train[len(train) - size:]]
        self.assertLen(validation, 2)
        final_train = {item(r) for r in DOMAIN_LOG
                       if r["source_file"].endswith(("_train.csv", "movie_val.csv"))}
        self.assertEqual(by_split(result, DOMAIN_LOG, name=item), {
            "train": sorted(final_train - set(validation)), "validation": sorted(validation),
            "test": ["b5", "m7", "m8"]})
        self.assertEqual(sorted(item(r) for r, s in zip(DOMAIN_LOG, result.splits) if s is None),
                         ["b6", "m10", "m9", "v4"])
        stats = result.stats
        self.assertEqual((stats["train"], stats["validation"], stats["test"], stats["withheld"]),
                         (10, 2, 3, 4))
        self.assertEqual(stats["domains"], {
            "0": {"train": 4, "validation": 1, "test": 2, "withheld": 2},
            "1": {"train": 3, "validation": 0, "test": 1, "withheld": 1},
            "2": {"train": 3, "validation": 1, "test": 0, "withheld": 1}})
        self.assertEqual(stats["domains_without_rows"],
                         {"train": [], "validation": ["1"], "test": ["2"]})
        self.assertEqual(stats["view"], "tuning")
        self.assertNotIn("withheld", protocols.build("per_domain", **DOMAIN_PARAMS)
                         .split(DOMAIN_LOG).stats)

    def test_final_test_rows_do_not_change_the_tuning_view(self):
        protocol = protocols.build("per_domain", **DOMAIN_PARAMS, view="tuning")
        result = protocol.split(DOMAIN_LOG)
        is_test = [r["source_file"].endswith("_test.csv") for r in DOMAIN_LOG]
        flipped = protocol.split([{**r, "label": 1 - r["label"]} if t else r
                                  for r, t in zip(DOMAIN_LOG, is_test)])
        self.assertEqual((flipped.splits, flipped.stats), (result.splits, result.stats))
        removed = protocol.split([r for r, t in zip(DOMAIN_LOG, is_test) if not t])
        self.assertEqual(removed.splits, [s for s, t in zip(result.splits, is_test) if not t])
        self.assertEqual([removed.stats[k] for k in ("train", "validation", "test", "withheld")],
                         [10, 2, 3, 0])
        # The check can fail: without the final validation rows, the tuning test is empty.
        is_validation = [r["source_file"].endswith("_val.csv") and r["domain"] != "2"
                         for r in DOMAIN_LOG]
        other = protocol.split([r for r, v in zip(DOMAIN_LOG, is_validation) if not v])
        self.assertEqual([other.stats[k] for k in ("train", "validation", "test", "withheld")],
                         [10, 2, 0, 4])

    def test_random_draw(self):
        # A: 10 rows -> final 7 / 2 / 1 -> tuning train 6, validation floor(0.2 * 7) = 1, test 2;
        # B: 3 rows -> 2 / 0 / 1 -> tuning 2 / 0 / 0; C: 1 row -> 0 / 0 / 1 -> withheld.
        log = rows_of([("A", f"u{i}", f"a{i}", i, i % 2) for i in range(10)]
                      + [("B", f"u{i}", f"b{i}", i, 1) for i in range(3)]
                      + [("C", "u0", "c0", 0, 0)],
                      ("domain", "user_id", "item_id", "timestamp", "label"))
        params = {"seed": 3, "train_fraction": 0.7, "validation_fraction": 0.2}
        final = protocols.build("per_domain", **params).split(log)
        result = protocols.build("per_domain", **params, view="tuning").split(log)
        ordered_a = sorted((r for r in log if r["domain"] == "A"), key=lambda r: draw_key(3, r))
        ordered_b = sorted((r for r in log if r["domain"] == "B"), key=lambda r: draw_key(3, r))
        expected = {"train": [item(r) for r in ordered_a[:6] + ordered_b[:2]],
                    "validation": [item(ordered_a[6])], "test": [item(r) for r in ordered_a[7:9]]}
        self.assertEqual(by_split(result, log, name=item),
                         {k: sorted(v) for k, v in expected.items()})
        # tuning test = final validation; tuning train + validation = final train
        self.assertEqual(result.rows("test"), final.rows("validation"))
        self.assertEqual(sorted(result.rows("train") + result.rows("validation")),
                         final.rows("train"))
        self.assertEqual(result.stats["domains"]["C"],
                         {"train": 0, "validation": 0, "test": 0, "withheld": 1})

    def test_beam_matches_pure(self):
        for params, log in ((DOMAIN_PARAMS, DOMAIN_LOG), ({"seed": 3, "train_fraction": 0.7,
                                                           "validation_fraction": 0.2}, rows_of(
                [("A", f"u{i}", f"a{i}", i, i % 2) for i in range(10)] + [("B", "u0", "b0", 0, 1)],
                ("domain", "user_id", "item_id", "timestamp", "label")))):
            assert_domain_beam_matches_pure(
                self, protocols.build("per_domain", **params, view="tuning"), log)


# ----- objectives -------------------------------------------------------------------------------

def metrics(auc):
    return {"auc": auc, "f1": 0.5}


class TuningObjectiveTest(tf.test.TestCase):

    def test_each_protocol_picks_its_figure(self):
        phases = {"cold": {"overall": metrics(0.5)}, "warm_a": {"overall": metrics(0.6)},
                  "warm_b": {"overall": metrics(0.7)}, "warm_c": {"overall": metrics(0.8)}}
        item = protocols.build("item_frequency")
        self.assertAllClose(item.tuning_objective(phases), 0.65)
        self.assertAllClose(item.tuning_objective(phases, ["cold", "warm_c"]), 0.65)
        self.assertAllClose(item.tuning_objective(phases, ["warm_a"]), 0.6)
        llo = protocols.build("leave_last_out")
        self.assertAllClose(llo.tuning_objective({"overall": {
            "overall": metrics(0.7), "non_active": metrics(0.6)}}), 0.7)
        domains = {"pretrained": {"overall": metrics(0.7), "0": metrics(0.55), "1": metrics(0.8),
                                  "2": metrics(0.9)},
                   "adapted": {"overall": metrics(0.72), "0": metrics(0.6), "1": metrics(0.8),
                               "2": metrics(0.7)}}
        cold = protocols.build("per_domain", cold_domains=["0"])
        self.assertAllClose(cold.tuning_objective(domains), 0.6)  # the cold domain, adapted
        self.assertAllClose(cold.tuning_objective(domains, ["pretrained", "adapted"]), 0.575)
        self.assertAllClose(protocols.build("per_domain", cold_domains=["0", "2"])
                            .tuning_objective(domains), 0.65)
        self.assertAllClose(protocols.build("per_domain").tuning_objective(domains), 0.7)
        with self.assertRaisesRegex(ValueError, r"has no rows of the cold domains \['3'\]"):
            protocols.build("per_domain", cold_domains=["3"]).tuning_objective(domains)


if __name__ == "__main__":
    tf.test.main()
