"""LIME: a locally weighted linear surrogate fitted to random keep-or-hide perturbations.

Interpretable components are raw tabular features (hidden: replaced by a seeded background
row's value) or image superpixels (hidden: a baseline). Perturbations of every explained
sample are evaluated together in large batches; the weighted ridge fits run vectorized.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import torch

from audits.explain._coalitions import lime_masks, lime_weights, weighted_ridge
from audits.explain._masking import (
    Baseline,
    TabularMasker,
    check_superpixel_params,
    coalition_values,
    image_baseline,
    segment_groups,
    spread_over_pixels,
    superpixel_values,
    superpixels,
)
from audits.explain.base import AttributionProbe, AttributionResult, Output
from audits.probes import RunContext, register

if TYPE_CHECKING:
    from audits.data import AuditData
    from models.loader import ModelHandle

# lime's LimeImageExplainer default kernel width (on cosine distance).
IMAGE_KERNEL_WIDTH = 0.25


def _check(n_samples: int, kernel_width: float | None) -> None:
    if n_samples < 2:
        raise ValueError(f"n_samples must be at least 2, got {n_samples}")
    if kernel_width is not None and not kernel_width > 0:
        raise ValueError(f"kernel_width must be > 0, got {kernel_width}")


@register
class LimeTabular(AttributionProbe):
    """LIME over raw tabular features (Ribeiro et al., 2016), batched.

    Parameters
    ----------
    n_samples : int
        Perturbations per sample (the first keeps every feature, as in lime).
    kernel_width : float or None
        Width of the exponential kernel on the euclidean distance between a keep-mask and
        the all-kept mask; None is lime's 0.75 * sqrt(number of features).

    A perturbation keeps each raw feature or replaces it (all its encoded columns) with the
    value of a seeded random data row. ``attributions`` are the weighted ridge (alpha 1)
    coefficients, ``base_values`` its intercept, ``outputs`` f(x), ``quality['r2']`` its
    weighted R^2 on the perturbations.
    """

    name = "lime"
    modalities = ("tabular",)
    default_for = ("tabular",)
    default_output = "probability"
    title = "LIME"
    description = (
        "Fits a weighted linear model to the model's outputs on random variants of a row in which some features "
        "are swapped for other rows' values; its coefficients say how much keeping each feature moves the output."
    )

    def __init__(self, *, n_samples: int = 1000, kernel_width: float | None = None, target: int | None = None, output: Output | None = None) -> None:
        super().__init__(target=target, output=output)
        _check(n_samples, kernel_width)
        self.n_samples = n_samples
        self.kernel_width = kernel_width

    def check(self, model: ModelHandle, data: AuditData) -> str | None:
        reason = super().check(model, data)
        if reason is None and not data.feature_groups:
            reason = "the data declares no feature groups (encoded columns per raw feature)"
        return reason

    def _run(self, model: ModelHandle, data: AuditData, context: RunContext) -> AttributionResult:
        idx = context.sample_indices
        rng = context.rng(self.name)
        m = data.n_features
        masks = lime_masks(len(idx), self.n_samples, m, rng)
        donors = rng.integers(len(data.x), size=masks.shape[:2])
        # Only the donor rows actually drawn go to the device.
        rows, donor_index = np.unique(donors, return_inverse=True)
        masker = TabularMasker(
            model.to_tensor(data.x[idx]),
            model.to_tensor(data.x[rows]),
            data.feature_groups,
            pair_background=torch.as_tensor(donor_index.reshape(donors.shape), device=model.device),
        )
        values = coalition_values(
            model,
            model.output_fn(self.output_space),
            masker,
            masks,
            self.targets(context),
            progress=lambda f: context.report(f, f"{self.name}: evaluating perturbations"),
        )
        fit = weighted_ridge(masks, values, lime_weights(masks, "euclidean", self.kernel_width or 0.75 * math.sqrt(m)))
        return self.result(
            model,
            data,
            context,
            fit.coef,
            outputs=values[:, 0].astype(np.float32),
            base_values=fit.intercept.astype(np.float32),
            quality={"r2": fit.score.astype(np.float32)},
        )


@register
class LimeImage(AttributionProbe):
    """LIME over SLIC superpixels (lime's ``LimeImageExplainer``), batched over all images.

    Parameters
    ----------
    n_segments : int
        Superpixels SLIC aims for per image.
    n_samples : int
        Perturbations per image (the first keeps every superpixel, as in lime).
    baseline : {'mean', 'zeros', 'blur'}
        What hidden superpixels show: the image's per-channel mean, zeros, or a blurred copy.
    kernel_width : float or None
        Width of the exponential kernel on the cosine distance to the all-kept mask; None
        is lime's 0.25.

    Attributions are on the pixel grid: each superpixel's ridge coefficient is shared
    equally by its pixels (its pixels sum to the coefficient); ``segments`` holds the
    superpixels, ``base_values`` the intercepts, ``quality['r2']`` the weighted R^2.
    """

    name = "lime_image"
    modalities = ("image",)
    default_for = ("image",)
    default_output = "probability"
    title = "LIME (superpixels)"
    description = (
        "Fits a weighted linear model to the model's outputs on random variants of an image with some superpixels "
        "hidden; its coefficients say how much showing each superpixel moves the output."
    )

    def __init__(
        self,
        *,
        n_segments: int = 16,
        n_samples: int = 1000,
        baseline: Baseline = "mean",
        kernel_width: float | None = None,
        target: int | None = None,
        output: Output | None = None,
    ) -> None:
        super().__init__(target=target, output=output)
        _check(n_samples, kernel_width)
        check_superpixel_params(n_segments, baseline)
        self.n_segments = n_segments
        self.n_samples = n_samples
        self.baseline = baseline
        self.kernel_width = kernel_width

    def _run(self, model: ModelHandle, data: AuditData, context: RunContext) -> AttributionResult:
        idx = context.sample_indices
        x = data.x[idx]
        segments = superpixels(x, self.n_segments)
        baseline = image_baseline(x, self.baseline)
        targets = self.targets(context)
        fn = model.output_fn(self.output_space)
        rng = context.rng(self.name)
        attributions = np.zeros(segments.shape, dtype=np.float32)
        outputs, intercepts, scores = (np.zeros(len(idx), dtype=np.float32) for _ in range(3))
        groups = segment_groups(segments)
        for g, (m, members) in enumerate(groups):
            masks = lime_masks(len(members), self.n_samples, m, rng)
            values = superpixel_values(
                model, fn, x[members], baseline[members], segments[members], masks, targets[members],
                progress=lambda f, g=g: context.report((g + f) / len(groups), f"{self.name}: evaluating perturbations"),
            )  # fmt: skip
            fit = weighted_ridge(masks, values, lime_weights(masks, "cosine", self.kernel_width or IMAGE_KERNEL_WIDTH))
            attributions[members] = spread_over_pixels(fit.coef, segments[members])
            outputs[members], intercepts[members], scores[members] = values[:, 0], fit.intercept, fit.score
        return self.result(
            model,
            data,
            context,
            attributions,
            outputs=outputs,
            base_values=intercepts,
            segments=segments,
            quality={"r2": scores},
        )
