"""The interactive backend: chart descriptions (``audits.render.charts``) drawn with plotly, for the HTML report and the dashboard.

``to_plotly(chart)`` returns a ``plotly.graph_objects.Figure``; it computes nothing, it
only draws. The static backend (``audits.render.static``) draws the same descriptions for
the PDF and the CLI figures, so every face shows the same data with the same titles, axis
labels, legends and units.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import numpy as np

from audits.render.charts import REFERENCE, BarChart, Chart, HeatmapChart, ImageGrid, LineChart, RefLine, TokenChart, WaterfallChart, floats, mosaic

if TYPE_CHECKING:
    import plotly.graph_objects as go

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
POSITIVE, NEGATIVE, NEUTRAL = "#c0392b", "#2471a3", "#7f8c8d"
# Diverging scale for signed maps (blue lowers, red raises), sequential for magnitudes.
SIGNED_SCALE = [[0.0, "#2166ac"], [0.5, "#ffffff"], [1.0, "#b2182b"]]
MAGNITUDE_SCALE = "Inferno"


def _color(i: int) -> str:
    return _PALETTE[i % len(_PALETTE)]


def _list(values) -> list:
    """JSON-friendly floats (None for NaN) so plotly draws gaps, not zeros."""
    arr = floats(values)
    return [None if not np.isfinite(v) else float(v) for v in arr]


@functools.cache
def _template() -> dict:
    import plotly.io as pio

    return pio.templates["plotly_white"].to_plotly_json()


@functools.cache
def _scale(name: str) -> list:
    """A named colour scale as explicit stops (plotly.js knows only a few names; 'Inferno' and '_r' scales are Python-side)."""
    from plotly.colors import get_colorscale

    return [list(stop) for stop in get_colorscale(name)]


# Plotly never wraps a title: one longer than this many characters is broken onto lines, so it fits
# a chart in a dashboard column (a half-width column of a 1440-pixel window holds about 70 at 14 px).
TITLE_LINE_CHARS = 60


def wrap_title(title: str, width: int = TITLE_LINE_CHARS) -> str:
    """``title`` with ``<br>`` between words so that no line is longer than ``width`` characters (a subtitle after a ``<br>`` is kept)."""
    head, sep, tail = title.partition("<br>")
    lines: list[str] = []
    for word in head.split(" "):
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return "<br>".join(lines) + sep + tail


# The value axis of a horizontal chart spans only the plot area, which long category labels can
# squeeze to a third of the chart: its title is centred there and wraps past this many characters.
AXIS_LINE_CHARS = 30


def _value_axis(label: str) -> dict:
    """A horizontal chart's value axis titled ``label``, wrapped so that it stays inside the figure (the margin grows to fit)."""
    return {"title": {"text": wrap_title(label, AXIS_LINE_CHARS)}, "automargin": True}


def _figure(
    data: list[dict], title: str, height_in: float, *, margin: dict | None = None, xaxis: dict | None = None, yaxis: dict | None = None, **layout
) -> dict:
    title = wrap_title(title)
    margin = dict(margin or {"l": 10, "r": 10, "t": 50, "b": 10})
    extra = 18 * (title.count("<br>") - ("<br><sup>" in title))  # each added title line gets its room above the plot
    extra += 16 * any(a.get("yref") == "y domain" and a.get("yanchor") == "bottom" for a in layout.get("annotations", []))  # a label above the plot
    margin["t"] = margin.get("t", 50) + extra
    return {
        "data": data,
        "layout": {
            "title": {"text": title, "x": 0.0, "xanchor": "left", "font": {"size": 14}},
            "height": int(max(height_in, 1.6) * PX_PER_INCH) + 40 + extra,
            "margin": margin,
            "template": _template(),
            "legend": {"font": {"size": 11}},
            "xaxis": xaxis or {},
            "yaxis": yaxis or {},
            **layout,
        },
    }


