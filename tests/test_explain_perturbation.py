"""KernelSHAP and LIME probes against known answers, brute force, shap and lime."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from audits.data import AuditData
from audits.explain import _coalitions, _masking
from audits.explain._coalitions import all_coalitions, kernel_shap_design, kernel_shap_solve, lime_masks, lime_weights, shapley_kernel, weighted_ridge
from audits.explain._masking import TabularMasker, coalition_values, grid_segments, superpixels
from audits.explain.kernel_shap import KernelShapImage, KernelShapTabular
from audits.explain.lime import LimeImage, LimeTabular
from audits.probes import RunContext
from models.card import parse_card
from models.loader import ModelHandle, wrap_model
from models.tabular_encoding import TabularEncoder


# ---------------------------------------------------------------- helpers
def tabular_setup(net_factory, n_numeric: int, n_rows: int = 40, seed: int = 0, categorical: bool = True) -> tuple[ModelHandle, AuditData]:
    """A handle over ``net_factory(encoded_width)`` and standard-normal numeric + one 3-level categorical data."""
    features = [{"name": f"x{i}", "type": "numeric"} for i in range(n_numeric)]
    if categorical:
        features.append({"name": "colour", "type": "categorical", "levels": ["red", "green", "blue"]})
    card = parse_card(
        {
            "name": "t",
            "modality": "tabular",
            "format": "torchscript",
            "weights": "none.pt",
            "class_names": ["no", "yes"],
            "input": {"kind": "tabular", "features": features},
        },
        base_dir=Path("."),
    )
    encoder = TabularEncoder(card.input)
    rng = np.random.default_rng(seed)
    x = np.zeros((n_rows, encoder.width), dtype=np.float32)
    x[:, :n_numeric] = rng.normal(size=(n_rows, n_numeric))
    if categorical:
        x[np.arange(n_rows), n_numeric + rng.integers(0, 3, n_rows)] = 1.0
    torch.manual_seed(seed)
    model = wrap_model(net_factory(encoder.width), card, device="cpu")
    data = AuditData(
        modality="tabular", x=x, y=np.zeros(n_rows, dtype=np.int64), class_names=["no", "yes"], attributes=pd.DataFrame(index=range(n_rows)),
        sensitive=[], source="test", sha256="", feature_names=encoder.feature_names, feature_groups=encoder.groups,
    )  # fmt: skip
    return model, data


def image_setup(net: nn.Module, images: np.ndarray, n_classes: int) -> tuple[ModelHandle, AuditData]:
    card = parse_card(
        {"name": "i", "modality": "image", "format": "torchscript", "weights": "none.pt", "class_names": [str(k) for k in range(n_classes)],
         "input": {"kind": "image", "channels": images.shape[1], "height": images.shape[2], "width": images.shape[3]}},
        base_dir=Path("."),
    )  # fmt: skip
    n = len(images)
    data = AuditData(
        modality="image", x=images.astype(np.float32), y=np.zeros(n, dtype=np.int64), class_names=card.class_names,
        attributes=pd.DataFrame(index=range(n)), sensitive=[], source="test", sha256="",
    )  # fmt: skip
    return wrap_model(net, card, device="cpu"), data


def context_for(model: ModelHandle, data: AuditData, rows, seed: int = 0) -> RunContext:
    return RunContext(seed=seed, proba=model.predict_proba(data.x), sample_indices=np.asarray(rows))


def mlp(width: int) -> nn.Module:
    return nn.Sequential(nn.Linear(width, 16), nn.Tanh(), nn.Linear(16, 2))


def brute_force_shapley(fn, x: np.ndarray, background: np.ndarray, groups: list[np.ndarray]) -> np.ndarray:
    """Exact interventional Shapley values from the subset formula over all 2^M subsets."""
    m = len(groups)
    value = {}
    for size in range(m + 1):
        for subset in itertools.combinations(range(m), size):
            rows = background.copy()
            for j in subset:
                rows[:, groups[j]] = x[groups[j]]
            value[frozenset(subset)] = fn(rows).mean()
    phi = np.zeros(m)
    for j in range(m):
        others = [k for k in range(m) if k != j]
        for size in range(m):
            weight = math.factorial(size) * math.factorial(m - size - 1) / math.factorial(m)
            for subset in itertools.combinations(others, size):
                s = frozenset(subset)
                phi[j] += weight * (value[s | {j}] - value[s])
    return phi


def class_output(model: ModelHandle, target: int, output: str):
    fn = model.output_fn(output)
    return lambda rows: fn(torch.as_tensor(rows, dtype=torch.float32)).detach().numpy()[:, target].astype(np.float64)


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    from sklearn.datasets import load_digits

    return (load_digits().images[:40] / 16.0)[:, None].astype(np.float32)


# ---------------------------------------------------------------- core math
def test_exact_design_with_shapley_kernel_gives_exact_shapley_values():
    rng = np.random.default_rng(1)
    m = 6
    # A random (non-additive) game: one value per subset, indexed by bit code.
    game = rng.normal(size=2**m)
    code = lambda masks: (masks.astype(np.int64) << np.arange(m)).sum(axis=-1)  # noqa: E731
    design = kernel_shap_design(m, 10, 1, rng, exact_max_features=m)
    assert design.exact and design.masks.shape == (2**m - 2, m)
    phi = kernel_shap_solve(design, game[code(design.masks)][None], np.array([game[-1]]), np.array([game[0]]))[0]
    expected = np.zeros(m)
    for j in range(m):
        for s in all_coalitions(m):
            if not s[j]:
                size = s.sum()
                expected[j] += math.factorial(size) * math.factorial(m - size - 1) / math.factorial(m) * (game[code(s | (np.arange(m) == j))] - game[code(s)])
        expected[j] += math.factorial(m - 1) / math.factorial(m) * (game[1 << j] - game[0])  # the empty coalition
    np.testing.assert_allclose(phi, expected, atol=1e-10)
    assert shapley_kernel(np.array([1, m - 1]), m)[0] == pytest.approx(shapley_kernel(np.array([m - 1]), m)[0])


def test_sampled_design_is_paired_weighted_and_seeded():
    m, n = 14, 500
    first = kernel_shap_design(m, n, 2, np.random.default_rng(0), exact_max_features=12)
    again = kernel_shap_design(m, n, 2, np.random.default_rng(0), exact_max_features=12)
    assert not first.exact and first.masks.shape == (2, n, m)
    np.testing.assert_array_equal(first.masks, again.masks)
    assert not np.array_equal(first.masks[0], first.masks[1])  # each sample gets its own draw
    sizes = first.masks[0].sum(axis=1)
    assert sizes.min() >= 1 and sizes.max() <= m - 1
    assert len(np.unique(np.packbits(first.masks[0], axis=1), axis=0)) == n  # distinct coalitions
    # sizes 1 and 13 are enumerated in full (14 each); complements of drawn coalitions are present
    assert (sizes == 1).sum() == m and (sizes == m - 1).sum() == m
    # every drawn coalition comes with its complement, except the unpaired middle size 7
    keys = {tuple(r) for r in first.masks[0]}
    paired = first.masks[0][sizes != m // 2]
    assert sum(tuple(~r) in keys for r in paired) >= len(paired) - 1
    np.testing.assert_allclose(first.weights.sum(axis=1), 1.0)


def test_weighted_ridge_matches_sklearn(monkeypatch):
    from sklearn.linear_model import Ridge

    rng = np.random.default_rng(0)
    masks = lime_masks(3, 200, 7, rng)
    values = masks @ rng.normal(size=7) + rng.normal(scale=0.3, size=(3, 200))
    weights = lime_weights(masks, "cosine", 0.25)
    fit = weighted_ridge(masks, values, weights)
    for i in range(3):
        ref = Ridge(alpha=1.0).fit(masks[i], values[i], sample_weight=weights[i])
        np.testing.assert_allclose(fit.coef[i], ref.coef_, atol=1e-10)
        assert fit.intercept[i] == pytest.approx(ref.intercept_)
        assert fit.score[i] == pytest.approx(ref.score(masks[i], values[i], sample_weight=weights[i]))
    monkeypatch.setattr(_coalitions, "_RIDGE_BLOCK_BYTES", 1)  # one sample per block
    np.testing.assert_allclose(weighted_ridge(masks, values, weights).coef, fit.coef, atol=1e-12)


def test_chunking_does_not_change_values(monkeypatch):
    model, data = tabular_setup(mlp, 5)
    groups = data.feature_groups
    masks = all_coalitions(len(groups))
    masker = TabularMasker(model.to_tensor(data.x[:4]), model.to_tensor(data.x[10:30]), groups)
    fn = model.output_fn("logit")
    whole = coalition_values(model, fn, masker, masks, np.array([0, 1, 1, 0]))
    monkeypatch.setattr(_masking, "CHUNK_BYTES", 3 * masker.rows_per_pair * masker.row_bytes)  # three (sample, coalition) pairs
    assert _masking.pairs_per_chunk(masker, model.batch_size) == 3
    with model.metered() as meter:
        chunked = coalition_values(model, fn, masker, masks, np.array([0, 1, 1, 0]))
    assert meter.calls == math.ceil(4 * len(masks) / 3)
    np.testing.assert_allclose(chunked, whole, atol=1e-6)


@pytest.mark.parametrize("shared", [True, False])
def test_distinct_rows_give_the_same_values_from_fewer_rows(shared, monkeypatch):
    model, data = tabular_setup(mlp, 3, n_rows=30)
    data.x[20:, 0] = data.x[0, 0]  # background rows that agree with sample 0 on a numeric feature too
    rng = np.random.default_rng(0)
    masks = all_coalitions(len(data.feature_groups)) if shared else rng.random((4, 9, len(data.feature_groups))) < 0.5
    plain = TabularMasker(model.to_tensor(data.x[:4]), model.to_tensor(data.x[10:30]), data.feature_groups)
    distinct = TabularMasker(model.to_tensor(data.x[:4]), model.to_tensor(data.x[10:30]), data.feature_groups, distinct=True)
    targets = np.array([0, 1, 1, 0])
    fn = model.output_fn("probability")
    with model.metered() as every:
        expected = coalition_values(model, fn, plain, masks, targets)
    with model.metered() as fewer:
        got = coalition_values(model, fn, distinct, masks, targets)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert every.rows == 4 * masks.shape[-2] * 20 and fewer.rows < every.rows
    monkeypatch.setattr(_masking, "_KEY_ELEMENTS", 1)  # one sample per chunk
    np.testing.assert_allclose(coalition_values(model, fn, distinct, masks, targets), expected, atol=1e-6)
    keys = rng.integers(0, 50, 40)
    for space in (50, 10**9):  # presence table, then np.unique
        unique, inverse = _masking._distinct(keys, space)
        np.testing.assert_array_equal(unique, np.unique(keys))
        np.testing.assert_array_equal(unique[inverse], keys)


def test_chunk_memory_stays_bounded_for_a_large_job():
    # 32 samples x 4096 coalitions x 64 background rows of a 100-column input: 3.4 GB if built at once.
    model, data = tabular_setup(mlp, 97, n_rows=64)
    masker = TabularMasker(model.to_tensor(data.x[:32]), model.to_tensor(data.x), data.feature_groups)
    pairs = _masking.pairs_per_chunk(masker, model.batch_size)
    chunk_bytes = pairs * masker.rows_per_pair * masker.row_bytes
    assert chunk_bytes <= _masking.CHUNK_BYTES <= 256 << 20
    assert pairs * masker.rows_per_pair >= model.batch_size  # still whole model batches per chunk


def test_superpixels_on_tiny_images_and_grid_fallback(digits, monkeypatch):
    segments = superpixels(digits[:10], 16)
    counts = segments.reshape(10, -1).max(axis=1) + 1
    assert ((counts >= 8) & (counts <= 20)).all()
    for seg, count in zip(segments, counts, strict=True):
        np.testing.assert_array_equal(np.unique(seg), np.arange(count))  # labels 0..M-1
    monkeypatch.setattr(_masking, "slic", lambda image, **kw: np.zeros(image.shape[:2], dtype=np.int64))
    flat = superpixels(digits[:1], 16)  # SLIC finding one segment: a regular grid instead
    np.testing.assert_array_equal(flat[0], grid_segments(8, 8, 16))
    assert len(np.unique(flat)) == 16
    monkeypatch.undo()
    rgb = superpixels(np.random.default_rng(0).random((2, 3, 16, 16), dtype=np.float32), 9)
    assert rgb.shape == (2, 16, 16) and all(len(np.unique(s)) >= 4 for s in rgb)


# ---------------------------------------------------------------- KernelSHAP, tabular
@pytest.mark.parametrize(("n_numeric", "exact"), [(5, True), (13, False)])
def test_kernel_shap_on_a_linear_model_is_weight_times_centred_input(n_numeric, exact):
    model, data = tabular_setup(lambda d: nn.Linear(d, 2), n_numeric)
    rows = [0, 3, 7]
    result = KernelShapTabular(n_background=len(data.x), output="logit", target=1).run(model, data, context_for(model, data, rows))
    w = model.network.weight[1].numpy().astype(np.float64)
    centred = w * (data.x[rows] - data.x.mean(axis=0, dtype=np.float64))
    expected = np.stack([centred[:, g].sum(axis=1) for g in data.feature_groups], axis=1)
    assert result.quality["exact"] is exact
    # Linear outputs make every coalition's value additive, so even the sampled (14-feature,
    # 2048-coalition) regression is exact up to float32 rounding: 1e-4 in both cases.
    np.testing.assert_allclose(result.attributions, expected, atol=1e-4)
    np.testing.assert_allclose(result.base_values + result.attributions.sum(axis=1), result.outputs, atol=1e-5)
    assert result.quality["additivity_error"].max() < 1e-5


def test_kernel_shap_equals_brute_force_shapley_on_a_nonlinear_mlp():
    model, data = tabular_setup(mlp, 4)
    rows = [1, 2, 5]
    context = context_for(model, data, rows)
    result = KernelShapTabular(n_background=len(data.x), output="probability").run(model, data, context)
    targets = context.predictions[rows]
    for i, row in enumerate(rows):
        expected = brute_force_shapley(class_output(model, targets[i], "probability"), data.x[row], data.x, data.feature_groups)
        np.testing.assert_allclose(result.attributions[i], expected, atol=1e-6)


def test_sampled_kernel_shap_approaches_brute_force():
    model, data = tabular_setup(lambda d: nn.Sequential(nn.Linear(d, 32), nn.Tanh(), nn.Linear(32, 2)), 9, n_rows=30)
    rows = [0, 1]
    result = KernelShapTabular(n_background=30, n_samples=600, exact_max_features=0, output="logit", target=1).run(model, data, context_for(model, data, rows))
    assert not result.quality["exact"]
    for i, row in enumerate(rows):
        expected = brute_force_shapley(class_output(model, 1, "logit"), data.x[row], data.x, data.feature_groups)
        # 600 of 1022 coalitions: within 2% of the largest value (measured: < 0.6%), correlation > 0.99
        assert np.abs(result.attributions[i] - expected).max() < 0.02 * np.abs(expected).max()
        assert np.corrcoef(result.attributions[i], expected)[0, 1] > 0.99


def test_kernel_shap_agrees_with_shap_kernel_explainer():
    shap = pytest.importorskip("shap")
    model, data = tabular_setup(mlp, 12, n_rows=40, categorical=False)
    rows = [0, 1, 2, 3]
    background = data.x[:25]
    ours = KernelShapTabular(n_background=40, n_samples=1000, exact_max_features=0, target=1).run(model, data, context_for(model, data, rows))
    np.random.seed(0)  # shap samples from numpy's global generator
    # l1_reg=False: shap's default would keep only 10 of the 12 features.
    theirs = shap.KernelExplainer(class_output(model, 1, "probability"), background).shap_values(data.x[rows], nsamples=1000, l1_reg=False, silent=True)
    # Different backgrounds (40 vs 25 rows) and independent samples: compare the pattern.
    assert np.corrcoef(ours.attributions.ravel(), np.asarray(theirs).ravel())[0, 1] > 0.95


def test_kernel_shap_is_deterministic_and_cheap():
    model, data = tabular_setup(mlp, 13)
    probe = KernelShapTabular(n_samples=512)
    first = probe.run(model, data, context_for(model, data, [0, 1, 2], seed=0))
    again = KernelShapTabular(n_samples=512).run(model, data, context_for(model, data, [0, 1, 2], seed=0))
    other = probe.run(model, data, context_for(model, data, [0, 1, 2], seed=1))
    np.testing.assert_array_equal(first.attributions, again.attributions)
    assert not np.allclose(first.attributions, other.attributions)
    perturbations = first.cost.rows_evaluated
    # Every (sample, coalition, background row) at most once, rows that coincide only once (distinct rows).
    assert 3 * 512 * min(probe.n_background, len(data.x)) // 2 <= perturbations <= 3 * 514 * min(probe.n_background, len(data.x))
    assert first.cost.model_calls <= perturbations / 100


# ---------------------------------------------------------------- image probes
class QuadrantModel(nn.Module):
    """Class 1's logit grows with the mean of the top-left quadrant; nothing else matters."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2] // 2, x.shape[3] // 2
        score = 6 * (x[:, :, :h, :w].mean(dim=(1, 2, 3)) - 0.3)
        return torch.stack([-score, score], dim=1)


