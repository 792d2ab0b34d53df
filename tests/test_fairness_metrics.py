"""Group metrics with known answers: planted gaps, fairlearn's numbers, tiny and missing groups, the bootstrap."""

from __future__ import annotations

import functools
import json

import numpy as np
import pandas as pd
import pytest
import torch
from fairlearn.metrics import (
    MetricFrame,
    count,
    demographic_parity_difference,
    demographic_parity_ratio,
    equal_opportunity_difference,
    equalized_odds_difference,
    false_negative_rate,
    false_positive_rate,
    mean_prediction,
    selection_rate,
    true_negative_rate,
    true_positive_rate,
)
from sklearn.metrics import accuracy_score, balanced_accuracy_score, precision_score

from audits.data import AuditData
from audits.errors import DataError
from audits.fairness import _bootstrap
from audits.fairness.group_metrics import INSUFFICIENT, MISSING_GROUP, GroupMetricsResult
from audits.performance import reliability_table
from audits.probes import RunContext, make_probe
from audits.serialization import from_jsonable, to_jsonable
from models.card import parse_card
from models.loader import wrap_model

BINARY_METRICS = [
    "selection_rate", "base_rate", "accuracy", "tpr", "fpr", "fnr", "tnr", "precision", "npv", "fdr", "for", "mean_score", "calibration_error",
]  # fmt: skip


def _handle(n_classes: int):
    """A real model handle; group_metrics never calls it (the scores come from the shared pass)."""
    card = parse_card(
        {
            "name": "scores", "modality": "tabular", "format": "safetensors", "weights": "unused",
            "architecture": {"target": "torch.nn:Linear", "kwargs": {"in_features": 1, "out_features": n_classes}},
            "class_names": [f"c{i}" for i in range(n_classes)],
            "input": {"kind": "tabular", "features": [{"name": "x", "type": "numeric"}]},
        },
        base_dir=".",
    )  # fmt: skip
    return wrap_model(torch.nn.Linear(1, n_classes), card)


def _data(attributes: dict, y: np.ndarray, n_classes: int) -> AuditData:
    return AuditData(
        modality="tabular", x=np.zeros((len(y), 1), np.float32), y=y, class_names=[f"c{i}" for i in range(n_classes)],
        attributes=pd.DataFrame(attributes), sensitive=list(attributes), source="synthetic", sha256="-",
        feature_names=["x"], feature_groups=[np.array([0])],
    )  # fmt: skip


def binary_case(n: int, rates: dict[str, float], seed: int, *, race: bool = False):
    """Labels, scores and a group whose selection rate (score > 0.5) is ``rates[group]`` in expectation."""
    rng = np.random.default_rng(seed)
    groups = np.array(list(rates))
    sex = rng.choice(groups, n)
    y = (rng.random(n) < 0.4).astype(np.int64)
    selected = rng.random(n) < np.vectorize(rates.get)(sex)
    # Scores above 0.5 exactly for the selected rows, and informative about y within each side.
    score = np.where(selected, 0.5 + 0.45 * rng.beta(1 + y, 2 - y), 0.5 - 0.45 * rng.beta(2 - y, 1 + y))
    attrs = {"sex": sex}
    if race:
        attrs["race"] = rng.choice(["W", "B", "A"], n, p=[0.6, 0.25, 0.15])
    return _data(attrs, y, 2), np.stack([1 - score, score], axis=1)


def run(data: AuditData, proba: np.ndarray, seed: int = 0, **params) -> GroupMetricsResult:
    model = _handle(proba.shape[1])
    context = RunContext(seed=seed, proba=proba, sample_indices=np.arange(3))
    result = make_probe("group_metrics", params).run(model, data, context)
    assert result.cost.model_calls == 0  # it reuses the shared forward pass
    return result


def _criterion(result: GroupMetricsResult, grouping: str, name: str) -> tuple[float, float, float]:
    row = result.criterion(grouping, name)
    return row["value"], row["lo"], row["hi"]


def test_a_planted_selection_rate_gap_is_recovered_with_an_interval_that_covers_it():
    data, proba = binary_case(6000, {"F": 0.3, "M": 0.5}, seed=1)
    result = run(data, proba, n_boot=1000)
    value, lo, hi = _criterion(result, "sex", "demographic_parity_difference")
    assert abs(value - 0.2) < 0.04 and lo <= 0.2 <= hi and hi - lo < 0.08
    ratio = result.four_fifths.set_index("grouping").loc["sex"]
    assert ratio["lo"] <= 0.6 <= ratio["hi"] and ratio["verdict"] == "fail" and ratio["conclusive"]
    assert ratio["lowest_group"] == "F" and result.criterion("sex", "demographic_parity_difference")["worst_group"] == "F"