def _ref_line(r: RefLine, axis: str, position: str) -> tuple[dict, dict | None]:
    """A dotted reference line across the plot at ``r.value`` on ``axis``, and its label (what plotly's add_hline/add_vline draw)."""
    line = {"dash": "dot", "color": "black"}
    if axis == "y":
        shape = {"type": "line", "xref": "x domain", "x0": 0, "x1": 1, "yref": "y", "y0": r.value, "y1": r.value, "line": line}
        note = {"xref": "x domain", "x": 1, "xanchor": "right", "yref": "y", "y": r.value, "yanchor": "top" if position == "bottom right" else "bottom"}
    else:
        shape = {"type": "line", "yref": "y domain", "y0": 0, "y1": 1, "xref": "x", "x0": r.value, "x1": r.value, "line": line}
        # above the plot, not inside it: inside, the label sat on the first bar of a horizontal bar chart
        note = {"yref": "y domain", "y": 1, "yanchor": "bottom", "xref": "x", "x": r.value, "xanchor": "left"}
    return shape, ({"text": r.label, "showarrow": False, **note} if r.label else None)


def _ref_lines(lines: list[RefLine], axis_of, position: str = "top right") -> dict:
    shapes, notes = [], []
    for r in lines:
        shape, note = _ref_line(r, axis_of(r), position)
        shapes.append(shape)
        notes += [note] if note else []
    return {"shapes": shapes, "annotations": notes} if shapes else {}


def _error(s) -> dict | None:
    if s.lo is None or s.hi is None:
        return None
    y, lo, hi = floats(s.y), floats(s.lo), floats(s.hi)
    plus, minus = np.clip(hi - y, 0, None), np.clip(y - lo, 0, None)
    return {"type": "data", "array": _list(plus), "arrayminus": _list(minus), "thickness": 1.2, "width": 3}


def _line(chart: LineChart) -> dict:
    data = []
    for i, s in enumerate(chart.series):
        if s.name == REFERENCE:
            data.append(
                {
                    "type": "scatter",
                    "x": _list(s.x),
                    "y": _list(s.y),
                    "mode": "lines",
                    "name": s.name,
                    "line": {"color": "grey", "dash": "dash", "width": 1},
                    "hoverinfo": "skip",
                }
            )
            continue
        x = list(s.x) if not np.isfinite(floats(s.x)).any() else _list(s.x)
        trace = {
            "type": "scatter",
            "x": x,
            "y": _list(s.y),
            "mode": s.mode,
            "name": s.name,
            "line": {"color": _color(i if s.color is None else s.color), "dash": "dash" if s.dash else "solid"},
            "marker": {"size": 6},
            "hovertemplate": "%{x:.4g}, %{y:.4g}" + ("<br>%{text}" if s.text is not None else "") + f"<extra>{s.name}</extra>",
        }
        if s.text is not None:
            trace["text"] = list(s.text)
        if (err := _error(s)) is not None:
            trace["error_y"] = err
        data.append(trace)
    xaxis = {"title": {"text": chart.x_label}} | ({"range": list(chart.x_range)} if chart.x_range else {})
    yaxis = {"title": {"text": chart.y_label}} | ({"range": list(chart.y_range)} if chart.y_range else {})
    return _figure(data, chart.title, chart.height, xaxis=xaxis, yaxis=yaxis, **_ref_lines(chart.ref_lines, lambda r: r.axis, "bottom right"))


