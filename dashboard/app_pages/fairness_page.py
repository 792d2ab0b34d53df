"""Fairness: group metrics with intervals, intersectional heatmaps, counterfactuals, proxies and
the mitigation trade-off, from the selected model's stored audit."""

from __future__ import annotations

import streamlit as st

from dashboard import auth, result_view, workspace

auth.require_signed_in()  # the gate again, however this script is reached

st.title("Fairness")
ws = workspace.require()
if not ws.data.sensitive:
    st.warning(
        f"{ws.name}'s card declares no sensitive attributes, so there are no groups to compare. Add `data.sensitive` to its card.", icon=":material/warning:"
    )
result_view.draw_category(ws, "fairness", empty="This audit has no fairness results (none selected, or all skipped or failed).")
