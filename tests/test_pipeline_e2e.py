"""End to end: the TFX pipeline through the CLI on a small, generated ML-1M-format log."""
import collections
import contextlib
import glob
import io
import json
import os
import re

import numpy as np
from scipy import stats
import tensorflow as tf
import tensorflow_transform as tft

from components import example_io
from pipeline import cli
from pipeline import pipeline as pipeline_lib
from trainer import data, preprocessing, protocol, task

N, K = 100, 10


def write_log(directory, seed=0, bad_lines=()):
    """200 users, 40 movies: 10 old (150 rows), 20 new (30..100 rows), 10 too rare (5..20).

    Ratings depend on a user taste x movie genre match, so the label is learnable.
    `bad_lines`: {line number: text} put at those lines of ratings.dat.
    Returns the (item_id, timestamp) rows of the good lines in file order.
    """
    rng = np.random.default_rng(seed)
    genres = ["Action", "Comedy", "Drama", "Horror"]
    with open(os.path.join(directory, "users.dat"), "w", encoding="latin-1") as f:
        for u in range(1, 201):
            f.write(f"{u}::{'MF'[u % 2]}::{[1, 18, 25, 35][u % 4]}::{u % 21}::{10000 + u % 37}\n")
    with open(os.path.join(directory, "movies.dat"), "w", encoding="latin-1") as f:
        for m in range(1, 41):
            f.write(f"{m}::Movie number {m} ({1960 + m % 30})::{genres[m % 4]}|{genres[(m + 1) % 4]}\n")
    counts = [150] * 10 + list(rng.integers(30, 101, 20)) + list(rng.integers(5, 21, 10))
    rows, lines = [], []
    for m, count in enumerate(counts, start=1):
        users = rng.choice(np.arange(1, 201), size=count, replace=False)
        for u in users:
            liked = (u % 4 == m % 4) or rng.random() < 0.3
            rating = int(rng.integers(4, 6) if liked else rng.integers(1, 4))
            ts = int(rng.integers(956703932, 1046454590))
            lines.append(f"{u}::{m}::{rating}::{ts}\n")
            rows.append((str(m), ts))
    order = rng.permutation(len(lines))
    ordered = [lines[i] for i in order]
    for number, text in sorted(dict(bad_lines).items()):
        ordered.insert(number - 1, text)
    with open(os.path.join(directory, "ratings.dat"), "w") as f:
        f.writelines(ordered)
    return [rows[i] for i in order]


