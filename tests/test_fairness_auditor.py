"""Issue 15 with known answers: a declared favourable outcome, the metrics auditors expect, reference groups.

The fixture is a hand-counted confusion table per group. Classes are ``["grant", "deny"]`` and
the card declares ``favourable_class: grant`` (class 0), so every count below is towards
"grant": a false positive is a "grant" decision for a row whose true outcome is "deny".

    group A (10 rows): TP 4, FP 1, FN 2, TN 3
    group B  (6 rows): TP 1, FP 2, FN 1, TN 2
    group C  (1 row):  TP 1           (a group of one: flagged, never a rate)
"""

from __future__ import annotations

import html

import numpy as np
import pandas as pd
import pytest
import torch

from audits.data import AuditData
from audits.errors import CardError
from audits.probes import RunContext, make_probe
from models.card import parse_card
from models.loader import wrap_model

CLASSES = ["grant", "deny"]
COUNTS = {"A": {"tp": 4, "fp": 1, "fn": 2, "tn": 3}, "B": {"tp": 1, "fp": 2, "fn": 1, "tn": 2}, "C": {"tp": 1, "fp": 0, "fn": 0, "tn": 0}}
# Hand-computed rates (favourable = grant).
EXPECTED = {
    "A": {"selection_rate": 5 / 10, "accuracy": 7 / 10, "tpr": 4 / 6, "fpr": 1 / 4, "fnr": 2 / 6, "precision": 4 / 5,
          "tnr": 3 / 4, "npv": 3 / 5, "fdr": 1 / 5, "for": 2 / 5, "base_rate": 6 / 10},
    "B": {"selection_rate": 3 / 6, "accuracy": 3 / 6, "tpr": 1 / 2, "fpr": 2 / 4, "fnr": 1 / 2, "precision": 1 / 3,
          "tnr": 2 / 4, "npv": 2 / 3, "fdr": 2 / 3, "for": 1 / 3, "base_rate": 2 / 6},
}  # fmt: skip


def hand_counted(favourable: str | None = "grant") -> tuple[AuditData, np.ndarray]:
    """Rows of the table above: y and the decision as class indices, P(decision) = 0.8."""
    groups, y, pred = [], [], []
    fav, unfav = CLASSES.index("grant"), CLASSES.index("deny")
    for g, c in COUNTS.items():
        for kind, n in c.items():
            truth = fav if kind in ("tp", "fn") else unfav
            decision = fav if kind in ("tp", "fp") else unfav
            groups += [g] * n
            y += [truth] * n
            pred += [decision] * n
    pred = np.array(pred)
    proba = np.where(pred[:, None] == np.arange(2)[None, :], 0.8, 0.2)
    data = AuditData(
        modality="tabular", x=np.zeros((len(y), 1), np.float32), y=np.array(y), class_names=CLASSES,
        attributes=pd.DataFrame({"applicant": groups}), sensitive=["applicant"], source="hand-counted", sha256="-",
        feature_names=["x"], feature_groups=[np.array([0])], favourable_class=favourable,
    )  # fmt: skip
    return data, proba


def _handle():
    card = parse_card(
        {
            "name": "scores", "modality": "tabular", "format": "safetensors", "weights": "unused",
            "architecture": {"target": "torch.nn:Linear", "kwargs": {"in_features": 1, "out_features": 2}},
            "class_names": CLASSES, "input": {"kind": "tabular", "features": [{"name": "x", "type": "numeric"}]},
        },
        base_dir=".",
    )  # fmt: skip
    return wrap_model(torch.nn.Linear(1, 2), card)


def group_metrics(data: AuditData, proba: np.ndarray, **params):
    context = RunContext(seed=0, proba=proba, sample_indices=np.arange(3))
    return make_probe("group_metrics", {"n_boot": 0, "min_group_size": 2, **params}).run(_handle(), data, context)


# --- 2. the declared favourable outcome ---------------------------------------------------------


