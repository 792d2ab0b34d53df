"""Starting a full audit from the dashboard: the page's settings become a validated spec, queued as a
background job (``dashboard.jobs``) that a worker process runs, checks against the policy and records in the store."""

from __future__ import annotations

from audits.spec import parse_spec
from audits.store.jobs import Job
from dashboard import jobs
from dashboard.workspace import Workspace


def spec_settings(*, samples: int, seed: int, max_rows: int, probes: list[str] | None) -> dict:
    """An audit spec (as a dict) from the page's settings (0 = the default for samples and max_rows), validated here.

    Raises the spec's own error (problem and fix) when the settings do not make a valid spec,
    so a bad setting is refused on the page, not later in the worker.
    """
    raw: dict = {"seed": int(seed)}
    if samples:
        raw["samples"] = int(samples)
    if max_rows:
        raw["max_rows"] = int(max_rows)
    if probes is not None:
        raw["probes"] = [{"name": p} for p in probes]
    parse_spec(raw, source="the dashboard's audit settings").validate_probes()
    return raw


def start_audit(ws: Workspace, spec: dict) -> Job:
    """Queue the audit of the workspace's model; it runs in a worker process, apart from this page."""
    return jobs.start(model_name=ws.name, card_path=ws.entry.card_path, spec=spec)
