"""Vectorized bootstrap of group metrics.

Every group metric the fairness audit reports is a function of a few counts and sums per
group (confusion counts, per-bin calibration sums, score sums). So instead of recomputing
each metric on each resample, we draw all resamples at once (row indices, as fairlearn's
``MetricFrame(n_boot=...)`` does: rows drawn with replacement from the whole set), collapse
each resample into those sufficient statistics per *finest cell* (the intersection of every
sensitive attribute) with one ``bincount`` and one sparse product per chunk of resamples,
and aggregate cells into any grouping with one tensor contraction. Metrics, disparities and
percentile intervals are then array arithmetic over all replicates together. Replicate 0
is always the original sample, so point estimates and intervals come from the same code.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse

# Drawn indices held at once (replicates x rows): bounds peak memory to ~64 MiB.
_CHUNK_ELEMENTS = 4_000_000

# selection_rate is the predicted prevalence (aequitas' pprev); base_rate the actual prevalence; "for" the false omission rate.
BINARY_METRICS = (
    "selection_rate", "base_rate", "accuracy", "tpr", "fpr", "fnr", "tnr", "precision", "npv", "fdr", "for", "mean_score", "calibration_error",
)  # fmt: skip
MULTICLASS_METRICS = ("accuracy", "error_rate", "balanced_accuracy", "mean_confidence", "calibration_error")
# +1: higher is better for the group; -1: lower is better; 0: neither (no "worst" group).
DIRECTION = {
    "selection_rate": 1,  # the favourable outcome
    "base_rate": 0,  # a property of the data, not of the decisions
    "accuracy": 1,
    "tpr": 1,
    "fpr": -1,
    "fnr": -1,
    "tnr": 1,
    "precision": 1,
    "npv": 1,
    "fdr": -1,
    "for": -1,
    "mean_score": 1,
    "calibration_error": -1,
    "error_rate": -1,
    "balanced_accuracy": 1,
    "mean_confidence": 0,
}


@dataclass(frozen=True)
class RowCodes:
    """What the bootstrap counts for each evaluation row.

    ``label``/``flag`` are (positive label, predicted positive) for binary tasks and
    (true class, prediction correct) for multiclass ones; ``bin`` is the row's equal-width
    confidence bin, as ``audits.performance.reliability_table`` assigns it.
    """

    cell: np.ndarray
    n_cells: int
    label: np.ndarray
    n_labels: int
    flag: np.ndarray
    correct: np.ndarray
    bin: np.ndarray
    n_bins: int
    confidence: np.ndarray
    score: np.ndarray

    def __len__(self) -> int:
        return len(self.cell)


def confidence_bins(confidence: np.ndarray, n_bins: int) -> np.ndarray:
    """Bin index of each confidence, exactly as ``reliability_table`` bins it."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, n_bins - 1)


def row_codes(proba: np.ndarray, y: np.ndarray, cell: np.ndarray, n_cells: int, *, positive_class: int | None, n_bins: int = 10) -> RowCodes:
    """Codes for a binary task (``positive_class`` set) or a multiclass one (None)."""
    pred = proba.argmax(axis=1)
    confidence = proba.max(axis=1).astype(np.float64)
    correct = (pred == y).astype(np.int64)
    if positive_class is not None:
        label = (y == positive_class).astype(np.int64)
        flag = (pred == positive_class).astype(np.int64)
        n_labels = 2
        score = proba[:, positive_class].astype(np.float64)
    else:
        label, flag, n_labels, score = y.astype(np.int64), correct, proba.shape[1], confidence
    return RowCodes(
        cell=np.asarray(cell, dtype=np.int64),
        n_cells=int(n_cells),
        label=label,
        n_labels=n_labels,
        flag=flag,
        correct=correct,
        bin=confidence_bins(confidence, n_bins),
        n_bins=n_bins,
        confidence=confidence,
        score=score,
    )


@dataclass(frozen=True)
class GroupStats:
    """Sufficient statistics per replicate (axis 0; 0 = the original sample) and group (axis 1).

    ``outcome[r, g, l, f]`` counts rows by label and flag; ``calibration[r, g, b, c]`` by
    confidence bin and correctness; ``confidence_sum[r, g, b]`` sums confidence per bin;
    ``score_sum[r, g]`` sums the score.
    """

    outcome: np.ndarray
    calibration: np.ndarray
    confidence_sum: np.ndarray
    score_sum: np.ndarray

    @property
    def n(self) -> np.ndarray:
        return self.outcome.sum(axis=(2, 3))

    def grouped(self, group_of_cell: np.ndarray, n_groups: int) -> GroupStats:
        """Cells summed into groups: ``group_of_cell[c]`` is cell c's group."""
        onehot = np.zeros((len(group_of_cell), n_groups))
        onehot[np.arange(len(group_of_cell)), group_of_cell] = 1.0
        return GroupStats(
            outcome=np.einsum("rc...,cg->rg...", self.outcome, onehot),
            calibration=np.einsum("rc...,cg->rg...", self.calibration, onehot),
            confidence_sum=np.einsum("rc...,cg->rg...", self.confidence_sum, onehot),
            score_sum=np.einsum("rc,cg->rg", self.score_sum, onehot),
        )


