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
    """Backbone `name`; `kwargs`: its architecture options (`options_class(name).defaults`),
    which `get_config` returns, so that a saved backbone rebuilds as it was."""
    model = backbone_class(name)(config, vocab_sizes, **kwargs)
    model.arch_options = {k: v for k, v in {**options_class(name).defaults, **kwargs}.items()
                          if k != "embed_dim"}  # embed_dim has its own key in get_config
    return model


def backbone_class(name: str):
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; known: {', '.join(sorted(BACKBONES))}")
    return BACKBONES[name]


def options_class(name: str) -> type:
    """The architecture options of backbone `name` in the form trainer/options.py checks
    (`--set deepfm.mlp_dims=[32,16]`): every keyword argument of its constructor with its
    default (tuples as lists)."""
    import inspect  # pylint: disable=import-outside-toplevel
    defaults, choices = {}, {}
    for cls in reversed(backbone_class(name).__mro__):
        if "__init__" in vars(cls) and issubclass(cls, CTRBackbone):
            for param in inspect.signature(cls.__init__).parameters.values():
                if param.default is not inspect.Parameter.empty:
                    value = param.default
                    defaults[param.name] = list(value) if isinstance(value, tuple) else value
        choices.update(vars(cls).get("option_choices", {}))
    return type(f"{name}_options", (), {"defaults": defaults, "choices": choices, "bounds": {},
                                        "check": classmethod(lambda cls, options: None)})


# User-history features (issue 14): `hist_<field>` id lists [B, L] that share <field>'s table
# (index + 1, 0 = padding), and the raw history length `hist_len`. Only history-aware backbones
# (trainer/din.py) read them; the others leave them out.
def _uniform():
    return keras.initializers.RandomUniform(-0.01, 0.01)


def _dense(units, name, use_bias=True):
    return keras.layers.Dense(units, use_bias=use_bias, kernel_initializer=_uniform(),
                              bias_initializer=_uniform(), name=name)


BN_INITS = ("uniform", "unit")


class MLP(keras.layers.Layer):
    """[Linear -> BatchNorm -> ReLU -> Dropout] per hidden width (spec 2.1).

    `bn_init`: "uniform" (the CSDM reference's init(), every tensor from U(-0.01, 0.01), BatchNorm's
    scale and shift too) or "unit" (scale 1, shift 0: PyTorch's and Keras' BatchNorm defaults).
    """

    def __init__(self, dims, dropout, bn_init="uniform", **kwargs):
        super().__init__(**kwargs)
        if bn_init not in BN_INITS:
            raise ValueError(f"bn_init must be uniform or unit, not {bn_init!r}")
        uniform = bn_init == "uniform"
        self.blocks = []
        for index, width in enumerate(dims):
            self.blocks.append((
                _dense(width, f"dense_{index}"),
                # PyTorch BatchNorm1d defaults: eps 1e-5, momentum 0.1 (= Keras 0.9).
                keras.layers.BatchNormalization(
                    momentum=0.9, epsilon=1e-5,
                    gamma_initializer=_uniform() if uniform else "ones",
                    beta_initializer=_uniform() if uniform else "zeros"),
                keras.layers.Dropout(dropout),
            ))

    def call(self, x, training=False):
        for dense, norm, drop in self.blocks:
            x = drop(tf.nn.relu(norm(dense(x), training=training)), training=training)
        return x


