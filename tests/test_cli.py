"""The CLI as a user runs it: zoo models end to end, a model from outside the zoo, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from audits.cli import main
from audits.report import AuditReport
from models.registry import zoo_names

from .conftest import write_card

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def zoo_reports(tmp_path_factory) -> dict[str, tuple[Path, AuditReport]]:
    """One default-spec audit per zoo model through the CLI (shared by the tests below)."""
    out = {}
    for name in ("digits-cnn", "adult-mlp"):
        folder = tmp_path_factory.mktemp(name)
        assert main(["run", "--model", name, "--out", str(folder), "--quiet", "--figures", "4", "--fail-on", "never"]) == 0
        out[name] = (folder, AuditReport.load(folder / "report.json"))
    return out


def test_zoo_lists_both_models(capsys):
    assert {"digits-cnn", "adult-mlp"} <= set(zoo_names())
    assert main(["models"]) == 0
    listing = capsys.readouterr().out
    assert "digits-cnn" in listing and "adult-mlp" in listing


def test_digits_audit_writes_report_and_overlays(zoo_reports):
    folder, report = zoo_reports["digits-cnn"]
    methods = {r.method for r in report.explanations}
    assert {"grad_cam", "integrated_gradients", "kernel_shap_image", "lime_image"} <= methods
    assert not report.failures, report.failures
    assert report.performance.accuracy > 0.9
    assert report.provenance.weights_sha256 and report.provenance.parameter_count > 0
    pngs = sorted((folder / "attributions").glob("*.png"))
    assert pngs and all(p.stat().st_size > 5000 for p in pngs)
    raw = json.loads((folder / "report.json").read_text())
    assert raw["provenance"]["model_name"] == "digits-cnn"


def test_adult_top_features_are_where_the_literature_puts_them(zoo_reports):
    _, report = zoo_reports["adult-mlp"]
    assert not report.failures, report.failures
    known = {"relationship", "marital-status", "capital-gain", "education", "age", "occupation"}
    for method in ("kernel_shap", "integrated_gradients", "lime"):
        top = report.explanation(method).top_features(4)
        assert len(set(top) & known) >= 3, (method, top)
    shap = report.explanation("kernel_shap")
    assert shap.quality["exact"] is True or bool(np.all(shap.quality["exact"]))


def test_a_torchscript_model_outside_the_zoo_audits_the_same_way(tmp_path, image_bundle):
    net, folder = image_bundle["net"], image_bundle["dir"]
    torch.jit.save(torch.jit.trace(net, torch.zeros(1, 1, 8, 8)), str(folder / "model.ts"))
    card = {**image_bundle["card"], "name": "outside-ts", "format": "torchscript", "weights": "model.ts"}
    card.pop("architecture")
    card_path = write_card(folder, card)
    out = tmp_path / "out"
    spec = tmp_path / "spec.yaml"
    spec.write_text("samples: 2\nexclude: [lime_image, kernel_shap_image]\n")
    assert main(["run", "--model", str(card_path), "--spec", str(spec), "--out", str(out), "--quiet", "--fail-on", "never"]) == 0
    report = AuditReport.load(out / "report.json")
    assert report.provenance.model_format == "torchscript"
    assert {r.method for r in report.explanations} >= {"integrated_gradients", "saliency", "occlusion"}
    assert all(r.attributions.shape == (2, 8, 8) for r in report.explanations)


def test_bad_input_exits_2_with_one_paragraph_and_no_traceback(tmp_path, tabular_bundle):
    cases = [
        ["run", "--model", "no-such-model", "--out", str(tmp_path / "o1")],
        ["run", "--model", str(tabular_bundle["card_path"]), "--spec", str(tmp_path / "missing.yaml"), "--out", str(tmp_path / "o2")],
    ]
    (tabular_bundle["dir"] / "eval.csv").write_text("income,age\n1,2\n")
    cases.append(["run", "--model", str(tabular_bundle["card_path"]), "--out", str(tmp_path / "o3")])
    for argv in cases:
        proc = subprocess.run([sys.executable, "-m", "audits", *argv], capture_output=True, text=True, cwd=REPO, timeout=120)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith("error: ") and "fix: " in proc.stderr
        assert "Traceback" not in proc.stderr


def test_engine_does_not_import_the_ui():
    for path in (REPO / "audits").rglob("*.py"):
        text = path.read_text()
        assert "import streamlit" not in text and "from streamlit" not in text, path


@pytest.mark.parametrize("samples", ["0", "-5"])
def test_samples_override_goes_through_the_spec_parser(tmp_path, tabular_bundle, capsys, samples):
    out = tmp_path / "out"
    assert main(["run", "--model", str(tabular_bundle["card_path"]), "--out", str(out), "--quiet", "--samples", samples]) == 2
    err = capsys.readouterr().err
    assert f"--samples {samples}" in err and "samples: Input should be greater than or equal to 1" in err
    assert not out.exists()


def test_seed_override_keeps_the_spec_file(tmp_path, tabular_bundle):
    spec = tmp_path / "spec.yaml"
    spec.write_text("samples: 2\nprobes: [{name: integrated_gradients}]\n")
    out = tmp_path / "out"
    assert (
        main(["run", "--model", str(tabular_bundle["card_path"]), "--spec", str(spec), "--out", str(out), "--quiet", "--seed", "7", "--no-pdf", "--no-html", "--fail-on", "never"])
        == 0
    )
    report = AuditReport.load(out / "report.json")
    assert report.provenance.seed == 7 and report.provenance.spec["samples"] == 2
    assert [r.method for r in report.explanations] == ["integrated_gradients"]


def test_audits_run_exits_1_when_the_policy_fails_and_fail_on_changes_that(tmp_path, tabular_bundle):
    # The tiny MLP has random weights: its accuracy fails the default policy's 0.8 bar.
    spec = tmp_path / "spec.yaml"
    spec.write_text("samples: 2\nprobes: [{name: integrated_gradients, params: {n_steps: 4}}]\n")
    argv = ["run", "--model", str(tabular_bundle["card_path"]), "--spec", str(spec), "--quiet", "--no-pdf", "--no-html", "--figures", "0"]
    assert main([*argv, "--out", str(tmp_path / "a")]) == 1
    report = AuditReport.load(tmp_path / "a" / "report.json")
    assert next(f for f in report.findings if f.check_id == "accuracy").status == "fail"
    assert main([*argv, "--out", str(tmp_path / "b"), "--fail-on", "never"]) == 0
    assert main([*argv, "--out", str(tmp_path / "c"), "--fail-on", "warn"]) == 1
