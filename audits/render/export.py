"""Write a report's outputs (JSON, HTML, PDF, attribution figures) atomically, drawing the PDF's figures in parallel.

The PDF's matplotlib figures are the slowest part of an export; with ``workers > 1`` they
are drawn in forked worker processes while this process renders the HTML. Every file is
written through ``audits.report.write_atomic`` (a temporary file, then a rename), so a
killed export never leaves a partial file at a final path.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from audits.render.document import build_document

if TYPE_CHECKING:
    from audits.report import AuditReport


def _draw(chart) -> bytes:
    from audits.render.static import to_image

    return to_image(chart)


def _die_with_parent() -> None:
    """Worker initializer: on Linux, ask to be killed when the exporting process dies (a killed
    export must not leave workers behind)."""
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _pool(workers: int, n_figures: int) -> ProcessPoolExecutor | None:
    """A fork-based pool when it pays off: several figures and cores, on Linux (where workers can be tied to this process)."""
    if workers < 2 or n_figures < 4 or not sys.platform.startswith("linux") or (os.cpu_count() or 1) < 2:
        return None
    try:
        return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork"), initializer=_die_with_parent)
    except (OSError, ValueError):
        return None


class _Drawings:
    """The PDF's figures drawn by the workers, by figure block id, for ``render_pdf(pngs=...)``.

    ``get`` waits for that one figure, so the PDF's first layout pass runs while later figures
    are still being drawn; a worker's failure gives ``None`` (the figure is drawn here instead).
    """

    def __init__(self, figures: list, futures: list) -> None:
        self._by_id = {id(f): (f, fut) for f, fut in zip(figures, futures, strict=False)}
        self._got: dict[int, bytes] = {}

    def get(self, key: int, default=None):
        if key not in self._by_id:
            return default
        try:
            png = self._by_id[key][1].result()
        except Exception:  # a broken worker must not lose the export
            return default
        self._got[key] = png
        return png

    def remember_all(self) -> None:
        """Keep the workers' drawings in this process, so the CLI figures reuse them."""
        from audits.render.static import remember

        for key, png in self._got.items():
            remember(self._by_id[key][0].chart, png)


def write_outputs(
    report: AuditReport, *, json_path: str | Path | None = None, html_path: str | Path | None = None, pdf_path: str | Path | None = None, workers: int = 1
) -> list[Path]:
    """Write the requested outputs of ``report``; returns the paths written.

    ``workers`` > 1 draws the PDF figures in that many forked processes (use it from a
    single-threaded program such as the CLI; forking a threaded server is unsafe).
    """
    from audits.report import write_atomic

    written: list[Path] = []
    if json_path is not None:
        written.append(report.save(json_path))
    if html_path is None and pdf_path is None:
        return written
    document = build_document(report)
    figures = document.figures() if pdf_path is not None else []
    if figures:
        import audits.render.static  # noqa: F401  (before the fork: workers inherit matplotlib instead of each importing it)
    pool = _pool(workers, len(figures))
    with warnings.catch_warnings():  # Python 3.12+ warns about fork() in a threaded process; the workers only draw
        warnings.simplefilter("ignore", DeprecationWarning)
        futures = [pool.submit(_draw, f.chart) for f in figures] if pool is not None else []
    try:
        if html_path is not None:
            from audits.render.html import render_html

            written.append(write_atomic(Path(html_path), render_html(report, document=document).encode()))
        if pdf_path is not None:
            from audits.render.pdf import render_pdf

            drawn = _Drawings(figures, futures)
            written.append(write_atomic(Path(pdf_path), render_pdf(report, document=document, pngs=drawn)))
            drawn.remember_all()
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    return written


def write_figures(report: AuditReport, out_dir: str | Path, max_samples: int = 8) -> list[Path]:
    """Write the report's attribution figures as PNG files under ``out_dir/attributions``; returns the paths.

    The charts are the report's own (``audits.render.views.attribution.figure_charts``),
    drawn by the static backend: a chart the PDF of this process already drew is reused,
    not drawn again. ``max_samples`` bounds the explained samples drawn.
    """
    from audits.render.static import to_image
    from audits.render.views.attribution import figure_charts
    from audits.report import write_atomic

    charts = figure_charts(report, max_samples)
    if not charts:
        return []
    folder = Path(out_dir) / "attributions"
    folder.mkdir(parents=True, exist_ok=True)
    return [write_atomic(folder / f"{stem}.png", to_image(chart)) for stem, chart in charts]
