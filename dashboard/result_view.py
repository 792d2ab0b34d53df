"""Drawing any probe result: its title, headline and cost around the drawer registered for its
class in ``result_drawers`` (found by the class hierarchy, never by a name string), with a
generic fallback (scalar fields, tables) so result types added later still show up.
"""

from __future__ import annotations

import dataclasses

import pandas as pd
import streamlit as st

from audits.probes import registered_probes
from audits.render import tables
from dashboard.display import plot, show_table, table_height
from dashboard.feedback import guarded
from dashboard.markup import escape
from dashboard.result_drawers import DRAWERS, Drawer
from dashboard.workspace import Workspace


def frames_of(result) -> dict[str, pd.DataFrame]:
    """The result's table fields, by name."""
    if not dataclasses.is_dataclass(result):
        return {}
    return {f.name: getattr(result, f.name) for f in dataclasses.fields(result) if isinstance(getattr(result, f.name), pd.DataFrame)}


def draw_generic(result, ws: Workspace | None, key: str) -> None:
    """Fallback for any result: its scalar fields, then each table in a tab."""
    fields = tables.scalar_fields(result)
    fields = fields[fields["field"] != "headline"]
    if len(fields):
        show_table(fields, key=f"{key}.fields")
    frames = {k: v for k, v in frames_of(result).items() if len(v)}
    if frames:
        tabs = st.tabs([k.replace("_", " ") for k in frames])
        for tab, (name, frame) in zip(tabs, frames.items(), strict=True):
            with tab:
                show_table(frame, key=f"{key}.{name}", height=table_height(len(frame)))
    for note in getattr(result, "notes", None) or []:
        st.caption(escape(str(note)))


def draw_registered_view(result, report, key: str) -> None:
    """The charts of the result's view in the render registry (``charts_for``: the figures the
    HTML and PDF show), two per row, then its tables in an expander and its notes."""
    from audits.render.blocks import RenderContext
    from audits.render.plotly_backend import to_plotly
    from audits.render.registry import charts_for

    charts = charts_for(result, RenderContext.of(report))
    for start in range(0, len(charts), 2):
        cols = st.columns(2)
        for k, (col, chart) in enumerate(zip(cols, charts[start : start + 2], strict=False)):
            with col, guarded(f"Drawing {chart.title or 'a chart'}"):
                plot(to_plotly(chart), key=f"{key}.chart.{start + k}")
    frames = {k: v for k, v in frames_of(result).items() if len(v)}
    if frames:
        with st.expander("Tables"):
            tabs = st.tabs([k.replace("_", " ") for k in frames])
            for tab, (name, frame) in zip(tabs, frames.items(), strict=True):
                with tab:
                    show_table(frame, key=f"{key}.{name}", height=table_height(len(frame)))
    for note in getattr(result, "notes", None) or []:
        st.caption(escape(str(note)))


def drawer_for(result, report=None) -> Drawer:
    """The page's own drawer for the most specific class of ``result`` (interactive ones: a grouping to pick, say);
    else its view in the render registry when the report is known; else the generic one."""
    for cls in type(result).__mro__:
        if cls in DRAWERS:
            return DRAWERS[cls]
    if report is not None:
        return lambda r, ws, key: draw_registered_view(r, report, key)
    return draw_generic


def draw_result(result, ws: Workspace | None, key: str, report=None) -> None:
    """Draw one probe result under its title; a drawing error is shown and the page goes on."""
    cls = registered_probes().get(getattr(result, "method", ""))
    title = getattr(cls, "title", "") or str(getattr(result, "method", "") or "result").replace("_", " ")
    st.subheader(title)
    if cls is not None and getattr(cls, "description", ""):
        st.caption(cls.description)
    headline = result.headline() if hasattr(result, "headline") else ""
    if headline:
        st.markdown(f"**{escape(headline)}**")
    with guarded(f"Drawing {title}"):
        drawer_for(result, report)(result, ws, key)
    cost = getattr(result, "cost", None)
    if cost is not None:
        st.caption(f"Cost: {tables.cost_line(cost)}")


def show_skips_and_failures(report, names: set[str] | None = None) -> None:
    """The report's skipped probes (with the reason) and failed probes (with the error and fix).

    A probe that failed during the audit is a fact about that audit, so it is a warning here,
    not a dashboard error.
    """
    for s in report.skipped:
        if names is None or s.name in names:
            st.caption(escape(f"Skipped {s.name}: {s.reason}"))
    for failure in report.failures:
        if names is None or failure.name in names:
            text = escape(f"{failure.name} failed during this audit: {failure.error}") + (f"\n\n**Fix:** {escape(failure.fix)}" if failure.fix else "")
            st.warning(text, icon=":material/report:")


def draw_category(ws: Workspace, category: str, *, empty: str) -> None:
    """The picked audit's results of ``category`` (``robustness``, ``fairness``), each in a box, then its skips and failures."""
    from dashboard import probe_catalog, run_picker

    picked = run_picker.pick_report(ws, category)
    if picked is None:
        return
    entry, report = picked
    results = getattr(report, category)
    if not results:
        st.info(empty)
    for i, result in enumerate(results):
        with st.container(border=True):
            draw_result(result, ws, f"{category}.{entry.report_id}.{i}", report)
    show_skips_and_failures(report, probe_catalog.probe_names(category))
