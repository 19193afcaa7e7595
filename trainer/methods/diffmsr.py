"""Diff-MSR and its comparison rows on the `per_domain` protocol (spec diff_msr.md 4-9, issue 15).

The backbone is a multi-scenario one (trainer/multi_scenario.py), pretrained on every domain's
train rows by the pipeline (stage 1; `mix` is the existing `base` method: that model as it is).
In the protocol's adaptation stage each method trains only `model.domain_variables(d)` of each
cold domain d (shared embedding, shared experts and every other domain stay bit-identical), with
early stopping on d's validation rows and the best weights restored:
- `finetune`: on d's true train rows (spec 4 "Fine-tune"; the cold domain's copy Theta_d);
- `single`: a fresh backbone of the same class trained (every weight) on d's train rows only,
  which then replaces the model's weights (spec 4 "Single"; its other domains mean nothing);
- `diff`: stage 4 without the classifier: true rows plus pure generations (spec 7 "Diff");
- `diffmsr`: stages 2-4: two DDPMs per cold domain (G_0 on its y = 0 rows, G_1 on y = 1) with the
  piece-wise schedule and the 1-D U-Net, the domain classifier on clean and noised embeddings,
  then each fine-tuning step translates the rich rows the classifier judges cold inside the
  noise window into d (first t below 0.5, spec 7.2) and adds pure generations.
The cold domains are the distinct domain values of the stage's adaptation rows (the protocol
keeps only its `cold_domains` there); their number must equal `len(cold_domains)`.

Paper/code discrepancies (spec 11) and decisions (spec 12), each an option:
- 11.1 `diffusion_loss`: "v_l1" (code; the spec's default: it produced the numbers) or "eps_mse"
  (paper eq. 6).
- 11.2 `reverse_from_clean`: False (paper: translation starts from the noised z_t) or True (code).
- 11.3 `reverse_variance`: "posterior" (code, the spec's choice) or "beta_squared" (paper).
- 11.4 `clip_x0`: True (code): x0_hat clipped to [-1, 1]; the clipped fraction is logged.
- 11.5 / 12.6 `balance_classifier`: True (paper: class weights n / (2 n_class)) or False (code).
- 11.6 learning rates: Table 4 (`lr_diffusion` 2e-3, `lr_classifier` 2e-3, `lr_finetune` 5e-4);
  the README commands use 1e-3, 1e-3, 2e-3.
- 11.7 / 12.4 `mix`: "paper" (true : generated = 1 : `gen_ratio`, 3 : 1; the generated part is
  the translated rows first, topped up with pure generations) or "code" (every translated row,
  plus `code_pure` pure generations, plus every true row).
- 11.8 / 12.8: IDs are used as the transformed data gives them in every stage (no shift).
- 12.1: the piece-wise schedule is constant over 51 entries (the code's construction).
- 12.3: the noise window's upper end is exclusive; `t_lo`, `t_hi` = -1 take the backbone's
  family window ((30, 50) pre-train & fine-tune, (20, 40) multi-task).
- 12.5: domain-specific parameters per backbone: trainer/multi_scenario.py.
- 12.10: early stopping on validation AUC (classifier, `single`), summed loss (diffusion),
  log-loss (fine-tuning), as the code.
- 12.11: the heads train in training mode (BatchNorm statistics of the cold head update).
- `keep_pretrained` (finetune, diff, diffmsr; not in the spec): False (the code: the best of the
  fine-tuning epochs is kept, so at least one epoch always lands) or True (the pretrained model is
  scored first and kept when no epoch beats its validation log-loss, i.e. fine-tuning may fall
  back to `mix`). Per cold domain, the report's diagnostics give `kept_epoch` (0: the
  pretrained model), the validation score per scored epoch, the pretrained head's AUC on the
  domain's train and validation rows (`pretrained_auc`), and how the kept head moved the
  validation logits (`val_logit_change`: Pearson and slope against the pretrained ones).
- `stop_on` (finetune, diff, diffmsr; not in the spec): "log_loss" (the code, 12.10) or "auc":
  the fine-tune's early stopping on d's validation AUC (`val_log_loss` or `val_auc` in the
  diagnostics).
- Cost (spec 7, cost note): with `pool_size` 0 every step draws its pure generations anew (the
  code); `pool_size` N > 0 generates N once every `pool_every` epochs (0: once) and each step
  samples from that pool.
"""
import math
import sys
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import tensorflow as tf

