"""The TFX graph: ClickLogExampleGen -> QuarantineGate -> ProtocolSplitGen (the evaluation
protocol's split; node id ItemSplitGen) -> StatisticsGen -> ExampleValidator -> AnomalyGate;
(ImportSchemaGen) Transform -> per backbone: Trainer (pretrain on the protocol's pretraining
split) -> WarmupEvaluate (the protocol's stages) -> Evaluator (TFMA, sliced by stage and the
protocol's slice features) -> ReportGen."""
import hashlib
import json
import os
from typing import Any, Dict, List, Optional, Sequence

import tensorflow_data_validation as tfdv
from tfx import v1 as tfx
from tfx.proto import transform_pb2

from components import example_gen as example_gen_lib, fast_read, log_config, log_reader, tfma_check
from components.protocol_split import ProtocolSplitGen
from components.report_component import ReportGen
from components.validation import AnomalyGate
from components.warmup_component import MAX_TUNED, WarmupEvaluate
from trainer import features, protocols

UNUSED_SPLITS = ("dropped",)  # analysed by Transform (statistics over the whole log), not transformed
PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CODE_DIRS = ("pipeline", "components", "trainer", "schemas")  # what the components run
CODE_SUFFIXES = (".py", ".yaml", ".pbtxt")
SMALL_FILE = 1 << 20  # raw files up to this size are fingerprinted by content


def code_version(root: str = PROJECT_ROOT) -> str:
    """sha256 of the project's own sources and schema/config files (CODE_DIRS under `root`): a
    part of every component's cache key, so that `--cache` re-runs what edited code computes."""
    digest = hashlib.sha256()
    for directory in CODE_DIRS:
        for folder, subfolders, files in os.walk(os.path.join(root, directory)):
            subfolders.sort()
            for name in sorted(files):
                if name.endswith(CODE_SUFFIXES):
                    path = os.path.join(folder, name)
                    with open(path, "rb") as f:
                        content = f.read()
                    digest.update(f"{os.path.relpath(path, root)}\0{len(content)}\0".encode())
                    digest.update(content)
    return digest.hexdigest()[:16]


def input_fingerprint(dataset: log_config.DatasetConfig, data_root: str) -> str:
    """sha256 over the raw files `dataset` reads under `data_root`: name and size, and the content
    of small files or the modification time of large ones. "" where `data_root` is not a local
    folder (a compiled pipeline's gs://...), whose files cannot be read here."""
    if "://" in data_root or not os.path.isdir(data_root):
        return ""
    digest = hashlib.sha256()
    for spec in (dataset.log, *dataset.joins):
        for path in log_reader.table_files(data_root, spec):
            stat = os.stat(path)
            if stat.st_size <= SMALL_FILE:
                with open(path, "rb") as f:
                    version = hashlib.sha256(f.read()).hexdigest()
            else:
                version = str(stat.st_mtime_ns)
            digest.update(f"{os.path.abspath(path)}\0{stat.st_size}\0{version}\0".encode())
    return digest.hexdigest()[:16]


def feature_json(dataset: log_config.DatasetConfig,
                 protocol: Optional[protocols.Protocol] = None) -> str:
    """The model's feature layout of `dataset` under `protocol` (default: item phases), as
    Transform and the Trainer receive it."""
    row_features = protocol.model_features if protocol is not None else ("count",)
    return features.to_json(features.from_dataset(dataset.to_dict(), row_features))


def protocol_config(protocol: protocols.Protocol) -> str:
    """{"name", "params"} of `protocol` as JSON: how components receive it."""
    return json.dumps({"name": protocol.name, "params": protocol.params}, sort_keys=True)


# Speed (issue 12): no analyzer cache (no run reads one), so the six splits are analysed once, as
# one dataset, instead of one by one. force_tf_compat_v1=True (tables initialised once, not per
# batch) was faster still but moved scaled timestamps by one float32 ulp, which
# tests/test_transform_speed.py (old configuration beside this one, every value equal) rejects.
TRANSFORM_OPTIONS = {"disable_analyzer_cache": True}


# Speed (issue 12): the schema (presence, type, shape, int domains) needs no histograms; the
# top values are kept short. Larger batches cut TFDV's per-batch overhead.
STATS_OPTIONS = tfdv.StatsOptions(desired_batch_size=8192, num_top_values=2,
                                  num_rank_histogram_buckets=2, num_values_histogram_buckets=2,
                                  num_histogram_buckets=1, num_quantiles_histogram_buckets=1)


