"""Meta-Embedding (Pan et al. SIGIR 2019) as in the CSDM authors' code (spec 1.6, 4.3).

G = Linear(S -> d) -> ReLU -> Linear(d -> d) maps the item's side information s(x), read from the
backbone's frozen tables (item_id included, ~0 for new items), to an item-ID embedding. It trains
on the metaE splits of `base` (four time-ordered quarters of every old item's rows, row-aligned),
pairing batch k of A with batch k of B:
  e_a  = G(s(x_a));  L_a = BCE(f(e_a, x_a));  e'_a = e_a - inner_lr * dL_a/de_a  (second order)
  L    = alpha L_a + (1 - alpha) BCE(f(e'_a, x_b))
Then new items' rows are set to G(s(x)); the warm phases are the plain ID fine-tune.
The A/B pairs stay aligned (the reference aligns them on MovieLens only, D15), and the
permutation of the metaE rows is seeded (unseeded in the reference, D23).
"""
from typing import Dict, List

import numpy as np
import tensorflow as tf

from trainer import features, protocol
from trainer.methods.base import ColdStartMethod
from trainer.methods.generator import (backbone_side_info, first_row_per_item, torch_linear,
                                       write_rows)

TIME = "timestamp"
PAIRS = (("a", "b"), ("b", "c"), ("c", "d"), ("d", "a"))  # (A, B) of epochs 1, 2, 3, 4


def meta_splits(base: protocol.Arrays, seed: int) -> Dict[str, protocol.Arrays]:
    """metaE_a..d of spec 1.6: each item with n rows gives rows [qe, (q+1)e) of its time-ordered
    rows to quarter q (e = n // 4, the remainder is dropped); one seeded permutation is applied
    to all four, so row r of every quarter belongs to the same item."""
    items = base[features.ITEM_ID]
    order = np.lexsort((base[TIME], items)) if TIME in base else np.argsort(items, kind="stable")
    sorted_items = items[order]
    starts = np.flatnonzero(np.r_[True, sorted_items[1:] != sorted_items[:-1]])
    sizes = np.diff(np.r_[starts, len(items)])
    position = np.arange(len(items)) - np.repeat(starts, sizes)
    quarter_len = np.repeat(sizes // 4, sizes)
    perm = None
    out = {}
    for q, name in enumerate("abcd"):
        rows = order[(position >= q * quarter_len) & (position < (q + 1) * quarter_len)]
        if perm is None:
            perm = np.random.default_rng(seed).permutation(len(rows))
        out[name] = {k: v[rows[perm]] for k, v in base.items()}
    return out


def meta_loss(backbone, e_a, batch_a, batch_b, inner_lr: float, alpha: float, training: bool):
    """L = alpha L_a(e_a) + (1 - alpha) L_b(e'_a), e'_a = e_a - inner_lr dL_a/de_a. The inner
    gradient is taken on its own tape inside the caller's, so dL/de_a has the second-order term."""
    label = features.LABEL
    with tf.GradientTape() as inner:
        inner.watch(e_a)
        loss_a = protocol.bce_from_logits(
            batch_a[label], backbone.call_with_item_embedding(e_a, batch_a, training))
    e_a_updated = e_a - inner_lr * inner.gradient(loss_a, e_a)
    loss_b = protocol.bce_from_logits(
        batch_b[label], backbone.call_with_item_embedding(e_a_updated, batch_b, training))
    return alpha * loss_a + (1.0 - alpha) * loss_b


class MetaEmbedding(ColdStartMethod):
    name = "metae"
    defaults = {
        "epochs": 1,         # passes over the metaE pairs (the reference: 1, i.e. (a, b) only)
        "inner_lr": 1e-3,    # step of the inner update of e_a (hard-coded in the reference)
        "alpha": 0.1,        # weight of L_a (L_b gets 1 - alpha)
    }
    bounds = {"epochs": (1, None), "inner_lr": (0.0, None), "alpha": (0.0, 1.0)}
    search_space = {"inner_lr": {"type": "float", "min": 1e-4, "max": 1e-2, "sampling": "log"},
                    "alpha": {"type": "float", "min": 0.05, "max": 0.5},
                    "epochs": {"type": "int", "min": 1, "max": 3}}

    def prepare(self, backbone, context, config) -> None:
        tf.keras.utils.set_random_seed(self.seed)
        o = self.options
        dim = backbone.embed_dim
        sample = {k: v[:2] for k, v in context.pretrain_data.items()}
        size = int(backbone_side_info(backbone, sample).shape[1])
        self.generator = tf.keras.Sequential(
            [torch_linear(dim, size, "metae_0", "relu"), torch_linear(dim, dim, "metae_1")])
        self.generator(backbone_side_info(backbone, sample))
        variables = self.generator.trainable_variables
        optimizer = protocol.make_optimizer(config, variables)
        training = config.frozen_mode == "train"

        def generate(batch):
            return self.generator(tf.stop_gradient(backbone_side_info(backbone, batch)))

        @tf.function
        def step(batch_a, batch_b):
            with tf.GradientTape() as outer:
                loss = meta_loss(backbone, generate(batch_a), batch_a, batch_b, o["inner_lr"],
                                 o["alpha"], training)
            optimizer.apply_gradients(outer.gradient(loss, variables))
            return loss

        quarters = meta_splits(context.pretrain_data, self.seed)
        self.losses: List[float] = []
        for epoch in range(o["epochs"]):
            a, b = PAIRS[epoch % 4]
            pairs = zip(protocol.batches(quarters[a], config.batch_size, None),
                        protocol.batches(quarters[b], config.batch_size, None))
            for batch_a, batch_b in pairs:
                self.losses.append(float(step(batch_a, batch_b)))
                protocol.check_finite(self.losses[-1], "meta-training on base",
                                      len(self.losses) - 1)

        items = first_row_per_item(context.new_item_rows)
        generated = [generate(batch) for batch in protocol.batches(items, config.batch_size, None)]
        write_rows(backbone, items[features.ITEM_ID], tf.concat(generated, axis=0),
                   "overwrite after base")
