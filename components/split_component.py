"""TFX component: item-frequency split of an ExampleGen output (Beam)."""
import json
import os

import apache_beam as beam
import tensorflow as tf
from tfx.dsl.component.experimental.annotations import (BeamComponentParameter, InputArtifact,
                                                        OutputArtifact, Parameter)
from tfx.dsl.component.experimental.decorators import component
from tfx.components.util import examples_utils
from tfx.types import artifact_utils, standard_artifacts

from components import example_io, tfrecord_io
from components.item_split import SPLITS, ItemFrequencySplit

STATS_FILE = "split_stats.json"


def read_split_stats(examples_uri: str) -> dict:
    with tf.io.gfile.GFile(os.path.join(examples_uri, STATS_FILE)) as f:
        return json.load(f)


@component(use_beam=True)
def ItemSplitGen(
    examples: InputArtifact[standard_artifacts.Examples],
    split_examples: OutputArtifact[standard_artifacts.Examples],
    N: Parameter[int],
    K: Parameter[int],
    input_split: Parameter[str] = "all",
    code_version: Parameter[str] = "",  # cache key only  # pylint: disable=unused-argument
    beam_pipeline: BeamComponentParameter[beam.Pipeline] = None,
) -> None:
    """Splits by item frequency into base / warm_a / warm_b / warm_c / test (+ dropped).

    Writes `split_stats.json` (rows per split, old/new/dropped item counts) beside the splits and
    copies the counts into the artifact's custom properties.
    """
    write_split(beam_pipeline, examples, split_examples, input_split,
                ItemFrequencySplit(N, K), SPLITS)  # pylint: disable=no-value-for-parameter
    for key, value in read_split_stats(split_examples.uri).items():
        split_examples.set_int_custom_property(key, int(value))


def write_split(beam_pipeline, examples, split_examples, input_split, transform, split_names):
    """Reads `input_split` of `examples`, applies `transform` (serialized tf.Examples ->
    ({split: serialized tf.Examples}, JSON statistics)) and writes the splits and STATS_FILE."""
    files = example_io.split_files(examples.uri, input_split)
    with beam_pipeline as p:
        records = p | "Read" >> tfrecord_io.ReadGzipTFRecords(files)  # pylint: disable=no-value-for-parameter
        splits, stats = records | "Split" >> transform
        for name, rows in splits.items():
            _ = rows | f"Write[{name}]" >> tfrecord_io.WriteGzipTFRecords(  # pylint: disable=no-value-for-parameter
                os.path.join(split_examples.uri, f"Split-{name}", "data_tfrecord"))
        _ = stats | "WriteStats" >> beam.io.WriteToText(
            os.path.join(split_examples.uri, STATS_FILE), shard_name_template="")
    split_examples.split_names = artifact_utils.encode_split_names(list(split_names))
    split_examples.span = examples.span
    examples_utils.set_payload_format(split_examples, examples_utils.get_payload_format(examples))
