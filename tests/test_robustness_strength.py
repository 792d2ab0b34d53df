"""AutoAttack-style ensemble: exact answers on a linear classifier, masked gradients, APGD internals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from audits.robustness._apgd import apgd, apgd_checkpoints, dlr_targeted, square
from tests.test_robustness_attacks import SHAPE, D, _run, image_data, linear_image_model

POLICY = Path(__file__).resolve().parents[1] / "audits" / "policies" / "robustness.yaml"


@pytest.fixture
def linear_case():
    rng = np.random.default_rng(1)
    w = rng.normal(size=D).astype(np.float32)
    b = 0.3
    x = rng.uniform(-1, 1, size=(120, *SHAPE)).astype(np.float32)
    z = x.reshape(len(x), -1).astype(np.float64) @ w + b
    y = (z > 0).astype(np.int64)
    return w, b, x, y, np.abs(z)


@pytest.mark.parametrize(("norm", "norm_ord"), [("linf", 1), ("l2", 2)])
def test_apgd_flips_exactly_the_rows_whose_margin_is_below_epsilon_times_the_dual_norm(linear_case, norm, norm_ord):
    w, b, x, y, margin = linear_case
    threshold = margin / np.linalg.norm(w, ord=norm_ord)
    eps = np.round(np.quantile(threshold, [0.2, 0.5, 0.8]), 3)
    model = linear_image_model(w, b)
    result, _ = _run("autoattack", model, image_data(x, y), norm=norm, epsilons=[0.0, *eps.tolist()], max_rows=None, queries=50)
    expected = [(threshold >= e).mean() for e in [0.0, *eps]]
    np.testing.assert_allclose(result.curve["robust_accuracy"], expected, atol=1 / len(y) + 1e-9)
    # Gradients are honest here: APGD-CE breaks every breakable row, nothing is left to the others.
    assert (result.broken_by[:, 1:] <= 1).all()
    assert result.gradient_free_gain == 0.0
    assert result.unbounded_robust_accuracy == 0.0
    np.testing.assert_allclose(result.curve["gradient_robust_accuracy"], result.curve["robust_accuracy"])


class Quantised(nn.Module):
    """A linear classifier behind a hard input quantisation: the gradient is zero almost everywhere."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(torch.round(x * 2) / 2)


@pytest.mark.parametrize("candidates", [1, 8])
def test_a_masked_gradient_is_flagged_and_square_still_breaks_the_model(linear_case, candidates):
    w, b, x, _, _ = linear_case
    plain = linear_image_model(w, b, value_range=(-1.0, 1.0))
    net = Quantised(plain.model)
    with torch.no_grad():
        y = net(torch.as_tensor(x)).argmax(dim=1).numpy()  # labels = the masked model's decisions
    from models.loader import wrap_model

    model = wrap_model(net, plain.card)
    # candidates=8 (the strong preset's): the same 200 queries spent 8 windows per step, 25 steps.
    result, _ = _run("autoattack", model, image_data(x, y), epsilons=[0.0, 0.3, 0.6], max_rows=None, queries=200, candidates=candidates)
    assert result.clean_accuracy == 1.0
    # From the clean point APGD cannot move at all, even with a budget covering the whole input range.
    assert result.unbounded_robust_accuracy == 1.0
    assert result.gradient_free_gain > 0.2
    robust = result.curve.set_index("epsilon")
    assert robust.at[0.6, "robust_accuracy"] < robust.at[0.6, "gradient_robust_accuracy"] - 0.2
    names = {m.name: m for m in result.measurements() if m.subject == "autoattack/linf"}
    assert names["gradient_free_gain"].value == pytest.approx(result.gradient_free_gain)


def test_apgd_checkpoints_follow_the_paper():
    # p = 0, 0.22, 0.41, 0.57, 0.7, 0.8, 0.87, 0.93, 0.99 (Croce & Hein 2020, section 3.2) times 100 iterations.
    assert sorted(apgd_checkpoints(100)) == [22, 41, 57, 70, 80, 87, 93, 99]


def test_dlr_targeted_is_scale_invariant_and_positive_once_the_target_wins():
    logits = torch.tensor([[4.0, 1.0, 0.5, 0.0, -1.0], [0.0, 3.0, 1.0, 0.5, 0.2]])
    labels, target = torch.tensor([0, 0]), torch.tensor([1, 1])
    loss = dlr_targeted(logits, labels, target)
    torch.testing.assert_close(dlr_targeted(10 * logits, labels, target), loss)
    assert loss[0] < 0 < loss[1]


def test_square_and_apgd_respect_budget_and_range():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    x = torch.rand(8, 1, 4, 4)
    y = net(x).argmax(dim=1)
    eps = torch.full((8,), 0.05)
    g = torch.Generator().manual_seed(0)
    seen = []

    def spy(xa: torch.Tensor) -> torch.Tensor:
        seen.append(xa.detach().clone())
        return net(xa)

    with torch.enable_grad():
        apgd(spy, x, y, eps, "linf", 10, 0.0, 1.0)
    with torch.no_grad():
        square(spy, x, y, eps, "linf", 20, 0.0, 1.0, g)
    for xa in seen:
        assert xa.min() >= 0.0 and xa.max() <= 1.0
    assert all((xa - x[: len(xa)]).abs().max() <= 0.05 + 1e-6 for xa in seen if len(xa) == len(x))


def test_bad_parameters_are_refused():
    from audits.robustness.autoattack import AutoAttack

    with pytest.raises(ValueError, match="preset"):
        AutoAttack(preset="huge")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="steps"):
        AutoAttack(steps=0)


