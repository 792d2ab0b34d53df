"""Predictions cards (issue 15): decisions of a system the audit cannot load, audited from a table.

The hand-made table has a planted false-positive-rate gap (favourable class "approve", threshold 0.5):

    group A (6 rows): approve-labelled scores 0.9, 0.7; reject-labelled 0.2, 0.3, 0.4, 0.6  -> FPR 1/4
    group B (4 rows): approve-labelled score 0.8;       reject-labelled 0.55, 0.65, 0.1     -> FPR 2/3
    group C (1 row):  reject-labelled 0.7                                                  (a group of one)
"""

from __future__ import annotations

import html
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from audits.cli import main
from audits.data import load_data
from audits.engine import run_audit
from audits.errors import DataError
from audits.report import AuditReport
from audits.spec import parse_spec
from models.card import load_card
from models.loader import load_model

from .conftest import write_card

REPO = Path(__file__).resolve().parents[1]
ROWS = [("A", "approve", 0.9), ("A", "approve", 0.7), ("A", "reject", 0.2), ("A", "reject", 0.3), ("A", "reject", 0.4), ("A", "reject", 0.6),
        ("B", "approve", 0.8), ("B", "reject", 0.55), ("B", "reject", 0.65), ("B", "reject", 0.1), ("C", "reject", 0.7)]  # fmt: skip


def predictions_card(folder: Path, frame: pd.DataFrame | None = None, **predictions) -> Path:
    frame = pd.DataFrame(ROWS, columns=["group", "outcome", "score"]) if frame is None else frame
    frame = frame.assign(x=np.arange(len(frame), dtype=float))
    frame.to_csv(folder / "decisions.csv", index=False)
    card = {
        "name": "rules-engine", "modality": "tabular", "format": "predictions", "class_names": ["reject", "approve"],
        "favourable_class": "approve", "predictions": {"score_column": "score", "threshold": 0.5, **predictions},
        "input": {"kind": "tabular", "features": [{"name": "x", "type": "numeric"}]},
        "data": {"path": "decisions.csv", "label_column": "outcome", "sensitive": ["group"]},
    }  # fmt: skip
    return write_card(folder, card)


def audit(card_path: Path, probes: list[dict]) -> AuditReport:
    card = load_card(card_path)
    return run_audit(load_model(card), load_data(card), parse_spec({"probes": probes}))


def test_a_planted_fpr_gap_its_ratio_to_the_reference_and_the_sweep_match_hand_computation(tmp_path):
    report = audit(
        predictions_card(tmp_path),
        [
            {"name": "group_metrics", "params": {"n_boot": 0, "min_group_size": 2}},
            {"name": "threshold_sweep", "params": {"thresholds": [0.6, 0.7, 0.8], "selection_rate": 0.3, "min_group_size": 2}},
            {"name": "counterfactual_flips"},
        ],
    )
    assert report.provenance.model_calls == 0 and report.provenance.model_format == "predictions"
    assert report.performance.accuracy == pytest.approx(7 / 11)  # right: 0.9, 0.7, 0.2, 0.3, 0.4, 0.8, 0.1
    groups, sweep = report.fairness
    table = groups.table("group").set_index("group")
    assert table.loc["A", "fpr"] == pytest.approx(1 / 4) and table.loc["B", "fpr"] == pytest.approx(2 / 3)
    assert table.loc["C", "status"] == "insufficient data" and np.isnan(table.loc["C", "fpr"])  # flagged, not a rate
    ref = groups.reference.set_index(["group", "metric"])
    assert ref.loc[("B", "fpr"), "reference_group"] == "A"  # the largest group
    assert ref.loc[("B", "fpr"), "ratio"] == pytest.approx(8 / 3) and ref.loc[("B", "fpr"), "difference"] == pytest.approx(5 / 12)
    # The sweep: at 0.6, A's reject-labelled 0.6 and B's 0.65 are still approved; at 0.7 neither.
    assert sweep.at("group", "A", 0.6)["fpr"] == pytest.approx(1 / 4) and sweep.at("group", "B", 0.6)["fpr"] == pytest.approx(1 / 3)
    assert sweep.at("group", "A", 0.7)["fpr"] == 0 and sweep.at("group", "B", 0.7)["fpr"] == 0
    assert sweep.at("group", "A", 0.8)["tpr"] == pytest.approx(1 / 2) and sweep.at("group", "B", 0.5)["fpr"] == pytest.approx(2 / 3)
    assert sweep.at("(all rows)", "(all rows)", 0.5)["selection_rate"] == pytest.approx(7 / 11)
    assert set(sweep.curve[sweep.curve["group"] == "C"]["status"]) == {"insufficient data"}
    # Selection rate 0.3 of 11 rows: the 4th highest score (0.7) is the cut; A selects 2 of 6, B 1 of 4.
    at = sweep.at_rate.set_index("group")
    assert sweep.cutoff == 0.7 and at.loc["A", "selection_rate"] == pytest.approx(2 / 6) and at.loc["B", "selection_rate"] == pytest.approx(1 / 4)
    skipped = {s.name: s.reason for s in report.skipped}
    assert "predictions card" in skipped["counterfactual_flips"]


