"""Result types: torch-free loading, measurements of every result family, old reports, non-finite model outputs."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from audits.data import load_data
from audits.engine import run_audit
from audits.policy import apply_policy
from audits.probes import registered_probes
from audits.report import AuditReport
from audits.results import Measurement, ProbeResult
from audits.spec import parse_spec
from models.card import load_card
from models.loader import wrap_model

from .report_fixtures import zoo_report

ROOT = Path(__file__).resolve().parents[1]
# Reports written by the tool before result classes moved to audits.results (schema 1.0).
STORED = sorted((ROOT / "tests" / "data" / "reports").glob("*.json"))
DIRECTIONS = {"higher_is_better", "lower_is_better", "neutral"}


def _run_isolated(code: str) -> dict:
    """Run ``code`` in a fresh interpreter (the repository on its path); it prints one JSON line."""
    env_path = f"import sys; sys.path.insert(0, {str(ROOT)!r})\n"
    done = subprocess.run([sys.executable, "-c", env_path + code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_importing_the_results_and_loading_a_stored_report_never_import_torch():
    assert STORED, "tests/data/reports holds the reports written before the move"
    out = _run_isolated(
        "import json, sys\n"
        "import audits.results\n"
        "after_import = 'torch' in sys.modules\n"
        "from audits.report import AuditReport\n"
        f"reports = [AuditReport.load(p) for p in {[str(p) for p in STORED]!r}]\n"
        "n = sum(len(r.measurements()) for r in reports)\n"
        "from audits.policy import evaluate_policy\n"
        "findings = sum(len(evaluate_policy(r)) for r in reports)\n"
        "probes = sorted(m for m in sys.modules if m.startswith(('audits.explain', 'audits.robustness', 'audits.fairness', 'audits.probes')))\n"
        "print(json.dumps({'after_import': after_import, 'torch': 'torch' in sys.modules, 'probes': probes, 'measurements': n, 'findings': findings}))\n"
    )
    assert out == {"after_import": False, "torch": False, "probes": [], "measurements": out["measurements"], "findings": out["findings"]}
    assert out["measurements"] > 100 and out["findings"] > 10


@pytest.mark.parametrize("path", STORED, ids=[p.stem for p in STORED])
def test_a_report_written_before_loads_and_reads_the_same(path):
    raw = json.loads(path.read_text())
    report = AuditReport.load(path)
    # Every result family present in the old report comes back as its class, with its figures.
    assert [r["__type__"] for r in raw["robustness"] + raw["fairness"]] == [type(r).__name__ for r in report.robustness + report.fairness]
    assert report.performance.accuracy == pytest.approx(raw["performance"]["accuracy"]) and report.performance.nonfinite_rows == 0
    assert json.loads(report.to_json())["performance"]["accuracy"] == raw["performance"]["accuracy"]
    # Re-evaluating the policy gives the statuses the old code recorded (plus the new finite-outputs check).
    # The strongest-attack check once named its subject after the lowest attack; it is now 'strongest'.
    def key(check_id, subject):
        return f"{check_id}/strongest" if check_id == "robust_accuracy" else f"{check_id}/{subject}"

    old = {key(f["check_id"], f["subject"]): f["status"] for f in raw["findings"]}
    new = {key(f.check_id, f.subject): f.status for f in apply_policy(report).findings}
    assert {k: v for k, v in new.items() if k in old} == old
    assert new["finite_outputs/"] == "pass"


def test_every_result_family_yields_well_formed_measurements():
    reports = [zoo_report("digits-cnn"), zoo_report("adult-mlp"), *(AuditReport.load(p) for p in STORED)]
    seen: set[str] = set()
    for report in reports:
        for result in [report.performance, *report.probe_results()]:
            ms = list(result.measurements())
            assert ms, f"{type(result).__name__} yields no measurements"
            seen.add(type(result).__name__)
            keys = [m.key for m in ms]
            assert len(keys) == len(set(keys)), f"{type(result).__name__} repeats a measurement key"
            for m in ms:
                assert isinstance(m, Measurement) and m.direction in DIRECTIONS and re.fullmatch(r"[a-z0-9_]+", m.name)
                assert m.value is None or np.isfinite(m.value)
                # (Percentile bootstrap bounds of a biased statistic, such as a group's calibration
                # error, may exclude its point estimate; only the order of the bounds is asserted.)
                assert m.interval is None or m.interval[0] <= m.interval[1], m
                # The evidence starts at one of the result's own fields.
                field = re.match(r"\.(\w+)", m.evidence)
                assert field and field[1] in {f.name for f in dataclasses.fields(result)}, m
    families = {"PerformanceResult", "AttributionResult", "AttackResult", "CorruptionResult", "CalibrationResult", "TabularPerturbationResult"}
    assert families | {"TabularAdversarialResult", "GroupMetricsResult", "CounterfactualFlipResult", "ProxyFeaturesResult", "MitigationPreviewResult"} <= seen


def test_measurements_use_the_shared_names_and_subjects():
    digits = {m.key: m for m in zoo_report("digits-cnn").measurements()}
    fgsm = next(r for r in zoo_report("digits-cnn").robustness if r.method == "fgsm")
    eps = float(fgsm.curve["epsilon"].iloc[4])
    m = digits[f"robust_accuracy/fgsm/linf/eps={eps:.10g}"]
    assert m.value == pytest.approx(fgsm.curve["robust_accuracy"].iloc[4]) and m.direction == "higher_is_better"
    assert m.interval[0] < m.value < m.interval[1] and m.n == int(fgsm.curve["n"].iloc[4])
    assert any(k.startswith("corruption_accuracy/contrast/severity=") for k in digits)
    adult = {m.key: m for m in zoo_report("adult-mlp").measurements()}
    gm = next(r for r in zoo_report("adult-mlp").fairness if r.method == "group_metrics")
    row = gm.disparities[(gm.disparities["grouping"] == "sex") & (gm.disparities["metric"] == "tpr")].iloc[0]
    tpr = adult["tpr_difference/sex"]
    assert tpr.value == pytest.approx(row["difference"]) and tpr.interval == pytest.approx([row["difference_lo"], row["difference_hi"]])
    assert adult["four_fifths_ratio/sex"].direction == "higher_is_better"
    assert adult["counterfactual_flip_rate/sex"].direction == "lower_is_better"
    assert adult["relative_completeness_error_median/integrated_gradients"].n > 0
    assert adult["flip_rate/noise/strength=0.5"].interval is not None


def test_every_registered_result_type_lives_in_audits_results():
    for name, cls in registered_probes().items():
        assert issubclass(cls.result_type, ProbeResult), name
        assert cls.result_type.__module__.startswith("audits.results."), name


def test_no_result_type_is_looked_up_by_its_name_anywhere_in_the_engine_or_the_dashboard():
    names = "|".join(sorted({cls.result_type.__name__ for cls in registered_probes().values()}))
    pattern = re.compile(rf"__name__\s*[=!]=|[\"'](?:{names})[\"']")
    paths = sorted((ROOT / "audits").rglob("*.py")) + sorted((ROOT / "dashboard").rglob("*.py"))
    assert len(paths) > 50
    for path in paths:
        text = re.sub(r"__all__ = \[.*?\]", "", path.read_text(), flags=re.S)  # export lists name classes, legitimately
        text = text.replace('__name__ == "__main__"', "")
        assert not pattern.search(text), f"{path.relative_to(ROOT)} compares against a result class name"


class NaNOnHighIncome(nn.Module):
    """The tabular MLP, but NaN logits for rows whose (scaled) income exceeds 0.5: finite on the loader's dry run."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        return torch.where((x[:, :1] > 0.5), torch.full_like(out, float("nan")), out)


