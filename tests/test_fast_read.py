"""fast_read: the same record batches as tfx_bsl's TFExampleRecord, read by our C++ reader; the
same statistics as TFX's StatisticsGen; the same transformed examples as TFX's Transform, which
really reads through our reader."""
import os

import apache_beam as beam
from apache_beam.testing import test_pipeline
import pyarrow as pa
import pyarrow.parquet as pq
import tensorflow as tf
import tensorflow_data_validation as tfdv
import tensorflow_transform as tft
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2
from tfx.components.statistics_gen import executor, stats_artifact_utils
from tfx.components.transform import executor as transform_executor
from tfx.proto import transform_pb2
from tfx.types import artifact_utils, standard_artifacts
from tfx.utils import proto_utils
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
        examples.split_names = artifact_utils.encode_split_names(["a", "b", "empty"])
        for split in ("a", "b"):
            write_files(os.path.join(examples.uri, f"Split-{split}"))
        os.makedirs(os.path.join(examples.uri, "Split-empty"))
        tf.io.TFRecordWriter(os.path.join(examples.uri, "Split-empty", "data.gz"), "GZIP").close()
        ours = self.run_executor(fast_read.StatisticsGenExecutor, examples, "ours")
        stock = self.run_executor(executor.Executor, examples, "stock")
        self.assertEqual(ours.split_names, stock.split_names)
        for split in ("a", "b", "empty"):
            got, expected = (stats_artifact_utils.load_statistics(a, split).proto()
                             for a in (ours, stock))
            self.assertLen(got.datasets, 1)
            self.assertEqual(got.datasets[0].num_examples, 0 if split == "empty" else 250)
            # Every figure, histograms and quantiles too; the standard deviations within 1e-12
            # (the partial sums merge in another order: 1 ulp apart here).
            for stats in (got, expected):
                for feature in stats.datasets[0].features:
                    if feature.HasField("num_stats"):
                        feature.num_stats.std_dev = round(feature.num_stats.std_dev, 12)
            self.assertEqual(got, expected, split)
            if split == "empty":
                continue
            features = {f.path.step[0]: f for f in got.datasets[0].features}
            self.assertEqual(features["count"].num_stats.common_stats.num_non_missing, 200)
            self.assertEqual(features["count"].num_stats.max, 1)

    def test_parameters_it_does_not_run_are_refused(self):
        with self.assertRaisesRegex(ValueError, r"does not support \['exclude_splits'\]"):
            self.run_executor(fast_read.StatisticsGenExecutor, None, "x",
                              exclude_splits='["a"]')
        examples = standard_artifacts.Examples()
        examples.uri = os.path.join(self.get_temp_dir(), "examples")
        examples.split_names = artifact_utils.encode_split_names(["a"])
        write_files(os.path.join(examples.uri, "Split-a"))
        statistics = standard_artifacts.ExampleStatistics()
        statistics.uri = os.path.join(self.get_temp_dir(), "sampled")
        with self.assertRaisesRegex(ValueError, "supports no sampling"):
            fast_read.StatisticsGenExecutor().Do(
                {"examples": [examples]}, {"statistics": [statistics]},
                {"stats_options_json": tfdv.StatsOptions(sample_rate=0.5).to_json()})


def preprocessing_fn(inputs):
    """A vocabulary, a scaled value and the counts padded to 2 with -1 (executor test below);
    the schema gives every feature as a SparseTensor."""
    def dense(name, default, width=1):
        sparse = tf.sparse.reset_shape(inputs[name], [inputs[name].dense_shape[0], width])
        return tf.reshape(tf.sparse.to_dense(sparse, default_value=default), [-1, width])
    return {"item_id": tft.compute_and_apply_vocabulary(tf.reshape(dense("item_id", ""), [-1]),
                                                        num_oov_buckets=1, vocab_filename="item_id"),
            "score": tft.scale_to_0_1(tf.reshape(dense("score", 0.0), [-1])),
            "n": dense("count", -1, width=2)}


def as_tuple(record):
    """A serialized Example as ((feature, values), ...) by name (its map's order on the wire
    varies)."""
    feature = tf.train.Example.FromString(record).features.feature
    return tuple((name, tuple(getattr(feature[name], feature[name].WhichOneof("kind")).value))
                 for name in sorted(feature))


