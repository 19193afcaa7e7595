"""CSDM: supervised diffusion warm-up embeddings (AAAI 2025; spec csdm_and_baselines.md 4.6).

Per row, with e_i the backbone's (frozen) item-ID embedding and s(x) the item's side information
from private tables (`SideInfo`):
  z0 = mean_encoder(e_i)                    h = mean_encoder_p(s(x))
  forward (training):  t ~ U{0..T-1}, eps ~ N(0, I), m = Bernoulli(0.5)/0.5 (inverted dropout)
      z_t = sqrt(abar_t) z0 + c_t (m * h) + sqrt(1 - abar_t) eps        (c_t or sqrt(c_t), D4)
      L_diff = mean (eps_theta(z_t, t) - eps)^2
  reverse (generation, deterministic, sub-sequence 0, s, 2s, ... < T, from x = h):
      eps_hat = eps_theta(x, i);  x0_hat = (x - c_i h - sqrt(1 - a_i) eps_hat) / sqrt(a_i)
      x = sqrt(a_j) x0_hat + sqrt(1 - a_j) eps_hat + c_j h             (a_-1 = 1, c_-1 = 0)
  e_hat = decoder([z_gen ; count]);  loss = BCE(backbone(e_hat, x)) + rho * L_diff
The reverse steps are unrolled inside one tf.function and stay differentiable, so the BCE
gradient reaches h through every step. `train_denoiser=False` reproduces the released code, whose
denoiser is never trained (D1); True (default) is the paper's Algorithm 1.
"""
import math
from typing import List

import numpy as np
import tensorflow as tf

from trainer import features, protocol
from trainer.methods.generator import GeneratorMethod, SideInfo, uniform_001

keras = tf.keras


def schedule(T: int, beta_start: float, beta_end: float):
    """(alpha_bar, c) as float64 arrays of length T (spec 4.6.3); c[T-1] = 1."""
    betas = np.linspace(beta_start, beta_end, T, dtype=np.float64)
    alpha_bar = np.exp(np.cumsum(np.log(1.0 - betas)))
    c_tilde = np.array([np.sum(np.sqrt(betas[:t + 1] * alpha_bar[t] / alpha_bar[:t + 1]))
                        for t in range(T)])
    return alpha_bar, c_tilde / c_tilde[-1]


def sinusoidal(t: tf.Tensor, size: int) -> tf.Tensor:
    """[cos(t f_k), sin(t f_k)], f_k = exp(-ln(10000) k / (size/2)); cosines first (spec 4.6.5)."""
    half = size // 2
    freqs = tf.exp(-math.log(10000.0) * tf.range(half, dtype=tf.float32) / half)
    angles = tf.cast(t, tf.float32)[:, None] * freqs[None, :]
    return tf.concat([tf.cos(angles), tf.sin(angles)], axis=1)


def _xavier_normal_like():
    return keras.initializers.VarianceScaling(1.0, "fan_avg", "untruncated_normal")


class Denoiser(keras.layers.Layer):
    """eps_theta(z, t): time embedding (2d) -> Linear; dropout(z); [z; tau] -> 3 tanh layers -> out.

    Weights N(0, sqrt(2 / (fan_in + fan_out))), biases N(0, 0.001) (spec 4.6.5). The first tanh
    layer on [z; tau] is kept as two matrices, W_z z + W_tau tau + b (the same function), so that
    in generation, where t is one scalar per step, tau is computed once and broadcast.
    """

    def __init__(self, dim: int = 16, dropout: float = 0.5, time_size: int = 32, **kwargs):
        super().__init__(**kwargs)
        self.time_size = time_size

        def dense(units, name, fan_in, use_bias=True):
            std = math.sqrt(2.0 / (fan_in + units))
            return keras.layers.Dense(units, use_bias=use_bias,
                                      kernel_initializer=keras.initializers.RandomNormal(0, std),
                                      bias_initializer=keras.initializers.RandomNormal(0, 0.001),
                                      name=name)

        self.time_proj = dense(time_size, "time_proj", time_size)
        self.dropout = keras.layers.Dropout(dropout)
        self.in_z = dense(dim, "in_0_z", dim + time_size)  # the two halves of Linear(48 -> 16)
        self.in_tau = dense(dim, "in_0_tau", dim + time_size, use_bias=False)
        self.hidden = [dense(dim, "in_1", dim), dense(dim, "out_0", dim)]
        self.out = dense(dim, "out_1", dim)

    def call(self, z, t, training=False):
        """`t`: [B] timesteps, or one scalar timestep for the whole batch."""
        t = tf.convert_to_tensor(t)
        tau = self.time_proj(sinusoidal(tf.reshape(t, [-1]), self.time_size))  # [B or 1, 2d]
        a = tf.tanh(self.in_z(self.dropout(z, training=training)) + self.in_tau(tau))
        for layer in self.hidden:
            a = tf.tanh(layer(a))
        return self.out(a)


