"""TFX component: the run's report (report.json, report.md) from split stats and phase metrics."""
import json
import os

import tensorflow as tf
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import artifact, standard_artifacts

from components import example_gen, tfma_check
from components.split_component import read_split_stats
from components.warmup_component import PhaseEvaluation, read_phase_metrics
from pipeline import report as report_lib
from trainer import protocols


class Report(artifact.Artifact):
    """`report.json` and `report.md` of one backbone."""

    TYPE_NAME = "coldstart.Report"


def write_report(directory: str, report: dict) -> None:
    """report.json, report.md and auc_by_phase.png of one backbone (and the tuning and alpha
    curve plots)."""
    tf.io.gfile.makedirs(directory)
    with tf.io.gfile.GFile(os.path.join(directory, "report.json"), "w") as f:
        json.dump(report, f, indent=1)
    with tf.io.gfile.GFile(os.path.join(directory, "report.md"), "w") as f:
        f.write(report_lib.render_markdown(report))
    report_lib.plot_auc_by_phase({report["backbone"]: report},
                                 os.path.join(directory, "auc_by_phase.png"))
    for label, section in report.get("tuning", {}).items():
        if section.get("trials"):
            report_lib.plot_tuning(label, section, os.path.join(
                directory, report_lib.plot_name("tuning", label)))
    for label, entry in report.get("alpha_curve", {}).items():
        report_lib.plot_alpha_curve(label, entry, os.path.join(
            directory, report_lib.plot_name("alpha", label)))


@component
def ReportGen(
    split_examples: InputArtifact[standard_artifacts.Examples],
    evaluation: InputArtifact[PhaseEvaluation],
    quarantine: InputArtifact[example_gen.Quarantine],
    report: OutputArtifact[Report],
    dataset: Parameter[str],
    run_config: Parameter[str] = "{}",
    tfma_evaluation: InputArtifact[standard_artifacts.ModelEvaluation] = None,
    tuner_results_1: InputArtifact[standard_artifacts.TunerResults] = None,
    tuner_results_2: InputArtifact[standard_artifacts.TunerResults] = None,
    tuner_results_3: InputArtifact[standard_artifacts.TunerResults] = None,
    tuner_results_4: InputArtifact[standard_artifacts.TunerResults] = None,
) -> None:
    """Writes the report into its artifact; `run_config` (JSON) is carried into report.json, and
    the TFMA Evaluator's AUC is checked against ours (`tfma` key). `tuner_results_*`: the
    Tuners' results (their trials.json), for the report's `tuning` section."""
    stats = read_split_stats(split_examples.uri)
    phase_metrics = read_phase_metrics(evaluation.uri)
    result = report_lib.build_report(dataset, stats, phase_metrics, json.loads(run_config))
    ingest = example_gen.read_stats(quarantine.uri)
    result["ingest"] = {k: v for k, v in ingest.items() if k not in ("quarantined", "by_reason")}
    result["quarantined"] = {"rows": ingest["quarantined"], "by_reason": ingest["by_reason"],
                             "path": example_gen.bad_rows_pattern(quarantine.uri)}
    if tfma_evaluation is not None:
        chosen = phase_metrics["protocol"]
        result["tfma"] = tfma_check.compare(tfma_check.read_auc(tfma_evaluation.uri),
                                            phase_metrics["methods"],
                                            protocols.build(chosen["name"], **chosen["params"]))
    from components import tuner_module  # pylint: disable=import-outside-toplevel
    searches = [tuner_module.read_trials(r.uri) for r in (tuner_results_1, tuner_results_2,
                                                          tuner_results_3, tuner_results_4)
                if r is not None]
    if phase_metrics.get("tuned"):
        result["tuning"] = report_lib.tuning_section(phase_metrics, searches,
                                                     result["config"].get("tuning", {}))
    write_report(report.uri, result)
