"""Concepts: TCAV concept tests and feature visualization galleries from the selected model's stored audit."""

from __future__ import annotations

import streamlit as st

from dashboard import auth, result_view, workspace

auth.require_signed_in()  # the gate again, however this script is reached

st.title("Concepts")
ws = workspace.require()
st.caption(
    "Concept tests (TCAV) ask whether a human concept - a value of an attribute of the evaluation data, or a set of example inputs - "
    "is a direction inside the network that moves a class's score; feature visualization shows the inputs that excite each class and a few channels most."
)
result_view.draw_category(ws, "concepts", empty="This audit has no concept results (none selected, or all skipped or failed: see below).")
