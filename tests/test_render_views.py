"""Views keyed by result class, chart descriptions drawn by both backends, figures drawn once, rendering without torch."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import pytest

from audits.render import catalog, registry, static
from audits.render.blocks import Figure, KeyValues, RenderContext, Table
from audits.render.charts import fingerprint
from audits.render.document import build_document
from audits.render.export import write_figures
from audits.render.pdf import render_pdf
from audits.render.plotly_backend import to_plotly, to_plotly_dict
from audits.render.views.attribution import figure_charts
from audits.results import Measurement, ProbeResult

from .report_fixtures import saved, zoo_report

RENDER = Path(__file__).resolve().parents[1] / "audits" / "render"


def _results(report) -> list:
    return [report.performance, *report.probe_results()]


@pytest.mark.parametrize("name", ["digits-cnn", "adult-mlp"])
def test_every_result_of_a_zoo_report_has_a_view_of_its_own(name):
    for result in _results(zoo_report(name)):
        assert registry.view_for(result) is not registry.generic_view, type(result)


def test_a_subclass_without_a_view_is_shown_by_its_base_class_view():
    report = zoo_report("digits-cnn")
    attack = next(r for r in report.robustness if r.method == "fgsm")

    @dataclasses.dataclass(frozen=True, kw_only=True)
    class TunedAttack(type(attack)):
        tuning: str = "none"

    tuned = TunedAttack(**{f.name: getattr(attack, f.name) for f in dataclasses.fields(attack)})
    ctx = RenderContext.of(report)
    assert registry.view_for(tuned) is registry.view_for(attack)
    assert [c.title for c in registry.charts_for(tuned, ctx)] == [c.title for c in registry.charts_for(attack, ctx)]


def test_a_result_type_without_a_view_shows_what_it_measured():
    @dataclasses.dataclass(frozen=True, kw_only=True)
    class DriftResult(ProbeResult):
        drift: float

        def measurements(self) -> Iterator[Measurement]:
            yield Measurement(name="drift", subject="feature=age", value=self.drift, interval=[0.1, 0.3], direction="lower_is_better", n=120)

    ctx = RenderContext.of(zoo_report("adult-mlp"))
    blocks = registry.view_for(DriftResult(method="drift", drift=0.2))(DriftResult(method="drift", drift=0.2), ctx)
    (table,) = blocks
    assert isinstance(table, Table)
    assert table.rows == [["drift", "feature=age", "0.2000", "[0.1000, 0.3000]", "lower is better", "120"]]


def test_a_result_type_without_a_view_or_measurements_shows_its_fields():
    @dataclasses.dataclass(frozen=True, kw_only=True)
    class Plain(ProbeResult):
        score: float

    blocks = registry.generic_view(Plain(method="plain", score=0.5), RenderContext.of(zoo_report("adult-mlp")))
    assert blocks == [KeyValues([("score", "0.500")], caption="Figures")]


def test_no_lookup_of_a_result_type_by_name_in_the_render_package():
    for path in RENDER.rglob("*.py"):
        text = path.read_text()
        assert not re.search(r"importlib\.import_module\(\s*[\"']audits\.(explain|robustness|fairness)", text), path
        assert not re.search(r"type\([^)]*\)\.__name__\s*[!=]=", text), path
        assert "except (ModuleNotFoundError, AttributeError)" not in text, path


@pytest.mark.parametrize("name", ["digits-cnn", "adult-mlp"])
def test_charts_for_a_result_are_the_figures_of_its_section(name):
    report = zoo_report(name)
    document = build_document(report)
    ctx = RenderContext.of(report)
    for kind in ("robustness", "fairness"):
        section = next(s for s in document.sections if s.anchor == kind)
        for result, sub in zip(getattr(report, kind), section.children, strict=True):
            shown = [fingerprint(b.chart) for b in sub.blocks if isinstance(b, Figure)]
            assert [fingerprint(c) for c in registry.charts_for(result, ctx)] == shown


@pytest.mark.parametrize("name", ["digits-cnn", "adult-mlp"])
def test_plotly_dicts_of_every_report_figure_are_valid_figures(name):
    # The HTML writes these dicts unvalidated (for speed); plotly's validation must accept every one.
    for figure in build_document(zoo_report(name)).figures():
        spec = to_plotly_dict(figure.chart)
        fig = go.Figure(spec)
        assert fig.layout.title.text == spec["layout"]["title"]["text"]
        assert len(fig.data) == len(spec["data"]) >= 1
    assert isinstance(to_plotly(figure.chart), go.Figure)


def test_a_static_image_is_drawn_once_and_reused(monkeypatch):
    report = zoo_report("digits-cnn")
    drawn = []
    real = static.chart_png
    monkeypatch.setattr(static, "chart_png", lambda chart, dpi=static.DPI: drawn.append(chart.title) or real(chart, dpi))
    static._DRAWN.clear()
    render_pdf(report)
    assert len(drawn) == len(build_document(report).figures())
    again = build_document(report).figures()[0].chart  # an equal description built anew
    assert static.to_image(again).startswith(b"\x89PNG")
    assert len(drawn) == len(build_document(report).figures())


def test_cli_figures_reuse_the_pdf_drawings(tmp_path, monkeypatch):
    report = zoo_report("digits-cnn")
    static._DRAWN.clear()
    render_pdf(report)
    drawn = []
    real = static.chart_png
    monkeypatch.setattr(static, "chart_png", lambda chart, dpi=static.DPI: drawn.append(chart.title) or real(chart, dpi))
    paths = write_figures(report, tmp_path, max_samples=8)
    assert [p.name for p in paths] == ["samples_000.png"]  # the four explained samples in one gallery, as in the PDF
    assert paths[0].read_bytes().startswith(b"\x89PNG") and drawn == []


def test_cli_figures_of_a_tabular_report(tmp_path):
    report = zoo_report("adult-mlp")
    paths = write_figures(report, tmp_path, max_samples=2)
    first = next((r for r in report.explanations if r.method == "kernel_shap"), report.explanations[0])
    expected = ["global_importance.png"] + [f"sample_{int(i):05d}_{first.method}.png" for i in first.sample_indices[:2]]
    assert [p.name for p in paths] == expected
    assert all(p.parent == tmp_path / "attributions" and p.read_bytes().startswith(b"\x89PNG") for p in paths)
    assert write_figures(dataclasses.replace(report, explanations=[]), tmp_path / "none") == []


def test_the_probe_catalogue_is_current():
    assert catalog.CATALOG.read_text(encoding="utf-8") == catalog.render_catalog(), "regenerate it: python -m audits.render.catalog"


def test_rendering_a_stored_report_does_not_import_torch(tmp_path):
    source = saved("digits-cnn", tmp_path)
    script = textwrap.dedent(
        f"""
        import sys
        from audits.render.export import write_outputs
        from audits.report import AuditReport

        write_outputs(AuditReport.load({str(source)!r}), html_path={str(tmp_path / "r.html")!r}, pdf_path={str(tmp_path / "r.pdf")!r})
        print(sorted(m for m in sys.modules if m == "torch" or m.startswith(("torch.", "captum"))))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    assert (tmp_path / "r.pdf").stat().st_size > 0 and (tmp_path / "r.html").stat().st_size > 0


