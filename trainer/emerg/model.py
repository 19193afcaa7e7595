"""The EmerG network (spec emerg.md 3-7) as a pure function of (features, item-specific params).

psi = {A: the raw adjacency [B, F, F] of each row's item, e: its item-ID embedding [B, d]}. The
shared parameters theta (embedding tables, hypernetwork omega, W^(l), attention, predictor) are
Keras weights of `EmerGNet`; `logits(inputs, A, e)` never assigns a variable, so an inner update
psi' = psi - eta * grad is just new tensors (spec 11).

  nodes:   item_id first, then the other spr/seq fields, then ctn fields other than timestamp and
           count (price); E in R^{F x d}; seq fields are summed over positions, padding included.
  omega:   a_r = MLP_r([c_v ; onehot_F(r)]), c_v = concatenated item-field embeddings (eq. 2).
  refine:  A1 = sym(top_k(norm_diag(A))), A^(l) = mask(norm(A^(l-1) A1), A1)  (eqs. 3-6).
  GNN:     h^(l)_r = act_l(sum_c A^(l)_rc h^(0)_c W^(l)) * h^(l-1)_r, no activation on l = L.
  combine: the released code's multi-head attention over the (L+1) x F order tokens (spec 6).
  predict: logit = sum_r sigmoid(W_alpha vec(H))_r (w . h_r)      (eqs. 9-10).
"""
from typing import Dict, List, Optional, Sequence

import numpy as np
import tensorflow as tf

from trainer import features

keras = tf.keras
EXCLUDED_CTN = ("timestamp", "count")  # not nodes (spec 2.1): time and the item's total count
EPS = 1e-12


def _uniform():
    return keras.initializers.RandomUniform(-0.01, 0.01)


# -- refinement (eqs. 3-6), pure functions on [..., F, F] -------------------------------------------
def min_max(x: tf.Tensor) -> tf.Tensor:
    """Scales all F x F entries of each matrix into [0, 1] (max = min guarded by EPS)."""
    low = tf.reduce_min(x, axis=[-2, -1], keepdims=True)
    high = tf.reduce_max(x, axis=[-2, -1], keepdims=True)
    return (x - low) / tf.maximum(high - low, EPS)


def norm_diag(x: tf.Tensor) -> tf.Tensor:
    """min_max, then the diagonal set to 1."""
    eye = tf.eye(x.shape[-1], dtype=x.dtype)
    return min_max(x) * (1.0 - eye) + eye


def top_k(x: tf.Tensor, k: int) -> tf.Tensor:
    """Keeps the k largest of the F^2 entries of each matrix (ties: the lower flat index), zeros
    the rest; the selection is a constant for the gradient."""
    size = x.shape[-1] * x.shape[-1]
    flat = tf.reshape(x, [-1, size])
    _, index = tf.math.top_k(flat, k=k)
    keep = tf.stop_gradient(tf.reduce_sum(tf.one_hot(index, size, dtype=x.dtype), axis=-2))
    return tf.reshape(flat * keep, tf.shape(x))


def symmetrise(x: tf.Tensor) -> tf.Tensor:
    return 0.5 * (x + tf.linalg.matrix_transpose(x))


def refine(a_raw: tf.Tensor, layers: int, k: int, sparsify: bool = True, mask: bool = True
           ) -> List[tf.Tensor]:
    """[A^(1), ..., A^(L)] from the raw hypernetwork output (spec 4.2 reconstruction)."""
    a1 = norm_diag(a_raw)
    if sparsify:
        a1 = top_k(a1, k)
    a1 = symmetrise(a1)
    graphs = [a1]
    keep = tf.cast(tf.not_equal(a1, 0.0), a1.dtype)
    for _ in range(1, layers):
        a_l = min_max(tf.matmul(graphs[-1], a1))
        graphs.append(a_l * keep if mask else a_l)
    return graphs


