"""The loader's dry run: one small forward pass that checks a model against its card.

It runs before any audit, on a batch of 2 in the card's input shape, and measures the
activations one row produces (which size the batches). When the pass fails, the message
says what the model's first layer takes against what the card declares, read from the
weights (``Linear`` features, convolution channels), instead of the framework's error text.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from audits.errors import ModelLoadError
from models.card import CategoricalFeature, ImageInput, ModelCard, TabularInput, TextInput
from models.handle import MeteredModel

_CONV_OPS = ("aten.conv1d", "aten.conv2d", "aten.conv3d", "aten.convolution")
_TORCHSCRIPT_HEADER = "The following operation failed in the TorchScript interpreter"


@dataclass(frozen=True)
class FirstLayer:
    """The first weighted layer of a network and the input width it takes."""

    name: str
    kind: str  # "Linear" or a convolution ("Conv2d", ...)
    width: int  # in_features of a Linear, in_channels of a convolution

    @property
    def unit(self) -> str:
        return "input features" if self.kind == "Linear" else "input channels"


def dry_run(model: MeteredModel, x: torch.Tensor, card: ModelCard, network: nn.Module) -> int:
    """Run ``model`` on ``x`` (a batch in the card's input shape) and check its output.

    Parameters
    ----------
    model : MeteredModel
        The network in audit space; its meter is reset afterwards (the dry run costs no probe).
    x : torch.Tensor
        The batch, on the model's device.
    card : ModelCard
        The card the model must fit.
    network : nn.Module
        The user's network as loaded (its first layer explains a failure).

    Returns
    -------
    int
        Bytes of activations one row produces in a forward pass (every leaf module's output);
        0 when the layers are hidden (TorchScript submodules take no hooks).

    Raises
    ------
    ModelLoadError
        The pass fails, returns the wrong number of classes, or returns non-finite values.
    """
    sizes: list[int] = []

    def record(_module: nn.Module, _inputs: object, out: object) -> None:
        if isinstance(out, torch.Tensor):
            sizes.append(out.numel() * out.element_size())

    leaves = [m for m in model.net.modules() if not any(True for _ in m.children()) and not isinstance(m, torch.jit.ScriptModule)]
    hooks = [m.register_forward_hook(record) for m in leaves]
    try:
        with torch.inference_mode():
            out = model(x)
    except Exception as exc:  # any failure here means the card's input spec does not fit the model
        raise _dry_run_error(card, network, exc) from None
    finally:
        for hook in hooks:
            hook.remove()
        model._meter.calls, model._meter.rows = 0, 0
    if out.ndim != 2 or out.shape[1] != card.n_classes:
        raise ModelLoadError(
            f"The model returns shape {tuple(out.shape)} for a batch of {len(x)}, but the card lists {card.n_classes} classes.",
            fix="Make class_names match the model's outputs (one score per class).",
        )
    if not torch.isfinite(out).all():
        raise ModelLoadError("The model returns non-finite outputs on a dry forward pass.", fix="Check the weights file.")
    return sum(sizes) // len(x)


def _dry_run_error(card: ModelCard, network: nn.Module, exc: Exception) -> ModelLoadError:
    spec = card.input
    first = first_layer(network) if not isinstance(spec, TextInput) else None
    declared = _declared_width(spec, first)
    if first is not None and declared is not None and declared[0] != first.width:
        return ModelLoadError(
            f"A dry forward pass failed: the model's first layer ({first.name}, {first.kind}) takes {first.width} {first.unit}, "
            f"but the card declares {declared[0]} ({declared[1]}).",
            fix=_width_fix(spec, first),
        )
    expected = _expected_width(exc)  # a compiled model hides its layers, but a matrix product names the width it wanted
    if isinstance(spec, TabularInput) and declared is not None and expected is not None and expected != declared[0]:
        return ModelLoadError(
            f"A dry forward pass failed: the model expects {expected} input columns, but the card declares {declared[0]} ({declared[1]}).",
            fix=(
                f"List the features the model was trained on, in its order, so that they encode to {expected} columns: a pre-encoded group "
                "is one categorical feature with its one-hot 'columns' (and 'reference' for a dropped level), not one feature per column."
            ),
        )
    shape = tuple(spec.shape) if isinstance(spec, (ImageInput, TextInput)) else (spec.encoded_width,)
    return ModelLoadError(
        f"A dry forward pass with the card's input shape {shape} failed: {error_summary(exc)}.",
        fix="Make the card's input spec (channels/height/width, the feature list, or max_length) match what the model expects.",
    )


def _expected_width(exc: Exception) -> int | None:
    """The input width a failed first matrix product wanted ('mat1 and mat2 shapes cannot be multiplied (1x9 and 7x8)' -> 7)."""
    import re

    match = re.search(r"mat1 and mat2 shapes cannot be multiplied \((\d+)x(\d+) and (\d+)x(\d+)\)", str(exc))
    return int(match.group(3)) if match else None


def _declared_width(spec: ImageInput | TabularInput | TextInput, first: FirstLayer | None) -> tuple[int, str] | None:
    """The width the card gives the first layer, and how the card arrives at it."""
    if isinstance(spec, TabularInput):
        parts = [
            (f"{f.name} ({len(f.levels)} levels" + (f", reference dropped: {len(f.encoded_levels)} columns)" if f.reference else ")"))
            if isinstance(f, CategoricalFeature)
            else f.name
            for f in spec.features
        ]
        listed = ", ".join(parts[:8]) + (f", ... {len(parts) - 8} more" if len(parts) > 8 else "")
        return spec.encoded_width, f"the encoded width of its {len(parts)} features: {listed}; one column per numeric feature, one per categorical level (but a reference level)"
    if isinstance(spec, ImageInput) and first is not None:
        if first.kind == "Linear":  # an MLP over flattened pixels
            c, h, w = spec.shape
            return c * h * w, f"{c} x {h} x {w} pixels, flattened"
        return spec.channels, f"input.channels = {spec.channels}"
    return None


def _width_fix(spec: ImageInput | TabularInput | TextInput, first: FirstLayer) -> str:
    if isinstance(spec, TabularInput):
        return f"List the features the model was trained on, in its order, so that they encode to {first.width} columns (or load the weights the card was written for)."
    if first.kind == "Linear":
        return f"Set input.channels/height/width so that channels x height x width = {first.width} (or load the weights the card was written for)."
    return f"Set input.channels to {first.width} (or load the weights the card was written for)."


def first_layer(net: nn.Module) -> FirstLayer | None:
    """The network's first ``Linear`` or convolution and its input width, when it can be read.

    Eager and TorchScript modules: the first such module in registration order (TorchScript
    keeps each submodule's ``original_name``). ``torch.export`` graphs: the first linear or
    convolution call in execution order. None when there is no such layer.
    """
    if isinstance(net, torch.fx.GraphModule):
        return _first_in_graph(net)
    for name, module in net.named_modules():
        kind = getattr(module, "original_name", None) if isinstance(module, torch.jit.ScriptModule) else type(module).__name__
        if isinstance(module, nn.Linear) or (kind == "Linear" and isinstance(module, torch.jit.ScriptModule)):
            weight = getattr(module, "weight", None)
            if isinstance(weight, torch.Tensor) and weight.ndim == 2:
                return FirstLayer(name or "(model)", "Linear", int(weight.shape[1]))
        if isinstance(module, nn.modules.conv._ConvNd) or (kind in ("Conv1d", "Conv2d", "Conv3d") and isinstance(module, torch.jit.ScriptModule)):
            weight = getattr(module, "weight", None)
            if isinstance(weight, torch.Tensor) and weight.ndim >= 3:
                groups = getattr(module, "groups", 1)
                return FirstLayer(name or "(model)", str(kind), int(weight.shape[1]) * (groups if isinstance(groups, int) else 1))
    return None


def _first_in_graph(graph_module: torch.fx.GraphModule) -> FirstLayer | None:
    tensors = dict(graph_module.named_parameters()) | dict(graph_module.named_buffers())
    for node in graph_module.graph.nodes:
        if node.op != "call_function" or len(node.args) < 2:
            continue
        op = str(node.target)
        if not (op.startswith("aten.linear") or op.startswith(_CONV_OPS)):
            continue
        weight_node = node.args[1]
        weight = tensors.get(getattr(weight_node, "target", None)) if getattr(weight_node, "op", None) == "get_attr" else None
        if weight is None:
            return None
        name = str(weight_node.target).removesuffix(".weight")
        if op.startswith("aten.linear"):
            return FirstLayer(name, "Linear", int(weight.shape[1]))
        groups = node.args[-1] if op.startswith("aten.convolution") else (node.args[6] if len(node.args) > 6 else 1)
        return FirstLayer(name, f"Conv{weight.ndim - 2}d", int(weight.shape[1]) * (groups if isinstance(groups, int) else 1))
    return None


def error_summary(exc: BaseException) -> str:
    """The line of an exception that says what went wrong: for a TorchScript interpreter error
    (a header, a Python traceback, then the error), its last error line."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    if lines[0].startswith(_TORCHSCRIPT_HEADER):
        errors = [line for line in lines if line.split(":", 1)[0].endswith("Error") and not line.startswith("Traceback")]
        return errors[-1] if errors else lines[-1]
    return lines[0]