def test_nan_outputs_on_real_rows_invalidate_the_metrics_and_fail_the_audit(tabular_bundle):
    card = load_card(tabular_bundle["card_path"])
    model, data = wrap_model(NaNOnHighIncome(tabular_bundle["net"]), card), load_data(card)
    expected = int((model.predict_proba(data.x)[:, 0] != model.predict_proba(data.x)[:, 0]).sum())
    assert 0 < expected < len(data)
    spec = parse_spec({"probes": [{"name": "integrated_gradients"}, {"name": "calibration"}, {"name": "group_metrics", "params": {"n_boot": 20}}]})
    report = apply_policy(run_audit(model, data, spec))

    perf = report.performance
    assert perf.nonfinite_rows == expected and np.isnan(perf.accuracy) and np.isnan(perf.ece)
    values = {m.name: m.value for m in perf.measurements()}
    assert values["accuracy"] is None and values["ece"] is None and values["nonfinite_output_rows"] == expected
    message = f"{expected} of {len(data)} rows gave non-finite"
    assert {s.name for s in report.skipped} == {"integrated_gradients", "calibration", "group_metrics"}
    assert all(s.reason.startswith(message) for s in report.skipped)
    findings = {f.check_id: f for f in report.findings}
    assert findings["finite_outputs"].status == "fail" and findings["finite_outputs"].detail.startswith(message)
    assert findings["accuracy"].status == "not_evaluated" and findings["calibration"].status == "not_evaluated"
    assert message in findings["calibration"].detail
    # The report round-trips (NaN as null) and says the same after loading.
    again = AuditReport.from_json(report.to_json())
    assert again.performance.nonfinite_rows == expected and {f.key: f.status for f in apply_policy(again).findings} == {
        f.key: f.status for f in report.findings
    }
