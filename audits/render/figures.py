"""Interactive ``result -> figure`` functions (plotly): the report's figures for the HTML export and the dashboard.

Each public ``*_figure`` function takes typed results from an ``AuditReport`` and returns a
``plotly.graph_objects.Figure``; it computes nothing, it only draws. They draw the chart
descriptions of ``audits.render.charts`` (``to_plotly(chart)``), the same ones the PDF
draws with matplotlib, so the HTML report, the PDF and the dashboard show the same data
with the same titles, axis labels, legends and units.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from audits.render import charts as c
from audits.render.charts import REFERENCE, BarChart, Chart, HeatmapChart, ImageGrid, LineChart, TokenChart, _floats, mosaic

PX_PER_INCH = 110
_PALETTE = [
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
    "#1b9e77",
    "#d95f02",
    "#7570b3",
    "#e7298a",
]
POSITIVE, NEGATIVE = "#c0392b", "#2471a3"
# Diverging scale for signed maps (blue lowers, red raises), sequential for magnitudes.
SIGNED_SCALE = [[0.0, "#2166ac"], [0.5, "#ffffff"], [1.0, "#b2182b"]]
MAGNITUDE_SCALE = "Inferno"


def _color(i: int) -> str:
    return _PALETTE[i % len(_PALETTE)]


def _list(values) -> list:
    """JSON-friendly floats (None for NaN) so plotly draws gaps, not zeros."""
    arr = _floats(values)
    return [None if not np.isfinite(v) else float(v) for v in arr]


def _layout(fig: go.Figure, title: str, height_in: float, *, margin: dict | None = None, **kwargs) -> go.Figure:
    fig.update_layout(
        title={"text": title, "x": 0.0, "xanchor": "left", "font": {"size": 14}},
        height=int(max(height_in, 1.6) * PX_PER_INCH) + 40,
        margin=margin or {"l": 10, "r": 10, "t": 50, "b": 10},
        template="plotly_white",
        legend={"font": {"size": 11}},
        **kwargs,
    )
    return fig


def _error(s) -> dict | None:
    if s.lo is None or s.hi is None:
        return None
    y, lo, hi = _floats(s.y), _floats(s.lo), _floats(s.hi)
    plus, minus = np.clip(hi - y, 0, None), np.clip(y - lo, 0, None)
    return {"type": "data", "array": _list(plus), "arrayminus": _list(minus), "thickness": 1.2, "width": 3}


def _line(chart: LineChart) -> go.Figure:
    fig = go.Figure()
    for i, s in enumerate(chart.series):
        if s.name == REFERENCE:
            fig.add_trace(
                go.Scatter(x=_list(s.x), y=_list(s.y), mode="lines", name=s.name, line={"color": "grey", "dash": "dash", "width": 1}, hoverinfo="skip")
            )
            continue
        x = list(s.x) if not np.isfinite(_floats(s.x)).any() else _list(s.x)
        fig.add_trace(
            go.Scatter(
                x=x,
                y=_list(s.y),
                mode=s.mode,
                name=s.name,
                text=list(s.text) if s.text is not None else None,
                line={"color": _color(i), "dash": "dash" if s.dash else "solid"},
                marker={"size": 6},
                error_y=_error(s),
                hovertemplate="%{x:.4g}, %{y:.4g}" + ("<br>%{text}" if s.text is not None else "") + f"<extra>{s.name}</extra>",
            )  # fmt: skip
        )
    for r in chart.ref_lines:
        kwargs = {"line_dash": "dot", "line_color": "black", "annotation_text": r.label, "annotation_position": "bottom right"}
        (fig.add_hline if r.axis == "y" else fig.add_vline)(r.value, **kwargs)
    fig.update_xaxes(title_text=chart.x_label, range=list(chart.x_range) if chart.x_range else None)
    fig.update_yaxes(title_text=chart.y_label, range=list(chart.y_range) if chart.y_range else None)
    return _layout(fig, chart.title, chart.height)


def _bar(chart: BarChart) -> go.Figure:
    fig = go.Figure()
    for j, s in enumerate(chart.series):
        y = _list(s.y)
        colors = [POSITIVE if (v or 0) > 0 else NEGATIVE for v in y] if chart.signed_colors else _color(j)
        values, cats = (y, list(chart.categories))
        trace = dict(
            name=s.name,
            marker_color=colors,
            hovertemplate="%{y}: %{x:.4g}<extra>" + s.name + "</extra>" if chart.horizontal else "%{x}: %{y:.4g}<extra>" + s.name + "</extra>",
        )
        err = _error(s)
        if chart.horizontal:
            fig.add_trace(go.Bar(x=values, y=cats, orientation="h", error_x=err, **trace))
        else:
            fig.add_trace(go.Bar(x=cats, y=values, error_y=err, **trace))
    for r in chart.ref_lines:
        kwargs = {"line_dash": "dot", "line_color": "black", "annotation_text": r.label}
        (fig.add_vline if chart.horizontal else fig.add_hline)(r.value, **kwargs)
    rng = list(chart.value_range) if chart.value_range else None
    if chart.horizontal:
        fig.update_xaxes(title_text=chart.value_label, range=rng)
        fig.update_yaxes(autorange="reversed", automargin=True)
    else:
        fig.update_yaxes(title_text=chart.value_label, range=rng)
    height = chart.height or (0.9 + 0.26 * len(chart.categories) if chart.horizontal else 3.0)
    return _layout(fig, chart.title, height, barmode="group", showlegend=len(chart.series) > 1 and not chart.signed_colors)


def _heatmap(chart: HeatmapChart) -> go.Figure:
    z = [[None if not np.isfinite(v) else float(v) for v in row] for row in np.asarray(chart.values, dtype=np.float64)]
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=chart.x_labels,
            y=chart.y_labels,
            zmin=chart.zmin,
            zmax=chart.zmax,
            colorscale="RdBu_r" if chart.colorscale == "diverging" else "Blues",
            colorbar={"title": {"text": chart.colorbar}},
            text=chart.annotations.tolist() if chart.annotations is not None else None,
            texttemplate="%{text}" if chart.annotations is not None else None,
            hovertemplate=f"{chart.y_label} %{{y}}, {chart.x_label} %{{x}}: %{{z:.3f}}<extra></extra>",
        )  # fmt: skip
    )
    fig.update_xaxes(title_text=chart.x_label, type="category")
    fig.update_yaxes(title_text=chart.y_label, type="category", autorange="reversed")
    return _layout(fig, chart.title, chart.height)


def _png_data_uri(rgb: np.ndarray) -> str:
    """An RGB [0, 1] array as an embedded PNG (far smaller than pixel lists in the figure JSON)."""
    import base64
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray((np.clip(rgb, 0, 1) * 255).astype(np.uint8)).save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _image_grid(chart: ImageGrid) -> go.Figure:
    """All cells as one image (one trace keeps large galleries light), labels as annotations."""
    size, gap = 72, 8
    captions = any(cell is not None and cell.caption for r in chart.cells for cell in r[1:])
    row_gap = 24 if captions else gap
    image, boxes = mosaic(chart, size=size, gap=gap, row_gap=row_gap)
    fig = go.Figure(go.Image(source=_png_data_uri(image), hoverinfo="skip"))
    cols = max(len(r) for r in chart.cells)
    cell_w = (image.shape[1] + gap) / cols - gap
    notes = []
    for i, j, x0, y0 in boxes:
        cell = chart.cells[i][j]
        if i == 0 and j < len(chart.col_labels):
            notes.append(dict(x=x0 + cell_w / 2, y=-4, text=chart.col_labels[j], yanchor="bottom", font={"size": 11}))
        if j == 0:
            label = cell.caption or (chart.row_labels[i] if i < len(chart.row_labels) else "")
            notes.append(dict(x=-6, y=y0 + size / 2, text=label.replace(": ", "<br>").replace(", ", "<br>"), xanchor="right", font={"size": 10}))
        elif cell.caption:
            notes.append(dict(x=x0 + cell_w / 2, y=y0 + size + 2, text=cell.caption, yanchor="top", font={"size": 9}))
    for n in notes:
        fig.add_annotation(showarrow=False, xref="x", yref="y", **n)
    if chart.colorbar:
        signed = chart.colorbar == "signed"
        fig.add_trace(
            go.Scatter(
                x=[None],
                y=[None],
                mode="markers",
                showlegend=False,
                hoverinfo="skip",
                marker={
                    "colorscale": SIGNED_SCALE if signed else MAGNITUDE_SCALE,
                    "cmin": -1 if signed else 0,
                    "cmax": 1,
                    "color": [0],
                    "showscale": True,
                    "colorbar": {"title": {"text": chart.colorbar_label, "side": "right"}, "len": 0.6, "thickness": 12},
                },
            )  # fmt: skip
        )
    fig.update_xaxes(visible=False, range=[-0.5 - 150, image.shape[1] + 5])
    fig.update_yaxes(visible=False, range=[image.shape[0] + 30, -40], scaleanchor="x")
    rows = len(chart.cells)
    height = rows * (1.0 if captions else 0.85) + 1.1
    title = chart.title + (f"<br><sup>{chart.legend}</sup>" if chart.legend else "")
    return _layout(fig, title, height, margin={"l": 10, "r": 10, "t": 70, "b": 10})


def _tokens(chart: TokenChart) -> go.Figure:
    width = max((len(t) for t in chart.tokens), default=0)
    z = [[float(v) for v in vals] + [None] * (width - len(vals)) for vals in chart.values]
    text = [list(toks) + [""] * (width - len(toks)) for toks in chart.tokens]
    fig = go.Figure(
        go.Heatmap(
            z=z,
            text=text,
            texttemplate="%{text}",
            y=chart.row_labels,
            zmin=-1,
            zmax=1,
            colorscale=SIGNED_SCALE,
            colorbar={"title": {"text": "attribution (scaled)"}},
            hovertemplate="%{text}: %{z:.2f}<extra>%{y}</extra>",
        )  # fmt: skip
    )
    fig.update_xaxes(title_text="token position", showgrid=False)
    fig.update_yaxes(autorange="reversed", showgrid=False)
    return _layout(fig, chart.title + (f"<br><sup>{chart.legend}</sup>" if chart.legend else ""), 0.8 + 0.3 * len(chart.row_labels))


def to_plotly(chart: Chart) -> go.Figure:
    """A plotly figure of any chart description from ``audits.render.charts``."""
    if isinstance(chart, LineChart):
        return _line(chart)
    if isinstance(chart, BarChart):
        return _bar(chart)
    if isinstance(chart, HeatmapChart):
        return _heatmap(chart)
    if isinstance(chart, ImageGrid):
        return _image_grid(chart)
    if isinstance(chart, TokenChart):
        return _tokens(chart)
    raise TypeError(f"cannot draw {type(chart).__name__}")


# ---------------------------------------------------------------------------- public figures
# performance


def reliability_figure(performance) -> go.Figure:
    """Reliability diagram of a ``PerformanceResult``: accuracy against mean confidence per bin."""
    return to_plotly(c.reliability_chart(performance))


def confusion_figure(performance, class_names: list[str]) -> go.Figure:
    """Confusion matrix of a ``PerformanceResult`` as shares of each true class, with counts."""
    return to_plotly(c.confusion_chart(performance, class_names))


def per_class_figure(performance) -> go.Figure:
    """Precision, recall and F1 per class of a ``PerformanceResult``."""
    return to_plotly(c.per_class_chart(performance))


# explanations


def attribution_gallery_figure(results: list, samples, class_names: list[str], *, rows: list[int] | None = None, signed: bool = True) -> go.Figure:
    """Image ``AttributionResult`` s of several methods over the report's ``ExplainedSamples``: input, then one overlay per method."""
    return to_plotly(c.attribution_gallery_chart(results, samples, class_names, rows=rows, signed=signed))


