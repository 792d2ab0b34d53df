"""Interval statistics shared by probes, checks and views."""

from __future__ import annotations

from statistics import NormalDist

import numpy as np


def wilson_interval(k, n, ci: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for ``k`` successes in ``n`` trials, elementwise (NaN where n = 0).

    The bounds are exactly 0 when k = 0 and exactly 1 when k = n (the formula gives them
    only up to rounding, e.g. 3e-18, which would read as "not quite zero" in a report).
    """
    k, n = np.asarray(k, dtype=np.float64), np.asarray(n, dtype=np.float64)
    z = NormalDist().inv_cdf(0.5 + ci / 2.0)  # the standard library's quantile: importing scipy.stats for it cost 0.8 s of a re-render
    safe = np.maximum(n, 1.0)
    p = k / safe
    denom = 1.0 + z * z / safe
    centre = (p + z * z / (2 * safe)) / denom
    half = z * np.sqrt(np.maximum(p * (1 - p) / safe + z * z / (4 * safe * safe), 0.0)) / denom
    lo = np.where(k <= 0, 0.0, np.clip(centre - half, 0.0, 1.0))
    hi = np.where(k >= n, 1.0, np.clip(centre + half, 0.0, 1.0))
    return np.where(n > 0, lo, np.nan), np.where(n > 0, hi, np.nan)


def wilson(p: float | None, n: int | None, ci: float = 0.95) -> list[float] | None:
    """Wilson score interval [lo, hi] of a proportion ``p`` over ``n`` trials; None without trials or a value."""
    if not n or p is None or not np.isfinite(p):
        return None
    lo, hi = wilson_interval(float(p) * n, n, ci)
    return [float(lo), float(hi)]


def benjamini_hochberg(p_values) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q-values), elementwise; NaN p-values stay NaN and are not counted."""
    p = np.asarray(p_values, dtype=np.float64)
    q = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    if len(ok) == 0:
        return q
    order = ok[np.argsort(p[ok], kind="stable")]
    m = len(order)
    scaled = p[order] * m / np.arange(1, m + 1)
    q[order] = np.minimum(np.minimum.accumulate(scaled[::-1])[::-1], 1.0)
    return q


def fisher_exact_p(k1, n1, k2, n2) -> float:
    """Two-sided Fisher exact test p-value that k1/n1 and k2/n2 are the same proportion (NaN without trials)."""
    if n1 <= 0 or n2 <= 0:
        return float("nan")
    from scipy.special import gammaln  # scipy.special, not scipy.stats (~0.8 s at import)

    k1, n1, k2, n2 = int(k1), int(n1), int(k2), int(n2)
    # The hypergeometric law of the first cell given the margins, over its whole support at once
    # (scipy.stats.fisher_exact takes ~3 ms a call; group_metrics makes hundreds). The p-value sums
    # every table no more likely than the observed one, with scipy's relative tolerance of 1e-7.
    k, n = k1 + k2, n1 + n2
    x = np.arange(max(0, k - n2), min(k, n1) + 1, dtype=np.float64)
    log_pmf = _log_comb(n1, x, gammaln) + _log_comb(n2, k - x, gammaln) - _log_comb(n, np.float64(k), gammaln)
    observed = log_pmf[k1 - max(0, k - n2)]
    return float(min(1.0, np.exp(log_pmf[log_pmf <= observed + np.log1p(1e-7)]).sum()))


def _log_comb(n, k, gammaln):
    """log(n choose k), elementwise."""
    return gammaln(n + 1.0) - gammaln(k + 1.0) - gammaln(n - k + 1.0)


def auroc(positive, negative) -> float:
    """Area under the ROC curve: the chance that a random ``positive`` score exceeds a random ``negative`` one (ties count half).

    NaN when either side is empty. Computed from midranks (the Mann-Whitney statistic), O(n log n).
    """
    pos, neg = np.asarray(positive, dtype=np.float64).ravel(), np.asarray(negative, dtype=np.float64).ravel()
    n1, n0 = len(pos), len(neg)
    if not n1 or not n0:
        return float("nan")
    scores = np.concatenate([pos, neg])
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(len(scores))
    # midranks: tied scores share the mean of their positions
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    mid = first + (counts - 1) / 2.0 + 1.0
    ranks[order] = np.repeat(mid, counts)
    return float((ranks[:n1].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))


def auroc_interval(auc: float, n_positive: int, n_negative: int, ci: float = 0.95) -> list[float] | None:
    """Hanley and McNeil's (1982) normal interval [lo, hi] of an AUROC from ``n_positive`` and ``n_negative`` scores, clipped to [0, 1]."""
    if not np.isfinite(auc) or n_positive < 1 or n_negative < 1:
        return None
    a = float(auc)
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    var = (a * (1 - a) + (n_positive - 1) * (q1 - a * a) + (n_negative - 1) * (q2 - a * a)) / (n_positive * n_negative)
    # at AUC 0 or 1 the formula's variance vanishes; keep the width one extra observation would give
    var = max(var, 0.25 / (n_positive * n_negative))
    z = NormalDist().inv_cdf(0.5 + ci / 2.0)
    half = z * float(np.sqrt(var))
    return [max(0.0, a - half), min(1.0, a + half)]


def tpr_at_fpr(positive, negative, fpr: float) -> tuple[float, float]:
    """True-positive rate at the threshold whose false-positive rate on ``negative`` is at most ``fpr``.

    The threshold is the smallest score that at most ``floor(fpr * n_negative)`` negatives exceed;
    a positive counts when its score is strictly above it. Returns (tpr, the false-positive rate
    achieved), NaN when either side is empty. With fewer than ``1 / fpr`` negatives the achieved rate
    is 0: the data cannot resolve the target, which the achieved rate makes visible.
    """
    pos, neg = np.asarray(positive, dtype=np.float64).ravel(), np.asarray(negative, dtype=np.float64).ravel()
    if not len(pos) or not len(neg):
        return float("nan"), float("nan")
    k = int(np.floor(fpr * len(neg) + 1e-9))
    ordered = np.sort(neg)[::-1]
    threshold = ordered[k] if k < len(ordered) else -np.inf
    return float((pos > threshold).mean()), float((neg > threshold).mean())