def test_a_threshold_other_than_one_half_decides_and_labels_must_agree_with_it(tmp_path):
    report = audit(predictions_card(tmp_path, threshold=0.65), [{"name": "group_metrics", "params": {"n_boot": 0, "min_group_size": 2}}])
    table = report.fairness[0].table("group").set_index("group")
    assert table.loc["A", "fpr"] == 0 and table.loc["B", "fpr"] == pytest.approx(1 / 3)  # only B's 0.65 passes
    frame = pd.DataFrame(ROWS, columns=["group", "outcome", "score"]).assign(decision=lambda f: np.where(f["score"] >= 0.5, "approve", "reject"))
    card = predictions_card(tmp_path, frame, label_column="decision", threshold=0.65)
    with pytest.raises(DataError, match="disagree with 'score' >= 0.65"):
        load_data(load_card(card))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.assign(score=f["score"].where(f.index != 3)), "score column 'score' has 1 missing"),
        (lambda f: f.assign(score=f["score"].where(f.index != 2, 1.3)), "score column 'score' holds 1 value\\(s\\) outside \\[0, 1\\]"),
        (lambda f: f.assign(decision=["approve"] * 10 + ["maybe"]), "predicted-label column 'decision'.*'maybe'"),
    ],
)
def test_bad_decisions_get_one_message_naming_the_column_and_the_fix(tmp_path, change, message):
    frame = change(pd.DataFrame(ROWS, columns=["group", "outcome", "score"]))
    extra = {"label_column": "decision", "score_column": None} if "decision" in frame else {}
    card = predictions_card(tmp_path, frame, **extra)
    with pytest.raises(DataError, match=message) as caught:
        load_data(load_card(card))
    assert caught.value.fix
    proc = subprocess.run(
        [sys.executable, "-m", "audits", "run", "--model", str(card), "--out", str(tmp_path / "out")], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and "fix: " in proc.stderr and "Traceback" not in proc.stderr


def test_the_docs_example_runs_from_the_cli_and_writes_report_pdf_and_html(tmp_path):
    out = tmp_path / "out"
    assert main(["run", "--model", str(REPO / "examples" / "predictions" / "card.yaml"), "--out", str(out), "--quiet", "--fail-on", "never"]) == 0
    assert (out / "report.json").is_file() and (out / "report.pdf").read_bytes().startswith(b"%PDF")
    report = AuditReport.load(out / "report.json")
    assert {r.method for r in report.fairness} >= {"group_metrics", "threshold_sweep", "individual_fairness"}
    assert not report.explanations and not report.robustness and not report.failures
    page = html.unescape((out / "report.html").read_text())
    assert "Favourable outcome: 'repaid' (declared in the model card)" in page and "Threshold sweep per group" in page
    # The planted flaw: defaulting men are over-scored, so men's FPR exceeds the reference group's (women).
    ref = next(r for r in report.fairness if r.method == "group_metrics").reference.set_index(["grouping", "group", "metric"])
    fpr = ref.loc[("sex", "male", "fpr")]
    assert fpr["reference_group"] == "female" and fpr["ratio_lo"] > 1


def test_the_reference_group_policy_fails_the_planted_attribute_and_only_it(tmp_path):
    out = tmp_path / "out"
    assert main(["run", "--model", str(REPO / "examples" / "predictions" / "card.yaml"), "--out", str(out), "--quiet", "--fail-on", "never", "--no-pdf", "--no-html"]) == 0
    policy = REPO / "audits" / "policies" / "fairness_reference.yaml"
    assert main(["report", str(out / "report.json"), "--policy", str(policy), "--json", str(tmp_path / "re.json"), "--html", str(tmp_path / "re.html")]) == 0
    statuses = {(f["check_id"], f["subject"]): f["status"] for f in json.loads((tmp_path / "re.json").read_text())["findings"]}
    # Men's false-positive rate is planted at about twice women's (the reference): that fails.
    assert statuses[("reference_fpr_high", "sex=male")] == "fail"
    # Age was not planted: its groups may warn (600 rows give wide intervals) but never fail.
    assert all(s != "fail" for (check, subject), s in statuses.items() if subject.startswith("age_band="))
    assert {c for c, _ in statuses} == {"reference_selection_rate_low", "reference_selection_rate_high", "reference_tpr_low", "reference_fpr_high"}
