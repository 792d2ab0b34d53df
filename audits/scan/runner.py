"""Run a scan plan once: audit every model, record each run in the store, flag regressions, send alerts.

Order of work, so that bad input never leaves a partial record: the plan, its cards,
specs and policies are validated first; then the store is opened and the plan's lock
taken (a locked or unreachable database fails here, before any audit); then each
model's outcome is recorded as soon as it arrives (a crashed audit is recorded with its
error), and only after its record exists are its alerts sent and their delivery recorded.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from audits.errors import AuditError
from audits.findings import Finding
from audits.scan import outcome as clock
from audits.scan.alerts import alert_payload, deliver_all, should_alert
from audits.scan.executors import ExecutorName, make_executor
from audits.scan.outcome import AuditOutcome, ModelScan, ScanResult
from audits.scan.plan import DEFAULT_LOCK_TTL_S, LoadedPlan, resolve_targets

USER_ENV = "AUDITS_USER"
_STORE_FIX = "Check the store URL (--store, the plan's 'store' or $AUDITS_STORE_URL): the server must be running and reachable, the SQLite folder writable."


class StoreUnavailable(AuditError):
    """The store cannot be opened, reached or written (a wrong URL, a server down, a locked database)."""


class PlanBusy(AuditError):
    """Another scan or scheduler holds this plan's lock."""


def current_user() -> str:
    """Who ran the scan: ``$AUDITS_USER`` (set it in CI and schedulers), else the login name."""
    try:
        return os.environ.get(USER_ENV) or getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _db_errors() -> tuple[type[BaseException], ...]:
    try:
        from sqlalchemy.exc import SQLAlchemyError
    except ImportError:  # pragma: no cover (sqlalchemy is a dependency)
        return (OSError,)
    return (SQLAlchemyError, OSError)


def _redact(url: str | None) -> str:
    if not url:
        return "the default store"
    if "@" in url and "://" in url:  # hide a password in postgresql+psycopg://user:secret@host/db
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
    return url


def open_plan_store(url: str | None):
    """``audits.store.open_store(url)``, with a wrong URL or an unreachable server as one clear error."""
    from audits.store import open_store

    try:
        store = open_store(url)
        store.runs(limit=1)  # touch the database now, not halfway through a plan
    except AuditError:
        raise
    except _db_errors() as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise StoreUnavailable(f"The store at {_redact(url)} cannot be reached: {first}", fix=_STORE_FIX) from None
    return store


@contextmanager
def plan_lock(store, plan: str, ttl_s: float = DEFAULT_LOCK_TTL_S) -> Iterator[bool]:
    """The store's plan lock, with a locked or unreachable database turned into :class:`StoreUnavailable`."""
    manager = store.plan_lock(plan, ttl_s)
    try:
        acquired = manager.__enter__()
    except AuditError:
        raise
    except _db_errors() as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise StoreUnavailable(
            f"The store's database is locked or cannot be written ({first}); nothing was audited or recorded.",
            fix="Wait for the other writer to finish (or stop it) and run the scan again; for many concurrent writers use PostgreSQL (--store postgresql+psycopg://...).",
        ) from None
    try:
        yield acquired
    except BaseException as exc:
        if not manager.__exit__(type(exc), exc, exc.__traceback__):
            raise
    else:
        manager.__exit__(None, None, None)


def _failing(findings: list[Finding]) -> list[dict]:
    return [
        {"key": f.key, "title": f.title, "status": f.status, "measured": f.measured, "threshold": f.threshold, "direction": f.direction, "evidence": f.evidence}
        for f in findings
        if f.status in ("fail", "warn")
    ]


def previous_run(store, model: str, plan: str):
    """The latest completed run of ``model`` under ``plan`` (None for the first)."""
    return next((r for r in store.runs(model=model, plan=plan) if r.status == "completed"), None)  # newest first


def _stored_statuses(store, run_id: str) -> dict[str, tuple[str, float | None]]:
    """Finding key -> (status, measured) of a stored run, from the findings table (no report to load and parse)."""
    out = {}
    for row in store.findings(run_id).to_dict("records"):
        key = f"{row['check_id']}/{row['subject']}" if row["subject"] else row["check_id"]  # as Finding.key
        measured = row["measured"]
        out[key] = (row["status"], None if measured is None or measured != measured else float(measured))  # NaN from pandas: missing
    return out