def transform_component(split_examples, schema, dataset: log_config.DatasetConfig,
                        code: str = "", protocol: Optional[protocols.Protocol] = None,
                        stock_tfx: bool = False, **options):
    """Transform of the protocol's split examples (default: item phases) with
    `trainer.preprocessing`; `code`: the code version, in the cache key; `options` override
    TRANSFORM_OPTIONS, and `stock_tfx` runs TFX's own Transform, without our record I/O (tests
    and benchmarks/transform_variants.py compare with them)."""
    protocol = protocol or protocols.build("item_frequency", N=dataset.N, K=dataset.K)
    return (tfx.components.Transform if stock_tfx else fast_read.Transform)(
        examples=split_examples,
        schema=schema,
        preprocessing_fn="trainer.preprocessing.preprocessing_fn",
        # Statistics over the whole log, item phases' dropped items included (spec 1.7).
        splits_config=transform_pb2.SplitsConfig(
            analyze=list(protocol.splits),
            transform=[s for s in protocol.splits if s not in UNUSED_SPLITS]),
        disable_statistics=True,
        custom_config={"features": feature_json(dataset, protocol), "code_version": code,
                       "slice_features": [f for f in protocol.slice_features if f != "phase"]},
        **{**TRANSFORM_OPTIONS, **options},
    )


def statistics_component(split_examples):
    """StatisticsGen of the six splits, with what the schema check (ExampleValidator) reads."""
    return fast_read.StatisticsGen(examples=split_examples, stats_options=STATS_OPTIONS)


def trainer_component(transform, schema, dataset: log_config.DatasetConfig,
                      protocol: protocols.Protocol, backbone: str, seeds: Sequence[int],
                      train: Optional[Dict[str, Any]], code: str,
                      options: Optional[Dict[str, Any]] = None):
    """The Trainer pretraining `backbone` (one model per seed, architecture `options`) on the
    protocol's pretraining split of `transform`'s output. Its eval split is the protocol's
    validation split (early stopping reads it), or its eval split where it has none."""
    train = dict(train or {})
    if train.get("early_stopping") and not protocol.validation_split:
        raise ValueError(f"early stopping needs a validation split; protocol {protocol.name} has "
                         f"none")
    return tfx.components.Trainer(
        run_fn="trainer.task.run_fn",
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema.outputs["schema"],
        train_args=tfx.proto.TrainArgs(splits=[protocol.pretrain_split]),
        eval_args=tfx.proto.EvalArgs(splits=[protocol.validation_split or protocol.eval_split]),
        custom_config={"backbone": backbone, "seeds": list(seeds), "train": train,
                       "features": feature_json(dataset, protocol), "code_version": code,
                       **({"backbone_options": options} if options else {})})


