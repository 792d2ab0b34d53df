"""Policies: validation at the boundary, findings at and around their thresholds, migrations of old reports."""

from __future__ import annotations

import dataclasses
import json

import pytest

from audits.errors import ReportError
from audits.policy import Finding, PolicyError, apply_policy, evaluate_policy, load_policy, overall_verdict, parse_policy, status_counts
from audits.report import MIGRATIONS, AuditReport
from audits.results import Measurement, ProbeResult

from .report_fixtures import zoo_report


def policy(*checks: dict):
    return parse_policy({"name": "test", "checks": list(checks)})


def only(findings: list[Finding], check_id: str) -> Finding:
    (found,) = [f for f in findings if f.check_id == check_id]
    return found


def test_the_default_policy_ships_and_covers_every_kind_of_check():
    default = load_policy()
    assert default.name == "default"
    kinds = {c.check for c in default.checks}
    assert {
        "min_accuracy",
        "max_calibration_error",
        "min_robust_accuracy",
        "min_corruption_accuracy",
        "max_disparity",
        "four_fifths",
        "explanation_quality",
    } <= kinds
    assert all(c.rationale for c in default.checks)


@pytest.mark.parametrize(
    "raw, names",
    [
        ({"checks": [{"check": "min_acuracy", "threshold": 0.8}]}, "min_acuracy"),
        ({"checks": [{"check": "min_accuracy", "threshold": 0.8, "treshold": 1}]}, "treshold"),
        ({"checks": [{"check": "min_accuracy"}]}, "threshold"),
        ({"checks": [{"check": "min_accuracy", "threshold": 0.8}, {"check": "min_accuracy", "threshold": 0.9}]}, "unique"),
        ({"checks": [{"check": "min_robust_accuracy", "threshold": 0.5, "epsilon": -1}]}, "epsilon"),
        (["not", "a", "mapping"], "mapping"),
    ],
)
def test_invalid_policies_name_the_field_and_the_fix(raw, names):
    with pytest.raises(PolicyError) as err:
        parse_policy(raw)
    assert names in err.value.problem and err.value.fix


