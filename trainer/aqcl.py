"""Pure losses of AQCL (Pan et al. 2021, spec aqcl.md) and of the regularisers it is compared with
(the paper's Table 2): ICL, AQCL and its online codebook, DeepMCP, DMR, DropoutNet's user dropout.

Shapes: z, z_plus [B, D] (projected representations, any norm: every similarity is cosine);
codebook [T, D]; L [B] raw history lengths. All functions are traceable in one tf.function.

- ICL (eq. 2): -log exp(s(z, z+)/tau) / sum_{z' in {z+} u Z-} exp(s(z, z')/tau); Z- = the other
  rows' augmented views (B - 1), or also their clean views (`simclr`: 2B - 2).
- AQCL (eq. 3), stable form (spec 7): -(1 - a) s(z, z+)/tau1 - a LSE_{q in Q+} s(z, q)/tau2
  + LSE({s(z, z')/tau1 : z'} u {s(z, q)/tau2 : q in Q}); Q+ = the top-K codewords of z, chosen
  without gradient. The codebook carries no gradient from it unless `codebook_gradient`.
- Codebook (eqs. 4-5): Sinkhorn-Knopp on S = Q^T sg(Z) gives an equipartitioned assignment A,
  a_b = one-hot argmax_t A_tb, L_codebook = mean_b CE(a_b, softmax_t s(sg(z_b), q_t)/tau3): it
  moves only Q.
- alpha (eq. 6): R(L) = exp(-w1 (L / mean L)^w2), 1 at L = 0, decreasing for w1, w2 > 0.
"""
import tensorflow as tf

keras = tf.keras


def cosine(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    """[N, D] x [M, D] -> [N, M] cosine similarities."""
    return tf.matmul(tf.math.l2_normalize(a, axis=-1), tf.math.l2_normalize(b, axis=-1),
                     transpose_b=True)


def alpha(lengths: tf.Tensor, mean_length: float, w1: float, w2: float) -> tf.Tensor:
    """R(L_j) = exp(-w1 (L_j / mean L)^w2) (eq. 6), [B]."""
    ratio = tf.cast(lengths, tf.float32) / mean_length
    return tf.exp(-w1 * tf.pow(ratio, w2))


def _instance_logits(z, z_plus, tau, simclr=False):
    """[B, B] (or [B, 2B - 1] with `simclr`) similarities / tau; column j of the first B is z+_j."""
    logits = cosine(z, z_plus) / tau
    if simclr:  # the other rows' clean views too (the row's own clean view is left out)
        clean = cosine(z, z) / tau
        size = tf.shape(z)[0]
        off = tf.logical_not(tf.eye(size, dtype=tf.bool))
        clean = tf.reshape(tf.boolean_mask(clean, off), [size, size - 1])
        logits = tf.concat([logits, clean], axis=1)
    return logits


def icl_loss(z, z_plus, tau=0.1, simclr=False):
    """Instance contrastive loss (eq. 2), mean over the batch."""
    logits = _instance_logits(z, z_plus, tau, simclr)
    positive = tf.linalg.diag_part(logits[:, :tf.shape(z)[0]])
    return tf.reduce_mean(tf.reduce_logsumexp(logits, axis=1) - positive)


def aqcl_loss(z, z_plus, codebook, alphas, tau1=0.1, tau2=0.1, top_k=5, simclr=False,
              codebook_gradient=False):
    """L_AQCL (eq. 3) in its stable form, mean over the batch. `alphas` [B] (or a scalar).
    A codebook of 0 rows leaves only the instance terms: then it is ICL weighted by 1 - alpha."""
    logits = _instance_logits(z, z_plus, tau1, simclr)
    positive = tf.linalg.diag_part(logits[:, :tf.shape(z)[0]])
    alphas = tf.cast(alphas, tf.float32)
    loss = -(1.0 - alphas) * positive
    if codebook.shape[0]:
        if not codebook_gradient:
            codebook = tf.stop_gradient(codebook)
        code_logits = cosine(z, codebook) / tau2  # [B, T]
        k = min(top_k, codebook.shape[0])
        top = tf.math.top_k(tf.stop_gradient(code_logits), k=k).indices
        loss -= alphas * tf.reduce_logsumexp(tf.gather(code_logits, top, batch_dims=1), axis=1)
        logits = tf.concat([logits, code_logits], axis=1)
    return tf.reduce_mean(loss + tf.reduce_logsumexp(logits, axis=1))


def sinkhorn(scores: tf.Tensor, epsilon=0.05, iterations=20) -> tf.Tensor:
    """Equipartitioned soft assignment A [T, B] of eq. 4 for scores S [T, B]: exp(S / eps),
    then alternately rows scaled to sum 1/T and columns to sum 1/B. No gradient."""
    scores = tf.stop_gradient(scores)
    num_codes = tf.cast(tf.shape(scores)[0], scores.dtype)
    batch = tf.cast(tf.shape(scores)[1], scores.dtype)
    assignment = tf.exp((scores - tf.reduce_max(scores)) / epsilon)
    assignment /= tf.reduce_sum(assignment)
    for _ in range(iterations):
        assignment /= tf.reduce_sum(assignment, axis=1, keepdims=True) * num_codes
        assignment /= tf.reduce_sum(assignment, axis=0, keepdims=True) * batch
    return assignment


def codebook_loss(z, codebook, tau3=0.1, epsilon=0.05, iterations=20):
    """L_codebook (eq. 5) on sg(z), mean over the batch: only `codebook` gets a gradient."""
    similarity = cosine(tf.stop_gradient(z), codebook)  # [B, T]
    targets = tf.argmax(sinkhorn(tf.transpose(similarity), epsilon, iterations), axis=0)
    logits = similarity / tau3
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(targets, logits))


