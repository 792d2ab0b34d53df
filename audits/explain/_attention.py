"""Attention aggregation shared by vision and text transformers.

Attention tensors are (layers, batch, heads, tokens, tokens), rows summing to 1.
"""

from __future__ import annotations

import numpy as np


def head_average(attentions: np.ndarray) -> np.ndarray:
    """Mean over heads: (L, B, H, T, T) -> (L, B, T, T)."""
    return attentions.mean(axis=2)


def rollout(attentions: np.ndarray, *, residual: bool = True, start_layer: int = 0) -> np.ndarray:
    """Attention rollout (Abnar & Zuidema, 2020): (L, B, H, T, T) -> (B, T, T).

    Heads are averaged; with ``residual`` each layer's map becomes 0.5 * A + 0.5 * I
    (the skip connection), renormalized so rows sum to 1; layers are multiplied from the
    first to the last. Row i of the result says how much each input token flows into
    token i's representation at the top.
    """
    maps = head_average(attentions.astype(np.float64))[start_layer:]
    n_tokens = maps.shape[-1]
    eye = np.eye(n_tokens)
    joint = np.broadcast_to(eye, maps.shape[1:]).copy()
    for layer in maps:
        a = 0.5 * layer + 0.5 * eye if residual else layer
        a = a / a.sum(axis=-1, keepdims=True)
        joint = a @ joint
    return joint


def rank_correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman rank correlation of each sample's map in ``a`` with the same sample's in ``b``.

    ``a`` and ``b`` are (n, ...) with the same shape; each row is flattened, ranked (ties
    get their average rank) and the ranks' Pearson correlation is returned, (n,). A row
    that is constant in either input has no ranking and gets NaN.
    """
    from scipy.stats import rankdata

    ra = rankdata(a.reshape(len(a), -1), axis=1)
    rb = rankdata(b.reshape(len(b), -1), axis=1)
    ra -= ra.mean(axis=1, keepdims=True)
    rb -= rb.mean(axis=1, keepdims=True)
    num = (ra * rb).sum(axis=1)
    den = np.sqrt((ra**2).sum(axis=1) * (rb**2).sum(axis=1))
    out = np.full(len(a), np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out