class CTRBackbone(keras.Model):
    """Shared embedding layer; subclasses define `logit(fields, ctn, training)`."""

    registry_name = ""
    # Whether ctn features enter as field embeddings v_c * x_c (FM family).
    ctn_as_fields = False
    # Whether the logit has the linear term sum_c w_c x_c over ctn features (DCN and PNN ignore ctn).
    uses_linear = True

    def __init__(self, config: features.FeatureConfig, vocab_sizes: Dict[str, int],
                 embed_dim: int = 16, **kwargs):
        super().__init__(name=kwargs.pop("name", self.registry_name or "backbone"), **kwargs)
        self.config = config
        self.embed_dim = embed_dim
        self.vocab_sizes = dict(vocab_sizes)
        # History fields (kind "hist") are read by the history backbones only (trainer/din.py).
        self.id_fields = [f for f in config.fields if f.kind in ("spr", "seq")]
        self.ctn_fields = tuple(config.by_kind("ctn"))
        # Item field first, then the other fields in description order (spec 2.1).
        self.other_fields = [f for f in self.id_fields if f.name != features.ITEM_ID]
        self.tables = {
            f.name: keras.layers.Embedding(vocab_sizes[f.name], embed_dim,
                                           embeddings_initializer=_uniform(), name=f"emb_{f.name}")
            for f in self.id_fields}
        if self.uses_linear:
            self.ctn_linear = keras.layers.Dense(1, use_bias=False, kernel_initializer=_uniform(),
                                                 name="ctn_linear")
        if self.ctn_as_fields:
            self.ctn_vectors = self.add_weight(
                name="ctn_vectors", shape=(len(self.ctn_fields), embed_dim), initializer=_uniform())

    @property
    def num_fields(self) -> int:
        return len(self.id_fields) + (len(self.ctn_fields) if self.ctn_as_fields else 0)

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
        return self.logit(*self.field_embeddings(item_emb, inputs), training)

    def field_embeddings(self, item_emb, inputs):
        """The fields [B, F, d] (item first) and the raw ctn scalars [B, C]."""
        fields = [item_emb] + [self.embed(f.name, inputs[f.name]) for f in self.other_fields]
        ctn = tf.stack([tf.cast(inputs[f.name], tf.float32) for f in self.ctn_fields], axis=1)
        if self.ctn_as_fields:
            fields += tf.unstack(ctn[:, :, None] * self.ctn_vectors[None], axis=1)
        return tf.stack(fields, axis=1), ctn

    def logit(self, fields: tf.Tensor, ctn: tf.Tensor, training: bool) -> tf.Tensor:
        """fields: [B, F, d] (item first); ctn: [B, C] raw scalars. Returns the logit [B]."""
        raise NotImplementedError

    def linear(self, ctn: tf.Tensor) -> tf.Tensor:
        return self.ctn_linear(ctn)[:, 0]

    def flat(self, fields: tf.Tensor) -> tf.Tensor:
        return tf.reshape(fields, [-1, fields.shape[1] * self.embed_dim])

    def get_config(self):
        options = getattr(self, "arch_options", {})
        return {"backbone": self.registry_name, "embed_dim": self.embed_dim,
                "vocab_sizes": self.vocab_sizes, "features": features.to_json(self.config),
                "options": options}


def fm_interaction(fields: tf.Tensor) -> tf.Tensor:
    """0.5 * sum_k [(sum_f E_fk)^2 - sum_f E_fk^2], [B, F, d] -> [B]."""
    square_of_sum = tf.square(tf.reduce_sum(fields, axis=1))
    sum_of_square = tf.reduce_sum(tf.square(fields), axis=1)
    return 0.5 * tf.reduce_sum(square_of_sum - sum_of_square, axis=1)


class _MLPHead(CTRBackbone):
    """Shared shape of the MLP-on-top backbones: MLP(dims, dropout) -> Linear(1)."""

    option_choices = {"bn_init": BN_INITS}

    def __init__(self, config, vocab_sizes, embed_dim=16, mlp_dims=(16, 16), dropout=0.2,
                 bn_init="uniform", **kwargs):
        super().__init__(config, vocab_sizes, embed_dim, **kwargs)
        self.mlp = MLP(mlp_dims, dropout, bn_init, name="mlp")
        self.out = _dense(1, "mlp_out")

    def head(self, x, training):
        return self.out(self.mlp(x, training=training))[:, 0]


@register("deepfm")
class DeepFM(_MLPHead):
    """logit = lin + FM(E) + Linear(MLP_(16,16), p=0.2 (flatten E)); ctn features are fields too.

    The backbone of the CSDM paper's Table 1.
    """

    ctn_as_fields = True

    def logit(self, fields, ctn, training):
        return self.linear(ctn) + fm_interaction(fields) + self.head(self.flat(fields), training)


@register("fm")
class FM(CTRBackbone):
    """logit = lin + FM(E); ctn features are fields too."""

    ctn_as_fields = True

    def logit(self, fields, ctn, training):
        return self.linear(ctn) + fm_interaction(fields)