class Projector(keras.layers.Layer):
    """g: h -> z, a 3-layer MLP with leaky-ReLU between the layers (spec 5)."""

    def __init__(self, hidden=128, out_dim=64, **kwargs):
        super().__init__(**kwargs)
        self.layers_ = [keras.layers.Dense(hidden, name="proj_0"),
                        keras.layers.Dense(hidden, name="proj_1"),
                        keras.layers.Dense(out_dim, name="proj_2")]

    def call(self, h):
        for layer in self.layers_[:-1]:
            h = tf.nn.leaky_relu(layer(h))
        return self.layers_[-1](h)


def sampled_items(shape, num_items: int, seed) -> tf.Tensor:
    """Uniform item-vocabulary indices [shape], stateless under `seed` (int64 [2])."""
    return tf.random.stateless_uniform(shape, seed, 0, num_items, dtype=tf.int64)


def matching_loss(labels, user_vec, item_vec):
    """DeepMCP's matching subnet: BCE of sigmoid(<user tower, item tower>) against the label."""
    logits = tf.reduce_sum(user_vec * item_vec, axis=1)
    return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(
        labels=tf.cast(labels, tf.float32), logits=logits))


def negative_sampling_loss(target, context, context_mask, negatives):
    """-[log s(<t, c>) + sum_k log s(-<t, n_k>)] per valid (target, context) pair, mean over them.

    target [B, D]; context [B, L, D] with mask [B, L]; negatives [B, K, D] (shared by the row's
    pairs). DeepMCP's correlation subnet (item-item) and DMR's user-to-item loss both use it."""
    mask = tf.cast(context_mask, tf.float32)
    positive = tf.math.log_sigmoid(tf.einsum("bd,bld->bl", target, context))
    negative = tf.reduce_sum(tf.math.log_sigmoid(-tf.einsum("bd,bkd->bk", target, negatives)),
                             axis=1)
    per_pair = -(positive + negative[:, None]) * mask
    return tf.reduce_sum(per_pair) / tf.maximum(tf.reduce_sum(mask), 1.0)


def last_and_prefix(history_ids):
    """For left-aligned histories [B, L] (0 = padding): the newest position's one-hot [B, L] and
    the mask of the earlier positions [B, L] (DMR predicts the newest item from the rest)."""
    length = tf.reduce_sum(tf.cast(history_ids > 0, tf.int32), axis=1)
    positions = tf.range(tf.shape(history_ids)[1])[None, :]
    newest = tf.logical_and(positions == (length - 1)[:, None], length[:, None] > 0)
    prefix = positions < (length - 1)[:, None]
    return newest, prefix


def keep_mask(batch_size, rate: float, seed) -> tf.Tensor:
    """DropoutNet's per-row input dropout: 0 (drop) with probability `rate`, else 1; [B]."""
    return tf.cast(tf.random.stateless_uniform([batch_size], seed) >= rate, tf.float32)
