"""Diff-MSR's pure pieces (WSDM 2024; spec diff_msr.md sections 5-7): variance schedules, the 1-D
U-Net denoiser, DDPM training and reverse sampling, the domain classifier on noised embeddings,
the classifier-guided selection and translation of rich-domain samples. No TFX here.

A data point is a pair embedding z0 = [e_user; e_item], [B, 2, d] (2 channels x d positions,
spec 5.1). The U-Net sees it channels-last, [B, d, 2].

Forward process (spec 5.3): z_t = sqrt(abar_t) z0 + sqrt(1 - abar_t) eps, t in 0..T-1.
Objectives (spec 11.1): "v_l1", the released code's (target v = sqrt(abar_t) eps -
sqrt(1 - abar_t) z0, L1 loss), or "eps_mse", the paper's eq. 6 (target eps, squared error).
Reverse step (spec 5.6): x0_hat from the network output, clipped to [-1, 1] (code, 11.4),
mu = c1_t x0_hat + c2_t z_t, z_{t-1} = mu + sigma_t noise (no noise at t = 0), sigma_t^2 the
posterior variance (code) or beta_t^2 (paper, 11.3). Samples may start at different t; the chain
runs from the largest down to 0 inside one `tf.while_loop`, and a sample moves only while its
own start time is >= the current t.
"""
import math
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from trainer import metrics
from trainer.optim import TorchAdam
from trainer.protocol import BestWeights

keras = tf.keras
SCHEDULES = ("piecewise", "linear", "cosine")
LOSSES = ("v_l1", "eps_mse")
VARIANCES = ("posterior", "beta_squared")


# -- schedules (spec 5.2) -------------------------------------------------------------------------
def piecewise_betas(T: int = 500, constant_steps: int = 50, beta_start: float = 2e-4,
                    beta_end: float = 0.05) -> np.ndarray:
    """beta_start for the first `constant_steps` entries, then a linear ramp from beta_start to
    beta_end (both ends included) over the other T - constant_steps: the code's construction,
    constant over indices 0..constant_steps (51 values at the defaults, spec 12.1)."""
    return np.concatenate([np.full(constant_steps, beta_start, np.float64),
                           np.linspace(beta_start, beta_end, T - constant_steps,
                                       dtype=np.float64)])


def linear_betas(T: int) -> np.ndarray:
    """The ablation's linear schedule: 1e-4 * (1000 / T) to 0.02 * (1000 / T)."""
    scale = 1000.0 / T
    return np.linspace(1e-4 * scale, 0.02 * scale, T, dtype=np.float64)


def cosine_betas(T: int, s: float = 0.008) -> np.ndarray:
    """Nichol & Dhariwal's cosine schedule, clipped at 0.999."""
    steps = np.arange(T + 1, dtype=np.float64) / T
    f = np.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
    return np.clip(1 - f[1:] / f[:-1], 0, 0.999)


def make_betas(name: str, T: int) -> np.ndarray:
    if name == "piecewise":
        return piecewise_betas(T)
    if name == "linear":
        return linear_betas(T)
    if name == "cosine":
        return cosine_betas(T)
    raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, not {name!r}")


