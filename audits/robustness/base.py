"""What every robustness probe shares: the result types, the evaluation subset and the per-group breakdown."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import pandas as pd

from audits.probes import Probe, RunContext
from audits.results.robustness import (
    AdversarialExamples as AdversarialExamples,
)
from audits.results.robustness import (
    AttackResult as AttackResult,
)
from audits.results.robustness import (
    CalibrationResult as CalibrationResult,
)
from audits.results.robustness import (
    CorruptionExamples as CorruptionExamples,
)
from audits.results.robustness import (
    CorruptionResult as CorruptionResult,
)
from audits.results.robustness import (
    TabularAdversarialResult as TabularAdversarialResult,
)
from audits.results.robustness import (
    TabularPerturbationResult as TabularPerturbationResult,
)
from audits.results.robustness import (
    largest_gap as largest_gap,
)

if TYPE_CHECKING:
    from audits.data import AuditData

# One salt for every robustness probe: probes with the same ``max_rows`` see the same rows,
# and a smaller subset is a prefix of a larger one (so FGSM and PGD curves are comparable).
_SUBSET_SALT = "robustness-rows"


class RobustnessProbe(Probe):
    """Base of robustness probes (category ``robustness``)."""

    category: ClassVar = "robustness"

    @staticmethod
    def evaluation_rows(data: AuditData, max_rows: int | None, context: RunContext) -> np.ndarray:
        """Sorted indices of a seeded subset of at most ``max_rows`` rows (all rows when None)."""
        n = len(data)
        if max_rows is None or max_rows >= n:
            return np.arange(n)
        order = context.rng(_SUBSET_SALT).permutation(n)
        return np.sort(order[:max_rows])


def check_max_rows(max_rows: int | None) -> int | None:
    if max_rows is not None and int(max_rows) < 1:
        raise ValueError(f"max_rows must be at least 1 (or None for all rows), got {max_rows}")
    return None if max_rows is None else int(max_rows)


def group_breakdown(
    values: Mapping[str, np.ndarray],
    attributes: pd.DataFrame,
    sensitive: Sequence[str],
    conditions: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Mean of per-row values per sensitive attribute and group, as a tidy frame.

    Parameters
    ----------
    values : mapping of name -> array
        Per-row figures, each (n,) or (n, m) for ``m`` conditions (e.g. one column per
        epsilon): correctness or flip indicators, distances. NaN entries are left out of
        that value's mean (e.g. "attack success" of rows that were wrong to begin with).
    attributes : DataFrame
        ``data.attributes`` restricted to the same n rows (in the same order).
    sensitive : sequence of str
        The attribute columns to break down by (``data.sensitive``).
    conditions : DataFrame, optional
        ``m`` rows describing the columns of the (n, m) values (e.g. an ``epsilon`` column);
        its columns lead the output.

    Returns
    -------
    DataFrame
        One row per condition, attribute and group: the condition columns, ``attribute``,
        ``group``, one column per value (the group mean) and ``count`` (rows in the group).
    """
    arrays = {k: np.asarray(v, dtype=np.float64) for k, v in values.items()}
    arrays = {k: (v[:, None] if v.ndim == 1 else v) for k, v in arrays.items()}
    m = next(iter(arrays.values())).shape[1] if arrays else 1
    conditions = conditions.reset_index(drop=True) if conditions is not None else pd.DataFrame(index=range(m))
    frames = []
    for attribute in sensitive:
        codes, groups = pd.factorize(attributes[attribute].astype(str).to_numpy(), sort=True)
        onehot = np.zeros((len(codes), len(groups)))
        onehot[np.arange(len(codes)), codes] = 1.0
        counts = onehot.sum(axis=0)
        block = {"attribute": np.repeat(attribute, len(groups) * m), "group": np.tile(np.asarray(groups, dtype=object), m)}
        for name, v in arrays.items():
            finite = np.isfinite(v)
            sums = onehot.T @ np.where(finite, v, 0.0)  # (G, m)
            n_finite = onehot.T @ finite
            with np.errstate(invalid="ignore", divide="ignore"):
                mean = np.where(n_finite > 0, sums / n_finite, np.nan)
            block[name] = mean.T.reshape(-1)  # condition-major, groups within
        block["count"] = np.tile(counts, m).astype(np.int64)
        frame = pd.DataFrame(block)
        lead = conditions.loc[np.repeat(np.arange(m), len(groups))].reset_index(drop=True)
        frames.append(pd.concat([lead, frame], axis=1))
    if not frames:
        return pd.DataFrame(columns=[*conditions.columns, "attribute", "group", *arrays, "count"])
    return pd.concat(frames, ignore_index=True)
