"""Training and the stage loop of an evaluation protocol (spec section 3), independent of TFX.

pretrain(all weights, the protocol's pretraining split, 1 epoch) -> for each run, per stage of
the protocol (trainer/protocols): adapt (item phases: train the item-ID table only on the warm
split for 1 epoch), evaluate. Item phases: evaluate(test) = cold; then warm_a, warm_b, warm_c.
Every training call builds a fresh optimizer over the variables it updates; the backbone runs in
training mode (dropout on, BatchNorm on batch statistics, running statistics updated) in every
training loop, frozen or not (spec 3.2, D12, D13).
"""
import dataclasses
import math
import sys
import time
from typing import Callable, Dict, Hashable, List, Optional, Sequence

import numpy as np
import tensorflow as tf

from trainer import features, metrics
from trainer.protocols import slice_column, slice_value
from trainer.optim import TorchAdam

PHASES = ("cold", "warm_a", "warm_b", "warm_c")
Arrays = Dict[str, np.ndarray]


@dataclasses.dataclass
class TrainConfig:
    learning_rate: float = 1e-3
    weight_decay: float = 1e-6
    batch_size: int = 2048
    pretrain_epochs: int = 1
    warm_epochs: int = 1
    # "torch_adam" (default): the reference's PyTorch Adam, coupled L2 on dense gradients, so that
    # never-trained item rows shrink to ~0 as in the reference runs (spec 3.6, D11).
    # "keras_adam": tf.keras Adam with decoupled weight decay (those rows keep their init).
    optimizer: str = "torch_adam"
    # How the frozen backbone runs while only the item-ID table trains: "train" (default, the
    # reference: dropout on, BatchNorm on batch statistics and updating its running statistics,
    # spec D12/D13) or "inference" (the Keras convention for frozen layers).
    frozen_mode: str = "train"
    # Pretraining's early stopping: 0 (default) trains `pretrain_epochs` epochs; P > 0 stops after
    # P epochs without a better validation AUC and keeps the best epoch's weights (diff_msr.md 4:
    # patience 5, at most 100 epochs); `pretrain_epochs` is then the most epochs.
    early_stopping: int = 0

    def __post_init__(self):
        if self.optimizer not in ("torch_adam", "keras_adam"):
            raise ValueError(f"optimizer must be torch_adam or keras_adam, not {self.optimizer!r}")
        if self.frozen_mode not in ("train", "inference"):
            raise ValueError(f"frozen_mode must be train or inference, not {self.frozen_mode!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be above 0, not {self.learning_rate}")
        if not self.weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0, not {self.weight_decay}")
        if self.early_stopping < 0:
            raise ValueError(f"early_stopping (patience in epochs) must be >= 0, not "
                             f"{self.early_stopping}")


class _KerasAdam:
    """tf.keras Adam behind the TorchAdam interface."""

    def __init__(self, variables, learning_rate, weight_decay):
        self.variables = list(variables)
        self.optimizer = tf.keras.optimizers.Adam(learning_rate, weight_decay=weight_decay or None)

    def apply_gradients(self, grads):
        self.optimizer.apply_gradients(
            [(g, v) for g, v in zip(grads, self.variables) if g is not None])

    def reset(self) -> None:
        for variable in self.optimizer.variables:  # iterations and moments
            variable.assign(tf.zeros_like(variable))


class NonFiniteLoss(RuntimeError):
    """A training loss, predictions or generated embeddings that are NaN or infinite. Training
    loops raise it at the first such step; `method` and `seed` are filled in by the caller that
    knows them (WarmupEvaluate, the Trainer), so the message names the whole cell."""

    def __init__(self, phase: str, step: int, value, what: str = "loss",
                 method: Optional[str] = None, seed: Optional[int] = None):
        super().__init__()
        self.phase, self.step, self.value, self.what = phase, step, value, what
        self.method, self.seed = method, seed

    def attach(self, method: Optional[str] = None, seed: Optional[int] = None) -> "NonFiniteLoss":
        """Fills in the method and seed where they are still unknown."""
        self.method = self.method if self.method is not None else method
        self.seed = self.seed if self.seed is not None else seed
        return self

    def __str__(self) -> str:
        return (f"non-finite {self.what} ({self.value}): method {self.method or '?'}, seed "
                f"{'?' if self.seed is None else self.seed}, phase {self.phase}, step {self.step}")


