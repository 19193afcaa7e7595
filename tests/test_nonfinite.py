"""Issue 11.8: no NaN escapes. The first non-finite loss stops that method/seed with a message
naming method, seed, phase and step; non-finite generated embeddings are never written; a failed
cell is reported and the others keep their results."""
import contextlib
import io
import json
import os
from unittest import mock

import numpy as np
import tensorflow as tf

from pipeline import cli, report as report_lib
from tests import fixtures
from tests.test_backbones import build
from tests.test_pipeline_e2e import K, N, write_log
from trainer import features, methods, protocol, task
from trainer.methods.cvar import CVAR
from trainer.context import ProtocolContext

CONFIG = protocol.TrainConfig(batch_size=64)


def inf_at_call(loss_of, call: int, seed=None):
    """A generator_loss that returns +inf on its `call`-th call (0-based, counted at run time),
    of the method with `seed` only when given."""
    calls = tf.Variable(-1, dtype=tf.int64)

    def loss(self, backbone, batch, training):
        value = loss_of(self, backbone, batch, training)
        if seed is not None and self.seed != seed:
            return value
        calls.assign_add(1)
        return tf.where(calls == call, tf.constant(np.inf, value.dtype), value)
    return loss


class LoopTest(tf.test.TestCase):

    def test_train_stops_at_the_first_non_finite_step(self):
        model = build("deepfm")
        data = fixtures.batch(256)  # 4 batches of 64 per epoch

        def loss_fn(batch, flag):
            bce = protocol.bce_from_logits(batch[features.LABEL], model(batch, training=True))
            return bce / 0.0 if flag else bce

        seen = []

        def flag(epoch, index):
            seen.append((epoch, index))
            return (epoch, index) == (1, 2)

        with self.assertRaises(protocol.NonFiniteLoss) as caught:
            protocol.train(model, data, model.trainable_variables, CONFIG, 2, 0, loss_fn=loss_fn,
                           batch_flag=flag, phase="warm-up on warm_b")
        self.assertEqual((caught.exception.phase, caught.exception.step), ("warm-up on warm_b", 6))
        self.assertEqual(seen[-1], (1, 2))  # nothing ran after the bad step
        self.assertEqual(str(caught.exception.attach("cvar/x", 3)),
                         "non-finite loss (inf): method cvar/x, seed 3, phase warm-up on warm_b, "
                         "step 6")

    def test_pretraining_names_backbone_seed_and_step(self):
        splits = fixtures.cold_start_splits()
        config = protocol.TrainConfig(batch_size=64, learning_rate=np.inf)
        with self.assertRaisesRegex(protocol.NonFiniteLoss,
                                    r"^non-finite loss \((nan|inf)\): method deepfm backbone, "
                                    r"seed 4, phase pretraining on base, step 1$"):
            task.pretrain("deepfm", features.MOVIELENS, fixtures.VOCAB, splits["base"], config,
                          seed=4)

    def test_generator_round_names_the_iteration(self):
        # iters=3, batches of 64 over 512 base rows: call 7 is batch 2, iteration 1 (step 7).
        splits = fixtures.cold_start_splits()
        method = methods.build("cvar", seed=0, iters=3)
        model = build("deepfm")
        method.build_modules(model)
        method.build_layers(model, {k: v[:2] for k, v in splits["base"].items()})
        with mock.patch.object(CVAR, "generator_loss", inf_at_call(CVAR.generator_loss, 7)):
            with self.assertRaises(protocol.NonFiniteLoss) as caught:
                method.run_round(model, splits["base"], CONFIG, epochs=1, iters=3,
                                 phase="round on base")
        self.assertEqual((caught.exception.phase, caught.exception.step, caught.exception.value),
                         ("round on base", 7, np.inf))
        self.assertLen(method.losses, 2)  # the two good batches

    def test_non_finite_generated_embeddings_are_not_written(self):
        splits = fixtures.cold_start_splits()
        for name in ("csdm", "cvar"):
            method = methods.build(name, seed=0, iters=1)
            model = build("deepfm")
            method.prepare(model, ProtocolContext.in_memory(splits), CONFIG)
            table = model.item_table.numpy().copy()
            generate = type(method).generate

            def poisoned(self, backbone, batch, training, generate=generate):
                e = generate(self, backbone, batch, training)
                return tf.tensor_scatter_nd_update(e, [[1, 0]], [np.nan])  # one entry of row 1

            with mock.patch.object(type(method), "generate", poisoned):
                with self.assertRaisesRegex(protocol.NonFiniteLoss,
                                            "non-finite generated embedding \\(nan\\): .*phase "
                                            "overwrite after warm_a"):
                    fixtures.after_warm(method, model, splits, "warm_a", CONFIG)
            self.assertAllEqual(model.item_table.numpy(), table)


