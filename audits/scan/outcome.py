"""What one model's scan produced: its report or its error, its run record, regressions and alerts."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from audits.report import AuditReport

FailOn = Literal["fail", "warn", "never"]
EXIT_PASS = 0
EXIT_POLICY = 1
EXIT_BAD_INPUT = 2
EXIT_CRASH = 3


def utcnow() -> datetime:
    """The scan's clock (one function, so a test can move the scheduler's and the runs' time together)."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class AuditOutcome:
    """The result of auditing one target: a report, or the error that stopped the audit."""

    model_name: str
    started_at: datetime
    ended_at: datetime
    report: AuditReport | None = None
    error: str | None = None

    @property
    def crashed(self) -> bool:
        """True when the audit raised instead of producing a report."""
        return self.report is None

    @property
    def audit_seconds(self) -> float:
        """Wall time of the audit (load, run, policy)."""
        return (self.ended_at - self.started_at).total_seconds()


@dataclass(frozen=True)
class AlertDelivery:
    """One webhook delivery: where, whether it was accepted, after how many attempts, and why not."""

    target: str
    ok: bool
    attempts: int
    error: str | None = None


@dataclass(frozen=True)
class ModelScan:
    """One model's part of a scan: the audit outcome, its stored run id, regressions and alerts."""

    outcome: AuditOutcome
    run_id: str
    regressions: list[dict] = field(default_factory=list)
    alerts: list[AlertDelivery] = field(default_factory=list)

    @property
    def model_name(self) -> str:
        """The audited model's name."""
        return self.outcome.model_name

    @property
    def verdict(self) -> str:
        """'pass', 'warn', 'fail', 'not_evaluated', or 'crashed' when the audit did not finish."""
        if self.outcome.report is None:
            return "crashed"
        from audits.findings import overall_verdict  # here, not at the top: `audits --help` imports this module

        return overall_verdict(self.outcome.report.findings)


@dataclass(frozen=True)
class ScanResult:
    """Every model's scan of one plan, in plan order."""

    plan: str
    models: list[ModelScan]
    started_at: datetime
    ended_at: datetime

    def exit_code(self, fail_on: FailOn = "fail") -> int:
        """3 when an audit crashed, else 1 when a verdict fails (or warns with ``fail_on='warn'``), else 0."""
        return exit_code_for([m.verdict for m in self.models], fail_on)


def exit_code_for(verdicts: list[str], fail_on: FailOn = "fail") -> int:
    """The CI exit code for verdicts: crashes (3) outrank policy failures (1)."""
    if "crashed" in verdicts:
        return EXIT_CRASH
    failing = {"fail": {"fail"}, "warn": {"fail", "warn"}, "never": set()}[fail_on]
    return EXIT_POLICY if failing.intersection(verdicts) else EXIT_PASS
