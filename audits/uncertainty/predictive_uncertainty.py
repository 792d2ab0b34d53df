"""Predictive uncertainty (MC dropout, deep ensemble, test-time augmentation) and selective prediction."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import numpy as np
import pandas as pd

from audits.probes import Probe, RunContext, register
from audits.results.uncertainty import UncertaintyResult
from audits.robustness.base import RobustnessProbe, check_max_rows
from audits.uncertainty._sources import SHIFTS, augmented, decompose, ensemble, mc_dropout

if TYPE_CHECKING:
    from audits.data import AuditData
    from models.loader import ModelHandle

SOURCES = ("softmax", "mc_dropout", "ensemble", "tta")
COVERAGE_GRID = tuple(np.round(np.linspace(0.1, 1.0, 10), 2))


def risk_coverage(confidence: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Risk (error rate) of the k most confident rows for k = 1..n, the AURC (its mean) and the E-AURC.

    The E-AURC subtracts the AURC of the best possible ranking of the same errors (every right
    prediction first), so it measures the ranking alone (Geifman et al. 2019).
    """
    n = len(correct)
    if not n:
        return np.zeros(0), float("nan"), float("nan")
    order = np.argsort(-confidence, kind="stable")
    k = np.arange(1, n + 1)
    risk = np.cumsum(~correct[order]) / k
    n_correct = int(correct.sum())
    best = np.maximum(k - n_correct, 0) / k
    aurc = float(risk.mean())
    return risk, aurc, aurc - float(best.mean())


def selective_accuracy(confidence: np.ndarray, correct: np.ndarray, coverage: float) -> float:
    """Accuracy on the ``coverage`` share of rows the model is most confident about (at least one row)."""
    if not len(correct):
        return float("nan")
    keep = max(1, int(np.ceil(coverage * len(correct) - 1e-9)))
    order = np.argsort(-confidence, kind="stable")
    return float(correct[order[:keep]].mean())


