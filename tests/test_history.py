"""User-history features (components/history.py) and DIN-convention negatives: the pure step on
hand-built logs with lists written out by hand, the Beam step against the direct-search reference,
the config key, and Transform's encoding with the item vocabulary."""
import calendar
import collections
import json
import os
import re

import apache_beam as beam
import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import dataset_metadata

from components import history, log_config
from components.log_config import ConfigError, HistorySpec
from tests.test_ingest import builtin, ingest, write
from trainer import features, preprocessing

DAY = 86400
TAFENG_HEADER = ('"TRANSACTION_DT","CUSTOMER_ID","AGE_GROUP","PIN_CODE","PRODUCT_SUBCLASS",'
                 '"PRODUCT_ID","AMOUNT","ASSET","SALES_PRICE"\n')


def row(user, item, timestamp, label=1, **extra):
    return {"user_id": user, "item_id": item, "timestamp": timestamp, "label": label, **extra}


def histories(rows, spec):
    """user_histories over every user of `rows` (order key = the row's index), as a list in
    the order of `rows` of (hist_item_id, hist_len)."""
    out = {}
    for user in {r["user_id"] for r in rows}:
        mine = [(i, r) for i, r in enumerate(rows) if r["user_id"] == user]
        for i, features_ in history.user_histories(mine[::-1], spec):  # any input order
            out[i] = features_
    return [(out[i]["hist_item_id"], out[i]["hist_len"]) for i in range(len(rows))]


# u's log: ties at 20 and 30, a negative (z) and an explicit 0 (y) that never enter a history.
EVENTS = [row("u", "a", 10), row("u", "b", 20), row("u", "c", 20), row("u", "z", 20, label=0),
          row("u", "d", 30), row("u", "y", 30, label=0), row("u", "e", 40), row("v", "a", 5)]


class PureHistoryTest(tf.test.TestCase):

    def test_strictly_earlier_positives_ties_and_first_events(self):
        expected = [([], 0), (["a"], 1), (["a"], 1), (["a"], 1), (["a", "b", "c"], 3),
                    (["a", "b", "c"], 3), (["a", "b", "c", "d"], 4), ([], 0)]
        spec = HistorySpec(length=50)
        self.assertEqual(histories(EVENTS, spec), expected)
        self.assertEqual([(h["hist_item_id"], h["hist_len"])
                          for h in history.reference_histories(EVENTS, spec)], expected)

    def test_cap_keeps_the_newest_and_counts_all(self):
        expected = [([], 0), (["a"], 1), (["a"], 1), (["a"], 1), (["b", "c"], 3),
                    (["b", "c"], 3), (["c", "d"], 4), ([], 0)]
        spec = HistorySpec(length=2)
        self.assertEqual(histories(EVENTS, spec), expected)
        self.assertEqual([(h["hist_item_id"], h["hist_len"])
                          for h in history.reference_histories(EVENTS, spec)], expected)

    def test_day_unit_leaves_out_the_same_day(self):
        rows = [row("u", "a", 100), row("u", "b", 5000), row("u", "c", DAY + 1),
                row("u", "d", DAY + 7)]
        self.assertEqual(histories(rows, HistorySpec(unit="day")),
                         [([], 0), ([], 0), (["a", "b"], 2), (["a", "b"], 2)])
        self.assertEqual(histories(rows, HistorySpec(unit="event")),
                         [([], 0), (["a"], 1), (["a", "b"], 2), (["a", "b", "c"], 3)])

    def test_item_fields_follow_the_items(self):
        rows = [row("u", "a", 1, cat="x"), row("u", "b", 2, cat="y"), row("u", "a", 3, cat="x")]
        out = history.user_histories(list(enumerate(rows)), HistorySpec(fields=("cat",)))
        self.assertEqual([f["hist_cat"] for _, f in out], [[], ["x"], ["x", "y"]])
        self.assertEqual([f["hist_item_id"] for _, f in out], [[], ["a"], ["a", "b"]])
        self.assertEqual(history.feature_names(HistorySpec(fields=("cat",))),
                         ["hist_item_id", "hist_cat", "hist_len"])


