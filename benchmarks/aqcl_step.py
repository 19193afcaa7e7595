"""Milliseconds per training step of DIN + a regulariser (default aqcl) against DIN alone (not a
test).

One step = forward, loss, gradients and the project's Adam update, in one tf.function, as
`protocol.train` runs it. DIN alone: BCE. DIN + aqcl: BCE on the clean pass, the augmented second
pass, projector, L_AQCL against the 128-word codebook, Sinkhorn and L_codebook. Batch 2048 with
Amazon-Beauty-sized vocabularies and full histories of 50 items; the values do not matter for
the timing.

    .venv/bin/python benchmarks/aqcl_step.py [--batch 2048] [--steps 30] [--history 50]
        [--backbone din] [--methods aqcl,icl] [--set aqcl.sinkhorn_iters=3 ...]
"""
import argparse
import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks.csdm_step import time_steps  # noqa: E402
from trainer import backbones, features, methods, protocol  # noqa: E402
from trainer import options as method_options  # noqa: E402

BEAUTY_VOCAB = {"user_id": 22364, "item_id": 12102, "category": 250}


def feature_config(history):
    return features.FeatureConfig(
        fields=(features.Field("user_id", "spr"), features.Field("item_id", "spr"),
                features.Field("category", "spr"), features.Field("hist_item_id", "hist", history, vocab="item_id"),
                features.Field("hist_category", "hist", history, vocab="category"), features.Field("hist_len", "raw"),
                features.Field("count", "ctn")),
        item_side=("item_id", "category", "count"))


def synthetic_batch(n, history, rng):
    lengths = rng.integers(0, history + 1, n)
    items = rng.integers(1, BEAUTY_VOCAB["item_id"], (n, history))
    items[np.arange(history)[None, :] >= lengths[:, None]] = 0
    return {"user_id": rng.integers(0, BEAUTY_VOCAB["user_id"], n),
            "item_id": rng.integers(0, BEAUTY_VOCAB["item_id"], n),
            "category": rng.integers(0, BEAUTY_VOCAB["category"], n),
            "hist_item_id": items, "hist_category": np.where(items > 0, items % 249 + 1, 0),
            "hist_len": lengths.astype(np.float32), "count": rng.random(n, dtype=np.float32),
            features.LABEL: rng.integers(0, 2, n)}


def timed_step(loss_fn, variables, batch, steps):
    """(median, min) ms of one tf.function step: loss, gradients, the project's Adam update."""
    optimizer = protocol.make_optimizer(protocol.TrainConfig(), variables)

    @tf.function
    def step(batch):
        with tf.GradientTape() as tape:
            loss = loss_fn(batch)
        optimizer.apply_gradients(tape.gradient(loss, variables))
        return loss

    return time_steps(step, batch, steps)


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--batch", type=int, default=2048)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--history", type=int, default=50)
    p.add_argument("--backbone", default="din", choices=("din", "deepfm_hist", "wd_hist"))
    p.add_argument("--methods", default="aqcl")
    p.add_argument("--set", action="append", default=[], metavar="METHOD.OPTION=VALUE")
    args = p.parse_args()
    labels = args.methods.split(",")
    options = method_options.parse_sets(args.set, labels)
    data = synthetic_batch(args.batch, args.history, np.random.default_rng(0))
    batch = {k: tf.constant(v) for k, v in data.items()}
    protocol.seed_everything(0)
    base = backbones.build(args.backbone, feature_config(args.history), BEAUTY_VOCAB)
    protocol.ensure_built(base, data)

    def bce(batch):
        return protocol.bce_from_logits(batch[features.LABEL], base(batch, training=True))

    median, best = timed_step(bce, base.trainable_variables, batch, args.steps)
    print(f"{args.backbone} alone: {median:.1f} ms/step (median of {args.steps}, min {best:.1f}),"
          f" batch {args.batch}, history {args.history}")
    for label in labels:
        method = methods.build(label, seed=0, **options.get(label, {}))
        _, variables, loss_fn = method.objective(base, data)
        median_m, best_m = timed_step(loss_fn, variables, batch, args.steps)
        print(f"{args.backbone} + {label}: {median_m:.1f} ms/step (min {best_m:.1f}), "
              f"x{median_m / median:.2f}")


if __name__ == "__main__":
    main()
