"""Report diffs: empty against itself, regressions and resolutions named, exit code, HTML section; the JSON schema."""

from __future__ import annotations

import dataclasses
import json

import jsonschema
import pytest

from audits.cli import main
from audits.data import load_data
from audits.diff import diff_reports, measurements_by_name
from audits.engine import run_audit
from audits.policy import apply_policy, parse_policy
from audits.render.html import render_diff_html
from audits.report import AuditReport
from audits.schema import SCHEMA_PATH, schema_text
from audits.spec import parse_spec
from audits.stats import wilson
from models.loader import load_model
from models.registry import resolve_card

from .report_fixtures import zoo_report

POLICY = parse_policy(
    {"name": "t", "checks": [{"id": "acc", "check": "min_accuracy", "threshold": 0.8}, {"id": "ece", "check": "max_calibration_error", "threshold": 0.5}]}
)


def with_accuracy(report: AuditReport, accuracy: float, report_id: str) -> AuditReport:
    perf = dataclasses.replace(report.performance, accuracy=accuracy)
    return apply_policy(dataclasses.replace(report, performance=perf, report_id=report_id), POLICY)


def test_a_report_diffed_with_itself_is_empty(tmp_path, capsys):
    report = zoo_report("adult-mlp")
    diff = diff_reports(report, report)
    assert diff.is_empty and not diff.regressed and not diff.model_changed
    assert "No differences." in diff.to_text()
    path = report.save(tmp_path / "r.json")
    assert main(["diff", str(path), str(path)]) == 0
    assert "No differences." in capsys.readouterr().out


def test_a_regressed_metric_is_listed_with_its_direction_and_fails_the_diff(tmp_path, capsys):
    base = zoo_report("adult-mlp")
    old, new = with_accuracy(base, 0.9, "old"), with_accuracy(base, 0.7, "new")
    diff = diff_reports(old, new)
    assert diff.regressed and [c.key for c in diff.regressions] == ["acc"]
    change = diff.regressions[0]
    assert (change.old_status, change.new_status, change.kind) == ("pass", "fail", "new failure")
    metric = next(m for m in diff.metrics if m.name == "performance.accuracy")
    assert metric.delta == pytest.approx(-0.2) and metric.verdict == "worse"
    text = diff.to_text()
    assert "NEW FAILURE" in text and "performance.accuracy" in text and "worse" in text
    a, b = old.save(tmp_path / "old.json"), new.save(tmp_path / "new.json")
    html = tmp_path / "diff.html"
    assert main(["diff", str(a), str(b), "--html", str(html)]) == 1
    page = html.read_text()
    assert 'id="diff"' in page and "new failure" in page and "performance.accuracy" in page
    # The other way round the failure is resolved and the diff passes.
    back = diff_reports(new, old)
    assert not back.regressed and back.findings[0].kind == "resolved"
    assert main(["diff", str(b), str(a)]) == 0
    capsys.readouterr()


def test_changed_weights_and_new_findings_are_reported():
    base = zoo_report("adult-mlp")
    old = apply_policy(base, POLICY)
    moved = dataclasses.replace(base.provenance, weights_sha256="0" * 64)
    strict = parse_policy({"name": "s", "checks": [*POLICY.model_dump()["checks"], {"id": "cf", "check": "max_counterfactual_flip_rate", "threshold": 0.01}]})
    new = apply_policy(dataclasses.replace(base, provenance=moved, report_id="new"), strict)
    diff = diff_reports(old, new)
    assert diff.model_changed and "CHANGED" in diff.to_text()
    assert {c.kind for c in diff.findings if c.key.startswith("cf/")} == {"new failure"} and diff.regressed
    assert "Model weights" in render_diff_html(diff)


def test_diff_can_re_evaluate_both_reports_against_one_policy(tmp_path, capsys):
    base = zoo_report("adult-mlp")
    a = with_accuracy(base, 0.9, "a").save(tmp_path / "a.json")
    b = with_accuracy(base, 0.85, "b").save(tmp_path / "b.json")
    strict = tmp_path / "strict.yaml"
    strict.write_text("checks:\n  - {check: min_accuracy, threshold: 0.88}\n")
    assert main(["diff", str(a), str(b)]) == 0  # both pass the recorded policy
    assert main(["diff", str(a), str(b), "--policy", str(strict)]) == 1
    capsys.readouterr()


