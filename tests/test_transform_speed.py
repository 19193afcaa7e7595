"""The speed work leaves every value alone: TFX's own Transform in the old configuration and ours
(pipeline.TRANSFORM_OPTIONS, C++ record I/O), run side by side on the same small item-split log,
give the same vocabularies, the same transformed examples, and the same per-seed AUC of a quick
base run."""
import json
import os

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
from tfx import v1 as tfx

from components import example_gen, example_io
from components.split_component import ItemSplitGen
from pipeline import cli
from pipeline import pipeline as pipeline_lib
from trainer import data, features, methods, preprocessing, protocol, protocols, task
import schemas
from tests.test_pipeline_e2e import write_log
from trainer.context import ProtocolContext

OLD = {"disable_analyzer_cache": False, "stock_tfx": True}  # before issue 12


SPLITS = [s for s in protocols.build("item_frequency").splits
          if s not in pipeline_lib.UNUSED_SPLITS]  # the transformed ones

class TransformSpeedTest(tf.test.TestCase):

    def test_old_and_new_transform_agree(self):
        self.assertNotEqual(pipeline_lib.TRANSFORM_OPTIONS, OLD)
        root = self.create_tempdir().full_path
        log_dir = os.path.join(root, "ml")
        os.makedirs(log_dir)
        write_log(log_dir)
        config = cli.load_dataset("ml-1m")
        gen = example_gen.ClickLogExampleGen(input_base=log_dir,
                                             dataset_config=json.dumps(config.to_dict()))
        split = ItemSplitGen(examples=gen.outputs["examples"], N=100, K=10)
        schema = tfx.components.ImportSchemaGen(schema_file=schemas.schema_path("ml-1m"))
        old = pipeline_lib.transform_component(split.outputs["split_examples"],
                                               schema.outputs["schema"], config, **OLD)
        new = pipeline_lib.transform_component(split.outputs["split_examples"],
                                               schema.outputs["schema"], config)
        metadata = os.path.join(root, "metadata.sqlite")
        tfx.orchestration.LocalDagRunner().run(tfx.dsl.Pipeline(
            pipeline_name="transform-speed", pipeline_root=os.path.join(root, "tfx"),
            components=[gen, split, schema, old.with_id("Transform.old"),
                        new.with_id("Transform.new")],
            metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
                metadata)))

        feature_config = features.from_dataset(config.to_dict())
        outputs = {}
        for name in ("old", "new"):
            graph = [u for u in pipeline_lib.artifact_uris(metadata, "TransformGraph")
                     if f"/Transform.{name}/" in u][0]
            examples = [u for u in pipeline_lib.artifact_uris(metadata, "Examples")
                        if f"/Transform.{name}/" in u][0]
            tft_output = tft.TFTransformOutput(graph)
            spec = tft_output.transformed_feature_spec()
            outputs[name] = {
                "spec": spec,
                "vocab": {f.name: tft_output.vocabulary_by_name(preprocessing.vocab_name(f.name))
                          for f in feature_config.fields if f.kind in ("spr", "seq")},
                "sizes": preprocessing.vocab_sizes(tft_output, feature_config),
                "splits": {s: data.load_files(example_io.split_files(examples, s), spec)
                           for s in SPLITS}}
        old_out, new_out = outputs["old"], outputs["new"]
        self.assertEqual(old_out["spec"], new_out["spec"])
        self.assertEqual(old_out["vocab"], new_out["vocab"])
        self.assertEqual(old_out["sizes"], new_out["sizes"])
        self.assertLen(new_out["vocab"]["item_id"], 40)
        for name in SPLITS:
            old_split, new_split = old_out["splits"][name], new_out["splits"][name]
            self.assertEqual(sorted(old_split), sorted(new_split))
            for column in old_split:  # exact: same dtype, shape and every value
                self.assertEqual(old_split[column].dtype, new_split[column].dtype)
                np.testing.assert_array_equal(old_split[column], new_split[column],
                                              err_msg=f"{name}/{column}")
        self.assertLen(new_out["splits"]["warm_a"][features.LABEL], 20 * 10)

        # Per-seed AUC of a quick base run (pretrain on base, cold + 3 warm-up phases).
        train = protocol.TrainConfig(batch_size=64)
        for seed in (0, 1):
            auc = {}
            for name in ("old", "new"):
                splits = outputs[name]["splits"]
                model = task.pretrain("deepfm", feature_config, outputs[name]["sizes"],
                                      splits["base"], train, seed)
                auc[name] = protocol.warm_up_and_evaluate(model, ProtocolContext.in_memory(splits),
                                                          train, seed,
                                                          methods.build("base", seed=seed))
            self.assertEqual(auc["old"], auc["new"])
