"""What one stored run is (:class:`RunRecord`), what ``verify`` found (:class:`ChainVerification`), and
the canonical hashes that chain the records.

Every hash is the sha256 of canonical JSON (sorted keys, no spaces, UTF-8, no NaN): the
record hash covers the run's fields, the hashes of its report JSON, findings,
measurements and rendered files, and the previous record's hash, so changing any of them,
or removing a record, breaks the chain at that run.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from audits.errors import AuditError

Status = Literal["completed", "crashed"]
STATUSES: tuple[str, ...] = ("completed", "crashed")


class StoreError(AuditError):
    """The store cannot be reached, is locked, or holds no such run."""


@dataclass(frozen=True)
class RunRecord:
    """One recorded run: what was audited, by whom, when, with which outcome, and its place in the chain."""

    run_id: str
    model_name: str
    plan: str | None
    started_at: datetime
    ended_at: datetime
    user: str
    tool_version: str
    seed: int | None
    weights_sha256: str | None
    data_sha256: str | None
    spec: dict
    policy_name: str | None
    verdict: str
    status: str
    error: str | None
    record_sha256: str
    prev_sha256: str


@dataclass(frozen=True)
class ChainVerification:
    """The outcome of walking the chain: ``ok``, how many records were ``checked``, and the first bad one."""

    ok: bool
    checked: int
    first_bad_run_id: str | None = None
    reason: str | None = None
    signed: int = 0

    def to_text(self) -> str:
        if self.ok:
            signed = f", {self.signed} signature(s) valid" if self.signed else ""
            return f"store verified: {self.checked} record(s), chain intact{signed}"
        return f"store NOT verified: run {self.first_bad_run_id}: {self.reason} ({self.checked} record(s) checked)"


def canonical_json(obj: object) -> bytes:
    """The bytes every hash is taken over: sorted keys, compact separators, UTF-8, no NaN."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def sha256_hex(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


def finite_or_none(value: object) -> float | None:
    """Numbers as stored: NaN and infinities become NULL (SQLite cannot keep NaN, JSON cannot hold either)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


# Column order of the hashed child rows (the table columns minus ids).
FINDING_FIELDS = (
    "position",
    "check_id",
    "subject",
    "title",
    "status",
    "measured",
    "threshold",
    "warn_threshold",
    "direction",
    "interval_lo",
    "interval_hi",
    "evidence",
    "detail",
)
MEASUREMENT_FIELDS = ("position", "name", "subject", "value", "interval_lo", "interval_hi", "direction", "evidence", "n")
FILE_FIELDS = ("name", "path", "sha256")
# The run fields the record hash covers, in addition to the content hashes.
RECORD_FIELDS = (
    "run_id", "model_name", "plan", "started_at", "ended_at", "user", "tool_version", "seed", "weights_sha256", "data_sha256", "spec_json",
    "policy_name", "verdict", "status", "error", "report_sha256", "findings_sha256", "measurements_sha256", "files_sha256", "prev_run_id", "prev_sha256",
)  # fmt: skip


def rows_sha256(rows: list[dict], fields: tuple[str, ...]) -> str:
    """The hash of child rows (findings, measurements, files) in their stored order, as dicts."""
    return values_sha256([[row[f] for f in fields] for row in rows])


def values_sha256(rows: list) -> str:
    """The hash of child rows given as value sequences in ``*_FIELDS`` order.

    Values are hashed as stored: numbers in float columns are written as floats (NaN as
    NULL) and come back as floats on SQLite and PostgreSQL alike, so no conversion is
    needed here (this runs over every row of every record in ``verify``).
    """
    return sha256_hex(canonical_json([list(r) for r in rows]))


def record_sha256(row: dict) -> str:
    """The hash of one run record (its fields, content hashes and link)."""
    return sha256_hex(canonical_json({f: _plain(row[f]) for f in RECORD_FIELDS}))


def _plain(value: object) -> object:
    # Databases hand back floats for integral values and bools as ints: hash what they mean.
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float):
        return finite_or_none(value)
    return value
