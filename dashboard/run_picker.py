"""Which recorded run a page shows: picking one of the selected model (these exact weights and
data), or running the default audit right there when there is none."""

from __future__ import annotations

import streamlit as st

from audits.report import AuditReport
from dashboard import audit_runs, cache, state
from dashboard.feedback import show_error
from dashboard.stored_runs import StoredRun
from dashboard.workspace import Workspace, store


def run_audit_here(ws: Workspace, key: str) -> None:
    """A button queueing the default audit of the selected model as a background job (progress in the sidebar)."""
    if st.button(
        f"Run the default audit of {ws.name}",
        key=f"{key}.run",
        type="primary",
        icon=":material/play_arrow:",
        help="Every default probe of this modality; about 30-60 s on 2 CPU cores, in the background: its progress is in the sidebar.",
    ):
        try:
            job = audit_runs.start_audit(ws, audit_runs.spec_settings(samples=0, seed=0, max_rows=0, probes=None))
        except Exception as exc:  # a failure to queue (the store): shown, the page stays up
            show_error(exc, "Starting the audit")
            return
        st.success(
            f"Audit queued as job {job.job_id}; it runs in the background (progress in the sidebar) and appears here when it finishes.",
            icon=":material/schedule:",
        )


def _audits_of(ws: Workspace) -> list[StoredRun]:
    """The stored audits of the selected model's weights on its evaluation data, newest first."""
    return [e for e in store().list(ws.name) if e.summary.get("weights_sha256") == ws.model_hash and e.summary.get("data_sha256") == ws.data_hash]


def pick_report(ws: Workspace, key: str) -> tuple[StoredRun, AuditReport] | None:
    """The stored audit of the selected model to show (newest by default): ``(entry, report)`` or None.

    Only audits of these exact weights and data are offered.
    """
    entries = _audits_of(ws)
    if not entries:
        notice = st.empty()  # replaced once an audit is stored, so "no audit yet" never stays above it
        notice.info(f"No stored audit of {ws.name} (these weights and data) yet. Run one here or on the Audit & reports page.", icon=":material/info:")
        run_audit_here(ws, key)
        entries = _audits_of(ws)
        if not entries:
            return None
        notice.empty()
    ids = [e.report_id for e in entries]
    by_id = {e.report_id: e for e in entries}
    c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
    c1.selectbox("Audit shown", ids, format_func=lambda i: by_id[i].label, **state.bind(f"{key}.report", options=ids))
    with c2:
        with st.popover("Re-run the audit", icon=":material/refresh:"):
            run_audit_here(ws, f"{key}.again")
    entry = by_id[state.get(f"{key}.report")]
    return entry, cache.stored_report(entry.path)
