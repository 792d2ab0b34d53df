"""Interval statistics shared by probes, checks and views."""

from __future__ import annotations

import math


def wilson(p: float, n: int, ci: float = 0.95) -> list[float] | None:
    """Wilson score interval of a proportion ``p`` over ``n`` trials."""
    from scipy.stats import norm

    if not n or p is None:
        return None
    z = float(norm.ppf(0.5 + ci / 2))
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(max(p * (1 - p) / n + z * z / (4 * n * n), 0.0)) / denom
    return [max(0.0, centre - half), min(1.0, centre + half)]