class Schedule:
    """Every per-t constant of the forward and reverse processes, float64 in numpy, float32 in
    TensorFlow (attributes `tf_<name>`)."""

    def __init__(self, betas: np.ndarray):
        betas = np.asarray(betas, np.float64)
        self.T = len(betas)
        self.betas = betas
        self.alphas_cumprod = np.cumprod(1.0 - betas)
        self.alphas_cumprod_prev = np.concatenate([[1.0], self.alphas_cumprod[:-1]])
        self.sqrt_alphas_cumprod = np.sqrt(self.alphas_cumprod)
        self.sqrt_one_minus_alphas_cumprod = np.sqrt(1.0 - self.alphas_cumprod)
        one_minus = 1.0 - self.alphas_cumprod
        self.posterior_mean_coef1 = betas * np.sqrt(self.alphas_cumprod_prev) / one_minus
        self.posterior_mean_coef2 = (1.0 - self.alphas_cumprod_prev) * np.sqrt(1.0 - betas) / one_minus
        self.posterior_variance = betas * (1.0 - self.alphas_cumprod_prev) / one_minus
        self.posterior_log_variance_clipped = np.log(np.maximum(self.posterior_variance, 1e-20))
        for name in ("betas", "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod",
                     "posterior_mean_coef1", "posterior_mean_coef2",
                     "posterior_log_variance_clipped"):
            setattr(self, f"tf_{name}", tf.constant(getattr(self, name), tf.float32))

    def at(self, name: str, t: tf.Tensor) -> tf.Tensor:
        """The constant `name` at timesteps t [B], shaped [B, 1, 1] to scale [B, 2, d]."""
        return tf.gather(getattr(self, f"tf_{name}"), t)[:, None, None]

    def q_sample(self, z0: tf.Tensor, t: tf.Tensor, eps: tf.Tensor) -> tf.Tensor:
        return (self.at("sqrt_alphas_cumprod", t) * z0
                + self.at("sqrt_one_minus_alphas_cumprod", t) * eps)


# -- the 1-D U-Net (spec 5.4) ---------------------------------------------------------------------
def sinusoidal(t: tf.Tensor, dim: int) -> tf.Tensor:
    """[sin(t f_k), cos(t f_k)], f_k = exp(-k ln(10000) / (dim/2 - 1)), k = 0..dim/2-1."""
    half = dim // 2
    freqs = tf.exp(-math.log(10000.0) / (half - 1) * tf.range(half, dtype=tf.float32))
    angles = tf.cast(t, tf.float32)[:, None] * freqs[None, :]
    return tf.concat([tf.sin(angles), tf.cos(angles)], axis=1)


class WSConv1D(keras.layers.Conv1D):
    """Conv1D with weight standardisation of each output filter over (kernel x in_channels):
    mean and biased variance, eps 1e-5."""

    def convolution_op(self, inputs, kernel):
        mean, var = tf.nn.moments(kernel, axes=[0, 1], keepdims=True)
        return super().convolution_op(inputs, (kernel - mean) * tf.math.rsqrt(var + 1e-5))


class ChannelNorm(keras.layers.Layer):
    """LayerNorm over channels at each position, learnable gain only, eps 1e-5."""

    def build(self, input_shape):
        self.g = self.add_weight(name="g", shape=(int(input_shape[-1]),), initializer="ones")
        super().build(input_shape)

    def call(self, x):
        mean, var = tf.nn.moments(x, axes=[-1], keepdims=True)
        return (x - mean) * tf.math.rsqrt(var + 1e-5) * self.g


class ResBlock(keras.layers.Layer):
    """Block1(x) modulated by the time embedding (scale + 1, shift) -> Block2, plus a residual
    (1x1 conv when the width changes). Block = WS-Conv k3 -> GroupNorm(8) -> [modulate] -> SiLU."""

    def __init__(self, dim_out: int, groups: int = 8, **kwargs):
        super().__init__(**kwargs)
        self.dim_out = dim_out
        self.time = keras.layers.Dense(2 * dim_out, name="time")
        self.conv1 = WSConv1D(dim_out, 3, padding="same", name="conv1")
        self.norm1 = keras.layers.GroupNormalization(groups, epsilon=1e-5, name="norm1")
        self.conv2 = WSConv1D(dim_out, 3, padding="same", name="conv2")
        self.norm2 = keras.layers.GroupNormalization(groups, epsilon=1e-5, name="norm2")
        self.res = None

    def build(self, input_shape):
        if int(input_shape[-1]) != self.dim_out:
            self.res = keras.layers.Conv1D(self.dim_out, 1, name="res")
        super().build(input_shape)

    def call(self, x, time_emb):
        scale, shift = tf.split(self.time(tf.nn.silu(time_emb))[:, None, :], 2, axis=-1)
        h = tf.nn.silu(self.norm1(self.conv1(x)) * (scale + 1.0) + shift)
        h = tf.nn.silu(self.norm2(self.conv2(h)))
        return h + (self.res(x) if self.res is not None else x)


