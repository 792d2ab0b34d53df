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
    (tmp_path / "card.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "x",
                "modality": "image",
                "format": "safetensors",
                "weights": "w",
                "class_names": ["a", "b"],
                "input": {"kind": "image", "channels": 1, "height": 2, "width": 2},
            }
        )
    )
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


# Issue 20, item 7: each refusal names what it found and the fix.


def test_weights_linked_out_of_the_card_folder_are_refused_naming_the_link(image_bundle, tmp_path):
    folder = image_bundle["dir"]
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (folder / "weights.safetensors").rename(outside / "weights.safetensors")
    (folder / "weights.safetensors").symlink_to(outside / "weights.safetensors")
    with pytest.raises(ModelLoadError) as info:
        load_model(load_card(image_bundle["card_path"]))
    assert "symbolic link" in info.value.problem and str(folder / "weights.safetensors") in info.value.problem
    assert str(outside / "weights.safetensors") in info.value.problem
    assert "cp " in info.value.fix
    # A link that stays inside the card's folder is fine.
    (folder / "weights.safetensors").unlink()
    (folder / "store").mkdir()
    (outside / "weights.safetensors").rename(folder / "store" / "weights.safetensors")
    (folder / "weights.safetensors").symlink_to(folder / "store" / "weights.safetensors")
    assert load_model(load_card(image_bundle["card_path"])).parameter_count > 0


def test_a_model_folder_whose_files_link_out_is_refused(text_bundle, tmp_path):
    model = text_bundle["dir"] / "model"
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (model / "model.safetensors").rename(outside / "model.safetensors")
    (model / "model.safetensors").symlink_to(outside / "model.safetensors")
    with pytest.raises(ModelLoadError, match="symbolic link") as info:
        load_model(load_card(text_bundle["card_path"]))
    assert str(model / "model.safetensors") in info.value.problem


class Thing:
    """A class a checkpoint may reference: loading it would import and call this module's code."""

    def __reduce__(self):
        return (Thing, ())


class _Exec:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (exec, (f"open({str(self.target)!r}, 'w')",))


@pytest.mark.parametrize(("make", "named"), [(lambda _: Thing(), "tests.test_loader.Thing"), (_Exec, "builtins.exec"), (_WritesAFile, "builtins.getattr")])
def test_a_checkpoint_needing_python_objects_names_the_global(image_bundle, make, named):
    folder = image_bundle["dir"]
    marker = folder / "marker.txt"
    state = dict(image_bundle["net"].state_dict())
    state["extra"] = make(marker)
    torch.save(state, folder / "weights.pt")
    card = {**image_bundle["card"], "format": "pytorch_state_dict", "weights": "weights.pt"}
    with pytest.raises(UnsafeModelError) as info:
        load_model(load_card(write_card(folder, card)))
    assert named in info.value.problem
    assert "collections.OrderedDict" not in info.value.problem and "torch." not in info.value.problem  # allowed globals are not blamed
    assert not marker.exists(), "the pickle's payload ran"


def test_an_ordered_dict_checkpoint_needs_no_refusal(image_bundle):
    from collections import OrderedDict

    folder = image_bundle["dir"]
    state = image_bundle["net"].state_dict()
    assert isinstance(state, OrderedDict)
    torch.save(state, folder / "weights.pt")
    card = {**image_bundle["card"], "format": "pytorch_state_dict", "weights": "weights.pt"}
    assert load_model(load_card(write_card(folder, card))).parameter_count == sum(p.numel() for p in image_bundle["net"].parameters())


def test_a_text_max_length_beyond_the_position_embeddings_is_refused_at_load(text_bundle):
    card = {**text_bundle["card"], "input": {**text_bundle["card"]["input"], "max_length": 110}}  # tiny BERT: 64 positions
    with pytest.raises(ModelLoadError) as info:
        load_model(load_card(write_card(text_bundle["dir"], card)))
    assert "110" in info.value.problem and "64" in info.value.problem
    assert "at most 64" in info.value.fix
    card["input"]["max_length"] = 64  # exactly the table's size loads, and a full-length text runs
    handle = load_model(load_card(write_card(text_bundle["dir"], card)))
    assert handle.predict_proba(handle.tokenize([" ".join(["good"] * 200)])).shape == (1, 2)


