"""Bringing reports in: report files (``audits import``) and the former folder-of-JSON store (``audits store migrate``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from audits.store.database import Store
from audits.store.records import RunRecord, StoreError


@dataclass
class ImportResult:
    """What an import did: the runs recorded and the reports skipped because they were already there."""

    recorded: list[RunRecord] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def to_text(self, where: str) -> str:
        text = f"recorded {len(self.recorded)} run(s) in {where}"
        return text + (f"; {len(self.skipped)} already there: {', '.join(self.skipped[:5])}{' ...' if len(self.skipped) > 5 else ''}" if self.skipped else "")


def rendered_beside(path: Path) -> dict[str, Path]:
    """The HTML and PDF renderings written beside a report JSON (same stem), where present."""
    return {ext: p for ext in ("html", "pdf") if (p := path.with_suffix(f".{ext}")).is_file()}


def import_reports(store: Store, paths: list[str | Path], *, plan: str | None = None, user: str | None = None) -> ImportResult:
    """Record every report file as a completed run, oldest first; every file is read before any is recorded.

    Reports already in the store (same report id) are skipped, so an import can be repeated.
    """
    from audits.report import AuditReport

    loaded = [(Path(p), AuditReport.load(p)) for p in paths]  # a bad file fails before anything is recorded
    loaded.sort(key=lambda item: item[1].created_at)
    result = ImportResult()
    for path, report in loaded:
        if store.has_run(report.report_id):
            result.skipped.append(report.report_id)
            continue
        result.recorded.append(store.import_report(report, plan=plan, user=user, files=rendered_beside(path)))
    return result


def migrate_file_store(store: Store, root: str | Path) -> ImportResult:
    """Record every report of the former file store at ``root`` (``reports/<model>/*.json``) with its rendered exports."""
    from audits.store.legacy import AuditStore

    folder = Path(root)
    if not (folder / "reports").is_dir():
        raise StoreError(
            f"{folder} holds no file store (no {folder / 'reports'} folder).", fix="Pass the folder the former store used, e.g. --from audit-store."
        )
    entries = list(reversed(AuditStore(folder).list()))  # oldest first, so the chain follows time
    result = ImportResult()
    from audits.report import AuditReport

    for entry in entries:
        if store.has_run(entry.report_id):
            result.skipped.append(entry.report_id)
            continue
        report = AuditReport.load(entry.path)
        files = {ext: p for ext in ("html", "pdf") if (p := entry.export_path(ext)).is_file()}
        result.recorded.append(store.import_report(report, files=files))
    return result
