"""Fairness: group metrics with intervals, intersectional heatmaps, counterfactuals, proxies and
the mitigation trade-off, from the selected model's stored audit."""

from __future__ import annotations

import streamlit as st

from dashboard import auth, sections, views

auth.require_signed_in()  # the gate again, however this script is reached

sections.register_all()
st.title("Fairness")
ws = views.require_workspace()
if not ws.data.sensitive:
    st.warning(
        f"{ws.name}'s card declares no sensitive attributes, so there are no groups to compare. Add `data.sensitive` to its card.", icon=":material/warning:"
    )
picked = views.pick_report(ws, "fairness")
if picked is not None:
    entry, report = picked
    if not report.fairness:
        st.info("This audit has no fairness results (none selected, or all skipped or failed).")
    for i, result in enumerate(report.fairness):
        with st.container(border=True):
            views.draw_result(result, ws, f"fairness.{entry.report_id}.{i}")
    fairness_probes = {"group_metrics", "counterfactual_flips", "proxy_features", "mitigation_preview", "attribution_disparity", "identity_terms"}
    views.show_skips_and_failures(report, fairness_probes)
