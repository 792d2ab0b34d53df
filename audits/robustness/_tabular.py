"""Tabular perturbations in encoded space, vectorized over rows.

Numeric features are one encoded column each (``(transform(v) - center) / scale``);
their spread is the standard deviation of that column over the evaluation data and
their observed range its min..max, so "1 sd" means the same for every feature and
perturbed values stay within what the data holds. Categorical features are one-hot
blocks; a missing value is encoded as the card's imputation would (numeric: the center,
i.e. 0; categorical: all zeros).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from models.card import CategoricalFeature, NumericFeature

if TYPE_CHECKING:
    from audits.data import AuditData
    from models.loader import ModelHandle


@dataclass(frozen=True)
class TabularLayout:
    """Where each raw feature lives in the encoded matrix and how far it varies in the data."""

    names: list[str]
    kinds: list[str]  # 'numeric' | 'categorical'
    columns: list[np.ndarray]  # encoded columns per raw feature
    levels: list[list[str]]  # categorical levels ([] for numeric)
    frequency: list[np.ndarray]  # observed share of each level ([] for numeric)
    spread: np.ndarray  # (M,) std of the encoded numeric column (NaN for categorical)
    low: np.ndarray  # (M,) observed encoded min (NaN for categorical)
    high: np.ndarray  # (M,) observed encoded max
    features: list[NumericFeature | CategoricalFeature]
    missing: str  # the card's missing-value policy: 'error' | 'impute'

    @classmethod
    def of(cls, model: ModelHandle, data: AuditData) -> TabularLayout:
        spec = model.card.input
        m = len(spec.features)
        spread, low, high = np.full(m, np.nan), np.full(m, np.nan), np.full(m, np.nan)
        kinds, levels, frequency = [], [], []
        for j, (f, cols) in enumerate(zip(spec.features, data.feature_groups, strict=True)):
            block = data.x[:, cols]
            if isinstance(f, NumericFeature):
                kinds.append("numeric")
                levels.append([])
                frequency.append(np.zeros(0))
                spread[j] = float(block[:, 0].std()) if len(block) else 0.0
                low[j], high[j] = (float(block[:, 0].min()), float(block[:, 0].max())) if len(block) else (0.0, 0.0)
            else:
                kinds.append("categorical")
                levels.append(list(f.levels))
                codes = _level_codes(f, block)
                counts = np.bincount(codes[codes >= 0], minlength=len(f.levels)).astype(np.float64)
                frequency.append(counts / max(counts.sum(), 1.0))
        return cls(
            names=list(spec.feature_names), kinds=kinds, columns=[np.asarray(c) for c in data.feature_groups],
            levels=levels, frequency=frequency, spread=spread, low=low, high=high,
            features=list(spec.features), missing=spec.missing,
        )  # fmt: skip

    @property
    def numeric(self) -> np.ndarray:
        return np.array([j for j, k in enumerate(self.kinds) if k == "numeric"], dtype=np.int64)

    @property
    def categorical(self) -> np.ndarray:
        return np.array([j for j, k in enumerate(self.kinds) if k == "categorical"], dtype=np.int64)

    def column(self, j: int) -> int:
        """The encoded column of numeric feature ``j``."""
        return int(self.columns[j][0])

    def codes(self, x: np.ndarray, j: int) -> np.ndarray:
        """Level index per row of categorical feature ``j`` (-1 where no level is set)."""
        return _level_codes(self.features[j], x[:, self.columns[j]])

    def to_raw(self, j: int, encoded: np.ndarray | float) -> np.ndarray:
        """Encoded values of numeric feature ``j`` back in the raw unit."""
        f = self.features[j]
        v = np.asarray(encoded, dtype=np.float64) * f.scale + f.center
        return np.expm1(v) if f.transform == "log1p" else v


def gaussian_noise(x: np.ndarray, layout: TabularLayout, scale: float, z: np.ndarray, features: np.ndarray | None = None) -> np.ndarray:
    """Add ``scale`` sd of noise (``z`` ~ N(0, 1), (n, M)) to numeric features, clipped to the observed range."""
    out = x.copy()
    for j in layout.numeric if features is None else features:
        c = layout.column(j)
        out[:, c] = np.clip(x[:, c] + scale * layout.spread[j] * z[:, j], layout.low[j], layout.high[j])
    return out


def shift(x: np.ndarray, layout: TabularLayout, j: int, amount: float) -> np.ndarray:
    """Move numeric feature ``j`` by ``amount`` sd, clipped to its observed range."""
    out = x.copy()
    c = layout.column(j)
    out[:, c] = np.clip(x[:, c] + amount * layout.spread[j], layout.low[j], layout.high[j])
    return out


def set_missing(x: np.ndarray, layout: TabularLayout, mask: np.ndarray) -> np.ndarray:
    """Blank the cells where ``mask`` (n, M) is True as the card's imputation encodes them."""
    out = x.copy()
    for j, cols in enumerate(layout.columns):
        rows = np.flatnonzero(mask[:, j])
        if len(rows):
            out[np.ix_(rows, cols)] = 0.0
    return out


