"""Milliseconds per EmerG step (not a test): pretraining, meta-training and warm-up.

- pretraining step: batch 512 (spec 9), hypernetwork graphs, BCE, PyTorch-style Adam;
- meta-training step: `--tasks` tasks of `--task-rows` support and as many query rows each
  (ML-1M users 1-2999 chunks are 50-700 rows; 128 is typical): psi from the hypernetwork, L_cold,
  one first-order inner step, L_warm, outer Adam over every shared weight;
- warm-up step: one per-item Adam step on psi for `--items` items of K = `--k` rows each (the
  whole of a warm split of ML-1M users 1-2999 is 1,087 items x 20 rows).
ML-1M vocabulary sizes; the values do not matter for the timing. Modes: tf.function, and with
jit_compile=True (XLA).

    .venv/bin/python benchmarks/emerg_step.py [--steps 30] [--tasks 1] [--task-rows 128]
"""
import argparse
import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks.csdm_step import ML1M_VOCAB, synthetic_batch, time_steps  # noqa: E402
from trainer import features, protocol  # noqa: E402
from trainer.emerg import training  # noqa: E402
from trainer.emerg.model import EmerGEval, EmerGNet  # noqa: E402


def timed(fn, steps):
    """(median, min) ms of `fn()`, after 3 untimed calls."""
    return time_steps(lambda _: fn(), None, steps)


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--tasks", type=int, default=1)
    p.add_argument("--task-rows", type=int, default=128)
    p.add_argument("--items", type=int, default=1087)
    p.add_argument("--k", type=int, default=20)
    p.add_argument("--modes", default="tf.function,xla")
    args = p.parse_args()
    rng = np.random.default_rng(0)
    print(f"EmerG steps, L={args.layers}, ML-1M vocabularies; {os.cpu_count()} CPU cores, "
          f"TF {tf.__version__}")
    print(f"{'step':<44} {'mode':<12} {'median ms':>10} {'min ms':>8}")
    for mode in args.modes.split(","):
        jit = mode == "xla"
        protocol.seed_everything(0)
        net = EmerGNet(features.MOVIELENS, ML1M_VOCAB, layers=args.layers)
        hp = training.Hyper(jit_compile=jit, warm_rows=args.items * args.k)
        batch = synthetic_batch(512, rng)
        net(batch)

        pre_vars = net.trainable_variables
        pre_opt = training.TorchAdam(pre_vars, hp.pretrain_lr, hp.weight_decay)

        @tf.function(jit_compile=jit)
        def pre_step(b):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(training.row_bce(b[features.LABEL], net(b)))
            pre_opt.apply_gradients(tape.gradient(loss, pre_vars))
            return loss

        median, fastest = timed(lambda: pre_step(batch), args.steps)
        print(f"{'pretraining, batch 512':<44} {mode:<12} {median:>10.1f} {fastest:>8.1f}")

        rows = args.tasks * args.task_rows
        task = {"support": synthetic_batch(rows, rng), "query": synthetic_batch(rows, rng),
                "support_mask": tf.ones([rows]), "query_mask": tf.ones([rows])}
        meta = training.MetaTrainer(net, hp)
        median, fastest = timed(lambda: meta.step(task, args.tasks, args.task_rows), args.steps)
        label = f"meta-training, {args.tasks} task(s) x {args.task_rows}+{args.task_rows} rows"
        print(f"{label:<44} {mode:<12} {median:>10.1f} {fastest:>8.1f}")

        items = np.arange(args.items)
        warm = {k: v.numpy() for k, v in synthetic_batch(args.items * args.k, rng).items()}
        warm[features.ITEM_ID] = np.repeat(items, args.k)
        model = EmerGEval(net, items)
        training.init_psi(model, {k: v[::args.k] for k, v in warm.items()})
        warm_up = training.WarmUp(model, hp)
        rows, local, slots = next(warm_up.groups(warm))
        median, fastest = timed(lambda: warm_up.step(rows, local, slots), max(5, args.steps // 3))
        label = f"warm-up, {args.items} items x {args.k} rows"
        print(f"{label:<44} {mode:<12} {median:>10.1f} {fastest:>8.1f}", flush=True)


if __name__ == "__main__":
    main()
