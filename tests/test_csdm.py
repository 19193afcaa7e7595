"""CSDM (spec 4.6): schedule constants, forward/reverse process, training, overwrite."""
from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from tests import fixtures
from tests.test_backbones import build
from tests.test_methods import loss_trend
from trainer import methods, protocol
from trainer.methods.csdm import CSDM, schedule
from trainer.context import ProtocolContext

CONFIG = protocol.TrainConfig(batch_size=64)


def small_csdm(**options):
    return methods.build("csdm", seed=0, **{"iters": 2, **options})


def prepared(method, backbone=None):
    backbone = backbone or build("deepfm")
    splits = fixtures.cold_start_splits()
    protocol.seed_everything(0)
    method.prepare(backbone, ProtocolContext.in_memory(splits), CONFIG)
    return method, backbone, splits


class ScheduleTest(tf.test.TestCase):

    def test_constants_match_the_spec_table(self):
        alpha_bar, c = schedule(100, 1e-5, 1e-5)
        # spec 4.6.3 (beta = 1e-5, T = 100)
        table = {0: (0.99999000, 0.010002), 10: (0.99989001, 0.110024),
                 50: (0.99949013, 0.510062), 90: (0.99909041, 0.910020),
                 99: (0.99900049, 1.000000)}
        for t, (ab, ct) in table.items():
            self.assertAllClose(alpha_bar[t], ab, atol=1e-8, msg=f"alpha_bar[{t}]")
            self.assertAllClose(c[t], ct, atol=1e-6, msg=f"c[{t}]")
        self.assertAllClose(np.sqrt(1 - alpha_bar[99]), 0.031615, atol=1e-6)

    def test_argparse_default_schedule(self):
        _, c = schedule(6, 1e-5, 2e-3)
        self.assertAllClose(c, [0.0185, 0.1366, 0.3027, 0.5054, 0.7391, 1.0], atol=1e-4)

    def test_reverse_sub_sequence(self):
        alpha_bar, c = schedule(100, 1e-5, 1e-5)
        steps = CSDM.reverse_steps(100, 10, alpha_bar, c)
        self.assertEqual([s[0] for s in steps], [90, 80, 70, 60, 50, 40, 30, 20, 10, 0])
        self.assertEqual(steps[-1][2:], (1.0, float(c[0]), 0.0))


class ProcessTest(tf.test.TestCase, parameterized.TestCase):

    def test_forward_mean_without_dropout(self):
        method, _, _ = prepared(small_csdm(dropout=False))
        tf.random.set_seed(3)
        n, t = 20000, 50
        z0 = tf.tile(tf.constant([[0.3, -0.2] * 8]), [n, 1])
        h = tf.tile(tf.constant([[1.0, 0.5] * 8]), [n, 1])
        z_t = method.q_sample(z0, h, tf.fill([n], t), tf.random.normal([n, 16]))
        alpha_bar, c = schedule(100, 1e-5, 1e-5)
        expected = np.sqrt(alpha_bar[t]) * z0[0] + c[t] * h[0]
        self.assertAllClose(tf.reduce_mean(z_t, axis=0), expected, atol=3 * 0.0226 / np.sqrt(n) * 4)
        self.assertAllClose(tf.math.reduce_std(z_t, axis=0), [np.sqrt(1 - alpha_bar[t])] * 16,
                            rtol=0.03)
        exact = method.q_sample(z0[:1], h[:1], tf.constant([t]), tf.zeros([1, 16]))
        self.assertAllClose(exact[0], expected, atol=1e-6)

    def test_forward_with_dropout_masks_h(self):
        """With dropout (the paper's setting) each element of c_t h is dropped or doubled."""
        method, _, _ = prepared(small_csdm(dropout=True))
        n, t = 4000, 50
        z0, eps = tf.zeros([n, 16]), tf.zeros([n, 16])
        h = tf.ones([n, 16])
        c_t = schedule(100, 1e-5, 1e-5)[1][t]
        h_part = method.q_sample(z0, h, tf.fill([n], t), eps).numpy() / c_t
        self.assertAllClose(np.unique(np.round(h_part, 4)), [0.0, 2.0])
        self.assertNear(float((h_part > 1).mean()), 0.5, 0.02)

    @parameterized.parameters("c", "sqrt_c")
    def test_reverse_with_oracle_denoiser_recovers_z0(self, forward_coef):
        method, _, _ = prepared(small_csdm(dropout=False, forward_coef=forward_coef))
        rng = np.random.default_rng(0)
        z0 = tf.constant(rng.normal(size=(5, 16)), tf.float32)
        h = tf.constant(rng.normal(size=(5, 16)), tf.float32)
        eps = tf.constant(rng.normal(size=(5, 16)), tf.float32)
        z_90 = method.q_sample(z0, h, tf.fill([5], 90), eps)
        oracle = lambda x, t, training: eps  # noqa: E731  (the true noise, at every step)
        recovered = method.reverse(h, False, eps_model=oracle, x_start=z_90)
        self.assertAllClose(recovered, z0, atol=1e-4)
        # a wrong noise estimate does not recover it
        wrong = method.reverse(h, False, eps_model=lambda x, t, training: 0 * eps, x_start=z_90)
        self.assertGreater(float(tf.reduce_max(tf.abs(wrong - z0))), 1e-3)


class TrainingTest(tf.test.TestCase):

    def _denoiser_change(self, train_denoiser):
        method = small_csdm(train_denoiser=train_denoiser)
        backbone = build("deepfm")
        splits = fixtures.cold_start_splits()
        method.build_modules(backbone)
        method.build_layers(backbone, {k: v[:2] for k, v in splits["base"].items()})
        before = [v.numpy().copy() for v in method.denoiser.trainable_variables]
        method.run_round(backbone, splits["base"], CONFIG, epochs=1, iters=2)
        return max(np.abs(b - v.numpy()).max()
                   for b, v in zip(before, method.denoiser.trainable_variables))

    def test_denoiser_trains_only_when_asked(self):
        self.assertGreater(self._denoiser_change(True), 1e-5)
        self.assertEqual(self._denoiser_change(False), 0.0)

    def test_xla_round_trains_and_writes_new_items(self):
        # XLA draws other random numbers (t, eps, dropout), so it is compared by behaviour.
        backbone = build("deepfm")
        before = backbone.item_table.numpy().copy()
        _, backbone, splits = prepared(small_csdm(jit_compile=True), backbone)
        new = np.unique(splits["warm_a"]["item_id"])
        after = backbone.item_table.numpy()
        self.assertTrue(np.all(np.isfinite(after)))
        self.assertTrue(np.all(np.abs(after[new] - before[new]).max(axis=1) > 0))
        first, last = loss_trend("csdm", jit_compile=True)
        self.assertLess(last, first)

    def test_unknown_option_is_rejected(self):
        with self.assertRaisesRegex(ValueError, "unknown options \\['nope'\\]"):
            small_csdm(nope=1)
