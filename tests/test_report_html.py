"""The HTML report: one self-contained file with every figure, no network references; `audits run` writes all outputs."""

from __future__ import annotations

import re

import pytest

from audits.cli import main
from audits.render.document import build_document
from audits.render.plotly_backend import to_plotly
from audits.render.views import attribution, fairness, performance, robustness
from audits.report import AuditReport

from .report_fixtures import rendered_html, zoo_report

_EXTERNAL = re.compile(r"""(?:src|href|action)\s*=\s*["']?\s*(?:https?:)?//|url\(\s*["']?(?:https?:)?//|@import|<link\b|<iframe\b""", re.IGNORECASE)


def _outside_plotly_js(html: str) -> str:
    """The page without the inlined plotly.js bundle (a library whose source mentions URLs)."""
    start = html.index('<script type="text/javascript">')
    end = html.index("</script>", start)
    return html[:start] + html[end:]


@pytest.mark.parametrize("name", ["digits-cnn", "adult-mlp"])
def test_html_has_every_section_and_figure(name):
    report = zoo_report(name)
    html = rendered_html(name)
    document = build_document(report)
    for section in document.walk():
        assert f'id="{section.anchor}"' in html, section.anchor
    assert html.count('class="plotly-graph-div"') == len(document.figures()) >= 6
    assert report.report_id in html and report.provenance.weights_sha256 in html
    for f in report.findings:  # every finding with evidence links to it; one not evaluated has none to link
        assert f.section or f.status == "not_evaluated", f.check_id
        assert not f.section or f'href="#{f.section}"' in html
    assert 'href="#"' not in html


@pytest.mark.parametrize("name", ["digits-cnn", "adult-mlp"])
def test_html_opens_offline(name):
    html = rendered_html(name)
    assert html.count("<script") == html.count("</script>")
    assert not re.search(r"<script[^>]*\bsrc\s*=", html), "every script is inline"
    assert html.count("plotly.js v") <= 2 and "Plotly.newPlot" in html  # the library once, figures drawn by it
    rest = _outside_plotly_js(html)
    assert not _EXTERNAL.search(rest), _EXTERNAL.search(rest)
    if name == "digits-cnn":
        assert re.search(r"data:image(/|\\u002f)png;base64,", rest)  # the galleries are embedded images


def test_view_charts_drawn_by_plotly_have_titles_and_axis_labels():
    report = zoo_report("adult-mlp")
    gm = next(r for r in report.fairness if r.method == "group_metrics")
    made = [
        performance.reliability_chart(report.performance),
        attribution.global_importance_chart(report.explanations),
        attribution.tabular_sample_chart(report.explanations[0], 0, report.samples, report.data_summary.class_names),
        fairness.group_metric_chart(gm, "sex"),
        fairness.disparity_chart(gm),
        fairness.four_fifths_chart(gm),
        robustness.tabular_perturbation_chart(report.robustness[0]),
        fairness.counterfactual_chart(next(r for r in report.fairness if r.method == "counterfactual_flips")),
    ]
    digits = zoo_report("digits-cnn")
    attack = next(r for r in digits.robustness if r.method == "fgsm")
    made += [
        attribution.attribution_gallery_chart(digits.explanations, digits.samples, digits.data_summary.class_names),
        robustness.attack_curve_chart([attack]),
        robustness.adversarial_examples_chart(attack, digits.data_summary.class_names),
        robustness.corruption_chart(next(r for r in digits.robustness if r.method == "corruptions")),
        performance.confusion_chart(digits.performance, digits.data_summary.class_names),
    ]
    for fig in map(to_plotly, made):
        assert fig.layout.title.text
        if not any(t.type == "image" for t in fig.data):
            assert fig.layout.xaxis.title.text or fig.layout.yaxis.title.text


def test_audits_run_writes_json_html_and_pdf_by_default(tmp_path, tabular_bundle, capsys):
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "samples: 4\nprobes:\n  - {name: integrated_gradients, params: {n_steps: 8}}\n  - {name: group_metrics, params: {n_boot: 50, min_group_size: 5}}\n"
    )
    out = tmp_path / "out"
    assert main(["run", "--model", str(tabular_bundle["card_path"]), "--spec", str(spec), "--out", str(out), "--quiet", "--figures", "1", "--fail-on", "never"]) == 0
    assert {"report.json", "report.html", "report.pdf"} <= {p.name for p in out.iterdir()}
    report = AuditReport.load(out / "report.json")
    assert report.findings and report.policy["name"] == "default" and report.samples is not None
    assert (out / "report.pdf").read_bytes().startswith(b"%PDF")
    printed = capsys.readouterr().out
    assert "policy default:" in printed and "report.pdf" in printed
    lean = tmp_path / "lean"
    assert (
        main(
            ["run", "--model", str(tabular_bundle["card_path"]), "--spec", str(spec), "--out", str(lean), "--quiet", "--no-pdf", "--no-html", "--figures", "0", "--fail-on", "never"]
        )
        == 0
    )
    assert not (lean / "report.pdf").exists() and not (lean / "report.html").exists()
