"""Inspect: pick a sample, see the prediction and several attribution methods side by side."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import streamlit as st

from audits.errors import AuditError
from audits.probes import registered_probes
from audits.render import tables
from audits.render.plotly_backend import to_plotly
from audits.render.token_salience import salience_html, word_salience
from audits.render.views import attribution as attribution_view
from audits.render.views import performance as performance_view
from audits.render.views import samples as samples_view
from audits.results.attribution import AttentionMapsResult, TextAttentionResult
from dashboard import auth, cache, deeplink, display, probe_catalog, samples, state, workspace
from dashboard.feedback import show_error
from dashboard.markup import escape

auth.require_signed_in()  # the gate again, however this script is reached

DEFAULT_METHODS = {
    "image": ["grad_cam", "integrated_gradients", "occlusion"],
    "tabular": ["kernel_shap", "integrated_gradients", "lime"],
    "text": ["layer_integrated_gradients", "kernel_shap_text"],
}

st.title("Inspect a prediction")
ws = workspace.require()
data, names = ws.data, list(ws.data.class_names)
modality = data.modality


# --- choose a sample -------------------------------------------------------------------
def _step(delta: int, matching: np.ndarray) -> None:
    """The previous/next matching row from the current one (any row may be current)."""
    current = int(state.get("inspect.sample") or 0)
    pos = int(np.searchsorted(matching, current, side="right" if delta > 0 else "left"))
    pos = pos % len(matching) if delta > 0 else (pos - 1) % len(matching)
    state.put("inspect.sample", int(matching[pos]))


def _pick(row: int) -> None:
    state.put("inspect.sample", int(row))


def _picked_from_table(key: str, rows: list[int]) -> None:
    selection = st.session_state[key].selection.rows
    if selection:
        state.put("inspect.sample", int(rows[selection[0]]))


def _refiltered() -> None:
    st.session_state["_inspect.refiltered"] = True  # after new filters, a row that no longer matches gives way to the first match


n_rows = len(data)
st.subheader("1. Choose a sample")
f1, f2, f3, f4 = st.columns([1.2, 1.1, 1.4, 1.3])
f1.multiselect("True class", names, placeholder="any class", **state.bind("inspect.classes", options=names, multi=True, after=_refiltered))
f2.selectbox(
    "Group",
    samples.group_options(ws),
    help="Sensitive attribute value of the sample.",
    **state.bind("inspect.group", options=samples.group_options(ws), after=_refiltered),
)
f3.radio("Prediction", ["all", "correct", "wrong"], horizontal=True, **state.bind("inspect.correct", options=["all", "correct", "wrong"], after=_refiltered))
f4.slider("Confidence (probability of the predicted class)", 0.0, 1.0, step=0.01, **state.bind("inspect.confidence", after=_refiltered))
table = cache.row_table(ws.model_hash, ws.data_hash, data, ws.proba)
st.text_input(
    "Filter over columns",
    placeholder="e.g. age >= 60 and sex = Female and predicted != true" if modality == "tabular" else "e.g. text contains friend and predicted != true",
    help="Clauses joined by 'and': column = != > >= < <= value, or column contains word. Columns: " + ", ".join(map(str, table.columns)) + ".",
    **state.bind("inspect.query", after=_refiltered),
)
matching = samples.matching_samples(
    ws, state.get("inspect.classes"), state.get("inspect.group"), state.get("inspect.correct"), tuple(state.get("inspect.confidence"))
)
try:
    matching = np.intersect1d(matching, cache.filtered_rows(ws.model_hash, ws.data_hash, state.get("inspect.query") or "", table), assume_unique=True)
except AuditError as exc:  # a filter that cannot be read: say which clause and how to write it
    show_error(exc, "The filter")
current = state.get("inspect.sample")
if not isinstance(current, int) or not 0 <= current < n_rows:
    state.put("inspect.sample", int(matching[0]) if len(matching) else 0)
elif (
    st.session_state.pop("_inspect.refiltered", False)
    and len(matching)
    and current not in set(matching[np.searchsorted(matching, current) : np.searchsorted(matching, current) + 1].tolist())
):
    state.put("inspect.sample", int(matching[0]))
s1, s2, s3, s4 = st.columns([2, 1, 1, 3], vertical_alignment="bottom")
s1.number_input(
    f"Row (0 to {n_rows - 1:,})",
    min_value=0,
    max_value=n_rows - 1,
    step=1,
    help="Any row of the evaluation data, by its index.",
    **state.bind("inspect.sample"),
)
s2.button("Previous", on_click=_step, args=(-1, matching), icon=":material/chevron_left:", width="stretch", disabled=not len(matching))
s3.button("Next", on_click=_step, args=(1, matching), icon=":material/chevron_right:", width="stretch", disabled=not len(matching))
sample = int(state.get("inspect.sample"))
inside = bool(len(matching)) and bool(matching[min(np.searchsorted(matching, sample), len(matching) - 1)] == sample)
s4.caption(
    f"{len(matching):,} of {n_rows:,} rows match the filters; row {sample:,} "
    + ("matches." if inside else "does not (Previous/Next step through the matching rows).")
)
if not len(matching):
    st.warning(
        "No row matches these filters. Widen the confidence range or clear a filter; any row can still be opened by its index.",
        icon=":material/filter_alt_off:",
    )

BROWSE = 24
if len(matching) and st.toggle(
    "Browse the matching rows from this one",
    help="Thumbnails (images) or rows (tables, texts) of the matching rows from the current one on; click one to inspect it.",
    **state.bind("inspect.browse"),
):
    first = int(np.searchsorted(matching, sample))
    browse = [int(i) for i in matching[first : first + BROWSE]] or [int(i) for i in matching[-BROWSE:]]
    if modality == "image":
        st.caption("Click a thumbnail's button to inspect it (#row: true → predicted).")
        per_row = 8
        for start in range(0, len(browse), per_row):
            cols = st.columns(per_row)
            for col, i in zip(cols, browse[start : start + per_row], strict=False):
                col.image(samples.thumbnail(ws, i), width="stretch")
                col.button(
                    f"#{i}: {names[int(data.y[i])]}→{names[int(ws.predictions[i])]}",
                    key=f"inspect.thumb.{i}",
                    on_click=_pick,
                    args=(i,),
                    type="primary" if i == sample else "secondary",
                    width="stretch",
                )
    else:
        shown = table.iloc[browse].copy()
        shown.insert(0, "row", browse)
        st.caption("Click a row to inspect it.")
        st.dataframe(
            shown,
            hide_index=True,
            width="stretch",
            key="inspect.browse_table",
            on_select=_picked_from_table,
            args=("inspect.browse_table", browse),
            selection_mode="single-row",
            column_config={"confidence": st.column_config.NumberColumn(format="%.3f")},
        )


# --- the prediction --------------------------------------------------------------------
st.subheader("2. Prediction")
label, pred = int(data.y[sample]), int(ws.predictions[sample])
m1, m2, m3, _ = st.columns([1, 1, 1, 1.4])
m1.metric("True class", names[label])
m2.metric("Predicted", names[pred], delta="correct" if pred == label else "wrong", delta_color="normal" if pred == label else "inverse", delta_arrow="off")
m3.metric("Confidence", f"{ws.proba[sample, pred]:.1%}")
p1, p2 = st.columns([1, 1.4])
with p1:
    if modality == "image":
        display.plot(to_plotly(samples_view.input_image_chart(data.x[sample], samples.value_range(ws), title=f"Input #{sample}")), key="inspect.input")
    elif modality == "tabular" and data.raw is not None:
        row = data.raw.iloc[sample]
        display.show_table(row.astype(str).rename("value").rename_axis("feature").reset_index(), key="inspect.raw", height=min(38 + 35 * len(row), 330))
    elif modality == "text":
        st.text(data.texts[sample])
    attrs = {a: str(data.attributes[a].iloc[sample]) for a in data.sensitive}
    if attrs:
        st.caption("Sensitive attributes: " + ", ".join(f"{k} = {v}" for k, v in attrs.items()))
with p2:
    display.plot(to_plotly(samples_view.class_probability_chart(ws.proba[sample], names, label=label)), key="inspect.proba")

# --- attributions ----------------------------------------------------------------------
st.subheader("3. Attributions")
probes = {n: c for n, c in registered_probes().items() if c.category == "explanation" and modality in c.modalities}
available = [n for n in probes if probes[n]().check(ws.handle, data) is None]
if state.get("inspect.methods") is None:
    state.put("inspect.methods", [m for m in DEFAULT_METHODS.get(modality, []) if m in available] or available[:2])
a1, a2 = st.columns([3, 1])
a1.multiselect("Methods (side by side)", available, format_func=lambda n: probes[n].title or n, **state.bind("inspect.methods", options=available, multi=True))
a2.selectbox(
    "Explain the class",
    samples.class_index_options(ws),
    help="The predicted class, or any class you name.",
    **state.bind("inspect.target", options=samples.class_index_options(ws)),
)
if modality == "image":
    d1, d2, d3 = st.columns(3)
    d1.slider("Overlay opacity", 0.0, 1.0, step=0.05, **state.bind("inspect.opacity"))
    d2.radio(
        "Values",
        ["signed", "absolute"],
        horizontal=True,
        help="Signed: red raises the explained class, blue lowers it. Absolute: magnitude only.",
        **state.bind("inspect.mode", options=["signed", "absolute"]),
    )
    scales = attribution_view.OVERLAY_COLORMAPS["signed" if state.get("inspect.mode") == "signed" else "absolute"]
    d3.selectbox("Colour scale", list(scales), **state.bind("inspect.scale", options=list(scales)))

methods = list(state.get("inspect.methods") or [])
deeplink.publish(model=ws.name, sample=sample, method=",".join(methods))  # the address bar links to this view
with st.expander("Method budgets (more samples or steps: slower, less noisy)", expanded=False):
    st.number_input("Seed", min_value=0, max_value=2**31 - 1, step=1, **state.bind("inspect.seed"))
    for method in methods:
        budgets = probe_catalog.budget_params(probes[method])
        if not budgets:
            continue
        st.markdown(f"**{probes[method].title or method}**")
        cols = st.columns(max(len(budgets), 1))
        for col, (param, default) in zip(cols, budgets.items(), strict=False):
            key = f"budget.{method}.{param}"
            state.ensure(key, default)
            if isinstance(default, bool):
                col.checkbox(param.replace("_", " "), **state.bind(key))
            elif isinstance(default, int):
                col.number_input(param.replace("_", " "), min_value=1, step=max(1, default // 4), **state.bind(key))
            else:
                col.number_input(param.replace("_", " "), min_value=0.0, step=0.05, format="%.3f", **state.bind(key))


def _params(method: str) -> dict:
    params = {p: state.get(f"budget.{method}.{p}") for p in probe_catalog.budget_params(probes[method])}
    params = {k: v for k, v in params.items() if v is not None}
    if probe_catalog.takes_target(probes[method]):  # attention maps explain no class: they take no target
        params["target"] = samples.target_param(ws)
    return params


_BADGE = {"pass": "✅", "warn": "⚠️", "fail": "❌", "not_evaluated": "–"}


def salience_markup(result, row: int) -> str:
    """One explained text inline: each word with its salience colour (red raises the explained class, blue lowers it)."""
    return salience_html(word_salience(result.tokens[row], result.attributions[row]))


def _explains(result, method: str) -> str:
    """What the colours of ``result`` are: a contribution to a class's output, or attention (which explains no class)."""
    if isinstance(result, TextAttentionResult):  # it records a target and an output, but neither is what it plots
        reader = "the [CLS] token's" if result.readout == "cls" else "the tokens' mean"
        return (
            f"Attention rollout: the share of {reader} attention, through all layers, that reaches each word (0-1, unsigned; not a contribution to any class)."
        )
    if isinstance(result, AttentionMapsResult) or not probe_catalog.takes_target(probes[method]):
        return "Attention weights (how much the readout attends to each part; not a contribution to any class)."
    return f"Explains '{names[int(result.targets[0])]}' ({result.output})."


