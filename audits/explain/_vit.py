"""Vision Transformer plumbing shared by the attention and Grad-CAM probes.

Where the patch tokens sit in the token sequence (:class:`PatchLayout`, found from the
model's own configuration), how to read per-head attention weights out of
``nn.MultiheadAttention`` modules during an ordinary forward pass, and how to map per-token
scores back onto the image's pixels.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from audits.errors import AuditError
from audits.results.attribution import patch_to_pixels

if TYPE_CHECKING:
    from models.loader import ModelHandle

NO_ATTENTION = (
    "the network has no nn.MultiheadAttention module whose attention weights can be recorded "
    "(attention maps need a transformer; TorchScript and torch.export models hide their modules)"
)
NO_LAYOUT = (
    "the transformer's patch layout is unknown: give the network class the attributes grid_size (or patch_size) "
    "and num_prefix_tokens, or embed patches with a Conv2d whose kernel equals its stride"
)
_MHA_ARGS = ("query", "key", "value", "key_padding_mask", "need_weights", "attn_mask", "average_attn_weights", "is_causal")


def _pair(value) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    first, second = value
    return int(first), int(second)


@dataclass(frozen=True)
class PatchLayout:
    """Which tokens are image patches and which pixels each covers.

    ``prefix`` tokens (CLS, distillation, registers) come first, then ``grid[0] * grid[1]``
    patch tokens in row-major order, each covering ``patch[0] x patch[1]`` pixels from the
    top-left corner (pixels past the last full patch belong to no token). ``prefix`` None
    means "whatever the token count leaves over", learnt from the first attention map.
    """

    grid: tuple[int, int]
    patch: tuple[int, int]
    prefix: int | None
    source: str

    @property
    def n_patches(self) -> int:
        return self.grid[0] * self.grid[1]

    def prefix_for(self, n_tokens: int) -> int:
        """The number of prefix tokens in a sequence of ``n_tokens``; raises when they do not fit."""
        prefix = n_tokens - self.n_patches if self.prefix is None else self.prefix
        if prefix < 0 or prefix + self.n_patches != n_tokens:
            raise AuditError(
                f"The model's attention covers {n_tokens} tokens, but its patch layout ({self.source}) has "
                f"{self.n_patches} patches{'' if self.prefix is None else f' after {self.prefix} prefix token(s)'}.",
                fix="Make the network's grid_size / patch_size / num_prefix_tokens attributes describe its tokens.",
            )
        return prefix

    def to_grid(self, patch_scores: np.ndarray) -> np.ndarray:
        """(..., n_patches) scores of the patch tokens -> (..., rows, cols)."""
        return patch_scores.reshape(*patch_scores.shape[:-1], *self.grid)

    def to_pixels(self, grid_maps: np.ndarray, height: int, width: int) -> np.ndarray:
        """(..., rows, cols) -> (..., height, width): each patch's value on every pixel it covers."""
        return patch_to_pixels(grid_maps, self.patch, height, width)


def attention_modules(network: nn.Module) -> list[tuple[str, nn.MultiheadAttention]]:
    return [(name, m) for name, m in network.named_modules() if isinstance(m, nn.MultiheadAttention)]


