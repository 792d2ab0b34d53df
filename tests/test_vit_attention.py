"""Known-answer tests for the ViT probes: attention maps, rollout and Grad-CAM over patch tokens."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from captum.attr import LayerGradCam
from scipy.stats import spearmanr
from torch import nn

from audits.data import AuditData, load_data
from audits.engine import run_audit
from audits.errors import AuditError
from audits.explain._attention import rank_correlation, rollout
from audits.explain._vit import NO_ATTENTION, NO_LAYOUT, PatchLayout, find_layout, token_grad_cam
from audits.explain.attention_maps import AttentionMapsResult
from audits.probes import RunContext, make_probe
from audits.serialization import from_jsonable, to_jsonable
from audits.spec import AuditSpec
from models.architectures import DigitsCNN, DigitsViT
from models.card import parse_card
from models.loader import load_model, wrap_model
from models.registry import resolve_card

SIZE, PATCH, GRID = 8, 2, 4
N_PATCHES = GRID * GRID


def card(n_classes: int = 10) -> dict:
    return {
        "name": "tiny-vit",
        "modality": "image",
        "format": "torchscript",
        "weights": "unused.pt",
        "class_names": [str(i) for i in range(n_classes)],
        "input": {"kind": "image", "channels": 1, "height": SIZE, "width": SIZE},
    }


def handle_for(net: nn.Module, n_classes: int = 10):
    return wrap_model(net, parse_card(card(n_classes), base_dir=Path(".")))


def image_data(n: int = 6, seed: int = 0) -> AuditData:
    x = np.random.default_rng(seed).random((n, 1, SIZE, SIZE), dtype=np.float32)
    return AuditData(
        modality="image", x=x, y=np.zeros(n, dtype=np.int64), class_names=[str(i) for i in range(10)],
        attributes=pd.DataFrame(index=range(n)), sensitive=[], source="test", sha256="test",
    )  # fmt: skip


def context_for(handle, data: AuditData, earlier=()) -> RunContext:
    return RunContext(seed=0, proba=handle.predict_proba(data.x), sample_indices=np.arange(len(data)), earlier=tuple(earlier))


def forced_mask(token: int, n_tokens: int = N_PATCHES + 1) -> torch.Tensor:
    """An additive attention mask letting every query attend to ``token`` only."""
    mask = torch.full((n_tokens, n_tokens), -math.inf)
    mask[:, token] = 0.0
    return mask


class ForcedViT(nn.Module):
    """A CLS + 4x4-patch transformer whose every attention layer attends only to ``token``.

    With ``only_patch`` the other patch tokens are zeroed before attention (and nothing has a
    bias), so the class score depends on that one patch alone; its two classes score +s and
    -s, so the predicted class always has a positive score.
    """

    patch_size = PATCH
    grid_size = (GRID, GRID)
    num_prefix_tokens = 1

    def __init__(self, token: int, layers: int = 2, dim: int = 8, heads: int = 2, only_patch: bool = False) -> None:
        super().__init__()
        self.embed = nn.Conv2d(1, dim, PATCH, stride=PATCH, bias=not only_patch)
        self.cls = nn.Parameter(torch.randn(1, 1, dim))
        keep = torch.zeros(1, N_PATCHES + 1, 1)
        keep[:, 0] = 1.0
        keep[:, token if only_patch else slice(None)] = 1.0
        self.register_buffer("keep", keep)
        self.register_buffer("mask", forced_mask(token))
        self.attn = nn.ModuleList(nn.MultiheadAttention(dim, heads, batch_first=True, bias=not only_patch) for _ in range(layers))
        w = torch.randn(1, dim)
        self.head = nn.Linear(dim, 2, bias=False)
        self.head.weight.data = torch.cat([w, -w])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = torch.cat([self.cls.expand(len(x), -1, -1), self.embed(x).flatten(2).transpose(1, 2)], dim=1) * self.keep
        for attn in self.attn:
            tokens = attn(tokens, tokens, tokens, attn_mask=self.mask, need_weights=False)[0]
        return self.head(tokens[:, 0])


# --- attention maps -----------------------------------------------------------------------------


@pytest.mark.parametrize("token", [1, 7, 16])
def test_forced_attention_shows_the_token_in_raw_maps_and_rollout(token):
    torch.manual_seed(0)
    handle, data = handle_for(ForcedViT(token), 2), image_data()
    result = make_probe("attention_maps").run(handle, data, context_for(handle, data))
    assert isinstance(result, AttentionMapsResult)
    assert result.attention.shape == (2, len(data), 2, N_PATCHES + 1, N_PATCHES + 1)
    np.testing.assert_allclose(result.attention[..., token], 1.0, atol=1e-6)  # every query, layer, head
    expected = np.zeros(N_PATCHES)
    expected[token - 1] = 1.0
    np.testing.assert_allclose(result.head_maps.reshape(2, len(data), 2, -1), np.broadcast_to(expected, (2, len(data), 2, N_PATCHES)), atol=1e-6)
    # Rollout with the residual: (0.5 A + 0.5 I)^L keeps 0.5^L on CLS and puts the rest on the token.
    np.testing.assert_allclose(result.rollout[:, 0, token], 1 - 0.5**2, atol=1e-6)
    np.testing.assert_allclose(result.rollout_maps.reshape(len(data), -1), np.broadcast_to((1 - 0.5**2) * expected, (len(data), N_PATCHES)), atol=1e-6)
    np.testing.assert_allclose(result.rollout.sum(axis=-1), 1.0, atol=1e-6)
    # On the pixel grid: exactly the token's 2x2 patch.
    r, c = divmod(token - 1, GRID)
    inside = np.zeros((SIZE, SIZE), dtype=bool)
    inside[r * PATCH : (r + 1) * PATCH, c * PATCH : (c + 1) * PATCH] = True
    assert (result.attributions[:, inside] > 0.7).all() and (result.attributions[:, ~inside] == 0).all()
    without = make_probe("attention_maps", {"residual": False}).run(handle, data, context_for(handle, data))
    np.testing.assert_allclose(without.rollout[:, :, token], 1.0, atol=1e-6)
    assert result.headline().startswith("2 layers x 2 heads on a 4x4 patch grid")


def _manual_attention(net: DigitsViT, x: torch.Tensor) -> np.ndarray:
    """Per-head softmax(QK^T / sqrt(d)) of every block, recomputed by hand: (L, N, heads, T, T)."""
    maps = []
    with torch.no_grad():
        tokens = torch.cat([net.cls_token.expand(len(x), -1, -1), net.patch_embed(x).flatten(2).transpose(1, 2)], dim=1) + net.pos_embed
        for block in net.blocks:
            h = block.norm1(tokens)
            dim, heads = h.shape[-1], block.attn.num_heads
            q, k, _ = (h @ block.attn.in_proj_weight.T + block.attn.in_proj_bias).split(dim, dim=-1)
            q, k = (t.view(len(x), -1, heads, dim // heads).transpose(1, 2) for t in (q, k))
            maps.append(torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(dim // heads), dim=-1))
            tokens = block(tokens)
    return torch.stack(maps).numpy()


def test_raw_and_head_averaged_maps_match_a_manual_computation():
    torch.manual_seed(1)
    net = DigitsViT(dim=16, depth=3, heads=4)
    with torch.no_grad():
        net.pos_embed.normal_(0, 1.0)  # make the attention far from uniform
    handle, data = handle_for(net), image_data()
    logits = handle.logits(data.x)
    result = make_probe("attention_maps").run(handle, data, context_for(handle, data))
    manual = _manual_attention(net, torch.from_numpy(data.x))
    np.testing.assert_allclose(result.attention, manual, atol=1e-5)
    np.testing.assert_allclose(result.head_maps, manual[..., 0, 1:].reshape(3, len(data), 4, GRID, GRID), atol=1e-5)
    np.testing.assert_allclose(result.layer_maps, manual.mean(axis=2)[..., 0, 1:].reshape(3, len(data), GRID, GRID), atol=1e-5)
    np.testing.assert_allclose(result.rollout, rollout(manual), atol=1e-5)
    np.testing.assert_allclose(result.rollout.sum(axis=-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(result.quality["rollout_patch_mass"], result.rollout[:, 0, 1:].sum(axis=1), atol=1e-6)
    assert result.cost.model_calls == 1 and result.cost.rows_evaluated == len(data)
    # The hooks are gone and the model's own output is unchanged.
    for block in net.blocks:
        assert not block.attn._forward_hooks and not block.attn._forward_pre_hooks
    np.testing.assert_array_equal(handle.logits(data.x), logits)
    restored = from_jsonable(json.loads(json.dumps(to_jsonable(result))))
    assert type(restored) is AttentionMapsResult
    np.testing.assert_array_equal(restored.attention, result.attention)


def test_start_layer_and_raw_size_limit():
    torch.manual_seed(2)
    handle, data = handle_for(DigitsViT(dim=8, depth=3, heads=2)), image_data(3)
    full = make_probe("attention_maps").run(handle, data, context_for(handle, data))
    late = make_probe("attention_maps", {"start_layer": 2, "max_raw_values": 10}).run(handle, data, context_for(handle, data))
    np.testing.assert_allclose(late.rollout, rollout(full.attention, start_layer=2), atol=1e-6)
    assert late.attention is None and "max_raw_values" in late.notes[0]
    np.testing.assert_array_equal(late.head_maps, full.head_maps)
    with pytest.raises(ValueError, match="start_layer"):
        make_probe("attention_maps", {"start_layer": 3}).run(handle, data, context_for(handle, data))


# --- ViT Grad-CAM ----------------------------------------------------------------------------------


@pytest.mark.parametrize("token", [1, 6, 16])
def test_vit_grad_cam_puts_its_mass_on_the_one_patch_the_model_uses(token):
    torch.manual_seed(0)
    # One layer: the tokens entering the last attention are the masked ones.
    handle, data = handle_for(ForcedViT(token, layers=1, only_patch=True), 2), image_data(8)
    result = make_probe("grad_cam").run(handle, data, context_for(handle, data))
    assert result.attributions.shape == (len(data), SIZE, SIZE)
    r, c = divmod(token - 1, GRID)
    inside = np.zeros((SIZE, SIZE), dtype=bool)
    inside[r * PATCH : (r + 1) * PATCH, c * PATCH : (c + 1) * PATCH] = True
    assert (result.attributions[:, inside] > 0).all()
    assert (result.attributions[:, ~inside] == 0).all()
    assert not result.quality["empty_map"].any()
    assert result.cost.model_calls == 1


def test_token_grad_cam_matches_captum_on_the_same_features_as_a_grid():
    """Grad-CAM over (N, T, D) tokens equals captum's LayerGradCam on the (N, D, h, w) grid of the same features."""
    torch.manual_seed(3)
    embed, mix, head = nn.Conv2d(1, 6, PATCH, stride=PATCH), nn.Conv2d(6, 6, 1), nn.Linear(6, 3)

    class Grid(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed, self.mix, self.head = embed, mix, head

        def forward(self, x):
            return self.head(torch.tanh(self.mix(self.embed(x))).mean(dim=(2, 3)))

    x = torch.rand(5, 1, SIZE, SIZE)
    target = torch.tensor([0, 1, 2, 0, 1])
    expected = LayerGradCam(Grid(), mix).attribute(x, target=target, relu_attributions=True)  # (N, 1, h, w)
    # The same network on tokens: a 1x1 conv is a linear map per token.
    cls = torch.zeros(5, 1, 6)  # a prefix token Grad-CAM must ignore
    tokens = torch.cat([cls, embed(x).flatten(2).transpose(1, 2)], dim=1)
    mixed = tokens @ mix.weight[:, :, 0, 0].T + mix.bias
    score = head(torch.tanh(mixed[:, 1:]).mean(dim=1)).gather(1, target[:, None]).sum()
    (grads,) = torch.autograd.grad(score, mixed)
    ours = token_grad_cam(mixed.detach(), grads, prefix=1).view(5, 1, GRID, GRID)
    torch.testing.assert_close(ours, expected.detach(), atol=1e-6, rtol=1e-5)


def test_grad_cam_on_a_real_vit_reads_the_last_attention_input():
    torch.manual_seed(4)
    net = DigitsViT(dim=16, depth=2, heads=2)
    handle, data = handle_for(net), image_data()
    result = make_probe("grad_cam").run(handle, data, context_for(handle, data))
    assert result.attributions.shape == (len(data), SIZE, SIZE) and np.isfinite(result.attributions).all()
    # Each patch's value covers its 2x2 pixels.
    blocks = result.attributions.reshape(len(data), GRID, PATCH, GRID, PATCH)
    np.testing.assert_array_equal(blocks, np.broadcast_to(blocks[:, :, :1, :, :1], blocks.shape))
    # Naming the same tokens in the card (the last block's norm1 output) gives the same map.
    named = wrap_model(net, parse_card({**card(), "target_layer": "blocks.1.norm1"}, base_dir=Path(".")))
    again = make_probe("grad_cam").run(named, data, context_for(named, data))
    np.testing.assert_allclose(again.attributions, result.attributions, atol=1e-6)
    # A convolution named in the card gets classic Grad-CAM on it.
    conv = wrap_model(net, parse_card({**card(), "target_layer": "patch_embed"}, base_dir=Path(".")))
    assert make_probe("grad_cam").run(conv, data, context_for(conv, data)).attributions.shape == (len(data), SIZE, SIZE)


# --- layout discovery ------------------------------------------------------------------------------


class EncoderViT(nn.Module):
    """A ViT from torch's own nn.TransformerEncoder that declares nothing about its tokens."""

    def __init__(self, dim: int = 16, batch_first: bool = True) -> None:
        super().__init__()
        self.batch_first = batch_first
        self.stem = nn.Conv2d(1, dim, 4, stride=4)  # 2x2 grid of 4x4 patches
        self.cls = nn.Parameter(torch.randn(1, 2, dim))  # two prefix tokens
        layer = nn.TransformerEncoderLayer(dim, 2, 32, dropout=0.0, batch_first=batch_first)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(dim, 10)

    def forward(self, x):
        tokens = torch.cat([self.cls.expand(len(x), -1, -1), self.stem(x).flatten(2).transpose(1, 2)], dim=1)
        if self.batch_first:
            return self.head(self.encoder(tokens)[:, 0])
        return self.head(self.encoder(tokens.transpose(0, 1))[0])


@pytest.mark.parametrize("batch_first", [True, False])
def test_layout_is_inferred_from_the_patch_embedding_when_undeclared(batch_first):
    torch.manual_seed(5)
    net = EncoderViT(batch_first=batch_first)
    layout = find_layout(net, SIZE, SIZE)
    assert layout == PatchLayout(grid=(2, 2), patch=(4, 4), prefix=None, source="patch embedding 'stem' (kernel = stride = 4x4)")
    assert layout.prefix_for(6) == 2
    handle, data = handle_for(net), image_data(6)
    result = make_probe("attention_maps").run(handle, data, context_for(handle, data))
    assert result.prefix_tokens == 2 and result.patch_grid == [2, 2] and result.attention.shape[:3] == (2, len(data), 2)
    cam = make_probe("grad_cam").run(handle, data, context_for(handle, data))
    assert cam.attributions.shape == (len(data), SIZE, SIZE) and not cam.quality["empty_map"].all()
    # The same weights read batch-first or sequence-first give the same maps (6 samples = 6 tokens: no guessing).
    if not batch_first:
        twin = EncoderViT(batch_first=True)
        twin.load_state_dict(net.state_dict())
        other = handle_for(twin)
        np.testing.assert_allclose(make_probe("grad_cam").run(other, data, context_for(other, data)).attributions, cam.attributions, atol=1e-5)
        np.testing.assert_allclose(make_probe("attention_maps").run(other, data, context_for(other, data)).attention, result.attention, atol=1e-6)


def test_declared_layout_and_refusals():
    assert find_layout(DigitsViT(), SIZE, SIZE) == PatchLayout(grid=(4, 4), patch=(2, 2), prefix=1, source="declared by DigitsViT")
    data = image_data()
    cnn = handle_for(DigitsCNN())
    assert make_probe("attention_maps").check(cnn, data) == NO_ATTENTION
    assert make_probe("grad_cam").check(cnn, data) is None  # a CNN keeps classic Grad-CAM

    class NoLayout(nn.Module):  # attention, but tokens from unfolded pixels: nothing to read the grid from
        def __init__(self) -> None:
            super().__init__()
            self.attn = nn.MultiheadAttention(4, 1, batch_first=True)
            self.head = nn.Linear(4, 10)

        def forward(self, x):
            tokens = nn.functional.unfold(x, 2, stride=2).transpose(1, 2)
            return self.head(self.attn(tokens, tokens, tokens)[0].mean(dim=1))

    assert make_probe("attention_maps").check(handle_for(NoLayout()), data) == NO_LAYOUT
    wrong = ForcedViT(1)
    wrong.grid_size = (3, 3)  # declares 9 patches, has 16
    handle = handle_for(wrong, 2)
    with pytest.raises(AuditError, match="17 tokens"):
        make_probe("attention_maps").run(handle, data, context_for(handle, data))


# --- rank correlation -------------------------------------------------------------------------------


def test_rank_correlation_matches_scipy_and_handles_constant_maps():
    rng = np.random.default_rng(0)
    a, b = rng.random((4, 8, 8)), rng.random((4, 8, 8))
    b[1] = a[1] ** 2  # monotone: 1
    a[2] = np.repeat(np.repeat(rng.random((4, 4)), 2, 0), 2, 1)  # ties, as a blocky rollout map has
    a[3] = 0.5  # constant: undefined
    out = rank_correlation(a, b)
    for i in range(3):
        assert out[i] == pytest.approx(spearmanr(a[i].ravel(), b[i].ravel()).statistic)
    assert out[1] == pytest.approx(1.0) and np.isnan(out[3])


def test_attention_maps_compare_with_earlier_methods_on_the_same_samples():
    torch.manual_seed(6)
    handle, data = handle_for(DigitsViT(dim=16, depth=2, heads=2)), image_data()
    context = context_for(handle, data)
    cam = make_probe("grad_cam").run(handle, data, context)
    ig = make_probe("integrated_gradients").run(handle, data, context)
    shuffled = dataclasses.replace(ig, sample_indices=ig.sample_indices[::-1], attributions=ig.attributions[::-1])
    result = make_probe("attention_maps").run(handle, data, context_for(handle, data, earlier=[cam, shuffled]))
    np.testing.assert_allclose(result.quality["rank_corr_vs_grad_cam"], rank_correlation(result.attributions, cam.attributions))
    np.testing.assert_allclose(result.quality["rank_corr_vs_integrated_gradients"], rank_correlation(result.attributions, np.abs(ig.attributions)))
    assert set(result.rank_correlations()) == {"grad_cam", "integrated_gradients"}
    assert "rank corr with grad_cam" in result.headline()


# --- the zoo model --------------------------------------------------------------------------------


def test_digits_vit_audit_produces_attention_maps_and_attributions():
    card = resolve_card("digits-vit")
    model, data = load_model(card), load_data(card)
    spec = AuditSpec(samples=8, probes=[{"name": "grad_cam"}, {"name": "integrated_gradients"}, {"name": "attention_maps"}])  # 8: raw maps of 32 exceed max_raw_values
    report = run_audit(model, data, spec)
    assert not report.failures and not report.skipped, (report.failures, report.skipped)
    attention = report.explanation("attention_maps")
    assert attention.attention.shape == (4, 8, 4, 17, 17)
    assert attention.patch_grid == [4, 4] and attention.prefix_tokens == 1
    corr = attention.rank_correlations()
    assert set(corr) == {"grad_cam", "integrated_gradients"} and all(-1 <= v <= 1 for v in corr.values())
    assert report.explanation("grad_cam").attributions.shape == (8, SIZE, SIZE)


def test_attention_heads_chart_draws_layers_and_heads():
    from audits.render.static import to_image
    from audits.render.views.attribution import attention_heads_chart

    torch.manual_seed(7)
    handle, data = handle_for(DigitsViT(dim=8, depth=2, heads=2)), image_data(2)
    result = make_probe("attention_maps").run(handle, data, context_for(handle, data))
    chart = attention_heads_chart(result, data.x[int(result.sample_indices[1])], 1, data.class_names)
    assert [len(row) for row in chart.cells] == [2 + 1] * 2 + [3]  # per layer: 2 heads and their mean; then the rollout
    assert chart.row_labels == ["layer 0", "layer 1", "rollout"]
    assert to_image(chart).startswith(b"\x89PNG")