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


def logit_change(before: np.ndarray, after: np.ndarray) -> dict:
    """How an adaptation moved one domain's logits on the same rows: the least-squares line
    after = slope * before + intercept and the Pearson correlation (None where either side is
    constant). Pearson near 1 means the logits were rescaled and shifted, not re-ranked, so the
    AUC barely moves however far the log-loss does."""
    before, after = np.asarray(before, np.float64), np.asarray(after, np.float64)
    if before.std() == 0.0 or after.std() == 0.0:
        return {"pearson": None, "slope": None, "intercept": None}
    slope, intercept = np.polyfit(before, after, 1)
    return {"pearson": float(np.corrcoef(before, after)[0, 1]), "slope": float(slope),
            "intercept": float(intercept)}
