"""Diff-MSR (spec diff_msr.md): schedule, U-Net, reverse chain, classifier, selection, the
multi-scenario backbones and the methods on the per_domain protocol context."""
import dataclasses

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from tests.fixtures import pairwise_auc
from trainer import backbones, diffmsr, features, methods, protocol, protocols, task
from trainer.context import ProtocolContext
from trainer.protocols import slice_column

CONFIG = features.FeatureConfig(
    fields=(features.Field("user_id", "spr"), features.Field("item_id", "spr"),
            features.Field("domain", "spr"), features.Field("timestamp", "ctn"),
            features.Field("count", "ctn")),
    item_side=("item_id", "domain", "count"))
VOCAB = {"user_id": 20, "item_id": 30, "domain": 3}
COLD = 2  # the cold domain's index (the rarest domain sits last in a frequency-ordered vocabulary)
MULTI = ["aitm", "dcn_md", "fnn_md", "ipnn_md", "mmoe", "ple", "star"]
SMALL = {"mmoe": {"expert_dims": [8], "tower_dims": [8], "num_experts": 3},
         "ple": {"expert_dims": [8], "tower_dims": [8]},
         "star": {"hidden_dims": [8, 8], "aux_dims": [4]},
         "aitm": {"tower_dims": [8, 8]},
         "fnn_md": {"mlp_dims": (8, 8)}, "dcn_md": {}, "ipnn_md": {}}


def rows(n, seed, cold_share=0.2):
    """Domains 0 and 1 rich, COLD with about `cold_share` of the rows; label = (user + item) % 2."""
    rng = np.random.default_rng(seed)
    domain = np.where(rng.random(n) < cold_share, COLD, rng.integers(0, 2, n))
    out = {"user_id": rng.integers(0, 20, n), "item_id": rng.integers(0, 30, n),
           "domain": domain.astype(np.int64), "timestamp": rng.random(n, dtype=np.float32),
           "count": rng.random(n, dtype=np.float32)}
    out[features.LABEL] = ((out["user_id"] + out["item_id"]) % 2).astype(np.int64)
    return out


SPLITS = {"train": rows(400, 0), "validation": rows(120, 1), "test": rows(150, 2)}


def context(splits=None):
    """The per_domain context on hand-built transformed arrays (`splits`, default SPLITS). The
    protocol names cold domains by their raw value; the transformed data holds vocabulary
    indices, so the stage here filters by the index (what the pipeline's mapping gives)."""
    splits = splits or SPLITS
    built = protocols.build("per_domain", cold_domains=["music"])
    ctx = ProtocolContext(built, load=lambda split: splits[split])
    stage = dataclasses.replace(ctx.stages[1], adapt_where=("domain", (COLD,)))
    return ctx, stage


def build(name, seed=0, **options):
    tf.keras.utils.set_random_seed(seed)
    model = backbones.build(name, CONFIG, VOCAB, **{**SMALL[name], **options})
    protocol.ensure_built(model, SPLITS["train"])
    return model


def pretrain(model):
    protocol.train(model, SPLITS["train"], model.trainable_variables,
                   protocol.TrainConfig(batch_size=64), epochs=1, seed=0)


def snapshot(variables):
    return [v.numpy().copy() for v in variables]


def assert_only_cold_changed(test, model, before):
    """`before`: snapshot of model.variables. Variables are matched by position: Keras 2 gives
    the heads' sub-layers colliding names. Every variable but COLD's own is bit-identical, and
    some of COLD's own changed."""
    own = {v.ref() for v in model.domain_variables(COLD)}
    changed = []
    for var, value in zip(model.variables, before):
        if var.ref() in own:
            changed.append(not np.array_equal(var.numpy(), value))
        else:
            test.assertAllEqual(var, value, msg=var.name)
    test.assertTrue(any(changed))