from trainer import backbones, diffmsr, features, metrics, protocol
from trainer.diffmsr import early_stopped
from trainer.methods.base import ColdStartMethod, copy_weights, fresh_backbone
from trainer.optim import TorchAdam
from trainer.protocols import slice_column, slice_value

Arrays = Dict[str, np.ndarray]


# The fine-tune's options (finetune, diff, diffmsr; module docstring), with their choices.
FINE_TUNE_DEFAULTS = {"keep_pretrained": False, "stop_on": "log_loss"}
FINE_TUNE_CHOICES = {"stop_on": ("log_loss", "auc")}


def rows_where(arrays: Arrays, keep: np.ndarray) -> Arrays:
    return {k: v[keep] for k, v in arrays.items()}


class DomainMethod(ColdStartMethod):
    """Shared part: the cold domains, embeddings, and the early-stopped fine-tune of d's head."""

    protocols = ("per_domain",)
    owns_warm_up = True
    defaults = {"lr_finetune": 5e-4, "batch_size": 512, "max_epochs": 100, "patience": 5}
    bounds = {"lr_finetune": (0.0, None), "batch_size": (1, None), "max_epochs": (1, None),
              "patience": (1, None)}

    def cold_domains(self, model, stage, context) -> List[int]:
        if not hasattr(model, "domain_variables"):
            raise ValueError(f"{self.name}: backbone {model.registry_name} is not a multi-scenario "
                             f"one (trainer/multi_scenario.py: {', '.join(self.ms_backbones())})")
        data = context.adaptation_data(stage)
        cold = data[model.domain_field]
        ids = sorted(int(d) for d in np.unique(cold))
        wanted = context.protocol.params["cold_domains"]
        if len(ids) != len(wanted):
            raise ValueError(f"{self.name}: the cold domains {wanted} have train rows in "
                             f"{len(ids)} domains ({ids})")
        # the model sees vocabulary indices; messages and report.json name the protocol's values
        raw = data.get(slice_column(model.domain_field))
        self.domain_values = {d: slice_value(raw[np.flatnonzero(cold == d)[0]]) if raw is not None
                              else str(d) for d in ids}
        names = {d: context.protocol.slice_name(v) for d, v in self.domain_values.items()}
        self.domain_labels = {d: v if names[d] == v else f"{v} ({names[d]})"
                              for d, v in self.domain_values.items()}
        return ids

    def domain_label(self, d: int) -> str:
        """`0 (music)`: cold domain index d by its value and the protocol's slice name."""
        return self.domain_labels[d]

    @staticmethod
    def ms_backbones() -> List[str]:
        return sorted(n for n, c in backbones.BACKBONES.items() if getattr(c, "multi_scenario", 0))

    @staticmethod
    def pairs(model, arrays: Arrays, chunk: int = 65536) -> np.ndarray:
        """[N, 2, d] frozen (user, item) embeddings."""
        n = len(arrays[features.LABEL])
        return np.concatenate([model.pair_embedding(
            {k: v[i:i + chunk] for k, v in arrays.items()}).numpy()
            for i in range(0, n, chunk)] or [np.zeros((0, 2, model.embed_dim), np.float32)])

    def validation(self, model, context, d) -> Optional[Arrays]:
        val = context.validation_data
        if val is None:
            return None
        val = rows_where(val, np.asarray(val[model.domain_field]) == d)
        return val if len(val[features.LABEL]) else None

    def validation_score(self, model, d, val: Optional[Arrays], pairs: Optional[np.ndarray]):
        """For early stopping: -(validation log-loss of domain d's head) (spec 7.7), or its
        validation AUC with `stop_on` "auc". `pairs`: the pair embeddings of `val`'s rows."""
        if val is None:
            return None
        labels = val[features.LABEL]
        by_auc = self.options["stop_on"] == "auc"
        if by_auc and len(np.unique(labels)) < 2:
            raise ValueError(f"{self.name}: stop_on=auc, but domain {self.domain_label(d)}'s "
                             f"validation rows hold one label only ({len(labels)} rows)")

        def score():
            logits = self.head_logits(model, d, pairs)
            if by_auc:
                return metrics.auc(labels, logits)
            return -float(protocol.bce_from_logits(labels, logits))
        return score

    @staticmethod
    def head_logits(model, d: int, pairs: np.ndarray, chunk: int = 65536) -> np.ndarray:
        """[N]: domain d's logits of pair embeddings [N, 2, k], inference mode."""
        return np.concatenate([model.domain_logit(tf.constant(pairs[i:i + chunk]), d,
                                                  training=False).numpy()
                               for i in range(0, len(pairs), chunk)] or [np.zeros(0, np.float32)])

    def fine_tune(self, model, d: int, batches: Callable[[int], list], val, phase: str,
                  true: Sequence[np.ndarray]):
        """Trains d's trainable domain variables on `batches(epoch)` = [(pairs, labels)] with BCE
        of `domain_logit(., d, training=True)`; early stopping on `validation_score`, the pretrained
        values a candidate with `keep_pretrained`. Records in `self.diagnostics[d]`: `kept_epoch`
        and the validation scores; `pretrained_auc`, the pretrained head's AUC on d's `true`
        (pairs, labels) train rows and on its validation rows (a large gap: the frozen embeddings
        have memorised the train rows); `val_logit_change` (metrics.logit_change of the
        validation logits, pretrained -> kept)."""
        val_pairs = self.pairs(model, val) if val is not None else None
        before = self.head_logits(model, d, val_pairs) if val is not None else None

        def auc(labels, logits):
            return metrics.auc(labels, logits) if len(np.unique(labels)) == 2 else None

        pretrained_auc = {"train": auc(true[1], self.head_logits(model, d, true[0])),
                          "validation": auc(val[features.LABEL], before) if val is not None
                          else None}
        own = model.domain_variables(d)
        trainable = [v for v in own if v.trainable]
        optimizer = TorchAdam(trainable, self.options["lr_finetune"], weight_decay=0.0)

        @tf.function(reduce_retracing=True)
        def step(pairs, labels):
            with tf.GradientTape() as tape:
                loss = protocol.bce_from_logits(labels, model.domain_logit(pairs, d, training=True))
            optimizer.apply_gradients(tape.gradient(loss, trainable))
            return loss

        count = [0]

        def epoch(e):
            losses = []
            for pairs, labels in batches(e):
                losses.append(float(step(tf.constant(pairs, tf.float32), tf.constant(labels))))
                if not math.isfinite(losses[-1]):
                    raise protocol.NonFiniteLoss(phase, count[0], losses[-1])
                count[0] += 1
            return float(np.mean(losses))

        start = self.options["keep_pretrained"]
        found = early_stopped(epoch, self.validation_score(model, d, val, val_pairs), own,
                              self.options["max_epochs"], self.options["patience"], start)
        log = self.diagnostics.setdefault(d, {})
        if self.options["stop_on"] == "auc":
            log["val_auc"] = found["score"]
        else:
            log["val_log_loss"] = [-s for s in found["score"]]
        # epochs count from 1; 0 is the pretrained model; no validation rows: the last epoch
        log["kept_epoch"] = len(found["train"]) if found["best"] is None \
            else found["best"] + (not start)
        log["pretrained_auc"] = pretrained_auc
        if before is not None:
            log["val_logit_change"] = metrics.logit_change(before,
                                                           self.head_logits(model, d, val_pairs))

    def report_diagnostics(self):
        """Per cold domain: the fine-tune's kept epoch, validation scores, pretrained AUC and
        logit change (diffmsr and diff add rich rows seen and judged cold, and the fraction of
        x0_hat clipped)."""
        found = getattr(self, "diagnostics", None)  # set by warm_up
        return {"domains": {self.domain_values[d]: v for d, v in found.items()}} if found else {}