def other_levels(current: np.ndarray, frequency: np.ndarray, u: np.ndarray) -> np.ndarray:
    """For each row, a level other than ``current`` drawn by observed frequency (``u`` ~ U(0, 1))."""
    p = np.broadcast_to(frequency, (len(current), len(frequency))).copy()
    has = current >= 0
    p[np.flatnonzero(has), current[has]] = 0.0
    cum = p.cumsum(axis=1)
    total = cum[:, -1]
    pick = np.minimum((cum < (u * total)[:, None]).sum(axis=1), len(frequency) - 1)
    return np.where(total > 0, pick, current)  # a feature with one observed level cannot change


def set_levels(x: np.ndarray, layout: TabularLayout, j: int, rows: np.ndarray, level: np.ndarray) -> np.ndarray:
    """Set categorical feature ``j`` of ``rows`` to ``level`` (in place on a copy)."""
    out = x.copy()
    cols = layout.columns[j]
    out[np.ix_(rows, cols)] = 0.0
    f = layout.features[j]
    # Block position of each level (-1: the reference level of a drop-first encoding, all zeros).
    position = np.array([f.encoded_levels.index(lv) if lv != f.reference else -1 for lv in f.levels], dtype=np.int64)
    pos = np.where(level >= 0, position[np.maximum(level, 0)], -1)
    ok = pos >= 0
    out[rows[ok], cols[0] + pos[ok]] = 1.0
    return out


def _level_codes(f: CategoricalFeature, block: np.ndarray) -> np.ndarray:
    """Index in ``f.levels`` per row of its encoded block (-1: none set; the reference level of a drop-first encoding)."""
    index = np.array([f.levels.index(lv) for lv in f.encoded_levels], dtype=np.int64)
    none = -1 if f.reference is None else f.levels.index(f.reference)
    if block.shape[1] == 0:
        return np.full(len(block), none, dtype=np.int64)
    return np.where(block.max(axis=1) > 0, index[block.argmax(axis=1)], none)


def flip_categories(x: np.ndarray, layout: TabularLayout, prob: float, u: np.ndarray, v: np.ndarray, features: np.ndarray | None = None) -> np.ndarray:
    """Each categorical cell switches, with probability ``prob``, to another observed level (``u``, ``v`` ~ U(0, 1), (n, M))."""
    out = x
    for j in layout.categorical if features is None else features:
        rows = np.flatnonzero(u[:, j] < prob)
        if len(rows):
            new = other_levels(layout.codes(x, j)[rows], layout.frequency[j], v[rows, j])
            out = set_levels(out, layout, j, rows, new)
    return out.copy() if out is x else out


