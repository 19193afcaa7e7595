"""fast_read: the same record batches as tfx_bsl's TFExampleRecord, read by our C++ reader."""
import os

import apache_beam as beam
from apache_beam.testing import test_pipeline
import pyarrow as pa
import tensorflow as tf
import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import schema_pb2
from tfx.components.statistics_gen import executor, stats_artifact_utils
from tfx.types import artifact_utils, standard_artifacts
from tfx_bsl.tfxio import tf_example_record

from components import fast_read

SCHEMA = schema_pb2.Schema()
for _name, _type in (("item_id", schema_pb2.BYTES), ("count", schema_pb2.INT),
                     ("score", schema_pb2.FLOAT)):
    SCHEMA.feature.add(name=_name, type=_type)


def example(i):
    out = tf.train.Example()
    feature = out.features.feature
    feature["item_id"].bytes_list.value.append(f"item{i % 7}".encode())
    if i % 5:  # some rows lack a feature
        feature["count"].int64_list.value.extend(range(i % 3))
    feature["score"].float_list.value.append(i / 10)
    return out.SerializeToString()


def write_files(folder, suffix=".gz"):
    """Two gzipped files of 150 and 100 examples."""
    os.makedirs(folder)
    for shard, rows in enumerate((range(150), range(150, 250))):
        with tf.io.TFRecordWriter(os.path.join(folder, f"data-{shard}{suffix}"),
                                  "GZIP" if suffix == ".gz" else "") as writer:
            for i in rows:
                writer.write(example(i))
    return os.path.join(folder, "*")


_BATCHES = []  # filled by _collect in this process (the in-process runner's workers)


def _collect(batch):
    _BATCHES.append(batch)


def table(tfxio):
    """Every record batch that `tfxio`'s BeamSource gives, as one table."""
    del _BATCHES[:]
    with test_pipeline.TestPipeline() as p:
        _ = p | tfxio.BeamSource(64) | beam.Map(_collect)
    return pa.Table.from_batches(_BATCHES).combine_chunks()


class FastReadTest(tf.test.TestCase):

    def test_same_record_batches_as_tfx_bsl(self):
        pattern = write_files(os.path.join(self.get_temp_dir(), "data"))
        ours = fast_read.TFExampleRecord(pattern, schema=SCHEMA, raw_record_column_name="raw")
        stock = tf_example_record.TFExampleRecord(pattern, schema=SCHEMA,
                                                  raw_record_column_name="raw")
        got, expected = table(ours), table(stock)
        self.assertEqual(got.num_rows, 250)
        self.assertEqual(got.schema, expected.schema)
        self.assertEqual(ours.ArrowSchema(), stock.ArrowSchema())

        def rows(t):  # Beam may hand the two files over in another order: rows by raw record
            return sorted(t.to_pylist(), key=lambda row: row["raw"])
        self.assertEqual(rows(got), rows(expected))
        self.assertCountEqual([row["raw"] for row in got.to_pylist()],
                              [[example(i)] for i in range(250)])
        by_raw = {row["raw"][0]: row for row in got.to_pylist()}
        self.assertEqual(by_raw[example(7)]["count"], [0])  # range(7 % 3)
        self.assertIsNone(by_raw[example(10)]["count"])  # 10 % 5 == 0: no count feature
        self.assertEqual(by_raw[example(8)]["item_id"], [b"item1"])

    def test_projection_reads_only_the_kept_feature_the_same_way(self):
        pattern = write_files(os.path.join(self.get_temp_dir(), "data"))
        ours = fast_read.TFExampleRecord(pattern, schema=SCHEMA).Project(["count"])
        stock = tf_example_record.TFExampleRecord(pattern, schema=SCHEMA).Project(["count"])
        self.assertIsInstance(ours.projected, fast_read.TFExampleRecord)
        got = table(ours)
        self.assertEqual(got.column_names, ["count"])
        self.assertCountEqual(got.column("count").to_pylist(),
                              table(stock).column("count").to_pylist())

    def test_uncompressed_files_are_a_clear_error(self):
        pattern = write_files(os.path.join(self.get_temp_dir(), "data"), suffix=".tfrecord")
        with self.assertRaisesRegex(ValueError, r"expected gzipped TFRecord files \(\*\.gz\)"):
            table(fast_read.TFExampleRecord(pattern, schema=SCHEMA))

    def test_only_plain_example_readers_are_replaced(self):
        pattern = os.path.join(self.get_temp_dir(), "*")
        plain = tf_example_record.TFExampleRecord(pattern, schema=SCHEMA,
                                                  telemetry_descriptors=["t"])
        replaced = fast_read.with_cpp_reads(plain, pattern, SCHEMA)
        self.assertIsInstance(replaced, fast_read.TFExampleRecord)
        self.assertEqual(replaced.telemetry_descriptors, ["t"])
        beam_record = tf_example_record.TFExampleBeamRecord("tfrecords_gzip", schema=SCHEMA)
        self.assertIs(fast_read.with_cpp_reads(beam_record, pattern, SCHEMA), beam_record)


class StatisticsGenExecutorTest(tf.test.TestCase):

    def run_executor(self, executor_class, examples, name, **properties):
        statistics = standard_artifacts.ExampleStatistics()
        statistics.uri = os.path.join(self.get_temp_dir(), name)
        executor_class().Do({"examples": [examples]}, {"statistics": [statistics]},
                            {"stats_options_json": tfdv.StatsOptions().to_json(), **properties})
        return statistics

    def test_the_statistics_of_tfx_statistics_gen(self):
        examples = standard_artifacts.Examples()
        examples.uri = os.path.join(self.get_temp_dir(), "examples")
        examples.split_names = artifact_utils.encode_split_names(["a", "b"])
        for split in ("a", "b"):
            write_files(os.path.join(examples.uri, f"Split-{split}"))
        ours = self.run_executor(fast_read.StatisticsGenExecutor, examples, "ours")
        stock = self.run_executor(executor.Executor, examples, "stock")
        self.assertEqual(ours.split_names, stock.split_names)
        for split in ("a", "b"):
            got, expected = (stats_artifact_utils.load_statistics(a, split).proto().datasets[0]
                             for a in (ours, stock))
            self.assertEqual(got.num_examples, 250)
            self.assertEqual(expected.num_examples, 250)
            features = {f.path.step[0]: f for f in got.features}
            for feature in expected.features:
                mine = features[feature.path.step[0]]
                which = feature.WhichOneof("stats")
                self.assertEqual(mine.WhichOneof("stats"), which)
                common, common_expected = (getattr(f, which).common_stats
                                           for f in (mine, feature))
                self.assertEqual(common.num_non_missing, common_expected.num_non_missing)
                self.assertEqual(common.min_num_values, common_expected.min_num_values)
                self.assertEqual(common.max_num_values, common_expected.max_num_values)
                self.assertEqual(common.tot_num_values, common_expected.tot_num_values)
            self.assertEqual(features["count"].num_stats.common_stats.num_non_missing, 200)
            self.assertEqual(features["count"].num_stats.max, 1)

    def test_parameters_it_does_not_run_are_refused(self):
        with self.assertRaisesRegex(ValueError, r"does not support \['exclude_splits'\]"):
            self.run_executor(fast_read.StatisticsGenExecutor, None, "x",
                              exclude_splits='["a"]')


if __name__ == "__main__":
    tf.test.main()
