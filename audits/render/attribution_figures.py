"""Attribution figures: image overlays per method, tabular per-sample and global bar charts."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from audits.explain.base import AttributionResult  # noqa: E402


def _display_image(x: np.ndarray) -> tuple[np.ndarray, str | None]:
    """(C, H, W) pixels -> something imshow takes, and its colormap."""
    if x.shape[0] == 1:
        return x[0], "gray"
    return np.clip(np.moveaxis(x[:3], 0, -1), 0, 1), None


def image_attribution_grid(results: list[AttributionResult], images: np.ndarray, labels: np.ndarray, class_names: list[str], *, max_samples: int = 4, signed: bool = True, opacity: float = 0.6) -> Figure:
    """One row per sample: the input, then each method's map over it.

    Signed maps use a diverging scale centred on zero (red raises the explained class, blue
    lowers it); each map is scaled by its own max |value| so methods are comparable in shape.
    """
    results = [r for r in results if r.modality == "image"]
    n = min(max_samples, len(results[0].sample_indices)) if results else 0
    cols = 1 + len(results)
    fig, axes = plt.subplots(max(n, 1), cols, figsize=(1.9 * cols, 2.0 * max(n, 1) + 0.4), squeeze=False)
    for row in range(n):
        idx = int(results[0].sample_indices[row])
        base, cmap = _display_image(images[idx])
        ax = axes[row, 0]
        ax.imshow(base, cmap=cmap, interpolation="nearest")
        target = class_names[int(results[0].targets[row])]
        ax.set_title(f"#{idx} label {class_names[int(labels[idx])]}\nexplained: {target}", fontsize=8)
        for col, res in enumerate(results, start=1):
            ax = axes[row, col]
            attr = res.attributions[row]
            scale = float(np.abs(attr).max()) or 1.0
            ax.imshow(base, cmap=cmap, interpolation="nearest")
            if signed:
                ax.imshow(attr / scale, cmap="bwr", vmin=-1, vmax=1, alpha=opacity, interpolation="bilinear")
            else:
                ax.imshow(np.abs(attr) / scale, cmap="inferno", vmin=0, vmax=1, alpha=opacity, interpolation="bilinear")
            if row == 0:
                ax.set_title(res.method.replace("_", " "), fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("Attributions (red: raises the explained class, blue: lowers it)" if signed else "Attribution magnitude", fontsize=10)
    fig.tight_layout()
    return fig


def global_importance_figure(results: list[AttributionResult], *, top_k: int = 12) -> Figure:
    """Mean |attribution| per raw feature, one bar group per method, top features of the first method."""
    results = [r for r in results if r.modality == "tabular"]
    order = np.argsort(-results[0].global_importance)[:top_k]
    names = [results[0].feature_names[i] for i in order]
    fig, ax = plt.subplots(figsize=(7.5, 0.35 * len(names) + 1.4))
    height = 0.8 / len(results)
    for j, res in enumerate(results):
        imp = res.global_importance[order]
        imp = imp / (imp.max() or 1.0)
        ax.barh(np.arange(len(names)) + j * height, imp, height=height, label=f"{res.method} ({res.output})")
    ax.set_yticks(np.arange(len(names)) + 0.4 - height / 2)
    ax.set_yticklabels(names)
    ax.invert_yaxis()
    ax.set_xlabel("mean |attribution|, scaled to the method's largest feature")
    ax.set_title(f"Global feature importance over {len(results[0].sample_indices)} samples")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def tabular_sample_figure(result: AttributionResult, row: int, class_names: list[str], raw_values: dict | None = None, *, top_k: int = 10) -> Figure:
    """Signed per-feature contributions for one sample (largest first)."""
    attr = result.attributions[row]
    order = np.argsort(-np.abs(attr))[:top_k]
    labels = [f"{result.feature_names[i]} = {raw_values[result.feature_names[i]]}" if raw_values else result.feature_names[i] for i in order]
    fig, ax = plt.subplots(figsize=(7.5, 0.35 * len(order) + 1.4))
    ax.barh(np.arange(len(order)), attr[order], color=["#c0392b" if v > 0 else "#2471a3" for v in attr[order]])
    ax.set_yticks(np.arange(len(order)))
    ax.set_yticklabels(labels, fontsize=8)
    ax.invert_yaxis()
    ax.axvline(0, color="black", linewidth=0.8)
    target = class_names[int(result.targets[row])]
    ax.set_xlabel(f"contribution to {result.output} of class '{target}'")
    ax.set_title(f"{result.method}: sample #{int(result.sample_indices[row])}")
    fig.tight_layout()
    return fig


def save_figure(fig: Figure, path) -> None:
    fig.savefig(path, dpi=110)
    plt.close(fig)
