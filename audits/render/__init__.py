"""Rendering of audit reports: one view per result family, drawn by every face.

The small public API (imported lazily: plotly and matplotlib load only when used)::

    from audits.render import RenderContext, charts_for, to_image, to_plotly

    ctx = RenderContext.of(report)
    for chart in charts_for(result, ctx):  # the chart descriptions of the result's view
        fig = to_plotly(chart)  # interactive (dashboard, HTML)
        png = to_image(chart)  # static PNG (PDF, CLI figures), drawn once per process

``build_document(report)`` lays out the PDF and HTML report; ``write_outputs`` and
``write_figures`` write the files.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "RenderContext": "audits.render.blocks",
    "build_document": "audits.render.document",
    "charts_for": "audits.render.registry",
    "view_for": "audits.render.registry",
    "to_plotly": "audits.render.plotly_backend",
    "to_image": "audits.render.static",
    "write_outputs": "audits.render.export",
    "write_figures": "audits.render.export",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'audits.render' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
