"""Clean performance result: accuracy, per-class metrics, confusion matrix and calibration."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from audits.results.base import Measurement
from audits.serialization import serializable
from audits.stats import wilson


@serializable
@dataclass(frozen=True, kw_only=True)
class PerformanceResult:
    """Accuracy, per-class precision/recall/F1/support, confusion matrix and calibration.

    ``reliability`` has one row per confidence bin: its bounds, sample count, mean
    confidence and accuracy; ``ece`` is the count-weighted mean |accuracy - confidence|.
    """

    n: int
    accuracy: float
    balanced_accuracy: float
    per_class: pd.DataFrame
    confusion: np.ndarray
    ece: float
    reliability: pd.DataFrame
    mean_confidence: float

    def measurements(self) -> Iterator[Measurement]:
        yield Measurement(
            name="accuracy", value=self.accuracy, interval=wilson(self.accuracy, self.n), direction="higher_is_better", evidence=".accuracy", n=self.n
        )
        yield Measurement(name="balanced_accuracy", value=self.balanced_accuracy, direction="higher_is_better", evidence=".balanced_accuracy", n=self.n)
        yield Measurement(name="ece", value=self.ece, direction="lower_is_better", evidence=".ece", n=self.n)
