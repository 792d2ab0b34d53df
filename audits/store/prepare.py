"""A run made ready for the store: its record fields, canonical report JSON and child rows, before the chain is touched.

Preparing (serialising the report, hashing rendered files) happens outside the write lock,
so a second writer waits only for the append itself.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from audits.store.records import STATUSES, StoreError, canonical_json, finite_or_none

if TYPE_CHECKING:
    from audits.report import AuditReport


@dataclass
class PreparedRun:
    """One run's rows as they will be stored (content hashes and the link are added when it is appended)."""

    row: dict
    report_json: str | None
    findings: list[dict] = field(default_factory=list)
    measurements: list[dict] = field(default_factory=list)
    files: list[dict] = field(default_factory=list)


def iso_utc(moment: datetime) -> str:
    """A time as stored: UTC ISO 8601 with microseconds (a naive time is the machine's local time)."""
    if moment.tzinfo is None:
        moment = moment.astimezone()
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def file_sha256(path: Path) -> str | None:
    """The sha256 of a file's bytes, None when it cannot be read."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()


def _tool_version(report: AuditReport | None) -> str:
    from audits import __version__

    if report is not None:
        return str(report.provenance.library_versions.get("audits") or __version__)
    return __version__


def prepare_run(
    report: AuditReport | None,
    *,
    model_name: str,
    plan: str | None,
    started_at: datetime,
    ended_at: datetime,
    user: str,
    status: str = "completed",
    error: str | None = None,
    files: dict[str, Path] | None = None,
) -> PreparedRun:
    """The rows of one run (see :meth:`audits.store.Store.record_run` for the arguments)."""
    from audits.findings import overall_verdict

    if status not in STATUSES:
        raise StoreError(f"Run status {status!r} is not one of {', '.join(STATUSES)}.", fix="Record 'completed' or 'crashed'.")
    if report is not None and report.provenance.model_name != model_name:
        raise StoreError(f"The report audits {report.provenance.model_name!r}, not {model_name!r}.", fix="Record the run under the report's model name.")
    file_rows = []
    for name, path in sorted((files or {}).items()):
        path = Path(path).resolve()
        digest = file_sha256(path)
        if digest is None:
            raise StoreError(f"The rendered file {path} ({name}) cannot be read.", fix="Record only files that exist.")
        file_rows.append({"name": name, "path": str(path), "sha256": digest})
    p = None if report is None else report.provenance
    row = {
        "run_id": report.report_id if report is not None else uuid.uuid4().hex[:12],
        "model_name": model_name,
        "plan": plan,
        "started_at": iso_utc(started_at),
        "ended_at": iso_utc(ended_at),
        "user": user,
        "tool_version": _tool_version(report),
        "seed": None if p is None else int(p.seed),
        "weights_sha256": None if p is None else p.weights_sha256,
        "data_sha256": None if p is None else p.data_sha256,
        "spec_json": canonical_json({} if p is None else p.spec).decode("utf-8"),
        "policy_name": None if report is None or not report.policy else str(report.policy.get("name") or "") or None,
        # The verdict is the findings' own (never recomputed here); a run without a report has none.
        "verdict": "not_evaluated" if report is None else overall_verdict(report.findings),
        "status": status,
        "error": error,
    }
    return PreparedRun(
        row=row,
        report_json=None if report is None else canonical_json(report.to_dict()).decode("utf-8"),
        findings=[] if report is None else [finding_row(i, f) for i, f in enumerate(report.findings)],
        measurements=[] if report is None else [measurement_row(i, m) for i, m in enumerate(report.measurements())],
        files=file_rows,
    )


def finding_row(position: int, f) -> dict:
    """A :class:`~audits.findings.Finding` as a ``findings`` row (non-finite numbers as NULL)."""
    lo, hi = (f.interval[0], f.interval[1]) if f.interval else (None, None)
    return {
        "position": position,
        "check_id": f.check_id,
        "subject": f.subject or "",
        "title": f.title,
        "status": f.status,
        "measured": finite_or_none(f.measured),
        "threshold": finite_or_none(f.threshold),
        "warn_threshold": finite_or_none(f.warn_threshold),
        "direction": f.direction,
        "interval_lo": finite_or_none(lo),
        "interval_hi": finite_or_none(hi),
        "evidence": f.evidence or "",
        "detail": f.detail or "",
    }


def measurement_row(position: int, m) -> dict:
    """A :class:`~audits.results.Measurement` as a ``measurements`` row (non-finite numbers as NULL)."""
    lo, hi = (m.interval[0], m.interval[1]) if m.interval else (None, None)
    return {
        "position": position,
        "name": m.name,
        "subject": m.subject or "",
        "value": finite_or_none(m.value),
        "interval_lo": finite_or_none(lo),
        "interval_hi": finite_or_none(hi),
        "direction": str(m.direction),
        "evidence": m.evidence or "",
        "n": None if m.n is None else int(m.n),
    }
