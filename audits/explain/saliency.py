"""Saliency: the gradient of the class score with respect to the input."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from captum.attr import Saliency as CaptumSaliency

from audits.explain.base import AttributionProbe, AttributionResult, Output
from audits.probes import RunContext, register

if TYPE_CHECKING:
    from audits.data import AuditData
    from models.loader import ModelHandle


@register
class Saliency(AttributionProbe):
    """Vanilla gradient saliency (Simonyan et al., 2014).

    Parameters
    ----------
    absolute : bool
        Report |gradient| (the usual saliency map) rather than the signed gradient.
        Images sum the channels afterwards, tabular data the encoded columns of a feature.
    """

    name = "saliency"
    modalities = ("image", "tabular")
    default_for = ("image",)
    title = "Saliency (input gradients)"
    description = "Shows how strongly the class score reacts to a tiny change of each pixel or feature (the size of the gradient); fast and local, but noisy."

    def __init__(self, *, absolute: bool = True, target: int | None = None, output: Output | None = None) -> None:
        super().__init__(target=target, output=output)
        self.absolute = bool(absolute)

    def _run(self, model: ModelHandle, data: AuditData, context: RunContext) -> AttributionResult:
        idx = context.sample_indices
        saliency = CaptumSaliency(model.output_fn(self.output_space))
        with torch.inference_mode(False), torch.enable_grad():
            x = model.to_tensor(data.x[idx])
            t = torch.as_tensor(self.targets(context), device=model.device)

            def attribute(rows: torch.Tensor) -> torch.Tensor:
                i = rows.long()
                # A fresh leaf that requires grad (captum warns when it has to switch that on itself).
                return saliency.attribute(x[i].requires_grad_(), target=t[i], abs=self.absolute).detach()

            grads = model.map_batches(attribute, np.arange(len(idx)), model.batch_size)
        return self.result(model, data, context, grads.float().cpu().numpy())
