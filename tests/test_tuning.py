"""The Tuner (issue 17): search spaces checked before any work, the YAML override, searches with a
cheap exact objective, the best_hyperparameters round trip, the TFX executor on real files, and
the item-phase objective's isolation from the final view (its test split and new items)."""
import json
import math
import os
import tempfile
import types
from unittest import mock

import keras_tuner as kt
import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io
from tfx.components.tuner import executor as tuner_executor
from tfx.dsl.components.base import base_executor
from tfx import types as tfx_types
from tfx.types import standard_artifacts, standard_component_specs

from components import tuner_module
from pipeline import report as report_lib
from tests import fixtures
from trainer import data, features, method_tuner, methods, protocol, protocols, task, tuning
from trainer.context import ProtocolContext

TUNED = ("csdm", "cvar", "dropoutnet", "emerg", "metae", "velf")


def write_yaml(text):
    path = os.path.join(tempfile.mkdtemp(), "space.yaml")
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path


class SearchSpaceTest(tf.test.TestCase):

    def test_declared_spaces_are_valid_and_give_named_hyperparameters(self):
        spaces = tuning.search_spaces(TUNED)
        self.assertEqual(sorted(spaces), sorted(TUNED))
        hp = method_tuner.hyperparameters("csdm", spaces["csdm"])
        # Defaults are the method's own defaults (all inside the declared ranges).
        self.assertEqual(hp.values, {"csdm.diff_coef": 1.0, "csdm.T": 100, "csdm.stride": 10,
                                     "csdm.iters": 10, "csdm.warm_epochs": 3})
        self.assertEqual(method_tuner.hyperparameters("cvar", spaces["cvar"]).values,
                         {"cvar.iters": 10, "cvar.warm_epochs": 2, "cvar.warm_data": "current"})
        self.assertEqual(spaces["csdm"]["T"], {"type": "int", "min": 50, "max": 200, "step": 50,
                                               "sampling": "linear"})
        # AQCL (spec aqcl.md 9: w1 in [0.01, 10], w2 in [0.1, 10], log-uniform) and Diff-MSR.
        aqcl_space = tuning.search_spaces(["aqcl", "diffmsr"])
        self.assertEqual({k: (v["min"], v["max"], v["sampling"])
                          for k, v in aqcl_space["aqcl"].items()},
                         {"w1": (0.01, 10.0, "log"), "w2": (0.1, 10.0, "log"),
                          "w": (1e-4, 0.1, "log")})
        self.assertEqual(method_tuner.hyperparameters("aqcl", aqcl_space["aqcl"]).values,
                         {"aqcl.w1": 1.0, "aqcl.w2": 1.0, "aqcl.w": 0.001})
        self.assertEqual(method_tuner.hyperparameters("diffmsr", aqcl_space["diffmsr"]).values,
                         {"diffmsr.gen_ratio": 1.0 / 3.0, "diffmsr.lr_finetune": 5e-4})

    def assert_space_error(self, label, space, message, fixed=None):
        with self.assertRaises(ValueError) as caught:
            tuning.check_space(methods.method_class(label), space, label, fixed)
        self.assertEqual(str(caught.exception), message)

    def test_unknown_option(self):
        self.assert_space_error("csdm", {"rho": {"type": "float", "min": 0.1, "max": 1.0}},
                                "search space csdm: unknown option 'rho'; known: "
                                + str(sorted(methods.CSDM.defaults)))

    def test_wrong_type(self):
        self.assert_space_error("csdm", {"T": {"type": "float", "min": 10.0, "max": 20.0}},
                                "search space csdm: T takes an integer, not a range of floats")
        self.assert_space_error("csdm", {"diff_coef": {"type": "int", "min": 1, "max": 3}},
                                "search space csdm: diff_coef takes a number, not a range of ints")
        self.assert_space_error("csdm", {"T": {"type": "int", "min": 10, "max": 20.5}},
                                "search space csdm: T: min and max must be ints with min < max, "
                                "not 10 and 20.5")
        self.assert_space_error("cvar", {"warm_data": {"type": "choice", "values": ["all"]}},
                                "search space cvar: warm_data must be current or cumulative, "
                                "not 'all'")
        self.assert_space_error("csdm", {"T": {"type": "choice", "values": [50, "100"]}},
                                "search space csdm: T takes an integer, not '100'")
        self.assert_space_error("csdm", {"diff_coef": {"type": "choice", "values": [1, 1.0]}},
                                "search space csdm: diff_coef: values repeat: [1, 1.0]")
        self.assert_space_error("csdm", {"T": {"type": "range", "min": 1, "max": 2}},
                                "search space csdm: T: a spec is a mapping with type float, int "
                                "or choice, not {'type': 'range', 'min': 1, 'max': 2}")
        self.assert_space_error("csdm", {"T": {"type": "int", "min": 1, "max": 2, "by": 1}},
                                "search space csdm: T: unknown keys ['by'] for type int; known: "
                                "['max', 'min', 'sampling', 'step', 'type']")

    def test_range_outside_bounds(self):
        self.assert_space_error(
            "dropoutnet", {"dropout_prob": {"type": "float", "min": 0.1, "max": 1.5}},
            "search space dropoutnet: dropout_prob must be between 0 and 1, not 1.5")
        self.assert_space_error("csdm", {"T": {"type": "int", "min": 0, "max": 10}},
                                "search space csdm: T must be at least 1, not 0")
        self.assert_space_error(
            "csdm", {"diff_coef": {"type": "float", "min": 0.0, "max": 1.0, "sampling": "log"}},
            "search space csdm: diff_coef: log sampling needs min > 0, not 0")
        self.assert_space_error("csdm", {"T": {"type": "int", "min": 20, "max": 20}},
                                "search space csdm: T: min and max must be ints with min < max, "
                                "not 20 and 20")

    def test_an_option_set_on_the_command_line_is_not_searched(self):
        self.assert_space_error("cvar", {"iters": {"type": "int", "min": 1, "max": 3}},
                                "search space cvar: ['iters'] are both set (--set) and searched",
                                fixed={"iters": 2})

    def test_yaml_override_replaces_the_declared_space(self):
        path = write_yaml("csdm:\n  diff_coef: {type: float, min: 5e-1, max: 2, sampling: log}\n"
                          "  forward_coef: {type: choice, values: [c, sqrt_c]}\n")
        spaces = tuning.search_spaces(["csdm", "cvar"], path)
        self.assertEqual(spaces["csdm"], {
            "diff_coef": {"type": "float", "min": 0.5, "max": 2.0, "sampling": "log"},
            "forward_coef": {"type": "choice", "values": ["c", "sqrt_c"]}})
        self.assertEqual(spaces["cvar"], tuning.search_spaces(["cvar"])["cvar"])

    def test_yaml_errors_are_one_line(self):
        cases = [
            ("velf:\n  kl_weight: {type: float, min: 0.1, max: 0.2}\n",
             "--search-space {}: ['velf'] are not tuned (--tune csdm)"),
            ("- csdm\n", "--search-space {}: expected {{method: {{option: spec}}}}"),
            ("csdm: {T: {type: int, min: 5, max: 1}}\n",
             "search space csdm: T: min and max must be ints with min < max, not 5 and 1"),
        ]
        for text, message in cases:
            path = write_yaml(text)
            with self.assertRaises(ValueError) as caught:
                tuning.search_spaces(["csdm"], path)
            self.assertEqual(str(caught.exception), message.format(path))
        with self.assertRaisesRegex(ValueError, r"^--search-space \S+: not YAML \(while parsing"):
            tuning.search_spaces(["csdm"], write_yaml("csdm: {T: [\n"))
        with self.assertRaisesRegex(ValueError, r"^--search-space /nonexistent.yaml: No such file"):
            tuning.search_spaces(["csdm"], "/nonexistent.yaml")
        with self.assertRaisesRegex(ValueError, "^--tune base: base declares no search space"):
            tuning.search_spaces(["base"])


