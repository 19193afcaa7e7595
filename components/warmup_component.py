"""TFX component: the evaluation protocol's stages on pretrained backbones (item phases: warm-up
and per-phase evaluation, spec section 3).

Besides the metrics it writes every evaluated prediction of every (method, seed, stage) as an
Examples artifact (split `test`: label, prediction, method, seed, phase = the stage, item_id and
the protocol's slice features), which the pipeline's TFMA Evaluator slices, so that the standard
TFX tooling shows the same numbers.
A (method, seed) whose training loss or generated embeddings are not finite (or whose backbone's
pretraining was not) stops there and is listed under `failed` in phase_metrics.json, with its
message; the other cells go on.
"""
import json
import os
import tempfile

import tensorflow as tf
import tensorflow_transform as tft
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import artifact, artifact_utils, standard_artifacts

from components import example_io
from trainer import data, features, methods as methods_lib, protocol, protocols, task, tuning
from trainer.context import ProtocolContext
from trainer.protocols import slice_column

METRICS_FILE = "phase_metrics.json"
MAX_TUNED = 4  # tuned methods per run: one optional HyperParameters input each
TUNED_SUFFIX = "/tuned"  # the label of a method evaluated with its tuned options


class PhaseEvaluation(artifact.Artifact):
    """Per-seed, per-method, per-phase AUC and F1 (`phase_metrics.json`)."""

    TYPE_NAME = "coldstart.PhaseEvaluation"


def read_phase_metrics(uri: str) -> dict:
    with tf.io.gfile.GFile(os.path.join(uri, METRICS_FILE)) as f:
        return json.load(f)


@component
def WarmupEvaluate(
    transformed_examples: InputArtifact[standard_artifacts.Examples],
    transform_graph: InputArtifact[standard_artifacts.TransformGraph],
    model: InputArtifact[standard_artifacts.Model],
    evaluation: OutputArtifact[PhaseEvaluation],
    predictions: OutputArtifact[standard_artifacts.Examples],
    methods: Parameter[str] = "base",
    method_options: Parameter[str] = "{}",
    protocol_config: Parameter[str] = '{"name": "item_frequency", "params": {}}',
    prediction_seeds: Parameter[int] = 1,
    code_version: Parameter[str] = "",  # cache key only  # pylint: disable=unused-argument
    tuned: Parameter[str] = "",
    hyperparameters_1: InputArtifact[standard_artifacts.HyperParameters] = None,
    hyperparameters_2: InputArtifact[standard_artifacts.HyperParameters] = None,
    hyperparameters_3: InputArtifact[standard_artifacts.HyperParameters] = None,
    hyperparameters_4: InputArtifact[standard_artifacts.HyperParameters] = None,
) -> None:
    """Every stage of the protocol (item phases: cold / warm_a / warm_b / warm_c on `test`) for
    every pretrained seed and method: AUC and F1 overall and per slice.

    `method_options`: JSON {method: {option: value}}, passed to the method's constructor.
    `protocol_config`: JSON {"name", "params"} of the evaluation protocol (trainer/protocols).
    `prediction_seeds`: how many seeds (the first ones) have their predictions written for
    the TFMA Evaluator (TFMA reads about 2k rows/s here, so all seeds of a large run are slow).
    `tuned`: comma-separated labels of `methods` evaluated again as `<label>/tuned`, right after
    `<label>`, with their `method_options` overlaid with the best options of the
    `hyperparameters_*` artifacts (the Tuners' or an imported file's; decorator components take
    one artifact per input, hence up to MAX_TUNED of them).
    """
    options = json.loads(method_options)
    names = methods.split(",")
    best = tuned_options([a for a in (hyperparameters_1, hyperparameters_2, hyperparameters_3,
                                      hyperparameters_4) if a is not None],
                         [t for t in tuned.split(",") if t])
    for label, found in best.items():
        names.insert(names.index(label) + 1, label + TUNED_SUFFIX)
        options[label + TUNED_SUFFIX] = {**options.get(label, {}), **found}
    chosen = json.loads(protocol_config)
    evaluation_protocol = protocols.build(chosen["name"], **chosen["params"])
    spec = tft.TFTransformOutput(transform_graph.uri).transformed_feature_spec()

    def load(split):
        return data.load_files(example_io.split_files(transformed_examples.uri, split), spec)

    model_dir = os.path.join(model.uri, "Format-Serving")
    with tf.io.gfile.GFile(os.path.join(model_dir, "train_config.json")) as f:
        train_config = json.load(f)
    config = protocol.TrainConfig(**train_config["train"])
    results, failed, diagnostics = {}, [], {}
    pretraining_failed = train_config.get("failed", {})
    context = ProtocolContext(evaluation_protocol, load)
    writer = _PredictionWriter(predictions, context.eval_data, evaluation_protocol)
    for name in names:
        per_seed = {}
        for seed in train_config["seeds"]:
            method = methods_lib.build(name, seed=seed, **options.get(name, {}))
            if str(seed) in pretraining_failed:
                failed.append({"method": name, "seed": seed,
                               "message": pretraining_failed[str(seed)]})
                continue
            backbone = task.load(task.seed_dir(model_dir, seed), context.eval_data)
            log = protocol.Progress(prefix=f"{name} seed {seed} ")
            scores = []
            try:
                seed_config = task.seed_config(config, train_config.get("early_stopping"), seed)
                stages = protocol.warm_up_and_evaluate(backbone, context, seed_config, seed, method,
                                                       log, scores)
            except protocol.NonFiniteLoss as err:
                err.attach(name, seed)
                log.note(str(err))
                failed.append({"method": name, "seed": seed, "message": str(err)})
                continue
            per_seed[str(seed)] = evaluation_protocol.report_slices(stages)
            found = method.report_diagnostics()  # e.g. aqcl's alpha curve, for the report
            if found:
                diagnostics.setdefault(name, {})[str(seed)] = found
            if train_config["seeds"].index(seed) < prediction_seeds:
                writer.write(name, seed, scores)
        results[name] = per_seed
    writer.close()
    tf.io.gfile.makedirs(evaluation.uri)
    with tf.io.gfile.GFile(os.path.join(evaluation.uri, METRICS_FILE), "w") as f:
        json.dump({"backbone": train_config["backbone"], "seeds": train_config["seeds"],
                   "train": train_config["train"], "method_options": options,
                   **({"tuned": best} if best else {}),
                   "protocol": evaluation_protocol.describe(),
                   # the report's column order (the JSON below sorts keys)
                   "slices": next((list(s) for per_seed in results.values()
                                   for s in per_seed.values()), []),
                   "methods": results, "failed": failed,
                   **({"early_stopping": train_config["early_stopping"]}
                      if train_config.get("early_stopping") else {}),
                   **({"diagnostics": diagnostics} if diagnostics else {})},
                  f, indent=1, sort_keys=True)