class ScheduleTest(tf.test.TestCase):

    def test_piecewise_constants_at_the_boundaries(self):
        s = diffmsr.Schedule(diffmsr.piecewise_betas())
        ramp = (0.05 - 2e-4) / 449
        self.assertEqual(s.T, 500)
        self.assertAllEqual(s.betas[:51], np.full(51, 2e-4))  # 51 equal values (spec 12.1)
        self.assertAllClose(s.betas[[51, 70, 100, 200, 499]],
                            [2e-4 + ramp, 2e-4 + 20 * ramp, 2e-4 + 50 * ramp, 2e-4 + 150 * ramp,
                             0.05], rtol=1e-12)
        # spec 5.2's reference table
        table = {0: 0.999800, 20: 0.995808, 30: 0.993819, 40: 0.991833, 49: 0.990049,
                 70: 0.963179, 100: 0.850518, 200: 0.271553}
        for t, alpha_bar in table.items():
            self.assertAllClose(s.alphas_cumprod[t], alpha_bar, atol=5e-7, msg=t)
        self.assertAllClose(s.alphas_cumprod[499], 1.0e-5, rtol=0.02)
        self.assertAllClose(s.sqrt_one_minus_alphas_cumprod[[0, 30, 100]], [0.0141, 0.0786, 0.3866],
                            atol=5e-5)
        # t = 0: the posterior mean is x0_hat itself and its variance 0
        self.assertAllClose([s.posterior_mean_coef1[0], s.posterior_mean_coef2[0],
                             s.posterior_variance[0]], [1.0, 0.0, 0.0], atol=1e-12)

    def test_q_sample_mean_and_std(self):
        s = diffmsr.Schedule(diffmsr.piecewise_betas())
        n = 200000
        z0 = tf.fill([n, 2, 16], 0.5)
        t = tf.fill([n], 100)
        z = s.q_sample(z0, t, tf.random.stateless_normal([n, 2, 16], [1, 2])).numpy()
        self.assertAllClose(z.mean(axis=0), np.full([2, 16], 0.5 * np.sqrt(0.850518)), atol=0.006)
        self.assertAllClose(z.std(axis=0), np.full([2, 16], np.sqrt(1 - 0.850518)), atol=0.006)

    def test_ablation_schedules(self):
        self.assertAllClose(diffmsr.linear_betas(500)[[0, -1]], [2e-4, 0.04])
        cosine = diffmsr.cosine_betas(500)
        self.assertEqual(cosine.max(), 0.999)
        self.assertTrue(np.all(np.diff(cosine) > 0))


def zero_net(z, t, training=False):
    return tf.zeros_like(z)


class ReverseChainTest(tf.test.TestCase, parameterized.TestCase):

    def test_zero_denoiser_equals_the_closed_form(self):
        """v_hat = 0 gives x0_hat = sqrt(abar_t) z_t, so without noise each step multiplies by
        k_t = c1_t sqrt(abar_t) + c2_t, computed here from the betas by hand."""
        betas = diffmsr.piecewise_betas()
        ab = np.cumprod(1 - betas)
        ab_prev = np.concatenate([[1.0], ab[:-1]])
        k = (betas * np.sqrt(ab_prev) / (1 - ab) * np.sqrt(ab)
             + (1 - ab_prev) * np.sqrt(1 - betas) / (1 - ab))
        diffusion = diffmsr.Diffusion(diffmsr.Schedule(betas), zero_net, clip_x0=False)
        z = np.random.default_rng(0).uniform(-1, 1, [5, 2, 16]).astype(np.float32)
        starts = np.array([-1, 0, 5, 30, 49], np.int32)
        out, clipped = diffusion.reverse(z, starts, tf.constant(0), tf.constant(0.0))
        expected = np.stack([z[i] * np.prod(k[:s + 1]) for i, s in enumerate(starts)])
        self.assertAllClose(out, expected, rtol=1e-5)
        self.assertAllEqual(out[0], z[0])  # start -1: not moved
        self.assertEqual(float(clipped), 0.0)

    @parameterized.named_parameters(("v_l1", "v_l1"), ("eps_mse", "eps_mse"))
    def test_oracle_denoiser_recovers_z0_from_pure_noise(self, loss):
        s = diffmsr.Schedule(diffmsr.piecewise_betas())
        z0 = tf.constant(np.random.default_rng(1).uniform(-0.9, 0.9, [64, 2, 16]), tf.float32)

        def oracle(z_t, t, training=False):
            a, b = s.at("sqrt_alphas_cumprod", t), s.at("sqrt_one_minus_alphas_cumprod", t)
            return (a * z_t - z0) / b if loss == "v_l1" else (z_t - a * z0) / b

        diffusion = diffmsr.Diffusion(s, oracle, loss=loss)
        out, _ = diffusion.generate(64, seed=3)
        self.assertAllClose(out, z0, atol=2e-5)

    def test_noise_is_seeded_and_clipping_is_counted(self):
        s = diffmsr.Schedule(diffmsr.piecewise_betas())
        diffusion = diffmsr.Diffusion(s, zero_net)
        a, fa = diffusion.generate(32, seed=5)
        b, _ = diffusion.generate(32, seed=5)
        c, _ = diffusion.generate(32, seed=6)
        self.assertAllEqual(a, b)
        self.assertNotAllClose(a, c)
        self.assertGreater(float(fa), 0.0)  # sqrt(abar) * N(0, 1) leaves [-1, 1] at large t


