"""``audits schedule``: run a plan unattended on its cron schedule (APScheduler 3).

- The job store is a table (``audits_scheduler_jobs``) in the same database as the runs,
  so a restarted scheduler knows when the plan last fired and what is due.
- ``coalesce=True``: a scheduler that was down across several due times runs the plan
  once to catch up, not once per missed time; ``misfire_grace_time`` (the plan's
  ``schedule.misfire_grace_s``, default one day) is how late that catch-up may be; a
  scheduler down for longer skips it (logged) and waits for the next due time.
- ``max_instances=1``: a slow scan never overlaps the next one in the same scheduler.
- Across schedulers (two hosts, a restart racing an old process), each fire takes the
  plan's lock in the store and then checks the store for a run of the plan since the
  latest due time: the second scheduler finds the lock held, or the due time served,
  and skips. A plan therefore never runs twice for one due time.
- The job state is read back with an unpickler that accepts only the scheduler's own
  classes (cron trigger, dates, time zones), so a row written into the database by
  someone else cannot run code in the scheduler.
"""

from __future__ import annotations

import io
import logging
import pickle
import threading
from pathlib import Path

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler

from audits.errors import AuditError
from audits.scan import outcome as clock
from audits.scan.plan import LoadedPlan, PlanError, cron_trigger, load_plan
from audits.scan.runner import open_plan_store, plan_lock, run_plan

JOB_TABLE = "audits_scheduler_jobs"
log = logging.getLogger("audits.scan")

# (module, name) pairs a stored job state may reference: APScheduler's cron trigger and its fields, dates and zones.
_SAFE_GLOBALS = {
    ("datetime", "datetime"),
    ("datetime", "timedelta"),
    ("datetime", "timezone"),
    ("zoneinfo", "ZoneInfo"),
    ("zoneinfo._zoneinfo", "ZoneInfo"),
    ("builtins", "getattr"),  # ZoneInfo pickles as getattr(ZoneInfo, '_unpickle')
    ("copyreg", "_reconstructor"),
    ("builtins", "object"),
}
_SAFE_MODULES = ("apscheduler.triggers.cron",)


class _JobStateUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _SAFE_GLOBALS or module.startswith(_SAFE_MODULES):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"the stored scheduler job references {module}.{name}, which a scan job never does")


class SafeSQLAlchemyJobStore(SQLAlchemyJobStore):
    """APScheduler's SQL job store, reading job states with an allow-list unpickler."""

    def _reconstitute_job(self, job_state):
        state = _JobStateUnpickler(io.BytesIO(job_state)).load()
        if state.get("func") != JOB_FUNC:
            raise pickle.UnpicklingError(f"the stored scheduler job calls {state.get('func')!r}, not {JOB_FUNC}")
        return super()._reconstitute_job(pickle.dumps(state, self.pickle_protocol))


JOB_FUNC = "audits.scan.scheduler:scheduled_scan"


def job_id(plan: str) -> str:
    """The scheduler job id of ``plan`` in the job table (one job per plan)."""
    return f"audits-scan:{plan}"


def due_time_served(store, loaded: LoadedPlan, trigger) -> bool:
    """True when the plan has a run that started at or after its latest due time (that time was served)."""
    latest = store.runs(plan=loaded.name, limit=1)
    if not latest:
        return False
    following = trigger.get_next_fire_time(None, latest[0].started_at)
    return following is None or following > clock.utcnow()


def scheduled_scan(plan_path: str, store_url: str | None = None) -> str:
    """The scheduler's job: scan the plan unless another scheduler holds it or already served this due time.

    Returns what happened (``ran``, ``locked``, ``served``), which is also logged.
    """
    loaded = load_plan(plan_path)  # re-read at every fire, so edits of the plan file apply
    schedule = loaded.plan.schedule
    if schedule is None:
        raise PlanError(f"Scan plan {plan_path} has no schedule.", fix="Add 'schedule: {cron: ..., timezone: ...}' to the plan.")
    trigger = cron_trigger(schedule.cron, schedule.timezone)
    store = open_plan_store(store_url or loaded.plan.store)
    try:
        with plan_lock(store, loaded.name, schedule.lock_ttl_s) as acquired:
            if not acquired:
                log.info("plan %s: skipped, another scheduler or scan holds its lock", loaded.name)
                return "locked"
            if due_time_served(store, loaded, trigger):
                log.info("plan %s: skipped, this due time was already served", loaded.name)
                return "served"
            result = run_plan(loaded, store=store, lock_held=True)
    finally:
        store.close()
    log.info("plan %s: %s", loaded.name, ", ".join(f"{m.model_name} {m.verdict} (run {m.run_id})" for m in result.models))
    return "ran"