def global_importance_figure(results: list, *, top_k: int = 12) -> go.Figure:
    """Tabular ``AttributionResult`` s: mean |attribution| per raw feature, one bar per method."""
    return to_plotly(c.global_importance_chart(results, top_k=top_k))


def tabular_sample_figure(result, row: int, samples=None, class_names: list[str] | None = None, *, top_k: int = 10) -> go.Figure:
    """One explained row of a tabular ``AttributionResult``: signed contributions with the raw values."""
    return to_plotly(c.tabular_sample_chart(result, row, samples, class_names, top_k=top_k))


def token_figure(results: list, samples, class_names: list[str], *, max_rows: int = 6) -> go.Figure:
    """Text ``AttributionResult`` s: each explained text's tokens coloured by attribution."""
    return to_plotly(c.token_chart(results, samples, class_names, max_rows=max_rows))


# robustness


def attack_curve_figure(results: list) -> go.Figure:
    """``AttackResult`` s (FGSM, PGD, ...): robust accuracy against epsilon, one line per attack."""
    return to_plotly(c.attack_curve_chart(results))


def attack_group_figure(result) -> go.Figure:
    """One ``AttackResult``: robust accuracy per sensitive group against epsilon."""
    return to_plotly(c.attack_group_chart(result))


def adversarial_examples_figure(result, class_names: list[str], value_range=(0.0, 1.0)) -> go.Figure:
    """The examples of an ``AttackResult``: clean image, perturbation, adversarial image."""
    return to_plotly(c.adversarial_examples_chart(result, class_names, value_range))


