"""Image corruptions and calibration: identity at severity 0, monotone severities, known answers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn

from audits.data import AuditData, load_data
from audits.engine import build_context
from audits.errors import SpecError
from audits.performance import reliability_table
from audits.probes import make_probe
from audits.robustness._corruptions import CORRUPTIONS, INCREASING, MAX_SEVERITY, SEVERITY_PARAMETERS, corrupt
from models.card import load_card, parse_card
from models.loader import load_model, wrap_model


def _images() -> list[torch.Tensor]:
    digits = torch.as_tensor(load_digits().images[:60] / 16.0, dtype=torch.float32)[:, None]  # 8x8 grey
    rgb = torch.rand((24, 3, 32, 32), generator=torch.Generator().manual_seed(0))
    smooth = torch.nn.functional.interpolate(digits[:12], size=(64, 64), mode="bilinear")
    return [digits, rgb, smooth]


def _distances(x: torch.Tensor, name: str, value_range=(0.0, 1.0)) -> list[float]:
    g = torch.Generator()
    out = []
    for s in range(MAX_SEVERITY + 1):
        g.manual_seed(7)
        out.append(float((corrupt(x, name, s, g, value_range) - x).abs().mean()))
    return out


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_severity_zero_is_the_identity(name):
    for x in _images():
        assert torch.equal(corrupt(x, name, 0, torch.Generator().manual_seed(0)), x)


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_the_strength_is_monotone_in_severity(name):
    params = np.array(SEVERITY_PARAMETERS[name])
    steps = np.diff(params) if INCREASING[name] else -np.diff(params)
    assert (steps > 0).all(), f"{name}: {params}"
    for x in _images():
        d = _distances(x, name)
        assert d[0] == 0.0 and (np.diff(d) >= 0).all(), f"{name} on {tuple(x.shape)}: {np.round(d, 4)}"
        assert d[-1] > 0


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_corruptions_keep_shape_range_and_are_reproducible(name):
    x = torch.rand((5, 2, 8, 8), generator=torch.Generator().manual_seed(1)) * 255  # 2 channels, 0..255 pixels
    a = corrupt(x, name, 3, torch.Generator().manual_seed(3), (0.0, 255.0))
    b = corrupt(x, name, 3, torch.Generator().manual_seed(3), (0.0, 255.0))
    assert a.shape == x.shape and torch.equal(a, b)
    assert a.min() >= 0.0 and a.max() <= 255.0


def test_noise_uses_common_random_numbers_across_severities():
    x = torch.full((4, 1, 8, 8), 0.5)
    g = torch.Generator()
    noise = []
    for s in (1, 2):
        g.manual_seed(0)
        noise.append(corrupt(x, "gaussian_noise", s, g) - x)
    ratio = SEVERITY_PARAMETERS["gaussian_noise"][2] / SEVERITY_PARAMETERS["gaussian_noise"][1]
    unclipped = (x + noise[1] > 0) & (x + noise[1] < 1)
    torch.testing.assert_close(noise[1][unclipped], noise[0][unclipped] * ratio)


def test_unknown_corruption_and_severity_are_refused():
    with pytest.raises(ValueError):
        corrupt(torch.zeros(1, 1, 4, 4), "fog", 1, torch.Generator())
    with pytest.raises(ValueError):
        corrupt(torch.zeros(1, 1, 4, 4), "contrast", 6, torch.Generator())
    with pytest.raises(SpecError):
        make_probe("corruptions", {"severities": [0, 1]})
    with pytest.raises(SpecError):
        make_probe("calibration", {"corruption": "fog"})


class _Constant(nn.Module):
    """Ignores its input: every corruption leaves its predictions unchanged."""

    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.tensor([0.0, 1.0, 0.5]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bias.expand(x.shape[0], -1) + 0 * x.flatten(1).sum(dim=1, keepdim=True)


def _constant_case():
    card = parse_card(
        {
            "name": "constant", "modality": "image", "format": "torchscript", "weights": "unused.pt", "class_names": ["a", "b", "c"],
            "input": {"kind": "image", "channels": 1, "height": 8, "width": 8},
        },
        base_dir=Path("."),
    )  # fmt: skip
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 30)
    data = AuditData(
        modality="image", x=rng.random((30, 1, 8, 8), dtype=np.float32), y=y, class_names=["a", "b", "c"],
        attributes=pd.DataFrame({"site": np.where(np.arange(30) < 10, "S", "T")}), sensitive=["site"], source="test", sha256="0",
    )  # fmt: skip
    return wrap_model(_Constant(), card), data


def test_a_model_blind_to_its_input_keeps_its_accuracy_under_every_corruption():
    model, data = _constant_case()
    context = build_context(model, data, seed=0, sample_indices=np.arange(3))
    result = make_probe("corruptions").run(model, data, context)
    clean = (data.y == 1).mean()
    assert len(result.table) == len(CORRUPTIONS) * 5
    np.testing.assert_allclose(result.table["accuracy"], clean)
    assert (result.table["flip_rate"] == 0).all()
    assert result.mean_corruption_accuracy == pytest.approx(clean) and result.relative_corruption_accuracy == pytest.approx(1.0)
    assert set(result.by_group["group"]) == {"S", "T"} and (result.by_group["drop"].abs() < 1e-12).all()
    ex = result.examples
    assert ex.images.shape == (2, len(CORRUPTIONS), MAX_SEVERITY + 1, 1, 8, 8) and ex.images.dtype == np.uint8
    assert result.cost.model_calls > 0


def test_corruptions_hurt_a_real_cnn_and_the_per_group_table_is_complete(image_bundle):
    card = load_card(image_bundle["card_path"])
    model, data = load_model(card), load_data(card)
    context = build_context(model, data, seed=0, sample_indices=np.arange(2))
    result = make_probe("corruptions", {"corruptions": ["gaussian_noise", "jpeg"], "severities": [1, 5]}).run(model, data, context)
    assert list(result.table["corruption"]) == ["gaussian_noise"] * 2 + ["jpeg"] * 2
    assert len(result.by_group) == 4 * 2  # 4 conditions x sites A and C
    assert result.by_group["count"].sum() == 4 * len(data)
    assert result.headline()


def test_calibration_clean_figures_match_the_shared_reliability_table(image_bundle):
    card = load_card(image_bundle["card_path"])
    model, data = load_model(card), load_data(card)
    context = build_context(model, data, seed=0)
    result = make_probe("calibration", {"severities": [2, 4], "n_bins": 5}).run(model, data, context)
    _, ece = reliability_table(context.proba.max(axis=1), context.predictions == data.y, 5)
    assert result.ece == pytest.approx(ece)
    assert list(result.conditions["condition"]) == ["clean", "gaussian_noise", "gaussian_noise"]
    assert list(result.conditions["strength"]) == [0.0, 2.0, 4.0]
    assert result.reliability.groupby(["condition", "strength"]).size().eq(5).all()
    clean_groups = result.by_group[result.by_group["condition"] == "clean"]
    assert clean_groups["count"].sum() == len(data)
