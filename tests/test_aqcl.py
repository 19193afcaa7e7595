"""AQCL (issue 14): the losses against direct formulas in numpy, Sinkhorn, the codebook's gradient
paths, the DIN backbone on hand-built histories, and the regularised methods end to end."""
import json
import os

import numpy as np
import tensorflow as tf

from trainer import aqcl, backbones, din, features, protocol, task
from trainer.context import ProtocolContext
from trainer.methods import aqcl as aqcl_methods
from trainer.methods import build as build_method
from trainer.methods.base import fresh_backbone
from trainer.protocols import PROTOCOLS

L = 5
CONFIG = features.FeatureConfig(
    fields=(features.Field("user_id", "spr"), features.Field("item_id", "spr"),
            features.Field("category", "spr"), features.Field("hist_item_id", "hist", L, vocab="item_id"),
            features.Field("hist_category", "hist", L, vocab="category"), features.Field("hist_len", "raw"),
            features.Field("count", "ctn")),
    item_side=("item_id", "category", "count"))
VOCAB = {"user_id": 12, "item_id": 20, "category": 4}


def category_of(item_index):
    return item_index % 4


def history_batch(n=64, seed=0):
    """Users with 0..L earlier items (left-aligned, index + 1, 0 = padding); hist_len counts them
    (some beyond L); the label is the candidate item's parity."""
    rng = np.random.default_rng(seed)
    items = rng.integers(0, VOCAB["item_id"], size=n)
    lengths = rng.integers(0, L + 1, size=n)
    history = rng.integers(0, VOCAB["item_id"], size=(n, L)) + 1
    history[np.arange(L)[None, :] >= lengths[:, None]] = 0
    return {
        "user_id": rng.integers(0, VOCAB["user_id"], size=n), "item_id": items,
        "category": category_of(items),
        "hist_item_id": history, "hist_category": np.where(history > 0, category_of(history - 1) + 1, 0),
        "hist_len": (lengths + (lengths == L) * rng.integers(0, 30, size=n)).astype(np.float32),
        "count": rng.random(n, dtype=np.float32), features.LABEL: items % 2}


def build(name="din", seed=0, **options):
    tf.keras.utils.set_random_seed(seed)
    model = backbones.build(name, CONFIG, VOCAB, **options)
    protocol.ensure_built(model, history_batch(4))
    return model


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def direct_aqcl(z, z_plus, codebook, alphas, tau1, tau2, k):
    """Eq. 3 as printed: -log d1^(1-a) (sum_{Q+} d2)^a / (sum d1 + sum_Q d2), float64."""
    z, z_plus, codebook = unit(z), unit(z_plus), unit(codebook)
    d1 = np.exp(z @ z_plus.T / tau1)  # [B, B]; column j is z+_j
    d2 = np.exp(z @ codebook.T / tau2)  # [B, T]
    losses = []
    for j in range(len(z)):
        top = np.argsort(-(z[j] @ codebook.T))[:k]
        numerator = d1[j, j] ** (1 - alphas[j]) * d2[j, top].sum() ** alphas[j]
        losses.append(-np.log(numerator / (d1[j].sum() + d2[j].sum())))
    return np.mean(losses)


def tf32(x):
    return tf.constant(x, tf.float32)


