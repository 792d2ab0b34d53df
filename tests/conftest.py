"""Shared fixtures: tiny models with known answers, written to real files through the real loaders."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from safetensors.torch import save_file

os.environ.setdefault("AUDITS_DEVICE", "cpu")
torch.set_num_threads(1)

from models.architectures import DigitsCNN, TabularMLP  # noqa: E402

TABULAR_FEATURES = [
    {"name": "income", "type": "numeric", "center": 50.0, "scale": 20.0},
    {"name": "age", "type": "numeric", "center": 40.0, "scale": 12.0},
    {"name": "colour", "type": "categorical", "levels": ["red", "green", "blue"]},
    {"name": "group", "type": "categorical", "levels": ["a", "b"]},
]


def write_card(folder: Path, card: dict) -> Path:
    path = folder / "card.yaml"
    path.write_text(yaml.safe_dump(card, sort_keys=False))
    return path


@pytest.fixture
def image_bundle(tmp_path: Path) -> dict:
    """A DigitsCNN with random weights as safetensors, 40 random 1x8x8 images, a site attribute."""
    tmp_path = tmp_path / "image"
    tmp_path.mkdir()
    torch.manual_seed(0)
    net = DigitsCNN(in_channels=1, n_classes=10, width=4).eval()
    save_file(net.state_dict(), str(tmp_path / "weights.safetensors"))
    rng = np.random.default_rng(0)
    x = rng.random((40, 1, 8, 8), dtype=np.float32)
    y = rng.integers(0, 10, 40)
    np.savez(tmp_path / "eval.npz", x=x, y=y)
    pd.DataFrame({"site": np.where(np.arange(40) % 4 == 0, "C", "A")}).to_csv(tmp_path / "attrs.csv", index=False)
    card = {
        "name": "tiny-cnn",
        "modality": "image",
        "format": "safetensors",
        "weights": "weights.safetensors",
        "architecture": {"target": "models.architectures:DigitsCNN", "kwargs": {"in_channels": 1, "n_classes": 10, "width": 4}},
        "class_names": [str(i) for i in range(10)],
        "input": {"kind": "image", "channels": 1, "height": 8, "width": 8, "normalization": {"mean": [0.5], "std": [0.25]}},
        "data": {"path": "eval.npz", "label_column": "y", "attributes_path": "attrs.csv", "sensitive": ["site"]},
    }
    return {"dir": tmp_path, "card": card, "card_path": write_card(tmp_path, card), "net": net, "x": x, "y": y}


def tabular_frame(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "income": rng.normal(50, 20, n).round(1),
            "age": rng.integers(18, 80, n),
            "colour": rng.choice(["red", "green", "blue"], n),
            "group": rng.choice(["a", "b"], n),
        }
    )
    frame["label"] = np.where(frame["income"] + 10 * (frame["group"] == "a") > 55, "high", "low")
    return frame


@pytest.fixture
def tabular_bundle(tmp_path: Path) -> dict:
    """A TabularMLP with random weights, a CSV of raw columns with a label and a sensitive column."""
    tmp_path = tmp_path / "tabular"
    tmp_path.mkdir()
    torch.manual_seed(0)
    net = TabularMLP(in_features=7, n_classes=2, hidden=[8]).eval()
    save_file(net.state_dict(), str(tmp_path / "weights.safetensors"))
    frame = tabular_frame(60)
    frame.to_csv(tmp_path / "eval.csv", index=False)
    card = {
        "name": "tiny-mlp",
        "modality": "tabular",
        "format": "safetensors",
        "weights": "weights.safetensors",
        "architecture": {"target": "models.architectures:TabularMLP", "kwargs": {"in_features": 7, "n_classes": 2, "hidden": [8]}},
        "class_names": ["low", "high"],
        "input": {"kind": "tabular", "features": TABULAR_FEATURES},
        "data": {"path": "eval.csv", "label_column": "label", "sensitive": ["group"]},
    }
    return {"dir": tmp_path, "card": card, "card_path": write_card(tmp_path, card), "net": net, "frame": frame}


@pytest.fixture
def text_bundle(tmp_path: Path) -> dict:
    """A tiny random BertForSequenceClassification and its word-level tokenizer saved with
    save_pretrained (format 'huggingface'), and a CSV of 40 texts with labels and a sensitive column."""
    from tests.text_fixtures import make_tokenizer, save_model, text_card, text_frame, tiny_bert

    tmp_path = tmp_path / "text"
    tmp_path.mkdir()
    net, tokenizer = tiny_bert(), make_tokenizer()
    save_model(tmp_path / "model", net, tokenizer)
    frame = text_frame(40)
    frame.to_csv(tmp_path / "eval.csv", index=False)
    card = text_card()
    return {"dir": tmp_path, "card": card, "card_path": write_card(tmp_path, card), "net": net, "tokenizer": tokenizer, "frame": frame}
