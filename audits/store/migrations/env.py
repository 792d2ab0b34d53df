"""Alembic environment: runs on the connection the store hands over (``config.attributes['connection']``)."""

from __future__ import annotations

from alembic import context

from audits.store.tables import metadata

connection = context.config.attributes["connection"]
# render_as_batch: SQLite cannot ALTER most things; batch mode copies the table instead.
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
