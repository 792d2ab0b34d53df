"""Error analysis: the slices of the evaluation data where the model errs significantly more than
overall (the stored audit's ``slice_discovery`` result), navigable: every tested slice with its
size and error rate with interval, then one slice's misclassified examples."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from audits.render.plotly_backend import to_plotly
from audits.render.views import discovery as discovery_view
from audits.render.views import samples as samples_view
from audits.results.discovery import SliceDiscoveryResult
from dashboard import auth, display, run_picker, state, workspace
from dashboard.feedback import guarded
from dashboard.samples import value_range

auth.require_signed_in()  # the gate again, however this script is reached

st.title("Error analysis")
st.caption("Where the model errs: slices of any column (and pairs of columns) whose error rate is significantly above the overall one (Benjamini-Hochberg).")
ws = workspace.require()
picked = run_picker.pick_report(ws, "errors")
if picked is None:
    st.stop()
entry, report = picked
found = [r for r in (*report.fairness, *report.robustness) if isinstance(r, SliceDiscoveryResult)]
if not found:
    st.info(
        "This audit has no slice discovery result. Run an audit with the `slice_discovery` probe (a default probe of every modality) on the Audit & reports page.",
        icon=":material/info:",
    )
    st.stop()
result = found[0]
flagged = result.flagged

m1, m2, m3, m4 = st.columns(4)
m1.metric("Overall error rate", f"{result.overall_error:.1%}")
m2.metric("Rows audited", f"{result.n_rows:,}")
m3.metric("Slices tested", f"{result.n_tested:,}", help=f"Every value (and pair of values) of a column with at least {result.min_size} rows.")
m4.metric("Significantly worse", f"{len(flagged):,}", help=f"q-value below {result.fdr:g} and an error rate above the overall one.")

if len(flagged):
    with guarded("Drawing the slices"):
        display.plot(to_plotly(discovery_view.slice_chart(result)), key="errors.chart")
slices = result.slices
if not len(slices):
    st.info(f"No slice has {result.min_size} rows or more to test.", icon=":material/info:")
    st.stop()

st.subheader("Slices")
table = pd.DataFrame(
    {
        "slice": slices["slice"],
        "size": slices["size"].astype(int),
        "errors": slices["errors"].astype(int),
        "error rate": slices["error_rate"],
        "95% interval": [f"[{lo:.1%}, {hi:.1%}]" for lo, hi in zip(slices["lo"], slices["hi"], strict=True)],
        "q-value": slices["q_value"],
        "significant": slices["significant"].astype(bool),
    }
)
st.dataframe(
    table,
    hide_index=True,
    width="stretch",
    key="errors.table",
    height=min(38 + 35 * len(table), 420),
    column_config={
        "slice": st.column_config.TextColumn(width="large"),
        "error rate": st.column_config.ProgressColumn(format="percent", min_value=0.0, max_value=1.0),
        "q-value": st.column_config.NumberColumn(format="%.3g"),
    },
)
st.caption(f"The significant slices first (worst first), then the others tested; at most {len(slices)} listed of {result.n_tested}.")

# --- one slice ----------------------------------------------------------------------------
names = list(slices["slice"])
st.selectbox("Open a slice", names, **state.bind("errors.slice", options=names))
row = slices.iloc[names.index(state.get("errors.slice"))]
c1, c2, c3 = st.columns(3)
c1.metric("Rows in the slice", f"{int(row['size']):,}")
c2.metric("Error rate", f"{row['error_rate']:.1%}", delta=f"{row['error_rate'] - result.overall_error:+.1%} vs overall", delta_color="inverse")
c3.metric("95% interval", f"{row['lo']:.1%} – {row['hi']:.1%}")
examples = [int(i) for i in str(row.get("examples") or "").split(",") if i.strip()]
if not examples:
    st.caption("No misclassified example in this slice.")
    st.stop()
# Example indices count rows of the audited data; map them to the evaluation data when the audit used a subset.
subset = report.data_summary.row_indices
rows = np.asarray([int(subset[i]) if subset is not None else i for i in examples])
# A large file is held as a seeded subset (its rows in the file: ``file_rows``); the report counts the whole file.
held_rows = ws.data.file_rows
n_file = ws.data.population.n_rows if ws.data.population is not None else len(ws.data)
if report.data_summary.n_rows_available != n_file or rows.max() >= n_file:
    st.warning("The evaluation data changed since this audit: its example rows cannot be shown.", icon=":material/warning:")
    st.stop()
file_rows = rows  # what the table and captions call each example: its row in the evaluation file
if held_rows is not None:
    pos = np.minimum(np.searchsorted(held_rows, rows), len(held_rows) - 1)
    held = held_rows[pos] == rows
    if not held.any():
        st.info(
            f"This slice's examples lie outside the {len(held_rows):,} rows the dashboard holds of this {n_file:,}-row file "
            "(a seeded subset; the audit drew its own with its seed), so none can be shown."
        )
        st.stop()
    if not held.all():
        st.caption(f"{int((~held).sum())} of these {len(rows)} examples lie outside the {len(held_rows):,}-row subset the dashboard holds of this file; the others are shown.")
    rows, file_rows = pos[held], rows[held]
names_ = ws.data.class_names
st.markdown(f"**Misclassified examples** (the first {len(rows)} of {int(row['errors'])} errors in this slice)")
truth = [names_[int(ws.data.y[i])] for i in rows]
predicted = [names_[int(ws.predictions[i])] for i in rows]
confidence = [float(ws.proba[i, int(ws.predictions[i])]) for i in rows]
if ws.data.modality == "image":
    with guarded("Drawing the examples"):
        captions = [f"#{i}: true {t}, predicted {p} ({c:.0%})" for i, t, p, c in zip(file_rows, truth, predicted, confidence, strict=True)]
        chart = samples_view.sample_gallery_chart(ws.data.x[rows], captions, value_range(ws), cols=5, title="Misclassified examples")
        display.plot(to_plotly(chart), key="errors.examples")
else:
    shown = pd.DataFrame({"row": file_rows, "true": truth, "predicted": predicted, "confidence": confidence})
    if ws.data.modality == "text":
        shown["text"] = [ws.data.texts[i] for i in rows]
    elif ws.data.raw is not None:
        shown = pd.concat([shown, ws.data.raw.iloc[rows].reset_index(drop=True)], axis=1)
    attributes = ws.data.attributes.iloc[rows].reset_index(drop=True)
    shown = pd.concat([shown, attributes[[c for c in attributes.columns if c not in shown.columns]]], axis=1)
    st.dataframe(
        shown,
        hide_index=True,
        width="stretch",
        key="errors.rows",
        column_config={"confidence": st.column_config.NumberColumn(format="percent")},
    )
