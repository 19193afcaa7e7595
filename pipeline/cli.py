"""`coldstart run ...`: runs the pipeline locally (LocalDagRunner, sqlite MLMD, in-process Beam)
and writes OUT/report.json and OUT/report.md; the TFX artifacts stay under OUT/tfx."""
import argparse
import hashlib
import json
import logging
import os
import shutil
import sys
import time

from components import log_config
from pipeline import beam_presets, datasets, quiet
import schemas

IMAGE_SCHEMA = "/pipeline/schemas/{}/schema.pbtxt"  # where the Dockerfile puts the built-in ones
DATASET_HELP = ("a built-in data set ({}) or the path of a YAML config describing your own log "
                "(see components/log_config.py)")


def add_pipeline_arguments(p: argparse.ArgumentParser, dataset: str) -> None:
    """The arguments `run` and `compile` share: everything that defines the pipeline."""
    p.add_argument("--dataset", default=dataset,
                   help=DATASET_HELP.format(", ".join(schemas.builtin())))
    p.add_argument("--max-bad-fraction", type=float, default=0.001,
                   help="fail when more than this fraction of input rows is quarantined")
    p.add_argument("--backbone", default="deepfm",
                   help="comma-separated backbones; several write OUT/<backbone>/report.json")
    p.add_argument("--methods", default="base",
                   help="comma-separated cold-start methods; NAME/VARIANT labels a variant "
                        "with its own --set options (e.g. base,csdm,csdm/code)")
    p.add_argument("--runs", type=int, default=1, help="repetitions with seeds S..S+R-1")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--protocol", help="evaluation protocol: item_frequency, leave_last_out, "
                   "per_domain (default per data set; parameters: --set protocol.X=Y)")
    p.add_argument("--N", type=int, help="item_frequency: old items have more than N rows "
                   "(default per dataset; same as --set protocol.N=...)")
    p.add_argument("--K", type=int, help="item_frequency: rows per new item in each warm split")
    p.add_argument("--batch-size", type=int, default=2048)
    p.add_argument("--pretrain-epochs", type=int, default=1,
                   help="pretraining epochs (with --early-stopping: the most epochs)")
    p.add_argument("--early-stopping", type=int, default=0, metavar="PATIENCE",
                   help="stop pretraining after PATIENCE epochs without a better validation AUC "
                        "and keep the best epoch's weights (0: off; needs a protocol with a "
                        "validation split)")
    p.add_argument("--optimizer", choices=("torch_adam", "keras_adam"), default="torch_adam",
                   help="torch_adam: the reference's Adam (coupled L2, dense gradients)")
    p.add_argument("--learning-rate", type=float, metavar="LR",
                   help="the optimizer's learning rate for pretraining, warm-up and the methods "
                        "that train with it (default 1e-3; a method's own lr option stays)")
    p.add_argument("--weight-decay", type=float, metavar="L2",
                   help="that optimizer's L2 weight on every variable it trains (default 1e-6; "
                        "AQCL's paper searches 1e-5 .. 1e-1)")
    p.add_argument("--frozen-mode", choices=("train", "inference"), default="train",
                   help="mode of the frozen backbone while item IDs train (train: reference)")
    p.add_argument("--beam-preset", default="direct", choices=sorted(beam_presets.PRESETS),
                   help="Beam runner preset (see pipeline/beam_presets.py)")
    p.add_argument("--beam-arg", action="append", default=[],
                   help="Beam pipeline argument, repeatable; added to (or overriding) the preset")
    p.add_argument("--set", dest="method_options", action="append", default=[],
                   metavar="METHOD.OPTION=VALUE",
                   help="cold-start method, protocol, backbone or negatives option, repeatable "
                        "(e.g. csdm.iters=2, protocol.unit=day, negatives.sampling=din); typed "
                        "and checked (bool: true/false)")
    p.add_argument("--tfma-seeds", type=int, default=1,
                   help="seeds whose predictions the TFMA Evaluator checks (0: no Evaluator)")
    p.add_argument("--tune", metavar="METHOD[,METHOD]",
                   help="tune these labels of --methods on the protocol's tuning view (a "
                        "keras-tuner Tuner); the report adds METHOD/tuned beside METHOD")
    p.add_argument("--trials", type=int, help="trials per tuned method (default 10)")
    p.add_argument("--tuner", help="search: random (default), bayesian, hyperband")
    p.add_argument("--tune-seeds", type=int, metavar="N",
                   help="each trial averages over the first N run seeds (default: all --runs); "
                        "the tuning backbones are pretrained for these seeds only")
    p.add_argument("--search-space", metavar="FILE",
                   help="YAML {method: {option: spec}} replacing methods' declared search spaces")
    p.add_argument("--hyperparameters", metavar="FILE",
                   help="a saved best_hyperparameters file (names METHOD.OPTION): its methods are "
                        "evaluated with these options, without a search")