def test_cli_figures_of_a_text_report_are_token_rows_and_attention_maps(tmp_path):
    from audits.results.attribution import AttributionResult, TextAttentionResult

    tokens = [["[CLS]", "the", "mat", "[SEP]"], ["[CLS]", "a", "cat", "sat", "[SEP]"]]
    common = dict(modality="text", output="probability", sample_indices=np.array([3, 7]), targets=np.array([1, 0]), tokens=tokens)
    ig = AttributionResult(method="layer_integrated_gradients", attributions=np.array([[0.0, 0.2, -0.6, 5.0, 0.0], [0.0, 0.1, 0.3, -0.1, 0.0]]), **common)
    roll = np.tile(np.eye(5) * 0.5 + 0.1, (2, 1, 1))
    attention = TextAttentionResult(
        method="text_attention", attributions=roll[:, 0, :], layer_attention=np.stack([roll, roll], axis=1), rollout=roll, n_tokens=5, **common
    )
    report = dataclasses.replace(
        zoo_report("adult-mlp"),
        explanations=[ig, attention],
        data_summary=dataclasses.replace(zoo_report("adult-mlp").data_summary, modality="text", class_names=["ok", "toxic"]),
    )
    charts = dict(figure_charts(report, max_samples=1))
    assert list(charts) == ["text_00003", "attention_00003_last_layer", "attention_00003_rollout"]
    text = charts["text_00003"]
    assert text.row_labels == ["layer integrated gradients", "text attention"] and text.tokens[0] == tokens[0]
    np.testing.assert_allclose(text.values[0], [0.0, 1 / 3, -1.0, 0.0])  # scaled by the largest |value| of a non-special token; [SEP] shown as 0
    assert charts["attention_00003_rollout"].values.shape == (4, 4) and charts["attention_00003_rollout"].x_labels == tokens[0]
    paths = write_figures(report, tmp_path, max_samples=2)
    assert [p.name for p in paths] == [f"{stem}.png" for stem in dict(figure_charts(report, max_samples=2))]