def _draw_attributions() -> None:
    """Run the chosen methods on the sample and draw their maps side by side (with trust badges on request)."""
    started = time.perf_counter()
    results = {}
    progress = st.progress(0.0, text="Running the attribution methods…")
    for k, method in enumerate(methods):
        progress.progress(k / len(methods), text=f"Running {probes[method].title or method} ({k + 1} of {len(methods)})…")
        try:
            results[method] = cache.attribution(
                ws.model_hash, ws.data_hash, method, cache.params_json(_params(method)), sample, int(state.get("inspect.seed")), ws.loaded, data, ws.context
            )
        except Exception as exc:  # one failed method is reported; the others still show
            results[method] = exc
    progress.empty()
    elapsed = time.perf_counter() - started
    trust = None
    if st.toggle("Trust badges (faithfulness, weight sensitivity, stability; re-runs each method a few times)", value=False, key="inspect.trust"):
        maps = tuple(r for r in results.values() if not isinstance(r, Exception))
        try:
            trust = cache.trust(
                ws.model_hash,
                ws.data_hash,
                cache.params_json({m: _params(m) for m in methods}),
                sample,
                int(state.get("inspect.seed")),
                ws.loaded,
                data,
                ws.context,
                maps,
            )
        except Exception as exc:  # the maps still show without their badges
            show_error(exc, "Trust badges")

    per_row = 3 if modality == "image" else 2
    for start in range(0, len(methods), per_row):
        cols = st.columns(per_row)
        for col, method in zip(cols, methods[start : start + per_row], strict=False):
            with col:
                result = results[method]
                title = probes[method].title or method
                if isinstance(result, Exception):
                    st.markdown(f"**{title}**")
                    show_error(result, title)
                    continue
                try:
                    if modality == "image":
                        scale = scales[state.get("inspect.scale")]
                        chart = attribution_view.attribution_overlay_chart(
                            result,
                            0,
                            data.x[sample],
                            samples.value_range(ws),
                            opacity=state.get("inspect.opacity"),
                            mode=state.get("inspect.mode"),
                            colormap=scale,
                            title=title,
                        )
                    elif modality == "tabular":
                        raw = data.raw.iloc[sample].to_dict() if data.raw is not None else None
                        chart = attribution_view.tabular_contribution_chart(result, 0, names, raw, title=title)
                    else:  # the sentence itself, each word on its salience colour
                        chart = None
                        st.markdown(f"**{escape(title)}**")
                        st.markdown(salience_markup(result, 0), unsafe_allow_html=True)
                    if chart is not None:
                        display.plot(to_plotly(chart), key=f"inspect.attr.{method}")
                except Exception as exc:  # a figure that cannot be drawn must not hide the others
                    show_error(exc, f"Drawing {title}")
                explains = _explains(result, method)
                st.caption(f"{explains} Cost: {tables.cost_line(result.cost)}")
                if trust is not None and method in trust.methods:
                    v = trust.verdict(method)
                    st.caption(
                        f"Trust: faithful {_BADGE[v['faithfulness']]} · weight-sensitive {_BADGE[v['randomization']]} · stable {_BADGE[v['stability']]} — {trust.reason(method)}"
                    )
                quality = tables.quality_table(result, 0)
                if len(quality):
                    st.caption(" · ".join(f"{r.measure}: {r.value:.3g}" for r in quality.itertuples()))
    st.caption(f"Attributions ready in {elapsed:.2f} s (results are cached per model, data, method, budget and sample).")
    if modality == "text":
        st.caption(
            "Each word's colour is its attribution summed over its word pieces, scaled by the method's largest |value|: red raises the explained class, blue lowers it"
            + (
                "; attention rollout is unsigned, its red is the share of attention"
                if any(isinstance(r, TextAttentionResult) for r in results.values())
                else ""
            )
            + ". Hover a word for its value."
        )
    if modality == "image":
        st.caption(
            "Each map is scaled by its own largest |value|, so methods compare in shape, not in units."
            + (" Red raises the explained class, blue lowers it." if state.get("inspect.mode") == "signed" and state.get("inspect.scale") == "red-blue" else "")
        )


