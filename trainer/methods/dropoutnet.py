"""DropoutNet as in the CSDM authors' code (spec 4.2): pretraining with item-embedding dropout.

The backbone is pretrained again from the Trainer's initialisation of the same seed, with one
change: with probability `dropout_prob` per batch, every row's item-ID embedding is replaced by
the mean of the whole item table (all rows, never-seen ids included), held constant, so the
network learns to predict from the other fields when the ID embedding is uninformative. In such a
batch the item table gets no gradient and is not updated (PyTorch >= 2, where the unused table
has no .grad); `step_table_when_dropped=True` gives it a zero gradient instead (PyTorch < 2's
zero_grad), so its rows still move with their momentum and weight decay.
Evaluation then follows `base`: new items keep their own pretrained rows.
The per-batch coin is drawn from a generator seeded by the run seed (the reference uses unseeded
Python `random`, D23).
"""
import numpy as np
import tensorflow as tf

from trainer import features, protocol
from trainer.methods.base import ColdStartMethod, copy_weights, fresh_backbone


class DropoutNet(ColdStartMethod):
    name = "dropoutnet"
    defaults = {"dropout_prob": 0.1, "step_table_when_dropped": False}
    bounds = {"dropout_prob": (0.0, 1.0)}
    search_space = {"dropout_prob": {"type": "float", "min": 0.05, "max": 0.5}}

    def prepare(self, backbone, context, config) -> None:
        base = context.pretrain_data
        model = fresh_backbone(backbone, self.seed, base)
        rng = np.random.default_rng(self.seed)
        self.dropped_batches = 0

        def drop(epoch, index) -> bool:
            dropped = bool(rng.random() < self.options["dropout_prob"])
            self.dropped_batches += dropped
            return dropped

        def loss_fn(batch, dropped):
            if not dropped:
                logits = model(batch, training=True)
            else:
                mean = tf.stop_gradient(tf.reduce_mean(model.item_table, axis=0))
                rows = tf.shape(batch[features.ITEM_ID])[0]
                logits = model.call_with_item_embedding(
                    tf.tile(mean[None, :], [rows, 1]), batch, training=True)
                if self.options["step_table_when_dropped"]:
                    logits += 0.0 * tf.reduce_sum(model.item_table[:1])  # a zero gradient
            return protocol.bce_from_logits(batch[features.LABEL], logits)

        self.losses = protocol.train(model, base, model.trainable_variables, config,
                                     config.pretrain_epochs, self.seed, loss_fn=loss_fn,
                                     batch_flag=drop, phase="DropoutNet pretraining on base")
        copy_weights(model, backbone)
