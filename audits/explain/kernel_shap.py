"""KernelSHAP: Shapley values from a weighted regression over coalitions of players.

Players are raw tabular features (a coalition's value is the mean output over background
rows, the interventional expectation) or image superpixels (hidden superpixels show a
baseline). Coalitions of every explained sample are evaluated together in large batches.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from audits.explain._coalitions import MAX_EXACT_PLAYERS, CoalitionDesign, kernel_shap_design, kernel_shap_solve
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
from audits.explain.base import AttributionProbe, AttributionResult, Output, background_rows
from audits.probes import RunContext, register

if TYPE_CHECKING:
    from audits.data import AuditData
    from models.loader import ModelHandle


def with_endpoints(design: CoalitionDesign) -> np.ndarray:
    """The design's masks with the full and the empty coalition in front (f(x) and the base value)."""
    m = design.masks.shape[-1]
    ends = np.stack([np.ones(m, dtype=bool), np.zeros(m, dtype=bool)])
    if design.shared:
        return np.concatenate([ends, design.masks])
    return np.concatenate([np.broadcast_to(ends, (len(design.masks), 2, m)), design.masks], axis=1)


def _check_counts(**counts: int) -> None:
    for name, value in counts.items():
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")


@register
class KernelShapTabular(AttributionProbe):
    """KernelSHAP over raw tabular features (Lundberg & Lee, 2017), batched.

    Parameters
    ----------
    n_background : int
        Seeded data rows that absent features are drawn from; a coalition's value is the
        mean output over them.
    n_samples : int
        Coalitions per sample when they are not enumerated: shap's design (whole subset
        sizes where the budget allows, then paired Shapley-kernel draws), seeded.
    exact_max_features : int
        Up to this many features every coalition is evaluated and the values are exact
        Shapley values (at most 20).

    The result records ``base_values`` E[f(background)], ``outputs`` f(x) and per-sample
    ``quality['additivity_error']`` = |base + sum(attributions) - f(x)| (zero up to rounding:
    the regression enforces it), and ``quality['exact']``.
    """

    name = "kernel_shap"
    modalities = ("tabular",)
    default_for = ("tabular",)
    default_output = "probability"
    title = "KernelSHAP"
    description = (
        "Splits the difference between the model's output for a row and its average output over background rows "
        "fairly among the features (Shapley values), by replacing groups of features with background values."
    )

    def __init__(
        self,
        *,
        n_background: int = 25,
        n_samples: int = 2048,
        exact_max_features: int = 12,
        target: int | None = None,
        output: Output | None = None,
    ) -> None:
        super().__init__(target=target, output=output)
        _check_counts(n_background=n_background, n_samples=n_samples)
        if not 0 <= exact_max_features <= MAX_EXACT_PLAYERS:
            raise ValueError(f"exact_max_features must be within 0..{MAX_EXACT_PLAYERS}, got {exact_max_features}")
        self.n_background = n_background
        self.n_samples = n_samples
        self.exact_max_features = exact_max_features

    def check(self, model: ModelHandle, data: AuditData) -> str | None:
        reason = super().check(model, data)
        if reason is None and not data.feature_groups:
            reason = "the data declares no feature groups (encoded columns per raw feature)"
        return reason

    def _run(self, model: ModelHandle, data: AuditData, context: RunContext) -> AttributionResult:
        idx = context.sample_indices
        rng = context.rng(self.name)
        background = background_rows(data, self.n_background, rng)
        design = kernel_shap_design(data.n_features, self.n_samples, len(idx), rng, exact_max_features=self.exact_max_features)
        masker = TabularMasker(model.to_tensor(data.x[idx]), model.to_tensor(background), data.feature_groups, distinct=True)
        values = coalition_values(
            model,
            model.output_fn(self.output_space),
            masker,
            with_endpoints(design),
            self.targets(context),
            progress=lambda f: context.report(f, f"{self.name}: evaluating coalitions"),
        )
        full, empty = values[:, 0], values[:, 1]
        phi = kernel_shap_solve(design, values[:, 2:], full, empty)
        return self.result(
            model,
            data,
            context,
            phi,
            outputs=full.astype(np.float32),
            base_values=empty.astype(np.float32),
            quality={"additivity_error": np.abs(empty + phi.sum(axis=1) - full).astype(np.float32), "exact": design.exact},
        )


@register
class KernelShapImage(AttributionProbe):
    """KernelSHAP over SLIC superpixels, batched over all explained images.

    Parameters
    ----------
    n_segments : int
        Superpixels SLIC aims for per image (images get slightly different counts).
    n_samples : int
        Coalitions per image; when 2^M - 2 <= n_samples all are evaluated (exact values).
    baseline : {'mean', 'zeros', 'blur'}
        What hidden superpixels show: the image's per-channel mean, zeros, or a blurred copy.

    Attributions are on the pixel grid: each superpixel's Shapley value is shared equally
    by its pixels (so a superpixel's pixels sum to its value); ``segments`` holds the
    superpixels. ``base_values`` is f(baseline image), ``outputs`` f(x).
    """

    name = "kernel_shap_image"
    modalities = ("image",)
    default_for = ("image",)
    default_output = "probability"
    title = "KernelSHAP (superpixels)"
    description = (
        "Splits the difference between the model's output for an image and for a featureless version of it "
        "fairly among superpixels (Shapley values), by hiding groups of superpixels."
    )

    def __init__(
        self,
        *,
        n_segments: int = 16,
        n_samples: int = 1000,
        baseline: Baseline = "mean",
        target: int | None = None,
        output: Output | None = None,
    ) -> None:
        super().__init__(target=target, output=output)
        _check_counts(n_samples=n_samples)
        check_superpixel_params(n_segments, baseline)
        self.n_segments = n_segments
        self.n_samples = n_samples
        self.baseline = baseline

    def _run(self, model: ModelHandle, data: AuditData, context: RunContext) -> AttributionResult:
        idx = context.sample_indices
        x = data.x[idx]
        segments = superpixels(x, self.n_segments)
        baseline = image_baseline(x, self.baseline)
        targets = self.targets(context)
        fn = model.output_fn(self.output_space)
        rng = context.rng(self.name)
        attributions = np.zeros(segments.shape, dtype=np.float32)
        outputs, base_values, error = (np.zeros(len(idx), dtype=np.float32) for _ in range(3))
        exact = True
        groups = segment_groups(segments)
        for g, (m, members) in enumerate(groups):
            # exact_max_features=0: enumerate only when n_samples covers every coalition
            design = kernel_shap_design(m, self.n_samples, len(members), rng, exact_max_features=0)
            values = superpixel_values(
                model, fn, x[members], baseline[members], segments[members], with_endpoints(design), targets[members],
                progress=lambda f, g=g: context.report((g + f) / len(groups), f"{self.name}: evaluating coalitions"),
            )  # fmt: skip
            full, empty = values[:, 0], values[:, 1]
            phi = kernel_shap_solve(design, values[:, 2:], full, empty)
            attributions[members] = spread_over_pixels(phi, segments[members])
            outputs[members], base_values[members] = full, empty
            error[members] = np.abs(empty + phi.sum(axis=1) - full)
            exact &= design.exact
        return self.result(
            model,
            data,
            context,
            attributions,
            outputs=outputs,
            base_values=base_values,
            segments=segments,
            quality={"additivity_error": error, "exact": exact},
        )