def raw_graphs(a_raw: tf.Tensor, layers: int, dropped_nodes: int = 4) -> List[tf.Tensor]:
    """The released code: the raw matrix in every layer, rows and columns of the last
    `dropped_nodes` nodes zeroed (spec 4.2 `raw_graph`, 12.1-12.2)."""
    num = a_raw.shape[-1]
    alive = np.ones([num], np.float32)
    alive[num - dropped_nodes:] = 0.0
    a = a_raw * tf.constant(np.outer(alive, alive), a_raw.dtype)
    return [a] * layers


class EmerGNet(keras.Model):
    """Shared parameters theta and omega, and the pure forward pass.

    `graph`: "hypernet" (EmerG), "random" (a fixed U(0, 1) matrix per item, Fig. 3 "w/ random
    graph") or "shared" (one learned matrix for all items, "w/ shared graph").
    `global_graph`: adds the released code's pretraining graphs B^(l) (spec 8.1).
    """

    def __init__(self, config: features.FeatureConfig, vocab_sizes: Dict[str, int],
                 layers: int = 2, heads: int = 3, embed_dim: int = 16, k: int = 0,
                 hyper_fields: Sequence[str] = (), graph: str = "hypernet",
                 sparsify: bool = True, mask: bool = True, raw_graph: bool = False,
                 global_graph: bool = False, seed: int = 0, **kwargs):
        super().__init__(name=kwargs.pop("name", "emerg"), **kwargs)
        self.config, self.vocab_sizes = config, dict(vocab_sizes)
        self.num_layers, self.heads, self.embed_dim = layers, heads, embed_dim
        self.graph, self.sparsify, self.use_mask, self.raw_graph = graph, sparsify, mask, raw_graph
        ids = [f for f in config.fields if f.kind in ("spr", "seq")]
        self.nodes = ([config.field(features.ITEM_ID)]
                      + [f for f in ids if f.name != features.ITEM_ID]
                      + [f for f in config.by_kind("ctn") if f.name not in EXCLUDED_CTN])
        names = [f.name for f in self.nodes]
        self.num_nodes = num = len(self.nodes)
        self.k = k or num * num // 2
        wanted = list(hyper_fields) or [n for n in config.item_side if n not in EXCLUDED_CTN]
        unknown = [n for n in wanted if n not in names]
        if unknown:
            raise ValueError(f"emerg: hypernetwork fields {unknown} are not graph nodes {names}")
        if features.ITEM_ID not in wanted:
            wanted = [features.ITEM_ID] + wanted
        self.hyper_nodes = [i for i, n in enumerate(names) if n in wanted]  # node order
        d = embed_dim
        self.tables = {f.name: keras.layers.Embedding(vocab_sizes[f.name], d, name=f"emb_{f.name}",
                                                      embeddings_initializer=_uniform())
                       for f in self.nodes if f.kind != "ctn"}
        for table in self.tables.values():
            table.build((None,))
        ctn = [f for f in self.nodes if f.kind == "ctn"]
        if ctn:
            self.ctn_vectors = self.add_weight(name="ctn_vectors", shape=(len(ctn), d),
                                               initializer=_uniform())
        width = len(self.hyper_nodes) * d + num  # [c_v ; onehot(r)]
        w = lambda name, shape: self.add_weight(name=name, shape=shape, initializer=_uniform())
        # The F sub-networks MLP_r (eq. 2) as stacked weights: Dense(F)-ReLU-Dense(F)-ReLU-Dense(F).
        self.hyper = [(w(f"hyper_w{i}", (num, width if i == 0 else num, num)),
                       w(f"hyper_b{i}", (num, num))) for i in range(3)]
        self.gnn_w = w("gnn_w", (layers, d, d))
        tokens = num * d
        self.w_q = w("attn_q", (tokens, tokens * heads))
        self.w_k = w("attn_k", (tokens, tokens * heads))
        self.w_v = w("attn_v", (d, d * heads))
        self.w_o = w("attn_o", (heads * d, d))
        self.b_o = w("attn_o_bias", (d,))
        self.w_score = w("score", (d,))
        self.w_alpha = w("alpha", (tokens, num))
        if graph == "shared":
            self.shared_graph = w("shared_graph", (num, num))
        if graph == "random":
            rng = np.random.default_rng(seed)
            self.random_graphs = tf.constant(
                rng.random((vocab_sizes[features.ITEM_ID], num, num), dtype=np.float32))
        self.global_graph = w("global_graph", (layers, num, num)) if global_graph else None

    @property
    def item_table(self) -> tf.Variable:
        return self.tables[features.ITEM_ID].embeddings

    def hypernet_variables(self) -> List[tf.Variable]:
        return [v for pair in self.hyper for v in pair]

    # -- pieces ---------------------------------------------------------------------------------
    def embed_field(self, field: features.Field, inputs) -> tf.Tensor:
        vectors = self.tables[field.name](inputs[field.name])
        return tf.reduce_sum(vectors, axis=1) if field.kind == "seq" else vectors

    def embed_nodes(self, inputs, e_item: tf.Tensor) -> tf.Tensor:
        """E [B, F, d] with node 0 = e_item."""
        out, c = [e_item], 0
        for field in self.nodes[1:]:
            if field.kind == "ctn":
                out.append(tf.cast(inputs[field.name], tf.float32)[:, None] * self.ctn_vectors[c])
                c += 1
            else:
                out.append(self.embed_field(field, inputs))
        return tf.stack(out, axis=1)

    def hyper_graph(self, nodes: tf.Tensor) -> tf.Tensor:
        """A_hat [B, F, F] from the item nodes of E (eq. 2): row r = MLP_r([c_v ; onehot(r)])."""
        c = tf.reshape(tf.gather(nodes, self.hyper_nodes, axis=1),
                       [-1, len(self.hyper_nodes) * self.embed_dim])
        num = self.num_nodes
        x = tf.concat([tf.tile(c[:, None, :], [1, num, 1]),
                       tf.tile(tf.eye(num)[None], [tf.shape(c)[0], 1, 1])], axis=2)
        for i, (kernel, bias) in enumerate(self.hyper):
            x = tf.einsum("bri,rio->bro", x, kernel) + bias
            if i < 2:
                x = tf.nn.relu(x)
        return x

    def initial_graph(self, inputs, e_item: tf.Tensor, detached: bool = False,
                      nodes: Optional[tf.Tensor] = None) -> tf.Tensor:
        """A^(0) of each row's item: hypernetwork, fixed random, or the shared matrix.
        `nodes`: embed_nodes(inputs, e_item) when already computed."""
        if self.graph == "random":
            return tf.gather(self.random_graphs, inputs[features.ITEM_ID])
        if self.graph == "shared":
            return tf.tile(self.shared_graph[None], [tf.shape(e_item)[0], 1, 1])
        a = self.hyper_graph(self.embed_nodes(inputs, e_item) if nodes is None else nodes)
        return tf.stop_gradient(a) if detached else a

    def graphs(self, a_raw: tf.Tensor) -> List[tf.Tensor]:
        if self.raw_graph:
            return raw_graphs(a_raw, self.num_layers)
        return refine(a_raw, self.num_layers, self.k, self.sparsify, self.use_mask)

    def gnn(self, h0: tf.Tensor, graphs: Sequence[tf.Tensor], use_w: bool = True
            ) -> List[tf.Tensor]:
        """[h^(0), ..., h^(L)] (eq. 8): aggregation from h^(0), product with h^(l-1)."""
        hs = [h0]
        for l, a in enumerate(graphs):
            messages = h0 @ self.gnn_w[l] if use_w else h0
            m = tf.matmul(a, messages)
            act = m if l == len(graphs) - 1 else tf.nn.leaky_relu(m, alpha=0.01)
            hs.append(act * hs[-1])
        return hs

    def combine(self, hs: Sequence[tf.Tensor]) -> tf.Tensor:
        """Multi-head attention over the (L+1) x F order tokens, the code's reshapes (spec 6)."""
        num, d, heads = self.num_nodes, self.embed_dim, self.heads
        orders = len(hs)
        stacked = tf.stack(hs, axis=1)  # [B, L+1, F, d]
        x = tf.reshape(stacked, [-1, orders, num * d])
        tokens = orders * num
        q = tf.reshape(x @ self.w_q, [-1, tokens, d])  # [B*heads, (L+1) F, d], row-major
        k = tf.reshape(x @ self.w_k, [-1, tokens, d])
        v = tf.reshape(stacked @ self.w_v, [-1, tokens, d])
        p = tf.nn.softmax(tf.matmul(q, k, transpose_b=True) / np.sqrt(d), axis=-1)
        o = tf.reshape(tf.matmul(p, v), [-1, orders, num, heads * d])
        out = tf.nn.relu(o @ self.w_o + self.b_o)
        return tf.nn.relu(tf.reduce_sum(out, axis=1))  # [B, F, d]

    def predict_logit(self, h: tf.Tensor) -> tf.Tensor:
        scores = tf.einsum("bfd,d->bf", h, self.w_score)
        alpha = tf.sigmoid(tf.reshape(h, [-1, self.num_nodes * self.embed_dim]) @ self.w_alpha)
        return tf.reduce_sum(alpha * scores, axis=1)

    # -- the pure forward ---------------------------------------------------------------------
    def logits(self, inputs, a_raw: tf.Tensor, e_item: tf.Tensor) -> tf.Tensor:
        """Logits [B] given each row's psi: a_raw [B, F, F], e_item [B, d]."""
        return self.forward(self.embed_nodes(inputs, e_item), a_raw)

    def forward(self, h0: tf.Tensor, a_raw: tf.Tensor) -> tf.Tensor:
        """Logits [B] from the node embeddings h0 [B, F, d] and the raw graphs [B, F, F]."""
        return self.predict_logit(self.combine(self.gnn(h0, self.graphs(a_raw))))

    def global_logits(self, inputs) -> tf.Tensor:
        """The released code's pretraining path: a^(l) = act(B^(l) E), no W^(l) (spec 8.1)."""
        h0 = self.embed_nodes(inputs, self.item_embedding(inputs))
        graphs = tf.unstack(self.global_graph)
        return self.predict_logit(self.combine(self.gnn(h0, graphs, use_w=False)))

    def item_embedding(self, inputs) -> tf.Tensor:
        return tf.gather(self.item_table, inputs[features.ITEM_ID])

    def call(self, inputs, training=False, detached: bool = False):
        """Logits with psi from the item table and the initial graph (pretraining, w/o meta)."""
        e = self.item_embedding(inputs)
        h0 = self.embed_nodes(inputs, e)
        return self.forward(h0, self.initial_graph(inputs, e, detached, nodes=h0))


