"""The committed demo zoo (models/zoo) is valid, loadable, and its cards tell the truth.

Rebuild with ``python -m models.build_zoo`` if a recipe changes; these tests then check the new
artefacts. They use only the card schema, the architectures and the tabular encoder, not the
audit engine, so they pin the zoo itself.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from models.card import ModelCard, load_card
from models.tabular_encoding import TabularEncoder

ZOO = Path(__file__).resolve().parents[1] / "models" / "zoo"
NAMES = ["digits-cnn", "digits-vit", "adult-mlp", "toxicity-minilm"]
DIGITS = ["digits-cnn", "digits-vit"]
MAX_FOLDER_BYTES = 3_000_000


def _card(name: str) -> ModelCard:
    return load_card(ZOO / name / "card.yaml")


def _model(card: ModelCard) -> torch.nn.Module:
    module, cls = card.architecture.target.split(":")
    model = getattr(importlib.import_module(module), cls)(**card.architecture.kwargs)
    # Strict, except for the keys an architecture loads itself from a pinned package (external_weights).
    result = model.load_state_dict(load_file(str(card.weights_path)), strict=False)
    external = tuple(getattr(model, "external_weights", {}))
    assert not result.unexpected_keys and all(external and k.startswith(external) for k in result.missing_keys), result
    return model.eval()


def _predict(card: ModelCard, x: np.ndarray) -> np.ndarray:
    xt = torch.from_numpy(x)
    norm = getattr(card.input, "normalization", None)
    if norm is not None:
        xt = (xt - torch.tensor(norm.mean).view(1, -1, 1, 1)) / torch.tensor(norm.std).view(1, -1, 1, 1)
    with torch.no_grad():
        return _model(card)(xt).argmax(dim=1).numpy()


def _digits_eval(card: ModelCard) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    with np.load(card.resolve(card.data.path)) as npz:
        x, y = npz["x"], npz["y"]
    return x, y, pd.read_csv(card.resolve(card.data.attributes_path))


def _adult_eval(card: ModelCard) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    frame = pd.read_csv(card.resolve(card.data.path))
    y = frame[card.data.label_column].map({c: i for i, c in enumerate(card.class_names)}).to_numpy()
    return TabularEncoder(card.input).encode(frame), y, frame


@pytest.fixture(scope="module")
def predictions() -> dict[str, tuple[np.ndarray, np.ndarray, pd.DataFrame]]:
    out = {}
    for name, load in (("digits-cnn", _digits_eval), ("digits-vit", _digits_eval), ("adult-mlp", _adult_eval)):
        card = _card(name)
        x, y, attrs = load(card)
        out[name] = (_predict(card, x), y, attrs)
    return out


def test_zoo_holds_exactly_the_demo_models() -> None:
    assert sorted(p.parent.name for p in ZOO.glob("*/card.yaml")) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_card_validates_and_names_its_folder(name: str) -> None:
    card = _card(name)
    assert card.name == name
    assert card.format == "safetensors"
    assert card.weights_path.is_file()
    assert card.data is not None and card.resolve(card.data.path).is_file()
    assert card.notes["recipe"] == f"models/recipes/{name.replace('-', '_')}.py"
    assert (ZOO.parents[1] / card.notes["recipe"]).is_file()


@pytest.mark.parametrize("name", NAMES)
def test_weights_load_strictly_into_declared_architecture(name: str) -> None:
    card = _card(name)
    model = _model(card)  # strict inside
    external = tuple(getattr(model, "external_weights", {}))
    assert set(load_file(str(card.weights_path))) == {k for k in model.state_dict() if not (external and k.startswith(external))}
    if card.target_layer is not None:
        assert card.target_layer in dict(model.named_modules())


@pytest.mark.parametrize("name", NAMES)
def test_zoo_folders_are_small(name: str) -> None:
    assert sum(p.stat().st_size for p in (ZOO / name).iterdir()) < MAX_FOLDER_BYTES


@pytest.mark.parametrize("name", DIGITS)
def test_digits_eval_data_matches_card(name: str) -> None:
    card = _card(name)
    x, y, attrs = _digits_eval(card)
    assert x.dtype == np.float32 and x.shape == (card.notes["n_eval"], *card.input.shape)
    lo, hi = card.input.value_range
    assert lo <= x.min() and x.max() <= hi
    assert y.dtype == np.int64 and y.shape == (len(x),)
    assert set(np.unique(y)) == set(range(card.n_classes))
    assert list(attrs.columns) == ["site", "sample_id"] and len(attrs) == len(x)
    assert set(card.data.sensitive) <= set(attrs.columns)
    assert set(attrs["site"]) == {"A", "B", "C"}
    assert attrs["sample_id"].is_unique
    with torch.no_grad():
        assert _model(card)(torch.from_numpy(x[:4])).shape == (4, card.n_classes)


def test_adult_eval_data_matches_card() -> None:
    card = _card("adult-mlp")
    frame = pd.read_csv(card.resolve(card.data.path))
    encoder = TabularEncoder(card.input)
    encoder.validate(frame, source="eval.csv.gz")  # all columns present, every level declared, no NaN
    assert len(frame) == card.notes["n_eval"] == 16281
    assert list(frame.columns) == [*card.input.feature_names, card.data.label_column, "age_band"]
    assert len(card.input.feature_names) == 12
    assert set(frame[card.data.label_column]) == set(card.class_names)
    assert set(card.data.sensitive) <= set(frame.columns)
    assert set(frame["age_band"]) == {"<25", "25-44", "45-64", "65+"}
    assert card.architecture.kwargs["in_features"] == encoder.width == card.input.encoded_width


@pytest.mark.parametrize("name", DIGITS)
def test_digits_recorded_accuracy_is_reproduced(predictions, name: str) -> None:
    notes = _card(name).notes
    pred, y, attrs = predictions[name]
    site = attrs["site"].to_numpy()
    assert np.mean(pred == y) == pytest.approx(notes["eval_accuracy"], abs=1e-6)
    for s, acc in notes["eval_accuracy_by_site"].items():
        assert np.mean(pred[site == s] == y[site == s]) == pytest.approx(acc, abs=1e-6), s


@pytest.mark.parametrize("name", DIGITS)
def test_digits_site_c_is_worse_than_site_a(predictions, name: str) -> None:
    pred, y, attrs = predictions[name]
    site = attrs["site"].to_numpy()
    acc = {s: np.mean(pred[site == s] == y[site == s]) for s in ("A", "C")}
    assert acc["C"] < acc["A"]
    assert np.mean(pred == y) > 0.95


def test_digits_vit_is_audited_on_the_cnn_eval_set() -> None:
    cnn, vit = _card("digits-cnn"), _card("digits-vit")
    for path in ("path", "attributes_path"):
        assert vit.resolve(getattr(vit.data, path)).read_bytes() == cnn.resolve(getattr(cnn.data, path)).read_bytes()
    assert vit.input == cnn.input


def test_digits_vit_declares_its_token_layout() -> None:
    card = _card("digits-vit")
    model = _model(card)
    kwargs = card.architecture.kwargs
    grid = kwargs["image_size"] // kwargs["patch_size"]
    assert (model.patch_size, tuple(model.grid_size), model.num_prefix_tokens) == (kwargs["patch_size"], (grid, grid), 1)
    assert model.pos_embed.shape[1] == model.num_prefix_tokens + grid * grid
    assert sum(isinstance(m, torch.nn.MultiheadAttention) for m in model.modules()) == kwargs["depth"]


def test_adult_recorded_accuracy_is_reproduced(predictions) -> None:
    card = _card("adult-mlp")
    pred, y, frame = predictions["adult-mlp"]
    assert np.mean(pred == y) == pytest.approx(card.notes["eval_accuracy"], abs=1e-6)
    positive = card.class_names.index(">50K")
    sex = frame["sex"].to_numpy()
    for group, recorded in card.notes["predicted_positive_rate_by_sex"].items():
        assert np.mean(pred[sex == group] == positive) == pytest.approx(recorded, abs=1e-6), group


def test_adult_accuracy_is_above_080(predictions) -> None:
    pred, y, _ = predictions["adult-mlp"]
    assert np.mean(pred == y) > 0.80
