"""Batched gradient attacks (FGSM, PGD; L-inf and L2) in pixel space, and the probe they share.

Every (sample, epsilon) pair is one row of one big batch: epsilons are per row, so an
epsilon sweep, restarts and the bisection for the minimal flipping epsilon all run as
batched passes through ``model.map_batches``. Gradients are taken on the input only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from audits.results.robustness import AdversarialExamples, AttackResult
from audits.robustness.base import RobustnessProbe, check_max_rows, group_breakdown

if TYPE_CHECKING:
    from collections.abc import Callable

    from audits.data import AuditData
    from audits.probes import RunContext
    from models.loader import ModelHandle

Norm = Literal["linf", "l2"]
NORMS = ("linf", "l2")
# The default L-inf sweep as fractions of the card's value range (0..1 pixels: 1/255 ... 0.3).
LINF_SWEEP = (0.0, 1 / 255, 2 / 255, 4 / 255, 8 / 255, 16 / 255, 0.1, 0.2, 0.3)


@dataclass(frozen=True)
class AttackSpec:
    """How to attack: the norm, number of steps, step size as a fraction of epsilon, start and value range."""

    norm: Norm
    steps: int
    step_fraction: float
    random_start: bool
    keep_best: bool  # count a row as broken if any iterate is adversarial (and stop attacking it)
    low: float
    high: float


def _rows_view(t: torch.Tensor, ndim: int) -> torch.Tensor:
    return t.view((-1,) + (1,) * (ndim - 1))


def _per_row_norm(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).norm(dim=1)


def random_start_points(shape: tuple[int, ...], norm: Norm, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """Points drawn uniformly from the unit ball of ``norm``; scaled by each row's epsilon later."""
    if norm == "linf":
        return torch.rand(shape, generator=generator, device=device) * 2 - 1
    direction = torch.randn(shape, generator=generator, device=device)
    direction = direction / _rows_view(_per_row_norm(direction).clamp_min(1e-12), len(shape))
    dim = int(np.prod(shape[1:]))
    radius = torch.rand(shape[0], generator=generator, device=device) ** (1.0 / dim)
    return direction * _rows_view(radius, len(shape))


def project(delta: torch.Tensor, eps: torch.Tensor, norm: Norm) -> torch.Tensor:
    """Project per-row perturbations onto the epsilon ball (``eps`` is (n,))."""
    e = _rows_view(eps, delta.ndim)
    if norm == "linf":
        return torch.maximum(torch.minimum(delta, e), -e)
    norms = _per_row_norm(delta)
    factor = torch.where(norms > eps, eps / norms.clamp_min(1e-12), torch.ones_like(norms))
    return delta * _rows_view(factor, delta.ndim)