@register("wd")
class WideDeep(_MLPHead):
    """logit = lin (the wide part: ctn only, spec D18) + Linear(MLP_(16,16), p=0.2 (concat E))."""

    def logit(self, fields, ctn, training):
        return self.linear(ctn) + self.head(self.flat(fields), training)


@register("fnn")
class FNN(_MLPHead):
    """FNN as in the Diff-MSR release: MLP_(256,256,256), p=0 over the concatenated embeddings."""

    uses_linear = False

    def __init__(self, config, vocab_sizes, embed_dim=16, mlp_dims=(256, 256, 256), dropout=0.0,
                 **kwargs):
        super().__init__(config, vocab_sizes, embed_dim, mlp_dims, dropout, **kwargs)

    def logit(self, fields, ctn, training):
        return self.head(self.flat(fields), training)


@register("dcn")
class DCN(CTRBackbone):
    """logit = Linear([cross_3(x0); MLP_(16,16), p=0.2 (x0)]), x0 = concat E; ctn ignored (D18).

    The cross layers are `tfrs.layers.dcn.Cross`: x_{l+1} = x0 * (W x_l + b) + x_l. With
    `projection_dim=1` (default) W = v u^T is rank one, the closest to the reference's DCN-v1
    layer x0 (x_l . w) + b + x_l; `projection_dim=None` gives the full-rank DCN-V2 layer.
    """

    uses_linear = False
    option_choices = {"bn_init": BN_INITS}

    def __init__(self, config, vocab_sizes, embed_dim=16, num_cross=3, projection_dim=1,
                 mlp_dims=(16, 16), dropout=0.2, bn_init="uniform", **kwargs):
        super().__init__(config, vocab_sizes, embed_dim, **kwargs)
        import tensorflow_recommenders as tfrs  # pylint: disable=import-outside-toplevel
        self.cross = [tfrs.layers.dcn.Cross(projection_dim=projection_dim,
                                            kernel_initializer=_uniform(),
                                            bias_initializer=_uniform(), name=f"cross_{i}")
                      for i in range(num_cross)]
        self.mlp = MLP(mlp_dims, dropout, bn_init, name="mlp")
        self.out = _dense(1, "out")

    def logit(self, fields, ctn, training):
        x0 = self.flat(fields)
        x = x0
        for layer in self.cross:
            x = layer(x0, x)
        return self.out(tf.concat([x, self.mlp(x0, training=training)], axis=1))[:, 0]


def _pairs(num_fields):
    rows, cols = zip(*[(i, j) for i in range(num_fields) for j in range(i + 1, num_fields)])
    return list(rows), list(cols)


@register("ipnn")
class IPNN(_MLPHead):
    """logit = Linear(MLP_(16,), p=0 ([flatten E; <e_i, e_j> for i < j])); ctn ignored."""

    uses_linear = False

    def __init__(self, config, vocab_sizes, embed_dim=16, mlp_dims=(16,), dropout=0.0, **kwargs):
        super().__init__(config, vocab_sizes, embed_dim, mlp_dims, dropout, **kwargs)

    def products(self, fields):
        rows, cols = _pairs(fields.shape[1])
        return tf.reduce_sum(tf.gather(fields, rows, axis=1) * tf.gather(fields, cols, axis=1), -1)

    def logit(self, fields, ctn, training):
        return self.head(tf.concat([self.flat(fields), self.products(fields)], axis=1), training)


@register("opnn")
class OPNN(IPNN):
    """As IPNN with the outer-product kernel: pair p = (i, j) gives e_j^T K_p e_i, K_p 16 x 16."""

    def __init__(self, config, vocab_sizes, embed_dim=16, **kwargs):
        super().__init__(config, vocab_sizes, embed_dim, **kwargs)
        num_pairs = self.num_fields * (self.num_fields - 1) // 2
        self.kernel = self.add_weight(name="kernel", initializer=_uniform(),
                                      shape=(embed_dim, num_pairs, embed_dim))

    def products(self, fields):
        rows, cols = _pairs(fields.shape[1])
        e_i = tf.gather(fields, rows, axis=1)  # [B, P, d]
        e_j = tf.gather(fields, cols, axis=1)
        return tf.einsum("bpa,apc,bpc->bp", e_j, self.kernel, e_i)


