"""Drawing the comparison of two stored audits (``audits.diff.ReportDiff``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd
import streamlit as st

from dashboard.display import show_table, table_height

if TYPE_CHECKING:
    from audits.diff import ReportDiff


def draw_diff(difference: ReportDiff) -> None:
    """Identity (weights, data), regressions, findings whose status changed, and numbers that changed."""
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Model weights", "changed" if difference.model_changed else "unchanged")
    c2.metric("Evaluation data", "changed" if difference.data_changed else "unchanged")
    c3.metric("Regressions", len(difference.regressions))
    c4.metric("Numbers changed", len(difference.metrics))
    if difference.is_empty:
        st.success("No differences between the two audits.", icon=":material/check_circle:")
        return
    if difference.regressed:
        st.error(f"{len(difference.regressions)} finding(s) got worse from {difference.old_id} to {difference.new_id}.", icon=":material/trending_down:")
    if difference.findings:
        st.markdown("**Findings whose status changed**")
        rows = [
            {
                "change": f.kind,
                "finding": f.key,
                "old status": f.old_status or "–",
                "new status": f.new_status or "–",
                "old value": f.old_value,
                "new value": f.new_value,
                "threshold": f.threshold,
            }
            for f in difference.findings
        ]
        show_table(pd.DataFrame(rows), key="audit.diff.findings", height=table_height(len(rows), 380))
    if difference.metrics:
        st.markdown("**Numbers that changed**")
        rows = [{"metric": m.name, "A (old)": m.old, "B (new)": m.new, "change": m.delta, "direction": m.verdict} for m in difference.metrics]
        show_table(pd.DataFrame(rows), key="audit.diff.metrics", height=table_height(len(rows), 380))
    if difference.probes_added or difference.probes_removed:
        st.caption(f"Probes added: {', '.join(difference.probes_added) or 'none'}; removed: {', '.join(difference.probes_removed) or 'none'}.")