def bowl(options):
    """A cheap exact objective with its maximum 0 at diff_coef = 2, T = 100, forward_coef c."""
    return -(math.log10(options["diff_coef"]) - math.log10(2.0)) ** 2 \
        - ((options["T"] - 100) / 100.0) ** 2 - (0.0 if options["forward_coef"] == "c" else 0.5)


SPACE = {"diff_coef": {"type": "float", "min": 0.1, "max": 10.0, "sampling": "log"},
         "T": {"type": "int", "min": 50, "max": 200, "step": 50},
         "forward_coef": {"type": "choice", "values": ["c", "sqrt_c"]}}


class SearchTest(tf.test.TestCase):

    def search(self, space, objective, kind="random", trials=3, seed=0, fixed=None):
        space = tuning.check_space(methods.CSDM, space, "csdm", fixed)
        tuner = method_tuner.make_tuner("csdm", space, objective, kind, trials, seed,
                                        self.get_temp_dir(), fixed)
        tuner.search()
        return tuner

    def test_three_trials_cover_a_three_point_space_and_pick_its_optimum(self):
        seen = []

        def objective(options):
            seen.append(options["T"])
            return -((options["T"] - 100) / 50.0) ** 2

        tuner = self.search({"T": {"type": "choice", "values": [50, 100, 200]}}, objective)
        self.assertEqual(seen[0], 100)  # trial 0: the method's default
        self.assertEqual(sorted(seen), [50, 100, 200])
        self.assertEqual(tuner.best_options(), {"T": 100})
        results = tuner.results()
        self.assertEqual({t["options"]["T"]: t["objective"] for t in results["trials"]},
                         {50: -1.0, 100: 0.0, 200: -4.0})
        self.assertEqual(results["best"]["options"], {"T": 100})
        self.assertTrue(all(t["status"] == "completed" and t["wall_s"] >= 0
                            for t in results["trials"]))

    def test_random_search_is_deterministic_under_a_seed_and_keeps_the_best(self):
        runs = [self.search(SPACE, bowl, seed=seed).results() for seed in (0, 0, 1)]
        options = [[t["options"] for t in run["trials"]] for run in runs]
        self.assertEqual(options[0], options[1])
        self.assertNotEqual(options[0], options[2])
        for run in runs:
            self.assertEqual(run["trials"][0]["options"],
                             {"diff_coef": 1.0, "T": 100, "forward_coef": "c"})
            self.assertEqual([t["defaults"] for t in run["trials"]], [True, False, False])
            self.assertLen(run["trials"], 3)
            scores = [bowl({**methods.CSDM.defaults, **t["options"]}) for t in run["trials"]]
            self.assertEqual([t["objective"] for t in run["trials"]], scores)
            self.assertEqual(run["best"]["objective"], max(scores))
            self.assertEqual(run["best"]["options"],
                             run["trials"][int(np.argmax(scores))]["options"])

    def test_bayesian_and_hyperband_run_under_a_seed(self):
        bayes = [self.search(SPACE, bowl, "bayesian", trials=4).results() for _ in range(2)]
        self.assertLen(bayes[0]["trials"], 4)
        self.assertEqual([t["options"] for t in bayes[0]["trials"]],
                         [t["options"] for t in bayes[1]["trials"]])
        budgets = []

        def budgeted(options, budget):
            budgets.append(budget)
            return bowl(options)

        space = tuning.check_space(methods.CSDM, SPACE, "csdm")
        tuner = method_tuner.make_tuner("csdm", space, budgeted, "hyperband", 1, 0,
                                        self.get_temp_dir(), budget=3)
        tuner.search()
        # max_epochs 3, factor 3: a bracket of 3 trials at budget 1 and its best at 3, then a
        # bracket of 2 trials at budget 3.
        self.assertEqual(budgets, [1, 1, 1, 3, 3, 3])

    def test_a_space_without_the_defaults_starts_at_random(self):
        space = {"T": {"type": "choice", "values": [50, 200]},
                 "diff_coef": {"type": "float", "min": 0.1, "max": 10.0}}
        runs = [[t["options"]["T"] for t in self.search(space, bowl, trials=2, seed=seed)
                 .results()["trials"]] for seed in range(4)]
        self.assertEqual(len({run[0] for run in runs}), 2)

    def test_fixed_options_reach_every_trial_and_failures_stay_in_their_trial(self):
        def objective(options):
            self.assertEqual(options["iters"], 2)  # from --set
            if options["T"] == 200:
                raise protocol.NonFiniteLoss("round on base", 3, float("nan"))
            return float(options["T"])

        tuner = self.search({"T": {"type": "choice", "values": [50, 100, 200]}}, objective,
                            fixed={"iters": 2})
        results = tuner.results()
        status = {t["options"]["T"]: t["status"] for t in results["trials"]}
        self.assertEqual(status, {50: "completed", 100: "completed", 200: "failed"})
        self.assertEqual(results["best"]["options"], {"iters": 2, "T": 100})
        failed = [t for t in results["trials"] if t["status"] == "failed"][0]
        self.assertEqual(failed["message"],
                         "non-finite loss (nan): method ?, seed ?, phase round on base, step 3")

    def test_options_the_method_refuses_fail_the_trial_and_a_bug_stops_the_search(self):
        # stride 25 > T 10: csdm's own check refuses it before the objective runs.
        tuner = self.search({"T": {"type": "choice", "values": [10, 50]}}, lambda o: 1.0,
                            fixed={"stride": 25}, trials=2)
        status = {t["options"]["T"]: (t["status"], t["message"]) for t in tuner.results()["trials"]}
        self.assertEqual(status, {10: ("failed", "csdm: stride (25) must be at most T (10)"),
                                  50: ("completed", "")})
        with self.assertRaisesRegex(kt.errors.FatalError, "KeyError"):
            self.search(SPACE, lambda o: o["no such option"])


