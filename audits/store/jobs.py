"""Background audit jobs in the store: queued by the dashboard, claimed and run by ``audits worker``.

A job moves ``queued -> running -> completed | failed | cancelled``. Claiming is one
conditional UPDATE (``status = 'queued'``), so two workers never run the same job. While a
worker runs a job it writes the progress and a heartbeat; a cancel is a flag the worker reads
at its next progress step. A running job whose heartbeat is older than ``STALE_S`` lost its
worker (killed, machine restarted) and is marked failed by the next claim or listing.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from sqlalchemy import insert, select, update

from audits.store import tables as t
from audits.store.database import Store
from audits.store.prepare import iso_utc
from audits.store.records import StoreError

JobStatus = Literal["queued", "running", "completed", "failed", "cancelled"]
ACTIVE: tuple[str, ...] = ("queued", "running")
FINISHED: tuple[str, ...] = ("completed", "failed", "cancelled")
# A running job without a heartbeat for this long lost its worker.
STALE_S = 120.0


@dataclass(frozen=True)
class Job:
    """One job as stored."""

    job_id: str
    model_name: str
    card_path: str
    spec: dict
    user: str
    status: str
    progress: float
    message: str
    cancel_requested: bool
    created_at: str
    started_at: str | None
    ended_at: str | None
    heartbeat_at: float | None
    worker: str | None
    run_id: str | None
    error: str | None

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    @property
    def label(self) -> str:
        return f"{self.model_name} · {self.job_id}"


def _job(row) -> Job:
    fields = dict(row)
    fields["spec"] = json.loads(fields.pop("spec_json"))
    fields["cancel_requested"] = bool(fields["cancel_requested"])
    return Job(**fields)


def _now() -> str:
    return iso_utc(datetime.now(UTC))


class JobQueue:
    """The jobs of one store (``JobQueue(open_store(url))``)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def submit(self, *, model_name: str, card_path: str, spec: dict, user: str) -> Job:
        """Queue an audit of the model whose card is at ``card_path`` with ``spec`` (a spec dict)."""
        row = {
            "job_id": uuid.uuid4().hex[:12],
            "model_name": model_name,
            "card_path": str(card_path),
            "spec_json": json.dumps(spec, sort_keys=True),
            "user": user,
            "status": "queued",
            "progress": 0.0,
            "message": "waiting for a worker",
            "cancel_requested": False,
            "created_at": _now(),
        }
        with self.store._write(f"queueing an audit of {model_name}") as conn:
            conn.execute(insert(t.jobs).values(**row))
        return self.get(row["job_id"])

    def get(self, job_id: str) -> Job:
        with self.store._read(f"reading job {job_id}") as conn:
            row = conn.execute(select(t.jobs).where(t.jobs.c.job_id == job_id)).mappings().first()
        if row is None:
            raise StoreError(f"No job {job_id!r} in the store {self.store.location}.", fix="List the jobs on the dashboard's Audit page.")
        return _job(row)

    def list(self, *, user: str | None = None, statuses: tuple[str, ...] | None = None, limit: int = 50) -> list[Job]:
        """Jobs, newest first (``user``'s only, and only in ``statuses``, when given); stale running jobs are marked failed first."""
        self.fail_stale()
        query = select(t.jobs).order_by(t.jobs.c.created_at.desc()).limit(limit)
        if user is not None:
            query = query.where(t.jobs.c.user == user)
        if statuses is not None:
            query = query.where(t.jobs.c.status.in_(statuses))
        with self.store._read("listing jobs") as conn:
            return [_job(r) for r in conn.execute(query).mappings()]

    def claim(self, worker: str) -> Job | None:
        """The oldest queued job, now running on ``worker``; None when none is queued."""
        self.fail_stale()
        while True:
            with self.store._read("looking for a queued job") as conn:
                job_id = conn.execute(select(t.jobs.c.job_id).where(t.jobs.c.status == "queued").order_by(t.jobs.c.created_at).limit(1)).scalar()
            if job_id is None:
                return None
            with self.store._write(f"claiming job {job_id}") as conn:
                taken = conn.execute(
                    update(t.jobs)
                    .where(t.jobs.c.job_id == job_id, t.jobs.c.status == "queued")
                    .values(status="running", worker=worker, started_at=_now(), heartbeat_at=time.time(), message="starting")
                ).rowcount
            if taken == 1:
                return self.get(job_id)
            # another worker took it (or it was cancelled) in between: look again

    def report_progress(self, job_id: str, fraction: float, message: str) -> bool:
        """Record the progress and renew the heartbeat; returns whether a cancel was requested."""
        with self.store._write(f"recording the progress of job {job_id}") as conn:
            conn.execute(
                update(t.jobs)
                .where(t.jobs.c.job_id == job_id, t.jobs.c.status == "running")
                .values(progress=min(max(float(fraction), 0.0), 1.0), message=message[:500], heartbeat_at=time.time())
            )
            return bool(conn.execute(select(t.jobs.c.cancel_requested).where(t.jobs.c.job_id == job_id)).scalar())

    def cancel_requested(self, job_id: str) -> bool:
        """Whether a cancel of ``job_id`` was requested (one read; the worker polls it while the job runs)."""
        with self.store._read(f"reading the cancel flag of job {job_id}") as conn:
            return bool(conn.execute(select(t.jobs.c.cancel_requested).where(t.jobs.c.job_id == job_id)).scalar())

    def cancel(self, job_id: str) -> Job:
        """Cancel a job: a queued one at once, a running one at its worker's next probe or progress step (the worker polls the flag)."""
        with self.store._write(f"cancelling job {job_id}") as conn:
            conn.execute(
                update(t.jobs)
                .where(t.jobs.c.job_id == job_id, t.jobs.c.status == "queued")
                .values(status="cancelled", cancel_requested=True, ended_at=_now(), message="cancelled before it started")
            )
            conn.execute(update(t.jobs).where(t.jobs.c.job_id == job_id, t.jobs.c.status == "running").values(cancel_requested=True, message="cancelling…"))
        return self.get(job_id)

    def finish(self, job_id: str, status: Literal["completed", "failed", "cancelled"], *, run_id: str | None = None, error: str | None = None) -> Job:
        """Record how a running job ended (``run_id``: the run it recorded)."""
        message = {"completed": "finished", "failed": "failed", "cancelled": "cancelled"}[status]
        values = {"status": status, "ended_at": _now(), "run_id": run_id, "error": error, "message": message}
        if status == "completed":
            values["progress"] = 1.0
        with self.store._write(f"recording the end of job {job_id}") as conn:
            conn.execute(update(t.jobs).where(t.jobs.c.job_id == job_id).values(**values))
        return self.get(job_id)

    def fail_stale(self, stale_s: float = STALE_S) -> int:
        """Mark failed every running job whose worker stopped sending heartbeats; returns how many."""
        cutoff = time.time() - stale_s
        stale = select(t.jobs.c.job_id).where(t.jobs.c.status == "running", t.jobs.c.heartbeat_at < cutoff).limit(1)
        with self.store._read("looking for jobs whose worker stopped") as conn:
            if conn.execute(stale).first() is None:
                return 0  # the common case: a read, no write lock
        with self.store._write("marking jobs whose worker stopped") as conn:
            return conn.execute(
                update(t.jobs)
                .where(t.jobs.c.status == "running", t.jobs.c.heartbeat_at < cutoff)
                .values(status="failed", ended_at=_now(), message="failed", error=f"Its worker stopped (no heartbeat for {stale_s:g} s).")
            ).rowcount

    def has_queued(self) -> bool:
        with self.store._read("looking for queued jobs") as conn:
            return conn.execute(select(t.jobs.c.job_id).where(t.jobs.c.status == "queued").limit(1)).first() is not None