class HistoryConfigTest(tf.test.TestCase):

    RAW = {"name": "own", "log": {"files": ["log.csv"]}, "label": {"implicit": True},
           "fields": [{"name": "user_id", "column": "user"},
                      {"name": "age", "role": "user"},
                      {"name": "item_id", "column": "item"},
                      {"name": "cat", "role": "item"},
                      {"name": "tags", "type": "multi", "role": "item"},
                      {"name": "timestamp", "column": "ts", "type": "timestamp"}],
           "negatives": {"per_positive": 1, "seed": 5, "sampling": "din"}}

    def test_off_by_default_and_read_with_defaults(self):
        self.assertIsNone(log_config.from_dict(self.RAW).history)
        config = log_config.from_dict({**self.RAW, "history": {}})
        self.assertEqual(config.history, HistorySpec(length=50, unit="event", fields=()))
        config = log_config.from_dict({**self.RAW, "history": {"length": 7, "unit": "day",
                                                               "fields": ["cat"]}})
        self.assertEqual(config.history, HistorySpec(7, "day", ("cat",)))
        self.assertEqual(log_config.from_json(json.dumps(config.to_dict())), config)
        self.assertEqual(builtin("tafeng").history, HistorySpec(50, "day", ("subclass",)))
        self.assertEqual(builtin("amazon-beauty").history, HistorySpec(50, "event", ()))

    def test_schema_declares_the_history_features_for_every_protocol(self):
        import schemas  # pylint: disable=import-outside-toplevel
        for row_features in (("count",), ("user_group",)):
            text = schemas.schema_text(log_config.from_dict(
                {**self.RAW, "history": {"length": 7, "fields": ["cat"]}}), row_features)
            features_named = re.findall(r'name: "([^"]+)"', text)
            self.assertEqual(features_named[-3:], ["hist_item_id", "hist_cat", "hist_len"])
            self.assertIn("value_count { min: 0 max: 7 }", text)

    def test_errors(self):
        cases = [({"history": {"len": 5}}, r"history: unknown key\(s\) \['len'\]"),
                 ({"history": {"unit": "week"}}, "history: unit 'week' is not one of event, day"),
                 ({"history": {"length": 0}}, "`length` must be >= 1"),
                 ({"history": {"length": "5"}}, "`length` must be an integer"),
                 ({"history": {"fields": ["age"]}},
                  "'age' is not a categorical field with role item"),
                 ({"history": {"fields": ["tags"]}}, "'tags' is not a categorical field"),
                 ({"history": {"fields": ["item_id"]}}, "'item_id' is not a categorical field"),
                 ({"history": {"fields": ["cat", "cat"]}}, "names a field twice"),
                 ({"history": {}, "fields": self.RAW["fields"] + [{"name": "hist_len"}]},
                  r"rename \['hist_len'\]"),
                 ({"negatives": {"per_positive": 2, "sampling": "din"}}, "exactly one negative")]
        for change, message in cases:
            with self.assertRaisesRegex(ConfigError, message):
                log_config.from_dict({**self.RAW, **change})
        sequences = {**self.RAW, "log": {"files": ["s.txt"], "format": "sequences",
                                         "columns": ["user", "item"]},
                     "fields": [{"name": "user_id", "column": "user"},
                                {"name": "item_id", "column": "item"},
                                {"name": "timestamp", "column": "position", "type": "timestamp"}]}
        log_config.from_dict({**sequences, "history": {"unit": "event"}})
        with self.assertRaisesRegex(ConfigError, "`unit: day` needs a real timestamp"):
            log_config.from_dict({**sequences, "history": {"unit": "day"}})


