"""Attribution disparity: does the model rely on different features for different groups?

Reads the attribution results that ran earlier in the same audit (no model calls). For
each method, sensitive attribute and group it compares where the attribution mass goes
in the group (mean |attribution| per feature or pixel, normalized to shares that sum to 1)
with the rest of the explained samples. The divergence is the total variation distance
between the two share vectors (0: same reliance, 1: disjoint). Few samples make even
identical groups diverge by chance, so each divergence comes with a bootstrap interval
and the chance level from random splits of the same sizes (with a permutation p-value).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import numpy as np
import pandas as pd

from audits.fairness._bootstrap import percentile_interval
from audits.fairness.group_metrics import INSUFFICIENT, MISSING_GROUP
from audits.probes import Probe, RunContext, register
from audits.results.attribution import AttributionResult
from audits.results.fairness import AttributionDisparityResult as AttributionDisparityResult

if TYPE_CHECKING:
    from audits.data import AuditData
    from models.loader import ModelHandle


def _shares(mean_abs: np.ndarray) -> np.ndarray:
    """Rows of mean |attribution| normalized to sum to 1 (NaN where a row is all zero)."""
    total = mean_abs.sum(axis=-1, keepdims=True)
    out = np.full(mean_abs.shape, np.nan)
    np.divide(mean_abs, total, out=out, where=total > 0)
    return out


def _tv(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return 0.5 * np.abs(a - b).sum(axis=-1)


@register
class AttributionDisparity(Probe):
    """Mean |attribution| per feature per group, from the audit's attribution probes.

    Parameters
    ----------
    min_samples : int
        Groups (or their complement) with fewer explained samples are reported as
        'insufficient data'.
    n_boot : int
        Bootstrap resamples (within the group and within the rest) for the interval.
    n_permutations : int
        Random splits for the chance level and p-value.
    ci : float
        Coverage of the intervals.
    """

    name: ClassVar[str] = "attribution_disparity"
    result_type: ClassVar = AttributionDisparityResult
    uses_shared_outputs: ClassVar = False
    category: ClassVar = "fairness"
    modalities: ClassVar = ("image", "tabular")
    default_for: ClassVar = ("image", "tabular")
    title: ClassVar[str] = "Attribution disparity"
    description: ClassVar[str] = (
        "Compares, for each group of a sensitive attribute, which features (or image regions) the explanations say "
        "the model relies on with the rest of the explained samples, against the divergence random groups of the same "
        "size would show, to reveal a model that decides differently for different groups."
    )

    def __init__(self, *, min_samples: int = 5, n_boot: int = 500, n_permutations: int = 500, ci: float = 0.95) -> None:
        if min_samples < 1:
            raise ValueError(f"min_samples must be at least 1, got {min_samples}")
        if n_boot < 1 or n_permutations < 1:
            raise ValueError("n_boot and n_permutations must be at least 1")
        if not 0.0 < ci < 1.0:
            raise ValueError(f"ci must be in (0, 1), got {ci}")
        self.min_samples = min_samples
        self.n_boot = n_boot
        self.n_permutations = n_permutations
        self.ci = ci

    def check(self, model: ModelHandle, data: AuditData) -> str | None:
        reason = super().check(model, data)
        if reason is None and not data.sensitive:
            reason = "the data declares no sensitive attributes"
        return reason

    def _run(self, model: ModelHandle, data: AuditData, context: RunContext) -> AttributionDisparityResult:
        results = [r for r in context.earlier if isinstance(r, AttributionResult) and len(r.sample_indices)]
        rng = context.rng(self.name)
        summary, features, maps, notes = [], [], {}, []
        if not results:
            notes.append("No attribution results ran before this probe in the audit; add an attribution probe (e.g. kernel_shap, grad_cam).")
        for k, res in enumerate(results):
            context.report(k / max(len(results), 1), res.method)
            flat = np.abs(res.attributions.astype(np.float64)).reshape(len(res.sample_indices), -1)
            for attr in data.sensitive:
                values = data.attributes[attr].iloc[res.sample_indices]
                labels = values.astype(object).where(values.notna(), MISSING_GROUP).astype(str).to_numpy()
                everyone = data.attributes[attr].astype(object).where(data.attributes[attr].notna(), MISSING_GROUP).astype(str)
                population = everyone.value_counts(normalize=True)
                for group in sorted(set(labels)):
                    row, shares = self._compare(flat, labels == group, rng)
                    # Whether the group and the rest are expected (from their shares of the data, not from the seed's
                    # draw) to hold twice min_samples of the explained samples: the checked measurement uses only such
                    # groups, so the findings do not come and go with the samples a seed picks.
                    expected = float(population.get(group, 0.0)) * len(labels)
                    row["eligible"] = bool(min(expected, len(labels) - expected) >= 2 * self.min_samples)
                    row = {"method": res.method, "attribute": attr, "group": group, **row}
                    if res.feature_names and shares is not None:
                        share_g, share_rest, mean_g = shares
                        gap = share_g - share_rest
                        top = np.argsort(-share_g)[:3]
                        row["top_features"] = ", ".join(res.feature_names[i] for i in top)
                        row["most_over_relied"] = res.feature_names[int(np.nanargmax(gap))] if np.isfinite(gap).any() else None
                        features += [
                            {
                                "method": res.method,
                                "attribute": attr,
                                "group": group,
                                "feature": f,
                                "mean_abs": float(m),
                                "share": float(s),
                                "share_rest": float(sr),
                                "share_gap": float(s - sr),
                            }
                            for f, m, s, sr in zip(res.feature_names, mean_g, share_g, share_rest, strict=True)
                        ]
                    elif shares is not None:
                        maps[f"{res.method}/{attr}/{group}"] = shares[0].reshape(res.attributions.shape[1:]).astype(np.float32)
                    summary.append(row)
        small = sum(r["status"] == INSUFFICIENT for r in summary)
        if small:
            notes.append(
                f"{small} group(s) have fewer than {self.min_samples} explained samples (or leave fewer in the rest); explain more samples (spec 'samples') to compare them."
            )
        return AttributionDisparityResult(
            method=self.name, params=self.params, seed=context.seed, modality=data.modality,
            methods=[r.method for r in results], summary=pd.DataFrame(summary), features=pd.DataFrame(features), maps=maps,
            min_samples=self.min_samples, n_boot=self.n_boot, ci=self.ci, notes=notes,
        )  # fmt: skip

    def _compare(self, flat: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> tuple[dict, tuple | None]:
        """Divergence of one group from the rest, its bootstrap interval and its chance level."""
        n, n_g = len(mask), int(mask.sum())
        row = {"n": n_g, "status": "ok", "divergence": np.nan, "lo": np.nan, "hi": np.nan, "chance": np.nan, "p_value": np.nan}
        if n_g < self.min_samples or n - n_g < self.min_samples:
            row["status"] = INSUFFICIENT
            return row, None
        group, rest = flat[mask], flat[~mask]
        mean_g, mean_rest = group.mean(axis=0), rest.mean(axis=0)
        share_g, share_rest = _shares(mean_g), _shares(mean_rest)
        observed = float(_tv(share_g, share_rest))
        # Bootstrap within the group and within the rest: multinomial row weights, one product each.
        w_g = rng.multinomial(n_g, np.full(n_g, 1.0 / n_g), size=self.n_boot) / n_g
        w_r = rng.multinomial(n - n_g, np.full(n - n_g, 1.0 / (n - n_g)), size=self.n_boot) / (n - n_g)
        boot = _tv(_shares(w_g @ group), _shares(w_r @ rest))
        lo, hi = percentile_interval(boot[:, None], self.ci)
        # Chance: random splits of the same sizes (a random permutation's first n_g rows form the group).
        picked = (np.argsort(rng.random((self.n_permutations, n)), axis=1) < n_g).astype(np.float64)
        perm = _tv(_shares(picked @ flat / n_g), _shares((1.0 - picked) @ flat / (n - n_g)))
        perm = perm[np.isfinite(perm)]
        row.update(
            divergence=observed, lo=float(lo[0]), hi=float(hi[0]), chance=float(perm.mean()) if len(perm) else np.nan,
            p_value=float((1 + np.sum(perm >= observed - 1e-12)) / (1 + len(perm))),
        )  # fmt: skip
        return row, (share_g, share_rest, mean_g)
