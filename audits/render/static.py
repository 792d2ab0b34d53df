"""The static backend: chart descriptions (``audits.render.charts``) drawn with matplotlib (Agg), for the PDF and the CLI figures.

``render_static(chart)`` returns a matplotlib Figure sized for a portrait A4 page
(``PAGE_WIDTH_IN`` wide); ``chart_png(chart)`` the PNG bytes. Every figure has its title,
axis labels with units and a legend wherever more than one series is drawn.
"""

from __future__ import annotations

import io
import textwrap
import threading
from collections import OrderedDict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib import cm  # noqa: E402
from matplotlib.colors import Normalize  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from audits.render.charts import REFERENCE, BarChart, Chart, HeatmapChart, ImageGrid, LineChart, TokenChart, WaterfallChart, fingerprint, floats, mosaic  # noqa: E402

PAGE_WIDTH_IN = 6.8
POSITIVE, NEGATIVE = "#c0392b", "#2471a3"
_RC = {
    "font.size": 8,
    "axes.titlesize": 9,
    "axes.labelsize": 8,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.fontsize": 7,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
}
_PALETTE = plt.get_cmap("tab10").colors + plt.get_cmap("Dark2").colors


def _color(i: int):
    return _PALETTE[i % len(_PALETTE)]


def _wrap(label: str, width: int = 38) -> str:
    return "\n".join(textwrap.wrap(str(label), width)) or str(label)


_CHAR_IN = 0.052  # width of a 7-pt character, inches (for margins; constrained layout is too slow)


def _legend(ax, n: int) -> None:
    if n > 1:
        if n > 6:
            ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=7)
        else:
            ax.legend(loc="best", frameon=True, framealpha=0.85, fontsize=7)


def _outside_legend_in(labels: list[str], threshold: int = 6) -> float:
    """Right margin for a legend outside the axes (more than ``threshold`` entries)."""
    return 0.2 + min(max((len(x) for x in labels), default=0) * _CHAR_IN + 0.35, 2.4) if len(labels) > threshold else 0.2


def _place(fig: Figure, left: float, right: float, top: float = 0.32, bottom: float = 0.48) -> None:
    """Fixed margins in inches."""
    w, h = fig.get_size_inches()
    fig.subplots_adjust(left=left / w, right=1 - right / w, top=1 - top / h, bottom=bottom / h)


def _line(chart: LineChart) -> Figure:
    n = len(chart.series)
    fig, ax = plt.subplots(figsize=(PAGE_WIDTH_IN, chart.height))
    labels = [s.name for s in chart.series] + [r.label for r in chart.ref_lines if r.label]
    _place(fig, left=0.62, right=_outside_legend_in(labels))
    for i, s in enumerate(chart.series):
        x, y = floats(s.x), floats(s.y)
        if s.name == REFERENCE:
            ax.plot(x, y, color="grey", linestyle="--", linewidth=1, label=s.name)
            continue
        style = {"lines": "-", "markers": "none", "lines+markers": "-"}[s.mode]
        marker = None if s.mode == "lines" else "o"
        color = _color(i if s.color is None else s.color)
        ax.plot(x, y, linestyle="--" if s.dash and style != "none" else style, marker=marker, markersize=3.5, linewidth=1.4, color=color, label=s.name)
        if s.lo is not None and s.hi is not None:
            ax.fill_between(x, floats(s.lo), floats(s.hi), color=color, alpha=0.15, linewidth=0)
    for r in chart.ref_lines:
        (ax.axhline if r.axis == "y" else ax.axvline)(r.value, color="black", linestyle=":", linewidth=1, label=r.label or None)
    ax.set_title(chart.title, loc="left")
    ax.set_xlabel(chart.x_label)
    ax.set_ylabel(chart.y_label)
    if chart.y_range:
        ax.set_ylim(*chart.y_range)
    if chart.x_range:
        ax.set_xlim(*chart.x_range)
    _legend(ax, n + sum(bool(r.label) for r in chart.ref_lines))
    return fig