def corruption_figure(result) -> go.Figure:
    """``CorruptionResult``: accuracy against severity, one line per corruption."""
    return to_plotly(c.corruption_chart(result))


def corruption_group_figure(result) -> go.Figure:
    """``CorruptionResult``: accuracy per sensitive group against severity (mean over corruptions)."""
    return to_plotly(c.corruption_group_chart(result))


def corruption_examples_figure(result, example: int = 0) -> go.Figure:
    """``CorruptionResult`` examples: one image under every corruption and severity."""
    return to_plotly(c.corruption_examples_chart(result, example))


def calibration_reliability_figure(result) -> go.Figure:
    """``CalibrationResult``: reliability curves on clean data and under each shift strength."""
    return to_plotly(c.calibration_reliability_chart(result))


def calibration_shift_figure(result) -> go.Figure:
    """``CalibrationResult``: accuracy, confidence and ECE against the shift strength."""
    return to_plotly(c.calibration_shift_chart(result))


def tabular_perturbation_figure(result) -> go.Figure:
    """``TabularPerturbationResult``: decision flip rate against perturbation strength."""
    return to_plotly(c.tabular_perturbation_chart(result))


def tabular_fragility_figure(result) -> go.Figure:
    """``TabularPerturbationResult``: per-feature fragility (flip rate of one-feature changes)."""
    return to_plotly(c.tabular_fragility_chart(result))


