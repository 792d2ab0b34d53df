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

import pandas as pd
from sqlalchemy import Connection, Engine, delete, insert, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError

from audits.store import tables as t
from audits.store.connect import busy_timeout, create_store_engine, describe, resolve_url, store_error
from audits.store.records import (
    FILE_FIELDS,
    FINDING_FIELDS,
    MEASUREMENT_FIELDS,
    STATUSES,
    ChainVerification,
    RunRecord,
    StoreError,
    canonical_json,
    finite_or_none,
    record_sha256,
    rows_sha256,
    sha256_hex,
)

if TYPE_CHECKING:
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


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.astimezone()  # a naive time is the machine's local time
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def file_sha256(path: Path) -> str | None:
    """The sha256 of a file's bytes, None when it cannot be read."""
    import hashlib

    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()


def _tool_version(report: AuditReport | None) -> str:
    from audits import __version__

    if report is not None:
        return str(report.provenance.library_versions.get("audits") or __version__)
    return __version__


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
        from alembic import command
        from alembic.config import Config
        from alembic.runtime.migration import MigrationContext
        from alembic.script import ScriptDirectory

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        head = ScriptDirectory.from_config(config).get_current_head()
        with self._read("opening the store") as conn:
            if MigrationContext.configure(conn).get_current_revision() == head:
                return
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
        from audits.findings import overall_verdict

        if status not in STATUSES:
            raise StoreError(f"Run status {status!r} is not one of {', '.join(STATUSES)}.", fix="Record 'completed' or 'crashed'.")
        if report is not None and report.provenance.model_name != model_name:
            raise StoreError(f"The report audits {report.provenance.model_name!r}, not {model_name!r}.", fix="Record the run under the report's model name.")
        run_id = report.report_id if report is not None else uuid.uuid4().hex[:12]
        file_rows = []
        for name, path in sorted((files or {}).items()):
            path = Path(path).resolve()
            digest = file_sha256(path)
            if digest is None:
                raise StoreError(f"The rendered file {path} ({name}) cannot be read.", fix="Record only files that exist.")
            file_rows.append({"name": name, "path": str(path), "sha256": digest})
        report_json = None if report is None else canonical_json(report.to_dict()).decode("utf-8")
        finding_rows = [] if report is None else [_finding_row(i, f) for i, f in enumerate(report.findings)]
        measurement_rows = [] if report is None else [_measurement_row(i, m) for i, m in enumerate(report.measurements())]
        p = None if report is None else report.provenance
        row = {
            "run_id": run_id,
            "model_name": model_name,
            "plan": plan,
            "started_at": _iso(started_at),
            "ended_at": _iso(ended_at),
            "user": user,
            "tool_version": _tool_version(report),
            "seed": None if p is None else int(p.seed),
            "weights_sha256": None if p is None else p.weights_sha256,
            "data_sha256": None if p is None else p.data_sha256,
            "spec_json": canonical_json({} if p is None else p.spec).decode("utf-8"),
            "policy_name": None if report is None or not report.policy else str(report.policy.get("name") or "") or None,
            # The verdict is the findings' own (never recomputed here); a run without a report has none.
            "verdict": "not_evaluated" if report is None else overall_verdict(report.findings),
            "status": status,
            "error": error,
            "report_sha256": None if report_json is None else sha256_hex(report_json.encode("utf-8")),
            "findings_sha256": rows_sha256(finding_rows, FINDING_FIELDS),
            "measurements_sha256": rows_sha256(measurement_rows, MEASUREMENT_FIELDS),
            "files_sha256": rows_sha256(file_rows, FILE_FIELDS),
        }
        from audits.store.signing import load_private_key, sign

        key = load_private_key()
        with self._write(f"recording run {run_id} of {model_name}") as conn:
            if conn.execute(select(t.runs.c.seq).where(t.runs.c.run_id == run_id)).first() is not None:
                raise StoreError(f"Run {run_id} is already in the store {self.location}.", fix="Each report is recorded once; re-run the audit for a new run.")
            head = conn.execute(select(t.chain_head).where(t.chain_head.c.id == 1).with_for_update()).mappings().one()
            row["prev_run_id"], row["prev_sha256"] = head["run_id"], head["record_sha256"]
            row["record_sha256"] = record_sha256(row)
            if key is not None:
                row["signature"], row["key_id"] = sign(key, row["record_sha256"])
            seq = conn.execute(insert(t.runs).values(**row)).inserted_primary_key[0]
            if report_json is not None:
                conn.execute(insert(t.reports).values(run_id=run_id, report_json=report_json))
            if finding_rows:
                conn.execute(insert(t.findings), [{"run_id": run_id, **r} for r in finding_rows])
            if measurement_rows:
                conn.execute(insert(t.measurements), [{"run_id": run_id, "model_name": model_name, **r} for r in measurement_rows])
            if file_rows:
                conn.execute(insert(t.files), [{"run_id": run_id, **r} for r in file_rows])
            if p is not None:
                known = select(t.models.c.id).where(t.models.c.name == model_name, t.models.c.weights_sha256 == p.weights_sha256)
                if conn.execute(known).first() is None:
                    conn.execute(insert(t.models).values(name=model_name, weights_sha256=p.weights_sha256, first_seen_at=row["ended_at"]))
            conn.execute(
                update(t.chain_head).where(t.chain_head.c.id == 1).values(seq=seq, run_id=run_id, record_sha256=row["record_sha256"], count=head["count"] + 1)
            )
        return _record(row)

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
            conn.execute(insert(t.alerts).values(run_id=run_id, target=target, ok=bool(ok), error=error, at=_iso(datetime.now(UTC))))

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
        query = select(*(t.findings.c[f] for f in FINDING_FIELDS)).where(t.findings.c.run_id == run_id).order_by(t.findings.c.position)
        with self._read(f"reading the findings of run {run_id}") as conn:
            return pd.DataFrame(conn.execute(query).mappings().all(), columns=list(FINDING_FIELDS))

    def measurements(self, model: str, name: str | None = None) -> pd.DataFrame:
        """Every stored measurement of ``model`` (only ``name`` when given) with its run: one row per run and measurement.

        Columns: run_id, started_at (UTC datetime), verdict, name, subject, key, value,
        interval_lo, interval_hi, direction, n; oldest run first.
        """
        m, r = t.measurements, t.runs
        query = (
            select(r.c.run_id, r.c.started_at, r.c.verdict, m.c.name, m.c.subject, m.c.value, m.c.interval_lo, m.c.interval_hi, m.c.direction, m.c.n)
            .join(r, r.c.run_id == m.c.run_id)
            .where(m.c.model_name == model)
            .order_by(r.c.seq, m.c.position)
        )
        if name is not None:
            query = query.where(m.c.name == name)
        columns = ["run_id", "started_at", "verdict", "name", "subject", "value", "interval_lo", "interval_hi", "direction", "n"]
        with self._read(f"reading the measurements of {model}") as conn:
            frame = pd.DataFrame(conn.execute(query).all(), columns=columns)
        frame["started_at"] = pd.to_datetime(frame["started_at"], utc=True, format="ISO8601")
        frame.insert(5, "key", [f"{n}/{s}" if s else n for n, s in zip(frame["name"], frame["subject"], strict=True)])
        return frame

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


def current_user() -> str:
    """Who runs this process (the login name; 'unknown' where there is none)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _finding_row(position: int, f) -> dict:
    lo, hi = (f.interval or [None, None])[:2] if f.interval else (None, None)
    return {
        "position": position,
        "check_id": f.check_id,
        "subject": f.subject or "",
        "title": f.title,
        "status": f.status,
        "measured": finite_or_none(f.measured),
        "threshold": finite_or_none(f.threshold),
        "warn_threshold": finite_or_none(f.warn_threshold),
        "direction": f.direction,
        "interval_lo": finite_or_none(lo),
        "interval_hi": finite_or_none(hi),
        "evidence": f.evidence or "",
        "detail": f.detail or "",
    }


def _measurement_row(position: int, m) -> dict:
    lo, hi = (m.interval[0], m.interval[1]) if m.interval else (None, None)
    return {
        "position": position,
        "name": m.name,
        "subject": m.subject or "",
        "value": finite_or_none(m.value),
        "interval_lo": finite_or_none(lo),
        "interval_hi": finite_or_none(hi),
        "direction": str(m.direction),
        "evidence": m.evidence or "",
        "n": None if m.n is None else int(m.n),
    }


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
