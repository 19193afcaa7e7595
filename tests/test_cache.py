"""`--cache` reuses nothing stale: the raw files' fingerprint and the project's code version are
in every component's cache key."""
import contextlib
import io
import os
import shutil
from unittest import mock

import tensorflow as tf
from ml_metadata.proto import metadata_store_pb2

from pipeline import cli
from pipeline import pipeline as pipeline_lib
from tests.test_pipeline_e2e import write_log

FLAGS = ["--dataset", "ml-1m", "--N", "100", "--K", "10", "--batch-size", "256",
         "--tfma-seeds", "0", "--cache"]
State = metadata_store_pb2.Execution.State


def last_run_states(metadata_path):
    """{component id: execution state} of the newest pipeline run in the MLMD store."""
    store = pipeline_lib._store(metadata_path)  # pylint: disable=protected-access
    run = max(store.get_contexts_by_type("pipeline_run"), key=lambda c: c.id)
    node_type = store.get_context_type("node").id
    states = {}
    for execution in store.get_executions_by_context(run.id):
        node, = [c for c in store.get_contexts_by_execution(execution.id)
                 if c.type_id == node_type]  # "<pipeline name>.<component id>"
        states[node.name.split(".", 1)[1]] = execution.last_known_state
    return states


class InputFingerprintTest(tf.test.TestCase):

    def test_content_of_small_files_and_mtime_of_large_ones(self):
        root = self.create_tempdir().full_path
        write_log(root)
        config = cli.load_dataset("ml-1m")
        ratings = os.path.join(root, "ratings.dat")
        with open(ratings) as f:
            text = f.read()
        first = pipeline_lib.input_fingerprint(config, root)
        self.assertLen(first, 16)
        with open(ratings, "w") as f:  # the same bytes again, a newer mtime: the same input
            f.write(text)
        os.utime(ratings, ns=(10**18, 10**18))
        self.assertEqual(pipeline_lib.input_fingerprint(config, root), first)
        edited = text.replace("::1::", "::2::", 1)  # one rating, same size
        self.assertEqual(len(edited), len(text))
        with open(ratings, "w") as f:
            f.write(edited)
        self.assertNotEqual(pipeline_lib.input_fingerprint(config, root), first)
        with open(os.path.join(root, "movies.dat"), "a") as f:  # a side table counts as well
            f.write("41::Another (1999)::Drama\n")
        second = pipeline_lib.input_fingerprint(config, root)
        self.assertNotEqual(second, first)
        with open(os.path.join(root, "unrelated.txt"), "w") as f:  # not read: not in the key
            f.write("x")
        self.assertEqual(pipeline_lib.input_fingerprint(config, root), second)
        with mock.patch.object(pipeline_lib, "SMALL_FILE", 0):  # every file is "large"
            large = pipeline_lib.input_fingerprint(config, root)
            os.utime(ratings, ns=(10**18, 10**18 + 1))
            self.assertNotEqual(pipeline_lib.input_fingerprint(config, root), large)
        self.assertEqual(pipeline_lib.input_fingerprint(config, "gs://bucket/ml-1m"), "")


