"""Contract of every cold-start method: it trains, writes only new items' rows, is seeded."""
from unittest import mock

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from tests import fixtures
from tests.test_backbones import build
from trainer import features, methods, protocol, task
from trainer.context import ProtocolContext

CONFIG = protocol.TrainConfig(batch_size=64)
GENERATORS = [("csdm", "csdm"), ("cvar", "cvar")]
# Methods that write generated rows into the pretrained table, with options for a short run.
WRITERS = [("csdm", "csdm", {"iters": 2}), ("cvar", "cvar", {"iters": 2}),
           ("metae", "metae", {}), ("mwuf", "mwuf", {})]


def loss_trend(name, **options):
    """Mean training loss of the first and last 4 batches of the preparation on `base`, on a
    backbone pretrained there (an untrained one barely depends on the item embedding)."""
    method = methods.build(name, seed=0, **options)
    splits = fixtures.cold_start_splits(rows=1024)
    model = task.pretrain("deepfm", features.MOVIELENS, fixtures.VOCAB, splits["base"],
                          protocol.TrainConfig(batch_size=64, learning_rate=1e-2), seed=0)
    protocol.seed_everything(0)
    method.prepare(model, ProtocolContext.in_memory(splits), CONFIG)
    losses = np.array(method.losses, dtype=np.float64).reshape(len(method.losses), -1)[:, -1]
    return np.mean(losses[:4]), np.mean(losses[-4:])


def prepared_table(name, backbone="deepfm", **options):
    model = build(backbone)
    before = model.item_table.numpy().copy()
    splits = fixtures.cold_start_splits()
    protocol.seed_everything(0)
    methods.build(name, seed=0, **options).prepare(model, ProtocolContext.in_memory(splits), CONFIG)
    return before, model.item_table.numpy(), splits


class GeneratorMethodTest(tf.test.TestCase, parameterized.TestCase):

    def test_registry(self):
        self.assertEqual(sorted(methods.METHODS), ["aqcl", "base", "csdm", "cvar", "deepmcp", "diff",
                                                   "diffmsr", "dmr", "dropoutnet", "dropoutnet_reg",
                                                   "emerg", "finetune", "icl", "metae", "mwuf",
                                                   "single", "velf"])
        self.assertIs(methods.method_class("csdm/variant"), methods.METHODS["csdm"])
        with self.assertRaisesRegex(ValueError, "unknown cold-start method 'nope'"):
            methods.build("nope")

    @parameterized.named_parameters(("csdm", "csdm", {"iters": 1}), ("cvar", "cvar", {"iters": 1}),
                                    ("metae", "metae", {"epochs": 4}), ("mwuf", "mwuf", {}))
    def test_loss_decreases(self, name, options):
        first, last = loss_trend(name, **options)
        self.assertLess(last, first)

    @parameterized.named_parameters(*WRITERS)
    def test_writes_only_new_items(self, name, options):
        before, after, splits = prepared_table(name, **options)
        new = np.unique(splits["warm_a"]["item_id"])
        old = np.setdiff1d(np.arange(len(before)), new)
        self.assertAllEqual(after[old], before[old])
        self.assertTrue(np.all(np.abs(after[new] - before[new]).max(axis=1) > 0))

    @parameterized.named_parameters(*WRITERS, ("velf", "velf", {}))
    def test_deterministic_under_a_fixed_seed(self, name, options):
        self.assertAllEqual(prepared_table(name, **options)[1], prepared_table(name, **options)[1])

    @parameterized.named_parameters(*WRITERS, ("velf", "velf", {}), ("dropoutnet", "dropoutnet", {}))
    def test_runs_on_other_backbones(self, name, options):
        for backbone in ("dcn", "ipnn"):
            before, after, splits = prepared_table(name, backbone, **options)
            new = np.unique(splits["warm_a"]["item_id"])
            self.assertTrue(np.all(np.isfinite(after)))
            self.assertGreater(np.abs(after[new] - before[new]).max(), 0)

    @parameterized.named_parameters(*GENERATORS)
    def test_cumulative_warm_rounds_see_every_warm_split_so_far(self, name):
        splits = fixtures.cold_start_splits()  # 256 rows per warm split: 4 batches of 64
        batches = {}
        for warm_data in ("current", "cumulative"):
            method = methods.build(name, seed=0, iters=1, warm_epochs=1, warm_data=warm_data)
            model = build("deepfm")
            method.prepare(model, ProtocolContext.in_memory(splits), CONFIG)
            before = len(method.losses)
            fixtures.after_warm(method, model, splits, "warm_b", CONFIG)
            batches[warm_data] = len(method.losses) - before
        self.assertEqual(batches, {"current": 4, "cumulative": 8})
        with self.assertRaisesRegex(ValueError, "warm_data must be current or cumulative"):
            methods.build(name, warm_data="all")

    @parameterized.named_parameters(*GENERATORS)
    def test_init_only_skips_warm_rounds(self, name):
        model = build("deepfm")
        splits = fixtures.cold_start_splits()
        method = methods.build(name, seed=0, iters=1, init_only=True)
        method.prepare(model, ProtocolContext.in_memory(splits), CONFIG)
        rounds = len(method.losses)
        table = model.item_table.numpy().copy()
        fixtures.after_warm(method, model, splits, "warm_a", CONFIG)
        self.assertLen(method.losses, rounds)
        self.assertAllEqual(model.item_table.numpy(), table)