def test_the_committed_json_schema_is_current_and_real_reports_validate():
    assert SCHEMA_PATH.read_text() == schema_text(), "run: python -m audits.schema"
    schema = json.loads(SCHEMA_PATH.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    for name in ("digits-cnn", "adult-mlp"):
        raw = json.loads(zoo_report(name).to_json())
        errors = sorted(validator.iter_errors(raw), key=lambda e: list(e.absolute_path))
        assert not errors, [(list(e.absolute_path), e.message[:200]) for e in errors[:3]]
    broken = json.loads(zoo_report("adult-mlp").to_json())
    broken["findings"][0]["status"] = 3
    assert list(validator.iter_errors(broken))


def test_a_change_within_the_intervals_is_worse_but_not_a_regression():
    base = zoo_report("adult-mlp")
    acc = base.performance.accuracy
    lo = wilson(acc - 0.005, base.performance.n)[0]
    policy = parse_policy({"name": "t", "checks": [{"id": "acc", "check": "min_accuracy", "threshold": round(lo + 0.001, 4)}]})
    old = apply_policy(dataclasses.replace(base, report_id="old"), policy)
    noisy = apply_policy(dataclasses.replace(base, performance=dataclasses.replace(base.performance, accuracy=acc - 0.005), report_id="noisy"), policy)
    assert (old.findings[0].status, noisy.findings[0].status) == ("pass", "warn")
    diff = diff_reports(old, noisy)
    metric = next(m for m in diff.metrics if m.name == "performance.accuracy")
    assert metric.verdict == "worse" and not metric.regressed and not diff.metric_regressions
    (change,) = diff.findings
    assert change.kind == "regressed" and change.within_intervals and not diff.regressed
    assert "within the intervals" in diff.to_text()
    # A drop beyond the intervals is a regression, of the measurement and of the finding.
    worse = apply_policy(dataclasses.replace(base, performance=dataclasses.replace(base.performance, accuracy=acc - 0.08), report_id="worse"), policy)
    diff = diff_reports(old, worse)
    assert [m.name for m in diff.metric_regressions] == ["performance.accuracy"] and diff.regressed
    assert "REGRESSED" in diff.to_text()


def test_a_rerun_with_another_seed_does_not_flap():
    card = resolve_card("adult-mlp")
    model, data = load_model(card, device="cpu"), load_data(card)
    # Every row (no max_rows): the seed then changes only the probes' randomness (perturbation
    # noise, LIME samples, bootstrap resamples, the counterfactual subset), not the evaluated rows.
    spec = {
        "samples": 4,
        "probes": [
            {"name": "lime", "params": {"n_samples": 100}},
            {"name": "tabular_perturbations", "params": {"max_rows": 300}},
            {"name": "group_metrics", "params": {"n_boot": 60}},
            {"name": "counterfactual_flips", "params": {"max_rows": 400}},
        ],
    }
    a, b = (apply_policy(run_audit(model, data, parse_spec({**spec, "seed": seed}))) for seed in (0, 1))
    diff = diff_reports(a, b)
    assert diff.metrics, "another seed changes some measurements (perturbation noise, LIME samples)"
    assert not diff.metric_regressions and not diff.regressed, diff.to_text()


def test_measurement_names_are_stable_and_unique_when_a_method_repeats():
    report = zoo_report("digits-cnn")
    fgsm = next(r for r in report.robustness if r.method == "fgsm")
    twice = dataclasses.replace(report, robustness=[*report.robustness, fgsm])
    names = measurements_by_name(twice)
    assert "performance.accuracy" in names and any(n.startswith("fgsm.robust_accuracy/fgsm/linf/eps=") for n in measurements_by_name(report))
    assert any(n.startswith("robustness[0].robust_accuracy/fgsm/linf/") for n in names)
    assert any(n.startswith(f"robustness[{len(report.robustness)}].robust_accuracy/") for n in names)
