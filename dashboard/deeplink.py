"""Deep links: the selected model, sample and methods live in the URL's query parameters.

``/inspect?model=digits-cnn&sample=212&method=grad_cam`` opens exactly that (the page is the URL
path; ``/robustness?model=digits-cnn&sample=212`` opens that image's corruption gallery). ``apply`` reads the parameters into the session's settings when the URL carries values
the session has not applied yet (a pasted link, the browser's back button); the pages then
``publish`` what is shown, so the address bar always holds a link to the current view.
"""

from __future__ import annotations

import streamlit as st

from dashboard import state

_APPLIED = "_deeplink.applied"


def _current() -> dict[str, str]:
    return {k: st.query_params[k] for k in st.query_params}


def apply(model_names: list[str]) -> None:
    """Copy ``model``, ``sample`` and ``method`` from the URL into the settings (once per distinct URL)."""
    params = _current()
    if not params or params == st.session_state.get(_APPLIED):
        return
    st.session_state[_APPLIED] = params
    model = params.get("model")
    if model in model_names and model != state.get("model"):
        state.put("model", model)
        state.reset_model_settings()
    sample = params.get("sample", "")
    if sample.isdigit():  # the row shown on Inspect and in the Robustness page's corruption gallery
        state.put("inspect.sample", int(sample))
        state.put("robustness.sample", int(sample))
    methods = [m for m in params.get("method", "").split(",") if m]
    if methods:
        state.put("inspect.methods", methods)


def publish(**values) -> None:
    """Write the shown view into the URL (only keys with a value; others are removed)."""
    wanted = {k: str(v) for k, v in values.items() if v not in (None, "", [])}
    if _current() != wanted:
        st.query_params.from_dict(wanted)
    st.session_state[_APPLIED] = wanted


def link(page: str, **values) -> str:
    """A relative deep link: ``inspect?model=digits-cnn&sample=212&method=grad_cam``."""
    from urllib.parse import urlencode

    return f"{page}?{urlencode({k: v for k, v in values.items() if v not in (None, '')})}"
