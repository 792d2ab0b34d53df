"""Fairness: group metrics with intervals, intersectional heatmaps, counterfactuals, proxies and
the mitigation trade-off, from the selected model's stored audit."""

from __future__ import annotations

import streamlit as st

from dashboard import auth, probe_catalog, result_view, run_picker, workspace

auth.require_signed_in()  # the gate again, however this script is reached

st.title("Fairness")
ws = workspace.require()
if not ws.data.sensitive:
    st.warning(
        f"{ws.name}'s card declares no sensitive attributes, so there are no groups to compare. Add `data.sensitive` to its card.", icon=":material/warning:"
    )
picked = run_picker.pick_report(ws, "fairness")
if picked is not None:
    entry, report = picked
    if not report.fairness:
        st.info("This audit has no fairness results (none selected, or all skipped or failed).")
    for i, result in enumerate(report.fairness):
        with st.container(border=True):
            result_view.draw_result(result, ws, f"fairness.{entry.report_id}.{i}")
    result_view.show_skips_and_failures(report, probe_catalog.probe_names("fairness"))
