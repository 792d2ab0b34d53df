"""Grad-CAM: class-weighted activations of a convolution layer, upsampled to the image."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from captum.attr import LayerAttribution, LayerGradCam
from torch import fx, nn

from audits.errors import AuditError
from audits.explain.base import AttributionProbe, AttributionResult
from audits.probes import RunContext, register

if TYPE_CHECKING:
    from audits.data import AuditData
    from models.loader import ModelHandle

_NO_LAYER = (
    "the network has no Conv2d layer Grad-CAM can hook (TorchScript and torch.export models hide their layers); "
    "name a convolution layer in the card's target_layer, or load the model from a state_dict"
)
_HOOK_FIX = "Name a convolution layer that the forward pass calls in the card's target_layer, or load the model from a state_dict."


@register
class GradCAM(AttributionProbe):
    """Grad-CAM (Selvaraju et al., 2017) on the card's target layer or the last Conv2d.

    The map is ReLU(sum_k alpha_k A_k) with alpha_k the spatial mean gradient of the target
    output with respect to channel k of the layer's output, bilinearly upsampled from the
    layer's grid to the input's H x W. It is non-negative and has no completeness property.
    """

    name = "grad_cam"
    modalities = ("image",)
    default_for = ("image",)
    title = "Grad-CAM"
    description = (
        "Highlights the image regions whose features in the last convolution layer raise the class score "
        "(gradient-weighted activations, upsampled to the image); coarse, at the resolution of that layer."
    )

    def check(self, model: ModelHandle, data: AuditData) -> str | None:
        reason = super().check(model, data)
        if reason is not None:
            return reason
        try:
            found = model.cam_layer()
        except AuditError as exc:  # the card names a layer the network lacks
            return f"{exc.problem} {exc.fix}"
        if found is None:
            return _NO_LAYER
        name, layer = found
        if isinstance(layer, torch.jit.ScriptModule):
            return f"layer {name!r} is TorchScript, whose submodules cannot take the hooks Grad-CAM needs; {_NO_LAYER}"
        if not _runs_as_module(model.network, name, layer):
            return f"layer {name!r} is never called as a module in the forward pass (a torch.export graph inlines it); {_NO_LAYER}"
        return None

    def _run(self, model: ModelHandle, data: AuditData, context: RunContext) -> AttributionResult:
        name, layer = model.cam_layer()
        idx = context.sample_indices
        height, width = data.x.shape[2:]
        cam = LayerGradCam(model.output_fn(self.output_space), layer)
        with torch.inference_mode(False), torch.enable_grad():
            x = model.to_tensor(data.x[idx])
            t = torch.as_tensor(self.targets(context), device=model.device)

            def attribute(rows: torch.Tensor) -> torch.Tensor:
                i = rows.long()
                try:
                    maps = cam.attribute(x[i], target=t[i], relu_attributions=True)
                except AssertionError as exc:  # captum asserts when the layer's hook never fired
                    raise AuditError(f"Grad-CAM could not hook layer {name!r} ({exc}).", fix=_HOOK_FIX) from None
                if maps.ndim != 4:
                    raise AuditError(f"Layer {name!r} outputs shape {tuple(maps.shape)}; Grad-CAM needs an (N, C, h, w) feature map.", fix=_HOOK_FIX)
                return LayerAttribution.interpolate(maps.detach(), (height, width), "bilinear")

            maps = model.map_batches(attribute, np.arange(len(idx)), model.batch_size)
        maps = maps.float().cpu().numpy()
        empty = ~(maps.reshape(len(idx), -1) > 0).any(axis=1)
        return self.result(model, data, context, maps, quality={"empty_map": empty})


def _runs_as_module(network: nn.Module, name: str, layer: nn.Module) -> bool:
    """Whether forward hooks on ``layer`` can fire: it has a forward and, in an fx graph, is called."""
    if type(layer).forward is nn.Module.forward:  # a bare container, e.g. torch.export's parameter holders
        return False
    if isinstance(network, fx.GraphModule):
        return any(node.op == "call_module" and node.target == name for node in network.graph.nodes)
    return True