def predict(model: ModelHandle, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Predictions and class probabilities of encoded rows, in device batches."""
    proba = model.predict_proba(x)
    return proba.argmax(axis=1), proba


def joint_flip_search(
    model: ModelHandle,
    x0: np.ndarray,
    pred0: np.ndarray,
    eps: np.ndarray,
    free: np.ndarray,
    layout: TabularLayout,
    steps: int,
    step_fraction: float = 0.25,
) -> np.ndarray:
    """Per row, whether projected gradient steps on the free numeric features flip the decision.

    Each free numeric feature may move at most ``eps[row]`` sd and stays within its observed
    range; steps ascend the cross-entropy of the clean decision (``sign(grad) * sd``) and a
    row stops once flipped. Returns a bool array.
    """
    if len(x0) == 0:
        return np.zeros(0, dtype=bool)
    d = x0.shape[1]
    spread = np.zeros(d, dtype=np.float32)
    low = np.full(d, -np.inf, dtype=np.float32)
    high = np.full(d, np.inf, dtype=np.float32)
    for j in free:
        c = layout.column(j)
        spread[c], low[c], high[c] = layout.spread[j], layout.low[j], layout.high[j]
    dev = model.device
    spread_t, low_t, high_t = (torch.as_tensor(a, device=dev) for a in (spread, low, high))
    x_all = model.to_tensor(x0)
    pred_all = torch.as_tensor(pred0, dtype=torch.long, device=dev)
    eps_all = torch.as_tensor(eps, dtype=torch.float32, device=dev)

    def run(rows: torch.Tensor) -> torch.Tensor:
        i = rows.long()
        x, goal, e = x_all[i], pred_all[i], eps_all[i].view(-1, 1)
        radius = e * spread_t
        lo, hi = torch.maximum(x - radius, low_t), torch.minimum(x + radius, high_t)
        flipped = torch.zeros(len(i), dtype=torch.bool, device=dev)
        active = torch.arange(len(i), device=dev)
        xa = x.clone()
        for step in range(steps + 1):
            cur = xa[active].detach().requires_grad_(step < steps)
            with torch.set_grad_enabled(step < steps):
                logits = model.model(cur)
            flipped[active] |= logits.detach().argmax(dim=1) != goal[active]
            if step == steps:
                break
            (grad,) = torch.autograd.grad(torch.nn.functional.cross_entropy(logits, goal[active], reduction="sum"), cur)
            keep = ~flipped[active]
            active, grad, cur = active[keep], grad[keep], cur[keep]
            if active.numel() == 0:
                break
            moved = cur.detach() + step_fraction * e[active] * spread_t * grad.sign()
            xa[active] = torch.minimum(torch.maximum(moved, lo[active]), hi[active])
        return flipped.float()

    with torch.inference_mode(False), torch.enable_grad():
        return model.map_batches(run, np.arange(len(x0)), model.batch_size).cpu().numpy() > 0.5


def minimal_joint_epsilon(
    model: ModelHandle,
    x0: np.ndarray,
    pred0: np.ndarray,
    free: np.ndarray,
    layout: TabularLayout,
    max_epsilon: float,
    steps: int,
    points: int,
) -> np.ndarray:
    """Smallest joint L-inf change (sd) of the free numeric features found to flip each row; NaN if none within ``max_epsilon``.

    Two rounds, each trying ``points`` epsilons per row at once (one batched search instead
    of a sequential bisection): a grid over (0, max_epsilon], then a grid inside the
    interval where each row first flipped. Resolution: max_epsilon / points / (points + 1).
    """
    n = len(x0)
    out = np.full(n, np.nan)
    if not len(free) or not n:
        return out
    fractions = np.arange(1, points + 1) / points
    grid = max_epsilon * np.tile(fractions, (n, 1))  # (n, P)
    flipped = joint_flip_search(model, np.repeat(x0, points, axis=0), np.repeat(pred0, points), grid.reshape(-1), free, layout, steps).reshape(n, points)
    found = flipped.any(axis=1)
    which = np.flatnonzero(found)
    if not len(which):
        return out
    first = flipped[which].argmax(axis=1)
    hi = grid[which, first]
    lo = np.where(first > 0, grid[which, np.maximum(first - 1, 0)], 0.0)
    inner = lo[:, None] + (hi - lo)[:, None] * (np.arange(1, points + 1) / (points + 1))[None, :]  # (k, P), all < hi
    refined = joint_flip_search(model, np.repeat(x0[which], points, axis=0), np.repeat(pred0[which], points), inner.reshape(-1), free, layout, steps).reshape(
        len(which), points
    )
    out[which] = np.where(refined.any(axis=1), inner[np.arange(len(which)), refined.argmax(axis=1)], hi)
    return out
