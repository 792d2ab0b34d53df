"""Audits as background jobs: queued in the store, run by ``audits worker`` processes, shown in the sidebar.

A page queues a job (:func:`start`) and returns at once; a worker process (started here when
fewer than ``$AUDITS_WORKERS`` are alive, default 2) runs it apart from the web server, so the
audit outlives the page, a browser reload and the session. The sidebar (:func:`panel`, on
every page) shows the signed-in user's jobs with their progress, a cancel button, and, when one
finishes, a notification whose button opens the report.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

import streamlit as st

from audits.store.jobs import Job, JobQueue
from dashboard import state
from dashboard.stored_runs import current_identity, run_store

ROOT = Path(__file__).resolve().parent.parent
AUDIT_PAGE = Path(__file__).resolve().parent / "app_pages" / "audit_page.py"
WORKERS_ENV = "AUDITS_WORKERS"
# A worker the dashboard started stops after this many seconds without a queued job.
IDLE_ENV = "AUDITS_WORKER_IDLE_S"
# Finished jobs the sidebar still lists (newest first), until dismissed.
SHOWN_FINISHED = 3

# Per store URL: a worker serves only the store it was started for (a second dashboard or a test on
# another store in this process must get its own, not be refused because the first one's are alive).
_workers: dict[str, list[subprocess.Popen]] = {}
_workers_lock = threading.Lock()


def queue() -> JobQueue:
    return JobQueue(run_store().store)


def user() -> str:
    """Whose jobs these are: the signed-in user, else ``dashboard:<login>``."""
    return current_identity()


def ensure_worker() -> None:
    """Start a worker process unless ``$AUDITS_WORKERS`` (default 2) started here are alive and busy enough."""
    limit = max(1, int(os.environ.get(WORKERS_ENV, "2")))
    idle = os.environ.get(IDLE_ENV, "30")
    url = run_store().store.url
    with _workers_lock:
        alive = _workers[url] = [p for p in _workers.get(url, []) if p.poll() is None]
        running = len(queue().list(statuses=("running",)))
        if len(alive) >= limit or len(alive) > running:
            return  # enough workers, or one is idle and will claim the job
        run_store().root.mkdir(parents=True, exist_ok=True)  # a PostgreSQL store may have no local folder yet
        log = open(run_store().root / "worker.log", "ab")  # noqa: SIM115 - the child owns it
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        try:
            alive.append(
                subprocess.Popen(
                    [sys.executable, "-m", "audits", "worker", "--store", url, "--idle-exit", idle],
                    cwd=ROOT,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    start_new_session=True,  # not stopped by a Ctrl+C meant for the server
                )
            )
        finally:
            log.close()


def start(*, model_name: str, card_path: Path, spec: dict) -> Job:
    """Queue an audit of ``model_name`` with ``spec`` (already validated) and make sure a worker will run it."""
    job = queue().submit(model_name=model_name, card_path=str(card_path), spec=spec, user=user())
    ensure_worker()
    return job


def _cancel(job_id: str) -> None:
    queue().cancel(job_id)


def _dismiss(job_id: str) -> None:
    st.session_state.setdefault("jobs.dismissed", set()).add(job_id)


def _open(job: Job) -> None:
    """Show the job's report on the Audit page (its model selected)."""
    if state.get("model") != job.model_name:
        state.put("model", job.model_name)
        state.reset_model_settings()
    state.put("audit.open", job.run_id)
    _dismiss(job.job_id)
    st.session_state["jobs.go_to_audit"] = True


def _ago(stamp: str | None) -> str:
    if not stamp:
        return ""
    seconds = (datetime.now(UTC) - datetime.fromisoformat(stamp)).total_seconds()
    return f"{seconds:.0f} s ago" if seconds < 120 else f"{seconds / 60:.0f} min ago"


def _draw(jobs: list[Job]) -> None:
    dismissed = st.session_state.setdefault("jobs.dismissed", set())
    active = [j for j in jobs if j.active]
    finished = [j for j in jobs if not j.active and j.job_id not in dismissed][:SHOWN_FINISHED]
    watched = st.session_state.setdefault("jobs.watched", set())
    for job in jobs:  # a notification for each job this session saw running that has now ended
        if job.job_id in watched and not job.active:
            watched.discard(job.job_id)
            st.toast(f"Audit of {job.model_name} {job.status}.", icon=":material/check_circle:" if job.status == "completed" else ":material/error:")
    watched.update(j.job_id for j in active)
    if not active and not finished:
        return
    st.subheader("Audit jobs")
    for job in active:
        with st.container(border=True, key=f"job-{job.job_id}"):
            state_text = "queued, waiting for a worker" if job.status == "queued" else job.message
            st.progress(job.progress, text=f"{job.model_name}: {state_text}")
            st.button("Cancel", key=f"jobs.cancel.{job.job_id}", on_click=_cancel, args=(job.job_id,), icon=":material/cancel:", disabled=job.cancel_requested)
    for job in finished:
        with st.container(border=True, key=f"job-{job.job_id}"):
            if job.status == "completed":
                st.success(f"Audit of {job.model_name} finished {_ago(job.ended_at)}.", icon=":material/check_circle:")
                st.button(
                    "Open report", key=f"jobs.open.{job.job_id}", on_click=_open, args=(job,), icon=":material/description:", type="primary", width="stretch"
                )
                st.button("Dismiss", key=f"jobs.dismiss.{job.job_id}", on_click=_dismiss, args=(job.job_id,), width="stretch")
            else:
                text = f"Audit of {job.model_name} {job.status} {_ago(job.ended_at)}." + (f" {job.error}" if job.error else "")
                (st.error if job.status == "failed" else st.info)(text, icon=":material/error:" if job.status == "failed" else ":material/cancel:")
                st.button("Dismiss", key=f"jobs.dismiss.{job.job_id}", on_click=_dismiss, args=(job.job_id,))


@st.fragment(run_every=1.0)
def _live() -> None:
    """Redrawn every second while a job of this user is queued or running (and until the next full run after)."""
    jobs = queue().list(user=user(), limit=20)
    if any(j.status == "queued" for j in jobs):
        ensure_worker()  # a worker that stopped just as the job was queued is replaced
    _draw(jobs)
    if st.session_state.pop("jobs.go_to_audit", False):
        st.switch_page(AUDIT_PAGE)


@st.fragment
def _still() -> None:
    jobs = queue().list(user=user(), limit=20)
    _draw(jobs)
    if st.session_state.pop("jobs.go_to_audit", False):
        st.switch_page(AUDIT_PAGE)


def panel() -> None:
    """The sidebar's job list (call inside ``with st.sidebar``): live while a job is active."""
    try:
        active = queue().list(user=user(), statuses=("queued", "running"), limit=1)
    except Exception as exc:  # the store is unreachable: say so, keep the page
        st.caption(f"Audit jobs are unavailable: {exc}")
        return
    (_live if active else _still)()