def tuning_arguments(args: argparse.Namespace, method_names, method_options, protocol):
    """The `tuning` argument of create_pipeline from --tune, --trials, --tuner, --search-space and
    --hyperparameters (None without them), checked before any work."""
    from trainer import tuning  # pylint: disable=import-outside-toplevel
    from components.warmup_component import MAX_TUNED, TUNED_SUFFIX  # pylint: disable=import-outside-toplevel
    labels = args.tune.split(",") if args.tune else []
    if not labels and not args.hyperparameters:
        for flag, value in (("--trials", args.trials), ("--tuner", args.tuner),
                            ("--search-space", args.search_space),
                            ("--tune-seeds", args.tune_seeds)):
            if value is not None:
                raise ValueError(f"{flag} needs --tune")
        return None
    if protocol.params["view"] != "final":
        raise ValueError("--tune: the run evaluates the final view (protocol.view=final); the "
                         "Tuner builds the tuning view itself")
    if args.hyperparameters:
        if args.search_space or args.trials is not None or args.tuner or args.tune_seeds:
            raise ValueError("--hyperparameters skips the search: --search-space, --trials, "
                             "--tuner and --tune-seeds do not apply")
        if "://" in args.hyperparameters and not labels:  # read at run time, not here
            raise ValueError(f"--hyperparameters {args.hyperparameters}: a remote file needs "
                             "--tune naming its methods")
        found = sorted(labels) if "://" in args.hyperparameters else \
            sorted(tuning.load_hyperparameters(args.hyperparameters, method_names))
        if labels and sorted(labels) != found:
            raise ValueError(f"--tune {args.tune}: --hyperparameters {args.hyperparameters} holds "
                             f"options of {','.join(found)}")
        labels = labels or found
    for label in labels:
        if label not in method_names:
            raise ValueError(f"--tune {label}: not in --methods {','.join(method_names)}")
        if label + TUNED_SUFFIX in method_names:
            raise ValueError(f"--tune {label}: {label}{TUNED_SUFFIX} is the tuned row's label; "
                             "rename that method in --methods")
    if len(set(labels)) < len(labels) or len(labels) > MAX_TUNED:
        raise ValueError(f"--tune {args.tune}: at most {MAX_TUNED} different methods")
    if args.hyperparameters:
        return {"labels": labels, "hyperparameters": args.hyperparameters}
    trials = 10 if args.trials is None else args.trials
    kind = args.tuner or "random"
    tune_seeds = args.runs if args.tune_seeds is None else args.tune_seeds
    if not 1 <= tune_seeds <= args.runs:
        raise ValueError(f"--tune-seeds must be between 1 and --runs ({args.runs}), not "
                         f"{tune_seeds}")
    tuning.check_search(kind, trials)
    spaces = tuning.search_spaces(labels, args.search_space,
                                  {label: method_options.get(label, {}) for label in labels})
    return {"labels": labels, "spaces": spaces, "tuner": kind, "trials": trials,
            "seed": args.seed, "tune_seeds": tune_seeds, "search_space": args.search_space,
            "hyperparameters": None}


