"""Text figures: tokens coloured by attribution (one line per method) and attention heatmaps."""

from __future__ import annotations

import textwrap

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from audits.explain.base import AttributionResult  # noqa: E402

_SPECIAL = {"[CLS]", "[SEP]", "[PAD]", "<s>", "</s>", "<pad>"}
_FONT = 9.0
_CHAR_IN = 0.62 * _FONT / 72  # width of one monospace character, inches
_LINE_IN = 0.26
_WIDTH_IN = 10.0
_LABEL_IN = 2.1  # left margin for the method name


def _pieces(tokens: list[str]) -> list[tuple[str, bool]]:
    """(text shown, starts a new word) per token: WordPiece '##' continuations join the previous token."""
    return [(t[2:], False) if t.startswith("##") else (t, True) for t in tokens]


def _layout(tokens: list[str], width_in: float) -> list[tuple[float, int]]:
    """(x inches, line) of each token, wrapping at ``width_in``."""
    x, line, out = 0.0, 0, []
    for text, new_word in _pieces(tokens):
        w = _CHAR_IN * len(text)
        gap = _CHAR_IN if new_word and x > 0 else 0.0
        if x + gap + w > width_in and x > 0:
            x, line, gap = 0.0, line + 1, 0.0
        out.append((x + gap, line))
        x += gap + w
    return out


def _scaled(values: np.ndarray, tokens: list[str]) -> np.ndarray:
    """Values over max |value| of the non-special tokens (special tokens 0)."""
    free = np.array([t not in _SPECIAL for t in tokens])
    v = np.where(free, values[: len(tokens)], 0.0)
    top = float(np.abs(v).max()) if len(v) else 0.0
    return v / top if top > 0 else v


def text_attribution_figure(results: list[AttributionResult], row: int, labels: np.ndarray, class_names: list[str]) -> Figure:
    """One text, one line (or more, wrapped) per method, each token on a colour scaled to the
    method's largest |attribution| in that text: red raises the explained class, blue lowers it.
    Attention rollout is unsigned (shades of red only)."""
    results = [r for r in results if r.modality == "text" and r.tokens]
    first = results[0]
    idx, tokens = int(first.sample_indices[row]), first.tokens[row]
    text_width = _WIDTH_IN - _LABEL_IN - 0.3
    layout = _layout(tokens, text_width)
    n_lines = (max(line for _, line in layout) + 1) if layout else 1
    block = n_lines * _LINE_IN + 0.12
    height = 0.9 + block * len(results)
    fig = plt.figure(figsize=(_WIDTH_IN, height))
    cmap = plt.get_cmap("bwr")
    for k, res in enumerate(results):
        values = _scaled(np.asarray(res.attributions[row], dtype=np.float64), tokens)
        top = height - 0.75 - k * block
        fig.text(0.1 / _WIDTH_IN, (top - 0.02) / height, textwrap.shorten(res.method.replace("_", " "), 26), fontsize=_FONT, va="top", weight="bold")
        for (x, line), (text, _), tok, v in zip(layout, _pieces(tokens), tokens, values, strict=True):
            grey = tok in _SPECIAL
            colour = "#e6e6e6" if grey else cmap(0.5 + 0.5 * v)
            fig.text(
                (_LABEL_IN + x) / _WIDTH_IN, (top - line * _LINE_IN) / height, text, fontsize=_FONT, family="monospace", va="top",
                color="#777777" if grey else "black", bbox={"facecolor": colour, "edgecolor": "none", "pad": 1.2},
            )  # fmt: skip
    target = class_names[int(first.targets[row])]
    scored = next((r for r in results if r.output == "probability" and r.outputs is not None), None)
    p = f" (model: P = {float(scored.outputs[row]):.3f})" if scored is not None else ""
    fig.suptitle(
        f"Text #{idx}: label {class_names[int(labels[idx])]}, explained class '{target}'{p}\n"
        "red: raises the explained class, blue: lowers it (attention rollout: how much the token feeds the readout)",
        fontsize=9, x=0.01, ha="left", y=1 - 0.05 / height,
    )  # fmt: skip
    return fig


def text_attention_figure(result: AttributionResult, row: int, *, max_tokens: int = 40) -> Figure:
    """Token x token maps for one text: the last layer's head average and the rollout."""
    layer = getattr(result, "layer_attention", None)
    roll = getattr(result, "rollout", None)
    tokens = result.tokens[row][:max_tokens]
    n = len(tokens)
    panels = [
        ("last layer, head average", None if layer is None else layer[row, -1, :n, :n]),
        ("rollout through all layers", None if roll is None else roll[row, :n, :n]),
    ]
    panels = [(t, m) for t, m in panels if m is not None]
    size = min(4.6, 1.6 + 0.16 * n)
    fig, axes = plt.subplots(1, len(panels), figsize=(size * len(panels) + 0.6, size + 0.6), squeeze=False)
    for ax, (title, grid) in zip(axes[0], panels, strict=True):
        image = ax.imshow(grid, cmap="viridis", vmin=0, vmax=max(float(grid.max()), 1e-9))
        ax.set_xticks(range(n))
        ax.set_yticks(range(n))
        ax.set_xticklabels(tokens, rotation=90, fontsize=7)
        ax.set_yticklabels(tokens, fontsize=7)
        ax.set_xlabel("attended token")
        ax.set_ylabel("attending token")
        ax.set_title(title, fontsize=9)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.suptitle(f"Attention of text #{int(result.sample_indices[row])} (rows sum to 1)", fontsize=10)
    fig.tight_layout()
    return fig
