"""CTR backbones (spec csdm_and_baselines.md section 2) and their registry.

Every backbone is a `CTRBackbone`: it owns one embedding table per spr/seq field (d = 16,
U(-0.01, 0.01) like every other weight, spec 2.1), returns a logit, and exposes what cold-start
methods need:
- `item_table`: the item-ID embedding variable (rows = item vocabulary);
- `call_with_item_embedding(e_item, inputs, training)`: the network with the item field's
  embedding replaced by `e_item` [B, d] (gradients flow into it);
- `item_id_variables()` / `trainable_weights`: what "train only the item-ID table" updates.
"""
from typing import Callable, Dict, List

import tensorflow as tf

from trainer import features

keras = tf.keras
BACKBONES: Dict[str, Callable[..., "CTRBackbone"]] = {}


def register(name: str):
    def wrap(cls):
        BACKBONES[name] = cls
        cls.registry_name = name
        return cls
    return wrap


def build(name: str, config: features.FeatureConfig, vocab_sizes: Dict[str, int],
          **kwargs) -> "CTRBackbone":
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; known: {', '.join(sorted(BACKBONES))}")
    return BACKBONES[name](config, vocab_sizes, **kwargs)


def _uniform():
    return keras.initializers.RandomUniform(-0.01, 0.01)


class MLP(keras.layers.Layer):
    """[Linear -> BatchNorm -> ReLU -> Dropout] per hidden width (spec 2.1)."""

    def __init__(self, dims, dropout, **kwargs):
        super().__init__(**kwargs)
        self.blocks = []
        for width in dims:
            self.blocks.append((
                keras.layers.Dense(width, kernel_initializer=_uniform(), bias_initializer=_uniform()),
                # PyTorch BatchNorm1d defaults: eps 1e-5, momentum 0.1 (= Keras 0.9).
                keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5,
                                                gamma_initializer=_uniform(),
                                                beta_initializer=_uniform()),
                keras.layers.Dropout(dropout),
            ))

    def call(self, x, training=False):
        for dense, norm, drop in self.blocks:
            x = drop(tf.nn.relu(norm(dense(x), training=training)), training=training)
        return x


class CTRBackbone(keras.Model):
    """Shared embedding layer; subclasses define `logit(fields, ctn, training)`."""

    registry_name = ""
    # Whether ctn features enter as field embeddings v_c * x_c (FM family) besides the linear term.
    ctn_as_fields = False

    def __init__(self, config: features.FeatureConfig, vocab_sizes: Dict[str, int],
                 embed_dim: int = 16, **kwargs):
        super().__init__(name=kwargs.pop("name", self.registry_name or "backbone"), **kwargs)
        self.config = config
        self.embed_dim = embed_dim
        self.vocab_sizes = dict(vocab_sizes)
        self.id_fields = [f for f in config.fields if f.kind in ("spr", "seq")]
        self.ctn_fields = config.by_kind("ctn")
        # Item field first, then the other fields in description order (spec 2.1).
        self.other_fields = [f for f in self.id_fields if f.name != features.ITEM_ID]
        self.tables = {
            f.name: keras.layers.Embedding(vocab_sizes[f.name], embed_dim,
                                           embeddings_initializer=_uniform(), name=f"emb_{f.name}")
            for f in self.id_fields}
        self.ctn_linear = keras.layers.Dense(1, use_bias=False, kernel_initializer=_uniform(),
                                             name="ctn_linear")
        if self.ctn_as_fields:
            self.ctn_vectors = self.add_weight(
                name="ctn_vectors", shape=(len(self.ctn_fields), embed_dim), initializer=_uniform())

    @property
    def item_table(self) -> tf.Variable:
        return self.tables[features.ITEM_ID].embeddings

    def item_id_variables(self) -> List[tf.Variable]:
        return [self.item_table]

    def embed(self, name: str, ids: tf.Tensor) -> tf.Tensor:
        """[B, d]: lookup for spr, sum over the L positions (padding included) for seq."""
        vectors = self.tables[name](ids)
        return tf.reduce_sum(vectors, axis=1) if vectors.shape.rank == 3 else vectors

    def call(self, inputs, training=False):
        item_emb = self.embed(features.ITEM_ID, inputs[features.ITEM_ID])
        return self.call_with_item_embedding(item_emb, inputs, training=training)

    def call_with_item_embedding(self, item_emb, inputs, training=False):
        fields = [item_emb] + [self.embed(f.name, inputs[f.name]) for f in self.other_fields]
        ctn = tf.stack([tf.cast(inputs[f.name], tf.float32) for f in self.ctn_fields], axis=1)
        if self.ctn_as_fields:
            fields += tf.unstack(ctn[:, :, None] * self.ctn_vectors[None], axis=1)
        return self.logit(tf.stack(fields, axis=1), ctn, training)

    def logit(self, fields: tf.Tensor, ctn: tf.Tensor, training: bool) -> tf.Tensor:
        raise NotImplementedError

    def get_config(self):
        return {"backbone": self.registry_name, "embed_dim": self.embed_dim,
                "vocab_sizes": self.vocab_sizes}


def fm_interaction(fields: tf.Tensor) -> tf.Tensor:
    """0.5 * sum_k [(sum_f E_fk)^2 - sum_f E_fk^2], [B, F, d] -> [B]."""
    square_of_sum = tf.square(tf.reduce_sum(fields, axis=1))
    sum_of_square = tf.reduce_sum(tf.square(fields), axis=1)
    return 0.5 * tf.reduce_sum(square_of_sum - sum_of_square, axis=1)


@register("deepfm")
class DeepFM(CTRBackbone):
    """logit = lin + FM(E) + Linear(MLP_(16,16), p=0.2 (flatten E)); ctn features are fields too."""

    ctn_as_fields = True

    def __init__(self, config, vocab_sizes, embed_dim=16, mlp_dims=(16, 16), dropout=0.2, **kwargs):
        super().__init__(config, vocab_sizes, embed_dim, **kwargs)
        self.mlp = MLP(mlp_dims, dropout, name="mlp")
        self.out = keras.layers.Dense(1, kernel_initializer=_uniform(), bias_initializer=_uniform(),
                                      name="mlp_out")

    def logit(self, fields, ctn, training):
        flat = tf.reshape(fields, [-1, fields.shape[1] * self.embed_dim])
        deep = self.out(self.mlp(flat, training=training))[:, 0]
        return self.ctn_linear(ctn)[:, 0] + fm_interaction(fields) + deep
