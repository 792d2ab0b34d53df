"""Bench B8 (scan overhead) runs on tiny budgets and reports its figures and its 5% check."""

from __future__ import annotations

from bench import run_cases
from bench.harness import Config


def test_b8_quick_reports_the_audits_time_and_the_overhead():
    (result,) = run_cases(["B8"], Config(quick=True, repeats=1, budget_s=1))
    assert result.case == "B8" and [c.target for c in result.checks] == ["scan overhead < 5% of the audits' own time"], result.notes
    audits, overhead = result.rows
    assert audits.wall_time_s > 0 and audits.model_calls > 0 and audits.total_units == 2
    assert overhead.quality["overhead_fraction"] == overhead.wall_time_s / audits.wall_time_s
    assert result.checks[0].value == overhead.quality["overhead_fraction"]
