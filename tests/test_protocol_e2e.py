"""End to end through the CLI: the leave_last_out and per_domain protocols on small hand-built
logs; split sizes, group sizes and slices checked against counts computed here."""
import collections
import json
import math
import os

import numpy as np
import tensorflow as tf

from pipeline import cli

T0 = 1_000_000_000  # a plausible Unix time


def run(root, config_text, rows, header, *flags):
    with open(os.path.join(root, "log.csv"), "w") as f:
        f.write(",".join(header) + "\n")
        f.writelines(",".join(str(v) for v in row) + "\n" for row in rows)
    config = os.path.join(root, "own.yaml")
    with open(config, "w") as f:
        f.write(config_text)
    out = os.path.join(root, "out")
    code = cli.main(["run", "--dataset", config, "--data-dir", root, "--batch-size", "64",
                     "--pretrain-epochs", "30", "--output", out, *flags])
    assert code == 0, code
    with open(os.path.join(out, "report.json")) as f:
        return json.load(f)


def assert_tfma_agrees(self, report):
    """TFMA's thresholded AUC (10,000 buckets) against ours: overall to 1e-3; the small slices of
    these tiny logs hold scores closer than a bucket, so there only to 0.05."""
    self.assertAllClose(report["tfma"]["pooled_auc"]["base"]["overall"],
                        report["methods"]["base"]["overall"]["auc"], atol=1e-3)
    self.assertLess(report["tfma"]["max_abs_auc_diff"], 0.05)


FIELDS = """fields:
  - {name: user_id, column: user, role: user}
  - {name: item_id, column: item, role: item}
  - {name: timestamp, column: time, type: timestamp}
"""


class LeaveLastOutTest(tf.test.TestCase):
    assert_tfma_agrees = assert_tfma_agrees

    def test_groups_splits_and_slices(self):
        rng = np.random.default_rng(0)
        rows = []
        for u in range(40):
            events = 1 + (u * 7) % 13  # 1..13 time units per user
            for t in range(events):
                item = int(rng.integers(0, 25))
                rows.append((f"u{u}", f"i{item}", T0 + 100 * t, int((item + u) % 3 == 0)))
            if u % 5 == 0:  # a tie: a second row in the user's last time unit
                rows.append((f"u{u}", "i99", T0 + 100 * (events - 1), 1))
        config = ("name: llo\nlog: {files: [log.csv]}\n" + FIELDS
                  + 'label: {column: click, positive: ["1"], negative: ["0"]}\n'
                  + "protocol: {name: leave_last_out}\n")
        report = run(self.create_tempdir().full_path, config, rows,
                     ("user", "item", "time", "click"), "--protocol", "leave_last_out")

        # Expected, computed here: per user the last time unit is test, the one before
        # validation; L = train positives; nearest-rank 60th / 90th percentiles of L over users.
        by_user = collections.defaultdict(list)
        for user, _, time, click in rows:
            by_user[user].append((time, click))
        split_of, length = {}, {}
        for user, events in by_user.items():
            times = sorted({t for t, _ in events})
            roles = {times[-1]: "test", **({times[-2]: "validation"} if len(times) > 1 else {})}
            split_of[user] = [(roles.get(t, "train"), c) for t, c in events]
            length[user] = sum(c for s, c in split_of[user] if s == "train")
        ordered = sorted(length.values())
        cut_low = ordered[math.ceil(0.6 * len(ordered)) - 1]
        cut_high = ordered[math.ceil(0.9 * len(ordered)) - 1]

        def group(user):
            return ("non_active" if length[user] <= cut_low else
                    "slightly_active" if length[user] <= cut_high else "highly_active")

        expected = collections.Counter()
        for user, events in split_of.items():
            expected[f"users_{group(user)}"] += 1
            for split, _ in events:
                expected[split] += 1
                expected[f"{split}_{group(user)}"] += 1
        splits = report["splits"]
        for key, value in expected.items():
            self.assertEqual(splits[key], value, key)
        self.assertEqual((splits["cut_low_value"], splits["cut_high_value"]), (cut_low, cut_high))
        self.assertEqual(splits["users_without_history"],
                         sum(1 for u in split_of if all(s != "train" for s, _ in split_of[u])))

        self.assertEqual(report["protocol"]["name"], "leave_last_out")
        self.assertEqual(report["protocol"]["slices"][0], "overall")
        base = report["methods"]["base"]
        self.assertEqual(base["overall"]["rows"], expected["test"])
        for name in ("non_active", "slightly_active", "highly_active"):
            if expected[f"test_{name}"]:
                self.assertEqual(base[name]["rows"], expected[f"test_{name}"], name)
        self.assert_tfma_agrees(report)


