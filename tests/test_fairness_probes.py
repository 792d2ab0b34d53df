"""Fairness probes beyond group metrics, on constructed cases with known answers."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from audits.data import AuditData, load_data
from audits.engine import run_audit
from audits.explain.base import AttributionResult
from audits.fairness.attribution_disparity import AttributionDisparityResult
from audits.fairness.counterfactual import CounterfactualFlipResult, wilson_interval
from audits.fairness.mitigation import PREVIEW_LABEL, MitigationPreviewResult, evaluate
from audits.fairness.proxies import ProxyFeaturesResult
from audits.probes import RunContext, make_probe, registered_probes
from audits.report import AuditReport
from audits.serialization import from_jsonable, to_jsonable
from audits.spec import parse_spec
from models.card import load_card, parse_card
from models.loader import wrap_model
from models.tabular_encoding import TabularEncoder
from tests.conftest import TABULAR_FEATURES

FAIRNESS = ["group_metrics", "counterfactual_flips", "proxy_features", "attribution_disparity", "mitigation_preview"]


def _card(features: list[dict], n_classes: int = 2):
    width = sum(len(f["levels"]) if f["type"] == "categorical" else 1 for f in features)
    return parse_card(
        {
            "name": "hand-made", "modality": "tabular", "format": "safetensors", "weights": "unused",
            "architecture": {"target": "torch.nn:Linear", "kwargs": {"in_features": width, "out_features": n_classes}},
            "class_names": [f"c{i}" for i in range(n_classes)],
            "input": {"kind": "tabular", "features": features},
        },
        base_dir=".",
    )  # fmt: skip


def _tabular(frame: pd.DataFrame, features: list[dict], sensitive: list[str], y: np.ndarray) -> AuditData:
    card = _card(features)
    encoder = TabularEncoder(card.input)
    return AuditData(
        modality="tabular", x=encoder.encode(frame), y=y, class_names=card.class_names,
        attributes=frame[sensitive].reset_index(drop=True), sensitive=sensitive, source="synthetic", sha256="-",
        raw=frame[encoder.feature_names].reset_index(drop=True), feature_names=encoder.feature_names, feature_groups=encoder.groups,
    )  # fmt: skip


def _linear(weights: np.ndarray, bias: float, features: list[dict]):
    """Logit of class 1 = weights . x + bias (class 0 logit = 0)."""
    net = torch.nn.Linear(len(weights), 2)
    with torch.no_grad():
        net.weight.zero_()
        net.bias.zero_()
        net.weight[1] = torch.tensor(weights, dtype=torch.float32)
        net.bias[1] = bias
    return wrap_model(net, _card(features))


def _context(model, data, seed: int = 0, earlier: tuple = ()) -> RunContext:
    return RunContext(seed=seed, proba=model.predict_proba(data.x), sample_indices=np.arange(min(8, len(data))), earlier=earlier)


def _frame(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "income": rng.normal(50, 20, n).round(1), "age": rng.integers(18, 80, n),
            "colour": rng.choice(["red", "green", "blue"], n), "group": rng.choice(["a", "b"], n),
        }
    )  # fmt: skip


def test_every_fairness_probe_is_registered_by_importing_the_package():
    assert set(FAIRNESS) <= set(registered_probes())
    assert all(registered_probes()[n].category == "fairness" for n in FAIRNESS)


# Encoded columns: income, age, colour=red/green/blue, group=a/b.
USES_GROUP = np.array([2.0, 0.0, 0.0, 0.0, 0.0, 1.5, -1.5])
IGNORES_GROUP = np.array([2.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])


def test_a_model_that_uses_the_sensitive_input_flips_decisions_and_one_that_ignores_it_flips_none():
    frame = _frame(500)
    data = _tabular(frame, TABULAR_FEATURES, ["group"], np.zeros(500, dtype=np.int64))
    uses, ignores = _linear(USES_GROUP, 0.0, TABULAR_FEATURES), _linear(IGNORES_GROUP, 0.0, TABULAR_FEATURES)
    probe = make_probe("counterfactual_flips")

    result = probe.run(uses, data, _context(uses, data))
    z = (frame["income"].to_numpy() - 50.0) / 20.0
    expected = (2 * z + 1.5 > 0) != (2 * z - 1.5 > 0)  # the decision under group a vs group b
    assert isinstance(result, CounterfactualFlipResult) and result.attributes == ["group"]
    assert result.summary.iloc[0]["flips"] == expected.sum() > 0
    assert result.flip_rate("group") == pytest.approx(expected.mean())
    pairs = result.pairs.set_index(["group", "counterfactual"])
    # Moving from a to b lowers the favourable score: every flip of an 'a' row is to the unfavourable class.
    assert pairs.loc[("a", "b"), "to_unfavourable"] == pairs.loc[("a", "b"), "flips"] > 0 and pairs.loc[("a", "b"), "to_favourable"] == 0
    assert pairs.loc[("a", "b"), "mean_score_change"] < 0 < pairs.loc[("b", "a"), "mean_score_change"]
    assert result.cost.model_calls == 2 and result.cost.rows_evaluated == 2 * 500  # one batch per level, not per row

    blind = probe.run(ignores, data, _context(ignores, data))
    assert blind.flip_rate("group") == 0.0 and (blind.by_group["flips"] == 0).all() and (blind.summary["mean_abs_score_change"] == 0).all()
    assert blind.summary.iloc[0]["lo"] == 0.0 and blind.summary.iloc[0]["hi"] < 0.01


def test_counterfactuals_need_a_sensitive_categorical_input():
    frame = _frame(50)
    frame["age_band"] = np.where(frame["age"] < 40, "young", "old")
    data = _tabular(frame, TABULAR_FEATURES, ["age_band"], np.zeros(50, dtype=np.int64))
    model = _linear(USES_GROUP, 0.0, TABULAR_FEATURES)
    reason = make_probe("counterfactual_flips").check(model, data)
    assert reason is not None and "age_band" in reason and "proxy_features" in reason


def test_wilson_interval_known_values():
    lo, hi = wilson_interval(np.array([0, 5]), np.array([100, 10]), 0.95)
    assert lo[0] == 0.0 and hi[0] == pytest.approx(0.0370, abs=1e-4)
    assert lo[1] == pytest.approx(0.2366, abs=1e-4) and hi[1] == pytest.approx(0.7634, abs=1e-4)


def test_proxy_features_recover_a_planted_proxy_of_an_attribute_that_is_not_an_input():
    rng = np.random.default_rng(1)
    n = 2000
    frame = _frame(n, seed=1)
    same = rng.random(n) < 0.9  # colour reveals the group 90% of the time
    frame["colour"] = np.where(same == (frame["group"] == "a"), "red", "blue")
    frame["age"] = (np.where(frame["group"] == "b", 50, 40) + rng.normal(0, 10, n)).round()  # a weaker numeric proxy
    features = [f for f in TABULAR_FEATURES if f["name"] != "group"]
    data = _tabular(frame, features, ["group"], rng.integers(0, 2, n))
    model = wrap_model(torch.nn.Linear(5, 2), _card(features))
    result = make_probe("proxy_features").run(model, data, _context(model, data))
    assert isinstance(result, ProxyFeaturesResult) and result.cost.model_calls == 0
    assert result.top("group", 3) == ["colour", "age", "income"]
    mi = result.mutual_information.set_index("feature")
    assert mi.loc["colour", "normalized_mi"] > 0.4 and mi.loc["income", "normalized_mi"] < 0.02
    assert result.proxies["group"][:2] == ["colour", "age"] and "income" not in result.proxies["group"]
    assert result.probe_models.iloc[0]["auc"] > 0.9 and result.probe_models.iloc[0]["balanced_accuracy"] > 0.85
    assert "colour" in result.headline()


def _attribution(method: str, values: np.ndarray, names: list[str]) -> AttributionResult:
    n = len(values)
    return AttributionResult(
        method=method, modality="tabular" if names else "image", output="logit", sample_indices=np.arange(n),
        targets=np.zeros(n, dtype=np.int64), attributions=values.astype(np.float32), feature_names=names,
    )  # fmt: skip


def test_attribution_disparity_finds_groups_that_rely_on_different_features():
    rng = np.random.default_rng(2)
    n = 40
    frame = _frame(n, seed=2)
    frame["group"] = np.where(np.arange(n) < 20, "a", "b")
    data = _tabular(frame, TABULAR_FEATURES, ["group"], np.zeros(n, dtype=np.int64))
    base = rng.normal(0, 0.1, (n, 4))
    split = base.copy()
    split[:20, 0] += rng.choice([-1, 1], 20)  # group a leans on income, group b on colour (signs vary)
    split[20:, 2] += rng.choice([-1, 1], 20)
    same = base.copy()
    same[:, 0] += rng.choice([-1, 1], n)
    names = ["income", "age", "colour", "group"]
    earlier = (_attribution("split", split, names), _attribution("same", same, names))
    model = _linear(IGNORES_GROUP, 0.0, TABULAR_FEATURES)
    result = make_probe("attribution_disparity").run(model, data, _context(model, data, earlier=earlier))
    assert isinstance(result, AttributionDisparityResult) and result.methods == ["split", "same"] and result.cost.model_calls == 0
    s = result.summary.set_index(["method", "group"])
    assert s.loc[("split", "a"), "divergence"] > 0.6 and s.loc[("split", "a"), "p_value"] < 0.01
    assert s.loc[("split", "a"), "lo"] > s.loc[("split", "a"), "chance"]
    assert s.loc[("split", "a"), "most_over_relied"] == "income" and s.loc[("split", "b"), "most_over_relied"] == "colour"
    assert s.loc[("same", "a"), "divergence"] < 0.15 and s.loc[("same", "a"), "p_value"] > 0.05
    shares = result.features[(result.features["method"] == "split") & (result.features["group"] == "a")].set_index("feature")
    assert shares["share"].sum() == pytest.approx(1.0) and shares["share"].idxmax() == "income"
    assert "split group=a" in result.headline() or "split" in result.headline()


def test_attribution_disparity_flags_small_groups_and_maps_images():
    n = 12
    attrs = pd.DataFrame({"site": ["A"] * 9 + ["C"] * 3})
    data = AuditData(modality="image", x=np.zeros((n, 1, 4, 4), np.float32), y=np.zeros(n, dtype=np.int64), class_names=["0", "1"],
                     attributes=attrs, sensitive=["site"], source="synthetic", sha256="-")  # fmt: skip
    maps = np.random.default_rng(3).random((n, 4, 4))
    context = RunContext(seed=0, proba=np.full((n, 2), 0.5), sample_indices=np.arange(n), earlier=(_attribution("grad_cam", maps, []),))
    result = make_probe("attribution_disparity")._run(None, data, context)
    s = result.summary.set_index("group")
    assert s.loc["C", "status"] == "insufficient data" and s.loc["C", "n"] == 3 and np.isnan(s.loc["C", "divergence"])
    assert s.loc["A", "status"] == "insufficient data"  # its complement (C) is too small to compare with
    assert result.notes and not result.maps
    relaxed = make_probe("attribution_disparity", {"min_samples": 3})._run(None, data, context)
    assert relaxed.maps["grad_cam/site/A"].shape == (4, 4) and relaxed.maps["grad_cam/site/A"].sum() == pytest.approx(1.0, abs=1e-5)
    empty = make_probe("attribution_disparity")._run(None, data, RunContext(seed=0, proba=np.full((n, 2), 0.5), sample_indices=np.arange(n)))
    assert empty.summary.empty and "No attribution results" in empty.notes[0]


def test_mitigation_preview_reports_a_trade_off_curve_and_changes_nothing():
    rng = np.random.default_rng(44)  # not _frame's seed: the label noise must be independent of income
    n = 4000
    frame = _frame(n, seed=4)
    z = (frame["income"].to_numpy() - 50) / 20
    y = (z + 0.8 * (frame["group"] == "a").to_numpy() + rng.normal(0, 0.8, n) > 0.4).astype(np.int64)
    data = _tabular(frame, TABULAR_FEATURES, ["group"], y)
    model = _linear(np.array([2.0, 0.0, 0.0, 0.0, 0.0, 1.6, 0.0]), -0.8, TABULAR_FEATURES)  # the Bayes decision: parity must cost accuracy
    before = {k: v.clone() for k, v in model.network.state_dict().items()}
    result = make_probe("mitigation_preview").run(model, data, _context(model, data))
    assert isinstance(result, MitigationPreviewResult) and result.preview and result.label == PREVIEW_LABEL
    assert result.headline().startswith("PREVIEW") and result.cost.model_calls == 0
    assert result.n_fit + result.n_test == n
    curve = result.curve
    assert set(curve["method"]) == {"unmitigated", "group_thresholds", "threshold_optimizer"}
    assert (curve["method"] == "group_thresholds").sum() == 11 and curve["pareto"].any()
    base = curve[curve["method"] == "unmitigated"].iloc[0]
    parity = curve[(curve["method"] == "threshold_optimizer") & (curve["constraint"] == "demographic_parity") & (curve["setting"] == 0.0)].iloc[0]
    assert base["dp_difference"] > 0.25 and parity["dp_difference"] < 0.05 and parity["accuracy"] < base["accuracy"]
    sweep = curve[curve["method"] == "group_thresholds"]
    assert sweep["dp_difference"].iloc[-1] < 0.08 < sweep["dp_difference"].iloc[0]  # the sweep walks from the model's gap to parity
    for k, v in model.network.state_dict().items():
        assert torch.equal(v, before[k])
    multiclass = wrap_model(torch.nn.Linear(7, 3), _card(TABULAR_FEATURES, n_classes=3))
    assert "binary" in make_probe("mitigation_preview").check(multiclass, data)


def test_evaluate_matches_fairlearn_disparities():
    from fairlearn.metrics import demographic_parity_difference, equalized_odds_difference

    rng = np.random.default_rng(5)
    y, pred, group = rng.integers(0, 2, 500), rng.integers(0, 2, 500), rng.integers(0, 3, 500)
    ev = evaluate(y, pred, group, 3)
    assert ev["dp_difference"][0] == pytest.approx(demographic_parity_difference(y, pred, sensitive_features=group))
    assert ev["eo_difference"][0] == pytest.approx(equalized_odds_difference(y, pred, sensitive_features=group))


def test_fairness_probes_in_an_audit_are_deterministic_and_round_trip(tabular_bundle):
    card = load_card(tabular_bundle["card_path"])
    model, data = wrap_model(tabular_bundle["net"], card), load_data(card)
    spec = parse_spec(
        {
            "samples": 20,
            "probes": [{"name": "integrated_gradients"}] + [{"name": n, "params": {"n_boot": 200}} if n == "group_metrics" else {"name": n} for n in FAIRNESS],
        }
    )
    before = {k: v.clone() for k, v in model.network.state_dict().items()}
    first, second = run_audit(model, data, spec), run_audit(model, data, spec)
    assert not first.failures and [r.method for r in first.fairness] == FAIRNESS
    for a, b in zip(first.fairness, second.fairness, strict=True):
        assert json.dumps(to_jsonable(a) | {"cost": None}) == json.dumps(to_jsonable(b) | {"cost": None})
        assert a.headline()
        restored = from_jsonable(json.loads(json.dumps(to_jsonable(a))))
        assert type(restored) is type(a) and restored.headline() == a.headline()
    again = AuditReport.from_json(first.to_json())
    assert [type(r) for r in again.fairness] == [type(r) for r in first.fairness]
    for k, v in model.network.state_dict().items():
        assert torch.equal(v, before[k])
    assert not model.network.training
