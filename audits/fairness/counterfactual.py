"""Counterfactual flip rate: change only a sensitive input, does the decision change?

For every sensitive attribute that is a categorical model input, each audited row is
re-encoded with the attribute set to every other level (the one-hot block is rewritten,
nothing else moves) and the variants go through the model in large batches. The original
decision comes from the audit's shared forward pass. A model that ignores the attribute
flips exactly 0 decisions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import numpy as np
import pandas as pd

from audits.fairness.group_metrics import resolve_positive_class
from audits.probes import Probe, RunContext, register
from audits.results.fairness import CounterfactualFlipResult as CounterfactualFlipResult
from audits.stats import wilson_interval as wilson_interval
from models.card import CategoricalFeature

if TYPE_CHECKING:
    from audits.data import AuditData
    from models.loader import ModelHandle


def _score(proba: np.ndarray, pos: int | None, pred: np.ndarray) -> np.ndarray:
    """The favourable class's probability (binary), else that of the originally predicted class."""
    return proba[:, pos] if pos is not None else proba[np.arange(len(pred)), pred]


def _sensitive_inputs(model: ModelHandle, data: AuditData) -> tuple[list[str], list[str]]:
    """Sensitive attributes that are categorical model inputs, and those that are not inputs."""
    if model.encoder is None:
        return [], list(data.sensitive)
    kinds = {f.name: f for f in model.encoder.spec.features}
    inputs = [a for a in data.sensitive if isinstance(kinds.get(a), CategoricalFeature)]
    return inputs, [a for a in data.sensitive if a not in kinds]


@register
class CounterfactualFlips(Probe):
    """Counterfactual flip rate for sensitive categorical inputs (tabular).

    Parameters
    ----------
    max_rows : int or None
        Audit a seeded random subset of this many rows (None: every row).
    ci : float
        Coverage of the Wilson intervals.
    positive_class : int, str or None
        The favourable class, for the direction of flips (None: class 1 of a binary model).
    """

    name: ClassVar[str] = "counterfactual_flips"
    result_type: ClassVar = CounterfactualFlipResult
    category: ClassVar = "fairness"
    modalities: ClassVar = ("tabular",)
    default_for: ClassVar = ("tabular",)
    title: ClassVar[str] = "Counterfactual flip rate"
    description: ClassVar[str] = (
        "Sets a sensitive input (such as sex) to each of its other values, leaving every other feature as it is, "
        "and measures how often the model's decision changes, overall and per group. A model that ignores the "
        "attribute scores exactly 0; proxies of the attribute are covered by proxy_features."
    )

    def __init__(self, *, max_rows: int | None = 20_000, ci: float = 0.95, positive_class: int | str | None = None) -> None:
        if max_rows is not None and max_rows < 1:
            raise ValueError(f"max_rows must be at least 1 or None, got {max_rows}")
        if not 0.0 < ci < 1.0:
            raise ValueError(f"ci must be in (0, 1), got {ci}")
        self.max_rows = max_rows
        self.ci = ci
        self.positive_class = positive_class

    def check(self, model: ModelHandle, data: AuditData) -> str | None:
        reason = super().check(model, data)
        if reason is None and not data.sensitive:
            reason = "the data declares no sensitive attributes"
        if reason is None and not _sensitive_inputs(model, data)[0]:
            reason = f"no sensitive attribute ({', '.join(data.sensitive)}) is a categorical model input; see proxy_features"
        return reason

    def _run(self, model: ModelHandle, data: AuditData, context: RunContext) -> CounterfactualFlipResult:
        inputs, not_inputs = _sensitive_inputs(model, data)
        pos = resolve_positive_class(self.positive_class, data.class_names, data.favourable_class)
        rows = np.arange(len(data))
        if self.max_rows is not None and self.max_rows < len(rows):
            rows = np.sort(context.rng(self.name).choice(len(rows), size=self.max_rows, replace=False))
        proba0 = context.proba[rows]
        pred0 = proba0.argmax(axis=1)
        specs = {f.name: f for f in model.encoder.spec.features}
        summary, by_group, pairs, notes = [], [], [], []
        for k, attr in enumerate(inputs):
            context.report(k / len(inputs), attr)
            levels = specs[attr].levels
            cols = data.feature_groups[data.feature_names.index(attr)]
            code = pd.Categorical(data.raw[attr].iloc[rows].astype("string"), categories=levels).codes
            known = code >= 0
            if not known.all():
                notes.append(f"{attr}: {int((~known).sum())} row(s) with a missing or undeclared value are left out.")
            r, code, p0, y0 = rows[known], code[known], proba0[known], pred0[known]
            own = np.asarray(levels, dtype=object)[code]
            other = np.arange(len(levels))[:, None] != code[None, :]  # (L, n): the variant changes the row's value
            flipped = np.zeros((len(levels), len(r)), dtype=bool)
            delta = np.zeros((len(levels), len(r)))
            pred_cf = np.zeros((len(levels), len(r)), dtype=np.int64)
            feature = data.feature_names.index(attr)
            for j in range(len(levels)):
                x = data.x[r].copy()
                x[:, cols] = model.encoder.level_vector(feature, j)  # the group switched; a reference level is all zeros
                proba = model.predict_proba(x)  # all rows of this variant, batched on the model's device
                pred_cf[j] = proba.argmax(axis=1)
                flipped[j] = (pred_cf[j] != y0) & other[j]
                delta[j] = _score(proba, pos, y0) - _score(p0, pos, y0)
            any_flip = flipped.any(axis=0)
            abs_change = np.where(other, np.abs(delta), 0.0).max(axis=0)
            summary.append(self._rate_row({"attribute": attr}, any_flip, abs_change))
            for g in sorted(set(own)):
                mask = own == g
                by_group.append(self._rate_row({"attribute": attr, "group": g}, any_flip[mask], abs_change[mask]))
                for j, level in enumerate(levels):
                    if level == g:
                        continue
                    row = self._rate_row({"attribute": attr, "group": g, "counterfactual": level}, flipped[j, mask], np.abs(delta[j, mask]))
                    row["mean_score_change"] = float(delta[j, mask].mean())
                    if pos is not None:
                        row["to_favourable"] = int((flipped[j, mask] & (pred_cf[j, mask] == pos)).sum())
                        row["to_unfavourable"] = int((flipped[j, mask] & (pred_cf[j, mask] != pos)).sum())
                    pairs.append(row)
        if not_inputs:
            notes.append(f"{', '.join(not_inputs)} not model inputs: no direct counterfactual; see proxy_features for features that stand in for them.")
        return CounterfactualFlipResult(
            method=self.name, params=self.params, seed=context.seed,
            attributes=inputs, not_inputs=not_inputs,
            positive_class=None if pos is None else data.class_names[pos],
            summary=pd.DataFrame(summary), by_group=pd.DataFrame(by_group), pairs=pd.DataFrame(pairs),
            n_rows=int(len(rows)), ci=self.ci, notes=notes,
        )  # fmt: skip

    def _rate_row(self, keys: dict, flips: np.ndarray, abs_change: np.ndarray) -> dict:
        n, k = len(flips), int(flips.sum())
        lo, hi = wilson_interval(k, n, self.ci)
        return {
            **keys, "n": n, "flips": k, "flip_rate": k / n if n else float("nan"), "lo": float(lo), "hi": float(hi),
            "mean_abs_score_change": float(abs_change.mean()) if n else float("nan"),
        }  # fmt: skip
