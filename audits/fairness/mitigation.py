"""Mitigation preview: the accuracy vs disparity trade-off that per-group thresholds could buy.

A PREVIEW only: the audited model is not changed, and nothing here is applied to it. The
evaluation rows are split in two (seeded, stratified by group and label); thresholds are
chosen on one half and judged on the other, so the curve shows what would generalize.
Two post-processors, both using the scores of the audit's shared forward pass (no model
calls): fairlearn's ``ThresholdOptimizer`` (Hardt et al., 2016), for demographic parity at
several tolerances and for equalized odds; and a plain per-group threshold sweep that
moves each group's selection rate from its current value towards the common rate in
steps (deterministic thresholds a team could deploy as they are).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import numpy as np
import pandas as pd

from audits.fairness.group_metrics import resolve_positive_class, sensitive_frame
from audits.probes import Probe, RunContext, register
from audits.results.fairness import PREVIEW_LABEL as PREVIEW_LABEL
from audits.results.fairness import MitigationPreviewResult as MitigationPreviewResult

if TYPE_CHECKING:
    from audits.data import AuditData
    from models.loader import ModelHandle


def _scores_estimator():
    """A fitted sklearn estimator that hands precomputed favourable-class scores to fairlearn (X's single
    column is the score). Built on first use: fairlearn and scikit-learn are imported only by an audit that
    runs this probe (image and text audits never do), not by the probe registry."""
    from sklearn.base import BaseEstimator, ClassifierMixin

    class _Scores(ClassifierMixin, BaseEstimator):
        def fit(self, x, y):
            return self

        def predict_proba(self, x) -> np.ndarray:
            s = np.asarray(x, dtype=np.float64)[:, 0]
            return np.column_stack([1.0 - s, s])

        def predict(self, x) -> np.ndarray:
            return (np.asarray(x, dtype=np.float64)[:, 0] > 0.5).astype(np.int64)

        def __sklearn_is_fitted__(self) -> bool:
            return True

    return _Scores()


def evaluate(y: np.ndarray, pred: np.ndarray, group: np.ndarray, n_groups: int) -> dict:
    """Accuracy, selection rate and fairlearn's DP and equalized-odds differences (pred may be (A, n))."""
    y, group = np.asarray(y), np.asarray(group)
    pred = np.atleast_2d(pred).astype(np.float64)
    onehot = np.eye(n_groups)[group]  # (n, G)
    count = onehot.sum(axis=0)
    pos, neg = onehot[y == 1].sum(axis=0), onehot[y == 0].sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        sr = pred @ onehot / count
        tpr = (pred * (y == 1)) @ onehot / pos
        fpr = (pred * (y == 0)) @ onehot / neg

    def spread(v: np.ndarray) -> np.ndarray:
        return np.nanmax(v, axis=1) - np.nanmin(v, axis=1)

    return {
        "accuracy": (pred == y).mean(axis=1),
        "selection_rate": pred.mean(axis=1),
        "dp_difference": spread(sr),
        "eo_difference": np.maximum(spread(np.nan_to_num(tpr)), spread(np.nan_to_num(fpr))),
    }


def _pareto(acc: np.ndarray, dp: np.ndarray) -> np.ndarray:
    """Rows not dominated by another (at least as accurate and as fair, strictly better in one)."""
    better_or_equal = (acc[None, :] >= acc[:, None]) & (dp[None, :] <= dp[:, None])
    strictly = (acc[None, :] > acc[:, None]) | (dp[None, :] < dp[:, None])
    return ~(better_or_equal & strictly).any(axis=1)


