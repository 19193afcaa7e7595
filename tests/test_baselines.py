"""DropoutNet, Meta-Embedding, MWUF and VELF (spec 4.2-4.4; VELF from its paper)."""
from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from tests import fixtures
from tests.test_backbones import build
from trainer import features, methods, protocol, task
from trainer.methods import base as methods_base, generator, metae, mwuf, velf
from trainer.context import ProtocolContext

CONFIG = protocol.TrainConfig(batch_size=64)


def prepared(name):
    """(backbone, method, splits, item table before) after `prepare` on the fixture."""
    model = build("deepfm")
    before = model.item_table.numpy().copy()
    splits = fixtures.cold_start_splits()
    method = methods.build(name, seed=0)
    method.prepare(model, ProtocolContext.in_memory(splits), CONFIG)
    return model, method, splits, before


def new_and_old(splits, table_rows):
    new = np.unique(splits["warm_a"][features.ITEM_ID])
    return new, np.setdiff1d(np.arange(table_rows), new)


class DropoutNetTest(tf.test.TestCase):

    def pretrained(self, dropout_prob, epochs=1):
        model = build("deepfm", seed=5)
        splits = fixtures.cold_start_splits()
        config = protocol.TrainConfig(batch_size=64, pretrain_epochs=epochs)
        method = methods.build("dropoutnet", seed=3, dropout_prob=dropout_prob)
        method.prepare(model, ProtocolContext.in_memory(splits), config)
        return model, method, splits, config

    def test_no_dropout_is_the_trainers_pretraining(self):
        model, _, splits, config = self.pretrained(0.0)
        reference = task.pretrain("deepfm", features.MOVIELENS, fixtures.VOCAB, splits["base"], config, seed=3)
        for ours, theirs in zip(model.get_weights(), reference.get_weights()):
            self.assertAllEqual(ours, theirs)

    def test_dropped_batches_leave_the_item_table_alone(self):
        model, method, splits, _ = self.pretrained(1.0)
        fresh = methods_base.fresh_backbone(model, 3, splits["base"])
        self.assertEqual(method.dropped_batches, 2 * 256 // 64)
        self.assertAllEqual(model.item_table, fresh.item_table)  # no gradient, no decay
        self.assertNotAllClose(model.tables["user_id"].embeddings, fresh.tables["user_id"].embeddings)

    def test_some_batches_dropped_and_loss_decreases(self):
        _, method, _, _ = self.pretrained(0.3, epochs=4)
        # one draw per batch (4 epochs x 8 batches of 64) from the method's seeded generator (D23)
        expected = int(np.sum(np.random.default_rng(3).random(4 * 8) < 0.3))
        self.assertBetween(expected, 1, 4 * 8 - 1)
        self.assertEqual(method.dropped_batches, expected)
        self.assertLess(method.losses[-1], method.losses[0])

    def test_deterministic(self):
        first = self.pretrained(0.5)[0].get_weights()
        second = self.pretrained(0.5)[0].get_weights()
        for a, b in zip(first, second):
            self.assertAllEqual(a, b)


class MetaSplitsTest(tf.test.TestCase):

    def test_quarters_follow_time_and_stay_aligned(self):
        # item 7: 9 rows (e = 2, one row dropped), item 3: 4 rows (e = 1), item 5: 3 rows (e = 0).
        items = np.array([7] * 9 + [3] * 4 + [5] * 3)
        time = np.array([9, 1, 8, 2, 7, 3, 6, 4, 5, 40, 10, 30, 20, 1, 2, 3], np.float32)
        base = {features.ITEM_ID: items, "timestamp": time, "row": np.arange(len(items))}
        quarters = metae.meta_splits(base, seed=0)
        for name in "abcd":
            self.assertLen(quarters[name]["row"], 3)
            self.assertAllEqual(quarters[name][features.ITEM_ID], quarters["a"][features.ITEM_ID])
        by_item = {q: dict() for q in "abcd"}
        for q in "abcd":
            for item, t in zip(quarters[q][features.ITEM_ID], quarters[q]["timestamp"]):
                by_item[q].setdefault(int(item), []).append(float(t))
        self.assertEqual({q: {k: sorted(v) for k, v in d.items()} for q, d in by_item.items()},
                         {"a": {7: [1, 2], 3: [10]}, "b": {7: [3, 4], 3: [20]},
                          "c": {7: [5, 6], 3: [30]}, "d": {7: [7, 8], 3: [40]}})

    def test_permutation_is_seeded(self):
        base = {features.ITEM_ID: np.repeat(np.arange(20), 8), "timestamp": np.arange(160.0)}
        a0 = metae.meta_splits(base, 0)["a"][features.ITEM_ID]
        self.assertAllEqual(a0, metae.meta_splits(base, 0)["a"][features.ITEM_ID])
        self.assertNotAllEqual(a0, metae.meta_splits(base, 1)["a"][features.ITEM_ID])


class MetaEmbeddingTest(tf.test.TestCase):

    def test_meta_loss_value_and_its_second_order_gradient(self):
        """metae.meta_loss on a DeepFM: its value is alpha L_a(e_a) + (1 - alpha) L_b(e'_a), written
        out here with the chain rule, and its gradient in e_a is the loss's derivative (central
        differences), which a first-order inner step (dL_a/de_a held constant) misses."""
        model = build("deepfm")
        base = fixtures.cold_start_splits()["base"]
        batch_a, batch_b = ({k: v[rows] for k, v in base.items()} for rows in (slice(8), slice(8, 16)))
        rng = np.random.default_rng(0)
        e_a = rng.normal(scale=0.1, size=(8, model.embed_dim)).astype(np.float32)
        inner_lr, alpha = 100.0, 0.1  # a large inner step makes the second-order term visible

        def meta_loss(e):
            return metae.meta_loss(model, tf.constant(e), batch_a, batch_b, inner_lr, alpha, False)

        def bce_and_gradient(e, batch):
            """Mean BCE and its gradient in e: row i enters only logit z_i, so
            dL/de_i = (sigmoid(z_i) - y_i) / n * dz_i/de_i."""
            e = tf.constant(e)
            with tf.GradientTape() as tape:
                tape.watch(e)
                logits = model.call_with_item_embedding(e, batch, False)
            dz_de = tape.gradient(logits, e).numpy()
            z, y = logits.numpy().astype(np.float64), batch[features.LABEL]
            p = 1 / (1 + np.exp(-z))
            bce = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
            return bce, ((p - y) / len(y))[:, None] * dz_de

        loss_a, grad_a = bce_and_gradient(e_a, batch_a)
        e_updated = (e_a - inner_lr * grad_a).astype(np.float32)
        loss_b, grad_b = bce_and_gradient(e_updated, batch_b)
        self.assertAllClose(meta_loss(e_a), alpha * loss_a + (1 - alpha) * loss_b, rtol=1e-5)

        with tf.GradientTape() as tape:
            e = tf.constant(e_a)
            tape.watch(e)
            loss = meta_loss(e)
        gradient = tape.gradient(loss, e).numpy()
        first_order = alpha * grad_a + (1 - alpha) * grad_b
        directions = rng.normal(size=(4,) + e_a.shape).astype(np.float32)
        directions /= np.linalg.norm(directions.reshape(4, -1), axis=1)[:, None, None]
        h = 1e-2
        slopes = [(float(meta_loss(e_a + h * d)) - float(meta_loss(e_a - h * d))) / (2 * h)
                  for d in directions]
        self.assertAllClose([np.sum(gradient * d) for d in directions], slopes, atol=2e-5)
        self.assertGreater(max(abs(np.sum(first_order * d) - s) for d, s in zip(directions, slopes)),
                           1e-4)

    def test_new_rows_are_the_generator_output(self):
        model, method, splits, before = prepared("metae")
        after = model.item_table.numpy().copy()
        # s(x) holds the item's own (pre-overwrite) ID embedding
        model.item_table.assign(before)
        batch = generator.first_row_per_item(splits["warm_a"])  # the fixture's rows of an item differ
        expected = method.generator(generator.backbone_side_info(model, batch))
        self.assertAllClose(after[batch[features.ITEM_ID]], expected, atol=1e-6)


class MWUFTest(tf.test.TestCase):

    def test_item_user_means(self):
        user_table = np.array([[1.0, 0.0], [0.0, 2.0], [4.0, 4.0]], np.float32)
        items = np.array([0, 0, 0, 2])
        users = np.array([0, 1, 1, 2])  # user 1 twice on item 0: counted once
        means = mwuf.item_user_means(items, users, user_table, num_items=3)
        self.assertAllClose(means, [[0.5, 1.0], [0.0, 0.0], [4.0, 4.0]])

    def test_rows_of_items_absent_from_base_decay_from_the_mean_row(self):
        _, method, splits, before = prepared("mwuf")
        new, _ = new_and_old(splits, len(before))
        # New items never appear in base: their rows start at the mean row and see only the
        # coupled L2 gradient, so they stay equal and shrink towards 0 without changing sign
        # (by about lr / (|theta| + 1e-2) per step, spec 3.6: to ~0.37 after these 32 steps).
        decayed = method.new_item_emb.numpy()[new]
        mean_row = before.mean(axis=0)
        self.assertAllEqual(decayed, np.tile(decayed[:1], [len(new), 1]))
        self.assertAllEqual(np.sign(decayed[0]), np.sign(mean_row))
        self.assertLess(np.abs(decayed[0] / mean_row).max(), 0.5)


class VELFTest(tf.test.TestCase):

    def test_kl_of_diagonal_gaussians(self):
        mu_q, logvar_q = np.array([[0.3, -1.0]]), np.log(np.array([[0.5, 2.0]]))
        mu_p, logvar_p = np.array([[0.0, 1.0]]), np.log(np.array([[1.0, 0.25]]))
        expected = sum(0.5 * (np.log(vp / vq) + (vq + (mq - mp) ** 2) / vp - 1)
                       for mq, vq, mp, vp in zip(mu_q[0], np.exp(logvar_q[0]), mu_p[0],
                                                 np.exp(logvar_p[0])))
        got = velf.kl_diag_gaussians(*(tf.constant(x, tf.float32)
                                       for x in (mu_q, logvar_q, mu_p, logvar_p)))
        self.assertAllClose(got, [expected])
        self.assertAllClose(velf.kl_diag_gaussians(*(tf.constant(x, tf.float32) for x in (
            mu_q, logvar_q, mu_q, logvar_q))), [0.0])

    def test_new_rows_are_prior_means_and_only_they_are_written(self):
        model = build("deepfm")
        splits = fixtures.cold_start_splits()
        method = methods.build("velf", seed=0)
        method.pretrain(model, splits["base"], CONFIG)
        pretrained = model.item_table.numpy().copy()
        method.write_prior_means(model, splits["warm_a"], CONFIG)
        new, old = new_and_old(splits, len(pretrained))
        self.assertAllEqual(model.item_table.numpy()[old], pretrained[old])
        batch = generator.first_row_per_item(splits["warm_a"])
        self.assertAllClose(tf.gather(model.item_table, batch[features.ITEM_ID]),
                            method.prior(model, batch)[0], atol=1e-6)

    def test_prior_ignores_the_item_id(self):
        model = build("deepfm")
        splits = fixtures.cold_start_splits()
        method = methods.build("velf", seed=0)
        method.pretrain(model, splits["base"], CONFIG)
        batch = {k: v[:8] for k, v in splits["warm_a"].items()}
        first = method.prior(model, batch)[0]
        model.item_table.assign(model.item_table + 1.0)
        self.assertAllClose(first, method.prior(model, batch)[0])


class VELFTrainingTest(tf.test.TestCase):

    def test_loss_decreases_over_epochs(self):
        model = build("deepfm")
        splits = fixtures.cold_start_splits()
        method = methods.build("velf", seed=0)
        method.pretrain(model, splits["base"],
                        protocol.TrainConfig(batch_size=64, pretrain_epochs=4))
        self.assertLess(method.losses[-1], method.losses[0])


class DropoutNetTableStepTest(tf.test.TestCase):

    def test_zero_gradient_variant_moves_the_table_in_dropped_batches(self):
        """With every batch dropped, the table gets no data gradient: under the PyTorch < 2
        variant every row still takes Adam steps on its coupled L2 term, under the default it
        stays at its init."""
        tables = {}
        for step_table in (False, True):
            model = build("deepfm", seed=5)
            method = methods.build("dropoutnet", seed=3, dropout_prob=1.0,
                                   step_table_when_dropped=step_table)
            method.prepare(model, ProtocolContext.in_memory(fixtures.cold_start_splits()), CONFIG)
            tables[step_table] = model.item_table.numpy()
        fresh = methods_base.fresh_backbone(build("deepfm"), 3, fixtures.cold_start_splits()["base"])
        self.assertAllEqual(tables[False], fresh.item_table)
        self.assertTrue(np.all(tables[True] != tables[False]))
