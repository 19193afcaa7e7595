"""TFX component: the run's report (report.json, report.md) from split stats and phase metrics."""
import json
import os

import tensorflow as tf
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import artifact, standard_artifacts

from components.split_component import read_split_stats
from components.warmup_component import PhaseEvaluation, read_phase_metrics
from pipeline import report as report_lib


class Report(artifact.Artifact):
    """`report.json` and `report.md` of one backbone."""

    TYPE_NAME = "coldstart.Report"


def write_report(directory: str, report: dict) -> None:
    tf.io.gfile.makedirs(directory)
    with tf.io.gfile.GFile(os.path.join(directory, "report.json"), "w") as f:
        json.dump(report, f, indent=1)
    with tf.io.gfile.GFile(os.path.join(directory, "report.md"), "w") as f:
        f.write(report_lib.render_markdown(report))


@component
def ReportGen(
    split_examples: InputArtifact[standard_artifacts.Examples],
    evaluation: InputArtifact[PhaseEvaluation],
    report: OutputArtifact[Report],
    dataset: Parameter[str],
    run_config: Parameter[str] = "{}",
) -> None:
    """Writes the report into its artifact; `run_config` (JSON) is carried into report.json."""
    stats = read_split_stats(split_examples.uri)
    write_report(report.uri, report_lib.build_report(
        dataset, stats["N"], stats["K"], stats, read_phase_metrics(evaluation.uri),
        json.loads(run_config)))
