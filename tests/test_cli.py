"""`coldstart run` and `coldstart compile`: one set of arguments, one validation, the same
pipeline; wrong method options stop both before any work."""
import contextlib
import io
import json
import os

from unittest import mock

import tensorflow as tf
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability import stager
from apache_beam.transforms import environments
from tfx import v1 as tfx
from tfx.utils import dependency_utils

from pipeline import beam_presets, cli
from tests.test_pipeline_e2e import write_log
from tests.test_setup_script import ROOT

FLAGS = ["--dataset", "ml-1m", "--N", "100", "--K", "10", "--backbone", "deepfm,dcn",
         "--methods", "base,csdm,csdm/code", "--set", "csdm.T=50", "--set", "csdm.stride=5",
         "--set", "csdm.train_denoiser=False", "--set", "csdm.diff_coef=2",
         "--set", "csdm/code.forward_coef=sqrt_c", "--runs", "2", "--seed", "3",
         "--batch-size", "64", "--pretrain-epochs", "2", "--optimizer", "keras_adam",
         "--frozen-mode", "inference", "--learning-rate", "0.002", "--weight-decay", "1e-4",
         "--tfma-seeds", "2", "--max-bad-fraction", "0.01",
         "--beam-preset", "direct-mp", "--beam-arg=--direct_num_workers=2"]


def compile_json(tfx_pipeline, path):
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image="img:1"),
        output_dir=os.path.dirname(path), output_filename=os.path.basename(path))
    runner.run(tfx_pipeline, write_out=True)
    with open(path) as f:
        spec = json.load(f)
    return spec.get("pipelineSpec", spec)


def task_parameters(spec):
    """{task: {parameter: constant}} of a compiled KubeflowV2 pipeline."""
    return {name: {key: next(iter(value["runtimeValue"]["constantValue"].values()))
                   for key, value in task.get("inputs", {}).get("parameters", {}).items()}
            for name, task in spec["root"]["dag"]["tasks"].items()}


