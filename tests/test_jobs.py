"""Background audit jobs on SQLite and a real PostgreSQL server: queue, claim once, run in a worker
process, record the run, report progress, cancel, and a job whose worker died."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from audits.store import open_store
from audits.store.jobs import JobQueue
from audits.worker import run_job, work
from tests.store_support import SMALL_SPEC, postgres_session

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def pg_server():
    yield from postgres_session()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store' / 'audits.db'}"
    server = request.getfixturevalue("pg_server")
    if isinstance(server, tuple):
        pytest.skip(server[1])
    return server.create_database()


@pytest.fixture
def queue(store_url):
    opened = JobQueue(open_store(store_url))
    yield opened
    opened.store.close()


@pytest.fixture
def sqlite_queue(tmp_path):
    opened = JobQueue(open_store(f"sqlite:///{tmp_path / 's' / 'audits.db'}"))
    yield opened
    opened.store.close()


def submit(queue: JobQueue, bundle: dict, spec: dict | None = None, user: str = "ana"):
    return queue.submit(model_name=bundle["card"]["name"], card_path=str(bundle["card_path"]), spec=spec or SMALL_SPEC, user=user)


def test_a_worker_runs_a_queued_job_and_records_its_run(queue, image_bundle):
    store = queue.store
    job = submit(queue, image_bundle)
    assert (job.status, job.progress, job.run_id) == ("queued", 0.0, None)
    with store.engine.connect() as conn:  # the job row is in the store's jobs table
        assert conn.execute(text('SELECT status, model_name, "user" FROM jobs')).all() == [("queued", "tiny-cnn", "ana")]

    done = work(store, idle_exit_s=0, poll_s=0.01)
    assert [j.job_id for j in done] == [job.job_id]
    finished = queue.get(job.job_id)
    assert finished.status == "completed" and finished.progress == 1.0 and finished.error is None
    record = store.get_run(finished.run_id)  # the run it recorded, with the job's user and spec
    assert record.model_name == "tiny-cnn" and record.user == "ana" and record.status == "completed"
    assert [p["name"] for p in store.load_report(finished.run_id).provenance.spec["probes"]] == ["saliency", "group_metrics"]
    assert store.verify().ok
    assert queue.claim("w") is None  # nothing left to claim


def test_a_job_is_claimed_once(queue, image_bundle):
    first, second = submit(queue, image_bundle), submit(queue, image_bundle, user="bo")
    a, b = queue.claim("worker-a"), queue.claim("worker-b")
    assert {a.job_id, b.job_id} == {first.job_id, second.job_id}
    assert (a.status, a.worker, b.worker) == ("running", "worker-a", "worker-b")
    assert queue.claim("worker-c") is None
    assert [j.user for j in queue.list(user="bo")] == ["bo"]


def test_cancel_a_queued_job_and_a_running_one(queue, image_bundle):
    queued = submit(queue, image_bundle)
    assert queue.cancel(queued.job_id).status == "cancelled"
    assert queue.claim("w") is None  # a cancelled job is never started

    running = submit(queue, image_bundle)
    claimed = queue.claim("w")
    assert claimed.job_id == running.job_id
    assert queue.cancel(running.job_id).cancel_requested
    ended = run_job(queue, claimed)  # the worker sees the flag at its first progress step
    assert ended.status == "cancelled" and ended.run_id is None
    assert queue.store.runs() == []  # nothing recorded


def test_a_failed_job_says_why(queue, image_bundle):
    job = submit(queue, image_bundle, spec={"seed": 0, "probes": [{"name": "no_such_probe"}]})
    ended = run_job(queue, queue.claim("w"))
    assert ended.status == "failed" and "no_such_probe" in ended.error
    assert ended.job_id == job.job_id


def test_a_running_job_whose_worker_died_is_marked_failed(sqlite_queue, image_bundle):
    queue = sqlite_queue
    submit(queue, image_bundle)
    job = queue.claim("gone")
    with queue.store.engine.begin() as conn:
        conn.execute(text("UPDATE jobs SET heartbeat_at = heartbeat_at - 1000"))
    [listed] = queue.list()
    assert listed.job_id == job.job_id and listed.status == "failed" and "worker stopped" in listed.error


def test_audits_worker_command_runs_jobs_in_its_own_process(sqlite_queue, image_bundle):
    queue, url = sqlite_queue, sqlite_queue.store.url
    job = submit(queue, image_bundle)
    out = subprocess.run([sys.executable, "-m", "audits", "worker", "--store", url, "--idle-exit", "0"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    finished = queue.get(job.job_id)
    assert finished.status == "completed"
    assert f"job {job.job_id} (tiny-cnn): completed, run {finished.run_id}" in out.stdout


def test_progress_is_written_while_the_job_runs(sqlite_queue, image_bundle):
    """A worker process runs a slower job; the store shows it running with growing progress, then finished."""
    queue, url = sqlite_queue, sqlite_queue.store.url
    spec = {"seed": 0, "samples": 8, "probes": [{"name": "occlusion"}, {"name": "fgsm"}, {"name": "group_metrics", "params": {"n_boot": 200}}]}
    job = submit(queue, image_bundle, spec=spec)
    proc = subprocess.Popen([sys.executable, "-m", "audits", "worker", "--store", url, "--once"], cwd=ROOT, stdout=subprocess.DEVNULL)
    seen = []
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            current = queue.get(job.job_id)
            seen.append((current.status, current.progress))
            if current.status not in ("queued", "running"):
                break
            time.sleep(0.05)
    finally:
        assert proc.wait(timeout=300) == 0
    assert seen[-1] == ("completed", 1.0)
    running = [p for s, p in seen if s == "running"]
    assert running and running == sorted(running)  # progress only grows


def test_two_users_jobs_run_at_once_in_two_workers(sqlite_queue, image_bundle):
    """Two users start audits at the same time: two workers run them in parallel, neither waits for the other."""
    queue, url = sqlite_queue, sqlite_queue.store.url
    spec = {"seed": 0, "samples": 8, "probes": [{"name": "occlusion"}, {"name": "fgsm"}, {"name": "group_metrics", "params": {"n_boot": 200}}]}
    jobs = [submit(queue, image_bundle, spec=spec, user=user) for user in ("ana", "bo")]
    workers = [subprocess.Popen([sys.executable, "-m", "audits", "worker", "--store", url, "--once"], cwd=ROOT, stdout=subprocess.DEVNULL) for _ in range(2)]
    both_running = False
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            statuses = [queue.get(j.job_id).status for j in jobs]
            both_running |= statuses == ["running", "running"]
            if all(s not in ("queued", "running") for s in statuses):
                break
            time.sleep(0.05)
    finally:
        assert [w.wait(timeout=300) for w in workers] == [0, 0]
    finished = [queue.get(j.job_id) for j in jobs]
    assert [j.status for j in finished] == ["completed", "completed"]
    assert both_running and finished[0].worker != finished[1].worker
    assert {queue.store.get_run(j.run_id).user for j in finished} == {"ana", "bo"}


def _plant(monkeypatch, name: str, before):
    """Run ``before(context)`` at the start of probe ``name``'s work, then the probe itself."""
    from audits.probes import registered_probes

    cls = registered_probes()[name]
    original = cls._run

    def planted(self, model, data, context):
        before(context)
        return original(self, model, data, context)

    monkeypatch.setattr(cls, "_run", planted)