def attack_batch(
    forward: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    labels: torch.Tensor,
    eps: torch.Tensor,
    spec: AttackSpec,
    *,
    start: torch.Tensor | None = None,
    target: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Attack one batch; call under ``torch.enable_grad()``.

    Untargeted attacks ascend the cross-entropy of ``labels``; targeted ones descend the
    cross-entropy of ``target``. Steps are ``sign(grad)`` (L-inf) or ``grad / ||grad||_2``
    (L2) of size ``step_fraction * eps``, followed by projection onto the epsilon ball and
    clipping to the value range.

    Returns
    -------
    x_adv, predictions, wrong, hit
        The final iterate (or, with ``keep_best``, the first adversarial one), its
        predictions, and per row whether the prediction was wrong / the target there.
        Untargeted with ``keep_best``, ``wrong`` counts any wrong iterate, the random start
        included: every point of the ball is fair game.
    """
    n = x.shape[0]
    e = _rows_view(eps, x.ndim)
    alpha = eps * spec.step_fraction
    x_adv = x.clone() if start is None else (x + start * e).clamp(spec.low, spec.high)
    goal = labels if target is None else target
    sign = -1.0 if target is not None else 1.0
    pred = torch.empty(n, dtype=torch.long, device=x.device)
    wrong = torch.zeros(n, dtype=torch.bool, device=x.device)
    hit = torch.zeros(n, dtype=torch.bool, device=x.device)
    active = torch.arange(n, device=x.device)
    for step in range(spec.steps + 1):
        last = step == spec.steps
        xa = x_adv[active].detach().requires_grad_(not last)
        with torch.set_grad_enabled(not last):
            logits = forward(xa)
        p = logits.detach().argmax(dim=1)
        pred[active] = p
        wrong[active] |= p != labels[active]
        if target is not None:
            hit[active] |= p == goal[active]
        if last:
            break
        loss = F.cross_entropy(logits, goal[active], reduction="sum")
        (grad,) = torch.autograd.grad(loss, xa)
        if spec.keep_best:  # broken rows keep their adversarial point and leave the batch
            keep = ~(hit[active] if target is not None else wrong[active])
            active, grad, xa = active[keep], grad[keep], xa[keep]
            if active.numel() == 0:
                break
        if spec.norm == "linf":
            direction = grad.sign()
        else:
            direction = grad / _rows_view(_per_row_norm(grad).clamp_min(1e-12), grad.ndim)
        moved = xa.detach() + sign * _rows_view(alpha[active], x.ndim) * direction
        delta = project(moved - x[active], eps[active], spec.norm)
        x_adv[active] = (x[active] + delta).clamp(spec.low, spec.high)
    if target is not None:
        # A targeted attack is scored where it stopped (the first point in the target class,
        # else its final iterate): passing through some other wrong class on the way is no success.
        wrong = pred != labels
        hit = pred == goal if not spec.keep_best else hit
    elif not spec.keep_best:
        wrong = pred != labels
    return x_adv.detach(), pred, wrong, hit


def attack_rows(
    model: ModelHandle,
    x: torch.Tensor,
    labels: torch.Tensor,
    samples: np.ndarray,
    eps: np.ndarray,
    spec: AttackSpec,
    *,
    start: torch.Tensor | None = None,
    target: torch.Tensor | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Attack row r = (sample ``samples[r]``, epsilon ``eps[r]``) for every r, in device batches.

    Returns (predictions, wrong, hit) per row as numpy arrays.
    """
    if len(samples) == 0:
        empty = np.zeros(0, dtype=bool)
        return np.zeros(0, dtype=np.int64), empty, empty
    sample_t = torch.as_tensor(samples, dtype=torch.long, device=model.device)
    eps_t = torch.as_tensor(eps, dtype=torch.float32, device=model.device)

    def run(rows: torch.Tensor) -> torch.Tensor:
        i = rows.long()
        s = sample_t[i]
        _, pred, wrong, hit = attack_batch(
            model.model, x[s], labels[s], eps_t[i], spec,
            start=None if start is None else start[s], target=None if target is None else target[s],
        )  # fmt: skip
        return torch.stack([pred.float(), wrong.float(), hit.float()], dim=1)

    with torch.inference_mode(False), torch.enable_grad():
        out = model.map_batches(run, np.arange(len(samples)), model.batch_size).cpu().numpy()
    return out[:, 0].astype(np.int64), out[:, 1] > 0.5, out[:, 2] > 0.5


class AttackProbe(RobustnessProbe):
    """Shared run logic of the gradient attacks; subclasses say how to attack in ``attack_spec``.

    Parameters
    ----------
    norm : {'linf', 'l2'}
        The threat model: max-pixel change (L-inf) or Euclidean size (L2) of the perturbation.
    epsilons : list of float or None
        Perturbation budgets in pixel units of the card's value range. None: L-inf
        0, 1/255, 2/255, 4/255, 8/255, 16/255, 0.1, 0.2, 0.3 times the value range's width;
        L2 the same times sqrt(C*H*W)/2 (the L2 size of moving a quarter of the pixels by
        the L-inf amount).
    target : int or None
        None: untargeted (push away from the true label). A class index: targeted (pull
        every image towards that class).
    max_rows : int or None
        Evaluate a seeded random subset of this many rows (None: every row).
    refine_steps : int
        Bisection steps between the last surviving and the first flipping epsilon of the
        sweep, per flipped row, to estimate its minimal flipping epsilon (0: sweep only).
    n_examples : int
        Adversarial examples kept for the report, taken from the audit's explained samples.
    example_epsilon : float or None
        Epsilon of the examples; None: the smallest swept epsilon at which robust accuracy
        falls to half the clean accuracy (else the largest).
    """

    modalities: ClassVar = ("image",)
    default_for: ClassVar = ("image",)
    result_type: ClassVar = AttackResult
    restarts: int = 1  # random restarts (PGD sets it)

    def __init__(
        self,
        *,
        norm: Norm = "linf",
        epsilons: list[float] | None = None,
        target: int | None = None,
        max_rows: int | None = 512,
        refine_steps: int = 4,
        n_examples: int = 4,
        example_epsilon: float | None = None,
    ) -> None:
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        if epsilons is not None:
            if not len(epsilons) or any(float(e) < 0 for e in epsilons):
                raise ValueError(f"epsilons must be a non-empty list of values >= 0, got {epsilons}")
            epsilons = sorted({float(e) for e in epsilons})
        if refine_steps < 0 or n_examples < 0:
            raise ValueError("refine_steps and n_examples must be >= 0")
        self.norm = norm
        self.epsilons = epsilons
        self.target = target
        self.max_rows = check_max_rows(max_rows)
        self.refine_steps = int(refine_steps)
        self.n_examples = int(n_examples)
        self.example_epsilon = example_epsilon

    def attack_spec(self, low: float, high: float) -> AttackSpec:
        raise NotImplementedError

    def check(self, model: ModelHandle, data: AuditData) -> str | None:
        reason = super().check(model, data)
        if reason is None and self.target is not None and not 0 <= self.target < model.n_classes:
            reason = f"target class {self.target} is out of range 0..{model.n_classes - 1}"
        return reason

    def sweep(self, model: ModelHandle) -> np.ndarray:
        if self.epsilons is not None:
            return np.asarray(self.epsilons, dtype=np.float64)
        low, high = model.card.input.value_range
        scale = (high - low) * (1.0 if self.norm == "linf" else np.sqrt(np.prod(model.input_shape)) / 2)
        return np.asarray(LINF_SWEEP) * scale

    def _run(self, model: ModelHandle, data: AuditData, context: RunContext) -> AttackResult:
        low, high = (float(v) for v in model.card.input.value_range)
        spec = self.attack_spec(low, high)
        eps = self.sweep(model)
        rows = self.evaluation_rows(data, self.max_rows, context)
        n = len(rows)
        x = model.to_tensor(data.x[rows])
        y_np = data.y[rows]
        y = torch.as_tensor(y_np, dtype=torch.long, device=model.device)
        target = None if self.target is None else torch.full_like(y, self.target)
        clean_pred = context.predictions[rows]
        clean_ok = clean_pred == y_np
        seed = int(context.rng(self.name).integers(2**62))
        generator = torch.Generator(device=model.device).manual_seed(seed)
        starts = [random_start_points(tuple(x.shape), spec.norm, generator, model.device) if spec.random_start else None for _ in range(self.restarts)]

        # The clean point lies in every ball: a row wrong (or already the target) when clean counts as broken.
        wrong = np.repeat(~clean_ok[:, None], len(eps), axis=1)
        hit = np.repeat((clean_pred == (-1 if self.target is None else self.target))[:, None], len(eps), axis=1)
        positive = np.flatnonzero(eps > 0)
        samples = np.tile(np.arange(n), len(positive))
        for r, start in enumerate(starts):
            context.report(r / (len(starts) + 1), "epsilon sweep")
            _, w, h = attack_rows(model, x, y, samples, np.repeat(eps[positive], n), spec, start=start, target=target)
            wrong[:, positive] |= w.reshape(len(positive), n).T
            hit[:, positive] |= h.reshape(len(positive), n).T
        success = hit if target is not None else wrong
        eligible = (y_np != self.target) if target is not None else clean_ok

        context.report(len(starts) / (len(starts) + 1), "minimal epsilon")
        min_eps = self._minimal_epsilon(model, x, y, eps, success, eligible, spec, starts[0], target)
        curve = pd.DataFrame(
            {
                "epsilon": eps,
                "robust_accuracy": (~wrong).mean(axis=0) if n else np.full(len(eps), np.nan),
                "attack_success_rate": success[eligible].mean(axis=0) if eligible.any() else np.full(len(eps), np.nan),
                "n": np.full(len(eps), n, dtype=np.int64),
            }
        )
        attributes = data.attributes.iloc[rows].reset_index(drop=True)
        by_group = group_breakdown(
            {
                "clean_accuracy": np.repeat(clean_ok[:, None], len(eps), axis=1),
                "robust_accuracy": ~wrong,
                "attack_success_rate": np.where(eligible[:, None], success, np.nan),
            },
            attributes, data.sensitive, pd.DataFrame({"epsilon": eps}),
        )  # fmt: skip
        by_group.insert(by_group.columns.get_loc("robust_accuracy") + 1, "drop", by_group["clean_accuracy"] - by_group["robust_accuracy"])
        flipped = np.isfinite(min_eps)
        examples = self._examples(model, data, context, spec, curve, float(clean_ok.mean()) if n else float("nan"))
        return AttackResult(
            method=self.name,
            params=self.params,
            seed=context.seed,
            norm=spec.norm,
            targeted=target is not None,
            target=self.target,
            rows=rows,
            clean_accuracy=float(clean_ok.mean()) if n else float("nan"),
            curve=curve,
            min_epsilon=min_eps,
            mean_min_epsilon=float(min_eps[flipped].mean()) if flipped.any() else float("nan"),
            flipped_fraction=float(flipped[eligible].mean()) if eligible.any() else float("nan"),
            by_group=by_group,
            examples=examples,
        )

    def _minimal_epsilon(self, model, x, y, eps, success, eligible, spec, start, target) -> np.ndarray:
        """Per row: the first swept epsilon that flips it, refined by bisection towards the one before."""
        n = len(eligible)
        min_eps = np.full(n, np.nan)
        flips = success & eligible[:, None] & (eps[None, :] > 0)
        found = flips.any(axis=1)
        if not found.any():
            return min_eps
        first = flips.argmax(axis=1)
        which = np.flatnonzero(found)
        hi = eps[first[which]].astype(np.float64)
        lo = np.where(first[which] > 0, eps[np.maximum(first[which] - 1, 0)], 0.0)
        for _ in range(self.refine_steps):
            mid = (lo + hi) / 2
            _, w, h = attack_rows(model, x, y, which, mid, spec, start=start, target=target)
            broke = h if target is not None else w
            hi = np.where(broke, mid, hi)
            lo = np.where(broke, lo, mid)
        min_eps[which] = hi
        return min_eps

    def _examples(self, model, data, context, spec, curve, clean_accuracy) -> AdversarialExamples | None:
        idx = np.asarray(context.sample_indices)[: self.n_examples]
        if not len(idx):
            return None
        eps = self.example_epsilon
        if eps is None:
            swept = curve[curve["epsilon"] > 0]
            halved = swept[swept["robust_accuracy"] <= clean_accuracy / 2]
            eps = float((halved if len(halved) else swept).iloc[0 if len(halved) else -1]["epsilon"]) if len(swept) else 0.0
        x = model.to_tensor(data.x[idx])
        y = torch.as_tensor(data.y[idx], dtype=torch.long, device=model.device)
        target = None if self.target is None else torch.full_like(y, self.target)
        generator = torch.Generator(device=model.device).manual_seed(int(context.rng(f"{self.name}:examples").integers(2**62)))
        start = random_start_points(tuple(x.shape), spec.norm, generator, model.device) if spec.random_start else None
        eps_t = torch.full((len(idx),), float(eps), device=model.device)
        with torch.inference_mode(False), torch.enable_grad():
            adv, _, _, _ = attack_batch(model.model, x, y, eps_t, spec, start=start, target=target)
        with torch.inference_mode():
            proba = torch.softmax(model.model(adv), dim=1).cpu().numpy()
        clean_proba = context.proba[idx]
        adv_pred = proba.argmax(axis=1)
        clean = data.x[idx].astype(np.float32)
        return AdversarialExamples(
            rows=idx.astype(np.int64),
            epsilon=float(eps),
            clean=clean,
            perturbation=adv.cpu().numpy().astype(np.float32) - clean,
            labels=data.y[idx].astype(np.int64),
            clean_predictions=clean_proba.argmax(axis=1).astype(np.int64),
            adversarial_predictions=adv_pred.astype(np.int64),
            clean_confidence=clean_proba.max(axis=1).astype(np.float32),
            adversarial_confidence=proba.max(axis=1).astype(np.float32),
        )