def method_variables(method):
    """Every trainable variable the method holds: its Keras layers' and its own tf.Variables."""
    found = []
    for value in vars(method).values():
        if isinstance(value, tf.keras.layers.Layer):
            found += value.trainable_variables
        elif isinstance(value, tf.Variable) and value.trainable:
            found.append(value)
    return found


class RecordedRounds:
    """Wraps protocol.make_optimizer: the variables of each round's optimizer, and the values of
    all the method's variables when each round starts (`finish` adds the final values). A round
    starts with a new optimizer, or with the reset of a reused one (protocol.reused)."""

    def __init__(self, method):
        self.method, self.trained, self.values = method, [], []
        self.make = protocol.make_optimizer

    def __call__(self, config, variables):
        optimizer, variables = self.make(config, variables), list(variables)
        self._start(variables)
        reset, fresh = optimizer.reset, True

        def start_and_reset():
            nonlocal fresh
            if not fresh:  # a reused optimizer (the reset right after making starts nothing)
                self._start(variables)
            fresh = False
            reset()
        optimizer.reset = start_and_reset
        return optimizer

    def _start(self, variables):
        self.trained.append({v.ref() for v in variables})
        self.finish()

    def finish(self):
        self.values.append({v.ref(): v.numpy().copy() for v in method_variables(self.method)})


class TrainedVariablesTest(tf.test.TestCase, parameterized.TestCase):
    """Issue 11.1: every layer of a generator trains from the round on base on."""

    @parameterized.named_parameters(*GENERATORS)
    def test_every_variable_trains_in_every_round(self, name):
        splits = fixtures.cold_start_splits()
        method = methods.build(name, seed=0, iters=1, warm_epochs=1)
        model = build("deepfm")
        rounds = RecordedRounds(method)
        with mock.patch.object(protocol, "make_optimizer", rounds):
            method.prepare(model, ProtocolContext.in_memory(splits), CONFIG)
            for warm in ("warm_a", "warm_b", "warm_c"):
                fixtures.after_warm(method, model, splits, warm, CONFIG)
        rounds.finish()
        everything = {v.ref() for v in method_variables(method)}
        self.assertLen(rounds.trained, 4)
        for index, trained in enumerate(rounds.trained):
            self.assertEqual(trained, everything, f"round {index}")
            start, end = rounds.values[index], rounds.values[index + 1]
            unchanged = [ref.deref().name for ref in everything
                         if np.array_equal(start[ref], end[ref])]
            self.assertEqual(unchanged, [], f"round {index}")
        layers = {"csdm": ["mean_encoder", "mean_encoder_p", "decoder", "denoiser", "side"],
                  "cvar": ["mu", "logvar", "mu_p", "logvar_p", "decoder", "side"]}[name]
        for layer in layers:
            self.assertTrue(getattr(method, layer).trainable_variables, layer)

    @parameterized.named_parameters(("metae", "metae"), ("mwuf", "mwuf"), ("velf", "velf"))
    def test_other_methods_train_every_variable_they_hold(self, name):
        splits = fixtures.cold_start_splits()
        method = methods.build(name, seed=0)
        rounds = RecordedRounds(method)
        with mock.patch.object(protocol, "make_optimizer", rounds):
            method.prepare(build("deepfm"), ProtocolContext.in_memory(splits), CONFIG)
        rounds.finish()
        trained = set().union(*rounds.trained)
        held = method_variables(method)
        self.assertNotEqual(held, [])
        self.assertEqual([v.name for v in held if v.ref() not in trained], [])
        unchanged = [v.name for v in held
                     if np.array_equal(rounds.values[0][v.ref()], rounds.values[-1][v.ref()])]
        self.assertEqual(unchanged, [])


class CVARTest(tf.test.TestCase):

    def test_generated_embedding_uses_side_information_only(self):
        model = build("deepfm")
        splits = fixtures.cold_start_splits()
        method = methods.build("cvar", seed=0, iters=1)
        method.prepare(model, ProtocolContext.in_memory(splits), CONFIG)
        batch = {k: v[:8] for k, v in splits["warm_a"].items()}
        first = method.generate(model, batch, training=False)
        model.item_table.assign(model.item_table * 0 + 3.0)  # e_i does not enter e_p
        self.assertAllClose(first, method.generate(model, batch, training=False))

