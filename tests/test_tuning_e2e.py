"""The Tuner wired into the pipeline (issue 17): a 2-trial search end to end through the CLI and
LocalDagRunner, its best options evaluated as `cvar/tuned`; a saved file skipping the search;
the compiled graph; the tuning flags checked before any work."""
import contextlib
import io
import itertools
import json
import os

import tensorflow as tf

from components import tuner_module
from components.warmup_component import PhaseEvaluation, read_phase_metrics
from pipeline import cli
from pipeline import pipeline as pipeline_lib
from tests.test_cli import task_parameters
from tests.test_pipeline_e2e import K, N, write_log
from trainer import methods, tuning

SMALL = ["--dataset", "ml-1m", "--N", str(N), "--K", str(K), "--methods", "base,cvar",
         "--runs", "1", "--batch-size", "64", "--tfma-seeds", "0"]
# Cheap trials: CVAR's costly options fixed (--set), a two-point space, which 2 trials cover.
FIXED = {"iters": 1, "warm_epochs": 1}
FAST = ["--set", "cvar.iters=1", "--set", "cvar.warm_epochs=1"]


def last_output(metadata, type_name):
    uris = pipeline_lib.last_run_artifact_uris(metadata, type_name)
    assert len(uris) == 1, uris
    return uris[0]


