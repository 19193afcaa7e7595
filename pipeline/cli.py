"""`coldstart run ...`: runs the pipeline locally (LocalDagRunner, sqlite MLMD, in-process Beam)
and writes OUT/report.json and OUT/report.md; the TFX artifacts stay under OUT/tfx."""
import argparse
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


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="coldstart", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the pipeline end to end and write the report")
    run.add_argument("--dataset", default="ml-100k",
                     help=DATASET_HELP.format(", ".join(schemas.builtin())))
    run.add_argument("--data-dir", help="input folder, or the download cache (ml-100k, tafeng; "
                     "default $COLDSTART_DATA_DIR or ~/.cache/coldstart)")
    run.add_argument("--max-bad-fraction", type=float, default=0.001,
                     help="fail when more than this fraction of input rows is quarantined")
    run.add_argument("--backbone", default="deepfm",
                     help="comma-separated backbones; several write OUT/<backbone>/report.json")
    run.add_argument("--methods", default="base",
                     help="comma-separated cold-start methods; NAME/VARIANT labels a variant "
                          "with its own --set options (e.g. base,csdm,csdm/code)")
    run.add_argument("--runs", type=int, default=1, help="repetitions with seeds S..S+R-1")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--N", type=int, help="old items have more than N rows (default per dataset)")
    run.add_argument("--K", type=int, help="rows per new item in each warm split")
    run.add_argument("--batch-size", type=int, default=2048)
    run.add_argument("--pretrain-epochs", type=int, default=1)
    run.add_argument("--optimizer", choices=("torch_adam", "keras_adam"), default="torch_adam",
                     help="torch_adam: the reference's Adam (coupled L2, dense gradients)")
    run.add_argument("--frozen-mode", choices=("train", "inference"), default="train",
                     help="mode of the frozen backbone while item IDs train (train: reference)")
    run.add_argument("--output", required=True, help="output folder (report + TFX artifacts)")
    run.add_argument("--beam-preset", default="direct", choices=sorted(beam_presets.PRESETS),
                     help="Beam runner preset (see pipeline/beam_presets.py)")
    run.add_argument("--beam-arg", action="append", default=[],
                     help="Beam pipeline argument, repeatable; added to (or overriding) the preset")
    run.add_argument("--set", dest="method_options", action="append", default=[],
                     metavar="METHOD.OPTION=VALUE",
                     help="cold-start method option, repeatable (e.g. csdm.iters=2)")
    run.add_argument("--tfma-seeds", type=int, default=1,
                     help="seeds whose predictions the TFMA Evaluator checks (0: no Evaluator)")
    run.add_argument("--fresh", action="store_true", help="delete OUT/tfx before running")
    run.add_argument("--cache", action="store_true",
                     help="reuse unchanged component outputs of earlier runs in OUT/tfx")
    run.add_argument("--verbose", action="store_true", help="show library logs and warnings "
                     "on the terminal (default: OUT/logs/pipeline.log)")
    comp = sub.add_parser("compile", help="compile the pipeline for Kubeflow Pipelines / Vertex AI")
    comp.add_argument("--dataset", default="ml-1m",
                      help=DATASET_HELP.format(", ".join(schemas.builtin())))
    comp.add_argument("--data-root", required=True, help="input folder the cluster can read "
                      "(e.g. gs://bucket/ml-1m)")
    comp.add_argument("--pipeline-root", required=True, help="artifact root (e.g. gs://bucket/runs)")
    comp.add_argument("--image", required=True, help="container image built from the Dockerfile")
    comp.add_argument("--backbone", default="deepfm")
    comp.add_argument("--methods", default="base")
    comp.add_argument("--runs", type=int, default=1)
    comp.add_argument("--seed", type=int, default=0)
    comp.add_argument("--N", type=int)
    comp.add_argument("--K", type=int)
    comp.add_argument("--beam-arg", action="append", default=None,
                      help="Beam argument for the cluster runs, e.g. --runner=DataflowRunner")
    comp.add_argument("--schema-file",
                      help="the schema's path inside the image (default: the Dockerfile's copy of "
                           "the built-in one)")
    comp.add_argument("--output", required=True, help="pipeline JSON file to write")
    return p


