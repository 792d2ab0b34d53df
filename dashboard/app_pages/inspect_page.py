"""Inspect: pick a sample, see the prediction and several attribution methods side by side."""

from __future__ import annotations

import time

import streamlit as st

from audits.probes import registered_probes
from audits.render import tables
from audits.render.plotly_backend import to_plotly
from audits.render.views import attribution as attribution_view
from audits.render.views import samples as samples_view
from dashboard import auth, cache, display, probe_catalog, samples, state, workspace
from dashboard.feedback import show_error

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
def _step(delta: int, matching: list[int]) -> None:
    current = state.get("inspect.sample")
    pos = matching.index(current) if current in matching else 0
    state.put("inspect.sample", matching[(pos + delta) % len(matching)])


st.subheader("1. Choose a sample")
f1, f2, f3, f4 = st.columns([1.2, 1.1, 1.4, 1.3])
f1.multiselect("True class", names, placeholder="any class", **state.bind("inspect.classes", options=names, multi=True))
f2.selectbox(
    "Group", samples.group_options(ws), help="Sensitive attribute value of the sample.", **state.bind("inspect.group", options=samples.group_options(ws))
)
f3.radio("Prediction", ["all", "correct", "wrong"], horizontal=True, **state.bind("inspect.correct", options=["all", "correct", "wrong"]))
f4.slider("Confidence (probability of the predicted class)", 0.0, 1.0, step=0.01, **state.bind("inspect.confidence"))
matching = [
    int(i)
    for i in samples.matching_samples(
        ws, state.get("inspect.classes"), state.get("inspect.group"), state.get("inspect.correct"), tuple(state.get("inspect.confidence"))
    )
]
if not matching:
    st.warning("No sample matches these filters. Widen the confidence range or clear a filter.", icon=":material/filter_alt_off:")
    st.stop()

shown = matching[:500]
if state.get("inspect.sample") not in shown:
    state.put("inspect.sample", shown[0])
s1, s2, s3, s4 = st.columns([4, 1, 1, 2], vertical_alignment="bottom")
s1.selectbox("Sample", shown, format_func=lambda i: samples.sample_label(ws, i), **state.bind("inspect.sample", options=shown))
s2.button("Previous", on_click=_step, args=(-1, shown), icon=":material/chevron_left:", width="stretch")
s3.button("Next", on_click=_step, args=(1, shown), icon=":material/chevron_right:", width="stretch")
s4.caption(f"{len(matching):,} of {len(data):,} samples match" + (" (first 500 listed)" if len(matching) > 500 else ""))
sample = int(state.get("inspect.sample"))

if st.toggle(
    f"Browse the matching samples (first {min(len(matching), 24)})",
    help="Thumbnails (images) or rows (tables) of the samples that pass the filters.",
    **state.bind("inspect.browse"),
):
    browse = matching[:24]
    if modality == "image":
        captions = [f"#{i}: {names[int(data.y[i])]}→{names[int(ws.predictions[i])]}" for i in browse]
        display.plot(
            to_plotly(samples_view.sample_gallery_chart(data.x[browse], captions, samples.value_range(ws), title="Matching samples: #index: true → predicted")),
            key="inspect.gallery",
        )
    else:
        table = data.raw.iloc[browse].copy() if data.raw is not None else data.attributes.iloc[browse].copy()
        table.insert(0, "confidence", ws.proba[browse].max(axis=1).round(3))
        table.insert(0, "predicted", [names[int(ws.predictions[i])] for i in browse])
        table.insert(0, "true", [names[int(data.y[i])] for i in browse])
        table.insert(0, "row", browse)
        display.show_table(table, key="inspect.browse_table")


# --- the prediction --------------------------------------------------------------------
st.subheader("2. Prediction")
label, pred = int(data.y[sample]), int(ws.predictions[sample])
p1, p2 = st.columns([1, 1.4])
with p1:
    m1, m2, m3 = st.columns(3)
    m1.metric("True class", names[label])
    m2.metric("Predicted", names[pred], delta="correct" if pred == label else "wrong", delta_color="normal" if pred == label else "inverse", delta_arrow="off")
    m3.metric("Confidence", f"{ws.proba[sample, pred]:.1%}")
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

if not methods:
    st.info("Choose at least one method above.")
    st.stop()


def _params(method: str) -> dict:
    params = {p: state.get(f"budget.{method}.{p}") for p in probe_catalog.budget_params(probes[method])}
    return {k: v for k, v in params.items() if v is not None} | {"target": samples.target_param(ws)}


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
            ws.model_hash, ws.data_hash, cache.params_json({m: _params(m) for m in methods}), sample, int(state.get("inspect.seed")), ws.loaded, data, ws.context, maps
        )
    except Exception as exc:  # the maps still show without their badges
        show_error(exc, "Trust badges")
_BADGE = {"pass": "✅", "warn": "⚠️", "fail": "❌", "not_evaluated": "–"}

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
                else:
                    chart = attribution_view.text_sample_chart([result], 0, names)
                display.plot(to_plotly(chart), key=f"inspect.attr.{method}")
            except Exception as exc:  # a figure that cannot be drawn must not hide the others
                show_error(exc, f"Drawing {title}")
            explained = names[int(result.targets[0])]
            st.caption(f"Explains '{explained}' ({result.output}). Cost: {tables.cost_line(result.cost)}")
            if trust is not None and method in trust.methods:
                v = trust.verdict(method)
                st.caption(f"Trust: faithful {_BADGE[v['faithfulness']]} · weight-sensitive {_BADGE[v['randomization']]} · stable {_BADGE[v['stability']]} — {trust.reason(method)}")
            quality = tables.quality_table(result, 0)
            if len(quality):
                st.caption(" · ".join(f"{r.measure}: {r.value:.3g}" for r in quality.itertuples()))
st.caption(f"Attributions ready in {elapsed:.2f} s (results are cached per model, data, method, budget and sample).")
if modality == "image":
    st.caption(
        "Each map is scaled by its own largest |value|, so methods compare in shape, not in units."
        + (" Red raises the explained class, blue lowers it." if state.get("inspect.mode") == "signed" and state.get("inspect.scale") == "red-blue" else "")
    )
