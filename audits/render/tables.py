"""Dashboard tables cut from results: a result's cost in words, attribution quality measures,
any result's scalar fields, and per-group metrics with their intervals.

Figures are not here: every figure is a chart description (``audits.render.views``) drawn
with ``audits.render.plotly_backend.to_plotly``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from audits.results import Cost
from audits.results.attribution import AttributionResult


def cost_line(cost: Cost) -> str:
    """A result's cost in words: model calls, rows through the model, wall time."""
    return f"{cost.model_calls:,} model call{'s' if cost.model_calls != 1 else ''}, {cost.rows_evaluated:,} rows, {cost.wall_time_s:.2f} s"


def quality_table(result: AttributionResult, row: int | None = None) -> pd.DataFrame:
    """The result's quality measures (mean over samples, or sample ``row``'s value) as a table."""
    records = []
    for name, value in result.quality.items():
        arr = np.asarray(value)
        if arr.dtype.kind not in "fiub":
            continue
        if arr.ndim and row is not None and arr.shape[0] == len(result.sample_indices):
            records.append({"measure": name.replace("_", " "), "value": float(arr[row])})
        elif arr.size:
            records.append({"measure": name.replace("_", " "), "value": float(np.nanmean(arr.astype(np.float64)))})
    return pd.DataFrame(records, columns=["measure", "value"])


def scalar_fields(result) -> pd.DataFrame:
    """Any result as a table of its scalar fields and headline: the fallback view for unknown types."""
    records = []
    if dataclasses.is_dataclass(result):
        for f in dataclasses.fields(result):
            value = getattr(result, f.name)
            if isinstance(value, bool | int | float | str | np.integer | np.floating) and f.name != "method":
                records.append({"field": f.name.replace("_", " "), "value": str(value)})
        cost = getattr(result, "cost", None)
        if isinstance(cost, Cost):
            records.append({"field": "cost", "value": cost_line(cost)})
    headline = getattr(result, "headline", None)
    if callable(headline):
        text = headline()
        if text:
            records.insert(0, {"field": "headline", "value": text})
    return pd.DataFrame(records, columns=["field", "value"])


def interval_table(groups: pd.DataFrame, metrics: list[str], *, digits: int = 3) -> pd.DataFrame:
    """Per-group rows with each metric written as ``value [lo, hi]`` (NaN: '–').

    ``groups`` is a ``GroupMetricsResult.table(grouping)``: columns group, n, status and
    per metric ``<m>``, ``<m>_lo``, ``<m>_hi``.
    """

    def cell(v, lo, hi) -> str:
        if not np.isfinite(v):
            return "–"
        if np.isfinite(lo) and np.isfinite(hi):
            return f"{v:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"
        return f"{v:.{digits}f}"

    out = pd.DataFrame({"group": groups["group"].astype(str), "n": groups["n"].astype(int), "status": groups["status"].astype(str)})
    for m in metrics:
        if m not in groups:
            continue
        lo = groups.get(f"{m}_lo", pd.Series(np.nan, index=groups.index))
        hi = groups.get(f"{m}_hi", pd.Series(np.nan, index=groups.index))
        out[m.replace("_", " ")] = [cell(float(v), float(a), float(b)) for v, a, b in zip(groups[m], lo, hi, strict=True)]
    return out