def tuned_options(artifacts, labels):
    """{label: best options} of each of `labels` from HyperParameters `artifacts` (files named
    `<label>.<option>`); a label missing or given two different ways is an error."""
    found = {}
    for hp in artifacts:
        path = hp.uri  # a file (an Importer's) or a Tuner's folder, local or remote (gs://)
        if tf.io.gfile.isdir(path):
            path = os.path.join(path, tuning.HP_FILE)
        with tempfile.TemporaryDirectory() as local:
            tf.io.gfile.copy(path, os.path.join(local, "hp.json"))
            read = tuning.load_hyperparameters(os.path.join(local, "hp.json"))
        for label, values in read.items():
            if found.get(label, values) != values:
                raise ValueError(f"tuned options of {label} differ between inputs: "
                                 f"{found[label]} and {values}")
            found[label] = values
    missing = [label for label in labels if label not in found]
    if missing:
        raise ValueError(f"no tuned options for {missing} in the hyperparameters inputs "
                         f"(they hold {sorted(found)})")
    return {label: found[label] for label in labels}


class _PredictionWriter:
    """Writes the evaluated rows' predictions as tf.Examples into `Split-test` of an Examples
    artifact: method, seed, phase (the stage), label, prediction, item_id and the protocol's raw
    slice features."""

    def __init__(self, artifact, test, evaluation_protocol):
        self._labels = test[features.LABEL].tolist()  # converted once, reused for every write
        self._items = test[features.ITEM_ID].tolist()
        self._stages = [s.name for s in evaluation_protocol.stages()]
        self._slices = {name: [v if isinstance(v, bytes) else str(v).encode()
                               for v in test[slice_column(name)].tolist()]
                        for name in evaluation_protocol.slice_features if name != "phase"}
        path = os.path.join(artifact.uri, "Split-test", "predictions.gz")
        tf.io.gfile.makedirs(os.path.dirname(path))
        self._writer = tf.io.TFRecordWriter(path, options="GZIP")
        artifact.split_names = artifact_utils.encode_split_names(["test"])

    def write(self, method, seed, scores_by_phase):
        # One proto whose values are overwritten per row: ~25x faster than building each row.
        example = tf.train.Example()
        feature = example.features.feature
        for name, value in (("method", method), ("seed", str(seed))):
            feature[name].bytes_list.value.append(value.encode())
        phase = feature["phase"].bytes_list.value
        label = feature["label"].int64_list.value
        prediction = feature["prediction"].float_list.value
        item = feature["item_id"].int64_list.value
        phase.append(b""), label.append(0), prediction.append(0.0), item.append(0)
        slices = [(feature[name].bytes_list.value, values) for name, values in self._slices.items()]
        for value, _ in slices:
            value.append(b"")
        for name, scores in zip(self._stages, scores_by_phase):
            phase[0] = name.encode()
            for row, (row_label, row_item, score) in enumerate(
                    zip(self._labels, self._items, scores.tolist())):
                label[0], item[0], prediction[0] = row_label, row_item, score
                for value, values in slices:
                    value[0] = values[row]
                self._writer.write(example.SerializeToString())

    def close(self):
        self._writer.close()