def _tafeng_line(day, customer, item, subclass, age="30-34", pin="115"):
    return f'"11/{day}/2000","{customer}","{age}","{pin}","{subclass}","{item}","1","10","12"\n'


def _pairs(examples, *names):
    return {tuple(e[n] for n in names) for e in examples}


class BeamHistoryTest(tf.test.TestCase):

    def test_tafeng_days(self):
        tmp = self.create_tempdir().full_path
        write(tmp, "ta_feng_all_months_merged.csv", TAFENG_HEADER + "".join([
            _tafeng_line(1, "c1", "p1", "s1"), _tafeng_line(1, "c1", "p2", "s2"),
            _tafeng_line(3, "c1", "p3", "s1"), _tafeng_line(3, "c1", "p1", "s1"),
            _tafeng_line(5, "c1", "p4", "s3"), _tafeng_line(2, "c2", "p2", "s2"),
            _tafeng_line(4, "c2", "p5", "s3")]))
        examples, bad, stats = ingest(builtin("tafeng"), tmp, self.create_tempdir().full_path)
        self.assertEqual((bad, stats["examples"], stats["negatives"]), ([], 14, 7))
        days = {calendar.timegm((2000, 11, d, 0, 0, 0)): d for d in range(1, 6)}  # UTC
        expected = {  # (customer, day) -> (items, subclasses, hist_len)
            ("c1", 1): ((), (), (0,)), ("c1", 3): (("p1", "p2"), ("s1", "s2"), (2,)),
            ("c1", 5): (("p1", "p2", "p3", "p1"), ("s1", "s2", "s1", "s1"), (4,)),
            ("c2", 2): ((), (), (0,)), ("c2", 4): (("p2",), ("s2",), (1,))}
        for e in examples:  # positives and their negatives alike
            when = (e["user_id"][0], days[e["timestamp"][0]])
            self.assertEqual((e["hist_item_id"], e["hist_subclass"], e["hist_len"]),
                             expected[when], (when, e["label"]))
        self.assertEqual(sum(e["label"] == (0,) for e in examples), 7)

    def test_beam_equals_the_reference(self):
        rng = np.random.default_rng(0)
        rows = [{"user_id": f"u{rng.integers(5)}", "item_id": f"i{rng.integers(12)}",
                 "timestamp": 1500000000 + 10 * int(rng.integers(8)), "label": int(rng.integers(2)),
                 "rowid": float(n)} for n in range(60)]
        for r in rows:
            r["cat"] = f"c{int(r['item_id'][1:]) % 3}"
        tmp = self.create_tempdir().full_path
        write(tmp, "log.csv", "user,item,cat,ts,click,rowid\n" + "".join(
            f"{r['user_id']},{r['item_id']},{r['cat']},{r['timestamp']},{r['label']},{r['rowid']}\n"
            for r in rows))
        config = log_config.from_dict({
            "name": "own", "log": {"files": ["log.csv"]},
            "label": {"column": "click", "positive": ["1"], "negative": ["0"]},
            "fields": [{"name": "user_id", "column": "user"}, {"name": "item_id", "column": "item"},
                       {"name": "cat", "role": "item"}, {"name": "rowid", "type": "numeric"},
                       {"name": "timestamp", "column": "ts", "type": "timestamp"}],
            "history": {"length": 3, "fields": ["cat"]}, "dedupe": False})
        examples, _, stats = ingest(config, tmp, self.create_tempdir().full_path)
        self.assertEqual(stats["examples"], 60)
        reference = history.reference_histories(rows, config.history)
        got = {int(e["rowid"][0]): e for e in examples}
        self.assertLen(got, 60)
        for n, expected in enumerate(reference):
            self.assertEqual(got[n]["hist_item_id"], tuple(expected["hist_item_id"]), n)
            self.assertEqual(got[n]["hist_cat"], tuple(expected["hist_cat"]), n)
            self.assertEqual(got[n]["hist_len"], (expected["hist_len"],), n)
        self.assertGreater(max(e["hist_len"][0] for e in examples), 3)  # the cap was used


