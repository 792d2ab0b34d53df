"""Typed, serializable result objects of every probe, importing numpy and pandas only.

This package never imports torch or a probe module: loading and rendering a report
needs only these classes. Results are grouped by family (base, attribution,
robustness, fairness, ...); each result says what it measured through
:meth:`ProbeResult.measurements`.
"""

from __future__ import annotations

from audits.results.base import Cost, Measurement, ProbeFailure, ProbeResult, SkippedProbe

__all__ = ["Cost", "Measurement", "ProbeFailure", "ProbeResult", "SkippedProbe"]