def create_pipeline(
    pipeline_name: str,
    pipeline_root: str,
    data_root: str,
    dataset: log_config.DatasetConfig,
    protocol: protocols.Protocol,
    schema_file: str,
    backbones: Sequence[str] = ("deepfm",),
    methods: Sequence[str] = ("base",),
    method_options: Optional[Dict[str, Dict[str, Any]]] = None,
    backbone_options: Optional[Dict[str, Dict[str, Any]]] = None,
    seeds: Sequence[int] = (0,),
    train: Optional[Dict[str, Any]] = None,
    metadata_path: Optional[str] = None,
    beam_pipeline_args: Optional[List[str]] = None,
    enable_cache: bool = False,
    tfma_seeds: int = 1,
    max_bad_fraction: float = example_gen_lib.DEFAULT_MAX_BAD_FRACTION,
    tuning: Optional[Dict[str, Any]] = None,
) -> tfx.dsl.Pipeline:
    """`dataset`: how to read `data_root`; `protocol`: the evaluation protocol (checked);
    `schema_file`: the schema of the protocol's split examples, where the component will read it. `tfma_seeds`: predictions of that many seeds go through the TFMA Evaluator (0: none).
    `max_bad_fraction`: quarantined rows above this fraction of the input fail the run.
    The raw files' fingerprint and the code version are parameters, so caching sees edits.
    `tuning` (issue 17, checked by the CLI): {"labels": tuned method labels, "spaces": {label:
    checked space}, "tuner", "trials", "seed", "tune_seeds": trials average over the first
    tune_seeds of `seeds`, "hyperparameters": a saved file (skips the search) or None, "vertex":
    optional, the Vertex AI Tuner's job (tuner_module.tuner_component)}; see `tuning_components`."""
    code = code_version()
    dataset = dataset.for_protocol(protocol.name)  # the negatives this protocol samples
    fingerprint = input_fingerprint(dataset, data_root)
    example_gen = example_gen_lib.ClickLogExampleGen(
        # The protocol is not ExampleGen's business: changing it must not re-run ingestion.
        input_base=data_root,
        dataset_config=json.dumps({**dataset.to_dict(), "protocol": {}}, sort_keys=True),
        input_fingerprint=fingerprint, code_version=code)
    quarantine_gate = example_gen_lib.QuarantineGate(
        quarantine=example_gen.outputs["quarantine"], max_bad_fraction=max_bad_fraction,
        code_version=code)
    split = ProtocolSplitGen(examples=example_gen.outputs["examples"], protocol=protocol.name,
                             params=json.dumps(protocol.params, sort_keys=True),
                             code_version=code).with_id("ItemSplitGen")
    split.add_upstream_node(quarantine_gate)
    schema = tfx.components.ImportSchemaGen(schema_file=schema_file)
    statistics = statistics_component(split.outputs["split_examples"])
    validator = tfx.components.ExampleValidator(statistics=statistics.outputs["statistics"],
                                                schema=schema.outputs["schema"])
    gate = AnomalyGate(anomalies=validator.outputs["anomalies"], code_version=code)
    transform = transform_component(split.outputs["split_examples"], schema.outputs["schema"],
                                    dataset, code, protocol)
    transform.add_upstream_node(gate)
    per_backbone = []
    tuning_nodes = (tuning_components(tuning, example_gen, quarantine_gate, schema, gate, dataset,
                                      protocol, backbones, method_options or {}, seeds, train, code,
                                      backbone_options or {})
                    if tuning else {})
    per_backbone += tuning_nodes.get("nodes", [])
    for backbone in backbones:
        run_config = {"dataset": dataset.to_dict(), "data_root": data_root,
                      "protocol": {"name": protocol.name, "params": protocol.params},
                      "backbone": backbone, "methods": list(methods), "method_options": method_options or {},
                      "seeds": list(seeds), "train": dict(train or {}),
                      "beam_pipeline_args": list(beam_pipeline_args or []),
                      "code_version": code, "input_fingerprint": fingerprint}
        if tuning:
            run_config["tuning"] = {k: v for k, v in tuning.items() if k != "spaces"}
        trainer = trainer_component(transform, schema, dataset, protocol, backbone, seeds, train,
                                    code, (backbone_options or {}).get(backbone)
                                    ).with_id(f"Trainer.{backbone}")
        warmup = WarmupEvaluate(
            transformed_examples=transform.outputs["transformed_examples"],
            transform_graph=transform.outputs["transform_graph"],
            model=trainer.outputs["model"],
            methods=",".join(methods),
            method_options=json.dumps(method_options or {}, sort_keys=True),
            protocol_config=protocol_config(protocol),
            prediction_seeds=tfma_seeds,
            code_version=code,
            **tuning_nodes.get("warmup_inputs", {}).get(backbone, {}),
        ).with_id(f"WarmupEvaluate.{backbone}")
        per_backbone += [trainer, warmup]
        tfma = {}
        if tfma_seeds > 0:
            evaluator = tfx.components.Evaluator(
                examples=warmup.outputs["predictions"],
                eval_config=tfma_check.eval_config(tfma_seeds, protocol.slice_features),
                example_splits=["test"]).with_id(f"Evaluator.{backbone}")
            tfma = {"tfma_evaluation": evaluator.outputs["evaluation"]}
            per_backbone.append(evaluator)
        per_backbone.append(ReportGen(
            split_examples=split.outputs["split_examples"],
            evaluation=warmup.outputs["evaluation"], dataset=dataset.name,
            quarantine=example_gen.outputs["quarantine"],
            run_config=json.dumps(run_config, sort_keys=True), **tfma,
            **tuning_nodes.get("report_inputs", {}).get(backbone, {}),
        ).with_id(f"ReportGen.{backbone}"))
    metadata = (tfx.orchestration.metadata.sqlite_metadata_connection_config(metadata_path)
                if metadata_path else None)
    return tfx.dsl.Pipeline(
        pipeline_name=pipeline_name,
        pipeline_root=pipeline_root,
        components=[example_gen, quarantine_gate, split, schema, statistics, validator, gate,
                    transform,
                    *per_backbone],
        metadata_connection_config=metadata,
        beam_pipeline_args=beam_pipeline_args or [],
        enable_cache=enable_cache,
    )


