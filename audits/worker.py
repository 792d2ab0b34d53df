"""The audit worker: claims queued jobs from the store, runs each audit, writes its progress and records the run.

``audits worker`` runs it in its own process, apart from any web server: the dashboard queues
a job and starts a worker when none is running, so an audit outlives the page, the browser
tab and the session that started it. Workers on one store share the queue (a claim is
atomic). A cancel requested in the store stops the job before its next probe at the latest:
a watcher thread polls the flag every ``CANCEL_POLL_S`` seconds, and every progress call (the
engine makes one before each probe, long probes make them inside their loops) raises once the
flag is seen, whether or not that call is written to the store.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from audits.errors import AuditError
from audits.store.database import Store, open_store
from audits.store.jobs import Job, JobQueue

# Progress is written at most this often (seconds): the store sees every step that matters, not every batch.
PROGRESS_EVERY_S = 0.5
# A heartbeat is written this often while a job runs, even when a probe reports no progress for long.
HEARTBEAT_EVERY_S = 10.0
# The cancel flag is read this often while a job runs.
CANCEL_POLL_S = 0.5


class JobCancelled(BaseException):
    """Raised inside the audit when its job was cancelled.

    A BaseException, like KeyboardInterrupt: the engine records an ordinary exception of a
    probe as that probe's failure and goes on, but a cancel must end the whole audit.
    """


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def _progress(queue: JobQueue, job: Job, cancelled: threading.Event) -> Callable[[float, str], None]:
    """The audit's progress callback: raises JobCancelled on every call once a cancel was seen; writes at most every PROGRESS_EVERY_S."""
    last = [0.0]

    def update(fraction: float, message: str) -> None:
        if cancelled.is_set():  # seen by the watcher: no store round trip, so even a throttled call stops the job
            raise JobCancelled(job.job_id)
        now = time.monotonic()
        if now - last[0] < PROGRESS_EVERY_S and fraction < 1.0:
            return
        last[0] = now
        if queue.report_progress(job.job_id, fraction, message):
            cancelled.set()
            raise JobCancelled(job.job_id)

    return update


def _watch(queue: JobQueue, job: Job, stop: threading.Event, cancelled: threading.Event) -> None:
    """Poll the cancel flag every CANCEL_POLL_S and renew the heartbeat every HEARTBEAT_EVERY_S until ``stop``."""
    last_beat = time.monotonic()
    while not stop.wait(CANCEL_POLL_S):
        try:
            if queue.cancel_requested(job.job_id):
                cancelled.set()
            if time.monotonic() - last_beat >= HEARTBEAT_EVERY_S:
                current = queue.get(job.job_id)
                queue.report_progress(job.job_id, current.progress, current.message)
                last_beat = time.monotonic()
        except Exception:  # a store hiccup: the next poll tries again
            continue


def run_job(queue: JobQueue, job: Job) -> Job:
    """Run one claimed job to its end: completed (with the run it recorded), failed (with why) or cancelled."""
    from audits.data import load_data
    from audits.engine import run_audit
    from audits.policy import apply_policy
    from audits.spec import parse_spec
    from models.loader import load_model
    from models.registry import resolve_card

    stop, cancelled = threading.Event(), threading.Event()
    watcher = threading.Thread(target=_watch, args=(queue, job, stop, cancelled), daemon=True)
    watcher.start()
    started = datetime.now(UTC)
    try:
        update = _progress(queue, job, cancelled)
        update(0.0, "loading the model and its data")
        spec = parse_spec(job.spec, source=f"job {job.job_id}")
        card = resolve_card(job.card_path)
        report = run_audit(load_model(card), load_data(card, seed=spec.seed), spec, progress=update, user=job.user)
        update(1.0, "checking the policy and storing the report")
        report = apply_policy(report)
        record = queue.store.record_run(report, model_name=job.model_name, started_at=started, ended_at=datetime.now(UTC), user=job.user)
    except JobCancelled:
        return queue.finish(job.job_id, "cancelled")
    except AuditError as exc:
        return queue.finish(job.job_id, "failed", error=exc.problem + (f" Fix: {exc.fix}" if exc.fix else ""))
    except Exception as exc:  # any other failure ends this job, not the worker
        return queue.finish(job.job_id, "failed", error=f"{type(exc).__name__}: {exc}")
    finally:
        stop.set()
    return queue.finish(job.job_id, "completed", run_id=record.run_id)


def work(store: Store | str | None = None, *, idle_exit_s: float | None = None, poll_s: float = 1.0, max_jobs: int | None = None) -> list[Job]:
    """Claim and run jobs until none has been queued for ``idle_exit_s`` seconds (None: forever) or ``max_jobs`` ran.

    Returns the jobs it ran, as they ended.
    """
    owned = not isinstance(store, Store)
    queue = JobQueue(open_store(store) if owned else store)
    name = worker_name()
    done: list[Job] = []
    idle_since = time.monotonic()
    try:
        while max_jobs is None or len(done) < max_jobs:
            job = queue.claim(name)
            if job is None:
                if idle_exit_s is not None and time.monotonic() - idle_since >= idle_exit_s:
                    break
                time.sleep(poll_s)
                continue
            done.append(run_job(queue, job))
            idle_since = time.monotonic()
    finally:
        if owned:
            queue.store.close()
    return done
