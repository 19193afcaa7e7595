"""The Trainer's pretraining with early stopping on validation AUC (diff_msr.md 4)."""
import numpy as np
import tensorflow as tf
from sklearn import metrics as skm

from tests import fixtures
from trainer import features, protocol, task


def pretrained(config, validation=None, summary=None):
    return task.pretrain("deepfm", features.MOVIELENS, fixtures.VOCAB,
                         fixtures.cold_start_splits()["base"], config, seed=4,
                         validation=validation, summary=summary)


class EarlyStoppingTest(tf.test.TestCase):

    def test_stops_after_patience_and_keeps_the_best_epoch(self):
        # Validation rows whose labels are the opposite of the learnable rule (item parity): the
        # better the model fits base, the worse its validation AUC, so an early epoch is best.
        validation = fixtures.cold_start_splits(seed=7)["base"]
        validation[features.LABEL] = 1 - validation[features.LABEL]
        summary = {}
        model = pretrained(protocol.TrainConfig(batch_size=64, pretrain_epochs=8,
                                                early_stopping=2), validation, summary)

        # The same seed trained plainly for 1, 2, ... epochs: the AUC of each on validation.
        plain = [pretrained(protocol.TrainConfig(batch_size=64, pretrain_epochs=epochs))
                 for epochs in range(1, summary["epochs"] + 1)]
        aucs = [skm.roc_auc_score(validation[features.LABEL],
                                  tf.sigmoid(m(validation, training=False)).numpy())
                for m in plain]
        self.assertAllClose(summary["validation_auc"], aucs, atol=1e-6)
        best = int(np.argmax(aucs)) + 1
        self.assertEqual(summary["best_epoch"], best)
        self.assertEqual(summary["epochs"], best + 2)  # stopped after 2 epochs without a better
        self.assertLess(summary["epochs"], 8)
        for ours, theirs in zip(model.get_weights(), plain[best - 1].get_weights()):
            self.assertAllEqual(ours, theirs)

    def test_off_by_default_and_errors(self):
        splits = fixtures.cold_start_splits()
        off = pretrained(protocol.TrainConfig(batch_size=64, pretrain_epochs=2),
                         validation=splits["test"], summary={})
        plain = pretrained(protocol.TrainConfig(batch_size=64, pretrain_epochs=2))
        for ours, theirs in zip(off.get_weights(), plain.get_weights()):
            self.assertAllEqual(ours, theirs)
        config = protocol.TrainConfig(batch_size=64, pretrain_epochs=2, early_stopping=1)
        with self.assertRaisesRegex(ValueError, "early stopping needs validation rows"):
            pretrained(config)
        one_label = dict(splits["test"])
        one_label[features.LABEL] = np.zeros_like(one_label[features.LABEL])
        with self.assertRaisesRegex(ValueError, "its 256 rows hold one label only"):
            pretrained(config, one_label)
        with self.assertRaisesRegex(ValueError, "must be >= 0, not -1"):
            protocol.TrainConfig(early_stopping=-1)
        with self.assertRaisesRegex(ValueError, "weight_decay must be >= 0, not nan"):
            protocol.TrainConfig(weight_decay=float("nan"))
        with self.assertRaisesRegex(ValueError, "learning_rate must be above 0, not 0"):
            protocol.TrainConfig(learning_rate=0)