class UNetTest(tf.test.TestCase):

    def test_shape_and_known_gradient(self):
        tf.keras.utils.set_random_seed(0)
        unet = diffmsr.UNet1D()
        x = tf.random.normal([6, 16, 2])
        t = tf.constant([0, 1, 10, 100, 250, 499])
        with tf.GradientTape() as tape:
            out = unet(x, t)
            total = tf.reduce_sum(out)
        self.assertEqual(out.shape, (6, 16, 2))
        grads = dict(zip([v.name for v in unet.trainable_variables],
                         tape.gradient(total, unet.trainable_variables)))
        # The last 1x1 conv is linear: d sum(out) / d bias = B * L per output channel.
        bias = [name for name in grads if "final_conv" in name and "bias" in name]
        self.assertLen(bias, 1)
        self.assertAllClose(grads[bias[0]], [6 * 16, 6 * 16])
        self.assertTrue(all(g is not None for g in grads.values()),
                        [n for n, g in grads.items() if g is None])
        # the time embedding reaches the output
        self.assertNotAllClose(unet(x, t), unet(x, t + 1))

    def test_weight_standardised_conv(self):
        conv = diffmsr.WSConv1D(3, 3, padding="same", use_bias=False)
        x = np.random.default_rng(0).normal(size=[1, 5, 2]).astype(np.float32)
        out = conv(x).numpy()
        w = conv.kernel.numpy()
        w = (w - w.mean(axis=(0, 1))) / np.sqrt(w.var(axis=(0, 1)) + 1e-5)
        padded = np.pad(x[0], [[1, 1], [0, 0]])
        expected = np.stack([np.einsum("ki,kio->o", padded[i:i + 3], w) for i in range(5)])
        self.assertAllClose(out[0], expected, atol=1e-5)


class FitDiffusionTest(tf.test.TestCase):

    def test_training_is_bit_reproducible_over_several_batches(self):
        """Two trainings from the same seed give the same weights, bit for bit. Without XLA
        in fit_diffusion's step they differed here (4 of 4 tries; the test fixtures' single
        batch per epoch did not show it): the U-Net's gradient sums (AddN) added in an order
        set at run time."""
        z = (np.random.default_rng(0).standard_normal((2048, 2, 16)) * 0.3).astype(np.float32)
        weights = []
        for _ in range(2):
            protocol.seed_everything(0)
            unet = diffmsr.UNet1D(16)
            diffusion = diffmsr.Diffusion(diffmsr.Schedule(diffmsr.piecewise_betas(60, 5)),
                                          diffmsr.unet_net(unet), shape=(2, 16))
            diffusion.loss(tf.constant(z[:1]), tf.constant([0]), tf.constant(z[:1]))
            initial = snapshot(unet.variables)
            history = diffmsr.fit_diffusion(diffusion, unet.trainable_variables, z, None,
                                            batch_size=512, max_epochs=2, seed=0)
            self.assertLen(history["train"], 2)
            weights.append(snapshot(unet.variables))
        self.assertTrue(any(not np.array_equal(a, b) for a, b in zip(initial, weights[1])))
        for a, b in zip(*weights):
            self.assertAllEqual(a, b)