def tabular_adversarial_figure(result) -> go.Figure:
    """``TabularAdversarialResult``: share of decisions one feature can flip, per feature."""
    return to_plotly(c.tabular_adversarial_chart(result))


def text_robustness_figure(result) -> go.Figure:
    """``TextRobustnessResult``: accuracy and flip rate against perturbation severity."""
    return to_plotly(c.text_robustness_chart(result))


# fairness


def group_metric_figure(result, grouping: str, metrics: list[str] | None = None) -> go.Figure:
    """``GroupMetricsResult``: metrics per group of one grouping with bootstrap intervals."""
    return to_plotly(c.group_metric_chart(result, grouping, metrics))


def disparity_figure(result, groupings: list[str] | None = None, metrics: list[str] | None = None) -> go.Figure:
    """``GroupMetricsResult``: max - min difference per metric and grouping with intervals."""
    return to_plotly(c.disparity_chart(result, groupings, metrics))


def four_fifths_figure(result, threshold: float = 0.8) -> go.Figure:
    """``GroupMetricsResult`` (binary): selection-rate ratio per grouping against the 0.8 line."""
    return to_plotly(c.four_fifths_chart(result, threshold))


def counterfactual_figure(result) -> go.Figure:
    """``CounterfactualFlipResult``: flip rate per attribute and group with intervals."""
    return to_plotly(c.counterfactual_chart(result))


def proxy_figure(result) -> go.Figure:
    """``ProxyFeaturesResult``: normalized mutual information of the top features per attribute."""
    return to_plotly(c.proxy_chart(result))


def mitigation_figure(result, attribute: str) -> go.Figure:
    """``MitigationPreviewResult``: accuracy against demographic-parity difference for one attribute."""
    return to_plotly(c.mitigation_chart(result, attribute))


def attribution_disparity_figure(result) -> go.Figure:
    """``AttributionDisparityResult``: divergence of attribution shares per group vs chance."""
    return to_plotly(c.attribution_disparity_chart(result))


def identity_term_figure(result) -> go.Figure:
    """``IdentityTermResult``: mean score shift per identity group."""
    return to_plotly(c.identity_term_chart(result))
