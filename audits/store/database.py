"""The store: runs, their reports, findings, measurements and rendered files in one SQL database, hash-chained.

``open_store(url)`` connects (SQLite by default, PostgreSQL by URL) and upgrades the schema
with Alembic; :class:`Store` records and reads runs. Each run is written in one
transaction (record, report, findings, measurements, files, chain head), so a failed write
leaves nothing behind.
"""

from __future__ import annotations

import getpass
import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from sqlalchemy import Connection, Engine, delete, func, insert, inspect, select, text, update
from sqlalchemy.exc import DBAPIError, IntegrityError

from audits.store import tables as t
from audits.store.connect import busy_timeout, create_store_engine, describe, resolve_url, store_error
from audits.store.prepare import PreparedRun, iso_utc, prepare_run
from audits.store.records import (
    FILE_FIELDS,
    FINDING_FIELDS,
    MEASUREMENT_FIELDS,
    ChainVerification,
    RunRecord,
    StoreError,
    record_sha256,
    rows_sha256,
    sha256_hex,
)

if TYPE_CHECKING:
    import pandas as pd

    from audits.report import AuditReport

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def open_store(url: str | None = None, *, busy_timeout_s: float | None = None) -> Store:
    """Connect to the store at ``url`` (None: ``$AUDITS_STORE_URL``, else ``audit-store/audits.db``) and upgrade its schema.

    Raises
    ------
    StoreError
        The URL is malformed, the server cannot be reached or the database is locked;
        the message names the fix.
    """
    resolved = resolve_url(url)
    busy_s = busy_timeout(busy_timeout_s)
    engine = create_store_engine(resolved, busy_timeout_s=busy_s)
    store = Store(engine, resolved, busy_timeout_s=busy_s)
    store.upgrade()
    return store


