"""Clean performance result: accuracy, per-class metrics, confusion matrix and calibration."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from audits.results.base import Measurement, finite, proportion
from audits.serialization import serializable
from audits.stats import wilson


@serializable
@dataclass(frozen=True, kw_only=True)
class PerformanceResult:
    """Accuracy, per-class precision/recall/F1/support, confusion matrix and calibration.

    ``reliability`` has one row per confidence bin: its bounds, sample count, mean
    confidence and accuracy; ``ece`` is the count-weighted mean |accuracy - confidence|.
    ``nonfinite_rows`` counts rows whose model output held NaN or infinity: when any do,
    the figures over all rows are invalid (accuracy, balanced accuracy, ECE and mean
    confidence are NaN; per-class metrics, confusion and reliability cover the finite rows).
    """

    n: int
    accuracy: float
    balanced_accuracy: float
    per_class: pd.DataFrame
    confusion: np.ndarray
    ece: float
    reliability: pd.DataFrame
    mean_confidence: float
    nonfinite_rows: int = 0

    @property
    def valid(self) -> bool:
        """Whether every row gave finite outputs (else the headline figures are marked invalid)."""
        return self.nonfinite_rows == 0

    def measurements(self) -> Iterator[Measurement]:
        ok = self.valid
        yield proportion("accuracy", self.accuracy if ok else None, self.n, evidence=".accuracy")
        yield Measurement(
            name="balanced_accuracy",
            value=finite(self.balanced_accuracy) if ok else None,
            direction="higher_is_better",
            evidence=".balanced_accuracy",
            n=self.n,
        )
        yield Measurement(name="ece", value=finite(self.ece) if ok else None, direction="lower_is_better", evidence=".ece", n=self.n)
        yield Measurement(name="mean_confidence", value=finite(self.mean_confidence) if ok else None, evidence=".mean_confidence", n=self.n)
        yield Measurement(name="nonfinite_output_rows", value=float(self.nonfinite_rows), direction="lower_is_better", evidence=".nonfinite_rows", n=self.n)
        predicted = self.confusion.sum(axis=0) if self.confusion.size else np.zeros(len(self.per_class))
        for i, row in enumerate(self.per_class.itertuples(index=False)):
            yield proportion("recall", row.recall if ok else None, row.support, subject=f"class={row[0]}", evidence=f".per_class[class={row[0]}]")
            yield proportion("precision", row.precision if ok else None, predicted[i], subject=f"class={row[0]}", evidence=f".per_class[class={row[0]}]")
        yield from self._error_inflow(ok)

    def _error_inflow(self, ok: bool, min_errors: int = 50) -> Iterator[Measurement]:
        """``error_inflow_ratio`` per class: its false positives over what its size explains.

        If every class's errors spread over the other classes in proportion to their sizes, class c
        would receive ``sum_t e_t * n_c / (N - n_t)`` false positives; the ratio is the observed
        count over that. The Wilson interval of c's share of all errors is scaled alike. No value
        with fewer than ``min_errors`` errors in all (too few to say where they go).
        """
        cm = np.asarray(self.confusion, dtype=np.float64)
        k = len(cm)
        if k < 3 or not ok:  # with two classes every error flows into the other one
            return
        support, errors = cm.sum(axis=1), cm.sum(axis=1) - np.diag(cm)
        total, n = float(errors.sum()), float(support.sum())
        for c in range(k):
            others = np.arange(k) != c
            expected = float((errors[others] * support[c] / np.maximum(n - support[others], 1.0)).sum())
            observed = float(cm[others, c].sum())
            enough = total >= min_errors and expected > 0
            share = wilson(observed / total, int(total)) if enough else None
            yield Measurement(
                name="error_inflow_ratio",
                subject=f"class={self.per_class.iloc[c, 0]}",
                value=observed / expected if enough else None,
                interval=None if share is None else [v * total / expected for v in share],
                direction="lower_is_better",
                evidence=f".confusion[predicted={self.per_class.iloc[c, 0]}]",
                n=int(total),
            )
