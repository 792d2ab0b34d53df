"""Samples of the predictive distribution: Monte Carlo dropout, a deep ensemble, test-time augmentation.

Each function returns class probabilities (T, n, K), one slice per pass, computed batched on the
model's device: all passes of a chunk go through ``map_batches`` together, never a loop over rows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from audits.robustness._corruptions import chunk_rows

if TYPE_CHECKING:
    from models.loader import ModelHandle

# One-pixel shifts for test-time augmentation, in the order they are used: the identity, the four
# axis-aligned neighbours, then the diagonals (``tta_passes`` takes a prefix).
SHIFTS: tuple[tuple[int, int], ...] = ((0, 0), (0, 1), (0, -1), (1, 0), (-1, 0), (1, 1), (1, -1), (-1, 1), (-1, -1))


def entropy(p: np.ndarray, axis: int = -1) -> np.ndarray:
    """Shannon entropy in nats along ``axis`` (0 log 0 = 0)."""
    p = np.clip(np.asarray(p, dtype=np.float64), 0.0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.sum(np.where(p > 0, p * np.log(p), 0.0), axis=axis)


def decompose(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Mean prediction (n, K), predictive entropy, expected entropy and mutual information (n,) of samples (T, n, K)."""
    mean = samples.mean(axis=0)
    total = entropy(mean)
    expected = entropy(samples).mean(axis=0)
    return mean, total, expected, np.maximum(total - expected, 0.0)


def mc_dropout(model: ModelHandle, x: np.ndarray, passes: int, seed: int) -> np.ndarray:
    """``passes`` stochastic forward passes with only the dropout layers sampling: (passes, n, K)."""
    devices = [model.device.index or 0] if model.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), model.dropout_active():
        torch.manual_seed(seed)
        proba = model.predict_proba(np.concatenate([x] * passes))
    return proba.reshape(passes, len(x), -1)


def ensemble(members: list[ModelHandle], x: np.ndarray) -> np.ndarray:
    """Each ensemble member's probabilities: (members, n, K)."""
    return np.stack([m.predict_proba(x) for m in members])


def shift(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Images (n, C, H, W) moved by (dy, dx) pixels, the border repeated into the gap."""
    s = max(abs(dy), abs(dx))
    if s == 0:
        return x
    h, w = x.shape[-2:]
    padded = F.pad(x, (s, s, s, s), mode="replicate")
    return padded[..., s - dy : s - dy + h, s - dx : s - dx + w]


def augmented(model: ModelHandle, x: np.ndarray, passes: int) -> np.ndarray:
    """Probabilities of the images under the first ``passes`` one-pixel shifts: (passes, n, K)."""
    shifts = SHIFTS[:passes]
    size = chunk_rows(tuple(x.shape[1:]))
    parts = []
    for start in range(0, len(x), size):
        chunk = model.to_tensor(x[start : start + size])
        views = torch.cat([shift(chunk, dy, dx) for dy, dx in shifts])
        with torch.inference_mode():
            proba = model.map_batches(lambda t: torch.softmax(model.model(t), dim=1), views)
        parts.append(proba.float().cpu().numpy().reshape(len(shifts), len(chunk), -1))
    return np.concatenate(parts, axis=1)