class HyperparametersFileTest(tf.test.TestCase):

    def test_best_hyperparameters_round_trip(self):
        space = tuning.check_space(methods.CSDM, SPACE, "csdm")
        tuner = method_tuner.make_tuner("csdm", space, bowl, "random", 3, 0, self.get_temp_dir())
        tuner.search()
        best = tuner.results()["best"]["options"]
        path = os.path.join(self.get_temp_dir(), "best.json")
        method_tuner.write_best_hyperparameters(tuner, path)
        loaded = tuning.load_hyperparameters(path, ["base", "csdm"])
        self.assertEqual(loaded, {"csdm": best})
        self.assertIsInstance(loaded["csdm"]["diff_coef"], float)
        self.assertIsInstance(loaded["csdm"]["T"], int)
        # The TFX Tuner's own writer, into a HyperParameters artifact folder: the same options.
        outputs = {standard_component_specs.BEST_HYPERPARAMETERS_KEY:
                   [standard_artifacts.HyperParameters()],
                   standard_component_specs.TUNER_RESULTS_KEY: [standard_artifacts.TunerResults()]}
        for key, (artifact,) in outputs.items():
            artifact.uri = os.path.join(self.get_temp_dir(), key)
            os.makedirs(artifact.uri)
        tuner_executor.write_best_hyperparameters(tuner, outputs)
        self.assertEqual(tuning.load_hyperparameters(outputs["best_hyperparameters"][0].uri),
                         {"csdm": best})

    def test_bad_files_are_one_line_errors(self):
        directory = self.get_temp_dir()
        cases = [({"values": {"csdm.T": 0}}, "{}: csdm: T must be at least 1, not 0"),
                 ({"values": {"csdm.rho": 1.0}}, "{}: csdm: unknown options ['rho']; known: "
                  + str(sorted(methods.CSDM.defaults))),
                 ({"values": {"cvar.iters": 2}}, "{}: method 'cvar' is not in --methods csdm"),
                 ({"values": {"T": 2}}, "{}: hyperparameter 'T' is not named METHOD.OPTION"),
                 ({"values": {}}, "{}: no hyperparameter values"),
                 ("{", "{}: not JSON (Expecting property name enclosed in double quotes: line 1 "
                  "column 2 (char 1))")]
        for index, (content, message) in enumerate(cases):
            path = os.path.join(directory, f"hp{index}.json")
            with open(path, "w", encoding="utf-8") as f:
                f.write(content if isinstance(content, str) else json.dumps(content))
            with self.assertRaises(ValueError) as caught:
                tuning.load_hyperparameters(path, ["csdm"])
            self.assertEqual(str(caught.exception), "--hyperparameters " + message.format(path))