def test_missing_policy_file_is_a_clear_error(tmp_path):
    with pytest.raises(PolicyError, match="does not exist"):
        load_policy(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("checks: [\n")
    with pytest.raises(PolicyError, match="not valid YAML"):
        load_policy(bad)


def test_a_finding_flips_from_pass_to_fail_when_its_threshold_is_crossed():
    report = zoo_report("adult-mlp")
    acc = report.performance.accuracy
    above = only(evaluate_policy(report, policy({"check": "min_accuracy", "threshold": round(acc - 0.2, 4)})), "min_accuracy")
    below = only(evaluate_policy(report, policy({"check": "min_accuracy", "threshold": round(acc + 0.001, 4)})), "min_accuracy")
    assert above.status == "pass" and below.status == "fail"
    assert above.measured == pytest.approx(acc) and above.interval[0] < acc < above.interval[1]
    assert above.evidence == "performance.accuracy" and above.section == "performance"
    # The warning band, and an interval that reaches the threshold, warn.
    band = only(evaluate_policy(report, policy({"check": "min_accuracy", "threshold": round(acc - 0.2, 4), "warn": round(acc + 0.01, 4)})), "min_accuracy")
    assert band.status == "warn"
    straddle = only(evaluate_policy(report, policy({"check": "min_accuracy", "threshold": (above.interval[0] + acc) / 2})), "min_accuracy")
    assert straddle.status == "warn" and "interval" in straddle.detail
    # A violation of a warn-only check warns.
    soft = only(evaluate_policy(report, policy({"check": "min_accuracy", "threshold": 0.99, "on_violation": "warn"})), "min_accuracy")
    assert soft.status == "warn"


def test_max_checks_mirror_min_checks():
    report = zoo_report("adult-mlp")
    ece = report.performance.ece
    low = only(evaluate_policy(report, policy({"check": "max_calibration_error", "threshold": ece + 0.05})), "max_calibration_error")
    high = only(evaluate_policy(report, policy({"check": "max_calibration_error", "threshold": ece / 2})), "max_calibration_error")
    assert (low.status, high.status) == ("pass", "fail") and low.direction == "max"


def test_group_checks_give_one_finding_per_grouping_with_intervals():
    report = zoo_report("adult-mlp")
    findings = evaluate_policy(report, policy({"check": "four_fifths"}, {"id": "tpr_gap", "check": "max_disparity", "metric": "tpr", "threshold": 0.1}))
    ff = [f for f in findings if f.check == "four_fifths"]
    assert {f.subject for f in ff} == {"sex", "race", "age_band"}
    gm = next(r for r in report.fairness if r.method == "group_metrics")
    for f in ff:
        row = gm.four_fifths[gm.four_fifths["grouping"] == f.subject].iloc[0]
        assert f.measured == pytest.approx(row["ratio"]) and f.interval == pytest.approx([row["lo"], row["hi"]])
        assert f.status == ("pass" if row["lo"] >= 0.8 else "fail" if row["ratio"] < 0.8 else "warn")
        assert f.evidence == f"fairness[0].four_fifths[grouping={f.subject}]" and f.section == "fairness-0-group-metrics"
    assert {f.subject for f in findings if f.check_id == "tpr_gap"} == {"sex", "race", "age_band"}


def test_checks_without_evidence_are_not_evaluated_with_the_reason():
    report = zoo_report("adult-mlp")
    findings = evaluate_policy(
        report, policy({"check": "min_robust_accuracy", "epsilon": 0.03, "threshold": 0.5}, {"check": "four_fifths", "groupings": ["nope"]})
    )
    robust = only(findings, "min_robust_accuracy")
    assert robust.status == "not_evaluated" and robust.measured is None and "attack" in robust.detail
    # Four-fifths on a multiclass model says why.
    digits = evaluate_policy(zoo_report("digits-cnn"), policy({"check": "four_fifths"}))
    assert [f.status for f in digits] == ["not_evaluated"] and "binary" in digits[0].detail


def test_modalities_and_tasks_select_the_checks_that_apply():
    p = policy(
        {"id": "img", "check": "min_accuracy", "threshold": 0.1, "modalities": ["image"]},
        {"id": "bin", "check": "min_accuracy", "threshold": 0.1, "tasks": ["binary"]},
    )
    assert [f.check_id for f in evaluate_policy(zoo_report("digits-cnn"), p)] == ["img"]
    assert [f.check_id for f in evaluate_policy(zoo_report("adult-mlp"), p)] == ["bin"]


def test_robustness_corruption_and_explanation_checks_read_their_results():
    report = zoo_report("digits-cnn")
    p = policy(
        {"check": "min_robust_accuracy", "epsilon": 0.0314, "threshold": 0.01},
        {"check": "min_corruption_accuracy", "threshold": 0.01},
        {"check": "explanation_quality", "method": "lime*", "key": "r2", "direction": "min", "threshold": -10},
    )
    findings = {f.check: f for f in evaluate_policy(report, p)}
    attack = next(r for r in report.robustness if r.method == "fgsm")
    assert findings["min_robust_accuracy"].subject == "strongest" and findings["min_robust_accuracy"].detail.startswith("fgsm:")
    assert 0 <= findings["min_robust_accuracy"].measured <= attack.clean_accuracy
    assert findings["min_corruption_accuracy"].status == "pass"
    assert findings["explanation_quality"].subject == "lime_image" and findings["explanation_quality"].status == "pass"


def test_findings_and_policy_round_trip_through_the_report_json():
    report = zoo_report("adult-mlp")
    assert report.findings and report.policy["name"] == "default"
    again = AuditReport.from_json(report.to_json())
    assert again.findings == report.findings and again.policy == report.policy
    counts = status_counts(report.findings)
    assert sum(counts.values()) == len(report.findings)
    assert overall_verdict(report.findings) in ("pass", "warn", "fail")
    custom = apply_policy(report, policy({"check": "min_accuracy", "threshold": 0.0}))
    assert [f.status for f in custom.findings] == ["pass"] and custom.policy["name"] == "test"


def test_an_older_schema_version_is_migrated_or_refused_clearly(monkeypatch):
    raw = json.loads(zoo_report("adult-mlp").to_json())
    old = {**raw, "schema_version": "0.9"}
    with pytest.raises(ReportError, match="0.9.*no migration") as err:
        AuditReport.from_dict(old)
    assert "Re-run" in err.value.fix

    def upgrade(d: dict) -> dict:  # e.g. 0.9 called the findings 'checks'
        d["findings"] = d.pop("checks")
        d["schema_version"] = "1.0"
        return d

    monkeypatch.setitem(MIGRATIONS, "0.9", upgrade)
    legacy = {k: v for k, v in old.items() if k != "findings"} | {"checks": raw["findings"]}
    migrated = AuditReport.from_dict(legacy)
    assert migrated.schema_version == "1.0" and len(migrated.findings) == len(raw["findings"])
    # A report written before explained samples were stored still loads (the field defaults).
    no_samples = {k: v for k, v in raw.items() if k not in ("samples", "policy")}
    assert AuditReport.from_dict(no_samples).samples is None


def test_findings_are_frozen_dataclasses_with_a_stable_key():
    findings = evaluate_policy(zoo_report("adult-mlp"), policy({"check": "max_counterfactual_flip_rate", "threshold": 0.5}))
    assert {x.key for x in findings} == {"max_counterfactual_flip_rate/sex", "max_counterfactual_flip_rate/race"}
    assert all(x.status == "pass" and x.interval[0] <= x.measured <= x.interval[1] for x in findings)
    with pytest.raises(dataclasses.FrozenInstanceError):
        findings[0].status = "fail"  # type: ignore[misc]


def test_the_generic_measurement_check_reads_any_measurement_by_name_and_subject_glob():
    report = zoo_report("adult-mlp")
    generic = evaluate_policy(
        report, policy({"id": "cf", "check": "measurement", "name": "counterfactual_flip_rate", "subject": "sex", "direction": "max", "threshold": 0.5})
    )
    typed = evaluate_policy(report, policy({"check": "max_counterfactual_flip_rate", "threshold": 0.5}))
    (g,) = generic
    t = next(f for f in typed if f.subject == "sex")
    assert (g.subject, g.measured, g.interval, g.status) == (t.subject, t.measured, t.interval, t.status)
    # A glob gives one finding per matching subject; a name the report lacks is not evaluated, with the reason.
    per_group = evaluate_policy(
        report, policy({"check": "measurement", "name": "counterfactual_flip_rate", "subject": "sex=*", "direction": "max", "threshold": 0.5})
    )
    assert {f.subject for f in per_group} == {"sex=Female", "sex=Male"}
    none = evaluate_policy(report, policy({"check": "measurement", "name": "no_such_thing", "direction": "min", "threshold": 0}))
    assert [f.status for f in none] == ["not_evaluated"] and "no_such_thing" in none[0].detail
    with pytest.raises(PolicyError, match="direction"):
        policy({"check": "measurement", "name": "accuracy", "threshold": 0.5})


def test_a_new_result_type_is_checkable_without_policy_code():
    @dataclasses.dataclass(frozen=True, kw_only=True)
    class LeakResult(ProbeResult):
        rate: float

        def measurements(self):
            yield Measurement(name="leak_rate", subject="members", value=self.rate, interval=[self.rate - 0.01, self.rate + 0.01], direction="lower_is_better")

    report = dataclasses.replace(zoo_report("adult-mlp"), fairness=[*zoo_report("adult-mlp").fairness, LeakResult(method="leak", rate=0.3)])
    (f,) = evaluate_policy(report, policy({"check": "measurement", "name": "leak_rate", "direction": "max", "threshold": 0.2}))
    assert f.status == "fail" and f.measured == pytest.approx(0.3) and f.evidence == f"fairness[{len(report.fairness) - 1}]"
    assert f.section == f"fairness-{len(report.fairness) - 1}-leak"


def test_the_strongest_attack_is_the_lowest_over_every_attack_result_whatever_its_name():
    report = zoo_report("digits-cnn")
    fgsm = next(r for r in report.robustness if r.method == "fgsm")
    curve = fgsm.curve.assign(robust_accuracy=fgsm.curve["robust_accuracy"] * 0.5)
    weaker = dataclasses.replace(fgsm, method="my_attack", curve=curve)
    report = dataclasses.replace(report, robustness=[*report.robustness, weaker])
    check = {"check": "min_robust_accuracy", "epsilon": 0.0314, "threshold": 0.01}
    (strongest,) = evaluate_policy(report, policy(check))
    (named,) = evaluate_policy(report, policy({**check, "attack": "fgsm"}))
    # One subject whichever attack is lowest (so a seed cannot move the finding); the detail names the attack.
    assert strongest.subject == "strongest" and strongest.detail.startswith("my_attack:") and named.subject == "fgsm"
    assert strongest.measured == pytest.approx(named.measured * 0.5)


def test_non_finite_outputs_fail_the_default_policy_and_invalidate_accuracy_and_calibration():
    report = zoo_report("digits-cnn")
    perf = dataclasses.replace(report.performance, nonfinite_rows=12)
    findings = {f.check_id: f for f in evaluate_policy(dataclasses.replace(report, performance=perf))}
    assert findings["finite_outputs"].status == "fail"
    assert findings["finite_outputs"].detail.startswith(f"12 of {perf.n} rows gave non-finite outputs")
    for check_id in ("accuracy", "calibration"):
        assert findings[check_id].status == "not_evaluated" and findings[check_id].measured is None
        assert f"12 of {perf.n} rows gave non-finite outputs" in findings[check_id].detail
    assert {f.check_id: f.status for f in zoo_report("digits-cnn").findings}["finite_outputs"] == "pass"