class LossTest(tf.test.TestCase):

    def setUp(self):
        super().setUp()
        rng = np.random.default_rng(3)
        self.z, self.z_plus = rng.standard_normal((6, 8)), rng.standard_normal((6, 8))
        self.codebook = rng.standard_normal((10, 8)) * 3.0  # any norm: similarities are cosine
        self.alphas = np.array([0.0, 0.2, 0.5, 0.7, 0.9, 1.0])

    def test_stable_aqcl_equals_direct_formula(self):
        for k in (1, 3, 10):
            expected = direct_aqcl(self.z, self.z_plus, self.codebook, self.alphas, 0.1, 0.2, k)
            got = aqcl.aqcl_loss(tf32(self.z), tf32(self.z_plus), tf32(self.codebook),
                                 tf32(self.alphas), tau1=0.1, tau2=0.2, top_k=k)
            self.assertAllClose(got, expected, rtol=1e-5, msg=f"k={k}")

    def test_stable_form_is_finite_where_the_direct_one_overflows(self):
        # tau 0.001: exp(1000) overflows float64 in the direct formula.
        got = aqcl.aqcl_loss(tf32(self.z), tf32(self.z), tf32(self.codebook), tf32(self.alphas),
                             tau1=1e-3, tau2=1e-3, top_k=3)
        self.assertTrue(np.isfinite(got.numpy()))

    def test_icl_equals_direct_formula(self):
        z, z_plus = unit(self.z), unit(self.z_plus)
        d = np.exp(z @ z_plus.T / 0.1)
        expected = np.mean(-np.log(np.diag(d) / d.sum(axis=1)))
        self.assertAllClose(aqcl.icl_loss(tf32(self.z), tf32(self.z_plus), 0.1), expected,
                            rtol=1e-5)
        # SimCLR's 2B - 2 negatives: the other rows' clean views join the denominator.
        clean = np.exp(z @ z.T / 0.1)
        np.fill_diagonal(clean, 0.0)
        expected = np.mean(-np.log(np.diag(d) / (d.sum(axis=1) + clean.sum(axis=1))))
        self.assertAllClose(aqcl.icl_loss(tf32(self.z), tf32(self.z_plus), 0.1, simclr=True),
                            expected, rtol=1e-5)

    def test_aqcl_with_alpha_zero_and_empty_codebook_is_icl(self):
        empty = tf.zeros([0, 8])
        for simclr in (False, True):
            self.assertAllClose(
                aqcl.aqcl_loss(tf32(self.z), tf32(self.z_plus), empty, 0.0, 0.1, simclr=simclr),
                aqcl.icl_loss(tf32(self.z), tf32(self.z_plus), 0.1, simclr=simclr), rtol=1e-6)

    def test_alpha_is_one_at_zero_and_decreases(self):
        lengths = np.arange(0, 200, dtype=np.float32)
        for w1, w2 in ((0.01, 0.1), (1.0, 1.0), (3.0, 2.0), (10.0, 10.0)):
            values = aqcl.alpha(lengths, 7.5, w1, w2).numpy()
            self.assertEqual(values[0], 1.0)
            self.assertTrue(np.all(np.diff(values) <= 0), (w1, w2))
            self.assertLess(values[-1], values[1])
            self.assertAllClose(values[[1, 15, 60]],
                                np.exp(-w1 * (np.array([1, 15, 60]) / 7.5) ** w2), rtol=1e-5)
        # L = mean L gives exp(-w1) for every w2.
        self.assertAllClose(aqcl.alpha([7.5, 7.5], 7.5, 0.7, [0.3, 4.0]), [np.exp(-0.7)] * 2)

    def test_sinkhorn_equipartition(self):
        rng = np.random.default_rng(0)
        scores = aqcl.cosine(tf32(rng.standard_normal((128, 64))),
                             tf32(rng.standard_normal((256, 64))))  # S [T, B]
        assignment = aqcl.sinkhorn(scores).numpy()  # defaults: eps 0.05, 20 iterations
        self.assertTrue(np.all(assignment >= 0))
        self.assertAllClose(assignment.sum(axis=1) * 128, np.ones(128), atol=1e-3)
        self.assertAllClose(assignment.sum(axis=0) * 256, np.ones(256), atol=1e-3)
        # More iterations converge to the exact equipartition.
        assignment = aqcl.sinkhorn(scores, epsilon=0.05, iterations=50).numpy()
        self.assertAllClose(assignment.sum(axis=1) * 128, np.ones(128), atol=1e-5)
        self.assertAllClose(assignment.sum(axis=0) * 256, np.ones(256), atol=1e-5)
        # SwAV's 3 iterations leave the rows off by more than 1e-2 (why the default is 20).
        three = aqcl.sinkhorn(scores, epsilon=0.05, iterations=3).numpy()
        self.assertGreater(np.abs(three.sum(axis=1) * 128 - 1).max(), 1e-2)

    def test_negative_sampling_loss_equals_direct_formula(self):
        rng = np.random.default_rng(1)
        target, context = rng.standard_normal((3, 4)), rng.standard_normal((3, 5, 4))
        negatives = rng.standard_normal((3, 2, 4))
        mask = np.array([[1, 1, 0, 0, 0], [0, 0, 0, 0, 0], [1, 0, 1, 0, 1]], bool)

        def log_sigmoid(x):
            return -np.log1p(np.exp(-x))

        pairs = [-(log_sigmoid(target[b] @ context[b, t])
                   + sum(log_sigmoid(-target[b] @ n) for n in negatives[b]))
                 for b in range(3) for t in range(5) if mask[b, t]]
        self.assertAllClose(aqcl.negative_sampling_loss(tf32(target), tf32(context), mask,
                                                        tf32(negatives)), np.mean(pairs), rtol=1e-5)

    def test_last_and_prefix(self):
        newest, prefix = aqcl.last_and_prefix(tf.constant([[4, 2, 7, 0], [3, 0, 0, 0],
                                                           [0, 0, 0, 0]]))
        self.assertAllEqual(newest, [[0, 0, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]])
        self.assertAllEqual(prefix, [[1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]])