def vertex_tuning(args: argparse.Namespace, tuning):
    """The `vertex` entry of the `tuning` argument from compile's --parallel-trials,
    --vertex-project, --vertex-region and --tuner-machine-type (None without them), checked
    before any work: the Tuners become Vertex AI's, running that many trials at once."""
    if args.parallel_trials is None:
        for flag, value in (("--vertex-project", args.vertex_project),
                            ("--vertex-region", args.vertex_region),
                            ("--tuner-machine-type", args.tuner_machine_type)):
            if value is not None:
                raise ValueError(f"{flag} needs --parallel-trials")
        return None
    if args.hyperparameters:
        raise ValueError("--hyperparameters skips the search: --parallel-trials does not apply")
    if not tuning:
        raise ValueError("--parallel-trials needs --tune")
    if not args.vertex_project:
        raise ValueError("--parallel-trials needs --vertex-project")
    if args.parallel_trials < 2:
        raise ValueError(f"--parallel-trials must be at least 2, not {args.parallel_trials}")
    return {"parallel_trials": args.parallel_trials, "project": args.vertex_project,
            "region": args.vertex_region or "us-central1",
            "machine_type": args.tuner_machine_type or "n1-standard-8", "image": args.image,
            "pipeline_root": args.pipeline_root}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="coldstart", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the pipeline end to end and write the report")
    add_pipeline_arguments(run, "ml-100k")
    run.add_argument("--data-dir", help="input folder, or the download cache (ml-100k, tafeng; "
                     "default $COLDSTART_DATA_DIR or ~/.cache/coldstart)")
    run.add_argument("--output", required=True, help="output folder (report + TFX artifacts)")
    run.add_argument("--fresh", action="store_true", help="delete OUT/tfx before running")
    run.add_argument("--cache", action="store_true",
                     help="reuse component outputs of earlier runs in OUT/tfx whose inputs, "
                          "parameters, raw files and project code are unchanged")
    run.add_argument("--verbose", action="store_true", help="show library logs and warnings "
                     "on the terminal (default: OUT/logs/pipeline.log)")
    comp = sub.add_parser("compile", help="compile the pipeline for Kubeflow Pipelines / Vertex AI")
    add_pipeline_arguments(comp, "ml-1m")
    comp.add_argument("--data-root", required=True, help="input folder the cluster can read "
                      "(e.g. gs://bucket/ml-1m)")
    comp.add_argument("--pipeline-root", required=True, help="artifact root (e.g. gs://bucket/runs)")
    comp.add_argument("--image", required=True, help="container image built from the Dockerfile")
    comp.add_argument("--schema-file",
                      help="the schema's path inside the image (default: the Dockerfile's copy of "
                           "the built-in one)")
    comp.add_argument("--output", required=True, help="pipeline JSON file to write")
    comp.add_argument("--parallel-trials", type=int, metavar="N",
                      help="with --tune: Vertex AI's Tuner runs N >= 2 trials at once (a "
                           "CustomJob of N machines running --image)")
    comp.add_argument("--vertex-project", help="Google Cloud project of --parallel-trials' job")
    comp.add_argument("--vertex-region", help="its region (default us-central1)")
    comp.add_argument("--tuner-machine-type", help="its machine type (default n1-standard-8)")
    return p


class NegativeOptions:  # pylint: disable=too-few-public-methods
    """`--set negatives.sampling=RULE`: how this run samples an implicit log's negatives, in place
    of the data set's rule for the protocol (log_config.DatasetConfig.for_protocol)."""
    name = "negatives"
    defaults = {"sampling": ""}
    choices = {"sampling": log_config.SAMPLING}