def test_a_cancel_stops_the_job_before_its_next_probe(sqlite_queue, image_bundle, monkeypatch):
    """Cancelled while a probe runs, the job ends before the next probe starts, even though the
    progress write at that probe's start is throttled (it used to wait for the next written step)."""
    import audits.worker as worker

    monkeypatch.setattr(worker, "PROGRESS_EVERY_S", 1e9)  # no progress write between the first and the last
    queue = sqlite_queue
    job = submit(queue, image_bundle, spec={"seed": 0, "samples": 2, "probes": [{"name": "saliency"}, {"name": "group_metrics", "params": {"n_boot": 20}}]})
    ran: list[str] = []

    def cancel_now(context):
        ran.append("saliency")
        queue.cancel(job.job_id)  # as the dashboard's Cancel button does, from elsewhere
        time.sleep(4 * worker.CANCEL_POLL_S)  # the probe keeps working; the watcher sees the flag

    _plant(monkeypatch, "saliency", cancel_now)
    _plant(monkeypatch, "group_metrics", lambda context: ran.append("group_metrics"))
    ended = run_job(queue, queue.claim("w"))
    assert ended.status == "cancelled" and ended.run_id is None
    assert ran == ["saliency"]  # group_metrics never started
    assert queue.store.runs() == []


def test_a_cancel_stops_a_long_probe_inside_its_loop(sqlite_queue, image_bundle, monkeypatch):
    """A probe that reports progress in its loop stops at the first report after the cancel is seen."""
    import audits.worker as worker

    monkeypatch.setattr(worker, "PROGRESS_EVERY_S", 1e9)
    queue = sqlite_queue
    job = submit(queue, image_bundle, spec={"seed": 0, "samples": 2, "probes": [{"name": "saliency"}]})
    steps: list[int] = []

    def long_loop(context):
        for i in range(1000):
            if i == 3:
                queue.cancel(job.job_id)
                time.sleep(4 * worker.CANCEL_POLL_S)
            context.report(i / 1000, "step")  # a report that is not written (throttled) still stops it
            steps.append(i)

    _plant(monkeypatch, "saliency", long_loop)
    started = time.monotonic()
    ended = run_job(queue, queue.claim("w"))
    assert ended.status == "cancelled" and queue.store.runs() == []
    assert steps == [0, 1, 2]  # the report right after the cancel raised
    assert time.monotonic() - started < 30