class ClassifierTest(tf.test.TestCase):

    def test_balanced_weights_give_each_class_half(self):
        labels = np.array([1, 1, 1, 1, 1, 1, 0, 0])
        weights = diffmsr.balanced_weights(labels)
        self.assertAllClose(weights, [8 / 12] * 6 + [8 / 4] * 2)
        self.assertAllClose([weights[labels == 1].sum(), weights[labels == 0].sum()], [4.0, 4.0])
        with self.assertRaisesRegex(ValueError, "needs rich and cold rows"):
            diffmsr.balanced_weights(np.ones(4))

    def test_balance_changes_what_the_classifier_learns(self):
        """Rich rows N(+0.3, 1), cold N(-0.3, 1), 20:1. Unbalanced, almost nothing is judged cold;
        balanced, about half of the cold rows are."""
        rng = np.random.default_rng(0)
        z = np.concatenate([rng.normal(0.3, 1, [4000, 2, 4]), rng.normal(-0.3, 1, [200, 2, 4])])
        rich = np.concatenate([np.ones(4000), np.zeros(200)]).astype(np.int64)
        s = diffmsr.Schedule(diffmsr.piecewise_betas())
        judged_cold = {}
        for balanced in (False, True):
            tf.keras.utils.set_random_seed(0)
            net = diffmsr.classifier((16, 16))
            diffmsr.fit_classifier(net, s, z.astype(np.float32), rich, None, None, balanced,
                                   noise_steps=1, batch_size=512, max_epochs=20)
            judged_cold[balanced] = float(np.mean(net(z[4000:].astype(np.float32))[:, 0] < 0))
        self.assertLess(judged_cold[False], 0.1)
        self.assertGreater(judged_cold[True], 0.5)


class SelectionTest(tf.test.TestCase):

    def test_first_t_below_one_half_and_never_cold_dropped(self):
        """logit("rich") = 0.07 - z[0, 0]; z0 = 0, so z_t[0, 0] = sqrt(1 - abar_t) e grows with t:
        the first t whose sqrt(1 - abar_t) e exceeds 0.07 is chosen."""
        s = diffmsr.Schedule(diffmsr.piecewise_betas())
        b = s.sqrt_one_minus_alphas_cumprod
        threshold = 0.07

        def model(z, training=False):
            return threshold - z[:, :1, 0]

        e = np.array([100.0, 0.0, -1.0, threshold / ((b[39] + b[40]) / 2),
                      threshold / ((b[48] + b[49]) / 2), threshold / b[49] * 0.999])
        eps = np.zeros([6, 2, 16], np.float32)
        eps[:, 0, 0] = e
        t = diffmsr.select_start_times(model, s, tf.zeros([6, 2, 16]), tf.constant(eps), 30, 50)
        self.assertAllEqual(t, [30, -1, -1, 40, 49, -1])


class EarlyStoppedTest(tf.test.TestCase):
    """`early_stopped` on one variable that each epoch raises by 1, scored -(v - target)^2."""

    def run_to(self, target, score_start, patience=2):
        v = tf.Variable(0.0)

        def epoch(_):
            v.assign_add(1.0)
            return 0.0

        found = diffmsr.early_stopped(epoch, lambda: -(float(v.numpy()) - target) ** 2, [v],
                                      max_epochs=10, patience=patience, score_start=score_start)
        return float(v.numpy()), found

    def test_the_start_is_a_candidate_only_when_scored(self):
        v, found = self.run_to(0.0, score_start=True)
        self.assertEqual(v, 0.0)  # no epoch beat the start: restored to it
        self.assertEqual(found["score"], [0.0, -1.0, -4.0])
        self.assertEqual((found["best"], len(found["train"])), (0, 2))
        v, found = self.run_to(0.0, score_start=False)
        self.assertEqual(v, 1.0)  # the first epoch is the best there is
        self.assertEqual(found["score"], [-1.0, -4.0, -9.0])
        self.assertEqual(found["best"], 0)

    def test_a_later_epoch_still_wins(self):
        v, found = self.run_to(3.0, score_start=True)
        self.assertEqual(v, 3.0)
        self.assertEqual(found["score"], [-9.0, -4.0, -1.0, 0.0, -1.0, -4.0])
        self.assertEqual(found["best"], 3)


