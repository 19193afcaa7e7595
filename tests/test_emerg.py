"""EmerG (spec emerg.md): refinement, the GNN's orders, the inner update, the hypernetwork's
gradient path, per-item warm-up, determinism, and a run on the real Taobao sample."""
import csv
import datetime
import os

import numpy as np
import tensorflow as tf

from tests import fixtures
from tests.test_backbones import build
from trainer import features, methods, protocol
from trainer.emerg import model as emerg_model, training
from trainer.emerg.model import EmerGEval, EmerGNet
from trainer.context import ProtocolContext

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "datasets")
SHORT = {"pretrain_epochs": 2, "pretrain_lr": 1e-2, "pretrain_batch": 64, "meta_epochs": 3,
         "warm_epochs": 2}


def net(seed=0, **kwargs):
    tf.keras.utils.set_random_seed(seed)
    model = EmerGNet(features.MOVIELENS, fixtures.VOCAB, **kwargs)
    model(fixtures.batch(2))
    return model


def snapshot(variables):
    """[value] in variable order (Keras names the embedding tables alike)."""
    return dict(enumerate(v.numpy().copy() for v in variables))


def first_task(splits, per_step=3):
    return next(training.tasks(splits["base"], 0, per_step))


class RefinementTest(tf.test.TestCase):

    def test_hand_computed_3x3(self):
        raw = tf.constant([[0.0, 9.0, 1.0], [2.0, 0.0, 8.0], [3.0, 4.0, 0.0]])
        a1, a2 = emerg_model.refine(raw, layers=2, k=5)
        # min-max /9, diagonal 1: [[1, 1, 1/9], [2/9, 1, 8/9], [3/9, 4/9, 1]]; the top 5 are the
        # four 1s and 8/9; symmetrised:
        self.assertAllClose(a1, [[1, 0.5, 0], [0.5, 1, 4 / 9], [0, 4 / 9, 1]])
        # A1 A1 = [[1.25, 1, 2/9], [1, 117.25/81, 8/9], [2/9, 8/9, 97/81]]; min-max over it
        # (min 2/9, max 117.25/81), then zeros where A1 is zero:
        self.assertAllClose(a2, np.array([[83.25, 63, 0], [63, 99.25, 54], [0, 54, 79]]) / 99.25)

    def test_k_defaults_to_half_of_the_entries_and_top_k_only(self):
        raw = tf.constant([[0.0, 9.0, 1.0], [2.0, 0.0, 8.0], [3.0, 4.0, 0.0]])
        self.assertAllClose(emerg_model.top_k(raw, 4), [[0, 9, 0], [0, 0, 8], [3, 4, 0]])
        self.assertEqual(net().k, 9 * 9 // 2)

    def test_mask_zeroes_two_hop_entries_absent_from_the_first_graph(self):
        # Path 0-1-2 and an isolated node 3: (A1^2)[0, 2] > 0 = min, so only the mask removes it.
        raw = tf.constant([[0, 5, 0, 0], [0, 0, 5, 0], [0, 0, 0, 0], [0, 0, 0, 0]], tf.float32)
        a1 = np.array([[1, .5, 0, 0], [.5, 1, .5, 0], [0, .5, 1, 0], [0, 0, 0, 1]])
        square = a1 @ a1
        unmasked = (square - square.min()) / (square.max() - square.min())
        self.assertGreater(unmasked[0, 2], 0)
        for mask, expected in ((True, unmasked * (a1 != 0)), (False, unmasked)):
            graphs = emerg_model.refine(raw, layers=2, k=6, mask=mask)
            self.assertAllClose(graphs[0], a1)
            self.assertAllClose(graphs[1], expected)

    def test_without_sparsification_the_first_graph_is_dense(self):
        raw = tf.constant([[0.0, 9.0, 1.0], [2.0, 0.0, 8.0], [3.0, 4.0, 0.0]])
        a1 = emerg_model.refine(raw, layers=1, k=5, sparsify=False)[0]
        dense = np.array([[9, 9, 1], [2, 9, 8], [3, 4, 9]]) / 9.0  # min-max, diagonal 1
        self.assertAllClose(a1, (dense + dense.T) / 2)

    def test_raw_graph_is_the_code_as_released(self):
        raw = tf.reshape(tf.range(81, dtype=tf.float32), [1, 9, 9])
        graphs = emerg_model.raw_graphs(raw, layers=3)
        expected = raw.numpy()[0].copy()
        expected[5:, :] = 0
        expected[:, 5:] = 0
        self.assertLen(graphs, 3)
        for graph in graphs:
            self.assertAllEqual(graph[0], expected)


class GNNTest(tf.test.TestCase):

    def graphs(self, layers, rng):
        return [tf.constant(rng.random((4, 9, 9)), tf.float32) for _ in range(layers)]

    def test_one_hot_embeddings_identity_weights(self):
        """Layer l is the product of l + 1 embeddings: with one-hot e_r (e_r * e_c = 0 for c != r)
        only the path r -> r survives, h^(l)_r = prod_{j <= l} A^(j)_rr e_r."""
        model = net(layers=3)
        model.gnn_w.assign(tf.tile(tf.eye(16)[None], [3, 1, 1]))
        rng = np.random.default_rng(0)
        graphs = self.graphs(3, rng)
        h0 = np.zeros((4, 9, 16), np.float32)
        h0[:, np.arange(9), np.arange(9)] = 1.0
        hs = model.gnn(tf.constant(h0), graphs)
        diag = np.stack([np.diagonal(g.numpy(), axis1=1, axis2=2) for g in graphs])  # [L, 4, 9]
        for l in range(1, 4):
            expected = np.prod(diag[:l], axis=0)[:, :, None] * h0
            self.assertAllClose(hs[l], expected, rtol=1e-6)

    def test_layer_l_has_order_l_plus_1(self):
        """Scaling every embedding by s scales h^(l) by s^(l+1) (any W; LeakyReLU is positively
        homogeneous), and h^(l) matches the product formula computed with numpy."""
        model = net(layers=2)
        rng = np.random.default_rng(1)
        w = rng.normal(size=(2, 16, 16)).astype(np.float32)
        model.gnn_w.assign(w)
        graphs = self.graphs(2, rng)
        h0 = rng.normal(size=(4, 9, 16)).astype(np.float32)
        base = model.gnn(tf.constant(h0), graphs)
        scaled = model.gnn(tf.constant(3.0 * h0), graphs)
        for l in range(3):
            self.assertAllClose(scaled[l], 3.0 ** (l + 1) * base[l], rtol=1e-4, atol=1e-5)
        m1 = graphs[0].numpy() @ (h0 @ w[0])
        h1 = np.where(m1 > 0, m1, 0.01 * m1) * h0
        h2 = (graphs[1].numpy() @ (h0 @ w[1])) * h1  # no activation on the last layer
        self.assertAllClose(base[1], h1, rtol=1e-4, atol=1e-5)
        self.assertAllClose(base[2], h2, rtol=1e-4, atol=1e-5)


class MetaTrainingTest(tf.test.TestCase):

    def test_tasks_are_consecutive_time_chunks_of_each_item(self):
        base = {"item_id": np.array([7, 3, 7, 7, 3, 3, 3, 7, 7, 3, 3, 3, 3]),
                "timestamp": np.array([5, 9, 1, 3, 2, 8, 1, 4, 2, 7, 3, 4, 5], np.float32),
                "label": np.arange(13)}
        # item 3: rows by time 6, 4, 10, 11, 12, 9, 5, 1 (chunks of 2); item 7: 2, 8, 3, 7, 0
        # (chunks of 1, row 0 dropped).
        batch, num_tasks, length = next(training.tasks(base, 1, per_step=2))  # b -> c
        self.assertEqual((num_tasks, length), (2, 16))
        support = batch["support"]["label"].reshape(2, 16)
        query = batch["query"]["label"].reshape(2, 16)
        mask = batch["support_mask"].reshape(2, 16)
        self.assertAllEqual(support[:, :2], [[10, 11], [8, 8]])
        self.assertAllEqual(query[:, :2], [[12, 9], [3, 3]])
        self.assertAllEqual(mask.sum(axis=1), [2, 1])

    def test_inner_update_changes_only_item_specific_parameters(self):
        model = net()
        trainer = training.MetaTrainer(model, training.Hyper())
        batch, num_tasks, length = first_task(fixtures.cold_start_splits())
        first = {k: v[::length] for k, v in batch["support"].items()}
        a, e = trainer.psi(first)
        before = snapshot(model.weights)
        _, a2, e2 = trainer.inner_update(batch["support"], batch["support_mask"], a, e, num_tasks)
        after = snapshot(model.weights)
        for name in before:
            self.assertAllEqual(before[name], after[name], name)
        with tf.GradientTape() as tape:
            tape.watch([a, e])
            loss = tf.reduce_sum(trainer.task_loss(batch["support"], batch["support_mask"], a, e,
                                                   num_tasks))
        g_a, g_e = [tf.convert_to_tensor(g) for g in tape.gradient(loss, [a, e])]
        self.assertGreater(float(tf.reduce_max(tf.abs(g_a))), 0)
        self.assertAllClose(a2, a - 0.01 * g_a)
        self.assertAllClose(e2, e - 0.01 * g_e)

    def test_hypernetwork_gradient_by_default_none_when_detached(self):
        batch, num_tasks, length = first_task(fixtures.cold_start_splits())
        for detached, second_order in ((False, False), (False, True), (True, False)):
            model = net()
            trainer = training.MetaTrainer(
                model, training.Hyper(detached_hypernet=detached, second_order=second_order))
            with tf.GradientTape(persistent=True) as tape:
                loss = trainer.objective(batch, num_tasks, length)
            grads = tape.gradient(loss, model.hypernet_variables())
            if detached:
                self.assertTrue(all(g is None for g in grads))
            else:
                self.assertGreater(max(float(tf.reduce_max(tf.abs(g))) for g in grads), 0)
            # The GNN and the item table are trained either way.
            for variable in (model.gnn_w, model.item_table):
                gradient = tf.convert_to_tensor(tape.gradient(loss, variable))
                self.assertGreater(float(tf.reduce_max(tf.abs(gradient))), 0)

    def test_without_inner_update_the_query_uses_the_initial_psi(self):
        batch, num_tasks, length = first_task(fixtures.cold_start_splits())
        model = net()
        trainer = training.MetaTrainer(model, training.Hyper(inner=False, alpha=0.0))
        first = {k: v[::length] for k, v in batch["query"].items()}
        a, e = trainer.psi(first)
        expected = tf.reduce_mean(trainer.task_loss(batch["query"], batch["query_mask"], a, e,
                                                    num_tasks))
        self.assertAllClose(trainer.objective(batch, num_tasks, length), expected)


class WarmUpTest(tf.test.TestCase):

    def eval_model(self, items=(25, 26, 27, 28)):
        model = net()
        splits = fixtures.cold_start_splits()
        arrays = splits["warm_a"]
        rows = {k: v[np.isin(arrays["item_id"], items)] for k, v in arrays.items()}
        first = {k: v[np.unique(rows["item_id"], return_index=True)[1]] for k, v in rows.items()}
        evaluated = EmerGEval(model, first["item_id"])
        training.init_psi(evaluated, first)
        return evaluated, rows

    def test_one_item_leaves_everything_else_bit_identical(self):
        evaluated, rows = self.eval_model()
        shared = snapshot(evaluated.net.weights)
        psi_a, psi_e = evaluated.psi_a.numpy(), evaluated.psi_e.numpy()
        one = {k: v[rows["item_id"] == 26] for k, v in rows.items()}
        warm = training.WarmUp(evaluated, training.Hyper(warm_epochs=3))
        warm.run(one)
        for name, value in snapshot(evaluated.net.weights).items():
            self.assertAllEqual(value, shared[name], name)
        others = [0, 2, 3]  # slots of items 25, 27, 28
        self.assertAllEqual(evaluated.psi_a.numpy()[others], psi_a[others])
        self.assertAllEqual(evaluated.psi_e.numpy()[others], psi_e[others])
        self.assertAllEqual(evaluated.steps.numpy(), [0, 4, 0, 0])
        self.assertGreater(np.abs(evaluated.psi_a.numpy()[1] - psi_a[1]).max(), 0)
        self.assertGreater(np.abs(evaluated.psi_e.numpy()[1] - psi_e[1]).max(), 0)

    def test_items_adapted_together_equal_items_adapted_alone(self):
        together, rows = self.eval_model()
        training.WarmUp(together, training.Hyper(warm_epochs=2)).run(rows)
        alone, _ = self.eval_model()
        warm = training.WarmUp(alone, training.Hyper(warm_epochs=2, warm_rows=1))  # 1 item/group
        warm.run(rows)
        self.assertAllClose(together.psi_a, alone.psi_a, rtol=1e-5, atol=1e-7)
        self.assertAllClose(together.psi_e, alone.psi_e, rtol=1e-5, atol=1e-7)

    def test_adam_state_is_kept_across_warm_splits(self):
        evaluated, rows = self.eval_model(items=(25,))
        warm = training.WarmUp(evaluated, training.Hyper(warm_epochs=1))
        warm.run(rows)
        m_e = evaluated.m_e.numpy().copy()
        warm.run(rows)
        self.assertAllEqual(evaluated.steps.numpy(), [4])
        self.assertGreater(np.abs(m_e).max(), 0)


class MethodTest(tf.test.TestCase):

    def run_protocol(self, seed=0, rows=256, **options):
        method = methods.build("emerg", seed=seed, **{**SHORT, **options})
        splits = fixtures.cold_start_splits(rows=rows)
        scores = []
        results = protocol.warm_up_and_evaluate(build("deepfm"), ProtocolContext.in_memory(splits),
                                                protocol.TrainConfig(batch_size=64), seed,
                                                method, scores_out=scores)
        return method, results, scores

    def test_deterministic_under_a_seed_and_learns(self):
        method, results, scores = self.run_protocol()
        _, again, scores_again = self.run_protocol()
        self.assertEqual(results, again)
        for first, second in zip(scores, scores_again):
            self.assertAllEqual(first, second)
        self.assertLess(method.pretrain_losses[-1], method.pretrain_losses[0])
        # The label is the item's parity: adapting each item's psi on its rows pays off.
        self.assertGreater(results["warm_c"]["overall"]["auc"], results["cold"]["overall"]["auc"])
        for split in ("warm_a", "warm_b", "warm_c"):
            self.assertLess(method.warm_losses[split][-1], method.warm_losses[split][0])
        # 25 old items x 3 chunk pairs (meta-epochs a->b, b->c, c->d), one task per step.
        self.assertLen(method.meta_losses, 75)
        self.assertAllEqual(method.model.steps.numpy(), np.full(25, 3 * (2 + 1)))

    def test_options_and_profiles(self):
        method = methods.build("emerg")
        resolved = method.resolved(features.MOVIELENS)
        self.assertEqual((resolved["layers"], resolved["meta_epochs"], resolved["warm_epochs"],
                          resolved["pretrain_lr"]), (2, 11, 11, 0.005))
        taobao = methods.build("emerg", layers=3, meta_epochs=6).resolved(features.MOVIELENS)
        self.assertEqual((taobao["layers"], taobao["meta_epochs"]), (3, 6))
        with self.assertRaisesRegex(ValueError, "graph must be one of"):
            methods.build("emerg", graph="dense")
        self.assertEqual(methods.method_class("emerg/no_mask").own_backbone, "EmerG GNN")

    def test_ablations_run(self):
        for options in ({"graph": "random"}, {"graph": "shared"}, {"sparsify": False},
                        {"mask": False}, {"meta": False}, {"inner": False},
                        {"raw_graph": True, "detached_hypernet": True,
                         "pretrain_graph": "global"}):
            method, results, _ = self.run_protocol(rows=64, **options, meta_epochs=1,
                                                   pretrain_epochs=1)
            self.assertTrue(all(np.isfinite(r["overall"]["auc"]) for r in results.values()), options)
            if options.get("graph") == "shared":  # the graph is not item-specific: not adapted
                psi = method.model.psi_a.numpy()
                self.assertAllEqual(psi, np.broadcast_to(method.net.shared_graph.numpy(), psi.shape))
            if options.get("meta") is False:
                self.assertEqual(method.meta_losses, [])


def taobao_sample():
    """The real taobao-joined sample (300 rows) as transformed arrays: ids indexed per column
    (0 = empty), price min-max scaled. Items with >= 5 rows (2 items, 12 rows, 6 clicks) are old;
    the rest (6 clicks, all on the two items of 4 rows) are new, and every new item's rows form
    each of warm_a, warm_b, warm_c and test."""
    rows = []
    for name in ("train", "valid", "test"):
        with open(os.path.join(SHARED, "taobao-sample", f"fuxictr_tiny_csv_{name}_sample.csv")) as f:
            rows.extend(csv.DictReader(f))
    columns = {"user_id": "userid", "item_id": "adgroup_id", "pid": "pid", "cate_id": "cate_id",
               "campaign_id": "campaign_id", "customer": "customer", "brand": "brand",
               "cms_segid": "cms_segid", "cms_group_id": "cms_group_id",
               "final_gender_code": "final_gender_code", "age_level": "age_level",
               "pvalue_level": "pvalue_level", "shopping_level": "shopping_level",
               "occupation": "occupation", "new_user_class_level": "new_user_class_level"}
    arrays, vocab = {}, {}
    for name, column in columns.items():
        values = np.array([r[column] for r in rows])
        uniques, index = np.unique(values, return_inverse=True)
        arrays[name], vocab[name] = index.astype(np.int64) + 1, len(uniques) + 1
    words = sorted({w for r in rows for w in r["click_sequence"].split("^") if w})
    sequence = np.zeros((len(rows), 8), np.int64)
    for i, r in enumerate(rows):
        ids = [words.index(w) + 1 for w in r["click_sequence"].split("^") if w][:8]
        sequence[i, :len(ids)] = ids
    arrays["click_sequence"], vocab["click_sequence"] = sequence, len(words) + 1
    price = np.array([float(r["price"]) for r in rows], np.float32)
    arrays["price"] = (price - price.min()) / (price.max() - price.min())
    arrays["timestamp"] = np.array([datetime.datetime.fromisoformat(r["time_stamp"]).timestamp()
                                    for r in rows], np.float32)
    _, inverse, counts = np.unique(arrays["item_id"], return_inverse=True, return_counts=True)
    arrays["count"] = counts[inverse].astype(np.float32)
    arrays["label"] = np.array([int(r["clk"]) for r in rows], np.int64)
    config = features.FeatureConfig(
        fields=tuple(features.Field(n, "spr") for n in columns)
        + (features.Field("click_sequence", "seq", 8), features.Field("price", "ctn"),
           features.Field("timestamp", "ctn"), features.Field("count", "ctn")),
        item_side=("item_id", "pid", "cate_id", "campaign_id", "customer", "brand", "price"))
    old = arrays["count"] >= 5
    splits = {"base": {k: v[old] for k, v in arrays.items()}}
    for name in ("warm_a", "warm_b", "warm_c", "test"):
        splits[name] = {k: v[~old] for k, v in arrays.items()}
    return config, vocab, splits


class TaobaoSampleTest(tf.test.TestCase):

    def test_runs_end_to_end_with_the_taobao_profile(self):
        if not os.path.isdir(os.path.join(SHARED, "taobao-sample")):
            self.skipTest("no taobao-sample")
        config, vocab, splits = taobao_sample()
        self.assertEqual((len(splits["base"]["label"]), len(splits["test"]["label"])), (12, 288))
        self.assertEqual(int(splits["test"]["label"].sum()), 6)
        tf.keras.utils.set_random_seed(0)
        from trainer import backbones  # pylint: disable=import-outside-toplevel
        backbone = backbones.build("deepfm", config, vocab)
        protocol.ensure_built(backbone, splits["test"])
        method = methods.build("emerg", seed=0, pretrain_batch=8, warm_epochs=1)
        results = protocol.warm_up_and_evaluate(backbone, ProtocolContext.in_memory(splits),
                                                protocol.TrainConfig(), 0, method)
        net_ = method.net
        # 15 spr fields + click_sequence + price; item fields: item_id, pid, cate_id, campaign_id,
        # customer, brand, price; the taobao profile: 3 layers, 3 meta-epochs.
        self.assertEqual(net_.num_nodes, 17)
        self.assertEqual(net_.hyper_nodes, [0, 2, 3, 4, 5, 6, 16])
        self.assertEqual((net_.num_layers, net_.k), (3, 17 * 17 // 2))
        self.assertLen(method.meta_losses, 3 * 2)  # 2 old items, pairs a->b, b->c, c->d
        new_items = len(np.unique(splits["test"]["item_id"]))
        self.assertAllEqual(method.model.steps.numpy(), np.full(new_items, 3 * 2))
        for phase in protocol.PHASES:
            self.assertTrue(np.isfinite(results[phase]["overall"]["auc"]), phase)
