"""TFX glue of the Tuner (issue 17): `tuner_fn` for `tfx.components.Tuner`, and `MethodTuner`, that
component with an executor that also writes every trial (`trials.json`).

Inputs: `examples`: the transformed splits of the protocol's tuning view (train_args/eval_args
name them: every split a run of the protocol reads, e.g. base, warm_a, warm_b, warm_c, test of
item_frequency's tuning view); `transform_graph`; `base_model`: the backbones pretrained on the
tuning view (one per seed, the Trainer's Model artifact), or `custom_config["backbone_dir"]`.
A split that is not an input cannot be read: the objective fails on it, so tuning reads nothing
of the final view (its test split, its new items).

custom_config (JSON-ready; trainer/tuning.py checks spaces and options before any work):
  method      the method label to tune (e.g. "csdm")
  space       its checked search space (tuning.search_spaces(...)[label])
  fixed       its options from --set ({} if none)
  tuner       random | bayesian | hyperband;  trials: int;  seed: int (the search's seed)
  protocol    {"name": ..., "params": {...}}: the protocol of the tuning view
  seeds       tuning seeds (default: every seed of the tuning backbones' train_config.json)
  stages      stages the objective averages (default: the protocol's);  metric: "auc" (default)
  train       TrainConfig fields (default: the tuning backbones' train_config.json)
  backbone_dir  Format-Serving folder of the tuning backbones (default: base_model)
Outputs: `best_hyperparameters/best_hyperparameters.txt` (keras-tuner's HyperParameters JSON,
names `<label>.<option>`: tuning.load_hyperparameters reads it), and under `tuner_results`
TFX's `tuner_results.json` plus our `trials.json` (MethodTuner.results(): every trial's options,
objective, status, wall time; the best options; the search's wall time). The Vertex AI Tuner
(`tuner_component(vertex=...)`, parallel trials) writes tuner_results.json only: read_trials.
"""
import hashlib
import json
import os
import re
import sys
from typing import Callable, Dict, List, Optional

import tensorflow as tf
import tensorflow_transform as tft
from tfx import v1 as tfx
from tfx.components.tuner import executor as tuner_executor
from tfx.dsl.components.base import executor_spec
from tfx.types import artifact_utils, standard_artifacts, standard_component_specs

from trainer import data, method_tuner, methods, protocol, protocols, task, tuning
from trainer.context import ProtocolContext

TRIALS_FILE = "trials.json"
TFX_RESULTS_FILE = "tuner_results.json"  # written by TFX's write_best_hyperparameters
_SPLIT_DIR = re.compile(r"Split-([^/\\]+)[/\\]\*$")


def split_patterns(patterns: List[str]) -> Dict[str, str]:
    """{split: file pattern} of fn_args.train_files + eval_files (`<uri>/Split-<name>/*`)."""
    out = {}
    for pattern in patterns:
        match = _SPLIT_DIR.search(pattern)
        if not match:
            raise ValueError(f"tuner input {pattern!r} is not a split of an Examples artifact")
        out[match.group(1)] = pattern
    return out


def split_loader(patterns: Dict[str, str], spec) -> Callable[[str], protocol.Arrays]:
    """load(split): the rows of one input split; a split that is not an input raises."""

    def load(name: str) -> protocol.Arrays:
        if name not in patterns:
            raise ValueError(f"split {name!r} is not an input of the Tuner (its inputs: "
                             f"{', '.join(sorted(patterns))})")
        return data.load_files(sorted(tf.io.gfile.glob(patterns[name])), spec)

    return load