def _bar(chart: BarChart) -> dict:
    data = []
    cats = list(chart.categories)
    for j, s in enumerate(chart.series):
        y = _list(s.y)
        colors = [POSITIVE if (v or 0) > 0 else NEGATIVE for v in y] if chart.signed_colors else _color(j)
        if chart.highlight:
            colors = [POSITIVE if c in chart.highlight else NEUTRAL for c in cats]
        trace = {"type": "bar", "name": s.name, "marker": {"color": colors}}
        if s.text is not None:  # bar labels (e.g. '99.4%')
            trace |= {"text": list(s.text), "textposition": "outside", "cliponaxis": False}
        err = _error(s)
        if chart.horizontal:
            trace |= {"x": y, "y": cats, "orientation": "h", "hovertemplate": "%{y}: %{x:.4g}<extra>" + s.name + "</extra>"}
            trace |= {"error_x": err} if err is not None else {}
        else:
            trace |= {"x": cats, "y": y, "hovertemplate": "%{x}: %{y:.4g}<extra>" + s.name + "</extra>"}
            trace |= {"error_y": err} if err is not None else {}
        data.append(trace)
    rng = {"range": list(chart.value_range)} if chart.value_range else {}
    if chart.horizontal:
        xaxis, yaxis = _value_axis(chart.value_label) | rng, {"autorange": "reversed", "automargin": True}
    else:
        xaxis, yaxis = {}, {"title": {"text": chart.value_label}, **rng}
    height = chart.height or (0.9 + 0.26 * len(chart.categories) if chart.horizontal else 3.0)
    refs = _ref_lines(chart.ref_lines, lambda r: "x" if chart.horizontal else "y")
    return _figure(data, chart.title, height, xaxis=xaxis, yaxis=yaxis, barmode="group", showlegend=len(chart.series) > 1 and not chart.signed_colors, **refs)


def _heatmap(chart: HeatmapChart) -> dict:
    z = [[None if not np.isfinite(v) else float(v) for v in row] for row in np.asarray(chart.values, dtype=np.float64)]
    trace = {
        "type": "heatmap",
        "z": z,
        "x": list(chart.x_labels),
        "y": list(chart.y_labels),
        "colorscale": _scale("RdBu_r" if chart.colorscale == "diverging" else "Blues"),
        "colorbar": {"title": {"text": chart.colorbar}},
        "hovertemplate": f"{chart.y_label} %{{y}}, {chart.x_label} %{{x}}: %{{z:.3f}}<extra></extra>",
    }
    trace |= {k: v for k, v in (("zmin", chart.zmin), ("zmax", chart.zmax)) if v is not None}
    if chart.annotations is not None:
        # Cell notes break lines with "\n" (matplotlib); plotly breaks them with <br>.
        trace |= {"text": [[str(t).replace("\n", "<br>") for t in row] for row in chart.annotations.tolist()], "texttemplate": "%{text}"}
    xaxis = {"title": {"text": chart.x_label}, "type": "category"}
    yaxis = {"title": {"text": chart.y_label}, "type": "category", "autorange": "reversed"}
    return _figure([trace], chart.title, chart.height, xaxis=xaxis, yaxis=yaxis)


def _png_data_uri(rgb: np.ndarray) -> str:
    """An RGB [0, 1] array as an embedded PNG (far smaller than pixel lists in the figure JSON)."""
    import base64
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray((np.clip(rgb, 0, 1) * 255).astype(np.uint8)).save(buf, format="PNG")  # optimize=True: 8% smaller, 4x slower
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _image_grid(chart: ImageGrid) -> dict:
    """All cells as one image (one trace keeps large galleries light), labels as annotations."""
    size, gap = 72, 8
    captions = any(cell is not None and cell.caption for r in chart.cells for cell in r[1:])
    row_gap = 24 if captions else gap
    image, boxes = mosaic(chart, size=size, gap=gap, row_gap=row_gap)
    data: list[dict] = [{"type": "image", "source": _png_data_uri(image), "hoverinfo": "skip"}]
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
    if chart.colorbar:
        signed = chart.colorbar == "signed"
        data.append(
            {
                "type": "scatter",
                "x": [None],
                "y": [None],
                "mode": "markers",
                "showlegend": False,
                "hoverinfo": "skip",
                "marker": {
                    "colorscale": _scale(chart.overlay_cmap) if chart.overlay_cmap else SIGNED_SCALE if signed else _scale(MAGNITUDE_SCALE),
                    "cmin": -1 if signed else 0,
                    "cmax": 1,
                    "color": [0],
                    "showscale": True,
                    "colorbar": {"title": {"text": chart.colorbar_label, "side": "right"}, "len": 0.6, "thickness": 12},
                },
            }
        )
    rows = len(chart.cells)
    height = chart.height or rows * (1.0 if captions else 0.85) + 1.1
    # Room at the left only for row labels (or first-column captions, drawn there).
    labelled = any(chart.row_labels) or any(r and r[0] is not None and r[0].caption for r in chart.cells)
    left = 150 if labelled else 5
    top, bottom = (40 if any(chart.col_labels) else 5), (30 if captions or labelled else 5)
    title = chart.title + (f"<br><sup>{chart.legend}</sup>" if chart.legend else "")
    return _figure(
        data,
        title,
        height,
        margin={"l": 10, "r": 10, "t": 70, "b": 10},
        xaxis={"visible": False, "range": [-0.5 - left, image.shape[1] + 5]},
        yaxis={"visible": False, "range": [image.shape[0] + bottom, -top], "scaleanchor": "x"},
        annotations=[{"showarrow": False, "xref": "x", "yref": "y", **n} for n in notes],
    )