def pipeline_arguments(args: argparse.Namespace) -> dict:
    """Checks every shared argument (names, --set values, ranges) before any work and returns the
    keyword arguments of `pipeline.create_pipeline` they define; `run` and `compile` add only
    where the data, schema and artifacts live."""
    from trainer import backbones, methods, protocols  # pylint: disable=import-outside-toplevel
    from trainer import options  # pylint: disable=import-outside-toplevel
    from trainer.methods.base import check_protocol  # pylint: disable=import-outside-toplevel

    backbone_names = args.backbone.split(",")
    for name in backbone_names:
        if name not in backbones.BACKBONES:
            raise ValueError(f"unknown backbone {name!r}; known: "
                             f"{', '.join(sorted(backbones.BACKBONES))}")
    method_names = args.methods.split(",")
    for name in method_names:
        methods.method_class(name)  # unknown methods fail here
    if len(set(method_names)) < len(method_names):
        raise ValueError(f"--methods {args.methods} names a method twice")
    config = load_dataset(args.dataset)
    protocol_name = args.protocol or config.protocol.get("name", "item_frequency")
    protocol_class = protocols.protocol_class(protocol_name)
    method_options = options.parse_sets(
        args.method_options, method_names,
        extra={"protocol": protocol_class, "negatives": NegativeOptions,
               **{name: backbones.options_class(name) for name in backbone_names}})
    backbone_options = {}  # only the options set: the rest are the constructor's defaults
    for name in backbone_names:
        given = method_options.pop(name, {})
        checked = options.validate(backbones.options_class(name), given, name)
        backbone_options[name] = {k: checked[k] for k in given}
    unknown = sorted(set(config.negative_sampling_by_protocol) - set(protocols.PROTOCOLS))
    if unknown:
        raise ValueError(f"{args.dataset}: negatives.by_protocol names unknown protocols "
                         f"{unknown}; known: {', '.join(sorted(protocols.PROTOCOLS))}")
    config = config.for_protocol(protocol_name,
                                 method_options.pop("negatives", {}).get("sampling", ""))
    params = dict(config.protocol.get(protocol_name, {}))
    if protocol_name == "item_frequency":
        params = {"N": config.N, "K": config.K, **params}
    for flag, name in (("--N", "N"), ("--K", "K")):
        if getattr(args, name) is not None:
            if protocol_name != "item_frequency":
                raise ValueError(f"{flag} is a parameter of item_frequency, not of {protocol_name}")
            params[name] = getattr(args, name)
    params.update(method_options.pop("protocol", {}))
    protocol = protocols.build(protocol_name, **params)
    for name in method_names:
        check_protocol(name, methods.method_class(name), protocol_name)
    have = {f.name for f in config.fields} | ({config.file_field} if config.file_field else set())
    for feature, why in protocol.input_features().items():
        if feature not in have:
            raise ValueError(f"protocol {protocol_name} reads the example feature {feature!r} "
                             f"({why}), which {config.name}'s examples do not have; features: "
                             f"{sorted(have)}")
    for flag, value, low in (("--runs", args.runs, 1), ("--batch-size", args.batch_size, 1),
                             ("--pretrain-epochs", args.pretrain_epochs, 1),
                             ("--tfma-seeds", args.tfma_seeds, 0),
                             ("--early-stopping", args.early_stopping, 0)):
        if value < low:
            raise ValueError(f"{flag} must be at least {low}, not {value}")
    if args.learning_rate is not None and not args.learning_rate > 0:
        raise ValueError(f"--learning-rate must be above 0, not {args.learning_rate}")
    if args.weight_decay is not None and not args.weight_decay >= 0:
        raise ValueError(f"--weight-decay must be at least 0, not {args.weight_decay}")
    if args.early_stopping and not protocol.validation_split:
        raise ValueError(f"--early-stopping needs a protocol with a validation split; "
                         f"{protocol_name} has none")
    if not 0 <= args.max_bad_fraction <= 1:
        raise ValueError("--max-bad-fraction must be in [0, 1]")
    tuned = tuning_arguments(args, method_names, method_options, protocol)
    return dict(
        pipeline_name=f"coldstart-{config.name}", dataset=config, protocol=protocol,
        backbone_options={k: v for k, v in backbone_options.items() if v},
        backbones=backbone_names, methods=method_names, method_options=method_options,
        seeds=list(range(args.seed, args.seed + args.runs)),
        train={"batch_size": args.batch_size, "pretrain_epochs": args.pretrain_epochs,
               "optimizer": args.optimizer, "frozen_mode": args.frozen_mode,
               **({"early_stopping": args.early_stopping} if args.early_stopping else {}),
               **({"learning_rate": args.learning_rate} if args.learning_rate is not None else {}),
               **({"weight_decay": args.weight_decay} if args.weight_decay is not None else {})},
        beam_pipeline_args=beam_presets.beam_args(args.beam_preset, args.beam_arg),
        tfma_seeds=args.tfma_seeds, max_bad_fraction=args.max_bad_fraction,
        **({"tuning": tuned} if tuned else {}))


