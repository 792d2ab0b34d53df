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