@register
class MitigationPreview(Probe):
    """Preview of per-group threshold post-processing on a held-out split (binary models).

    Parameters
    ----------
    attributes : list of str or None
        Sensitive attributes to preview (None: each one).
    fit_fraction : float
        Share of the rows the thresholds are chosen on; the rest judges them.
    tolerances : list of float
        Demographic-parity tolerances for fairlearn's ThresholdOptimizer (0 = exact parity).
    steps : int
        Points of the per-group threshold sweep.
    positive_class : int, str or None
        The favourable class (None: class 1).
    """

    name: ClassVar[str] = "mitigation_preview"
    result_type: ClassVar = MitigationPreviewResult
    category: ClassVar = "fairness"
    needs_model: ClassVar[bool] = False  # reads the shared pass (or the data) only
    modalities: ClassVar = ("tabular",)
    default_for: ClassVar = ("tabular",)
    title: ClassVar[str] = "Mitigation preview (model unchanged)"
    description: ClassVar[str] = (
        "A preview, not a change to the model: how much disparity per-group decision thresholds could remove and "
        "what accuracy that would cost, measured on a held-out half of the data, with fairlearn's ThresholdOptimizer "
        "and a plain per-group threshold sweep."
    )

    def __init__(
        self,
        *,
        attributes: list[str] | None = None,
        fit_fraction: float = 0.5,
        tolerances: list[float] | None = None,
        steps: int = 11,
        positive_class: int | str | None = None,
    ) -> None:
        if not 0.1 <= fit_fraction <= 0.9:
            raise ValueError(f"fit_fraction must be in [0.1, 0.9], got {fit_fraction}")
        if steps < 2:
            raise ValueError(f"steps must be at least 2, got {steps}")
        if tolerances is not None and any(not 0.0 <= t <= 1.0 for t in tolerances):
            raise ValueError(f"tolerances must lie in [0, 1], got {tolerances}")
        self.attributes = attributes
        self.fit_fraction = fit_fraction
        self.tolerances = [0.0, 0.02, 0.05, 0.1] if tolerances is None else list(tolerances)
        self.steps = steps
        self.positive_class = positive_class

    def check(self, model: ModelHandle, data: AuditData) -> str | None:
        reason = super().check(model, data)
        if reason is None and not data.sensitive:
            reason = "the data declares no sensitive attributes"
        if reason is None and model.n_classes != 2 and self.positive_class is None and data.favourable_class is None:
            reason = f"threshold post-processing needs a binary decision; this model has {model.n_classes} classes (declare favourable_class in the card, or set positive_class, to preview one class one-vs-rest)"
        if reason is None and self.attributes:
            unknown = [a for a in self.attributes if a not in data.sensitive]
            if unknown:
                reason = f"attributes {unknown} are not sensitive attributes of the data ({data.sensitive})"
        return reason

    def _run(self, model: ModelHandle, data: AuditData, context: RunContext) -> MitigationPreviewResult:
        from fairlearn.postprocessing import ThresholdOptimizer
        from sklearn.model_selection import train_test_split

        pos = resolve_positive_class(self.positive_class, data.class_names, data.favourable_class)
        attributes = list(self.attributes or data.sensitive)
        frame = sensitive_frame(data, attributes, "group")
        y = (data.y == pos).astype(np.int64)
        score = context.proba[:, pos].astype(np.float64)
        # fairlearn walks every distinct score per group in Python; on a 1e-3 grid that is at most
        # 1001 points a group (instead of one per row) and the thresholds move by < 0.001.
        coarse = np.round(score, 3)
        decision = (context.predictions == pos).astype(np.int64)
        rng = context.rng(self.name)
        rows, notes = [], [PREVIEW_LABEL + ": thresholds are chosen on one part of the evaluation data and judged on the other."]
        n_fit = n_test = 0
        for k, attr in enumerate(attributes):
            context.report(k / len(attributes), attr)
            labels, group = np.unique(frame[attr].to_numpy(), return_inverse=True)
            strata = group * 2 + y
            counts = np.bincount(strata)
            fit, test = train_test_split(
                np.arange(len(y)), train_size=self.fit_fraction, random_state=int(rng.integers(2**31 - 1)),
                stratify=strata if counts[counts > 0].min() >= 2 else None,
            )  # fmt: skip
            n_fit, n_test = len(fit), len(test)
            g = len(labels)
            base = evaluate(y[test], decision[test], group[test], g)
            rows.append(_row(attr, "unmitigated", "none", 0.0, base, 0, ""))
            sweep, thresholds = self._sweep(score, decision, group, g, fit, test)
            ev = evaluate(y[test], sweep, group[test], g)
            for a, alpha in enumerate(np.linspace(0.0, 1.0, self.steps)):
                desc = ", ".join(f"{lab}: {t:.3f}" for lab, t in zip(labels, thresholds[a], strict=True))
                rows.append(_row(attr, "group_thresholds", "demographic_parity", float(alpha), ev, a, desc))
            for constraint, tol in [("demographic_parity", t) for t in self.tolerances] + [("equalized_odds", None)]:
                optimizer = ThresholdOptimizer(
                    estimator=_scores_estimator(), constraints=constraint, objective="accuracy_score", prefit=True,
                    predict_method="predict_proba", tol=tol or None,
                )  # fmt: skip
                try:
                    optimizer.fit(coarse[fit, None], y[fit], sensitive_features=labels[group[fit]])
                except ValueError as exc:  # e.g. a group with a single label in the fit split
                    notes.append(f"{attr}: ThresholdOptimizer({constraint}, tol={tol}) could not be fitted: {exc}")
                    continue
                pred = optimizer.predict(coarse[test, None], sensitive_features=labels[group[test]], random_state=int(rng.integers(2**31 - 1)))
                rows.append(
                    _row(attr, "threshold_optimizer", constraint, float(tol or 0.0), evaluate(y[test], pred, group[test], g), 0, "randomized (fairlearn)")
                )
        curve = pd.DataFrame(rows)
        curve["pareto"] = False
        for attr in attributes:
            mask = (curve["attribute"] == attr).to_numpy()
            curve.loc[mask, "pareto"] = _pareto(curve.loc[mask, "accuracy"].to_numpy(), curve.loc[mask, "dp_difference"].to_numpy())
        return MitigationPreviewResult(
            method=self.name, params=self.params, seed=context.seed, preview=True, label=PREVIEW_LABEL,
            positive_class=data.class_names[pos], attributes=attributes, curve=curve, n_fit=n_fit, n_test=n_test, notes=notes,
        )  # fmt: skip

    def _sweep(self, score, decision, group, n_groups, fit, test) -> tuple[np.ndarray, np.ndarray]:
        """Per-group thresholds moving each group's fit-split selection rate towards the common rate.

        Returns the (steps, n_test) held-out decisions and the (steps, G) thresholds.
        """
        alphas = np.linspace(0.0, 1.0, self.steps)[:, None]
        current = np.array([decision[fit][group[fit] == j].mean() if (group[fit] == j).any() else np.nan for j in range(n_groups)])
        target = (1 - alphas) * current[None, :] + alphas * decision[fit].mean()  # (steps, G)
        thresholds = np.full(target.shape, np.inf)
        for j in range(n_groups):  # per group, all steps at once
            s = score[fit][group[fit] == j]
            if len(s):
                thresholds[:, j] = np.quantile(s, np.clip(1.0 - target[:, j], 0.0, 1.0), method="higher")
        pred = score[test][None, :] > thresholds[:, group[test]] - 1e-12
        return pred.astype(np.int64), thresholds


def _row(attr: str, method: str, constraint: str, setting: float, ev: dict, i: int, thresholds: str) -> dict:
    return {
        "attribute": attr, "method": method, "constraint": constraint, "setting": setting,
        "accuracy": float(ev["accuracy"][i]), "selection_rate": float(ev["selection_rate"][i]),
        "dp_difference": float(ev["dp_difference"][i]), "eo_difference": float(ev["eo_difference"][i]), "thresholds": thresholds,
    }  # fmt: skip