class DinNegativesTest(tf.test.TestCase):

    LINES = [f"u{u},{20 + u},i{(3 * u + 5 * k) % 17},{1500000000 + 100 * k}\n"
             for u in range(6) for k in range(2 + u)]

    def _config(self, sampling="din"):
        return log_config.from_dict({
            "name": "own", "log": {"files": ["*.csv"]}, "label": {"implicit": True},
            "fields": [{"name": "user_id", "column": "user"}, {"name": "age", "role": "user"},
                       {"name": "item_id", "column": "item"},
                       {"name": "timestamp", "column": "ts", "type": "timestamp"}],
            "negatives": {"per_positive": 1, "seed": 5, "sampling": sampling},
            "history": {"length": 50}})

    def _run(self, shards, sampling="din"):
        tmp = self.create_tempdir().full_path
        for name, lines in shards.items():
            write(tmp, name, "user,age,item,ts\n" + "".join(lines))
        return ingest(self._config(sampling), tmp, self.create_tempdir().full_path)

    def test_one_unseen_item_per_positive_sharing_history_and_context(self):
        examples, bad, stats = self._run({"log.csv": self.LINES})
        n = len(self.LINES)
        self.assertEqual((bad, stats["rows"], stats["negatives"], stats["examples"]),
                         ([], n, n, 2 * n))
        seen = {}
        for line in self.LINES:
            user, _, item, _ = line.strip().split(",")
            seen.setdefault(user, set()).add(item)
        positives = {(e["user_id"], e["timestamp"]): e for e in examples if e["label"] == (1,)}
        negatives = [e for e in examples if e["label"] == (0,)]
        self.assertLen(positives, n)  # one positive per (user, time) here
        self.assertEqual(sorted((e["user_id"], e["timestamp"]) for e in negatives),
                         sorted(positives))  # one negative per positive, at its time
        for e in negatives:
            self.assertNotIn(e["item_id"][0], seen[e["user_id"][0]])
            positive = positives[e["user_id"], e["timestamp"]]
            for name in ("age", "hist_item_id", "hist_len"):
                self.assertEqual(e[name], positive[name])
        u5 = sorted((e["timestamp"][0], e["hist_item_id"]) for e in positives.values()
                    if e["user_id"] == ("u5",))
        items = [f"i{(15 + 5 * k) % 17}" for k in range(7)]
        self.assertEqual([h for _, h in u5], [tuple(items[:k]) for k in range(7)])

    def test_rule_per_protocol(self):
        raw = {**HistoryConfigTest.RAW, "negatives": {
            "per_positive": 1, "sampling": "matched", "by_protocol": {"leave_last_out": "din"}}}
        config = log_config.from_dict(raw)
        self.assertEqual(log_config.from_json(json.dumps(config.to_dict())), config)
        user_side = config.for_protocol("leave_last_out")
        self.assertEqual((user_side.negative_sampling, user_side.negative_sampling_by_protocol),
                         ("din", {}))
        self.assertEqual(user_side.for_protocol("item_frequency"), user_side)  # resolved once
        self.assertEqual(config.for_protocol("item_frequency").negative_sampling, "matched")
        self.assertEqual(config.for_protocol("leave_last_out", "uniform").negative_sampling,
                         "uniform")
        for negatives, message in (
                ({"by_protocol": ["din"]}, "`by_protocol` maps protocol names to sampling"),
                ({"by_protocol": {"leave_last_out": "random"}},
                 "negatives.by_protocol: leave_last_out 'random' is not one of"),
                ({"per_positive": 2, "by_protocol": {"leave_last_out": "din"}},
                 "exactly one negative")):
            with self.assertRaisesRegex(ConfigError, message):
                log_config.from_dict({**raw, "negatives": {"per_positive": 1, **negatives}})
        two = log_config.from_dict({**raw, "negatives": {"per_positive": 2}})
        with self.assertRaisesRegex(ConfigError, "exactly one negative"):
            two.for_protocol("leave_last_out", "din")

    def test_identical_across_runs_and_shardings(self):
        one = self._run({"log.csv": self.LINES})
        self.assertEqual(one, self._run({"log.csv": self.LINES}))
        half = len(self.LINES) // 2  # later rows first: another order of the same log
        sharded = self._run({"a.csv": self.LINES[half:], "b.csv": self.LINES[:half]})
        self.assertEqual(one[0], sharded[0])
        # The per-user stream of `uniform` depends on the file order; din's draws do not.
        uniform = [_pairs(self._run(s, "uniform")[0], "user_id", "timestamp", "item_id", "label")
                   for s in ({"log.csv": self.LINES},
                             {"a.csv": self.LINES[half:], "b.csv": self.LINES[:half]})]
        self.assertNotEqual(uniform[0], uniform[1])