class TuningPipelineTest(tf.test.TestCase):

    def test_search_end_to_end_then_imported_options(self):
        root = self.create_tempdir().full_path
        data_dir = os.path.join(root, "ml")
        os.makedirs(data_dir)
        write_log(data_dir)
        out = os.path.join(root, "out")
        space = os.path.join(root, "space.yaml")
        with open(space, "w") as f:
            f.write("cvar: {warm_data: {type: choice, values: [current, cumulative]}}\n")
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr):
            code = cli.main(["run", *SMALL, *FAST, "--tune", "cvar", "--trials", "2",
                             "--search-space", space, "--data-dir", data_dir, "--output", out,
                             "--cache"])
        self.assertEqual(code, 0, stderr.getvalue()[-3000:])
        metadata = pipeline_lib.local_paths(out)["metadata_path"]
        with open(os.path.join(out, "report.json")) as f:
            report = json.load(f)
        self.assertEqual(list(report["methods"]), ["base", "cvar", "cvar/tuned"])

        # The Tuner's best_hyperparameters is what WarmupEvaluate evaluated cvar/tuned with,
        # over the --set options.
        best = tuning.load_hyperparameters(last_output(metadata, "HyperParameters"))
        self.assertEqual(list(best), ["cvar"])
        self.assertIn(best["cvar"], [{"warm_data": "current"}, {"warm_data": "cumulative"}])
        tuned = {**FIXED, **best["cvar"]}
        metrics = read_phase_metrics(last_output(metadata, PhaseEvaluation.TYPE_NAME))
        self.assertEqual(metrics["tuned"], best)
        self.assertEqual(metrics["method_options"], {"cvar": FIXED, "cvar/tuned": tuned})
        self.assertEqual(sorted(metrics["methods"]), ["base", "cvar", "cvar/tuned"])

        # The report's tuning section: the 2 trials of the Tuner's trials.json, the defaults first,
        # the best one (highest objective, picked here) being the evaluated options.
        section = report["tuning"]["cvar"]
        searched = tuner_module.read_trials(last_output(metadata, "TunerResults"))
        self.assertEqual([(t["trial_id"], t["options"], t["objective"], t["status"])
                          for t in section["trials"]],
                         [(t["trial_id"], t["options"], t["objective"], t["status"])
                          for t in searched["trials"]])
        self.assertEqual([(t["options"], t["status"], t["defaults"]) for t in section["trials"]],
                         [({"warm_data": "current"}, "completed", True),
                          ({"warm_data": "cumulative"}, "completed", False)])
        winner = max(section["trials"], key=lambda t: t["objective"])
        self.assertEqual(winner["options"], best["cvar"])
        self.assertEqual(searched["best"]["options"], tuned)
        self.assertEqual((section["best_options"], section["options"], section["tuner"]),
                         (best["cvar"], tuned, "random"))
        # Trial 0 ran the method's default warm_data: on the final view, cvar's own row.
        if best["cvar"] == {"warm_data": "current"}:
            self.assertEqual(report["per_seed"]["cvar/tuned"], report["per_seed"]["cvar"])
        else:
            self.assertNotEqual(report["per_seed"]["cvar/tuned"], report["per_seed"]["cvar"])
        self.assertGreater(section["wall_s"], 0)
        self.assertTrue(all(t["wall_s"] > 0 for t in section["trials"]))
        self.assertGreater(os.path.getsize(os.path.join(out, "tuning_cvar.png")), 0)
        with open(os.path.join(out, "report.md")) as f:
            markdown = f.read()
        self.assertIn("## Tuning", markdown)
        self.assertIn("| cvar/tuned |", markdown)
        # Progress lines, one per trial, on the terminal.
        lines = [line for line in stderr.getvalue().splitlines() if "Tuner cvar: trial" in line]
        self.assertLen(lines, 2)
        # The tuning view held out round(0.2 * 10) old items and wrote no row of the 20 new ones.
        split = [uri for uri in pipeline_lib.artifact_uris(metadata, "Examples")
                 if "/TuningSplitGen/" in uri]
        stats = json.loads(open(os.path.join(split[0], "split_stats.json")).read())
        self.assertEqual((stats["holdout_items"], stats["old_items"], stats["view"]),
                         (2, 8, "tuning"))
        self.assertEqual(stats["withheld"], report["splits"]["warm_a"] * 3 + report["splits"]["test"])

        # A saved file skips the search: its options (other than the search's) reach the
        # evaluation; the rest of the run is reused from the cache.
        imported = {"iters": 2, "warm_data": "cumulative"}
        path = os.path.join(root, "best.json")
        with open(path, "w") as f:
            json.dump({"values": {f"cvar.{k}": v for k, v in imported.items()}}, f)
        with contextlib.redirect_stderr(io.StringIO()):
            code = cli.main(["run", *SMALL, *FAST, "--hyperparameters", path, "--data-dir",
                             data_dir, "--output", out, "--cache"])
        self.assertEqual(code, 0)
        metrics = read_phase_metrics(last_output(metadata, PhaseEvaluation.TYPE_NAME))
        self.assertEqual(metrics["method_options"]["cvar/tuned"], {"iters": 2, "warm_epochs": 1,
                                                                   "warm_data": "cumulative"})
        with open(os.path.join(out, "report.json")) as f:
            again = json.load(f)
        self.assertEqual(again["tuning"], {"cvar": {
            "label": "cvar/tuned", "imported": path, "best_options": imported,
            "options": metrics["method_options"]["cvar/tuned"]}})
        self.assertEqual(pipeline_lib.last_run_artifact_uris(metadata, "TunerResults"), [])
        self.assertLen(pipeline_lib.artifact_uris(metadata, "TunerResults"), 1)
        self.assertEqual(again["per_seed"]["cvar"], report["per_seed"]["cvar"])