class Attention(keras.layers.Layer):
    """Residual(PreNorm(softmax attention over positions)), `heads` x `dim_head`: q, k, v from a
    1x1 conv without bias; 1x1 out conv."""

    def __init__(self, dim: int, heads: int = 4, dim_head: int = 32, **kwargs):
        super().__init__(**kwargs)
        self.heads, self.dim_head = heads, dim_head
        self.prenorm = ChannelNorm(name="prenorm")
        self.qkv = keras.layers.Conv1D(3 * heads * dim_head, 1, use_bias=False, name="qkv")
        self.out = keras.layers.Conv1D(dim, 1, name="out")

    def attend(self, q, k, v):
        """[B, n, heads, dim_head] each -> the same shape."""
        sim = tf.einsum("bihd,bjhd->bhij", q * self.dim_head ** -0.5, k)
        return tf.einsum("bhij,bjhd->bihd", tf.nn.softmax(sim, axis=-1), v)

    def project(self, out):
        return self.out(out)

    def call(self, x):
        n = tf.shape(x)[1]
        q, k, v = (tf.reshape(part, [-1, n, self.heads, self.dim_head])
                   for part in tf.split(self.qkv(self.prenorm(x)), 3, axis=-1))
        out = tf.reshape(self.attend(q, k, v), [-1, n, self.heads * self.dim_head])
        return x + self.project(out)


class LinearAttention(Attention):
    """Residual(PreNorm(linear attention)): q softmaxed over its features, k over positions,
    context = k v^T, out = context^T q; 1x1 conv -> ChannelNorm."""

    def __init__(self, dim: int, heads: int = 4, dim_head: int = 32, **kwargs):
        super().__init__(dim, heads, dim_head, **kwargs)
        self.out_norm = ChannelNorm(name="out_norm")

    def attend(self, q, k, v):
        q = tf.nn.softmax(q, axis=-1) * self.dim_head ** -0.5
        context = tf.einsum("bnhd,bnhe->bhde", tf.nn.softmax(k, axis=1), v)
        return tf.einsum("bhde,bnhd->bnhe", context, q)

    def project(self, out):
        return self.out_norm(self.out(out))


class UNet1D(keras.Model):
    """The released "Unet1D_3" (spec 5.4): x [B, L, C], t [B] -> [B, L, C]. L must be divisible
    by 2^(levels - 1) (16 with the defaults)."""

    def __init__(self, dim: int = 16, dim_mults: Sequence[int] = (1, 2, 4, 8), channels: int = 2,
                 **kwargs):
        super().__init__(**kwargs)
        self.dim = dim
        time_dim = 4 * dim
        self.time_in = keras.layers.Dense(time_dim, name="time_in")
        self.time_out = keras.layers.Dense(time_dim, name="time_out")
        self.init_conv = keras.layers.Conv1D(dim, 1, name="init_conv")
        dims = [dim] + [dim * m for m in dim_mults]
        pairs = list(zip(dims[:-1], dims[1:]))
        self.down, self.up = [], []
        for i, (c_in, c_out) in enumerate(pairs):
            last = i == len(pairs) - 1
            self.down.append((
                ResBlock(c_in, name=f"down{i}_res1"), ResBlock(c_in, name=f"down{i}_res2"),
                LinearAttention(c_in, name=f"down{i}_attn"),
                keras.layers.Conv1D(c_out, 1 if last else 4, strides=1 if last else 2,
                                    padding="same", name=f"down{i}_sample")))
        mid = dims[-1]
        self.mid1 = ResBlock(mid, name="mid_res1")
        self.mid_attn = Attention(mid, name="mid_attn")
        self.mid2 = ResBlock(mid, name="mid_res2")
        for i, (c_in, c_out) in enumerate(reversed(pairs)):
            last = i == len(pairs) - 1
            self.up.append((
                ResBlock(c_out, name=f"up{i}_res1"), ResBlock(c_out, name=f"up{i}_res2"),
                LinearAttention(c_out, name=f"up{i}_attn"),
                None if last else keras.layers.UpSampling1D(2, name=f"up{i}_upsample"),
                keras.layers.Conv1D(c_in, 1 if last else 3, padding="same", name=f"up{i}_conv")))
        self.final_res = ResBlock(dim, name="final_res")
        self.final_conv = keras.layers.Conv1D(channels, 1, name="final_conv")

    def call(self, x, t, training=False):
        time = self.time_out(tf.nn.gelu(self.time_in(sinusoidal(t, self.dim)), approximate=False))
        x = self.init_conv(x)
        r = x
        skips = []
        for res1, res2, attn, sample in self.down:
            x = res1(x, time)
            skips.append(x)
            x = attn(res2(x, time))
            skips.append(x)
            x = sample(x)
        x = self.mid2(self.mid_attn(self.mid1(x, time)), time)
        for res1, res2, attn, upsample, conv in self.up:
            x = res1(tf.concat([x, skips.pop()], axis=-1), time)
            x = attn(res2(tf.concat([x, skips.pop()], axis=-1), time))
            x = conv(upsample(x) if upsample is not None else x)
        return self.final_conv(self.final_res(tf.concat([x, r], axis=-1), time))