class ReportTest(tf.test.TestCase):

    def _report(self, methods_results, failed):
        stats = {k: 1 for k in report_lib.SPLIT_KEYS + ("old_items", "new_items", "dropped_items",
                                                        "N", "K")}
        return report_lib.build_report(
            "d", stats, {"backbone": "deepfm", "seeds": [0, 1], "methods": methods_results,
                         "failed": failed,
                         "protocol": {"name": "item_frequency", "params": {"N": 1, "K": 1}}}, {})

    def test_failed_cells_are_listed_and_marked(self):
        phases = {p: {"auc": 0.6 + i / 10, "f1": 0.25} for i, p in enumerate(protocol.PHASES)}
        failed = [{"method": "cvar", "seed": 1, "message": "m1"},
                  {"method": "csdm", "seed": 0, "message": "m2"},
                  {"method": "csdm", "seed": 1, "message": "m3"}]
        report = self._report({"base": {"0": phases, "1": phases}, "cvar": {"0": phases},
                               "csdm": {}}, failed)
        self.assertEqual(sorted(report["methods"]), ["base", "cvar"])
        self.assertEqual(report["failed"], failed)
        text = report_lib.render_markdown(report)
        self.assertIn("| cvar † | 0.6000 ± 0.0000 (+0.00%) |", text)
        self.assertIn("| csdm † | failed | failed | failed | failed |", text)
        self.assertIn("- cvar seed 1: m1\n- csdm seed 0: m2\n- csdm seed 1: m3\n", text)
        self.assertEqual(report_lib.failed_cells({"deepfm": report}),
                         "deepfm cvar seed 1; deepfm csdm seed 0; deepfm csdm seed 1")
        clean = self._report({"base": {"0": phases}}, [])
        self.assertNotIn("†", report_lib.render_markdown(clean))
        self.assertEqual(report_lib.failed_cells({"deepfm": clean}), "")


class PipelineTest(tf.test.TestCase):

    def test_failed_cell_is_reported_and_the_others_kept(self):
        """cvar's loss turns infinite at its 3rd step of seed 7 only: base and cvar's seed 8
        keep their results, the report marks (cvar, 7), and the run exits 1."""
        root = self.create_tempdir().full_path
        data_dir = os.path.join(root, "ml")
        os.makedirs(data_dir)
        write_log(data_dir)
        out = os.path.join(root, "out")
        # call 0 is build_layers' (eager), so call 3 is step 2 of the round on base
        loss = inf_at_call(CVAR.generator_loss, 3, seed=7)
        stderr = io.StringIO()
        with mock.patch.object(CVAR, "generator_loss", loss), contextlib.redirect_stderr(stderr):
            code = cli.main(["run", "--dataset", "ml-1m", "--data-dir", data_dir, "--N", str(N),
                             "--K", str(K), "--runs", "2", "--seed", "7", "--batch-size", "64",
                             "--methods", "base,cvar", "--set", "cvar.iters=1",
                             "--tfma-seeds", "0", "--output", out])
        self.assertEqual(code, 1)
        printed = stderr.getvalue()
        self.assertIn("coldstart: error: non-finite loss, failed cells (see report.md): "
                      "deepfm cvar seed 7\n", printed)
        with open(os.path.join(out, "report.json")) as f:
            report = json.load(f)
        self.assertEqual(report["failed"], [{
            "method": "cvar", "seed": 7,
            "message": "non-finite loss (inf): method cvar, seed 7, phase round on base, step 2"}])
        self.assertEqual(sorted(report["per_seed"]["base"]), ["7", "8"])
        self.assertEqual(sorted(report["per_seed"]["cvar"]), ["8"])
        self.assertEqual(report["methods"]["cvar"]["cold"]["auc"],
                         report["per_seed"]["cvar"]["8"]["cold"]["auc"])
        with open(os.path.join(out, "report.md")) as f:
            text = f.read()
        self.assertIn("| cvar † |", text)
        self.assertIn("- cvar seed 7: non-finite loss (inf): method cvar, seed 7, phase round on "
                      "base, step 2", text)

