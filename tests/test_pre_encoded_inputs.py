"""Pre-encoded inputs (issue 15): one-hot columns declared as the attribute they encode, standardised numerics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import save_file

from audits.data import load_data
from audits.engine import build_context
from audits.errors import CardError, DataError, ModelLoadError
from audits.probes import make_probe
from audits.robustness._tabular import TabularLayout, set_levels
from models.card import load_card, parse_card
from models.loader import load_model

from .conftest import write_card

FEATURES = [
    {"name": "score_z", "type": "numeric"},
    {"name": "region", "type": "categorical", "levels": ["north", "south", "east"], "reference": "north", "columns": ["region_south", "region_east"]},
]


def pre_encoded(folder, group_weight: float, n: int = 90):
    """A linear model over [score_z, region_south, region_east] whose favourable logit moves by ``group_weight`` for 'south'."""
    rng = np.random.default_rng(0)
    region = np.array(["north", "south", "east"] * (n // 3))
    frame = pd.DataFrame({
        "score_z": np.round(rng.normal(0, 0.1, n), 3),
        "region_south": (region == "south").astype(int), "region_east": (region == "east").astype(int),
        "label": rng.choice(["no", "yes"], n),
    })  # fmt: skip
    frame.to_csv(folder / "eval.csv", index=False)
    net = torch.nn.Linear(3, 2)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([[0.0, 0.0, 0.0], [1.0, group_weight, 0.0]]))
        net.bias.copy_(torch.tensor([0.0, -0.5]))  # north and east: 'no' (score_z is near 0); south: 'yes' when group_weight > 0.5
    save_file(net.state_dict(), str(folder / "weights.safetensors"))
    card = {
        "name": "pre-encoded", "modality": "tabular", "format": "safetensors", "weights": "weights.safetensors",
        "architecture": {"target": "torch.nn:Linear", "kwargs": {"in_features": 3, "out_features": 2}},
        "class_names": ["no", "yes"], "favourable_class": "yes",
        "input": {"kind": "tabular", "standardised": True, "features": FEATURES},
        "data": {"path": "eval.csv", "label_column": "label", "sensitive": ["region"]},
    }  # fmt: skip
    return load_card(write_card(folder, card)), region


def test_the_one_hot_columns_are_decoded_into_the_attribute_and_encode_back_with_the_reference_as_zeros(tmp_path):
    card, region = pre_encoded(tmp_path, 2.0)
    data = load_data(card)
    assert list(data.raw["region"]) == list(region) and list(data.attributes["region"]) == list(region)
    assert data.x.shape == (90, 3) and np.array_equal(data.x[:, 1], (region == "south").astype(np.float32))
    layout = TabularLayout.of(load_model(card, device="cpu"), data)
    j = layout.names.index("region")
    assert layout.kinds[j] == "categorical"
    assert list(layout.codes(data.x, j)) == [["north", "south", "east"].index(r) for r in region]
    to_north = set_levels(data.x, layout, j, np.arange(90), np.zeros(90, dtype=np.int64))
    assert (to_north[:, 1:] == 0).all() and np.array_equal(to_north[:, 0], data.x[:, 0])  # switched group, no noise on the bits


@pytest.mark.parametrize(("weight", "flips"), [(2.0, True), (0.0, False)])
def test_counterfactual_flips_are_positive_when_the_decision_depends_on_the_encoded_group_and_zero_when_it_does_not(tmp_path, weight, flips):
    card, region = pre_encoded(tmp_path, weight)
    model, data = load_model(card, device="cpu"), load_data(card)
    result = make_probe("counterfactual_flips", {}).run(model, data, build_context(model, data))
    assert result.attributes == ["region"]
    if flips:
        # Every south row flips to 'no' in north or east; every north/east row flips to 'yes' in south.
        assert result.flip_rate("region") == 1.0
        pairs = result.pairs.set_index(["group", "counterfactual"])
        assert pairs.loc[("north", "south"), "to_favourable"] == 30 and pairs.loc[("south", "north"), "flips"] == 30
        assert pairs.loc[("north", "east"), "flips"] == 0  # north and east are decided alike
    else:
        assert result.flip_rate("region") == 0.0 and (result.pairs["flips"] == 0).all()


def test_bad_one_hot_columns_and_contradictory_declarations_are_refused(tmp_path):
    card, _ = pre_encoded(tmp_path, 2.0)
    frame = pd.read_csv(tmp_path / "eval.csv")
    frame.loc[4, "region_east"] = 1  # row 4 is 'south' already
    frame.to_csv(tmp_path / "eval.csv", index=False)
    with pytest.raises(DataError, match="row 4 sets 2 of 'region'"):
        load_data(card)
    frame["region_east"] = frame["region_east"].astype(float)
    frame.loc[4, "region_east"] = 0.5
    frame.to_csv(tmp_path / "eval.csv", index=False)
    with pytest.raises(DataError, match="one-hot column 'region_east'"):
        load_data(card)
    base = {"name": "m", "modality": "tabular", "format": "torchscript", "weights": "m.pt", "class_names": ["no", "yes"]}
    scaled = {"kind": "tabular", "standardised": True, "features": [{"name": "x", "type": "numeric", "center": 3.0}]}
    with pytest.raises(CardError, match="standardised"):
        parse_card({**base, "input": scaled}, base_dir=".")
    short = {"kind": "tabular", "features": [{"name": "r", "type": "categorical", "levels": ["a", "b", "c"], "columns": ["r_b", "r_c"]}]}
    with pytest.raises(CardError, match="lists 2 one-hot columns for 3 encoded levels"):
        parse_card({**base, "input": short}, base_dir=".")


def test_a_dry_run_failure_names_the_models_input_width_against_the_cards(tmp_path):
    pre_encoded(tmp_path, 2.0)
    torch.jit.script(torch.nn.Sequential(torch.nn.Linear(3, 2))).save(str(tmp_path / "model.pt"))
    # The group declared without its reference level: 1 + 3 columns, where the model reads 3.
    features = [FEATURES[0], {**FEATURES[1], "reference": None, "columns": None}]
    card = {
        "name": "pre-encoded-ts", "modality": "tabular", "format": "torchscript", "weights": "model.pt", "class_names": ["no", "yes"],
        "input": {"kind": "tabular", "features": features}, "data": {"path": "eval.csv", "label_column": "label"},
    }  # fmt: skip
    with pytest.raises(ModelLoadError, match=r"(expects|takes) 3 .*declares 4") as caught:
        load_model(parse_card(card, base_dir=tmp_path), device="cpu")
    assert "TorchScript interpreter" not in caught.value.problem
