"""Loading transformed splits: every row, parsed, in a canonical order."""
import os

import numpy as np
import tensorflow as tf

from components import example_io
from trainer import data

SPEC = {"item_id": tf.io.FixedLenFeature([], tf.int64),
        "title": tf.io.FixedLenFeature([3], tf.int64),
        "count": tf.io.FixedLenFeature([], tf.float32)}
ROWS = [{"item_id": 2, "title": [1, 2, 0], "count": 0.5},
        {"item_id": 1, "title": [4, 0, 0], "count": 0.25},
        {"item_id": 2, "title": [1, 1, 0], "count": 0.5},
        {"item_id": 1, "title": [4, 0, 0], "count": 0.125}]


def write(path, rows):
    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        for row in rows:
            writer.write(example_io.to_example(row).SerializeToString())


class LoadTest(tf.test.TestCase):

    def test_same_rows_in_any_file_order_give_the_same_arrays(self):
        tmp = self.create_tempdir().full_path
        write(os.path.join(tmp, "a.gz"), ROWS[:2])
        write(os.path.join(tmp, "b.gz"), ROWS[2:])
        write(os.path.join(tmp, "c.gz"), ROWS[::-1])
        first = data.load_files([os.path.join(tmp, "a.gz"), os.path.join(tmp, "b.gz")], SPEC)
        second = data.load_files([os.path.join(tmp, "c.gz")], SPEC)
        for name in SPEC:
            self.assertAllEqual(first[name], second[name])
        # sorted by count, then item_id, then title
        self.assertAllEqual(first["count"], [0.125, 0.25, 0.5, 0.5])
        self.assertAllEqual(first["title"], [[4, 0, 0], [4, 0, 0], [1, 1, 0], [1, 2, 0]])
        self.assertEqual(first["title"].dtype, np.int64)

    def test_no_files_is_an_error(self):
        with self.assertRaisesRegex(FileNotFoundError, "no input files"):
            data.load_files([], SPEC)
