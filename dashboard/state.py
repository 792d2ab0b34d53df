"""Session state: initialised once per browser session, changed only through widget callbacks.

Streamlit forgets the value of a widget that is not drawn in a run (another page is
showing), so each setting lives under its own key and its widget under ``_w.<key>``;
the widget is seeded from the setting when drawn and its callback writes it back.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import streamlit as st

DEFAULTS: dict[str, Any] = {
    "model": None,  # selected model name
    # Inspect page
    "inspect.sample": None,
    "inspect.classes": [],
    "inspect.group": "(any)",
    "inspect.correct": "all",
    "inspect.confidence": (0.0, 1.0),
    "inspect.browse": False,
    "inspect.query": "",  # filter over columns (audits.row_filter)
    "inspect.methods": None,  # None: the modality's defaults
    "inspect.opacity": 0.8,
    "inspect.mode": "signed",
    "inspect.scale": "red-blue",
    "inspect.target": "predicted class",
    "inspect.seed": 0,
    # Robustness page
    "robustness.sample": None,
    # Audit page
    "audit.samples": 0,  # 0: the modality's default
    "audit.seed": 0,
    "audit.max_rows": 0,
    "audit.probes.explanation": None,  # None: the modality's defaults
    "audit.probes.robustness": None,
    "audit.probes.fairness": None,
    "audit.open": None,
    "audit.diff_a": None,
    "audit.diff_b": None,
}
# Settings that describe one model's data: reset when another model is picked.
PER_MODEL = (
    "audit.probes.explanation",
    "audit.probes.robustness",
    "audit.probes.fairness",
    "inspect.sample",
    "inspect.classes",
    "inspect.group",
    "inspect.correct",
    "inspect.confidence",
    "inspect.query",
    "inspect.methods",
    "inspect.target",
    "robustness.sample",
    "audit.open",
    "audit.diff_a",
    "audit.diff_b",
)


def init() -> None:
    """Give every setting its default, once per session."""
    for key, value in DEFAULTS.items():
        if key not in st.session_state:
            st.session_state[key] = value


def get(key: str) -> Any:
    return st.session_state.get(key, DEFAULTS.get(key))


def ensure(key: str, default: Any) -> None:
    """Give a setting that has no entry in ``DEFAULTS`` (a probe's budget, say) its first value."""
    if key not in st.session_state:
        st.session_state[key] = default


def put(key: str, value: Any) -> None:
    """Set a setting and the widget drawn for it (call from callbacks)."""
    st.session_state[key] = value
    st.session_state[_widget(key)] = value


def _widget(key: str) -> str:
    return f"_w.{key}"


def _store(key: str, after: Callable[[], None] | None) -> None:
    st.session_state[key] = st.session_state[_widget(key)]
    if after is not None:
        after()


def bind(key: str, *, options: Sequence | None = None, multi: bool = False, after: Callable[[], None] | None = None) -> dict:
    """Keyword arguments binding a widget to setting ``key``: ``st.slider(..., **bind("x"))``.

    With ``options``, a stored value no longer among them (another model's class, say) falls
    back to the first option (multiselect: is filtered).
    """
    value = get(key)
    if options is not None:
        opts = list(options)
        if multi:
            value = [v for v in (value or []) if v in opts]
        elif value not in opts:
            value = opts[0] if opts else None
        st.session_state[key] = value
    widget = _widget(key)
    if widget not in st.session_state or st.session_state[widget] != value:
        st.session_state[widget] = value
    return {"key": widget, "on_change": _store, "args": (key, after)}


def reset_model_settings() -> None:
    """Forget per-model settings (sample, filters) after another model is picked."""
    for key in PER_MODEL:
        st.session_state[key] = DEFAULTS[key]
        st.session_state.pop(_widget(key), None)