def superpixel_values(attributions: np.ndarray, segments: np.ndarray) -> np.ndarray:
    return np.bincount(segments.ravel(), weights=attributions.ravel())


@pytest.mark.parametrize("probe_class", [LimeImage, KernelShapImage])
def test_image_probes_find_the_region_the_model_reads(probe_class, digits):
    model, data = image_setup(QuadrantModel(), digits[:6], 2)
    result = probe_class(target=1).run(model, data, context_for(model, data, range(6)))
    quadrant = np.zeros((8, 8), dtype=bool)
    quadrant[:4, :4] = True
    for attr, seg in zip(result.attributions, result.segments, strict=True):
        values = superpixel_values(attr, seg)
        inside = np.array([quadrant[seg == k].mean() for k in range(len(values))])
        top = np.argsort(-np.abs(values))[:2]
        assert (inside[top] > 0).all()
        outside = np.abs(values[inside == 0])
        assert outside.max(initial=0) < 0.1 * np.abs(values).max()
    if probe_class is KernelShapImage:
        np.testing.assert_allclose(result.base_values + result.attributions.sum(axis=(1, 2)), result.outputs, atol=1e-5)
    else:
        assert (result.quality["r2"] > 0.9).all()


def test_lime_image_agrees_with_lime(digits):
    lime_image = pytest.importorskip("lime.lime_image")
    torch.manual_seed(0)
    # Linear logits over 3 classes: the softmax probability is a smooth nonlinear function of the mask.
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
    with torch.no_grad():
        net[1].weight.mul_(8)
    model, data = image_setup(net, digits[:4], 3)
    context = context_for(model, data, range(4))
    ours = LimeImage(n_samples=2000).run(model, data, context)
    proba = model.output_fn("probability")
    classify = lambda images: proba(torch.as_tensor(images[..., :1]).permute(0, 3, 1, 2).float()).numpy()  # noqa: E731
    for i in range(4):
        image, seg = data.x[i, 0].astype(np.float64), ours.segments[i]
        explanation = lime_image.LimeImageExplainer(random_state=0).explain_instance(
            image, classify, labels=(int(ours.targets[i]),), top_labels=None, hide_color=np.full(3, image.mean()),
            num_samples=2000, batch_size=2000, segmentation_fn=lambda _, seg=seg: seg,
        )  # fmt: skip
        theirs = dict(explanation.local_exp[int(ours.targets[i])])
        theirs = np.array([theirs[k] for k in range(len(theirs))])
        # Per image: Pearson correlation of the per-superpixel ridge coefficients (ours summed back
        # from pixels); measured > 0.998. The surrogates' weighted R^2 agree too.
        assert np.corrcoef(superpixel_values(ours.attributions[i], seg), theirs)[0, 1] > 0.95
        assert ours.quality["r2"][i] == pytest.approx(explanation.score, abs=0.03)


