"""Views keyed by result class: which blocks and charts show a result.

A view is a function ``(result, ctx) -> blocks`` registered for a result class with
``@view(ResultType)`` in its family module (``audits.render.views.<family>``).
:func:`view_for` walks the result's MRO, so a subclass without a view of its own is shown by
its base class's view; a result type with no view at all gets :func:`generic_view`, a table
of what it measured (``result.measurements()``), never silence. The charts of a result are
the figures of its view (:func:`charts_for`), so the dashboard, the HTML, the PDF and the
CLI figures draw the same chart descriptions.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from audits.render.blocks import Figure, KeyValues, Paragraph, RenderContext, Table, frame_table, num
from audits.render.charts import Chart, pretty

View = Callable[[Any, RenderContext], list]
_VIEWS: dict[type, View] = {}


def view(*types: type) -> Callable[[View], View]:
    """Register a function ``(result, ctx) -> blocks`` as the view of ``types`` (and of their subclasses without a view)."""

    def register(fn: View) -> View:
        for t in types:
            _VIEWS[t] = fn
        return fn

    return register


def _load_views() -> None:
    import audits.render.views  # noqa: F401  (each family module registers its views on import)


def view_for(result: object) -> View:
    """The view of ``result``'s class, found along its MRO; :func:`generic_view` when none is registered."""
    _load_views()
    for t in type(result).__mro__:
        if t in _VIEWS:
            return _VIEWS[t]
    return generic_view


def charts_for(result: object, ctx: RenderContext) -> list[Chart]:
    """The chart descriptions the view of ``result`` shows (draw them with ``to_plotly`` or ``to_image``)."""
    return [b.chart for b in view_for(result)(result, ctx) if isinstance(b, Figure)]


def generic_view(result: object, ctx: RenderContext) -> list:
    """Any result without a view: a table of its measurements, else its scalar fields and the first rows of its tables."""
    measurements = list(result.measurements()) if hasattr(result, "measurements") else []
    if measurements:
        rows = [
            [
                m.name,
                m.subject or "-",
                num(m.value, 4),
                "-" if not m.interval else f"[{num(m.interval[0], 4)}, {num(m.interval[1], 4)}]",
                pretty(m.direction),
                num(m.n),
            ]
            for m in measurements
        ]
        return [Table(["Measured", "Subject", "Value", "Interval", "Better", "n"], rows, caption="What this result measured", numeric=[2, 5])]
    return _fields(result)


def _fields(result: object) -> list:
    blocks: list = []
    scalars, frames = [], []
    skip = {"method", "params", "seed", "cost", "notes"}
    for f in dataclasses.fields(result) if dataclasses.is_dataclass(result) else []:
        if f.name in skip:
            continue
        v = getattr(result, f.name)
        if isinstance(v, pd.DataFrame):
            frames.append((f.name, v))
        elif isinstance(v, (int, float, str, bool, np.integer, np.floating)):
            scalars.append((pretty(f.name), num(v) if not isinstance(v, str) else v))
        elif isinstance(v, list) and v and all(isinstance(x, str) for x in v):
            scalars.append((pretty(f.name), ", ".join(v)))
    if scalars:
        blocks.append(KeyValues(scalars, caption="Figures"))
    for name, frame in frames:
        if frame.empty:
            continue
        cols = list(frame.columns)[:7]
        blocks += frame_table(frame, columns=cols, caption=f"{pretty(name)}" + (" (first columns)" if len(frame.columns) > 7 else ""), max_rows=15)
    if not blocks:
        blocks.append(Paragraph("This result type has no view and measures nothing in this version; its data is in report.json.", "note"))
    return blocks