class _FixedPositions(torch.nn.Module):
    """A text model with a fixed table of 32 positions it adds without checking the length."""

    def __init__(self) -> None:
        super().__init__()
        self.tokens = torch.nn.Embedding(100, 4)
        self.register_buffer("positions", torch.zeros(32, 4))
        self.head = torch.nn.Linear(4, 2)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.head((self.tokens(input_ids) + self.positions[: input_ids.shape[1]]).mean(dim=1))


def test_the_dry_run_tries_the_card_max_length(tmp_path):
    from models.card import parse_card
    from models.loader import wrap_model
    from tests.text_fixtures import make_tokenizer, text_card

    make_tokenizer().save_pretrained(str(tmp_path))
    card = text_card("fixed", format="torchscript", weights="unused.pt", input={"kind": "text", "max_length": 40, "tokenizer": str(tmp_path)})
    with pytest.raises(ModelLoadError, match=r"input shape \(40,\)") as info:
        wrap_model(_FixedPositions(), parse_card(card, base_dir=tmp_path))
    assert "max_length" in info.value.fix
    card["input"]["max_length"] = 32
    assert wrap_model(_FixedPositions(), parse_card(card, base_dir=tmp_path)).batch_size > 0


@pytest.mark.parametrize("fmt", ["safetensors", "torchscript", "torch_export"])
def test_a_dry_run_failure_names_the_width_the_model_takes(tabular_bundle, fmt):
    folder, net = tabular_bundle["dir"], tabular_bundle["net"]
    card = dict(tabular_bundle["card"])
    card["input"] = {"kind": "tabular", "features": card["input"]["features"][:3]}  # 5 encoded columns, the model takes 7
    if fmt == "torchscript":
        torch.jit.save(torch.jit.trace(net, torch.zeros(2, 7)), str(folder / "model.ts"))
        card = {**card, "format": fmt, "weights": "model.ts"}
    elif fmt == "torch_export":
        program = torch.export.export(net, (torch.zeros(2, 7),), dynamic_shapes=({0: torch.export.Dim("batch")},))
        torch.export.save(program, str(folder / "model.pt2"))
        card = {**card, "format": fmt, "weights": "model.pt2"}
    if fmt != "safetensors":
        card.pop("architecture")
    with pytest.raises(ModelLoadError) as info:
        load_model(load_card(write_card(folder, card)))
    problem = info.value.problem
    assert "takes 7 input features" in problem and "declares 5" in problem and "net.0" in problem, problem
    assert "colour (3 levels)" in problem
    assert "TorchScript interpreter" not in str(info.value)
    assert "7 columns" in info.value.fix


def test_a_dry_run_failure_names_the_channels_the_model_takes(image_bundle):
    card = {**image_bundle["card"], "input": {"kind": "image", "channels": 3, "height": 8, "width": 8}}
    with pytest.raises(ModelLoadError, match=r"features\.0, Conv2d\) takes 1 input channels, but the card declares 3") as info:
        load_model(load_card(write_card(image_bundle["dir"], card)))
    assert "input.channels to 1" in info.value.fix


class _Reshapes(torch.nn.Module):
    """A CNN that views its input as 1 x 8 x 8 whatever it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 2, 3)
        self.head = torch.nn.Linear(72, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x.reshape(-1, 1, 8, 8)).flatten(1))


def test_a_torchscript_failure_that_is_not_the_width_gives_the_error_line(image_bundle):
    folder = image_bundle["dir"]
    torch.jit.save(torch.jit.trace(_Reshapes().eval(), torch.zeros(2, 1, 8, 8)), str(folder / "model.ts"))
    card = {**image_bundle["card"], "format": "torchscript", "weights": "model.ts", "input": {"kind": "image", "channels": 1, "height": 4, "width": 4}}
    card.pop("architecture")
    with pytest.raises(ModelLoadError, match=r"input shape \(1, 4, 4\) failed") as info:
        load_model(load_card(write_card(folder, card)))
    assert "TorchScript interpreter" not in info.value.problem and "RuntimeError: shape '[-1, 1, 8, 8]' is invalid" in info.value.problem, info.value.problem
