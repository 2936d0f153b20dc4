"""Threshold-free detection metrics: AUROC, EER, AUPRC and AP, with the anomalous class as positive."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

from detect.errors import DetectInputError

METRIC_NAMES = ("auroc", "eer", "auprc", "ap")


def check_binary_labels(labels: np.ndarray, scores: np.ndarray) -> None:
    """Raise DetectInputError unless labels are 0/1, match the scores in length and contain both classes."""
    if labels.shape != scores.shape or labels.ndim != 1:
        raise DetectInputError(f"labels {labels.shape} and scores {scores.shape} must be 1-D of equal length")
    if not np.isin(labels, (0, 1)).all():
        raise DetectInputError("labels must be 0 (normal) or 1 (anomalous)")
    if labels.min() == labels.max():
        raise DetectInputError(
            f"all {labels.size} labels are {int(labels[0])}; "
            "these metrics need both normal and anomalous items"
        )
    if not np.isfinite(scores).all():
        raise DetectInputError("scores contain NaN or infinity")


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Return the AUROC: the probability that an anomalous item outscores a normal one (a tie counts 1/2)."""
    labels, scores = np.asarray(labels), np.asarray(scores, dtype=np.float64)
    check_binary_labels(labels, scores)
    return float(roc_auc_score(labels, scores))


def equal_error_rate(labels: np.ndarray, scores: np.ndarray) -> float:
    """Return the equal error rate, the error where the false positive rate equals the false negative rate.

    The ROC curve is taken with every threshold, and the crossing of FPR and FNR = 1 - TPR is linearly
    interpolated between the two ROC points around it, so the value does not jump between thresholds.
    """
    labels, scores = np.asarray(labels), np.asarray(scores, dtype=np.float64)
    check_binary_labels(labels, scores)
    false_positive_rate, true_positive_rate, _ = roc_curve(labels, scores, drop_intermediate=False)
    false_negative_rate = 1.0 - true_positive_rate

    # The gap FNR - FPR starts at 1 (threshold above every score) and ends at -1, so it crosses zero.
    gap = false_negative_rate - false_positive_rate
    crossing = int(np.flatnonzero(gap <= 0)[0])
    if gap[crossing] == 0:
        return float(false_positive_rate[crossing])
    before = crossing - 1
    fraction = gap[before] / (gap[before] - gap[crossing])
    return float(
        false_positive_rate[before] + fraction * (false_positive_rate[crossing] - false_positive_rate[before])
    )


def auprc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Return the area under the precision-recall curve by the trapezoidal rule (scikit-learn's `auc`)."""
    labels, scores = np.asarray(labels), np.asarray(scores, dtype=np.float64)
    check_binary_labels(labels, scores)
    precision, recall, _ = precision_recall_curve(labels, scores)
    return float(auc(recall, precision))


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    """Return scikit-learn's average precision: precision summed over recall steps, without interpolation."""
    labels, scores = np.asarray(labels), np.asarray(scores, dtype=np.float64)
    check_binary_labels(labels, scores)
    return float(average_precision_score(labels, scores))


def compute_metrics(labels: np.ndarray, scores: np.ndarray) -> dict[str, Any]:
    """Return every metric plus the item counts, as JSON values."""
    labels = np.asarray(labels).astype(np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    check_binary_labels(labels, scores)
    return {
        "auroc": auroc(labels, scores),
        "eer": equal_error_rate(labels, scores),
        "auprc": auprc(labels, scores),
        "ap": average_precision(labels, scores),
        "items": int(labels.size),
        "anomalous": int(labels.sum()),
    }
