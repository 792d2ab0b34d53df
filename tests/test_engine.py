"""run_audit end to end on small real files; spec validation; report round trip and versioning."""

from __future__ import annotations

import json

import numpy as np
import pytest

from audits.data import load_data
from audits.engine import run_audit, select_samples
from audits.errors import ReportError, SpecError
from audits.performance import evaluate_performance
from audits.probes import default_probe_names
from audits.report import AuditReport
from audits.spec import parse_spec
from models.card import load_card
from models.loader import load_model


def test_default_audit_runs_every_default_probe_and_round_trips(tabular_bundle, tmp_path):
    card = load_card(tabular_bundle["card_path"])
    model, data = load_model(card), load_data(card)
    seen: list[float] = []
    report = run_audit(model, data, parse_spec({"samples": 6}), progress=lambda f, m: seen.append(f))
    ran = {r.method for r in report.probe_results()}
    assert ran | {s.name for s in report.skipped} == set(default_probe_names("tabular", model, data))
    # A default names only what can run: no training sample in this card, so no membership inference.
    assert "membership_inference" in default_probe_names("tabular") and "membership_inference" not in ran
    assert {"kernel_shap", "lime", "integrated_gradients"} <= {r.method for r in report.explanations}
    assert not report.failures
    assert seen[0] == 0.0 and seen[-1] == 1.0 and seen == sorted(seen)
    p = report.provenance
    assert p.model_name == "tiny-mlp" and p.weights_sha256 == model.weights_sha256 and p.device == "cpu"
    probe_calls = sum(r.cost.model_calls for r in report.probe_results())
    assert p.model_calls == probe_calls + 1  # + the one shared forward pass
    assert {"torch", "captum", "shap", "lime", "python"} <= set(p.library_versions)
    assert report.data_summary.group_sizes["group"] == data.attributes["group"].value_counts().sort_index().to_dict()
    path = report.save(tmp_path / "report.json")
    again = AuditReport.load(path)
    assert again.to_dict() == report.to_dict()
    assert json.loads(path.read_text())["schema_version"] == "1.0"


def test_unsupported_probe_is_skipped_with_a_reason_and_failures_do_not_stop_the_audit(tabular_bundle, monkeypatch):
    card = load_card(tabular_bundle["card_path"])
    model, data = load_model(card), load_data(card)
    from audits.explain import integrated_gradients

    def boom(self, *a, **k):
        raise RuntimeError("kaboom")

    monkeypatch.setattr(integrated_gradients.IntegratedGradients, "_run", boom)
    spec = parse_spec({"samples": 3, "probes": [{"name": "grad_cam"}, {"name": "integrated_gradients"}, {"name": "kernel_shap"}]})
    report = run_audit(model, data, spec)
    assert [s.name for s in report.skipped] == ["grad_cam"] and "image" in report.skipped[0].reason
    assert [f.name for f in report.failures] == ["integrated_gradients"] and "kaboom" in report.failures[0].error
    assert [r.method for r in report.explanations] == ["kernel_shap"]


def test_max_rows_audits_a_seeded_subset(image_bundle):
    card = load_card(image_bundle["card_path"])
    model, data = load_model(card), load_data(card)
    spec = parse_spec({"max_rows": 25, "samples": 2, "probes": [{"name": "saliency"}]})
    a, b = run_audit(model, data, spec), run_audit(model, data, spec)
    assert a.data_summary.n_rows == 25 and a.data_summary.n_rows_available == 40
    np.testing.assert_array_equal(a.data_summary.row_indices, b.data_summary.row_indices)
    np.testing.assert_array_equal(a.explanations[0].attributions, b.explanations[0].attributions)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"probes": [{"name": "shapp"}]}, "Unknown probe 'shapp'"),
        ({"probes": [{"name": "integrated_gradients", "params": {"steps": 3}}]}, "no parameter"),
        ({"samples": 0}, "samples"),
        ({"sample": 5}, "sample"),
        ({"exclude": ["nope"]}, "unknown probe"),
    ],
)
def test_bad_specs_name_the_problem(raw, message):
    with pytest.raises(SpecError, match=message):
        parse_spec(raw)


def test_stratified_selection_covers_every_class():
    y = np.repeat(np.arange(5), [50, 3, 20, 1, 9])
    picked = select_samples(y, 10, "stratified", np.random.default_rng(0))
    assert len(set(picked)) == 10 and set(y[picked]) == set(range(5))


def test_performance_and_calibration_known_values():
    proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    y = np.array([0, 1, 1, 0])
    perf = evaluate_performance(proba, y, ["a", "b"], n_bins=10)
    assert perf.accuracy == 0.5
    np.testing.assert_array_equal(perf.confusion, [[1, 1], [1, 1]])
    # bins: 0.9 -> correct, 0.8 -> correct, 0.6 -> wrong, 0.7 -> wrong
    assert perf.ece == pytest.approx((0.1 + 0.2 + 0.6 + 0.7) / 4)


def test_reports_from_unknown_schema_versions_are_refused(tabular_bundle):
    with pytest.raises(ReportError, match="schema version 9.0"):
        AuditReport.from_dict({"schema_version": "9.0"})
    with pytest.raises(ReportError, match="not valid JSON"):
        AuditReport.from_json("{")
