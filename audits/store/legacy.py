"""A file-based store of audit reports (uploaded models: :mod:`audits.uploads`).

Layout under the store root (``./audit-store`` by default, ``$AUDITS_STORE`` overrides)::

    reports/<model>/<YYYYmmddTHHMMSSZ>_<report id>.json          the AuditReport
    reports/<model>/<YYYYmmddTHHMMSSZ>_<report id>.summary.json  a small index entry for listings
    reports/<model>/<YYYYmmddTHHMMSSZ>_<report id>.html|.pdf     rendered exports, when made
    models/<model>/card.yaml + weights + data                     models registered by upload (audits.uploads)
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from audits.errors import AuditError
from audits.uploads import ModelUploads

if TYPE_CHECKING:
    from audits.report import AuditReport

_STAMP = "%Y%m%dT%H%M%SZ"
_REPORT_NAME = re.compile(r"^(?P<stamp>\d{8}T\d{6}Z)_(?P<id>[0-9a-zA-Z]+)\.json$")


@dataclass(frozen=True)
class StoredAudit:
    """One stored report: where it is and the index entry written beside it."""

    path: Path
    model: str
    report_id: str
    created_at: str
    summary: dict = field(default_factory=dict)

    @property
    def stem(self) -> Path:
        return self.path.with_suffix("")

    def export_path(self, ext: str) -> Path:
        """Where the ``ext`` export (``html``, ``pdf``) of this report lives."""
        return self.stem.with_suffix(f".{ext.lstrip('.')}")

    @property
    def verdict(self) -> str:
        return str(self.summary.get("verdict", "unknown"))

    @property
    def label(self) -> str:
        """A one-line description for pickers."""
        acc = self.summary.get("accuracy")
        acc_text = f", accuracy {acc:.3f}" if isinstance(acc, int | float) else ""
        return f"{self.created_at} · {self.model} · {self.report_id} · {self.verdict}{acc_text}"


def spec_sha256(spec: dict) -> str:
    """A stable hash of an audit spec (as stored in the report's provenance)."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()


def _status_of(finding) -> str:
    status = finding.get("status") if isinstance(finding, dict) else getattr(finding, "status", None)
    return str(status or "").lower()


def verdict(findings: Iterable) -> tuple[str, dict[str, int]]:
    """The overall verdict of a report's findings ('fail' > 'warn' > 'pass') and the count per status.

    A report without findings (no policy applied) has verdict 'no policy'.
    """
    counts: dict[str, int] = {}
    for f in findings:
        status = _status_of(f)
        counts[status] = counts.get(status, 0) + 1
    for worst in ("fail", "warn", "pass"):
        if counts.get(worst):
            return worst, counts
    return ("no policy" if not counts else "not_evaluated"), counts


def summarize(report: AuditReport) -> dict:
    """The index entry stored beside a report (what listings show without loading it)."""
    p = report.provenance
    overall, counts = verdict(report.findings)
    return {
        "model": p.model_name,
        "report_id": report.report_id,
        "created_at": report.created_at,
        "weights_sha256": p.weights_sha256,
        "data_sha256": p.data_sha256,
        "spec_sha256": spec_sha256(p.spec),
        "device": p.device,
        "accuracy": float(report.performance.accuracy),
        "n_rows": int(report.data_summary.n_rows),
        "wall_time_s": float(p.wall_time_s),
        "model_calls": int(p.model_calls),
        "probes": [r.method for r in report.probe_results()],
        "failures": [f.name for f in report.failures],
        "skipped": [s.name for s in report.skipped],
        "verdict": overall,
        "finding_counts": counts,
    }


def _stamp(created_at: str) -> str:
    try:
        moment = datetime.fromisoformat(created_at)
    except ValueError:
        moment = datetime.now().astimezone()
    return moment.strftime(_STAMP)


class AuditStore(ModelUploads):
    """Reports (and, inherited, uploaded models) in one folder tree.

    Parameters
    ----------
    root : path or None
        The store folder; None: ``$AUDITS_STORE``, else ``./audit-store``.
    """

    @property
    def reports_dir(self) -> Path:
        return self.root / "reports"

    # --- reports -----------------------------------------------------------------
    def save(self, report: AuditReport) -> StoredAudit:
        """Write ``report`` and its index entry; returns where it went."""
        from audits.report import write_atomic

        folder = self.reports_dir / report.provenance.model_name
        path = folder / f"{_stamp(report.created_at)}_{report.report_id}.json"
        report.save(path)
        summary = summarize(report)
        write_atomic(path.with_suffix(".summary.json"), json.dumps(summary, indent=1).encode())
        return StoredAudit(path=path, model=summary["model"], report_id=report.report_id, created_at=report.created_at, summary=summary)

    def _entry(self, path: Path) -> StoredAudit | None:
        from audits.report import AuditReport, write_atomic

        match = _REPORT_NAME.match(path.name)
        if match is None:
            return None
        summary_path = path.with_suffix(".summary.json")
        summary: dict = {}
        if summary_path.is_file():
            try:
                summary = json.loads(summary_path.read_text())
            except (OSError, json.JSONDecodeError):
                summary = {}
        if not summary:  # a report copied in by hand: index it once
            try:
                summary = summarize(AuditReport.load(path))
                write_atomic(summary_path, json.dumps(summary, indent=1).encode())
            except AuditError:
                return None
        created = summary.get("created_at") or datetime.strptime(match["stamp"], _STAMP).isoformat()
        return StoredAudit(path=path, model=path.parent.name, report_id=match["id"], created_at=created, summary=summary)

    def list(self, model: str | None = None) -> list[StoredAudit]:
        """Stored audits, newest first; only ``model``'s when given."""
        if not self.reports_dir.is_dir():
            return []
        folders = [self.reports_dir / model] if model else sorted(p for p in self.reports_dir.iterdir() if p.is_dir())
        entries = [e for folder in folders if folder.is_dir() for p in folder.glob("*.json") if (e := self._entry(p)) is not None]
        return sorted(entries, key=lambda e: (e.path.name.split("_")[0], e.report_id), reverse=True)

    def get(self, report_id: str) -> StoredAudit:
        for entry in self.list():
            if entry.report_id == report_id:
                return entry
        raise AuditError(f"No stored audit has report id {report_id!r}.", fix=f"Choose one listed under {self.reports_dir}.")

    def open(self, report_id: str) -> AuditReport:
        from audits.report import AuditReport

        return AuditReport.load(self.get(report_id).path)

    def latest(self, model: str, *, weights_sha256: str | None = None, data_sha256: str | None = None) -> StoredAudit | None:
        """The newest audit of ``model`` (of exactly these weights and data when given)."""
        for entry in self.list(model):
            s = entry.summary
            if weights_sha256 and s.get("weights_sha256") != weights_sha256:
                continue
            if data_sha256 and s.get("data_sha256") != data_sha256:
                continue
            return entry
        return None

    def write_export(self, entry: StoredAudit, ext: str, payload: bytes) -> Path:
        from audits.report import write_atomic

        return write_atomic(entry.export_path(ext), payload)
