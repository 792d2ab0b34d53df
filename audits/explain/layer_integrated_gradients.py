"""Layer integrated gradients on the token embeddings of a text model."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from captum.attr import LayerIntegratedGradients as CaptumLayerIntegratedGradients

from audits.explain._text import hidden_ids
from audits.explain.base import AttributionProbe, AttributionResult, Output, target_outputs
from audits.probes import RunContext, register

if TYPE_CHECKING:
    from audits.data import AuditData
    from models.loader import ModelHandle


@register
class LayerIntegratedGradients(AttributionProbe):
    """Integrated gradients (Sundararajan et al., 2017) in token-embedding space, via captum.

    Token ids are discrete, so the path runs between embeddings: from the baseline text's
    token embeddings to the input's, at the model's token embedding layer
    (``get_input_embeddings()``). The baseline replaces every non-special token with the
    mask token (the unknown token when there is none) and keeps CLS, SEP and padding, so
    both ends share one attention mask and the integral is the whole change in output.

    Parameters
    ----------
    n_steps : int
        Points of captum's Gauss-Legendre rule on the path.

    Attributions are per token (n, T): the gradient times embedding difference summed over
    the embedding dimensions. The result records ``outputs`` f(x), ``base_values``
    f(baseline) and per-sample ``quality['completeness_error']`` =
    |sum(attributions) - (f(x) - f(baseline))|.
    """

    name = "layer_integrated_gradients"
    modalities = ("text",)
    default_for = ("text",)
    title = "Layer integrated gradients (token embeddings)"
    description = (
        "Accumulates the model's gradients along a straight path from the embeddings of a fully masked text to the "
        "embeddings of the actual text; the per-token attributions add up to the change in the class score between the two."
    )

    def __init__(self, *, n_steps: int = 24, target: int | None = None, output: Output | None = None) -> None:
        super().__init__(target=target, output=output)
        if n_steps < 2:
            raise ValueError(f"n_steps must be at least 2, got {n_steps}")
        self.n_steps = n_steps

    def check(self, model: ModelHandle, data: AuditData) -> str | None:
        reason = super().check(model, data)
        if reason is None:
            try:
                model.embedding_layer()
            except ValueError as exc:
                reason = str(exc)
        return reason

    def _run(self, model: ModelHandle, data: AuditData, context: RunContext) -> AttributionResult:
        idx = context.sample_indices
        ids = data.x[idx]
        length = ids.shape[1]
        fn = model.output_fn(self.output_space)
        lig = CaptumLayerIntegratedGradients(fn, model.embedding_layer())
        x = model.to_tensor(ids)
        base = model.to_tensor(hidden_ids(model, ids, "mask"))
        t = torch.as_tensor(self.targets(context), device=model.device)
        with torch.inference_mode(False), torch.enable_grad():

            def attribute(rows: torch.Tensor) -> torch.Tensor:
                i = rows.long()
                # All n_steps points of the chunk go through one forward/backward pass.
                attr = lig.attribute(x[i], baselines=base[i], target=t[i], n_steps=self.n_steps, internal_batch_size=len(i) * self.n_steps)
                per_token = attr.detach().sum(dim=-1)
                return torch.nn.functional.pad(per_token, (0, length - per_token.shape[1]))  # the forward trims padding

            chunk = max(1, model.batch_size // self.n_steps)
            attributions = model.map_batches(attribute, np.arange(len(idx)), chunk)
        with torch.inference_mode():
            outputs = model.map_batches(lambda rows: target_outputs(fn, x[rows.long()], t[rows.long()]), np.arange(len(idx)))
            base_values = model.map_batches(lambda rows: target_outputs(fn, base[rows.long()], t[rows.long()]), np.arange(len(idx)))
        total = attributions.sum(dim=1, dtype=torch.float64)
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