def tuning_components(tuning, example_gen, quarantine_gate, schema, gate, dataset, protocol,
                      backbones, method_options, seeds, train, code,
                      backbone_options=None) -> Dict[str, Any]:
    """The Tuner's part of the graph: TuningSplitGen (the protocol's
    `view: tuning`) -> Transform.tuning -> per backbone Trainer.tuning.<backbone> (the tuning
    backbones, pretrained on its pretrain split) -> per tuned label Tuner.<backbone>.<label>;
    or, with a saved file, one ImportHyperparameters instead of the whole search.
    Returns {"nodes", "warmup_inputs": {backbone: WarmupEvaluate keyword arguments},
    "report_inputs": {backbone: ReportGen keyword arguments}}."""
    from components import tuner_module  # pylint: disable=import-outside-toplevel
    labels = list(tuning["labels"])
    if len(labels) > MAX_TUNED:
        raise ValueError(f"at most {MAX_TUNED} tuned methods per run, not {len(labels)}")
    tuned = {"tuned": ",".join(labels)}
    if tuning.get("hyperparameters"):
        importer = tuner_module.hyperparameters_importer(tuning["hyperparameters"])
        inputs = {**tuned, "hyperparameters_1": importer.outputs["result"]}
        return {"nodes": [importer], "warmup_inputs": {b: inputs for b in backbones},
                "report_inputs": {}}
    view = protocols.build(protocol.name, **{**protocol.params, "view": "tuning"})
    split = ProtocolSplitGen(examples=example_gen.outputs["examples"], protocol=view.name,
                             params=json.dumps(view.params, sort_keys=True),
                             code_version=code).with_id("TuningSplitGen")
    split.add_upstream_node(quarantine_gate)
    transform = transform_component(split.outputs["split_examples"], schema.outputs["schema"],
                                    dataset, code, view).with_id("Transform.tuning")
    transform.add_upstream_node(gate)
    nodes, warmup_inputs, report_inputs = [split, transform], {}, {}
    seeds = list(seeds)[:tuning.get("tune_seeds") or len(seeds)]
    for backbone in backbones:
        trainer = trainer_component(transform, schema, dataset, view, backbone, seeds, train, code,
                                    (backbone_options or {}).get(backbone)
                                    ).with_id(f"Trainer.tuning.{backbone}")
        nodes.append(trainer)
        warmup_inputs[backbone], report_inputs[backbone] = dict(tuned), {}
        for index, label in enumerate(labels, start=1):
            tuner = tuner_module.tuner_component(
                label, tuning["spaces"][label], transform.outputs["transformed_examples"],
                transform.outputs["transform_graph"], trainer.outputs["model"], view.name,
                view.params, fixed=method_options.get(label, {}), tuner=tuning["tuner"],
                trials=tuning["trials"], seed=tuning["seed"], backbone=backbone,
                seeds=list(seeds), code_version=code, vertex=tuning.get("vertex"),
                splits=[view.pretrain_split] + [s for s in view.splits if s not in (
                    view.pretrain_split, *UNUSED_SPLITS)])
            nodes.append(tuner)
            warmup_inputs[backbone][f"hyperparameters_{index}"] = tuner.outputs[
                "best_hyperparameters"]
            report_inputs[backbone][f"tuner_results_{index}"] = tuner.outputs["tuner_results"]
    return {"nodes": nodes, "warmup_inputs": warmup_inputs, "report_inputs": report_inputs}


def _store(metadata_path: str):
    from ml_metadata.metadata_store import metadata_store  # pylint: disable=import-outside-toplevel
    return metadata_store.MetadataStore(
        tfx.orchestration.metadata.sqlite_metadata_connection_config(metadata_path))


def artifact_uris(metadata_path: str, type_name: str) -> List[str]:
    """URIs of every artifact of `type_name` in the sqlite MLMD store, oldest first."""
    artifacts = _store(metadata_path).get_artifacts_by_type(type_name)
    return [a.uri for a in sorted(artifacts, key=lambda a: a.id)]


def last_run_artifact_uris(metadata_path: str, type_name: str) -> List[str]:
    """URIs of the `type_name` outputs of the newest pipeline run, cached outputs included."""
    from ml_metadata.proto import metadata_store_pb2  # pylint: disable=import-outside-toplevel
    store = _store(metadata_path)
    runs = store.get_contexts_by_type("pipeline_run")
    if not runs:
        return []
    run = max(runs, key=lambda c: c.id)
    executions = [e.id for e in store.get_executions_by_context(run.id)]
    outputs = {e.artifact_id for e in store.get_events_by_execution_ids(executions)
               if e.type in (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)}
    type_id = store.get_artifact_type(type_name).id
    artifacts = [a for a in store.get_artifacts_by_id(list(outputs)) if a.type_id == type_id]
    return [a.uri for a in sorted(artifacts, key=lambda a: a.id)]


def latest_artifact_uri(metadata_path: str, type_name: str) -> str:
    uris = artifact_uris(metadata_path, type_name)
    if not uris:
        raise RuntimeError(f"the pipeline produced no {type_name} artifact")
    return uris[-1]


def local_paths(output: str) -> Dict[str, str]:
    return {"pipeline_root": os.path.join(output, "tfx"),
            "metadata_path": os.path.join(output, "tfx", "metadata.sqlite")}
