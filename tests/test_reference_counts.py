"""On the real ML-1M slice: the split reproduces the reference counts (shared/datasets/README.md),
and a ratings file with a handful of broken lines is read with exactly those lines quarantined.
On douban: its exact duplicate rows are counted and kept (`dedupe: false`), and substitute (a)
(`schemas/douban/book_music.yaml`) splits by the shipped files, with their row counts."""
import collections
import glob
import gzip
import json
import os
import shutil
import unittest

import apache_beam as beam
import tensorflow as tf

from components import example_gen, log_config, log_reader
from components.item_split import item_group, split_log
import schemas
from tests.test_ingest import ingest
from trainer import protocols

ML1M = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "datasets",
                    "ml-1m-users1-2999")
DOUBAN = os.path.join(os.path.dirname(ML1M), "douban-diffmsr")


@unittest.skipUnless(os.path.isdir(ML1M), f"real data not found at {ML1M} (../shared/datasets)")
class ReferenceCountsTest(tf.test.TestCase):

    def test_ml1m_users_1_2999_n200_k20(self):
        config = log_config.load(schemas.config_path("ml-1m"))
        with gzip.open(os.path.join(ML1M, "ratings.dat.gz"), "rt") as f:
            rows = [log_config.split_line(line, config.log, config.log.columns) for line in f]
        self.assertLen(rows, 487650)
        timestamp = config.field("timestamp")
        log = [(r["item"], log_config.parse_field(r["timestamp"], timestamp)) for r in rows]
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

    def test_a_handful_of_broken_lines_are_quarantined_exactly(self):
        folder = self.create_tempdir().full_path
        for name in ("users.dat", "movies.dat"):
            shutil.copy(os.path.join(ML1M, name), folder)
        with gzip.open(os.path.join(ML1M, "ratings.dat.gz"), "rb") as f:
            lines = f.readlines()
        broken = {100: b"1::1193::5\n", 20000: b"1::1193::5::soon\n", 300000: b"1::1193::\xff::1\n",
                  400000: b"1::99999::5::978300760\n", 487000: b"::1193::5::978300760\n"}
        for number in sorted(broken):
            lines.insert(number - 1, broken[number])
        with gzip.open(os.path.join(folder, "ratings.dat.gz"), "wb") as f:
            f.writelines(lines)
        config = log_config.load(schemas.config_path("ml-1m"))
        _, bad, stats = ingest(config, folder, self.create_tempdir().full_path, keep_examples=False)
        self.assertEqual([(r["line"], r["reason"]) for r in bad],
                         [(100, "field_count"), (20000, "bad_timestamp"), (300000, "bad_encoding"),
                          (400000, "unknown_key"), (487000, "empty_id")])
        self.assertEqual((stats["rows"], stats["examples"], stats["quarantined"]),
                         (487655, 487650, 5))
        example_gen.check_bad_fraction(stats, example_gen.DEFAULT_MAX_BAD_FRACTION, "-")


@unittest.skipUnless(os.path.isdir(DOUBAN), f"real data not found at {DOUBAN} (../shared/datasets)")
class DoubanTest(tf.test.TestCase):

    def test_exact_duplicate_rows_are_counted_and_kept(self):
        config = log_config.load(schemas.config_path("douban"))
        self.assertFalse(config.dedupe)
        files = log_reader.table_files(DOUBAN, config.log)
        self.assertEqual(len(files), len(glob.glob(os.path.join(DOUBAN, "douban_*.csv"))) - 1)
        lines = collections.Counter()
        for path in files:
            with open(path) as f:
                lines.update(line.rstrip("\n") for line in list(f)[1:] if line.strip())
        repeats = sum(n - 1 for n in lines.values())
        self.assertEqual((sum(lines.values()), repeats), (325848, 2973))
        _, bad, stats = ingest(config, DOUBAN, self.create_tempdir().full_path,
                               keep_examples=False)
        self.assertEqual((bad, stats["rows"], stats["examples"], stats["duplicate_rows"],
                          stats["dropped_duplicates"]), ([], 325848, 325848, 2973, 0))

    def test_book_music_config_splits_by_the_shipped_files(self):
        # Row counts of the files (diff_msr.md 2.3's table): every example goes to its file's split.
        config = log_reader.resolve(log_config.load(
            os.path.join(os.path.dirname(schemas.__file__), "douban", "book_music.yaml")), DOUBAN)
        protocol = protocols.build("per_domain", **config.protocol["per_domain"])
        out = os.path.join(self.create_tempdir().full_path, "stats")
        with beam.Pipeline() as p:
            examples, _, _ = p | log_reader.ReadClickLog(config, DOUBAN)  # pylint: disable=no-value-for-parameter
            _, stats = examples | protocol.beam_split()
            _ = stats | beam.io.WriteToText(out, shard_name_template="")
        with open(out) as f:
            stats = json.loads(f.read())
        self.assertEqual(stats["domains"], {
            "0": {"train": 2498, "validation": 312, "test": 313},
            "1": {"train": 76832, "validation": 9604, "test": 9605}})
        self.assertEqual(stats["domains_without_rows"], {"train": [], "validation": [], "test": []})
