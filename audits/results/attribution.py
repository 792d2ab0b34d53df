"""Attribution results: per-sample attributions of every method, text attention and ViT attention maps."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from audits.results.base import Direction, Measurement, ProbeResult
from audits.serialization import serializable

# Which way is better for the per-sample quality numbers probes report (others: no direction).
_QUALITY_DIRECTION: dict[str, Direction] = {
    "completeness_error": "lower_is_better",
    "additivity_error": "lower_is_better",
    "rollout_row_sum_error": "lower_is_better",
    "empty_map": "lower_is_better",
    "r2": "higher_is_better",
}
QUALITY_STATISTICS = ("mean", "median", "min", "max")
# Special tokens of common tokenizers, left out of "top tokens" summaries.
_SPECIAL_TOKENS = frozenset({"[CLS]", "[SEP]", "[PAD]", "[MASK]", "[UNK]", "<s>", "</s>", "<pad>", "<mask>", "<unk>"})


def patch_to_pixels(grid_maps: np.ndarray, patch: tuple[int, int], height: int, width: int) -> np.ndarray:
    """(..., rows, cols) patch-grid maps -> (..., height, width): each patch's value on every pixel it covers.

    A token is exactly its patch (the embedding does not overlap), so the map is blocky
    by design rather than interpolated; pixels past the last full patch stay 0.
    """
    ph, pw = patch
    blocks = np.repeat(np.repeat(grid_maps, ph, axis=-2), pw, axis=-1)
    out = np.zeros((*grid_maps.shape[:-2], height, width), dtype=grid_maps.dtype)
    h, w = min(height, blocks.shape[-2]), min(width, blocks.shape[-1])
    out[..., :h, :w] = blocks[..., :h, :w]
    return out


@serializable
@dataclass(frozen=True, kw_only=True)
class AttributionResult(ProbeResult):
    """Per-sample attributions of one method.

    ``attributions`` is (n, H, W) for images (summed over channels, signed), (n, M)
    per raw feature for tabular data (one-hot columns summed back into their feature) and
    (n, T) per token position for text, where ``tokens[i]`` lists sample i's tokens
    (positions past its last token are padding and hold 0).
    ``base_values[i] + attributions[i].sum()`` approximates ``outputs[i]`` for methods
    with a completeness property (SHAP, IG).
    """

    modality: str
    output: str
    sample_indices: np.ndarray
    targets: np.ndarray
    attributions: np.ndarray
    feature_names: list[str] = field(default_factory=list)
    outputs: np.ndarray | None = None
    base_values: np.ndarray | None = None
    segments: np.ndarray | None = None
    quality: dict = field(default_factory=dict)
    tokens: list[list[str]] = field(default_factory=list)

    @property
    def global_importance(self) -> np.ndarray:
        """Mean |attribution| over the explained samples: (M,) for tabular, (H, W) for images."""
        return np.abs(self.attributions).mean(axis=0)

    def headline(self) -> str:
        if self.feature_names:
            return f"top features: {', '.join(self.top_features(4))}"
        if self.tokens:
            return f"{len(self.sample_indices)} texts; top tokens: {', '.join(self.top_tokens(4))}"
        return f"{len(self.sample_indices)} samples explained"

    def quality_values(self, key: str, *, relative: bool = False) -> np.ndarray | None:
        """Finite per-sample values of ``quality[key]``; ``relative`` divides each by |output - base value|.

        None when the result has no such key, or when ``relative`` and it stores no outputs.
        """
        if key not in self.quality:
            return None
        values = np.atleast_1d(np.asarray(self.quality[key], dtype=np.float64))
        if relative:
            if self.outputs is None:
                return None
            base = 0.0 if self.base_values is None else np.asarray(self.base_values, dtype=np.float64)
            values = values / np.maximum(np.abs(np.asarray(self.outputs, dtype=np.float64) - base), 1e-12)
        return values[np.isfinite(values)]

    def measurements(self) -> Iterator[Measurement]:
        """Every per-sample quality number summarized by each statistic: ``<key>_<statistic>`` (and
        ``relative_<key>_<statistic>`` for errors, as a share of |output - base value|), subject the method."""
        for key in self.quality:
            if np.asarray(self.quality[key]).dtype.kind not in "biuf":
                continue
            variants = [(key, False)] + ([(f"relative_{key}", True)] if key.endswith("_error") and self.outputs is not None else [])
            for name, relative in variants:
                values = self.quality_values(key, relative=relative)
                for stat in QUALITY_STATISTICS:
                    value = float(getattr(np, stat)(values)) if values is not None and values.size else None
                    yield Measurement(
                        name=f"{name}_{stat}",
                        subject=self.method,
                        value=value,
                        direction=_QUALITY_DIRECTION.get(key, "neutral"),
                        evidence=f".quality.{key}",
                        n=0 if values is None else int(values.size),
                    )

        if self.feature_names and self.attributions.ndim == 2 and len(self.attributions):
            importance = self.global_importance
            total = float(importance.sum())
            for name, v in zip(self.feature_names, importance, strict=False):
                yield Measurement(
                    name="feature_importance_share", subject=f"{self.method}/{name}", value=float(v) / total if total > 0 else None,
                    evidence=".attributions", n=len(self.attributions),
                )  # fmt: skip

    def top_features(self, k: int = 5) -> list[str]:
        if not self.feature_names:
            return []
        order = np.argsort(-self.global_importance)
        return [self.feature_names[i] for i in order[:k]]

    def top_tokens(self, k: int = 5) -> list[str]:
        """Text: the distinct tokens with the largest |attribution| in any explained sample."""
        scored = sorted(
            (
                (abs(float(v)), tok)
                for row, toks in zip(self.attributions, self.tokens, strict=False)
                for tok, v in zip(toks, row, strict=False)
                if tok not in _SPECIAL_TOKENS
            ),
            reverse=True,
        )
        return list(dict.fromkeys(tok for _, tok in scored))[:k]


@serializable
@dataclass(frozen=True, kw_only=True)
class AttentionMapsResult(AttributionResult):
    """Where a ViT's CLS token attends, per layer and head, and the rollout over all layers.

    ``attributions`` (n, H, W) is the rollout map on the pixel grid (each patch's value on
    its pixels), so the shared overlays show it. On the patch grid (rows x cols):
    ``head_maps`` (L, n, heads, rows, cols) is the CLS token's raw attention to each patch,
    ``layer_maps`` (L, n, rows, cols) its mean over heads, ``rollout_maps`` (n, rows, cols)
    the CLS row of the rollout. ``rollout`` (n, T, T) is the full rollout matrix (rows sum
    to 1) and ``attention`` (L, n, heads, T, T) the raw weights, kept when they have at most
    ``max_raw_values`` entries (None otherwise). Token 0..prefix_tokens-1 are the prefix
    (CLS); a model without prefix tokens is read through the mean over query tokens.

    ``quality['rollout_patch_mass']`` is the share of the CLS row of the rollout that lands
    on patches (the rest stays on prefix tokens); ``quality['rank_corr_vs_<method>']`` the
    per-sample Spearman correlation over pixels between the rollout map and |attribution|
    of each image method that ran earlier in the audit on the same samples.
    """

    patch_grid: list[int]
    patch_size: list[int]
    prefix_tokens: int
    layout_source: str
    head_maps: np.ndarray
    layer_maps: np.ndarray
    rollout_maps: np.ndarray
    rollout: np.ndarray
    attention: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def n_layers(self) -> int:
        return int(self.head_maps.shape[0])

    @property
    def n_heads(self) -> int:
        return int(self.head_maps.shape[2])

    def rank_correlations(self) -> dict[str, float]:
        """Mean Spearman correlation of the rollout with each earlier method (NaN rows ignored)."""
        out = {}
        for key, values in self.quality.items():
            if key.startswith("rank_corr_vs_"):
                finite = np.asarray(values, dtype=np.float64)
                finite = finite[np.isfinite(finite)]
                out[key.removeprefix("rank_corr_vs_")] = float(finite.mean()) if finite.size else float("nan")
        return out

    def pixel_maps(self, maps: np.ndarray) -> np.ndarray:
        """Any (..., rows, cols) patch-grid array of this result (e.g. ``layer_maps``) on the pixel grid."""
        return patch_to_pixels(maps, (int(self.patch_size[0]), int(self.patch_size[1])), *self.attributions.shape[1:])

    def headline(self) -> str:
        mass = float(np.mean(self.quality.get("rollout_patch_mass", [np.nan])))
        line = f"{self.n_layers} layers x {self.n_heads} heads on a {self.patch_grid[0]}x{self.patch_grid[1]} patch grid; rollout puts {mass:.0%} on patches"
        corr = self.rank_correlations()
        # Grad-CAM and IG are the usual references; otherwise the first two methods that ran.
        shown = [m for m in ("grad_cam", "integrated_gradients") if m in corr] or list(corr)[:2]
        if shown:
            line += "; rank corr with " + ", ".join(f"{m} {corr[m]:.2f}" for m in shown)
        return line


@serializable
@dataclass(frozen=True, kw_only=True)
class TextAttentionResult(AttributionResult):
    """Attention of the explained texts, cropped to the longest of them (``n_tokens``).

    ``attention`` (n, L, H, t, t): raw attention probabilities per layer and head (row i:
    how token i attends over the tokens), rounded to 4 decimals, or None when not stored;
    ``layer_attention`` (n, L, t, t): the head average per layer; ``rollout`` (n, t, t):
    attention rollout through all layers (rows sum to 1). ``attributions`` (n, T) is the
    rollout row of the readout: the CLS token's row (``readout='cls'``) or the mean of the
    rows of the text's tokens (``'mean'``, for mean-pooling models). Positions past a
    text's own length are zero everywhere.
    """

    readout: str = "cls"
    residual: bool = True
    n_tokens: int = 0
    attention: np.ndarray | None = None
    layer_attention: np.ndarray | None = None
    rollout: np.ndarray | None = None
