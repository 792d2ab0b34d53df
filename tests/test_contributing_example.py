"""The example of docs/contributing.md: a new probe with a new result type in three pieces.

A probe class, its result class and its view are all that a new capability needs (the files
``audits/<category>/<probe>.py``, ``audits/results/<family>.py`` and
``audits/render/views/<family>.py``). Defined here in the test, they must then run in an
audit, survive the JSON round trip, appear in the HTML and PDF, be checkable by a policy and
diffable, with no other code touched.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pytest
from pypdf import PdfReader

from audits.data import load_data
from audits.diff import diff_reports
from audits.engine import run_audit
from audits.policy import apply_policy, parse_policy
from audits.probes import PROBES, Probe, register
from audits.render import write_outputs
from audits.render.blocks import Paragraph
from audits.render.registry import _VIEWS, view
from audits.report import AuditReport
from audits.results import Measurement, ProbeResult
from audits.serialization import _TYPES, serializable
from audits.spec import parse_spec
from audits.stats import wilson
from models.card import load_card
from models.loader import load_model


# --- audits/results/<family>.py: the result type (numpy and pandas only) -------------------
@serializable
@dataclass(frozen=True, kw_only=True)
class LowConfidenceResult(ProbeResult):
    """The share of rows whose top-class probability is below ``cutoff``."""

    cutoff: float
    share: float
    n: int

    def measurements(self) -> Iterator[Measurement]:
        yield Measurement(
            name="low_confidence_share", value=self.share, interval=wilson(self.share, self.n), direction="lower_is_better", evidence=".share", n=self.n
        )


# --- audits/robustness/low_confidence.py: the probe ----------------------------------------
class LowConfidenceProbe(Probe):
    name = "example_low_confidence"
    category = "robustness"
    modalities = ("image", "tabular", "text")
    result_type = LowConfidenceResult
    title = "Low-confidence share"
    description = "How often the model is unsure: the share of rows whose top-class probability is below a cutoff."

    def __init__(self, cutoff: float = 0.6):
        self.cutoff = cutoff

    def _run(self, model, data, context) -> LowConfidenceResult:
        share = float(np.mean(context.proba.max(axis=1) < self.cutoff))
        return LowConfidenceResult(method=self.name, params=self.params, seed=context.seed, cutoff=self.cutoff, share=share, n=len(context.proba))


# --- audits/render/views/<family>.py: its view -------------------------------------------
def low_confidence_view(result: LowConfidenceResult, ctx) -> list:
    return [Paragraph(f"Example view: {result.share:.1%} of {result.n} rows below confidence {result.cutoff:g}.")]


@pytest.fixture
def example_probe():
    register(LowConfidenceProbe)
    view(LowConfidenceResult)(low_confidence_view)
    yield LowConfidenceProbe
    # Leave the registries as they were: other tests enumerate every registered probe.
    PROBES.pop(LowConfidenceProbe.name, None)
    _VIEWS.pop(LowConfidenceResult, None)
    _TYPES.pop(LowConfidenceResult.__name__, None)


def test_a_new_probe_and_result_type_need_only_their_probe_result_and_view(example_probe, tabular_bundle, tmp_path):
    card = load_card(tabular_bundle["card_path"])
    model, data = load_model(card), load_data(card)
    spec = parse_spec({"probes": [{"name": "example_low_confidence", "params": {"cutoff": 0.9}}]})
    report = run_audit(model, data, spec)
    result = next(r for r in report.robustness if isinstance(r, LowConfidenceResult))
    assert result.n == len(data.y) and 0.0 <= result.share <= 1.0

    # Checkable by the generic policy check, with no policy code.
    policy = parse_policy({"name": "example", "checks": [{"id": "unsure", "check": "measurement", "name": "low_confidence_share", "subject": "", "direction": "max", "threshold": 0.5}]})
    report = apply_policy(report, policy)
    (finding,) = [f for f in report.findings if f.check_id == "unsure"]
    assert finding.measured == pytest.approx(result.share) and finding.status in ("pass", "warn", "fail")
    assert finding.interval is not None and finding.evidence.startswith("robustness[")

    # Survives the JSON round trip, renders in its view in HTML and PDF.
    again = AuditReport.from_json(report.to_json())
    assert isinstance(again.robustness[0], LowConfidenceResult) and again.robustness[0].share == result.share
    html, pdf = tmp_path / "r.html", tmp_path / "r.pdf"
    write_outputs(again, html_path=html, pdf_path=pdf)
    assert "Example view:" in html.read_text() and pdf.stat().st_size > 0
    pdf_text = " ".join(page.extract_text() for page in PdfReader(pdf).pages)
    assert "Example view:" in " ".join(pdf_text.split())

    # Diffable: the diff reads its measurement.
    diff = diff_reports(report, again)
    assert not [m for m in diff.metrics if m.name.startswith("low_confidence_share")]
