"""Every cache of the dashboard, and the only module that uses ``st.cache_*``.

- Models and evaluation data are *resources* (``st.cache_resource``: one shared object per
  process), keyed by the sha256 of their files, so a changed file is a new entry.
- Results are *data* (``st.cache_data``: each caller gets a copy), keyed by model hash +
  probe spec + data hash (+ the sample explained): switching pages or re-drawing with
  other display settings reuses them instead of recomputing.

Everything computed here is one engine call (``make_probe(...).run``, ``build_context``,
``corruption_gallery``, ``run_audit`` lives on the Audit page because it streams progress
and is stored, not cached). ``COMPUTED`` counts the real computations (cache misses), so
tests can check that a page switch recomputes nothing.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from audits.data import AuditData, load_data
from audits.engine import build_context
from audits.probes import RunContext, make_probe
from audits.report import AuditReport
from audits.results.attribution import AttributionResult
from audits.results.trust import TrustResult
from models.card import ModelCard, load_card
from models.loader import ModelHandle, load_model, resolve_device, sha256_file

# Cache misses per cached function (what was actually computed in this process).
COMPUTED: Counter[str] = Counter()


@dataclass(frozen=True)
class LoadedModel:
    """A model loaded once per process; ``lock`` runs one probe at a time on it.

    The handle's call meter and autograd state are shared by every browser session, so
    probes on one model are serialized to keep each result's cost (model calls) exact.
    """

    card: ModelCard
    handle: ModelHandle
    lock: threading.Lock


def _file_key(path: Path) -> str:
    stat = path.stat()
    return f"{path.resolve()}:{stat.st_mtime_ns}:{stat.st_size}"


@st.cache_data(show_spinner=False, max_entries=256)
def _sha256(file_key: str) -> str:
    COMPUTED["sha256"] += 1
    return sha256_file(Path(file_key.rsplit(":", 2)[0]))


def weights_sha256(card: ModelCard) -> str:
    """The weights file's sha256 (hashed once per file version); folders hash by their stat."""
    path = card.weights_path
    if path.is_dir():
        return _folder_sha256(_file_key(path), str(path))
    return _sha256(_file_key(path))


@st.cache_data(show_spinner=False, max_entries=32)
def _folder_sha256(file_key: str, folder: str) -> str:
    from models.text import huggingface_sha256

    COMPUTED["sha256"] += 1
    return huggingface_sha256(Path(folder))


@st.cache_resource(show_spinner=False, max_entries=8)
def _load_model(card_path: str, weights_hash: str, device: str) -> LoadedModel:
    COMPUTED["load_model"] += 1
    card = load_card(card_path)
    return LoadedModel(card=card, handle=load_model(card, device=device), lock=threading.Lock())


def load(card_path: str | Path) -> LoadedModel:
    """The model of the card at ``card_path`` on the default device, loaded once per weights hash."""
    card = load_card(card_path)
    return _load_model(str(card_path), weights_sha256(card), str(resolve_device(None)))


def data_key(card: ModelCard) -> str:
    """The evaluation data's file versions (what ``load_data`` reads)."""
    if card.data is None:
        return ""
    paths = [card.resolve(card.data.path)] + ([card.resolve(card.data.attributes_path)] if card.data.attributes_path else [])
    return "|".join(_file_key(p) for p in paths)


@st.cache_resource(show_spinner=False, max_entries=8)
def _load_data(card_path: str, file_key: str) -> AuditData:
    COMPUTED["load_data"] += 1
    return load_data(load_card(card_path))


def data(card_path: str | Path) -> AuditData:
    """The card's evaluation data, loaded and validated once per file version (shared, read-only)."""
    card = load_card(card_path)
    return _load_data(str(card_path), data_key(card))


@st.cache_data(show_spinner=False, max_entries=16)
def shared_context(model_hash: str, data_hash: str, _model: LoadedModel, _data: AuditData) -> RunContext:
    """``build_context``: the audit's one shared forward pass over every evaluation row."""
    COMPUTED["shared_context"] += 1
    with _model.lock:
        return build_context(_model.handle, _data, sample_indices=np.zeros(0, dtype=np.int64))


@st.cache_data(show_spinner=False, max_entries=512)
def attribution(
    model_hash: str, data_hash: str, probe: str, params_json: str, sample: int, seed: int, _model: LoadedModel, _data: AuditData, _context: RunContext
) -> AttributionResult:
    """One attribution probe on one sample: ``make_probe(probe, params).run`` (cached)."""
    COMPUTED["attribution"] += 1
    instance = make_probe(probe, json.loads(params_json))
    context = dataclasses.replace(_context, seed=seed, sample_indices=np.array([sample], dtype=np.int64))
    with _model.lock:
        return instance.run(_model.handle, _data, context)


@st.cache_data(show_spinner=False, max_entries=64)
def trust(
    model_hash: str, data_hash: str, key: str, sample: int, seed: int, _model: LoadedModel, _data: AuditData, _context: RunContext, _maps: tuple
) -> TrustResult:
    """Trust badges of the Inspect page's maps of one sample (``key`` names the methods and their budgets; cached)."""
    COMPUTED["trust"] += 1
    instance = make_probe("explanation_trust", {"n_samples": 1, "faithfulness_samples": 1, "cascade_stages": 1, "noise_draws": 2})
    context = dataclasses.replace(_context, seed=seed, sample_indices=np.array([sample], dtype=np.int64), earlier=_maps)
    with _model.lock:
        return instance.run(_model.handle, _data, context)