@register
class PredictiveUncertainty(Probe):
    """Predictive entropy and mutual information from MC dropout, a deep ensemble and test-time augmentation,
    with selective prediction (accuracy against coverage, AURC) overall and per group.

    The ``softmax`` source is the audit's shared forward pass (no model call); it always applies. MC dropout
    samples only the network's dropout layers (every other layer stays as the loader set it, and each
    dropout layer gets its mode back); it is left out, saying why, when the network has none. The
    ensemble needs ``ensemble:`` weights in the card; test-time augmentation shifts images by one pixel.

    Parameters
    ----------
    sources : list of str
        Any of softmax, mc_dropout, ensemble, tta; a source that does not apply is left out with a note
        (and the probe is skipped, saying why, when none of them applies).
    mc_passes : int
        Stochastic forward passes of MC dropout.
    tta_passes : int
        Views for test-time augmentation: the image and up to 8 one-pixel shifts.
    coverage : float
        The share of most confident rows whose accuracy is reported (selective accuracy).
    max_rows : int or None
        Seeded subset of rows evaluated by the sampling sources (None: every row).
    """

    name = "uncertainty"
    category: ClassVar = "robustness"
    result_type = UncertaintyResult
    modalities = ("image", "tabular", "text")
    default_for = ("image", "tabular", "text")
    title = "Predictive uncertainty and selective prediction"
    description = (
        "Measures how uncertain the model is (predictive entropy, and mutual information: the disagreement between MC dropout "
        "passes, ensemble members or shifted views of an image) and whether its confidence ranks its errors last, so that "
        "abstaining on the least confident inputs raises accuracy (risk-coverage curve, AURC), overall and per group."
    )

    def __init__(
        self,
        *,
        sources: list[str] = SOURCES,
        mc_passes: int = 8,
        tta_passes: int = 5,
        coverage: float = 0.8,
        max_rows: int | None = 512,
    ) -> None:
        unknown = [s for s in sources if s not in SOURCES]
        if unknown or not sources:
            raise ValueError(f"sources must be a non-empty list from {', '.join(SOURCES)}; got {list(sources)}")
        self.sources = list(dict.fromkeys(sources))
        if int(mc_passes) < 2:
            raise ValueError(f"mc_passes must be at least 2, got {mc_passes}")
        self.mc_passes = int(mc_passes)
        if not 2 <= int(tta_passes) <= len(SHIFTS):
            raise ValueError(f"tta_passes must be in 2..{len(SHIFTS)}, got {tta_passes}")
        self.tta_passes = int(tta_passes)
        if not 0 < float(coverage) <= 1:
            raise ValueError(f"coverage must be in (0, 1], got {coverage}")
        self.coverage = float(coverage)
        self.max_rows = check_max_rows(max_rows)

    def check(self, model: ModelHandle, data: AuditData) -> str | None:
        """Why none of the selected sources applies (each one's reason), or None when one does."""
        reason = super().check(model, data)
        if reason is not None:
            return reason
        reasons = [self._unavailable(source, model, data) for source in self.sources]
        if self.sources and all(reasons):
            return "; ".join(r for r in reasons if r)
        return None

    @staticmethod
    def _unavailable(source: str, model: ModelHandle, data: AuditData) -> str | None:
        if source == "mc_dropout" and not model.dropout_modules():
            return "MC dropout skipped: the network has no dropout layer with a non-zero rate"
        if source == "ensemble" and not model.card.ensemble:
            return "Deep ensemble skipped: the card lists no further weights under 'ensemble'"
        if source == "tta" and data.modality != "image":
            return f"Test-time augmentation skipped: it shifts images, and this is a {data.modality} model"
        return None

    def _run(self, model: ModelHandle, data: AuditData, context: RunContext) -> UncertaintyResult:
        rows = RobustnessProbe.evaluation_rows(data, self.max_rows, context)
        x, y = data.x[rows], data.y[rows]
        samples: dict[str, np.ndarray] = {}
        notes: list[str] = []
        for i, source in enumerate(self.sources):
            context.report(i / max(len(self.sources), 1), source)
            why = self._unavailable(source, model, data)
            if why is not None:
                notes.append(f"{why}.")
                continue
            if source == "softmax":
                samples["softmax"] = context.proba[rows][None]  # the shared forward pass: no model call
            elif source == "mc_dropout":
                seed = int(context.rng(f"{self.name}:mc_dropout").integers(2**62))
                samples["mc_dropout"] = mc_dropout(model, x, self.mc_passes, seed)
            elif source == "ensemble":
                from models.loader import load_ensemble

                samples["ensemble"] = ensemble(load_ensemble(model), x)
            else:
                samples["tta"] = augmented(model, x, self.tta_passes)

        attributes = data.attributes.iloc[rows].reset_index(drop=True)
        records, curves, groups = [], [], []
        for source, s in samples.items():
            mean, total, expected, mi = decompose(s)
            confidence = mean.max(axis=1)
            correct = mean.argmax(axis=1) == y
            risk, aurc, e_aurc = risk_coverage(confidence, correct)
            records.append(
                {
                    "source": source,
                    "passes": int(s.shape[0]),
                    "accuracy": float(correct.mean()) if len(y) else float("nan"),
                    "mean_entropy": float(total.mean()) if len(y) else float("nan"),
                    "mean_expected_entropy": float(expected.mean()) if len(y) else float("nan"),
                    "mean_mutual_information": float(mi.mean()) if len(y) else float("nan"),
                    "entropy_correct": float(total[correct].mean()) if correct.any() else float("nan"),
                    "entropy_wrong": float(total[~correct].mean()) if (~correct).any() else float("nan"),
                    "aurc": aurc,
                    "e_aurc": e_aurc,
                    "selective_accuracy": selective_accuracy(confidence, correct, self.coverage),
                    "n": len(y),
                }
            )
            for c in COVERAGE_GRID:
                acc = selective_accuracy(confidence, correct, float(c))
                curves.append({"source": source, "coverage": float(c), "accuracy": acc, "risk": 1.0 - acc})
            for attribute in data.sensitive:
                values = attributes[attribute].astype(str).to_numpy()
                for group in sorted(set(values)):
                    mask = values == group
                    _, g_aurc, _ = risk_coverage(confidence[mask], correct[mask])
                    groups.append(
                        {
                            "source": source,
                            "attribute": attribute,
                            "group": group,
                            "accuracy": float(correct[mask].mean()),
                            "mean_entropy": float(total[mask].mean()),
                            "aurc": g_aurc,
                            "selective_accuracy": selective_accuracy(confidence[mask], correct[mask], self.coverage),
                            "count": int(mask.sum()),
                        }
                    )
        return UncertaintyResult(
            method=self.name,
            params=self.params,
            seed=context.seed,
            rows=rows,
            coverage=self.coverage,
            sources=pd.DataFrame(records),
            risk_coverage=pd.DataFrame(curves, columns=["source", "coverage", "accuracy", "risk"]),
            by_group=pd.DataFrame(groups, columns=["source", "attribute", "group", "accuracy", "mean_entropy", "aurc", "selective_accuracy", "count"]),
            notes=notes,
        )
