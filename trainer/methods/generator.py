"""Shared machinery of the generator methods (CVAR, CSDM): side information, the generator round
and the overwrite of new items' rows (spec 4, 4.5, 4.6.9); side information from the backbone's
tables and row writes for the other methods.

Schedule (spec fact 6/7):
  prepare:    round(base, epochs=1)              -> overwrite new items (warm_a's items)
  after_warm: round(warm_x, epochs=warm_epochs)  -> overwrite   (skipped when init_only)
A round builds a fresh optimizer over the generator's variables and takes `iters` steps on each
batch. The backbone stays frozen and runs in the protocol's frozen mode.
"""
from typing import Dict, List

import numpy as np
import tensorflow as tf

from trainer import features, protocol
from trainer.methods.base import ColdStartMethod

keras = tf.keras


def uniform_001():
    return keras.initializers.RandomUniform(-0.01, 0.01)


class SideInfo(keras.layers.Layer):
    """s(x): the item's side information from private N(0,1) tables (spec 4, D16).

    One 16-d embedding per spr item feature, the sum over positions for seq features (padding
    included, as the backbone), and the raw value of ctn features, in `item_side` order.
    """

    def __init__(self, config: features.FeatureConfig, vocab_sizes: Dict[str, int], dim: int = 16,
                 **kwargs):
        super().__init__(**kwargs)
        self.fields = [config.field(name) for name in config.item_side]
        self.tables = {
            f.name: keras.layers.Embedding(vocab_sizes[f.name], dim, name=f"warmup_{f.name}",
                                           embeddings_initializer=keras.initializers.RandomNormal(0, 1))
            for f in self.fields if f.kind != "ctn"}
        self.size = sum(dim if f.kind != "ctn" else 1 for f in self.fields)

    def call(self, batch):
        parts = []
        for f in self.fields:
            if f.kind == "ctn":
                parts.append(tf.cast(batch[f.name], tf.float32)[:, None])
            else:
                vectors = self.tables[f.name](batch[f.name])
                parts.append(tf.reduce_sum(vectors, axis=1) if f.kind == "seq" else vectors)
        return tf.concat(parts, axis=1)


def backbone_side_info(backbone, batch, exclude=()) -> tf.Tensor:
    """s(x) from the backbone's own tables (Meta-Embedding, MWUF, VELF; spec 4, D16): the
    embedding of each spr item feature, the sum over positions for seq ones, and the raw value of
    ctn ones, in `item_side` order, leaving out the fields in `exclude`."""
    parts = []
    for name in backbone.config.item_side:
        if name in exclude:
            continue
        if backbone.config.field(name).kind == "ctn":
            parts.append(tf.cast(batch[name], tf.float32)[:, None])
        else:
            parts.append(backbone.embed(name, batch[name]))
    return tf.concat(parts, axis=1)


def torch_linear(units: int, fan_in: int, name: str, activation=None) -> keras.layers.Dense:
    """Dense with PyTorch's default Linear init: weights and biases U(+-1/sqrt(fan_in))."""
    bound = 1.0 / np.sqrt(fan_in)
    return keras.layers.Dense(
        units, activation=activation, name=name,
        kernel_initializer=keras.initializers.VarianceScaling(1.0 / 3, "fan_in", "uniform"),
        bias_initializer=keras.initializers.RandomUniform(-bound, bound))


def write_rows(backbone, item_ids: np.ndarray, vectors, phase: str) -> None:
    """backbone.item_table[item_ids[r]] := vectors[r]; refuses (NonFiniteLoss) non-finite
    vectors before anything is written."""
    protocol.check_finite(vectors, phase, what="generated embedding")
    backbone.item_table.scatter_nd_update(np.asarray(item_ids)[:, None], vectors)


def write_last_per_item(backbone, item_ids: np.ndarray, vectors: np.ndarray,
                        phase: str = "overwrite") -> None:
    """backbone.item_table[item_ids[r]] := vectors[r] for r in order: the last write per item
    wins, as in the reference's batch-by-batch overwrite (spec 4, "overwrite")."""
    reversed_ids = item_ids[::-1]
    items, first_in_reversed = np.unique(reversed_ids, return_index=True)
    rows = len(item_ids) - 1 - first_in_reversed
    write_rows(backbone, items, tf.gather(vectors, rows), phase)


def first_row_per_item(arrays: protocol.Arrays) -> protocol.Arrays:
    """One row per distinct item (item features are the same on every row of an item)."""
    _, index = np.unique(arrays[features.ITEM_ID], return_index=True)
    return {name: column[index] for name, column in arrays.items()}