def find_layout(network: nn.Module, height: int, width: int) -> PatchLayout | str:
    """The patch layout from the network's declared attributes, else from its patch embedding.

    Declared: ``grid_size`` and/or ``patch_size`` (int or pair) and ``num_prefix_tokens``
    (timm's and this project's convention). Inferred: the first Conv2d whose kernel equals
    its stride (a patch embedding) gives the patch size and, with the image size, the grid;
    the prefix is then what the token count leaves over. Returns a reason when neither works.
    """
    grid_attr, patch_attr = getattr(network, "grid_size", None), getattr(network, "patch_size", None)
    prefix = getattr(network, "num_prefix_tokens", None)
    prefix = None if prefix is None else int(prefix)
    if grid_attr is not None or patch_attr is not None:
        try:
            if grid_attr is not None:
                grid = _pair(grid_attr)
                patch = _pair(patch_attr) if patch_attr is not None else (height // grid[0], width // grid[1])
            else:
                patch = _pair(patch_attr)
                grid = (height // patch[0], width // patch[1])
        except (TypeError, ValueError):
            return f"the network's grid_size {grid_attr!r} / patch_size {patch_attr!r} are not ints or pairs of ints"
        if min(*grid, *patch) < 1 or grid[0] * patch[0] > height or grid[1] * patch[1] > width:
            return f"the network declares a {grid[0]}x{grid[1]} grid of {patch[0]}x{patch[1]} patches, which does not fit a {height}x{width} image"
        return PatchLayout(grid=grid, patch=patch, prefix=prefix, source=f"declared by {type(network).__name__}")
    for name, module in network.named_modules():
        if isinstance(module, nn.Conv2d) and module.kernel_size == module.stride and module.padding == (0, 0) and module.dilation == (1, 1):
            patch = _pair(module.stride)
            grid = (height // patch[0], width // patch[1])
            if min(grid) >= 1:
                return PatchLayout(grid=grid, patch=patch, prefix=prefix, source=f"patch embedding {name!r} (kernel = stride = {patch[0]}x{patch[1]})")
    return NO_LAYOUT


def vit_layout(model: ModelHandle, height: int, width: int) -> PatchLayout | str:
    """The layout when ``model`` is a ViT this package can read (attention modules and a layout); else why not."""
    if not attention_modules(model.network):
        return NO_ATTENTION
    return find_layout(model.network, height, width)


def _force_weights(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    # Positional options become keywords so they can be overridden; the caller still gets its output at [0].
    kwargs = {**dict(zip(_MHA_ARGS[3:], args[3:], strict=False)), **kwargs, "need_weights": True, "average_attn_weights": False}
    return args[:3], kwargs


@contextmanager
def record_attention(network: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Record the per-head attention weights of every ``nn.MultiheadAttention`` call.

    Inside the block each call is made to return its (N, heads, T, T) weights (whatever
    the model asked for; its output at [0] is unchanged), and they are appended to the
    yielded list in call order, detached. The hooks are removed on exit.
    """
    records: list[torch.Tensor] = []

    def keep(module: nn.Module, args: tuple, output) -> None:
        weights = output[1] if isinstance(output, tuple) and len(output) > 1 else None
        if weights is not None:
            records.append(weights.detach())

    handles = []
    try:
        for _, module in attention_modules(network):
            handles.append(module.register_forward_pre_hook(_force_weights, with_kwargs=True))
            handles.append(module.register_forward_hook(keep))
        yield records
    finally:
        for handle in handles:
            handle.remove()


def stack_layers(records: list[torch.Tensor]) -> torch.Tensor:
    """One forward pass's records (one per attention call) -> (N, layers, heads, T, T)."""
    if not records:
        raise AuditError(
            "No attention weights were recorded: the model's nn.MultiheadAttention modules were never called as modules.",
            fix="Call the attention layers as modules in forward (not their functional form).",
        )
    shapes = {tuple(r.shape) for r in records}
    if len(shapes) != 1 or records[0].ndim != 4:
        raise AuditError(
            f"The attention layers return weights of different or unexpected shapes {sorted(shapes)}.",
            fix="Attention maps need batched inputs and the same number of heads and tokens in every layer.",
        )
    return torch.stack(records, dim=1)


@contextmanager
def capture_tokens(network: nn.Module, layer_name: str | None) -> Iterator[list[tuple[torch.Tensor, bool | None]]]:
    """Capture the token activations Grad-CAM weighs, in the yielded list.

    ``layer_name`` None: the input (query) of the last attention module, the tokens its
    attention mixes into the CLS token (gradients of the last block's output with respect
    to patch tokens are zero, since the head reads only the CLS token). A named layer: its
    output (the first element when it returns a tuple). Each entry is the tensor as the
    forward pass used it (so gradients can be taken with respect to it) and whether it is
    sequence-first (T, N, D): known for attention modules, None (guess from the batch size)
    for a named layer.
    """
    captured: list[tuple[torch.Tensor, bool | None]] = []
    if layer_name is None:
        _, module = attention_modules(network)[-1]

        def grab_input(mod: nn.Module, args: tuple, kwargs: dict) -> None:
            captured.append((args[0] if args else kwargs["query"], not mod.batch_first))

        handle = module.register_forward_pre_hook(grab_input, with_kwargs=True)
    else:
        module = dict(network.named_modules())[layer_name]

        def grab_output(mod: nn.Module, args: tuple, output) -> None:
            captured.append((output[0] if isinstance(output, tuple) else output, None))

        handle = module.register_forward_hook(grab_output)
    try:
        yield captured
    finally:
        handle.remove()


def token_grad_cam(tokens: torch.Tensor, grads: torch.Tensor, prefix: int) -> torch.Tensor:
    """Grad-CAM over patch tokens: ReLU(sum_d alpha_d A_td), alpha_d the mean gradient over patches.

    ``tokens`` and ``grads`` are (N, T, D); the result is (N, patches). The prefix tokens
    are dropped first, so they neither receive a score nor enter the channel weights.
    """
    patches, patch_grads = tokens[:, prefix:], grads[:, prefix:]
    alpha = patch_grads.mean(dim=1, keepdim=True)
    return torch.relu((patches * alpha).sum(dim=-1))
