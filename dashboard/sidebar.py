"""The sidebar every page shares: model picker, the device it runs on, the dataset size."""

from __future__ import annotations

import streamlit as st

from dashboard import auth, jobs, state, workspace
from dashboard.feedback import show_error


def render() -> workspace.Workspace | None:
    """Draw the sidebar and return the selected model's workspace (None when none loads)."""
    entries = workspace.catalog()
    side = st.sidebar
    side.header("Model")
    if not entries:
        side.warning("No models: the zoo is empty. Rebuild it with `python -m models.build_zoo`, or register one on the Models page.")
        return None
    workspace.selected_entry()
    names = list(entries)
    side.selectbox(
        "Model to inspect",
        names,
        format_func=lambda n: f"{n} (uploaded)" if entries[n].source == "uploaded" else n,
        help="The demo zoo and the models registered on the Models page.",
        **state.bind("model", options=names, after=state.reset_model_settings),
    )
    ws = None
    with side:
        try:
            with st.spinner("Loading the model and its data…"):
                ws = workspace.current()
        except Exception as exc:  # a broken card or weights: shown, the app stays up
            show_error(exc, "Loading the model")
    if ws is not None:
        card, data = ws.card, ws.data
        side.caption(f"{card.modality} · {card.format} · {ws.handle.parameter_count:,} parameters")
        cols = side.columns(2)
        cols[0].metric("Device", str(ws.handle.device))
        cols[1].metric("Eval rows", f"{len(data):,}")
        side.caption(f"{len(card.class_names)} classes · sensitive: {', '.join(data.sensitive) or 'none'}")
    with side:
        jobs.panel()  # audit jobs: progress, cancel and finished-job notifications on every page
    auth.account_box(side)
    return ws