class CompileMatchesRunTest(tf.test.TestCase):

    def test_compiled_parameters_equal_the_local_runs(self):
        root = self.create_tempdir().full_path
        write_log(root)
        out = os.path.join(root, "out")
        local = cli.local_pipeline(cli.parser().parse_args(
            ["run", *FLAGS, "--data-dir", root, "--output", out]))
        compiled_file = os.path.join(root, "compiled.json")
        self.assertEqual(cli.main(["compile", *FLAGS, "--data-root", root, "--pipeline-root",
                                   "gs://b/runs", "--image", "img:1", "--output", compiled_file]), 0)
        with open(compiled_file) as f:
            compiled = json.load(f)
        compiled = compiled.get("pipelineSpec", compiled)
        run_spec = compile_json(local, os.path.join(root, "local.json"))
        run_params, compiled_params = task_parameters(run_spec), task_parameters(compiled)

        # Only where the schema lives differs: the image's copy against the run's own.
        self.assertEqual(compiled_params["ImportSchemaGen"].pop("schema_file"),
                         cli.IMAGE_SCHEMA.format("ml-1m"))
        self.assertTrue(run_params["ImportSchemaGen"].pop("schema_file").startswith(out))
        self.assertEqual(run_params, compiled_params)
        self.assertEqual(run_spec["deploymentSpec"], compiled["deploymentSpec"])  # Beam arguments

        # And they are the flags' values, typed.
        warmup = compiled_params["WarmupEvaluate.dcn"]
        self.assertEqual(json.loads(warmup["method_options"]),
                         {"csdm": {"T": 50, "stride": 5, "train_denoiser": False, "diff_coef": 2.0},
                          "csdm/code": {"forward_coef": "sqrt_c"}})
        self.assertEqual((warmup["methods"], warmup["prediction_seeds"]),
                         ("base,csdm,csdm/code", "2"))
        custom = json.loads(compiled_params["Trainer.deepfm"]["custom_config"])
        self.assertEqual((custom["backbone"], custom["seeds"], custom["train"]),
                         ("deepfm", [3, 4], {"batch_size": 64, "pretrain_epochs": 2,
                                             "optimizer": "keras_adam", "frozen_mode": "inference",
                                             "learning_rate": 0.002, "weight_decay": 1e-4}))
        self.assertEqual(compiled_params["QuarantineGate"]["max_bad_fraction"], 0.01)
        self.assertEqual((compiled_params["ItemSplitGen"]["protocol"],
                          json.loads(compiled_params["ItemSplitGen"]["params"])),
                         ("item_frequency", {"N": 100, "K": 10, "view": "final",
                                             "holdout_fraction": 0.2, "seed": 0}))
        self.assertIn("Evaluator.dcn", compiled_params)  # --tfma-seeds 2
        args = compiled["deploymentSpec"]["executors"]["ClickLogExampleGen_executor"]["container"]
        self.assertEqual(args["args"][-2:], ["--direct_running_mode=multi_processing",
                                             "--direct_num_workers=2"])

    def test_local_presets_build_no_package(self):
        # Without a dependency flag each TFX Beam executor builds an sdist of TFX (about 2 s, 52 MB
        # left in /tmp); with --setup_file, Beam builds this project's sdist instead, twice per
        # Beam component. The direct runners need neither.
        no_build = {"side_effect": AssertionError("built a package")}
        with mock.patch.object(dependency_utils, "build_ephemeral_package", **no_build), \
                mock.patch.object(stager.Stager, "_build_setup_package", **no_build):
            with self.assertRaisesRegex(AssertionError, "built a package"):
                dependency_utils.make_beam_dependency_flags(["--direct_num_workers=1"])
            setup_py = os.path.join(ROOT, "setup.py")
            staging = self.create_tempdir().full_path
            with self.assertRaisesRegex(AssertionError, "built a package"):
                environments.python_sdk_dependencies(
                    PipelineOptions([f"--setup_file={setup_py}"]), staging)
            for preset in ("direct", "direct-mp"):
                with self.subTest(preset=preset):
                    args = beam_presets.beam_args(preset)
                    self.assertEqual(dependency_utils.make_beam_dependency_flags(args), args)
                    self.assertEqual(list(environments.python_sdk_dependencies(
                        PipelineOptions(args), staging)), [])

    def test_compile_validates_as_run_does(self):
        out = self.create_tempdir().full_path
        for extra, message in (
                (["--set", "csdm.T=1e2"], "--set csdm.T=1e2: T takes an integer, not '1e2'"),
                (["--backbone", "nope"], "unknown backbone 'nope'"),
                (["--batch-size", "0"], "--batch-size must be at least 1, not 0"),
                (["--max-bad-fraction", "2"], "--max-bad-fraction must be in [0, 1]"),
                (["--learning-rate", "0"], "--learning-rate must be above 0, not 0.0"),
                (["--weight-decay=-1e-5"], "--weight-decay must be at least 0, not -1e-05"),
                (["--weight-decay", "nan"], "--weight-decay must be at least 0, not nan"),
                (["--early-stopping", "3"], "--early-stopping needs a protocol with a "
                                            "validation split; item_frequency has none"),
                (["--beam-preset", "dataflow"], "--beam-preset dataflow needs")):
            for command in (["run", "--data-dir", out], ["compile", "--data-root", "gs://b/d",
                                                         "--pipeline-root", "gs://b/r",
                                                         "--image", "img"]):
                with self.subTest(command=command[0], extra=extra):
                    stderr = io.StringIO()
                    with contextlib.redirect_stderr(stderr):
                        code = cli.main([*command, "--dataset", "ml-1m", "--methods", "base,csdm",
                                         *extra, "--output", os.path.join(out, "x")])
                    self.assertEqual(code, 2)
                    self.assertTrue(stderr.getvalue().startswith(f"coldstart: error: {message}"),
                                    stderr.getvalue())
        self.assertEqual(os.listdir(out), [])


class MethodOptionErrorsTest(tf.test.TestCase):

    def test_wrong_option_is_one_line_exit_2_before_any_work(self):
        data = self.create_tempdir().full_path  # no input files: reading them would fail too
        out = os.path.join(self.create_tempdir().full_path, "out")
        for item, message in (
                ("csdm.T=1e2", "--set csdm.T=1e2: T takes an integer, not '1e2'"),
                ("csdm.forward_coef=sqrt", "--set csdm.forward_coef=sqrt: forward_coef must be c "
                                           "or sqrt_c, not 'sqrt'"),
                ("csdm.beta_end=2", "--set csdm.beta_end=2: beta_end must be between 0 and 1, "
                                    "not 2"),
                ("csdm.train_denoiser=no", "--set csdm.train_denoiser=no: train_denoiser takes "
                                           "true or false, not 'no'"),
                ("csdm.itres=2", "--set csdm.itres=2: csdm: unknown options ['itres']"),
                ("cvar.iters=2", "--set cvar.iters=2: 'cvar' is not in --methods base,csdm")):
            with self.subTest(item=item):
                stderr = io.StringIO()
                with contextlib.redirect_stderr(stderr):
                    code = cli.main(["run", "--dataset", "ml-1m", "--data-dir", data, "--methods",
                                     "base,csdm", "--set", item, "--output", out])
                self.assertEqual(code, 2)
                lines = stderr.getvalue().splitlines()
                self.assertLen(lines, 1)
                self.assertTrue(lines[0].startswith(f"coldstart: error: {message}"), lines[0])
                self.assertFalse(os.path.exists(out))


