"""Where the attributions sit: the share of attribution mass per region of a coarse grid, per method and class.

A model that learned a shortcut (a watermark in a corner, a hospital token) puts the
attribution mass of the class it cues on that region, image after image, while the other
classes' maps do not go there. The probe reads the attribution results that ran earlier in
the audit (no model calls), cuts each explained sample's |attribution| map into the cells of
a coarse grid and a border ring, and compares, per method and predicted class, each region's
share with the larger of its share of the pixels (uniform) and the other classes' mean share.
The median over the class's samples keeps one odd map from raising it; a bootstrap over the
class's samples gives the interval.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import pandas as pd

from audits.probes import Probe, RunContext, register
from audits.results.attribution import AttributionResult
from audits.results.discovery import AttributionRegionsResult

if TYPE_CHECKING:
    from audits.data import AuditData
    from models.loader import ModelHandle


def region_masks(height: int, width: int, grid: int, border_px: int) -> tuple[list[str], np.ndarray]:
    """Names and boolean masks (R, H, W) of the ``grid`` x ``grid`` cells (``r0c0`` top left) and the border ring."""
    rows = np.linspace(0, height, grid + 1).round().astype(int)
    cols = np.linspace(0, width, grid + 1).round().astype(int)
    names, masks = [], []
    for i in range(grid):
        for j in range(grid):
            m = np.zeros((height, width), dtype=bool)
            m[rows[i] : rows[i + 1], cols[j] : cols[j + 1]] = True
            names.append(f"r{i}c{j}")
            masks.append(m)
    ring = np.ones((height, width), dtype=bool)
    ring[border_px : height - border_px, border_px : width - border_px] = False
    names.append("border")
    masks.append(ring)
    return names, np.stack(masks)


@register
class AttributionRegions(Probe):
    """Share of attribution mass per grid cell and border, per method and predicted class (image models).

    Parameters
    ----------
    grid : int
        Cells per axis of the coarse grid.
    border : float
        Width of the border ring as a fraction of the image's shorter side (at least one pixel).
    min_samples : int
        Classes with fewer explained samples are not compared.
    n_boot : int
        Bootstrap resamples of the class's samples for the interval.
    ci : float
        Coverage of the interval.
    """

    name: ClassVar[str] = "attribution_regions"
    result_type: ClassVar = AttributionRegionsResult
    uses_shared_outputs: ClassVar = False
    category: ClassVar = "robustness"  # runs after the explanations it reads
    modalities: ClassVar = ("image",)
    default_for: ClassVar = ("image",)
    title: ClassVar[str] = "Where the attributions sit"
    description: ClassVar[str] = (
        "The share of attribution mass in each cell of a coarse grid and in the border, per attribution method and "
        "predicted class, against uniform and the other classes: a class whose maps all point at one region is a shortcut candidate."
    )

    def __init__(self, *, grid: int = 4, border: float = 0.125, min_samples: int = 3, n_boot: int = 500, ci: float = 0.95) -> None:
        if grid < 1:
            raise ValueError(f"grid must be at least 1, got {grid}")
        if not 0.0 < border < 0.5:
            raise ValueError(f"border must be in (0, 0.5), got {border}")
        if min_samples < 1 or n_boot < 1:
            raise ValueError("min_samples and n_boot must be at least 1")
        if not 0.0 < ci < 1.0:
            raise ValueError(f"ci must be in (0, 1), got {ci}")
        self.grid = grid
        self.border = border
        self.min_samples = min_samples
        self.n_boot = n_boot
        self.ci = ci

    def _run(self, model: ModelHandle, data: AuditData, context: RunContext) -> AttributionRegionsResult:
        results = [r for r in context.earlier if isinstance(r, AttributionResult) and r.attributions.ndim == 3 and len(r.sample_indices)]
        rng = context.rng(self.name)
        notes: list[str] = []
        if not results:
            notes.append("No image attribution results ran before this probe in the audit; add an attribution probe (e.g. grad_cam, integrated_gradients).")
        # Per method: each sample's share of |attribution| per region (NaN rows for all-zero maps), keyed by sample index.
        per_method, names, uniform, border_px = [], [], np.zeros(0), 1
        for res in results:
            h, w = res.attributions.shape[1:]
            border_px = max(1, round(self.border * min(h, w)))
            names, masks = region_masks(h, w, min(self.grid, h, w), border_px)
            flat_masks = masks.reshape(len(masks), -1).astype(np.float64)
            uniform = flat_masks.mean(axis=1)
            mass = np.abs(np.nan_to_num(res.attributions.astype(np.float64))).reshape(len(res.attributions), -1)
            total = mass.sum(axis=1, keepdims=True)
            shares = np.full((len(mass), len(names)), np.nan)
            np.divide(mass @ flat_masks.T, total, out=shares, where=total > 0)
            per_method.append((res.method, dict(zip(np.asarray(res.sample_indices).tolist(), shares, strict=True))))
        targets_of = {int(i): int(t) for res in results for i, t in zip(res.sample_indices, res.targets, strict=True)}
        rows, classes, small = [], [], set()
        for t in sorted(set(targets_of.values())):
            ids = [i for i, u in targets_of.items() if u == t]
            if len(ids) < self.min_samples:
                small.add(data.class_names[t])
                continue
            draws = rng.integers(0, len(ids), size=(self.n_boot, len(ids)))
            best, best_boot, best_region = [], [], []
            for k, (method, by_id) in enumerate(per_method):
                context.report((k + 1) / len(per_method), method)
                mine = np.stack([by_id.get(i, np.full(len(names), np.nan)) for i in ids])
                # The other classes' mean shares, each class apart, the largest taken: a region some other class leans
                # on too is part of what the digits (or objects) look like, not a cue of this class alone.
                means = [np.nanmean(np.stack([v for i, v in by_id.items() if targets_of.get(i) == u]), axis=0) for u in set(targets_of.values()) - {t}]
                means = [m for m in means if np.isfinite(m).all()]
                others = np.max(means, axis=0) if means else np.full(len(names), np.nan)
                diff = mine - np.fmax(uniform, others)  # (n_t, R)
                if not np.isfinite(diff).any(axis=1).sum() >= self.min_samples:
                    continue
                with warnings.catch_warnings():  # a resample of only all-zero maps of one method has no value (NaN)
                    warnings.simplefilter("ignore", RuntimeWarning)
                    excess = np.nanmedian(diff, axis=0)
                    boot = np.nanmedian(diff[draws], axis=1)  # (B, R)
                    lo, hi = np.nanquantile(boot, [(1 - self.ci) / 2, (1 + self.ci) / 2], axis=0)
                    best_boot.append(np.nanmax(boot, axis=1))
                top = int(np.nanargmax(excess))
                best.append(excess[top])
                best_region.append(names[top])
                for r, region in enumerate(names):
                    rows.append({
                        "method": method, "target": data.class_names[t], "region": region, "n": len(ids),
                        "share": float(np.nanmean(mine[:, r])), "uniform": float(uniform[r]), "others": float(others[r]),
                        "excess": float(excess[r]), "lo": float(lo[r]), "hi": float(hi[r]), "consistency": float(np.mean(diff[:, r] > 0)),
                    })  # fmt: skip
            if best:
                # The class's figure: the median over methods of each method's largest excess, bootstrapped jointly over the
                # class's samples (every method explains the same samples), so one method's quirk does not raise it.
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    boot_class = np.nanmedian(np.stack(best_boot), axis=0)
                    lo, hi = np.nanquantile(boot_class, [(1 - self.ci) / 2, (1 + self.ci) / 2])
                classes.append({
                    "target": data.class_names[t], "n": len(ids), "excess": float(np.median(best)), "lo": float(lo), "hi": float(hi),
                    "region": max(set(best_region), key=best_region.count), "methods": len(best),
                })  # fmt: skip
        if small:
            notes.append(
                f"Classes with fewer than {self.min_samples} explained samples were not compared ({', '.join(sorted(small))}); explain more samples (spec 'samples')."
            )
        return AttributionRegionsResult(
            method=self.name, params=self.params, seed=context.seed, grid=self.grid, border_px=border_px, min_samples=self.min_samples,
            methods=[r.method for r in results], regions=pd.DataFrame(rows), classes=pd.DataFrame(classes), notes=notes,
        )  # fmt: skip