class PerDomainTest(tf.test.TestCase):
    assert_tfma_agrees = assert_tfma_agrees

    def run_domains(self, *flags):
        rng = np.random.default_rng(1)
        rows = []
        for domain, n in (("a", 200), ("b", 100), ("c", 9)):
            for i in range(n):
                user, item = int(rng.integers(0, 30)), int(rng.integers(0, 20))
                rows.append((domain, f"u{user}", f"{domain}{item}", int((user + item) % 2 == 0),
                             T0 + i))
        config = ("name: dom\nlog: {files: [log.csv]}\n" + FIELDS
                  + "  - {name: domain, column: domain, role: item}\n"
                  + 'label: {column: click, positive: ["1"], negative: ["0"]}\n'
                  + "protocol: {name: per_domain, per_domain: {domain_names: {a: alpha}}}\n")
        return run(self.create_tempdir().full_path, config, rows,
                   ("domain", "user", "item", "click", "time"), *flags)

    def test_domains_splits_and_slices(self):
        report = self.run_domains()
        self.assertNotIn("early_stopping", report)
        # floor(0.8 n) train, floor(0.1 n) validation, the rest test, per domain
        self.assertEqual(report["splits"]["domains"],
                         {"a": {"train": 160, "validation": 20, "test": 20},
                          "b": {"train": 80, "validation": 10, "test": 10},
                          "c": {"train": 7, "validation": 0, "test": 2}})
        self.assertEqual(report["splits"]["domains_without_rows"],
                         {"train": [], "validation": ["c"], "test": []})
        base = report["methods"]["base"]
        self.assertEqual(report["protocol"]["slices"], ["overall", "alpha", "b", "c"])
        self.assertEqual([base[s]["rows"] for s in report["protocol"]["slices"]], [32, 20, 10, 2])
        self.assert_tfma_agrees(report)

    def test_early_stopping_on_the_validation_split(self):
        report = self.run_domains("--early-stopping", "3", "--tfma-seeds", "0")
        # At most 30 epochs (`run`); kept the best validation AUC's epoch and stopped 3 later.
        stopped = report["early_stopping"]["0"]
        aucs = stopped["validation_auc"]
        self.assertEqual(stopped["best_epoch"], int(np.argmax(aucs)) + 1)
        self.assertEqual(stopped["epochs"], min(30, stopped["best_epoch"] + 3))
        self.assertLen(aucs, stopped["epochs"])
        self.assertEqual(report["config"]["train"]["early_stopping"], 3)

    def test_unsupported_method_and_unknown_parameter_fail_before_work(self):
        out = self.create_tempdir().full_path
        for flags, message in (
                (["--protocol", "per_domain", "--methods", "base,csdm"],
                 "method csdm runs on protocol\\(s\\) item_frequency, not per_domain"),
                (["--protocol", "leave_last_out", "--set", "protocol.unit=week"],
                 "unit"),
                (["--protocol", "leave_last_out", "--N", "5"],
                 "--N is a parameter of item_frequency, not of leave_last_out")):
            with self.assertRaisesRegex(ValueError, message):
                cli.run(cli.parser().parse_args(["run", "--dataset", "ml-1m", "--data-dir", out,
                                                 "--output", out, *flags]))
        self.assertEqual(os.listdir(out), [])