def check_finite(values, phase: str, step: int = 0, what: str = "loss") -> None:
    """Raises NonFiniteLoss unless every entry of `values` is finite (one host sync)."""
    values = np.asarray(values)
    if not np.all(np.isfinite(values)):
        raise NonFiniteLoss(phase, step, values[~np.isfinite(values)].flat[0], what)


def make_optimizer(config: TrainConfig, variables):
    if config.optimizer == "keras_adam":
        return _KerasAdam(variables, config.learning_rate, config.weight_decay)
    return TorchAdam(variables, config.learning_rate, config.weight_decay)


def seed_everything(seed: int) -> None:
    """Python, numpy and TensorFlow seeds, and deterministic TensorFlow kernels."""
    tf.keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def bce_from_logits(labels, logits):
    return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(
        labels=tf.cast(labels, tf.float32), logits=logits))


def batches(arrays: Arrays, batch_size: int, seed: Optional[int]) -> tf.data.Dataset:
    """Shuffled (seed given) or ordered batches; the last batch may be short (drop_last=False)."""
    dataset = tf.data.Dataset.from_tensor_slices(arrays)
    if seed is not None:
        n = len(next(iter(arrays.values())))
        dataset = dataset.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size).prefetch(2)


def ensure_built(model: tf.keras.Model, arrays: Arrays) -> None:
    if not model.built:
        model({k: v[:2] for k, v in arrays.items()}, training=False)


class AnyBatch:
    """`fn(batch, *static)` as a tf.function traced once per batch structure (names, dtypes,
    inner shapes) and value of `static` (Python values), with the batch dimension unknown, so
    the short last batch needs no second trace. `options`: tf.function's (e.g. jit_compile)."""

    def __init__(self, fn: Callable, **options):
        self.fn, self.options, self.functions = fn, options, {}

    def __call__(self, batch, *static):
        key = (tuple((name, value.dtype, tuple(value.shape[1:])) for name, value in
                     sorted(batch.items())), static)
        if key not in self.functions:
            signature = {name: tf.TensorSpec([None, *value.shape[1:]], value.dtype)
                         for name, value in batch.items()}
            self.functions[key] = tf.function(lambda b: self.fn(b, *static),
                                              input_signature=[signature], **self.options)
        return self.functions[key](batch)

    def tracing_count(self) -> int:
        return sum(f.experimental_get_tracing_count() for f in self.functions.values())


def reused(model: tf.keras.Model, key: Hashable, build: Callable):
    """`build()` once per (model, key), then the same object: a model's traced training step and
    forward pass serve every later stage (speed, issue 12: tracing a fresh tf.function per call,
    and again for the short last batch, was most of the warm-up time). Kept in the model's
    __dict__, outside Keras' tracking, so that it is not saved with the model."""
    functions = model.__dict__.setdefault("_coldstart_functions", {})
    if key not in functions:
        functions[key] = build()
    return functions[key]


