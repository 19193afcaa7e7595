"""Backbone contract: shapes, probabilities, learning, item-ID-only training, save/load."""
from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from tests import fixtures
from trainer import backbones, features, options, protocol, task
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


# The multi-scenario backbones need a domain field: tests/test_diffmsr.py covers them.
ALL = [(name, name) for name in sorted(backbones.BACKBONES)
       if not getattr(backbones.BACKBONES[name], "multi_scenario", False)]


class BackboneTest(tf.test.TestCase, parameterized.TestCase):

    def test_registry_has_every_backbone(self):
        self.assertEqual(sorted(backbones.BACKBONES),
                         ["afm", "afn", "aitm", "dcn", "dcn_md", "deepfm", "deepfm_hist", "din",
                          "fm", "fnn", "fnn_md", "ipnn", "ipnn_md", "mmoe", "opnn", "ple", "star",
                          "wd", "wd_hist", "xdeepfm"])
        self.assertEqual([name for name, _ in ALL],
                         ["afm", "afn", "dcn", "deepfm", "deepfm_hist", "din", "fm", "fnn", "ipnn",
                          "opnn", "wd", "wd_hist", "xdeepfm"])

    @parameterized.named_parameters(*ALL)
    def test_one_logit_per_row_and_predict_is_its_sigmoid(self, name):
        model = build(name)
        data = fixtures.batch(37)
        logits = model(data, training=False).numpy().astype(np.float64)
        self.assertEqual(logits.shape, (37,))
        self.assertAllClose(protocol.predict(model, data), 1 / (1 + np.exp(-logits)), atol=1e-7)

    @parameterized.named_parameters(*ALL)
    def test_init_is_uniform_001(self, name):
        """Every weight is drawn from U(-0.01, 0.01): within the bounds, with the uniform's standard
        deviation 0.01 / sqrt(3) where there are enough draws to tell, else not 0."""
        for v in build(name).weights:
            if "moving" in v.name:
                continue
            values = v.numpy().ravel()
            self.assertLessEqual(np.abs(values).max(), 0.01, v.name)
            if values.size >= 100:
                self.assertAllClose(values.std(), 0.01 / np.sqrt(3), rtol=0.15, msg=v.name)
            else:
                self.assertTrue(np.all(values != 0), v.name)

    @parameterized.named_parameters(*ALL)
    def test_item_embedding_path_equals_lookup(self, name):
        model = build(name)
        data = fixtures.batch(16)
        item_emb = tf.gather(model.item_table, data["item_id"])
        self.assertAllClose(model(data, training=False),
                            model.call_with_item_embedding(item_emb, data, training=False))

    def test_dcn_uses_tfrs_cross_and_ignores_ctn(self):
        model = build("dcn")
        self.assertLen(model.cross, 3)
        data = fixtures.batch(8)
        shifted = dict(data, timestamp=data["timestamp"] + 5.0, count=data["count"] * 0.0)
        self.assertAllClose(model(data), model(shifted))

    def test_fm_interaction_matches_pairwise_sum(self):
        e = tf.random.normal([3, 5, 4], seed=1)
        pairwise = sum(tf.reduce_sum(e[:, i] * e[:, j], axis=1) for i in range(5)
                       for j in range(i + 1, 5))
        self.assertAllClose(backbones.fm_interaction(e), pairwise, atol=1e-5)

    @parameterized.named_parameters(*ALL)
    def test_gradient_steps_reduce_loss_on_fixed_batch(self, name):
        model = build(name)
        data = fixtures.batch(128)
        optimizer = TorchAdam(model.trainable_variables, learning_rate=1e-2)
        labels = data[features.LABEL]

        @tf.function
        def step():
            with tf.GradientTape() as tape:
                loss = protocol.bce_from_logits(labels, model(data, training=True))
            optimizer.apply_gradients(tape.gradient(loss, model.trainable_variables))

        before = float(protocol.bce_from_logits(labels, model(data, training=False)))
        for _ in range(100):  # enough for BatchNorm's running statistics to follow (momentum 0.9)
            step()
        after = float(protocol.bce_from_logits(labels, model(data, training=False)))
        self.assertLess(after, before - 0.05)

    @parameterized.named_parameters(*ALL)
    def test_item_id_only_training_changes_only_the_item_table(self, name):
        model = build(name)
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
        self.assertTrue(all("moving" in name for name in moved), moved)
        if any("moving" in name for name in moving_before):
            self.assertNotEmpty(moved)

    @parameterized.named_parameters(*ALL)
    def test_save_load_round_trip(self, name):
        model = build(name)
        data = fixtures.batch(32)
        protocol.train(model, data, model.trainable_variables, protocol.TrainConfig(batch_size=16),
                       epochs=1, seed=0)
        directory = self.create_tempdir().full_path
        task.save(model, directory)
        restored = task.load(directory, data)
        self.assertIsInstance(restored, backbones.BACKBONES[name])
        self.assertAllClose(protocol.predict(model, data), protocol.predict(restored, data))

    def test_unknown_backbone_is_a_clear_error(self):
        with self.assertRaisesRegex(ValueError, "unknown backbone .nope.; known: afm, afn, aitm, dcn, dcn_md, deepfm"):
            backbones.build("nope", features.MOVIELENS, fixtures.VOCAB)