def test_dashboard_sample_charts_draw_in_both_backends():
    """The Inspect page's input, thumbnails and class probabilities are chart descriptions the PDF backend can draw too."""
    from audits.render.views import samples as samples_view

    rng = np.random.default_rng(0)
    proba = samples_view.class_probability_chart(np.array([0.1, 0.7, 0.2]), ["a", "b", "c"], label=2)
    assert proba.categories == ["b", "c (true)", "a"] and proba.highlight == ("b",)
    bars = to_plotly(proba).data[0]
    assert list(bars.marker.color) == ["#c0392b", "#7f8c8d", "#7f8c8d"] and list(bars.x) == pytest.approx([0.7, 0.2, 0.1])
    assert list(bars.text) == ["70.0%", "20.0%", "10.0%"]
    gallery = samples_view.sample_gallery_chart(rng.random((5, 1, 8, 8)), [f"#{i}" for i in range(5)], cols=3)
    assert [len(r) for r in gallery.cells] == [3, 3] and gallery.cells[1][2] is None and gallery.cells[1][1].caption == "#4"
    image = samples_view.input_image_chart(rng.random((3, 8, 8)) * 2 - 1, (-1.0, 1.0), title="Input #3")
    assert image.cells[0][0].image.shape == (8, 8, 3) and 0.0 <= image.cells[0][0].image.min() and image.cells[0][0].image.max() <= 1.0
    for chart in (proba, gallery, image):
        assert to_plotly(chart).layout.title.text.startswith(chart.title)
        assert static.to_image(chart)[:8] == b"\x89PNG\r\n\x1a\n"


def test_corruption_gallery_chart_marks_wrong_predictions():
    from audits.gallery import CorruptionGallery
    from audits.render.views.robustness import corruption_gallery_chart

    images = np.random.default_rng(1).random((2, 3, 1, 6, 6))
    preds = np.array([[0, 0, 1], [0, 1, 1]])
    gallery = CorruptionGallery(
        row=4, label=0, corruptions=["gaussian_noise", "blur"], severities=[0, 1, 2], parameters=np.zeros((2, 3)), value_range=[0.0, 1.0],
        images=images, predictions=preds, confidence=np.full((2, 3), 0.5), label_probability=np.full((2, 3), 0.5),
    )  # fmt: skip
    chart = corruption_gallery_chart(gallery, ["cat", "dog"])
    assert chart.col_labels == ["clean", "severity 1", "severity 2"] and chart.row_labels == ["gaussian noise", "blur"]
    assert chart.cells[0][0].caption == "gaussian noise: cat (50%)" and chart.cells[0][2].caption == "*dog (50%)" and chart.cells[1][1].caption == "*dog (50%)"
    assert "true class cat" in to_plotly(chart).layout.title.text


def test_long_chart_titles_are_wrapped_not_cut():
    """Bug: on adult-mlp's Fairness page the counterfactual chart's title ran past its column (plotly never wraps)."""
    from audits.render.charts import BarChart, Series
    from audits.render.plotly_backend import TITLE_LINE_CHARS, to_plotly_dict, wrap_title

    title = "Decisions that change when only the sensitive input changes (95% intervals)"
    wrapped = wrap_title(title)
    assert wrapped.replace("<br>", " ") == title and all(len(line) <= TITLE_LINE_CHARS for line in wrapped.split("<br>"))
    assert wrap_title("Short") == "Short" and wrap_title(title + "<br><sup>legend</sup>").endswith("<br><sup>legend</sup>")
    short = to_plotly_dict(BarChart(title="Short", categories=["a"], series=[Series("s", ["a"], [1.0])], value_label="v"))
    long = to_plotly_dict(BarChart(title=title, categories=["a"], series=[Series("s", ["a"], [1.0])], value_label="v"))
    assert long["layout"]["margin"]["t"] == short["layout"]["margin"]["t"] + 18  # room for the second line


def test_roc_and_pr_charts_draw_each_groups_threshold_point_in_its_lines_colour():
    """A group's line and its marker at the threshold share a colour, the same on both charts."""
    from audits.render.plotly_backend import to_plotly
    from audits.render.views.performance import precision_recall_chart, roc_chart
    from audits.thresholds import curves_by_group

    rng = np.random.default_rng(0)
    scores, positive = rng.random(400), rng.random(400) < 0.4
    groups = np.where(rng.random(400) < 0.5, "a", "b")
    curves = curves_by_group(scores, positive, groups)
    colours = []
    for chart in (roc_chart(curves, 0.5, "yes"), precision_recall_chart(curves, 0.5, "yes")):
        traces = {t["name"]: t["line"]["color"] for t in to_plotly(chart)["data"]}
        pairs = {g: (traces[next(n for n in traces if n.startswith(f"{g} (n="))], traces[f"{g} at 0.50"]) for g in ("a", "b")}
        assert all(line == marker for line, marker in pairs.values()), pairs
        assert pairs["a"][0] != pairs["b"][0]
        colours.append({g: line for g, (line, _) in pairs.items()})
    assert colours[0] == colours[1]
