"""`audits scan` on the four zoo models and SQLite: runs recorded, CI exit codes, JUnit parsed back, a rescan that is identical."""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from audits.cli import main
from audits.store import open_store

ZOO = ["adult-mlp", "digits-cnn", "digits-vit", "toxicity-minilm"]
# Small sample budgets: every model still gets its forward pass, attributions, calibration and group metrics.
FAST_SPEC = {
    "samples": 1,
    "max_rows": 64,
    "exclude": ["kernel_shap_image", "lime_image", "kernel_shap_text", "lime_text", "identity_terms", "text_robustness", "occlusion", "corruptions"],
}
LENIENT = {"name": "lenient", "checks": [{"id": "accuracy", "check": "min_accuracy", "threshold": 0.5}]}
STRICT = {"name": "strict", "checks": [{"id": "accuracy", "check": "min_accuracy", "threshold": 0.99}]}  # adult-mlp is ~85% accurate


@pytest.fixture(scope="module")
def zoo_scans(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("zoo-scan")
    plan = folder / "plan.yaml"
    models = [{"zoo": "adult-mlp", "policy": STRICT}] + [{"zoo": name} for name in ZOO[1:]]
    plan.write_text(yaml.safe_dump({"name": "zoo-ci", "spec": FAST_SPEC, "policy": LENIENT, "models": models}))
    url = f"sqlite:///{folder / 'store.db'}"
    out = {"folder": folder, "url": url, "codes": []}
    for i, fail_on in enumerate(("fail", "never")):
        argv = [
            "scan",
            "--plan",
            str(plan),
            "--store",
            url,
            "--fail-on",
            fail_on,
            "--junit",
            str(folder / f"junit{i}.xml"),
            "--summary",
            str(folder / f"summary{i}.md"),
        ]
        out["codes"].append(main(argv))
    return out


def test_every_model_is_recorded_once_per_scan_and_a_failing_policy_exits_1(zoo_scans):
    assert zoo_scans["codes"] == [1, 0]  # adult-mlp fails its strict policy; --fail-on never exits 0 on the same result
    store = open_store(zoo_scans["url"])
    runs = store.runs(plan="zoo-ci")
    assert sorted(r.model_name for r in runs) == sorted(ZOO * 2)
    assert {r.status for r in runs} == {"completed"}
    latest = {r.model_name: r for r in reversed(runs)}  # newest last wins
    assert latest["adult-mlp"].verdict == "fail" and latest["adult-mlp"].policy_name == "strict"
    assert {latest[m].verdict for m in ZOO[1:]} <= {"pass", "warn"}
    assert store.verify().ok


def test_junit_has_one_test_case_per_finding_with_detail_and_evidence(zoo_scans):
    store = open_store(zoo_scans["url"])
    root = ET.parse(zoo_scans["folder"] / "junit0.xml").getroot()
    suites = {s.get("name"): s for s in root.iter("testsuite")}
    assert sorted(suites) == sorted(f"zoo-ci/{m}" for m in ZOO)
    total_failures = 0
    for name, suite in suites.items():
        run_id = next(p.get("value") for p in suite.iter("property") if p.get("name") == "run_id")
        report = store.load_report(run_id)
        assert report.provenance.model_name == name.split("/", 1)[1]
        cases = suite.findall("testcase")
        assert len(cases) == len(report.findings) == int(suite.get("tests"))
        assert [c.get("name") for c in cases] == [f"{f.key}: {f.title}" for f in report.findings]
        for case, finding in zip(cases, report.findings, strict=True):
            failure = case.find("failure")
            assert (failure is not None) == (finding.status == "fail")
            if failure is not None:
                assert finding.detail in failure.get("message") and finding.evidence in failure.get("message")
                total_failures += 1
            assert (case.find("skipped") is not None) == (finding.status == "not_evaluated")
    assert total_failures == int(root.get("failures")) == 1  # adult-mlp's accuracy under the strict policy


def test_a_rescan_gives_identical_findings_and_no_regression(zoo_scans):
    store = open_store(zoo_scans["url"])
    for model in ZOO:
        newer, older = store.runs(model=model, plan="zoo-ci")
        a, b = store.load_report(older.run_id), store.load_report(newer.run_id)
        assert [dataclasses.asdict(f) for f in a.findings] == [dataclasses.asdict(f) for f in b.findings]
        assert [(m.name, m.subject, m.value) for m in a.measurements()] == [(m.name, m.subject, m.value) for m in b.measurements()]
        assert (older.seed, older.weights_sha256, older.data_sha256) == (newer.seed, newer.weights_sha256, newer.data_sha256)
    summary = (zoo_scans["folder"] / "summary1.md").read_text()
    rows = [line.split("|") for line in summary.splitlines() if line.startswith("| ") and "`" in line]
    assert sorted(r[1].strip() for r in rows) == sorted(ZOO)
    assert all(r[7].strip() == "0" for r in rows)  # regressions column
    assert "exit code 0 (fail on never)" in summary and "regressed" not in summary


def test_the_summary_names_the_failing_finding(zoo_scans):
    summary = (zoo_scans["folder"] / "summary0.md").read_text()
    assert "exit code 1 (fail on fail)" in summary
    assert "**adult-mlp** fail: Accuracy" in summary


def test_audits_run_fail_on_gives_the_same_exit_codes(tmp_path, tabular_bundle):
    spec = tmp_path / "spec.yaml"
    spec.write_text("samples: 1\nprobes: [{name: calibration}]\n")
    strict = tmp_path / "strict.yaml"
    strict.write_text(yaml.safe_dump(STRICT))
    base = [
        "run",
        "--model",
        str(tabular_bundle["card_path"]),
        "--spec",
        str(spec),
        "--policy",
        str(strict),
        "--quiet",
        "--no-pdf",
        "--no-html",
        "--figures",
        "0",
    ]
    assert main([*base, "--out", str(tmp_path / "a")]) == 1  # default: fail
    assert main([*base, "--out", str(tmp_path / "b"), "--fail-on", "never"]) == 0
    lenient = tmp_path / "lenient.yaml"
    lenient.write_text(yaml.safe_dump({"name": "l", "checks": [{"check": "min_accuracy", "threshold": 0.0}]}))
    assert main([*base[:-7], "--policy", str(lenient), "--quiet", "--no-pdf", "--no-html", "--out", str(tmp_path / "c"), "--fail-on", "warn"]) == 0
    assert Path(tmp_path / "c" / "report.json").is_file()
