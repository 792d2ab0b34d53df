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
    c3.metric("Regressions", 0 if difference.seed_only else len(difference.regressions), help="Seed-only changes are noise, never regressions.")
    c4.metric("Numbers changed", len(difference.metrics))
    if difference.is_empty:
        st.success("No differences between the two audits.", icon=":material/check_circle:")
        return
    if not difference.same_model:
        st.warning(
            f"These audits are of two different models ({difference.old_model_name} and {difference.model_name}): "
            "their differences mix the models with everything else. Compare two audits of one model to see what changed.",
            icon=":material/compare_arrows:",
        )
    elif difference.model_changed:
        st.warning(
            f"The weights differ ({difference.old_weights[:12]}… → {difference.new_weights[:12]}…): these are two versions of {difference.model_name}.",
            icon=":material/compare_arrows:",
        )
    worse = [f for f in difference.findings if f.kind in ("regressed", "new failure")]
    if difference.regressed and not difference.seed_only:
        st.error(f"{len(difference.regressions)} finding(s) got worse from {difference.old_id} to {difference.new_id}.", icon=":material/trending_down:")
    elif worse and difference.seed_only:
        st.warning(
            f"Only the seed changed ({difference.old_seed} → {difference.new_seed}), yet {len(worse)} finding(s) changed status: "
            "that is run-to-run noise, not a regression. Such a check is not stable under the seed; raise its budget or read its interval.",
            icon=":material/casino:",
        )
    elif worse:
        st.info(f"{len(worse)} finding(s) changed status within their intervals: noise, not a regression.", icon=":material/info:")
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
                "regression": "yes" if f.is_regression and not difference.seed_only else "no (within intervals)" if f.within_intervals else "no",
            }
            for f in difference.findings
        ]
        show_table(pd.DataFrame(rows), key="audit.diff.findings", height=table_height(len(rows), 380))
    if difference.metrics:
        st.markdown("**Numbers that changed**")
        rows = [
            {
                "metric": m.name,
                "A (old)": m.old,
                "B (new)": m.new,
                "change": m.delta,
                "direction": m.verdict if m.verdict != "worse" or m.regressed else "worse, within intervals",
            }
            for m in difference.metrics
        ]
        show_table(pd.DataFrame(rows), key="audit.diff.metrics", height=table_height(len(rows), 380))
    if difference.probes_added or difference.probes_removed:
        st.caption(f"Probes added: {', '.join(difference.probes_added) or 'none'}; removed: {', '.join(difference.probes_removed) or 'none'}.")