def compiled_pipeline(args: argparse.Namespace):
    """The tfx Pipeline that `compile` writes."""
    from pipeline import pipeline as pipeline_lib  # pylint: disable=import-outside-toplevel

    kwargs = pipeline_arguments(args)
    vertex = vertex_tuning(args, kwargs.get("tuning"))
    if vertex:
        kwargs["tuning"]["vertex"] = vertex
    schema_file = args.schema_file
    if not schema_file:
        if args.dataset not in schemas.builtin():
            raise ValueError("--schema-file is required for a data set of your own")
        if kwargs["protocol"].name != "item_frequency":
            raise ValueError("--schema-file is required with --protocol "
                             f"{kwargs['protocol'].name} (the image holds item_frequency schemas; "
                             "`python -m schemas` writes the others' text)")
        schema_file = IMAGE_SCHEMA.format(kwargs["dataset"].name)
    return pipeline_lib.create_pipeline(pipeline_root=args.pipeline_root, data_root=args.data_root,
                                        schema_file=schema_file, **kwargs)


def compile_pipeline(args: argparse.Namespace) -> str:
    """Writes the KubeflowV2 (Vertex AI Pipelines) JSON; runs nothing."""
    from tfx import v1 as tfx  # pylint: disable=import-outside-toplevel

    tfx_pipeline = compiled_pipeline(args)
    output = os.path.abspath(args.output)
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image=args.image),
        output_dir=os.path.dirname(output), output_filename=os.path.basename(output))
    runner.run(tfx_pipeline, write_out=True)
    return output


def load_dataset(name_or_path: str) -> log_config.DatasetConfig:
    """A built-in data set by name, or a YAML config file."""
    if name_or_path in schemas.builtin():
        return log_config.load(schemas.config_path(name_or_path))
    if name_or_path.endswith((".yaml", ".yml")) or os.path.isfile(name_or_path):
        if not os.path.isfile(name_or_path):
            raise FileNotFoundError(f"dataset config {name_or_path!r} does not exist")
        return log_config.load(name_or_path)
    raise ValueError(f"--dataset {name_or_path!r} is neither a built-in data set "
                     f"({', '.join(schemas.builtin())}) nor a YAML config file")