class EmerGEval(keras.Model):
    """What the protocol evaluates: `net` with a per-item psi table (slots for the new items),
    so that `call(inputs)` gives each row its own item's current A and e."""

    def __init__(self, net: EmerGNet, item_ids: np.ndarray, **kwargs):
        super().__init__(name="emerg_eval", **kwargs)
        self.net = net
        self.item_ids = np.asarray(item_ids, np.int64)  # slot s holds item item_ids[s]
        slots = np.full(net.vocab_sizes[features.ITEM_ID], -1, np.int32)
        slots[self.item_ids] = np.arange(len(self.item_ids), dtype=np.int32)
        self.slot_of = tf.constant(slots)
        num, d = net.num_nodes, net.embed_dim
        n = len(self.item_ids)
        zeros = lambda name, shape, dtype=tf.float32: tf.Variable(tf.zeros(shape, dtype),
                                                                   trainable=False, name=name)
        self.psi_a, self.psi_e = zeros("psi_a", (n, num, num)), zeros("psi_e", (n, d))
        # Per-item Adam state, kept across warm_a -> warm_b -> warm_c (spec 8.3).
        self.m_a, self.v_a = zeros("m_a", (n, num, num)), zeros("v_a", (n, num, num))
        self.m_e, self.v_e = zeros("m_e", (n, d)), zeros("v_e", (n, d))
        self.steps = zeros("steps", (n,))

    def slots(self, item_ids) -> tf.Tensor:
        slot = tf.gather(self.slot_of, item_ids)
        tf.debugging.assert_non_negative(slot, "emerg: an item without a psi slot")
        return slot

    def call(self, inputs, training=False):
        slot = self.slots(inputs[features.ITEM_ID])
        return self.net.logits(inputs, tf.gather(self.psi_a, slot), tf.gather(self.psi_e, slot))
