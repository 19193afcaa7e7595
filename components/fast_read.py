"""Stock TFX components whose Beam I/O of Examples goes through TensorFlow's C++ record reader
and writer (tfrecord_io) instead of Beam's ReadFromTFRecord / WriteToTFRecord (issue 12):
Transform, which reads its input twice (analysis, then transformation) and writes the transformed
examples, and StatisticsGen, which also computes every split's statistics in one pass.

Beam's reader frames, checksums and decompresses every record in Python: on the 487,650 ML-1M
examples it takes 3.6-4.0 s of CPU where ReadGzipTFRecords takes 1.4-1.5 s. Only the I/O
changes: the same records reach the same decoders (tests/test_fast_read.py).
"""
import contextlib
import json
import os
from typing import List

import apache_beam as beam
import tensorflow as tf
import tensorflow_data_validation as tfdv
from tensorflow_data_validation.statistics import stats_impl
from tensorflow_metadata.proto.v0 import schema_pb2, statistics_pb2
from tfx import v1 as tfx
from tfx.components.statistics_gen import executor as statistics_executor
from tfx.components.statistics_gen import stats_artifact_utils
from tfx.components.transform import executor as transform_executor
from tfx.components.util import tfxio_utils
from tfx.dsl.components.base import executor_spec
from tfx.types import artifact_utils, standard_component_specs as specs
from tfx_bsl.tfxio import tensor_representation_util, tf_example_record, tfxio as tfxio_lib

from components import tfrecord_io


class TFExampleRecord(tf_example_record.TFExampleRecord):
    """tfx_bsl's TFExampleRecord with its raw records read by ReadGzipTFRecords. Its files are
    listed when the read is built: gzipped TFRecords (`*.gz`, what TFX's Examples hold)."""

    def _RawRecordBeamSourceInternal(self):
        files = sorted(path for pattern in self._file_pattern
                       for path in tf.io.gfile.glob(pattern))
        if not all(path.endswith(".gz") for path in files):
            raise ValueError(f"expected gzipped TFRecord files (*.gz) under {self._file_pattern}, "
                             f"got {[p for p in files if not p.endswith('.gz')][:3]}")
        return tfrecord_io.ReadGzipTFRecords(files)  # pylint: disable=no-value-for-parameter

    def _ProjectImpl(self, tensor_names: List[str]) -> tfxio_lib.TFXIO:
        return TFExampleRecord(
            self._file_pattern,
            schema=tensor_representation_util.ProjectTensorRepresentationsInSchema(
                self._schema, tensor_names),
            raw_record_column_name=self.raw_record_column_name,
            telemetry_descriptors=self.telemetry_descriptors)


def with_cpp_reads(tfxio: tfxio_lib.TFXIO, file_pattern, schema: schema_pb2.Schema):
    """`tfxio` reading through ReadGzipTFRecords when it is a plain tf.Example TFRecord reader;
    any other (raw records, SequenceExamples, Parquet) as it is."""
    if type(tfxio) is not tf_example_record.TFExampleRecord:  # pylint: disable=unidiomatic-typecheck
        return tfxio
    return TFExampleRecord(file_pattern, schema=schema,
                           raw_record_column_name=tfxio.raw_record_column_name,
                           telemetry_descriptors=tfxio.telemetry_descriptors)


# TFX's own class, kept here: while our executor runs, its module's name points to ours.
_TFX_PROCESSOR = transform_executor.TransformProcessor


class TransformProcessor(_TFX_PROCESSOR):
    """TFX's TransformProcessor (what the Transform executor runs) with C++ record I/O: its TFXIO
    reads through ReadGzipTFRecords and the transformed examples are written by
    WriteGzipTFRecords, with the names WriteToTFRecord gives them (Parquet output as TFX's)."""

    def _CreateTFXIO(self, dataset, schema):
        return with_cpp_reads(super()._CreateTFXIO(dataset, schema), dataset.file_pattern, schema)

    @staticmethod
    @beam.ptransform_fn
    def _EncodeAndWrite(pcoll, schema, file_format, output_path):
        # pylint: disable=protected-access,no-value-for-parameter
        if file_format != transform_executor.labels.FORMAT_TFRECORD:
            return pcoll | "EncodeAndWrite" >> _TFX_PROCESSOR._EncodeAndWrite(
                schema=schema, file_format=file_format, output_path=output_path)
        return (pcoll
                | "EncodeAndSerialize" >> beam.ParDo(_TFX_PROCESSOR._RecordBatchToExamplesFn(schema))
                | "ExtractExamples" >> beam.Values()
                | "WriteToTFRecord" >> tfrecord_io.WriteGzipTFRecords(output_path))


@contextlib.contextmanager
def _transform_processor(processor_class):
    """TFX's Transform executor builds `TransformProcessor()` by its module's name, so the class
    is swapped there while the executor runs (executors of one process run one at a time)."""
    transform_executor.TransformProcessor = processor_class
    try:
        yield
    finally:
        transform_executor.TransformProcessor = _TFX_PROCESSOR


