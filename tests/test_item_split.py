"""The item-frequency split: pure reference and Beam version on a hand-built log."""
import json

import apache_beam as beam
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to
import tensorflow as tf

from components import example_io
from components.item_split import ItemFrequencySplit, count_feature, new_item_splits, split_log


def hand_log():
    """With N=7, K=2: 'old' x8 (> N), 'new7' x7 and 'new6' x6 (3K <= count <= N), 'rare' x5 (< 3K).

    Timestamps are given out of order so that the split must sort them.
    """
    rows = []
    rows += [("old", t) for t in (5, 1, 9, 3, 7, 2, 8, 4)]
    rows += [("new7", t) for t in (70, 10, 60, 20, 50, 30, 40)]
    rows += [("new6", t) for t in (6, 5, 4, 3, 2, 1)]
    rows += [("rare", t) for t in (1, 2, 3, 4, 5)]
    return rows


class SplitLogicTest(tf.test.TestCase):

    def test_new_item_splits(self):
        self.assertEqual(new_item_splits(7, 2),
                         ["warm_a", "warm_a", "warm_b", "warm_b", "warm_c", "warm_c", "test"])
        self.assertEqual(new_item_splits(6, 2), ["warm_a"] * 2 + ["warm_b"] * 2 + ["warm_c"] * 2)

    def test_split_log_exact(self):
        rows = hand_log()
        splits = split_log(rows, N=7, K=2)
        got = {(item, t): s for (item, t), s in zip(rows, splits)}
        for t in (5, 1, 9, 3, 7, 2, 8, 4):
            self.assertEqual(got[("old", t)], "base")
        for t in range(1, 6):
            self.assertEqual(got[("rare", t)], "dropped")
        # new7 in time order 10..70: a a b b c c test
        self.assertEqual([got[("new7", t)] for t in (10, 20, 30, 40, 50, 60, 70)],
                         ["warm_a", "warm_a", "warm_b", "warm_b", "warm_c", "warm_c", "test"])
        self.assertEqual([got[("new6", t)] for t in (1, 2, 3, 4, 5, 6)],
                         ["warm_a", "warm_a", "warm_b", "warm_b", "warm_c", "warm_c"])
        counts = {s: splits.count(s) for s in set(splits)}
        self.assertEqual(counts, {"base": 8, "warm_a": 4, "warm_b": 4, "warm_c": 4, "test": 1,
                                  "dropped": 5})

    def test_boundaries(self):
        # count == N is new, N + 1 is old, 3K - 1 is dropped.
        rows = [("a", t) for t in range(7)] + [("b", t) for t in range(8)] + [("c", t) for t in range(5)]
        splits = split_log(rows, N=7, K=2)
        self.assertNotIn("base", splits[:7])
        self.assertEqual(set(splits[7:15]), {"base"})
        self.assertEqual(set(splits[15:]), {"dropped"})

    def test_rejects_impossible_parameters(self):
        with self.assertRaisesRegex(ValueError, "3K <= N"):
            split_log([("a", 1)], N=5, K=2)


class BeamSplitTest(tf.test.TestCase):

    def test_beam_split_of_the_hand_log(self):
        rows = hand_log()
        examples = [example_io.to_example({"item_id": item, "user_id": f"u{i}", "timestamp": t})
                    .SerializeToString() for i, (item, t) in enumerate(rows)]
        # The hand_log docstring's split, written out: new items' rows in time order, K at a time.
        expected = {"base": [("old", t) for t in (1, 2, 3, 4, 5, 7, 8, 9)],
                    "warm_a": [("new6", 1), ("new6", 2), ("new7", 10), ("new7", 20)],
                    "warm_b": [("new6", 3), ("new6", 4), ("new7", 30), ("new7", 40)],
                    "warm_c": [("new6", 5), ("new6", 6), ("new7", 50), ("new7", 60)],
                    "test": [("new7", 70)],
                    "dropped": [("rare", t) for t in (1, 2, 3, 4, 5)]}
        counts = {"old": 8, "new7": 7, "new6": 6, "rare": 5}

        def keyed(split):
            return sorted((item, t, counts[item]) for item, t in expected[split])

        def decoded(serialized):
            ex = example_io.from_example(tf.train.Example.FromString(serialized))
            return (ex["item_id"][0].decode(), ex["timestamp"][0], ex["count"][0])

        with test_pipeline.TestPipeline() as p:
            splits, stats = (p | beam.Create(examples)
                             | ItemFrequencySplit(7, 2))  # pylint: disable=no-value-for-parameter
            for name, rows_out in splits.items():
                assert_that(rows_out | f"Decode[{name}]" >> beam.Map(decoded),
                            equal_to(keyed(name)), label=f"Check[{name}]")
            assert_that(stats | beam.Map(json.loads), equal_to([{
                "base": 8, "warm_a": 4, "warm_b": 4, "warm_c": 4, "test": 1, "dropped": 5,
                "old_items": 1, "new_items": 2, "dropped_items": 1, "N": 7, "K": 2}]),
                label="CheckStats")


class CountFeatureTest(tf.test.TestCase):
    """`count` is added by appending bytes to the serialized row; every reader must see the
    Example that setting the feature on the parsed message gives."""

    def test_appended_count_equals_a_set_count(self):
        row = example_io.to_example({"item_id": "i1", "user_id": "u1", "timestamp": 5,
                                     "title": ["a", "b"], "count": 3})
        appended = row.SerializeToString() + count_feature(7)
        expected = tf.train.Example()
        expected.CopyFrom(row)
        expected.features.feature["count"].int64_list.value[:] = [7]  # replaces the 3
        self.assertEqual(tf.train.Example.FromString(appended), expected)
        # TensorFlow's own (fast) Example parser, as Transform and the Trainer read rows.
        parsed = tf.io.parse_example(tf.constant([appended]), {
            "count": tf.io.FixedLenFeature([], tf.int64),
            "item_id": tf.io.FixedLenFeature([], tf.string),
            "title": tf.io.VarLenFeature(tf.string)})
        self.assertEqual(parsed["count"].numpy().tolist(), [7])
        self.assertEqual(parsed["item_id"].numpy().tolist(), [b"i1"])
        self.assertEqual(parsed["title"].values.numpy().tolist(), [b"a", b"b"])


class ToExampleTest(tf.test.TestCase):

    def test_types_and_empty_lists(self):
        got = example_io.to_example({"s": "x", "b": [b"y", "z"], "i": 3, "flag": True,
                                     "f": [1, 2.5], "x": 0.5, "empty": []})
        expected = tf.train.Example(features=tf.train.Features(feature={
            "s": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"x"])),
            "b": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"y", b"z"])),
            "i": tf.train.Feature(int64_list=tf.train.Int64List(value=[3])),
            "flag": tf.train.Feature(int64_list=tf.train.Int64List(value=[1])),
            "f": tf.train.Feature(float_list=tf.train.FloatList(value=[1.0, 2.5])),
            "x": tf.train.Feature(float_list=tf.train.FloatList(value=[0.5])),
            "empty": tf.train.Feature(bytes_list=tf.train.BytesList(value=[]))}))
        self.assertEqual(got, expected)
        self.assertEqual(got.features.feature["empty"].WhichOneof("kind"), "bytes_list")

    def test_unsupported_value_is_an_error(self):
        with self.assertRaisesRegex(TypeError, "feature 'x'"):
            example_io.to_example({"x": [1, None]})