class CSDM(GeneratorMethod):
    name = "csdm"
    # Defaults chosen by measurement on ML-1M (N=200, K=20, DeepFM, seeds 0-2; README): dropout
    # off, and warm-phase rounds of 3 epochs on every warm split seen so far, beat the released
    # code's settings (dropout on, 2 epochs on the current split) in every phase.
    defaults = {
        **GeneratorMethod.defaults,
        "warm_epochs": 3,
        "warm_data": "cumulative",
        "T": 100,                 # diffusion steps
        "stride": 10,             # reverse sub-sequence stride (`timesteps` in the released code)
        "beta_start": 1e-5,       # noise_scale * noise_min of the readme command
        "beta_end": 1e-5,         # noise_scale * noise_max
        "diff_coef": 1.0,         # rho, weight of L_diff
        "train_denoiser": True,   # the paper (Algorithm 1); False = the released code (D1)
        "forward_coef": "c",      # "c" (released code) or "sqrt_c" (the supplement's lemma), D4
        "dropout": False,         # True: the mask on h and the denoiser input dropout (D9)
        "time_embedding": 32,     # size of the sinusoidal time embedding (2 x d, readme)
    }
    choices = {**GeneratorMethod.choices, "forward_coef": ("c", "sqrt_c")}
    bounds = {**GeneratorMethod.bounds, "T": (1, None), "stride": (1, None),
              "beta_start": (0.0, 1.0), "beta_end": (0.0, 1.0), "diff_coef": (0.0, None),
              "time_embedding": (2, None)}
    # Tuned (issue 17): rho (spec D7: 0.1..10), T, stride s, iterations and warm epochs.
    search_space = {"diff_coef": {"type": "float", "min": 0.1, "max": 10.0, "sampling": "log"},
                    "T": {"type": "int", "min": 50, "max": 200, "step": 50},
                    "stride": {"type": "int", "min": 5, "max": 25, "step": 5},
                    "iters": {"type": "int", "min": 1, "max": 10},
                    "warm_epochs": {"type": "int", "min": 1, "max": 5}}

    @classmethod
    def check(cls, options):
        super().check(options)
        o = options
        if o["stride"] > o["T"]:
            raise ValueError(f"stride ({o['stride']}) must be at most T ({o['T']})")
        if not 0 < o["beta_start"] <= o["beta_end"] < 1:  # beta = 0 gives c = 0/0, 1 no signal
            raise ValueError(f"beta_start and beta_end must satisfy 0 < beta_start <= beta_end < 1,"
                             f" not {o['beta_start']:g} and {o['beta_end']:g}")
        if o["time_embedding"] % 2:
            raise ValueError(f"time_embedding must be even (cosines and sines), "
                             f"not {o['time_embedding']}")

    def build_modules(self, backbone) -> None:
        o = self.o
        if o["forward_coef"] not in ("c", "sqrt_c"):
            raise ValueError(f"csdm: forward_coef must be c or sqrt_c, not {o['forward_coef']!r}")
        dim = backbone.embed_dim
        self.side = SideInfo(backbone.config, backbone.vocab_sizes, dim, name="csdm_side")
        self.mean_encoder = keras.layers.Dense(dim, kernel_initializer=uniform_001(),
                                               bias_initializer=uniform_001(), name="mean_encoder")
        self.mean_encoder_p = keras.layers.Dense(dim, kernel_initializer=uniform_001(),
                                                 bias_initializer=uniform_001(),
                                                 name="mean_encoder_p")
        self.decoder = keras.layers.Dense(dim, kernel_initializer=uniform_001(),
                                          bias_initializer=uniform_001(), name="decoder")
        self.denoiser = Denoiser(dim, 0.5 if o["dropout"] else 0.0, o["time_embedding"],
                                 name="denoiser")
        alpha_bar, c = schedule(o["T"], o["beta_start"], o["beta_end"])
        self.alpha_bar = tf.constant(alpha_bar, tf.float32)
        if o["forward_coef"] == "sqrt_c":
            c = np.sqrt(c)
        self.c = tf.constant(c, tf.float32)
        # Generation runs the process the denoiser was trained on: the same c in both directions.
        self.reverse_pairs = self.reverse_steps(o["T"], o["stride"], alpha_bar, c)

    @staticmethod
    def reverse_steps(T, stride, alpha_bar, c):
        """[(i, a_i, a_j, c_i, c_j)] from max(seq) down to 0 (spec 4.6.7)."""
        seq = list(range(0, T, stride))
        prev = [-1] + seq[:-1]
        return [(i, float(alpha_bar[i]), float(alpha_bar[j]) if j >= 0 else 1.0,
                 float(c[i]), float(c[j]) if j >= 0 else 0.0)
                for i, j in zip(reversed(seq), reversed(prev))]

    def generator_variables(self) -> List[tf.Variable]:
        variables = (self.side.trainable_variables + self.mean_encoder.trainable_variables
                     + self.mean_encoder_p.trainable_variables + self.decoder.trainable_variables)
        if self.o["train_denoiser"]:
            variables += self.denoiser.trainable_variables
        return variables

    # -- the model ------------------------------------------------------------------------------
    def hidden(self, batch):
        """h = mean_encoder_p(s(x)), [B, d]."""
        return self.mean_encoder_p(self.side(batch))

    def q_sample(self, z0, h, t, eps):
        """z_t of the forward process, with the always-on dropout mask on h (unless dropout off)."""
        if self.o["dropout"]:
            h = tf.nn.dropout(h, rate=0.5)
        ab = tf.gather(self.alpha_bar, t)[:, None]
        return tf.sqrt(ab) * z0 + tf.gather(self.c, t)[:, None] * h + tf.sqrt(1.0 - ab) * eps

    def reverse(self, h, training, eps_model=None, x_start=None):
        """Deterministic generation, from x = h (the released code) or from `x_start`;
        `eps_model(x, t, training)` defaults to the denoiser."""
        eps_model = eps_model or self.denoiser
        x = h if x_start is None else x_start
        for i, a_i, a_j, c_i, c_j in self.reverse_pairs:
            eps_hat = eps_model(x, tf.constant(i), training=training)
            x0_hat = (x - c_i * h - math.sqrt(1.0 - a_i) * eps_hat) / math.sqrt(a_i)
            x = math.sqrt(a_j) * x0_hat + math.sqrt(1.0 - a_j) * eps_hat + c_j * h
        return x

    def project(self, z, batch):
        count = tf.cast(batch["count"], tf.float32)[:, None]
        return self.decoder(tf.concat([z, count], axis=1))

    def diffusion_loss(self, backbone, batch, h, training):
        z0 = self.mean_encoder(tf.stop_gradient(tf.gather(backbone.item_table,
                                                          batch[features.ITEM_ID])))
        t = tf.random.uniform([tf.shape(h)[0]], 0, self.o["T"], dtype=tf.int32)
        eps = tf.random.normal(tf.shape(z0))
        z_t = self.q_sample(z0, h, t, eps)
        return tf.reduce_mean(tf.square(self.denoiser(z_t, t, training=training) - eps))

    def generate(self, backbone, batch, training):
        return self.project(self.reverse(self.hidden(batch), training), batch)

    def generator_loss(self, backbone, batch, training):
        h = self.hidden(batch)
        l_diff = self.diffusion_loss(backbone, batch, h, training)
        e_hat = self.project(self.reverse(h, training), batch)
        logits = backbone.call_with_item_embedding(e_hat, batch, training=training)
        bce = protocol.bce_from_logits(batch[features.LABEL], logits)
        return bce + self.o["diff_coef"] * l_diff