class Store:
    """An open store. Use :func:`open_store`; the engine is the caller's to share or :meth:`close`."""

    def __init__(self, engine: Engine, url: str, *, busy_timeout_s: float = 30.0) -> None:
        self.engine = engine
        self.url = url
        self.busy_timeout_s = busy_timeout_s

    def __repr__(self) -> str:
        return f"Store({describe(self.url)})"

    @property
    def location(self) -> str:
        """The store's URL with its password hidden."""
        return describe(self.url)

    def close(self) -> None:
        self.engine.dispose()

    # --- connections ---------------------------------------------------------------
    @contextmanager
    def _write(self, doing: str) -> Iterator[Connection]:
        try:
            with self.engine.execution_options(store_write=True).begin() as conn:
                yield conn
        except DBAPIError as exc:
            raise store_error(exc, self.url, doing, self.busy_timeout_s) from None

    @contextmanager
    def _read(self, doing: str) -> Iterator[Connection]:
        try:
            with self.engine.connect() as conn:
                yield conn
        except DBAPIError as exc:
            raise store_error(exc, self.url, doing, self.busy_timeout_s) from None

    def upgrade(self) -> None:
        """Bring the schema to the newest Alembic revision (a no-op when it is there)."""
        with self._read("opening the store") as conn:
            if current_revision(conn) == t.SCHEMA_REVISION:
                return  # the common case costs one query, without importing Alembic
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        with self._write("creating or upgrading the store's tables") as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "head")

    # --- writing ---------------------------------------------------------------------
    def record_run(
        self,
        report: AuditReport | None,
        *,
        model_name: str,
        plan: str | None = None,
        started_at: datetime,
        ended_at: datetime,
        user: str,
        status: Literal["completed", "crashed"] = "completed",
        error: str | None = None,
        files: dict[str, Path] | None = None,
    ) -> RunRecord:
        """Record one run (its report, findings, measurements and rendered files) at the end of the chain.

        ``report`` is None for a run that crashed before it had one. ``files`` maps a
        name (``html``, ``pdf``) to a rendered file, whose sha256 is kept and checked by
        :meth:`verify`. The run id is the report's id (a fresh one without a report).
        """
        prepared = prepare_run(
            report, model_name=model_name, plan=plan, started_at=started_at, ended_at=ended_at, user=user, status=status, error=error, files=files
        )
        return self.record_prepared([prepared])[0]

    def record_prepared(self, prepared: list[PreparedRun]) -> list[RunRecord]:
        """Append prepared runs (:func:`audits.store.prepare.prepare_run`) to the chain in order, all in one transaction.

        Either every run is recorded or none is. The content hashes, the link and the
        signature (when ``AUDITS_SIGNING_KEY`` is set) are computed here, inside the lock.
        """
        from audits.store.signing import load_private_key, sign

        key = load_private_key()
        records = []
        what = f"recording run {prepared[0].row['run_id']} of {prepared[0].row['model_name']}" if len(prepared) == 1 else f"recording {len(prepared)} runs"
        with self._write(what) as conn:
            head = dict(conn.execute(select(t.chain_head).where(t.chain_head.c.id == 1).with_for_update()).mappings().one())
            for run in prepared:
                row = dict(run.row)
                run_id, model_name = row["run_id"], row["model_name"]
                if conn.execute(select(t.runs.c.seq).where(t.runs.c.run_id == run_id)).first() is not None:
                    raise StoreError(
                        f"Run {run_id} is already in the store {self.location}.", fix="Each report is recorded once; re-run the audit for a new run."
                    )
                row["report_sha256"] = None if run.report_json is None else sha256_hex(run.report_json.encode("utf-8"))
                row["findings_sha256"] = rows_sha256(run.findings, FINDING_FIELDS)
                row["measurements_sha256"] = rows_sha256(run.measurements, MEASUREMENT_FIELDS)
                row["files_sha256"] = rows_sha256(run.files, FILE_FIELDS)
                row["prev_run_id"], row["prev_sha256"] = head["run_id"], head["record_sha256"]
                row["record_sha256"] = record_sha256(row)
                if key is not None:
                    row["signature"], row["key_id"] = sign(key, row["record_sha256"])
                seq = conn.execute(insert(t.runs).values(**row)).inserted_primary_key[0]
                if run.report_json is not None:
                    conn.execute(insert(t.reports).values(run_id=run_id, report_json=run.report_json))
                if run.findings:
                    conn.execute(insert(t.findings), [{"run_id": run_id, **r} for r in run.findings])
                if run.measurements:
                    conn.execute(insert(t.measurements), [{"run_id": run_id, "model_name": model_name, **r} for r in run.measurements])
                if run.files:
                    conn.execute(insert(t.files), [{"run_id": run_id, **r} for r in run.files])
                if row["weights_sha256"] is not None:
                    known = select(t.models.c.id).where(t.models.c.name == model_name, t.models.c.weights_sha256 == row["weights_sha256"])
                    if conn.execute(known).first() is None:
                        conn.execute(insert(t.models).values(name=model_name, weights_sha256=row["weights_sha256"], first_seen_at=row["ended_at"]))
                head = {"seq": seq, "run_id": run_id, "record_sha256": row["record_sha256"], "count": head["count"] + 1}
                records.append(_record(row))
            conn.execute(update(t.chain_head).where(t.chain_head.c.id == 1).values(**head))
        return records

    def import_report(self, report: AuditReport, *, user: str | None = None, plan: str | None = None, files: dict[str, Path] | None = None) -> RunRecord:
        """Record an existing report as a completed run (its times from the report's creation and wall time)."""
        ended = datetime.fromisoformat(report.created_at)
        started = datetime.fromtimestamp(ended.timestamp() - float(report.provenance.wall_time_s), tz=ended.tzinfo or UTC)
        return self.record_run(
            report, model_name=report.provenance.model_name, plan=plan, started_at=started, ended_at=ended, user=user or current_user(), files=files
        )

    def has_run(self, run_id: str) -> bool:
        with self._read("looking up a run") as conn:
            return conn.execute(select(t.runs.c.seq).where(t.runs.c.run_id == run_id)).first() is not None

    def record_alert(self, run_id: str, target: str, ok: bool, error: str | None) -> None:
        """Keep the outcome of one alert (a webhook) sent about ``run_id``; alerts are not part of the chain."""
        with self._write(f"recording an alert for run {run_id}") as conn:
            conn.execute(insert(t.alerts).values(run_id=run_id, target=target, ok=bool(ok), error=error, at=iso_utc(datetime.now(UTC))))

    def alerts(self, run_id: str | None = None) -> list[dict]:
        query = select(t.alerts).order_by(t.alerts.c.id)
        if run_id is not None:
            query = query.where(t.alerts.c.run_id == run_id)
        with self._read("reading alerts") as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    @contextmanager
    def plan_lock(self, plan: str, ttl_s: float) -> Iterator[bool]:
        """Hold the database lock of ``plan`` for at most ``ttl_s`` seconds; yields whether it was acquired.

        Two schedulers on one store never run a plan twice at once: the second one gets
        False. A holder that died leaves a lock that expires after ``ttl_s``.
        """
        owner = uuid.uuid4().hex
        now = time.time()
        acquired = False
        with self._write(f"taking the lock of plan {plan}") as conn:
            taken = conn.execute(
                update(t.plan_locks).where(t.plan_locks.c.plan == plan, t.plan_locks.c.expires_at < now).values(owner=owner, expires_at=now + ttl_s)
            )
            acquired = taken.rowcount == 1
            if not acquired and conn.execute(select(t.plan_locks.c.plan).where(t.plan_locks.c.plan == plan)).first() is None:
                try:
                    with conn.begin_nested():
                        conn.execute(insert(t.plan_locks).values(plan=plan, owner=owner, expires_at=now + ttl_s))
                    acquired = True
                except IntegrityError:  # another scheduler inserted it first
                    acquired = False
        try:
            yield acquired
        finally:
            if acquired:
                with self._write(f"releasing the lock of plan {plan}") as conn:
                    conn.execute(delete(t.plan_locks).where(t.plan_locks.c.plan == plan, t.plan_locks.c.owner == owner))

    # --- reading -----------------------------------------------------------------------
    def runs(self, model: str | None = None, plan: str | None = None, limit: int | None = None) -> list[RunRecord]:
        """Recorded runs, newest first; only ``model``'s and ``plan``'s when given."""
        query = select(t.runs).order_by(t.runs.c.seq.desc())
        if model is not None:
            query = query.where(t.runs.c.model_name == model)
        if plan is not None:
            query = query.where(t.runs.c.plan == plan)
        if limit is not None:
            query = query.limit(limit)
        with self._read("listing runs") as conn:
            return [_record(r) for r in conn.execute(query).mappings()]

    def models(self) -> list[str]:
        """Names of the models with recorded runs."""
        with self._read("listing models") as conn:
            return sorted(r[0] for r in conn.execute(select(t.runs.c.model_name).distinct()))

    def get_run(self, run_id: str) -> RunRecord:
        with self._read(f"reading run {run_id}") as conn:
            row = conn.execute(select(t.runs).where(t.runs.c.run_id == run_id)).mappings().first()
        if row is None:
            raise StoreError(f"No run {run_id!r} in the store {self.location}.", fix="List the runs with: audits history --model NAME")
        return _record(row)

    def load_report(self, run_id: str) -> AuditReport:
        """The run's report as recorded (a crashed run has none)."""
        from audits.report import AuditReport

        with self._read(f"reading the report of run {run_id}") as conn:
            text = conn.execute(select(t.reports.c.report_json).where(t.reports.c.run_id == run_id)).scalar()
        if text is None:
            self.get_run(run_id)  # names a missing run
            raise StoreError(f"Run {run_id} has no report (it crashed before it had one).", fix="Choose a completed run.")
        return AuditReport.from_json(text)

    def files(self, run_id: str) -> dict[str, Path]:
        """The run's rendered files: name -> path."""
        with self._read(f"reading the files of run {run_id}") as conn:
            return {
                r.name: Path(r.path) for r in conn.execute(select(t.files.c.name, t.files.c.path).where(t.files.c.run_id == run_id).order_by(t.files.c.name))
            }

    def findings(self, run_id: str) -> pd.DataFrame:
        """The run's findings as stored, in the report's order."""
        import pandas as pd

        query = select(*(t.findings.c[f] for f in FINDING_FIELDS)).where(t.findings.c.run_id == run_id).order_by(t.findings.c.position)
        with self._read(f"reading the findings of run {run_id}") as conn:
            return pd.DataFrame(conn.execute(query).mappings().all(), columns=list(FINDING_FIELDS))

    def measurements(self, model: str, name: str | None = None, *, names: list[str] | None = None) -> pd.DataFrame:
        """Every stored measurement of ``model`` (only ``name``, or ``names``, when given) with its run: one row per run and measurement.

        Columns: run_id, started_at (UTC datetime), verdict, name, subject, key, value,
        interval_lo, interval_hi, direction, n; oldest run first.
        """
        import pandas as pd

        m, r = t.measurements, t.runs
        query = (
            select(r.c.run_id, r.c.started_at, r.c.verdict, m.c.name, m.c.subject, m.c.value, m.c.interval_lo, m.c.interval_hi, m.c.direction, m.c.n)
            .join(r, r.c.run_id == m.c.run_id)
            .where(m.c.model_name == model)
            .order_by(r.c.seq, m.c.position)
        )
        if name is not None:
            query = query.where(m.c.name == name)
        if names is not None:
            query = query.where(m.c.name.in_(names))
        columns = ["run_id", "started_at", "verdict", "name", "subject", "value", "interval_lo", "interval_hi", "direction", "n"]
        with self._read(f"reading the measurements of {model}") as conn:
            frame = pd.DataFrame(conn.execute(query).all(), columns=columns)
        frame["started_at"] = pd.to_datetime(frame["started_at"], utc=True, format="ISO8601")
        frame.insert(5, "key", [f"{n}/{s}" if s else n for n, s in zip(frame["name"], frame["subject"], strict=True)])
        return frame

    def measurement_keys(self, model: str) -> list[tuple[str, str]]:
        """The (name, subject) pairs ``model``'s runs measured, in the order they were first stored."""
        m = t.measurements
        query = select(m.c.name, m.c.subject).where(m.c.model_name == model).group_by(m.c.name, m.c.subject).order_by(func.min(m.c.id))
        with self._read(f"reading the measurements of {model}") as conn:
            return [(r.name, r.subject) for r in conn.execute(query)]

    def measurement_values(self, model: str, names: list[str]) -> dict[tuple[str, str, str], float | None]:
        """The stored values of measurements ``names`` of ``model``: (run id, name, subject) -> value."""
        m = t.measurements
        query = select(m.c.run_id, m.c.name, m.c.subject, m.c.value).where(m.c.model_name == model, m.c.name.in_(names))
        with self._read(f"reading the measurements of {model}") as conn:
            return {(r.run_id, r.name, r.subject): r.value for r in conn.execute(query)}

    def count(self) -> int:
        with self._read("counting runs") as conn:
            return int(conn.execute(select(t.chain_head.c.count).where(t.chain_head.c.id == 1)).scalar() or 0)

    def verify(self, public_key_path: str | Path | None = None) -> ChainVerification:
        """Walk the chain from the first record; see :func:`audits.store.verify.verify_chain`."""
        from audits.store.signing import load_public_key
        from audits.store.verify import verify_chain

        key = load_public_key(public_key_path)
        with self._read("verifying the chain") as conn:
            return verify_chain(conn, key)


def current_revision(conn: Connection) -> str | None:
    """The schema revision Alembic recorded in the database (None for an empty database)."""
    if not inspect(conn).has_table("alembic_version"):
        return None
    return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def current_user() -> str:
    """Who runs this process (the login name; 'unknown' where there is none)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _record(row) -> RunRecord:
    return RunRecord(
        run_id=row["run_id"],
        model_name=row["model_name"],
        plan=row["plan"],
        started_at=datetime.fromisoformat(row["started_at"]),
        ended_at=datetime.fromisoformat(row["ended_at"]),
        user=row["user"],
        tool_version=row["tool_version"],
        seed=row["seed"],
        weights_sha256=row["weights_sha256"],
        data_sha256=row["data_sha256"],
        spec=json.loads(row["spec_json"]),
        policy_name=row["policy_name"],
        verdict=row["verdict"],
        status=row["status"],
        error=row["error"],
        record_sha256=row["record_sha256"],
        prev_sha256=row["prev_sha256"],
    )
