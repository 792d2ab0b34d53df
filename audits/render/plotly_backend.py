"""The interactive backend: chart descriptions (``audits.render.charts``) drawn with plotly, for the HTML report and the dashboard.

``to_plotly(chart)`` returns a ``plotly.graph_objects.Figure``; it computes nothing, it
only draws. The static backend (``audits.render.static``) draws the same descriptions for
the PDF and the CLI figures, so every face shows the same data with the same titles, axis
labels, legends and units.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from audits.render.charts import REFERENCE, BarChart, Chart, HeatmapChart, ImageGrid, LineChart, TokenChart, floats, mosaic

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
    arr = floats(values)
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
    y, lo, hi = floats(s.y), floats(s.lo), floats(s.hi)
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
        x = list(s.x) if not np.isfinite(floats(s.x)).any() else _list(s.x)
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