class CodebookGradientTest(tf.test.TestCase):

    def test_codebook_loss_changes_only_the_codebook_and_ctr_loss_never_touches_it(self):
        model = build("din")
        data = history_batch(32)
        projector = aqcl.Projector(16, 8)
        codebook = tf.Variable(np.random.default_rng(0).standard_normal((6, 8)), dtype=tf.float32)
        with tf.GradientTape(persistent=True) as tape:
            logits, h = model.logit_and_representation(data, training=True)
            z = projector(h)
            augmented = model.augment(data, [0, 1])
            z_plus = projector(model.representation(augmented, training=True))
            ctr = protocol.bce_from_logits(data[features.LABEL], logits)
            book = aqcl.codebook_loss(z, codebook)
            contrastive = aqcl.aqcl_loss(z, z_plus, codebook, aqcl.alpha(data["hist_len"], 2.0,
                                                                         1.0, 1.0))
        network = model.trainable_variables + projector.trainable_variables
        self.assertTrue(all(g is None for g in tape.gradient(book, network)))
        self.assertGreater(np.abs(tape.gradient(book, codebook).numpy()).max(), 0.0)
        self.assertIsNone(tape.gradient(ctr, codebook))
        self.assertIsNone(tape.gradient(contrastive, codebook))  # stop-gradient by default
        self.assertTrue(any(g is not None and np.abs(tf.convert_to_tensor(g).numpy()).max() > 0
                            for g in tape.gradient(contrastive, network)))
        # One optimiser step on the codebook loss over every variable moves only the codebook.
        before = [v.numpy().copy() for v in network]
        book_before = codebook.numpy().copy()
        optimizer = tf.keras.optimizers.SGD(1.0)
        with tf.GradientTape() as tape:
            book = aqcl.codebook_loss(projector(model.representation(data)), codebook)
        grads = tape.gradient(book, network + [codebook])
        optimizer.apply_gradients([(g, v) for g, v in zip(grads, network + [codebook])
                                   if g is not None])
        for old, v in zip(before, network):
            self.assertAllEqual(old, v.numpy(), msg=v.name)
        self.assertGreater(np.abs(codebook.numpy() - book_before).max(), 0.0)