def test_the_declared_favourable_class_decides_every_rate():
    result = group_metrics(*hand_counted("grant"))
    assert result.positive_class == "grant" and result.favourable_declared
    table = result.table("applicant").set_index("group")
    for group, rates in EXPECTED.items():
        for metric in ("selection_rate", "accuracy", "tpr", "fpr", "fnr", "precision"):
            assert table.loc[group, metric] == pytest.approx(rates[metric], abs=1e-12), (group, metric)
    assert not any("No favourable_class" in n for n in result.notes)


def test_without_a_declared_favourable_class_a_binary_model_counts_class_1_and_says_so():
    result = group_metrics(*hand_counted(None))
    assert result.positive_class == "deny" and not result.favourable_declared
    assert any("No favourable_class in the model card" in n and "'deny'" in n for n in result.notes)
    # Counted towards "deny": group A's selection rate is its share of deny decisions (5 of 10).
    table = result.table("applicant").set_index("group")
    assert table.loc["A", "fpr"] == pytest.approx(2 / 6)  # FN towards grant are FP towards deny


def test_a_favourable_class_that_is_not_a_class_is_refused_naming_the_field():
    raw = {
        "name": "m", "modality": "tabular", "format": "torchscript", "weights": "m.pt", "class_names": CLASSES,
        "favourable_class": "granted", "input": {"kind": "tabular", "features": [{"name": "x", "type": "numeric"}]},
    }  # fmt: skip
    with pytest.raises(CardError, match="favourable_class"):
        parse_card(raw, base_dir=".")


def test_the_report_states_the_favourable_outcome_in_the_fairness_section(tabular_bundle):
    from audits.data import load_data
    from audits.engine import run_audit
    from audits.render.html import render_html
    from audits.spec import parse_spec
    from models.loader import load_model

    spec = parse_spec({"probes": [{"name": "group_metrics", "params": {"n_boot": 0}}]})
    for favourable, expected in (("high", "Favourable outcome: 'high' (declared in the model card)"), (None, "Favourable outcome: 'high' (class 1), ASSUMED")):
        card = parse_card({**tabular_bundle["card"], "favourable_class": favourable}, base_dir=tabular_bundle["dir"])
        report = run_audit(load_model(card, device="cpu"), load_data(card), spec)
        assert expected in html.unescape(render_html(report))


# --- 4. the metrics auditors expect ------------------------------------------------------------


def test_every_rate_of_the_hand_counted_tables_is_exact_and_a_group_of_one_is_flagged():
    result = group_metrics(*hand_counted("grant"))
    table = result.table("applicant").set_index("group")
    for group, rates in EXPECTED.items():
        assert table.loc[group, "n"] == sum(COUNTS[group].values()) and table.loc[group, "status"] == "ok"
        for metric, value in rates.items():
            assert table.loc[group, metric] == pytest.approx(value, abs=1e-12), (group, metric)
    assert table.loc["C", "status"] == "insufficient data"
    assert all(np.isnan(table.loc["C", m]) for m in EXPECTED["A"])
    assert any("C (n=1)" in n for n in result.notes)


def test_shared_metrics_equal_fairlearns_metricframe_on_the_hand_counted_tables():
    from fairlearn.metrics import MetricFrame, false_negative_rate, false_positive_rate, selection_rate, true_negative_rate, true_positive_rate
    from sklearn.metrics import accuracy_score, precision_score

    data, proba = hand_counted("grant")
    fav = CLASSES.index("grant")
    y_true, y_pred = (data.y == fav).astype(int), (proba.argmax(axis=1) == fav).astype(int)
    keep = data.attributes["applicant"].to_numpy() != "C"
    shared = {
        "selection_rate": selection_rate, "accuracy": accuracy_score, "tpr": true_positive_rate, "fpr": false_positive_rate,
        "fnr": false_negative_rate, "tnr": true_negative_rate, "precision": precision_score,
        "npv": lambda t, p: precision_score(t, p, pos_label=0),
    }  # fmt: skip
    frame = MetricFrame(metrics=shared, y_true=y_true[keep], y_pred=y_pred[keep], sensitive_features=data.attributes["applicant"][keep])
    table = group_metrics(data, proba).table("applicant").set_index("group")
    for group in ("A", "B"):
        for metric in shared:
            assert table.loc[group, metric] == pytest.approx(frame.by_group.loc[group, metric], abs=1e-12), (group, metric)


