"""The scheduler on a controllable clock: one catch-up after downtime, no duplicate, no overlap, two schedulers on one store run a due time once.

The clock moves APScheduler's and the scan's time together (the jobs, the job store in the
database, the plan lock and the audits are all real); ``wakeup`` makes a scheduler look at
its jobs at once instead of sleeping until the next due time of the real clock.
"""

from __future__ import annotations

import pickle
import threading
import time
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from audits.scan import executors
from audits.scan import outcome as scan_clock
from audits.scan.plan import PlanError
from audits.scan.scheduler import JOB_TABLE, PlanScheduler, scheduled_scan
from audits.store import open_store
from tests.scan_support import FAST_TABULAR_SPEC, PASSING, write_plan
from tests.store_support import postgres_session

START = datetime(2030, 1, 1, 1, 59, 59, tzinfo=UTC)


def at(hour: int, minute: int = 0, second: int = 0) -> datetime:
    return START.replace(hour=hour, minute=minute, second=second)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def at(self, hour: int, minute: int = 0, second: int = 1) -> None:
        assert at(hour, minute, second) >= self.now, "the clock only moves forward"
        self.now = at(hour, minute, second)


@pytest.fixture
def clock(monkeypatch) -> Clock:
    import apscheduler.executors.base as ap_executors
    import apscheduler.schedulers.base as ap_schedulers

    c = Clock(START)

    class FakeDatetime(datetime):
        @classmethod
        def now(cls, tz=None):
            return c.now.astimezone(tz) if tz is not None else c.now.replace(tzinfo=None)

    monkeypatch.setattr(ap_schedulers, "datetime", FakeDatetime)
    monkeypatch.setattr(ap_executors, "datetime", FakeDatetime)
    monkeypatch.setattr(scan_clock, "utcnow", lambda: c.now)
    return c


class Audits:
    """Counts the real audits the scheduler starts, how many run at once, and can hold them until released."""

    def __init__(self, monkeypatch) -> None:
        self.calls = 0
        self.running = 0
        self.max_running = 0
        self.release = threading.Event()
        self.release.set()
        self.started = threading.Event()
        self._lock = threading.Lock()
        real = executors.audit_target

        def audit(target, *, device=None):
            with self._lock:
                self.calls += 1
                self.running += 1
                self.max_running = max(self.max_running, self.running)
            self.started.set()
            try:
                self.release.wait(30)
                return real(target, device=device)
            finally:
                with self._lock:
                    self.running -= 1

        monkeypatch.setattr(executors, "audit_target", audit)


@pytest.fixture
def audits(monkeypatch) -> Audits:
    return Audits(monkeypatch)


@pytest.fixture
def plan(tmp_path, tabular_bundle):
    def make(**schedule):
        raw = {
            "name": "hourly",
            "spec": FAST_TABULAR_SPEC,
            "policy": PASSING,
            "models": [{"card": str(tabular_bundle["card_path"])}],
            "schedule": {"cron": "0 * * * *", "timezone": "UTC", **schedule},
        }
        return write_plan(tmp_path, raw)

    return make


@pytest.fixture(scope="module")
def pg_server():
    yield from postgres_session()