# -- DDPM (spec 5.3, 5.5, 5.6) --------------------------------------------------------------------
Net = Callable[[tf.Tensor, tf.Tensor, bool], tf.Tensor]  # (z [B, 2, d], t [B], training) -> [B, 2, d]


def unet_net(unet: UNet1D) -> Net:
    """The U-Net as a denoiser of pair embeddings [B, 2, d] (channels-last inside)."""
    def net(z, t, training=False):
        return tf.transpose(unet(tf.transpose(z, [0, 2, 1]), t, training=training), [0, 2, 1])
    return net


class Diffusion:
    """One DDPM (G_0 or G_1 of spec 5): `net` with its schedule and objective.

    `loss`: "v_l1" (code) or "eps_mse" (paper); `clip_x0`: clip x0_hat to [-1, 1] in sampling
    (code); `variance`: "posterior" (code) or "beta_squared" (paper); `shape`: a data point's
    (2, d); `jit_compile`: XLA for the reverse chain."""

    def __init__(self, schedule: Schedule, net: Net, loss: str = "v_l1", clip_x0: bool = True,
                 variance: str = "posterior", jit_compile: bool = False,
                 shape: Tuple[int, int] = (2, 16)):
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}, not {loss!r}")
        if variance not in VARIANCES:
            raise ValueError(f"variance must be one of {', '.join(VARIANCES)}, not {variance!r}")
        self.schedule, self.net, self.loss_name = schedule, net, loss
        self.clip_x0, self.variance, self.shape = clip_x0, variance, tuple(shape)
        self.reverse = tf.function(self._reverse, jit_compile=jit_compile, input_signature=[
            tf.TensorSpec([None, *shape], tf.float32), tf.TensorSpec([None], tf.int32),
            tf.TensorSpec([], tf.int32), tf.TensorSpec([], tf.float32)])

    def loss(self, z0: tf.Tensor, t: tf.Tensor, eps: tf.Tensor, training: bool = True) -> tf.Tensor:
        """Mean over all elements of |v_hat - v| (v_l1) or (eps_hat - eps)^2 (eps_mse)."""
        output = self.net(self.schedule.q_sample(z0, t, eps), t, training)
        if self.loss_name == "v_l1":
            target = (self.schedule.at("sqrt_alphas_cumprod", t) * eps
                      - self.schedule.at("sqrt_one_minus_alphas_cumprod", t) * z0)
            return tf.reduce_mean(tf.abs(output - target))
        return tf.reduce_mean(tf.square(output - eps))

    def predict_x0(self, z_t: tf.Tensor, t: tf.Tensor, output: tf.Tensor) -> tf.Tensor:
        a = self.schedule.at("sqrt_alphas_cumprod", t)
        b = self.schedule.at("sqrt_one_minus_alphas_cumprod", t)
        if self.loss_name == "v_l1":
            return a * z_t - b * output
        return (z_t - b * output) / a

    def _reverse(self, z, t_start, seed, noise_scale):
        """z [B, 2, d] at per-sample times t_start [B] -> (z at t = -1, clipped fraction of the
        x0_hat entries). Noise at step t is stateless_normal(seed = (seed, t)) * noise_scale."""
        size = tf.shape(z)[0]
        s = self.schedule

        def body(i, z, clipped, total):
            t = tf.fill([size], i)
            x0 = self.predict_x0(z, t, self.net(z, t, False))
            active = (t_start >= i)[:, None, None]
            if self.clip_x0:
                outside = tf.logical_and(active, tf.abs(x0) > 1.0)
                clipped += tf.reduce_sum(tf.cast(outside, tf.float32))
                x0 = tf.clip_by_value(x0, -1.0, 1.0)
            total += tf.reduce_sum(tf.cast(active, tf.float32)) * tf.cast(
                tf.reduce_prod(tf.shape(z)[1:]), tf.float32)
            mean = s.at("posterior_mean_coef1", t) * x0 + s.at("posterior_mean_coef2", t) * z
            if self.variance == "posterior":
                std = tf.exp(0.5 * s.at("posterior_log_variance_clipped", t))
            else:
                std = s.at("betas", t)
            noise = tf.random.stateless_normal(tf.shape(z), tf.stack([seed, i])) * noise_scale
            new = mean + tf.cast(i > 0, tf.float32) * std * noise
            return i - 1, tf.where(active, new, z), clipped, total

        start = tf.reduce_max(tf.concat([t_start, [-1]], axis=0))
        _, z, clipped, total = tf.while_loop(
            lambda i, *_: i >= 0, body, [start, z, tf.constant(0.0), tf.constant(0.0)])
        return z, clipped / tf.maximum(total, 1.0)

    def generate(self, n: int, seed: int) -> Tuple[tf.Tensor, tf.Tensor]:
        """n samples from pure noise: T steps from t = T - 1 (spec 5.6)."""
        z = tf.random.stateless_normal([n, *self.shape], [seed, -1])
        return self.reverse(z, tf.fill([n], self.schedule.T - 1), tf.constant(seed, tf.int32),
                            tf.constant(1.0))


