"""GradientSHAP: expected gradients over a background distribution of baselines."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from audits.explain.base import AttributionProbe, AttributionResult, Output, background_rows, target_outputs
from audits.probes import RunContext, register

if TYPE_CHECKING:
    from audits.data import AuditData
    from models.loader import ModelHandle

# Default input noise for images, as a fraction of the card's pixel value range.
_IMAGE_NOISE = 0.05


@register
class GradientShap(AttributionProbe):
    """GradientSHAP (Lundberg and Lee, 2017), captum's estimator batched, seeded by the audit seed.

    Each sample gets ``n_samples`` random points between a noisy copy of it and a baseline
    drawn from a seeded background sample of the data; the attribution is the mean of
    gradient x (input - baseline) there, which approximates SHAP values.

    Parameters
    ----------
    n_background : int
        Rows of the data that form the baseline distribution.
    n_samples : int
        Random points per explained sample.
    stdevs : float or None
        Standard deviation of the Gaussian noise added to the input. None means 5% of
        the pixel value range for images and no noise for tabular data.

    ``outputs`` holds f(x), ``base_values`` the mean f over the background, and
    ``quality['completeness_error']`` |sum(attributions) - (f(x) - base_value)|, which is
    small only up to sampling error.
    """

    name = "gradient_shap"
    modalities = ("image", "tabular")
    default_for = ("image",)
    title = "GradientSHAP"
    description = (
        "Averages gradient-times-difference over random points between the input and baselines drawn from "
        "the data; an approximation of SHAP values whose sum is about the score's gap to its data average."
    )

    def __init__(
        self,
        *,
        n_background: int = 32,
        n_samples: int = 16,
        stdevs: float | None = None,
        target: int | None = None,
        output: Output | None = None,
    ) -> None:
        super().__init__(target=target, output=output)
        if n_background < 1:
            raise ValueError(f"n_background must be at least 1, got {n_background}")
        if n_samples < 1:
            raise ValueError(f"n_samples must be at least 1, got {n_samples}")
        if stdevs is not None and stdevs < 0:
            raise ValueError(f"stdevs must be >= 0, got {stdevs}")
        self.n_background = n_background
        self.n_samples = n_samples
        self.stdevs = stdevs

    def noise_std(self, model: ModelHandle) -> float:
        if self.stdevs is not None:
            return float(self.stdevs)
        if model.modality != "image":
            return 0.0
        low, high = model.card.input.value_range
        return _IMAGE_NOISE * (high - low)

    def _run(self, model: ModelHandle, data: AuditData, context: RunContext) -> AttributionResult:
        idx = context.sample_indices
        rng = context.rng(self.name)
        background_np = background_rows(data, self.n_background, rng)
        generator = torch.Generator(device=model.device).manual_seed(int(rng.integers(2**62)))
        fn = model.output_fn(self.output_space)
        stdevs = self.noise_std(model)
        with torch.inference_mode(False), torch.enable_grad():
            x = model.to_tensor(data.x[idx])
            t = torch.as_tensor(self.targets(context), device=model.device)
            background = model.to_tensor(background_np)
            # Every random draw up front, so the attributions do not depend on the batch size:
            # per (sample, draw) a background row, a point on the path and the input noise.
            draws = (len(idx), self.n_samples)
            which = torch.randint(len(background), draws, generator=generator, device=model.device)
            alpha = torch.rand(draws, generator=generator, device=model.device)
            noise = stdevs * torch.randn((*draws, *x.shape[1:]), generator=generator, device=model.device) if stdevs > 0 else None
            row_shape = (-1,) + (1,) * (x.ndim - 1)

            def attribute(rows: torch.Tensor) -> torch.Tensor:
                # captum's GradientShap, batched: gradient x (noisy input - baseline) at a random
                # point between them, averaged over the draws; one forward/backward per chunk.
                i = rows.long()
                noisy = x[i].repeat_interleave(self.n_samples, dim=0)
                if noise is not None:
                    noisy = noisy + noise[i].flatten(0, 1)
                base = background[which[i].flatten()]
                points = (base + alpha[i].flatten().view(row_shape) * (noisy - base)).requires_grad_(True)
                (grads,) = torch.autograd.grad(target_outputs(fn, points, t[i].repeat_interleave(self.n_samples)).sum(), points)
                return (grads * (noisy - base)).view(len(i), self.n_samples, *x.shape[1:]).mean(dim=1)

            # Every sample expands to n_samples rows in one forward pass.
            chunk = max(1, model.batch_size // self.n_samples)
            attributions = model.map_batches(attribute, np.arange(len(idx)), chunk)
        with torch.no_grad():
            outputs = model.map_batches(lambda rows: target_outputs(fn, x[rows.long()], t[rows.long()]), np.arange(len(idx)))
            base_values = model.map_batches(fn, background_np).mean(dim=0)[t]
        total = attributions.flatten(1).sum(dim=1, dtype=torch.float64)
        error = (total - (outputs.double() - base_values.double())).abs()
        return self.result(
            model,
            data,
            context,
            attributions.float().cpu().numpy(),
            outputs=outputs.float().cpu().numpy(),
            base_values=base_values.float().cpu().numpy(),
            quality={"completeness_error": error.float().cpu().numpy()},
        )