@pytest.mark.parametrize(("rates", "truth"), [({"F": 0.3, "M": 0.5}, 0.2), ({"F": 0.4, "M": 0.4}, 0.0)])
def test_intervals_cover_the_true_gap_at_about_their_nominal_rate(rates, truth):
    # 95% intervals over 40 independent data sets: a gap of 0 must be covered too (signed gaps).
    covered = []
    for seed in range(40):
        data, proba = binary_case(1500, rates, seed=100 + seed)
        _, lo, hi = _criterion(run(data, proba, seed=seed, n_boot=400, intersections=False), "sex", "demographic_parity_difference")
        covered.append(lo <= truth <= hi)
    assert np.mean(covered) >= 0.85


def test_with_no_gap_the_intervals_cover_zero_and_the_ratio_covers_one():
    data, proba = binary_case(4000, {"F": 0.4, "M": 0.4}, seed=7)
    result = run(data, proba, n_boot=1000)
    for name in ("demographic_parity_difference", "equal_opportunity_difference", "equal_accuracy_gap"):
        _, lo, hi = _criterion(result, "sex", name)
        assert lo <= 0.0 <= hi, name
    ratio = result.four_fifths.set_index("grouping").loc["sex"]
    assert ratio["lo"] <= 1.0 <= ratio["hi"] and ratio["verdict"] == "pass"


def _fairlearn_frame(data: AuditData, proba: np.ndarray, columns: list[str]) -> MetricFrame:
    y, pred = data.y, proba.argmax(axis=1)
    confidence, correct = proba.max(axis=1), (pred == y)
    metrics = {
        "n": count, "selection_rate": selection_rate, "accuracy": accuracy_score, "tpr": true_positive_rate,
        "fpr": false_positive_rate, "fnr": false_negative_rate, "precision": functools.partial(precision_score, zero_division=np.nan),
        "tnr": true_negative_rate, "npv": functools.partial(precision_score, pos_label=0, zero_division=np.nan),
        "fdr": lambda y_true, y_pred: 1.0 - precision_score(y_true, y_pred, zero_division=np.nan),
        "for": lambda y_true, y_pred: 1.0 - precision_score(y_true, y_pred, pos_label=0, zero_division=np.nan),
        "base_rate": lambda y_true, y_pred: mean_prediction(y_true, y_true),
        "mean_score": lambda y_true, y_pred, score: float(np.mean(score)),
        "calibration_error": lambda y_true, y_pred, conf, ok: reliability_table(conf, ok, 10)[1],
    }  # fmt: skip
    params = {"mean_score": {"score": proba[:, 1]}, "calibration_error": {"conf": confidence, "ok": correct}}
    return MetricFrame(metrics=metrics, y_true=y, y_pred=pred, sensitive_features=data.attributes[columns], sample_params=params)


def test_point_estimates_equal_fairlearn_metricframe_for_every_metric_and_group():
    data, proba = binary_case(3000, {"F": 0.3, "M": 0.55}, seed=3, race=True)
    result = run(data, proba, n_boot=0)
    for grouping, columns in (("sex", ["sex"]), ("race", ["race"]), ("sex x race", ["sex", "race"])):
        frame = _fairlearn_frame(data, proba, columns)
        table = result.table(grouping)
        assert len(table) == len(frame.by_group) and (table["status"] == "ok").all()
        for _, row in table.iterrows():
            key = tuple(row["group"].split(" & ")) if len(columns) > 1 else row["group"]
            expected = frame.by_group.loc[key]
            assert row["n"] == expected["n"]
            for m in BINARY_METRICS:
                assert row[m] == pytest.approx(expected[m], rel=1e-12, abs=1e-12), (grouping, key, m)
        disp = result.disparities[result.disparities["grouping"] == grouping].set_index("metric")
        for m in BINARY_METRICS:
            assert disp.loc[m, "difference"] == pytest.approx(frame.difference()[m], abs=1e-12)
            assert disp.loc[m, "ratio"] == pytest.approx(frame.ratio()[m], abs=1e-12)
            assert disp.loc[m, "difference_to_overall"] == pytest.approx(frame.difference(method="to_overall")[m], abs=1e-12)
            assert disp.loc[m, "ratio_to_overall"] == pytest.approx(frame.ratio(method="to_overall")[m], abs=1e-12)
        sf = data.attributes[columns]
        y, pred = data.y, proba.argmax(axis=1)
        named = {
            "demographic_parity_difference": demographic_parity_difference(y, pred, sensitive_features=sf),
            "demographic_parity_ratio": demographic_parity_ratio(y, pred, sensitive_features=sf),
            "equalized_odds_difference": equalized_odds_difference(y, pred, sensitive_features=sf),
            "equal_opportunity_difference": equal_opportunity_difference(y, pred, sensitive_features=sf),
        }
        for name, expected in named.items():
            assert result.criterion(grouping, name)["value"] == pytest.approx(expected, abs=1e-12), (grouping, name)
    overall = result.overall.set_index("metric")["value"]
    whole = _fairlearn_frame(data, proba, ["sex"]).overall
    for m in BINARY_METRICS:
        assert overall[m] == pytest.approx(whole[m], abs=1e-12)