def _design(codes: RowCodes) -> sparse.csr_matrix:
    """(N, K) sparse map from rows to every statistic: four entries per row.

    Columns: outcome cells (cell, label, flag), calibration cells (cell, bin, correct), the
    per-(cell, bin) confidence sum and the per-cell score sum. A resample's statistics are
    then ``multiplicity @ design`` for its row multiplicities.
    """
    c, lab, b = codes.n_cells, codes.n_labels, codes.n_bins
    k_out, k_cal, k_conf = c * lab * 2, c * b * 2, c * b
    n = len(codes)
    cols = np.stack(
        [
            (codes.cell * lab + codes.label) * 2 + codes.flag,
            k_out + (codes.cell * b + codes.bin) * 2 + codes.correct,
            k_out + k_cal + codes.cell * b + codes.bin,
            k_out + k_cal + k_conf + codes.cell,
        ],
        axis=1,
    ).ravel()
    vals = np.stack([np.ones(n), np.ones(n), codes.confidence, codes.score], axis=1).ravel()
    return sparse.csr_matrix((vals, (np.repeat(np.arange(n), 4), cols)), shape=(n, k_out + k_cal + k_conf + c))


def uniform_draw(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """(size, n) row indices: ``size`` resamples of n rows drawn uniformly with replacement.

    Looked up at call time, so a test can replay fairlearn's own draws through it.
    """
    return rng.integers(0, n, size=(size, n))


def _multiplicities(idx: np.ndarray, n: int) -> np.ndarray:
    """(size, n) times each row is drawn, from (size, n) drawn indices, in one bincount."""
    size = len(idx)
    idx = idx + (np.arange(size) * n)[:, None]
    return np.bincount(idx.ravel(), minlength=size * n).reshape(size, n).astype(np.float64)


def bootstrap_statistics(codes: RowCodes, n_boot: int, rng: np.random.Generator) -> GroupStats:
    """Cell statistics of the original sample (replicate 0) and ``n_boot`` resamples.

    Each resample draws ``len(codes)`` row indices uniformly with replacement (as fairlearn's
    bootstrap does); a chunk of resamples is drawn in one call, turned into row
    multiplicities with one ``bincount``, and into statistics with one sparse product.
    """
    n = len(codes)
    design = _design(codes)
    parts = [np.asarray(design.sum(axis=0))]
    chunk = max(1, _CHUNK_ELEMENTS // max(n, 1))
    done = 0
    while done < n_boot:
        size = min(chunk, n_boot - done)
        parts.append(np.asarray(_multiplicities(uniform_draw(n, size, rng), n) @ design))
        done += size
    flat = np.concatenate(parts, axis=0)
    r, c, lab, b = len(flat), codes.n_cells, codes.n_labels, codes.n_bins
    cuts = np.cumsum([c * lab * 2, c * b * 2, c * b])
    outcome, calibration, confidence, score = np.split(flat, cuts, axis=1)
    return GroupStats(
        outcome=outcome.reshape(r, c, lab, 2),
        calibration=calibration.reshape(r, c, b, 2),
        confidence_sum=confidence.reshape(r, c, b),
        score_sum=score.reshape(r, c),
    )


def _div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, NaN where den is 0 (an undefined rate, not a rate of 0)."""
    out = np.full(np.broadcast(num, den).shape, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _calibration_error(stats: GroupStats, n: np.ndarray) -> np.ndarray:
    # ECE: count-weighted mean over bins of |accuracy - confidence| = sum_b |correct_b - conf_b| / n.
    return _div(np.abs(stats.calibration[..., 1] - stats.confidence_sum).sum(axis=-1), n)


def binary_metrics(stats: GroupStats) -> dict[str, np.ndarray]:
    """Every binary metric, (R, G) each, from outcome counts (label = positive, flag = predicted positive)."""
    o = stats.outcome
    tn, fp, fn, tp = o[..., 0, 0], o[..., 0, 1], o[..., 1, 0], o[..., 1, 1]
    n = stats.n
    return {
        "selection_rate": _div(tp + fp, n),
        "base_rate": _div(tp + fn, n),
        "accuracy": _div(tp + tn, n),
        "tpr": _div(tp, tp + fn),
        "fpr": _div(fp, fp + tn),
        "fnr": _div(fn, tp + fn),
        "tnr": _div(tn, fp + tn),
        "precision": _div(tp, tp + fp),
        "npv": _div(tn, tn + fn),
        "fdr": _div(fp, tp + fp),
        "for": _div(fn, tn + fn),
        "mean_score": _div(stats.score_sum, n),
        "calibration_error": _calibration_error(stats, n),
    }


def multiclass_metrics(stats: GroupStats) -> dict[str, np.ndarray]:
    """Accuracy, error rate, balanced accuracy (macro recall over the classes present), mean confidence, ECE."""
    o = stats.outcome  # (R, G, K, 2): true class x correct
    n = stats.n
    correct = o[..., 1].sum(axis=-1)
    support = o.sum(axis=-1)
    recall = _div(o[..., 1], support)
    present = support > 0
    balanced = _div(np.where(present, recall, 0.0).sum(axis=-1), present.sum(axis=-1).astype(np.float64))
    accuracy = _div(correct, n)
    return {
        "accuracy": accuracy,
        "error_rate": 1.0 - accuracy,
        "balanced_accuracy": balanced,
        "mean_confidence": _div(stats.score_sum, n),
        "calibration_error": _calibration_error(stats, n),
    }


@dataclass(frozen=True)
class Disparity:
    """Disparities of one metric, per replicate (R,); replicate 0 equals fairlearn's value.

    The groups compared are chosen on the original sample (replicate 0), as fairlearn's
    ``difference``/``ratio`` choose them, and then held fixed across resamples, so each
    interval is that of a *signed* gap between two named groups: with no real gap it covers
    0 (ratio: 1). Re-choosing the extremes in every resample, as fairlearn's
    ``difference_ci`` does, biases max - min upwards and never covers 0.
    """

    difference: np.ndarray  # high group - low group (point: max - min between groups)
    ratio: np.ndarray  # low group / high group (point: min / max)
    difference_to_overall: np.ndarray  # farthest group's deviation from overall, oriented (point: max |group - overall|)
    ratio_to_overall: np.ndarray  # (point: min over groups of min(group/overall, overall/group))
    high: int | None  # group with the highest value (None: fewer than two eligible groups)
    low: int | None
    farthest: int | None  # group farthest from overall


def _nan(r: int) -> np.ndarray:
    return np.full(r, np.nan)


def disparity(values: np.ndarray, overall: np.ndarray, eligible: np.ndarray) -> Disparity:
    """fairlearn's ``MetricFrame.difference``/``ratio`` (between_groups and to_overall), over replicates.

    ``values`` is (R, G), ``overall`` (R,), ``eligible`` (G,) marks groups with enough data.
    Fewer than two eligible groups with a defined value give NaN.
    """
    r = len(values)
    valid = eligible & np.isfinite(values[0])
    if valid.sum() < 2:
        return Disparity(difference=_nan(r), ratio=_nan(r), difference_to_overall=_nan(r), ratio_to_overall=_nan(r), high=None, low=None, farthest=None)
    idx = np.flatnonzero(valid)
    v0, o0 = values[0], overall[0]
    high, low = int(idx[np.argmax(v0[idx])]), int(idx[np.argmin(v0[idx])])
    far = int(idx[np.argmax(np.abs(v0[idx] - o0))])
    sign = 1.0 if v0[far] >= o0 else -1.0
    rel0 = _div(v0[idx], np.full(len(idx), o0))
    closest = np.where(rel0 > 1, _div(np.ones_like(rel0), rel0), rel0)
    if np.isfinite(closest).any():
        pick = int(idx[np.nanargmin(np.where(np.isfinite(closest), closest, np.nan))])
        below = v0[pick] <= o0
        ratio_overall = _div(values[:, pick], overall) if below else _div(overall, values[:, pick])
    else:
        ratio_overall = _nan(r)
    return Disparity(
        difference=values[:, high] - values[:, low],
        ratio=_div(values[:, low], values[:, high]),
        difference_to_overall=sign * (values[:, far] - overall),
        ratio_to_overall=ratio_overall,
        high=high,
        low=low,
        farthest=far,
    )


def percentile_interval(samples: np.ndarray, ci: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval over axis 0 (resamples), ignoring NaN; NaN where no resample is defined.

    Uses numpy's default (linear) quantile, as fairlearn's bootstrap does.
    """
    samples = np.asarray(samples, dtype=np.float64)
    tail = (1.0 - ci) / 2.0
    flat = samples.reshape(len(samples), -1)
    finite = np.isfinite(flat)
    lo = np.full(flat.shape[1], np.nan)
    hi = np.full(flat.shape[1], np.nan)
    full = finite.all(axis=0)  # the common case: one vectorized quantile call
    if full.any():
        lo[full], hi[full] = np.quantile(flat[:, full], [tail, 1.0 - tail], axis=0)
    partial = finite.any(axis=0) & ~full
    if partial.any():
        lo[partial], hi[partial] = np.nanquantile(np.where(finite[:, partial], flat[:, partial], np.nan), [tail, 1.0 - tail], axis=0)
    shape = samples.shape[1:]
    return lo.reshape(shape), hi.reshape(shape)
