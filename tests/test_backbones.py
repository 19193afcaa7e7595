"""Backbone contract: shapes, probabilities, learning, item-ID-only training, save/load."""
import numpy as np
import tensorflow as tf

from tests import fixtures
from trainer import backbones, features, protocol, task
from trainer.optim import TorchAdam


def build(name="deepfm", seed=0):
    tf.keras.utils.set_random_seed(seed)
    model = backbones.build(name, features.MOVIELENS, fixtures.VOCAB)
    protocol.ensure_built(model, fixtures.batch(4))
    return model


def snapshot(variables):
    """{name: value}; names are unique (checked) so nothing is silently merged."""
    values = {v.name: v.numpy().copy() for v in variables}
    assert len(values) == len(variables), [v.name for v in variables]
    return values


class DeepFMTest(tf.test.TestCase):

    def test_output_shape_and_probability_range(self):
        model = build()
        data = fixtures.batch(37)
        logits = model(data, training=False)
        self.assertEqual(logits.shape, (37,))
        probs = protocol.predict(model, data)
        self.assertEqual(probs.shape, (37,))
        self.assertTrue(np.all((probs > 0) & (probs < 1)))

    def test_init_is_uniform_001(self):
        for v in build().weights:
            if "moving" in v.name:
                continue
            self.assertLessEqual(float(tf.reduce_max(tf.abs(v))), 0.01, v.name)

    def test_item_embedding_path_equals_lookup(self):
        model = build()
        data = fixtures.batch(16)
        item_emb = tf.gather(model.item_table, data["item_id"])
        self.assertAllClose(model(data, training=False),
                            model.call_with_item_embedding(item_emb, data, training=False))

    def test_fm_interaction_matches_pairwise_sum(self):
        e = tf.random.normal([3, 5, 4], seed=1)
        pairwise = sum(tf.reduce_sum(e[:, i] * e[:, j], axis=1) for i in range(5)
                       for j in range(i + 1, 5))
        self.assertAllClose(backbones.fm_interaction(e), pairwise, atol=1e-5)

    def test_gradient_steps_reduce_loss_on_fixed_batch(self):
        model = build()
        data = fixtures.batch(128)
        optimizer = TorchAdam(model.trainable_variables, learning_rate=1e-2)
        labels = data[features.LABEL]
        before = float(protocol.bce_from_logits(labels, model(data, training=False)))
        for _ in range(20):
            with tf.GradientTape() as tape:
                loss = protocol.bce_from_logits(labels, model(data, training=True))
            optimizer.apply_gradients(tape.gradient(loss, model.trainable_variables))
        after = float(protocol.bce_from_logits(labels, model(data, training=False)))
        self.assertLess(after, before - 0.05)

    def test_item_id_only_training_changes_only_the_item_table(self):
        model = build()
        data = fixtures.batch(256)
        others = [v for v in model.trainable_variables if v is not model.item_table]
        trainable_before = snapshot(others)
        moving_before = snapshot(model.non_trainable_variables)
        table_before = model.item_table.numpy().copy()
        protocol.train(model, data, model.item_id_variables(), protocol.TrainConfig(batch_size=64),
                       epochs=1, seed=0)
        self.assertGreater(np.abs(model.item_table.numpy() - table_before).max(), 1e-4)
        after = snapshot(others)
        for name, value in trainable_before.items():
            self.assertAllEqual(value, after[name], msg=name)
        # BatchNorm runs in training mode even when frozen, so its running statistics move (D12).
        moving_after = snapshot(model.non_trainable_variables)
        moved = [name for name, value in moving_before.items()
                 if not np.array_equal(value, moving_after[name])]
        self.assertTrue(moved and all("moving" in name for name in moved), moved)

    def test_save_load_round_trip(self):
        model = build()
        data = fixtures.batch(32)
        protocol.train(model, data, model.trainable_variables, protocol.TrainConfig(batch_size=16),
                       epochs=1, seed=0)
        directory = self.create_tempdir().full_path
        task.save(model, directory)
        restored = task.load(directory, data)
        self.assertIsInstance(restored, backbones.DeepFM)
        self.assertAllClose(protocol.predict(model, data), protocol.predict(restored, data))

    def test_unknown_backbone_is_a_clear_error(self):
        with self.assertRaisesRegex(ValueError, "unknown backbone 'nope'; known: deepfm"):
            backbones.build("nope", features.MOVIELENS, fixtures.VOCAB)
