"""Trigger and shortcut scan (images): small patches pasted on a coarse grid onto images of other classes.

A model that learned a patch as the cue for one class (a watermark, a hospital token)
predicts that class whenever the patch appears, whatever the image shows. The scan pastes
patches of a few sizes (the value range's maximum, its minimum, a checkerboard) at the
positions of a coarse grid onto the audited images, in large batches, and measures per
(patch, position, class) how many images of the *other* classes are then predicted as the
class. A natural confusion pulls one or two source classes (a blob in the middle turns a
0 into an 8); a trigger pulls all of them, so the statistic is the median over source
classes of their flip rate into the class, compared with its typical value over every
patch and position.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import numpy as np
import pandas as pd

from audits.probes import Probe, RunContext, register
from audits.results.discovery import TriggerScanResult
from audits.stats import wilson_interval

if TYPE_CHECKING:
    from audits.data import AuditData
    from models.loader import ModelHandle

PATCHES = ("max", "min", "checker")
_CHUNK_BYTES = 64 * 2**20  # patched images built per model call chunk


def paste(x: np.ndarray, patch: str, size: int, row: int, col: int, value_range: tuple[float, float]) -> np.ndarray:
    """Copies of images ``x`` (N, C, H, W) with a ``size`` x ``size`` patch at (``row``, ``col``)."""
    lo, hi = value_range
    out = x.copy()
    if patch == "max":
        block = np.full((size, size), hi, dtype=x.dtype)
    elif patch == "min":
        block = np.full((size, size), lo, dtype=x.dtype)
    else:
        block = np.where((np.add.outer(np.arange(size), np.arange(size)) % 2) == 0, hi, lo).astype(x.dtype)
    out[:, :, row : row + size, col : col + size] = block
    return out


@register
class TriggerScan(Probe):
    """Patches that pull images of every other class into one class (image models).

    Parameters
    ----------
    max_images : int
        Images the patches are pasted onto (a seeded stratified subset when there are more; all otherwise).
    sizes : list of float
        Patch sides as fractions of the image's shorter side.
    grid : int
        Positions per axis of the coarse grid (``grid`` x ``grid`` positions, corners included).
    """

    name: ClassVar[str] = "trigger_scan"
    result_type: ClassVar = TriggerScanResult
    category: ClassVar = "robustness"
    modalities: ClassVar = ("image",)
    default_for: ClassVar = ("image",)
    title: ClassVar[str] = "Trigger and shortcut scan"
    description: ClassVar[str] = "Small patches pasted on a coarse grid onto images of other classes: which pull predictions into one class."

    def __init__(self, max_images: int = 1024, sizes: tuple[float, ...] = (0.15, 0.25), grid: int = 3) -> None:
        self.max_images = max_images
        self.sizes = list(sizes)
        self.grid = grid

    def _run(self, model: ModelHandle, data: AuditData, context: RunContext) -> TriggerScanResult:
        value_range = tuple(float(v) for v in model.card.input.value_range)
        pred = context.predictions
        idx = np.arange(len(pred))
        if len(idx) > self.max_images:  # a seeded random subset; all images when there are few
            idx = np.sort(context.rng(self.name).choice(len(pred), size=self.max_images, replace=False))
        x, orig = data.x[idx], pred[idx]
        h, w = x.shape[-2:]
        sizes = sorted({max(1, round(f * min(h, w))) for f in self.sizes})
        configs = [
            (p, s, int(r), int(c))
            for s in sizes
            for p in PATCHES
            for r in np.unique(np.linspace(0, h - s, self.grid).round().astype(int))
            for c in np.unique(np.linspace(0, w - s, self.grid).round().astype(int))
        ]
        per_chunk = max(1, _CHUNK_BYTES // max(x.nbytes, 1))
        new = np.empty((len(configs), len(idx)), dtype=np.int64)
        for start in range(0, len(configs), per_chunk):
            chunk = configs[start : start + per_chunk]
            batch = np.concatenate([paste(x, *cfg, value_range) for cfg in chunk])
            new[start : start + len(chunk)] = model.predict_proba(batch).argmax(axis=1).reshape(len(chunk), len(idx))
            context.report((start + len(chunk)) / len(configs), "patches")
        rows = []
        sources = np.unique(orig)
        for target in range(model.n_classes):
            others = [s for s in sources if s != target]
            if not others:
                continue
            counts = np.array([(orig == s).sum() for s in others])
            m = int(np.median(counts))
            for k, (patch, size, r, c) in enumerate(configs):
                hit = new[k] == target
                rates = np.array([hit[orig == s].mean() for s in others])
                pooled = hit[orig != target].mean()
                med = float(np.median(rates))
                lo, hi = wilson_interval(med * m, m)
                rows.append({"patch": patch, "size": size, "row": r, "col": c, "target": data.class_names[target], "n": int((orig != target).sum()),
                             "flip_rate": float(pooled), "source_median": med, "lo": float(lo), "hi": float(hi), "_k": k, "_t": target})  # fmt: skip
        cells = pd.DataFrame(rows)
        examples, example_pred, example_cell = np.zeros((0, *x.shape[1:]), dtype=x.dtype), [], ""
        if len(cells):
            cells["typical"] = cells.groupby("target", sort=False)["source_median"].transform("median")
            cells["excess"] = cells["source_median"] - cells["typical"]
            top = cells.loc[cells["excess"].idxmax()]
            k, t = int(top["_k"]), int(top["_t"])
            pick = np.flatnonzero((orig != t) & (new[k] == t))[:8]
            examples = paste(x[pick], *configs[k], value_range)
            example_pred = [data.class_names[i] for i in new[k][pick]]
            example_cell = f"{top['patch']} {int(top['size'])}px at ({int(top['row'])},{int(top['col'])}) -> {top['target']}"
            cells = cells.drop(columns=["_k", "_t"])
        return TriggerScanResult(
            method=self.name, params=self.params, seed=context.seed, n_images=len(idx), cells=cells, examples=examples,
            example_predictions=example_pred, example_cell=example_cell,
        )  # fmt: skip