class TuningCompileTest(tf.test.TestCase):

    def compiled(self, extra):
        out = os.path.join(self.create_tempdir().full_path, "pipeline.json")
        self.assertEqual(cli.main(["compile", *SMALL, "--backbone", "deepfm,dcn", *extra,
                                   "--data-root", "gs://b/ml-1m", "--pipeline-root", "gs://b/runs",
                                   "--image", "img:1", "--output", out]), 0)
        with open(out) as f:
            spec = json.load(f)
        return spec.get("pipelineSpec", spec)

    def test_tuner_nodes_and_parameters(self):
        space = os.path.join(self.create_tempdir().full_path, "space.yaml")
        with open(space, "w") as f:
            f.write("cvar: {iters: {type: int, min: 1, max: 3}}\n")
        spec = self.compiled(["--methods", "base,cvar,csdm", "--tune", "cvar,csdm", "--set",
                              "cvar.warm_epochs=1", "--trials", "3", "--tuner", "bayesian",
                              "--search-space", space])
        tasks = spec["root"]["dag"]["tasks"]
        self.assertContainsSubset(
            {"TuningSplitGen", "Transform.tuning", "Trainer.tuning.deepfm", "Trainer.tuning.dcn",
             "Tuner.deepfm.cvar", "Tuner.deepfm.csdm", "Tuner.dcn.cvar", "Tuner.dcn.csdm"},
            set(tasks))
        params = task_parameters(spec)
        self.assertEqual(json.loads(params["TuningSplitGen"]["params"]),
                         {"N": N, "K": K, "view": "tuning", "holdout_fraction": 0.2, "seed": 0})
        custom = json.loads(params["Tuner.dcn.cvar"]["custom_config"])
        self.assertEqual({k: custom[k] for k in ("method", "fixed", "tuner", "trials", "seeds")},
                         {"method": "cvar", "fixed": {"warm_epochs": 1}, "tuner": "bayesian",
                          "trials": 3, "seeds": [0]})
        self.assertEqual(custom["space"], {"iters": {"type": "int", "min": 1, "max": 3, "step": 1,
                                                     "sampling": "linear"}})
        self.assertEqual(set(json.loads(params["Tuner.deepfm.csdm"]["custom_config"])["space"]),
                         set(methods.CSDM.search_space))
        self.assertEqual(custom["protocol"]["params"]["view"], "tuning")
        self.assertEqual(params["WarmupEvaluate.dcn"]["tuned"], "cvar,csdm")
        inputs = tasks["WarmupEvaluate.dcn"]["inputs"]["artifacts"]
        self.assertEqual({k: v["taskOutputArtifact"]["producerTask"] for k, v in inputs.items()
                          if k.startswith("hyperparameters")},
                         {"hyperparameters_1": "Tuner.dcn.cvar",
                          "hyperparameters_2": "Tuner.dcn.csdm"})
        reports = tasks["ReportGen.deepfm"]["inputs"]["artifacts"]
        self.assertEqual(reports["tuner_results_2"]["taskOutputArtifact"]["producerTask"],
                         "Tuner.deepfm.csdm")

    def test_leave_last_out_and_per_domain_tune_on_their_tuning_views(self):
        root = self.create_tempdir().full_path
        for protocol, dataset, method, space in (
                ("leave_last_out", "ml-1m", "dmr", "{w: {type: choice, values: [0.1, 0.5]}}"),
                ("per_domain", "douban", "single",
                 "{lr_single: {type: float, min: 0.0001, max: 0.01}}")):
            path = os.path.join(root, f"{protocol}.yaml")
            out = os.path.join(root, f"{protocol}.json")
            with open(path, "w") as f:
                f.write(f"{method}: {space}\n")
            self.assertEqual(cli.main([
                "compile", "--dataset", dataset, "--protocol", protocol, "--methods",
                f"base,{method}", "--tune", method, "--trials", "2", "--search-space", path,
                "--schema-file", "gs://b/schema.pbtxt", "--data-root", "gs://b/ml-1m",
                "--pipeline-root", "gs://b/runs", "--image", "img:1", "--output", out]), 0)
            with open(out) as f:
                spec = json.load(f)
            params = task_parameters(spec.get("pipelineSpec", spec))
            split = params["TuningSplitGen"]
            self.assertEqual((split["protocol"], json.loads(split["params"])["view"]),
                             (protocol, "tuning"))
            self.assertEqual(json.loads(params["ItemSplitGen"]["params"])["view"], "final")
            tuner = params[f"Tuner.deepfm.{method}"]
            # every split of the tuning view, the pretraining one first
            self.assertEqual((json.loads(tuner["train_args"])["splits"],
                              json.loads(tuner["eval_args"])["splits"]),
                             (["train"], ["validation", "test"]))
            custom = json.loads(tuner["custom_config"])
            self.assertEqual((custom["protocol"]["name"], custom["protocol"]["params"]["view"]),
                             (protocol, "tuning"))

    def test_tune_seeds_pretrain_and_average_over_the_first_seeds_only(self):
        spec = self.compiled(["--methods", "base,cvar", "--tune", "cvar", "--runs", "3",
                              "--seed", "4", "--tune-seeds", "2"])
        params = task_parameters(spec)
        self.assertEqual(json.loads(params["Tuner.dcn.cvar"]["custom_config"])["seeds"], [4, 5])
        self.assertEqual(json.loads(params["Trainer.tuning.dcn"]["custom_config"])["seeds"],
                         [4, 5])
        self.assertEqual(json.loads(params["Trainer.dcn"]["custom_config"])["seeds"], [4, 5, 6])

    def test_parallel_trials_compile_the_vertex_ai_tuner(self):
        def executor_class(spec, task):
            label = spec["components"][spec["root"]["dag"]["tasks"][task]["componentRef"]["name"]]
            args = spec["deploymentSpec"]["executors"][label["executorLabel"]]["container"]["args"]
            return args[args.index("--executor_class_path") + 1]

        local = self.compiled(["--tune", "cvar"])
        self.assertEqual(executor_class(local, "Tuner.dcn.cvar"),
                         "components.tuner_module.TrialsExecutor")
        self.assertNotIn("tune_args", task_parameters(local)["Tuner.dcn.cvar"])
        spec = self.compiled(["--tune", "cvar", "--parallel-trials", "3", "--vertex-project", "p",
                              "--vertex-region", "europe-west4"])
        params = task_parameters(spec)
        pool = {"machine_spec": {"machine_type": "n1-standard-8"},
                "container_spec": {"image_uri": "img:1"}}
        for task in ("Tuner.deepfm.cvar", "Tuner.dcn.cvar"):
            self.assertEqual(executor_class(spec, task),
                             "tfx.extensions.google_cloud_ai_platform.tuner.executor.Executor")
            self.assertEqual(json.loads(params[task]["tune_args"]), {"num_parallel_trials": 3})
            custom = json.loads(params[task]["custom_config"])
            self.assertEqual(custom.pop("ai_platform_tuning_args"), {
                "project": "p", "job_spec": {"worker_pool_specs": [
                    {**pool, "replica_count": 1}, {**pool, "replica_count": 2}]}})
            self.assertEqual({k: custom.pop(k) for k in ("ai_platform_enable_vertex",
                                                         "ai_platform_vertex_region",
                                                         "remote_trials_working_dir")},
                             {"ai_platform_enable_vertex": True,
                              "ai_platform_vertex_region": "europe-west4",
                              "remote_trials_working_dir": f"gs://b/runs/tuner/{task}"})
            # The rest is the local Tuner's custom_config, for the same tuner_fn.
            self.assertEqual(custom, json.loads(task_parameters(local)[task]["custom_config"]))
            self.assertEqual(params[task]["tuner_fn"], "components.tuner_module.tuner_fn")

    def test_imported_hyperparameters_replace_the_search(self):
        path = os.path.join(self.create_tempdir().full_path, "best.json")
        with open(path, "w") as f:
            json.dump({"values": {"cvar.iters": 3}}, f)
        spec = self.compiled(["--hyperparameters", path])
        tasks = spec["root"]["dag"]["tasks"]
        self.assertNotIn("TuningSplitGen", tasks)
        self.assertFalse([t for t in tasks if t.startswith("Tuner")])
        self.assertIn("ImportHyperparameters", tasks)
        self.assertEqual(task_parameters(spec)["ImportHyperparameters"]["artifact_uri"], path)
        inputs = tasks["WarmupEvaluate.deepfm"]["inputs"]["artifacts"]
        self.assertEqual(inputs["hyperparameters_1"]["taskOutputArtifact"]["producerTask"],
                         "ImportHyperparameters")


