"""History-aware backbones for the user side (issue 14, spec aqcl.md section 3): DIN, and DeepFM /
Wide&Deep with the click history as mean-pooled fields.

History features (the contract with the history builder): `hist_item_id` int64 [B, L], the user's
earlier items as item-vocabulary index + 1, 0 = padding, oldest first and left-aligned;
optionally `hist_<field>` [B, L] for an item-side categorical <field>, same convention with that
field's vocabulary; `hist_len` float32 [B], the raw number of earlier interactions (AQCL's L_j;
no backbone reads it). A history row t looks up <field>'s table at id - 1, masked where id = 0,
so the history shares the item embeddings (and gets their gradients).

DIN (Zhou et al. 2018): the candidate's item-side embedding c (item_id, then the fields that have
a history) is the query; each history position h_t gets the weight
    a_t = Linear(MLP_(80, 40)([h_t, c, h_t - c, h_t * c]))    (no softmax; 0 where padded)
and the user interest is sum_t a_t h_t. The MLP_(200, 80) (Dice or PReLU, dropout 0.2) reads
[flatten(fields), interest, ctn]; its output is h, and logit = Linear(h).

Every backbone here exposes what the AQCL-family regularisers need (spec 13):
- `logit_and_representation(inputs, training)` -> (logit [B], h [B, H]) in one pass; h is the
  input of the last linear layer of the deep side; `representation(inputs, training)` -> h;
- `augment(inputs, seed, mask_rate, dropout_rate)` -> inputs for a second forward pass: history
  positions masked to padding, and a seed under which the looked-up embeddings (fields and
  history) are dropped out; the augmented dict runs through `model(...)` like any other;
- `drop_user(inputs, keep)` -> inputs whose user-ID embedding is zeroed and history emptied on
  the rows where keep = 0 (DropoutNet's user-side input dropout);
- `field_names`, `field_embeddings`, `history_embedding` for the subnets of DeepMCP and DMR.
"""
from typing import Dict, List, Optional, Tuple

import tensorflow as tf

from trainer import backbones, features
from trainer.backbones import CTRBackbone, DeepFM, WideDeep, _dense, _uniform, register

keras = tf.keras
HISTORY_ITEMS = "hist_item_id"
HISTORY_LENGTH = "hist_len"
# Keys that `augment` / `drop_user` add to an input dict (never features of the data).
DROPOUT_SEED = "_embedding_dropout_seed"
DROPOUT_RATE = "_embedding_dropout_rate"
USER_KEEP = "_user_keep"


def shared_vocab(field: features.Field) -> str:
    """The field whose table a history field shares (`Field.vocab`)."""
    if not field.vocab:
        raise ValueError(f"history field {field.name} names no vocabulary to share (Field.vocab)")
    return field.vocab


class Dice(keras.layers.Layer):
    """Dice (DIN eq. 6): p = sigmoid((s - E[s]) / sqrt(Var[s] + eps)), f(s) = p s + (1 - p) a s.

    E and Var are batch statistics in training and running averages in inference (a BatchNorm
    without scale or shift, momentum 0.9 as every BatchNorm here); a is learned per unit."""

    def build(self, input_shape):
        self.alpha = self.add_weight(name="alpha", shape=(input_shape[-1],), initializer=_uniform())
        self.norm = keras.layers.BatchNormalization(center=False, scale=False, epsilon=1e-8,
                                                    momentum=0.9, name="dice_norm")
        super().build(input_shape)

    def call(self, x, training=False):
        p = tf.sigmoid(self.norm(x, training=training))
        return p * x + (1.0 - p) * self.alpha * x


class PReLU(keras.layers.Layer):
    """f(s) = max(s, 0) + a min(s, 0), a learned per unit (shared over the history positions)."""

    def build(self, input_shape):
        self.alpha = self.add_weight(name="alpha", shape=(input_shape[-1],), initializer=_uniform())
        super().build(input_shape)

    def call(self, x, training=False):
        return tf.nn.relu(x) - self.alpha * tf.nn.relu(-x)


def activation_layer(kind: str, name: str) -> keras.layers.Layer:
    if kind == "dice":
        return Dice(name=name)
    if kind == "prelu":
        return PReLU(name=name)
    raise ValueError(f"activation must be dice or prelu, not {kind!r}")