def early_stopped(epoch: Callable[[int], float], score: Optional[Callable[[], float]],
                  keep: Sequence[tf.Variable], max_epochs: int, patience: int,
                  score_start: bool = False) -> Dict[str, Any]:
    """Runs `epoch(e)` (returns its mean training loss) until `score()` (higher is better) has
    not improved for `patience` epochs, then restores `keep` to their values at the best score.
    With `score_start`, the values before the first epoch are scored first and are a candidate
    too. Without `score`: every epoch, nothing restored. Returns {"train": losses, "score":
    scores, "best": the index of the kept score in `score`, or None}."""
    best = BestWeights(keep, patience)
    if score is not None and score_start:
        best.update(score())
    losses = []
    for e in range(max_epochs):
        losses.append(epoch(e))
        if score is not None and best.update(score()):
            break
    best.restore()
    return {"train": losses, "score": best.scores,
            "best": best.best_index if best.scores else None}


def _split_rows(n: int, batch_size: int, rng: np.random.Generator) -> List[np.ndarray]:
    order = rng.permutation(n)
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


def fit_diffusion(diffusion: Diffusion, variables: Sequence[tf.Variable], z_train: np.ndarray,
                  z_val: Optional[np.ndarray], learning_rate: float = 2e-3, batch_size: int = 512,
                  max_epochs: int = 100, patience: int = 5, seed: int = 0) -> Dict[str, list]:
    """Adam on the diffusion loss with t ~ U{0..T-1}, eps ~ N(0, I) per sample; early stopping
    on the validation loss (fixed t and eps per validation sample, summed over its batches),
    best weights restored (spec 5.5). Without validation rows: all `max_epochs`."""
    optimizer = TorchAdam(variables, learning_rate, weight_decay=0.0)
    T = diffusion.schedule.T

    # XLA makes training bit-reproducible. Without it, the gradient of a tensor with three or more
    # consumers (the U-Net's time embedding feeds every block) is summed by an AddN whose CPU
    # kernel accumulates into whichever input buffer is free at run time, so the order of the
    # float additions followed the op schedule (tests/test_diffmsr.py, FitDiffusionTest).
    @tf.function(jit_compile=True)
    def step(z0, t, eps):
        with tf.GradientTape() as tape:
            loss = diffusion.loss(z0, t, eps, training=True)
        optimizer.apply_gradients(tape.gradient(loss, variables))
        return loss

    @tf.function
    def val_loss(z0, t, eps):
        return diffusion.loss(z0, t, eps, training=False)

    rng = np.random.default_rng(seed)
    val = None
    if z_val is not None and len(z_val):
        val = (z_val.astype(np.float32), rng.integers(0, T, len(z_val)).astype(np.int32),
               rng.standard_normal(z_val.shape).astype(np.float32))

    def epoch(_):
        losses = []
        for rows in _split_rows(len(z_train), batch_size, rng):
            t = rng.integers(0, T, len(rows)).astype(np.int32)
            eps = rng.standard_normal((len(rows), *z_train.shape[1:])).astype(np.float32)
            losses.append(float(step(z_train[rows], t, eps)))
        return float(np.mean(losses))

    def score():  # minus the summed validation loss
        return -sum(float(val_loss(*(part[i:i + batch_size] for part in val)))
                    for i in range(0, len(val[0]), batch_size))

    return early_stopped(epoch, score if val is not None else None, variables, max_epochs,
                         patience)