class HistoryBackboneTest(tf.test.TestCase):

    def test_the_pipelines_history_features_reach_every_history_backbone(self):
        # The feature config the pipeline builds from a data set with `history:` (not CONFIG):
        # each history backbone must read hist_item_id / hist_category, and its representation h
        # must change when only the history does (h: the logit's change can round away at init).
        config = features.from_dataset(
            {"fields": [{"name": "user_id", "type": "categorical"},
                        {"name": "item_id", "type": "categorical"},
                        {"name": "category", "type": "categorical"},
                        {"name": "timestamp", "type": "timestamp"}],
             "side_info": ["item_id", "category"],
             "history": {"length": L, "fields": ["category"]}}, row_features=())
        data = dict(history_batch(32), timestamp=np.linspace(0, 1, 32, dtype=np.float32))
        other = dict(data, hist_item_id=data["hist_item_id"][::-1],
                     hist_category=data["hist_category"][::-1])
        for name in ("din", "deepfm_hist", "wd_hist"):
            tf.keras.utils.set_random_seed(0)
            model = backbones.build(name, config, VOCAB)
            self.assertEqual([f.name for f in model.history_fields],
                             ["hist_item_id", "hist_category"], msg=name)
            changed = np.abs(model.logit_and_representation(data)[1].numpy()
                             - model.logit_and_representation(other)[1].numpy())
            self.assertGreater(float(changed.max()), 0.0, msg=name)

    def test_din_attention_on_hand_built_history(self):
        model = build("din", activation="prelu")
        data = history_batch(4)
        data["hist_item_id"] = np.array([[3, 9, 0, 0, 0], [5, 5, 5, 5, 5], [0, 0, 0, 0, 0],
                                         [20, 1, 7, 0, 0]])
        data["hist_category"] = np.where(data["hist_item_id"] > 0,
                                         category_of(data["hist_item_id"] - 1) + 1, 0)
        item_emb = tf.gather(model.item_table, data["item_id"])
        fields, _ = model.field_embeddings(item_emb, data)
        history, mask = model.history_embedding(data)
        weights = model.attention_weights(fields, history, mask).numpy()
        self.assertAllEqual(weights[data["hist_item_id"] == 0], np.zeros(10))
        # The same unit in numpy from the layer's weights: [h, c, h - c, h * c] -> PReLU MLP.
        items = model.item_table.numpy()
        categories = model.tables["category"].embeddings.numpy()
        for b in range(4):
            query = np.concatenate([items[data["item_id"][b]], categories[data["category"][b]]])
            for t in range(L):
                i = data["hist_item_id"][b, t]
                if i == 0:
                    continue
                h = np.concatenate([items[i - 1], categories[category_of(i - 1)]])
                x = np.concatenate([h, query, h - query, h * query])
                for dense, act, _ in model.attention.blocks:
                    x = x @ dense.kernel.numpy() + dense.bias.numpy()
                    x = np.where(x > 0, x, act.alpha.numpy() * x)
                out = x @ model.attention_out.kernel.numpy() + model.attention_out.bias.numpy()
                self.assertAllClose(weights[b, t], out[0], rtol=1e-4, atol=1e-7)

    def test_history_shares_the_item_table(self):
        model = build("din")
        data = history_batch(16)
        data["item_id"] = np.zeros(16, np.int64)  # the candidate is item 0 everywhere
        data["hist_item_id"][:, :2] = [[4, 0]]  # item index 3 appears only in the history
        data["hist_item_id"][:, 2:] = 0
        with tf.GradientTape() as tape:
            loss = protocol.bce_from_logits(data[features.LABEL], model(data, training=True))
        grad = tf.convert_to_tensor(tape.gradient(loss, model.item_table)).numpy()
        touched = np.flatnonzero(np.abs(grad).sum(axis=1))
        self.assertAllEqual(touched, [0, 3])

    def test_pooled_history_is_one_more_field_per_history_field(self):
        for name, parent in (("deepfm_hist", backbones.DeepFM), ("wd_hist", backbones.WideDeep)):
            model = build(name)
            data = history_batch(8)
            item_emb = tf.gather(model.item_table, data["item_id"])
            fields, ctn = model.field_embeddings(item_emb, data)
            ids = data["hist_item_id"]
            pooled = []
            for table, index in ((model.item_table.numpy(), ids - 1),
                                 (model.tables["category"].embeddings.numpy(),
                                  data["hist_category"] - 1)):
                rows = np.where((ids > 0)[..., None], table[np.maximum(index, 0)], 0.0)
                pooled.append(rows.sum(axis=1) / np.maximum((ids > 0).sum(axis=1), 1)[:, None])
            extended = tf.concat([fields, tf32(np.stack(pooled, axis=1))], axis=1)
            self.assertAllClose(model(data), parent.logit(model, extended, ctn, False), atol=1e-6,
                                msg=name)

    def test_history_and_its_length_are_not_fields_of_the_plain_backbones(self):
        model = build("deepfm")
        self.assertEqual([f.name for f in model.id_fields], ["user_id", "item_id", "category"])
        self.assertEqual([f.name for f in model.ctn_fields], ["count"])
        data = history_batch(8)
        emptied = dict(data, hist_item_id=np.zeros_like(data["hist_item_id"]), hist_len=data["hist_len"] * 0)
        self.assertAllEqual(model(data), model(emptied))

    def test_augment_masks_history_and_drops_embeddings_reproducibly(self):
        model = build("din")
        data = history_batch(200)
        augmented = model.augment(data, [5, 6], mask_rate=0.3, dropout_rate=0.2)
        before, after = data["hist_item_id"], augmented["hist_item_id"].numpy()
        self.assertTrue(np.all((after == before) | (after == 0)))
        masked = (before > 0) & (after == 0)
        self.assertAllClose(masked.sum() / (before > 0).sum(), 0.3, atol=0.05)
        self.assertAllEqual(augmented["hist_category"].numpy() == 0, after == 0)
        again = model.augment(data, [5, 6], mask_rate=0.3, dropout_rate=0.2)
        self.assertAllEqual(model.representation(augmented), model.representation(again))
        other = model.augment(data, [5, 7], mask_rate=0.3, dropout_rate=0.2)
        self.assertNotAllClose(model.representation(augmented), model.representation(other))
        # Embedding dropout alone (no history mask) changes h; rate 0 leaves the input as it is.
        only_dropout = model.augment(data, [5, 6], mask_rate=0.0, dropout_rate=0.2)
        self.assertAllEqual(only_dropout["hist_item_id"], before)
        self.assertNotAllClose(model.representation(only_dropout), model.representation(data))
        self.assertAllEqual(model.representation(model.augment(data, [5, 6], 0.0, 0.0)),
                            model.representation(data))

    def test_drop_user_zeroes_the_user_and_empties_the_history(self):
        model = build("din")
        data = history_batch(6)
        keep = np.array([1, 0, 1, 0, 1, 1], np.float32)
        dropped = model.drop_user(data, keep)
        self.assertAllEqual(dropped["hist_item_id"].numpy()[keep == 0], np.zeros((2, L)))
        item_emb = tf.gather(model.item_table, data["item_id"])
        fields, _ = model.field_embeddings(item_emb, dropped)
        self.assertAllEqual(fields[:, 1].numpy()[keep == 0], np.zeros((2, 16)))
        self.assertAllEqual(fields.numpy()[keep == 1], model.field_embeddings(item_emb, data)[0].numpy()[keep == 1])

    def test_din_get_config_round_trip(self):
        model = build("din", mlp_dims=(24, 8), attention_dims=(6,), activation="prelu",
                      dropout=0.1)
        data = history_batch(64)
        protocol.train(model, data, model.trainable_variables, protocol.TrainConfig(batch_size=16),
                       epochs=1, seed=0)
        directory = self.create_tempdir().full_path
        task.save(model, directory)
        restored = task.load(directory, data)
        self.assertIsInstance(restored, din.DIN)
        self.assertEqual(restored.get_config(), model.get_config())
        self.assertLen(restored.mlp.blocks, 2)
        self.assertAllClose(protocol.predict(model, data), protocol.predict(restored, data))


