"""Chart descriptions: what a figure shows, apart from how it is drawn.

A view (``audits.render.views.<family>``) turns typed results into these small frozen
descriptions (:class:`LineChart`, :class:`BarChart`, :class:`HeatmapChart`,
:class:`ImageGrid`, :class:`TokenChart`). Two backends draw them:
``audits.render.plotly_backend.to_plotly`` (interactive, for the HTML report and the
dashboard) and ``audits.render.static.to_image`` (matplotlib PNG, for the PDF and the CLI
figures), so every face shows the same data with the same titles, axis labels, legends
and units.
"""

from __future__ import annotations

import hashlib
import pickle
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

# ---------------------------------------------------------------------------- chart types


@dataclass(frozen=True)
class Series:
    """One named line or bar set. ``lo``/``hi`` are interval bounds drawn as error bars."""

    name: str
    x: Sequence
    y: Sequence[float]
    lo: Sequence[float] | None = None
    hi: Sequence[float] | None = None
    mode: Literal["lines", "markers", "lines+markers"] = "lines+markers"
    dash: bool = False
    text: Sequence[str] | None = None  # hover text / point labels
    color: int | None = None  # palette slot; None: the series' position (a group's line and its markers share one)


@dataclass(frozen=True)
class RefLine:
    """A horizontal (axis 'y') or vertical ('x') reference line with a label."""

    value: float
    label: str
    axis: Literal["x", "y"] = "y"


@dataclass(frozen=True)
class LineChart:
    """Lines (or markers) over a shared x axis, with optional reference lines."""

    title: str
    x_label: str
    y_label: str
    series: list[Series]
    ref_lines: list[RefLine] = field(default_factory=list)
    y_range: tuple[float, float] | None = None
    x_range: tuple[float, float] | None = None
    height: float = 3.0  # inches in the PDF (plotly: about 110 px per inch)


@dataclass(frozen=True)
class BarChart:
    """Bars per category, one colour per series (``x`` of each series = the categories).

    ``signed_colors`` colours single-series bars by sign (red positive, blue negative);
    ``highlight`` draws the named categories in red and the others in grey (a predicted class).
    """

    title: str
    categories: list[str]
    series: list[Series]
    value_label: str
    horizontal: bool = True
    ref_lines: list[RefLine] = field(default_factory=list)
    value_range: tuple[float, float] | None = None
    signed_colors: bool = False
    height: float | None = None
    highlight: tuple[str, ...] = ()


@dataclass(frozen=True)
class HeatmapChart:
    """A matrix of values with labelled rows and columns, optionally annotated per cell."""

    title: str
    x_label: str
    y_label: str
    x_labels: list[str]
    y_labels: list[str]
    values: np.ndarray  # (rows = y, cols = x)
    colorbar: str
    zmin: float | None = None
    zmax: float | None = None
    colorscale: Literal["sequential", "diverging"] = "sequential"
    annotations: np.ndarray | None = None  # strings per cell
    height: float = 3.6


@dataclass(frozen=True)
class ImageCell:
    """An image (H, W) grey or (H, W, 3) RGB in [0, 1], optionally with an overlay.

    ``overlay`` is scaled to [-1, 1] ('signed') or [0, 1] ('magnitude'); without an image
    it is drawn opaque.
    """

    image: np.ndarray | None
    overlay: np.ndarray | None = None
    overlay_kind: Literal["signed", "magnitude"] = "signed"
    caption: str = ""


@dataclass(frozen=True)
class ImageGrid:
    """Rows of image cells (inputs, overlays) with column and row labels."""

    title: str
    col_labels: list[str]
    row_labels: list[str]
    cells: list[list[ImageCell | None]]
    legend: str = ""  # what the colours mean
    colorbar: Literal["signed", "magnitude"] | None = None
    colorbar_label: str = ""
    # How overlays are blended over images: strength, colour map (a name both matplotlib and plotly know,
    # e.g. 'RdBu_r', 'PRGn', 'inferno', 'viridis'; None: blue-white-red / inferno) and whether near-zero
    # values fade out so the image shows through where the overlay says little.
    overlay_opacity: float = 0.6
    overlay_cmap: str | None = None
    overlay_fade: bool = False
    height: float | None = None  # inches (plotly: about 110 px per inch); None: from the number of rows


