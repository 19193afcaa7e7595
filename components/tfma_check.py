"""TFMA view of the warm-up predictions: the Evaluator's config, and reading its AUC back.

The Evaluator runs model-agnostic on the predictions written by WarmupEvaluate (label_key
`label`, prediction_key `prediction`), sliced by method x phase and method x seed x phase.
TFMA's AUC is the thresholded approximation (10,000 thresholds), so it agrees with the exact
AUC to about 1e-4; ReportGen records the largest difference.
"""
from typing import Dict, Tuple

import tensorflow_model_analysis as tfma

SLICES = (("method", "phase"), ("method", "seed", "phase"))
PER_SEED = SLICES[1:]


def eval_config(seeds: int = 2) -> tfma.EvalConfig:
    """`seeds`: how many seeds' predictions the Evaluator reads. With one, the method x phase
    slice holds the same rows as method x seed x phase, so only the latter is computed (half
    the slices) and `compare` reads the pooled AUC from it."""
    slices = PER_SEED if seeds == 1 else SLICES
    return tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(label_key="label", prediction_key="prediction")],
        metrics_specs=[tfma.MetricsSpec(metrics=[
            tfma.MetricConfig(class_name="AUC", config='{"num_thresholds": 10000}'),
            tfma.MetricConfig(class_name="ExampleCount")])],
        slicing_specs=[tfma.SlicingSpec(feature_keys=list(keys)) for keys in slices],
    )


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def read_auc(evaluation_uri: str) -> Dict[Tuple[str, ...], float]:
    """{(method, phase) or (method, seed, phase): TFMA AUC} from an Evaluator output."""
    result = tfma.load_eval_result(evaluation_uri)
    out = {}
    for slice_key, values in result.slicing_metrics:
        named = {name: _text(value) for name, value in slice_key}
        keys = tuple(named[k] for k in ("method", "seed", "phase") if k in named)
        metrics = values[""][""]
        if "auc" in metrics:
            out[keys] = float(metrics["auc"]["doubleValue"])
    return out


def compare(tfma_auc: Dict[Tuple[str, ...], float], per_seed: Dict[str, dict]) -> dict:
    """Largest |TFMA AUC - our AUC| over the (method, seed, phase) TFMA saw, the seeds it saw,
    and TFMA's per-phase AUC pooled over those seeds."""
    diffs = [abs(tfma_auc[(method, seed, phase)] - values["auc"])
             for method, seeds in per_seed.items() for seed, phases in seeds.items()
             for phase, values in phases.items() if (method, seed, phase) in tfma_auc]
    if not diffs:
        raise ValueError("the TFMA evaluation has no (method, seed, phase) slice of this run")
    seeds = sorted({key[1] for key in tfma_auc if len(key) == 3})
    pooled = {key: auc for key, auc in tfma_auc.items() if len(key) == 2}
    if not pooled and len(seeds) == 1:  # one seed: its slices are the pooled ones (eval_config)
        pooled = {(m, phase): auc for (m, _, phase), auc in tfma_auc.items()}
    by_phase = {method: {phase: auc for (m, phase), auc in pooled.items() if m == method}
                for method in per_seed}
    return {"max_abs_auc_diff": max(diffs), "seeds": seeds, "pooled_auc": by_phase}