@register("afm")
class AFM(CTRBackbone):
    """logit = lin + Linear(dropout(sum_ij a_ij e_i * e_j)), attention over pairs; ctn are fields."""

    ctn_as_fields = True

    def __init__(self, config, vocab_sizes, embed_dim=16, attn_size=16, dropouts=(0.2, 0.2),
                 **kwargs):
        super().__init__(config, vocab_sizes, embed_dim, **kwargs)
        self.attention = _dense(attn_size, "attention")
        self.projection = _dense(1, "projection")
        self.attn_dropout = keras.layers.Dropout(dropouts[0])
        self.out_dropout = keras.layers.Dropout(dropouts[1])
        self.out = _dense(1, "out")

    def logit(self, fields, ctn, training):
        rows, cols = _pairs(fields.shape[1])
        products = tf.gather(fields, rows, axis=1) * tf.gather(fields, cols, axis=1)  # [B, P, d]
        scores = self.projection(tf.nn.relu(self.attention(products)))  # [B, P, 1]
        weights = self.attn_dropout(tf.nn.softmax(scores, axis=1), training=training)
        pooled = self.out_dropout(tf.reduce_sum(weights * products, axis=1), training=training)
        return self.linear(ctn) + self.out(pooled)[:, 0]


@register("afn")
class AFN(_MLPHead):
    """logit = lin + Linear(MLP_(400,400,400), p=0 (ReLU(expm1(W log1p(|E| + 1e-7))))), W 1500 x F."""

    def __init__(self, config, vocab_sizes, embed_dim=16, lnn_dim=1500, mlp_dims=(400, 400, 400),
                 dropout=0.0, **kwargs):
        super().__init__(config, vocab_sizes, embed_dim, mlp_dims, dropout, **kwargs)
        self.lnn = _dense(lnn_dim, "lnn", use_bias=False)

    def logit(self, fields, ctn, training):
        log_fields = tf.math.log1p(tf.abs(fields) + 1e-7)  # [B, F, d]
        lnn = tf.nn.relu(tf.math.expm1(self.lnn(tf.transpose(log_fields, [0, 2, 1]))))  # [B, d, L]
        return self.linear(ctn) + self.head(tf.reshape(lnn, [tf.shape(lnn)[0], -1]), training)


@register("xdeepfm")
class XDeepFM(_MLPHead):
    """logit = lin + CIN(E) + Linear(MLP_(16,16), p=0.2 (flatten E)); ctn only in lin.

    CIN layer k: X^k_h = ReLU(sum_ij W^k_hij (X^{k-1}_i * X^0_j) + b^k_h); the sum over d of every
    layer's maps is concatenated and projected to the logit (Lian et al. 2018).
    """

    def __init__(self, config, vocab_sizes, embed_dim=16, cin_sizes=(16, 16), mlp_dims=(16, 16),
                 dropout=0.2, **kwargs):
        super().__init__(config, vocab_sizes, embed_dim, mlp_dims, dropout, **kwargs)
        self.cin = [_dense(size, f"cin_{i}") for i, size in enumerate(cin_sizes)]
        self.cin_out = _dense(1, "cin_out")

    def logit(self, fields, ctn, training):
        x0 = tf.transpose(fields, [0, 2, 1])  # [B, d, F]
        x, pooled = x0, []
        for layer in self.cin:
            outer = tf.einsum("bdh,bdm->bdhm", x, x0)
            outer = tf.reshape(outer, [-1, self.embed_dim, x.shape[2] * x0.shape[2]])
            x = tf.nn.relu(layer(outer))  # [B, d, H]
            pooled.append(tf.reduce_sum(x, axis=1))
        cin = self.cin_out(tf.concat(pooled, axis=1))[:, 0]
        return self.linear(ctn) + cin + self.head(self.flat(fields), training)


from trainer import din  # noqa: E402,F401  pylint: disable=wrong-import-position,unused-import
# Multi-scenario backbones (Diff-MSR, issue 15); imported last: they subclass CTRBackbone.
from trainer import multi_scenario  # noqa: E402,F401  pylint: disable=wrong-import-position,cyclic-import
