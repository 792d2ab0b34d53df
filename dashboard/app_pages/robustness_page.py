"""Robustness: the audit's robustness results with their figures, and a corruption gallery."""

from __future__ import annotations

import streamlit as st

from audits.render.plotly_backend import to_plotly
from audits.render.views import robustness as robustness_view
from dashboard import auth, cache, display, result_view, samples, state, workspace
from dashboard.feedback import guarded

auth.require_signed_in()  # the gate again, however this script is reached

st.title("Robustness")
ws = workspace.require()
data = ws.data

if data.modality == "image":
    st.subheader("Corruption gallery")
    st.caption("One image under each natural corruption at severities 1-5, with the model's prediction on each (red: wrong).")
    options = [int(i) for i in range(min(len(data), 2000))]
    if state.get("robustness.sample") not in options:
        state.put("robustness.sample", options[0])
    c1, c2 = st.columns([2, 3])
    c1.selectbox("Sample", options, format_func=lambda i: samples.sample_label(ws, i), **state.bind("robustness.sample", options=options))
    row = int(state.get("robustness.sample"))
    with guarded("The corruption gallery"), st.spinner("Corrupting the image and running the model…"):
        gallery = cache.corruption_gallery(ws.model_hash, ws.data_hash, row, 0, ws.loaded, data)
        flips = {k: v for k, v in gallery.first_flip.items() if v is not None}
        c2.caption(
            "Prediction first changes at: "
            + (", ".join(f"{k.replace('_', ' ')} severity {v}" for k, v in flips.items()) if flips else "no corruption changes it.")
        )
        display.plot(to_plotly(robustness_view.corruption_gallery_chart(gallery, list(data.class_names))), key="robustness.gallery")

st.subheader("Robustness probes of the audit")
result_view.draw_category(ws, "robustness", empty="This audit has no robustness results (none selected, or all skipped or failed: see below).")