def test_calibration_within_groups_gives_each_group_its_reliability_curve():
    result = group_metrics(*hand_counted("grant"))
    rel = result.reliability.set_index("group")
    # Every decision has confidence 0.8: one bin per group, accuracy = the group's share of right decisions.
    assert set(rel.index) == {"A", "B"}  # C (one row) is insufficient: no curve
    assert rel.loc["A", "count"] == 10 and rel.loc["A", "confidence"] == pytest.approx(0.8) and rel.loc["A", "accuracy"] == pytest.approx(0.7)
    assert rel.loc["B", "accuracy"] == pytest.approx(0.5)
    table = result.table("applicant").set_index("group")
    assert table.loc["A", "calibration_error"] == pytest.approx(0.1) and table.loc["B", "calibration_error"] == pytest.approx(0.3)


def _benefit_data(groups: list[str], benefits: list[int], x: np.ndarray | None = None) -> tuple[AuditData, np.ndarray]:
    """Rows whose benefit (decision - label + 1, favourable = class 1) is as given: 2 = FP, 0 = FN, 1 = right."""
    decision = np.array([1 if b == 2 else (0 if b == 0 else 1) for b in benefits])
    label = np.array([0 if b == 2 else (1 if b == 0 else 1) for b in benefits])
    x = np.zeros((len(benefits), 1), np.float32) if x is None else x
    data = AuditData(
        modality="tabular", x=x, y=label, class_names=["no", "yes"], attributes=pd.DataFrame({"g": groups}), sensitive=["g"],
        source="benefits", sha256="-", feature_names=["x"], feature_groups=[np.array([0])], favourable_class="yes",
    )  # fmt: skip
    return data, np.stack([1 - decision, decision], axis=1).astype(np.float64)


def individual(data: AuditData, proba: np.ndarray, **params):
    context = RunContext(seed=0, proba=proba, sample_indices=np.arange(3))
    return make_probe("individual_fairness", {"min_group_size": 1, **params}).run(_handle(), data, context)


def test_equal_benefits_give_a_theil_index_of_zero():
    result = individual(*_benefit_data(["a", "a", "b", "b"], [1, 1, 1, 1]))
    assert result.overall["theil"] == 0.0 and result.overall["generalized_entropy"] == 0.0
    assert (result.decomposition[["total", "between", "within"]] == 0).all().all()


def test_theil_splits_into_a_known_between_group_and_within_group_part():
    # Group a benefits [2, 2], group b [1, 1]: no inequality within groups, all of it between them.
    result = individual(*_benefit_data(["a", "a", "b", "b"], [2, 2, 1, 1]))
    theil = result.decomposition.set_index("index").loc["theil"]
    expected = 2 / 3 * np.log(4 / 3) + 1 / 3 * np.log(2 / 3)
    assert theil["total"] == pytest.approx(expected) and theil["between"] == pytest.approx(expected) and theil["within"] == pytest.approx(0.0, abs=1e-15)
    # Group a [2, 0], group b [1, 1]: equal group means, so all of it within groups: Theil = ln(2) / 2.
    result = individual(*_benefit_data(["a", "a", "b", "b"], [2, 0, 1, 1]))
    theil = result.decomposition.set_index("index").loc["theil"]
    assert theil["total"] == pytest.approx(np.log(2) / 2) and theil["between"] == pytest.approx(0.0, abs=1e-15)
    assert theil["within"] == pytest.approx(np.log(2) / 2)
    # alpha 2 on the same rows: mean((b/mu)^2 - 1) / 2 = ((4 + 0 + 1 + 1) / 4 - 1) / 2 = 0.25, all within groups.
    ge = result.decomposition.set_index("index").loc["generalized_entropy"]
    assert ge["total"] == pytest.approx(0.25) and ge["between"] + ge["within"] == pytest.approx(0.25)