def _transform(rows, feature_config, tmp):
    """tf.Transform of raw example dicts with `preprocessing_fn`: (transformed rows, vocabs)."""
    spec = {"user_id": tf.io.FixedLenFeature([], tf.string),
            "item_id": tf.io.FixedLenFeature([], tf.string),
            "timestamp": tf.io.FixedLenFeature([], tf.int64),
            "count": tf.io.FixedLenFeature([], tf.int64),
            "label": tf.io.FixedLenFeature([], tf.int64)}
    if any(f.kind == "hist" for f in feature_config.fields):
        spec.update({"hist_item_id": tf.io.VarLenFeature(tf.string),
                     "hist_len": tf.io.FixedLenFeature([], tf.int64)})
    else:
        rows = [{k: v for k, v in r.items() if not k.startswith("hist_")} for r in rows]
    custom = {"features": features.to_json(feature_config)}
    with beam.Pipeline() as p, tft_beam.Context(temp_dir=os.path.join(tmp, "tft")):
        data = p | beam.Create(rows)
        (transformed, _), transform_fn = (
            (data, dataset_metadata.DatasetMetadata.from_feature_spec(spec))
            | tft_beam.AnalyzeAndTransformDataset(
                lambda x: preprocessing.preprocessing_fn(x, custom)))
        _ = transform_fn | tft_beam.WriteTransformFn(os.path.join(tmp, "fn"))
        _ = (transformed | beam.Map(lambda r: json.dumps(
            {k: np.asarray(v).tolist() for k, v in r.items()}, sort_keys=True))
             | beam.io.WriteToText(os.path.join(tmp, "out")))
    out = [json.loads(line) for path in sorted(tf.io.gfile.glob(os.path.join(tmp, "out*")))
           for line in open(path)]
    return out, tft.TFTransformOutput(os.path.join(tmp, "fn"))