class FineTune(DomainMethod):
    """`finetune`: d's own parameters on d's true train rows (batches of `batch_size`)."""
    name = "finetune"
    defaults = {**DomainMethod.defaults, **FINE_TUNE_DEFAULTS}
    choices = FINE_TUNE_CHOICES

    def warm_up(self, model, stage, context, config):
        model.specialise()
        self.diagnostics = {}
        cold = context.adaptation_data(stage)
        for d in self.cold_domains(model, stage, context):
            rows = rows_where(cold, np.asarray(cold[model.domain_field]) == d)
            pairs, labels = self.pairs(model, rows), rows[features.LABEL]
            rng = np.random.default_rng(self.seed)
            size = self.options["batch_size"]

            def batches(_, pairs=pairs, labels=labels, rng=rng):
                order = rng.permutation(len(labels))
                return [(pairs[order[i:i + size]], labels[order[i:i + size]])
                        for i in range(0, len(order), size)]

            self.fine_tune(model, d, batches, self.validation(model, context, d),
                           f"{self.name} on domain {self.domain_label(d)}", (pairs, labels))


class Single(DomainMethod):
    """`single`: a fresh backbone (same class and options, seeded) trained on the cold domain's
    train rows only, every weight, lr `lr_single` (Table 4 "learning rate of train"), early
    stopping on its validation AUC; its weights then replace the model's. With several cold
    domains, one model is trained on all of them."""
    name = "single"
    defaults = {**DomainMethod.defaults, "lr_single": 1e-3}
    bounds = {**DomainMethod.bounds, "lr_single": (0.0, None)}

    def warm_up(self, model, stage, context, config):
        self.cold_domains(model, stage, context)
        cold = context.adaptation_data(stage)
        fresh = fresh_backbone(model, self.seed, cold)
        optimizer = TorchAdam(fresh.trainable_variables, self.options["lr_single"], weight_decay=0.0)
        val = context.validation_data
        if val is not None:
            val = rows_where(val, np.isin(val[model.domain_field], np.unique(cold[model.domain_field])))

        @tf.function
        def step(batch):
            with tf.GradientTape() as tape:
                loss = protocol.bce_from_logits(batch[features.LABEL], fresh(batch, training=True))
            optimizer.apply_gradients(tape.gradient(loss, fresh.trainable_variables))
            return loss

        def epoch(e):
            losses = []
            for index, batch in enumerate(protocol.batches(cold, self.options["batch_size"],
                                                           self.seed + e)):
                losses.append(float(step(batch)))
                if not math.isfinite(losses[-1]):
                    raise protocol.NonFiniteLoss(f"{self.name} epoch {e}", index, losses[-1])
            return float(np.mean(losses))

        def score():
            return metrics.auc(val[features.LABEL], protocol.predict(fresh, val))

        has_both = val is not None and 0 < int(np.sum(val[features.LABEL])) < len(val[features.LABEL])
        early_stopped(epoch, score if has_both else None, fresh.variables,
                      self.options["max_epochs"], self.options["patience"])
        copy_weights(fresh, model)


