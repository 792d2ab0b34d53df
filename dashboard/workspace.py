"""The models on offer (the zoo and registered uploads) and the loaded state of the selected one."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import streamlit as st

from audits.data import AuditData
from audits.probes import RunContext
from dashboard import cache, state
from dashboard.stored_runs import RunStore, run_store
from models.card import ModelCard
from models.loader import ModelHandle
from models.registry import ZOO_DIR, zoo_names


@dataclass(frozen=True)
class Entry:
    """A model the dashboard can open: its name, card path and where it came from."""

    name: str
    card_path: Path
    source: str  # 'zoo' or 'uploaded'


@dataclass(frozen=True)
class Workspace:
    """The selected model, its evaluation data and the shared forward pass (all cached)."""

    entry: Entry
    loaded: cache.LoadedModel
    data: AuditData
    context: RunContext
    model_hash: str

    @property
    def name(self) -> str:
        return self.entry.name

    @property
    def card(self) -> ModelCard:
        return self.loaded.card

    @property
    def handle(self) -> ModelHandle:
        return self.loaded.handle

    @property
    def data_hash(self) -> str:
        return self.data.sha256

    @property
    def proba(self) -> np.ndarray:
        return self.context.proba

    @property
    def predictions(self) -> np.ndarray:
        return self.context.predictions


def store() -> RunStore:
    """The audit store: runs in the SQL store (``$AUDITS_STORE_URL``, else the store folder), uploads in the store folder."""
    return run_store()


def catalog() -> dict[str, Entry]:
    """Every model on offer: the zoo first, then registered uploads (names are unique)."""
    entries = {name: Entry(name, ZOO_DIR / name / "card.yaml", "zoo") for name in zoo_names()}
    for name, path in store().model_card_paths().items():
        entries.setdefault(name, Entry(name, path, "uploaded"))
    return entries


def selected_entry() -> Entry | None:
    entries = catalog()
    name = state.get("model")
    if name not in entries:
        name = _default(entries)
        state.put("model", name)
    return entries.get(name) if name else None


def _default(entries: dict[str, Entry]) -> str | None:
    """The model shown first: the first zoo image model (its attributions are the quickest to read)."""
    from models.card import load_card

    for entry in entries.values():
        try:
            if entry.source == "zoo" and load_card(entry.card_path).modality == "image":
                return entry.name
        except Exception:  # an unreadable card is reported when it is opened
            continue
    return next(iter(entries), None)


def open_workspace(entry: Entry) -> Workspace:
    """Load (or fetch from cache) the model, its data and the shared forward pass."""
    loaded = cache.load(entry.card_path)
    data = cache.data(entry.card_path)
    model_hash = loaded.handle.weights_sha256
    context = cache.shared_context(model_hash, data.sha256, loaded, data)
    return Workspace(entry=entry, loaded=loaded, data=data, context=context, model_hash=model_hash)


def require() -> Workspace:
    """The selected model's workspace (drawn by the sidebar), or a message and the end of the page."""
    ws = st.session_state.get("_workspace")
    if ws is None:
        st.info("Pick a model in the sidebar (or fix the error shown there) to use this page.", icon=":material/info:")
        st.stop()
    return ws


def current() -> Workspace | None:
    """The selected model's workspace; raises the loading error (pages show it)."""
    entry = selected_entry()
    return open_workspace(entry) if entry is not None else None