def train(model: tf.keras.Model, arrays: Arrays, variables: Sequence[tf.Variable],
          config: TrainConfig, epochs: int, seed: int, log: Optional["Progress"] = None,
          training: bool = True, loss_fn: Optional[Callable] = None,
          batch_flag: Optional[Callable[[int, int], Hashable]] = None,
          phase: str = "train",
          after_epoch: Optional[Callable[[int], bool]] = None) -> List[float]:
    """Trains `variables` of `model` on `arrays` with a fresh optimizer; returns the mean loss of
    each epoch. `training`: the mode the whole model runs in (dropout, BatchNorm). The first
    non-finite loss raises NonFiniteLoss naming `phase` and the step (counted from 0).
    `after_epoch(epoch)` runs after each epoch; True stops training there.

    `loss_fn(batch, flag)` replaces the default BCE of `model(batch)`; `flag` is
    `batch_flag(epoch, index)`, a Python value chosen per batch (one trace per distinct value).
    A variable that gets no gradient from a loss is not updated by that step.
    """
    ensure_built(model, arrays)

    def build():
        optimizer = make_optimizer(config, variables)
        loss = loss_fn or (lambda batch, flag: bce_from_logits(
            batch[features.LABEL], model(batch, training=training)))

        def step(batch, flag=None):
            with tf.GradientTape() as tape:
                value = loss(batch, flag)
            optimizer.apply_gradients(tape.gradient(value, variables))
            return value
        return AnyBatch(step), optimizer

    if loss_fn is None:  # the default loss: one traced step per (model, variables, mode)
        step, optimizer = reused(model, ("train", tuple(v.ref() for v in variables), training,
                                         config.optimizer, config.learning_rate,
                                         config.weight_decay), build)
        optimizer.reset()
        batch_flag = None  # the default loss reads no flag
    else:
        step, optimizer = build()

    losses, steps = [], 0
    for epoch in range(epochs):
        total, count = 0.0, 0
        for index, batch in enumerate(batches(arrays, config.batch_size, seed + epoch)):
            loss = float(step(batch, batch_flag(epoch, index)) if batch_flag else step(batch))
            if not math.isfinite(loss):
                raise NonFiniteLoss(phase, steps, loss)
            total, count, steps = total + loss, count + 1, steps + 1
            if log:
                log.batch(epoch, index, loss)
        losses.append(total / max(count, 1))
        if after_epoch and after_epoch(epoch):
            break
    return losses


class BestWeights:
    """Early stopping's bookkeeping: `update(score)` after each epoch (higher is better) keeps the
    values of `variables` at the best score so far and returns True once `patience` epochs have
    passed without a better one; `restore()` puts the kept values back (none kept: no change)."""

    def __init__(self, variables: Sequence[tf.Variable], patience: int):
        self.variables, self.patience = list(variables), patience
        self.scores: List[float] = []
        self.best_index, self._best, self._values = -1, -math.inf, None

    def update(self, score: float) -> bool:
        self.scores.append(score)
        if score > self._best:
            self.best_index, self._best = len(self.scores) - 1, score
            self._values = [v.numpy() for v in self.variables]
        return len(self.scores) - 1 - self.best_index >= self.patience

    def restore(self) -> None:
        for variable, value in zip(self.variables, self._values or []):
            variable.assign(value)


def predict(model: tf.keras.Model, arrays: Arrays, batch_size: int = 8192) -> np.ndarray:
    """Click probabilities in eval mode."""
    ensure_built(model, arrays)
    forward = reused(model, ("predict",), lambda: AnyBatch(
        lambda batch: tf.sigmoid(model(batch, training=False))))
    return np.concatenate([forward(b).numpy() for b in batches(arrays, batch_size, None)])


def _metrics(labels: np.ndarray, scores: np.ndarray) -> Dict[str, float]:
    """AUC (None where the rows hold one class only: it is undefined), F1 and the row count."""
    one_class = len(np.unique(labels)) < 2
    return {"auc": None if one_class else metrics.auc(labels, scores),
            "f1": metrics.f1_at_mean(labels, scores), "rows": int(len(labels))}


