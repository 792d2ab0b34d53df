"""The store's tables (SQLAlchemy Core). Alembic migrations in ``migrations/`` create and change them.

``runs.seq`` orders the hash chain; ``chain_head`` (one row) holds the newest record's hash
so that deleting the last run is detected too, and is the row writers lock to append in
order on PostgreSQL.
"""

from __future__ import annotations

from sqlalchemy import Boolean, Column, Float, ForeignKey, Index, Integer, MetaData, String, Table, Text, UniqueConstraint

metadata = MetaData()

models = Table(
    "models",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False),
    Column("weights_sha256", String(64), nullable=False),
    Column("first_seen_at", String(40), nullable=False),
    UniqueConstraint("name", "weights_sha256", name="uq_models_name_weights"),
)

runs = Table(
    "runs",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(64), nullable=False, unique=True),
    Column("model_name", String(200), nullable=False, index=True),
    Column("plan", String(200), nullable=True, index=True),
    Column("started_at", String(40), nullable=False),
    Column("ended_at", String(40), nullable=False),
    Column("user", String(200), nullable=False),
    Column("tool_version", String(40), nullable=False),
    Column("seed", Integer, nullable=True),
    Column("weights_sha256", String(64), nullable=True),
    Column("data_sha256", String(64), nullable=True),
    Column("spec_json", Text, nullable=False),
    Column("policy_name", String(200), nullable=True),
    Column("verdict", String(20), nullable=False),
    Column("status", String(20), nullable=False),
    Column("error", Text, nullable=True),
    Column("report_sha256", String(64), nullable=True),
    Column("findings_sha256", String(64), nullable=False),
    Column("measurements_sha256", String(64), nullable=False),
    Column("files_sha256", String(64), nullable=False),
    Column("prev_run_id", String(64), nullable=True),
    Column("prev_sha256", String(64), nullable=False),
    Column("record_sha256", String(64), nullable=False),
    Column("signature", Text, nullable=True),
    Column("key_id", String(64), nullable=True),
)

reports = Table(
    "reports",
    metadata,
    Column("run_id", String(64), ForeignKey("runs.run_id", ondelete="CASCADE"), primary_key=True),
    Column("report_json", Text, nullable=False),
)

findings = Table(
    "findings",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(64), ForeignKey("runs.run_id", ondelete="CASCADE"), nullable=False, index=True),
    Column("position", Integer, nullable=False),
    Column("check_id", String(200), nullable=False),
    Column("subject", String(400), nullable=False),
    Column("title", Text, nullable=False),
    Column("status", String(20), nullable=False),
    Column("measured", Float, nullable=True),
    Column("threshold", Float, nullable=True),
    Column("warn_threshold", Float, nullable=True),
    Column("direction", String(10), nullable=False),
    Column("interval_lo", Float, nullable=True),
    Column("interval_hi", Float, nullable=True),
    Column("evidence", Text, nullable=False),
    Column("detail", Text, nullable=False),
)

measurements = Table(
    "measurements",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(64), ForeignKey("runs.run_id", ondelete="CASCADE"), nullable=False, index=True),
    Column("model_name", String(200), nullable=False),
    Column("position", Integer, nullable=False),
    Column("name", String(200), nullable=False),
    Column("subject", String(400), nullable=False),
    Column("value", Float, nullable=True),
    Column("interval_lo", Float, nullable=True),
    Column("interval_hi", Float, nullable=True),
    Column("direction", String(20), nullable=False),
    Column("evidence", Text, nullable=False),
    Column("n", Integer, nullable=True),
    Index("ix_measurements_model_name", "model_name", "name"),
)

files = Table(
    "files",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(64), ForeignKey("runs.run_id", ondelete="CASCADE"), nullable=False, index=True),
    Column("name", String(200), nullable=False),
    Column("path", Text, nullable=False),
    Column("sha256", String(64), nullable=False),
)

alerts = Table(
    "alerts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(64), nullable=False, index=True),
    Column("target", Text, nullable=False),
    Column("ok", Boolean, nullable=False),
    Column("error", Text, nullable=True),
    Column("at", String(40), nullable=False),
)

plan_locks = Table(
    "plan_locks",
    metadata,
    Column("plan", String(200), primary_key=True),
    Column("owner", String(80), nullable=False),
    Column("expires_at", Float, nullable=False),
)

chain_head = Table(
    "chain_head",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("seq", Integer, nullable=False),
    Column("run_id", String(64), nullable=True),
    Column("record_sha256", String(64), nullable=False),
    Column("count", Integer, nullable=False),
)

# Audits queued from the dashboard (or ``audits submit``) and run by ``audits worker``; not part of the chain
# (the run a job records is). ``heartbeat_at`` (epoch seconds) is renewed while a worker runs the job, so a
# job whose worker died is told apart from a slow one.
jobs = Table(
    "jobs",
    metadata,
    Column("job_id", String(32), primary_key=True),
    Column("model_name", String(200), nullable=False),
    Column("card_path", Text, nullable=False),
    Column("spec_json", Text, nullable=False),
    Column("user", String(200), nullable=False, index=True),
    Column("status", String(20), nullable=False, index=True),
    Column("progress", Float, nullable=False),
    Column("message", Text, nullable=False),
    Column("cancel_requested", Boolean, nullable=False),
    Column("created_at", String(40), nullable=False),
    Column("started_at", String(40), nullable=True),
    Column("ended_at", String(40), nullable=True),
    Column("heartbeat_at", Float, nullable=True),
    Column("worker", String(80), nullable=True),
    Column("run_id", String(64), nullable=True),
    Column("error", Text, nullable=True),
)

GENESIS = "0" * 64
# The newest Alembic revision in migrations/versions (a test checks they agree): a store at it needs no upgrade.
SCHEMA_REVISION = "0002"