class PlanScheduler:
    """A background APScheduler holding one plan's cron job in the store's database.

    ``start()`` keeps the job already stored for this plan (so its next run time, and
    thus a pending catch-up, survive restarts) unless the plan's schedule changed.
    """

    def __init__(self, plan_path: str | Path, *, store_url: str | None = None) -> None:
        self.plan_path = str(Path(plan_path).resolve())
        self.loaded = load_plan(self.plan_path)
        schedule = self.loaded.plan.schedule
        if schedule is None:
            raise PlanError(
                f"Scan plan {plan_path} has no schedule.",
                fix="Add 'schedule: {cron: \"0 2 * * *\", timezone: UTC}' to the plan (or run it once with audits scan).",
            )
        self.store_url = store_url or self.loaded.plan.store
        self.store = open_plan_store(self.store_url)
        self.schedule = schedule
        self.trigger = cron_trigger(schedule.cron, schedule.timezone)
        self.jobstore = SafeSQLAlchemyJobStore(engine=self.store.engine, tablename=JOB_TABLE)
        self.scheduler = BackgroundScheduler(
            jobstores={"default": self.jobstore},
            executors={"default": ThreadPoolExecutor(1)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": schedule.misfire_grace_s},
            timezone=self.trigger.timezone,
        )

    @property
    def job_id(self) -> str:
        """This plan's job id."""
        return job_id(self.loaded.name)

    def start(self) -> None:
        """Start in the background; the plan's job is kept, or (re)created when new or changed."""
        try:
            self.scheduler.start(paused=True)
        except Exception as exc:
            if isinstance(exc, AuditError):
                raise
            raise AuditError(
                f"The scheduler cannot read its jobs from the store: {exc}",
                fix="Check the store URL; a job row it refuses can be deleted from the audits_scheduler_jobs table.",
            ) from None
        args = [self.plan_path, self.store_url]
        try:
            job = self.scheduler.get_job(self.job_id)
        except pickle.UnpicklingError as exc:  # a row someone wrote by hand: never run it, replace it
            log.warning("plan %s: the stored scheduler job was refused (%s); replacing it with the plan's schedule", self.loaded.name, exc)
            self.jobstore.remove_job(self.job_id)
            job = None
        if job is None or repr(job.trigger) != repr(self.trigger) or list(job.args) != args or job.misfire_grace_time != self.schedule.misfire_grace_s:
            self.scheduler.add_job(
                scheduled_scan, self.trigger, args=args, id=self.job_id, name=f"audits scan {self.loaded.name}", replace_existing=True,
                coalesce=True, max_instances=1, misfire_grace_time=self.schedule.misfire_grace_s,
            )  # fmt: skip
            log.info("plan %s: scheduled (%s %s)", self.loaded.name, self.schedule.cron, self.schedule.timezone)
        self.scheduler.resume()

    def next_run_time(self):
        """When the plan runs next (from the job store), or None when it has no job."""
        job = self.scheduler.get_job(self.job_id)
        return job.next_run_time if job is not None else None

    def wakeup(self) -> None:
        """Process due jobs now (the scheduler does it by itself at each due time)."""
        self.scheduler.wakeup()

    def shutdown(self, wait: bool = True) -> None:
        """Stop the scheduler; with ``wait`` the running scan finishes first."""
        if self.scheduler.running:
            self.scheduler.shutdown(wait=wait)
        self.store.close()

    def run_forever(self, stop: threading.Event | None = None) -> None:
        """Start, then block until ``stop`` is set (the CLI sets it on SIGINT and SIGTERM); finish the running scan."""
        stop = stop or threading.Event()
        self.start()
        log.info("plan %s: next run at %s", self.loaded.name, self.next_run_time())
        try:
            stop.wait()
        finally:
            self.shutdown(wait=True)