# ----- the item-phase objective on item_frequency's tuning view --------------------------------
N, K = 20, 3


def raw_log(seed=0):
    """12 old items (0..11, 30 rows each), 6 new items (12..17, 12 rows), 2 rare (18, 19; 4 rows).
    Clicks depend on item parity and user, so the backbone and the methods can learn them."""
    rng = np.random.default_rng(seed)
    sizes = [30] * 12 + [12] * 6 + [4] * 2
    user_attrs = {u: rng.integers(1, [3, 8, 22, 40]) for u in range(30)}
    item_attrs = {i: (int(rng.integers(1, 12)), rng.integers(1, 60, 15), rng.integers(1, 20, 6))
                  for i in range(len(sizes))}
    rows = []
    for item, size in enumerate(sizes):
        for t in range(size):
            user = int(rng.integers(0, 30))
            gender, age, occupation, zip_code = user_attrs[user]
            year, title, genres = item_attrs[item]
            rows.append({"user_id": user, "item_id": item, "timestamp": 1000 * t + item,
                         "gender": gender, "age": age, "occupation": occupation,
                         "zip_code": zip_code, "year": year, "title": title, "genres": genres,
                         "label": int((item + user) % 2 == 0 or rng.random() < 0.2)})
    return rows


def splits_of(rows, view, seed=0):
    """{split: transformed arrays} of `view` of item_frequency (rows written nowhere dropped)."""
    proto = protocols.build("item_frequency", N=N, K=K, view=view, seed=seed)
    result = proto.split(rows)
    out = {}
    for name in proto.splits:
        index = [i for i, s in enumerate(result.splits) if s == name]
        if not index:
            continue
        arrays = {}
        for field in features.MOVIELENS.fields:
            if field.name == "count":
                column = [result.features[i]["count"] for i in index]
            else:
                column = [rows[i][field.name] for i in index]
            dtype = np.float32 if field.kind == "ctn" else np.int64
            arrays[field.name] = np.asarray(column, dtype=dtype)
        arrays[features.LABEL] = np.asarray([rows[i]["label"] for i in index], np.int64)
        out[name] = arrays
    return proto, out


