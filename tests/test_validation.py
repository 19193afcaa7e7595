"""Schema validation: StatisticsGen + ExampleValidator + AnomalyGate in a real TFX run."""
import json
import os

import tensorflow as tf
from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx import v1 as tfx

from components import example_gen, log_config, validation
from components.split_component import ItemSplitGen
from pipeline import beam_presets, pipeline as pipeline_lib
import schemas

CONFIG = {"name": "tiny", "log": {"files": ["log.csv"]},
          "label": {"column": "click", "positive": ["1"], "negative": ["0"]},
          "fields": [{"name": "user_id", "column": "user"}, {"name": "item_id", "column": "item"},
                     {"name": "price", "type": "numeric", "role": "item"},
                     {"name": "timestamp", "column": "time", "type": "timestamp"}],
          "split": {"N": 6, "K": 1}}


class DescribeTest(tf.test.TestCase):

    def test_one_line_per_anomaly(self):
        anomalies = anomalies_pb2.Anomalies()
        info = anomalies.anomaly_info["price"]
        info.short_description = "Unexpected data type"
        info.description = "Expected data of type: INT but got FLOAT"
        self.assertEqual(validation.describe({"base": anomalies, "test": anomalies_pb2.Anomalies()}),
                         ["base: price: Unexpected data type (Expected data of type: INT but got "
                          "FLOAT)"])


class GateTest(tf.test.TestCase):

    def _run(self, schema_text):
        root = self.create_tempdir().full_path
        data = os.path.join(root, "data")
        os.makedirs(data)
        with open(os.path.join(data, "log.csv"), "w") as f:
            f.write("user,item,price,time,click\n")
            for i in range(40):  # item a: 10 rows (old), b: 4 rows (new), the rest dropped
                item = "a" if i < 10 else "b" if i < 14 else f"r{i}"
                f.write(f"u{i % 7},{item},{i / 4},{1500000000 + i},{i % 2}\n")
        schema_file = os.path.join(root, "schema.pbtxt")
        with open(schema_file, "w") as f:
            f.write(schema_text)
        config = log_config.from_dict(CONFIG)
        gen = example_gen.ClickLogExampleGen(input_base=data,
                                             dataset_config=json.dumps(config.to_dict()))
        split = ItemSplitGen(examples=gen.outputs["examples"], N=6, K=1)
        schema = tfx.components.ImportSchemaGen(schema_file=schema_file)
        stats = pipeline_lib.statistics_component(split.outputs["split_examples"])
        validator = tfx.components.ExampleValidator(statistics=stats.outputs["statistics"],
                                                    schema=schema.outputs["schema"])
        gate = validation.AnomalyGate(anomalies=validator.outputs["anomalies"])
        tfx.orchestration.LocalDagRunner().run(tfx.dsl.Pipeline(
            pipeline_name="gate", pipeline_root=os.path.join(root, "tfx"),
            components=[gen, split, schema, stats, validator, gate],
            metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
                os.path.join(root, "m.sqlite")),
            beam_pipeline_args=beam_presets.beam_args("direct")))

    def test_generated_schema_passes_and_a_wrong_one_names_field_and_problem(self):
        text = schemas.schema_text(log_config.from_dict(CONFIG))
        self._run(text)
        wrong = text.replace('name: "price"\n  type: FLOAT', 'name: "price"\n  type: INT')
        self.assertNotEqual(wrong, text)
        with self.assertRaisesRegex(Exception, r"do not match the schema:\n  base: price: "
                                               r"Unexpected data type"):
            self._run(wrong)

    def test_out_of_domain_values_are_caught_with_the_pipeline_stats_options(self):
        # The pipeline's StatisticsGen computes no histograms and short top-value lists
        # (pipeline.STATS_OPTIONS); int domains, categorical or not, are still checked.
        text = schemas.schema_text(log_config.from_dict(CONFIG))
        wrong = (text.replace("int_domain { min: 0 max: 1 is_categorical: true }",
                              "int_domain { min: 0 max: 0 is_categorical: true }")
                 .replace("int_domain { min: 1 }", "int_domain { min: 5 }"))
        with self.assertRaises(Exception) as raised:
            self._run(wrong)
        message = str(raised.exception)
        self.assertIn("do not match the schema:", message)
        self.assertIn("\n  base: label: ", message)  # categorical int domain (max 0)
        self.assertIn("\n  dropped: count: ", message)  # numeric int domain (min 5)
        self.assertNotIn("base: count", message)  # base items have 10 rows
