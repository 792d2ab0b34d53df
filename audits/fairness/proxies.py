"""Proxy features: which inputs carry information about a sensitive attribute.

Dropping a sensitive attribute from a model's inputs does not stop the model from using
it through a proxy (Adult: relationship = Husband/Wife encodes sex). For each sensitive
attribute this probe ranks every other raw model input by its mutual information with
the attribute (scikit-learn's ``mutual_info_classif``, categorical inputs marked
discrete), normalized by the attribute's entropy, and fits a small logistic-regression
probe predicting the attribute from all the other inputs: a high probe AUC means the
attribute is recoverable from what the model sees. When attributions ran earlier in
the audit, each proxy's importance rank in the model is shown beside it.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import pandas as pd

from audits.probes import Probe, RunContext, register
from audits.results.attribution import AttributionResult
from audits.results.fairness import ProxyFeaturesResult as ProxyFeaturesResult
from models.card import CategoricalFeature

if TYPE_CHECKING:
    from audits.data import AuditData
    from models.loader import ModelHandle

_MISSING = "(missing)"


def _entropy(codes: np.ndarray) -> float:
    p = np.bincount(codes) / len(codes)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def _importance_ranks(earlier: tuple, feature_names: list[str]) -> dict[str, float]:
    """Mean rank of each feature's global importance over the tabular attribution results."""
    ranks = []
    for r in earlier:
        if isinstance(r, AttributionResult) and r.feature_names == feature_names and len(r.sample_indices):
            order = np.argsort(-r.global_importance)
            rank = np.empty(len(order))
            rank[order] = np.arange(1, len(order) + 1)
            ranks.append(rank)
    if not ranks:
        return {}
    mean = np.mean(ranks, axis=0)
    return dict(zip(feature_names, mean, strict=True))