def test_the_robustness_policy_warns_about_masked_gradients_and_passes_honest_ones(linear_case):
    from audits.engine import run_audit
    from audits.policy import apply_policy, load_policy
    from audits.spec import parse_spec
    from models.loader import wrap_model

    w, b, x, _, _ = linear_case
    plain = linear_image_model(w, b, value_range=(-1.0, 1.0))
    spec = parse_spec({"samples": 2, "probes": [{"name": "autoattack", "params": {"epsilons": [0.0, 0.3, 0.6], "queries": 200, "steps": 10}}]})
    ids = ("gradient_masking_gradient_free", "gradient_masking_unbounded")
    statuses = {}
    for name, net in (("honest", plain.model), ("masked", Quantised(plain.model))):
        model = wrap_model(net, plain.card)
        with torch.no_grad():
            y = model.model(torch.as_tensor(x)).argmax(dim=1).numpy()
        report = apply_policy(run_audit(model, image_data(x, y), spec), load_policy(POLICY))
        statuses[name] = {f.check_id: f.status for f in report.findings}
    assert [statuses["masked"][i] for i in ids] == ["warn", "warn"]
    assert [statuses["honest"][i] for i in ids] == ["pass", "pass"]
    # Zero iteration gain warns on both: one step is optimal on a linear model (the check's stated exception).
    assert statuses["masked"]["gradient_masking_iterations"] == "warn"


@pytest.mark.parametrize(("norm", "norm_ord"), [("l2", 2), ("linf", 1)])
def test_minimal_perturbation_finds_the_closed_form_distance_of_a_linear_classifier(linear_case, norm, norm_ord):
    w, b, x, y, margin = linear_case
    model = linear_image_model(w, b)
    groups = np.where(np.arange(len(y)) % 2 == 0, "even", "odd")
    result, _ = _run("minimal_perturbation", model, image_data(x, y, groups), norm=norm, max_rows=None, refine_steps=20)
    exact = margin / np.linalg.norm(w, ord=norm_ord)  # L2: |margin| / ||w||_2; L-inf: |margin| / ||w||_1
    np.testing.assert_allclose(result.distance, exact, rtol=1e-3, atol=1e-5)
    assert result.found_fraction == 1.0
    assert result.median_distance == pytest.approx(np.median(exact), rel=1e-3)
    medians = result.by_group.set_index("group")["median_distance"]
    assert medians["odd"] == pytest.approx(np.median(exact[1::2]), rel=1e-3)
    subjects = {m.subject: m.value for m in result.measurements() if m.name == "median_min_distance"}
    assert subjects[f"{norm}/group=even"] == pytest.approx(np.median(exact[::2]), rel=1e-3)


def test_randomized_smoothing_certifies_the_closed_form_radius_of_a_linear_classifier(linear_case):
    from scipy.stats import norm

    from audits.robustness.randomized_smoothing import clopper_pearson_lower

    w, b, x, y, margin = linear_case
    model = linear_image_model(w, b, value_range=(-1.0, 1.0))
    n, alpha = 2000, 0.001
    result, _ = _run("randomized_smoothing", model, image_data(x, y), sigmas=[0.25], n=n, n0=100, alpha=alpha, max_rows=None)
    sigma = 0.25 * 2  # sigmas are fractions of the value range's width
    exact = margin / np.linalg.norm(w)  # the smoothed linear classifier's radius: sigma * Phi^-1(pA) = |w.x + b| / ||w||_2
    p_true = norm.cdf(exact / sigma)
    radius = result.radius[0]
    certified = np.isfinite(radius)
    # Never beyond the true radius (each certificate holds with probability 1 - alpha; seeded, so fixed).
    assert (radius[certified] <= exact[certified] + 1e-9).all()
    assert (result.predictions[0][certified] == y[certified]).all()
    # And within the Monte Carlo bound: at least the certificate of a count four standard deviations low.
    k_low = np.floor(n * p_true - 4 * np.sqrt(n * p_true * (1 - p_true)))
    floor = clopper_pearson_lower(np.clip(k_low, 0, n), n, alpha)
    sure = floor > 0.5
    assert sure.mean() > 0.5 and certified[sure].all()
    assert (radius[sure] >= sigma * norm.ppf(floor[sure]) - 1e-9).all()
    curve = result.curve.set_index("radius")["certified_accuracy"]
    assert curve.iloc[0] == pytest.approx(certified.mean())
    assert result.summary["abstention_rate"].iloc[0] == pytest.approx(1 - certified.mean())


@pytest.mark.parametrize("per_step", [1, 8])
def test_square_alone_breaks_exactly_the_linear_rows_within_reach_and_stops_early_on_the_rest(linear_case, per_step):
    # On a linear model each pixel's best sign is -sign(w_i) whatever the others hold, so single-pixel random
    # search reaches the optimum: Square breaks exactly the rows whose margin is below eps * ||w||_1. A row it
    # cannot break stops once it has tried all 2 * 16 single-pixel moves without gain, long before 5000 queries.
    w, b, x, y, margin = linear_case
    model = linear_image_model(w, b)
    eps = float(np.round(np.quantile(margin / np.abs(w).sum(), 0.5), 3))
    calls = []

    def forward(xa: torch.Tensor) -> torch.Tensor:
        calls.append(len(xa))
        return model.model(xa)

    with torch.inference_mode():
        broken = square(forward, torch.as_tensor(x), torch.as_tensor(y), torch.full((len(y),), eps), "linf", 5000, -100.0, 100.0,
                        torch.Generator().manual_seed(0), per_step=per_step)  # fmt: skip
    np.testing.assert_array_equal(broken.numpy(), margin < eps * np.abs(w).sum())
    assert sum(calls) < 0.1 * 5000 * (~broken).sum().item()