@pytest.fixture(params=["sqlite", "postgresql"])
def any_store_url(request, tmp_path) -> str:
    """A fresh store on SQLite, and on a throwaway PostgreSQL server (skipped, with the reason, where none can start)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    server = request.getfixturevalue("pg_server")
    if isinstance(server, tuple):
        pytest.skip(server[1])
    return server.create_database()


def _wait_for(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the scheduler")
        time.sleep(0.05)


def _runs(url: str) -> list:
    store = open_store(url)
    try:
        return store.runs(plan="hourly")
    finally:
        store.close()


def test_a_scheduler_down_across_three_due_times_catches_up_once(tmp_path, clock, audits, plan):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    path = plan()
    first = PlanScheduler(path, store_url=url)
    first.start()
    try:
        assert first.next_run_time() == at(2)
        clock.at(2)
        first.wakeup()
        _wait_for(lambda: len(_runs(url)) == 1)
    finally:
        first.shutdown()
    clock.at(5, 30)  # down across 03:00, 04:00 and 05:00
    second = PlanScheduler(path, store_url=url)  # a restart: the job and its next run time come from the database
    second.start()
    try:
        _wait_for(lambda: len(_runs(url)) == 2)
        time.sleep(1.0)
        second.wakeup()
        time.sleep(0.5)
        assert len(_runs(url)) == 2 and audits.calls == 2  # one catch-up for three missed times
        assert second.next_run_time() == at(6)
    finally:
        second.shutdown()
    assert [r.started_at for r in reversed(_runs(url))] == [at(2, 0, 1), at(5, 30, 1)]


def test_a_catch_up_later_than_the_misfire_grace_is_skipped(tmp_path, clock, audits, plan):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    path = plan(misfire_grace_s=600)
    scheduler = PlanScheduler(path, store_url=url)
    scheduler.start()
    scheduler.shutdown()
    clock.at(5, 30)  # 02:00 ... 05:00 missed; the latest is 30 minutes late, beyond 10 minutes of grace
    again = PlanScheduler(path, store_url=url)
    again.start()
    try:
        time.sleep(1.0)
        assert _runs(url) == [] and audits.calls == 0
        assert again.next_run_time() == at(6)
    finally:
        again.shutdown()


def test_a_slow_scan_never_overlaps_the_next_due_time(tmp_path, clock, audits, plan):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    scheduler = PlanScheduler(plan(), store_url=url)
    scheduler.start()
    try:
        audits.release.clear()
        clock.at(2)
        scheduler.wakeup()
        assert audits.started.wait(30)
        clock.at(3)  # the next due time arrives while the 02:00 scan still runs
        scheduler.wakeup()
        time.sleep(1.0)
        audits.release.set()
        _wait_for(lambda: len(_runs(url)) == 1)
        time.sleep(0.5)
        assert audits.calls == 1 and audits.max_running == 1
    finally:
        scheduler.shutdown()


def test_two_schedulers_on_one_store_run_each_due_time_once(any_store_url, clock, audits, plan):
    url = any_store_url
    path = plan()
    one, two = PlanScheduler(path, store_url=url), PlanScheduler(path, store_url=url)
    one.start()
    two.start()
    try:
        for hour in (2, 3, 4):
            clock.at(hour)
            one.wakeup()
            two.wakeup()
            _wait_for(lambda hour=hour: len(_runs(url)) == hour - 1)
            time.sleep(0.5)
        assert len(_runs(url)) == 3 and audits.calls == 3 and audits.max_running == 1
    finally:
        one.shutdown()
        two.shutdown()


def test_the_job_itself_skips_a_due_time_that_is_locked_or_already_served(any_store_url, clock, audits, plan):
    """Two schedulers firing the same due time at once: the lock, then the store's record, stop the second."""
    url = any_store_url
    path = str(plan())
    clock.at(2)
    audits.release.clear()
    results: list[str] = []
    worker = threading.Thread(target=lambda: results.append(scheduled_scan(path, url)))
    worker.start()
    assert audits.started.wait(30)
    assert scheduled_scan(path, url) == "locked"
    audits.release.set()
    worker.join(60)
    assert results == ["ran"]
    clock.at(2, 0, 30)
    assert scheduled_scan(path, url) == "served"  # same due time (02:00), already run
    clock.at(3)
    assert scheduled_scan(path, url) == "ran"
    assert len(_runs(url)) == 2


def test_a_job_row_that_would_run_code_is_refused(tmp_path, clock, audits, plan, caplog):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    path = plan()
    scheduler = PlanScheduler(path, store_url=url)
    scheduler.start()
    scheduler.shutdown()
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    engine = sa.create_engine(url)  # a hand-written row, as someone with write access to the database could
    with engine.begin() as conn:
        conn.execute(sa.text(f"UPDATE {JOB_TABLE} SET job_state = :state"), {"state": pickle.dumps({"func": Evil()})})
    engine.dispose()
    again = PlanScheduler(path, store_url=url)
    again.start()  # the row is refused unread and replaced by the plan's schedule
    try:
        assert not marker.exists()
        assert "references io.open" in caplog.text
        assert again.next_run_time() == at(2)
    finally:
        again.shutdown()


def test_a_plan_without_a_schedule_is_refused(tmp_path, tabular_bundle):
    path = write_plan(tmp_path, {"name": "p", "models": [{"card": str(tabular_bundle["card_path"])}]})
    with pytest.raises(PlanError, match="has no schedule"):
        PlanScheduler(path, store_url=f"sqlite:///{tmp_path / 'store.db'}")


def test_audits_schedule_runs_on_its_cron_and_stops_cleanly_on_sigterm(tmp_path, tabular_bundle):
    """The real command in a subprocess, on the real clock: a cron every 2 seconds, SIGTERM after the first run."""
    import os
    import signal
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'store.db'}"
    raw = {
        "name": "hourly",
        "spec": FAST_TABULAR_SPEC,
        "policy": PASSING,
        "models": [{"card": str(tabular_bundle["card_path"])}],
        "schedule": {"cron": "*/2 * * * * *"},
    }
    path = write_plan(tmp_path, raw)
    env = {**os.environ, "AUDITS_USER": "scheduler-test", "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "audits", "schedule", "--plan", str(path), "--store", url], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        _wait_for(lambda: proc.poll() is not None or (tmp_path / "store.db").exists() and len(_runs(url)) >= 1, timeout=180)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "Scheduling plan hourly: cron '*/2 * * * * *' (UTC)" in out
    runs = _runs(url)
    assert runs and {r.user for r in runs} == {"scheduler-test"} and {r.status for r in runs} == {"completed"}
    assert "stopping after the running scan" in err
