"""Choosing and labelling the samples of the selected model's evaluation data (Inspect, Robustness)."""

from __future__ import annotations

import numpy as np

from dashboard import state
from dashboard.workspace import Workspace


def sample_label(ws: Workspace, i: int) -> str:
    """``#12 · true 3 · predicted 3 (97%)``."""
    names = ws.data.class_names
    pred = int(ws.predictions[i])
    return f"#{i} · true {names[int(ws.data.y[i])]} · predicted {names[pred]} ({ws.proba[i, pred]:.0%})"


def value_range(ws: Workspace) -> tuple[float, float]:
    """The pixel value range of the model's images (card ``input.value_range``; 0-1 when absent)."""
    vr = getattr(ws.card.input, "value_range", (0.0, 1.0))
    return float(vr[0]), float(vr[1])


def class_index_options(ws: Workspace) -> list[str]:
    """The choices for the class to explain: the predicted one, or any class by name."""
    return ["predicted class", *ws.data.class_names]


def target_param(ws: Workspace) -> int | None:
    """The chosen class to explain as a probe's ``target`` (None: the predicted class)."""
    choice = state.get("inspect.target")
    names = list(ws.data.class_names)
    return names.index(choice) if choice in names else None


def matching_samples(ws: Workspace, classes: list[str], group: str, correct: str, confidence: tuple[float, float]) -> np.ndarray:
    """Rows passing the Inspect page's filters (true class, group, correct/wrong, confidence)."""
    data = ws.data
    conf = ws.proba.max(axis=1)
    mask = (conf >= confidence[0] - 1e-9) & (conf <= confidence[1] + 1e-9)
    if classes:
        wanted = [data.class_names.index(c) for c in classes if c in data.class_names]
        mask &= np.isin(data.y, wanted)
    if correct != "all":
        ok = ws.predictions == data.y
        mask &= ok if correct == "correct" else ~ok
    if group and group != "(any)" and " = " in group:
        attribute, value = group.split(" = ", 1)
        if attribute in data.attributes.columns:
            mask &= data.attributes[attribute].astype(str).to_numpy() == value
    return np.flatnonzero(mask)


def group_options(ws: Workspace) -> list[str]:
    """``(any)`` and ``attribute = value`` for each sensitive attribute (at most 50 values each)."""
    out = ["(any)"]
    for attribute in ws.data.sensitive:
        values = sorted(ws.data.attributes[attribute].astype(str).unique())
        out += [f"{attribute} = {v}" for v in values[:50]]
    return out


def thumbnail(ws: Workspace, i: int, size: int = 96) -> np.ndarray:
    """Image ``i`` as an RGB thumbnail (``size`` pixels, nearest-neighbour, so small images stay sharp)."""
    from audits.render.charts import ImageCell, cell_rgb
    from audits.render.views.samples import _unit

    return cell_rgb(ImageCell(_unit(ws.data.x[i], value_range(ws))), size)
