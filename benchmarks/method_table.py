"""Per-phase AUC of several cold-start methods on one pipeline run's data (not a test).

Reads the transformed splits and the pretrained backbones (one per seed) of a finished
`coldstart run` and runs the protocol for every method, exactly as WarmupEvaluate does, so a
comparison table can be redone without rerunning the upstream components. Prints AUC +- std
(population, over seeds), RelaImpr against `base` and the wall time of each method.

    .venv/bin/python benchmarks/method_table.py --run runs/ml1m --backbone deepfm \\
        --methods base,dropoutnet,metae,mwuf,cvar,velf,csdm [--set csdm.iters=10]
"""
import argparse
import dataclasses
import glob
import json
import os
import shutil
import sys
import tempfile
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import tensorflow_transform as tft  # noqa: E402

from components import example_io  # noqa: E402
from pipeline import report  # noqa: E402
from trainer import data, features, methods, metrics, preprocessing, protocol, task  # noqa: E402
from trainer import options as method_options  # noqa: E402
from trainer.context import ProtocolContext  # noqa: E402


def latest(pattern: str) -> str:
    found = sorted(glob.glob(pattern), key=lambda p: int(p.rstrip("/").split("/")[-1]))
    if not found:
        raise SystemExit(f"nothing matches {pattern}: is --run the output of a finished run?")
    return found[-1]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--run", required=True, help="output directory of a finished `coldstart run`")
    p.add_argument("--backbone", default="deepfm")
    p.add_argument("--methods", default="base,dropoutnet,metae,mwuf,cvar,velf,csdm")
    p.add_argument("--set", action="append", default=[], metavar="METHOD.OPTION=VALUE")
    p.add_argument("--seeds", help="comma-separated; seeds the run did not pretrain are pretrained "
                   "here as the Trainer does (default: the run's seeds)")
    p.add_argument("--pretrain-epochs", type=int, help="pretrain every seed's backbone here with "
                   "this many epochs on base (default: use the run's backbones)")
    p.add_argument("--json", help="write the per-seed results here")
    args = p.parse_args()
    try:  # checked as `coldstart run` checks them, before any work
        options = method_options.parse_sets(args.set, args.methods.split(","))
    except ValueError as err:
        p.error(str(err))
    if args.pretrain_epochs is not None and args.pretrain_epochs < 1:
        p.error(f"--pretrain-epochs must be at least 1, not {args.pretrain_epochs}")
    root = os.path.join(args.run, "tfx")
    transform = latest(os.path.join(root, "Transform", "transform_graph", "*"))
    examples = latest(os.path.join(root, "Transform", "transformed_examples", "*"))
    model_dir = os.path.join(latest(os.path.join(root, f"Trainer.{args.backbone}", "model", "*")),
                             "Format-Serving")
    with open(os.path.join(model_dir, "train_config.json")) as f:
        train_config = json.load(f)
    config = protocol.TrainConfig(**train_config["train"])
    if args.pretrain_epochs is not None:
        config = dataclasses.replace(config, pretrain_epochs=args.pretrain_epochs)
        train_config["train"]["pretrain_epochs"] = args.pretrain_epochs
    own = args.pretrain_epochs is None  # the run's backbones are usable
    tft_output = tft.TFTransformOutput(transform)
    spec = tft_output.transformed_feature_spec()
    splits = {name: data.load_files(example_io.split_files(examples, name), spec)
              for name in ("base", "warm_a", "warm_b", "warm_c", "test")}
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else train_config["seeds"]
    seed_dirs = {}
    extra_dir = tempfile.mkdtemp(prefix="method_table_")
    for seed in seeds:
        if own and seed in train_config["seeds"]:
            seed_dirs[seed] = task.seed_dir(model_dir, seed)
        else:
            seed_dirs[seed] = task.seed_dir(extra_dir, seed)
            feature_config = features.from_json(train_config["features"])
            task.save(task.pretrain(train_config["backbone"], feature_config,
                                    preprocessing.vocab_sizes(tft_output, feature_config),
                                    splits["base"], config, seed), seed_dirs[seed])
    rows, results = [], {}
    for label in args.methods.split(","):
        start = time.perf_counter()
        per_seed = {}
        for seed in seeds:
            backbone = task.load(seed_dirs[seed], splits["test"])
            method = methods.build(label, seed=seed, **options.get(label, {}))
            context = ProtocolContext.in_memory(splits)
            per_seed[str(seed)] = context.protocol.report_slices(
                protocol.warm_up_and_evaluate(backbone, context, config, seed, method))
        seconds = time.perf_counter() - start
        results[label] = per_seed
        summary = report.aggregate(per_seed)
        rows.append((label, summary, seconds))
        print(f"{label}: {json.dumps(summary)} {seconds:.0f} s", file=sys.stderr, flush=True)
    base = dict((label, summary) for label, summary, _ in rows).get("base")
    phases = protocol.PHASES
    print(f"\n{args.backbone}, seeds {seeds}, {args.run}")
    print("| method | " + " | ".join(phases) + " | wall time |")
    print("|---" * (len(phases) + 2) + "|")
    for label, summary, seconds in rows:
        cells = []
        for phase in phases:
            cell = f"{summary[phase]['auc']:.4f} ± {summary[phase]['auc_std']:.4f}"
            if base and label != "base":
                cell += f" ({metrics.rela_impr(summary[phase]['auc'], base[phase]['auc']):+.2f}%)"
            cells.append(cell)
        print(f"| {label} | " + " | ".join(cells) + f" | {seconds:.0f} s |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"backbone": args.backbone, "seeds": seeds, "config": train_config,
                       "options": options, "results": results}, f, indent=1)
    shutil.rmtree(extra_dir)


if __name__ == "__main__":
    main()
