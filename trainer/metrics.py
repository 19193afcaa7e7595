"""Metrics of the reference protocol (spec 3.3, 3.5)."""
import numpy as np
from sklearn import metrics as skm


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Global ROC AUC over all rows pooled."""
    return float(skm.roc_auc_score(labels, scores))


def f1_at_mean(labels: np.ndarray, scores: np.ndarray) -> float:
    """F1 with the threshold at the mean score, strict `>` (as the reference code)."""
    return float(skm.f1_score(labels, (scores > np.mean(scores)).astype(np.int64)))


def rela_impr(auc_method: float, auc_base: float) -> float:
    """RelaImpr in percent: ((AUC_m - 0.5) / (AUC_base - 0.5) - 1) * 100 (Yan & Li 2014)."""
    return ((auc_method - 0.5) / (auc_base - 0.5) - 1.0) * 100.0
