"""A file-based store of audit reports and registered (uploaded) models.

Layout under the store root (``./audit-store`` by default, ``$AUDITS_STORE`` overrides)::

    reports/<model>/<YYYYmmddTHHMMSSZ>_<report id>.json          the AuditReport
    reports/<model>/<YYYYmmddTHHMMSSZ>_<report id>.summary.json  a small index entry for listings
    reports/<model>/<YYYYmmddTHHMMSSZ>_<report id>.html|.pdf     rendered exports, when made
    models/<model>/card.yaml + weights + data                     models registered by upload

An upload is written to a private folder, validated exactly as the CLI would load it
(card parsed, weights loaded with a dry forward pass, data loaded and checked) and only
then moved into ``models/``; anything refused is deleted, never kept.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from audits.errors import AuditError, CardError

if TYPE_CHECKING:
    from audits.report import AuditReport

STORE_ENV = "AUDITS_STORE"
DEFAULT_ROOT = "audit-store"
# Largest upload accepted per file; the dashboard's server.maxUploadSize matches it.
MAX_UPLOAD_MB = 200
# Formats an upload may use: whole-model archives and safetensors (never pickles).
UPLOAD_FORMATS = {"safetensors": (".safetensors",), "torchscript": (".pt", ".pts", ".ts"), "torch_export": (".pt2",)}
PICKLE_SUFFIXES = (".pkl", ".pickle", ".pth", ".bin", ".joblib", ".dill", ".ckpt")
DATA_SUFFIXES = {"image": (".npz",), "tabular": (".csv", ".csv.gz", ".parquet", ".pq"), "text": (".csv", ".csv.gz", ".parquet", ".pq")}
# Uploaded safetensors cards may only name architectures shipped with this project:
# importing an arbitrary module named by a web upload would run its import-time code.
UPLOAD_ARCHITECTURE_MODULES = ("models.",)
_STAMP = "%Y%m%dT%H%M%SZ"
_REPORT_NAME = re.compile(r"^(?P<stamp>\d{8}T\d{6}Z)_(?P<id>[0-9a-zA-Z]+)\.json$")


class UploadError(AuditError):
    """A model upload was refused (unsafe format, wrong file type, too large, invalid card)."""


@dataclass(frozen=True)
class UploadedFile:
    """One uploaded file: its name as the user gave it and its bytes."""

    name: str
    content: bytes


@dataclass(frozen=True)
class StoredAudit:
    """One stored report: where it is and the index entry written beside it."""

    path: Path
    model: str
    report_id: str
    created_at: str
    summary: dict = field(default_factory=dict)

    @property
    def stem(self) -> Path:
        return self.path.with_suffix("")

    def export_path(self, ext: str) -> Path:
        """Where the ``ext`` export (``html``, ``pdf``) of this report lives."""
        return self.stem.with_suffix(f".{ext.lstrip('.')}")

    @property
    def verdict(self) -> str:
        return str(self.summary.get("verdict", "unknown"))

    @property
    def label(self) -> str:
        """A one-line description for pickers."""
        acc = self.summary.get("accuracy")
        acc_text = f", accuracy {acc:.3f}" if isinstance(acc, int | float) else ""
        return f"{self.created_at} · {self.model} · {self.report_id} · {self.verdict}{acc_text}"


def spec_sha256(spec: dict) -> str:
    """A stable hash of an audit spec (as stored in the report's provenance)."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()


def _status_of(finding) -> str:
    status = finding.get("status") if isinstance(finding, dict) else getattr(finding, "status", None)
    return str(status or "").lower()


def verdict(findings: Iterable) -> tuple[str, dict[str, int]]:
    """The overall verdict of a report's findings ('fail' > 'warn' > 'pass') and the count per status.

    A report without findings (no policy applied) has verdict 'no policy'.
    """
    counts: dict[str, int] = {}
    for f in findings:
        status = _status_of(f)
        counts[status] = counts.get(status, 0) + 1
    for worst in ("fail", "warn", "pass"):
        if counts.get(worst):
            return worst, counts
    return ("no policy" if not counts else "not_evaluated"), counts


def summarize(report: AuditReport) -> dict:
    """The index entry stored beside a report (what listings show without loading it)."""
    p = report.provenance
    overall, counts = verdict(report.findings)
    return {
        "model": p.model_name,
        "report_id": report.report_id,
        "created_at": report.created_at,
        "weights_sha256": p.weights_sha256,
        "data_sha256": p.data_sha256,
        "spec_sha256": spec_sha256(p.spec),
        "device": p.device,
        "accuracy": float(report.performance.accuracy),
        "n_rows": int(report.data_summary.n_rows),
        "wall_time_s": float(p.wall_time_s),
        "model_calls": int(p.model_calls),
        "probes": [r.method for r in report.explanations + report.robustness + report.fairness],
        "failures": [f.name for f in report.failures],
        "skipped": [s.name for s in report.skipped],
        "verdict": overall,
        "finding_counts": counts,
    }


def _stamp(created_at: str) -> str:
    try:
        moment = datetime.fromisoformat(created_at)
    except ValueError:
        moment = datetime.now().astimezone()
    return moment.strftime(_STAMP)


class AuditStore:
    """Reports and uploaded models in one folder tree.

    Parameters
    ----------
    root : path or None
        The store folder; None: ``$AUDITS_STORE``, else ``./audit-store``.
    """

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root or os.environ.get(STORE_ENV) or DEFAULT_ROOT).resolve()

    @property
    def reports_dir(self) -> Path:
        return self.root / "reports"

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    # --- reports -----------------------------------------------------------------
    def save(self, report: AuditReport) -> StoredAudit:
        """Write ``report`` and its index entry; returns where it went."""
        from audits.report import write_atomic

        folder = self.reports_dir / report.provenance.model_name
        path = folder / f"{_stamp(report.created_at)}_{report.report_id}.json"
        report.save(path)
        summary = summarize(report)
        write_atomic(path.with_suffix(".summary.json"), json.dumps(summary, indent=1).encode())
        return StoredAudit(path=path, model=summary["model"], report_id=report.report_id, created_at=report.created_at, summary=summary)

    def _entry(self, path: Path) -> StoredAudit | None:
        from audits.report import AuditReport, write_atomic

        match = _REPORT_NAME.match(path.name)
        if match is None:
            return None
        summary_path = path.with_suffix(".summary.json")
        summary: dict = {}
        if summary_path.is_file():
            try:
                summary = json.loads(summary_path.read_text())
            except (OSError, json.JSONDecodeError):
                summary = {}
        if not summary:  # a report copied in by hand: index it once
            try:
                summary = summarize(AuditReport.load(path))
                write_atomic(summary_path, json.dumps(summary, indent=1).encode())
            except AuditError:
                return None
        created = summary.get("created_at") or datetime.strptime(match["stamp"], _STAMP).isoformat()
        return StoredAudit(path=path, model=path.parent.name, report_id=match["id"], created_at=created, summary=summary)

    def list(self, model: str | None = None) -> list[StoredAudit]:
        """Stored audits, newest first; only ``model``'s when given."""
        if not self.reports_dir.is_dir():
            return []
        folders = [self.reports_dir / model] if model else sorted(p for p in self.reports_dir.iterdir() if p.is_dir())
        entries = [e for folder in folders if folder.is_dir() for p in folder.glob("*.json") if (e := self._entry(p)) is not None]
        return sorted(entries, key=lambda e: (e.path.name.split("_")[0], e.report_id), reverse=True)

    def get(self, report_id: str) -> StoredAudit:
        for entry in self.list():
            if entry.report_id == report_id:
                return entry
        raise AuditError(f"No stored audit has report id {report_id!r}.", fix=f"Choose one listed under {self.reports_dir}.")

    def open(self, report_id: str) -> AuditReport:
        from audits.report import AuditReport

        return AuditReport.load(self.get(report_id).path)

    def latest(self, model: str, *, weights_sha256: str | None = None, data_sha256: str | None = None) -> StoredAudit | None:
        """The newest audit of ``model`` (of exactly these weights and data when given)."""
        for entry in self.list(model):
            s = entry.summary
            if weights_sha256 and s.get("weights_sha256") != weights_sha256:
                continue
            if data_sha256 and s.get("data_sha256") != data_sha256:
                continue
            return entry
        return None

    def write_export(self, entry: StoredAudit, ext: str, payload: bytes) -> Path:
        from audits.report import write_atomic

        return write_atomic(entry.export_path(ext), payload)

    # --- uploaded models ------------------------------------------------------------
    def model_card_paths(self) -> dict[str, Path]:
        """Registered uploads: model name -> card path."""
        if not self.models_dir.is_dir():
            return {}
        return {p.parent.name: p for p in sorted(self.models_dir.glob("*/card.yaml"))}

    def register_model(
        self,
        card: UploadedFile,
        weights: UploadedFile,
        data: UploadedFile,
        attributes: UploadedFile | None = None,
        *,
        reserved_names: Iterable[str] = (),
        max_mb: int = MAX_UPLOAD_MB,
        device: str | None = None,
    ) -> Path:
        """Validate an uploaded model (card, weights, evaluation data) and keep it; returns its card path.

        Raises
        ------
        UploadError, CardError, ModelLoadError, DataError
            With the problem and the fix; nothing is kept.
        """
        from models.card import parse_card

        files = [f for f in (card, weights, data, attributes) if f is not None]
        for f in files:
            if len(f.content) > max_mb * 1024 * 1024:
                raise UploadError(
                    f"{f.name} is {len(f.content) / 2**20:.0f} MB; uploads are limited to {max_mb} MB per file.",
                    fix="Upload a smaller file, or register the model with the CLI (audits run --model card.yaml).",
                )
        raw = _read_card(card)
        fmt = raw.get("format")
        _check_weights(weights, fmt)
        modality = raw.get("modality")
        _check_data_name(data, modality)
        if attributes is not None and not attributes.name.lower().endswith(".csv"):
            raise UploadError(f"The attributes file {attributes.name} is not a CSV.", fix="Upload one CSV row of attributes per image.")
        # The uploaded files are the model: point the card at them, whatever paths it named.
        raw["weights"] = _safe_name(weights.name)
        data_section = dict(raw.get("data") or {})
        data_section["path"] = _safe_name(data.name)
        if attributes is not None:
            data_section["attributes_path"] = _safe_name(attributes.name)
        elif "attributes_path" in data_section:
            raise UploadError(
                f"The card names an attributes file ({data_section['attributes_path']}) but none was uploaded.",
                fix="Upload the attributes CSV too, or remove data.attributes_path from the card.",
            )
        raw["data"] = data_section
        staging = self.root / ".incoming" / uuid.uuid4().hex
        staging.mkdir(parents=True)
        try:
            parsed = parse_card(raw, base_dir=staging, source=card.name)
            _check_architecture(parsed)
            taken = set(reserved_names) | set(self.model_card_paths())
            if parsed.name in taken:
                raise UploadError(f"A model named {parsed.name!r} is already registered.", fix="Give the card another 'name'.")
            for f in (weights, data, attributes):
                if f is not None:
                    (staging / _safe_name(f.name)).write_bytes(f.content)
            (staging / "card.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
            _validate_loads(parsed, device)
            target = self.models_dir / parsed.name
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists():
                raise UploadError(f"A model named {parsed.name!r} is already registered.", fix="Give the card another 'name'.")
            staging.rename(target)
            return target / "card.yaml"
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def _safe_name(name: str) -> str:
    """A plain file name (no folders, no leading dots) from an uploaded file's name."""
    base = Path(name.replace("\\", "/")).name
    cleaned = re.sub(r"[^A-Za-z0-9_.-]", "_", base).lstrip(".")
    if not cleaned or cleaned == "card.yaml":
        raise UploadError(f"The file name {name!r} cannot be used.", fix="Rename the file (letters, digits, '.', '_', '-').")
    return cleaned


def _read_card(card: UploadedFile) -> dict:
    if not card.name.lower().endswith((".yaml", ".yml")):
        raise UploadError(f"The card {card.name} is not a YAML file.", fix="Upload the model card as card.yaml (see the README's 'Model cards').")
    try:
        raw = yaml.safe_load(card.content.decode("utf-8"))
    except UnicodeDecodeError:
        raise CardError(f"The card {card.name} is not UTF-8 text.", fix="Save the card as UTF-8 YAML.") from None
    except yaml.YAMLError as exc:
        raise CardError(f"The card {card.name} is not valid YAML: {exc}", fix="Fix the YAML syntax.") from None
    if not isinstance(raw, dict):
        raise CardError(f"The card {card.name} must be a YAML mapping.", fix="See models/zoo/*/card.yaml for examples.")
    return raw


def _check_weights(weights: UploadedFile, fmt: object) -> None:
    name = weights.name.lower()
    if name.endswith(PICKLE_SUFFIXES) or weights.content[:1] == b"\x80":
        raise UploadError(
            f"{weights.name} is a Python pickle; pickles can run arbitrary code when loaded, so uploads refuse them.",
            fix="Export the weights with safetensors (safetensors.torch.save_file(model.state_dict(), 'weights.safetensors')), or the whole model with torch.jit.save (.pt) or torch.export.save (.pt2).",
        )
    if fmt not in UPLOAD_FORMATS:
        raise UploadError(
            f"The card's format is {fmt!r}; uploads accept {', '.join(UPLOAD_FORMATS)}.",
            fix="Export the model as safetensors, TorchScript or torch.export and set 'format' to match.",
        )
    if not name.endswith(UPLOAD_FORMATS[fmt]):
        raise UploadError(
            f"The weights file {weights.name} does not look like {fmt} (expected {' or '.join(UPLOAD_FORMATS[fmt])}).",
            fix="Upload the file the card's 'format' describes, or correct 'format'.",
        )


def _check_data_name(data: UploadedFile, modality: object) -> None:
    allowed = DATA_SUFFIXES.get(str(modality))
    if allowed is None:
        return  # parse_card names the bad modality
    if not data.name.lower().endswith(allowed):
        raise UploadError(
            f"The evaluation data {data.name} is not a {' / '.join(allowed)} file, as a {modality} model needs.",
            fix="See the README's 'Data' paragraph for the accepted layouts.",
        )


def _check_architecture(card) -> None:
    if card.architecture is not None and not card.architecture.target.startswith(UPLOAD_ARCHITECTURE_MODULES):
        raise UploadError(
            f"The card's architecture {card.architecture.target!r} is not one of this project's (models.*).",
            fix="Upload a whole-model export (TorchScript .pt or torch.export .pt2) instead, or use an architecture from models.architectures; other classes can be audited with the CLI.",
        )


def _validate_loads(card, device: str | None) -> None:
    from audits.data import load_data
    from models.loader import load_model

    load_model(card, device=device)
    load_data(card)
