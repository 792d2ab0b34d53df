"""Models registered by upload: ``models/<model>/card.yaml + weights + data`` under the store folder.

The store folder is ``./audit-store`` by default (``$AUDITS_STORE`` overrides). An upload is
written to a private folder, validated exactly as the CLI would load it (card parsed,
weights loaded with a dry forward pass, data loaded and checked) and only then moved into
``models/``; anything refused is deleted, never kept.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml

from audits.errors import AuditError

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


class UploadError(AuditError):
    """A model upload was refused (unsafe format, wrong file type, too large, invalid card)."""


@dataclass(frozen=True)
class UploadedFile:
    """One uploaded file: its name as the user gave it and its bytes."""

    name: str
    content: bytes


class ModelUploads:
    """Models registered by upload, in ``<root>/models``.

    Parameters
    ----------
    root : path or None
        The store folder; None: ``$AUDITS_STORE``, else ``./audit-store``.
    """

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root or os.environ.get(STORE_ENV) or DEFAULT_ROOT).resolve()

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    def model_card_paths(self) -> dict[str, Path]:
        """Registered uploads: model name -> card path."""
        if not self.models_dir.is_dir():
            return {}
        return {p.parent.name: p for p in sorted(self.models_dir.glob("*/card.yaml"))}

    def register_model(
        self,
        card: UploadedFile,
        weights: UploadedFile | None,
        data: UploadedFile,
        attributes: UploadedFile | None = None,
        *,
        reserved_names: Iterable[str] = (),
        max_mb: int = MAX_UPLOAD_MB,
        device: str | None = None,
    ) -> Path:
        """Validate an uploaded model (card, weights, evaluation data) and keep it; returns its card path.

        A predictions card (``format: predictions``: a table of another system's scores) has no
        weights: ``weights`` is None and ``data`` is its decisions table.

        Validation runs in a confined child process on the CPU (``models.sandbox``), whatever
        ``device`` says: it is kept for callers that pass it.

        Raises
        ------
        UploadError, CardError, ModelLoadError, DataError
            With the problem and the fix; nothing is kept.
        """
        from models.card import parse_card
        from models.sandbox import validate_in_sandbox

        files = [f for f in (card, weights, data, attributes) if f is not None]
        for f in files:
            if len(f.content) > max_mb * 1024 * 1024:
                raise UploadError(
                    f"{f.name} is {len(f.content) / 2**20:.0f} MB; uploads are limited to {max_mb} MB per file.",
                    fix="Upload a smaller file, or register the model with the CLI (audits run --model card.yaml).",
                )
        raw = _read_card(card)
        fmt = raw.get("format")
        if fmt == "predictions":
            if weights is not None:
                raise UploadError(
                    f"The card is a predictions card (format: predictions), which has no weights, but {weights.name} was uploaded with it.",
                    fix="Upload only the card and its table of scores (the evaluation data), or set the card's 'format' to the weights' format.",
                )
        elif weights is None:
            raise UploadError(f"The card's format is {fmt!r}, which needs its weights file.", fix="Upload the weights too (a predictions card, format: predictions, needs none).")
        else:
            _check_weights(weights, fmt)
        modality = raw.get("modality")
        _check_data_name(data, modality)
        if attributes is not None and not attributes.name.lower().endswith(".csv"):
            raise UploadError(f"The attributes file {attributes.name} is not a CSV.", fix="Upload one CSV row of attributes per image.")
        # The uploaded files are the model: point the card at them, whatever paths it named.
        if weights is not None:
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
            parsed = parse_card(raw, base_dir=staging, source=card.name, confine=True)  # no path outside the upload
            _check_architecture(parsed)
            taken = set(reserved_names) | set(self.model_card_paths())
            if parsed.name in taken:
                raise UploadError(f"A model named {parsed.name!r} is already registered.", fix="Give the card another 'name'.")
            for f in (weights, data, attributes):
                if f is not None:
                    (staging / _safe_name(f.name)).write_bytes(f.content)
            (staging / "card.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
            validate_in_sandbox(staging / "card.yaml")  # a separate, confined process: models.sandbox
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
        raise UploadError(f"The card {card.name} is not a YAML file.", fix="Upload the model card as card.yaml (see docs/cards.md).")
    from models.card import parse_card_text

    return parse_card_text(card.content, source=card.name)  # safe, alias-free, size-capped


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
            fix="See docs/cards.md for the accepted data layouts.",
        )


def _check_architecture(card) -> None:
    if card.architecture is not None and not card.architecture.target.startswith(UPLOAD_ARCHITECTURE_MODULES):
        raise UploadError(
            f"The card's architecture {card.architecture.target!r} is not one of this project's (models.*).",
            fix="Upload a whole-model export (TorchScript .pt or torch.export .pt2) instead, or use an architecture from models.architectures; other classes can be audited with the CLI.",
        )