def evaluate(model: tf.keras.Model, arrays: Arrays, scores_out: Optional[list] = None,
             slice_features: Sequence[str] = ()) -> Dict[str, Dict[str, float]]:
    """{"overall": {auc, f1, rows}} on `arrays`, plus one entry per value of each slice feature
    (its raw value, as text); the scores are appended to `scores_out` when given."""
    scores = predict(model, arrays)
    check_finite(scores, "evaluate", what="prediction")
    if scores_out is not None:
        scores_out.append(scores)
    labels = arrays[features.LABEL]
    out = {"overall": _metrics(labels, scores)}
    for feature in slice_features:
        column = arrays[slice_column(feature)]
        for value in np.unique(column):
            rows = column == value
            out[slice_value(value)] = _metrics(labels[rows], scores[rows])
    return out


def stage_variables(model, stage, data: Arrays) -> List[tf.Variable]:
    """What the protocol trains in `stage` when a method does not own the adaptation."""
    if stage.trains == "item_table":
        return model.item_id_variables()
    if stage.trains == "domain":
        if not hasattr(model, "domain_variables"):
            raise ValueError(f"stage {stage.name} trains a domain's own parameters, and backbone "
                             f"{getattr(model, 'registry_name', type(model).__name__)} has none "
                             "(use a multi-scenario backbone, or no cold domains)")
        feature = stage.adapt_where[0]
        return [v for d in np.unique(data[feature]) for v in model.domain_variables(int(d))]
    raise ValueError(f"stage {stage.name} trains {stage.trains!r}: nothing the protocol knows")


def warm_up_and_evaluate(model: tf.keras.Model, context, config: TrainConfig, seed: int,
                         method=None, log: Optional["Progress"] = None,
                         scores_out: Optional[list] = None) -> Dict[str, Dict[str, Dict[str, float]]]:
    """The stage loop of the protocol of `context` (trainer/context.ProtocolContext; item phases:
    spec 3.2); returns {stage: {slice: {auc, f1}}} (slice "overall" and one per slice-feature
    value). `method`: a ColdStartMethod. `scores_out` (optional) receives the scores of each
    stage's evaluation, in stage order."""
    seed_everything(seed)
    if method is not None:  # a method may bring its own model (e.g. EmerG): evaluate that one
        model = method.prepare(model, context, config) or model
    slice_features = [f for f in context.protocol.slice_features if f != "phase"]
    results = {}
    for index, stage in enumerate(context.stages):
        if stage.adapt_split:
            if log:
                log.start(f"warm-up on {stage.name}")
            if method is not None and method.owns_warm_up:
                method.warm_up(model, stage, context, config)
            else:
                data = context.adaptation_data(stage)
                variables = stage_variables(model, stage, data)
                if stage.trains == "domain":  # pre-train & fine-tune family: own head per domain
                    model.specialise()
                train(model, data, variables, config,
                      config.warm_epochs, seed=seed + 1000 * index, log=log,
                      training=config.frozen_mode == "train", phase=f"warm-up on {stage.name}")
            if method is not None:
                method.after_warm(model, stage, context, config)
        results[stage.name] = evaluate(model, context.split(stage.evaluate_split), scores_out,
                                       slice_features)
        if log:
            log.phase = "evaluate"
            overall = results[stage.name]["overall"]
            log.note(f"{stage.name}: auc {overall['auc']:.4f} f1 {overall['f1']:.4f}")
    return results


class Progress:
    """Line-oriented progress (readable in CI logs): one line per phase and every `every` batches."""

    def __init__(self, prefix: str = "", every: int = 50, stream=sys.stderr):
        self.prefix, self.every, self.stream = prefix, every, stream
        self.t0 = time.time()
        self.phase = ""

    def start(self, phase: str) -> None:
        self.phase = phase
        self.note("start")

    def batch(self, epoch: int, index: int, loss: float) -> None:
        if index % self.every == 0:
            self.note(f"epoch {epoch} batch {index} loss {loss:.4f}")

    def note(self, text: str) -> None:
        print(f"[{time.time() - self.t0:7.1f}s] {self.prefix}{self.phase}: {text}",
              file=self.stream, flush=True)