def _tokens(chart: TokenChart) -> dict:
    width = max((len(t) for t in chart.tokens), default=0)
    z = [[float(v) for v in vals] + [None] * (width - len(vals)) for vals in chart.values]
    text = [list(toks) + [""] * (width - len(toks)) for toks in chart.tokens]
    trace = {
        "type": "heatmap",
        "z": z,
        "text": text,
        "texttemplate": "%{text}",
        "y": list(chart.row_labels),
        "zmin": -1,
        "zmax": 1,
        "colorscale": SIGNED_SCALE,
        "colorbar": {"title": {"text": "attribution (scaled)"}},
        "hovertemplate": "%{text}: %{z:.2f}<extra>%{y}</extra>",
    }
    title = chart.title + (f"<br><sup>{chart.legend}</sup>" if chart.legend else "")
    xaxis, yaxis = {"title": {"text": "token position"}, "showgrid": False}, {"autorange": "reversed", "showgrid": False}
    return _figure([trace], title, 0.8 + 0.3 * len(chart.row_labels), xaxis=xaxis, yaxis=yaxis)


def _waterfall(chart: WaterfallChart) -> dict:
    values = [float(v) for v in chart.values]
    trace = {
        "type": "waterfall",
        "orientation": "h",
        "y": list(chart.labels),
        "x": values,
        "measure": list(chart.measures),
        "increasing": {"marker": {"color": POSITIVE}},
        "decreasing": {"marker": {"color": NEGATIVE}},
        "totals": {"marker": {"color": NEUTRAL}},
        "text": [f"{v:+.3f}" if m == "relative" else f"{v:.3f}" for v, m in zip(values, chart.measures, strict=True)],
        "textposition": "outside",
        "cliponaxis": False,
        "connector": {"line": {"color": "#bbbbbb", "width": 1}},
    }
    xaxis = _value_axis(chart.value_label) | ({"range": list(chart.value_range)} if chart.value_range else {})
    height = chart.height or 0.9 + 0.27 * len(chart.labels)
    return _figure([trace], chart.title, height, margin={"l": 10, "r": 40, "t": 50, "b": 10}, xaxis=xaxis, yaxis={"autorange": "reversed", "automargin": True})


def to_plotly_dict(chart: Chart) -> dict:
    """The plotly figure of ``chart`` as a plain dict (``data`` and ``layout``), built without plotly's per-property validation.

    ``plotly.io.to_html(to_plotly_dict(chart), validate=False)`` writes it ten times faster
    than building a ``go.Figure``; a test validates the dicts of every report figure.
    """
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
    if isinstance(chart, WaterfallChart):
        return _waterfall(chart)
    raise TypeError(f"cannot draw {chart!r}: not a chart description of audits.render.charts")


def to_plotly(chart: Chart) -> go.Figure:
    """A plotly figure of any chart description from ``audits.render.charts`` (validated by plotly)."""
    import plotly.graph_objects as go

    return go.Figure(to_plotly_dict(chart))
