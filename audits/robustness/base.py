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
    finite = {k: np.isfinite(v) for k, v in arrays.items()}
    zeroed = {k: np.where(finite[k], v, 0.0) for k, v in arrays.items()}
    lead: list[np.ndarray] = []  # condition row of every output row
    columns: dict[str, list[np.ndarray]] = {"attribute": [], "group": [], **{k: [] for k in arrays}, "count": []}
    for attribute in sensitive:
        codes, groups = pd.factorize(attributes[attribute].astype(str).to_numpy(), sort=True)
        n_groups = len(groups)
        counts = np.bincount(codes, minlength=n_groups)
        cells = codes[:, None] * m + np.arange(m)  # (n, m): each value's (group, condition) cell
        lead.append(np.repeat(np.arange(m), n_groups))
        columns["attribute"].append(np.repeat(np.asarray(attribute, dtype=object), n_groups * m))
        columns["group"].append(np.tile(np.asarray(groups, dtype=object), m))
        for name in arrays:
            sums = np.bincount(cells.ravel(), weights=zeroed[name].ravel(), minlength=n_groups * m).reshape(n_groups, m)
            n_finite = np.bincount(cells.ravel(), weights=finite[name].ravel(), minlength=n_groups * m).reshape(n_groups, m)
            with np.errstate(invalid="ignore", divide="ignore"):
                mean = np.where(n_finite > 0, sums / n_finite, np.nan)
            columns[name].append(mean.T.reshape(-1))  # condition-major, groups within
        columns["count"].append(np.tile(counts, m).astype(np.int64))
    if not lead:
        return pd.DataFrame(columns=[*conditions.columns, "attribute", "group", *arrays, "count"])
    rows = np.concatenate(lead)
    # One frame built at once (inserting column by column cost more than the arithmetic).
    return pd.DataFrame({**{c: conditions[c].array.take(rows) for c in conditions.columns}, **{name: np.concatenate(parts) for name, parts in columns.items()}})