class GeneratorMethod(ColdStartMethod):
    """Subclasses define `build_modules`, `generator_loss(backbone, batch, training)` and
    `generate(backbone, batch, training)`; everything else (schedule, rounds, overwrite) is here."""

    defaults = {
        "iters": 10,             # optimizer steps per batch in every round
        "base_iters": 0,         # steps per batch in the first round, on base (0: `iters`)
        "warm_epochs": 2,        # epochs of each warm-phase round
        # *_init variants: no round and no overwrite after the warm phases, so the fine-tuned
        # embeddings of the warm phases are kept (the default overwrites them, spec fact 6, D10).
        "init_only": False,
        # Data of each warm-phase round: "current" (the warm split just seen, the reference) or
        # "cumulative" (every warm split seen so far).
        "warm_data": "current",
        "jit_compile": False,    # XLA for the training step
        "batch_size": 0,         # 0: the protocol's batch size
        # Overwrite with the generator in training mode (dropout on: stochastic, as the reference,
        # D8) or in inference mode (deterministic).
        "overwrite_training": True,
    }
    choices = {"warm_data": ("current", "cumulative")}
    bounds = {"iters": (1, None), "base_iters": (0, None), "warm_epochs": (1, None),
              "batch_size": (0, None)}

    def __init__(self, seed: int = 0, **options):
        super().__init__(seed, **options)
        self.o = self.options
        if self.o["warm_data"] not in ("current", "cumulative"):
            raise ValueError(f"{self.name}: warm_data must be current or cumulative, "
                             f"not {self.o['warm_data']!r}")
        self.built = False
        self.losses: List[float] = []  # last step's loss of every batch, all rounds

    # -- to implement -------------------------------------------------------------------------
    def build_modules(self, backbone) -> None:
        raise NotImplementedError

    def generator_variables(self) -> List[tf.Variable]:
        raise NotImplementedError

    def generator_loss(self, backbone, batch, training: bool) -> tf.Tensor:
        raise NotImplementedError

    def generate(self, backbone, batch, training: bool) -> tf.Tensor:
        raise NotImplementedError

    def build_layers(self, backbone, sample) -> None:
        """Creates every layer's variables before the first round collects them: the loss
        reaches layers that generation does not (CSDM's mean_encoder, CVAR's mu/logvar)."""
        self.generator_loss(backbone, sample, False)
        self.generate(backbone, sample, False)
        self.built = True

    # -- schedule -----------------------------------------------------------------------------
    def prepare(self, backbone, context, config) -> None:
        if not self.built:
            tf.keras.utils.set_random_seed(self.seed)
            self.build_modules(backbone)
            self.build_layers(backbone, {k: v[:2] for k, v in context.pretrain_data.items()})
        self.run_round(backbone, context.pretrain_data, config, epochs=1,
                       iters=self.o["base_iters"] or self.o["iters"], phase="round on base")
        self.overwrite(backbone, context.new_item_rows, config, phase="overwrite after base")

    def after_warm(self, backbone, stage, context, config) -> None:
        if self.o["init_only"]:
            return
        if self.o["warm_data"] == "cumulative":
            arrays = context.seen_adaptation_data(stage)
        else:
            arrays = context.adaptation_data(stage)
        self.run_round(backbone, arrays, config, epochs=self.o["warm_epochs"],
                       iters=self.o["iters"], phase=f"round after {stage.name}")
        self.overwrite(backbone, context.new_item_rows, config,
                       phase=f"overwrite after {stage.name}")

    def run_round(self, backbone, arrays, config, epochs: int, iters: int,
                  phase: str = "round") -> None:
        """`iters` steps per batch; their losses are checked together once per batch (one host
        sync per batch, as before), the first non-finite one raises NonFiniteLoss."""
        variables = self.generator_variables()
        training = config.frozen_mode == "train"

        def build():
            optimizer = protocol.make_optimizer(config, variables)

            def step(batch):
                with tf.GradientTape() as tape:
                    loss = self.generator_loss(backbone, batch, training)
                optimizer.apply_gradients(tape.gradient(loss, variables))
                return loss
            return protocol.AnyBatch(step, jit_compile=self.o["jit_compile"]), optimizer

        # One traced step for every round (a fresh optimizer each round: reset).
        step, optimizer = protocol.reused(backbone, (self, "round", training), build)
        optimizer.reset()

        batch_size = self.o["batch_size"] or config.batch_size
        steps = 0
        for epoch in range(epochs):
            # Distinct per round and epoch (the number of batches seen so far differs each time).
            seed = self.seed + 7919 * (len(self.losses) + 1) + epoch
            for batch in protocol.batches(arrays, batch_size, seed):
                losses = tf.stack([step(batch) for _ in range(iters)]).numpy()
                bad = np.flatnonzero(~np.isfinite(losses))
                if len(bad):
                    raise protocol.NonFiniteLoss(phase, steps + int(bad[0]), losses[bad[0]])
                steps += iters
                self.losses.append(float(losses[-1]))
        if len(self.generator_variables()) != len(variables):
            raise RuntimeError(f"{self.name}: a layer was built during a round, so its variables "
                               "were not trained; build it in build_layers")

    def overwrite(self, backbone, arrays, config, phase: str = "overwrite") -> None:
        """Writes generated embeddings into the item-ID rows of the items in `arrays`."""
        items = first_row_per_item(arrays)
        training = self.o["overwrite_training"] and config.frozen_mode == "train"
        generated = []
        for batch in protocol.batches(items, config.batch_size, None):
            generated.append(self.generate(backbone, batch, training))
        write_rows(backbone, items[features.ITEM_ID], tf.concat(generated, axis=0), phase)
