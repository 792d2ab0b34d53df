"""KernelSHAP over the words (or tokens) of a text, batched over every explained text."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from audits.explain._coalitions import kernel_shap_design, kernel_shap_solve
from audits.explain._masking import coalition_values
from audits.explain._text import PLAYERS, REPLACEMENTS, Players, Replacement, TokenMasker, player_groups, player_segments, spread_over_tokens
from audits.explain.base import AttributionProbe, AttributionResult, Output, target_outputs
from audits.explain.kernel_shap import with_endpoints
from audits.probes import RunContext, register

if TYPE_CHECKING:
    from audits.data import AuditData
    from models.loader import ModelHandle


def check_text_params(n_samples: int, players: str, replacement: str) -> None:
    if n_samples < 2:
        raise ValueError(f"n_samples must be at least 2, got {n_samples}")
    if players not in PLAYERS:
        raise ValueError(f"players must be one of {PLAYERS}, got {players!r}")
    if replacement not in REPLACEMENTS:
        raise ValueError(f"replacement must be one of {REPLACEMENTS}, got {replacement!r}")


@register
class KernelShapText(AttributionProbe):
    """KernelSHAP (Lundberg & Lee, 2017) with words or tokens as players, batched.

    Parameters
    ----------
    n_samples : int
        Coalitions per text; texts with 2^M - 2 <= n_samples players get every coalition
        (exact Shapley values), longer ones shap's seeded paired Shapley-kernel design.
    players : {'words', 'tokens'}
        Whole words (their word pieces switch together) or single tokens.
    replacement : {'mask', 'pad'}
        What a hidden player shows: the tokenizer's mask token, or padding (the attention
        mask then removes the token, positions of the others unchanged).

    Special tokens (CLS, SEP) always stay. Attributions are per token position (n, T): a
    word's Shapley value is shared equally by its tokens. ``base_values`` is f(every player
    hidden), ``outputs`` f(x); ``quality['additivity_error']`` and ``quality['exact']`` as
    for tabular KernelSHAP.
    """

    name = "kernel_shap_text"
    modalities = ("text",)
    default_for = ("text",)
    default_output = "probability"
    title = "KernelSHAP (words)"
    description = (
        "Splits the difference between the model's output for a text and for the same text with every word masked "
        "fairly among the words (Shapley values), by masking groups of words."
    )

    def __init__(
        self,
        *,
        n_samples: int = 128,
        players: Players = "words",
        replacement: Replacement = "mask",
        target: int | None = None,
        output: Output | None = None,
    ) -> None:
        super().__init__(target=target, output=output)
        check_text_params(n_samples, players, replacement)
        self.n_samples = n_samples
        self.players = players
        self.replacement = replacement

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
        outputs, base_values, error = (np.zeros(len(idx), dtype=np.float32) for _ in range(3))
        exact = True
        groups = player_groups(segments)
        for g, (m, members) in enumerate(groups):
            x = model.to_tensor(ids[members])
            if m == 0:  # nothing to attribute: the output is its own base value
                with torch.inference_mode():
                    outputs[members] = base_values[members] = (
                        target_outputs(fn, x, torch.as_tensor(targets[members], device=model.device)).float().cpu().numpy()
                    )
                continue
            design = kernel_shap_design(m, self.n_samples, len(members), rng, exact_max_features=0)
            masker = TokenMasker(x, torch.as_tensor(segments[members], device=model.device), hide)
            values = coalition_values(
                model,
                fn,
                masker,
                with_endpoints(design),
                targets[members],
                progress=lambda f, g=g: context.report((g + f) / len(groups), f"{self.name}: evaluating coalitions"),
            )
            full, empty = values[:, 0], values[:, 1]
            phi = kernel_shap_solve(design, values[:, 2:], full, empty)
            attributions[members] = spread_over_tokens(phi, segments[members])
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