# -- domain classifier (spec 6) ------------------------------------------------------------------
def classifier(hidden: Sequence[int] = (64, 64), name: str = "domain_classifier") -> keras.Sequential:
    """MLP 2d -> hidden (ReLU) -> 1 logit of "rich" on flattened pair embeddings."""
    return keras.Sequential([keras.layers.Flatten()]
                            + [keras.layers.Dense(w, activation="relu") for w in hidden]
                            + [keras.layers.Dense(1)], name=name)


def balanced_weights(labels: np.ndarray) -> np.ndarray:
    """Per-row weights that give each class half of the total weight: n / (2 n_class)."""
    labels = np.asarray(labels)
    n, n_rich = len(labels), int(labels.sum())
    if n_rich in (0, n):
        raise ValueError(f"the domain classifier needs rich and cold rows, got {n_rich} rich of {n}")
    return np.where(labels == 1, n / (2.0 * n_rich), n / (2.0 * (n - n_rich))).astype(np.float32)


def fit_classifier(model: keras.Model, schedule: Schedule, z_train: np.ndarray,
                   rich_train: np.ndarray, z_val: Optional[np.ndarray],
                   rich_val: Optional[np.ndarray], balanced: bool = True, noise_steps: int = 70,
                   learning_rate: float = 2e-3, batch_size: int = 2048, max_epochs: int = 100,
                   patience: int = 10, seed: int = 0) -> Dict[str, list]:
    """BCE on each batch's B clean embeddings and B noised copies z_t, t ~ U{0..noise_steps-1};
    `balanced`: class weights n / (2 n_class) (paper), else unweighted (code). Early stopping on
    the validation AUC over clean + noised rows (fixed noise), best weights restored."""
    model(z_train[:1])
    variables = model.trainable_variables
    optimizer = TorchAdam(variables, learning_rate, weight_decay=0.0)
    weights = (balanced_weights(rich_train) if balanced
               else np.ones(len(rich_train), np.float32))

    @tf.function
    def step(z0, label, weight, t, eps):
        z = tf.concat([z0, schedule.q_sample(z0, t, eps)], axis=0)
        y = tf.cast(tf.concat([label, label], axis=0), tf.float32)
        w = tf.concat([weight, weight], axis=0)
        with tf.GradientTape() as tape:
            logits = model(z, training=True)[:, 0]
            loss = tf.reduce_sum(w * tf.nn.sigmoid_cross_entropy_with_logits(y, logits)) / \
                tf.reduce_sum(w)
        optimizer.apply_gradients(tape.gradient(loss, variables))
        return loss

    rng = np.random.default_rng(seed)
    val = None
    if z_val is not None and len(z_val) and 0 < int(np.sum(rich_val)) < len(rich_val):
        t = rng.integers(0, noise_steps, len(z_val)).astype(np.int32)
        noised = schedule.q_sample(tf.constant(z_val, tf.float32), t,
                                   rng.standard_normal(z_val.shape).astype(np.float32)).numpy()
        val = (np.concatenate([z_val, noised]).astype(np.float32),
               np.concatenate([rich_val, rich_val]))

    def epoch(_):
        losses = []
        for rows in _split_rows(len(z_train), batch_size, rng):
            t = rng.integers(0, noise_steps, len(rows)).astype(np.int32)
            eps = rng.standard_normal((len(rows), *z_train.shape[1:])).astype(np.float32)
            losses.append(float(step(z_train[rows], rich_train[rows], weights[rows], t, eps)))
        return float(np.mean(losses))

    def score():  # validation AUC
        scores = np.concatenate([model(val[0][i:i + 8192], training=False).numpy()[:, 0]
                                 for i in range(0, len(val[0]), 8192)])
        return metrics.auc(val[1], scores)

    return early_stopped(epoch, score if val is not None else None, variables, max_epochs,
                         patience)


