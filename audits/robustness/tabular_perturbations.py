"""Tabular perturbations: feature noise, missing values, category flips and a per-feature shift sweep."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd

from audits.probes import RunContext, register
from audits.results.robustness import TabularPerturbationResult
from audits.robustness._tabular import TabularLayout, flip_categories, gaussian_noise, other_levels, predict, set_levels, set_missing, shift
from audits.robustness.base import RobustnessProbe, check_max_rows, group_breakdown

if TYPE_CHECKING:
    from audits.data import AuditData
    from models.loader import ModelHandle

MissingPolicy = Literal["card", "impute"]


def _strengths(name: str, values: list[float], *, signed: bool = False, upper: float | None = None) -> list[float]:
    out = [float(v) for v in values]
    bad = [v for v in out if (v == 0 if signed else v <= 0) or (upper is not None and v > upper)]
    if bad:
        raise ValueError(f"{name} must be {'non-zero' if signed else '> 0'}{f' and <= {upper}' if upper else ''}; got {values}")
    return out


@register
class TabularPerturbations(RobustnessProbe):
    """How often natural perturbations of the inputs change the model's decisions.

    All perturbed copies of a seeded subset of rows go through the model together in
    device batches. A *flip* is a prediction that differs from the clean prediction.

    Parameters
    ----------
    noise_scales : list of float
        Gaussian noise on every numeric feature at once, in standard deviations of each
        feature (clipped to the feature's observed range).
    missing_rates : list of float
        Share of cells (raw features) set missing at random, handled as the card declares.
    flip_probs : list of float
        Probability that each categorical cell switches to another level observed in the
        data (drawn by observed frequency).
    shift_scales : list of float
        Per-feature sweep: each numeric feature alone moved by these many standard
        deviations (clipped to its observed range); each categorical feature alone switched
        to another observed level.
    missing : {'card', 'impute'}
        'card': follow the card's ``input.missing`` (with ``error`` the rows are refused,
        which the table reports as ``refused``); 'impute': impute as the encoder would
        (numeric: the feature's center, categorical: no level) regardless of the card.
    max_rows : int or None
        Seeded random subset of rows to perturb (None: every row).
    """

    name = "tabular_perturbations"
    result_type = TabularPerturbationResult
    modalities = ("tabular",)
    default_for = ("tabular",)
    title = "Tabular perturbations"
    description = (
        "Adds measurement noise, missing values and category changes to the inputs, and moves one feature at a time, "
        "to show how often the model's decisions change and which features flip them most easily."
    )

    def __init__(
        self,
        *,
        noise_scales: list[float] = (0.1, 0.25, 0.5, 1.0),
        missing_rates: list[float] = (0.05, 0.1, 0.25),
        flip_probs: list[float] = (0.05, 0.1, 0.25),
        shift_scales: list[float] = (-1.0, -0.5, -0.25, 0.25, 0.5, 1.0),
        missing: MissingPolicy = "card",
        max_rows: int | None = 2000,
    ) -> None:
        self.noise_scales = _strengths("noise_scales", list(noise_scales))
        self.missing_rates = _strengths("missing_rates", list(missing_rates), upper=1.0)
        self.flip_probs = _strengths("flip_probs", list(flip_probs), upper=1.0)
        self.shift_scales = _strengths("shift_scales", list(shift_scales), signed=True)
        if missing not in ("card", "impute"):
            raise ValueError(f"missing must be 'card' or 'impute', got {missing!r}")
        self.missing = missing
        self.max_rows = check_max_rows(max_rows)

    def _run(self, model: ModelHandle, data: AuditData, context: RunContext) -> TabularPerturbationResult:
        layout = TabularLayout.of(model, data)
        rows = self.evaluation_rows(data, self.max_rows, context)
        x, y = data.x[rows], data.y[rows]
        n, m = len(rows), len(layout.names)
        clean_pred = context.predictions[rows]
        rng = context.rng(self.name)
        z, u, v = rng.standard_normal((n, m)), rng.random((n, m)), rng.random((n, m))
        impute = self.missing == "impute" or layout.missing == "impute"
        notes: list[str] = []

        variants: list[tuple[dict, np.ndarray | None]] = []  # (description, perturbed rows or None = refused)
        for s in self.noise_scales:
            variants.append(({"perturbation": "noise", "feature": "*", "strength": s}, gaussian_noise(x, layout, s, z)))
        for r in self.missing_rates:
            # Common random numbers: a higher rate blanks a superset of the cells of a lower one.
            mask = u < r
            refused = float(mask.any(axis=1).mean())
            variants.append(
                (
                    {"perturbation": "missing", "feature": "*", "strength": r, "refused": 0.0 if impute else refused},
                    set_missing(x, layout, mask) if impute else None,
                )
            )
        for p in self.flip_probs:
            if len(layout.categorical):
                variants.append(({"perturbation": "category_flip", "feature": "*", "strength": p}, flip_categories(x, layout, p, v, u)))
        for j in layout.numeric:
            for k in self.shift_scales:
                variants.append(({"perturbation": "shift", "feature": layout.names[j], "strength": k}, shift(x, layout, j, k)))
        everyone = np.arange(n)
        for j in layout.categorical:
            new = other_levels(layout.codes(x, j), layout.frequency[j], v[:, j])
            variants.append(({"perturbation": "swap", "feature": layout.names[j], "strength": 1.0}, set_levels(x, layout, j, everyone, new)))
        if impute:
            for j in range(m):
                mask = np.zeros((n, m), dtype=bool)
                mask[:, j] = True
                variants.append(({"perturbation": "missing", "feature": layout.names[j], "strength": 1.0}, set_missing(x, layout, mask)))
        else:
            notes.append(
                "The card declares input.missing: error, so rows with a missing value are refused, not scored; "
                "'refused' is the share of rows that would be. Set missing: impute to score the imputation instead."
            )

        context.report(0.3, f"scoring {len(variants)} perturbations")
        scored = [(d, xv) for d, xv in variants if xv is not None]
        stacked = np.concatenate([xv for _, xv in scored]) if scored else np.zeros((0, x.shape[1]), dtype=np.float32)
        pred = predict(model, stacked)[0].reshape(len(scored), n) if scored else np.zeros((0, n), dtype=np.int64)
        scored_mask = np.array([xv is not None for _, xv in variants])
        correct = np.full((n, len(variants)), np.nan)
        flips = np.full((n, len(variants)), np.nan)
        k = 0
        for i, (_, xv) in enumerate(variants):
            if xv is not None:
                correct[:, i] = pred[k] == y
                flips[:, i] = pred[k] != clean_pred
                k += 1
        table = pd.DataFrame([{"refused": 0.0, **d} for d, _ in variants], columns=["perturbation", "feature", "strength", "refused"])
        # Refused perturbations keep NaN: those rows would not be scored at all.
        with np.errstate(invalid="ignore", divide="ignore"):
            table["accuracy"] = np.where(scored_mask, np.nansum(correct, axis=0) / n, np.nan) if n else np.nan
            table["flip_rate"] = np.where(scored_mask, np.nansum(flips, axis=0) / n, np.nan) if n else np.nan
        table["n"] = n
        by_group = group_breakdown(
            {"accuracy": correct, "flip_rate": flips},
            data.attributes.iloc[rows].reset_index(drop=True), data.sensitive, table[["perturbation", "feature", "strength"]],
        )  # fmt: skip
        return TabularPerturbationResult(
            method=self.name,
            params=self.params,
            seed=context.seed,
            rows=rows,
            clean_accuracy=float((clean_pred == y).mean()) if n else float("nan"),
            missing_policy="impute" if impute else "error",
            table=table,
            features=self._fragility(table, layout),
            by_group=by_group,
            notes=notes,
        )

    @staticmethod
    def _fragility(table: pd.DataFrame, layout: TabularLayout) -> pd.DataFrame:
        """Per raw feature: flip rates of its single-feature perturbations and their maximum."""
        single = table[table["feature"] != "*"]
        out = pd.DataFrame({"feature": layout.names, "type": layout.kinds})
        for kind, column in (("shift", "shift_flip_rate"), ("swap", "swap_flip_rate"), ("missing", "missing_flip_rate")):
            rates = single[single["perturbation"] == kind].groupby("feature")["flip_rate"].max()
            out[column] = out["feature"].map(rates).astype(float)
        out["fragility"] = out[["shift_flip_rate", "swap_flip_rate", "missing_flip_rate"]].max(axis=1, skipna=True)
        return out.sort_values("fragility", ascending=False, kind="stable").reset_index(drop=True)
