"""Where a model runs and how many rows go through it at once, each decided once per load.

``resolve_device`` turns the ``--device`` flag (or ``$AUDITS_DEVICE``) into a device;
``plan_batch_size`` turns the activations one row produces (measured on the loader's dry
run) into the handle's batch size. Only the loader calls them; probes read the result.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from audits.errors import ModelLoadError
from models.card import ImageInput, TabularInput, TextInput

DEVICE_ENV = "AUDITS_DEVICE"

# Forward activations per batch: cache-sized on CPU (measured on the zoo models, 2-core CPU:
# 4 MiB gives the CNN ~160-row batches, 2-4x the throughput of 16k-row ones, and the MLP
# ~3.5k-row ones, at its best), a share of free memory on CUDA (backward keeps them and
# adds as much again).
CPU_ACTIVATION_BUDGET = 4 << 20
CUDA_FREE_SHARE = 8
HIDDEN_ACTIVATION_FACTOR = 16  # activations per input byte assumed when the layers are hidden
MAX_BATCH = 65536


def resolve_device(requested: str | None = None) -> torch.device:
    """The device to load onto: ``requested`` (flag) > ``$AUDITS_DEVICE`` > CUDA when available > CPU.

    Parameters
    ----------
    requested : str or None
        A torch device name (``'cpu'``, ``'cuda'``, ``'cuda:1'``); None to decide from the
        environment and the machine.

    Returns
    -------
    torch.device
        The device; a CUDA device only when CUDA is available.

    Raises
    ------
    ModelLoadError
        The name is not a device, or names CUDA on a machine without it.
    """
    name = requested or os.environ.get(DEVICE_ENV) or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ModelLoadError(f"Unknown device {name!r}.", fix="Use 'cpu', 'cuda' or 'cuda:N'.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(
            f"Device {name!r} was requested but CUDA is not available on this machine.",
            fix=f"Use --device cpu (or unset {DEVICE_ENV}).",
        )
    return device


def plan_batch_size(spec: ImageInput | TabularInput | TextInput, device: torch.device, activation_bytes: int = 0) -> int:
    """Rows per batch for a model with input ``spec`` on ``device``.

    Parameters
    ----------
    spec : ImageInput, TabularInput or TextInput
        The card's input contract.
    device : torch.device
        Where the model runs.
    activation_bytes : int
        Bytes of forward activations one row produces (measured on the dry run); 0 when the
        layers are hidden (TorchScript), then ``HIDDEN_ACTIVATION_FACTOR`` times the input.

    Returns
    -------
    int
        The batch size: a CPU cache-sized budget, or on CUDA a share of the free device
        memory, divided by the bytes per row. ``ModelHandle.map_batches`` halves it for the
        rest of one call after an out-of-memory error and records that in the probe's cost.
    """
    if isinstance(spec, TextInput):
        # Transformer cost grows with tokens, not bytes: a few thousand tokens per batch on CPU.
        tokens = (1 << 20) if device.type == "cuda" else (1 << 15)
        return int(max(8, min(4096, tokens // spec.max_length)))
    input_bytes = 4 * (int(np.prod(spec.shape)) if isinstance(spec, ImageInput) else spec.encoded_width)
    per_row = input_bytes + (activation_bytes or HIDDEN_ACTIVATION_FACTOR * input_bytes)
    if device.type == "cuda":
        budget = torch.cuda.mem_get_info(device)[0] // CUDA_FREE_SHARE
    else:
        budget = CPU_ACTIVATION_BUDGET
    # At least 256 rows on CPU: below that, per-call overhead dominates (a ViT's attention
    # activations alone would otherwise give ~46-row batches and 10x the model calls).
    floor = 256 if device.type == "cpu" else 8
    return int(max(floor, min(MAX_BATCH, budget // max(per_row, 1))))


def set_cpu_threads(threads: int | None) -> None:
    """``--threads``: torch's intra-op threads for this process (None leaves torch's default).

    On a loaded 2-core machine two threads were measured 8x slower than one (they contend
    with the other load), so scans on shared CI runners want ``--threads 1``.
    """
    if threads is None:
        return
    if threads < 1:
        raise ModelLoadError(f"--threads {threads} is not a thread count.", fix="Pass a whole number of at least 1, e.g. --threads 1.")
    torch.set_num_threads(threads)
