"""Minimal adversarial perturbations: DeepFool (Moosavi-Dezfooli et al., 2016) refined by bisection."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import numpy as np
import pandas as pd
import torch

from audits.probes import register
from audits.results.robustness import MinimalPerturbationResult
from audits.robustness._attacks import NORMS, Norm, _per_row_norm, _rows_view
from audits.robustness.base import RobustnessProbe, check_max_rows, group_breakdown

if TYPE_CHECKING:
    from collections.abc import Callable

    from audits.data import AuditData
    from audits.probes import RunContext
    from models.loader import ModelHandle

QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)


def deepfool(
    forward: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    labels: torch.Tensor,
    norm: Norm,
    low: float,
    high: float,
    *,
    max_iter: int = 50,
    overshoot: float = 0.02,
    refine_steps: int = 12,
) -> torch.Tensor:
    """Per row the size (``norm``) of the smallest perturbation found that changes the prediction; NaN if none.

    Each step linearises every class boundary around the current point and jumps just past
    the nearest one (distance ``|f_k| / ||grad f_k||_dual``); the perturbation found is then
    shrunk by bisection along its own direction, which makes the answer exact on a linear
    model and tighter elsewhere. Call under ``torch.enable_grad()``.
    """
    n = x.shape[0]
    k_classes = None
    x_adv = x.clone()
    total = torch.zeros_like(x)
    done = torch.zeros(n, dtype=torch.bool, device=x.device)
    dual = 1.0 if norm == "linf" else 2.0
    for _ in range(max_iter):
        idx = torch.nonzero(~done)[:, 0]
        if idx.numel() == 0:
            break
        xa = x_adv[idx].detach().requires_grad_(True)
        logits = forward(xa)
        k_classes = logits.shape[1]
        pred = logits.argmax(dim=1)
        flipped = pred != labels[idx]
        done[idx[flipped]] = True
        if flipped.all():
            break
        y = labels[idx]
        zy = logits.gather(1, y[:, None])[:, 0]
        grad_y = torch.autograd.grad(zy.sum(), xa, retain_graph=True)[0]
        best = torch.full((len(idx),), float("inf"), device=x.device)
        step = torch.zeros_like(xa)
        for k in range(k_classes):
            gk = torch.autograd.grad(logits[:, k].sum(), xa, retain_graph=k < k_classes - 1)[0]
            w = gk - grad_y
            # Coordinates at the edge of the value range that the step would push outwards cannot move:
            # leave them out of the linearised problem, or clipping stalls the row.
            w = torch.where(((xa <= low) & (w < 0)) | ((xa >= high) & (w > 0)), torch.zeros_like(w), w).flatten(1)
            f = (logits[:, k] - zy).detach()
            wn = w.norm(p=dual, dim=1).clamp_min(1e-12)
            dist = f.abs() / wn
            dist = torch.where(y == k, torch.full_like(dist, float("inf")), dist)
            closer = dist < best
            if norm == "linf":
                r = _rows_view(dist, xa.ndim) * w.sign().view_as(xa)
            else:
                r = _rows_view(dist / wn, xa.ndim) * w.view_as(xa)
            step = torch.where(_rows_view(closer, xa.ndim), r, step)
            best = torch.where(closer, dist, best)
        keep = ~flipped
        # The overshoot applies to the accumulated perturbation (as in the reference implementation), so rows
        # held back by the value range keep being pushed further each step.
        total[idx] += step.detach()
        moved = (x[idx] + (1 + overshoot) * total[idx]).clamp(low, high)
        x_adv[idx[keep]] = moved[keep]
    with torch.no_grad():
        delta = x_adv - x
        broken = forward(x_adv).argmax(dim=1) != labels
        # Bisection on the scale t of the perturbation found: the smallest t that still flips.
        lo = torch.zeros(n, device=x.device)
        hi = torch.ones(n, device=x.device)
        for _ in range(refine_steps):
            mid = (lo + hi) / 2
            wrong = forward((x + _rows_view(mid, x.ndim) * delta).clamp(low, high)).argmax(dim=1) != labels
            hi = torch.where(wrong, mid, hi)
            lo = torch.where(wrong, lo, mid)
        final = _rows_view(hi, x.ndim) * delta
        size = final.flatten(1).abs().amax(dim=1) if norm == "linf" else _per_row_norm(final)
    return torch.where(broken, size, torch.full_like(size, float("nan")))


@register
class MinimalPerturbation(RobustnessProbe):
    """Each correctly classified row's smallest adversarial perturbation (DeepFool, then bisection), L2 or L-inf.

    Parameters
    ----------
    norm : {'linf', 'l2'}
        The size measure of the perturbation.
    max_rows : int or None
        Evaluate a seeded random subset of this many rows (None: every row).
    max_iter : int
        DeepFool steps per row at most.
    overshoot : float
        How far past each linearised boundary a step goes (relative).
    refine_steps : int
        Bisection steps shrinking the perturbation found along its direction.
    """

    name = "minimal_perturbation"
    title = "Minimal adversarial perturbation (DeepFool)"
    description = (
        "Finds, for every correctly classified image, the smallest change that flips the model's decision, and reports how "
        "large these changes are: their distribution, median and per group. Small distances mean a fragile model."
    )
    modalities: ClassVar = ("image",)
    default_for: ClassVar = ()
    result_type: ClassVar = MinimalPerturbationResult

    def __init__(self, *, norm: Norm = "l2", max_rows: int | None = 256, max_iter: int = 50, overshoot: float = 0.02, refine_steps: int = 12) -> None:
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        if max_iter < 1 or overshoot < 0 or refine_steps < 0:
            raise ValueError(f"max_iter must be >= 1 and overshoot, refine_steps >= 0, got {max_iter}, {overshoot}, {refine_steps}")
        self.norm = norm
        self.max_rows = check_max_rows(max_rows)
        self.max_iter = int(max_iter)
        self.overshoot = float(overshoot)
        self.refine_steps = int(refine_steps)

    def _run(self, model: ModelHandle, data: AuditData, context: RunContext) -> MinimalPerturbationResult:
        low, high = (float(v) for v in model.card.input.value_range)
        rows = self.evaluation_rows(data, self.max_rows, context)
        n = len(rows)
        x = model.to_tensor(data.x[rows])
        y_np = data.y[rows]
        y = torch.as_tensor(y_np, dtype=torch.long, device=model.device)
        clean_ok = context.predictions[rows] == y_np
        todo = np.flatnonzero(clean_ok)
        distance = np.full(n, np.nan)
        if len(todo):
            sel = torch.as_tensor(todo, device=model.device)

            def run(i: torch.Tensor) -> torch.Tensor:
                s = sel[i.long()]
                return deepfool(
                    model.model, x[s], y[s], self.norm, low, high, max_iter=self.max_iter, overshoot=self.overshoot, refine_steps=self.refine_steps
                )[:, None]

            with torch.inference_mode(False), torch.enable_grad():
                distance[todo] = model.map_batches(run, np.arange(len(todo)), model.batch_size).cpu().numpy()[:, 0]
        found = np.isfinite(distance)
        values = distance[found]
        quantiles = pd.DataFrame({"quantile": QUANTILES, "distance": np.quantile(values, QUANTILES) if len(values) else np.full(len(QUANTILES), np.nan)})
        attributes = data.attributes.iloc[rows].reset_index(drop=True)
        by_group = group_breakdown({"mean_distance": distance}, attributes, data.sensitive)
        medians = []
        for row in by_group.itertuples(index=False):
            member = attributes[row.attribute].astype(str).to_numpy() == str(row.group)
            d = distance[member & found]
            medians.append(float(np.median(d)) if len(d) else float("nan"))
        by_group.insert(by_group.columns.get_loc("mean_distance"), "median_distance", medians)
        return MinimalPerturbationResult(
            method=self.name,
            params=self.params,
            seed=context.seed,
            norm=self.norm,
            rows=rows,
            clean_accuracy=float(clean_ok.mean()) if n else float("nan"),
            distance=distance,
            median_distance=float(np.median(values)) if len(values) else float("nan"),
            found_fraction=float(found[clean_ok].mean()) if clean_ok.any() else float("nan"),
            quantiles=quantiles,
            by_group=by_group,
        )