def _bar(chart: BarChart) -> Figure:
    cats = [_wrap(c, 40) for c in chart.categories]
    k = max(len(chart.series), 1)
    height = chart.height or (0.9 + 0.24 * len(cats) * (k**0.5 if chart.horizontal else 0) + (1.8 if not chart.horizontal else 0))
    fig, ax = plt.subplots(figsize=(PAGE_WIDTH_IN, min(max(height, 1.6), 9.0)))
    labels = [s.name for s in chart.series] + [r.label for r in chart.ref_lines if r.label]
    longest = max((len(line) for cat in cats for line in cat.split("\n")), default=0)
    right = _outside_legend_in(labels, threshold=1) if not chart.signed_colors else 0.2  # bars fill the axes: legend outside
    rotate = not chart.horizontal and (len(cats) > 12 or longest > 8)
    if chart.horizontal:
        _place(fig, left=min(0.25 + longest * _CHAR_IN, 3.0), right=right)
    else:
        _place(fig, left=0.62, right=right, bottom=0.45 + (min(longest, 30) * _CHAR_IN * 0.75 if rotate else 0.0))
    pos = np.arange(len(cats))
    width = 0.8 / k
    for j, s in enumerate(chart.series):
        y = floats(s.y)
        offset = pos - 0.4 + width * (j + 0.5)
        err = None
        if s.lo is not None and s.hi is not None:
            lo, hi = floats(s.lo), floats(s.hi)
            err = np.vstack([np.clip(y - lo, 0, None), np.clip(hi - y, 0, None)])
            err = np.where(np.isfinite(err), err, 0.0)
        colors = [POSITIVE if v > 0 else NEGATIVE for v in np.nan_to_num(y)] if chart.signed_colors else _color(j)
        if chart.highlight:
            colors = [POSITIVE if c in chart.highlight else "#7f8c8d" for c in chart.categories]
        bar = ax.barh if chart.horizontal else ax.bar
        kwargs = {"height": width} if chart.horizontal else {"width": width}
        errkw = {"xerr": err} if chart.horizontal else {"yerr": err}
        bar(
            offset,
            np.nan_to_num(y),
            color=colors,
            label=s.name,
            error_kw={"elinewidth": 0.9, "capsize": 2, "ecolor": "#333333"},
            **kwargs,
            **(errkw if err is not None else {}),
        )
    if chart.horizontal:
        ax.set_yticks(pos, cats)
        ax.invert_yaxis()
        ax.set_xlabel(chart.value_label)
        if chart.value_range:
            ax.set_xlim(*chart.value_range)
        ax.grid(axis="y", visible=False)
    else:
        ax.set_xticks(pos, cats, rotation=45 if rotate else 0, ha="right" if rotate else "center")
        ax.set_ylabel(chart.value_label)
        if chart.value_range:
            ax.set_ylim(*chart.value_range)
        ax.grid(axis="x", visible=False)
    for r in chart.ref_lines:
        (ax.axvline if chart.horizontal else ax.axhline)(r.value, color="black", linestyle=":", linewidth=1, label=r.label or None)
    ax.set_title(chart.title, loc="left")
    if not chart.signed_colors and len(labels) > 1:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=7)
    return fig


def _heatmap(chart: HeatmapChart) -> Figure:
    fig, ax = plt.subplots(figsize=(PAGE_WIDTH_IN * 0.75, chart.height))
    longest = max((len(str(y)) for y in chart.y_labels), default=1)
    _place(fig, left=0.55 + longest * _CHAR_IN, right=1.1, bottom=0.5 + min(max((len(str(x)) for x in chart.x_labels), default=1), 12) * _CHAR_IN * 0.7)
    cmap = "RdBu_r" if chart.colorscale == "diverging" else "Blues"
    im = ax.imshow(chart.values, cmap=cmap, vmin=chart.zmin, vmax=chart.zmax, aspect="auto")
    ax.set_xticks(np.arange(len(chart.x_labels)), chart.x_labels)
    ax.set_yticks(np.arange(len(chart.y_labels)), chart.y_labels)
    ax.set_xlabel(chart.x_label)
    ax.set_ylabel(chart.y_label)
    ax.grid(False)
    if chart.annotations is not None:
        hi = np.nanmax(chart.values) if np.isfinite(chart.values).any() else 1.0
        for (i, j), text in np.ndenumerate(chart.annotations):
            v = chart.values[i, j]
            ax.text(j, i, text, ha="center", va="center", fontsize=6.5, color="white" if np.isfinite(v) and v > 0.6 * hi else "black")
    fig.colorbar(im, ax=ax, label=chart.colorbar, shrink=0.8)
    ax.set_title(chart.title, loc="left")
    return fig


