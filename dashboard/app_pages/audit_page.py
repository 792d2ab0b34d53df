"""Audit & reports: run a full audit with live progress, list and open stored audits, download
them as JSON, HTML and PDF, and compare two."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from audits.probes import CATEGORY_ORDER, default_probe_names, registered_probes
from audits.render import tables
from dashboard import audit_runs, auth, cache, diff_view, display, result_view, state, workspace
from dashboard.feedback import guarded, show_error
from dashboard.markup import escape

auth.require_signed_in()  # the gate again, however this script is reached

st.title("Audit & reports")
ws = workspace.require()
store = workspace.store()

# --- run -------------------------------------------------------------------------------
with st.container(border=True):
    st.subheader(f"Run a full audit of {ws.name}")
    modality = ws.data.modality
    probes = {n: c for n, c in registered_probes().items() if modality in c.modalities}
    defaults = default_probe_names(modality, ws.handle, ws.data)  # only what this model supports
    for category in CATEGORY_ORDER:
        names = [n for n, c in probes.items() if c.category == category]
        if state.get(f"audit.probes.{category}") is None:
            state.put(f"audit.probes.{category}", [n for n in names if n in defaults])
        st.multiselect(
            {"explanation": "Explanation probes", "robustness": "Robustness probes", "fairness": "Fairness probes", "concepts": "Concept probes"}[category],
            names,
            format_func=lambda n: probes[n].title or n,
            placeholder="none",
            **state.bind(f"audit.probes.{category}", options=names, multi=True),
        )
    selected = [n for category in CATEGORY_ORDER for n in state.get(f"audit.probes.{category}")]
    c1, c2, c3 = st.columns(3)
    c1.number_input("Samples to explain (0: default)", min_value=0, max_value=10_000, step=1, **state.bind("audit.samples"))
    c2.number_input("Seed", min_value=0, max_value=2**31 - 1, step=1, **state.bind("audit.seed"))
    c3.number_input(
        "Evaluation rows (0: all)", min_value=0, step=500, help="A seeded random subset keeps large datasets quick.", **state.bind("audit.max_rows")
    )
    st.caption(
        f"The default audit takes about 30-60 s on 2 CPU cores ({len(ws.data):,} evaluation rows). It runs in the background: "
        f"leave this page or reload, its progress stays in the sidebar; the run is then recorded in `{store.location}`."
    )
    if st.button("Run audit", type="primary", icon=":material/play_arrow:", disabled=not selected):
        try:
            spec = audit_runs.spec_settings(
                samples=state.get("audit.samples"), seed=state.get("audit.seed"), max_rows=state.get("audit.max_rows"), probes=selected
            )
            job = audit_runs.start_audit(ws, spec)
        except Exception as exc:  # a bad spec or a store that cannot queue: shown, the page stays up
            show_error(exc, "Starting the audit")
        else:  # run again so that the sidebar, drawn before this button, shows the job from now on
            st.session_state["audit.queued"] = f"Audit of {ws.name} queued as job {job.job_id}: it runs in the background; follow it in the sidebar."
            st.rerun()
    queued = st.session_state.pop("audit.queued", None)
    if queued:
        st.success(queued, icon=":material/schedule:")

# --- stored audits ---------------------------------------------------------------------
st.subheader("Stored audits")
entries = store.list()
if not entries:
    st.info("No audits stored yet: run one above.", icon=":material/info:")
    st.stop()
listing = pd.DataFrame(
    [
        {
            "created (UTC)": e.created_at[:19].replace("T", " "),
            "model": e.model,
            "report id": e.report_id,
            "verdict": e.verdict,
            "accuracy": e.summary.get("accuracy"),
            "rows": e.summary.get("n_rows"),
            "wall time (s)": e.summary.get("wall_time_s"),
            "failed probes": ", ".join(e.summary.get("failures") or []) or "none",
        }
        for e in entries
    ]
)
st.dataframe(
    listing,
    hide_index=True,
    width="stretch",
    height=min(38 + 35 * len(listing), 300),
    column_config={"accuracy": st.column_config.NumberColumn(format="%.4f"), "wall time (s)": st.column_config.NumberColumn(format="%.1f")},
)

by_id = {e.report_id: e for e in entries}
ids = list(by_id)
if state.get("audit.open") not in ids:  # default: the newest audit of the selected model
    state.put("audit.open", next((e.report_id for e in entries if e.model == ws.name), ids[0]))
st.selectbox("Open an audit", ids, format_func=lambda i: by_id[i].label, **state.bind("audit.open", options=ids))
entry = by_id[state.get("audit.open")]
try:
    report = cache.stored_report(entry.path)
except Exception as exc:  # a damaged or incompatible file: say which and why
    show_error(exc, f"Opening {entry.path.name}")
    st.stop()

# downloads
d1, d2, d3 = st.columns(3)
stem = f"{entry.model}-{entry.report_id}"
d1.download_button("Download JSON", entry.path.read_bytes(), file_name=f"{stem}.json", mime="application/json", icon=":material/data_object:", width="stretch")
for col, fmt, mime in ((d2, "html", "text/html"), (d3, "pdf", "application/pdf")):
    with col:
        path = entry.export_path(fmt)
        flag = f"audit.render.{entry.report_id}.{fmt}"
        if path.is_file():
            st.download_button(f"Download {fmt.upper()}", path.read_bytes(), file_name=f"{stem}.{fmt}", mime=mime, icon=":material/download:", width="stretch")
        elif st.session_state.get(flag):
            try:
                with st.spinner(f"Rendering the {fmt.upper()}…"):
                    payload = cache.stored_export(entry.path, fmt)
                    store.write_export(entry, fmt, payload)
            except ImportError:
                st.caption(f"{fmt.upper()} export is not available in this installation (its renderer is missing).")
            except Exception as exc:  # a renderer failure is shown, the rest of the page stays
                show_error(exc, f"Rendering the {fmt.upper()}")
            else:
                st.download_button(f"Download {fmt.upper()}", payload, file_name=f"{stem}.{fmt}", mime=mime, icon=":material/download:", width="stretch")
        else:
            st.button(f"Prepare {fmt.upper()}", key=f"{flag}.button", on_click=state.put, args=(flag, True), icon=":material/description:", width="stretch")

p, perf = report.provenance, report.performance
overview, explanations, robustness, fairness, concepts, problems = st.tabs(
    [
        "Overview",
        f"Explanations ({len(report.explanations)})",
        f"Robustness ({len(report.robustness)})",
        f"Fairness ({len(report.fairness)})",
        f"Concepts ({len(report.concepts)})",
        f"Skipped and failed ({len(report.skipped) + len(report.failures)})",
    ]
)
with overview:
    m1, m2, m3, m4, m5 = st.columns(5)
    m1.metric("Verdict", entry.verdict)
    m2.metric("Accuracy", f"{perf.accuracy:.4f}")
    m3.metric("ECE", f"{perf.ece:.4f}")
    m4.metric("Wall time", f"{p.wall_time_s:.1f} s")
    m5.metric("Model calls", f"{p.model_calls:,}")
    st.caption(
        f"{p.model_name} · {p.model_format} · {p.parameter_count:,} parameters · weights sha256 {p.weights_sha256[:16]}… · {p.device} · seed {p.seed} · data {report.data_summary.n_rows:,} rows (sha256 {p.data_sha256[:12]}…)"
    )
    if report.findings:
        st.markdown("**Findings against the policy**")
        findings = pd.DataFrame(
            [
                {
                    "status": f.status,
                    "check": f.title,
                    "subject": f.subject,
                    "measured": "–" if f.measured is None else f"{f.measured:.4g}",
                    "threshold": "–" if f.threshold is None else f"{f.threshold:.4g}",
                    "direction": f.direction,
                    "detail": f.detail,
                }
                for f in report.findings
            ]
        )
        # A static table wraps long text: every finding's detail is read in full (a grid cell would cut it off).
        st.table(findings.set_index("status"))
    else:
        st.caption("No policy findings in this report.")
    with guarded("Drawing the performance figures"):
        from audits.render.plotly_backend import to_plotly
        from audits.render.views import performance as performance_view

        c1, c2 = st.columns(2)
        with c1:
            display.plot(to_plotly(performance_view.reliability_chart(perf)), key="audit.reliability")
        with c2:
            display.plot(to_plotly(performance_view.per_class_chart(perf)), key="audit.perclass")
with explanations:
    for result in report.explanations:
        st.markdown(f"**{result.method.replace('_', ' ')}**: {escape(result.headline())}")
        st.caption(f"Cost: {tables.cost_line(result.cost)}")
    if report.explanations:
        with guarded("Drawing the attribution gallery"):
            from audits.render.plotly_backend import to_plotly
            from audits.render.views import attribution as attribution_view

            if report.data_summary.modality == "tabular":
                display.plot(to_plotly(attribution_view.global_importance_chart(report.explanations)), key="audit.importance")
            elif report.samples is not None and report.data_summary.modality == "image":
                display.plot(
                    to_plotly(
                        attribution_view.attribution_gallery_chart(
                            report.explanations, report.samples, report.data_summary.class_names, rows=list(range(min(4, len(report.samples.indices))))
                        )
                    ),
                    key="audit.gallery",
                )
with robustness:
    for i, result in enumerate(report.robustness):
        with st.container(border=True):
            result_view.draw_result(result, None, f"audit.rob.{entry.report_id}.{i}", report)
with fairness:
    for i, result in enumerate(report.fairness):
        with st.container(border=True):
            result_view.draw_result(result, None, f"audit.fair.{entry.report_id}.{i}", report)
with concepts:
    for i, result in enumerate(report.concepts):
        with st.container(border=True):
            result_view.draw_result(result, None, f"audit.concepts.{entry.report_id}.{i}", report)
with problems:
    result_view.show_skips_and_failures(report)
    if not report.skipped and not report.failures:
        st.caption("Every selected probe ran.")

# --- diff ------------------------------------------------------------------------------
st.subheader(f"Compare two audits of {ws.name}")
own = [e.report_id for e in entries if e.model == ws.name]
if len(own) < 2:
    st.caption(f"Store at least two audits of {ws.name} to compare them (regressions, changed findings and numbers).")
    st.stop()
c1, c2 = st.columns(2)
if state.get("audit.diff_a") not in own:
    state.put("audit.diff_a", own[1])
c1.selectbox("Baseline (A, older)", own, format_func=lambda i: by_id[i].label, **state.bind("audit.diff_a", options=own))
c2.selectbox("Compared (B, newer)", own, format_func=lambda i: by_id[i].label, **state.bind("audit.diff_b", options=own))
a, b = by_id[state.get("audit.diff_a")], by_id[state.get("audit.diff_b")]
if a.report_id == b.report_id:
    st.caption("Choose two different audits.")
    st.stop()
try:
    with st.spinner("Comparing…"):
        difference = cache.stored_diff(a.path, b.path)
except ImportError:
    st.info("Comparing audits needs the report engine's diff module (audits/diff.py), which this installation lacks.", icon=":material/info:")
except Exception as exc:  # an incompatible pair: shown with the reason
    show_error(exc, "Comparing the audits")
else:
    diff_view.draw_diff(difference)
