"""Milliseconds per CSDM (or CVAR, `--method cvar`) generator training step (not a test).

One step = side information -> h, L_diff (one denoiser pass), the unrolled reverse process
(T/stride denoiser passes), decoder, frozen DeepFM forward, BCE, gradients and a PyTorch-style
Adam update. Batch 2048 with ML-1M vocabulary sizes; the values do not matter for the timing.

    .venv/bin/python benchmarks/csdm_step.py [--batch 2048] [--steps 50] [--method csdm]
        [--set csdm.train_denoiser=false --set csdm.T=100 ...]
"""
import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from trainer import backbones, features, methods, protocol  # noqa: E402
from trainer import options as method_options  # noqa: E402

ML1M_VOCAB = {"user_id": 3001, "gender": 3, "age": 8, "occupation": 22, "zip_code": 2000,
              "item_id": 3616, "year": 82, "title": 4000, "genres": 20}


def synthetic_batch(n, rng):
    out = {}
    for field in features.MOVIELENS.fields:
        if field.kind == "spr":
            out[field.name] = rng.integers(0, ML1M_VOCAB[field.name], n, dtype=np.int64)
        elif field.kind == "seq":
            out[field.name] = rng.integers(0, ML1M_VOCAB[field.name], (n, field.seq_len),
                                           dtype=np.int64)
        else:
            out[field.name] = rng.random(n, dtype=np.float32)
    out[features.LABEL] = rng.integers(0, 2, n, dtype=np.int64)
    return {k: tf.constant(v) for k, v in out.items()}


def time_steps(step, batch, steps, warmup=3):
    for _ in range(warmup):
        step(batch)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        float(step(batch))  # forces the result
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), min(times)


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--batch", type=int, default=2048)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--method", choices=("csdm", "cvar"), default="csdm")
    p.add_argument("--set", action="append", default=[], metavar="METHOD.OPTION=VALUE",
                   help="method option as in `coldstart run` (defaults: the method's)")
    args = p.parse_args()
    try:
        options = method_options.parse_sets(args.set, [args.method]).get(args.method, {})
    except ValueError as err:
        p.error(str(err))

    protocol.seed_everything(0)
    batch = synthetic_batch(args.batch, np.random.default_rng(0))
    backbone = backbones.build("deepfm", features.MOVIELENS, ML1M_VOCAB)
    protocol.ensure_built(backbone, batch)
    config = protocol.TrainConfig()
    print(f"{args.method} generator step, DeepFM, batch {args.batch}, {options}; "
          f"{os.cpu_count()} CPU cores, TF {tf.__version__}")
    print(f"{'mode':<12} {'median ms':>10} {'min ms':>8}")
    for mode in ("eager", "tf.function", "xla"):
        method = methods.build(args.method, seed=0, **options)
        method.build_modules(backbone)
        method.generate(backbone, batch, False)
        variables = method.generator_variables()
        optimizer = protocol.make_optimizer(config, variables)

        def step(b, method=method, variables=variables, optimizer=optimizer):
            with tf.GradientTape() as tape:
                loss = method.generator_loss(backbone, b, True)
            optimizer.apply_gradients(tape.gradient(loss, variables))
            return loss

        if mode != "eager":
            step = tf.function(step, jit_compile=mode == "xla")
        median, fastest = time_steps(step, batch, max(5, args.steps // 5) if mode == "eager"
                                     else args.steps)
        print(f"{mode:<12} {median:>10.1f} {fastest:>8.1f}", flush=True)


if __name__ == "__main__":
    main()