def local_pipeline(args: argparse.Namespace):
    """Checks the arguments and the input files, prepares OUT and returns the tfx Pipeline that
    `run` runs."""
    from pipeline import pipeline as pipeline_lib  # pylint: disable=import-outside-toplevel
    from components import log_reader  # pylint: disable=import-outside-toplevel

    kwargs = pipeline_arguments(args)
    config = kwargs["dataset"]
    builtin = args.dataset in schemas.builtin()
    data_root = datasets.resolve(args.dataset if builtin else f"{config.name} ({args.dataset})",
                                 args.data_dir)
    log_reader.resolve(config, data_root)  # missing files, empty files, absent columns: now
    output = os.path.abspath(args.output)
    paths = pipeline_lib.local_paths(output)
    if args.fresh and os.path.exists(paths["pipeline_root"]):
        shutil.rmtree(paths["pipeline_root"])
    os.makedirs(paths["pipeline_root"], exist_ok=True)
    protocol = kwargs["protocol"]
    if builtin and protocol.name == "item_frequency":
        with open(schemas.schema_path(config.name)) as f:
            schema_text = f.read()
    else:
        schema_text = schemas.schema_text(config, protocol.row_features,
                                          protocol.name.replace("_", "-"))
    # ImportSchemaGen's cache key is the file's path: one path per content keeps --cache honest.
    schema_file = os.path.join(output, "schema", hashlib.sha256(schema_text.encode()).hexdigest()[:16],
                               "schema.pbtxt")
    os.makedirs(os.path.dirname(schema_file), exist_ok=True)
    with open(schema_file, "w") as f:
        f.write(schema_text)
    return pipeline_lib.create_pipeline(
        pipeline_root=paths["pipeline_root"], data_root=data_root, schema_file=schema_file,
        metadata_path=paths["metadata_path"], enable_cache=args.cache, **kwargs)


def run(args: argparse.Namespace) -> dict:
    from pipeline import pipeline as pipeline_lib  # pylint: disable=import-outside-toplevel
    from pipeline import report as report_lib  # pylint: disable=import-outside-toplevel
    from components.report_component import Report, write_report  # pylint: disable=import-outside-toplevel
    from tfx import v1 as tfx  # pylint: disable=import-outside-toplevel

    start = time.time()
    tfx_pipeline = local_pipeline(args)
    backbone_names = args.backbone.split(",")
    output = os.path.abspath(args.output)
    paths = pipeline_lib.local_paths(output)
    tfx.orchestration.LocalDagRunner().run(tfx_pipeline)
    reports = {}
    for uri in pipeline_lib.last_run_artifact_uris(paths["metadata_path"], Report.TYPE_NAME):
        with open(os.path.join(uri, "report.json")) as f:
            report = json.load(f)
        reports[report["backbone"]] = report
    missing = set(backbone_names) - set(reports)
    if missing:
        raise RuntimeError(f"the pipeline wrote no report for {sorted(missing)}")
    reports = {name: reports[name] for name in backbone_names}
    for report in reports.values():
        report["wall_seconds"] = round(time.time() - start, 1)
    if len(reports) == 1:
        write_report(output, next(iter(reports.values())))
    else:
        for name, report in reports.items():
            write_report(os.path.join(output, name), report)
        with open(os.path.join(output, "report.md"), "w") as f:
            f.write(report_lib.render_combined(reports))
        report_lib.plot_auc_by_phase(reports, os.path.join(output, "auc_by_phase.png"))
    print(report_lib.render_combined(reports))
    return reports


# Bad input found before any work: one line, exit 2.
USER_ERRORS = (datasets.DataError, FileNotFoundError, ValueError, UnicodeDecodeError)


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    try:
        if args.command == "compile":
            print(compile_pipeline(args))
        else:
            with quiet.logs_to_file(args.output, args.verbose, USER_ERRORS):
                # Imported here: TensorFlow's import-time lines go to the log too.
                from pipeline.report import failed_cells  # pylint: disable=import-outside-toplevel
                failed = failed_cells(run(args))
            if failed:
                print(f"coldstart: error: non-finite loss, failed cells (see report.md): {failed}",
                      file=sys.stderr)
                return 1
    except USER_ERRORS as err:
        print(f"coldstart: error: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # pylint: disable=broad-except
        # Beam and TFX wrap the cause; its message is the useful part (the traceback is logged).
        logging.exception("pipeline failed")
        print(f"coldstart: error: the pipeline failed: {str(err).strip()[-2000:]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
