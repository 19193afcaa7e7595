"""Milliseconds per Diff-MSR DDPM training step, per reverse chain and per fine-tuning step (not a
test; spec diff_msr.md 5.4-5.6, 7).

- DDPM step: the 1-D U-Net (dim 16, mults 1, 2, 4, 8) on a batch of pair embeddings [B, 2, 16],
  v-prediction L1 loss, gradients, Adam; `tf.function` and XLA (`jit_compile`).
- Reverse chain: T steps from pure noise (one `tf.while_loop`), `tf.function` and XLA.
- Fine-tuning step: BCE of the cold domain's head of `--backbone` on a mixed batch
  (`--finetune-batch` pair embeddings) and Adam on that domain's variables (generation excluded).
Random inputs; the values do not matter for the timing.

    .venv/bin/python benchmarks/diffmsr_step.py [--batch 512] [--T 500] [--chain-batch 512]
        [--steps 20] [--chains 2] [--backbone fnn_md] [--finetune-batch 3331]
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

from trainer import backbones, diffmsr, features, protocol  # noqa: E402
from trainer.optim import TorchAdam  # noqa: E402

DOUBAN = features.FeatureConfig(
    fields=(features.Field("user_id", "spr"), features.Field("item_id", "spr"),
            features.Field("domain", "spr")), item_side=("item_id", "domain"))
DOUBAN_VOCAB = {"user_id": 2719, "item_id": 21910, "domain": 4}


def timed(fn, repeats, warmup=2):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), min(times)


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--batch", type=int, default=512, help="DDPM training batch")
    p.add_argument("--T", type=int, default=500)
    p.add_argument("--chain-batch", type=int, default=512)
    p.add_argument("--steps", type=int, default=20, help="timed DDPM / fine-tuning steps")
    p.add_argument("--chains", type=int, default=2, help="timed reverse chains")
    p.add_argument("--backbone", default="fnn_md")
    p.add_argument("--finetune-batch", type=int, default=2498 + 833,
                   help="true + generated rows per fine-tuning step (Douban music, 3:1)")
    args = p.parse_args()

    protocol.seed_everything(0)
    schedule = diffmsr.Schedule(diffmsr.make_betas("piecewise" if args.T > 50 else "linear",
                                                   args.T))
    rng = np.random.default_rng(0)
    print(f"Diff-MSR, U-Net dim 16 (1, 2, 4, 8), T {args.T}; {os.cpu_count()} CPU cores, "
          f"TF {tf.__version__}")
    print(f"{'what':<44} {'median ms':>10} {'min ms':>10}")
    z0 = tf.constant(rng.uniform(-0.1, 0.1, [args.batch, 2, 16]), tf.float32)
    t = tf.constant(rng.integers(0, args.T, args.batch), tf.int32)
    eps = tf.constant(rng.standard_normal([args.batch, 2, 16]), tf.float32)
    for xla in (False, True):
        unet = diffmsr.UNet1D()
        diffusion = diffmsr.Diffusion(schedule, diffmsr.unet_net(unet), jit_compile=xla)
        diffusion.loss(z0[:1], t[:1], eps[:1])
        variables = unet.trainable_variables
        optimizer = TorchAdam(variables, 2e-3, weight_decay=0.0)

        def step(diffusion=diffusion, variables=variables, optimizer=optimizer):
            with tf.GradientTape() as tape:
                loss = diffusion.loss(z0, t, eps)
            optimizer.apply_gradients(tape.gradient(loss, variables))
            return loss

        step = tf.function(step, jit_compile=xla)
        median, fastest = timed(lambda step=step: float(step()), args.steps)
        mode = "XLA" if xla else "tf.function"
        print(f"{'DDPM step, batch ' + str(args.batch) + ', ' + mode:<44} {median:>10.1f} "
              f"{fastest:>10.1f}", flush=True)
        median, fastest = timed(lambda d=diffusion: d.generate(args.chain_batch, 0)[0].numpy(),
                                args.chains, warmup=1)
        print(f"{'reverse chain, ' + str(args.T) + ' steps, batch ' + str(args.chain_batch) + ', ' + mode:<44} "
              f"{median:>10.1f} {fastest:>10.1f}", flush=True)

    model = backbones.build(args.backbone, DOUBAN, DOUBAN_VOCAB)
    sample = {"user_id": np.zeros(2, np.int64), "item_id": np.zeros(2, np.int64),
              "domain": np.zeros(2, np.int64)}
    protocol.ensure_built(model, sample)
    model.specialise()
    trainable = [v for v in model.domain_variables(2) if v.trainable]
    optimizer = TorchAdam(trainable, 5e-4, weight_decay=0.0)
    pairs = tf.constant(rng.uniform(-0.1, 0.1, [args.finetune_batch, 2, 16]), tf.float32)
    labels = tf.constant(rng.integers(0, 2, args.finetune_batch))

    @tf.function
    def finetune():
        with tf.GradientTape() as tape:
            loss = protocol.bce_from_logits(labels, model.domain_logit(pairs, 2, training=True))
        optimizer.apply_gradients(tape.gradient(loss, trainable))
        return loss

    median, fastest = timed(lambda: float(finetune()), args.steps)
    print(f"{'fine-tune step, ' + args.backbone + ', batch ' + str(args.finetune_batch):<44} "
          f"{median:>10.1f} {fastest:>10.1f}", flush=True)


if __name__ == "__main__":
    main()
