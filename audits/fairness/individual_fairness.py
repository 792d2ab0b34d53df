"""Individual fairness: consistency (do similar rows get similar decisions?) and the generalized entropy index.

*Consistency* (Zemel et al. 2013, as AIF360's ``consistency_score``): one minus the mean
absolute difference between a row's decision and the mean decision of its ``k`` nearest
neighbours in the model's input space (the encoded, standardised features). 1 means every
row is decided like its neighbours. The row itself is not counted among its neighbours
(AIF360 counts it).

*Generalized entropy index* (Speicher et al. 2018, AIF360's ``generalized_entropy_index``):
each row gets a benefit ``b = decision - label + 1`` (1 for a right decision, 2 for an
undeserved favourable one, 0 for a denied deserved one) and the index measures how unequally
benefits are spread: ``GE(a) = mean((b/mu)^a - 1) / (a (a - 1))``, with the Theil index
``GE(1) = mean(b/mu ln(b/mu))``. 0 means equal benefits for everyone. Per sensitive
attribute it splits exactly into a *between-group* part (the index of the group means: what
the groups' average treatment explains) and a *within-group* part (the rest,
``sum_g n_g/n (mu_g/mu)^a GE_g``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import numpy as np
import pandas as pd

from audits.fairness.group_metrics import favourable_outcome, sensitive_frame
from audits.probes import Probe, RunContext, register
from audits.results.fairness import INSUFFICIENT
from audits.results.fairness import IndividualFairnessResult as IndividualFairnessResult

if TYPE_CHECKING:
    from audits.data import AuditData
    from models.loader import ModelHandle


def generalized_entropy(benefit: np.ndarray, alpha: float) -> float:
    """The generalized entropy index of non-negative benefits (alpha 1: Theil, 0: mean log deviation)."""
    b = np.asarray(benefit, dtype=np.float64)
    mu = b.mean() if len(b) else np.nan
    if not np.isfinite(mu) or mu <= 0:
        return float("nan")
    r = b / mu
    if alpha == 1:
        return float(np.mean(np.where(r > 0, r * np.log(np.where(r > 0, r, 1.0)), 0.0)))
    if alpha == 0:
        return float(-np.mean(np.log(r))) if (r > 0).all() else float("inf")
    return float(np.mean(r**alpha - 1.0) / (alpha * (alpha - 1.0)))


def decompose(benefit: np.ndarray, groups: np.ndarray, alpha: float) -> dict[str, float]:
    """``total``, ``between`` (index of each row's group mean) and ``within`` (sum_g n_g/n (mu_g/mu)^a GE_g)."""
    b = np.asarray(benefit, dtype=np.float64)
    codes, inverse = np.unique(groups, return_inverse=True)
    inverse = inverse.reshape(-1)
    n, mu = len(b), b.mean()
    sizes = np.bincount(inverse, minlength=len(codes))
    means = np.bincount(inverse, weights=b, minlength=len(codes)) / sizes
    within = 0.0
    for g in range(len(codes)):
        if means[g] > 0:
            within += sizes[g] / n * (means[g] / mu) ** alpha * generalized_entropy(b[inverse == g], alpha)
    total, between = generalized_entropy(b, alpha), generalized_entropy(means[inverse], alpha)
    return {"total": total, "between": between, "within": float(within), "between_share": between / total if total > 0 else float("nan")}


def knn_consistency(x: np.ndarray, decision: np.ndarray, k: int) -> np.ndarray:
    """Per row: 1 - |decision - mean decision of its k nearest other rows| (Euclidean, in input space)."""
    from sklearn.neighbors import NearestNeighbors

    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    k = min(k, len(x) - 1)
    if k < 1:
        return np.full(len(x), np.nan)
    _, idx = NearestNeighbors(n_neighbors=k + 1).fit(x).kneighbors(x)
    rows = np.arange(len(x))[:, None]
    # Drop the row itself (the first hit, or wherever a duplicate pushed it); else the farthest hit.
    is_self = idx == rows
    drop = np.where(is_self.any(axis=1), is_self.argmax(axis=1), k)
    keep = np.ones_like(idx, dtype=bool)
    keep[np.arange(len(x)), drop] = False
    neighbours = idx[keep].reshape(len(x), k)
    d = np.asarray(decision, dtype=np.float64)
    return 1.0 - np.abs(d - d[neighbours].mean(axis=1))


@register
class IndividualFairness(Probe):
    """Consistency of decisions among nearest neighbours and the generalized entropy (Theil) index with its between/within-group parts.

    Parameters
    ----------
    k : int
        Neighbours per row for consistency.
    alpha : float
        Order of the generalized entropy index reported next to Theil (alpha = 1). 2 is AIF360's default.
    min_group_size : int
        Groups with fewer rows get no per-group figures (flagged as 'insufficient data').
    max_rows : int or None
        Neighbour search on a seeded random subset of this many rows (None: every row).
    positive_class : int, str or None
        The favourable class (None: the card's favourable_class, else class 1 of a binary model).
    """

    name: ClassVar[str] = "individual_fairness"
    result_type: ClassVar = IndividualFairnessResult
    category: ClassVar = "fairness"
    needs_model: ClassVar[bool] = False  # reads the shared pass (or the data) only
    modalities: ClassVar = ("tabular",)
    default_for: ClassVar = ("tabular",)
    title: ClassVar[str] = "Individual fairness: consistency and inequality of benefits"
    description: ClassVar[str] = (
        "Consistency (1 - how far each row's decision is from those of its k nearest neighbours in the input space) and "
        "the generalized entropy index of per-row benefits (decision - label + 1), with the Theil index split exactly "
        "into a between-group and a within-group part per sensitive attribute."
    )

    def __init__(
        self, *, k: int = 5, alpha: float = 2.0, min_group_size: int = 30, max_rows: int | None = 10_000, positive_class: int | str | None = None
    ) -> None:
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        if alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {alpha}")
        if min_group_size < 1:
            raise ValueError(f"min_group_size must be at least 1, got {min_group_size}")
        if max_rows is not None and max_rows < 2:
            raise ValueError(f"max_rows must be at least 2 or None, got {max_rows}")
        self.k = k
        self.alpha = alpha
        self.min_group_size = min_group_size
        self.max_rows = max_rows
        self.positive_class = positive_class

    def check(self, model: ModelHandle, data: AuditData) -> str | None:
        reason = super().check(model, data)
        if reason is None and len(data.class_names) != 2 and self.positive_class is None and data.favourable_class is None:
            reason = "benefits need a favourable outcome: declare favourable_class in the card (or set positive_class) for a multiclass model"
        if reason is None and len(data) < 3:
            reason = f"{len(data)} row(s): too few for neighbours"
        return reason

    def _run(self, model: ModelHandle, data: AuditData, context: RunContext) -> IndividualFairnessResult:
        pos, assumed = favourable_outcome(self.positive_class, data)
        decision = (context.proba.argmax(axis=1) == pos).astype(np.float64)
        label = (data.y == pos).astype(np.float64)
        benefit = decision - label + 1.0
        rows = np.arange(len(data))
        if self.max_rows is not None and self.max_rows < len(rows):
            rows = np.sort(context.rng(self.name).choice(len(rows), size=self.max_rows, replace=False))
        consistency = np.full(len(data), np.nan)
        has_inputs = data.x.ndim >= 2 and data.x.shape[1] > 0
        if has_inputs:
            consistency[rows] = knn_consistency(data.x[rows], decision[rows], self.k)
        notes = [assumed] if assumed else []
        if self.max_rows is not None and len(rows) < len(data):
            notes.append(f"Consistency on a seeded random subset of {len(rows):,} of {len(data):,} rows (neighbours searched within it).")
        decomposition, groups = [], []
        frame = sensitive_frame(data, list(data.sensitive), "group") if data.sensitive else pd.DataFrame(index=range(len(data)))
        for attr in data.sensitive:
            values = frame[attr].to_numpy()
            for index, alpha in (("theil", 1.0), ("generalized_entropy", float(self.alpha))):
                decomposition.append({"attribute": attr, "index": index, "alpha": alpha, **decompose(benefit, values, alpha)})
            small = []
            for g in sorted(set(values)):
                mask = values == g
                n = int(mask.sum())
                ok = n >= self.min_group_size
                if not ok:
                    small.append(f"{g} (n={n})")
                c = consistency[mask]
                c = c[np.isfinite(c)]
                groups.append({
                    "attribute": attr, "group": g, "n": n, "status": "ok" if ok else INSUFFICIENT,
                    "consistency": float(c.mean()) if ok and len(c) else float("nan"),
                    "mean_benefit": float(benefit[mask].mean()) if ok else float("nan"),
                    "theil": generalized_entropy(benefit[mask], 1.0) if ok else float("nan"),
                })  # fmt: skip
            if small:
                notes.append(
                    f"{attr}: insufficient data (< {self.min_group_size} rows) for {', '.join(small)}; no per-group figures (they still count in the decomposition)."
                )
        finite = consistency[np.isfinite(consistency)]
        overall = {
            "consistency": float(finite.mean()) if len(finite) else float("nan"),
            "theil": generalized_entropy(benefit, 1.0),
            "generalized_entropy": generalized_entropy(benefit, float(self.alpha)),
        }
        return IndividualFairnessResult(
            method=self.name, params=self.params, seed=context.seed,
            positive_class=data.class_names[pos], k=self.k, alpha=float(self.alpha), overall=overall,
            decomposition=pd.DataFrame(decomposition, columns=["attribute", "index", "alpha", "total", "between", "within", "between_share"]),
            groups=pd.DataFrame(groups, columns=["attribute", "group", "n", "status", "consistency", "mean_benefit", "theil"]),
            n_rows=int(len(data)), n_consistency_rows=int(len(finite)), min_group_size=self.min_group_size, notes=notes,
        )  # fmt: skip
