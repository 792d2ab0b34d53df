"""Slice discovery: slices of the evaluation data where the model errs significantly more than overall.

Every column of the evaluation data is a candidate, declared sensitive or not: the raw
input columns of tabular models and every attribute column. Numeric columns with many
values are binned by quantiles; slices are single values or bins and pairs of them.
Each slice of at least ``min_size`` rows is tested with a one-sided binomial test against
the overall error rate, and the p-values of all tested slices are controlled for false
discoveries with Benjamini-Hochberg. No model call is made: the errors come from the
audit's shared forward pass, so the result does not depend on the seed.
"""

from __future__ import annotations

from itertools import combinations
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import pandas as pd

from audits.probes import Probe, RunContext, register
from audits.results.discovery import SliceDiscoveryResult
from audits.stats import benjamini_hochberg as benjamini_hochberg  # re-exported: one BH for the project
from audits.stats import wilson_interval

if TYPE_CHECKING:
    from audits.data import AuditData
    from models.loader import ModelHandle


def slice_columns(data: AuditData, n_bins: int) -> pd.DataFrame:
    """Every column of the evaluation data as slice labels (numeric columns with many values binned by quantiles)."""
    frames = [data.raw] if data.modality == "tabular" and data.raw is not None else []
    frames.append(data.attributes)
    columns: dict[str, pd.Series] = {}
    for frame in frames:
        for name in frame.columns:
            if name in columns:
                continue
            col = frame[name].reset_index(drop=True)
            if pd.api.types.is_numeric_dtype(col) and col.nunique() > n_bins:
                bins = pd.qcut(col, q=n_bins, duplicates="drop")
                # Each bin's label spelled once, then looked up per row (astype(str) spells every row's interval).
                spelled = np.asarray(bins.cat.categories.astype(str), dtype=object)[bins.cat.codes.to_numpy()]
                columns[name] = pd.Series(spelled, dtype="str").where(col.notna(), "missing")
            else:
                columns[name] = col.astype(str).where(col.notna(), "missing")
    return pd.DataFrame(columns)


def _has_columns(data: AuditData) -> bool:
    """Whether ``slice_columns`` would return any column (without binning and spelling them)."""
    return bool(len(data.attributes.columns)) or (data.modality == "tabular" and data.raw is not None and bool(len(data.raw.columns)))


@register
class SliceDiscovery(Probe):
    """Slices whose error rate is significantly above the overall one (every column, and pairs).

    Parameters
    ----------
    min_size : int or None
        Smallest slice tested (rows); None: 1% of the rows, at least 30 (smaller slices cannot show a reliable error rate).
    n_bins : int
        Quantile bins for numeric columns with more distinct values than this.
    pairs : bool
        Also test slices defined by two columns.
    fdr : float
        False discovery rate of the Benjamini-Hochberg control.
    max_reported : int
        Significant slices kept in the result (worst error rate first).
    """

    name: ClassVar[str] = "slice_discovery"
    result_type: ClassVar = SliceDiscoveryResult
    category: ClassVar = "fairness"
    needs_model: ClassVar[bool] = False  # reads the shared pass (or the data) only
    modalities: ClassVar = ("image", "tabular", "text")
    default_for: ClassVar = ("image", "tabular", "text")
    title: ClassVar[str] = "Slice discovery"
    description: ClassVar[str] = "Slices of any column (and pairs) whose error rate is significantly above overall, Benjamini-Hochberg controlled."

    def __init__(self, min_size: int | None = None, n_bins: int = 5, pairs: bool = True, fdr: float = 0.05, max_reported: int = 10) -> None:
        self.min_size = min_size
        self.n_bins = n_bins
        self.pairs = pairs
        self.fdr = fdr
        self.max_reported = max_reported

    def check(self, model: ModelHandle, data: AuditData) -> str | None:
        reason = super().check(model, data)
        if reason is None and not _has_columns(data):
            return "the evaluation data has no columns to slice by (give attribute columns in the model card's data section)"
        return reason

    def _run(self, model: ModelHandle, data: AuditData, context: RunContext) -> SliceDiscoveryResult:
        from scipy.stats import binom

        labels = slice_columns(data, self.n_bins)
        wrong = (context.predictions != data.y).astype(np.int64)
        n, overall = len(wrong), float(wrong.mean()) if len(wrong) else 0.0
        min_size = self.min_size if self.min_size is not None else max(30, n // 100)
        keys = [(c,) for c in labels.columns]
        if self.pairs:
            keys += list(combinations(labels.columns, 2))
        rows = []
        for cols in keys:
            grouped = pd.DataFrame({"wrong": wrong, **{c: labels[c] for c in cols}}).groupby(list(cols), sort=True, observed=True)["wrong"]
            stats = grouped.agg(["size", "sum"])
            for values, (size, errors) in zip(stats.index, stats.to_numpy(), strict=True):
                if size < min_size:
                    continue
                values = values if isinstance(values, tuple) else (values,)
                rows.append({"slice": " & ".join(f"{c}={v}" for c, v in zip(cols, values, strict=True)), "columns": " & ".join(cols),
                             "size": int(size), "errors": int(errors), "_cols": cols, "_values": values})  # fmt: skip
        table = pd.DataFrame(rows, columns=["slice", "columns", "size", "errors", "_cols", "_values"])
        if len(table):
            table["error_rate"] = table["errors"] / table["size"]
            lo, hi = wilson_interval(table["errors"].to_numpy(), table["size"].to_numpy())
            table["lo"], table["hi"] = lo, hi
            table["p_value"] = binom.sf(table["errors"].to_numpy() - 1, table["size"].to_numpy(), overall) if 0 < overall < 1 else 1.0
            table["q_value"] = benjamini_hochberg(table["p_value"].to_numpy())
            table["significant"] = (table["q_value"] < self.fdr) & (table["error_rate"] > overall)
            table = table.sort_values(["significant", "error_rate", "size"], ascending=[False, False, False]).reset_index(drop=True)
            n_tested = len(table)
            keep = table[table["significant"]].head(self.max_reported)
            table = pd.concat([keep, table[~table["significant"]].head(self.max_reported)], ignore_index=True)
            table["examples"] = [self._examples(labels, wrong, cols, values) for cols, values in zip(table["_cols"], table["_values"], strict=True)]
        else:
            n_tested = 0
            table = table.assign(error_rate=[], lo=[], hi=[], p_value=[], q_value=[], significant=[], examples=[])
        table = table.drop(columns=["_cols", "_values"])
        return SliceDiscoveryResult(
            method=self.name, params=self.params, seed=context.seed, n_rows=n, overall_error=overall, min_size=min_size, fdr=self.fdr,
            n_tested=n_tested, slices=table,
        )  # fmt: skip

    @staticmethod
    def _examples(labels: pd.DataFrame, wrong: np.ndarray, cols: tuple, values: tuple, k: int = 5) -> str:
        mask = wrong.astype(bool)
        for c, v in zip(cols, values, strict=True):
            mask &= (labels[c] == v).to_numpy()
        return ",".join(str(i) for i in np.flatnonzero(mask)[:k])