class PipelineEndToEndTest(tf.test.TestCase):

    def test_two_backbones_exact_splits_reports_and_reloadable_models(self):
        root = self.create_tempdir().full_path
        data_dir = os.path.join(root, "ml")
        os.makedirs(data_dir)
        bad = {7: "3::4::5\n", 1000: "9::1::4::not-a-time\n"}  # 2 of ~2,900 lines: below 0.1 %
        rows = write_log(data_dir, bad_lines=bad)
        out = os.path.join(root, "out")
        code = cli.main(["run", "--dataset", "ml-1m", "--data-dir", data_dir, "--N", str(N),
                         "--K", str(K), "--runs", "2", "--seed", "7", "--batch-size", "64",
                         "--backbone", "deepfm,dcn", "--output", out])
        self.assertEqual(code, 0)
        with open(os.path.join(out, "deepfm", "report.json")) as f:
            report = json.load(f)
        with open(os.path.join(out, "dcn", "report.json")) as f:
            dcn_report = json.load(f)
        self.assertEqual(dcn_report["backbone"], "dcn")
        self.assertEqual(dcn_report["splits"], report["splits"])
        self.assertNotEqual(dcn_report["methods"], report["methods"])
        for name in ("auc_by_phase.png", "deepfm/auc_by_phase.png", "dcn/report.md"):
            self.assertTrue(os.path.getsize(os.path.join(out, name)) > 0, name)

        # Expected splits from the generated movies' row counts alone (spec 1.5): > N rows: base;
        # 3K..N rows: K rows to each warm split, the rest to test; fewer: dropped.
        per_item = collections.Counter(item for item, _ in rows)
        new = [c for c in per_item.values() if 3 * K <= c <= N]
        counts = {"base": sum(c for c in per_item.values() if c > N), "warm_a": K * len(new),
                  "warm_b": K * len(new), "warm_c": K * len(new),
                  "test": sum(c - 3 * K for c in new),
                  "dropped": sum(c for c in per_item.values() if c < 3 * K)}
        self.assertEqual((counts["base"], counts["warm_a"], len(new)), (1500, 20 * K, 20))
        self.assertEqual(report["splits"], {**counts, "old_items": 10, "new_items": 20,
                                            "dropped_items": 10})
        quarantined = report["quarantined"]
        self.assertEqual((quarantined["rows"], quarantined["by_reason"]),
                         (2, {"bad_timestamp": 1, "field_count": 1}))
        records = [json.loads(line) for path in tf.io.gfile.glob(quarantined["path"])
                   for line in open(path)]
        self.assertEqual(sorted((r["line"], r["reason"], r["raw"]) for r in records),
                         [(7, "field_count", "3::4::5"),
                          (1000, "bad_timestamp", "9::1::4::not-a-time")])
        self.assertEqual(report["ingest"], {"rows": len(rows) + 2, "examples": len(rows),
                                            "negatives": 0, "duplicate_files": 0,
                                            "duplicate_rows": 0, "dropped_duplicates": 0,
                                            "identical_side_rows": 0, "unmatched": {}})
        self.assertEqual((report["dataset"], report["backbone"], report["N"], report["K"]),
                         ("ml-1m", "deepfm", N, K))
        self.assertEqual((report["runs"], report["seeds"]), (2, [7, 8]))
        self.assertEqual(sorted(report["methods"]), ["base"])
        for phase in protocol.PHASES:
            values = report["methods"]["base"][phase]
            per_seed = [report["per_seed"]["base"][s][phase]["auc"] for s in ("7", "8")]
            self.assertAllClose(values["auc"], np.mean(per_seed))
            self.assertAllClose(values["auc_std"], np.std(per_seed))
            self.assertEqual(values["rela_impr"], 0.0)
        self.assertGreater(report["wall_seconds"], 0)
        # The TFMA Evaluator, run on the same predictions, agrees with our AUC.
        self.assertLess(report["tfma"]["max_abs_auc_diff"], 1e-3)
        self.assertEqual(report["tfma"]["seeds"], ["7"])  # --tfma-seeds defaults to 1
        self.assertEqual(sorted(report["tfma"]["pooled_auc"]["base"]), sorted(protocol.PHASES))
        with open(os.path.join(out, "report.md")) as f:
            combined = f.read()
        self.assertIn("# ml-1m / deepfm", combined)
        self.assertIn("# ml-1m / dcn", combined)

        # Round trip: the pretrained model saved by the Trainer, reloaded, gives the cold AUC and
        # F1 of the report, computed here independently of trainer/metrics.py.
        metadata = pipeline_lib.local_paths(out)["metadata_path"]
        transformed = [uri for uri in pipeline_lib.artifact_uris(metadata, "Examples")
                       if "/Transform/" in uri][0]
        graph = pipeline_lib.latest_artifact_uri(metadata, "TransformGraph")
        model_uri = [uri for uri in pipeline_lib.artifact_uris(metadata, "Model")
                     if "Trainer.deepfm" in uri][0]
        spec = tft.TFTransformOutput(graph).transformed_feature_spec()
        test = data.load_files(example_io.split_files(transformed, "test"), spec)
        self.assertLen(test["label"], counts["test"])
        model = task.load(task.seed_dir(os.path.join(model_uri, "Format-Serving"), 8), test)
        scores = tf.sigmoid(model(test, training=False)).numpy().astype(np.float64)
        labels = test["label"]
        positives = labels == 1
        # Mann-Whitney: the mean rank of the positives (ties averaged) gives P(pos > neg).
        ranks = stats.rankdata(scores)
        auc = ((ranks[positives].sum() - positives.sum() * (positives.sum() + 1) / 2)
               / (positives.sum() * (~positives).sum()))
        predicted = scores > scores.mean()
        f1 = 2 * np.sum(predicted & positives) / (np.sum(predicted) + np.sum(positives))
        cold = report["per_seed"]["base"]["8"]["cold"]
        self.assertAllClose((cold["auc"], cold["f1"]), (auc, f1), atol=1e-6)
        self.assertEqual(preprocessing.vocab_sizes(tft.TFTransformOutput(graph), model.config)
                         ["item_id"], 41)


