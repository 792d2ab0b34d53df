"""Coalition designs and the weighted least-squares surrogates of KernelSHAP and LIME.

Pure numpy: which coalitions of M players (raw features or superpixels) to evaluate,
with which weights, and how coalition values become attributions. The model is
evaluated elsewhere (``_masking``), in large batches over all samples at once.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.special import comb

# The most players whose 2^M coalitions we ever enumerate (2^20 masks is already ~20 MB).
MAX_EXACT_PLAYERS = 20
_MAX_DRAW_ROUNDS = 1000
_RIDGE_BLOCK_BYTES = 64 << 20


@dataclass(frozen=True)
class CoalitionDesign:
    """Coalitions to evaluate and their regression weights.

    ``masks`` is (S, M) when every sample shares the design (exact enumeration) and
    (n, S, M) when each sample has its own sampled design; ``weights`` is (S,) or (n, S).
    Neither includes the empty and the full coalition: those enter through the
    efficiency constraint.
    """

    masks: np.ndarray
    weights: np.ndarray
    exact: bool

    @property
    def shared(self) -> bool:
        return self.masks.ndim == 2


def all_coalitions(n_players: int) -> np.ndarray:
    """Every proper, non-empty coalition of ``n_players`` as a (2^M - 2, M) bool array."""
    codes = np.arange(1, 2**n_players - 1, dtype=np.int64)
    return ((codes[:, None] >> np.arange(n_players)) & 1).astype(bool)


def shapley_kernel(sizes: np.ndarray, n_players: int) -> np.ndarray:
    """Shapley kernel weight (M - 1) / (C(M, s) s (M - s)) of a coalition of size ``s``."""
    sizes = np.asarray(sizes, dtype=np.float64)
    return (n_players - 1) / (comb(n_players, sizes) * sizes * (n_players - sizes))


def kernel_shap_design(n_players: int, n_samples: int, n_designs: int, rng: np.random.Generator, *, exact_max_features: int) -> CoalitionDesign:
    """All coalitions when ``M <= exact_max_features`` or when ``n_samples`` covers them, else
    one seeded, paired Shapley-kernel sample of ``n_samples`` coalitions per design."""
    m = n_players
    if m < 2:
        return CoalitionDesign(np.zeros((0, m), dtype=bool), np.zeros(0), exact=True)
    if m <= min(exact_max_features, MAX_EXACT_PLAYERS) or (m <= MAX_EXACT_PLAYERS and 2**m - 2 <= n_samples):
        masks = all_coalitions(m)
        return CoalitionDesign(masks, shapley_kernel(masks.sum(axis=1), m), exact=True)
    designs = [_sampled_design(m, n_samples, rng) for _ in range(n_designs)]
    return CoalitionDesign(np.stack([d[0] for d in designs]), np.stack([d[1] for d in designs]), exact=False)


def _sampled_design(m: int, n_samples: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """shap's KernelExplainer design: enumerate the subset sizes the budget covers in full, then
    draw the rest by size from the Shapley kernel, each draw paired with its complement.

    Repeated draws add weight to the coalition instead of taking a new slot, so exactly
    ``n_samples`` distinct coalitions come back.
    """
    n_sizes = math.ceil((m - 1) / 2)
    n_paired = (m - 1) // 2  # sizes whose complement has another size
    sizes = np.arange(1, n_sizes + 1)
    size_weight = (m - 1) / (sizes * (m - sizes))
    size_weight[:n_paired] *= 2
    size_weight /= size_weight.sum()

    masks, weights = [], []
    left, remaining, n_full = n_samples, size_weight.copy(), 0
    for s in sizes:
        paired = s <= n_paired
        count = math.comb(m, int(s)) * (2 if paired else 1)
        if left * remaining[s - 1] / count < 1 - 1e-8:
            break
        n_full += 1
        left -= count
        if remaining[s - 1] < 1:
            remaining /= 1 - remaining[s - 1]
        members = np.array(list(itertools.combinations(range(m), int(s))))
        subsets = np.zeros((len(members), m), dtype=bool)
        subsets[np.arange(len(members))[:, None], members] = True
        w = size_weight[s - 1] / count
        masks += [subsets, ~subsets] if paired else [subsets]
        weights.append(np.full(count, w))
    if left > 0:
        drawn, counts = _draw_paired(m, left, sizes[n_full:], size_weight[n_full:], n_paired, rng)
        masks.append(drawn)
        weights.append(counts * (size_weight[n_full:].sum() / counts.sum()))
    return np.concatenate(masks), np.concatenate(weights)


def _draw_paired(m: int, n_needed: int, sizes: np.ndarray, size_weight: np.ndarray, n_paired: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n_needed`` distinct coalitions drawn from ``sizes`` (paired with complements where the
    size is paired) and how often each was drawn, in first-drawn order."""
    p = size_weight.copy()
    p[sizes <= n_paired] /= 2  # each paired draw fills two slots
    p /= p.sum()
    drawn = np.zeros((0, m), dtype=bool)
    for _ in range(_MAX_DRAW_ROUNDS):
        k = 4 * n_needed
        size = rng.choice(sizes, size=k, p=p)
        ranks = rng.random((k, m)).argsort(axis=1).argsort(axis=1)
        drawn = np.concatenate([drawn, ranks < size[:, None]])
        _, first, inverse = np.unique(np.packbits(drawn, axis=1), axis=0, return_index=True, return_inverse=True)
        inverse = inverse.ravel()
        order = np.argsort(first)  # distinct coalitions in the order they were first drawn
        slots = np.cumsum(np.where(drawn[first[order]].sum(axis=1) <= n_paired, 2, 1))
        if slots[-1] < n_needed:
            continue
        keep = order[: int(np.searchsorted(slots, n_needed)) + 1]
        stop = first[keep[-1]]  # draws after the last kept coalition's first draw never happened
        counts = np.bincount(inverse[: stop + 1], minlength=len(first))[keep].astype(np.float64)
        base = drawn[first[keep]]
        paired = base.sum(axis=1) <= n_paired
        masks = np.concatenate([base, ~base[paired]])
        weights = np.concatenate([counts, counts[paired]])
        # A final pair that overshoots by one loses its complement, as in shap.
        return masks[:n_needed], weights[:n_needed]
    raise RuntimeError(f"could not draw {n_needed} distinct coalitions of {m} players")


