"""Re-running an attribution probe for the trust checks: on a randomized copy of the model, for
another class, or on noisy inputs. The audited model is never touched: randomization works on a
deep copy of the handle's network (the loader's device and eval mode come along with the copy).
"""

from __future__ import annotations

import copy
import dataclasses
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from audits.probes import RunContext, make_probe

if TYPE_CHECKING:
    from audits.data import AuditData
    from audits.results import AttributionResult
    from models.loader import ModelHandle


def parameter_layers(network: nn.Module) -> list[str]:
    """Names of the modules that own parameters directly, from the input to the output."""
    return [name for name, module in network.named_modules() if any(True for _ in module.parameters(recurse=False))]


def randomized_copy(model: ModelHandle, layers: list[str], seed: int) -> ModelHandle:
    """A copy of ``model`` whose ``layers`` have their parameters permuted at random.

    Permuting keeps each tensor's value distribution (so activations keep their scale) while
    destroying what was learned. The meter and tokenizer are shared, so the copy's calls count
    in the probe's cost.
    """
    memo = {id(model.meter): model.meter, id(model.tokenizer): model.tokenizer, id(model.card): model.card}
    clone = copy.deepcopy(model, memo)
    modules = dict(clone.network.named_modules())
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name in layers:
            for p in modules[name].parameters(recurse=False):
                perm = torch.randperm(p.numel(), generator=gen).to(p.device)
                p.copy_(p.reshape(-1)[perm].reshape(p.shape))
    return clone


def rerun(
    result: AttributionResult,
    model: ModelHandle,
    data: AuditData,
    context: RunContext,
    rows: np.ndarray | None = None,
    *,
    targets: np.ndarray | None = None,
    indices: np.ndarray | None = None,
) -> np.ndarray:
    """The maps of ``result``'s method, with its parameters, for the explained samples ``rows``
    (positions into ``result.sample_indices``), or for the data rows ``indices``, on ``model`` and ``data``.

    ``targets`` (one per row) replaces the explained classes; by default they stay those of
    ``result``, so a randomized model explains the same class as the audited one (``indices``
    need ``targets``).
    """
    params = dict(result.params)
    params.pop("target", None)  # the class comes through the context below, per sample
    probe = make_probe(result.method, params)
    idx = np.asarray(result.sample_indices)[rows] if indices is None else np.asarray(indices)
    if targets is None and indices is not None:
        raise ValueError("rerun on data rows needs their targets")
    chosen = np.asarray(result.targets)[rows] if targets is None else np.asarray(targets)
    # Attribution probes explain ``context.predictions`` when no target is set: a one-hot
    # "prediction" per explained row carries the wanted class without touching the probes.
    proba = np.zeros((len(data), model.n_classes), dtype=np.float32)
    proba[idx, chosen] = 1.0
    ctx = dataclasses.replace(context, proba=proba, sample_indices=idx, progress=None, earlier=())
    return np.asarray(probe.run(model, data, ctx).attributions, dtype=np.float64)