class CliErrorsTest(tf.test.TestCase):

    def test_ml1m_without_data_dir(self):
        out = self.create_tempdir().full_path
        self.assertEqual(cli.main(["run", "--dataset", "ml-1m", "--output", out]), 2)

    def test_folder_without_movielens_files(self):
        empty = self.create_tempdir().full_path
        with self.assertRaisesRegex(FileNotFoundError, r"no input file matches .*ratings.dat\*"):
            cli.run(cli.parser().parse_args(
                ["run", "--dataset", "ml-1m", "--data-dir", empty, "--output", empty]))

    def test_one_percent_bad_lines_fail_the_run_with_count_and_path(self):
        root = self.create_tempdir().full_path
        bad = {n: f"{n}::x\n" for n in range(10, 2900, 100)}  # 29 of ~2,900 lines: 1 %
        rows = write_log(root, bad_lines=bad)
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr):
            code = cli.main(["run", "--dataset", "ml-1m", "--data-dir", root, "--N", str(N),
                             "--K", str(K), "--output", os.path.join(root, "out")])
        self.assertEqual(code, 1)
        total = len(rows) + len(bad)
        message = stderr.getvalue()
        self.assertRegex(message, rf"29 of {total:,} input rows \({100 * 29 / total:.2f} %\) are "
                                  rf"bad, above the threshold of 0.1 % \(field_count: 29\)")
        path = re.search(r"are in (\S+)", message).group(1)
        records = [json.loads(line) for p in glob.glob(path) for line in open(p)]
        self.assertEqual(sorted(r["line"] for r in records), sorted(bad))

    def test_missing_column_in_own_config(self):
        root = self.create_tempdir().full_path
        with open(os.path.join(root, "log.csv"), "w") as f:
            f.write("user,item,time,click\nu,i,1,1\n")
        config = os.path.join(root, "mine.yaml")
        with open(config, "w") as f:
            f.write("name: mine\nlog: {files: [log.csv]}\n"
                    "label: {column: clicked, positive: [1], negative: [0]}\n"
                    "fields:\n  - {name: user_id, column: user}\n  - {name: item_id, column: item}\n"
                    "  - {name: timestamp, column: time, type: timestamp}\n")
        with self.assertRaisesRegex(ValueError, "reads column 'clicked', which no input has"):
            cli.run(cli.parser().parse_args(["run", "--dataset", config, "--data-dir", root,
                                             "--output", root]))

    def test_unknown_names_fail_before_any_work(self):
        out = self.create_tempdir().full_path
        for flag, value, message in (("--backbone", "nope", "unknown backbone 'nope'"),
                                     ("--methods", "base,nope", "unknown cold-start method 'nope'")):
            with self.assertRaisesRegex(ValueError, message):
                cli.run(cli.parser().parse_args(["run", "--dataset", "ml-1m", "--data-dir", out,
                                                 "--output", out, flag, value]))
        self.assertEqual(os.listdir(out), [])


class CompileTest(tf.test.TestCase):

    def test_kubeflow_v2_json(self):
        out = os.path.join(self.create_tempdir().full_path, "pipeline.json")
        self.assertEqual(cli.main(["compile", "--data-root", "gs://b/ml-1m", "--pipeline-root",
                                   "gs://b/runs", "--image", "registry.example/coldstart:1",
                                   "--backbone", "deepfm,dcn", "--output", out]), 0)
        with open(out) as f:
            spec = json.load(f)
        spec = spec.get("pipelineSpec", spec)
        self.assertEqual(sorted(spec["root"]["dag"]["tasks"]), sorted(
            ["ClickLogExampleGen", "QuarantineGate", "ImportSchemaGen", "ItemSplitGen", "StatisticsGen",
             "ExampleValidator", "AnomalyGate", "Transform"]
            + [f"{c}.{b}" for c in ("Trainer", "WarmupEvaluate", "Evaluator", "ReportGen")
               for b in ("deepfm", "dcn")]))
        text = json.dumps(spec)
        self.assertIn("registry.example/coldstart:1", text)
        self.assertIn(cli.IMAGE_SCHEMA.format("ml-1m"), text)