def _image_grid(chart: ImageGrid) -> Figure:
    """One image of all cells (fast for large galleries), labels drawn around it in pixel coordinates."""
    size = 72
    captions = any(c is not None and c.caption for r in chart.cells for c in r[1:])
    first_captions = any(r and r[0] is not None and r[0].caption for r in chart.cells)
    row_gap = 22 if captions else 8
    image, boxes = mosaic(chart, size=size, gap=8, row_gap=row_gap)
    cols, rows = max(len(r) for r in chart.cells), len(chart.cells)
    longest_label = max((len(x) for x in chart.row_labels), default=4)
    left_in = 1.25 if first_captions else min(0.25 + longest_label * 0.05, 1.4)
    cell_in = min((PAGE_WIDTH_IN - left_in - 0.1) / cols, 1.05, 6.0 / rows)
    width_in = cell_in * cols
    scale = width_in / image.shape[1]
    height_in = image.shape[0] * scale
    legend_in = 0.12 + 0.11 * len(textwrap.wrap(chart.legend, int((left_in + width_in + 0.1) / 0.052))) if chart.legend else 0.0
    top_in, bottom_in = 0.62, (0.75 if chart.colorbar else 0.1) + legend_in
    fig_w, fig_h = left_in + width_in + 0.1, top_in + height_in + bottom_in
    fig = plt.figure(figsize=(fig_w, fig_h))
    ax = fig.add_axes((left_in / fig_w, bottom_in / fig_h, width_in / fig_w, height_in / fig_h))
    ax.imshow(image, interpolation="nearest", aspect="equal")
    ax.set_axis_off()
    cell_w = next((b[2] for b in boxes if b[1] == 1), size) - 8 if cols > 1 else size
    for i, j, x0, y0 in boxes:
        if i == 0 and j < len(chart.col_labels):
            ax.text(
                x0 + cell_w / 2, -6, _wrap(chart.col_labels[j], max(6, int(cell_in / 0.058))), ha="center", va="bottom", fontsize=7 if cell_in >= 0.7 else 6
            )
        cell = chart.cells[i][j]
        if j == 0:
            label = cell.caption or (chart.row_labels[i] if i < len(chart.row_labels) else "")
            ax.text(-6, y0 + size / 2, _wrap(label, 20), ha="right", va="center", fontsize=6.5)
        elif cell.caption:
            ax.text(x0 + cell_w / 2, y0 + size + 2, _wrap(cell.caption, 20), ha="center", va="top", fontsize=5.5, color="#333333")
    for i, row in enumerate(chart.cells):
        for j, cell in enumerate(row):
            if cell is None and j > 0:
                ax.text((j + 0.5) * (cell_w + 8), i * (size + row_gap) + size / 2, "not\nexplained", ha="center", va="center", fontsize=6, color="grey")
    fig.text(0.01, 1 - 0.08 / fig_h, chart.title, ha="left", va="top", fontsize=9, fontweight="bold")
    if chart.colorbar:
        signed = chart.colorbar == "signed"
        cax = fig.add_axes((left_in / fig_w, (0.5 + legend_in) / fig_h, min(2.6, width_in) / fig_w, 0.08 / fig_h))
        mappable = cm.ScalarMappable(norm=Normalize(-1 if signed else 0, 1), cmap=chart.overlay_cmap or ("bwr" if signed else "inferno"))
        bar = fig.colorbar(mappable, cax=cax, orientation="horizontal")
        bar.set_label(chart.colorbar_label, fontsize=6.5)
        bar.ax.tick_params(labelsize=6)
    if chart.legend:
        fig.text(0.01, 0.04 / fig_h, _wrap(chart.legend, int(fig_w / 0.052)), ha="left", va="bottom", fontsize=6.5, color="#333333")
    return fig


def _tokens(chart: TokenChart) -> Figure:
    per_line = 68  # characters per text line (after the label column)
    lines: list[tuple[str, list[tuple[str, float]]]] = []
    for label, toks, vals in zip(chart.row_labels, chart.tokens, chart.values, strict=True):
        current, used = [], 0
        first = True
        for tok, v in zip(toks, vals, strict=False):
            if used + len(tok) + 1 > per_line and current:
                lines.append((label if first else "", current))
                current, used, first = [], 0, False
            current.append((tok, float(v)))
            used += len(tok) + 1
        lines.append((label if first else "", current))
    fig, ax = plt.subplots(figsize=(PAGE_WIDTH_IN, 0.6 + 0.22 * len(lines)))
    _place(fig, left=0.1, right=0.1, bottom=0.1)
    ax.axis("off")
    cmap = plt.get_cmap("bwr")
    norm = Normalize(-1, 1)
    n = max(len(lines), 1)
    for i, (label, toks) in enumerate(lines):
        y = 1 - (i + 0.5) / n
        ax.text(0.0, y, label if len(label) <= 44 else label[:43] + "...", fontsize=6, ha="left", va="center", transform=ax.transAxes)
        x = 0.36
        for tok, v in toks:
            ax.text(x, y, tok, fontsize=6.5, ha="left", va="center", transform=ax.transAxes, bbox={"facecolor": cmap(norm(v)), "edgecolor": "none", "pad": 1.0})
            x += (len(tok) + 1) * 0.0092
    ax.set_title(chart.title, loc="left")
    return fig