CONFIG = protocol.TrainConfig(batch_size=64)
SPACE_CVAR = {"iters": {"type": "choice", "values": [1, 2]}}


def pretrain_tuning_backbones(base, directory, seeds=(0,)):
    for seed in seeds:
        model = task.pretrain("deepfm", features.MOVIELENS, fixtures.VOCAB, base, CONFIG, seed)
        task.save(model, task.seed_dir(directory, seed))


class ObjectiveIsolationTest(tf.test.TestCase):
    """Tuning reads the tuning view's splits only: never the final test split, never the rows of
    the real new items."""

    def tune(self, rows):
        """A 2-trial search of CVAR's iters on the tuning view of `rows`, from its raw log up:
        split, tuning backbone pretrained on its base, search. Returns (results, splits read)."""
        proto, splits = splits_of(rows, "tuning")
        read = []

        def load(name):
            if name not in ("base", "warm_a", "warm_b", "warm_c", "test"):
                raise AssertionError(f"the objective read split {name}")
            read.append(name)
            return splits[name]

        context = ProtocolContext(proto, load)
        directory = tempfile.mkdtemp()
        pretrain_tuning_backbones(splits["base"], directory)
        objective = method_tuner.protocol_objective(
            "cvar", context, lambda seed: task.load(task.seed_dir(directory, seed),
                                                    splits["test"]), lambda seed: CONFIG,
            seeds=[0])
        space = tuning.check_space(methods.CVAR, SPACE_CVAR, "cvar")
        tuner = method_tuner.make_tuner("cvar", space, objective, "random", 2, 0,
                                        tempfile.mkdtemp(), fixed={"warm_epochs": 1})
        tuner.search()
        return tuner.results(), sorted(set(read))

    def test_final_test_labels_and_new_items_do_not_change_tuning(self):
        rows = raw_log()
        _, final = splits_of(rows, "final")
        self.assertEqual({k: len(v[features.LABEL]) for k, v in final.items()},
                         {"base": 360, "warm_a": 18, "warm_b": 18, "warm_c": 18, "test": 18,
                          "dropped": 8})
        results, read = self.tune(rows)
        self.assertEqual(read, ["base", "test", "warm_a", "warm_b", "warm_c"])
        self.assertLen(results["trials"], 2)
        # The real new items (12..17) are the final view's warm and test rows: shuffle their
        # labels and tune again from the raw log up. Nothing of the search may change.
        shuffled = [dict(r) for r in rows]
        new = [i for i, r in enumerate(shuffled) if 12 <= r["item_id"] <= 17]
        labels = np.array([shuffled[i]["label"] for i in new])
        for i, label in zip(new, np.random.default_rng(1).permutation(labels)):
            shuffled[i]["label"] = int(label)
        self.assertNotEqual(labels.tolist(), [shuffled[i]["label"] for i in new])
        again, _ = self.tune(shuffled)
        strip = lambda r: [(t["options"], t["objective"]) for t in r["trials"]]
        self.assertEqual(strip(again), strip(results))
        self.assertEqual(again["best"], results["best"])
        # The check can fail: flipping the labels of the held-out old items' pseudo-test rows
        # (the tuning view's own test) changes the objective.
        proto, tuning_splits = splits_of(rows, "tuning")
        held = set(tuning_splits["test"][features.ITEM_ID].tolist())
        self.assertLen(held, round(0.2 * 12))
        flipped = [dict(r) for r in rows]
        ordered = {}
        for i, r in enumerate(flipped):
            if r["item_id"] in held:
                ordered.setdefault(r["item_id"], []).append(i)
        for indices in ordered.values():
            for i in sorted(indices, key=lambda i: flipped[i]["timestamp"])[3 * K:]:
                flipped[i]["label"] = 1 - flipped[i]["label"]
        changed, _ = self.tune(flipped)
        self.assertNotEqual([t["objective"] for t in changed["trials"]],
                            [t["objective"] for t in results["trials"]])