def test_multiclass_models_get_accuracy_type_metrics_equal_to_fairlearn():
    rng = np.random.default_rng(5)
    n, k = 2400, 4
    site = rng.choice(["A", "B", "C"], n, p=[0.5, 0.3, 0.2])
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) + 2.0 * np.eye(k)[y] * np.where(site == "C", 0.5, 1.5)[:, None]
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    data = _data({"site": site}, y, k)
    result = run(data, proba, n_boot=200)
    assert result.task == "multiclass" and result.metrics == ["accuracy", "error_rate", "balanced_accuracy", "mean_confidence", "calibration_error"]
    assert result.four_fifths.empty and "selection_rate" not in result.groups and any("Multiclass" in n for n in result.notes)
    pred, conf = proba.argmax(axis=1), proba.max(axis=1)
    frame = MetricFrame(
        metrics={"accuracy": accuracy_score, "balanced_accuracy": balanced_accuracy_score, "mean_confidence": lambda t, p, c: float(np.mean(c)),
                 "calibration_error": lambda t, p, c: reliability_table(c, t == p, 10)[1]},
        y_true=y, y_pred=pred, sensitive_features=data.attributes["site"],
        sample_params={"mean_confidence": {"c": conf}, "calibration_error": {"c": conf}},
    )  # fmt: skip
    table = result.table("site").set_index("group")
    for m in ("accuracy", "balanced_accuracy", "mean_confidence", "calibration_error"):
        np.testing.assert_allclose(table[m], frame.by_group[m].loc[table.index], rtol=0, atol=1e-12)
    np.testing.assert_allclose(table["error_rate"], 1 - table["accuracy"], atol=1e-12)
    gap = result.criterion("site", "equal_accuracy_gap")
    assert gap["worst_group"] == "C" and gap["value"] == pytest.approx(frame.difference()["accuracy"]) and 0 < gap["lo"] < gap["value"] < gap["hi"]


def test_a_group_of_one_sample_is_flagged_not_reported_as_a_rate():
    data, proba = binary_case(600, {"F": 0.3, "M": 0.5}, seed=4, race=True)
    attrs = data.attributes.copy()
    attrs.loc[0, "race"] = "X"  # one sample
    result = run(_data(attrs.to_dict("list"), data.y, 2), proba, n_boot=200)
    row = result.table("race").set_index("group").loc["X"]
    assert row["n"] == 1 and row["status"] == INSUFFICIENT
    assert all(np.isnan(row[c]) for c in BINARY_METRICS + [f"{m}_lo" for m in BINARY_METRICS])
    assert "X" not in set(result.disparities["worst_group"]) | set(result.disparities["best_group"])
    assert result.disparities.set_index(["grouping", "metric"]).loc[("race", "accuracy"), "n_groups"] == 3
    assert any("X (n=1)" in note for note in result.notes) and "insufficient data" in result.headline()
    # With a minimum of 1 it is a group like the others.
    assert run(_data(attrs.to_dict("list"), data.y, 2), proba, n_boot=0, min_group_size=1).table("race").set_index("group").loc["X", "status"] == "ok"


def test_missing_sensitive_values_raise_naming_the_column_or_form_their_own_group():
    data, proba = binary_case(400, {"F": 0.3, "M": 0.5}, seed=6, race=True)
    attrs = data.attributes.copy().astype(object)
    attrs.loc[:39, "race"] = None
    holed = _data(attrs.to_dict("list"), data.y, 2)
    with pytest.raises(DataError, match="'race' has 40 missing"):
        run(holed, proba, n_boot=0)
    table = run(holed, proba, n_boot=0, missing="group").table("race").set_index("group")
    assert table.loc[MISSING_GROUP, "n"] == 40


