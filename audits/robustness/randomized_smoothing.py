"""Certified L2 robustness by randomized smoothing (Cohen, Rosenfeld & Kolter, 2019)."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import numpy as np
import pandas as pd
import torch
from scipy.stats import beta, norm

from audits.probes import register
from audits.results.robustness import SmoothingResult
from audits.robustness.base import RobustnessProbe, check_max_rows, group_breakdown

if TYPE_CHECKING:
    from audits.data import AuditData
    from audits.probes import RunContext
    from models.loader import ModelHandle


def clopper_pearson_lower(successes: np.ndarray, n: int, alpha: float) -> np.ndarray:
    """One-sided (1 - alpha) Clopper-Pearson lower bound of a binomial proportion."""
    k = np.asarray(successes, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        lower = beta.ppf(alpha, k, n - k + 1)
    return np.where(k > 0, lower, 0.0)


def certify(counts0: np.ndarray, counts: np.ndarray, n: int, sigma: float, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """CERTIFY of Cohen et al.: the class from the selection counts, its probability bounded below from the estimation counts.

    Returns (prediction, radius) per row: prediction -1 and radius NaN where the lower
    bound is not above 1/2 (abstain), else radius ``sigma * Phi^-1(p_lower)``.
    """
    top = counts0.argmax(axis=1)
    k = counts[np.arange(len(top)), top]
    p_lower = clopper_pearson_lower(k, n, alpha)
    certified = p_lower > 0.5
    radius = np.where(certified, sigma * norm.ppf(np.clip(p_lower, 0.5, 1.0)), np.nan)
    return np.where(certified, top, -1), radius


@register
class RandomizedSmoothing(RobustnessProbe):
    """Certified accuracy of the Gaussian-smoothed model against the L2 radius, per noise level.

    The smoothed model predicts the class the base model most often returns under Gaussian
    noise of standard deviation ``sigma``; with probability at least 1 - ``alpha`` it
    cannot be changed by any L2 perturbation smaller than the certified radius. A row
    counts at radius r when the smoothed prediction is right and certified beyond r.

    Parameters
    ----------
    sigmas : list of float
        Noise standard deviations, in pixel units of the card's value range width.
    radii : list of float or None
        L2 radii (pixel units) of the certified-accuracy curve; None: 0 to 2 * max(sigma) in 8 steps.
    n0, n : int
        Noise samples per row to pick the class, and to bound its probability.
    alpha : float
        Failure probability of each certificate.
    max_rows : int or None
        Evaluate a seeded random subset of this many rows (None: every row).
    """

    name = "randomized_smoothing"
    title = "Certified robustness (randomized smoothing)"
    description = (
        "Averages the model's decision over random noise and proves, with 99.9% confidence, how large a change of the input "
        "can never flip the averaged decision: the share of inputs certified correct at each size of change."
    )
    modalities: ClassVar = ("image",)
    default_for: ClassVar = ()
    result_type: ClassVar = SmoothingResult

    def __init__(
        self,
        *,
        sigmas: list[float] | None = None,
        radii: list[float] | None = None,
        n0: int = 64,
        n: int = 500,
        alpha: float = 0.001,
        max_rows: int | None = 128,
    ) -> None:
        sigmas = [0.25, 0.5] if sigmas is None else sorted({float(s) for s in sigmas})
        if not sigmas or min(sigmas) <= 0:
            raise ValueError(f"sigmas must be a non-empty list of values > 0, got {sigmas}")
        if radii is not None and (not len(radii) or min(radii) < 0):
            raise ValueError(f"radii must be a non-empty list of values >= 0, got {radii}")
        if n0 < 1 or n < 1 or not 0 < alpha < 0.5:
            raise ValueError(f"n0 and n must be >= 1 and alpha in (0, 0.5), got {n0}, {n}, {alpha}")
        self.sigmas = sigmas
        self.radii = None if radii is None else sorted({float(r) for r in radii})
        self.n0, self.n, self.alpha = int(n0), int(n), float(alpha)
        self.max_rows = check_max_rows(max_rows)

    def _counts(self, model: ModelHandle, x: torch.Tensor, sigma: float, samples: int, generator: torch.Generator) -> np.ndarray:
        """Class counts (rows, K) of the base model over ``samples`` Gaussian draws per row, batched through the handle."""
        rows = np.repeat(np.arange(len(x)), samples)
        idx = torch.as_tensor(rows, device=model.device)

        def run(i: torch.Tensor) -> torch.Tensor:
            xs = x[idx[i.long()]]
            noisy = xs + sigma * torch.randn(xs.shape, generator=generator, device=model.device)
            return model.model(noisy).argmax(dim=1)[:, None]

        with torch.inference_mode():
            pred = model.map_batches(run, np.arange(len(rows)), model.batch_size).cpu().numpy()[:, 0]
        counts = np.zeros((len(x), model.n_classes), dtype=np.int64)
        np.add.at(counts, (rows, pred), 1)
        return counts

    def _run(self, model: ModelHandle, data: AuditData, context: RunContext) -> SmoothingResult:
        low, high = (float(v) for v in model.card.input.value_range)
        scale = high - low
        rows = self.evaluation_rows(data, self.max_rows, context)
        x = model.to_tensor(data.x[rows])
        y = data.y[rows]
        generator = torch.Generator(device=model.device).manual_seed(int(context.rng(self.name).integers(2**62)))
        sigmas = np.asarray(self.sigmas) * scale
        radii = np.asarray(self.radii if self.radii is not None else np.linspace(0, 2 * sigmas.max(), 9))
        predictions, radius = [], []
        for j, sigma in enumerate(sigmas):
            context.report(j / len(sigmas), f"sigma {sigma:g}")
            counts0 = self._counts(model, x, float(sigma), self.n0, generator)
            counts = self._counts(model, x, float(sigma), self.n, generator)
            p, r = certify(counts0, counts, self.n, float(sigma), self.alpha)
            predictions.append(p)
            radius.append(r)
        pred = np.stack(predictions) if len(rows) else np.zeros((len(sigmas), 0), np.int64)
        rad = np.stack(radius) if len(rows) else np.zeros((len(sigmas), 0))
        correct = pred == y[None, :]
        # certified[s, r, i]: right and certified beyond radii[r] at sigma s.
        certified = correct[:, None, :] & (np.nan_to_num(rad, nan=-1.0)[:, None, :] >= radii[None, :, None])
        curve = pd.DataFrame(
            {
                "sigma": np.repeat(sigmas, len(radii)),
                "radius": np.tile(radii, len(sigmas)),
                "certified_accuracy": certified.mean(axis=2).reshape(-1) if len(rows) else np.nan,
            }
        )
        summary = pd.DataFrame(
            {
                "sigma": sigmas,
                "smoothed_accuracy": correct.mean(axis=1) if len(rows) else np.nan,
                "abstention_rate": (pred < 0).mean(axis=1) if len(rows) else np.nan,
                "median_radius": [float(np.median(np.where(c, r, 0.0))) if len(rows) else np.nan for c, r in zip(correct, rad, strict=True)],
            }
        )
        attributes = data.attributes.iloc[rows].reset_index(drop=True)
        conditions = pd.DataFrame({"sigma": np.repeat(sigmas, len(radii)), "radius": np.tile(radii, len(sigmas))})
        by_group = group_breakdown(
            {"certified_accuracy": certified.reshape(-1, len(rows)).T, "abstained": np.repeat((pred < 0).T, len(radii), axis=1)},
            attributes, data.sensitive, conditions,
        )  # fmt: skip
        clean_ok = context.predictions[rows] == y
        return SmoothingResult(
            method=self.name,
            params=self.params,
            seed=context.seed,
            rows=rows,
            clean_accuracy=float(clean_ok.mean()) if len(rows) else float("nan"),
            alpha=self.alpha,
            n_samples=self.n,
            sigmas=sigmas,
            predictions=pred,
            radius=rad,
            curve=curve,
            summary=summary,
            by_group=by_group,
        )
