"""Clean performance from the audit's shared forward pass: accuracy, per-class metrics, calibration."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from audits.results.performance import PerformanceResult as PerformanceResult


def reliability_table(confidence: np.ndarray, correct: np.ndarray, n_bins: int = 10) -> tuple[pd.DataFrame, float]:
    """Equal-width confidence bins and the expected calibration error."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    conf_sum = np.bincount(bins, weights=confidence, minlength=n_bins)
    acc_sum = np.bincount(bins, weights=correct.astype(float), minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.where(count > 0, conf_sum / count, np.nan)
        mean_acc = np.where(count > 0, acc_sum / count, np.nan)
    ece = float(np.nansum(count * np.abs(mean_acc - mean_conf)) / max(len(confidence), 1))
    table = pd.DataFrame({"bin_low": edges[:-1], "bin_high": edges[1:], "count": count, "confidence": mean_conf, "accuracy": mean_acc})
    return table, ece


def nonfinite_rows(proba: np.ndarray) -> np.ndarray:
    """Indices of the rows whose model outputs hold NaN or infinity."""
    return np.flatnonzero(~np.isfinite(proba).all(axis=1))


def per_class_table(confusion: np.ndarray, class_names) -> pd.DataFrame:
    """Precision, recall, F1 and support per class from a confusion matrix (rows true, columns predicted)."""
    support = confusion.sum(axis=1)
    predicted = confusion.sum(axis=0)
    tp = np.diag(confusion).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(predicted > 0, tp / predicted, np.nan)
        recall = np.where(support > 0, tp / support, np.nan)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), np.nan)
    return pd.DataFrame({"class": list(class_names), "precision": precision, "recall": recall, "f1": f1, "support": support})


def evaluate_performance(proba: np.ndarray, y: np.ndarray, class_names: list[str], n_bins: int = 10) -> PerformanceResult:
    """Clean performance of the shared forward pass.

    Rows with non-finite outputs cannot be scored (``argmax`` of NaN is class 0, and NaN
    confidences vanish from the calibration bins, which once turned a broken model into
    accuracy 0.105 and ECE 0): when any exist, the headline figures are NaN (invalid), the
    per-class metrics, confusion matrix and reliability bins cover the finite rows only,
    and ``nonfinite_rows`` counts them.
    """
    bad = nonfinite_rows(proba)
    if len(bad):
        keep = np.setdiff1d(np.arange(len(y)), bad)
        finite = evaluate_performance(proba[keep], y[keep], class_names, n_bins)
        nan = float("nan")
        return replace(finite, n=int(len(y)), accuracy=nan, balanced_accuracy=nan, ece=nan, mean_confidence=nan, nonfinite_rows=int(len(bad)))
    k = len(class_names)
    pred = proba.argmax(axis=1)
    confusion = np.bincount(y * k + pred, minlength=k * k).reshape(k, k)
    per_class = per_class_table(confusion, class_names)
    recall = per_class["recall"].to_numpy()
    confidence = proba.max(axis=1)
    correct = pred == y
    reliability, ece = reliability_table(confidence, correct, n_bins)
    return PerformanceResult(
        n=int(len(y)),
        accuracy=float(correct.mean()) if len(y) else float("nan"),
        balanced_accuracy=float(np.nanmean(recall)) if np.isfinite(recall).any() else float("nan"),
        per_class=per_class,
        confusion=confusion,
        ece=ece,
        reliability=reliability,
        mean_confidence=float(confidence.mean()) if len(y) else float("nan"),
    )
