"""MWUF, Meta Warm-Up Framework (Zhu et al. SIGIR 2021), as in the CSDM authors' code (spec 4.4),
with the item/user swap of the released code fixed (D14).

  new_item_emb: a copy of the item table with every row set to the mean pretrained row
  u   = mean pretrained embedding of the users who rated the item in `base` (0 if none; when a
        whole batch has u = 0, e.g. only new items, the rows' own user embeddings are used)
  e   = meta_scale(s(x)) * stopgrad(new_item_emb[item]) + meta_shift(u)
One pass over `base` with the backbone frozen, per batch:
  1. BCE(f(new_item_emb[item], x)) -> Adam step on new_item_emb (dense coupled L2, so rows of
     items absent from `base` decay towards 0, as in the reference);
  2. BCE(f(e, x)) -> Adam step on meta_scale and meta_shift.
Then new items' rows are overwritten with e, computed on shuffled warm_a rows (the last row of an
item wins, as the reference's batch-wise writes); the warm phases are the plain ID fine-tune.
The released code builds its item -> users map with the two ids swapped (a user -> items map,
indexed as if it were per item); here u is built per item, which is what the paper describes.
"""
import numpy as np
import tensorflow as tf

from trainer import features, protocol
from trainer.methods.base import ColdStartMethod
from trainer.methods.generator import backbone_side_info, uniform_001, write_last_per_item

keras = tf.keras


def item_user_means(items: np.ndarray, users: np.ndarray, user_table: np.ndarray,
                    num_items: int) -> np.ndarray:
    """[num_items, d]: the mean user embedding over each item's distinct users, 0 for none."""
    pairs = np.unique(np.stack([items, users], axis=1), axis=0)
    sums = np.zeros((num_items, user_table.shape[1]), np.float64)
    np.add.at(sums, pairs[:, 0], user_table[pairs[:, 1]])
    counts = np.bincount(pairs[:, 0], minlength=num_items)[:, None]
    return (sums / np.maximum(counts, 1)).astype(np.float32)


def _meta_net(dim, name):
    return keras.Sequential([
        keras.layers.Dense(dim, activation="relu", kernel_initializer=uniform_001(),
                           bias_initializer=uniform_001(), name=f"{name}_0"),
        keras.layers.Dense(dim, kernel_initializer=uniform_001(), bias_initializer=uniform_001(),
                           name=f"{name}_1")], name=name)


class MWUF(ColdStartMethod):
    name = "mwuf"

    def warm_embedding(self, backbone, batch):
        items = batch[features.ITEM_ID]
        u = tf.gather(self.avg_users, items)
        u = tf.where(tf.reduce_sum(u) == 0.0,
                     backbone.embed(features.USER_ID, batch[features.USER_ID]), u)
        s = tf.stop_gradient(backbone_side_info(backbone, batch))
        scale = self.meta_scale(s)
        return scale * tf.stop_gradient(tf.gather(self.new_item_emb, items)) + self.meta_shift(u)

    def prepare(self, backbone, context, config) -> None:
        tf.keras.utils.set_random_seed(self.seed)
        base = context.pretrain_data
        dim = backbone.embed_dim
        table = backbone.item_table
        self.new_item_emb = tf.Variable(
            tf.tile(tf.reduce_mean(table, axis=0, keepdims=True), [table.shape[0], 1]),
            name="new_item_emb")
        self.avg_users = tf.constant(item_user_means(
            base[features.ITEM_ID], base[features.USER_ID],
            backbone.tables[features.USER_ID].embeddings.numpy(), table.shape[0]))
        self.meta_scale, self.meta_shift = _meta_net(dim, "meta_scale"), _meta_net(dim, "meta_shift")
        sample = {k: v[:2] for k, v in base.items()}
        self.warm_embedding(backbone, sample)
        meta_variables = self.meta_scale.trainable_variables + self.meta_shift.trainable_variables
        opt_items = protocol.make_optimizer(config, [self.new_item_emb])
        opt_meta = protocol.make_optimizer(config, meta_variables)
        training = config.frozen_mode == "train"
        labels = features.LABEL

        @tf.function
        def step(batch):
            with tf.GradientTape() as tape:
                cold = backbone.call_with_item_embedding(
                    tf.gather(self.new_item_emb, batch[features.ITEM_ID]), batch, training)
                cold_loss = protocol.bce_from_logits(batch[labels], cold)
            opt_items.apply_gradients(tape.gradient(cold_loss, [self.new_item_emb]))
            with tf.GradientTape() as tape:
                warm = backbone.call_with_item_embedding(
                    self.warm_embedding(backbone, batch), batch, training)
                warm_loss = protocol.bce_from_logits(batch[labels], warm)
            opt_meta.apply_gradients(tape.gradient(warm_loss, meta_variables))
            return cold_loss, warm_loss

        self.losses = []
        for batch in protocol.batches(base, config.batch_size, self.seed):
            self.losses.append(tuple(float(x) for x in step(batch)))
            protocol.check_finite(self.losses[-1], "meta warm-up on base", len(self.losses) - 1)

        ids, vectors = [], []
        for batch in protocol.batches(context.new_item_rows, config.batch_size, self.seed + 1):
            ids.append(batch[features.ITEM_ID].numpy())
            vectors.append(self.warm_embedding(backbone, batch))
        write_last_per_item(backbone, np.concatenate(ids), tf.concat(vectors, axis=0),
                            "overwrite after base")
