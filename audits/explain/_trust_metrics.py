"""Batched trust metrics of attribution maps: deletion/insertion curves, faithfulness correlation,
map similarity, relative change and sparseness.

Every metric works on *features*: ``feature_index`` maps each element of one flattened input
to a feature id (image pixel -> superpixel block, encoded tabular column -> raw feature, token
position -> itself), so one code path serves every modality. Perturbed inputs are built on the
model's device and pushed through ``ModelHandle.logits`` in its planned batches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from models.loader import ModelHandle

# Floor of |p(x) - p(baseline)| when deletion/insertion gains are normalised: a model whose output
# barely moves between input and baseline would otherwise turn noise into huge scores.
_MIN_SPAN = 0.05


@dataclass(frozen=True)
class Features:
    """How a map's features sit in the flattened input of one sample.

    ``index`` (D,) the feature id of each input element (-1: never perturbed, e.g. padding), or
    (n_samples, D) when features differ per sample (the words of each text),
    ``baseline`` (D,) the value a removed element takes, ``n`` the number of features and
    ``valid`` (n_samples, n) which features each sample has (text: its own tokens only).
    """

    index: np.ndarray
    baseline: np.ndarray
    n: int
    valid: np.ndarray


def image_blocks(height: int, width: int, max_features: int) -> tuple[np.ndarray, int]:
    """(H*W,) block id of each pixel, blocks as square as needed for at most ``max_features`` blocks."""
    side = 1
    while ((height + side - 1) // side) * ((width + side - 1) // side) > max_features:
        side += 1
    rows, cols = np.arange(height) // side, np.arange(width) // side
    n_cols = (width + side - 1) // side
    ids = (rows[:, None] * n_cols + cols[None, :]).ravel()
    return ids, int(ids.max()) + 1


def feature_maps(maps: np.ndarray, pixel_ids: np.ndarray | None, n: int) -> np.ndarray:
    """(n_samples, ...) maps -> (n_samples, n) per feature: image pixels summed into their block."""
    flat = maps.reshape(len(maps), -1).astype(np.float64)
    if pixel_ids is None:
        return flat
    out = np.zeros((len(maps), n))
    np.add.at(out.T, pixel_ids, flat.T)
    return out


def _perturbed(x: torch.Tensor, base: torch.Tensor, index: torch.Tensor, removed: torch.Tensor) -> torch.Tensor:
    """Inputs ``x`` (D,) with the features where ``removed`` (R, F) is True set to the baseline -> (R, D)."""
    safe = index.clamp_min(0)
    mask = removed[:, safe] & (index >= 0)[None, :]
    return torch.where(mask, base[None, :], x[None, :])


def faithfulness(
    model: ModelHandle,
    x: np.ndarray,
    targets: np.ndarray,
    maps: np.ndarray,
    features: Features,
    *,
    steps: int,
    n_random: int,
    corr_runs: int,
    corr_fraction: float,
    rng: np.random.Generator,
    insertion: bool = True,
) -> dict[str, np.ndarray]:
    """Deletion and insertion curves (normalised against random orderings) and faithfulness correlation.

    Parameters
    ----------
    model : ModelHandle
        The audited model (only forward passes).
    x : np.ndarray
        (n, ...) the explained inputs in audit space.
    targets : np.ndarray
        (n,) the explained class of each.
    maps : np.ndarray
        (n, F) attributions per feature.
    features : Features
        Where the features sit in the input.
    steps : int
        Points of each curve after the first (features leave/enter in ``steps`` equal chunks).
    n_random : int
        Random orderings per sample that the curves are normalised against.
    corr_runs, corr_fraction : int, float
        Random subsets (each ``corr_fraction`` of the features) for the faithfulness correlation.
    rng : np.random.Generator
        Source of the random orderings and subsets.
    insertion : bool
        Also compute the insertion curves (False: their values are NaN, half the curve rows).

    Returns
    -------
    dict
        Per sample: ``deletion_auc``/``insertion_auc`` (probability of the target, mean over the
        curve), ``deletion_score``/``insertion_score`` (gain over random orderings as a share of
        |p(x) - p(baseline)|; 0 = random, higher is better), ``deletion_gain`` and ``deletion_span``
        (that gain and that share's denominator, for pooling over samples), ``faithfulness_correlation``
        (Pearson, over subsets, of the attribution sum and the logit drop), and ``deletion_curve``.
    """
    shape = tuple(x.shape[1:])
    device = model.device
    n, f = maps.shape
    per_sample = np.broadcast_to(features.index, (n, int(np.prod(shape)))) if features.index.ndim == 1 else features.index
    index = torch.as_tensor(np.array(per_sample), device=device)  # a writable copy (a broadcast view is read-only)
    base = torch.as_tensor(features.baseline, device=device, dtype=model.to_tensor(x[:1]).dtype)
    keys = (
        "deletion_auc",
        "insertion_auc",
        "deletion_score",
        "insertion_score",
        "deletion_gain",
        "deletion_span",
        "faithfulness_correlation",
        "deletion_curve",
    )
    out: dict[str, list] = {k: [] for k in keys}
    # Features whose every element already equals the baseline (black pixels): removing them changes nothing.
    flat_x = np.asarray(x).reshape(n, -1)
    baseline = np.asarray(features.baseline)
    at_base = np.zeros((n, f), dtype=bool)
    for i in range(n):
        keep = per_sample[i] >= 0
        at_base[i] = np.bincount(per_sample[i][keep], weights=(flat_x[i, keep] != baseline[keep]).astype(np.float64), minlength=f)[:f] == 0
    plans = []
    for i in range(n):
        valid = np.flatnonzero(features.valid[i])
        m = len(valid)
        k = min(steps, m)
        cuts = np.round(np.linspace(0, m, k + 1)).astype(int)
        # Orderings: the map's (most important first), then random ones; each gives a deletion and an insertion curve.
        orders = [valid[np.argsort(-maps[i, valid], kind="stable")]] + [rng.permutation(valid) for _ in range(n_random)]
        ranks = np.full((len(orders), f), f + 1)
        for o, order in enumerate(orders):
            ranks[o, order] = np.arange(m)
        deleted = ranks[:, None, :] < cuts[None, :, None]  # (orders, k + 1, f): the first c features removed
        inserted = features.valid[i][None, None, :] & ~deleted  # only the first c features present
        size = max(1, int(round(corr_fraction * m)))
        subsets = np.zeros((corr_runs, f), dtype=bool)
        # Each run's subset: the ``size`` smallest of m uniform keys (one draw for every run at once).
        picks = np.argpartition(rng.random((corr_runs, m)), size - 1, axis=1)[:, :size] if size < m else np.tile(np.arange(m), (corr_runs, 1))
        subsets[np.arange(corr_runs)[:, None], valid[picks]] = True
        curves = np.stack([deleted, inserted], axis=1) if insertion else deleted[:, None]
        removed = np.concatenate([curves.reshape(-1, f), subsets])
        # Rows that differ only in features already at the baseline are the same input: one model row each.
        unique, inverse = _distinct(removed | at_base[i][None, :])
        plans.append((m, k, cuts, len(orders), unique, inverse, subsets))
    # All samples' perturbed rows go through the model together, in groups of bounded memory.
    per_row = int(np.prod(shape))
    budget = max(1, (1 << 25) // max(per_row, 1))
    results: list[tuple[np.ndarray, np.ndarray]] = []
    start = 0
    while start < n:
        stop, rows = start, 0
        while stop < n and (stop == start or rows + len(plans[stop][4]) <= budget):
            rows += len(plans[stop][4])
            stop += 1
        xs = model.to_tensor(x[start:stop]).reshape(stop - start, -1)
        batch = torch.cat([_perturbed(xs[j], base, index[start + j], torch.as_tensor(plans[start + j][4], device=device)) for j in range(stop - start)])
        logits = model.logits(batch.reshape(len(batch), *shape)).astype(np.float64)
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))  # the logits themselves stay (faithfulness correlation reads them)
        proba = shifted / shifted.sum(axis=1, keepdims=True)
        offset = 0
        for j in range(start, stop):
            r, inverse = len(plans[j][4]), plans[j][5]
            t = int(targets[j])
            results.append((logits[offset : offset + r, t][inverse], proba[offset : offset + r, t][inverse]))
            offset += r
        start = stop
    for i, ((m, k, cuts, n_orders, _unique, _inverse, subsets), (logit, proba)) in enumerate(zip(plans, results, strict=True)):
        n_kinds = 2 if insertion else 1
        n_curves = n_orders * n_kinds * (k + 1)
        curves = proba[:n_curves].reshape(n_orders, n_kinds, k + 1)
        if not insertion:
            curves = np.concatenate([curves, np.full_like(curves, np.nan)], axis=1)
        auc = (curves[..., :-1] + curves[..., 1:]).mean(axis=-1) / 2
        span = max(abs(curves[0, 0, 0] - curves[0, 0, -1]), _MIN_SPAN)
        out["deletion_auc"].append(auc[0, 0])
        out["insertion_auc"].append(auc[0, 1])
        out["deletion_gain"].append(auc[1:, 0].mean() - auc[0, 0] if n_random else np.nan)
        out["deletion_span"].append(span)
        out["deletion_score"].append((auc[1:, 0].mean() - auc[0, 0]) / span if n_random else np.nan)
        out["insertion_score"].append((auc[0, 1] - auc[1:, 1].mean()) / span if n_random else np.nan)
        out["deletion_curve"].append(np.interp(np.linspace(0, 1, steps + 1), cuts / max(m, 1), curves[0, 0]))
        drops = logit[0] - logit[n_curves:]  # the deletion curve's first point has nothing removed
        out["faithfulness_correlation"].append(pearson(subsets.astype(np.float64) @ maps[i], drops))
    return {k: np.asarray(v, dtype=np.float64) for k, v in out.items()}


def _distinct(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct rows of a boolean (R, F) array and, per row, the index of its distinct row."""
    packed = np.packbits(masks, axis=1)
    keys = np.ascontiguousarray(packed).view(np.dtype((np.void, packed.shape[1]))).ravel()
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    return masks[first], inverse.ravel()


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation; NaN when either side is constant."""
    a, b = a - a.mean(), b - b.mean()
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denom) if denom > 1e-12 else float("nan")


def _ranks(v: np.ndarray) -> np.ndarray:
    """Average ranks (ties share their mean rank), as Spearman needs."""
    order = np.argsort(v, kind="stable")
    ranks = np.empty(len(v))
    sorted_v = v[order]
    _, first, counts = np.unique(sorted_v, return_index=True, return_counts=True)
    mean_rank = first + (counts - 1) / 2.0
    ranks[order] = np.repeat(mean_rank, counts)
    return ranks


def spearman_abs(a: np.ndarray, b: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Per-sample Spearman correlation of |a| and |b| over the valid features (n,); NaN for constant maps."""
    return np.array([pearson(_ranks(np.abs(a[i, valid[i]])), _ranks(np.abs(b[i, valid[i]]))) for i in range(len(a))])


def relative_change(reference: np.ndarray, other: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Per-sample ||other - reference|| / ||reference|| over the valid features (NaN for an all-zero reference)."""
    out = []
    for i in range(len(reference)):
        r, o = reference[i, valid[i]], other[i, valid[i]]
        norm = np.linalg.norm(r)
        out.append(np.linalg.norm(o - r) / norm if norm > 1e-12 else np.nan)
    return np.asarray(out)


def gini(maps: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Per-sample Gini coefficient of |map| (0: spread evenly, 1: one feature holds everything)."""
    out = []
    for i in range(len(maps)):
        v = np.sort(np.abs(maps[i, valid[i]]))
        m, total = len(v), v.sum()
        if m == 0 or total <= 1e-12:
            out.append(np.nan)
            continue
        out.append(float((2 * np.arange(1, m + 1) - m - 1) @ v / (m * total)))
    return np.asarray(out)