def write_examples(directory, split, arrays):
    """Transformed rows as GZIP TFRecords of tf.Examples under `directory/Split-<split>/`."""
    path = os.path.join(directory, f"Split-{split}", "data.gz")
    os.makedirs(os.path.dirname(path))
    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        for row in range(len(arrays[features.LABEL])):
            feature = {}
            for name, column in arrays.items():
                values = np.atleast_1d(column[row]).tolist()
                feature[name] = (tf.train.Feature(float_list=tf.train.FloatList(value=values))
                                 if column.dtype.kind == "f" else
                                 tf.train.Feature(int64_list=tf.train.Int64List(value=values)))
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature))
                         .SerializeToString())


def feature_spec():
    spec = {}
    for field in features.MOVIELENS.fields:
        dtype = tf.float32 if field.kind == "ctn" else tf.int64
        spec[field.name] = tf.io.FixedLenFeature([field.seq_len] if field.kind == "seq" else [],
                                                 dtype)
    spec[features.LABEL] = tf.io.FixedLenFeature([], tf.int64)
    return spec


class TunerComponentTest(tf.test.TestCase):
    """tuner_fn and the TFX executor on real files: transformed tuning-view splits, a transform
    output's metadata and a Model artifact of tuning backbones, as the pipeline will give them."""

    def test_executor_tunes_from_artifacts_and_writes_its_results(self):
        root = self.get_temp_dir()
        proto, splits = splits_of(raw_log(), "tuning")
        examples = standard_artifacts.Examples()
        examples.uri = os.path.join(root, "examples")
        examples.split_names = '["base", "warm_a", "warm_b", "warm_c", "test"]'
        for name in ("base", "warm_a", "warm_b", "warm_c", "test"):
            write_examples(examples.uri, name, splits[name])
        graph = standard_artifacts.TransformGraph()
        graph.uri = os.path.join(root, "transform")
        metadata_io.write_metadata(dataset_metadata.DatasetMetadata.from_feature_spec(
            feature_spec()), os.path.join(graph.uri, tft.TFTransformOutput.TRANSFORMED_METADATA_DIR))
        model = standard_artifacts.Model()
        model.uri = os.path.join(root, "model")
        serving = os.path.join(model.uri, "Format-Serving")
        pretrain_tuning_backbones(splits["base"], serving)
        with open(os.path.join(serving, "train_config.json"), "w", encoding="utf-8") as f:
            json.dump({"seeds": [0], "train": {"batch_size": 64}, "failed": {}}, f)
        outputs = {standard_component_specs.BEST_HYPERPARAMETERS_KEY:
                   [standard_artifacts.HyperParameters()],
                   standard_component_specs.TUNER_RESULTS_KEY: [standard_artifacts.TunerResults()]}
        for key, (artifact,) in outputs.items():
            artifact.uri = os.path.join(root, key)
            os.makedirs(artifact.uri)
        custom = {"method": "cvar", "space": tuning.search_spaces(["cvar"], write_yaml(
            "cvar: {iters: {type: choice, values: [1, 2]}}\n"))["cvar"],
                  "fixed": {"warm_epochs": 1}, "tuner": "random", "trials": 2, "seed": 0,
                  "protocol": {"name": "item_frequency", "params": proto.params}}
        exec_properties = {
            "tuner_fn": "components.tuner_module.tuner_fn",
            "train_args": json.dumps({"splits": ["base"]}),
            "eval_args": json.dumps({"splits": ["warm_a", "warm_b", "warm_c", "test"]}),
            "custom_config": json.dumps(custom)}
        inputs = {"examples": [examples], "transform_graph": [graph], "base_model": [model]}
        context = base_executor.BaseExecutor.Context(tmp_dir=os.path.join(root, "tmp"),
                                                     unique_id="1")
        tuner_module.TrialsExecutor(context).Do(inputs, outputs, exec_properties)
        trials = tuner_module.read_trials(outputs["tuner_results"][0].uri)
        self.assertEqual(sorted(t["options"]["iters"] for t in trials["trials"]), [1, 2])
        best = max(trials["trials"], key=lambda t: t["objective"])
        self.assertEqual(trials["best"]["options"], {"warm_epochs": 1, **best["options"]})
        self.assertEqual(tuning.load_hyperparameters(outputs["best_hyperparameters"][0].uri),
                         {"cvar": best["options"]})
        # The same trial, run by hand on the same arrays, gives the same objective.
        directory = tempfile.mkdtemp()
        pretrain_tuning_backbones(splits["base"], directory)
        context = ProtocolContext(proto, lambda name: data.canonical_order(splits[name]))
        objective = method_tuner.protocol_objective(
            "cvar", context, lambda seed: task.load(task.seed_dir(directory, seed),
                                                    splits["test"]), lambda seed: CONFIG, [0])
        self.assertEqual(objective(methods.CVAR.defaults | best["options"] | {"warm_epochs": 1}),
                         best["objective"])

    def test_component_and_importer_build(self):
        channel = lambda kind: tfx_types.Channel(type=kind)
        space = tuning.search_spaces(["csdm"])["csdm"]
        component = tuner_module.tuner_component(
            "csdm", space, channel(standard_artifacts.Examples),
            channel(standard_artifacts.TransformGraph), channel(standard_artifacts.Model),
            "item_frequency", {"N": 20, "K": 3, "view": "tuning"}, fixed={"iters": 2},
            trials=12, seeds=[0, 1, 2], code_version="abc")
        self.assertEqual(component.id, "Tuner.csdm")
        self.assertEqual(component.executor_spec.executor_class, tuner_module.TrialsExecutor)
        custom = json.loads(component.exec_properties["custom_config"])
        self.assertEqual(custom, {
            "method": "csdm", "space": json.loads(json.dumps(space)), "fixed": {"iters": 2},
            "tuner": "random", "trials": 12, "seed": 0, "seeds": [0, 1, 2], "code_version": "abc",
            "protocol": {"name": "item_frequency", "params": {"N": 20, "K": 3, "view": "tuning"}}})
        importer = tuner_module.hyperparameters_importer("best.json", "csdm")
        self.assertEqual(importer.id, "ImportHyperparameters.csdm")
        self.assertEqual(importer.exec_properties["artifact_uri"], os.path.abspath("best.json"))


