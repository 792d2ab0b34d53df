"""Walking the hash chain: recompute every record's content hashes and link, check rendered files and signatures.

The walk streams each table once in chain order (runs by ``seq``, their children grouped
by run), so 10,000 records verify in a few seconds on SQLite.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import Connection, select

from audits.store import tables as t
from audits.store.records import FILE_FIELDS, FINDING_FIELDS, MEASUREMENT_FIELDS, ChainVerification, record_sha256, sha256_hex, values_sha256

_BATCH = 2000


class _Children:
    """Rows of one child table in run order, handed out one run at a time."""

    def __init__(self, conn: Connection, table, fields: tuple[str, ...], order) -> None:
        query = select(t.runs.c.seq, *(table.c[f] for f in fields)).join(t.runs, t.runs.c.run_id == table.c.run_id).order_by(t.runs.c.seq, *order)
        self.result = conn.execution_options(yield_per=_BATCH).execute(query)
        self._rows: Iterator = iter(self.result)
        self._next = next(self._rows, None)

    def take(self, seq: int) -> list[tuple]:
        """The rows of run ``seq`` as value tuples in the fields' order (the seq dropped)."""
        out = []
        while self._next is not None and self._next[0] < seq:  # children of a run no longer in the chain
            self._next = next(self._rows, None)
        while self._next is not None and self._next[0] == seq:
            out.append(self._next[1:])
            self._next = next(self._rows, None)
        return out


def verify_chain(conn: Connection, public_key=None) -> ChainVerification:
    """Check every record of the store in chain order; the first mismatch is named.

    A record fails when its report JSON, findings, measurements or rendered files no longer
    hash to what it recorded, when its own hash does not match its fields, when its link
    does not name the record before it (a record was deleted or reordered), or, with a
    public key, when its signature is missing or invalid. The chain head must name the
    last record (deleting the newest run is caught there).
    """
    from audits.store.signing import key_id

    expected_key_id = key_id(public_key) if public_key is not None else None
    streams: list = []
    try:
        return _walk(conn, public_key, expected_key_id, streams)
    finally:
        for result in streams:  # server-side cursors (PostgreSQL) are closed even after an early answer
            result.close()


def _walk(conn: Connection, public_key, expected_key_id: str | None, streams: list) -> ChainVerification:
    from audits.store.signing import signature_valid

    findings = _Children(conn, t.findings, FINDING_FIELDS, [t.findings.c.position])
    measurements = _Children(conn, t.measurements, MEASUREMENT_FIELDS, [t.measurements.c.position])
    files = _Children(conn, t.files, FILE_FIELDS, [t.files.c.name])
    reports = _Children(conn, t.reports, ("report_json",), [])
    streams += [c.result for c in (findings, measurements, files, reports)]
    prev_id, prev_hash = None, t.GENESIS
    checked = signed = 0

    def bad(run_id: str, reason: str) -> ChainVerification:
        return ChainVerification(ok=False, checked=checked, first_bad_run_id=run_id, reason=reason, signed=signed)

    runs = conn.execution_options(yield_per=_BATCH).execute(select(t.runs).order_by(t.runs.c.seq))
    streams.append(runs)
    for row in runs.mappings():
        checked += 1
        run_id, seq = row["run_id"], row["seq"]
        if row["prev_sha256"] != prev_hash or row["prev_run_id"] != prev_id:
            if row["prev_run_id"] != prev_id:
                missing = f"run {row['prev_run_id']}" if row["prev_run_id"] else "no run"
                return bad(
                    run_id,
                    f"its link names {missing} as the record before it, but the chain holds {prev_id or 'nothing'} there: a record was deleted or reordered",
                )
            return bad(run_id, "its link does not match the hash of the record before it: that record was changed")
        report = reports.take(seq)
        if row["report_sha256"] is not None:
            if not report:
                return bad(run_id, "its stored report was deleted")
            if sha256_hex(report[0][0].encode("utf-8")) != row["report_sha256"]:
                return bad(run_id, "its stored report JSON no longer matches its hash")
        elif report:
            return bad(run_id, "a report was added to a run recorded without one")
        if values_sha256(findings.take(seq)) != row["findings_sha256"]:
            return bad(run_id, "its stored findings no longer match their hash")
        if values_sha256(measurements.take(seq)) != row["measurements_sha256"]:
            return bad(run_id, "its stored measurements no longer match their hash")
        file_rows = files.take(seq)
        if values_sha256(file_rows) != row["files_sha256"]:
            return bad(run_id, "its list of rendered files was changed")
        for name, path, digest in file_rows:
            problem = _file_problem(Path(path), digest)
            if problem:
                return bad(run_id, f"its rendered {name} file {path} {problem}")
        if record_sha256(row) != row["record_sha256"]:
            return bad(run_id, "its record (run fields) no longer matches its hash")
        if public_key is not None:
            if not row["signature"]:
                return bad(run_id, "it is not signed, and a public key was given")
            if row["key_id"] != expected_key_id or not signature_valid(public_key, row["record_sha256"], row["signature"]):
                return bad(run_id, f"its signature is not valid for the public key {expected_key_id}")
            signed += 1
        prev_id, prev_hash = run_id, row["record_sha256"]
    head = conn.execute(select(t.chain_head).where(t.chain_head.c.id == 1)).mappings().one()
    if head["run_id"] != prev_id or head["record_sha256"] != prev_hash or head["count"] != checked:
        missing = head["run_id"] or "(none)"
        return bad(
            missing,
            f"the chain head names run {missing} as the newest record ({head['count']} records) but the chain ends at {prev_id or 'nothing'} ({checked} records): a record was deleted",
        )
    return ChainVerification(ok=True, checked=checked, signed=signed)


def _file_problem(path: Path, expected: str) -> str:
    from audits.store.prepare import file_sha256

    if not path.is_file():
        return "is missing"
    return "" if file_sha256(path) == expected else "no longer matches its hash"
