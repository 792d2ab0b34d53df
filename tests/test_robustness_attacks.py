"""Adversarial attacks: exact answers on linear models, PGD against references, fragile groups."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from audits.data import AuditData, load_data
from audits.engine import build_context
from audits.errors import SpecError
from audits.probes import make_probe
from audits.robustness.base import group_breakdown, largest_gap
from audits.spec import parse_spec
from models.card import parse_card
from models.loader import load_model, wrap_model
from models.registry import ZOO_DIR, resolve_card

SHAPE = (1, 4, 4)
D = int(np.prod(SHAPE))


def linear_image_model(w: np.ndarray, b: float, value_range=(-100.0, 100.0)):
    """Two-class linear model on 1x4x4 images: logit(1) - logit(0) = w . x + b."""
    net = nn.Sequential(nn.Flatten(), nn.Linear(D, 2))
    with torch.no_grad():
        net[1].weight.copy_(torch.stack([torch.zeros(D), torch.as_tensor(w, dtype=torch.float32)]))
        net[1].bias.copy_(torch.tensor([0.0, b]))
    card = parse_card(
        {
            "name": "linear-image", "modality": "image", "format": "torchscript", "weights": "unused.pt",
            "class_names": ["neg", "pos"],
            "input": {"kind": "image", "channels": 1, "height": 4, "width": 4, "value_range": list(value_range)},
        },
        base_dir=Path("."),
    )  # fmt: skip
    return wrap_model(net, card)


def image_data(x: np.ndarray, y: np.ndarray, groups: np.ndarray | None = None) -> AuditData:
    groups = np.array(["A"] * len(y)) if groups is None else groups
    return AuditData(
        modality="image", x=x.astype(np.float32), y=y.astype(np.int64), class_names=["neg", "pos"],
        attributes=pd.DataFrame({"group": groups}), sensitive=["group"], source="test", sha256="0",
    )  # fmt: skip


@pytest.fixture
def linear_case():
    rng = np.random.default_rng(0)
    w = rng.normal(size=D).astype(np.float32)
    b = 0.3
    x = rng.uniform(-1, 1, size=(200, *SHAPE)).astype(np.float32)
    z = x.reshape(200, -1).astype(np.float64) @ w + b
    y = (z > 0).astype(np.int64)  # labels = the model's decisions: every row correct when clean
    return w, b, x, y, np.abs(z)


def _run(name, model, data, seed=0, **params):
    context = build_context(model, data, seed=seed, sample_indices=np.arange(min(4, len(data))))
    return make_probe(name, params).run(model, data, context), context


@pytest.mark.parametrize(
    ("probe", "params", "norm_ord"),
    [
        ("fgsm", {"norm": "linf"}, 1),
        ("fgsm", {"norm": "l2"}, 2),
        ("pgd", {"norm": "l2", "random_start": False}, 2),
        ("pgd", {"norm": "linf", "random_start": False}, 1),
    ],
)
def test_a_linear_classifier_flips_exactly_when_epsilon_exceeds_margin_over_the_dual_norm(linear_case, probe, params, norm_ord):
    w, b, x, y, margin = linear_case
    threshold = margin / np.linalg.norm(w, ord=norm_ord)  # L-inf budget meets ||w||_1, L2 budget ||w||_2
    eps = np.round(np.quantile(threshold, [0.1, 0.3, 0.5, 0.7, 0.9]), 3)
    model = linear_image_model(w, b)
    result, _ = _run(probe, model, image_data(x, y), epsilons=[0.0, *eps.tolist()], refine_steps=18, max_rows=None, **params)

    expected = [(threshold >= e).mean() for e in [0.0, *eps]]
    np.testing.assert_allclose(result.curve["robust_accuracy"], expected, atol=1 / len(y) + 1e-9)
    assert result.clean_accuracy == 1.0
    # Minimal flipping epsilon: the bisection converges onto margin / ||w||_dual.
    inside = threshold < eps[-1]
    np.testing.assert_allclose(result.min_epsilon[inside], threshold[inside], atol=1e-4)
    assert np.isnan(result.min_epsilon[~inside]).all()
    assert result.flipped_fraction == pytest.approx(inside.mean())


def test_fgsm_respects_the_value_range_and_the_budget(linear_case):
    w, b, x, y, _ = linear_case
    model = linear_image_model(w, b, value_range=(-1.0, 1.0))
    result, _ = _run("fgsm", model, image_data(x, y), epsilons=[0.0, 0.5], n_examples=4, example_epsilon=0.5)
    ex = result.examples
    assert ex.epsilon == 0.5 and ex.clean.shape == (4, *SHAPE)
    assert np.abs(ex.perturbation).max() <= 0.5 + 1e-6
    assert ex.adversarial.min() >= -1.0 - 1e-6 and ex.adversarial.max() <= 1.0 + 1e-6


def test_a_targeted_attack_pulls_towards_the_target(linear_case):
    w, b, x, y, margin = linear_case
    model = linear_image_model(w, b)
    result, _ = _run("pgd", model, image_data(x, y), epsilons=[0.0, 10.0], target=1, max_rows=None)
    assert result.targeted and result.target == 1
    # With a huge budget every row not already of class 1 is pushed into it.
    assert result.curve["attack_success_rate"].iloc[-1] == 1.0
    assert result.curve["robust_accuracy"].iloc[-1] == pytest.approx((y == 1).mean())


def test_a_planted_fragile_group_shows_the_larger_robust_accuracy_drop():
    rng = np.random.default_rng(1)
    w = rng.normal(size=D).astype(np.float32)
    n = 120
    groups = np.where(np.arange(n) % 3 == 0, "near-boundary", "typical")
    # Place every image at a chosen signed margin along w: the fragile group sits close to the boundary.
    target = np.where(groups == "near-boundary", rng.uniform(0.05, 0.5, n), rng.uniform(2.0, 4.0, n)) * rng.choice([-1, 1], n)
    u = rng.uniform(-1, 1, size=(n, D))
    u += ((target - u @ w) / (w @ w))[:, None] * w[None, :]
    x = u.reshape(n, *SHAPE).astype(np.float32)
    y = (target > 0).astype(np.int64)
    model = linear_image_model(w, 0.0)
    for probe in ("fgsm", "pgd"):
        result, _ = _run(probe, model, image_data(x, y, groups), epsilons=[0.0, 0.05, 0.1], max_rows=None)
        at = result.by_group[(result.by_group["epsilon"] == 0.1) & (result.by_group["attribute"] == "group")].set_index("group")
        assert at.loc["near-boundary", "drop"] > at.loc["typical", "drop"] + 0.5
        assert at.loc["typical", "robust_accuracy"] == 1.0
        gap = largest_gap(result.by_group, "robust_accuracy", by=["epsilon"])
        assert gap["worst"] == "near-boundary" and gap["attribute"] == "group"
        assert "near-boundary" in result.headline()


def test_same_seed_same_curve_and_different_seed_still_valid(linear_case):
    w, b, x, y, _ = linear_case
    model = linear_image_model(w, b)
    data = image_data(x, y)
    first, _ = _run("pgd", model, data, seed=5, epsilons=[0.0, 0.1, 0.2], max_rows=64)
    again, _ = _run("pgd", model, data, seed=5, epsilons=[0.0, 0.1, 0.2], max_rows=64)
    pd.testing.assert_frame_equal(first.curve, again.curve)
    np.testing.assert_array_equal(first.rows, again.rows)
    np.testing.assert_array_equal(first.min_epsilon, again.min_epsilon)


def test_every_attack_parameter_is_settable_from_the_spec():
    spec = parse_spec(
        {"probes": [{"name": "pgd", "params": {"norm": "l2", "steps": 5, "step_size": 0.5, "restarts": 2, "epsilons": [0, 0.5], "target": 3, "max_rows": 10}}]}
    )
    assert spec.probes[0].params["norm"] == "l2"
    with pytest.raises(SpecError):
        parse_spec({"probes": [{"name": "pgd", "params": {"norm": "l3"}}]})
    with pytest.raises(SpecError):
        parse_spec({"probes": [{"name": "fgsm", "params": {"epsilons": [-0.1]}}]})


def test_group_breakdown_is_tidy_and_ignores_nan():
    attributes = pd.DataFrame({"sex": ["f", "m", "f", "m"], "band": ["x", "x", "y", "y"]})
    values = np.array([[1, 0], [0, 0], [1, 1], [np.nan, 1]], dtype=float)
    table = group_breakdown({"ok": values}, attributes, ["sex", "band"], pd.DataFrame({"epsilon": [0.0, 0.1]}))
    assert list(table.columns) == ["epsilon", "attribute", "group", "ok", "count"]
    row = table[(table["epsilon"] == 0.0) & (table["group"] == "m")].iloc[0]
    assert row["ok"] == 0.0 and row["count"] == 2  # the NaN is left out of the mean, not of the count
    assert table[(table["epsilon"] == 0.1) & (table["group"] == "f")]["ok"].item() == 0.5


# --- the zoo CNN ---------------------------------------------------------------------------

needs_zoo = pytest.mark.skipif(not (ZOO_DIR / "digits-cnn" / "card.yaml").is_file(), reason="the digits-cnn zoo model is not built")


@pytest.fixture(scope="module")
def digits():
    card = resolve_card("digits-cnn")
    model, data = load_model(card, device="cpu"), load_data(card)
    return model, data


EPSILONS = [0.0, 0.05, 0.1, 0.2]


@needs_zoo
def test_pgd_is_at_least_as_strong_as_fgsm_and_epsilon_zero_is_clean_accuracy(digits):
    model, data = digits
    context = build_context(model, data, seed=0, sample_indices=np.arange(2))
    common = {"epsilons": EPSILONS, "max_rows": 128, "refine_steps": 0, "n_examples": 1}
    fgsm = make_probe("fgsm", common).run(model, data, context)
    pgd = make_probe("pgd", common).run(model, data, context)
    np.testing.assert_array_equal(fgsm.rows, pgd.rows)
    assert (pgd.curve["robust_accuracy"].to_numpy() <= fgsm.curve["robust_accuracy"].to_numpy()).all()
    clean = (context.predictions[pgd.rows] == data.y[pgd.rows]).mean()
    assert pgd.curve["robust_accuracy"].iloc[0] == pytest.approx(clean) == fgsm.curve["robust_accuracy"].iloc[0]
    assert pgd.curve["robust_accuracy"].iloc[-1] < 0.5 * clean  # eps 0.2 breaks most digits
    assert np.diff(pgd.curve["robust_accuracy"]).max() <= 0  # monotone sweep


@needs_zoo
@pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require gradients")
def test_our_linf_pgd_matches_captum_pgd(digits):
    from captum.robust import PGD as CaptumPGD

    model, data = digits
    context = build_context(model, data, seed=0, sample_indices=np.arange(1))
    ours = make_probe(
        "pgd",
        {"epsilons": EPSILONS, "max_rows": 128, "steps": 10, "step_size": 0.25, "random_start": False, "keep_best": False, "refine_steps": 0, "n_examples": 0},
    ).run(model, data, context)
    x = torch.as_tensor(data.x[ours.rows])
    y = torch.as_tensor(data.y[ours.rows])
    reference = CaptumPGD(model.model, loss_func=lambda out, t: F.cross_entropy(out, t, reduction="none"), lower_bound=0.0, upper_bound=1.0)
    for eps, robust in zip(EPSILONS, ours.curve["robust_accuracy"], strict=True):
        with torch.enable_grad():
            adv = reference.perturb(x, radius=eps, step_size=0.25 * eps, step_num=10, target=y) if eps > 0 else x
        with torch.no_grad():
            theirs = (model.model(adv).argmax(dim=1) == y).float().mean().item()
        assert abs(robust - theirs) <= 0.02, (eps, robust, theirs)


def _reference_pgd_l2(forward, x, y, eps, steps, alpha):
    """Textbook L2 PGD (no random start), one epsilon, final iterate."""
    adv = x.clone()
    for _ in range(steps):
        adv.requires_grad_(True)
        (grad,) = torch.autograd.grad(F.cross_entropy(forward(adv), y), adv)
        grad = grad / grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
        delta = adv.detach() + alpha * grad - x
        norms = delta.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
        adv = (x + delta * torch.clamp(eps / norms.clamp_min(1e-12), max=1.0)).clamp(0, 1)
    return adv.detach()


@needs_zoo
def test_our_l2_pgd_matches_a_textbook_reference(digits):
    model, data = digits
    context = build_context(model, data, seed=0, sample_indices=np.arange(1))
    epsilons = [0.0, 0.3, 0.6, 1.0]
    ours = make_probe(
        "pgd", {"norm": "l2", "epsilons": epsilons, "max_rows": 128, "steps": 10, "random_start": False, "keep_best": False, "refine_steps": 0, "n_examples": 0}
    ).run(model, data, context)
    x = torch.as_tensor(data.x[ours.rows])
    y = torch.as_tensor(data.y[ours.rows])
    for eps, robust in zip(epsilons, ours.curve["robust_accuracy"], strict=True):
        with torch.enable_grad():
            adv = _reference_pgd_l2(model.model, x, y, eps, 10, 0.25 * eps) if eps > 0 else x
        with torch.no_grad():
            theirs = (model.model(adv).argmax(dim=1) == y).float().mean().item()
        assert abs(robust - theirs) <= 0.02, (eps, robust, theirs)


@needs_zoo
def test_the_rare_degraded_site_is_the_fragile_group_on_the_zoo_cnn(digits):
    model, data = digits
    context = build_context(model, data, seed=0, sample_indices=np.arange(1))
    result = make_probe("fgsm", {"epsilons": [0.0, 0.05], "max_rows": None, "refine_steps": 0, "n_examples": 0}).run(model, data, context)
    at = result.by_group[result.by_group["epsilon"] == 0.05].set_index("group")
    assert at.loc["C", "robust_accuracy"] < min(at.loc["A", "robust_accuracy"], at.loc["B", "robust_accuracy"]) - 0.2