@st.cache_data(show_spinner=False, max_entries=64)
def corruption_gallery(model_hash: str, data_hash: str, row: int, seed: int, _model: LoadedModel, _data: AuditData):
    """One image under every corruption and severity with its predictions (engine: ``audits.gallery``)."""
    from audits.gallery import corruption_gallery as gallery

    COMPUTED["corruption_gallery"] += 1
    with _model.lock:
        return gallery(_model.handle, _data, row, seed=seed)


@st.cache_data(show_spinner=False, max_entries=32)
def report(path: str, file_key: str) -> AuditReport:
    """A stored report, read and validated once per file version."""
    COMPUTED["report"] += 1
    return AuditReport.load(path)


def stored_report(path: Path) -> AuditReport:
    return report(str(path), _file_key(path))


@st.cache_data(show_spinner=False, max_entries=32)
def export(path: str, file_key: str, fmt: str) -> bytes:
    """A stored report rendered as ``html`` or ``pdf`` (the report engine's renderers)."""
    COMPUTED[f"export_{fmt}"] += 1
    loaded = AuditReport.load(path)
    if fmt == "html":
        from audits.render.html import render_html

        out = render_html(loaded)
    else:
        from audits.render.pdf import render_pdf

        out = render_pdf(loaded)
    return out.encode() if isinstance(out, str) else bytes(out)


def stored_export(path: Path, fmt: str) -> bytes:
    return export(str(path), _file_key(path), fmt)


@st.cache_data(show_spinner=False, max_entries=32)
def diff(path_a: str, key_a: str, path_b: str, key_b: str):
    """The differences between two stored reports (the report engine's ``audits.diff``)."""
    from audits.diff import diff_reports

    COMPUTED["diff"] += 1
    return diff_reports(AuditReport.load(path_a), AuditReport.load(path_b))


def stored_diff(a: Path, b: Path):
    return diff(str(a), _file_key(a), str(b), _file_key(b))


def params_json(params: dict) -> str:
    """A canonical JSON of probe parameters (part of the cache key)."""
    return json.dumps(params, sort_keys=True, default=str)


def clear() -> None:
    """Drop every cache (tests; the Models page after a registration)."""
    st.cache_data.clear()
    st.cache_resource.clear()
    COMPUTED.clear()


@st.cache_resource(show_spinner=False, max_entries=8)
def row_table(model_hash: str, data_hash: str, _data: AuditData, _proba: np.ndarray) -> pd.DataFrame:
    """The evaluation rows as one table to filter (shared, read-only): raw features or text,
    sensitive attributes, ``true``, ``predicted``, ``confidence``, ``correct``; text columns as categories."""
    COMPUTED["row_table"] += 1
    text = _data.raw.columns[0] if _data.modality == "text" and _data.raw is not None else None
    columns: dict[str, pd.Series] = {}
    for frame in (_data.raw, _data.attributes):
        for name in [] if frame is None else frame.columns:
            if str(name) in columns:
                continue
            col = frame[name].reset_index(drop=True)
            is_text = not pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)
            columns[str(name)] = col.astype("category") if is_text and name != text else col
    names = [str(c) for c in _data.class_names]
    predicted = _proba.argmax(axis=1)
    columns["true"] = pd.Series(pd.Categorical.from_codes(_data.y, categories=names))
    columns["predicted"] = pd.Series(pd.Categorical.from_codes(predicted, categories=names))
    columns["confidence"] = pd.Series(_proba.max(axis=1))
    columns["correct"] = pd.Series(predicted == _data.y)
    table = pd.concat(columns, axis=1)
    return table


@st.cache_data(show_spinner=False, max_entries=64)
def filtered_rows(model_hash: str, data_hash: str, expression: str, _table: pd.DataFrame) -> np.ndarray:
    """Positions of the rows matching a filter expression (``audits.row_filter``; cached per expression)."""
    from audits.row_filter import filter_rows

    COMPUTED["filtered_rows"] += 1
    return filter_rows(_table, expression)


@st.cache_data(show_spinner=False, max_entries=128)
def what_if(
    model_hash: str, data_hash: str, edit_json: str, row: int, methods_json: str, seed: int, _model: LoadedModel, _data: AuditData
) -> tuple[np.ndarray, dict]:
    """An edited row or text (``audits.what_if``): its class probabilities and each method's attribution (or the error)."""
    from audits import what_if

    COMPUTED["what_if"] += 1
    edit = json.loads(edit_json)
    if _data.modality == "text":
        data, index = what_if.edited_text(_data, _model.card, edit["text"], like=row, seed=seed)
    else:
        data, index = what_if.edited_row(_data, _model.card, edit, like=row, seed=seed)
    out: dict = {}
    with _model.lock:
        context = build_context(_model.handle, data, seed=seed, sample_indices=np.array([index], dtype=np.int64))
        for method, params in json.loads(methods_json).items():
            try:
                out[method] = make_probe(method, params).run(_model.handle, data, context)
            except Exception as exc:  # one failed method is shown; the others still draw
                out[method] = exc
    return context.proba[index], out


@st.cache_data(show_spinner=False, max_entries=64)
def threshold_curves(model_hash: str, data_hash: str, positive: int, group_by: str, _data: AuditData, _proba: np.ndarray) -> list:
    """ROC and precision-recall curves of class ``positive``, overall and per value of ``group_by`` (``audits.thresholds``)."""
    from audits.thresholds import curves_by_group

    COMPUTED["threshold_curves"] += 1
    groups = _data.attributes[group_by].to_numpy() if group_by in _data.attributes.columns else None
    return curves_by_group(_proba[:, positive], _data.y == positive, groups, min_group_size=20)