if not available:  # a predictions card has no model to explain; a model may support none of the methods
    reason = next(iter(probes.values()))().check(ws.handle, data) if probes else f"no attribution method is registered for {modality} models"
    st.info(f"No attribution method can run here: {reason}")
elif not methods:
    st.info("Choose at least one method above.")
else:
    _draw_attributions()


# --- what if ---------------------------------------------------------------------------
def _feature_widget(col, feature, value, key: str):
    """An input for one raw feature, seeded with the row's value (categorical: its levels)."""
    if getattr(feature, "levels", None):
        levels = list(feature.levels)
        return col.selectbox(feature.name, levels, index=levels.index(str(value)) if str(value) in levels else 0, key=key)
    return col.number_input(feature.name, value=float(value), key=key, format="%.4g")


def _what_if_params(method: str) -> dict:
    """The method's parameters, explaining the same class as above (the original row's), so the two read side by side."""
    params = _params(method)
    if "target" in params and params["target"] is None:
        params["target"] = pred
    return params


if modality in ("tabular", "text") and ws.card.format == "predictions":  # scores are rows of a table: nothing scores an edit
    st.subheader("4. What if?")
    st.caption("A predictions card holds another system's scores for these rows only: there is no model to score an edited row.")
elif modality in ("tabular", "text"):
    st.subheader("4. What if?")
    if modality == "tabular":
        st.caption("Change any feature of this row: the prediction and the attributions of the methods above update.")
        original = data.raw.iloc[sample]
        edits: dict = {}
        features = list(ws.card.input.features)
        cols = st.columns(4)
        for k, feature in enumerate(features):
            value = _feature_widget(cols[k % 4], feature, original[feature.name], f"inspect.whatif.{sample}.{feature.name}")
            same = str(value) == str(original[feature.name]) if getattr(feature, "levels", None) else np.isclose(float(value), float(original[feature.name]))
            if not same:
                edits[feature.name] = value
        changed = bool(edits)
        edit_json = cache.params_json(edits)
    else:
        st.caption("Edit the text: the prediction and the token salience of the methods above update.")
        text = st.text_area("Text", value=data.texts[sample], key=f"inspect.whatif.{sample}.text", height=90)
        changed = text.strip() != data.texts[sample].strip()
        edit_json = cache.params_json({"text": text})
    if not changed:
        st.caption("Nothing changed yet: edit a value above to see what the model would do.")
    else:
        try:
            with st.spinner("Running the edited sample…"):
                proba, edited = cache.what_if(
                    ws.model_hash,
                    ws.data_hash,
                    edit_json,
                    sample,
                    cache.params_json({m: _what_if_params(m) for m in methods}),
                    int(state.get("inspect.seed")),
                    ws.loaded,
                    data,
                )
        except Exception as exc:  # an edit the card refuses (an unknown category, say): the problem and the fix
            show_error(exc, "The what-if")
        else:
            new_pred = int(np.argmax(proba))
            w1, w2, w3, _ = st.columns([1, 1, 1, 1.4])
            w1.metric("Predicted (edited)", names[new_pred], delta="changed" if new_pred != pred else "unchanged", delta_color="off", delta_arrow="off")
            w2.metric(f"P({names[pred]}) edited", f"{proba[pred]:.1%}", delta=f"{(proba[pred] - ws.proba[sample, pred]) * 100:+.1f} pts", delta_color="off")
            w3.metric("Confidence (edited)", f"{proba[new_pred]:.1%}")
            cols = st.columns(2)
            for k, method in enumerate(methods):
                result = edited[method]
                title = probes[method].title or method
                with cols[k % 2]:
                    if isinstance(result, Exception):
                        st.markdown(f"**{escape(title)}** (edited)")
                        show_error(result, title)
                    elif modality == "text":
                        st.markdown(f"**{escape(title)}** (edited)")
                        st.markdown(salience_markup(result, 0), unsafe_allow_html=True)
                    else:
                        row_values = {f.name: (edits.get(f.name, original[f.name])) for f in features}
                        display.plot(
                            to_plotly(attribution_view.tabular_contribution_chart(result, 0, names, row_values, title=f"{title} (edited)")),
                            key=f"inspect.whatif.attr.{method}",
                        )

