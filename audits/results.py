"""Result types shared by every probe: cost accounting, skips and failures."""

from __future__ import annotations

from dataclasses import dataclass, field

from audits.serialization import serializable


@serializable
@dataclass(frozen=True, kw_only=True)
class Cost:
    """What a probe spent: model forward calls, rows through the model, wall time."""

    model_calls: int = 0
    rows_evaluated: int = 0
    wall_time_s: float = 0.0


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
