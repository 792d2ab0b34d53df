"""History: every recorded run of a model over time (the dashboard's, ``audits run --store``'s and scans'),
its verdict timeline, a trend per measurement with its interval, the diff of two runs, and the chain's verification."""

from __future__ import annotations

import time

import pandas as pd
import streamlit as st

from audits.render.history_figures import trend_figure, verdict_timeline_figure
from audits.store.changes import run_changes
from audits.store.history import history
from dashboard import auth, cache, diff_view, display, state, workspace
from dashboard.feedback import guarded, show_error

auth.require_signed_in()  # the gate again, however this script is reached

# The chain is verified again when a run was added, on request, or after this many seconds.
VERIFY_EVERY_S = 60.0

st.title("History")
runs_store = workspace.store()
store = runs_store.store


# --- chain ------------------------------------------------------------------------------
def _verification():
    """The chain's verification, walked again when the store grew, on request, or once it is a minute old."""
    count, seen = store.count(), st.session_state.get("history.verified")
    if seen is None or seen[0] != (store.location, count) or time.monotonic() - seen[1] > VERIFY_EVERY_S or st.session_state.pop("history.reverify", False):
        with st.spinner("Verifying the hash chain…"):
            seen = ((store.location, count), time.monotonic(), store.verify())
        st.session_state["history.verified"] = seen
    return seen[2]


with guarded("Verifying the chain"):
    result = _verification()
    c1, c2 = st.columns([5, 1], vertical_alignment="center")
    if result.ok:
        c1.success(f"{store.location}: {result.to_text()}.", icon=":material/verified:")
    else:
        c1.error(f"{store.location}: {result.to_text()}. Run `audits verify` for the same check in CI.", icon=":material/gpp_bad:")
    c2.button("Verify again", icon=":material/refresh:", on_click=st.session_state.__setitem__, args=("history.reverify", True))

models = store.models()
if not models:
    st.info(f"No runs recorded in {store.location} yet: run an audit on the Audit & reports page, or `audits run --store`.", icon=":material/info:")
    st.stop()
if state.get("history.model") not in models:
    state.put("history.model", state.get("model") if state.get("model") in models else models[0])
st.selectbox("Model", models, **state.bind("history.model", options=models))
model = state.get("history.model")

# --- runs -------------------------------------------------------------------------------
records = store.runs(model=model)
table = history(store, model)
st.subheader(f"{len(records)} run(s) of {model}")
display.plot(verdict_timeline_figure(records, model), key="history.timeline")
shown = table.copy()
shown["started_at"] = shown["started_at"].dt.strftime("%Y-%m-%d %H:%M:%S")
st.dataframe(
    shown,
    hide_index=True,
    width="stretch",
    height=min(38 + 35 * len(shown), 320),
    column_config={c: st.column_config.NumberColumn(format="%.4g") for c in shown.columns[7:]},
)

# --- trends -----------------------------------------------------------------------------
st.subheader("Trends")
pairs = store.measurement_keys(model)
keys = [f"{n}/{s}" if s else n for n, s in pairs]
if not keys:
    st.caption("The runs of this model recorded no measurements.")
else:
    if state.get("history.keys") is None:
        state.put("history.keys", [f"{n}" for n, s in pairs if not s][:2] or keys[:1])
    st.multiselect("Measurements", keys, placeholder="choose measurements", **state.bind("history.keys", options=keys, multi=True))
    chosen = state.get("history.keys")
    if chosen:
        measurements = store.measurements(model, names=sorted({k.split("/", 1)[0] for k in chosen}))
        for i, key in enumerate(chosen):
            display.plot(trend_figure(measurements, key), key=f"history.trend.{i}")
    st.caption("The band is each run's confidence interval where the measurement has one; marker colours are the run's verdict.")

# --- diff -------------------------------------------------------------------------------
st.subheader("Compare two runs")
completed = [r.run_id for r in records if r.status == "completed"]
if len(completed) < 2:
    st.caption(f"Two completed runs of {model} are needed to compare them.")
    st.stop()
labels = {r.run_id: f"{r.started_at.strftime('%Y-%m-%d %H:%M')} · {r.run_id} · {r.verdict}" + (f" · {r.plan}" if r.plan else "") for r in records}
c1, c2 = st.columns(2)
if state.get("history.diff_a") not in completed:
    state.put("history.diff_a", completed[1])
c1.selectbox("Baseline (A)", completed, format_func=labels.get, **state.bind("history.diff_a", options=completed))
c2.selectbox("Compared (B)", completed, format_func=labels.get, **state.bind("history.diff_b", options=completed))
a_id, b_id = state.get("history.diff_a"), state.get("history.diff_b")
if a_id == b_id:
    st.caption("Choose two different runs.")
    st.stop()
try:
    a, b = runs_store.get(a_id), runs_store.get(b_id)
    changes = run_changes(cache.stored_report(a.path), cache.stored_report(b.path))
    difference = cache.stored_diff(a.path, b.path)
except Exception as exc:  # an incompatible pair or an unreadable report: shown with the reason
    show_error(exc, "Comparing the runs")
    st.stop()
if changes.changes:
    st.markdown("**What changed between the runs**")
    st.dataframe(pd.DataFrame([{"what": c.what, "A": c.old, "B": c.new, "detail": c.detail} for c in changes.changes]), hide_index=True, width="stretch")
else:
    st.caption("Same model weights, data, spec, seed, policy and tool version: differences below come from the audit alone.")
diff_view.draw_diff(difference)