# --- decision threshold ----------------------------------------------------------------
st.subheader(f"{5 if modality in ('tabular', 'text') else 4}. Decision threshold: ROC and precision-recall per group")
t1, t2, t3 = st.columns([1, 1, 2])
positive = t1.selectbox("Positive class", names, index=len(names) - 1 if len(names) == 2 else 0, key="inspect.roc.positive")
group_by = t2.selectbox("Per group of", ["(none)", *data.sensitive], key="inspect.roc.group")
threshold = t3.slider("Threshold on the positive class's probability", 0.0, 1.0, 0.5, step=0.01, key="inspect.roc.threshold")
curves = cache.threshold_curves(ws.model_hash, ws.data_hash, names.index(positive), group_by, data, ws.proba)
r1, r2 = st.columns(2)
with r1:
    display.plot(to_plotly(performance_view.roc_chart(curves, threshold, positive)), key="inspect.roc")
with r2:
    display.plot(to_plotly(performance_view.precision_recall_chart(curves, threshold, positive)), key="inspect.pr")
rates = pd.DataFrame(
    [{"group": c.group, "rows": c.n, "positives": c.n_positive, "AUC": c.auc} | {k.replace("_", " "): v for k, v in c.at(threshold).items()} for c in curves]
)
display.show_table(rates, key="inspect.roc.table", height=display.table_height(len(rates)))
st.caption(
    f"At threshold {threshold:.2f} a row is predicted '{positive}' when its probability is at least the threshold"
    + (" (one class against the rest)." if len(names) > 2 else ".")
    + " Groups under 20 rows are left out."
)
