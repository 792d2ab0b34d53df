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
    from scipy.stats import fisher_exact  # imported here: scipy.stats costs ~0.8 s at import

    return float(fisher_exact([[int(k1), int(n1 - k1)], [int(k2), int(n2 - k2)]]).pvalue)
