"""Robustness: the audit's robustness results with their figures, and a corruption gallery."""

from __future__ import annotations

import streamlit as st

from audits.render.plotly_backend import to_plotly
from audits.render.views import robustness as robustness_view
from dashboard import auth, cache, deeplink, display, result_view, samples, state, workspace
from dashboard.feedback import guarded

auth.require_signed_in()  # the gate again, however this script is reached

st.title("Robustness")
ws = workspace.require()
data = ws.data

if data.modality == "image":
    st.subheader("Corruption gallery")
    st.caption("One image under each natural corruption at severities 1-5, with the model's prediction on each (red: wrong).")
    current = state.get("robustness.sample")
    if not isinstance(current, int) or not 0 <= current < len(data):
        state.put("robustness.sample", 0)
    c1, c2 = st.columns([2, 3])
    c1.number_input(
        f"Row (0 to {len(data) - 1:,})",
        min_value=0,
        max_value=len(data) - 1,
        step=1,
        help="Any row of the evaluation data, by its index.",
        **state.bind("robustness.sample"),
    )
    c1.caption(samples.sample_label(ws, int(state.get("robustness.sample"))))
    row = int(state.get("robustness.sample"))
    deeplink.publish(model=ws.name, sample=row)  # a link to this image's gallery
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
