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
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING

from audits.render.document import build_document

if TYPE_CHECKING:
    from audits.report import AuditReport, ExplainedSamples


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


def _start_drawing_ahead() -> None:
    """Initializer of a worker that draws while the audit runs: tied to the parent, a little below it in
    priority (the audit is the critical path; the drawing fills what it leaves idle, but must not starve
    on a busy machine, since the export waits for it). Matplotlib comes with the fork (``DrawingAhead``
    imports it first)."""
    _die_with_parent()
    try:
        os.nice(5)
    except OSError:
        pass


def _html(report: AuditReport, document=None) -> bytes:
    from audits.render.html import render_html

    return render_html(report, document=document).encode()


def _nothing() -> None:
    """A task that makes the pool start a worker now."""


def _pool(workers: int, n_figures: int, initializer=_die_with_parent) -> ProcessPoolExecutor | None:
    """A fork-based pool when it pays off: several figures and cores, on Linux (where workers can be tied to this process)."""
    if workers < 2 or n_figures < 4 or not sys.platform.startswith("linux") or (os.cpu_count() or 1) < 2:
        return None
    try:
        return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork"), initializer=initializer)
    except (OSError, ValueError):
        return None


@dataclass
class _ReportSoFar:
    """What views read from a report, before the audit has finished: the explained samples, the class
    names and modality, and the results so far."""

    samples: ExplainedSamples
    data_summary: SimpleNamespace
    explanations: list = field(default_factory=list)
    robustness: list = field(default_factory=list)
    fairness: list = field(default_factory=list)
    concepts: list = field(default_factory=list)

    def probe_results(self) -> list:
        return [*self.explanations, *self.robustness, *self.fairness, *self.concepts]


class DrawingAhead:
    """Draws a report's PDF figures in worker processes (at a lower priority) while the audit is still running.

    Pass :meth:`add` as the engine's ``on_result``: it builds the charts each result's view shows
    (and, once the attribution methods are done, the attribution overview) and queues them.
    :func:`write_outputs` (``ahead=``) then takes every figure whose chart has the same fingerprint
    from here. The views see a provisional report (samples, class names, results so far); a chart
    drawn from it is used only when it equals the final report's chart, so drawing ahead cannot
    change a figure: at worst a drawing is wasted. On one core, or off Linux, nothing is started.
    """

    def __init__(self, class_names: list[str], modality: str, workers: int = 2) -> None:
        self.pool = _pool(workers, n_figures=4 * workers, initializer=_start_drawing_ahead)
        self.queued: dict[bytes, Future] = {}
        self.used = 0  # figures of the export taken from here
        self._summary = SimpleNamespace(class_names=list(class_names), modality=modality)
        self._so_far: _ReportSoFar | None = None
        self._overview_due = False
        if self.pool is not None:
            import audits.render.static  # noqa: F401  (before the fork: the workers inherit matplotlib; captum imports it here anyway)

            with warnings.catch_warnings():  # Python 3.12+ warns about fork() in a threaded process; the workers only draw
                warnings.simplefilter("ignore", DeprecationWarning)
                for _ in range(workers):  # fork now, while this process is small, not in the middle of a probe
                    self.pool.submit(_nothing)

    def add(self, result, samples: ExplainedSamples) -> None:
        """Queue the charts of ``result`` (the engine's ``on_result``)."""
        if self.pool is None:
            return
        from audits.results import AttributionResult, PerformanceResult

        if self._so_far is None:
            self._so_far = _ReportSoFar(samples=samples, data_summary=self._summary)
        if isinstance(result, AttributionResult):
            self._so_far.explanations.append(result)
            self._overview_due = True
        elif not isinstance(result, PerformanceResult):
            self._queue_overview()
            self._so_far.robustness.append(result)  # which list does not matter to a single result's view
        from audits.render.blocks import RenderContext
        from audits.render.registry import charts_for

        self._queue(lambda: charts_for(result, RenderContext(report=self._so_far)))

    def finish(self) -> None:
        """The audit is over: queue what is still due (the overview when only attribution methods ran, and
        the robustness section's chart of every attack together)."""
        if self.pool is None or self._so_far is None:
            return
        self._queue_overview()
        from audits.render.views.robustness import attack_curve_chart
        from audits.results.robustness import AttackResult

        attacks = [r for r in self._so_far.robustness if isinstance(r, AttackResult)]
        if attacks:
            self._queue(lambda: [attack_curve_chart(attacks)])

    def _queue_overview(self) -> None:
        if not self._overview_due or self._so_far is None:
            return
        self._overview_due = False
        from audits.render.blocks import Figure, RenderContext
        from audits.render.views.attribution import overview_blocks

        self._queue(lambda: [b.chart for b in overview_blocks(self._so_far, RenderContext(report=self._so_far)) if isinstance(b, Figure)])

    def _queue(self, build) -> None:
        from audits.render.charts import fingerprint
        from audits.render.static import DPI

        try:
            charts = build()
        except Exception:  # a view that needs more than the provisional report: drawn at export instead
            return
        for chart in charts:
            key = fingerprint(chart, DPI)
            if key not in self.queued:
                self.queued[key] = self.pool.submit(_draw, chart)

    def take(self, chart) -> Future | None:
        """The queued drawing of ``chart``, if one was queued."""
        from audits.render.charts import fingerprint
        from audits.render.static import DPI

        future = self.queued.get(fingerprint(chart, DPI)) if self.queued else None
        if future is not None:
            self.used += 1
        return future

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None


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
    report: AuditReport,
    *,
    json_path: str | Path | None = None,
    html_path: str | Path | None = None,
    pdf_path: str | Path | None = None,
    workers: int = 1,
    ahead: DrawingAhead | None = None,
) -> list[Path]:
    """Write the requested outputs of ``report``; returns the paths written.

    ``workers`` > 1 draws the PDF figures in that many forked processes (use it from a
    single-threaded program such as the CLI; forking a threaded server is unsafe). ``ahead``:
    figures drawn while the audit ran are taken from it, and the rest are drawn in its workers.
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
    own_pool = ahead is None or ahead.pool is None
    pool = _pool(workers, len(figures)) if own_pool else ahead.pool
    with warnings.catch_warnings():  # Python 3.12+ warns about fork() in a threaded process; the workers only draw
        warnings.simplefilter("ignore", DeprecationWarning)
        futures = [(ahead and ahead.take(f.chart)) or pool.submit(_draw, f.chart) for f in figures] if pool is not None else []
    # With drawing workers already running (``ahead``), one of them renders the HTML while this process
    # lays out the PDF: they are the two largest pieces of an export left after the audit.
    html_job = pool.submit(_html, report) if not own_pool and html_path is not None and pdf_path is not None else None
    try:
        if html_path is not None and html_job is None:
            written.append(write_atomic(Path(html_path), _html(report, document)))
        if pdf_path is not None:
            from audits.render.pdf import render_pdf

            drawn = _Drawings(figures, futures)
            pdf = write_atomic(Path(pdf_path), render_pdf(report, document=document, pngs=drawn))
            drawn.remember_all()
            if html_job is not None:
                try:
                    page = html_job.result()
                except Exception:  # a broken worker must not lose the export
                    page = _html(report, document)
                written.append(write_atomic(Path(html_path), page))
            written.append(pdf)
    finally:
        if pool is not None and own_pool:
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
