"""Occlusion: how much the class score drops when a window of the image is blanked out."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from captum.attr import Occlusion as CaptumOcclusion

from audits.explain.base import AttributionProbe, AttributionResult, Output
from audits.probes import RunContext, register

if TYPE_CHECKING:
    from audits.data import AuditData
    from models.loader import ModelHandle


@register
class Occlusion(AttributionProbe):
    """Sliding-window occlusion (Zeiler and Fergus, 2014) via captum.

    Each window (all channels, ``window`` x ``window`` pixels, moved by ``strides``) is set
    to ``baseline``; a pixel's attribution is the mean drop of the target output over the
    windows that cover it.

    Parameters
    ----------
    window : int or None
        Window side in pixels; None means max(2, min(H, W) // 4) (2 for 8 x 8 digits).
    strides : int or None
        Window step in pixels; None means max(1, window // 2) (1 for the 2-pixel window).
    baseline : float or None
        Pixel value of an occluded window; None means black (the low end of the card's
        value range, usually 0).
    """

    name = "occlusion"
    modalities = ("image",)
    default_for = ("image",)
    title = "Occlusion"
    description = (
        "Covers one small patch of the image at a time and measures how much the class score drops; "
        "model-agnostic and easy to read, at the resolution of the patch."
    )

    def __init__(
        self,
        *,
        window: int | None = None,
        strides: int | None = None,
        baseline: float | None = None,
        target: int | None = None,
        output: Output | None = None,
    ) -> None:
        super().__init__(target=target, output=output)
        if window is not None and window < 1:
            raise ValueError(f"window must be at least 1 pixel, got {window}")
        if strides is not None and strides < 1:
            raise ValueError(f"strides must be at least 1 pixel, got {strides}")
        self.window = window
        self.strides = strides
        self.baseline = baseline

    def geometry(self, height: int, width: int) -> tuple[int, int, int]:
        """(window, stride, number of window positions) for an H x W image."""
        window = self.window or max(2, min(height, width) // 4)
        stride = self.strides or max(1, window // 2)
        positions = ((height - window) // stride + 1) * ((width - window) // stride + 1)
        return window, stride, positions

    def check(self, model: ModelHandle, data: AuditData) -> str | None:
        reason = super().check(model, data)
        if reason is None:
            channels, height, width = model.input_shape
            window = self.geometry(height, width)[0]
            if window > min(height, width):
                reason = f"the occlusion window ({window} px) is larger than the {height} x {width} image"
        return reason

    def _run(self, model: ModelHandle, data: AuditData, context: RunContext) -> AttributionResult:
        idx = context.sample_indices
        channels, height, width = model.input_shape
        window, stride, positions = self.geometry(height, width)
        fill = float(model.card.input.value_range[0] if self.baseline is None else self.baseline)
        occlusion = CaptumOcclusion(model.output_fn(self.output_space))
        # Evaluate all windows of a chunk of samples in one call when the batch allows it.
        per_eval = max(1, min(positions, model.batch_size))
        chunk = max(1, model.batch_size // per_eval)
        with torch.no_grad():
            x = model.to_tensor(data.x[idx])
            t = torch.as_tensor(self.targets(context), device=model.device)

            def attribute(rows: torch.Tensor) -> torch.Tensor:
                i = rows.long()
                return occlusion.attribute(
                    x[i],
                    sliding_window_shapes=(channels, window, window),
                    strides=(channels, stride, stride),
                    baselines=fill,
                    target=t[i],
                    perturbations_per_eval=per_eval,
                )

            attributions = model.map_batches(attribute, np.arange(len(idx)), chunk)
        # Windows span all channels, so every channel holds the same drop: keep one, not their sum.
        return self.result(model, data, context, attributions.mean(dim=1).float().cpu().numpy())
