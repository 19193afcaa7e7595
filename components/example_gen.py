"""TFX components: ExampleGen for any click log described by a dataset config (Beam), and the
gate that stops the run when too much of the input was bad.

ClickLogExampleGen writes the examples (split `all`) and a Quarantine artifact:
`bad_rows-*.jsonl` (one JSON record per bad row: file, line, reason, detail, raw) and
`quarantine.json` (counts: rows, examples, quarantined by reason, and what was read but counted
rather than quarantined: repeated files, duplicate rows and side-table keys, unmatched joins;
see `log_reader.ReadClickLog`). QuarantineGate fails the run when the quarantined fraction of the
rows exceeds `max_bad_fraction`, naming the count and the path; being a separate step, it leaves
the published Quarantine artifact in place for inspection.
"""
import json
import os

import apache_beam as beam
import tensorflow as tf
from tfx.components.util import examples_utils
from tfx.dsl.component.experimental.annotations import (BeamComponentParameter, InputArtifact,
                                                        OutputArtifact, Parameter)
from tfx.dsl.component.experimental.decorators import component
from tfx.proto import example_gen_pb2
from tfx.types import artifact, artifact_utils, standard_artifacts

from components import log_config, log_reader, tfrecord_io

STATS_FILE = "quarantine.json"
BAD_ROWS = "bad_rows"
DEFAULT_MAX_BAD_FRACTION = 0.001


class Quarantine(artifact.Artifact):
    """Rows that could not become examples, with the reason, and the ingestion counts."""

    TYPE_NAME = "coldstart.Quarantine"


class TooManyBadRows(RuntimeError):
    pass


def read_stats(uri: str) -> dict:
    with tf.io.gfile.GFile(os.path.join(uri, STATS_FILE)) as f:
        return json.load(f)


def check_bad_fraction(stats: dict, max_bad_fraction: float, path: str) -> None:
    """Raises TooManyBadRows when quarantined / rows > max_bad_fraction (or no row is good)."""
    rows, bad = stats["rows"], stats["quarantined"]
    if rows == 0 or stats["examples"] == 0:
        raise TooManyBadRows(f"the input has no usable rows ({bad} quarantined, see {path})")
    if bad / rows > max_bad_fraction:
        reasons = ", ".join(f"{k}: {v}" for k, v in stats["by_reason"].items())
        raise TooManyBadRows(
            f"{bad:,} of {rows:,} input rows ({100 * bad / rows:.2f} %) are bad, above the "
            f"threshold of {100 * max_bad_fraction:g} % ({reasons}); the bad rows, with file, "
            f"line and reason, are in {path}")


@component(use_beam=True)
def ClickLogExampleGen(
    examples: OutputArtifact[standard_artifacts.Examples],
    quarantine: OutputArtifact[Quarantine],
    input_base: Parameter[str],
    dataset_config: Parameter[str],
    input_fingerprint: Parameter[str] = "",  # pylint: disable=unused-argument
    code_version: Parameter[str] = "",  # pylint: disable=unused-argument
    beam_pipeline: BeamComponentParameter[beam.Pipeline] = None,
) -> None:
    """`dataset_config`: the DatasetConfig as JSON. Output split: `all`. `input_fingerprint` (of
    the raw files) and `code_version` are unused here: they are in the cache key only."""
    config = log_reader.resolve(log_config.from_json(dataset_config), input_base)
    bad_path = os.path.join(quarantine.uri, BAD_ROWS)
    with beam_pipeline as p:
        rows, bad, stats = p | "ReadClickLog" >> log_reader.ReadClickLog(config, input_base)  # pylint: disable=no-value-for-parameter
        _ = rows | "WriteExamples" >> tfrecord_io.WriteGzipTFRecords(  # pylint: disable=no-value-for-parameter
            os.path.join(examples.uri, "Split-all", "data_tfrecord"))
        _ = (bad | "BadToJson" >> beam.Map(json.dumps, sort_keys=True)
             | "WriteBad" >> beam.io.WriteToText(bad_path, file_name_suffix=".jsonl"))
        _ = (stats | "StatsToJson" >> beam.Map(json.dumps, sort_keys=True)
             | "WriteStats" >> beam.io.WriteToText(os.path.join(quarantine.uri, STATS_FILE),
                                                   shard_name_template=""))
    examples.split_names = artifact_utils.encode_split_names(["all"])
    examples_utils.set_payload_format(examples, example_gen_pb2.FORMAT_TF_EXAMPLE)
    result = read_stats(quarantine.uri)
    for key in ("rows", "examples", "negatives", "quarantined", "duplicate_files",
                "duplicate_rows", "dropped_duplicates", "identical_side_rows"):
        quarantine.set_int_custom_property(key, int(result[key]))


def bad_rows_pattern(uri: str) -> str:
    return os.path.join(uri, BAD_ROWS + "-*.jsonl")


@component
def QuarantineGate(
    quarantine: InputArtifact[Quarantine],
    max_bad_fraction: Parameter[float] = DEFAULT_MAX_BAD_FRACTION,
    code_version: Parameter[str] = "",  # cache key only  # pylint: disable=unused-argument
) -> None:
    """Raises TooManyBadRows when quarantined rows / input rows > `max_bad_fraction`."""
    check_bad_fraction(read_stats(quarantine.uri), max_bad_fraction,
                       bad_rows_pattern(quarantine.uri))
