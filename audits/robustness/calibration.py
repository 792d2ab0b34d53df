"""Calibration: does the model's confidence match its accuracy, on clean data and under a shift?"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from audits.performance import reliability_table
from audits.probes import RunContext, register
from audits.results.robustness import CalibrationResult
from audits.robustness._corruptions import check_corruptions, check_severities, corrupted_proba
from audits.robustness._tabular import TabularLayout, gaussian_noise, predict
from audits.robustness._text import perturb
from audits.robustness.base import RobustnessProbe, check_max_rows

if TYPE_CHECKING:
    from audits.data import AuditData
    from models.loader import ModelHandle


def _summary(proba: np.ndarray, y: np.ndarray, n_bins: int) -> tuple[dict, pd.DataFrame]:
    confidence = proba.max(axis=1)
    correct = proba.argmax(axis=1) == y
    table, ece = reliability_table(confidence, correct, n_bins)
    accuracy = float(correct.mean()) if len(y) else float("nan")
    mean_conf = float(confidence.mean()) if len(y) else float("nan")
    return {"accuracy": accuracy, "mean_confidence": mean_conf, "overconfidence": mean_conf - accuracy, "ece": ece, "n": len(y)}, table


@register
class Calibration(RobustnessProbe):
    """Expected calibration error and reliability curve, clean and under a distribution shift.

    Clean figures use every audited row and the audit's shared forward pass (no extra model
    calls). The shift is a corruption at several severities (images) or Gaussian noise on
    the numeric features (tabular) or keyboard typos (text), on a seeded subset; a model that
    stays confident while its accuracy falls is overconfident under shift.

    Parameters
    ----------
    n_bins : int
        Equal-width confidence bins of the reliability curve.
    corruption : str
        Images: the corruption applied (see the ``corruptions`` probe).
    severities : list of int
        Images: its severities (1-5).
    noise_scales : list of float
        Tabular: noise on every numeric feature, in standard deviations (clipped to the
        observed range).
    typo_rates : list of float
        Text: probability that a word gets a keyboard typo (see ``text_robustness``).
    max_rows : int or None
        Seeded subset of rows evaluated under the shift (None: every row).
    """

    name = "calibration"
    result_type = CalibrationResult
    modalities = ("image", "tabular", "text")
    default_for = ("image", "tabular", "text")
    title = "Calibration under shift"
    description = (
        "Checks whether the model's confidence matches how often it is right (expected calibration error and a "
        "reliability curve), on clean data and on noisy or corrupted data, overall and per group."
    )

    def __init__(
        self,
        *,
        n_bins: int = 10,
        corruption: str = "gaussian_noise",
        severities: list[int] = (1, 3, 5),
        noise_scales: list[float] = (0.25, 0.5, 1.0),
        typo_rates: list[float] = (0.2,),
        max_rows: int | None = 2000,
    ) -> None:
        if n_bins < 1:
            raise ValueError(f"n_bins must be at least 1, got {n_bins}")
        self.n_bins = int(n_bins)
        self.corruption = check_corruptions([corruption])[0]
        self.severities = check_severities(list(severities))
        if not len(noise_scales) or any(float(s) <= 0 for s in noise_scales):
            raise ValueError(f"noise_scales must be a non-empty list of values > 0, got {noise_scales}")
        self.noise_scales = [float(s) for s in noise_scales]
        if not len(typo_rates) or any(not 0 < float(r) <= 1 for r in typo_rates):
            raise ValueError(f"typo_rates must be a non-empty list of probabilities in (0, 1], got {typo_rates}")
        self.typo_rates = [float(r) for r in typo_rates]
        self.max_rows = check_max_rows(max_rows)

    def _run(self, model: ModelHandle, data: AuditData, context: RunContext) -> CalibrationResult:
        rows = self.evaluation_rows(data, self.max_rows, context)
        y = data.y[rows]
        context.report(0.1, "shifted data")
        if data.modality == "image":
            shift = self.corruption
            strengths = [float(s) for s in self.severities]
            value_range = tuple(float(v) for v in model.card.input.value_range)
            seed = int(context.rng(f"{self.name}:{shift}").integers(2**62))
            shifted = list(corrupted_proba(model, data.x[rows], shift, self.severities, seed, value_range))
        elif data.modality == "text":
            shift = "typos"
            strengths = list(self.typo_rates)
            texts = list(np.asarray(data.texts, dtype=object)[rows])
            variants = [v for r in strengths for v in perturb(texts, shift, r, context.rng(f"{self.name}:{shift}:{r}"), {})]
            shifted = list(model.predict_proba(model.tokenize(variants)).reshape(len(strengths), len(rows), -1))
        else:
            shift = "gaussian_noise"
            strengths = list(self.noise_scales)
            layout = TabularLayout.of(model, data)
            z = context.rng(self.name).standard_normal((len(rows), len(layout.names)))
            noisy = np.concatenate([gaussian_noise(data.x[rows], layout, s, z) for s in strengths])
            shifted = list(predict(model, noisy)[1].reshape(len(strengths), len(rows), -1))

        overall, clean_table = _summary(context.proba, data.y, self.n_bins)
        conditions = [("clean", 0.0, context.proba[rows]), *((shift, s, p) for s, p in zip(strengths, shifted, strict=True))]
        records, reliability, groups = [], [], []
        attributes = data.attributes.iloc[rows].reset_index(drop=True)
        for condition, strength, proba in conditions:
            summary, table = _summary(proba, y, self.n_bins)
            records.append({"condition": condition, "strength": strength, **summary})
            reliability.append(table.assign(condition=condition, strength=strength))
            for attribute in data.sensitive:
                values = attributes[attribute].astype(str).to_numpy()
                for group in sorted(set(values)):
                    mask = values == group
                    g, _ = _summary(proba[mask], y[mask], self.n_bins)
                    g["count"] = g.pop("n")
                    groups.append({"condition": condition, "strength": strength, "attribute": attribute, "group": group, **g})
        reliability_frame = pd.concat(reliability, ignore_index=True)
        lead = ["condition", "strength"]
        reliability_frame = reliability_frame[lead + [c for c in reliability_frame.columns if c not in lead]]
        by_group = pd.DataFrame(
            groups, columns=["condition", "strength", "attribute", "group", "accuracy", "mean_confidence", "overconfidence", "ece", "count"]
        )
        return CalibrationResult(
            method=self.name,
            params=self.params,
            seed=context.seed,
            ece=overall["ece"],
            accuracy=overall["accuracy"],
            mean_confidence=overall["mean_confidence"],
            n_bins=self.n_bins,
            shift=shift,
            rows=rows,
            conditions=pd.DataFrame(records),
            reliability=pd.concat(
                [clean_table.assign(condition="clean (all rows)", strength=0.0)[reliability_frame.columns], reliability_frame], ignore_index=True
            ),
            by_group=by_group,
        )