@register
class ProxyFeatures(Probe):
    """Features most predictive of each sensitive attribute (tabular).

    Parameters
    ----------
    max_rows : int
        Rows used (a seeded random subset when there are more).
    top_k : int
        Proxies listed per attribute at most.
    threshold : float
        Normalized mutual information from which a feature counts as a proxy.
    probe_model : bool
        Also fit the logistic-regression probe.
    """

    name: ClassVar[str] = "proxy_features"
    result_type: ClassVar = ProxyFeaturesResult
    uses_shared_outputs: ClassVar = False
    category: ClassVar = "fairness"
    needs_model: ClassVar[bool] = False  # reads the shared pass (or the data) only
    modalities: ClassVar = ("tabular",)
    default_for: ClassVar = ("tabular",)
    title: ClassVar[str] = "Proxy features"
    description: ClassVar[str] = (
        "Ranks the model's inputs by how much they reveal about each sensitive attribute (mutual information, normalized "
        "by the attribute's entropy) and measures how well a simple model recovers the attribute from the other inputs, "
        "so reliance on a stand-in for the attribute is visible even when the attribute itself is not an input."
    )

    def __init__(self, *, max_rows: int = 5000, top_k: int = 5, threshold: float = 0.05, probe_model: bool = True) -> None:
        if max_rows < 50:
            raise ValueError(f"max_rows must be at least 50, got {max_rows}")
        if top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {top_k}")
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {threshold}")
        self.max_rows = max_rows
        self.top_k = top_k
        self.threshold = threshold
        self.probe_model = probe_model

    def check(self, model: ModelHandle, data: AuditData) -> str | None:
        reason = super().check(model, data)
        if reason is None and not data.sensitive:
            reason = "the data declares no sensitive attributes"
        if reason is None and (data.raw is None or model.encoder is None):
            reason = "proxy_features needs the raw tabular columns and the model's declared encoding"
        return reason

    def _run(self, model: ModelHandle, data: AuditData, context: RunContext) -> ProxyFeaturesResult:
        from sklearn.feature_selection import mutual_info_classif  # here: only audits that run this probe import scikit-learn

        rng = context.rng(self.name)
        rows = np.arange(len(data))
        if len(rows) > self.max_rows:
            rows = np.sort(rng.choice(len(rows), size=self.max_rows, replace=False))
        raw = data.raw.iloc[rows].reset_index(drop=True)
        specs = {f.name: f for f in model.encoder.spec.features}
        discrete = np.array([isinstance(specs[f], CategoricalFeature) for f in data.feature_names])
        columns = []
        for f, is_cat in zip(data.feature_names, discrete, strict=True):
            col = raw[f]
            columns.append(
                pd.factorize(col.astype("string").fillna(_MISSING))[0]
                if is_cat
                else pd.to_numeric(col, errors="coerce").fillna(specs[f].center).to_numpy(dtype=np.float64)
            )
        features = np.stack(columns, axis=1).astype(np.float64)
        importance = _importance_ranks(context.earlier, list(data.feature_names))
        mi_rows, probe_rows, proxies, notes = [], [], {}, []
        for k, attr in enumerate(data.sensitive):
            context.report(k / len(data.sensitive), attr)
            target = pd.factorize(data.attributes[attr].iloc[rows].astype("string").fillna(_MISSING))[0]
            if len(np.unique(target)) < 2:
                notes.append(f"{attr}: a single value in the rows used; no proxies to find.")
                continue
            keep = [i for i, f in enumerate(data.feature_names) if f != attr]
            mi = mutual_info_classif(features[:, keep], target, discrete_features=discrete[keep], random_state=int(rng.integers(2**31 - 1)))
            h = _entropy(target)
            order = np.argsort(-mi, kind="stable")
            for rank, j in enumerate(order, start=1):
                feature = data.feature_names[keep[j]]
                mi_rows.append({
                    "attribute": attr, "feature": feature, "mi": float(mi[j]), "normalized_mi": float(mi[j] / h) if h > 0 else float("nan"),
                    "rank": rank, "sensitive": feature in data.sensitive, "importance_rank": importance.get(feature, float("nan")),
                })  # fmt: skip
            proxies[attr] = [data.feature_names[keep[j]] for j in order[: self.top_k] if h > 0 and mi[j] / h >= self.threshold]
            if self.probe_model:
                probe_rows.append(self._probe(data, rows, attr, target, rng))
        if importance:
            notes.append("importance_rank: mean rank of the feature's global importance over the audit's attribution results (1 = most important).")
        return ProxyFeaturesResult(
            method=self.name, params=self.params, seed=context.seed,
            mutual_information=pd.DataFrame(mi_rows), probe_models=pd.DataFrame(probe_rows),
            proxies=proxies, threshold=self.threshold, n_rows=int(len(rows)), notes=notes,
        )  # fmt: skip

    def _probe(self, data: AuditData, rows: np.ndarray, attr: str, target: np.ndarray, rng: np.random.Generator) -> dict:
        """Held-out scores of a logistic regression predicting ``attr`` from every other encoded input."""
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LogisticRegression
        from sklearn.metrics import roc_auc_score
        from sklearn.model_selection import train_test_split
        from threadpoolctl import threadpool_limits

        drop = set(data.feature_groups[data.feature_names.index(attr)].tolist()) if attr in data.feature_names else set()
        cols = [c for c in range(data.x.shape[1]) if c not in drop]
        x = data.x[rows][:, cols]
        counts = np.bincount(target)
        stratify = target if counts[counts > 0].min() >= 2 else None
        x_tr, x_te, y_tr, y_te = train_test_split(x, target, test_size=0.3, random_state=int(rng.integers(2**31 - 1)), stratify=stratify)
        clf = LogisticRegression(max_iter=500)
        # One BLAS thread: this problem is small, and multithreaded BLAS on a busy machine is
        # orders of magnitude slower here (seconds instead of tens of milliseconds).
        with threadpool_limits(1), warnings.catch_warnings():
            # An unconverged probe still ranks; its status is recorded below.
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.fit(x_tr, y_tr)
            proba = clf.predict_proba(x_te)
        auc = float("nan")
        present = np.unique(y_te)
        if len(present) == 2 and len(clf.classes_) == 2:
            auc = float(roc_auc_score(y_te, proba[:, 1]))
        elif len(present) == len(clf.classes_) > 2:
            auc = float(roc_auc_score(y_te, proba, multi_class="ovr", average="macro", labels=clf.classes_))
        pred = clf.classes_[proba.argmax(axis=1)]
        balanced = float(np.mean([np.mean(pred[y_te == c] == c) for c in present]))  # macro recall over the classes present
        return {
            "attribute": attr, "auc": auc, "accuracy": float(np.mean(pred == y_te)), "majority_baseline": float(np.bincount(y_te).max() / len(y_te)),
            "balanced_accuracy": balanced, "chance_balanced_accuracy": 1.0 / len(present), "n_train": int(len(y_tr)), "n_test": int(len(y_te)),
            "converged": bool(np.all(clf.n_iter_ < clf.max_iter)),
        }  # fmt: skip
