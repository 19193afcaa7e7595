"""The warm-up protocol and its reference-semantics options (spec 3.2, 3.6, D11, D12)."""
import numpy as np
import tensorflow as tf

from tests import fixtures
from tests.test_backbones import build, snapshot
from trainer import features, metrics, protocol
from trainer.context import ProtocolContext
from trainer.methods import ColdStartMethod


def without_items(data, items):
    keep = ~np.isin(data[features.ITEM_ID], items)
    return {k: v[keep] for k, v in data.items()}


class OptimizerSemanticsTest(tf.test.TestCase):

    def _train_and_get_unseen_rows(self, optimizer):
        model = build("deepfm")
        unseen = [3, 4, 5]
        data = without_items(fixtures.batch(512), unseen)
        before = model.item_table.numpy()[unseen].copy()
        protocol.train(model, data, model.trainable_variables,
                       protocol.TrainConfig(batch_size=8, optimizer=optimizer), epochs=3, seed=0)
        return before, model.item_table.numpy()[unseen]

    def test_torch_adam_collapses_never_seen_item_rows(self):
        before, after = self._train_and_get_unseen_rows("torch_adam")
        self.assertGreater(np.abs(before).max(), 5e-3)
        self.assertLess(np.abs(after).max(), 1e-4)

    def test_keras_adam_keeps_never_seen_item_rows(self):
        before, after = self._train_and_get_unseen_rows("keras_adam")
        self.assertAllClose(before, after, atol=1e-7)

    def test_bad_option_is_rejected(self):
        with self.assertRaisesRegex(ValueError, "optimizer must be"):
            protocol.TrainConfig(optimizer="sgd")


class RecordingMethod(ColdStartMethod):
    name = "recording"

    def __init__(self):
        super().__init__()
        self.calls = []

    def prepare(self, backbone, context, config):
        self.calls.append(("prepare", None))

    def after_warm(self, backbone, stage, context, config):
        self.calls.append(("after_warm", stage.name))


class StageLoopTest(tf.test.TestCase):

    def _splits(self):
        return {name: fixtures.batch(300, seed=i) for i, name in
                enumerate(("warm_a", "warm_b", "warm_c", "test"))}

    def test_phases_metrics_and_hooks(self):
        model = build("deepfm")
        splits = self._splits()
        method = RecordingMethod()
        cold_scores = protocol.predict(model, splits["test"])
        results = protocol.warm_up_and_evaluate(model, ProtocolContext.in_memory(splits),
                                                protocol.TrainConfig(batch_size=64),
                                                seed=0, method=method)
        self.assertEqual(list(results), ["cold", "warm_a", "warm_b", "warm_c"])
        self.assertEqual({name: list(r) for name, r in results.items()},
                         {name: ["overall"] for name in results})
        results = {name: r["overall"] for name, r in results.items()}
        labels = splits["test"][features.LABEL]
        self.assertAllClose(results["cold"]["auc"], metrics.auc(labels, cold_scores))
        self.assertAllClose(results["cold"]["f1"], metrics.f1_at_mean(labels, cold_scores))
        self.assertAllClose(results["warm_c"]["auc"],
                            metrics.auc(labels, protocol.predict(model, splits["test"])))
        self.assertEqual(method.calls, [("prepare", None), ("after_warm", "warm_a"),
                                        ("after_warm", "warm_b"), ("after_warm", "warm_c")])

    def test_item_phases_equal_the_loop_before_protocols_bit_for_bit(self):
        """The stage loop as it was written before protocols existed (spec 3.2: evaluate test;
        then per warm split, train the item-ID table with seed + 1000 * (index of the phase just
        evaluated + 1) and evaluate again) gives the same AUC and F1, float for float."""
        config = protocol.TrainConfig(batch_size=64)
        for seed in (0, 3):
            splits = self._splits()
            model = build("deepfm")
            protocol.seed_everything(seed)
            expected = {}
            for index, (phase, warm) in enumerate(zip(protocol.PHASES,
                                                      ("warm_a", "warm_b", "warm_c", None))):
                expected[phase] = protocol.evaluate(model, splits["test"])["overall"]
                if warm:
                    protocol.train(model, splits[warm], model.item_id_variables(), config,
                                   config.warm_epochs, seed=seed + 1000 * (index + 1))
            got = protocol.warm_up_and_evaluate(build("deepfm"), ProtocolContext.in_memory(splits),
                                                config, seed)
            self.assertEqual({phase: r["overall"] for phase, r in got.items()}, expected)

    def test_same_seed_same_result(self):
        runs = [protocol.warm_up_and_evaluate(build("deepfm"), ProtocolContext.in_memory(self._splits()),
                                              protocol.TrainConfig(batch_size=64), seed=5)
                for _ in range(2)]
        self.assertEqual(runs[0], runs[1])

    def test_frozen_mode_decides_batchnorm_statistics(self):
        for mode, moves in (("train", True), ("inference", False)):
            model = build("deepfm")
            moving = snapshot(model.non_trainable_variables)
            protocol.warm_up_and_evaluate(model, ProtocolContext.in_memory(self._splits()),
                                          protocol.TrainConfig(batch_size=64, frozen_mode=mode), 0)
            after = snapshot(model.non_trainable_variables)
            changed = any(not np.array_equal(moving[n], after[n]) for n in moving)
            self.assertEqual(changed, moves, mode)


class TracedStepReuseTest(tf.test.TestCase):
    """protocol.train and predict trace once per model and reuse the step (speed, issue 12)."""

    def _functions(self, model, kind):
        return [f for key, f in model.__dict__.get("_coldstart_functions", {}).items()
                if key[0] == kind]

    def test_three_warm_ups_trace_one_step_once(self):
        model = build("deepfm")
        data = fixtures.batch(300)  # batches of 64: four full ones and one of 44
        for seed in range(3):
            protocol.train(model, data, model.item_id_variables(),
                           protocol.TrainConfig(batch_size=64), epochs=1, seed=seed)
            protocol.predict(model, data, batch_size=64)
        (step, _), = self._functions(model, "train")
        forward, = self._functions(model, "predict")
        self.assertEqual(step.tracing_count(), 1)  # any batch size: the last batch of 44 too
        self.assertEqual(forward.tracing_count(), 1)

    def test_reused_step_trains_as_a_fresh_step_and_optimizer(self):
        """Without random ops in the step (training=False: no dropout), a reused step whose
        optimizer was reset gives the weights a fresh tf.function and optimizer give, bit for
        bit, for both optimizers."""
        for optimizer in ("torch_adam", "keras_adam"):
            config = protocol.TrainConfig(batch_size=64, optimizer=optimizer)
            data = [fixtures.batch(300, seed=i) for i in range(2)]
            reused, fresh = build("deepfm"), build("deepfm")
            for index, part in enumerate(data):
                for model in (reused, fresh):
                    if model is fresh:
                        model.__dict__.pop("_coldstart_functions", None)
                    protocol.train(model, part, model.trainable_variables, config, epochs=2,
                                   seed=index, training=False)
            self.assertLen(self._functions(reused, "train"), 1)
            for a, b in zip(reused.trainable_variables, fresh.trainable_variables):
                self.assertAllEqual(a.numpy(), b.numpy(), f"{optimizer}: {a.name}")
            moved = build("deepfm")
            self.assertNotAllClose(moved.item_table.numpy(), reused.item_table.numpy())