class MultiScenarioTest(tf.test.TestCase, parameterized.TestCase):

    @parameterized.named_parameters(*[(n, n) for n in MULTI])
    def test_domain_variables_reach_only_their_domain(self, name):
        """Perturbing domain COLD's variables changes COLD's logits and no other domain's."""
        model = build(name)
        pretrain(model)
        model.specialise()
        data = SPLITS["test"]
        before = model(data, training=False).numpy()
        for v in model.domain_variables(COLD):
            if v.trainable:
                v.assign_add(tf.fill(v.shape, 0.05))
        after = model(data, training=False).numpy()
        cold = data["domain"] == COLD
        self.assertAllEqual(before[~cold], after[~cold])
        self.assertTrue(np.all(before[cold] != after[cold]))
        pair = model.pair_embedding(data)
        self.assertAllClose(model.domain_logit(pair[cold], COLD), after[cold], atol=1e-6)

    @parameterized.named_parameters(*[(n, n) for n in MULTI])
    def test_get_config_round_trip(self, name):
        model = build(name)
        pretrain(model)
        model.specialise()
        directory = self.create_tempdir().full_path
        task.save(model, directory)
        restored = task.load(directory, SPLITS["test"])
        self.assertIsInstance(restored, backbones.BACKBONES[name])
        self.assertEqual(restored.get_config(), model.get_config())
        self.assertAllEqual(protocol.predict(restored, SPLITS["test"]),
                            protocol.predict(model, SPLITS["test"]))

    def test_shared_head_until_specialised(self):
        model = build("fnn_md")
        pretrain(model)
        data = SPLITS["test"]
        before = model(data, training=False).numpy()
        head0 = model._head(0, model.fields_from_pair(model.pair_embedding(data), 1), False)
        # domain 1's rows go through head 0 before specialise(), with their own domain embedding
        rows = data["domain"] == 1
        self.assertAllClose(before[rows], head0.numpy()[rows], atol=1e-6)
        model.specialise()
        self.assertAllEqual(model(data, training=False), before)
        for v0, v2 in zip(model.heads[0].variables, model.heads[COLD].variables):
            self.assertAllEqual(v0, v2)

    def test_missing_domain_field_is_a_clear_error(self):
        with self.assertRaisesRegex(ValueError, r"mmoe: needs the categorical fields \['domain'\]"):
            backbones.build("mmoe", features.FeatureConfig(CONFIG.fields[:2], ()),
                            {"user_id": 3, "item_id": 3})


class DefaultAdaptationTest(tf.test.TestCase, parameterized.TestCase):
    """`base` on per_domain: the protocol's own adapted stage, no method."""

    @parameterized.named_parameters(("fnn_md", "fnn_md"), ("dcn_md", "dcn_md"), ("mmoe", "mmoe"))
    def test_trains_the_cold_domain_and_leaves_the_rich_ones(self, name):
        """From the Trainer's unspecialised model: the rich domains' test scores stay
        bit-identical and every variable but the cold domain's own equals the pretrained model's
        after `specialise()` (a no-op for the multi-task family). Before the fix, a pre-train &
        fine-tune backbone routed the cold rows through the shared head 0: its BatchNorm
        statistics moved, and the rich domains' scores with them, while the cold domain's own
        head got no gradient."""
        model = build(name)
        pretrain(model)
        reference = build(name)
        reference.set_weights(model.get_weights())
        reference.specialise()

        def with_slices(arrays):  # the raw domain beside its index, as Transform writes it
            raw = np.array([str(d).encode() for d in arrays["domain"]], dtype=object)
            return {**arrays, protocols.slice_column("domain"): raw}

        ctx = ProtocolContext(protocols.build("per_domain", cold_domains=[str(COLD)]),
                              load=lambda split: with_slices(SPLITS[split]))
        data = SPLITS["test"]
        rich = data["domain"] != COLD
        before = protocol.predict(model, data)
        protocol.warm_up_and_evaluate(model, ctx, protocol.TrainConfig(batch_size=32), seed=0)
        after = protocol.predict(model, data)
        self.assertAllEqual(before[rich], after[rich])
        self.assertTrue(np.all(before[~rich] != after[~rich]))
        assert_only_cold_changed(self, model, snapshot(reference.variables))


TINY = {"T": 60, "noise_steps": 50, "unet_dim": 8, "max_epochs": 1, "diffusion_patience": 1,
        "classifier_patience": 1, "rich_chunk": 128, "pool_size": 32}


