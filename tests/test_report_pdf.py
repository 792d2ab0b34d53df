"""The PDF report: parses, has every section, carries the report's numbers and figures; writes are atomic."""

from __future__ import annotations

import dataclasses
import io
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from pypdf import PdfReader

from audits.cli import main
from audits.render.blocks import num
from audits.render.document import build_document
from audits.render.pdf import render_pdf
from audits.report import write_atomic
from audits.results import ProbeResult

from .report_fixtures import rendered_pdf, saved, zoo_report

REPO = Path(__file__).resolve().parents[1]
SECTIONS = [
    "Contents",
    "Summary",
    "Provenance",
    "Data",
    "Performance",
    "Explanations",
    "Robustness",
    "Fairness",
    "Findings",
    "Appendix A: Methods",
    "Appendix B: Policy",
]


def pdf_text(data: bytes) -> tuple[PdfReader, list[str]]:
    reader = PdfReader(io.BytesIO(data))
    return reader, [page.extract_text() or "" for page in reader.pages]


@pytest.mark.parametrize("name", ["digits-cnn", "adult-mlp"])
def test_pdf_parses_has_the_sections_and_the_key_numbers(name):
    report = zoo_report(name)
    reader, pages = pdf_text(rendered_pdf(name))
    text = "\n".join(pages)
    assert len(reader.pages) >= 8
    for title in SECTIONS:
        assert title in text, title
    assert report.provenance.model_name in pages[0] and report.report_id in pages[0]
    assert report.provenance.weights_sha256 in text
    assert num(report.performance.accuracy) in text and num(report.performance.ece) in text
    flat = text.replace("\n", " ")
    for f in report.findings:
        assert num(f.measured) in flat, f
    for status in {f.status.replace("_", " ") for f in report.findings}:
        assert status in flat
    # Running header (model and report id) and "page X of Y" on every page after the cover.
    for i, page in enumerate(pages[1:], start=2):
        assert report.report_id in page and f"Page {i} of {len(pages)}" in page
    assert reader.outline, "the PDF has bookmarks"


@pytest.mark.parametrize("name", ["digits-cnn", "adult-mlp"])
def test_pdf_embeds_every_figure_as_an_image(name):
    reader, _ = pdf_text(rendered_pdf(name))
    images = sum(len(page.images) for page in reader.pages)
    figures = len(build_document(zoo_report(name)).figures())
    assert figures >= 6 and images == figures


def test_sections_with_nothing_to_show_say_why_and_unknown_results_still_render():
    @dataclasses.dataclass(frozen=True, kw_only=True)
    class FutureResult(ProbeResult):  # a result type without a layout (and not registered for JSON)
        score: float
        label: str

        def headline(self) -> str:
            return f"future score {self.score:.3f}"

    base = zoo_report("adult-mlp")
    report = dataclasses.replace(base, robustness=[FutureResult(method="future_probe", score=0.4242, label="shiny")], explanations=[], findings=[], policy={})
    _, pages = pdf_text(render_pdf(report))
    text = " ".join(pages).replace("\n", " ")
    assert "future score 0.424" in text and "shiny" in text
    assert "No attribution method produced a result" in text
    assert "No policy was applied" in text


