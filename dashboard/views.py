"""What pages share: the workspace guard, sample labels, and drawing any probe result.

Results are drawn through a small registry (result type -> section drawer) with a generic
fallback (headline, scalar fields, tables), so result types added later still show up.
Every figure comes from a ``result -> figure`` function in ``audits/render/``.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable

import numpy as np
import pandas as pd
import streamlit as st

from audits.render import interactive
from dashboard import state
from dashboard.feedback import guarded
from dashboard.markup import escape
from dashboard.workspace import Workspace

Drawer = Callable[[object, Workspace | None, str], None]
_DRAWERS: list[tuple[type, Drawer]] = []


def require_workspace() -> Workspace:
    """The selected model's workspace, or a message and the end of the page."""
    ws = st.session_state.get("_workspace")
    if ws is None:
        st.info("Pick a model in the sidebar (or fix the error shown there) to use this page.", icon=":material/info:")
        st.stop()
    return ws


def sample_label(ws: Workspace, i: int) -> str:
    """``#12 · true 3 · predicted 3 (97%)``."""
    names = ws.data.class_names
    pred = int(ws.predictions[i])
    return f"#{i} · true {names[int(ws.data.y[i])]} · predicted {names[pred]} ({ws.proba[i, pred]:.0%})"


def budget_params(probe_cls) -> dict[str, int | float | bool]:
    """A probe's numeric budgets and switches (its int/float/bool keyword parameters with a default)."""
    out: dict[str, int | float | bool] = {}
    for name, p in inspect.signature(probe_cls.__init__).parameters.items():
        if name in ("self", "target") or p.default is inspect.Parameter.empty:
            continue
        if isinstance(p.default, bool | int | float):
            out[name] = p.default
    return out


def ensure(key: str, default) -> None:
    if key not in st.session_state:
        st.session_state[key] = default


# --- drawing results ----------------------------------------------------------------


def drawer(result_type: type) -> Callable[[Drawer], Drawer]:
    """Register a section drawer for ``result_type`` (the most specific registered type wins)."""

    def wrap(fn: Drawer) -> Drawer:
        _DRAWERS[:] = [(t, f) for t, f in _DRAWERS if t is not result_type]
        _DRAWERS.append((result_type, fn))
        return fn

    return wrap


def _find_drawer(result) -> Drawer:
    for cls in type(result).__mro__:
        for registered, fn in _DRAWERS:
            if registered is cls:
                return fn
    return draw_generic


def draw_result(result, ws: Workspace | None, key: str) -> None:
    """Draw one probe result under its title; a drawing error is shown and the page goes on."""
    from audits.probes import registered_probes

    cls = registered_probes().get(getattr(result, "method", ""))
    title = getattr(cls, "title", "") or str(getattr(result, "method", type(result).__name__)).replace("_", " ")
    st.subheader(title)
    if cls is not None and getattr(cls, "description", ""):
        st.caption(cls.description)
    headline = result.headline() if hasattr(result, "headline") else ""
    if headline:
        st.markdown(f"**{escape(headline)}**")
    with guarded(f"Drawing {title}"):
        _find_drawer(result)(result, ws, key)
    cost = getattr(result, "cost", None)
    if cost is not None:
        st.caption(f"Cost: {interactive.cost_line(cost)}")


def frames_of(result) -> dict[str, pd.DataFrame]:
    """The result's table fields, by name."""
    if not dataclasses.is_dataclass(result):
        return {}
    return {f.name: getattr(result, f.name) for f in dataclasses.fields(result) if isinstance(getattr(result, f.name), pd.DataFrame)}


def show_table(frame: pd.DataFrame, *, key: str | None = None, height: int | None = None) -> None:
    """A table with readable numbers (3 significant decimals), full width."""
    shown = frame.copy()
    for col in shown.columns:
        if pd.api.types.is_float_dtype(shown[col]):
            shown[col] = shown[col].round(4)
    kwargs = {"height": height} if height else {}
    st.dataframe(shown, hide_index=True, width="stretch", key=key, **kwargs)


def draw_generic(result, ws: Workspace | None, key: str) -> None:
    """Fallback for any result: its scalar fields, then each table in a tab."""
    fields = interactive.scalar_fields(result)
    fields = fields[fields["field"] != "headline"]
    if len(fields):
        show_table(fields, key=f"{key}.fields")
    frames = {k: v for k, v in frames_of(result).items() if len(v)}
    if frames:
        tabs = st.tabs([k.replace("_", " ") for k in frames])
        for tab, (name, frame) in zip(tabs, frames.items(), strict=True):
            with tab:
                show_table(frame, key=f"{key}.{name}", height=min(38 + 35 * len(frame), 420))
    notes = getattr(result, "notes", None)
    if notes:
        for note in notes:
            st.caption(escape(str(note)))


def plot(fig, key: str) -> None:
    st.plotly_chart(fig, width="stretch", key=key, config={"displaylogo": False})


