"""Tabular perturbations, constrained adversarial search and calibration on hand-computable linear models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from audits.data import AuditData
from audits.engine import build_context
from audits.performance import reliability_table
from audits.probes import make_probe
from audits.robustness._tabular import other_levels
from models.card import parse_card
from models.loader import wrap_model
from models.tabular_encoding import TabularEncoder

FEATURES = [
    {"name": "x1", "type": "numeric", "center": 0.0, "scale": 1.0},
    {"name": "x2", "type": "numeric", "center": 0.0, "scale": 1.0},
    {"name": "colour", "type": "categorical", "levels": ["red", "green", "blue"]},
    {"name": "sex", "type": "categorical", "levels": ["f", "m"]},
]
W1, W2, BIAS = 2.0, 0.5, 0.1  # logit(1) - logit(0) = 2 x1 + 0.5 x2 + 0.1; colour and sex are ignored


def linear_tabular(frame: pd.DataFrame, groups: np.ndarray | None = None, missing: str = "error"):
    card = parse_card(
        {
            "name": "linear-tabular", "modality": "tabular", "format": "torchscript", "weights": "unused.pt",
            "class_names": ["no", "yes"], "input": {"kind": "tabular", "features": FEATURES, "missing": missing},
        },
        base_dir=Path("."),
    )  # fmt: skip
    encoder = TabularEncoder(card.input)
    net = nn.Linear(encoder.width, 2)
    with torch.no_grad():
        net.weight.zero_()
        net.bias.copy_(torch.tensor([0.0, BIAS]))
        net.weight[1, 0], net.weight[1, 1] = W1, W2
    x = encoder.encode(frame)
    z = W1 * frame["x1"].to_numpy() + W2 * frame["x2"].to_numpy() + BIAS
    attributes = pd.DataFrame({"sex": frame["sex"].to_numpy(), "edge": groups if groups is not None else np.array(["all"] * len(frame))})
    data = AuditData(
        modality="tabular", x=x, y=(z > 0).astype(np.int64), class_names=["no", "yes"], attributes=attributes,
        sensitive=["sex", "edge"], source="test", sha256="0", raw=frame, feature_names=encoder.feature_names, feature_groups=encoder.groups,
    )  # fmt: skip
    return wrap_model(net, card), data, z


def frame_of(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "x1": rng.normal(0, 1, n).round(3),
            "x2": rng.normal(0, 2, n).round(3),
            "colour": rng.choice(["red", "green", "blue"], n, p=[0.5, 0.3, 0.2]),
            "sex": rng.choice(["f", "m"], n),
        }
    )


def _run(name, model, data, **params):
    context = build_context(model, data, seed=0, sample_indices=np.arange(4))
    return make_probe(name, params).run(model, data, context), context


def test_the_smallest_single_feature_change_is_the_margin_over_the_weight():
    frame = frame_of(300)
    model, data, z = linear_tabular(frame)
    result, _ = _run("tabular_adversarial", model, data, max_rows=None, refine_steps=16)
    x1, x2 = frame["x1"].to_numpy(), frame["x2"].to_numpy()
    s1, s2 = x1.std(), x2.std()
    # Moving x1 alone flips at x1 - z / W1 (if that stays in the observed range), likewise x2.
    need1 = np.where((x1 - z / W1 >= x1.min()) & (x1 - z / W1 <= x1.max()), np.abs(z) / W1 / s1, np.inf)
    need2 = np.where((x2 - z / W2 >= x2.min()) & (x2 - z / W2 <= x2.max()), np.abs(z) / W2 / s2, np.inf)
    best = np.minimum(need1, need2)
    d = result.decisions.set_index("row").loc[np.arange(len(frame))]
    ok = np.isfinite(best)
    np.testing.assert_allclose(d["best_change"].to_numpy()[ok], best[ok], rtol=1e-3, atol=1e-4)
    expect_feature = np.where(need1 <= need2, "x1", "x2")
    assert (d["best_feature"].to_numpy()[ok] == expect_feature[ok]).all()
    assert (d["best_feature"].to_numpy()[~ok] == "").all()
    # The ignored categorical can never flip a decision; sex is fixed (sensitive) by default.
    features = result.features.set_index("feature")
    assert result.fixed_features == ["sex"] and "sex" not in features.index
    assert features.loc["colour", "flip_fraction"] == 0.0
    assert features.loc["x1", "flip_fraction"] == pytest.approx(np.isfinite(need1).mean())


def test_the_joint_search_finds_the_margin_over_the_weighted_spreads():
    frame = frame_of(300, seed=1)
    model, data, z = linear_tabular(frame)
    result, _ = _run("tabular_adversarial", model, data, max_rows=None, max_epsilon=3.0, search_points=12)
    x1, x2 = frame["x1"].to_numpy(), frame["x2"].to_numpy()
    s1, s2 = x1.std(), x2.std()
    eps = np.abs(z) / (W1 * s1 + W2 * s2)  # every free numeric moved by eps sd against the decision
    direction = -np.sign(z)
    free = (x1 + direction * eps * s1 >= x1.min()) & (x1 + direction * eps * s1 <= x1.max())
    free &= (x2 + direction * eps * s2 >= x2.min()) & (x2 + direction * eps * s2 <= x2.max())
    free &= eps < 2.9
    found = result.decisions.set_index("row").loc[np.arange(len(frame)), "min_linf"].to_numpy()
    resolution = 3.0 / 12 / 13
    assert free.sum() > 200
    assert (found[free] >= eps[free] - 1e-4).all() and (found[free] <= eps[free] + resolution + 1e-4).all()
    assert result.flippable_fraction >= free.mean()


def test_shift_and_missing_flip_rates_have_exact_answers():
    frame = frame_of(400, seed=2)
    model, data, z = linear_tabular(frame, missing="impute")
    result, context = _run("tabular_perturbations", model, data, max_rows=None, shift_scales=[-1.0, 0.5], missing_rates=[0.2])
    pred = context.predictions
    x1, x2 = frame["x1"].to_numpy(), frame["x2"].to_numpy()
    t = result.table.set_index(["perturbation", "feature", "strength"])
    for k in (-1.0, 0.5):
        moved = np.clip(x1 + k * x1.std(), x1.min(), x1.max())
        expected = ((W1 * moved + W2 * x2 + BIAS > 0) != pred).mean()
        assert t.loc[("shift", "x1", k), "flip_rate"] == pytest.approx(expected)
    # Imputing x1 sets it to its center (0).
    assert t.loc[("missing", "x1", 1.0), "flip_rate"] == pytest.approx(((W2 * x2 + BIAS > 0) != pred).mean())
    # Ignored features never flip anything.
    for feature, kind in (("colour", "swap"), ("sex", "swap"), ("colour", "missing")):
        assert t.loc[(kind, feature, 1.0), "flip_rate"] == 0.0
    fragility = result.features.set_index("feature")["fragility"]
    assert fragility.idxmax() == "x1" and fragility["colour"] == 0.0
    assert result.missing_policy == "impute" and t.loc[("missing", "*", 0.2), "refused"] == 0.0


def test_noise_flips_grow_with_strength_and_the_card_policy_refuses_missing_values():
    frame = frame_of(400, seed=3)
    model, data, _ = linear_tabular(frame, missing="error")
    result, _ = _run("tabular_perturbations", model, data, max_rows=None)
    noise = result.table[result.table["perturbation"] == "noise"]
    assert (np.diff(noise["flip_rate"]) >= 0).all() and noise["flip_rate"].iloc[-1] > 0
    missing = result.table[result.table["perturbation"] == "missing"]
    assert missing["accuracy"].isna().all() and (missing["refused"] > 0).all()
    assert not (result.table["feature"].eq("x1") & result.table["perturbation"].eq("missing")).any()
    assert result.missing_policy == "error" and result.notes
    assert "most fragile: x1" in result.headline()


def test_category_flips_always_move_to_another_observed_level():
    rng = np.random.default_rng(0)
    current = rng.integers(0, 4, 5000)
    frequency = np.array([0.5, 0.3, 0.2, 0.0])  # level 3 never observed
    new = other_levels(current, frequency, rng.random(5000))
    assert (new != current).all() and (new != 3).all()
    # From level 0 the others are drawn by their observed share: 0.3 : 0.2.
    share = (new[current == 0] == 1).mean()
    assert share == pytest.approx(0.6, abs=0.05)
    assert (other_levels(np.array([0]), np.array([1.0, 0.0]), np.array([0.5])) == 0).all()  # one observed level: unchanged


def test_a_planted_fragile_group_flips_more_and_needs_smaller_changes():
    frame = frame_of(300, seed=4)
    edge = np.where(np.arange(300) % 3 == 0, "near", "far")
    rng = np.random.default_rng(5)
    # Put the "near" rows close to the boundary: x1 = -(0.5 x2 + 0.1 - small margin) / 2.
    margin = np.where(edge == "near", rng.uniform(0.02, 0.2, 300), rng.uniform(1.5, 3.0, 300)) * rng.choice([-1, 1], 300)
    frame["x1"] = (margin - W2 * frame["x2"] - BIAS) / W1
    model, data, _ = linear_tabular(frame, groups=edge)
    perturbed, _ = _run("tabular_perturbations", model, data, max_rows=None)
    g = perturbed.by_group[(perturbed.by_group["attribute"] == "edge") & (perturbed.by_group["perturbation"] == "noise")]
    g = g[g["strength"] == 0.25].set_index("group")
    assert g.loc["near", "flip_rate"] > g.loc["far", "flip_rate"] + 0.2
    adversarial, _ = _run("tabular_adversarial", model, data, max_rows=None)
    a = adversarial.by_group[adversarial.by_group["attribute"] == "edge"].set_index("group")
    assert a.loc["near", "min_linf"] < 0.5 * a.loc["far", "min_linf"]


def test_tabular_calibration_matches_the_shared_reliability_table():
    frame = frame_of(500, seed=6)
    model, data, _ = linear_tabular(frame)
    result, context = _run("calibration", model, data, noise_scales=[0.5, 2.0])
    _, ece = reliability_table(context.proba.max(axis=1), context.predictions == data.y, 10)
    assert result.ece == pytest.approx(ece) and result.shift == "gaussian_noise"
    assert list(result.conditions["strength"]) == [0.0, 0.5, 2.0]
    assert result.conditions["accuracy"].iloc[0] == 1.0  # labels are the linear decisions
    assert result.conditions["accuracy"].iloc[-1] < 1.0
    assert set(result.by_group["attribute"]) == {"sex", "edge"}


def test_unknown_fixed_features_are_reported_not_crashed():
    frame = frame_of(50)
    model, data, _ = linear_tabular(frame)
    probe = make_probe("tabular_adversarial", {"fixed_features": ["income"]})
    assert "income" in probe.check(model, data)
