"""Result types shared by every probe: cost accounting, measurements, skips and failures."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

from audits.serialization import serializable


@serializable
@dataclass(frozen=True, kw_only=True)
class Cost:
    """What a probe spent: model forward calls, rows through the model, wall time."""

    model_calls: int = 0
    rows_evaluated: int = 0
    wall_time_s: float = 0.0
    batch_fallbacks: int = 0  # batches halved after an out-of-memory error (ModelHandle.map_batches)


Direction = Literal["higher_is_better", "lower_is_better", "neutral"]


@serializable
@dataclass(frozen=True, kw_only=True)
class Measurement:
    """One number a result measured, addressable across reports.

    ``name`` says what was measured (``accuracy``, ``robust_accuracy``,
    ``tpr_difference``), ``subject`` what it was measured on (``pgd/linf/eps=0.0314``,
    ``sex``, ``class=3``; empty for the whole model), ``interval`` its confidence
    interval [lo, hi] where the result has one, ``direction`` which way is better, and
    ``evidence`` a JSON-path-like pointer into the result (``.curve[epsilon=0.0314]``;
    the report prefixes the result's own location, e.g. ``robustness[1]``).
    Policy checks and diffs read these, so a new result type becomes checkable and
    diffable by yielding measurements, without code in the policy or the diff.
    """

    name: str
    subject: str = ""
    value: float | None
    interval: list[float] | None = None
    direction: Direction = "neutral"
    evidence: str = ""
    n: int | None = None  # rows the measurement rests on, where it has a count

    @property
    def key(self) -> str:
        """Identity across reports: name and subject."""
        return f"{self.name}/{self.subject}" if self.subject else self.name


@serializable
@dataclass(frozen=True, kw_only=True)
class ProbeResult:
    """Fields every probe result carries; subclasses add their findings."""

    method: str
    params: dict = field(default_factory=dict)
    seed: int = 0
    cost: Cost = field(default_factory=Cost)

    def headline(self) -> str:
        """One line of the key figures, for terminal summaries; subclasses override."""
        return ""

    def measurements(self) -> Iterator[Measurement]:
        """What this result measured; subclasses yield their measurements."""
        return iter(())


@serializable
@dataclass(frozen=True, kw_only=True)
class SkippedProbe:
    """A selected probe that does not apply to this model or data, and why."""

    name: str
    reason: str


@serializable
@dataclass(frozen=True, kw_only=True)
class ProbeFailure:
    """A probe that raised; the audit goes on without it."""

    name: str
    error: str
    fix: str = ""


def number(x: float) -> str:
    """A parameter value as it appears in a measurement subject (``eps=0.03137254902``).

    Ten significant digits: checks parse subjects back (e.g. to interpolate a sweep), and
    fewer would move interpolated values in the seventh digit.
    """
    return f"{float(x):.10g}"


def finite(x) -> float | None:
    """``x`` as a float, or None when it is missing, NaN or infinite (a measurement without a value)."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def bounds(lo, hi) -> list[float] | None:
    """[lo, hi] when both are finite, else None."""
    lo, hi = finite(lo), finite(hi)
    return None if lo is None or hi is None else [lo, hi]


def proportion(name: str, value, n, *, subject: str = "", direction: Direction = "higher_is_better", evidence: str = "") -> Measurement:
    """A measured share of ``n`` rows, with its 95% Wilson interval (the value None when it is not finite)."""
    from audits.stats import wilson

    v = finite(value)
    n = None if n is None else int(n)
    return Measurement(name=name, subject=subject, value=v, interval=wilson(v, n) if v is not None and n else None, direction=direction, evidence=evidence, n=n)