def value_range(ws: Workspace) -> tuple[float, float]:
    vr = getattr(ws.card.input, "value_range", (0.0, 1.0))
    return float(vr[0]), float(vr[1])


def class_index_options(ws: Workspace) -> list[str]:
    return ["predicted class", *ws.data.class_names]


def target_param(ws: Workspace) -> int | None:
    choice = state.get("inspect.target")
    names = list(ws.data.class_names)
    return names.index(choice) if choice in names else None


def matching_samples(ws: Workspace, classes: list[str], group: str, correct: str, confidence: tuple[float, float]) -> np.ndarray:
    """Rows passing the Inspect page's filters (true class, group, correct/wrong, confidence)."""
    data = ws.data
    conf = ws.proba.max(axis=1)
    mask = (conf >= confidence[0] - 1e-9) & (conf <= confidence[1] + 1e-9)
    if classes:
        wanted = [data.class_names.index(c) for c in classes if c in data.class_names]
        mask &= np.isin(data.y, wanted)
    if correct != "all":
        ok = ws.predictions == data.y
        mask &= ok if correct == "correct" else ~ok
    if group and group != "(any)" and " = " in group:
        attribute, value = group.split(" = ", 1)
        if attribute in data.attributes.columns:
            mask &= data.attributes[attribute].astype(str).to_numpy() == value
    return np.flatnonzero(mask)


def group_options(ws: Workspace) -> list[str]:
    out = ["(any)"]
    for attribute in ws.data.sensitive:
        values = sorted(ws.data.attributes[attribute].astype(str).unique())
        out += [f"{attribute} = {v}" for v in values[:50]]
    return out


# --- stored audits ---------------------------------------------------------------------


def run_audit_here(ws: Workspace, key: str) -> None:
    """A button running the default audit of the selected model, with a live progress bar."""
    from dashboard import runs
    from dashboard.feedback import show_error

    if st.button(
        f"Run the default audit of {ws.name}",
        key=f"{key}.run",
        type="primary",
        icon=":material/play_arrow:",
        help="Every default probe of this modality; about 30-60 s on 2 CPU cores. Stay on this page until it finishes.",
    ):
        bar = st.progress(0.0, text="Starting the audit…")
        try:
            stored = runs.run_and_store(ws, runs.build_spec(samples=0, seed=0, max_rows=0, probes=None), bar)
        except Exception as exc:  # the audit engine records probe failures itself; this is a failure to start
            bar.empty()
            show_error(exc, "The audit")
            return
        bar.empty()
        state.put(f"{key}.report", stored.report_id)
        st.success(f"Audit {stored.report_id} stored ({stored.summary.get('wall_time_s', 0):.0f} s).", icon=":material/check_circle:")


def pick_report(ws: Workspace, key: str):
    """The stored audit of the selected model to show (newest by default): ``(entry, report)`` or None.

    Only audits of these exact weights and data are offered.
    """
    from dashboard import cache, workspace

    entries = [e for e in workspace.store().list(ws.name) if e.summary.get("weights_sha256") == ws.model_hash and e.summary.get("data_sha256") == ws.data_hash]
    if not entries:
        st.info(f"No stored audit of {ws.name} (these weights and data) yet. Run one here or on the Audit & reports page.", icon=":material/info:")
        run_audit_here(ws, key)
        entries = [e for e in workspace.store().list(ws.name) if e.summary.get("weights_sha256") == ws.model_hash]
        if not entries:
            return None
    ids = [e.report_id for e in entries]
    by_id = {e.report_id: e for e in entries}
    c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
    c1.selectbox("Audit shown", ids, format_func=lambda i: by_id[i].label, **state.bind(f"{key}.report", options=ids))
    with c2:
        with st.popover("Re-run the audit", icon=":material/refresh:"):
            run_audit_here(ws, f"{key}.again")
    entry = by_id[state.get(f"{key}.report")]
    return entry, cache.stored_report(entry.path)


def draw_diff(difference) -> None:
    """A comparison of two reports (``audits.diff.ReportDiff``): identity, regressions, changed findings and numbers."""
    if not hasattr(difference, "findings") or not hasattr(difference, "metrics"):
        draw_generic(difference, None, "audit.diff")
        return
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
        show_table(pd.DataFrame(rows), key="audit.diff.findings", height=min(38 + 35 * len(rows), 380))
    if difference.metrics:
        st.markdown("**Numbers that changed**")
        rows = [{"metric": m.name, "A (old)": m.old, "B (new)": m.new, "change": m.delta, "direction": m.verdict} for m in difference.metrics]
        show_table(pd.DataFrame(rows), key="audit.diff.metrics", height=min(38 + 35 * len(rows), 380))
    if difference.probes_added or difference.probes_removed:
        st.caption(f"Probes added: {', '.join(difference.probes_added) or 'none'}; removed: {', '.join(difference.probes_removed) or 'none'}.")


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
