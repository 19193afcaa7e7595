"""Small, carefully built transformed batches for model tests."""
import itertools

import numpy as np

from trainer import features

VOCAB = {"user_id": 30, "gender": 3, "age": 8, "occupation": 22, "zip_code": 40, "item_id": 50,
         "year": 12, "title": 60, "genres": 20}


def batch(n=64, seed=0, config=features.MOVIELENS):
    """Random ids within VOCAB; label depends on item parity so that a model can learn it."""
    rng = np.random.default_rng(seed)
    out = {}
    for field in config.fields:
        if field.kind == "spr":
            out[field.name] = rng.integers(0, VOCAB[field.name], size=n, dtype=np.int64)
        elif field.kind == "seq":
            ids = rng.integers(1, VOCAB[field.name], size=(n, field.seq_len), dtype=np.int64)
            lengths = rng.integers(1, field.seq_len + 1, size=n)
            ids[np.arange(field.seq_len)[None, :] >= lengths[:, None]] = 0  # right padding
            out[field.name] = ids
        else:
            out[field.name] = rng.random(n, dtype=np.float32)
    out[features.LABEL] = (out["item_id"] % 2).astype(np.int64)
    return out


def cold_start_splits(rows=256, seed=0):
    """base holds items 0..24 (old), warm_a/b/c and test items 25..49 (new)."""
    splits = {}
    for index, name in enumerate(("base", "warm_a", "warm_b", "warm_c", "test")):
        data = batch(rows * (2 if name == "base" else 1), seed=seed + index)
        low, high = (0, 25) if name == "base" else (25, 50)
        data["item_id"] = low + data["item_id"] % (high - low)
        data[features.LABEL] = (data["item_id"] % 2).astype(np.int64)
        splits[name] = data
    return splits


def after_warm(method, model, splits, stage_name, config):
    """`method.after_warm` for the item-phase stage `stage_name` over in-memory `splits`."""
    from trainer.context import ProtocolContext  # pylint: disable=import-outside-toplevel
    context = ProtocolContext.in_memory(splits)
    method.after_warm(model, context.stage(stage_name), context, config)


def pairwise_auc(labels, scores):
    """P(score_pos > score_neg) + 0.5 P(tie), by enumerating every pair."""
    pos = [s for s, y in zip(scores, labels) if y == 1]
    neg = [s for s, y in zip(scores, labels) if y == 0]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))