class ActivationMLP(keras.layers.Layer):
    """[Linear -> Dice|PReLU -> Dropout] per hidden width (DIN's MLP and attention unit)."""

    def __init__(self, dims, activation, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        self.blocks = [(_dense(width, f"dense_{i}"), activation_layer(activation, f"act_{i}"),
                        keras.layers.Dropout(dropout)) for i, width in enumerate(dims)]

    def call(self, x, training=False):
        for dense, act, drop in self.blocks:
            x = drop(act(dense(x), training=training), training=training)
        return x


class HistoryMixin:
    """History lookups and the augmentation / representation hooks; mixed into a CTRBackbone.

    Subclasses define `_logit_and_h(fields, ctn, history, mask, training)`."""

    def _init_history(self):
        self.history_fields: List[features.Field] = sorted(
            [f for f in self.config.fields if f.kind == "hist"],
            key=lambda f: f.name != HISTORY_ITEMS)
        names = [f.name for f in self.history_fields]
        if names and names[0] != HISTORY_ITEMS:
            raise ValueError(f"history fields {names} without {HISTORY_ITEMS}")
        for f in self.history_fields:
            vocab = shared_vocab(f)
            if vocab not in self.tables or self.config.field(vocab).kind != "spr":
                raise ValueError(f"history field {f.name} shares {vocab!r}, which is not a "
                                 "categorical field of the data")

    @property
    def field_names(self) -> List[str]:
        """Names of the rows of `field_embeddings` (ctn fields last when they are fields)."""
        names = [features.ITEM_ID] + [f.name for f in self.other_fields]
        return names + ([f.name for f in self.ctn_fields] if self.ctn_as_fields else [])

    def history_embedding(self, inputs) -> Tuple[Optional[tf.Tensor], Optional[tf.Tensor]]:
        """([B, L, d * k] the k history fields' rows concatenated, zero where padded; [B, L] bool
        mask), or (None, None) without history."""
        if not self.history_fields:
            return None, None
        mask = inputs[HISTORY_ITEMS] > 0
        parts = [tf.gather(self.tables[shared_vocab(f)].embeddings,
                           tf.maximum(inputs[f.name] - 1, 0)) for f in self.history_fields]
        history = tf.concat(parts, axis=-1) * tf.cast(mask, tf.float32)[..., None]
        return _dropout(history, inputs, 1), mask

    def field_embeddings(self, item_emb, inputs):
        fields, ctn = super().field_embeddings(item_emb, inputs)
        if USER_KEEP in inputs:
            keep = tf.cast(inputs[USER_KEEP], tf.float32)
            index = self.field_names.index(features.USER_ID)
            scale = tf.one_hot(index, fields.shape[1], on_value=0.0, off_value=1.0)
            fields = fields * (scale[None, :] + (1.0 - scale[None, :]) * keep[:, None])[..., None]
        return _dropout(fields, inputs, 0), ctn

    def logit_and_representation(self, inputs, training=False, item_emb=None):
        if item_emb is None:
            item_emb = self.embed(features.ITEM_ID, inputs[features.ITEM_ID])
        fields, ctn = self.field_embeddings(item_emb, inputs)
        history, mask = self.history_embedding(inputs)
        return self._logit_and_h(fields, ctn, history, mask, training)

    def representation(self, inputs, training=False):
        return self.logit_and_representation(inputs, training)[1]

    def call_with_item_embedding(self, item_emb, inputs, training=False):
        return self.logit_and_representation(inputs, training, item_emb)[0]

    def augment(self, inputs, seed, mask_rate: float = 0.2, dropout_rate: float = 0.1):
        """x+ of spec 4: each non-padding history position masked to padding with probability
        `mask_rate` (all history fields alike), embeddings dropped out at `dropout_rate` (inverted
        dropout) in the forward pass. `seed`: int64 [2] (stateless: same seed, same x+)."""
        seed = tf.cast(tf.convert_to_tensor(seed), tf.int64)
        mask_seed, dropout_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        out = dict(inputs)
        if self.history_fields and mask_rate > 0:
            ids = inputs[HISTORY_ITEMS]
            keep = tf.random.stateless_uniform(tf.shape(ids), mask_seed) >= mask_rate
            for f in self.history_fields:
                out[f.name] = tf.where(keep, inputs[f.name], tf.zeros_like(inputs[f.name]))
        if dropout_rate > 0:
            out[DROPOUT_SEED] = dropout_seed
            out[DROPOUT_RATE] = tf.constant(dropout_rate, tf.float32)
        return out

    def drop_user(self, inputs, keep):
        """Rows with keep = 0 look like a user never seen: user-ID embedding 0, empty history."""
        out = dict(inputs, **{USER_KEEP: keep})
        for f in self.history_fields:
            out[f.name] = tf.where(tf.cast(keep, tf.bool)[:, None], inputs[f.name],
                                   tf.zeros_like(inputs[f.name]))
        return out


def _dropout(x: tf.Tensor, inputs: Dict[str, tf.Tensor], salt: int) -> tf.Tensor:
    if DROPOUT_SEED not in inputs:
        return x
    seed = tf.random.experimental.stateless_fold_in(inputs[DROPOUT_SEED], salt)
    return tf.nn.experimental.stateless_dropout(x, inputs[DROPOUT_RATE], seed)


def mean_pool(history: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """[B, L, D] -> [B, D]: mean over the non-padding positions, 0 for an empty history."""
    count = tf.reduce_sum(tf.cast(mask, tf.float32), axis=1, keepdims=True)
    return tf.reduce_sum(history, axis=1) / tf.maximum(count, 1.0)


@register("din")
class DIN(HistoryMixin, CTRBackbone):
    """Deep Interest Network (module docstring); ctn features enter the MLP as scalars."""

    uses_linear = False

    def __init__(self, config, vocab_sizes, embed_dim=16, mlp_dims=(200, 80),
                 attention_dims=(80, 40), activation="dice", dropout=0.2, **kwargs):
        super().__init__(config, vocab_sizes, embed_dim, **kwargs)
        self.options = {"mlp_dims": list(mlp_dims), "attention_dims": list(attention_dims),
                        "activation": activation, "dropout": dropout}
        self._init_history()
        # The query: the candidate's rows of the fields the history has, in history order.
        self.query_index = [self.field_names.index(shared_vocab(f)) for f in self.history_fields]
        self.attention = ActivationMLP(attention_dims, activation, name="attention")
        self.attention_out = _dense(1, "attention_out")
        self.mlp = ActivationMLP(mlp_dims, activation, dropout, name="mlp")
        self.out = _dense(1, "mlp_out")

    def attention_weights(self, fields, history, mask, training=False):
        """a_t [B, L] (0 on padding) of the history against the candidate."""
        query = tf.reshape(tf.gather(fields, self.query_index, axis=1), [-1, history.shape[-1]])
        query = tf.broadcast_to(query[:, None, :], tf.shape(history))
        unit = tf.concat([history, query, history - query, history * query], axis=-1)
        scores = self.attention_out(self.attention(unit, training=training))[..., 0]
        return tf.where(mask, scores, tf.zeros_like(scores))

    def _logit_and_h(self, fields, ctn, history, mask, training):
        parts = [self.flat(fields)]
        if history is not None:
            weights = self.attention_weights(fields, history, mask, training)
            parts.append(tf.reduce_sum(weights[..., None] * history, axis=1))
        h = self.mlp(tf.concat(parts + [ctn], axis=1), training=training)
        return self.out(h)[:, 0], h

    def get_config(self):
        options = {k: list(v) if k.endswith("dims") else v for k, v in self.options.items()}
        return {**super().get_config(), "options": options}


class _PooledHistory(HistoryMixin):
    """The parent's network with each history field's mean over the non-padding positions as one
    more field (spec 3: W&D / DeepFM unchanged otherwise); h = the deep side's MLP output."""

    def __init__(self, config, vocab_sizes, embed_dim=16, **kwargs):
        super().__init__(config, vocab_sizes, embed_dim, **kwargs)
        self._init_history()

    @property
    def num_fields(self) -> int:
        return super().num_fields + len(self.history_fields)

    def _with_history(self, fields, history, mask):
        if history is None:
            return fields
        d = self.embed_dim
        pooled = [mean_pool(history[..., k * d:(k + 1) * d], mask)
                  for k in range(len(self.history_fields))]
        return tf.concat([fields, tf.stack(pooled, axis=1)], axis=1)


@register("deepfm_hist")
class DeepFMHistory(_PooledHistory, DeepFM):
    """DeepFM with the pooled history fields (in the FM and the deep side)."""

    def _logit_and_h(self, fields, ctn, history, mask, training):
        fields = self._with_history(fields, history, mask)
        h = self.mlp(self.flat(fields), training=training)
        return self.linear(ctn) + backbones.fm_interaction(fields) + self.out(h)[:, 0], h


@register("wd_hist")
class WideDeepHistory(_PooledHistory, WideDeep):
    """Wide&Deep with the pooled history fields on the deep side."""

    def _logit_and_h(self, fields, ctn, history, mask, training):
        h = self.mlp(self.flat(self._with_history(fields, history, mask)), training=training)
        return self.linear(ctn) + self.out(h)[:, 0], h