@dataclass(frozen=True)
class TokenChart:
    """Rows of tokens, each with a signed score (text attributions)."""

    title: str
    row_labels: list[str]
    tokens: list[list[str]]
    values: list[np.ndarray]  # scaled to [-1, 1] per row
    legend: str = ""


@dataclass(frozen=True)
class WaterfallChart:
    """Horizontal steps from a start value through signed contributions to a total (one explained prediction).

    ``measures[i]`` is 'absolute' (a bar from zero: the start), 'relative' (a step from the running
    sum, red up, blue down) or 'total' (a bar from zero to the running sum).
    """

    title: str
    labels: list[str]
    values: list[float]
    measures: list[Literal["absolute", "relative", "total"]]
    value_label: str
    value_range: tuple[float, float] | None = None
    height: float | None = None


Chart = LineChart | BarChart | HeatmapChart | ImageGrid | TokenChart | WaterfallChart
# The diagonal of reliability diagrams: a reference, not data.
REFERENCE = "perfect calibration"

# ---------------------------------------------------------------------------- image mosaics


def _colormap(name: str):
    import matplotlib

    return matplotlib.colormaps[name]


def _to_rgb(image: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray:
    if image is None:
        return np.ones((*shape, 3))
    image = np.clip(np.asarray(image, dtype=np.float64), 0, 1)
    return np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image[..., :3]


def _resize(rgb: np.ndarray, size: int) -> np.ndarray:
    """Nearest-neighbour resize of (h, w, 3) to (size, size * w / h, 3): pixels stay crisp blocks."""
    h, w = rgb.shape[:2]
    rows = (np.arange(size) * h // size).clip(0, h - 1)
    cols = (np.arange(max(1, round(size * w / h))) * h // size).clip(0, w - 1)
    return rgb[rows][:, cols]


def cell_rgb(cell: ImageCell, size: int, *, opacity: float = 0.6, cmap: str | None = None, fade: bool = False) -> np.ndarray:
    """One cell as RGB (size, size', 3) in [0, 1]: the image with its overlay blended in (see ``ImageGrid``'s overlay options)."""
    ref = cell.image if cell.image is not None else cell.overlay
    base = _to_rgb(cell.image, ref.shape[:2])
    if cell.overlay is not None:
        if cell.overlay_kind == "signed":
            unit = (np.clip(cell.overlay, -1, 1) + 1) / 2
            strength = np.abs(np.clip(cell.overlay, -1, 1))
        else:
            unit = strength = np.clip(cell.overlay, 0, 1)
        colors = _colormap(cmap or ("bwr" if cell.overlay_kind == "signed" else "inferno"))(unit)[..., :3]
        alpha = opacity if cell.image is not None else 1.0
        if fade and cell.image is not None:
            alpha = alpha * np.minimum(1.0, 0.15 + strength)[..., None]
        base = (1 - alpha) * base + alpha * colors
    return _resize(base, size)


def fingerprint(chart: Chart, *extra) -> bytes:
    """A digest of what ``chart`` shows (equal descriptions, equal digests), with ``extra`` drawing settings."""
    return hashlib.blake2b(pickle.dumps((chart, extra), protocol=5), digest_size=20).digest()


# Blended cell images per grid: both backends draw the same galleries (the HTML in plotly, the
# PDF and the CLI figures with matplotlib), and blending the overlays is most of their cost.
_CELLS: OrderedDict[bytes, list] = OrderedDict()
_CELLS_LOCK = threading.Lock()


def _cell_images(grid: ImageGrid, size: int) -> list[list[np.ndarray | None]]:
    key = fingerprint(grid, size)
    with _CELLS_LOCK:
        if key in _CELLS:
            _CELLS.move_to_end(key)
            return _CELLS[key]
    options = dict(opacity=grid.overlay_opacity, cmap=grid.overlay_cmap, fade=grid.overlay_fade)
    images = [[None if c is None else cell_rgb(c, size, **options) for c in row] for row in grid.cells]
    with _CELLS_LOCK:
        _CELLS[key] = images
        while len(_CELLS) > 16:
            _CELLS.popitem(last=False)
    return images


def mosaic(grid: ImageGrid, size: int = 72, gap: int = 6, row_gap: int | None = None) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """The grid as one RGB image (white gaps) and each cell's top-left corner (row, col, x0, y0).

    Drawing one image instead of one panel per cell keeps large galleries fast to render.
    """
    row_gap = gap if row_gap is None else row_gap
    rows, cols = len(grid.cells), max(len(r) for r in grid.cells)
    images = _cell_images(grid, size)
    width = next(im.shape[1] for r in images for im in r if im is not None)
    out = np.ones((rows * (size + row_gap) - row_gap, cols * (width + gap) - gap, 3))
    boxes = []
    for i, row in enumerate(grid.cells):
        for j, cell in enumerate(row):
            if cell is None:
                continue
            y0, x0 = i * (size + row_gap), j * (width + gap)
            rgb = images[i][j][:, :width]
            out[y0 : y0 + size, x0 : x0 + rgb.shape[1]] = rgb
            boxes.append((i, j, x0, y0))
    return out, boxes


# ---------------------------------------------------------------------------- helpers

_PRETTY = {
    "tpr": "TPR",
    "fpr": "FPR",
    "fnr": "FNR",
    "tnr": "TNR",
    "npv": "NPV",
    "fdr": "FDR",
    "for": "FOR",
    "ece": "ECE",
    "linf": "L-inf",
    "l2": "L2",
}


def pretty(name: str) -> str:
    """'selection_rate' -> 'selection rate', 'tpr' -> 'TPR'."""
    return _PRETTY.get(str(name), str(name).replace("_", " "))


def floats(values) -> np.ndarray:
    """Values as float64, anything not numeric as NaN."""
    try:  # numbers (and None, which becomes NaN) convert directly; pandas only for mixed values, at 50x the cost
        out = np.asarray(values, dtype=np.float64)
        if out.ndim == 1:
            return out
    except (TypeError, ValueError):
        pass
    return np.asarray(pd.to_numeric(pd.Series(list(values)), errors="coerce"), dtype=np.float64)


def grey_or_rgb(image_chw: np.ndarray) -> np.ndarray:
    """(C, H, W) in [0, 1] -> (H, W) grey or (H, W, 3)."""
    return image_chw[0] if image_chw.shape[0] == 1 else np.clip(np.moveaxis(image_chw[:3], 0, -1), 0, 1)


def scaled(map_: np.ndarray, kind: str) -> np.ndarray:
    """A map over its largest |value|: signed in [-1, 1], or its magnitude in [0, 1]."""
    scale = float(np.nanmax(np.abs(map_))) if map_.size else 0.0
    scale = scale or 1.0
    return np.abs(map_) / scale if kind == "magnitude" else map_ / scale


def class_name(class_names: list[str], i) -> str:
    """The name of class ``i`` (its number when the names do not cover it)."""
    i = int(i)
    return class_names[i] if 0 <= i < len(class_names) else str(i)


def is_empty(chart: Chart) -> bool:
    """True when a chart has nothing to draw (the section then says why instead)."""
    if isinstance(chart, LineChart):
        return not any(np.isfinite(floats(s.y)).any() for s in chart.series if s.name != REFERENCE)
    if isinstance(chart, BarChart):
        return not chart.categories or not any(np.isfinite(floats(s.y)).any() for s in chart.series)
    if isinstance(chart, HeatmapChart):
        return chart.values.size == 0
    if isinstance(chart, ImageGrid):
        return not chart.cells
    if isinstance(chart, TokenChart):
        return not chart.tokens
    if isinstance(chart, WaterfallChart):
        return not chart.labels
    return True