def tuner_fn(fn_args) -> tfx.components.TunerFnResult:
    custom = fn_args.custom_config or {}
    label = custom["method"]
    space = tuning.check_space(methods.method_class(label), custom["space"], label,
                               custom.get("fixed"))
    proto = protocols.build(custom["protocol"]["name"], **custom["protocol"].get("params", {}))
    spec = tft.TFTransformOutput(fn_args.transform_graph_path).transformed_feature_spec()
    patterns = split_patterns(list(fn_args.train_files) + list(fn_args.eval_files))
    context = ProtocolContext(proto, split_loader(patterns, spec))
    model_dir = custom.get("backbone_dir") or fn_args.base_model
    with tf.io.gfile.GFile(os.path.join(model_dir, "train_config.json")) as f:
        train_config = json.load(f)
    seeds = custom.get("seeds") or train_config["seeds"]
    failed = sorted(set(map(str, seeds)) & set(train_config.get("failed", {})))
    if failed:
        raise ValueError(f"tune {label}: the tuning backbones of seeds {failed} failed to "
                         "pretrain: " + "; ".join(train_config["failed"][s] for s in failed))
    config = protocol.TrainConfig(**custom.get("train", train_config["train"]))

    def load_backbone(seed: int):
        return task.load(task.seed_dir(model_dir, seed), context.eval_data)

    def seed_config(seed: int):
        return task.seed_config(config, train_config.get("early_stopping"), seed)

    objective = method_tuner.protocol_objective(label, context, load_backbone, seed_config, seeds,
                                                custom.get("stages"), custom.get("metric", "auc"))
    tuner = method_tuner.make_tuner(
        label, space, objective, custom.get("tuner", "random"),
        custom.get("trials", 10), custom.get("seed", 0), working_dir(custom, fn_args),
        custom.get("fixed"), budget=len(seeds), log=protocol.Progress(prefix=f"Tuner {label}", stream=sys.stderr))
    return tfx.components.TunerFnResult(tuner=tuner, fit_kwargs={"verbose": 0})


def working_dir(custom: dict, fn_args) -> str:
    """The keras-tuner folder: the executor's, or on Vertex AI (REMOTE_TRIALS_WORKING_DIR_KEY) one
    folder per tuner process under that shared one (each tuner overwrites its own folder)."""
    remote = custom.get(tfx.extensions.google_cloud_ai_platform.experimental
                        .REMOTE_TRIALS_WORKING_DIR_KEY)
    if not remote:
        return fn_args.working_dir
    return os.path.join(remote, os.environ.get("KERASTUNER_TUNER_ID", "tuner0"))


class TrialsExecutor(tuner_executor.Executor):
    """TFX's Tuner executor, plus `trials.json` (MethodTuner.results()) in `tuner_results`."""

    def Do(self, input_dict, output_dict, exec_properties) -> None:
        if tuner_executor.get_tune_args(exec_properties):
            raise ValueError("TuneArgs (parallel trials) is not supported by this executor")
        # keras-tuner's own summaries stay off the terminal: MethodTuner prints a line per trial.
        tuner = tuner_executor.search(input_dict, exec_properties, self._get_tmp_dir(),
                                      print_tuning_summary=False)
        tuner_executor.write_best_hyperparameters(tuner, output_dict)
        uri = artifact_utils.get_single_uri(output_dict[standard_component_specs.TUNER_RESULTS_KEY])
        with tf.io.gfile.GFile(os.path.join(uri, TRIALS_FILE), "w") as f:
            json.dump(tuner.results(), f, indent=1, sort_keys=True)


class MethodTuner(tfx.components.Tuner):
    """tfx.components.Tuner whose executor also writes trials.json (use with tuner_fn above)."""

    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(TrialsExecutor)