def kernel_shap_solve(design: CoalitionDesign, values: np.ndarray, full: np.ndarray, empty: np.ndarray) -> np.ndarray:
    """Shapley values (n, M) from coalition values (n, S) by weighted least squares.

    The efficiency constraint ``sum(phi) = full - empty`` is enforced exactly by eliminating
    the last player, as shap's KernelExplainer does; with every coalition and Shapley-kernel
    weights the solution is the exact Shapley value.
    """
    values, full, empty = (np.asarray(a, dtype=np.float64) for a in (values, full, empty))
    delta = full - empty
    if design.masks.shape[-1] == 1:
        return delta[:, None]
    if design.shared:
        return _constrained_wls(design.masks, design.weights, values - empty[:, None], delta)
    return np.concatenate([_constrained_wls(design.masks[i], design.weights[i], values[i : i + 1] - empty[i], delta[i : i + 1]) for i in range(len(values))])


def _constrained_wls(masks: np.ndarray, weights: np.ndarray, gains: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """min_phi sum_S w_S (gain_S - z_S . phi)^2 subject to sum(phi) = delta, for k right-hand sides.

    ``gains`` is (k, S), ``delta`` (k,); returns (k, M).
    """
    z = masks.astype(np.float64)
    x = z[:, :-1] - z[:, -1:]
    y = gains.T - z[:, -1:] * delta[None, :]
    wx = weights[:, None] * x
    try:
        phi = np.linalg.solve(x.T @ wx, wx.T @ y)
    except np.linalg.LinAlgError:  # too few coalitions for the players: the minimum-norm fit
        root = np.sqrt(weights)[:, None]
        phi = np.linalg.lstsq(root * x, root * y, rcond=None)[0]
    return np.concatenate([phi.T, (delta - phi.sum(axis=0))[:, None]], axis=1)


def lime_masks(n: int, n_samples: int, n_players: int, rng: np.random.Generator) -> np.ndarray:
    """(n, S, M) uniform random keep-masks; the first of each sample keeps everything (lime's)."""
    masks = rng.random((n, n_samples, n_players)) < 0.5
    masks[:, 0] = True
    return masks


def lime_weights(masks: np.ndarray, metric: Literal["cosine", "euclidean"], kernel_width: float) -> np.ndarray:
    """lime's exponential kernel sqrt(exp(-d^2 / width^2)) on the distance to the all-ones mask."""
    kept = masks.sum(axis=-1).astype(np.float64)
    m = masks.shape[-1]
    if metric == "cosine":
        distance = 1 - np.sqrt(kept / m)  # an empty mask has cosine distance 1 (sklearn's convention)
    elif metric == "euclidean":
        distance = np.sqrt(m - kept)
    else:
        raise ValueError(f"metric must be 'cosine' or 'euclidean', got {metric!r}")
    return np.sqrt(np.exp(-(distance**2) / kernel_width**2))


@dataclass(frozen=True)
class RidgeFit:
    """Per-sample weighted ridge surrogates: coefficients (n, M), intercepts and weighted R^2 (n,)."""

    coef: np.ndarray
    intercept: np.ndarray
    score: np.ndarray


def weighted_ridge(masks: np.ndarray, values: np.ndarray, weights: np.ndarray, alpha: float = 1.0) -> RidgeFit:
    """sklearn's ``Ridge(alpha).fit(masks, values, sample_weight=weights)`` and ``score`` for every
    sample: (n, S, M) masks, (n, S) values and weights. The intercept is not penalized and the
    data are centred with weighted means, as sklearn does."""
    # Blocks of samples keep the float64 temporaries near _RIDGE_BLOCK_BYTES.
    per_sample = 8 * 3 * masks.shape[1] * masks.shape[2]
    blocks = np.array_split(np.arange(len(masks)), max(1, -(-len(masks) * per_sample // _RIDGE_BLOCK_BYTES)))
    fits = [_weighted_ridge(masks[b], values[b], weights[b], alpha) for b in blocks if len(b)]
    return RidgeFit(*(np.concatenate([getattr(f, k) for f in fits]) for k in ("coef", "intercept", "score")))


def _weighted_ridge(masks: np.ndarray, values: np.ndarray, weights: np.ndarray, alpha: float) -> RidgeFit:
    x = masks.astype(np.float64)
    y = np.asarray(values, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    total = w.sum(axis=1)
    x_mean = np.einsum("ns,nsm->nm", w, x) / total[:, None]
    y_mean = (w * y).sum(axis=1) / total
    xc = x - x_mean[:, None, :]
    yc = y - y_mean[:, None]
    wxc = w[..., None] * xc
    gram = xc.transpose(0, 2, 1) @ wxc + alpha * np.eye(x.shape[-1])
    coef = np.linalg.solve(gram, np.einsum("nsm,ns->nm", wxc, yc)[..., None])[..., 0]
    intercept = y_mean - (x_mean * coef).sum(axis=1)
    residual = (w * (yc - np.einsum("nsm,nm->ns", xc, coef)) ** 2).sum(axis=1)
    spread = (w * yc**2).sum(axis=1)
    # sklearn's r2_score convention for a constant target: 1 when fitted exactly, else 0.
    score = np.where(spread > 0, 1 - residual / np.where(spread > 0, spread, 1), np.where(residual <= 1e-12, 1.0, 0.0))
    return RidgeFit(coef=coef, intercept=intercept, score=score)
