"""Threshold sweep per group: selection rate, TPR, FPR and precision as the decision threshold moves.

The score is the favourable class's: a predictions card's raw score column (in its own units,
against the card's threshold), else the model's probability of the favourable class (threshold
0.5). A row is decided favourable when its score is at least the threshold. With
``selection_rate`` set, the probe also reports the decisions at the threshold that selects that
share of all rows (the k-th highest score, k = ceil(rate x n)), per group.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import pandas as pd

from audits.fairness.group_metrics import favourable_outcome, sensitive_frame
from audits.probes import Probe, RunContext, register
from audits.results.fairness import INSUFFICIENT
from audits.results.fairness import ThresholdSweepResult as ThresholdSweepResult

if TYPE_CHECKING:
    from audits.data import AuditData
    from models.loader import ModelHandle

OVERALL = "(all rows)"


def rates_at(scores: np.ndarray, label: np.ndarray, thresholds: np.ndarray) -> dict[str, np.ndarray]:
    """Selection rate, TPR, FPR and precision at each threshold (score >= threshold is favourable); NaN where undefined."""
    decided = scores[None, :] >= thresholds[:, None]  # (T, N)
    pos, neg = label.astype(bool), ~label.astype(bool)
    tp, fp = decided[:, pos].sum(axis=1).astype(np.float64), decided[:, neg].sum(axis=1).astype(np.float64)
    n_pos, n_neg, n = float(pos.sum()), float(neg.sum()), float(len(scores))
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "selection_rate": (tp + fp) / n if n else np.full(len(thresholds), np.nan),
            "tpr": tp / n_pos if n_pos else np.full(len(thresholds), np.nan),
            "fpr": fp / n_neg if n_neg else np.full(len(thresholds), np.nan),
            "precision": np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), np.nan),
        }


@register
class ThresholdSweep(Probe):
    """Per-group selection rate, TPR, FPR and precision against the decision threshold, and decisions at a chosen selection rate.

    Parameters
    ----------
    thresholds : list of float or None
        The thresholds to sweep (None: 0.00, 0.05, ..., 1.00 for probabilities; 21 quantiles of a raw score).
    selection_rate : float or None
        Also report each group's decisions at the threshold that selects this share of all rows.
    min_group_size : int
        Groups with fewer rows are flagged as insufficient data (no curve).
    positive_class : int, str or None
        The favourable class (None: the card's favourable_class, else class 1).
    """

    name: ClassVar[str] = "threshold_sweep"
    result_type: ClassVar = ThresholdSweepResult
    category: ClassVar = "fairness"
    needs_model: ClassVar[bool] = False
    modalities: ClassVar = ("tabular", "text")  # binary decisions; the image zoo's models are multiclass
    default_for: ClassVar = ("tabular",)
    title: ClassVar[str] = "Threshold sweep per group"
    description: ClassVar[str] = (
        "Moves the decision threshold over the favourable-class score and reports, for every group of each sensitive "
        "attribute, the selection rate, true and false positive rates and precision at each threshold, and the "
        "decisions at a chosen overall selection rate."
    )

    def __init__(
        self, *, thresholds: list[float] | None = None, selection_rate: float | None = None, min_group_size: int = 30, positive_class: int | str | None = None
    ) -> None:
        if thresholds is not None and (not len(thresholds) or any(not math.isfinite(float(t)) for t in thresholds)):
            raise ValueError(f"thresholds must be a non-empty list of finite numbers, got {thresholds!r}")
        if selection_rate is not None and not 0.0 < float(selection_rate) <= 1.0:
            raise ValueError(f"selection_rate must be in (0, 1], got {selection_rate}")
        if min_group_size < 1:
            raise ValueError(f"min_group_size must be at least 1, got {min_group_size}")
        self.thresholds = None if thresholds is None else [float(t) for t in thresholds]
        self.selection_rate = None if selection_rate is None else float(selection_rate)
        self.min_group_size = min_group_size
        self.positive_class = positive_class

    def check(self, model: ModelHandle, data: AuditData) -> str | None:
        reason = super().check(model, data)
        if reason is None and not data.sensitive:
            reason = "the data declares no sensitive attributes"
        if reason is None and len(data.class_names) != 2 and self.positive_class is None and data.favourable_class is None:
            reason = "a threshold needs a binary decision: declare favourable_class (or set positive_class) for a multiclass model"
        if reason is None and data.predictions is not None and data.scores is None:
            reason = "the predictions card gives decided labels only (no score_column), so there is no threshold to move"
        return reason

    def _run(self, model: ModelHandle, data: AuditData, context: RunContext) -> ThresholdSweepResult:
        pos, assumed = favourable_outcome(self.positive_class, data)
        if data.scores is not None:
            scores, threshold, source = np.asarray(data.scores, dtype=np.float64), float(data.threshold), "the card's score column"
        else:
            scores, threshold, source = context.proba[:, pos].astype(np.float64), 0.5, f"the model's probability of {data.class_names[pos]!r}"
        label = (data.y == pos).astype(np.int64)
        if self.thresholds is not None:
            grid = np.array(sorted(set(self.thresholds)))
        elif data.scores is not None and (scores.min() < 0 or scores.max() > 1):
            grid = np.unique(np.quantile(scores, np.linspace(0, 1, 21)))
        else:
            grid = np.round(np.linspace(0.0, 1.0, 21), 10)
        grid = np.unique(np.append(grid, threshold))
        notes = [assumed] if assumed else []
        frame = sensitive_frame(data, list(data.sensitive), "group")
        curve = [self._curve(OVERALL, OVERALL, np.ones(len(scores), bool), scores, label, grid)]
        at_rate, cutoff = [], None
        if self.selection_rate is not None:
            k = max(1, math.ceil(self.selection_rate * len(scores)))
            cutoff = float(np.sort(scores)[::-1][k - 1])
            notes.append(
                f"At selection rate {self.selection_rate:g}: threshold {cutoff:.6g} (the {k}-th highest score) selects {float((scores >= cutoff).mean()):.4f} of all rows (ties share the cut)."
            )
        for attr in data.sensitive:
            values = frame[attr].to_numpy()
            small = []
            for g in sorted(set(values)):
                mask = values == g
                if mask.sum() < self.min_group_size:
                    small.append(f"{g} (n={int(mask.sum())})")
                    curve.append(pd.DataFrame([{"attribute": attr, "group": g, "n": int(mask.sum()), "status": INSUFFICIENT}]))
                    if cutoff is not None:
                        at_rate.append({"attribute": attr, "group": g, "n": int(mask.sum()), "status": INSUFFICIENT, "threshold": cutoff})
                    continue
                curve.append(self._curve(attr, g, mask, scores, label, grid))
                if cutoff is not None:
                    r = rates_at(scores[mask], label[mask], np.array([cutoff]))
                    at_rate.append(
                        {"attribute": attr, "group": g, "n": int(mask.sum()), "status": "ok", "threshold": cutoff, **{m: float(v[0]) for m, v in r.items()}}
                    )
            if small:
                notes.append(f"{attr}: insufficient data (< {self.min_group_size} rows) for {', '.join(small)}; no curve.")
        columns = ["attribute", "group", "n", "status", "threshold", "selection_rate", "tpr", "fpr", "precision"]
        return ThresholdSweepResult(
            method=self.name, params=self.params, seed=context.seed,
            positive_class=data.class_names[pos], score_source=source, threshold=threshold, selection_rate=self.selection_rate, cutoff=cutoff,
            curve=pd.concat(curve, ignore_index=True).reindex(columns=columns),
            at_rate=pd.DataFrame(at_rate).reindex(columns=columns), min_group_size=self.min_group_size, notes=notes,
        )  # fmt: skip

    @staticmethod
    def _curve(attr: str, group: str, mask: np.ndarray, scores: np.ndarray, label: np.ndarray, grid: np.ndarray) -> pd.DataFrame:
        r = rates_at(scores[mask], label[mask], grid)
        return pd.DataFrame({"attribute": attr, "group": group, "n": int(mask.sum()), "status": "ok", "threshold": grid, **r})
