"""The SQL store with known answers, on SQLite and on a real throwaway PostgreSQL server:
record runs, read them back, verify the chain, and catch every kind of tampering by name."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from audits.store import StoreError, open_store
from audits.store.signing import generate_key_pair
from tests.store_support import postgres_session, small_audit

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="session")
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


def audit(bundle, seed: int = 0):
    return small_audit(bundle["card_path"], seed)


def record(store, report, minutes: int = 0, **kw):
    start = T0 + timedelta(minutes=minutes)
    return store.record_run(report, model_name=report.provenance.model_name, started_at=start, ended_at=start + timedelta(seconds=5), user="tester", **kw)


def sql(store, statement: str, **params) -> None:
    with store.engine.begin() as conn:
        conn.execute(text(statement), params)


@pytest.fixture
def three_runs(store_url, image_bundle, tmp_path):
    """A store with three recorded runs of tiny-cnn (the middle one with a rendered file)."""
    store = open_store(store_url)
    html = tmp_path / "report.html"
    html.write_text("<html>run two</html>")
    reports = [audit(image_bundle, seed) for seed in (0, 1, 2)]
    runs = [record(store, reports[0], 0, plan="nightly"), record(store, reports[1], 10, files={"html": html}), record(store, reports[2], 20)]
    yield store, runs, reports, html
    store.close()


def test_record_read_and_verify(three_runs):
    store, runs, reports, _ = three_runs
    first, second, third = runs
    assert [r.run_id for r in store.runs()] == [third.run_id, second.run_id, first.run_id]  # newest first
    assert [r.run_id for r in store.runs(plan="nightly")] == [first.run_id]
    assert [r.run_id for r in store.runs(model="tiny-cnn", limit=2)] == [third.run_id, second.run_id]
    assert store.runs(model="other") == []
    # The chain: each record links the one before; the first links the genesis hash.
    assert first.prev_sha256 == "0" * 64 and second.prev_sha256 == first.record_sha256 and third.prev_sha256 == second.record_sha256
    got = store.get_run(second.run_id)
    assert got == second and got.started_at == T0 + timedelta(minutes=10) and got.user == "tester" and got.seed == 1
    assert got.weights_sha256 == reports[1].provenance.weights_sha256 and got.spec == reports[1].provenance.spec and got.policy_name == "default"
    assert got.verdict == "fail" and got.status == "completed"  # the tiny random CNN fails the accuracy check
    assert store.load_report(second.run_id).to_dict() == reports[1].to_dict()
    assert store.files(second.run_id)["html"].name == "report.html"
    frame = store.measurements("tiny-cnn")
    assert len(frame) == sum(len(r.measurements()) for r in reports) and list(frame["run_id"].unique()) == [r.run_id for r in runs]
    accuracy = store.measurements("tiny-cnn", "accuracy")
    assert list(accuracy["value"]) == [r.performance.accuracy for r in reports] and accuracy["interval_lo"].notna().all()
    assert list(store.findings(first.run_id)["check_id"]) == [f.check_id for f in reports[0].findings]
    assert store.count() == 3 and store.models() == ["tiny-cnn"]
    result = store.verify()
    assert result.ok and result.checked == 3 and result.first_bad_run_id is None
    with pytest.raises(StoreError, match="No run 'nope'"):
        store.get_run("nope")
    with pytest.raises(StoreError, match="already in the store"):
        record(store, reports[0])
    assert store.count() == 3


def test_changing_one_measurement_is_named(three_runs):
    store, runs, _, _ = three_runs
    sql(store, "UPDATE measurements SET value = value + 0.001 WHERE run_id = :r AND name = 'accuracy'", r=runs[1].run_id)
    result = store.verify()
    assert not result.ok and result.first_bad_run_id == runs[1].run_id and "measurements" in result.reason and result.checked == 2


def test_changing_one_byte_of_a_report_is_named(three_runs):
    store, runs, _, _ = three_runs
    # Swap one character of the stored JSON (the report id's first digit or letter for another).
    with store.engine.connect() as conn:
        stored = conn.execute(text("SELECT report_json FROM reports WHERE run_id = :r"), {"r": runs[2].run_id}).scalar()
    i = stored.index('"created_at":"') + len('"created_at":"')
    changed = stored[:i] + ("1" if stored[i] != "1" else "2") + stored[i + 1 :]
    assert len(changed) == len(stored) and sum(a != b for a, b in zip(changed, stored, strict=True)) == 1
    sql(store, "UPDATE reports SET report_json = :j WHERE run_id = :r", j=changed, r=runs[2].run_id)
    result = store.verify()
    assert not result.ok and result.first_bad_run_id == runs[2].run_id and "report JSON" in result.reason


def test_changing_a_finding_or_a_run_field_is_named(three_runs):
    store, runs, _, _ = three_runs
    sql(store, "UPDATE runs SET verdict = 'pass' WHERE run_id = :r", r=runs[0].run_id)
    result = store.verify()
    assert not result.ok and result.first_bad_run_id == runs[0].run_id and "record" in result.reason
    sql(store, "UPDATE runs SET verdict = 'fail' WHERE run_id = :r", r=runs[0].run_id)
    assert store.verify().ok
    sql(store, "UPDATE findings SET status = 'pass' WHERE run_id = :r AND check_id = 'accuracy'", r=runs[2].run_id)
    result = store.verify()
    assert result.first_bad_run_id == runs[2].run_id and "findings" in result.reason


@pytest.mark.parametrize("which", [1, 2])
def test_deleting_a_record_is_named(three_runs, which):
    store, runs, _, _ = three_runs
    deleted = runs[which].run_id
    for table in ("measurements", "findings", "files", "reports", "runs"):
        sql(store, f"DELETE FROM {table} WHERE run_id = :r", r=deleted)
    result = store.verify()
    assert not result.ok and deleted in f"{result.first_bad_run_id} {result.reason}" and "deleted" in result.reason
    if which == 1:  # the next record's link names the missing one
        assert result.first_bad_run_id == runs[2].run_id


def test_a_changed_or_missing_rendered_file_is_named(three_runs):
    store, runs, _, html = three_runs
    html.write_text("<html>run 2</html>")
    result = store.verify()
    assert result.first_bad_run_id == runs[1].run_id and "no longer matches" in result.reason
    html.unlink()
    assert "is missing" in store.verify().reason


def test_same_model_data_spec_and_seed_store_identical_findings_and_measurements(store_url, image_bundle):
    store = open_store(store_url)
    a, b = record(store, audit(image_bundle, 3), 0), record(store, audit(image_bundle, 3), 1)
    ma, mb = (store.measurements("tiny-cnn").query(f"run_id == '{r.run_id}'").drop(columns=["run_id", "started_at"]).reset_index(drop=True) for r in (a, b))
    assert len(ma) > 0 and ma.equals(mb)
    assert store.findings(a.run_id).equals(store.findings(b.run_id))
    store.close()


def test_crashed_run_and_alerts(store_url):
    store = open_store(store_url)
    crashed = store.record_run(None, model_name="broken", plan="p", started_at=T0, ended_at=T0, user="ci", status="crashed", error="ModelLoadError: no weights")
    assert crashed.status == "crashed" and crashed.verdict == "not_evaluated" and crashed.error.startswith("ModelLoadError")
    with pytest.raises(StoreError, match="no report"):
        store.load_report(crashed.run_id)
    store.record_alert(crashed.run_id, "http://127.0.0.1:9/hook", False, "timed out after 2 s")
    [alert] = store.alerts(crashed.run_id)
    assert alert["ok"] is False and alert["error"] == "timed out after 2 s"
    with pytest.raises(StoreError, match="status"):
        store.record_run(None, model_name="x", started_at=T0, ended_at=T0, user="u", status="done")
    assert store.verify().ok and store.count() == 1
    store.close()


def test_plan_lock(store_url):
    store = open_store(store_url)
    with store.plan_lock("nightly", ttl_s=60) as first:
        with store.plan_lock("nightly", ttl_s=60) as second, store.plan_lock("weekly", ttl_s=60) as other:
            assert first and not second and other
    with store.plan_lock("nightly", ttl_s=60) as again:  # released on exit
        assert again
    with store.plan_lock("stale", ttl_s=-1) as dead:  # a holder whose lock expired...
        with store.plan_lock("stale", ttl_s=60) as taker:  # ...is taken over
            assert dead and taker
    store.close()


def test_signed_records(tmp_path, image_bundle, monkeypatch):
    private, public = generate_key_pair(tmp_path / "keys" / "signing")
    assert oct(private.stat().st_mode & 0o777) == "0o600"
    other_private, other_public = generate_key_pair(tmp_path / "keys" / "other")
    store = open_store(str(tmp_path / "store"))
    unsigned = record(store, audit(image_bundle))
    monkeypatch.setenv("AUDITS_SIGNING_KEY", str(private))
    signed = record(store, audit(image_bundle, 1), 1)
    assert store.verify().ok  # no public key: signatures are not required
    result = store.verify(public)
    assert not result.ok and result.first_bad_run_id == unsigned.run_id and "not signed" in result.reason
    sql(store, "DELETE FROM runs WHERE run_id = :r", r="__none__")
    store2 = open_store(str(tmp_path / "store2"))
    first, second = record(store2, audit(image_bundle, 2)), record(store2, audit(image_bundle, 3), 1)
    result = store2.verify(public)
    assert result.ok and result.signed == 2
    assert store2.verify(other_public).first_bad_run_id == first.run_id
    # Re-hashing a changed record cannot forge its signature.
    from audits.store.records import record_sha256

    with store2.engine.begin() as conn:
        row = dict(conn.execute(text("SELECT * FROM runs WHERE run_id = :r"), {"r": second.run_id}).mappings().one())
        row["user"] = "mallory"
        conn.execute(text('UPDATE runs SET "user" = :u, record_sha256 = :h WHERE run_id = :r'), {"u": "mallory", "h": record_sha256(row), "r": second.run_id})
        conn.execute(text("UPDATE chain_head SET record_sha256 = :h"), {"h": record_sha256(row)})
    assert store2.verify().ok  # without the key the rewritten tail looks whole...
    result = store2.verify(public)
    assert result.first_bad_run_id == second.run_id and "signature" in result.reason  # ...the signature catches it
    assert signed.run_id != second.run_id and other_private.exists()


def test_a_locked_sqlite_store_fails_clearly_and_records_nothing(tmp_path, image_bundle):
    store = open_store(str(tmp_path / "store"), busy_timeout_s=0.3)
    report = audit(image_bundle)
    holder = sqlite3.connect(tmp_path / "store" / "audits.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another writer holds the write lock
    try:
        with pytest.raises(StoreError, match="locked by another writer") as caught:
            record(store, report)
        assert "nothing was written" in caught.value.problem and "waited 0.3 s" in caught.value.problem and "retry" in caught.value.fix
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert store.count() == 0 and store.runs() == []
    record(store, report)  # once the other writer is done, the same run records
    assert store.count() == 1 and store.verify().ok


def test_a_second_writer_waits_for_the_first(tmp_path, image_bundle):
    import threading
    import time

    store = open_store(str(tmp_path / "store"), busy_timeout_s=10)
    holder = sqlite3.connect(tmp_path / "store" / "audits.db", isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    threading.Timer(0.5, lambda: holder.execute("COMMIT")).start()
    started = time.perf_counter()
    record(store, audit(image_bundle))
    assert time.perf_counter() - started >= 0.4 and store.count() == 1
    holder.close()


def test_sqlite_settings(tmp_path):
    store = open_store(str(tmp_path / "s"))
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
    assert (tmp_path / "s" / "audits.db").is_file()


def test_store_url_resolution(tmp_path, monkeypatch):
    from audits.store import resolve_url

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AUDITS_STORE_URL", raising=False)
    monkeypatch.delenv("AUDITS_STORE", raising=False)
    assert resolve_url() == f"sqlite:///{tmp_path / 'audit-store' / 'audits.db'}"
    assert resolve_url("elsewhere") == f"sqlite:///{tmp_path / 'elsewhere' / 'audits.db'}"
    assert resolve_url("x/mine.db") == f"sqlite:///{tmp_path / 'x' / 'mine.db'}"
    monkeypatch.setenv("AUDITS_STORE_URL", "postgresql+psycopg://u@h/db")
    assert resolve_url() == "postgresql+psycopg://u@h/db" and resolve_url("sqlite:///a.db") == "sqlite:///a.db"


@pytest.mark.parametrize(
    ("url", "problem", "fix"),
    [
        (
            "postgresql+psycopg://audits:secret@127.0.0.1:1/none",
            "Cannot reach the store postgresql+psycopg://audits:***@127.0.0.1:1/none",
            "Start the PostgreSQL server",
        ),
        ("mysql://u@h/db", "names 'mysql'", "SQLAlchemy URL"),
        ("postgresql+asyncpg://u@h/db", "asyncpg driver", "postgresql+psycopg"),
        ("sqlite:////proc/no-such/store/audits.db", "Cannot create the store folder /proc/no-such/store", "writable folder"),
        ("not a url://x", "is not a database URL", "SQLAlchemy URL"),
    ],
)
def test_bad_store_urls_get_one_clear_message(url, problem, fix, monkeypatch):
    monkeypatch.setenv("AUDITS_STORE_CONNECT_S", "1")
    with pytest.raises(StoreError) as caught:
        open_store(url)
    assert problem in caught.value.problem and fix in caught.value.fix and "secret" not in str(caught.value)


def test_a_file_that_is_not_a_store(tmp_path):
    (tmp_path / "audits.db").write_text("hello, I am not SQLite " * 100)
    with pytest.raises(StoreError) as caught:
        open_store(str(tmp_path / "audits.db"))
    assert "not a database" in caught.value.problem and "writable audits store" in caught.value.fix


def test_alembic_creates_the_schema_at_the_revision_the_store_expects(tmp_path):
    from alembic.config import Config
    from alembic.script import ScriptDirectory
    from sqlalchemy import inspect

    from audits.store import tables
    from audits.store.database import MIGRATIONS_DIR, current_revision

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    assert ScriptDirectory.from_config(config).get_current_head() == tables.SCHEMA_REVISION
    store = open_store(str(tmp_path / "s"))
    with store.engine.connect() as conn:
        assert current_revision(conn) == tables.SCHEMA_REVISION
        assert set(inspect(conn).get_table_names()) == set(tables.metadata.tables) | {"alembic_version"}
        columns = {c["name"] for c in inspect(conn).get_columns("runs")}
    assert columns == {c.name for c in tables.runs.columns}  # the migration and the table definitions agree
    open_store(str(tmp_path / "s")).close()  # opening again is a no-op upgrade
