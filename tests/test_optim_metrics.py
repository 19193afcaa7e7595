"""TorchAdam against hand-computed PyTorch Adam steps; metrics against independent formulas."""

import numpy as np
import tensorflow as tf

from tests.fixtures import pairwise_auc
from trainer import metrics
from trainer.optim import TorchAdam


def reference_adam(theta, grads, lr, wd, b1=0.9, b2=0.999, eps=1e-8):
    """PyTorch Adam with coupled L2, written out step by step in numpy."""
    m = np.zeros_like(theta)
    v = np.zeros_like(theta)
    for t, g in enumerate(grads, start=1):
        g = g + wd * theta
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        theta = theta - lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
    return theta


class TorchAdamTest(tf.test.TestCase):

    def test_matches_reference_on_known_gradients(self):
        theta0 = np.array([[0.5, -0.2], [0.01, 0.0]], np.float32)
        grads = [np.array([[1.0, -2.0], [0.0, 0.5]], np.float32),
                 np.array([[0.5, 0.5], [0.0, -1.0]], np.float32),
                 np.array([[-1.0, 0.0], [0.0, 0.25]], np.float32)]
        var = tf.Variable(theta0)
        opt = TorchAdam([var], learning_rate=0.1, weight_decay=0.01)
        for g in grads:
            opt.apply_gradients([tf.constant(g)])
        # float32 vs float64 rounding stays below 1e-5; decoupled decay would be off by > 1e-3.
        self.assertAllClose(var.numpy(), reference_adam(theta0, grads, 0.1, 0.01), atol=1e-5)
        self.assertGreater(np.abs(var.numpy() - reference_adam(theta0, grads, 0.1, 0.0)).max(), 1e-3)

    def test_sparse_embedding_gradient_is_dense_and_untouched_rows_decay(self):
        table = tf.Variable(np.full((4, 3), 0.01, np.float32))
        opt = TorchAdam([table], learning_rate=1e-3, weight_decay=1e-6)
        for _ in range(300):
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(tf.gather(table, [0, 0, 1]))  # rows 2 and 3 never looked up
            grad = tape.gradient(loss, [table])
            self.assertIsInstance(grad[0], tf.IndexedSlices)
            opt.apply_gradients(grad)
        # With only the L2 gradient, Adam's step is ~lr * sign(theta): 0.01 reaches ~0 in ~10 steps
        # and then stays there (spec 3.6: never-seen rows collapse).
        self.assertLess(np.abs(table.numpy()[2:]).max(), 1e-4)
        self.assertLess(table.numpy()[0, 0], -0.2)

    def test_none_gradient_leaves_variable_alone(self):
        a, b = tf.Variable([1.0]), tf.Variable([2.0])
        opt = TorchAdam([a, b])
        opt.apply_gradients([tf.constant([1.0]), None])
        self.assertAllEqual(b.numpy(), [2.0])
        self.assertNotAllClose(a.numpy(), [1.0])


class MetricsTest(tf.test.TestCase):

    def test_auc_equals_pairwise_probability(self):
        rng = np.random.default_rng(3)
        labels = rng.integers(0, 2, 200)
        scores = np.round(rng.random(200) + 0.3 * labels, 2)  # rounding creates ties
        self.assertAllClose(metrics.auc(labels, scores), pairwise_auc(labels, scores))

    def test_auc_hand_example(self):
        # pairs (pos, neg): (0.8,0.1) win, (0.8,0.4) win, (0.35,0.1) win, (0.35,0.4) loss -> 3/4
        self.assertAlmostEqual(metrics.auc([1, 0, 1, 0], [0.8, 0.1, 0.35, 0.4]), 0.75)

    def test_f1_threshold_is_strictly_above_mean(self):
        labels = np.array([1, 1, 0, 0, 1])
        scores = np.array([0.9, 0.5, 0.5, 0.1, 0.5])  # mean 0.5: only 0.9 is predicted positive
        # tp = 1, fp = 0, fn = 2 -> precision 1, recall 1/3, F1 = 0.5
        self.assertAlmostEqual(metrics.f1_at_mean(labels, scores), 0.5)

    def test_rela_impr(self):
        # CSDM paper Table 1, ML-1M warm-a: CVAR 0.7910 vs DeepFM 0.7464 -> 18.10 %
        self.assertAlmostEqual(metrics.rela_impr(0.7910, 0.7464), 18.10, places=2)
        self.assertEqual(metrics.rela_impr(0.7, 0.7), 0.0)

    def test_logit_change_hand_example(self):
        before = np.array([-1.0, 0.0, 1.0, 2.0])
        # a pure rescale and shift: the order is kept, Pearson is 1
        found = metrics.logit_change(before, 2.0 * before + 0.5)
        self.assertAlmostEqual(found["pearson"], 1.0)
        self.assertAlmostEqual(found["slope"], 2.0)
        self.assertAlmostEqual(found["intercept"], 0.5)
        # after = (0, 1, 0, 1): both means 0.5, cov = (0.75 - 0.25 - 0.25 + 0.75) / 4 = 1 / 4,
        # var(before) = 5 / 4, var(after) = 1 / 4 -> slope 1 / 5, intercept 0.5 - 0.2 * 0.5,
        # Pearson (1 / 4) / sqrt(5 / 16) = 1 / sqrt(5)
        found = metrics.logit_change(before, np.array([0.0, 1.0, 0.0, 1.0]))
        self.assertAlmostEqual(found["slope"], 0.2)
        self.assertAlmostEqual(found["intercept"], 0.4)
        self.assertAlmostEqual(found["pearson"], 1.0 / np.sqrt(5.0))
        self.assertEqual(metrics.logit_change(before, np.ones(4)),
                         {"pearson": None, "slope": None, "intercept": None})
