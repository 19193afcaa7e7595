"""PyTorch-semantics Adam (spec 3.6, D11): coupled L2 and dense gradients.

g <- dense(g) + weight_decay * theta; m, v updated for every row (rows absent from a batch keep
moving with their momentum, and rows that never get a data gradient decay towards 0);
theta <- theta - lr * m_hat / (sqrt(v_hat) + eps).
Keras' Adam differs (decoupled decay, eps inside the bias correction), which changes cold-stage
AUC because never-seen item rows do not collapse to 0 under it.
"""
from typing import Sequence

import tensorflow as tf


class TorchAdam(tf.Module):
    def __init__(self, variables: Sequence[tf.Variable], learning_rate=1e-3, weight_decay=1e-6,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, name="torch_adam"):
        super().__init__(name=name)
        self.variables_ = list(variables)
        self.lr, self.wd, self.b1, self.b2, self.eps = (learning_rate, weight_decay, beta_1, beta_2,
                                                         epsilon)
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.m = [tf.Variable(tf.zeros_like(v), trainable=False) for v in self.variables_]
        self.v = [tf.Variable(tf.zeros_like(v), trainable=False) for v in self.variables_]

    def reset(self) -> None:
        """Back to a fresh optimizer's state (step 0, zero moments), keeping its variables, so
        that a traced step that captured them can be reused."""
        self.step.assign(0)
        for slot in self.m + self.v:
            slot.assign(tf.zeros_like(slot))

    def apply_gradients(self, grads) -> None:
        self.step.assign_add(1)
        t = tf.cast(self.step, tf.float32)
        correction1 = 1.0 - tf.pow(self.b1, t)
        correction2 = 1.0 - tf.pow(self.b2, t)
        for var, grad, m, v in zip(self.variables_, grads, self.m, self.v):
            if grad is None:  # PyTorch skips parameters without a .grad
                continue
            g = tf.convert_to_tensor(grad) + self.wd * var  # densifies IndexedSlices
            m.assign(self.b1 * m + (1.0 - self.b1) * g)
            v.assign(self.b2 * v + (1.0 - self.b2) * tf.square(g))
            denom = tf.sqrt(v / correction2) + self.eps
            var.assign_sub(self.lr * (m / correction1) / denom)