def regressions_since(store, previous, outcome: AuditOutcome) -> list[dict]:
    """Findings whose status got worse since ``previous`` (``audits.diff.FindingChange.is_regression``), as plain data."""
    if previous is None or outcome.report is None:
        return []
    from audits.diff import FindingChange

    old = _stored_statuses(store, previous.run_id)
    out = []
    for new in outcome.report.findings:
        before_status, before_value = old.get(new.key, (None, None))
        change = FindingChange(
            key=new.key, title=new.title, old_status=before_status, new_status=new.status,
            old_value=before_value, new_value=new.measured, threshold=f"{new.direction} {new.threshold:g}",
        )  # fmt: skip
        if change.is_regression:
            out.append(
                {
                    "key": change.key, "title": change.title, "kind": change.kind, "old_status": change.old_status, "new_status": change.new_status,
                    "old_value": change.old_value, "new_value": change.new_value, "threshold": change.threshold, "previous_run_id": previous.run_id,
                }
            )  # fmt: skip
    return out


def run_link(template: str, *, run_id: str, model: str, plan: str) -> str:
    """The plan's ``notify.run_url`` with ``{run_id}``, ``{model}`` and ``{plan}`` filled in (URL-quoted)."""
    from urllib.parse import quote

    return template.replace("{run_id}", quote(run_id)).replace("{model}", quote(model)).replace("{plan}", quote(plan))


def record_outcome(store, loaded: LoadedPlan, outcome: AuditOutcome, *, user: str) -> ModelScan:
    """Record one model's outcome, then alert when it fails or regressed (each delivery recorded too)."""
    plan = loaded.plan
    previous = previous_run(store, outcome.model_name, plan.name)
    regressions = regressions_since(store, previous, outcome)
    record = store.record_run(
        outcome.report, model_name=outcome.model_name, plan=plan.name, started_at=outcome.started_at, ended_at=outcome.ended_at, user=user,
        status="crashed" if outcome.crashed else "completed", error=outcome.error,
    )  # fmt: skip
    scan = ModelScan(outcome=outcome, run_id=record.run_id, regressions=regressions)
    hooks = plan.notify.webhooks
    if hooks and should_alert(scan.verdict, regressions, on_warn=plan.notify.on_warn):
        payload = alert_payload(
            plan=plan.name, model=outcome.model_name, run_id=record.run_id, verdict=scan.verdict, regressions=regressions,
            link=run_link(plan.notify.run_url, run_id=record.run_id, model=outcome.model_name, plan=plan.name), failing=_failing(outcome.report.findings) if outcome.report else [], error=outcome.error,
        )  # fmt: skip
        deliveries = deliver_all(hooks, payload)
        for d in deliveries:
            store.record_alert(record.run_id, d.target, d.ok, d.error)
        scan = ModelScan(outcome=outcome, run_id=record.run_id, regressions=regressions, alerts=deliveries)
    return scan


def run_plan(
    loaded: LoadedPlan, *, store=None, store_url: str | None = None, executor: ExecutorName = "local", address: str | None = None, device: str | None = None,
    user: str | None = None, on_model: Callable[[ModelScan], None] | None = None, lock_ttl_s: float | None = None, lock_held: bool = False,
) -> ScanResult:  # fmt: skip
    """Audit every model of the plan now and record each run; returns every model's scan in plan order.

    Parameters
    ----------
    loaded
        The validated plan (:func:`audits.scan.plan.load_plan`).
    store
        An open store; when None, ``store_url`` (else the plan's ``store``, else the default) is opened.
    executor, address
        ``local`` (this process) or ``ray`` (tasks on the Ray cluster at ``address``).
    on_model
        Called with each model's scan as soon as it is recorded (progress output).
    lock_held
        The caller (the scheduler) already holds the plan's lock in ``store``.
    """
    targets = resolve_targets(loaded)  # every bad card, spec or policy fails here, before anything is recorded
    runner = make_executor(executor, address=address, device=device)
    owned = store is None
    if owned:
        store = open_plan_store(store_url or loaded.plan.store)
    user = user or current_user()
    ttl = lock_ttl_s or (loaded.plan.schedule.lock_ttl_s if loaded.plan.schedule else DEFAULT_LOCK_TTL_S)
    started = clock.utcnow()
    scans: dict[str, ModelScan] = {}

    def scan_all() -> None:
        for outcome in runner.map(targets):
            scan = record_outcome(store, loaded, outcome, user=user)
            scans[outcome.model_name] = scan
            if on_model is not None:
                on_model(scan)

    try:
        if lock_held:
            scan_all()
        else:
            with plan_lock(store, loaded.name, ttl) as acquired:
                if not acquired:
                    raise PlanBusy(
                        f"Plan {loaded.name!r} is being scanned by another process (its lock is held in the store).",
                        fix=f"Wait for that scan to finish; a lock left by a crashed process expires after {ttl:.0f} s.",
                    )
                scan_all()
    finally:
        if owned:
            store.close()
    return ScanResult(plan=loaded.name, models=[scans[t.model_name] for t in targets], started_at=started, ended_at=clock.utcnow())