def test_an_export_killed_mid_write_leaves_no_file_at_the_final_path(tmp_path):
    source = saved("adult-mlp", tmp_path)
    target = tmp_path / "out" / "report.pdf"
    kept = tmp_path / "out" / "kept.pdf"
    kept.parent.mkdir()
    kept.write_bytes(b"the previous export")
    script = textwrap.dedent(
        f"""
        import os, signal
        from audits.cli import main
        real_fsync = os.fsync
        def die(fd):  # the process is killed after part of the file is on disk, before the rename
            os.kill(os.getpid(), signal.SIGKILL)
        os.fsync = die
        main(["report", {str(source)!r}, "--pdf", {str(target)!r}, "--html", {str(kept)!r}])
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, timeout=300)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    assert not target.exists()
    assert kept.read_bytes() == b"the previous export"


def test_atomic_write_cleans_up_after_an_interrupted_write(tmp_path, monkeypatch):
    target = tmp_path / "report.pdf"
    target.write_bytes(b"old")
    import os

    def interrupted(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_atomic(target, b"new" * 1000)
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["report.pdf"]


def test_audits_report_re_renders_from_json_and_re_evaluates_with_a_policy(tmp_path, capsys):
    source = saved("adult-mlp", tmp_path)
    strict = tmp_path / "strict.yaml"
    strict.write_text("name: strict\nchecks:\n  - {check: min_accuracy, threshold: 0.99}\n")
    out_json = tmp_path / "strict.json"
    assert main(["report", str(source), "--pdf", str(tmp_path / "x.pdf"), "--policy", str(strict), "--json", str(out_json)]) == 0
    assert "FAIL" in capsys.readouterr().out
    _, pages = pdf_text((tmp_path / "x.pdf").read_bytes())
    assert "strict" in " ".join(pages)
    from audits.report import AuditReport

    again = AuditReport.load(out_json)
    assert [f.status for f in again.findings] == ["fail"] and again.report_id == zoo_report("adult-mlp").report_id
    # Without output flags the PDF and HTML land beside the JSON.
    assert main(["report", str(source)]) == 0
    assert source.with_suffix(".pdf").stat().st_size > 10_000 and source.with_suffix(".html").is_file()
    # A bad policy is an error exit with the fix.
    assert main(["report", str(source), "--policy", str(tmp_path / "missing.yaml")]) == 2
    assert "fix:" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["digits-cnn", "adult-mlp"])
def test_a_compact_trust_table_follows_the_attribution_gallery_in_pdf_and_html(name):
    from audits.results import TrustResult

    from .report_fixtures import rendered_html

    report = zoo_report(name)
    trust = next(r for r in report.robustness if isinstance(r, TrustResult))
    _, pages = pdf_text(rendered_pdf(name))
    text = "\n".join(pages)
    caption = "How far each map above can be trusted"
    # In the Attributions section right after its gallery (or the tabular charts; the figures are images), before
    # the next section (the headings' last occurrences: the first are the contents).
    start, end = text.rindex("Attributions\n"), text.rindex("Methods and trust")
    assert start < text.index(caption) < end
    table = text[text.index(caption) : end]
    for m in trust.methods:
        assert f"{trust.score(m):.0%}" in table and trust.verdict(m)["faithfulness"] in table
    html = rendered_html(name)
    gallery = "Attributions per explained sample" if name == "digits-cnn" else "Global feature importance"
    assert html.index(gallery) < html.index(caption) < html.index("Attribution methods and the quality numbers")


def _pages(data: bytes) -> list[tuple[str, list[bytes]]]:
    """Each page's text and the pixels of its images, in order."""
    return [(page.extract_text() or "", [image.data for image in page.images]) for page in PdfReader(io.BytesIO(data)).pages]


def _draw_all_but_the_confusion_matrix(chart) -> bytes:
    """A worker that fails on one figure (module level: the pool pickles it by name)."""
    if chart.title.startswith("Confusion matrix"):
        raise RuntimeError("worker failed")
    from audits.render.static import chart_png

    return chart_png(chart)


def test_figures_drawn_by_workers_land_where_the_in_process_drawing_puts_them(tmp_path, monkeypatch):
    """The PDF's layout takes each worker's drawing when it reaches that figure; a figure a worker fails on is drawn here."""
    from audits.render import export, static

    report = zoo_report("digits-cnn")
    pdfs = {}
    for name, workers in (("here", 1), ("workers", 2), ("one failed", 2)):
        static._DRAWN.clear()  # each export draws its own figures, none reused from the one before
        if name == "one failed":
            monkeypatch.setattr(export, "_draw", _draw_all_but_the_confusion_matrix)
        export.write_outputs(report, pdf_path=tmp_path / f"{workers}-{len(pdfs)}.pdf", workers=workers)
        pdfs[name] = _pages((tmp_path / f"{workers}-{len(pdfs)}.pdf").read_bytes())
    assert sum(len(images) for _, images in pdfs["here"]) >= 20
    assert any(f.chart.title.startswith("Confusion matrix") for f in build_document(report).figures())  # the failing worker has work
    assert pdfs["workers"] == pdfs["here"]
    assert pdfs["one failed"] == pdfs["here"]


@pytest.mark.parametrize("name", ["digits-cnn", "adult-mlp"])
def test_figures_drawn_while_the_audit_runs_give_the_same_pdf_and_cover_every_figure(tmp_path, name):
    """``audits run`` draws each result's figures while later probes run (``DrawingAhead`` as the engine's
    ``on_result``); the export takes them by chart fingerprint, so the PDF equals one drawn after the audit
    (and the HTML, which a drawing worker renders while this process lays out the PDF, equals one rendered here)."""
    from audits.data import load_data
    from audits.engine import run_audit
    from audits.policy import apply_policy
    from audits.render import export, static
    from audits.spec import parse_spec
    from models.loader import load_model
    from models.registry import resolve_card

    from .report_fixtures import SPECS

    card = resolve_card(name)
    data = load_data(card)
    ahead = export.DrawingAhead(data.class_names, data.modality)
    try:
        report = apply_policy(run_audit(load_model(card, device="cpu"), data, parse_spec(SPECS[name]), on_result=ahead.add))
        ahead.finish()
        figures = build_document(report).figures()
        static._DRAWN.clear()
        export.write_outputs(report, pdf_path=tmp_path / "ahead.pdf", html_path=tmp_path / "ahead.html", workers=2, ahead=ahead)  # the HTML in a worker
        assert ahead.pool is not None and ahead.used == len(figures) >= 8  # every figure came from the drawing ahead
    finally:
        ahead.close()
    static._DRAWN.clear()
    export.write_outputs(report, pdf_path=tmp_path / "after.pdf", html_path=tmp_path / "after.html", workers=1)
    assert _pages((tmp_path / "ahead.pdf").read_bytes()) == _pages((tmp_path / "after.pdf").read_bytes())
    assert (tmp_path / "ahead.html").read_bytes() == (tmp_path / "after.html").read_bytes()


def test_an_on_result_that_raises_costs_the_audit_nothing():
    from audits.data import load_data
    from audits.engine import run_audit
    from audits.spec import parse_spec
    from models.loader import load_model
    from models.registry import resolve_card

    from .report_fixtures import SPECS

    card = resolve_card("digits-cnn")
    seen = []

    def broken(result, samples):
        seen.append(type(result).__name__)
        raise RuntimeError("drawing ahead failed")

    spec = parse_spec(SPECS["digits-cnn"])
    report = run_audit(load_model(card, device="cpu"), load_data(card), spec, on_result=broken)
    assert seen[0] == "PerformanceResult" and len(seen) == 1 + len(report.probe_results())
    assert not report.failures and len(report.probe_results()) == len(spec.probes)
