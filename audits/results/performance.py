"""Clean performance result: accuracy, per-class metrics, confusion matrix and calibration."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from audits.results.base import Measurement, finite, proportion
from audits.serialization import serializable


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
        for row in self.per_class.itertuples(index=False):
            yield proportion("recall", row.recall if ok else None, row.support, subject=f"class={row[0]}", evidence=f".per_class[class={row[0]}]")