class ArchitectureOptionsTest(tf.test.TestCase):

    def test_options_round_trip_through_save_and_load(self):
        tf.keras.utils.set_random_seed(4)
        model = backbones.build("deepfm", features.MOVIELENS, fixtures.VOCAB, mlp_dims=[32, 8],
                                dropout=0.0)
        batch = fixtures.batch(16)
        protocol.ensure_built(model, batch)
        self.assertEqual(model.mlp.blocks[0][0].units, 32)
        self.assertEqual(model.get_config()["options"],
                         {"mlp_dims": [32, 8], "dropout": 0.0, "bn_init": "uniform"})
        directory = self.create_tempdir().full_path
        task.save(model, directory)
        loaded = task.load(directory, batch)
        self.assertEqual([b[0].units for b in loaded.mlp.blocks], [32, 8])
        self.assertAllEqual(model(batch, training=False), loaded(batch, training=False))

    def test_options_are_the_constructors_keywords(self):
        self.assertEqual(backbones.options_class("dcn").defaults,
                         {"embed_dim": 16, "num_cross": 3, "projection_dim": 1,
                          "mlp_dims": [16, 16], "dropout": 0.2, "bn_init": "uniform"})

    def test_bn_init_unit_and_its_checks(self):
        tf.keras.utils.set_random_seed(4)
        model = backbones.build("wd", features.MOVIELENS, fixtures.VOCAB, bn_init="unit")
        batch = fixtures.batch(16)
        protocol.ensure_built(model, batch)
        norms = [block[1] for block in model.mlp.blocks]
        self.assertLen(norms, 2)
        for norm in norms:  # scale 1 and shift 0; the rest as before, from U(-0.01, 0.01)
            self.assertAllEqual(norm.gamma, np.ones(16))
            self.assertAllEqual(norm.beta, np.zeros(16))
        dense = model.mlp.blocks[0][0].kernel.numpy()
        self.assertLessEqual(np.abs(dense).max(), 0.01)
        self.assertGreater(np.abs(dense).max(), 0.005)
        directory = self.create_tempdir().full_path
        task.save(model, directory)
        loaded = task.load(directory, batch)
        self.assertEqual(loaded.get_config()["options"]["bn_init"], "unit")
        self.assertAllEqual(model(batch, training=False), loaded(batch, training=False))
        with self.assertRaisesRegex(ValueError, "bn_init must be uniform or unit, not 'ones'"):
            options.validate(backbones.options_class("wd"), {"bn_init": "ones"}, "wd")
