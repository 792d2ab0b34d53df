"""Grad-CAM: class-weighted activations of a convolution layer (or of a ViT's patch tokens), mapped to the image."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

from audits.errors import AuditError
from audits.explain._vit import PatchLayout, capture_tokens, token_grad_cam, vit_layout
from audits.explain.base import AttributionProbe, AttributionResult, target_outputs
from audits.probes import RunContext, register

if TYPE_CHECKING:
    from audits.data import AuditData
    from models.loader import ModelHandle

_NO_LAYER = (
    "the network has no Conv2d layer Grad-CAM can hook (TorchScript and torch.export models hide their layers); "
    "name a convolution layer in the card's target_layer, or load the model from a state_dict"
)
_TOKEN_FIX = "Leave the card's target_layer empty (the last attention layer's input is used) or name a layer that outputs the tokens."
_HOOK_FIX = "Name a convolution layer that the forward pass calls in the card's target_layer, or load the model from a state_dict."


@register
class GradCAM(AttributionProbe):
    """Grad-CAM (Selvaraju et al., 2017) on the card's target layer or the last Conv2d.

    The map is ReLU(sum_k alpha_k A_k) with alpha_k the spatial mean gradient of the target
    output with respect to channel k of the layer's output, bilinearly upsampled from the
    layer's grid to the input's H x W. It is non-negative and has no completeness property.

    Vision Transformers (networks with ``nn.MultiheadAttention`` modules and a patch
    layout, see :func:`audits.explain._vit.find_layout`) are handled without a reshape from
    the user: the activations are the tokens entering the last attention module (or the
    output of the card's ``target_layer``), the prefix tokens (CLS) are dropped, the channel
    weights are the mean gradient over the patch tokens, and each patch's score covers its
    pixels. ``quality['empty_map']`` flags samples whose map is all zero.
    """

    name = "grad_cam"
    modalities = ("image",)
    default_for = ("image",)
    title = "Grad-CAM"
    description = (
        "Highlights the image regions whose features in the last convolution layer raise the class score "
        "(gradient-weighted activations, upsampled to the image); coarse, at the resolution of that layer. "
        "For Vision Transformers it weighs the patch tokens entering the last attention layer, one value per patch."
    )

    def check(self, model: ModelHandle, data: AuditData) -> str | None:
        reason = super().check(model, data)
        if reason is not None:
            return reason
        layout = vit_layout(model, *data.x.shape[2:])
        if isinstance(layout, PatchLayout) and not self._names_conv(model):
            if model.card.target_layer and model.card.target_layer not in dict(model.network.named_modules()):
                return f"layer {model.card.target_layer!r} named by the card's target_layer is not in {model.name}"
            return None
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

    @staticmethod
    def _names_conv(model: ModelHandle) -> bool:
        """Whether the card's target_layer is a convolution (then even a ViT gets classic Grad-CAM)."""
        name = model.card.target_layer
        return bool(name) and isinstance(dict(model.network.named_modules()).get(name), nn.Conv2d)

    def _run(self, model: ModelHandle, data: AuditData, context: RunContext) -> AttributionResult:
        layout = vit_layout(model, *data.x.shape[2:])
        if isinstance(layout, PatchLayout) and not self._names_conv(model):
            return self._run_tokens(model, data, context, layout)
        name, layer = model.cam_layer()
        idx = context.sample_indices
        height, width = data.x.shape[2:]
        fn = model.output_fn(self.output_space)
        captured: list[torch.Tensor] = []
        # One hook for the whole run. It swaps the layer's output for a fresh leaf that requires
        # grad, so the backward pass stops at the layer (nothing below it is differentiated) and
        # hands the rest of the network a copy (in-place operations after the layer leave the
        # captured activations alone).
        hook = layer.register_forward_hook(lambda _m, _inputs, out: _capture(out, captured))
        try:
            with torch.inference_mode(False), torch.enable_grad():
                x = model.to_tensor(data.x[idx])
                t = torch.as_tensor(self.targets(context), device=model.device)

                def attribute(rows: torch.Tensor) -> torch.Tensor:
                    i = rows.long()
                    captured.clear()
                    score = target_outputs(fn, x[i], t[i])
                    if not captured:
                        raise AuditError(f"Grad-CAM could not hook layer {name!r} (its forward hook never fired).", fix=_HOOK_FIX)
                    acts = captured[-1]  # the last call's output, as captum's layer methods take it
                    if not isinstance(acts, torch.Tensor) or acts.ndim != 4:
                        shape = tuple(acts.shape) if isinstance(acts, torch.Tensor) else type(acts).__name__
                        raise AuditError(f"Layer {name!r} outputs shape {shape}; Grad-CAM needs an (N, C, h, w) feature map.", fix=_HOOK_FIX)
                    grads = _layer_gradient(score, acts)
                    # Grad-CAM: channel weights = spatial mean gradient; ReLU of the weighted channel sum.
                    cam = torch.relu((grads.mean(dim=(2, 3), keepdim=True) * acts.detach()).sum(dim=1, keepdim=True))
                    return F.interpolate(cam, size=(height, width), mode="bilinear")

                maps = model.map_batches(attribute, np.arange(len(idx)), model.batch_size)
        finally:
            hook.remove()
        maps = maps.float().cpu().numpy()
        empty = ~(maps.reshape(len(idx), -1) > 0).any(axis=1)
        return self.result(model, data, context, maps, quality={"empty_map": empty})

    def _run_tokens(self, model: ModelHandle, data: AuditData, context: RunContext, layout: PatchLayout) -> AttributionResult:
        """Grad-CAM over a ViT's patch tokens, each patch's score spread over its pixels."""
        idx = context.sample_indices
        height, width = data.x.shape[2:]
        fn = model.output_fn(self.output_space)
        layer_name = model.card.target_layer or None
        with torch.inference_mode(False), torch.enable_grad(), capture_tokens(model.network, layer_name) as captured:
            x = model.to_tensor(data.x[idx])
            t = torch.as_tensor(self.targets(context), device=model.device)

            def attribute(rows: torch.Tensor) -> torch.Tensor:
                i = rows.long()
                captured.clear()
                xi = x[i].detach().requires_grad_(True)  # builds the graph; the parameters stay frozen
                score = target_outputs(fn, xi, t[i])
                if not captured:
                    raise AuditError(f"Grad-CAM could not capture the tokens of {layer_name or 'the last attention layer'}.", fix=_TOKEN_FIX)
                tokens, seq_first = captured[-1]
                (grads,) = torch.autograd.grad(score.sum(), tokens)
                tokens, grads = (_batch_first(v.detach(), len(i), seq_first, layer_name) for v in (tokens, grads))
                return token_grad_cam(tokens, grads, layout.prefix_for(tokens.shape[1]))

            scores = model.map_batches(attribute, np.arange(len(idx)), model.batch_size)
        grid_maps = layout.to_grid(scores.float().cpu().numpy())
        maps = layout.to_pixels(grid_maps, height, width)
        empty = ~(maps.reshape(len(idx), -1) > 0).any(axis=1)
        return self.result(model, data, context, maps, quality={"empty_map": empty})


def _capture(out: object, captured: list) -> object:
    """Forward hook body: record the layer's output as a leaf that requires grad and pass on a copy."""
    if not isinstance(out, torch.Tensor) or not out.is_floating_point():
        captured.append(out)
        return None
    leaf = out.detach().requires_grad_(True)
    captured.append(leaf)
    return leaf.clone()


def _layer_gradient(score: torch.Tensor, acts: torch.Tensor) -> torch.Tensor:
    """d sum(score) / d acts; zeros where the score does not depend on the layer."""
    if not score.requires_grad:
        return torch.zeros_like(acts)
    (grads,) = torch.autograd.grad(score.sum(), acts, allow_unused=True)
    return torch.zeros_like(acts) if grads is None else grads


def _batch_first(tokens: torch.Tensor, n: int, seq_first: bool | None, layer_name: str | None) -> torch.Tensor:
    """A captured (N, T, D) or (T, N, D) activation as (N, T, D); ``seq_first`` None: tell by the batch size."""
    if tokens.ndim == 3 and seq_first is not None:
        return tokens.transpose(0, 1) if seq_first else tokens
    if tokens.ndim == 3 and tokens.shape[0] == n:
        return tokens
    if tokens.ndim == 3 and tokens.shape[1] == n:
        return tokens.transpose(0, 1)
    raise AuditError(f"Layer {layer_name!r} outputs shape {tuple(tokens.shape)}; ViT Grad-CAM needs (N, tokens, channels).", fix=_TOKEN_FIX)


def _runs_as_module(network: nn.Module, name: str, layer: nn.Module) -> bool:
    """Whether forward hooks on ``layer`` can fire: it has a forward and, in an fx graph, is called."""
    if type(layer).forward is nn.Module.forward:  # a bare container, e.g. torch.export's parameter holders
        return False
    if isinstance(network, fx.GraphModule):
        return any(node.op == "call_module" and node.target == name for node in network.graph.nodes)
    return True
