"""What each figure of a report shows, apart from how it is drawn.

Every ``*_chart`` function takes typed results and returns a small chart description
(:class:`LineChart`, :class:`BarChart`, :class:`HeatmapChart`, :class:`ImageGrid`,
:class:`TokenChart`). Two backends draw them: ``audits.render.figures`` (plotly, for the
HTML report and the dashboard) and ``audits.render.static`` (matplotlib, for the PDF), so
both show the same data with the same titles, axis labels, legends and units.
"""

from __future__ import annotations

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


@dataclass(frozen=True)
class RefLine:
    """A horizontal (axis 'y') or vertical ('x') reference line with a label."""

    value: float
    label: str
    axis: Literal["x", "y"] = "y"


@dataclass(frozen=True)
class LineChart:
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

    ``signed_colors`` colours single-series bars by sign (red positive, blue negative).
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


@dataclass(frozen=True)
class HeatmapChart:
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
    title: str
    col_labels: list[str]
    row_labels: list[str]
    cells: list[list[ImageCell | None]]
    legend: str = ""  # what the colours mean
    colorbar: Literal["signed", "magnitude"] | None = None
    colorbar_label: str = ""


@dataclass(frozen=True)
class TokenChart:
    """Rows of tokens, each with a signed score (text attributions)."""

    title: str
    row_labels: list[str]
    tokens: list[list[str]]
    values: list[np.ndarray]  # scaled to [-1, 1] per row
    legend: str = ""


Chart = LineChart | BarChart | HeatmapChart | ImageGrid | TokenChart
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


def cell_rgb(cell: ImageCell, size: int) -> np.ndarray:
    """One cell as RGB (size, size', 3) in [0, 1]: the image with its overlay blended in."""
    ref = cell.image if cell.image is not None else cell.overlay
    base = _to_rgb(cell.image, ref.shape[:2])
    if cell.overlay is not None:
        if cell.overlay_kind == "signed":
            colors = _colormap("bwr")((np.clip(cell.overlay, -1, 1) + 1) / 2)[..., :3]
        else:
            colors = _colormap("inferno")(np.clip(cell.overlay, 0, 1))[..., :3]
        alpha = 0.6 if cell.image is not None else 1.0
        base = (1 - alpha) * base + alpha * colors
    return _resize(base, size)


def mosaic(grid: ImageGrid, size: int = 72, gap: int = 6, row_gap: int | None = None) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """The grid as one RGB image (white gaps) and each cell's top-left corner (row, col, x0, y0).

    Drawing one image instead of one panel per cell keeps large galleries fast to render.
    """
    row_gap = gap if row_gap is None else row_gap
    rows, cols = len(grid.cells), max(len(r) for r in grid.cells)
    sample = next(cell_rgb(c, size) for r in grid.cells for c in r if c is not None)
    width = sample.shape[1]
    out = np.ones((rows * (size + row_gap) - row_gap, cols * (width + gap) - gap, 3))
    boxes = []
    for i, row in enumerate(grid.cells):
        for j, cell in enumerate(row):
            if cell is None:
                continue
            y0, x0 = i * (size + row_gap), j * (width + gap)
            rgb = cell_rgb(cell, size)[:, :width]
            out[y0 : y0 + size, x0 : x0 + rgb.shape[1]] = rgb
            boxes.append((i, j, x0, y0))
    return out, boxes


# ---------------------------------------------------------------------------- helpers

_PRETTY = {
    "tpr": "TPR",
    "fpr": "FPR",
    "fnr": "FNR",
    "ece": "ECE",
    "linf": "L-inf",
    "l2": "L2",
}


def pretty(name: str) -> str:
    """'selection_rate' -> 'selection rate', 'tpr' -> 'TPR'."""
    return _PRETTY.get(str(name), str(name).replace("_", " "))


def _floats(values) -> np.ndarray:
    return np.asarray(pd.to_numeric(pd.Series(list(values)), errors="coerce"), dtype=np.float64)


def _grey_or_rgb(image_chw: np.ndarray) -> np.ndarray:
    """(C, H, W) in [0, 1] -> (H, W) grey or (H, W, 3)."""
    return image_chw[0] if image_chw.shape[0] == 1 else np.clip(np.moveaxis(image_chw[:3], 0, -1), 0, 1)