class TransformExecutor(transform_executor.Executor):
    """TFX's Transform executor running our TransformProcessor."""

    def Do(self, input_dict, output_dict, exec_properties) -> None:
        with _transform_processor(TransformProcessor):
            super().Do(input_dict, output_dict, exec_properties)


class Transform(tfx.components.Transform):
    """tfx.components.Transform with TransformExecutor (same parameters, node id Transform)."""
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(TransformExecutor)


class StatisticsGenExecutor(statistics_executor.Executor):
    """TFX's StatisticsGen executor for the parameters this pipeline sets (examples and
    stats_options): the statistics of every split, each written where ExampleValidator reads
    it. Other parameters (exclude_splits, a schema input, sampling per split, sharded output)
    are refused rather than ignored."""

    def Do(self, input_dict, output_dict, exec_properties) -> None:
        unsupported = [key for key in (specs.EXCLUDE_SPLITS_KEY, specs.SAMPLE_RATE_BY_SPLIT_KEY,
                                       specs.SHARDED_STATS_OUTPUT_KEY)
                       if exec_properties.get(key) not in (None, "null", "[]", "{}", False, 0)]
        unsupported += [specs.SCHEMA_KEY] if input_dict.get(specs.SCHEMA_KEY) else []
        if unsupported:
            raise ValueError(f"StatisticsGenExecutor does not support {unsupported}: use "
                             "tfx.components.StatisticsGen")
        examples = artifact_utils.get_single_instance(input_dict[specs.EXAMPLES_KEY])
        statistics = artifact_utils.get_single_instance(output_dict[specs.STATISTICS_KEY])
        splits = artifact_utils.decode_split_names(examples.split_names)
        if not splits:
            raise ValueError(f"no splits in the examples artifact {examples.uri}")
        statistics.split_names = artifact_utils.encode_split_names(splits)
        statistics.span = examples.span
        options_json = exec_properties.get(specs.STATS_OPTIONS_JSON_KEY)
        options = tfdv.StatsOptions.from_json(options_json) if options_json else tfdv.StatsOptions()
        statistics.set_json_value_custom_property(
            statistics_executor.SAMPLE_RATE_BY_SPLIT_PROPERTY_NAME,
            json.dumps({split: options.sample_rate or 1.0 for split in splits}))
        paths = {split: os.path.join(artifact_utils.get_split_uri([statistics], split),
                                     stats_artifact_utils.BINARY_PB_BASENAME) for split in splits}
        with self._make_beam_pipeline() as p:
            keyed = []
            for split in splits:
                pattern = os.path.join(artifact_utils.get_split_uri([examples], split), "*")
                tfxio = with_cpp_reads(tfxio_utils.get_split_tfxio(
                    [examples], split, telemetry_descriptors=["StatisticsGen"]), pattern, None)
                keyed.append(p | f"TFXIORead[{split}]" >> tfxio.BeamSource()
                             | f"Key[{split}]" >> beam.Map(lambda batch, s=split: (s, batch)))
            # One pass for all splits, each split a slice: a branch per split costs about 2 s
            # of the in-process runner's overhead (six splits; 13 s against 8 s on ML-1M).
            _ = (keyed | "Splits" >> beam.Flatten()
                 | "GenerateStatistics" >> stats_impl.GenerateSlicedStatisticsImpl(
                     _checked(options), is_slicing_enabled=True)
                 | "WriteStatsOutput" >> beam.Map(_write_per_split, paths))


def _checked(options: tfdv.StatsOptions) -> tfdv.StatsOptions:
    """`options` for GenerateSlicedStatisticsImpl, which does not sample, slice or filter as
    tfdv.GenerateStatistics does: those options are refused."""
    if (options.sample_rate is not None or options.experimental_slice_functions
            or options.slicing_config or options.feature_allowlist or options.schema is not None
            or options.experimental_result_partitions != 1):
        raise ValueError("StatisticsGenExecutor supports no sampling, slicing, feature allowlist, "
                         "schema or result partitions in stats_options: use "
                         "tfx.components.StatisticsGen")
    return options


def _write_per_split(statistics: statistics_pb2.DatasetFeatureStatisticsList, paths) -> None:
    """The sliced statistics, one dataset per split named after it -> each split's file, as
    tfdv.GenerateStatistics writes it: one unnamed dataset, empty for a split without rows (which
    has no slice; with no rows at all TFDV gives one unnamed empty dataset)."""
    by_split = {}
    for dataset in statistics.datasets:
        if dataset.name not in paths and dataset.num_examples:
            raise ValueError(f"statistics of an unknown slice {dataset.name!r}")
        by_split[dataset.name] = dataset
    for split, path in paths.items():
        one = statistics_pb2.DatasetFeatureStatisticsList()
        one.datasets.add().CopyFrom(by_split.get(split, statistics_pb2.DatasetFeatureStatistics()))
        one.datasets[0].name = ""
        tf.io.gfile.makedirs(os.path.dirname(path))
        with tf.io.gfile.GFile(path, "wb") as f:
            f.write(one.SerializeToString())


class StatisticsGen(tfx.components.StatisticsGen):
    """tfx.components.StatisticsGen with StatisticsGenExecutor (node id StatisticsGen)."""
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(StatisticsGenExecutor)
