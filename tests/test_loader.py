"""Loading each format, device choice, the dry run, and every refusal."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from audits.errors import CardError, ModelLoadError, UnsafeModelError
from models.card import load_card
from models.loader import load_model, resolve_device

from .conftest import write_card


def _reference_proba(net, x, card) -> np.ndarray:
    norm = card["input"].get("normalization")
    t = torch.as_tensor(x)
    if norm:
        t = (t - norm["mean"][0]) / norm["std"][0]
    with torch.no_grad():
        return torch.softmax(net(t), dim=1).numpy()


def test_safetensors_loads_with_identity_and_matches_the_network(image_bundle):
    handle = load_model(load_card(image_bundle["card_path"]))
    assert handle.device == torch.device("cpu")
    assert handle.parameter_count == sum(p.numel() for p in image_bundle["net"].parameters())
    assert len(handle.weights_sha256) == 64
    proba = handle.predict_proba(image_bundle["x"], batch_size=7)  # batching must not change results
    np.testing.assert_allclose(proba, _reference_proba(image_bundle["net"], image_bundle["x"], image_bundle["card"]), atol=1e-6)
    assert handle.meter.calls == 6 and handle.meter.rows == 40


def test_torchscript_and_torch_export_give_the_same_predictions(image_bundle):
    folder, net, x = image_bundle["dir"], image_bundle["net"], image_bundle["x"]
    torch.jit.save(torch.jit.trace(net, torch.zeros(2, 1, 8, 8)), str(folder / "model.ts"))
    torch.export.save(torch.export.export(net, (torch.zeros(2, 1, 8, 8),), dynamic_shapes=({0: torch.export.Dim("batch")},)), str(folder / "model.pt2"))
    expected = _reference_proba(net, x, image_bundle["card"])
    for fmt, weights in (("torchscript", "model.ts"), ("torch_export", "model.pt2")):
        card = {**image_bundle["card"], "format": fmt, "weights": weights}
        card.pop("architecture")
        (folder / fmt).mkdir()
        for f in ("eval.npz", "attrs.csv", weights):
            (folder / fmt / f).write_bytes((folder / f).read_bytes())
        handle = load_model(load_card(write_card(folder / fmt, card)))
        np.testing.assert_allclose(handle.predict_proba(x), expected, atol=1e-5)


def test_state_dict_loads_with_weights_only(image_bundle):
    folder = image_bundle["dir"]
    torch.save(image_bundle["net"].state_dict(), folder / "weights.pt")
    card = {**image_bundle["card"], "format": "pytorch_state_dict", "weights": "weights.pt"}
    handle = load_model(load_card(write_card(folder, card)))
    np.testing.assert_allclose(handle.predict_proba(image_bundle["x"]), _reference_proba(image_bundle["net"], image_bundle["x"], card), atol=1e-6)


class _WritesAFile:
    """Unpickling this calls Path.write_text: a stand-in for arbitrary code execution."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (Path.write_text, (self.target, "pwned"))


@pytest.mark.parametrize("fmt", ["pytorch_state_dict", "safetensors", "torchscript", "torch_export"])
def test_malicious_pickle_is_refused_and_never_runs(image_bundle, fmt):
    folder = image_bundle["dir"]
    marker = folder / "marker.txt"
    payload = {"features.0.weight": _WritesAFile(marker)}
    if fmt == "pytorch_state_dict":
        torch.save(payload, folder / "evil.bin")  # a zip-framed pickle, as torch.save writes
    else:
        (folder / "evil.bin").write_bytes(pickle.dumps(payload))
    card = {**image_bundle["card"], "format": fmt, "weights": "evil.bin"}
    if fmt in ("torchscript", "torch_export"):
        card.pop("architecture")
    with pytest.raises(ModelLoadError) as info:
        load_model(load_card(write_card(folder, card)))
    assert not marker.exists(), "the pickle's payload ran"
    if fmt != "torch_export":
        assert isinstance(info.value, UnsafeModelError) or "pickle" in str(info.value).lower() or "archive" in str(info.value).lower()
    assert info.value.fix


def test_weights_that_do_not_fit_the_architecture_are_named(image_bundle):
    card = {**image_bundle["card"], "architecture": {"target": "models.architectures:DigitsCNN", "kwargs": {"width": 8}}}
    with pytest.raises(ModelLoadError, match="do not fit"):
        load_model(load_card(write_card(image_bundle["dir"], card)))


def test_dry_run_catches_an_input_spec_that_does_not_fit(tabular_bundle):
    card = dict(tabular_bundle["card"])
    card["input"] = {"kind": "tabular", "features": card["input"]["features"][:3]}  # 6 columns, model wants 7
    with pytest.raises(ModelLoadError, match="dry forward pass"):
        load_model(load_card(write_card(tabular_bundle["dir"], card)))


def test_class_count_mismatch_is_named(image_bundle):
    card = {**image_bundle["card"], "class_names": ["a", "b", "c"]}
    with pytest.raises(ModelLoadError, match="3 classes"):
        load_model(load_card(write_card(image_bundle["dir"], card)))


def test_bad_cards_name_the_field(tmp_path):
    with pytest.raises(CardError, match="does not exist"):
        load_card(tmp_path / "nope.yaml")
    (tmp_path / "card.yaml").write_text(yaml.safe_dump({"name": "x", "modality": "image", "format": "safetensors", "weights": "w", "class_names": ["a", "b"], "input": {"kind": "image", "channels": 1, "height": 2, "width": 2}}))
    with pytest.raises(CardError, match="architecture"):
        load_card(tmp_path / "card.yaml")
    (tmp_path / "card.yaml").write_text("name: [unclosed")
    with pytest.raises(CardError, match="YAML"):
        load_card(tmp_path / "card.yaml")


def test_device_override_and_missing_cuda(monkeypatch):
    monkeypatch.setenv("AUDITS_DEVICE", "cpu")
    assert resolve_device() == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ModelLoadError, match="CUDA is not available"):
            resolve_device("cuda")
    with pytest.raises(ModelLoadError, match="Unknown device"):
        resolve_device("tpu-ish")
