"""The audit store: every run with its report, findings, measurements and rendered files, in SQLite or PostgreSQL, hash-chained.

>>> store = open_store()                 # $AUDITS_STORE_URL, else ./audit-store/audits.db
>>> run = store.record_run(report, model_name=..., started_at=..., ended_at=..., user=...)
>>> store.verify().ok

See ``docs/store.md`` for URLs, the SQLite settings, PostgreSQL, verification, signing
and migrating the former folder of JSON files.
"""

from __future__ import annotations

from audits.store.connect import STORE_URL_ENV, resolve_url
from audits.store.database import Store, current_user, open_store

# The former folder-of-JSON store (``audits store migrate`` reads it), importable here for code written against it.
from audits.store.legacy import AuditStore, StoredAudit
from audits.store.records import ChainVerification, RunRecord, StoreError

__all__ = ["STORE_URL_ENV", "AuditStore", "ChainVerification", "RunRecord", "Store", "StoreError", "StoredAudit", "current_user", "open_store", "resolve_url"]