def test_intervals_are_fairlearns_bootstrap_intervals_on_the_same_resamples(monkeypatch):
    # Replay fairlearn's own draws (MetricFrame seeds one pandas sample per resample) through our
    # vectorized bootstrap: every interval must then be fairlearn's to floating-point precision.
    n_boot, seed = 40, 11
    data, proba = binary_case(1200, {"F": 0.25, "M": 0.55}, seed=8)
    seeds = iter(np.random.default_rng(seed).integers(0, np.iinfo(np.uint32).max, size=n_boot, dtype=np.uint32))

    def fairlearn_draw(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
        return np.stack([np.random.RandomState(next(seeds)).choice(n, size=n, replace=True) for _ in range(size)])

    monkeypatch.setattr(_bootstrap, "uniform_draw", fairlearn_draw)
    result = run(data, proba, n_boot=n_boot, ci=0.9)
    y, pred = data.y, proba.argmax(axis=1)
    metrics = {"selection_rate": selection_rate, "accuracy": accuracy_score, "tpr": true_positive_rate, "fpr": false_positive_rate}
    frame = MetricFrame(
        metrics=metrics, y_true=y, y_pred=pred, sensitive_features=data.attributes["sex"], n_boot=n_boot, ci_quantiles=[0.05, 0.95], random_state=seed
    )
    table = result.table("sex").set_index("group")
    for m in metrics:
        np.testing.assert_allclose(table[f"{m}_lo"], frame.by_group_ci[0][m].loc[table.index], atol=1e-12)
        np.testing.assert_allclose(table[f"{m}_hi"], frame.by_group_ci[1][m].loc[table.index], atol=1e-12)
    overall = result.overall.set_index("metric")
    np.testing.assert_allclose(overall.loc[list(metrics), "lo"], frame.overall_ci[0][list(metrics)], atol=1e-12)
    # The gap is clear, so the two groups never swap and our fixed-pair gap is fairlearn's max - min.
    sr_gap = result.disparities.set_index(["grouping", "metric"]).loc[("sex", "selection_rate")]
    assert sr_gap["difference_lo"] == pytest.approx(frame.difference_ci()[0]["selection_rate"], abs=1e-12)
    assert sr_gap["difference_hi"] == pytest.approx(frame.difference_ci()[1]["selection_rate"], abs=1e-12)
    # With two groups the gap to the reference group is the same pair, signed: its interval (all metrics computed
    # in one quantile call) is the disparity's, or its mirror image.
    reference = result.reference[result.reference["grouping"] == "sex"].set_index("metric")
    gaps = result.disparities[result.disparities["grouping"] == "sex"].set_index("metric")
    for m in metrics:
        ref, gap = reference.loc[m], gaps.loc[m]
        sign = 1.0 if ref["difference"] == pytest.approx(gap["difference"], abs=1e-12) else -1.0
        assert sign * ref["difference"] == pytest.approx(gap["difference"], abs=1e-12), m
        lo, hi = sorted((sign * ref["difference_lo"], sign * ref["difference_hi"]))
        assert (lo, hi) == pytest.approx((gap["difference_lo"], gap["difference_hi"]), abs=1e-12), m


def test_interval_widths_match_the_sampling_error_of_a_proportion():
    data, proba = binary_case(8000, {"F": 0.3, "M": 0.5}, seed=9)
    table = run(data, proba, n_boot=2000).table("sex").set_index("group")
    for g in ("F", "M"):
        p, n = table.loc[g, "selection_rate"], table.loc[g, "n"]
        half = (table.loc[g, "selection_rate_hi"] - table.loc[g, "selection_rate_lo"]) / 2
        assert half == pytest.approx(1.96 * np.sqrt(p * (1 - p) / n), rel=0.12)


def test_same_seed_same_result_and_the_result_round_trips_through_json():
    data, proba = binary_case(1000, {"F": 0.3, "M": 0.5}, seed=10, race=True)
    a, b = run(data, proba, seed=2, n_boot=300), run(data, proba, seed=2, n_boot=300)
    pd.testing.assert_frame_equal(a.groups, b.groups)
    c = run(data, proba, seed=3, n_boot=300)
    assert not a.groups["selection_rate_lo"].equals(c.groups["selection_rate_lo"])
    restored = from_jsonable(json.loads(json.dumps(to_jsonable(a))))
    assert isinstance(restored, GroupMetricsResult) and restored.headline() == a.headline()
    for name in ("groups", "disparities", "criteria", "four_fifths", "overall"):
        pd.testing.assert_frame_equal(getattr(restored, name), getattr(a, name), check_dtype=False)


def test_bad_parameters_are_refused():
    for params in ({"min_group_size": 0}, {"ci": 1.5}, {"missing": "drop"}, {"n_boot": -1}):
        with pytest.raises(Exception, match="group_metrics"):
            make_probe("group_metrics", params)
