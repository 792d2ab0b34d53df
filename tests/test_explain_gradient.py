"""Known-answer tests for the gradient and occlusion attribution probes."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from audits.data import AuditData
from audits.errors import AuditError
from audits.explain.base import sum_feature_groups
from audits.probes import RunContext, make_probe
from audits.serialization import to_jsonable
from models.card import parse_card
from models.loader import wrap_model
from models.tabular_encoding import TabularEncoder

SIZE = 16
IMAGE_PROBES = ["grad_cam", "integrated_gradients", "saliency", "gradient_shap", "occlusion"]
TABULAR_PROBES = ["integrated_gradients", "saliency", "gradient_shap"]
FEATURES = [
    {"name": "income", "type": "numeric", "center": 50.0, "scale": 20.0},
    {"name": "age", "type": "numeric", "center": 40.0, "scale": 12.0},
    {"name": "colour", "type": "categorical", "levels": ["red", "green", "blue"]},
    {"name": "group", "type": "categorical", "levels": ["a", "b"]},
]


class QuadrantNet(nn.Module):
    """A CNN that sees only the top-left quadrant: the input and every feature map are masked.

    The convolutions have no bias, so the last conv's output is zero outside the quadrant
    but for a one-pixel halo where its 3x3 kernel reaches into the quadrant.
    """

    def __init__(self, size: int = SIZE, n_classes: int = 3) -> None:
        super().__init__()
        mask = torch.zeros(1, 1, size, size)
        mask[..., : size // 2, : size // 2] = 1.0
        self.register_buffer("mask", mask)
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.head = nn.Linear(8, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv1(x * self.mask)) * self.mask
        h = torch.relu(self.conv2(h)) * self.mask
        return self.head(h.mean(dim=(2, 3)))


def image_card(**extra) -> dict:
    return {
        "name": "quadrant-cnn",
        "modality": "image",
        "format": "torchscript",
        "weights": "unused.pt",
        "class_names": ["a", "b", "c"],
        "input": {"kind": "image", "channels": 1, "height": SIZE, "width": SIZE},
        **extra,
    }


def tabular_card() -> dict:
    return {
        "name": "tiny-tabular",
        "modality": "tabular",
        "format": "torchscript",
        "weights": "unused.pt",
        "class_names": ["low", "high"],
        "input": {"kind": "tabular", "features": FEATURES},
    }


def context_for(handle, data: AuditData, seed: int = 0) -> RunContext:
    return RunContext(seed=seed, proba=handle.predict_proba(data.x), sample_indices=np.arange(len(data)))


@pytest.fixture(scope="module")
def image_setup():
    torch.manual_seed(0)
    handle = wrap_model(QuadrantNet(), parse_card(image_card(), base_dir=Path(".")))
    x = np.random.default_rng(0).random((24, 1, SIZE, SIZE), dtype=np.float32)
    data = AuditData(
        modality="image",
        x=x,
        y=np.zeros(len(x), dtype=np.int64),
        class_names=["a", "b", "c"],
        attributes=pd.DataFrame(index=range(len(x))),
        sensitive=[],
        source="test",
        sha256="test",
    )
    return handle, data, context_for(handle, data)


def tabular_data(n: int = 40) -> AuditData:
    rng = np.random.default_rng(1)
    raw = pd.DataFrame(
        {
            "income": rng.normal(50, 20, n),
            "age": rng.integers(18, 80, n).astype(float),
            "colour": rng.choice(["red", "green", "blue"], n),
            "group": rng.choice(["a", "b"], n),
        }
    )
    encoder = TabularEncoder(parse_card(tabular_card(), base_dir=Path(".")).input)
    return AuditData(
        modality="tabular",
        x=encoder.encode(raw),
        y=np.zeros(n, dtype=np.int64),
        class_names=["low", "high"],
        attributes=pd.DataFrame(index=range(n)),
        sensitive=[],
        source="test",
        sha256="test",
        raw=raw,
        feature_names=encoder.feature_names,
        feature_groups=encoder.groups,
    )


def tabular_handle(net: nn.Module):
    torch.manual_seed(0)
    return wrap_model(net, parse_card(tabular_card(), base_dir=Path(".")))


def quadrant_fraction(maps: np.ndarray) -> np.ndarray:
    """Per-sample share of |attribution| mass in the top-left quadrant."""
    mass = np.abs(maps)
    return mass[:, : SIZE // 2, : SIZE // 2].sum(axis=(1, 2)) / mass.sum(axis=(1, 2))


# Measured mean shares (seed 0, 24 images): Grad-CAM 0.86 (the 3x3 halo of the last conv
# leaks a little), occlusion 0.92 (4 px windows straddle the border); the gradient
# methods are exactly 1 because the gradient outside the quadrant is zero.
@pytest.mark.parametrize("name", IMAGE_PROBES)
def test_attribution_mass_falls_in_the_quadrant_the_model_reads(image_setup, name):
    handle, data, context = image_setup
    result = make_probe(name).run(handle, data, context)
    assert result.attributions.shape == (len(data), SIZE, SIZE)
    assert np.isfinite(result.attributions).all()
    share = quadrant_fraction(result.attributions)
    assert share.mean() > 0.8, (name, share.mean())
    assert share.min() > 0.7, (name, share.min())
    to_jsonable(result)  # serializable


@pytest.mark.parametrize("name", IMAGE_PROBES)
def test_image_probes_batch_their_model_calls(image_setup, name):
    handle, data, context = image_setup
    result = make_probe(name).run(handle, data, context)
    # Whole model batches (handle.batch_size rows, cache-sized on the CPU), each with at most one
    # small companion call (captum's forward of the unperturbed chunk), plus a few: never one
    # call per sample or per perturbation.
    assert 1 <= result.cost.model_calls <= 2 * math.ceil(result.cost.rows_evaluated / handle.batch_size) + 3, (result.cost, handle.batch_size)
    assert result.cost.model_calls < len(data)
    assert result.cost.rows_evaluated >= len(data)


@pytest.mark.parametrize("baseline", ["zeros", "mean"])
def test_integrated_gradients_completeness_image(image_setup, baseline):
    handle, data, context = image_setup
    result = make_probe("integrated_gradients", {"baseline": baseline}).run(handle, data, context)
    gap = result.outputs - result.base_values
    total = result.attributions.reshape(len(data), -1).sum(axis=1)
    np.testing.assert_allclose(total, gap, atol=1e-3 + 1e-3 * np.abs(gap).max())
    assert result.quality["completeness_error"].max() < 1e-3 + 1e-3 * np.abs(gap).max()
    np.testing.assert_allclose(result.outputs, handle.logits(data.x)[np.arange(len(data)), result.targets], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("output", ["logit", "probability"])
def test_integrated_gradients_equal_captums(image_setup, output):
    from captum.attr import IntegratedGradients as CaptumIG

    handle, data, context = image_setup
    result = make_probe("integrated_gradients", {"n_steps": 20, "output": output}).run(handle, data, context)
    x = handle.to_tensor(data.x[context.sample_indices])
    expected = CaptumIG(handle.output_fn(output)).attribute(x, baselines=torch.zeros_like(x[:1]), target=torch.as_tensor(result.targets), n_steps=20)
    np.testing.assert_allclose(result.attributions, expected.detach().sum(dim=1).numpy(), rtol=1e-4, atol=1e-6)


def test_integrated_gradients_completeness_tabular_after_summing_to_raw_features():
    data = tabular_data()
    torch.manual_seed(0)
    handle = tabular_handle(nn.Sequential(nn.Linear(7, 16), nn.Tanh(), nn.Linear(16, 2)))
    result = make_probe("integrated_gradients").run(handle, data, context_for(handle, data))
    assert result.attributions.shape == (len(data), len(FEATURES))
    gap = result.outputs - result.base_values
    np.testing.assert_allclose(result.attributions.sum(axis=1), gap, atol=1e-4)
    assert result.quality["completeness_error"].max() < 1e-4


def test_integrated_gradients_on_a_linear_model_is_weight_times_distance_to_the_mean():
    data = tabular_data()
    linear = nn.Linear(7, 2)
    handle = tabular_handle(linear)
    context = context_for(handle, data)
    probe = make_probe("integrated_gradients", {"baseline": "mean", "n_background": 25})
    result = probe.run(handle, data, context)
    baseline = probe.baseline_input(data, context)
    background = data.x[np.sort(context.rng("integrated_gradients").choice(len(data), 25, replace=False))]
    np.testing.assert_allclose(baseline[0], background.mean(axis=0), rtol=1e-6, atol=1e-6)
    weights = linear.weight.detach().numpy()[result.targets]  # (n, D) weights of each sample's target
    expected = sum_feature_groups(weights * (data.x - baseline), data.feature_groups)
    np.testing.assert_allclose(result.attributions, expected, rtol=1e-5, atol=1e-6)


def test_gradient_shap_is_seeded_and_leaves_the_global_rngs_alone(image_setup):
    handle, data, context = image_setup
    torch_state, np_state = torch.get_rng_state(), np.random.get_state()
    probe = make_probe("gradient_shap", {"n_samples": 8})
    first = probe.run(handle, data, context).attributions
    again = probe.run(handle, data, context).attributions
    other = probe.run(handle, data, dataclasses.replace(context, seed=1)).attributions
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)
    assert torch.equal(torch.get_rng_state(), torch_state)
    after = np.random.get_state()
    assert after[0] == np_state[0] and np.array_equal(after[1], np_state[1]) and after[2:] == np_state[2:]


def test_gradient_shap_with_one_baseline_on_a_linear_model_is_exact():
    data = tabular_data()
    linear = nn.Linear(7, 2)
    handle = tabular_handle(linear)
    # One background row and no noise: every draw is gradient x (x - b) = w x (x - b).
    result = make_probe("gradient_shap", {"n_background": 1}).run(handle, data, context_for(handle, data))
    assert result.attributions.shape == (len(data), len(FEATURES))
    weights = linear.weight.detach().numpy()[result.targets]
    offsets = sum_feature_groups(weights * data.x, data.feature_groups) - result.attributions
    # What is left is w x b per feature: the same for every sample with the same target.
    for target in np.unique(result.targets):
        rows = offsets[result.targets == target]
        np.testing.assert_allclose(rows, np.broadcast_to(rows[0], rows.shape), atol=1e-5)
    assert result.quality["completeness_error"].max() < 1e-5


def _snapshot(handle) -> dict:
    return {k: v.clone() for k, v in handle.network.state_dict().items()}


def _assert_untouched(handle, before: dict) -> None:
    after = handle.network.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not any(p.requires_grad for p in handle.model.parameters())
    assert not any(m.training for m in handle.model.modules())
    assert all(p.grad is None for p in handle.model.parameters())


def test_probes_leave_the_image_model_untouched(image_setup):
    handle, data, context = image_setup
    before = _snapshot(handle)
    for name in IMAGE_PROBES:
        make_probe(name, {"output": "probability"}).run(handle, data, context)
        _assert_untouched(handle, before)


def test_probes_leave_the_tabular_model_untouched():
    data = tabular_data()
    handle = tabular_handle(nn.Sequential(nn.Linear(7, 8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 2)))
    context = context_for(handle, data)
    before = _snapshot(handle)
    for name in TABULAR_PROBES:
        result = make_probe(name).run(handle, data, context)
        assert result.attributions.shape == (len(data), len(FEATURES))
        _assert_untouched(handle, before)


def test_grad_cam_explains_the_named_target_layer(image_setup):
    handle, data, context = image_setup
    named = wrap_model(handle.network, parse_card(image_card(target_layer="conv1"), base_dir=Path(".")))
    result = make_probe("grad_cam").run(named, data, context)
    assert quadrant_fraction(result.attributions).mean() > 0.7


class InplaceNet(nn.Module):
    """Conv, in-place ReLU straight after it (it would overwrite captured activations), conv, pool, head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 6, 3, padding=1)
        self.act = nn.ReLU(inplace=True)
        self.head = nn.Linear(6 * 4 * 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.conv2(self.act(self.conv1(x))))
        return self.head(nn.functional.adaptive_avg_pool2d(h, 4).flatten(1))


