"""Every data problem gets an error that names it and the fix; good data loads aligned."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from audits.data import load_data
from audits.errors import DataError
from models.card import load_card

from .conftest import write_card


def test_tabular_loads_encoded_and_aligned(tabular_bundle):
    data = load_data(load_card(tabular_bundle["card_path"]))
    frame = tabular_bundle["frame"]
    assert data.x.shape == (60, 7)
    assert data.feature_names == ["income", "age", "colour", "group"]
    assert [list(g) for g in data.feature_groups] == [[0], [1], [2, 3, 4], [5, 6]]
    np.testing.assert_allclose(data.x[:, 0], (frame["income"] - 50) / 20, rtol=1e-6)
    assert (data.x[:, 2:5].sum(axis=1) == 1).all()
    np.testing.assert_array_equal(data.y, (frame["label"] == "high").astype(int))
    assert list(data.attributes["group"]) == list(frame["group"])


def _rewrite(bundle, frame: pd.DataFrame):
    frame.to_csv(bundle["dir"] / "eval.csv", index=False)
    return load_card(bundle["card_path"])


@pytest.mark.parametrize(
    ("mutate", "message", "fix"),
    [
        (lambda f: f.assign(income=f["income"].where(f.index != 3)), "missing value", "impute"),
        (lambda f: f.assign(income=f["income"].astype(object).where(f.index != 5, "inf")), "non-numeric or infinite", "finite"),
        (lambda f: f.assign(colour=f["colour"].where(f.index != 2, "purple")), "purple", "levels"),
        (lambda f: f.drop(columns=["age"]), "lacks the feature column", "Add the columns"),
        (lambda f: f.drop(columns=["group"]).assign(group_x=1), "lacks the feature column", "Add"),
        (lambda f: f.assign(label=f["label"].where(f.index != 0, "medium")), "medium", "class names"),
    ],
)
def test_tabular_problems_are_named(tabular_bundle, mutate, message, fix):
    card = _rewrite(tabular_bundle, mutate(tabular_bundle["frame"].copy()))
    with pytest.raises(DataError) as info:
        load_data(card)
    assert message in info.value.problem
    assert fix in info.value.fix


def test_missing_sensitive_column_and_label_column(tabular_bundle):
    card = dict(tabular_bundle["card"])
    card["data"] = {**card["data"], "sensitive": ["group", "region"]}
    with pytest.raises(DataError, match="sensitive column.*region"):
        load_data(load_card(write_card(tabular_bundle["dir"], card)))
    card["data"] = {**card["data"], "sensitive": [], "label_column": "target"}
    with pytest.raises(DataError, match="no label column 'target'"):
        load_data(load_card(write_card(tabular_bundle["dir"], card)))


def test_imputation_when_the_card_allows_it(tabular_bundle):
    card = dict(tabular_bundle["card"])
    card["input"] = {**card["input"], "missing": "impute"}
    frame = tabular_bundle["frame"].copy()
    frame.loc[3, "income"] = np.nan
    frame.loc[4, "colour"] = np.nan
    frame.to_csv(tabular_bundle["dir"] / "eval.csv", index=False)
    data = load_data(load_card(write_card(tabular_bundle["dir"], card)))
    assert data.x[3, 0] == 0.0  # the declared center
    assert data.x[4, 2:5].sum() == 0.0  # no level


def test_image_loads_and_problems_are_named(image_bundle):
    card = load_card(image_bundle["card_path"])
    data = load_data(card)
    assert data.x.shape == (40, 1, 8, 8) and data.x.dtype == np.float32
    assert list(data.attributes["site"][:4]) == ["C", "A", "A", "A"]
    folder, x, y = image_bundle["dir"], image_bundle["x"], image_bundle["y"]
    cases = [
        (dict(x=np.where(np.arange(40)[:, None, None, None] == 7, np.nan, x), y=y), "NaN or inf"),
        (dict(x=x[:, :, :4], y=y), "shape"),
        (dict(x=x, y=y[:30]), "40 images but 30 labels"),
        (dict(x=x, y=np.where(np.arange(40) == 0, 12, y)), "out of range"),
        (dict(x=x * 255, y=y), "value_range"),
        (dict(images=x, y=y), "'x'"),
    ]
    for arrays, message in cases:
        np.savez(folder / "eval.npz", **arrays)
        with pytest.raises(DataError, match=message):
            load_data(card)
    np.savez(folder / "eval.npz", x=x, y=y)
    pd.DataFrame({"site": ["A"] * 39}).to_csv(folder / "attrs.csv", index=False)
    with pytest.raises(DataError, match="39 rows"):
        load_data(card)
    pd.DataFrame({"site": ["A"] * 39 + [None]}).to_csv(folder / "attrs.csv", index=False)
    with pytest.raises(DataError, match="missing value"):
        load_data(card)


def test_pickled_npz_is_refused(image_bundle):
    np.savez(image_bundle["dir"] / "eval.npz", x=np.array([object()], dtype=object), y=image_bundle["y"])
    with pytest.raises(DataError, match="without pickles"):
        load_data(load_card(image_bundle["card_path"]))
