"""Evaluation samples (the dashboard's Inspect page): input images, thumbnail galleries and one sample's class probabilities, as chart descriptions."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from audits.render.charts import BarChart, ImageCell, ImageGrid, Series, class_name, grey_or_rgb


def _unit(image: np.ndarray, value_range: Sequence[float]) -> np.ndarray:
    """A (C, H, W) pixel-space image as (H, W) grey or (H, W, 3) RGB in [0, 1]."""
    lo, hi = float(value_range[0]), float(value_range[1])
    return grey_or_rgb(np.clip((np.asarray(image, dtype=np.float64) - lo) / ((hi - lo) or 1.0), 0.0, 1.0))


def input_image_chart(image: np.ndarray, value_range: Sequence[float] = (0.0, 1.0), *, title: str = "Input") -> ImageGrid:
    """One (C, H, W) pixel-space image."""
    return ImageGrid(title=title, col_labels=[], row_labels=[], cells=[[ImageCell(_unit(image, value_range))]], height=2.2)


def sample_gallery_chart(
    images: np.ndarray, captions: Sequence[str], value_range: Sequence[float] = (0.0, 1.0), *, cols: int = 8, title: str = "Samples"
) -> ImageGrid:
    """Small multiples of images (N, C, H, W), ``cols`` per row, with a caption under each."""
    n = len(images)
    cols = max(1, min(cols, n))
    cells: list[list[ImageCell | None]] = []
    for k in range(n):
        if k % cols == 0:
            cells.append([])
        cells[-1].append(ImageCell(_unit(images[k], value_range), caption=str(captions[k])))
    if cells:
        cells[-1] += [None] * (cols - len(cells[-1]))
    return ImageGrid(title=title, col_labels=[], row_labels=[], cells=cells)


def class_probability_chart(proba: np.ndarray, class_names: list[str], *, label: int | None = None, top_k: int = 10) -> BarChart:
    """Horizontal bars of the ``top_k`` largest class probabilities, the predicted class in red; the true class is marked '(true)'."""
    proba = np.asarray(proba, dtype=np.float64)
    order = np.argsort(-proba)[:top_k]
    names = [f"{class_name(class_names, i)}{' (true)' if label is not None and int(i) == int(label) else ''}" for i in order]
    return BarChart(
        title="Class probabilities",
        categories=names,
        series=[Series("probability", names, proba[order].tolist(), text=[f"{p:.1%}" for p in proba[order]])],
        value_label="probability",
        value_range=(0.0, 1.15),
        highlight=(names[0],) if names else (),
    )
