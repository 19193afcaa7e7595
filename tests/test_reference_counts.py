"""The split on the real ML-1M slice reproduces the reference counts (shared/datasets/README.md)."""
import gzip
import os
import unittest

import tensorflow as tf

from components import movielens
from components.item_split import item_group, split_log

ML1M = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "datasets",
                    "ml-1m-users1-2999")


@unittest.skipUnless(os.path.isdir(ML1M), f"real data not found at {ML1M} (../shared/datasets)")
class ReferenceCountsTest(tf.test.TestCase):

    def test_ml1m_users_1_2999_n200_k20(self):
        with gzip.open(os.path.join(ML1M, "ratings.dat.gz"), "rt") as f:
            rows = [movielens.parse_rating(line, "ml-1m") for line in f]
        self.assertLen(rows, 487650)
        log = [(item, ts) for _, item, _, ts in rows]
        splits = split_log(log, N=200, K=20)
        counts = {name: splits.count(name) for name in set(splits)}
        self.assertEqual(counts["base"], 324415)
        self.assertEqual((counts["warm_a"], counts["warm_b"], counts["warm_c"]), (21740,) * 3)
        self.assertEqual(counts["test"], 61105)
        item_counts = {}
        for item, _ in log:
            item_counts[item] = item_counts.get(item, 0) + 1
        groups = [item_group(c, 200, 20) for c in item_counts.values()]
        self.assertEqual((groups.count("old"), groups.count("new")), (765, 1087))
