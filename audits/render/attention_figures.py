"""Attention figures for Vision Transformers: per layer and head maps and rollout over one image."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from audits.explain.attention_maps import AttentionMapsResult  # noqa: E402


def _show(ax, base: np.ndarray, cmap: str | None, heat: np.ndarray | None, opacity: float) -> None:
    ax.imshow(base, cmap=cmap, interpolation="nearest")
    if heat is not None:
        low, high = float(heat.min()), float(heat.max())
        # Nearest: a token is exactly its patch, so the map is drawn as the blocks it is.
        ax.imshow((heat - low) / ((high - low) or 1.0), cmap="inferno", vmin=0, vmax=1, alpha=opacity, interpolation="nearest")


def attention_figure(
    result: AttentionMapsResult, images: np.ndarray, labels: np.ndarray, class_names: list[str], row: int = 0, *, opacity: float = 0.55
) -> Figure:
    """One explained sample: the CLS token's attention per layer (rows) and head (columns), their mean, and rollout.

    Every map is stretched from its own minimum (dark) to its own maximum (bright), so the
    figure shows where each head looks, not how strongly compared with other heads (rollout
    keeps a floor on every patch from the skip connections; stretching shows its shape).
    """
    idx = int(result.sample_indices[row])
    image = images[idx]
    base, cmap = (image[0], "gray") if image.shape[0] == 1 else (np.clip(np.moveaxis(image[:3], 0, -1), 0, 1), None)
    heads = result.pixel_maps(result.head_maps[:, row])  # (L, heads, H, W)
    means = result.pixel_maps(result.layer_maps[:, row])  # (L, H, W)
    n_layers, n_heads = heads.shape[:2]
    cols = n_heads + 2
    fig, axes = plt.subplots(n_layers, cols, figsize=(1.5 * cols, 1.55 * n_layers + 0.6), squeeze=False)
    for layer in range(n_layers):
        for head in range(n_heads):
            _show(axes[layer, head + 1], base, cmap, heads[layer, head], opacity)
            if layer == 0:
                axes[layer, head + 1].set_title(f"head {head}", fontsize=8)
        _show(axes[layer, -1], base, cmap, means[layer], opacity)
        axes[layer, 1].set_ylabel(f"layer {layer}", fontsize=8)
        axes[layer, 0].axis("off")
    axes[0, -1].set_title("head mean", fontsize=8)
    _show(axes[0, 0], base, cmap, None, opacity)
    axes[0, 0].axis("on")
    axes[0, 0].set_title(f"#{idx} label {class_names[int(labels[idx])]}", fontsize=8)
    if n_layers > 1:
        _show(axes[1, 0], base, cmap, result.attributions[row], opacity)
        axes[1, 0].axis("on")
        axes[1, 0].set_title("rollout", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"CLS attention to the patches (explained: {class_names[int(result.targets[row])]})", fontsize=10)
    fig.tight_layout()
    return fig
