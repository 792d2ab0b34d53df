"""The layer concept probes read, and batched capture of its activations and of the class logit's gradient there."""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from audits.errors import AuditError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from models.loader import ModelHandle

_FIX = "Name the layer in the probe's 'layer' parameter (or the card's target_layer); it must be a module the forward pass calls."
_SKIP = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Identity, nn.Flatten)


def concept_layer(model: ModelHandle, name: str | None = None) -> tuple[str, nn.Module] | None:
    """The layer to read: ``name``; else the card's target layer; else a transformer's last block
    (the module holding the last ``nn.MultiheadAttention``); else the last Conv2d (the Grad-CAM layer);
    else an MLP's first hidden layer (the module feeding its second Linear, dropout skipped).
    None when the network exposes no such module (TorchScript, torch.export).
    """
    modules = dict(model.network.named_modules())
    if name:
        if name not in modules:
            raise AuditError(f"Layer {name!r} is not in {model.name}.", fix=f"Use one of: {', '.join(list(modules)[-8:])}.")
        return name, modules[name]
    if model.card.target_layer and model.card.target_layer in modules:
        return model.card.target_layer, modules[model.card.target_layer]
    attn = [n for n, m in modules.items() if isinstance(m, nn.MultiheadAttention)]
    if attn:
        parent = attn[-1].rpartition(".")[0]
        return parent, modules[parent]
    block = last_transformer_block(model.network)
    if block is not None:
        return block
    found = model.cam_layer()
    if found is not None:
        return found
    leaves = [(n, m) for n, m in modules.items() if n and not list(m.children()) and not isinstance(m, _SKIP)]
    linear = [i for i, (_, m) in enumerate(leaves) if isinstance(m, nn.Linear)]
    # The output of the first hidden layer (what enters the second Linear): the last hidden layer feeds a linear
    # head, whose gradient there is the same for every row, so TCAV scores there could only be 0 or 1.
    hidden = [i - 1 for i in linear[1:] if i > 0]
    return leaves[hidden[0]] if hidden else None


def last_transformer_block(net: nn.Module) -> tuple[str, nn.Module] | None:
    """The last block of a transformer's stack of blocks (a Hugging Face encoder's ``encoder.layer[-1]``):
    the last element of the last ``nn.ModuleList`` whose elements hold an attention module (a submodule
    whose class name contains ``Attention``). None when there is no such stack."""
    found = None
    for name, module in net.named_modules():
        if isinstance(module, nn.ModuleList) and len(module):
            last = module[len(module) - 1]
            if any("Attention" in type(m).__name__ for m in last.modules()):
                found = (f"{name}.{len(module) - 1}" if name else str(len(module) - 1), last)
    return found


@contextmanager
def captured_output(layer: nn.Module, *, leaf: bool = False) -> Iterator[list[torch.Tensor]]:
    """Collect ``layer``'s output (the first tensor when it returns a tuple) on every forward call.

    With ``leaf`` the output is replaced by a detached copy that requires grad, so gradients with
    respect to it exist even when nothing before the layer does (token ids into frozen embeddings).
    """
    store: list[torch.Tensor] = []

    def hook(_module, _inputs, output):
        first = output[0] if isinstance(output, tuple) else output
        if leaf:
            first = first.detach().requires_grad_(True)
            output = (first, *output[1:]) if isinstance(output, tuple) else first
        store.append(first)
        return output if leaf else None

    handle = layer.register_forward_hook(hook)
    try:
        yield store
    finally:
        handle.remove()


def activations_and_gradients(
    model: ModelHandle, layer_name: str, layer: nn.Module, x: np.ndarray, targets: np.ndarray, *, log_probability: bool = False, _sorted: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Batched: each row's flattened activation at ``layer`` and the gradient of its ``targets`` logit there.

    One forward and one backward pass per batch; in eval mode rows do not interact, so the
    gradient of the summed target logits is each row's own gradient.

    Text models: a layer's token states (n, T, D) become one vector per text, the mean over its
    tokens (padding left out), and the gradient the sum over its tokens: moving every token's state
    by ``v`` changes the logit by that sum dotted with ``v``, so directional derivatives keep their
    meaning while texts of any length share one space.
    """
    text = model.modality == "text"
    if text and not _sorted and len(x) > 1 and model.text_forward is not None:
        # Shortest texts first, so each batch is trimmed to its own longest text; results come back in the given order.
        order = np.argsort((np.asarray(x) != model.text_forward.pad_id).sum(axis=1), kind="stable")
        acts, grads = activations_and_gradients(
            model, layer_name, layer, np.asarray(x)[order], np.asarray(targets)[order], log_probability=log_probability, _sorted=True
        )
        back = np.argsort(order)
        return acts[back], grads[back]
    t_all = torch.as_tensor(np.asarray(targets, dtype=np.int64), device=model.device)
    x_rows = np.arange(len(x))
    acts: list[np.ndarray] = []
    grads: list[np.ndarray] = []
    pad_id = model.text_forward.pad_id if text and model.text_forward is not None else None
    with torch.inference_mode(False), torch.enable_grad(), captured_output(layer, leaf=text) as store:

        def one_batch(rows: torch.Tensor) -> torch.Tensor:
            i = rows.long()
            store.clear()
            xi = model.to_tensor(x[i.cpu().numpy()])
            if not text:
                xi = xi.detach().requires_grad_(True)  # builds the graph; parameters stay frozen
            logits = model.model(xi)
            if not store:
                raise AuditError(f"Layer {layer_name!r} was not called in the forward pass.", fix=_FIX)
            out = store[-1]
            if log_probability:
                logits = torch.log_softmax(logits, dim=1)
            score = logits.gather(1, t_all[i].view(-1, 1)).sum()
            (g,) = torch.autograd.grad(score, out, allow_unused=text)
            if g is None:
                raise AuditError(f"The class scores do not depend on layer {layer_name!r}'s output.", fix=_FIX)
            if out.shape[0] != len(i):
                raise AuditError(f"Layer {layer_name!r} outputs shape {tuple(out.shape)}, not one row per input.", fix=_FIX)
            if text and out.dim() == 3:
                ids = xi[:, : out.shape[1]]
                mask = (ids != pad_id if pad_id is not None else torch.ones_like(ids, dtype=torch.bool)).unsqueeze(-1).to(out.dtype)
                out = (out.detach() * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1.0)
                g = (g * mask).sum(dim=1)
            acts.append(out.detach().reshape(len(i), -1).float().cpu().numpy())
            grads.append(g.detach().reshape(len(i), -1).float().cpu().numpy())
            return torch.zeros(len(i))

        model.map_batches(one_batch, x_rows.astype(np.float32))
    width = acts[0].shape[1] if acts else 0
    return (np.concatenate(acts) if acts else np.zeros((0, width), np.float32)), (np.concatenate(grads) if grads else np.zeros((0, width), np.float32))