def compile_pipeline(args: argparse.Namespace) -> str:
    """Writes the KubeflowV2 (Vertex AI Pipelines) JSON; runs nothing."""
    from pipeline import pipeline as pipeline_lib  # pylint: disable=import-outside-toplevel
    from tfx import v1 as tfx  # pylint: disable=import-outside-toplevel

    config = load_dataset(args.dataset)
    schema_file = args.schema_file
    if not schema_file:
        if args.dataset not in schemas.builtin():
            raise ValueError("--schema-file is required for a data set of your own")
        schema_file = IMAGE_SCHEMA.format(config.name)
    tfx_pipeline = pipeline_lib.create_pipeline(
        pipeline_name=f"coldstart-{config.name}", pipeline_root=args.pipeline_root,
        data_root=args.data_root, dataset=config, N=args.N or config.N, K=args.K or config.K,
        schema_file=schema_file, backbones=args.backbone.split(","),
        methods=args.methods.split(","), seeds=list(range(args.seed, args.seed + args.runs)),
        beam_pipeline_args=args.beam_arg or [])
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


def parse_method_options(items) -> dict:
    """["csdm.iters=2", "csdm.forward_coef=c"] -> {"csdm": {"iters": 2, "forward_coef": "c"}}."""
    options = {}
    for item in items:
        key, sep, value = item.partition("=")
        method, dot, option = key.partition(".")
        if not sep or not dot or not method or not option:
            raise ValueError(f"--set takes METHOD.OPTION=VALUE, not {item!r}")
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        options.setdefault(method, {})[option] = parsed
    return options


def run(args: argparse.Namespace) -> dict:
    from pipeline import pipeline as pipeline_lib  # pylint: disable=import-outside-toplevel
    from pipeline import report as report_lib  # pylint: disable=import-outside-toplevel
    from components.report_component import Report, write_report  # pylint: disable=import-outside-toplevel
    from tfx import v1 as tfx  # pylint: disable=import-outside-toplevel
    from components import item_split, log_reader  # pylint: disable=import-outside-toplevel

    from trainer import backbones, methods  # pylint: disable=import-outside-toplevel

    start = time.time()
    backbone_names = args.backbone.split(",")
    for name in backbone_names:
        if name not in backbones.BACKBONES:
            raise ValueError(f"unknown backbone {name!r}; known: "
                             f"{', '.join(sorted(backbones.BACKBONES))}")
    method_names = args.methods.split(",")
    method_options = parse_method_options(args.method_options)
    for name in set(method_options) - set(method_names):
        raise ValueError(f"--set names {name!r}, which is not in --methods {args.methods}")
    for name in method_names:  # unknown methods and options fail here, before any work
        methods.build(name, **method_options.get(name, {}))
    config = load_dataset(args.dataset)
    n, k = args.N or config.N, args.K or config.K
    if args.runs < 1:
        raise ValueError("--runs must be at least 1")
    if not 0 <= args.max_bad_fraction <= 1:
        raise ValueError("--max-bad-fraction must be in [0, 1]")
    item_split.check_params(n, k)
    beam_args = beam_presets.beam_args(args.beam_preset, args.beam_arg)
    builtin = args.dataset in schemas.builtin()
    data_root = datasets.resolve(args.dataset if builtin else f"{config.name} ({args.dataset})",
                                 args.data_dir)
    log_reader.resolve(config, data_root)  # missing files, empty files, absent columns: now
    output = os.path.abspath(args.output)
    paths = pipeline_lib.local_paths(output)
    if args.fresh and os.path.exists(paths["pipeline_root"]):
        shutil.rmtree(paths["pipeline_root"])
    os.makedirs(paths["pipeline_root"], exist_ok=True)
    if builtin:
        schema_file = schemas.schema_path(config.name)
    else:
        schema_file = os.path.join(output, "schema", "schema.pbtxt")
        os.makedirs(os.path.dirname(schema_file), exist_ok=True)
        with open(schema_file, "w") as f:
            f.write(schemas.schema_text(config))
    seeds = list(range(args.seed, args.seed + args.runs))
    train = {"batch_size": args.batch_size, "pretrain_epochs": args.pretrain_epochs,
             "optimizer": args.optimizer, "frozen_mode": args.frozen_mode}
    tfx_pipeline = pipeline_lib.create_pipeline(
        pipeline_name=f"coldstart-{config.name}", pipeline_root=paths["pipeline_root"],
        data_root=data_root, dataset=config, N=n, K=k, schema_file=schema_file,
        backbones=backbone_names, methods=method_names, method_options=method_options,
        seeds=seeds, train=train, metadata_path=paths["metadata_path"],
        beam_pipeline_args=beam_args, enable_cache=args.cache, tfma_seeds=args.tfma_seeds,
        max_bad_fraction=args.max_bad_fraction)
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


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    try:
        if args.command == "compile":
            print(compile_pipeline(args))
        else:
            with quiet.logs_to_file(args.output, args.verbose):
                run(args)
    except (datasets.DataError, FileNotFoundError, ValueError, UnicodeDecodeError) as err:
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
