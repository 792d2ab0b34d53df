"""The first schema: models, runs, reports, findings, measurements, files, alerts, plan locks, chain head.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "models",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("weights_sha256", sa.String(64), nullable=False),
        sa.Column("first_seen_at", sa.String(40), nullable=False),
        sa.UniqueConstraint("name", "weights_sha256", name="uq_models_name_weights"),
    )
    op.create_table(
        "runs",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(64), nullable=False, unique=True),
        sa.Column("model_name", sa.String(200), nullable=False, index=True),
        sa.Column("plan", sa.String(200), nullable=True, index=True),
        sa.Column("started_at", sa.String(40), nullable=False),
        sa.Column("ended_at", sa.String(40), nullable=False),
        sa.Column("user", sa.String(200), nullable=False),
        sa.Column("tool_version", sa.String(40), nullable=False),
        sa.Column("seed", sa.Integer, nullable=True),
        sa.Column("weights_sha256", sa.String(64), nullable=True),
        sa.Column("data_sha256", sa.String(64), nullable=True),
        sa.Column("spec_json", sa.Text, nullable=False),
        sa.Column("policy_name", sa.String(200), nullable=True),
        sa.Column("verdict", sa.String(20), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("report_sha256", sa.String(64), nullable=True),
        sa.Column("findings_sha256", sa.String(64), nullable=False),
        sa.Column("measurements_sha256", sa.String(64), nullable=False),
        sa.Column("files_sha256", sa.String(64), nullable=False),
        sa.Column("prev_run_id", sa.String(64), nullable=True),
        sa.Column("prev_sha256", sa.String(64), nullable=False),
        sa.Column("record_sha256", sa.String(64), nullable=False),
        sa.Column("signature", sa.Text, nullable=True),
        sa.Column("key_id", sa.String(64), nullable=True),
    )
    op.create_table(
        "reports",
        sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.run_id", ondelete="CASCADE"), primary_key=True),
        sa.Column("report_json", sa.Text, nullable=False),
    )
    op.create_table(
        "findings",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.run_id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("check_id", sa.String(200), nullable=False),
        sa.Column("subject", sa.String(400), nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("measured", sa.Float, nullable=True),
        sa.Column("threshold", sa.Float, nullable=True),
        sa.Column("warn_threshold", sa.Float, nullable=True),
        sa.Column("direction", sa.String(10), nullable=False),
        sa.Column("interval_lo", sa.Float, nullable=True),
        sa.Column("interval_hi", sa.Float, nullable=True),
        sa.Column("evidence", sa.Text, nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
    )
    op.create_table(
        "measurements",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.run_id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("model_name", sa.String(200), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("subject", sa.String(400), nullable=False),
        sa.Column("value", sa.Float, nullable=True),
        sa.Column("interval_lo", sa.Float, nullable=True),
        sa.Column("interval_hi", sa.Float, nullable=True),
        sa.Column("direction", sa.String(20), nullable=False),
        sa.Column("evidence", sa.Text, nullable=False),
        sa.Column("n", sa.Integer, nullable=True),
    )
    op.create_index("ix_measurements_model_name", "measurements", ["model_name", "name"])
    op.create_table(
        "files",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.run_id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
    )
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(64), nullable=False, index=True),
        sa.Column("target", sa.Text, nullable=False),
        sa.Column("ok", sa.Boolean, nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("at", sa.String(40), nullable=False),
    )
    op.create_table(
        "plan_locks",
        sa.Column("plan", sa.String(200), primary_key=True),
        sa.Column("owner", sa.String(80), nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
    )
    head = op.create_table(
        "chain_head",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("run_id", sa.String(64), nullable=True),
        sa.Column("record_sha256", sa.String(64), nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
    )
    # The one head row every append locks and moves; the chain starts at the genesis hash.
    op.bulk_insert(head, [{"id": 1, "seq": 0, "run_id": None, "record_sha256": "0" * 64, "count": 0}])


def downgrade() -> None:
    for table in ("chain_head", "plan_locks", "alerts", "files", "measurements", "findings", "reports", "runs", "models"):
        op.drop_table(table)