class ProtocolAndBackboneOptionsTest(tf.test.TestCase):

    def test_set_reaches_protocol_and_backbone(self):
        args = cli.parser().parse_args(
            ["compile", "--data-root", "gs://b/d", "--pipeline-root", "gs://b/r", "--image", "i",
             "--output", "x.json", "--backbone", "deepfm,dcn", "--set", "deepfm.mlp_dims=[32,16]",
             "--set", "protocol.N=150", "--K", "5"])
        kwargs = cli.pipeline_arguments(args)
        self.assertEqual(kwargs["backbone_options"], {"deepfm": {"mlp_dims": [32, 16]}})
        self.assertEqual((kwargs["protocol"].name, kwargs["protocol"].params["N"],
                          kwargs["protocol"].params["K"]), ("item_frequency", 150, 5))
        def protocol_of(*extra):
            return cli.pipeline_arguments(cli.parser().parse_args(
                ["compile", "--data-root", "d", "--pipeline-root", "r", "--image", "i",
                 "--output", "x.json", "--backbone", "mmoe", *extra]))["protocol"]
        # A split by file reads the data set's file_field: douban names it, ml-1m does not.
        files = '--set=protocol.files={"*_train.csv": "train", "*_test.csv": "test"}'
        split = protocol_of("--dataset", "douban", "--set", "protocol.assign=files", files)
        self.assertEqual(split.input_features()["source_file"][:10], "file_field")
        with self.assertRaisesRegex(ValueError, r"protocol per_domain reads the example feature "
                                    r"'source_file' \(file_field, for assign=files"):
            protocol_of("--dataset", "ml-1m", "--protocol", "per_domain",
                        "--set", "protocol.domain_field=gender", "--set", "protocol.assign=files",
                        files)
        with self.assertRaisesRegex(ValueError, r"reads the example feature 'domain' "
                                    r"\(domain_field\), which ml-1m's examples do not have"):
            protocol_of("--dataset", "ml-1m", "--protocol", "per_domain")
        with self.assertRaisesRegex(ValueError, r"--set dcn.nope=1: dcn: unknown options"):
            cli.pipeline_arguments(cli.parser().parse_args(
                ["compile", "--data-root", "d", "--pipeline-root", "r", "--image", "i",
                 "--output", "x.json", "--backbone", "dcn", "--set", "dcn.nope=1"]))


class NegativesPerProtocolTest(tf.test.TestCase):
    """amazon-beauty and tafeng sample `matched` negatives for the item phases and `din` ones
    for leave_last_out (their YAML's `negatives.by_protocol`); `--set negatives.sampling`
    overrides both, and ExampleGen receives the one rule chosen."""

    def sampling(self, *extra):
        tfx_pipeline = cli.compiled_pipeline(cli.parser().parse_args(
            ["compile", "--data-root", "gs://b/d", "--pipeline-root", "gs://b/r", "--image", "i",
             "--output", "x.json", "--schema-file", "gs://b/schema.pbtxt", *extra]))
        gen = next(c for c in tfx_pipeline.components if c.id == "ClickLogExampleGen")
        config = json.loads(gen.exec_properties["dataset_config"])
        self.assertEqual(config["negative_sampling_by_protocol"], {})  # resolved: one rule left
        return config["negative_sampling"]

    def test_rule_per_protocol_and_override(self):
        llo = ("--protocol", "leave_last_out", "--backbone", "din")
        for dataset in ("amazon-beauty", "tafeng"):
            with self.subTest(dataset=dataset):
                self.assertEqual(self.sampling("--dataset", dataset, *llo), "din")
                self.assertEqual(self.sampling("--dataset", dataset), "matched")
                self.assertEqual(self.sampling("--dataset", dataset, *llo,
                                               "--set", "negatives.sampling=matched"), "matched")
                self.assertEqual(self.sampling("--dataset", dataset,
                                               "--set", "negatives.sampling=popularity"),
                                 "popularity")

    def test_errors_before_any_work(self):
        for extra, message in (
                (["--dataset", "tafeng", "--set", "negatives.sampling=random"],
                 "--set negatives.sampling=random: sampling must be one of popularity, uniform, "
                 "matched, din, not 'random'"),
                (["--dataset", "ml-1m", "--set", "negatives.sampling=din"],
                 "negatives.sampling=din: ml-1m's log has its own negatives"),
                (["--dataset", "tafeng", "--set", "negatives.seed=3"],
                 r"--set negatives.seed=3: negatives: unknown options \['seed'\]")):
            with self.subTest(extra=extra):
                with self.assertRaisesRegex(ValueError, message):
                    self.sampling(*extra)
        own = os.path.join(self.create_tempdir().full_path, "own.yaml")
        with open(cli.schemas.config_path("tafeng")) as f:
            text = f.read()
        with open(own, "w") as f:
            f.write(text.replace("by_protocol: {leave_last_out: din}",
                                 "by_protocol: {leave_lastout: din}"))
        with self.assertRaisesRegex(ValueError, r"negatives.by_protocol names unknown protocols "
                                    r"\['leave_lastout'\]; known: "):
            self.sampling("--dataset", own)
