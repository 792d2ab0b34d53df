"""ROC and precision-recall curves of one class's score, overall and per group, and the
confusion counts at a chosen decision threshold.

Pure numpy (torch-free): the dashboard's Inspect page draws them with a threshold slider.
A curve is exact: one point per distinct score (ties move together), from the strictest
threshold (nothing predicted positive) to the most lenient (everything positive).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ThresholdCurve:
    """One group's curves: thresholds (descending) and, at each, the rates of ``score >= threshold``."""

    group: str
    n: int
    n_positive: int
    thresholds: np.ndarray
    tpr: np.ndarray
    fpr: np.ndarray
    precision: np.ndarray
    auc: float

    def at(self, threshold: float) -> dict[str, float]:
        """TPR, FPR, precision and the share predicted positive at ``score >= threshold``."""
        k = int(np.searchsorted(-self.thresholds, -threshold, side="right")) - 1  # last point with thresholds >= threshold
        if k < 0:
            return {"tpr": 0.0, "fpr": 0.0, "precision": float("nan"), "selection_rate": 0.0}
        n_neg = self.n - self.n_positive
        tp = self.tpr[k] * self.n_positive
        fp = self.fpr[k] * n_neg
        return {
            "tpr": float(self.tpr[k]),
            "fpr": float(self.fpr[k]),
            "precision": float(self.precision[k]),
            "selection_rate": float((tp + fp) / max(self.n, 1)),
        }


def curve(scores: np.ndarray, positive: np.ndarray, group: str = "all") -> ThresholdCurve:
    """ROC and precision-recall points of ``scores`` (higher: positive) against boolean ``positive``."""
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    order = np.argsort(-scores, kind="mergesort")
    s, p = scores[order], positive[order]
    tp = np.cumsum(p)
    fp = np.cumsum(~p)
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1] if len(s) else np.zeros(0, dtype=int)  # the last row of each run of equal scores
    n_pos, n_neg = int(p.sum()), int((~p).sum())
    tp, fp, thresholds = tp[last], fp[last], s[last]
    tpr = tp / n_pos if n_pos else np.zeros(len(tp))
    fpr = fp / n_neg if n_neg else np.zeros(len(fp))
    precision = tp / np.maximum(tp + fp, 1)
    auc = float(np.trapezoid(np.r_[0.0, tpr], np.r_[0.0, fpr])) if n_pos and n_neg else float("nan")
    return ThresholdCurve(group=group, n=len(s), n_positive=n_pos, thresholds=thresholds, tpr=tpr, fpr=fpr, precision=precision, auc=auc)


def curves_by_group(scores: np.ndarray, positive: np.ndarray, groups: np.ndarray | None = None, *, min_group_size: int = 1) -> list[ThresholdCurve]:
    """The overall curve, then one per group value (groups under ``min_group_size`` rows are left out)."""
    out = [curve(scores, positive, "all")]
    if groups is None:
        return out
    groups = np.asarray(groups).astype(str)
    for value in sorted(set(groups.tolist())):
        mask = groups == value
        if mask.sum() >= min_group_size:
            out.append(curve(scores[mask], positive[mask], value))
    return out