def context_of(splits):
    return ProtocolContext(PROTOCOLS["leave_last_out"](), lambda name: splits[name])


class MethodTest(tf.test.TestCase):

    def setUp(self):
        super().setUp()
        self.splits = {"train": history_batch(256, seed=1), "validation": history_batch(64, seed=2),
                       "test": history_batch(128, seed=3)}
        self.config = protocol.TrainConfig(batch_size=128, pretrain_epochs=2)

    def base(self, name="din"):
        return build(name)

    def test_every_method_trains_a_fresh_backbone_and_leaves_the_given_one(self):
        for backbone in ("din", "deepfm_hist", "wd_hist"):
            base = self.base(backbone)
            before = [w.copy() for w in base.get_weights()]
            for name in ("icl", "aqcl", "deepmcp", "dmr", "dropoutnet_reg"):
                method = build_method(name, seed=0)
                model = method.prepare(base, context_of(self.splits), self.config)
                self.assertIsInstance(model, type(base))
                self.assertLen(method.losses, 2)
                self.assertTrue(np.all(np.isfinite(method.losses)), (backbone, name))
                self.assertNotAllClose(protocol.predict(model, self.splits["test"]),
                                       protocol.predict(base, self.splits["test"]))
            for old, new in zip(before, base.get_weights()):
                self.assertAllEqual(old, new)

    def test_aqcl_with_alpha_zero_and_no_codebook_trains_as_icl(self):
        base = self.base()
        icl = build_method("icl", seed=4).prepare(base, context_of(self.splits), self.config)
        aqcl_model = build_method("aqcl", seed=4, codewords=0, alpha="constant", alpha_value=0.0
                                  ).prepare(base, context_of(self.splits), self.config)
        self.assertAllClose(protocol.predict(icl, self.splits["test"]),
                            protocol.predict(aqcl_model, self.splits["test"]), atol=1e-6)

    def test_the_codebook_moves_and_the_mean_history_is_per_user(self):
        method = build_method("aqcl", seed=0)
        method.prepare(self.base(), context_of(self.splits), self.config)
        train = self.splits["train"]
        users = np.unique(train["user_id"])
        expected = np.mean([(train[features.LABEL][train["user_id"] == u] > 0).sum() for u in users])
        self.assertAllClose(method.mean_length, expected)
        init = np.random.default_rng(0).standard_normal((128, 64))
        self.assertGreater(np.abs(method.codebook.numpy() - unit(init)).max(), 1e-4)

    def test_methods_train_the_epochs_the_trainer_kept(self):
        # train_config.json's record of a Trainer that ran 4 of at most 10 epochs and kept the 2nd
        stopped = {"0": {"patience": 2, "validation_auc": [0.61, 0.66, 0.65, 0.64], "epochs": 4,
                         "best_epoch": 2}}
        config = protocol.TrainConfig(batch_size=128, pretrain_epochs=10, early_stopping=2)
        seed_0 = task.seed_config(config, stopped, 0)
        self.assertEqual(seed_0, protocol.TrainConfig(batch_size=128, pretrain_epochs=2,
                                                      early_stopping=2))
        self.assertEqual(task.seed_config(config, stopped, 1), config)  # no record for seed 1
        self.assertEqual(task.seed_config(config, None, 0), config)  # no early stopping
        for name in ("aqcl", "dropoutnet_reg"):
            method = build_method(name, seed=0)
            method.prepare(self.base(), context_of(self.splits), seed_0)
            self.assertLen(method.losses, 2)

    def test_fresh_backbone_is_the_trainers_initialisation(self):
        base = self.base()
        ours = aqcl_methods.fresh_history_backbone(base, 3, self.splits["train"])
        theirs = fresh_backbone(base, 3, self.splits["train"])
        for a, b in zip(ours.get_weights(), theirs.get_weights()):
            self.assertAllEqual(a, b)

    def test_clear_errors(self):
        with self.assertRaisesRegex(ValueError, "backbone deepfm has no representation h"):
            build_method("icl").prepare(self.base("deepfm"), context_of(self.splits), self.config)
        without_length = {k: v for k, v in self.splits.items()}
        without_length["train"] = {k: v for k, v in self.splits["train"].items() if k != "hist_len"}
        with self.assertRaisesRegex(ValueError, "aqcl: alpha=adaptive needs the history length"):
            build_method("aqcl").prepare(self.base(), context_of(without_length), self.config)
        with self.assertRaisesRegex(ValueError, "aqcl: w1 must be at least"):
            build_method("aqcl", w1=0.0)
        with self.assertRaisesRegex(ValueError, "alpha must be adaptive or constant"):
            build_method("aqcl", alpha="fixed")
        self.assertEqual(aqcl_methods.AQCL.protocols, ("leave_last_out",))


