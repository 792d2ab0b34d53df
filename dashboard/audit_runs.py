"""Running a full audit from the dashboard: ``run_audit`` with a live progress bar, the policy's
findings added, and the run recorded in the audit store."""

from __future__ import annotations

from datetime import UTC, datetime

from audits.engine import run_audit
from audits.spec import AuditSpec, parse_spec
from dashboard import auth
from dashboard.feedback import progress_callback
from dashboard.stored_runs import StoredRun
from dashboard.workspace import Workspace, store


def build_spec(*, samples: int, seed: int, max_rows: int, probes: list[str] | None) -> AuditSpec:
    """An audit spec from the page's settings (0 = the default for samples and max_rows)."""
    raw: dict = {"seed": int(seed)}
    if samples:
        raw["samples"] = int(samples)
    if max_rows:
        raw["max_rows"] = int(max_rows)
    if probes is not None:
        raw["probes"] = [{"name": p} for p in probes]
    return parse_spec(raw, source="the dashboard's audit settings")


def with_findings(report):
    """The report with the default policy's findings (when the policy module is installed)."""
    try:
        from audits.policy import apply_policy
    except ImportError:  # the policy module ships with the report engine; without it, no findings
        return report
    return apply_policy(report)


def run_and_store(ws: Workspace, spec: AuditSpec, bar) -> StoredRun:
    """Audit the workspace's model (progress drawn on ``bar``) and record the run in the store."""
    started = datetime.now(UTC)
    update = progress_callback(bar, f"Auditing {ws.name}")
    with ws.loaded.lock:
        report = run_audit(ws.handle, ws.data, spec, progress=update, user=auth.signed_in_identity())
    bar.progress(1.0, text="Checking the policy and storing the report…")
    return store().save(with_findings(report), started_at=started)
