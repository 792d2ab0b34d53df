"""Attention maps of a Vision Transformer: raw per layer and head, head-averaged, and rollout."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np
import torch

from audits.explain._attention import head_average, rank_correlation, rollout
from audits.explain._vit import record_attention, stack_layers, vit_layout
from audits.explain.base import AttributionProbe, AttributionResult
from audits.probes import RunContext, register
from audits.results.attribution import AttentionMapsResult as AttentionMapsResult

if TYPE_CHECKING:
    from audits.data import AuditData
    from models.loader import ModelHandle


@register
class AttentionMaps(AttributionProbe):
    """Attention maps and attention rollout (Abnar & Zuidema, 2020) for Vision Transformers.

    One forward pass over the explained samples records every ``nn.MultiheadAttention``
    layer's per-head weights (forcing ``need_weights`` for that pass only). The CLS token's
    attention to the patches is reported per layer and head and averaged over heads;
    rollout multiplies the head-averaged maps through the layers, with the residual
    connection as 0.5 * A + 0.5 * I when ``residual``. The patch grid comes from the model
    (see :func:`audits.explain._vit.find_layout`); CNNs are skipped with a reason.

    Parameters
    ----------
    residual : bool
        Account for the skip connections in rollout (the usual choice; without them the
        product collapses onto a few tokens within a few layers).
    start_layer : int
        First layer included in rollout (0: all).
    max_raw_values : int
        Keep the raw (L, n, heads, T, T) weights in the result up to this many values;
        larger models keep only the CLS rows, the head means and rollout.

    Attention is not attribution: it says where the model looks, not what raises the class
    score, so the result is not tied to the target class; compare it with Grad-CAM and
    integrated gradients through ``quality['rank_corr_vs_<method>']``.
    """

    name = "attention_maps"
    result_type = AttentionMapsResult
    modalities = ("image",)
    default_for = ("image",)
    title = "Attention maps and rollout"
    description = (
        "For Vision Transformers: where the class token attends over the image patches, per layer and head, and "
        "attention rollout, which follows the attention through all layers (with the skip connections) to the input "
        "patches. It shows where the model looks, not what raises the class score."
    )

    def __init__(self, *, residual: bool = True, start_layer: int = 0, max_raw_values: int = 100_000) -> None:
        super().__init__()
        if start_layer < 0:
            raise ValueError(f"start_layer must be >= 0, got {start_layer}")
        if max_raw_values < 0:
            raise ValueError(f"max_raw_values must be >= 0, got {max_raw_values}")
        self.residual = residual
        self.start_layer = start_layer
        self.max_raw_values = max_raw_values

    def check(self, model: ModelHandle, data: AuditData) -> str | None:
        reason = super().check(model, data)
        if reason is not None:
            return reason
        layout = vit_layout(model, *data.x.shape[2:])
        return layout if isinstance(layout, str) else None

    def _run(self, model: ModelHandle, data: AuditData, context: RunContext) -> AttentionMapsResult:
        layout = vit_layout(model, *data.x.shape[2:])
        idx = context.sample_indices
        height, width = data.x.shape[2:]
        with torch.no_grad(), record_attention(model.network) as records:

            def forward(x: torch.Tensor) -> torch.Tensor:
                records.clear()
                model.model(x)
                return stack_layers(records)  # (batch, L, heads, T, T)

            weights = model.map_batches(forward, data.x[idx], model.batch_size)
        attention = weights.float().cpu().numpy().transpose(1, 0, 2, 3, 4)  # (L, n, heads, T, T)
        n_layers, n_tokens = attention.shape[0], attention.shape[-1]
        if self.start_layer >= n_layers:
            raise ValueError(f"start_layer {self.start_layer} is past the model's {n_layers} attention layers")
        prefix = layout.prefix_for(n_tokens)

        # The query row whose attention is mapped: the CLS token, or the mean token without one.
        cls_rows = attention[..., 0, :] if prefix else attention.mean(axis=-2)  # (L, n, heads, T)
        head_maps = layout.to_grid(cls_rows[..., prefix:])
        averaged = head_average(attention)  # (L, n, T, T)
        layer_maps = layout.to_grid((averaged[..., 0, :] if prefix else averaged.mean(axis=-2))[..., prefix:])
        joint = rollout(attention, residual=self.residual, start_layer=self.start_layer).astype(np.float32)
        roll_row = joint[:, 0] if prefix else joint.mean(axis=1)  # (n, T)
        rollout_maps = layout.to_grid(roll_row[:, prefix:])
        pixels = layout.to_pixels(rollout_maps, height, width)

        quality: dict = {"rollout_patch_mass": roll_row[:, prefix:].sum(axis=1)}
        quality.update(compare_with_earlier(pixels, idx, context))
        notes = []
        keep_raw = attention.size <= self.max_raw_values
        if not keep_raw:
            notes.append(f"raw attention weights ({attention.size:,} values) not kept: more than max_raw_values={self.max_raw_values:,}")
        return self.result(
            model,
            data,
            context,
            pixels,
            patch_grid=list(layout.grid),
            patch_size=list(layout.patch),
            prefix_tokens=prefix,
            layout_source=layout.source,
            head_maps=head_maps.astype(np.float32),
            layer_maps=layer_maps.astype(np.float32),
            rollout_maps=rollout_maps.astype(np.float32),
            rollout=joint,
            attention=attention if keep_raw else None,
            notes=notes,
            quality=quality,
        )

    def result(self, model: ModelHandle, data: AuditData, context: RunContext, attributions: np.ndarray, **extra) -> AttentionMapsResult:
        base = super().result(model, data, context, attributions)
        return AttentionMapsResult(**{f.name: getattr(base, f.name) for f in dataclasses.fields(base) if f.name not in extra}, **extra)


def compare_with_earlier(maps: np.ndarray, sample_indices: np.ndarray, context: RunContext) -> dict[str, np.ndarray]:
    """Spearman correlation over pixels of ``maps`` (n, H, W) with |attribution| of earlier image methods.

    Returns ``{'rank_corr_vs_<method>': (n,)}`` for every earlier attribution result on the
    same pixel grid that explained all of ``sample_indices`` (rows matched by index).
    """
    out: dict[str, np.ndarray] = {}
    for other in context.earlier:
        if not isinstance(other, AttributionResult) or isinstance(other, AttentionMapsResult) or other.modality != "image":
            continue
        if other.attributions.shape[1:] != maps.shape[1:]:
            continue
        position = {int(s): i for i, s in enumerate(other.sample_indices)}
        if not all(int(s) in position for s in sample_indices):
            continue
        rows = other.attributions[[position[int(s)] for s in sample_indices]]
        out[f"rank_corr_vs_{other.method}"] = rank_correlation(maps, np.abs(rows))
    return out