class TransformTest(tf.test.TestCase):

    def test_history_ids_share_the_item_vocabulary_and_leave_item_ids_alone(self):
        # As item_id: i2 5 rows, i1 3, i3 1. Counted with the histories, i1 would come first.
        log = [("u1", "i3", 1), ("u1", "i1", 2), ("u1", "i1", 3), ("u1", "i2", 4),
               ("u1", "i2", 5), ("u1", "i2", 6), ("u2", "i2", 1), ("u2", "i2", 2),
               ("u3", "i1", 1)]
        rows = [row(*r) for r in log]
        out = history.reference_histories(rows, HistorySpec(length=4))
        raw = [{"user_id": r["user_id"].encode(), "item_id": r["item_id"].encode(),
                "timestamp": r["timestamp"], "count": 1, "label": 1, "hist_len": h["hist_len"],
                "hist_item_id": [x.encode() for x in h["hist_item_id"]]} for r, h in zip(rows, out)]
        counts = collections.Counter([i for _, i, _ in log]
                                     + [x for h in out for x in h["hist_item_id"]])
        self.assertEqual(counts.most_common(1), [("i1", 10)])
        config = {"fields": [{"name": "user_id", "type": "categorical"},
                             {"name": "item_id", "type": "categorical"},
                             {"name": "timestamp", "type": "timestamp"}],
                  "side_info": ["item_id", "count"], "history": {"length": 4, "fields": []}}
        with_history = features.from_dataset(config)
        without = features.from_dataset({**config, "history": None})
        self.assertEqual([(f.name, f.kind, f.seq_len, f.vocab) for f in with_history.fields[-2:]],
                         [("hist_item_id", "hist", 4, "item_id"), ("hist_len", "raw", 0, "")])
        self.assertEqual(with_history.fields[:-2], without.fields)
        got, tft_out = _transform(raw, with_history, self.create_tempdir().full_path)
        plain, plain_out = _transform(raw, without, self.create_tempdir().full_path)
        vocab = [v.decode() for v in tft_out.vocabulary_by_name("vocab_item_id")]
        self.assertEqual(vocab, ["i2", "i1", "i3"])
        self.assertEqual(vocab, [v.decode() for v in plain_out.vocabulary_by_name("vocab_item_id")])
        users = [v.decode() for v in tft_out.vocabulary_by_name("vocab_user_id")]
        key = lambda r: (users[r["user_id"]], round(r["timestamp"] * 5 + 1))  # noqa: E731
        self.assertEqual(sorted((key(r), r["item_id"]) for r in got),
                         sorted((key(r), r["item_id"]) for r in plain))
        self.assertEqual(sorted((key(r), r["item_id"]) for r in got),
                         sorted(((u, t), vocab.index(i)) for u, i, t in log))
        index = {"i2": 1, "i1": 2, "i3": 3}  # vocabulary index + 1; 0 pads
        expected = {(u, t): [index[x] for v, x, s in log if v == u and s < t][-4:]
                    for u, _, t in log}
        self.assertEqual(expected["u1", 6], [2, 2, 1, 1])
        for r in got:
            ids = expected[key(r)]
            self.assertEqual(r["hist_item_id"], ids + [0] * (4 - len(ids)), key(r))
            self.assertEqual(r["hist_len"], {("u1", 6): 5.0}.get(key(r), float(len(ids))))
        self.assertEqual(preprocessing.vocab_sizes(tft_out, with_history),
                         {"user_id": 4, "item_id": 4, "hist_item_id": 5})
        spec = tft_out.transformed_feature_spec()
        self.assertEqual((spec["hist_item_id"].shape, spec["hist_item_id"].dtype,
                          spec["hist_len"].dtype), ([4], tf.int64, tf.float32))


class CanonicalOrderTest(tf.test.TestCase):

    def test_histories_do_not_reorder_rows(self):
        from trainer import data  # pylint: disable=import-outside-toplevel
        rng = np.random.default_rng(1)
        user = rng.integers(3, size=50)
        time = rng.integers(4, size=50).astype(np.float32)
        item = rng.integers(5, size=50)
        hist = np.stack([(user * 7 + time * 3 + k) % 6 for k in range(4)], axis=1)  # of (u, t)
        plain = data.canonical_order({"user_id": user, "timestamp": time, "item_id": item})
        ordered = data.canonical_order({"user_id": user, "timestamp": time, "item_id": item,
                                        "hist_item_id": hist.astype(np.int64),
                                        "hist_len": (time * 2).astype(np.float32)})
        for name in ("user_id", "timestamp", "item_id"):
            np.testing.assert_array_equal(plain[name], ordered[name])
        order = np.lexsort((user, time, item))  # item_id first, then timestamp, then user_id
        np.testing.assert_array_equal(ordered["item_id"], item[order])
        np.testing.assert_array_equal(ordered["hist_item_id"], hist.astype(np.int64)[order])