class RemoteTrialsTest(tf.test.TestCase):
    """The Vertex AI Tuner writes TFX's tuner_results.json, not trials.json: read_trials falls
    back to it, and the report renders its completed trials without wall times."""

    def test_read_trials_falls_back_to_tfx_tuner_results(self):
        def objective(options):
            if options["T"] == 200:
                raise protocol.NonFiniteLoss("round on base", 3, float("nan"))
            return -((options["T"] - 100) / 50.0) ** 2

        space = tuning.check_space(methods.CSDM, {"T": {"type": "choice",
                                                        "values": [50, 100, 200]}}, "csdm")
        tuner = method_tuner.make_tuner("csdm", space, objective, "random", 3, 0,
                                        self.get_temp_dir(), {"iters": 2})
        tuner.search()
        ids = {t["options"]["T"]: t["trial_id"] for t in tuner.results()["trials"]}
        results = standard_artifacts.TunerResults()
        results.uri = self.create_tempdir().full_path
        hyperparameters = standard_artifacts.HyperParameters()
        hyperparameters.uri = self.create_tempdir().full_path
        # What the Vertex AI Tuner's chief writes: TFX's own function.
        tuner_executor.write_best_hyperparameters(tuner, {
            standard_component_specs.TUNER_RESULTS_KEY: [results],
            standard_component_specs.BEST_HYPERPARAMETERS_KEY: [hyperparameters]})
        self.assertEqual(os.listdir(results.uri), ["tuner_results.json"])

        read = tuner_module.read_trials(results.uri)
        # Trial 0 ran the defaults (T 100, objective 0); T 200 failed: not in TFX's file.
        self.assertEqual(read, {
            "method": "csdm", "oracle": None, "remote": True, "wall_s": None,
            "trials": [{"trial_id": ids[100], "options": {"T": 100}, "objective": 0.0,
                        "status": "completed", "message": "", "wall_s": None, "defaults": True},
                       {"trial_id": ids[50], "options": {"T": 50}, "objective": -1.0,
                        "status": "completed", "message": "", "wall_s": None,
                        "defaults": False}],
            "best": {"trial_id": ids[100], "objective": 0.0, "options": {"T": 100}}})

        section = report_lib.tuning_section(
            {"tuned": {"csdm": {"T": 100}}, "method_options": {"csdm/tuned": {"iters": 2,
                                                                              "T": 100}}},
            [read], {"tuner": "random"})
        self.assertEqual((section["csdm"]["remote"], section["csdm"]["wall_s"]), (True, None))
        self.assertEqual(report_lib.render_tuning(section), [
            "", "## Tuning (on the protocol's tuning view, never its test split)",
            "", "### csdm (random search, 2 trials, 2 completed, - s)", "",
            "Vertex AI parallel trials: completed trials only (TFX's tuner_results.json), "
            "no wall times.", "",
            "| trial | options | objective | status | wall s |", "|---|---|---|---|---|",
            f"| {ids[100]} | {{'T': 100}} | 0.0000 | completed (defaults) | - |",
            f"| {ids[50]} | {{'T': 50}} | -1.0000 | completed | - |",
            "", f"Best: trial {ids[100]}, objective 0.0000; csdm/tuned evaluated with "
                "{'iters': 2, 'T': 100}."])
        plot = os.path.join(self.get_temp_dir(), "tuning_csdm.png")
        report_lib.plot_tuning("csdm", section["csdm"], plot)
        self.assertGreater(os.path.getsize(plot), 0)

        # trials.json, where the local executor wrote it, wins.
        with open(os.path.join(results.uri, tuner_module.TRIALS_FILE), "w") as f:
            json.dump(tuner.results(), f)
        self.assertLen(tuner_module.read_trials(results.uri)["trials"], 3)

    def test_each_remote_tuner_keeps_its_own_folder(self):
        fn_args = types.SimpleNamespace(working_dir="/tmp/executor")
        self.assertEqual(tuner_module.working_dir({"method": "cvar"}, fn_args), "/tmp/executor")
        custom = {"remote_trials_working_dir": "gs://b/r/tuner/Tuner.deepfm.cvar"}
        with mock.patch.dict(os.environ, {"KERASTUNER_TUNER_ID": "tfx-tuner-workerpool1-0"}):
            self.assertEqual(tuner_module.working_dir(custom, fn_args),
                             "gs://b/r/tuner/Tuner.deepfm.cvar/tfx-tuner-workerpool1-0")

    def test_hand_written_results_of_a_variant_with_hyperband_entries(self):
        uri = self.create_tempdir().full_path
        band = {"tuner/epochs": 3, "tuner/initial_epoch": 1, "tuner/bracket": 1, "tuner/round": 1}
        rows = [{"trial_id": "0003", "score": 0.71, "csdm/x.T": 50, **band},
                {"trial_id": "0001", "score": 0.7, "csdm/x.T": 100, "csdm/x.iters": 2, **band}]
        path = os.path.join(uri, "tuner_results.json")
        with open(path, "w") as f:
            json.dump(rows, f)
        read = tuner_module.read_trials(uri)
        self.assertEqual((read["method"], read["best"]),
                         ("csdm/x", {"trial_id": "0003", "objective": 0.71, "options": {"T": 50}}))
        self.assertEqual([(t["trial_id"], t["options"], t["defaults"]) for t in read["trials"]],
                         [("0001", {"T": 100, "iters": 2}, False), ("0003", {"T": 50}, False)])
        for rows, found in (([], "[]"), ([{"trial_id": "0", "score": 1.0, "csdm.T": 50},
                                          {"trial_id": "1", "score": 0.5, "cvar.iters": 2}],
                                         "['csdm', 'cvar']")):
            with open(path, "w") as f:
                json.dump(rows, f)
            with self.assertRaisesWithLiteralMatch(
                    ValueError, f"{path}: expected the completed trials of one method, found "
                                f"{found}"):
                tuner_module.read_trials(uri)