class MethodTest(tf.test.TestCase, parameterized.TestCase):

    def run_method(self, name, backbone, seed=0, **options):
        model = build(backbone)
        pretrain(model)
        model.specialise()
        ctx, stage = context()
        before = snapshot(model.variables)
        method = methods.build(name, seed=seed, **options)
        self.assertEqual(method.protocols, ("per_domain",))
        self.assertTrue(method.owns_warm_up)
        method.warm_up(model, stage, ctx, protocol.TrainConfig())
        return model, before, method

    @parameterized.named_parameters(("fnn_md_finetune", "fnn_md", "finetune", {}),
                                    ("star_finetune", "star", "finetune", {}),
                                    ("ple_diff", "ple", "diff", TINY),
                                    ("aitm_diffmsr_code", "aitm", "diffmsr",
                                     {**TINY, "mix": "code", "code_pure": 16, "pool_size": 0,
                                      "reverse_from_clean": True}))
    def test_fine_tune_changes_only_the_cold_domain(self, backbone, name, options):
        model, before, _ = self.run_method(name, backbone, **options)
        assert_only_cold_changed(self, model, before)

    def test_diffmsr_changes_only_the_cold_domain_and_is_deterministic(self):
        a, before, method = self.run_method("diffmsr", "fnn_md", **TINY)
        assert_only_cold_changed(self, a, before)
        # every rich train row is scored once in the one epoch
        n_rich = int(np.sum(SPLITS["train"]["domain"] != COLD))
        seen = method.diagnostics[COLD]
        self.assertEqual(seen["rich_seen"], n_rich)
        self.assertBetween(seen["rich_judged_cold"], 0, n_rich)
        self.assertEqual(method.report_diagnostics(), {"domains": {str(COLD): seen}})
        b, _, _ = self.run_method("diffmsr", "fnn_md", **TINY)
        for va, vb in zip(a.variables, b.variables):
            self.assertAllEqual(va, vb, msg=va.name)

    def test_keep_pretrained_falls_back_when_fine_tuning_hurts_validation(self):
        """The cold domain's validation labels are the opposite of its train rule, so every
        fine-tuning epoch raises the validation log-loss: with `keep_pretrained` the pretrained
        head is kept bit-identical (kept_epoch 0); without it the first epoch lands."""
        flipped = dict(SPLITS["validation"])
        cold = flipped["domain"] == COLD
        flipped[features.LABEL] = np.where(cold, 1 - flipped[features.LABEL], flipped[features.LABEL])
        ctx, stage = context({**SPLITS, "validation": flipped})
        found = {}
        for keep in (True, False):
            model = build("fnn_md")
            pretrain(model)
            model.specialise()
            before = snapshot(model.variables)
            method = methods.build("finetune", keep_pretrained=keep, patience=2)
            method.warm_up(model, stage, ctx, protocol.TrainConfig())
            found[keep] = method.report_diagnostics()["domains"][str(COLD)]
            if keep:
                for var, value in zip(model.variables, before):
                    self.assertAllEqual(var, value, msg=var.name)
            else:
                assert_only_cold_changed(self, model, before)
        self.assertEqual(found[True]["kept_epoch"], 0)
        self.assertEqual(found[False]["kept_epoch"], 1)
        # the same epochs, scored once more at the start with the option
        self.assertAllClose(found[True]["val_log_loss"][1:], found[False]["val_log_loss"][:2])
        self.assertLen(found[False]["val_log_loss"], 3)

    def test_diagnostics_give_pretrained_auc_and_logit_change(self):
        """`pretrained_auc`: the pretrained head's AUC on the cold train and validation rows;
        `val_logit_change`: the kept head's validation logits regressed on the pretrained ones.
        Both against formulas written out here, on logits computed here."""
        cold = {split: {k: v[SPLITS[split]["domain"] == COLD] for k, v in SPLITS[split].items()}
                for split in ("train", "validation")}
        pretrained = build("ple")
        pretrain(pretrained)
        pretrained.specialise()
        model, _, method = self.run_method("finetune", "ple", max_epochs=3, patience=3)

        def logits(m, split):
            return m.domain_logit(tf.constant(method.pairs(m, cold[split])), COLD,
                                  training=False).numpy().astype(np.float64)

        found = method.report_diagnostics()["domains"][str(COLD)]
        for split in ("train", "validation"):
            self.assertAlmostEqual(found["pretrained_auc"][split],
                                   pairwise_auc(cold[split][features.LABEL],
                                                logits(pretrained, split)), places=6)
        before, after = logits(pretrained, "validation"), logits(model, "validation")
        self.assertGreater(before.std(), 0.0)
        self.assertGreater(after.std(), 0.0)
        slope = np.mean((before - before.mean()) * (after - after.mean())) / np.var(before)
        pearson = slope * before.std() / after.std()
        moved = found["val_logit_change"]
        self.assertAlmostEqual(moved["slope"], slope, places=4)
        self.assertAlmostEqual(moved["intercept"], after.mean() - slope * before.mean(), places=4)
        self.assertAlmostEqual(moved["pearson"], pearson, places=5)
        self.assertNotAlmostEqual(moved["slope"], 1.0, places=3)

    def test_report_names_the_cold_domain_by_its_value(self):
        """The pipeline's arrays carry each row's raw domain beside its vocabulary index (Douban:
        music is "0" in the log and index 2 in the frequency-ordered vocabulary): report.json and
        the messages name "0" (music), never the index."""
        raw = np.array([b"2", b"1", b"0"], dtype=object)  # index -> the log's value
        splits = {name: {**arrays, slice_column("domain"): raw[arrays["domain"]]}
                  for name, arrays in SPLITS.items()}
        built = protocols.build("per_domain", cold_domains=["0"],
                                domain_names={"0": "music", "1": "book", "2": "movie"})
        ctx = ProtocolContext(built, load=lambda split: splits[split])
        stage = ctx.adaptation_stages[0]
        model = build("fnn_md")
        pretrain(model)
        method = methods.build("finetune", max_epochs=1, patience=1)
        method.warm_up(model, stage, ctx, protocol.TrainConfig())
        found = method.report_diagnostics()["domains"]
        self.assertEqual(list(found), ["0"])
        self.assertEqual(found["0"]["kept_epoch"], 1)
        self.assertEqual(method.domain_label(COLD), "0 (music)")

    def test_stop_on_auc_keeps_the_epoch_of_best_validation_auc(self):
        """stop_on=auc: the kept head's AUC on the cold validation rows, counted here pair by
        pair, is the best of the scored epochs, and the kept epoch is that one."""
        model, _, method = self.run_method("finetune", "fnn_md", stop_on="auc", max_epochs=6,
                                           patience=6)
        found = method.report_diagnostics()["domains"][str(COLD)]
        val = SPLITS["validation"]
        rows = {k: v[val["domain"] == COLD] for k, v in val.items()}
        logits = model.domain_logit(tf.constant(method.pairs(model, rows)), COLD,
                                    training=False).numpy()
        counted = pairwise_auc(rows[features.LABEL], logits)
        self.assertLen(found["val_auc"], 6)
        self.assertNotIn("val_log_loss", found)
        self.assertAlmostEqual(counted, max(found["val_auc"]), places=6)
        self.assertEqual(found["kept_epoch"], int(np.argmax(found["val_auc"])) + 1)

    def test_stop_on_auc_needs_both_labels_in_validation(self):
        one_label = dict(SPLITS["validation"])
        one_label[features.LABEL] = np.where(one_label["domain"] == COLD, 0,
                                             one_label[features.LABEL])
        ctx, stage = context({**SPLITS, "validation": one_label})
        model = build("fnn_md")
        with self.assertRaisesRegex(ValueError, "finetune: stop_on=auc, but domain 2's "
                                                "validation rows hold one label only"):
            methods.build("finetune", stop_on="auc").warm_up(model, stage, ctx,
                                                             protocol.TrainConfig())

    def test_single_trains_a_fresh_model_on_the_cold_domain(self):
        model, before, _ = self.run_method("single", "mmoe", max_epochs=3)
        self.assertTrue(all(not np.array_equal(var.numpy(), value)  # replaced, not fine-tuned
                            for var, value in zip(model.variables, before)
                            if "tower_0" in var.name))

    def test_plain_backbone_is_a_clear_error(self):
        tf.keras.utils.set_random_seed(0)
        model = backbones.build("fnn", CONFIG, VOCAB)
        ctx, stage = context()
        with self.assertRaisesRegex(ValueError, "diffmsr: backbone fnn is not a multi-scenario"):
            methods.build("diffmsr").warm_up(model, stage, ctx, protocol.TrainConfig())

    def test_options_are_checked(self):
        with self.assertRaisesRegex(ValueError, "t_lo and t_hi are both -1"):
            methods.build("diffmsr", t_lo=3)
        with self.assertRaisesRegex(ValueError, r"noise_steps \(70\) must be at most T \(60\)"):
            methods.build("diffmsr", T=60)