class TransformExecutorTest(tf.test.TestCase):

    def run_executor(self, executor_class, examples, name):
        root = os.path.join(self.get_temp_dir(), name)
        schema = standard_artifacts.Schema()
        schema.uri = os.path.join(root, "schema")
        os.makedirs(schema.uri)
        with open(os.path.join(schema.uri, "schema.pbtxt"), "w") as f:
            f.write(text_format.MessageToString(SCHEMA))
        outputs = {key: [artifact] for key, artifact in (
            ("transform_graph", standard_artifacts.TransformGraph()),
            ("transformed_examples", standard_artifacts.Examples()))}
        for key, (artifact,) in outputs.items():
            artifact.uri = os.path.join(root, key)
        splits = transform_pb2.SplitsConfig(analyze=["a"], transform=["a", "b"])
        executor_class().Do(
            {"examples": [examples], "schema": [schema]}, outputs,
            {"preprocessing_fn": f"{__name__}.preprocessing_fn", "disable_statistics": 1,
             "splits_config": proto_utils.proto_to_json(splits)})
        transformed = outputs["transformed_examples"][0]
        return {split: sorted(as_tuple(record.numpy()) for record in tf.data.TFRecordDataset(
                    tf.io.gfile.glob(os.path.join(transformed.uri, f"Split-{split}", "*")),
                    compression_type="GZIP"))
                for split in ("a", "b")}, tft.TFTransformOutput(outputs["transform_graph"][0].uri)

    def examples(self, suffix):
        examples = standard_artifacts.Examples()
        examples.uri = os.path.join(self.get_temp_dir(), "examples" + suffix)
        examples.split_names = artifact_utils.encode_split_names(["a", "b"])
        write_files(os.path.join(examples.uri, "Split-a"), suffix)
        os.makedirs(os.path.join(examples.uri, "Split-b"))
        with tf.io.TFRecordWriter(os.path.join(examples.uri, "Split-b", "data" + suffix),
                                  "GZIP" if suffix == ".gz" else "") as writer:
            for i in range(300, 320):
                writer.write(example(i))
        return examples

    def test_the_output_of_tfx_transform(self):
        examples = self.examples(".gz")
        ours, our_output = self.run_executor(fast_read.TransformExecutor, examples, "ours")
        stock, stock_output = self.run_executor(transform_executor.Executor, examples, "stock")
        self.assertEqual([len(ours["a"]), len(ours["b"])], [250, 20])
        self.assertEqual(ours, stock)  # the same examples, every value
        self.assertEqual(our_output.vocabulary_by_name("item_id"),
                         stock_output.vocabulary_by_name("item_id"))
        self.assertLen(our_output.vocabulary_by_name("item_id"), 7)
        self.assertEqual([name for name, _ in ours["b"][0]], ["item_id", "n", "score"])
        # Split b holds 300..319: count range(i % 3) (none where 5 divides i) padded with -1,
        # score above a's maximum.
        counts = [tuple(range(i % 3)) if i % 5 else () for i in range(300, 320)]
        self.assertCountEqual([values for (_, _), (_, values), (_, _) in ours["b"]],
                              [c + (-1,) * (2 - len(c)) for c in counts])
        self.assertTrue(all(score[0] > 1 for _, _, (_, score) in ours["b"]))
        # TFX's executor module has its own TransformProcessor again after ours ran.
        self.assertEqual(transform_executor.TransformProcessor.__module__, transform_executor.__name__)

    def test_it_reads_through_our_reader(self):
        # Only ReadGzipTFRecords refuses files that are not gzipped; Beam's reader reads them.
        with self.assertRaisesRegex(ValueError, r"expected gzipped TFRecord files"):
            self.run_executor(fast_read.TransformExecutor, self.examples(".tfrecord"), "plain")
        self.assertEqual(transform_executor.TransformProcessor.__module__, transform_executor.__name__)

    def test_parquet_output_is_written_by_tfx(self):
        # Inside the executor's swap, as Transform runs it: Parquet goes to TFX's own writer.
        schema = text_format.Parse(
            'feature { name: "n" type: INT presence { min_fraction: 1 } shape { dim { size: 1 } } }',
            schema_pb2.Schema())
        prefix = os.path.join(self.get_temp_dir(), "parquet", "data")
        batch = pa.RecordBatch.from_arrays([pa.array([[1], [2]], type=pa.large_list(pa.int64()))],
                                           ["n"])
        with fast_read._transform_processor(fast_read.TransformProcessor):  # pylint: disable=protected-access
            with test_pipeline.TestPipeline() as p:
                _ = (p | beam.Create([(batch, {})])
                     | fast_read.TransformProcessor._EncodeAndWrite(  # pylint: disable=protected-access
                         schema=schema, file_format="FILE_FORMAT_PARQUET", output_path=prefix))
        (path,) = tf.io.gfile.glob(prefix + "*")
        self.assertTrue(path.endswith("-00000-of-00001.parquet"))
        self.assertEqual(pq.read_table(path).to_pylist(), [{"n": [1]}, {"n": [2]}])


if __name__ == "__main__":
    tf.test.main()
