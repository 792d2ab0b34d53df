"""Every registered probe, through the same checks: shapes, determinism, round trip, model untouched."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import save_file

from audits.data import load_data
from audits.engine import build_context
from audits.probes import Probe, make_probe, register, registered_probes
from audits.results import ProbeResult
from audits.serialization import from_jsonable, to_jsonable
from models.architectures import DigitsViT
from models.card import load_card
from models.loader import load_model

from .conftest import write_card

PROBES = sorted(registered_probes())


def test_the_registry_holds_the_methods_the_product_promises():
    expected = {"grad_cam", "integrated_gradients", "saliency", "gradient_shap", "occlusion", "lime_image", "kernel_shap_image", "kernel_shap", "lime"}
    assert expected <= set(PROBES)


@pytest.mark.parametrize("name", PROBES)
def test_every_probe_declares_its_result_type(name):
    cls = registered_probes()[name]
    assert isinstance(cls.result_type, type) and issubclass(cls.result_type, ProbeResult)
    # Result classes live in audits.results (torch-free), never in a probe module.
    assert cls.result_type.__module__.startswith("audits.results."), cls.result_type.__module__


def test_a_probe_without_result_type_is_refused():
    class Nameless(Probe):
        name = "no_result_type"
        category = "robustness"
        modalities = ("tabular",)

        def _run(self, model, data, context):
            raise AssertionError

    with pytest.raises(TypeError, match="result_type"):
        register(Nameless)
    assert "no_result_type" not in registered_probes()


def _assert_same(a, b) -> None:
    if isinstance(a, np.ndarray):
        np.testing.assert_array_equal(a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _assert_same(a[k], b[k])
    else:
        assert a == b


def _without_cost(result) -> dict:
    raw = to_jsonable(result)
    raw.pop("cost")
    return raw


@pytest.fixture
def vit_bundle(image_bundle, tmp_path) -> dict:
    """The image bundle's data read by a tiny DigitsViT (for probes that need a transformer)."""
    folder = tmp_path / "vit"
    folder.mkdir()
    kwargs = {"n_classes": 10, "dim": 8, "depth": 2, "heads": 2}
    torch.manual_seed(0)
    save_file(DigitsViT(**kwargs).state_dict(), str(folder / "weights.safetensors"))
    data = {k: str(image_bundle["dir"] / v) if k.endswith("path") else v for k, v in image_bundle["card"]["data"].items()}
    card = {**image_bundle["card"], "name": "tiny-vit", "architecture": {"target": "models.architectures:DigitsViT", "kwargs": kwargs}, "data": data}
    return {"dir": folder, "card": card, "card_path": write_card(folder, card)}


def _with_training_sample(bundle: dict) -> dict:
    """The bundle with a training sample declared (``data.train_path``): its first rows, for probes that read one."""
    folder, card = bundle["card_path"].parent, bundle["card"]
    data = dict(card["data"])
    if card["modality"] == "image":
        source = Path(data["path"]) if Path(data["path"]).is_absolute() else folder / data["path"]
        with np.load(source) as npz:
            np.savez(folder / "train.npz", x=npz["x"][:20], y=npz["y"][:20])
        attributes = Path(data["attributes_path"]) if Path(data["attributes_path"]).is_absolute() else folder / data["attributes_path"]
        pd.read_csv(attributes).head(20).to_csv(folder / "train_attributes.csv", index=False)
        data |= {"train_path": "train.npz", "train_attributes_path": "train_attributes.csv"}
    else:
        pd.read_csv(folder / data["path"], keep_default_na=False).head(20).to_csv(folder / "train.csv", index=False)
        data |= {"train_path": "train.csv"}
    card = {**card, "data": data}
    return {**bundle, "card": card, "card_path": write_card(folder, card)}


@pytest.mark.parametrize("name", PROBES)
def test_probe_conformance(name, image_bundle, vit_bundle, tabular_bundle, text_bundle):
    probe = make_probe(name)
    bundles = [_with_training_sample(b) for b in (image_bundle, vit_bundle, tabular_bundle, text_bundle)]
    candidates = [b for b in bundles if b["card"]["modality"] in probe.modalities]
    assert candidates, f"{name} declares no modality we can test"
    # A probe may refuse a bundle (attention maps need a transformer), but not every bundle of a modality.
    bundles = [b for b in candidates if probe.supports(load_model(load_card(b["card_path"])), load_data(load_card(b["card_path"])))]
    assert {b["card"]["modality"] for b in bundles} == {b["card"]["modality"] for b in candidates}, f"{name} refused every bundle of a modality"
    for bundle in bundles:
        card = load_card(bundle["card_path"])
        model, data = load_model(card), load_data(card)
        params_before = {k: v.clone() for k, v in model.network.state_dict().items()}
        grads_before = [p.requires_grad for p in model.network.parameters()]
        context = build_context(model, data, seed=3, sample_indices=np.array([0, 5, 9]))
        first = probe.run(model, data, context)
        second = make_probe(name).run(model, data, context)

        # Same seed, same answer (everything but the timings).
        assert _without_cost(first) == _without_cost(second)
        assert type(first) is probe.result_type
        assert first.method == name and first.seed == 3
        assert first.cost.wall_time_s > 0 and first.cost.rows_evaluated >= first.cost.model_calls
        assert isinstance(first.headline(), str)

        restored = from_jsonable(json.loads(json.dumps(to_jsonable(first))))
        assert type(restored) is type(first)
        assert _without_cost(restored) == _without_cost(first)

        if probe.category == "explanation":
            expected = {"image": (3, 8, 8), "tabular": (3, 4)}.get(card.modality) or (3, card.input.max_length)
            assert first.attributions.shape == expected
            assert np.isfinite(first.attributions).all()
            np.testing.assert_array_equal(first.sample_indices, [0, 5, 9])
            np.testing.assert_array_equal(first.targets, context.predictions[[0, 5, 9]])
            assert first.cost.model_calls > 0
            if card.modality == "tabular":
                assert first.feature_names == ["income", "age", "colour", "group"]
            if card.modality == "text":  # one token list per sample, aligned with its positions
                assert [len(t) for t in first.tokens] == [int((row != 0).sum()) for row in data.x[[0, 5, 9]]]
            for field in ("attributions", "quality", "params"):
                _assert_same(getattr(first, field), getattr(restored, field))

        for k, v in model.network.state_dict().items():
            assert torch.equal(v, params_before[k]), f"{name} changed {k}"
        assert [p.requires_grad for p in model.network.parameters()] == grads_before
        assert not model.network.training


@pytest.mark.parametrize("name", PROBES)
def test_probe_refuses_a_modality_it_does_not_support(name, image_bundle, tabular_bundle, text_bundle):
    probe = make_probe(name)
    for bundle in (image_bundle, tabular_bundle, text_bundle):
        card = load_card(bundle["card_path"])
        if card.modality not in probe.modalities:
            assert not probe.supports(load_model(card), load_data(card))
