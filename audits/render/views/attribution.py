"""Attributions (image, tabular and text; attention maps): their charts and document blocks.

Plain attributions are shown together, per modality, in the report's overview
(:func:`overview_blocks`) and in the methods-and-trust table (:func:`quality_blocks`);
result types with more to show (attention maps) add their own view.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from audits.render.blocks import Paragraph, RenderContext, Table, chunks, figure
from audits.render.charts import (
    BarChart,
    Chart,
    HeatmapChart,
    ImageCell,
    ImageGrid,
    RefLine,
    Series,
    TokenChart,
    WaterfallChart,
    class_name,
    grey_or_rgb,
    pretty,
    scaled,
)
from audits.render.registry import view
from audits.render.views.trust import trust_beside_gallery
from audits.results.attribution import AttentionMapsResult, AttributionResult, TextAttentionResult

# ---------------------------------------------------------------------------- charts


def attribution_gallery_chart(results: list, samples, class_names: list[str], *, rows: Sequence[int] | None = None, signed: bool = True) -> ImageGrid:
    """Image attributions: one row per explained sample, the input then each method's overlay.

    Each map is scaled by its own max |value| so methods are comparable in shape. Samples are
    matched by their row in the audited data, so methods explaining different samples still
    line up.
    """
    results = [r for r in results if r.modality == "image" and r.attributions.ndim == 3]
    kind = "signed" if signed else "magnitude"
    wanted = list(range(len(samples.indices))) if rows is None else list(rows)
    cells: list[list[ImageCell | None]] = []
    row_labels = []
    for s in wanted:
        idx = int(samples.indices[s])
        base = grey_or_rgb(samples.image(s))
        label, pred = class_name(class_names, samples.labels[s]), class_name(class_names, samples.predictions[s])
        row = [
            ImageCell(base, caption=f"#{idx}: label {label}, predicted {pred} ({samples.confidence[s]:.2f})")
        ]  # the prediction is explained unless a cell says otherwise
        for r in results:
            where = np.flatnonzero(np.asarray(r.sample_indices) == idx)
            if not len(where):
                row.append(None)
                continue
            j = int(where[0])
            target = class_name(class_names, r.targets[j])
            caption = f"explains {target}" if int(r.targets[j]) != int(samples.predictions[s]) else ""
            row.append(ImageCell(base, scaled(np.asarray(r.attributions[j], dtype=np.float64), kind), kind, caption=caption))
        cells.append(row)
        row_labels.append(f"#{idx}")
    legend = (
        "Red: raises the explained class's score; blue: lowers it. Each map is scaled to its own largest |value|."
        if signed
        else "Brighter: larger |attribution|. Each map is scaled to its own largest value."
    )
    return ImageGrid(
        title="Attributions per explained sample (input, then one overlay per method)",
        col_labels=["input"] + [pretty(r.method) for r in results],
        row_labels=row_labels,
        cells=cells,
        legend=legend,
        colorbar=kind,
        colorbar_label="attribution / max |attribution|",
    )


def global_importance_chart(results: list, *, top_k: int = 12) -> BarChart:
    """Tabular: mean |attribution| per raw feature and method, each scaled to its largest feature."""
    results = [r for r in results if r.modality == "tabular" and r.feature_names]
    if not results:
        return BarChart(title="Global feature importance", categories=[], series=[], value_label="")
    order = np.argsort(-results[0].global_importance)[:top_k]
    names = [results[0].feature_names[i] for i in order]
    series = []
    for r in results:
        imp = np.asarray(r.global_importance, dtype=np.float64)
        lookup = dict(zip(r.feature_names, imp / (imp.max() or 1.0), strict=False))
        series.append(Series(f"{pretty(r.method)} ({r.output})", names, [float(lookup.get(n, np.nan)) for n in names]))
    return BarChart(
        title=f"Global feature importance over {len(results[0].sample_indices)} explained rows (top {len(names)})",
        categories=names,
        series=series,
        value_label="mean |attribution|, scaled to the method's largest feature",
        height=0.9 + 0.28 * len(names) * max(1, min(len(series), 3)) ** 0.5,
    )


# The colour maps the dashboard offers for overlays (names both matplotlib and plotly know):
# diverging ones for signed maps, sequential ones for magnitudes.
OVERLAY_COLORMAPS = {
    "signed": {"red-blue": "RdBu_r", "purple-green": "PRGn", "orange-purple": "PuOr_r"},
    "absolute": {"inferno": "inferno", "viridis": "viridis", "hot": "hot", "greys": "Greys"},
}


def attribution_overlay_chart(
    result,
    row: int,
    image: np.ndarray,
    value_range: Sequence[float] = (0.0, 1.0),
    *,
    opacity: float = 0.6,
    mode: str = "signed",
    colormap: str | None = None,
    title: str | None = None,
) -> ImageGrid:
    """One method's map for explained sample ``row`` laid over its (C, H, W) pixel-space input.

    ``mode`` 'signed' uses a diverging map centred on zero (by default red raises the explained
    class, blue lowers it), 'absolute' shows magnitude; the map is scaled by its own largest
    |value| so methods compare in shape, and near-zero values fade so the image shows through.
    ``colormap`` is a name both matplotlib and plotly know ('RdBu_r', 'PRGn', 'inferno', ...).
    """
    if mode not in ("signed", "absolute"):
        raise ValueError(f"mode {mode!r} is not one of 'signed', 'absolute'")
    kind = "signed" if mode == "signed" else "magnitude"
    lo, hi = float(value_range[0]), float(value_range[1])
    base = grey_or_rgb(np.clip((np.asarray(image, dtype=np.float64) - lo) / ((hi - lo) or 1.0), 0.0, 1.0))
    overlay = scaled(np.asarray(result.attributions[row], dtype=np.float64), kind)
    return ImageGrid(
        title=title or pretty(result.method),
        col_labels=[],
        row_labels=[],
        cells=[[ImageCell(base, overlay, kind)]],
        colorbar=kind,
        colorbar_label="attribution / max |attr|" if kind == "signed" else "share of max |attr|",
        overlay_opacity=float(opacity),
        overlay_cmap=colormap,
        overlay_fade=True,
        height=2.6,
    )


def tabular_sample_chart(result, row: int, samples=None, class_names: list[str] | None = None, *, top_k: int = 10) -> BarChart:
    """Signed per-feature contributions for one explained row, largest first, with the raw values."""
    attr = np.asarray(result.attributions[row], dtype=np.float64)
    order = np.argsort(-np.abs(attr))[:top_k]
    idx = int(result.sample_indices[row])
    raw = None
    if samples is not None and samples.raw is not None:
        where = np.flatnonzero(np.asarray(samples.indices) == idx)
        raw = samples.raw.iloc[int(where[0])].to_dict() if len(where) else None
    names = []
    for i in order:
        name = result.feature_names[i]
        names.append(f"{name} = {_short(raw[name])}" if raw and name in raw else name)
    target = class_name(class_names or [], result.targets[row])
    return BarChart(
        title=f"{pretty(result.method)}: row #{idx}, contributions to class '{target}'",
        categories=names,
        series=[Series(pretty(result.method), names, list(attr[order]))],
        value_label=f"contribution to the {result.output} of '{target}'",
        ref_lines=[RefLine(0.0, "", axis="x")],
        signed_colors=True,
        height=0.8 + 0.24 * len(names),
    )


def tabular_contribution_chart(
    result, row: int, class_names: list[str], raw_values: dict | None = None, *, top_k: int = 10, title: str | None = None
) -> WaterfallChart | BarChart:
    """Per-feature contributions for one explained tabular sample (``raw_values``: the row's raw values by feature, shown in the labels).

    A waterfall from the base value (the expected output over the background) through the
    ``top_k`` largest contributions (the rest summed as 'other features') to the model's
    output when the method records base values and outputs (SHAP, IG); otherwise signed bars.
    """
    attr = np.asarray(result.attributions[row], dtype=np.float64)
    order = np.argsort(-np.abs(attr))[:top_k]
    target = class_name(class_names, result.targets[row])
    labels = [f"{result.feature_names[i]} = {_short(raw_values[result.feature_names[i]])}" if raw_values and result.feature_names[i] in raw_values else result.feature_names[i] for i in order]  # fmt: skip
    unit = f"{result.output} of '{target}'"
    name = title or pretty(result.method)
    if result.base_values is None or result.outputs is None:
        return BarChart(
            title=f"{name}: largest contributions",
            categories=labels,
            series=[Series(pretty(result.method), labels, list(attr[order]))],
            value_label=f"contribution to the {unit}",
            ref_lines=[RefLine(0.0, "", axis="x")],
            signed_colors=True,
            height=0.8 + 0.27 * len(labels),
        )
    base = float(np.asarray(result.base_values).reshape(len(result.sample_indices), -1)[row][0])
    out = float(np.asarray(result.outputs).reshape(len(result.sample_indices), -1)[row][0])
    rest = [float(attr.sum() - attr[order].sum())] if len(attr) > len(order) else []
    values = [base, *map(float, attr[order]), *rest, out]
    measures = ["absolute"] + ["relative"] * (len(values) - 2) + ["total"]
    # Zoom on the path from the base value to the output (the totals' bars are cut, their labels say them).
    path = np.concatenate([[base], base + np.cumsum(values[1:-1]), [out]])
    lo, hi = float(path.min()), float(path.max())
    pad = 0.12 * max(hi - lo, 1e-6)
    return WaterfallChart(
        title=f"{name}: from base {base:.3f} to output {out:.3f}",
        labels=["base value", *labels, *(["other features"] if rest else []), f"model output ({result.output})"],
        values=values,
        measures=measures,
        value_label=unit,
        value_range=(lo - pad, hi + 2 * pad),
    )


def _short(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    text = str(value)
    return text if len(text) <= 18 else text[:16] + "..."


def token_chart(results: list, samples, class_names: list[str], *, max_rows: int = 6, max_tokens: int = 24) -> TokenChart:
    """Text attributions: for each method and explained text, its tokens coloured by attribution."""
    labels, tokens, values = [], [], []
    for r in results:
        if not r.tokens:
            continue
        for j in range(min(max_rows, len(r.tokens))):
            toks = list(r.tokens[j])[:max_tokens]
            vals = np.asarray(r.attributions[j][: len(toks)], dtype=np.float64)
            labels.append(f"{pretty(r.method)} #{int(r.sample_indices[j])} ({class_name(class_names, r.targets[j])})")
            tokens.append(toks)
            values.append(scaled(vals, "signed"))
    return TokenChart(
        title="Token attributions per explained text",
        row_labels=labels,
        tokens=tokens,
        values=values,
        legend="Red: the token raises the explained class's score; blue: lowers it (scaled per text).",
    )


_SPECIAL = {"[CLS]", "[SEP]", "[PAD]", "<s>", "</s>", "<pad>"}


def text_sample_chart(results: list, row: int, class_names: list[str], *, max_tokens: int = 60) -> TokenChart:
    """One explained text, one row of tokens per method (special tokens greyed out of the scale).

    ``row`` is the position of the text among the first method's explained samples; the
    other methods are matched by the sample's row in the audited data.
    """
    results = [r for r in results if r.modality == "text" and r.tokens]
    first = results[0]
    idx = int(first.sample_indices[row])
    labels, tokens, values = [], [], []
    for r in results:
        where = np.flatnonzero(np.asarray(r.sample_indices) == idx)
        if not len(where):
            continue
        j = int(where[0])
        toks = list(r.tokens[j])[:max_tokens]
        vals = np.asarray(r.attributions[j][: len(toks)], dtype=np.float64)
        vals = np.where([t not in _SPECIAL for t in toks], vals, 0.0)
        labels.append(pretty(r.method))
        tokens.append(toks)
        values.append(scaled(vals, "signed"))
    return TokenChart(
        title=f"Text #{idx}: explained class '{class_name(class_names, first.targets[row])}'",
        row_labels=labels,
        tokens=tokens,
        values=values,
        legend="Red: the token raises the explained class's score; blue: lowers it (scaled per method; attention rollout is unsigned).",
    )


def text_attention_charts(result: TextAttentionResult, row: int, *, max_tokens: int = 40) -> dict[str, HeatmapChart]:
    """Token x token attention of one text: ``last_layer`` (the head average) and ``rollout`` (through all layers; rows sum to 1), where stored."""
    tokens = list(result.tokens[row])[:max_tokens]
    n = len(tokens)
    panels = []
    if result.layer_attention is not None:
        panels.append(("last_layer", "last layer, head average", np.asarray(result.layer_attention[row, -1, :n, :n], dtype=np.float64)))
    if result.rollout is not None:
        panels.append(("rollout", "rollout through all layers", np.asarray(result.rollout[row, :n, :n], dtype=np.float64)))
    return {
        part: HeatmapChart(
            title=f"Attention of text #{int(result.sample_indices[row])}: {name}",
            x_label="attended token",
            y_label="attending token",
            x_labels=tokens,
            y_labels=tokens,
            values=grid,
            colorbar="attention weight",
            zmin=0.0,
            zmax=max(float(grid.max()), 1e-9) if grid.size else 1.0,
            height=min(5.0, 1.6 + 0.09 * n),
        )
        for part, name, grid in panels
    }


def _stretched(map_: np.ndarray) -> np.ndarray:
    low, high = float(map_.min()), float(map_.max())
    return (map_ - low) / ((high - low) or 1.0)


def attention_heads_chart(result: AttentionMapsResult, image: np.ndarray, row: int, class_names: list[str]) -> ImageGrid:
    """One explained image: the CLS token's attention per layer (rows) and head (columns), the head mean and the rollout.

    ``image`` is the sample as (C, H, W) in [0, 1]. Every map is stretched from its own
    minimum to its own maximum, so the grid shows where each head looks, not how strongly
    compared with other heads.
    """
    base = grey_or_rgb(np.asarray(image, dtype=np.float64))
    heads = result.pixel_maps(result.head_maps[:, row])  # (L, heads, H, W)
    means = result.pixel_maps(result.layer_maps[:, row])  # (L, H, W)
    n_layers, n_heads = heads.shape[:2]
    cells = [
        [ImageCell(base, _stretched(heads[layer, h]), "magnitude") for h in range(n_heads)] + [ImageCell(base, _stretched(means[layer]), "magnitude")]
        for layer in range(n_layers)
    ]
    cells.append([ImageCell(base, _stretched(np.asarray(result.attributions[row], dtype=np.float64)), "magnitude", caption="rollout")] + [None] * n_heads)
    return ImageGrid(
        title=f"CLS attention of #{int(result.sample_indices[row])} per layer and head (explained: {class_name(class_names, result.targets[row])})",
        col_labels=[f"head {h}" for h in range(n_heads)] + ["head mean"],
        row_labels=[f"layer {layer}" for layer in range(n_layers)] + ["rollout"],
        cells=cells,
        legend="Brighter: more attention. Each map is stretched from its own minimum to its own maximum.",
        colorbar="magnitude",
        colorbar_label="attention, stretched per map",
    )


# ---------------------------------------------------------------------------- views


@view(AttributionResult)
def attribution_view(r: AttributionResult, ctx: RenderContext) -> list:
    """Nothing of its own: plain attributions are drawn together in the overview (:func:`overview_blocks`)."""
    return []


@view(AttentionMapsResult)
def attention_maps_view(r: AttentionMapsResult, ctx: RenderContext) -> list:
    """The CLS attention per layer (mean over heads) and the rollout over the first explained images."""
    samples = ctx.report.samples
    if samples is None:
        return []
    maps = r.pixel_maps(r.layer_maps)  # (L, n, H, W)
    cells, labels = [], []
    for j in range(min(4, maps.shape[1])):
        where = np.flatnonzero(np.asarray(samples.indices) == int(r.sample_indices[j]))
        if not len(where):
            continue
        base = grey_or_rgb(samples.image(int(where[0])))
        cells.append(
            [ImageCell(base, scaled(maps[layer, j], "magnitude"), "magnitude") for layer in range(maps.shape[0])]
            + [ImageCell(base, scaled(r.attributions[j], "magnitude"), "magnitude")]
        )
        labels.append(f"#{int(r.sample_indices[j])}")
    if not cells:
        return []
    grid = ImageGrid(
        title="CLS attention per layer (mean over heads) and rollout",
        col_labels=[f"layer {i}" for i in range(maps.shape[0])] + ["rollout"],
        row_labels=labels,
        cells=cells,
        legend="Brighter: more attention. Each map is scaled to its own maximum.",
        colorbar="magnitude",
        colorbar_label="attention / max",
    )
    return figure(grid)


def overview_blocks(report, ctx: RenderContext) -> list:
    """Every method's attributions together, per modality: image galleries, tabular importance and per-row contributions, or text tokens."""
    results, samples, modality = report.explanations, report.samples, report.data_summary.modality
    blocks: list = []
    if modality == "image":
        if samples is None or samples.images is None:
            return [Paragraph("This report does not store the explained images (written by an older version), so no gallery can be drawn.", "note")]
        image_results = [r for r in results if r.modality == "image" and r.attributions.ndim == 3]
        for rows in chunks(list(range(len(samples.indices))), 8):
            blocks += figure(attribution_gallery_chart(image_results, samples, ctx.class_names, rows=rows))
            blocks += trust_beside_gallery(report, [r.method for r in image_results])
    elif modality == "tabular":
        blocks += figure(global_importance_chart(results), "Bars are scaled per method, so methods compare in ranking and shape, not in absolute size.")
        blocks += trust_beside_gallery(report, [r.method for r in results])
        top = [[pretty(r.method), r.output, ", ".join(r.top_features(5))] for r in results if r.feature_names]
        blocks.append(Table(["Method", "Output", "Top 5 features (mean |attribution|)"], top, caption="Most important features per method"))
        first = _shapley_first(results)
        for row in range(min(3, len(first.sample_indices))):
            blocks += figure(tabular_sample_chart(first, row, samples, ctx.class_names))
    else:
        blocks += figure(token_chart(results, samples, ctx.class_names), empty="No token attributions to show.")
        blocks += trust_beside_gallery(report, [r.method for r in results])
    return blocks


def _shapley_first(results: list) -> AttributionResult:
    # Per-row charts from the Shapley values when present (exact for few features).
    return next((r for r in results if r.method == "kernel_shap"), results[0])


def figure_charts(report, max_samples: int = 8) -> list[tuple[str, Chart]]:
    """The attribution figures the CLI writes next to a report, as (file stem, chart).

    Image galleries and the tabular charts are the report's own (the same descriptions as
    the PDF's, so their images are drawn once); ``max_samples`` bounds the explained
    samples drawn.
    """
    results, samples, modality = report.explanations, report.samples, report.data_summary.modality
    class_names = report.data_summary.class_names
    if not results:
        return []
    out: list[tuple[str, Chart]] = []
    if modality == "image":
        if samples is None or samples.images is None:
            return []
        image_results = [r for r in results if r.modality == "image" and r.attributions.ndim == 3]
        for rows in chunks(list(range(min(max_samples, len(samples.indices)))), 8):
            out.append((f"samples_{rows[0]:03d}", attribution_gallery_chart(image_results, samples, class_names, rows=rows)))
    elif modality == "tabular":
        out.append(("global_importance", global_importance_chart(results)))
        first = _shapley_first(results)
        for row in range(min(max_samples, len(first.sample_indices))):
            out.append((f"sample_{int(first.sample_indices[row]):05d}_{first.method}", tabular_sample_chart(first, row, samples, class_names)))
    else:
        texts = [r for r in results if r.modality == "text" and r.tokens]
        for row in range(min(max_samples, len(texts[0].sample_indices)) if texts else 0):
            out.append((f"text_{int(texts[0].sample_indices[row]):05d}", text_sample_chart(texts, row, class_names)))
        attention = next((r for r in texts if isinstance(r, TextAttentionResult) and r.rollout is not None), None)
        for row in range(min(max_samples, 2, len(attention.sample_indices)) if attention else 0):
            for part, chart in text_attention_charts(attention, row).items():
                out.append((f"attention_{int(attention.sample_indices[row]):05d}_{part}", chart))
    return out