class AlphaCurveReportTest(tf.test.TestCase):
    """The alpha curve of the report (issue 14 item 5): the method's diagnostics, report.json's
    samples of R against numpy, the markdown and the plot."""

    def test_diagnostics_carry_the_mean_history_the_method_used(self):
        train = history_batch(8, seed=5)
        # users 0, 1, 2 with 2, 0 and 3 positive rows: mean L = 5 / 3
        train["user_id"] = np.array([0, 0, 0, 1, 2, 2, 2, 2])
        train[features.LABEL] = np.array([1, 0, 1, 0, 1, 1, 1, 0])
        splits = {"train": train, "validation": history_batch(8, seed=6),
                  "test": history_batch(8, seed=7)}
        config = protocol.TrainConfig(batch_size=8, pretrain_epochs=1)
        method = build_method("aqcl", seed=0, w1=0.7, w2=2.0)
        self.assertEqual(method.report_diagnostics(), {})  # before it ran
        method.prepare(build(), context_of(splits), config)
        found = method.report_diagnostics()["alpha_curve"]
        self.assertEqual((found["w1"], found["w2"]), (0.7, 2.0))
        self.assertAllClose(found["mean_L"], 5 / 3)
        given = build_method("aqcl", seed=0, mean_history=2.5)
        given.prepare(build(), context_of(splits), config)
        self.assertEqual(given.report_diagnostics()["alpha_curve"]["mean_L"], 2.5)
        constant = build_method("aqcl", seed=0, alpha="constant")
        constant.prepare(build(), context_of(splits), config)
        self.assertEqual(constant.report_diagnostics(), {})
        self.assertEqual(build_method("icl").report_diagnostics(), {})

    def test_report_samples_the_curve_and_writes_the_plot(self):
        from components.report_component import write_report  # pylint: disable=import-outside-toplevel
        from pipeline import report as report_lib  # pylint: disable=import-outside-toplevel
        slices = {"overall": {"auc": 0.7, "f1": 0.3, "rows": 10}}
        curve = {"w1": 0.7, "w2": 2.0, "mean_L": 2.5}
        tuned = {"w1": 1.5, "w2": 0.5, "mean_L": 2.5}
        phase_metrics = {
            "backbone": "din", "seeds": [0, 1], "slices": ["overall"],
            "protocol": {"name": "leave_last_out", "params": {"unit": "event"}},
            "methods": {name: {"0": slices, "1": slices} for name in ("base", "aqcl", "aqcl/tuned")},
            "diagnostics": {"aqcl": {"0": {"alpha_curve": curve}, "1": {"alpha_curve": curve}},
                            "aqcl/tuned": {"0": {"alpha_curve": tuned}}}}
        stats = {"train": 30, "cut_low_value": 5, "cut_high_value": 12, "unit": "event"}
        report = report_lib.build_report("d", stats, phase_metrics, {})
        x = np.arange(81) / 20  # 0, 0.05, ..., 4
        entry = report["alpha_curve"]["aqcl"]
        self.assertAllClose(entry["x"], x)
        for seed in ("0", "1"):
            self.assertAllClose(entry["alpha"][seed], np.exp(-0.7 * x ** 2), rtol=1e-6)
            self.assertEqual(entry["alpha"][seed][0], 1.0)  # alpha(0) = 1
        self.assertEqual(entry["seeds"], {"0": curve, "1": curve})
        self.assertEqual(entry["group_edges"],
                         [{"L": 5, "between": ["non_active", "slightly_active"]},
                          {"L": 12, "between": ["slightly_active", "highly_active"]}])
        other = report["alpha_curve"]["aqcl/tuned"]
        self.assertEqual(list(other["alpha"]), ["0"])
        self.assertAllClose(other["alpha"]["0"], np.exp(-1.5 * np.sqrt(x)), rtol=1e-6)

        out = self.create_tempdir().full_path
        write_report(out, report)
        for name in ("alpha_aqcl.png", "alpha_aqcl_tuned.png"):
            with open(os.path.join(out, name), "rb") as f:
                self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
        with open(os.path.join(out, "report.json")) as f:
            self.assertEqual(json.load(f)["alpha_curve"], report["alpha_curve"])
        with open(os.path.join(out, "report.md")) as f:
            text = f.read()
        self.assertIn("aqcl: `alpha_aqcl.png`; seeds 0, 1: w1 0.7, w2 2, mean L 2.500.", text)
        self.assertIn("aqcl/tuned: `alpha_aqcl_tuned.png`; seed 0: w1 1.5, w2 0.5", text)
        self.assertIn("L = 5 (non_active | slightly_active); L = 12 (slightly_active | "
                      "highly_active)", text)
        del phase_metrics["diagnostics"]
        plain = report_lib.build_report("d", stats, phase_metrics, {})
        self.assertNotIn("alpha_curve", plain)
        self.assertNotIn("alpha", report_lib.render_markdown(plain))