# -- stage 4 pieces (spec 7) ---------------------------------------------------------------------
def select_start_times(model: keras.Model, schedule: Schedule, z0: tf.Tensor, eps: tf.Tensor,
                       t_lo: int, t_hi: int) -> tf.Tensor:
    """Classifier-guided selection (spec 7.2): for t = t_lo .. t_hi - 1 (exclusive, spec 12.3),
    z_t = sqrt(abar_t) z0 + sqrt(1 - abar_t) eps with one fixed eps per sample; the first t whose
    "rich" probability is < 0.5 is the sample's start time; -1 when none is (dropped)."""
    ts = tf.range(t_lo, t_hi, dtype=tf.int32)
    a = tf.gather(schedule.tf_sqrt_alphas_cumprod, ts)[:, None, None, None]
    b = tf.gather(schedule.tf_sqrt_one_minus_alphas_cumprod, ts)[:, None, None, None]
    z_t = a * z0[None] + b * eps[None]  # [W, N, 2, d]
    shape = tf.shape(z_t)
    logits = tf.reshape(model(tf.reshape(z_t, [-1, shape[2], shape[3]]), training=False),
                        shape[:2])
    cold = logits < 0.0  # sigmoid < 0.5
    first = tf.argmax(tf.cast(cold, tf.int32), axis=0, output_type=tf.int32)
    return tf.where(tf.reduce_any(cold, axis=0), t_lo + first, -1)


def translate(diffusion: Diffusion, z0: tf.Tensor, eps: tf.Tensor, t_start: tf.Tensor, seed: int,
              from_clean: bool = False) -> Tuple[tf.Tensor, tf.Tensor]:
    """Reverse chains from each selected sample's start time to 0 (spec 7.3): from the noised
    z_t (paper) or from the clean z0 (code, `from_clean`). Every t_start must be >= 0."""
    start = z0 if from_clean else diffusion.schedule.q_sample(z0, t_start, eps)
    return diffusion.reverse(start, t_start, tf.constant(seed, tf.int32), tf.constant(1.0))