@pytest.mark.parametrize("output", ["logit", "probability"])
def test_grad_cam_equals_captums_layer_grad_cam(image_setup, output):
    """The probe's own hook-and-gradient Grad-CAM gives captum's LayerGradCam maps (upsampled bilinearly), to float precision."""
    from captum.attr import LayerAttribution, LayerGradCam

    _, data, _ = image_setup
    torch.manual_seed(3)
    handle = wrap_model(InplaceNet(), parse_card(image_card(target_layer="conv2"), base_dir=Path(".")))
    context = context_for(handle, data)
    result = make_probe("grad_cam", {"output": output}).run(handle, data, context)
    x = torch.as_tensor(data.x)
    fn = handle.output_fn(output)
    with torch.enable_grad():
        layer_maps = LayerGradCam(fn, handle.network.conv2).attribute(x, target=torch.as_tensor(result.targets), relu_attributions=True)
    expected = LayerAttribution.interpolate(layer_maps.detach(), (SIZE, SIZE), "bilinear")[:, 0].numpy()
    assert expected.max() > 0 and (result.attributions > 0).any()
    np.testing.assert_allclose(result.attributions, expected, rtol=1e-5, atol=1e-6 * float(expected.max()))


def test_grad_cam_refuses_models_it_cannot_hook(image_setup):
    handle, _, _ = image_setup
    data = image_setup[1]
    probe = make_probe("grad_cam")
    # No convolution at all.
    flat = wrap_model(nn.Sequential(nn.Flatten(), nn.Linear(SIZE * SIZE, 3)), parse_card(image_card(), base_dir=Path(".")))
    assert "no Conv2d" in probe.check(flat, data)
    # TorchScript: its submodules are ScriptModules, not Conv2d, and take no hooks.
    scripted = torch.jit.script(QuadrantNet())
    assert "no Conv2d" in probe.check(wrap_model(scripted, parse_card(image_card(), base_dir=Path("."))), data)
    named = wrap_model(scripted, parse_card(image_card(target_layer="conv2"), base_dir=Path(".")))
    assert "TorchScript" in probe.check(named, data)
    # torch.export flattens the graph: 'conv2' survives only as a holder of parameters.
    exported = torch.export.export(QuadrantNet(), (torch.zeros(2, 1, SIZE, SIZE),)).module()
    named = dataclasses.replace(handle, network=exported, card=parse_card(image_card(target_layer="conv2"), base_dir=Path(".")))
    assert "never called" in probe.check(named, data)
    # A layer the card names but the network lacks.
    missing = dataclasses.replace(handle, card=parse_card(image_card(target_layer="nope"), base_dir=Path(".")))
    assert "nope" in probe.check(missing, data)


def test_grad_cam_names_the_layer_when_its_hook_never_fires(image_setup):
    _, data, context = image_setup
    net = QuadrantNet()
    net.spare = nn.Conv2d(1, 1, 3)  # a real Conv2d the forward pass never calls
    handle = wrap_model(net, parse_card(image_card(target_layer="spare"), base_dir=Path(".")))
    with pytest.raises(AuditError, match="could not hook layer 'spare'"):
        make_probe("grad_cam").run(handle, data, context)