def tuner_component(label: str, space: dict, examples, transform_graph, tuning_model,
                    protocol_name: str, protocol_params: dict, splits=("base", "warm_a", "warm_b",
                                                                       "warm_c", "test"),
                    fixed: Optional[dict] = None, tuner: str = "random", trials: int = 10,
                    seed: int = 0, backbone: str = "", vertex: Optional[dict] = None,
                    **config):
    """The Tuner of method `label` (id `Tuner.<label>`, or `Tuner.<backbone>.<label>`) over the tuning view's transformed
    `examples` (`splits`: every split a protocol run reads) and its pretrained `tuning_model`.
    `config`: further custom_config keys (seeds, stages, metric, train, code_version).
    `vertex` ({"project", "region", "machine_type", "image", "parallel_trials", "pipeline_root"}):
    the Vertex AI Tuner instead, running `parallel_trials` trials at once on a CustomJob of
    `image` (a chief and parallel_trials - 1 workers; keras-tuner's distributed mode), its
    keras-tuner folders under <pipeline_root>/tuner/<node id>."""
    custom = {"method": label, "space": space, "fixed": dict(fixed or {}), "tuner": tuner,
              "trials": trials, "seed": seed,
              "protocol": {"name": protocol_name, "params": dict(protocol_params)}, **config}
    node_id = ".".join(["Tuner", *([backbone] if backbone else []), label.replace("/", "_")])
    inputs = dict(tuner_fn="components.tuner_module.tuner_fn", examples=examples,
                  transform_graph=transform_graph, base_model=tuning_model,
                  train_args=tfx.proto.TrainArgs(splits=list(splits[:1])),
                  eval_args=tfx.proto.EvalArgs(splits=list(splits[1:])))
    if not vertex:
        return MethodTuner(custom_config=custom, **inputs).with_id(node_id)
    cloud = tfx.extensions.google_cloud_ai_platform
    pool = {"machine_spec": {"machine_type": vertex["machine_type"]},
            "container_spec": {"image_uri": vertex["image"]}}
    custom.update({
        cloud.ENABLE_VERTEX_KEY: True, cloud.VERTEX_REGION_KEY: vertex["region"],
        cloud.experimental.TUNING_ARGS_KEY: {"project": vertex["project"], "job_spec": {
            "worker_pool_specs": [{**pool, "replica_count": 1},
                                  {**pool, "replica_count": vertex["parallel_trials"] - 1}]}},
        cloud.experimental.REMOTE_TRIALS_WORKING_DIR_KEY: "/".join(
            [vertex["pipeline_root"].rstrip("/"), "tuner", node_id])})
    return cloud.Tuner(tune_args=tfx.proto.TuneArgs(num_parallel_trials=vertex["parallel_trials"]),
                       custom_config=custom, **inputs).with_id(node_id)


def hyperparameters_importer(path: str, label: Optional[str] = None):
    """An Importer of a saved best_hyperparameters file, or of a HyperParameters artifact's
    folder (`--hyperparameters FILE`), in place of the search (id `ImportHyperparameters.<label>`,
    or `ImportHyperparameters` for a file of every tuned label). A local path is made absolute,
    a remote one (gs://...) is kept. A local file's sha256 is a custom property of the artifact,
    so that an edited file is a new artifact (a cached evaluation of the old one is not reused)."""
    name = "ImportHyperparameters" + (f".{label.replace('/', '_')}" if label else "")
    properties = {}
    if "://" not in path:
        path = os.path.abspath(path)
        if os.path.isfile(path):
            with open(path, "rb") as f:
                properties["sha256"] = hashlib.sha256(f.read()).hexdigest()
    return tfx.dsl.Importer(source_uri=path, artifact_type=standard_artifacts.HyperParameters,
                            custom_properties=properties).with_id(name)


def read_trials(tuner_results_uri: str) -> dict:
    """trials.json (MethodTuner.results()); without it (the Vertex AI Tuner), TFX's
    tuner_results.json in the same structure, marked `remote`: its completed trials only, in
    trial id order, without wall times (None) nor oracle, `best` without the --set options."""
    path = os.path.join(tuner_results_uri, TRIALS_FILE)
    if tf.io.gfile.exists(path):
        with tf.io.gfile.GFile(path) as f:
            return json.load(f)
    path = os.path.join(tuner_results_uri, TFX_RESULTS_FILE)
    with tf.io.gfile.GFile(path) as f:
        rows = json.load(f)  # completed trials, best first: {trial_id, score, METHOD.OPTION...}
    values = [{k: v for k, v in row.items() if k not in ("trial_id", "score")} for row in rows]
    labels = sorted({label for v in values for label in tuning.options_of(v)})
    if len(labels) != 1:
        raise ValueError(f"{path}: expected the completed trials of one method, found {labels}")
    label = labels[0]
    defaults = methods.method_class(label).defaults
    trials = []
    for row, value in zip(rows, values):
        options = tuning.options_of(value, label).get(label, {})
        trials.append({"trial_id": row["trial_id"], "options": options, "objective": row["score"],
                       "status": "completed", "message": "", "wall_s": None,
                       "defaults": all(defaults[o] == v for o, v in options.items())})
    best = trials[0]
    return {"method": label, "oracle": None, "remote": True, "wall_s": None,
            "trials": sorted(trials, key=lambda t: (len(str(t["trial_id"])), str(t["trial_id"]))),
            "best": {k: best[k] for k in ("trial_id", "objective", "options")}}