def test_consistency_of_nearest_neighbours_matches_hand_computation():
    x = np.array([[0.0], [0.1], [0.2], [10.0], [10.1], [10.2]], np.float32)
    same = individual(*_benefit_data(["a"] * 3 + ["b"] * 3, [1, 1, 1, 1, 1, 1], x), k=2)
    # Decisions 1,1,1 | 1,1,1 (every label 'yes' decided 'yes'): every row agrees with its neighbours.
    assert same.overall["consistency"] == 1.0
    data, proba = _benefit_data(["a"] * 3 + ["b"] * 3, [1, 1, 0, 1, 1, 1], x)  # row 2 denied
    result = individual(data, proba, k=2)
    # Rows 0 and 1 each see one denial among two neighbours (0.5); row 2 sees two grants (0); the far cluster agrees (1).
    assert result.overall["consistency"] == pytest.approx((0.5 + 0.5 + 0 + 3) / 6)
    groups = result.groups.set_index("group")
    assert groups.loc["a", "consistency"] == pytest.approx(1 / 3) and groups.loc["b", "consistency"] == 1.0


# --- 3. reference groups -----------------------------------------------------------------------


def test_disparities_to_the_largest_group_are_exact_with_a_fisher_test():
    from scipy.stats import fisher_exact

    result = group_metrics(*hand_counted("grant"), n_boot=200)
    ref = result.reference.set_index(["group", "metric"])
    assert set(result.reference["reference_group"]) == {"A"} and set(result.reference["reference_source"]) == {"largest group"}
    for metric, value in EXPECTED["B"].items():
        row = ref.loc[("B", metric)]
        a = EXPECTED["A"][metric]
        assert row["difference"] == pytest.approx(value - a, abs=1e-12), metric
        assert row["ratio"] == pytest.approx(value / a, abs=1e-12), metric
        assert row["difference_lo"] <= row["difference"] <= row["difference_hi"]
    fpr = ref.loc[("B", "fpr")]
    assert fpr["difference"] == pytest.approx(0.25) and fpr["ratio"] == pytest.approx(2.0)
    # FPR: B has 2 FP of 4 negatives, A 1 of 4.
    assert fpr["test"] == "fisher_exact" and fpr["p_value"] == pytest.approx(fisher_exact([[2, 2], [1, 3]]).pvalue)
    assert ref.loc[("C", "fpr"), "status"] == "insufficient data" and np.isnan(ref.loc[("C", "fpr"), "ratio"])
    names = {(m.name, m.subject) for m in result.measurements()}
    assert ("fpr_ratio_to_reference", "applicant=B") in names


def test_a_declared_reference_group_is_used_and_an_unknown_one_is_refused():
    from dataclasses import replace

    from audits.errors import DataError

    data, proba = hand_counted("grant")
    result = group_metrics(replace(data, reference_groups={"applicant": "B"}), proba)
    ref = result.reference.set_index(["group", "metric"])
    assert set(result.reference["reference_source"]) == {"declared in the card"}
    assert ref.loc[("A", "fpr"), "ratio"] == pytest.approx(0.5) and ref.loc[("A", "fpr"), "difference"] == pytest.approx(-0.25)
    with pytest.raises(DataError, match="reference group 'Z'"):
        group_metrics(replace(data, reference_groups={"applicant": "Z"}), proba)
    raw = {
        "name": "m", "modality": "tabular", "format": "torchscript", "weights": "m.pt", "class_names": CLASSES,
        "input": {"kind": "tabular", "features": [{"name": "x", "type": "numeric"}]},
        "data": {"path": "d.csv", "sensitive": ["sex"], "reference_groups": {"race": "White"}},
    }  # fmt: skip
    with pytest.raises(CardError, match="reference_groups"):
        parse_card(raw, base_dir=".")


def test_benjamini_hochberg_q_values_by_hand():
    from audits.stats import benjamini_hochberg

    q = benjamini_hochberg([0.01, 0.04, 0.03, 0.5, np.nan])
    assert q[:4] == pytest.approx([0.04, 0.16 / 3, 0.16 / 3, 0.5]) and np.isnan(q[4])