def _scaled(map_: np.ndarray, kind: str) -> np.ndarray:
    scale = float(np.nanmax(np.abs(map_))) if map_.size else 0.0
    scale = scale or 1.0
    return np.abs(map_) / scale if kind == "magnitude" else map_ / scale


def _class(class_names: list[str], i) -> str:
    i = int(i)
    return class_names[i] if 0 <= i < len(class_names) else str(i)


# ---------------------------------------------------------------------------- performance


def reliability_chart(performance) -> LineChart:
    """Reliability diagram: accuracy against mean confidence per confidence bin."""
    t = performance.reliability
    t = t[t["count"] > 0]
    text = [f"{int(c)} rows" for c in t["count"]]
    return LineChart(
        title=f"Reliability (ECE {performance.ece:.3f})",
        x_label="mean confidence in bin",
        y_label="accuracy in bin",
        series=[
            Series(REFERENCE, [0.0, 1.0], [0.0, 1.0], mode="lines", dash=True),
            Series("model", list(t["confidence"]), list(t["accuracy"]), text=text),
        ],
        x_range=(0.0, 1.0),
        y_range=(0.0, 1.02),
    )


def confusion_chart(performance, class_names: list[str]) -> HeatmapChart:
    """Confusion matrix as the share of each true class (rows), with counts."""
    cm = np.asarray(performance.confusion, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = cm / cm.sum(axis=1, keepdims=True)
    notes = np.array([[f"{int(v)}" for v in row] for row in cm], dtype=object) if len(class_names) <= 12 else None
    return HeatmapChart(
        title="Confusion matrix (share of each true class; counts in cells)",
        x_label="predicted class",
        y_label="true class",
        x_labels=list(class_names),
        y_labels=list(class_names),
        values=share,
        colorbar="share of true class",
        zmin=0.0,
        zmax=1.0,
        annotations=notes,
        height=min(1.2 + 0.32 * len(class_names), 5.0),
    )


def per_class_chart(performance) -> BarChart:
    """Precision, recall and F1 per class."""
    t = performance.per_class
    cats = [str(c) for c in t["class"]]
    return BarChart(
        title="Per-class precision, recall and F1",
        categories=cats,
        series=[Series(pretty(m), cats, list(t[m])) for m in ("precision", "recall", "f1")],
        value_label="score (0-1)",
        horizontal=False,
        value_range=(0.0, 1.05),
        height=2.8,
    )


# ---------------------------------------------------------------------------- explanations


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
        base = _grey_or_rgb(samples.image(s))
        label, pred = _class(class_names, samples.labels[s]), _class(class_names, samples.predictions[s])
        row = [
            ImageCell(base, caption=f"#{idx}: label {label}, predicted {pred} ({samples.confidence[s]:.2f})")
        ]  # the prediction is explained unless a cell says otherwise
        for r in results:
            where = np.flatnonzero(np.asarray(r.sample_indices) == idx)
            if not len(where):
                row.append(None)
                continue
            j = int(where[0])
            target = _class(class_names, r.targets[j])
            caption = f"explains {target}" if int(r.targets[j]) != int(samples.predictions[s]) else ""
            row.append(ImageCell(base, _scaled(np.asarray(r.attributions[j], dtype=np.float64), kind), kind, caption=caption))
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
    target = _class(class_names or [], result.targets[row])
    return BarChart(
        title=f"{pretty(result.method)}: row #{idx}, contributions to class '{target}'",
        categories=names,
        series=[Series(pretty(result.method), names, list(attr[order]))],
        value_label=f"contribution to the {result.output} of '{target}'",
        ref_lines=[RefLine(0.0, "", axis="x")],
        signed_colors=True,
        height=0.8 + 0.24 * len(names),
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
            labels.append(f"{pretty(r.method)} #{int(r.sample_indices[j])} ({_class(class_names, r.targets[j])})")
            tokens.append(toks)
            values.append(_scaled(vals, "signed"))
    return TokenChart(
        title="Token attributions per explained text",
        row_labels=labels,
        tokens=tokens,
        values=values,
        legend="Red: the token raises the explained class's score; blue: lowers it (scaled per text).",
    )


# ---------------------------------------------------------------------------- robustness


def attack_curve_chart(results: list) -> LineChart:
    """Robust accuracy against the perturbation budget, one line per attack."""
    series = []
    clean = None
    for r in results:
        c = r.curve
        series.append(Series(f"{r.method.upper()} ({pretty(r.norm)}{', targeted' if r.targeted else ''})", list(c["epsilon"]), list(c["robust_accuracy"])))
        clean = r.clean_accuracy
    refs = [RefLine(clean, f"clean accuracy {clean:.3f}")] if clean is not None else []
    norm = pretty(results[0].norm) if results else ""
    return LineChart(
        title="Accuracy under adversarial attack",
        x_label=f"epsilon ({norm} budget, pixel units)",
        y_label="robust accuracy",
        series=series,
        ref_lines=refs,
        y_range=(0.0, 1.02),
    )


def attack_group_chart(result) -> LineChart:
    """Robust accuracy per sensitive group against epsilon (one attack)."""
    t = result.by_group
    series = [
        Series(f"{a}: {g} (n={int(rows['count'].iloc[0])})", list(rows["epsilon"]), list(rows["robust_accuracy"]))
        for (a, g), rows in t.groupby(["attribute", "group"], sort=False)
    ]
    return LineChart(
        title=f"{result.method.upper()}: robust accuracy per group",
        x_label=f"epsilon ({pretty(result.norm)} budget, pixel units)",
        y_label="robust accuracy",
        series=series,
        y_range=(0.0, 1.02),
    )


def adversarial_examples_chart(result, class_names: list[str], value_range: Sequence[float] = (0.0, 1.0)) -> ImageGrid:
    """Clean image, perturbation and adversarial image, with predictions and confidences."""
    ex = result.examples
    lo, hi = float(value_range[0]), float(value_range[1])
    cells = []
    for k in range(len(ex.rows)):
        clean = _grey_or_rgb((np.asarray(ex.clean[k], dtype=np.float64) - lo) / (hi - lo))
        adv = _grey_or_rgb((np.asarray(ex.adversarial[k], dtype=np.float64) - lo) / (hi - lo))
        pert = np.asarray(ex.perturbation[k], dtype=np.float64).sum(axis=0)
        cells.append(
            [
                ImageCell(
                    clean,
                    caption=f"label {_class(class_names, ex.labels[k])}; predicted {_class(class_names, ex.clean_predictions[k])} ({ex.clean_confidence[k]:.2f})",
                ),
                ImageCell(None, _scaled(pert, "signed"), "signed", caption=f"max |change| {np.abs(ex.perturbation[k]).max():.3f}"),
                ImageCell(adv, caption=f"predicted {_class(class_names, ex.adversarial_predictions[k])} ({ex.adversarial_confidence[k]:.2f})"),
            ]
        )
    return ImageGrid(
        title=f"{result.method.upper()} adversarial examples at epsilon {ex.epsilon:.3g}",
        col_labels=["clean", "perturbation", "adversarial"],
        row_labels=[f"#{int(r)}" for r in ex.rows],
        cells=cells,
        legend="Perturbation: red adds brightness, blue removes it (scaled to its largest change). Confidence in brackets.",
        colorbar="signed",
        colorbar_label="perturbation / max |perturbation|",
    )


def corruption_chart(result) -> LineChart:
    """Accuracy against corruption severity, one line per corruption (severity 0 = clean)."""
    t = result.table
    series = []
    for name, rows in t.groupby("corruption", sort=False):
        series.append(Series(pretty(name), [0, *rows["severity"].tolist()], [result.clean_accuracy, *rows["accuracy"].tolist()]))
    return LineChart(
        title=f"Accuracy under natural corruptions (mean over severities 1-5: {result.mean_corruption_accuracy:.3f})",
        x_label="severity (0 = clean)",
        y_label="accuracy",
        series=series,
        ref_lines=[RefLine(result.clean_accuracy, f"clean accuracy {result.clean_accuracy:.3f}")],
        y_range=(0.0, 1.02),
        height=3.3,
    )


def corruption_group_chart(result) -> LineChart:
    """Accuracy per sensitive group against severity, averaged over corruptions."""
    t = result.by_group
    series = []
    for (a, g), rows in t.groupby(["attribute", "group"], sort=False):
        mean = rows.groupby("severity")["accuracy"].mean()
        clean = float(rows["clean_accuracy"].iloc[0])
        series.append(Series(f"{a}: {g} (n={int(rows['count'].iloc[0])})", [0, *mean.index.tolist()], [clean, *mean.tolist()]))
    return LineChart(
        title="Corruption accuracy per group (mean over corruptions)",
        x_label="severity (0 = clean)",
        y_label="accuracy",
        series=series,
        y_range=(0.0, 1.02),
    )


def corruption_examples_chart(result, example: int = 0) -> ImageGrid:
    """One image under every corruption (rows) at severities 0-5 (columns)."""
    ex = result.examples
    images = np.asarray(ex.images[example], dtype=np.float64) / 255.0  # (n_corr, n_sev, C, H, W)
    cells = [[ImageCell(_grey_or_rgb(images[c, s])) for s in range(images.shape[1])] for c in range(images.shape[0])]
    return ImageGrid(
        title=f"Corruption examples (row #{int(ex.rows[example])})",
        col_labels=[("clean" if s == 0 else f"severity {s}") for s in ex.severities],
        row_labels=[pretty(c) for c in ex.corruptions],
        cells=cells,
    )


def calibration_reliability_chart(result) -> LineChart:
    """Reliability curves on clean data and under each shift strength."""
    t = result.reliability
    series = [Series(REFERENCE, [0.0, 1.0], [0.0, 1.0], mode="lines", dash=True)]
    for (cond, strength), rows in t.groupby(["condition", "strength"], sort=False):
        rows = rows[rows["count"] > 0]
        name = cond if cond.startswith("clean") else f"{pretty(cond)} {strength:g}"
        series.append(Series(name, list(rows["confidence"]), list(rows["accuracy"]), text=[f"{int(c)} rows" for c in rows["count"]]))
    return LineChart(
        title=f"Reliability under {pretty(result.shift)}",
        x_label="mean confidence in bin",
        y_label="accuracy in bin",
        series=series,
        x_range=(0.0, 1.0),
        y_range=(0.0, 1.02),
    )


def calibration_shift_chart(result) -> LineChart:
    """Accuracy, mean confidence and ECE against the shift strength."""
    c = result.conditions
    x = list(c["strength"])
    return LineChart(
        title=f"Calibration under {pretty(result.shift)}",
        x_label=f"{pretty(result.shift)} strength (0 = clean)",
        y_label="value (0-1)",
        series=[Series("accuracy", x, list(c["accuracy"])), Series("mean confidence", x, list(c["mean_confidence"])), Series("ECE", x, list(c["ece"]))],
        y_range=(0.0, 1.02),
    )


def tabular_perturbation_chart(result) -> LineChart:
    """Decision flip rate against perturbation strength (all features at once)."""
    t = result.table
    t = t[(t["feature"] == "*") & t["flip_rate"].notna()]
    series = [Series(pretty(p), list(rows["strength"]), list(rows["flip_rate"])) for p, rows in t.groupby("perturbation", sort=False)]
    return LineChart(
        title="Decision flips under perturbations of every feature",
        x_label="strength (noise: standard deviations; category flip: probability per cell)",
        y_label="share of decisions that change",
        series=series,
    )


def tabular_fragility_chart(result, *, top_k: int = 12) -> BarChart:
    """Per feature: the share of decisions a change of that feature alone flips."""
    f = result.features.head(top_k)
    names = list(f["feature"])
    return BarChart(
        title="Most fragile features (shift or swap of one feature)",
        categories=names,
        series=[Series("flip rate", names, list(f["fragility"]))],
        value_label="share of decisions that change",
        height=0.8 + 0.24 * len(names),
    )


def tabular_adversarial_chart(result, *, top_k: int = 12) -> BarChart:
    """Per free feature: the share of decisions that changing it alone (within its range) flips."""
    f = result.features.head(top_k)
    names = list(f["feature"])
    return BarChart(
        title="Decisions flippable by changing one feature within its observed range",
        categories=names,
        series=[Series("flippable", names, list(f["flip_fraction"]))],
        value_label="share of searched decisions",
        value_range=(0.0, 1.0),
        height=0.8 + 0.24 * len(names),
    )


def text_robustness_chart(result) -> LineChart:
    """Accuracy and flip rate against severity per text perturbation."""
    t = result.table
    series = []
    for p, rows in t.groupby("perturbation", sort=False):
        series.append(Series(f"{pretty(p)} accuracy", [0.0, *rows["severity"].tolist()], [result.clean_accuracy, *rows["accuracy"].tolist()]))
        series.append(Series(f"{pretty(p)} flips", [0.0, *rows["severity"].tolist()], [0.0, *rows["flip_rate"].tolist()], dash=True))
    return LineChart(
        title="Text perturbations",
        x_label="probability a word is perturbed",
        y_label="accuracy / share of decisions that change",
        series=series,
        y_range=(0.0, 1.02),
    )


# ---------------------------------------------------------------------------- fairness


def group_metric_chart(result, grouping: str, metrics: Sequence[str] | None = None) -> BarChart:
    """Per group of one grouping: a few metrics with their bootstrap intervals."""
    metrics = list(metrics or _main_metrics(result))
    t = result.table(grouping)
    t = t[t["status"] == "ok"]
    groups = [f"{g} (n={int(n)})" for g, n in zip(t["group"], t["n"], strict=True)]
    series = [Series(pretty(m), groups, list(t[m]), list(t[f"{m}_lo"]), list(t[f"{m}_hi"])) for m in metrics if m in t]
    return BarChart(
        title=f"{grouping}: metrics per group ({int(result.ci * 100)}% intervals)",
        categories=groups,
        series=series,
        value_label="rate (0-1)",
        value_range=(0.0, 1.05),
        height=0.9 + 0.22 * len(groups) * len(series) ** 0.5,
    )


def _main_metrics(result) -> list[str]:
    wanted = ("selection_rate", "tpr", "fpr", "accuracy") if result.task == "binary" else ("accuracy", "balanced_accuracy", "calibration_error")
    return [m for m in wanted if m in result.metrics]


def disparity_chart(result, groupings: Sequence[str] | None = None, metrics: Sequence[str] | None = None) -> BarChart:
    """Max - min difference between groups per metric, one colour per grouping, with intervals."""
    d = result.disparities
    groupings = list(groupings or [g for g in result.groupings if " x " not in g])
    metrics = [m for m in (metrics or result.metrics) if m in set(d["metric"])]
    cats = [pretty(m) for m in metrics]
    series = []
    for g in groupings:
        rows = d[d["grouping"] == g].set_index("metric").reindex(metrics)
        series.append(Series(g, cats, list(rows["difference"]), list(rows["difference_lo"]), list(rows["difference_hi"])))
    return BarChart(
        title=f"Disparities between groups (max - min, {int(result.ci * 100)}% intervals)",
        categories=cats,
        series=series,
        value_label="difference between best and worst group",
        height=0.9 + 0.22 * len(cats) * max(len(series), 1) ** 0.5,
    )


def four_fifths_chart(result, threshold: float = 0.8) -> BarChart:
    """Selection-rate ratio (lowest / highest group) per grouping against the four-fifths line."""
    t = result.four_fifths
    cats = list(t["grouping"])
    return BarChart(
        title=f"Four-fifths rule: selection-rate ratio ({int(result.ci * 100)}% intervals)",
        categories=cats,
        series=[Series("ratio", cats, list(t["ratio"]), list(t["lo"]), list(t["hi"]))],
        value_label="lowest / highest group selection rate",
        ref_lines=[RefLine(threshold, f"four-fifths ({threshold:g})", axis="x")],
        value_range=(0.0, 1.05),
        height=0.9 + 0.3 * len(cats),
    )


def counterfactual_chart(result) -> BarChart:
    """Counterfactual flip rate per attribute and original group, with Wilson intervals."""
    t = result.by_group
    cats = [f"{a}: {g}" for a, g in zip(t["attribute"], t["group"], strict=True)]
    return BarChart(
        title=f"Decisions that change when only the sensitive input changes ({int(result.ci * 100)}% intervals)",
        categories=cats,
        series=[Series("flip rate", cats, list(t["flip_rate"]), list(t["lo"]), list(t["hi"]))],
        value_label="share of decisions that change",
        height=0.9 + 0.24 * len(cats),
    )


def proxy_chart(result, *, top_k: int = 5) -> BarChart:
    """Normalized mutual information of the top features with each sensitive attribute."""
    mi = result.mutual_information
    mi = mi[~mi["sensitive"].astype(bool)] if "sensitive" in mi else mi
    rows = mi.sort_values(["attribute", "rank"]).groupby("attribute", sort=False).head(top_k)
    cats = [f"{a}: {f}" for a, f in zip(rows["attribute"], rows["feature"], strict=True)]
    return BarChart(
        title="Possible proxies: information each feature carries about a sensitive attribute",
        categories=cats,
        series=[Series("normalized MI", cats, list(rows["normalized_mi"]))],
        value_label="normalized mutual information (0-1)",
        ref_lines=[RefLine(result.threshold, f"proxy threshold {result.threshold:g}", axis="x")],
        height=0.9 + 0.22 * len(cats),
    )


def mitigation_chart(result, attribute: str) -> LineChart:
    """Held-out accuracy against the demographic-parity difference for each post-processing setting."""
    t = result.curve[result.curve["attribute"] == attribute]
    series = []
    for (method, constraint), rows in t.groupby(["method", "constraint"], sort=False):
        name = pretty(method) if method == "unmitigated" else f"{pretty(method)} ({pretty(constraint)})"
        text = [f"setting {s:g}" for s in rows["setting"]]
        series.append(
            Series(name, list(rows["dp_difference"]), list(rows["accuracy"]), mode="markers" if method == "unmitigated" else "lines+markers", text=text)
        )
    return LineChart(
        title=f"{attribute}: accuracy against demographic-parity difference (PREVIEW)",
        x_label="demographic-parity difference (max - min selection rate)",
        y_label="held-out accuracy",
        series=series,
    )


def attribution_disparity_chart(result) -> BarChart:
    """Divergence of each group's attribution shares from the rest, against chance."""
    s = result.summary
    s = s[s["status"] == "ok"]
    cats = [f"{pretty(m)} {a}={g}" for m, a, g in zip(s["method"], s["attribute"], s["group"], strict=True)]
    return BarChart(
        title=f"Attribution divergence per group vs chance ({int(result.ci * 100)}% intervals)",
        categories=cats,
        series=[Series("divergence", cats, list(s["divergence"]), list(s["lo"]), list(s["hi"])), Series("chance", cats, list(s["chance"]))],
        value_label="total-variation distance of attribution shares (0-1)",
        height=0.9 + 0.26 * len(cats),
    )


def identity_term_chart(result, *, top_k: int = 40) -> BarChart:
    """Mean score shift when a text is made to name each identity group (the ``top_k`` largest |shifts|)."""
    g = result.groups.dropna(subset=["mean_shift"])
    shown = g.loc[g["mean_shift"].abs().sort_values(ascending=False).index[:top_k]].sort_index()
    cut = f" ({len(shown)} largest of {len(g)})" if len(shown) < len(g) else ""
    g = shown
    cats = [f"{src}: {cat}/{grp}" for src, cat, grp in zip(g["source"], g["category"], g["group"], strict=True)]
    return BarChart(
        title=f"Score shift when only the identity term changes{cut}",
        categories=cats,
        series=[Series("mean shift", cats, list(g["mean_shift"]))],
        value_label="mean change of the score (counterfactual - original)",
        ref_lines=[RefLine(0.0, "", axis="x")],
        signed_colors=True,
        height=0.9 + 0.22 * len(cats),
    )


def is_empty(chart: Chart) -> bool:
    """True when a chart has nothing to draw (the section then says why instead)."""
    if isinstance(chart, LineChart):
        return not any(np.isfinite(_floats(s.y)).any() for s in chart.series if s.name != REFERENCE)
    if isinstance(chart, BarChart):
        return not chart.categories or not any(np.isfinite(_floats(s.y)).any() for s in chart.series)
    if isinstance(chart, HeatmapChart):
        return chart.values.size == 0
    if isinstance(chart, ImageGrid):
        return not chart.cells
    if isinstance(chart, TokenChart):
        return not chart.tokens
    return True
