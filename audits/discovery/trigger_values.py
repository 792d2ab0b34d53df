"""Trigger scan (tabular): single feature values that, set on rows of the other classes, force one outcome.

A model that learned one value as the cue for a class (an account flag, a code that leaked
the label, a rare category) predicts that class whenever the value appears, whatever the rest
of the row says. The scan sets each raw feature, one at a time, to each of its candidate
values (every categorical level; numeric features at a few quantiles, the extremes included)
on a seeded subset of rows, all in large batches, and measures per (feature, value, class)
the share of rows not predicted as the class before that are predicted as it after. A feature
that drives the model in a graded way moves predictions step by step over its quantiles; a
trigger is a value that stands out from the feature's other values (its neighbouring
quantiles, or its other levels) and from what a typical value does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import numpy as np
import pandas as pd

from audits.probes import Probe, RunContext, register
from audits.results.discovery import TriggerValuesResult
from audits.stats import wilson_interval
from models.card import CategoricalFeature

if TYPE_CHECKING:
    from audits.data import AuditData
    from models.loader import ModelHandle


@register
class TriggerValues(Probe):
    """Single feature values that force one class (tabular models).

    Parameters
    ----------
    max_rows : int
        Rows the values are set on (a seeded random subset when there are more; the default covers most evaluation
        sets whole, so the scan does not move with the seed).
    quantiles : list of float
        Quantiles of each numeric feature tried as values (the extremes as the outer ones).
    max_levels : int
        Categorical features with more levels try only the most frequent ones.
    """

    name: ClassVar[str] = "trigger_values"
    result_type: ClassVar = TriggerValuesResult
    category: ClassVar = "robustness"
    modalities: ClassVar = ("tabular",)
    default_for: ClassVar = ("tabular",)
    title: ClassVar[str] = "Trigger scan (tabular)"
    description: ClassVar[str] = (
        "Sets each feature, one at a time, to each categorical level or numeric quantile on rows of the other classes: "
        "which single values force one outcome regardless of the rest of the row."
    )

    def __init__(self, *, max_rows: int = 20_000, quantiles: tuple[float, ...] = (0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99), max_levels: int = 50) -> None:
        if max_rows < 1 or max_levels < 1:
            raise ValueError("max_rows and max_levels must be at least 1")
        if not quantiles or not all(0.0 <= q <= 1.0 for q in quantiles):
            raise ValueError(f"quantiles must lie in [0, 1], got {quantiles}")
        self.max_rows = max_rows
        self.quantiles = sorted(float(q) for q in quantiles)
        self.max_levels = max_levels

    def check(self, model: ModelHandle, data: AuditData) -> str | None:
        reason = super().check(model, data)
        if reason is None and (model.encoder is None or data.raw is None):
            reason = "the model declares no tabular encoder for raw features"
        return reason

    def _run(self, model: ModelHandle, data: AuditData, context: RunContext) -> TriggerValuesResult:
        rows = np.arange(len(data))
        if len(rows) > self.max_rows:
            rows = np.sort(context.rng(self.name).choice(len(rows), size=self.max_rows, replace=False))
        x, orig, raw = data.x[rows], context.predictions[rows], data.raw.iloc[rows].reset_index(drop=True)
        candidates = []  # (feature, value label, sort position for numerics or None, encoded columns, encoded values)
        for f, cols in zip(model.encoder.spec.features, model.encoder.groups, strict=True):
            if isinstance(f, CategoricalFeature):
                counts = raw[f.name].astype("string").value_counts()
                levels = [lv for lv in f.levels if lv in counts.index]
                levels = sorted(levels, key=lambda lv: -counts[lv])[: self.max_levels]
                values = [(lv, None, lv) for lv in levels]
            else:
                col = pd.to_numeric(raw[f.name], errors="coerce").dropna()
                if col.empty:
                    continue
                qs = np.unique(np.quantile(col.to_numpy(dtype=np.float64), self.quantiles))
                values = [(f"{v:.6g}", k, float(v)) for k, v in enumerate(qs)]
            candidates += [(f.name, label, pos, cols, value) for label, pos, value in values]
        # Every candidate's encoded block from one encode of one row per candidate (row 0 with the
        # candidate's value set; the encoding is row by row), not one pandas encode per candidate.
        if candidates:
            settings = raw.iloc[np.zeros(len(candidates), dtype=np.int64)].reset_index(drop=True)
            for name in dict.fromkeys(c[0] for c in candidates):
                which = [k for k, c in enumerate(candidates) if c[0] == name]
                column = settings[name].astype(object)
                column.iloc[which] = [candidates[k][4] for k in which]
                settings[name] = column
            encoded = model.encoder.encode(settings)
            candidates = [(name, label, pos, cols, encoded[k, cols]) for k, (name, label, pos, cols, _) in enumerate(candidates)]
        # A row whose encoded block already holds the candidate's value is unchanged by setting it:
        # its prediction stays the original one, so only the other (candidate, row) pairs go
        # through the model, packed into calls of about 4M encoded values.
        new = np.repeat(orig[None].astype(np.int64), len(candidates), axis=0)
        todo = [np.flatnonzero(~(x[:, cols] == enc).all(axis=1)) for _, _, _, cols, enc in candidates]
        per_call = max(1, 2**22 // max(x.shape[1], 1))  # rows per model call
        k, buffer = 0, np.empty((0, *x.shape[1:]), dtype=x.dtype)
        while k < len(candidates):
            chunk, size = [], 0
            while k < len(candidates) and (not chunk or size + len(todo[k]) <= per_call):
                chunk.append(k)
                size += len(todo[k])
                k += 1
            if size:
                if len(buffer) < size:
                    buffer = np.empty((size, *x.shape[1:]), dtype=x.dtype)
                start = 0
                for j in chunk:  # gathered straight into one reused buffer
                    part = buffer[start : start + len(todo[j])]
                    np.take(x, todo[j], axis=0, out=part)
                    part[:, candidates[j][3]] = candidates[j][4]
                    start += len(todo[j])
                predicted = model.predict_proba(buffer[:size]).argmax(axis=1)
                start = 0
                for j in chunk:
                    new[j, todo[j]] = predicted[start : start + len(todo[j])]
                    start += len(todo[j])
            context.report(k / max(len(candidates), 1), "values")
        out = []
        for target in range(model.n_classes):
            before = orig != target
            n = int(before.sum())
            if n == 0:
                continue
            rates = (new[:, before] == target).mean(axis=1) if len(candidates) else np.zeros(0)
            lo, hi = wilson_interval(rates * n, n)
            typical = float(np.median(rates)) if len(rates) else 0.0
            for k, (feature, label, pos, _, _) in enumerate(candidates):
                same = [j for j, c in enumerate(candidates) if c[0] == feature and j != k]
                if pos is not None:  # numeric: the neighbouring quantiles only (a graded driver moves step by step)
                    same = [j for j in same if abs(candidates[j][2] - pos) == 1]
                reference = max([typical, *(float(rates[j]) for j in same)])
                out.append({
                    "feature": feature, "value": label, "target": data.class_names[target], "n": n, "flip_rate": float(rates[k]),
                    "lo": float(lo[k]), "hi": float(hi[k]), "typical": typical, "reference": reference, "excess": float(rates[k]) - reference,
                })  # fmt: skip
        values = pd.DataFrame(out)
        examples: list[int] = []
        if len(values):
            top = values.loc[values["excess"].idxmax()]
            k = next(j for j, c in enumerate(candidates) if c[0] == top["feature"] and c[1] == top["value"])
            t = data.class_names.index(top["target"])
            examples = [int(r) for r in rows[(orig != t) & (new[k] == t)][:5]]
        return TriggerValuesResult(
            method=self.name, params=self.params, seed=context.seed, n_rows=len(rows), values=values, examples=examples,
        )  # fmt: skip
