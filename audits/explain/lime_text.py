"""LIME over the words (or tokens) of a text (lime's ``LimeTextExplainer``), batched."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from audits.explain._coalitions import lime_weights, weighted_ridge
from audits.explain._masking import coalition_values
from audits.explain._text import Players, Replacement, TokenMasker, player_groups, player_segments, spread_over_tokens
from audits.explain.base import AttributionProbe, AttributionResult, Output, target_outputs
from audits.explain.kernel_shap_text import check_text_params
from audits.probes import RunContext, register

if TYPE_CHECKING:
    from audits.data import AuditData
    from models.loader import ModelHandle

# lime's LimeTextExplainer: kernel width 25 on 100 x cosine distance, i.e. 0.25 on the distance.
TEXT_KERNEL_WIDTH = 0.25


def lime_text_masks(n: int, n_samples: int, n_players: int, rng: np.random.Generator) -> np.ndarray:
    """(n, S, M) keep-masks drawn as lime's text explainer does: the first keeps every word; each
    other removes a uniformly drawn number (1..M) of distinct words."""
    removed = rng.integers(1, n_players + 1, size=(n, n_samples))
    ranks = rng.random((n, n_samples, n_players)).argsort(axis=-1).argsort(axis=-1)
    masks = ranks >= removed[..., None]
    masks[:, 0] = True
    return masks


@register
class LimeText(AttributionProbe):
    """LIME (Ribeiro et al., 2016) with words or tokens as interpretable components, batched.

    Parameters
    ----------
    n_samples : int
        Perturbations per text (the first keeps every word); each other masks a uniformly
        drawn number of distinct words, as lime's text explainer does.
    players : {'words', 'tokens'}
        Whole words (their word pieces switch together) or single tokens.
    replacement : {'mask', 'pad'}
        What a removed word shows: the mask token, or padding (hidden by the attention mask).
    kernel_width : float or None
        Width of the exponential kernel on the cosine distance to the all-kept mask; None
        is lime's (25 on 100 x the distance).

    ``attributions`` are the weighted ridge (alpha 1) coefficients shared equally by a
    word's tokens, ``base_values`` the intercepts, ``outputs`` f(x), ``quality['r2']`` the
    surrogate's weighted R^2.
    """

    name = "lime_text"
    modalities = ("text",)
    default_for = ("text",)
    default_output = "probability"
    title = "LIME (words)"
    description = (
        "Fits a weighted linear model to the model's outputs on variants of a text with some words masked; its "
        "coefficients say how much keeping each word moves the output."
    )

    def __init__(
        self,
        *,
        n_samples: int = 128,
        players: Players = "words",
        replacement: Replacement = "mask",
        kernel_width: float | None = None,
        target: int | None = None,
        output: Output | None = None,
    ) -> None:
        super().__init__(target=target, output=output)
        check_text_params(n_samples, players, replacement)
        if kernel_width is not None and not kernel_width > 0:
            raise ValueError(f"kernel_width must be > 0, got {kernel_width}")
        self.n_samples = n_samples
        self.players = players
        self.replacement = replacement
        self.kernel_width = kernel_width

    def _run(self, model: ModelHandle, data: AuditData, context: RunContext) -> AttributionResult:
        from models.text import replacement_id

        idx = context.sample_indices
        ids = data.x[idx]
        texts = data.texts
        segments = player_segments(model, ids, [texts[i] for i in idx], self.players)
        targets = self.targets(context)
        fn = model.output_fn(self.output_space)
        rng = context.rng(self.name)
        hide = replacement_id(model.tokenizer, self.replacement)
        attributions = np.zeros(ids.shape, dtype=np.float32)
        outputs, intercepts = (np.zeros(len(idx), dtype=np.float32) for _ in range(2))
        scores = np.ones(len(idx), dtype=np.float32)
        groups = player_groups(segments)
        for g, (m, members) in enumerate(groups):
            x = model.to_tensor(ids[members])
            if m == 0:
                with torch.inference_mode():
                    outputs[members] = intercepts[members] = target_outputs(fn, x, torch.as_tensor(targets[members], device=model.device)).float().cpu().numpy()
                continue
            masks = lime_text_masks(len(members), self.n_samples, m, rng)
            masker = TokenMasker(x, torch.as_tensor(segments[members], device=model.device), hide)
            values = coalition_values(
                model,
                fn,
                masker,
                masks,
                targets[members],
                progress=lambda f, g=g: context.report((g + f) / len(groups), f"{self.name}: evaluating perturbations"),
            )
            fit = weighted_ridge(masks, values, lime_weights(masks, "cosine", self.kernel_width or TEXT_KERNEL_WIDTH))
            attributions[members] = spread_over_tokens(fit.coef, segments[members])
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