class CodeVersionTest(tf.test.TestCase):

    def test_sources_and_schemas_count_other_files_do_not(self):
        root = self.create_tempdir().full_path
        for directory in pipeline_lib.CODE_DIRS + ("tests", "docs"):
            shutil.copytree(os.path.join(pipeline_lib.PROJECT_ROOT, directory),
                            os.path.join(root, directory),
                            ignore=shutil.ignore_patterns("__pycache__"))
        version = pipeline_lib.code_version(root)
        self.assertEqual(version, pipeline_lib.code_version())
        for path in ("tests/test_options.py", "docs/new.md", "trainer/notes.txt"):
            with open(os.path.join(root, path), "a") as f:
                f.write("\n# edit\n")
            self.assertEqual(pipeline_lib.code_version(root), version, path)
        for path in ("trainer/methods/csdm.py", "schemas/ml-1m/dataset.yaml",
                     "schemas/ml-1m/schema.pbtxt", "components/new_module.py"):
            with open(os.path.join(root, path), "a") as f:
                f.write("\n# edit\n")
            self.assertNotEqual(pipeline_lib.code_version(root), version, path)
            version = pipeline_lib.code_version(root)

    def test_every_component_running_project_code_gets_both(self):
        root = self.create_tempdir().full_path
        write_log(root)
        tfx_pipeline = cli.local_pipeline(cli.parser().parse_args(
            ["run", *FLAGS, "--tfma-seeds", "1", "--data-dir", root,
             "--output", os.path.join(root, "out")]))
        code, fingerprint = pipeline_lib.code_version(), pipeline_lib.input_fingerprint(
            cli.load_dataset("ml-1m"), root)
        properties = {c.id: c.exec_properties for c in tfx_pipeline.components}
        self.assertEqual(properties["ClickLogExampleGen"]["input_fingerprint"], fingerprint)
        self.assertEqual(sorted(name for name, p in properties.items() if "code_version" in p),
                         ["AnomalyGate", "ClickLogExampleGen", "ItemSplitGen", "QuarantineGate",
                          "WarmupEvaluate.deepfm"])
        for name in ("AnomalyGate", "ClickLogExampleGen", "ItemSplitGen", "QuarantineGate",
                     "WarmupEvaluate.deepfm"):
            self.assertEqual(properties[name]["code_version"], code, name)
        for name, key in (("Transform", "custom_config"), ("Trainer.deepfm", "custom_config"),
                          ("ReportGen.deepfm", "run_config")):
            self.assertIn(f'"code_version": "{code}"', str(properties[name][key]), name)
        # Standard components that run no project code: StatisticsGen, ExampleValidator,
        # ImportSchemaGen (its file's path changes with its content), Evaluator (its config is
        # a parameter).
        self.assertIn(os.path.join("schema", ""), properties["ImportSchemaGen"]["schema_file"])


class CacheEndToEndTest(tf.test.TestCase):

    def test_edited_raw_file_reruns_example_gen_unchanged_run_is_cached(self):
        root = self.create_tempdir().full_path
        rows = write_log(root)
        out = os.path.join(root, "out")
        metadata = pipeline_lib.local_paths(out)["metadata_path"]
        argv = ["run", *FLAGS, "--data-dir", root, "--output", out]
        self.assertEqual(cli.main(argv), 0)
        first = last_run_states(metadata)
        self.assertEqual(sorted(first), sorted(
            ["ClickLogExampleGen", "QuarantineGate", "ItemSplitGen", "ImportSchemaGen",
             "StatisticsGen", "ExampleValidator", "AnomalyGate", "Transform", "Trainer.deepfm",
             "WarmupEvaluate.deepfm", "ReportGen.deepfm"]))
        self.assertEqual(set(first.values()), {State.COMPLETE})

        self.assertEqual(cli.main(argv), 0)  # nothing changed: every component is reused
        second = last_run_states(metadata)
        self.assertEqual(set(second), set(first))
        self.assertEqual(set(second.values()), {State.CACHED})

        # 30 more bad lines in ratings.dat (about 1 %): a fresh read quarantines them and the
        # gate stops the run; a stale cache would reuse the old read and pass.
        with open(os.path.join(root, "ratings.dat"), "a") as f:
            f.writelines(f"{n}::x\n" for n in range(30))
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr):
            self.assertEqual(cli.main(argv), 1)
        total = len(rows) + 30
        self.assertIn(f"30 of {total:,} input rows", stderr.getvalue())
        third = last_run_states(metadata)
        self.assertEqual(third["ClickLogExampleGen"], State.COMPLETE)
        self.assertNotIn("ItemSplitGen", third)  # the gate stopped the run before it