def _waterfall(chart: WaterfallChart) -> Figure:
    """Steps as horizontal bars from the running sum (what plotly's waterfall draws)."""
    labels = [_wrap(c, 40) for c in chart.labels]
    height = chart.height or 0.9 + 0.24 * len(labels)
    fig, ax = plt.subplots(figsize=(PAGE_WIDTH_IN, min(max(height, 1.6), 9.0)))
    _place(fig, left=min(0.25 + max((len(x) for x in chart.labels), default=0) * _CHAR_IN, 3.0), right=0.5)
    running = 0.0
    for i, (v, m) in enumerate(zip(chart.values, chart.measures, strict=True)):
        v = float(v)
        if m == "relative":
            start, width, color, text = running, v, POSITIVE if v > 0 else NEGATIVE, f"{v:+.3f}"
            running += v
        else:
            running = v if m == "absolute" else running
            start, width, color, text = 0.0, running, "#7f8c8d", f"{running:.3f}"
        ax.barh(i, width, left=start, color=color, height=0.7)
        ax.text(max(start, start + width), i, " " + text, va="center", ha="left", fontsize=6.5)
    ax.set_yticks(np.arange(len(labels)), labels)
    ax.invert_yaxis()
    ax.set_xlabel(chart.value_label)
    if chart.value_range:
        ax.set_xlim(*chart.value_range)
    ax.grid(axis="y", visible=False)
    ax.set_title(chart.title, loc="left")
    return fig


# pyplot and rcParams are process-global: figures are made one at a time (threads take turns).
_LOCK = threading.RLock()


def render_static(chart: Chart) -> Figure:
    """A matplotlib Figure of ``chart``."""
    with _LOCK, plt.rc_context(_RC):
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
    raise TypeError(f"cannot draw {type(chart).__name__}")


DPI = 135


def figure_png(fig: Figure, dpi: int = DPI) -> bytes:
    """PNG bytes of a figure (closed afterwards)."""
    buf = io.BytesIO()
    with _LOCK:
        return _save(fig, buf, dpi)


def _save(fig: Figure, buf: io.BytesIO, dpi: int) -> bytes:
    try:
        # Light compression: the PDF re-compresses the pixels anyway.
        fig.savefig(buf, format="png", dpi=dpi, pil_kwargs={"compress_level": 1})
    finally:
        plt.close(fig)
    return buf.getvalue()


def chart_png(chart: Chart, dpi: int = DPI) -> bytes:
    """PNG bytes of ``chart`` drawn by :func:`render_static` (always drawn; :func:`to_image` reuses earlier drawings)."""
    return figure_png(render_static(chart), dpi)


# Drawn images by chart content: the PDF and the CLI figures of one export show some of the
# same charts (the attribution galleries), and a figure is the slowest part of an export.
_DRAWN: OrderedDict[bytes, bytes] = OrderedDict()
_DRAWN_MAX = 64


def remember(chart: Chart, png: bytes, dpi: int = DPI) -> None:
    """Keep ``png`` as the drawing of ``chart`` (drawn elsewhere, e.g. by a worker process)."""
    with _LOCK:
        _DRAWN[fingerprint(chart, dpi)] = png
        while len(_DRAWN) > _DRAWN_MAX:
            _DRAWN.popitem(last=False)


def to_image(chart: Chart, dpi: int = DPI) -> bytes:
    """PNG bytes of ``chart``, drawn once: an equal chart drawn before in this process is reused."""
    key = fingerprint(chart, dpi)
    with _LOCK:
        png = _DRAWN.get(key)
        if png is not None:
            _DRAWN.move_to_end(key)
            return png
    png = chart_png(chart, dpi)
    remember(chart, png, dpi)
    return png
