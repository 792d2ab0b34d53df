"""The report's verdict vocabulary: findings, their statuses and severities, and the verdict.

Computed once here and used by the CLI, the store and the documents alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from audits.serialization import serializable

Status = Literal["pass", "warn", "fail", "not_evaluated"]
STATUSES: tuple[str, ...] = ("pass", "warn", "fail", "not_evaluated")
# How bad a status is, for verdicts and regressions (not evaluated is not ranked).
SEVERITY = {"pass": 0, "warn": 1, "fail": 2}


@serializable
@dataclass(frozen=True, kw_only=True)
class Finding:
    """One check of the policy against one subject of the report.

    ``measured`` must be >= ``threshold`` when ``direction`` is 'min', <= when 'max';
    ``interval`` is the measurement's confidence interval [lo, hi] where the report has one.
    ``evidence`` points into the report as a JSON-path-like string (e.g.
    ``fairness[0].four_fifths[grouping=sex]``) and ``section`` is the anchor of the
    report section that shows it.
    """

    check_id: str
    check: str
    title: str
    subject: str = ""
    status: str
    measured: float | None = None
    threshold: float
    warn_threshold: float | None = None
    direction: str  # 'min' or 'max'
    interval: list[float] | None = None
    evidence: str = ""
    section: str = ""
    detail: str = ""

    @property
    def key(self) -> str:
        """Identity across reports (for diffs): the check and its subject."""
        return f"{self.check_id}/{self.subject}" if self.subject else self.check_id


def status_counts(findings: list[Finding]) -> dict[str, int]:
    return {s: sum(f.status == s for f in findings) for s in STATUSES}


def overall_verdict(findings: list[Finding]) -> str:
    """'fail' if any finding fails, else 'warn' if any warns, 'pass' if any passes, else 'not_evaluated'."""
    ranked = [SEVERITY[f.status] for f in findings if f.status in SEVERITY]
    if not ranked:
        return "not_evaluated"
    return {0: "pass", 1: "warn", 2: "fail"}[max(ranked)]