class TuneArgumentErrorsTest(tf.test.TestCase):

    def test_one_line_exit_2_before_any_work(self):
        out = self.create_tempdir().full_path
        space = os.path.join(out, "space.yaml")
        with open(space, "w") as f:
            f.write("cvar: {iters: {type: int, min: 0, max: 3}}\n")
        hp = os.path.join(out, "hp.json")
        with open(hp, "w") as f:
            json.dump({"values": {"csdm.T": 50}}, f)
        cases = (
            (["--tune", "csdm"], "--tune csdm: not in --methods base,cvar"),
            (["--tune", "cvar", "--set", "protocol.view=tuning"],
             "--tune: the run evaluates the final view (protocol.view=final); the Tuner builds "
             "the tuning view itself"),
            (["--tune", "cvar", "--search-space", space],
             "search space cvar: iters must be at least 1, not 0"),
            (["--tune", "cvar", "--trials", "0"], "--trials must be at least 1, not 0"),
            (["--tune", "cvar", "--tuner", "grid"],
             "--tuner must be one of random, bayesian, hyperband, not 'grid'"),
            (["--trials", "3"], "--trials needs --tune"),
            (["--tune-seeds", "1"], "--tune-seeds needs --tune"),
            (["--tune", "cvar", "--tune-seeds", "2"],
             "--tune-seeds must be between 1 and --runs (1), not 2"),
            (["--tune", "base"], "--tune base: base declares no search space; give one with "
                                 "--search-space"),
            (["--hyperparameters", hp], f"--hyperparameters {hp}: method 'csdm' is not in "
                                        "--methods base,cvar"),
        )
        commands = {"run": ["--data-dir", out],
                    "compile": ["--data-root", "gs://b/d", "--pipeline-root", "gs://b/r",
                                "--image", "img"]}
        for (extra, message), command in itertools.product(cases, commands):
            stderr = io.StringIO()
            with contextlib.redirect_stderr(stderr):
                code = cli.main([command, *commands[command], "--dataset", "ml-1m", "--methods",
                                 "base,cvar", *extra, "--output", os.path.join(out, "x")])
            self.assertEqual((command, extra, code, stderr.getvalue()),
                             (command, extra, 2, f"coldstart: error: {message}\n"))
        self.assertEqual(sorted(os.listdir(out)), ["hp.json", "space.yaml"])

    def test_vertex_flags_are_compile_only_and_checked_before_any_work(self):
        out = self.create_tempdir().full_path
        hp = os.path.join(out, "hp.json")
        with open(hp, "w") as f:
            json.dump({"values": {"cvar.iters": 2}}, f)
        vertex = ["--parallel-trials", "3", "--vertex-project", "p"]
        cases = (
            (vertex, "--parallel-trials needs --tune"),
            (["--tune", "cvar", "--parallel-trials", "3"],
             "--parallel-trials needs --vertex-project"),
            (["--tune", "cvar", "--parallel-trials", "1", "--vertex-project", "p"],
             "--parallel-trials must be at least 2, not 1"),
            (["--hyperparameters", hp, *vertex],
             "--hyperparameters skips the search: --parallel-trials does not apply"),
            (["--tune", "cvar", "--vertex-region", "europe-west4"],
             "--vertex-region needs --parallel-trials"),
        )
        for extra, message in cases:
            stderr = io.StringIO()
            with contextlib.redirect_stderr(stderr):
                code = cli.main(["compile", "--data-root", "gs://b/d", "--pipeline-root",
                                 "gs://b/r", "--image", "img", "--dataset", "ml-1m", "--methods",
                                 "base,cvar", *extra, "--output", os.path.join(out, "x")])
            self.assertEqual((extra, code, stderr.getvalue()),
                             (extra, 2, f"coldstart: error: {message}\n"))
        # `run` has no such flags: LocalDagRunner cannot run remote trials.
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr), self.assertRaises(SystemExit) as exit_:
            cli.main(["run", "--data-dir", out, "--methods", "base,cvar", "--tune", "cvar",
                      *vertex, "--output", os.path.join(out, "x")])
        self.assertEqual(exit_.exception.code, 2)
        self.assertEqual(stderr.getvalue().splitlines()[-1], "coldstart: error: unrecognized "
                         "arguments: --parallel-trials 3 --vertex-project p")
        self.assertEqual(os.listdir(out), ["hp.json"])
