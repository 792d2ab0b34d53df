"""The runs of the SQL store as the pages list and open them, whoever recorded them (dashboard, ``audits run --store``, scans).

Each listed run's report JSON is written once into a local folder (``<store folder>/reports/
<model>/<run id>.json``) so the page caches, keyed by file, read it like any report; the
database stays the record (``audits verify`` checks it, not these copies). HTML and PDF
renderings recorded with the run are offered as they are; ones the page renders later are
kept beside the JSON copy.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path

from audits.report import AuditReport, write_atomic
from audits.store import RunRecord, Store, current_user, open_store, resolve_url
from audits.uploads import ModelUploads

# The pages list the newest runs only; older ones are on the History page and in `audits history`.
LIST_LIMIT = 200


@dataclass(frozen=True)
class StoredRun:
    """One run as the pages show it: its record, the local copy of its report and a small summary."""

    record: RunRecord
    path: Path
    summary: dict = field(default_factory=dict)
    recorded_files: dict = field(default_factory=dict)

    @property
    def report_id(self) -> str:
        return self.record.run_id

    @property
    def model(self) -> str:
        return self.record.model_name

    @property
    def created_at(self) -> str:
        return self.record.ended_at.isoformat()

    @property
    def verdict(self) -> str:
        return self.record.verdict if self.record.status == "completed" else self.record.status

    @property
    def label(self) -> str:
        """A one-line description for pickers."""
        acc = self.summary.get("accuracy")
        acc_text = f", accuracy {acc:.3f}" if isinstance(acc, int | float) else ""
        plan = f" · plan {self.record.plan}" if self.record.plan else ""
        return f"{self.record.started_at.strftime('%Y-%m-%d %H:%M')} · {self.model} · {self.report_id} · {self.verdict}{acc_text}{plan}"

    def export_path(self, ext: str) -> Path:
        """Where the ``ext`` rendering (``html``, ``pdf``) is: the one recorded with the run, else beside the JSON copy."""
        ext = ext.lstrip(".")
        recorded = self.recorded_files.get(ext)
        return recorded if recorded is not None and recorded.is_file() else self.path.with_suffix(f".{ext}")


def _summary(record: RunRecord, raw: dict) -> dict:
    perf = raw.get("performance") or {}
    provenance = raw.get("provenance") or {}
    return {
        "weights_sha256": record.weights_sha256,
        "data_sha256": record.data_sha256,
        "accuracy": perf.get("accuracy"),
        "n_rows": (raw.get("data_summary") or {}).get("n_rows"),
        "wall_time_s": provenance.get("wall_time_s", (record.ended_at - record.started_at).total_seconds()),
        "failures": [f.get("name") for f in raw.get("failures") or [] if isinstance(f, dict)],
        "verdict": record.verdict,
    }


class RunStore:
    """The SQL store for the pages (see the module docstring); ``root`` is the local folder, ``store`` the database."""

    def __init__(self, store: Store, root: Path) -> None:
        self.store = store
        self.root = root
        self._summaries: dict[str, dict] = {}

    @classmethod
    def at(cls, root: str | Path | None = None) -> RunStore:
        """The dashboard's store (``root`` None), or the SQLite store and local copies in the folder ``root``."""
        return run_store() if root is None else _open(resolve_url(str(root)), str(Path(root).resolve()))

    @property
    def location(self) -> str:
        return self.store.location

    def _copy(self, record: RunRecord) -> StoredRun | None:
        path = self.root / "reports" / record.model_name / f"{record.run_id}.json"
        if record.status != "completed":
            return None
        if not path.is_file():
            text = self.store.load_report(record.run_id).to_json()
            write_atomic(path, text.encode())
        if record.run_id not in self._summaries:
            self._summaries[record.run_id] = _summary(record, json.loads(path.read_text()))
        return StoredRun(record=record, path=path, summary=self._summaries[record.run_id], recorded_files=self.store.files(record.run_id))

    def list(self, model: str | None = None, limit: int = LIST_LIMIT) -> list[StoredRun]:
        """Completed runs, newest first (``model``'s only when given)."""
        return [run for record in self.store.runs(model=model, limit=limit) if (run := self._copy(record)) is not None]

    def get(self, run_id: str) -> StoredRun:
        run = self._copy(self.store.get_run(run_id))
        if run is None:
            from audits.store import StoreError

            raise StoreError(f"Run {run_id} crashed and has no report.", fix="Choose a completed run.")
        return run

    def save(self, report: AuditReport, *, started_at: datetime | None = None, plan: str | None = None) -> StoredRun:
        """Record a run made here (user: the signed-in user where there is one)."""
        ended = datetime.now(UTC)
        record = self.store.record_run(
            report, model_name=report.provenance.model_name, plan=plan, started_at=started_at or ended, ended_at=ended, user=current_identity()
        )
        return self.get(record.run_id)

    def write_export(self, entry: StoredRun, ext: str, payload: bytes) -> Path:
        return write_atomic(entry.path.with_suffix(f".{ext.lstrip('.')}"), payload)

    def latest(self, model: str, *, weights_sha256: str | None = None, data_sha256: str | None = None) -> StoredRun | None:
        """The newest completed run of ``model`` (of exactly these weights and data when given)."""
        for record in self.store.runs(model=model, limit=LIST_LIMIT):
            if (
                record.status != "completed"
                or (weights_sha256 and record.weights_sha256 != weights_sha256)
                or (data_sha256 and record.data_sha256 != data_sha256)
            ):
                continue
            return self._copy(record)
        return None

    # Uploaded models stay files in the store folder (audits.uploads).
    def model_card_paths(self) -> dict[str, Path]:
        return ModelUploads(self.root).model_card_paths()

    def register_model(self, *args, **kwargs) -> Path:
        return ModelUploads(self.root).register_model(*args, **kwargs)


def current_identity() -> str:
    """Who uses the dashboard: the signed-in user (email, else name), else ``dashboard:<login>``."""
    name = None
    try:
        import streamlit as st
        from streamlit.runtime.scriptrunner import get_script_run_ctx

        if get_script_run_ctx() is not None and getattr(st.user, "is_logged_in", False):
            name = getattr(st.user, "email", None) or getattr(st.user, "name", None)
    except Exception:  # auth not configured: st.user has no login state
        name = None
    return str(name or f"dashboard:{current_user()}")


@lru_cache(maxsize=8)
def _open(url: str, root: str) -> RunStore:
    return RunStore(open_store(url), Path(root))


def run_store() -> RunStore:
    """The store the dashboard uses: ``$AUDITS_STORE_URL`` (else ``audits.db`` in the store folder), the folder ``$AUDITS_STORE`` or ./audit-store."""
    root = ModelUploads().root
    return _open(resolve_url(), str(root))