class DiffMSR(DomainMethod):
    """`diffmsr`: stages 2-4 (module docstring)."""
    name = "diffmsr"
    classifier_guided = True
    defaults = {
        **DomainMethod.defaults,
        "T": 500, "schedule": "piecewise", "unet_dim": 16,
        "diffusion_loss": "v_l1", "reverse_variance": "posterior", "clip_x0": True,
        "reverse_from_clean": False, "balance_classifier": True,
        "lr_diffusion": 2e-3, "lr_classifier": 2e-3,
        "diffusion_batch": 512, "classifier_batch": 2048, "classifier_width": 64,
        "diffusion_patience": 5, "classifier_patience": 10, "noise_steps": 70,
        "t_lo": -1, "t_hi": -1, "mix": "paper", "gen_ratio": 1.0 / 3.0, "code_pure": 512,
        "rich_chunk": 5120, "steps_per_epoch": 0, "pool_size": 0, "pool_every": 1,
        "jit_compile": False, **FINE_TUNE_DEFAULTS,
    }
    # Tuned (issue 17): the true : generated mix and the fine-tuning rate.
    search_space = {"gen_ratio": {"type": "float", "min": 0.1, "max": 1.0},
                    "lr_finetune": {"type": "float", "min": 1e-4, "max": 1e-2, "sampling": "log"}}
    choices = {"schedule": diffmsr.SCHEDULES, "diffusion_loss": diffmsr.LOSSES,
               "reverse_variance": diffmsr.VARIANCES, "mix": ("paper", "code"),
               **FINE_TUNE_CHOICES}
    bounds = {**DomainMethod.bounds, "T": (2, None), "unet_dim": (4, None),
              "lr_diffusion": (0.0, None), "lr_classifier": (0.0, None),
              "diffusion_batch": (1, None), "classifier_batch": (1, None),
              "classifier_width": (1, None), "diffusion_patience": (1, None),
              "classifier_patience": (1, None), "noise_steps": (1, None), "t_lo": (-1, None),
              "t_hi": (-1, None), "gen_ratio": (0.0, None), "code_pure": (0, None),
              "rich_chunk": (1, None), "steps_per_epoch": (0, None), "pool_size": (0, None),
              "pool_every": (0, None)}

    @classmethod
    def check(cls, options):
        if (options["t_lo"] == -1) != (options["t_hi"] == -1):
            raise ValueError("t_lo and t_hi are both -1 (the backbone's window) or both set")
        if options["t_lo"] != -1 and not 0 <= options["t_lo"] < options["t_hi"] <= options["T"]:
            raise ValueError(f"need 0 <= t_lo < t_hi <= T, not {options['t_lo']}, "
                             f"{options['t_hi']}, T={options['T']}")
        if options["noise_steps"] > options["T"]:
            raise ValueError(f"noise_steps ({options['noise_steps']}) must be at most T "
                             f"({options['T']})")
        if options["schedule"] == "piecewise" and options["T"] <= 50:
            raise ValueError("the piece-wise schedule needs T > 50")

    # -- stages 2 and 3 ---------------------------------------------------------------------------
    def schedule(self) -> diffmsr.Schedule:
        return diffmsr.Schedule(diffmsr.make_betas(self.options["schedule"], self.options["T"]))

    def train_diffusion(self, z_train, z_val, seed) -> diffmsr.Diffusion:
        o = self.options
        tf.keras.utils.set_random_seed(seed)
        unet = diffmsr.UNet1D(o["unet_dim"])
        diffusion = diffmsr.Diffusion(self.schedule(), diffmsr.unet_net(unet), o["diffusion_loss"],
                                      o["clip_x0"], o["reverse_variance"], o["jit_compile"],
                                      tuple(z_train.shape[1:]))
        diffusion.loss(tf.constant(z_train[:1]), tf.constant([0]), tf.constant(z_train[:1]))
        diffmsr.fit_diffusion(diffusion, unet.trainable_variables, z_train, z_val,
                              o["lr_diffusion"], o["diffusion_batch"], o["max_epochs"],
                              o["diffusion_patience"], seed)
        return diffusion

    def train_classifier(self, model, context, cold_ids):
        o = self.options
        tf.keras.utils.set_random_seed(self.seed)
        train = context.pretrain_data
        rich = (~np.isin(train[model.domain_field], cold_ids)).astype(np.int64)
        val = context.validation_data
        z_val = rich_val = None
        if val is not None:
            z_val = self.pairs(model, val)
            rich_val = (~np.isin(val[model.domain_field], cold_ids)).astype(np.int64)
        net = diffmsr.classifier((o["classifier_width"],) * 2)
        diffmsr.fit_classifier(net, self.schedule(), self.pairs(model, train), rich, z_val,
                               rich_val, o["balance_classifier"], o["noise_steps"],
                               o["lr_classifier"], o["classifier_batch"], o["max_epochs"],
                               o["classifier_patience"], self.seed)
        return net

    # -- stage 4 ----------------------------------------------------------------------------------
    def window(self, model):
        if self.options["t_lo"] >= 0:
            return self.options["t_lo"], self.options["t_hi"]
        return model.noise_window

    def generate(self, generators, labels: np.ndarray, seed: int):
        """Pure generations (spec 7.4): for each label y, as many samples of G_y as `labels`
        holds y's. Returns (pairs, labels)."""
        pairs, out = [], []
        for y, g in enumerate(generators):
            n = int(np.sum(labels == y))
            if n:
                z, clipped = g.generate(n, seed * 2 + y)
                self.clipped.append(float(clipped))
                pairs.append(z.numpy())
                out.append(np.full(n, y, np.int64))
        if not pairs:
            return np.zeros((0, *generators[0].shape), np.float32), np.zeros(0, np.int64)
        return np.concatenate(pairs), np.concatenate(out)

    def translated(self, model, classifier, generators, z0, labels, limit, seed, rng):
        """Rich rows judged cold in the window, at most `limit` of them (None: all), translated
        by G_y from their start time (spec 7.2-7.3). Returns (pairs, labels)."""
        t_lo, t_hi = self.window(model)
        eps = rng.standard_normal(z0.shape).astype(np.float32)
        schedule = generators[0].schedule
        t_sel = diffmsr.select_start_times(classifier, schedule, tf.constant(z0), tf.constant(eps),
                                           t_lo, t_hi).numpy()
        chosen = np.flatnonzero(t_sel >= 0)
        self.selected.append((len(chosen), len(z0)))
        if limit is not None:
            chosen = chosen[:limit]
        pairs, out = [], []
        for y, g in enumerate(generators):
            rows = chosen[labels[chosen] == y]
            if len(rows):
                z, clipped = diffmsr.translate(g, tf.constant(z0[rows]), tf.constant(eps[rows]),
                                               tf.constant(t_sel[rows], tf.int32), seed * 2 + y,
                                               self.options["reverse_from_clean"])
                self.clipped.append(float(clipped))
                pairs.append(z.numpy())
                out.append(np.full(len(rows), y, np.int64))
        if not pairs:
            return np.zeros((0, *z0.shape[1:]), np.float32), np.zeros(0, np.int64)
        return np.concatenate(pairs), np.concatenate(out)

    def warm_up(self, model, stage, context, config):
        cold_ids = self.cold_domains(model, stage, context)
        model.specialise()
        # per cold domain: rich rows judged cold (spec 7.2), fraction of x0_hat clipped (11.4)
        self.clipped, self.selected, self.diagnostics = [], [], {}
        classifier = self.train_classifier(model, context, cold_ids) if self.classifier_guided \
            else None
        train = context.pretrain_data
        rich = rows_where(train, ~np.isin(train[model.domain_field], cold_ids))
        z_rich, y_rich = self.pairs(model, rich), rich[features.LABEL]
        cold = context.adaptation_data(stage)
        for d in cold_ids:
            rows = rows_where(cold, np.asarray(cold[model.domain_field]) == d)
            z_true, y_true = self.pairs(model, rows), rows[features.LABEL]
            val = self.validation(model, context, d)
            z_val = self.pairs(model, val) if val is not None else None
            generators = []
            for y in (0, 1):
                if not np.any(y_true == y):
                    raise ValueError(f"{self.name}: cold domain {self.domain_label(d)} has no "
                                     f"train rows with label {y}, so G_{y} cannot be trained")
                val_y = z_val[val[features.LABEL] == y] if val is not None else None
                generators.append(self.train_diffusion(z_true[y_true == y], val_y,
                                                       self.seed * 10 + 2 * d + y))
            batches = self.mixed_batches(model, classifier, generators, z_true, y_true, z_rich,
                                         y_rich, d)
            self.fine_tune(model, d, batches, val, f"{self.name} on domain {self.domain_label(d)}",
                           (z_true, y_true))
            self.diagnostics[d].update(
                rich_seen=sum(n for _, n in self.selected),
                rich_judged_cold=sum(c for c, _ in self.selected),
                clipped_fraction=float(np.mean(self.clipped)) if self.clipped else 0.0)
            print(f"{self.name} domain {self.domain_label(d)}: {self.diagnostics[d]}",
                  file=sys.stderr, flush=True)
            self.clipped, self.selected = [], []

    def mixed_batches(self, model, classifier, generators, z_true, y_true, z_rich, y_rich, d):
        """batches(epoch) yields one step per rich chunk: (translated + true + pure, labels)."""
        o = self.options
        rng = np.random.default_rng(self.seed * 1000 + d)
        steps = o["steps_per_epoch"] or max(1, math.ceil(len(y_rich) / o["rich_chunk"]))
        n_gen = int(round(o["gen_ratio"] * len(y_true)))
        pool = {}
        counter = [0]

        def pure(n, epoch):
            labels = y_true[rng.integers(0, len(y_true), n)]
            if not o["pool_size"]:
                counter[0] += 1
                return self.generate(generators, labels, self.seed * 100003 + counter[0])
            if "pairs" not in pool or (o["pool_every"] and epoch % o["pool_every"] == 0
                                       and pool["epoch"] != epoch):
                pool["pairs"], pool["labels"] = self.generate(
                    generators, y_true[rng.integers(0, len(y_true), o["pool_size"])],
                    self.seed * 100003 + epoch)
                pool["epoch"] = epoch
            take = rng.integers(0, len(pool["labels"]), n)
            return pool["pairs"][take], pool["labels"][take]

        def batches(epoch):
            order = rng.permutation(len(y_rich))
            for s in range(steps):
                parts = [(z_true, y_true)]
                if self.classifier_guided and len(y_rich):
                    chunk = order[(s * o["rich_chunk"]) % len(order):][:o["rich_chunk"]]
                    limit = n_gen if o["mix"] == "paper" else None
                    counter[0] += 1
                    parts.insert(0, self.translated(model, classifier, generators, z_rich[chunk],
                                                    y_rich[chunk], limit,
                                                    self.seed * 100003 + counter[0], rng))
                n_pure = (max(0, n_gen - len(parts[0][1])) if self.classifier_guided else n_gen) \
                    if o["mix"] == "paper" else o["code_pure"]
                if n_pure:
                    parts.append(pure(n_pure, epoch))
                yield (np.concatenate([p for p, _ in parts]).astype(np.float32),
                       np.concatenate([y for _, y in parts]).astype(np.int64))

        return batches


class Diff(DiffMSR):
    """`diff`: Diff-MSR without the classifier: true rows plus pure generations (spec 7)."""
    name = "diff"
    classifier_guided = False
