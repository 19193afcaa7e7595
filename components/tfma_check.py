"""TFMA view of the warm-up predictions: the Evaluator's config, and reading its AUC back.

The Evaluator runs model-agnostic on the predictions written by WarmupEvaluate (label_key
`label`, prediction_key `prediction`), sliced by method x stage and method x seed x stage (the
stage is the feature `phase`), each also crossed with the protocol's slice features.
TFMA's AUC is the thresholded approximation (10,000 thresholds), so it agrees with the exact
AUC to about 1e-4; ReportGen records the largest difference.
"""
from typing import Dict, Tuple

import tensorflow_model_analysis as tfma

from trainer.protocols import slice_value

BY_SEED = ("method", "seed", "phase")  # phase: the protocol's stage
POOLED = ("method", "phase")


def eval_config(seeds: int = 2, slice_features=()) -> tfma.EvalConfig:
    """`seeds`: how many seeds' predictions the Evaluator reads. With one, the pooled (method x
    stage) slice holds the same rows as method x seed x stage, so only the latter is computed
    (half the slices) and `compare` reads the pooled AUC from it. `slice_features`: the
    protocol's (user_group, domain), each crossed with those slices."""
    keys = [BY_SEED] if seeds == 1 else [POOLED, BY_SEED]
    keys += [(*k, f) for k in list(keys) for f in slice_features if f != "phase"]
    return tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(label_key="label", prediction_key="prediction")],
        # AUC only: nothing reads TFMA's example count, which cost ~10 % of the Evaluator.
        metrics_specs=[tfma.MetricsSpec(metrics=[
            tfma.MetricConfig(class_name="AUC", config='{"num_thresholds": 10000}')])],
        slicing_specs=[tfma.SlicingSpec(feature_keys=list(k)) for k in keys],
    )


def read_auc(evaluation_uri: str) -> Dict[Tuple[str, ...], float]:
    """{(method, [seed,] stage[, slice value]): TFMA AUC} from an Evaluator output."""
    result = tfma.load_eval_result(evaluation_uri)
    out = {}
    for slice_key, values in result.slicing_metrics:
        named = {name: slice_value(value) for name, value in slice_key}
        keys = tuple(named[k] for k in BY_SEED if k in named)
        keys += tuple(value for name, value in named.items() if name not in BY_SEED)
        metrics = values[""][""]
        if "auc" in metrics:
            out[keys] = float(metrics["auc"]["doubleValue"])
    return out


def _report_slices(tfma_auc, protocol, cell) -> Dict[str, float]:
    """TFMA's AUC of one cell (`cell`: (method, seed) or (method,)) as the report names slices."""
    stages: Dict[str, Dict[str, Dict[str, float]]] = {}
    n = len(cell)
    for key, auc in tfma_auc.items():
        pooled_key = n == 1 and not key[1].isdigit()  # (method, stage[, value]), no seed
        if key[:n] == cell and len(key) in (n + 1, n + 2) and (n == 2 or pooled_key):
            value = key[n + 1] if len(key) == n + 2 else "overall"
            stages.setdefault(key[n], {})[value] = {"auc": auc}
    return {k: v["auc"] for k, v in protocol.report_slices(stages).items()}


def compare(tfma_auc: Dict[Tuple[str, ...], float], per_seed: Dict[str, dict], protocol) -> dict:
    """Largest |TFMA AUC - our AUC| over the (method, seed, slice) TFMA saw, the seeds it saw,
    and TFMA's per-slice AUC pooled over those seeds. `protocol`: the run's (trainer/protocols),
    which names the slices as the report does."""
    diffs, seeds = [], set()
    for method, by_seed in per_seed.items():
        for seed, slices in by_seed.items():
            seen = _report_slices(tfma_auc, protocol, (method, seed))
            if seen:
                seeds.add(seed)
            diffs += [abs(auc - slices[name]["auc"]) for name, auc in seen.items()
                      if slices.get(name, {}).get("auc") is not None]
    if not diffs:
        raise ValueError("the TFMA evaluation has no (method, seed, slice) of this run")
    pooled = {}
    for method in per_seed:
        pooled[method] = _report_slices(tfma_auc, protocol, (method,))
        if not pooled[method] and len(seeds) == 1:  # one seed: its slices are the pooled ones
            pooled[method] = _report_slices(tfma_auc, protocol, (method, next(iter(seeds))))
    return {"max_abs_auc_diff": max(diffs), "seeds": sorted(seeds), "pooled_auc": pooled}