def test_image_probes_are_deterministic_and_cheap(digits):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(256, 3))
    model, data = image_setup(net, digits[:8], 3)
    for probe_class in (LimeImage, KernelShapImage):
        first = probe_class(n_samples=300).run(model, data, context_for(model, data, range(8), seed=0))
        again = probe_class(n_samples=300).run(model, data, context_for(model, data, range(8), seed=0))
        other = probe_class(n_samples=300).run(model, data, context_for(model, data, range(8), seed=5))
        np.testing.assert_array_equal(first.attributions, again.attributions)
        assert not np.allclose(first.attributions, other.attributions)
        assert first.attributions.shape == (8, 8, 8) and first.segments.shape == (8, 8, 8)
        perturbations = first.cost.rows_evaluated
        assert perturbations >= 8 * 300
        assert first.cost.model_calls <= perturbations / 100


# ---------------------------------------------------------------- LIME, tabular
def test_lime_tabular_on_a_linear_model():
    model, data = tabular_setup(lambda d: nn.Linear(d, 2), 5, n_rows=200)
    rows = [0, 1, 2]
    result = LimeTabular(n_samples=2000, output="logit", target=1).run(model, data, context_for(model, data, rows))
    # The logit is linear in the keep-mask with slope w_j (x_j - donor_j) per feature: the
    # surrogate recovers w_j (x_j - mean donor) up to sampling and ridge shrinkage.
    w = model.network.weight[1].numpy().astype(np.float64)
    centred = w * (data.x[rows] - data.x.mean(axis=0, dtype=np.float64))
    expected = np.stack([centred[:, g].sum(axis=1) for g in data.feature_groups], axis=1)
    for i in range(len(rows)):
        assert np.corrcoef(result.attributions[i], expected[i])[0, 1] > 0.9
    assert result.quality["r2"].shape == (3,)
    assert result.cost.model_calls <= result.cost.rows_evaluated / 100
    again = LimeTabular(n_samples=2000, output="logit", target=1).run(model, data, context_for(model, data, rows))
    np.testing.assert_array_equal(result.attributions, again.attributions)
