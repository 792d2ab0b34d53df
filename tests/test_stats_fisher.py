"""Fisher's exact test in audits.stats: closed forms and agreement with scipy.stats.fisher_exact."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import fisher_exact

from audits.stats import fisher_exact_p


def test_closed_forms():
    # Identical margins with the same split: every table is at most as likely as the observed one.
    assert fisher_exact_p(5, 10, 5, 10) == pytest.approx(1.0)
    # 3/3 against 0/3: the observed table and its mirror are the two least likely of the 4: 2 * 1/C(6,3).
    assert fisher_exact_p(3, 3, 0, 3) == pytest.approx(2 / math.comb(6, 3), rel=1e-12)
    # No trials on one side: no test.
    assert math.isnan(fisher_exact_p(0, 0, 1, 2))


def test_equals_scipy_on_random_and_extreme_tables():
    rng = np.random.default_rng(0)
    cases = [(0, 1, 0, 1), (0, 100, 100, 100), (500, 5000, 800, 11000), (7000, 8000, 9000, 10000), (1, 16000, 0, 281)]
    for _ in range(200):
        n1, n2 = (int(v) for v in rng.integers(1, 3000, 2))
        cases.append((int(rng.integers(0, n1 + 1)), n1, int(rng.integers(0, n2 + 1)), n2))
    for k1, n1, k2, n2 in cases:
        expected = fisher_exact([[k1, n1 - k1], [k2, n2 - k2]]).pvalue
        assert fisher_exact_p(k1, n1, k2, n2) == pytest.approx(expected, rel=1e-9, abs=1e-300), (k1, n1, k2, n2)
