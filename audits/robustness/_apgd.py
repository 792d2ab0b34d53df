"""Batched APGD (Croce & Hein, 2020) and the Square attack (Andriushchenko et al., 2020), L-inf and L2.

Every row carries its own epsilon (and target class, for the targeted DLR loss), so an
epsilon sweep is one batch. Rows that are already misclassified leave the batch: only
whether a row can be broken matters, and this is where most of the time goes on large
epsilons. Call the attacks under ``torch.enable_grad()``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from audits.robustness._attacks import Norm, _per_row_norm, _rows_view, project

if TYPE_CHECKING:
    from collections.abc import Callable


def apgd_checkpoints(steps: int) -> set[int]:
    """Iterations at which APGD may halve its step: p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)."""
    p = [0.0, 0.22]
    while p[-1] < 1:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    return {max(1, math.ceil(round(q * steps, 9))) for q in p[1:] if q <= 1}


def dlr_targeted(logits: torch.Tensor, labels: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Targeted difference-of-logits-ratio loss (to maximise): ``-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)``.

    Scale-invariant, so a model's logit scale cannot hide a weak margin. With fewer than
    four classes the denominator is the spread of the logits.
    """
    s, _ = logits.sort(dim=1)
    zy = logits.gather(1, labels[:, None])[:, 0]
    zt = logits.gather(1, target[:, None])[:, 0]
    spread = s[:, -1] - (s[:, -3] + s[:, -4]) / 2 if logits.shape[1] >= 4 else s[:, -1] - s[:, 0]
    return -(zy - zt) / (spread + 1e-12)


def _direction(grad: torch.Tensor, norm: Norm) -> torch.Tensor:
    if norm == "linf":
        return grad.sign()
    return grad / _rows_view(_per_row_norm(grad).clamp_min(1e-12), grad.ndim)


def apgd(
    forward: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    labels: torch.Tensor,
    eps: torch.Tensor,
    norm: Norm,
    steps: int,
    low: float,
    high: float,
    *,
    start: torch.Tensor | None = None,
    target: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Auto-PGD: momentum 0.75, step 2*eps halved at checkpoints when progress stalls, restarts from the best point.

    Cross-entropy of ``labels`` when ``target`` is None, else the targeted DLR loss
    towards ``target``. Success is any misclassification either way (as in AutoAttack).

    Returns
    -------
    broken, broken_at
        Per row whether some iterate was misclassified, and the first iteration that was
        (0: the starting point; -1: never).
    """
    n = x.shape[0]
    e = _rows_view(eps, x.ndim)

    def inside(xa: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        return (x[idx] + project(xa - x[idx], eps[idx], norm)).clamp(low, high)

    def evaluate(xa: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        xa = xa.detach().requires_grad_(True)
        logits = forward(xa)
        if target is None:
            loss = F.cross_entropy(logits, labels[idx], reduction="none")
        else:
            loss = dlr_targeted(logits, labels[idx], target[idx])
        (grad,) = torch.autograd.grad(loss.sum(), xa)
        return loss.detach(), grad.detach(), logits.detach().argmax(dim=1) != labels[idx]

    every = torch.arange(n, device=x.device)
    x_cur = x.clone() if start is None else (x + start * e).clamp(low, high)
    loss, grad, wrong = evaluate(x_cur, every)
    broken = wrong.clone()
    broken_at = torch.where(wrong, 0, -1)
    best_loss, x_best, grad_best = loss.clone(), x_cur.clone(), grad.clone()
    x_prev = x_cur.clone()
    eta = 2.0 * eps.clone()
    checkpoints = apgd_checkpoints(steps)
    increases = torch.zeros(n, device=x.device)
    loss_at_checkpoint = best_loss.clone()
    halved_last = torch.zeros(n, dtype=torch.bool, device=x.device)
    last_checkpoint = 0
    for k in range(steps):
        idx = every[~broken]
        if idx.numel() == 0:
            break
        xk = x_cur[idx]
        z = inside(xk + _rows_view(eta[idx], x.ndim) * _direction(grad[idx], norm), idx)
        x_new = z if k == 0 else inside(xk + 0.75 * (z - xk) + 0.25 * (xk - x_prev[idx]), idx)
        new_loss, new_grad, wrong = evaluate(x_new, idx)
        x_prev[idx] = xk
        x_cur[idx], grad[idx] = x_new, new_grad
        increases[idx] += (new_loss > loss[idx]).float()
        loss[idx] = new_loss
        broken_at[idx[wrong & ~broken[idx]]] = k + 1
        broken[idx] |= wrong
        better = new_loss > best_loss[idx]
        up = idx[better]
        best_loss[up], x_best[up], grad_best[up] = new_loss[better], x_new[better], new_grad[better]
        if k + 1 in checkpoints:
            span = k + 1 - last_checkpoint
            stalled = (increases < 0.75 * span) | (~halved_last & (loss_at_checkpoint >= best_loss))
            eta = torch.where(stalled, eta / 2, eta)
            x_cur[stalled], grad[stalled] = x_best[stalled], grad_best[stalled]
            x_prev[stalled] = x_best[stalled]
            halved_last = stalled
            increases.zero_()
            loss_at_checkpoint = best_loss.clone()
            last_checkpoint = k + 1
    return broken, broken_at


def _square_fraction(p_init: float, it: int, queries: int) -> float:
    """The share of pixels a square covers at iteration ``it``: halved on the schedule of the paper (rescaled to 10,000 queries)."""
    it = int(it / max(queries, 1) * 10000)
    for bound, div in ((8000, 512), (6000, 256), (4000, 128), (2000, 64), (1000, 32), (500, 16), (200, 8), (50, 4), (10, 2)):
        if it > bound:
            return p_init / div
    return p_init


def _margin(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """z_y - max_{j != y} z_j: negative exactly when the row is misclassified."""
    zy = logits.gather(1, labels[:, None])[:, 0]
    other = logits.scatter(1, labels[:, None], float("-inf")).amax(dim=1)
    return zy - other


def square(
    forward: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    labels: torch.Tensor,
    eps: torch.Tensor,
    norm: Norm,
    queries: int,
    low: float,
    high: float,
    generator: torch.Generator,
    *,
    p_init: float = 0.8,
    per_step: int = 1,
) -> torch.Tensor:
    """Square attack: random search over square windows of the perturbation, kept when the margin loss falls.

    Uses outputs only, so a masked or broken gradient cannot hide a weak margin. L-inf:
    windows of +-eps per channel from vertical-stripe start (the paper's). L2: a Gaussian
    window then rescaling the whole perturbation onto the epsilon sphere (a simplified
    form of the paper's L2 proposal). ``per_step`` windows are drawn per row and step on
    the same perturbation and evaluated in one batched forward, the best kept (each counts
    as a query); a window that would not change the perturbation costs no model row, and
    a row where no single-pixel window can lower the margin any more stops early (L-inf).
    Returns per row whether it was broken.
    """
    shape = x.shape
    xi = x if x.ndim == 4 else x.reshape(shape[0], 1, 1, -1)
    n, c, h, w = xi.shape
    dev = x.device
    e = eps.view(-1, 1, 1, 1)

    def rand_sign(size: tuple[int, ...]) -> torch.Tensor:
        return torch.randint(0, 2, size, generator=generator, device=dev).float() * 2 - 1

    def to_ball(delta: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        if norm == "l2":
            delta = delta * (e[idx] / _per_row_norm(delta).clamp_min(1e-12).view(-1, 1, 1, 1))
        return (xi[idx] + delta).clamp(low, high) - xi[idx]

    def margin_of(delta: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        return _margin(forward((xi[idx] + delta).reshape((len(idx), *shape[1:]))), labels[idx])

    every = torch.arange(n, device=dev)
    if norm == "linf":
        delta = to_ball(e * rand_sign((n, c, 1, w)), every)
    else:
        delta = to_ball(torch.randn((n, c, h, w), generator=generator, device=dev), every)
    margin = margin_of(delta, every)
    broken = margin < 0
    rows_h = torch.arange(h, device=dev)
    rows_w = torch.arange(w, device=dev)
    k_max = max(1, int(per_step))
    # Once the squares are single pixels (L-inf) there are only h*w*2^c moves: a pixel and a sign per
    # channel. A row that has tried each of them on its current perturbation without lowering the margin
    # sits where no later query can move it (the model is deterministic, the squares never grow again):
    # it leaves the loop, exactly as if it had spent its remaining queries.
    n_moves = h * w * 2**c if norm == "linf" and h * w * 2**c <= 2**16 else 0
    tried = torch.zeros((n, n_moves), dtype=torch.bool, device=dev)
    stuck = torch.zeros(n, dtype=torch.bool, device=dev)
    bits = 2 ** torch.arange(c, device=dev)
    for it in range(0, queries, k_max):
        idx = every[~broken & ~stuck]
        if idx.numel() == 0:
            break
        k = min(k_max, queries - it)
        m = len(idx) * k
        rep = idx.repeat_interleave(k) if k > 1 else idx  # row r's k candidates side by side
        side = max(1, min(int(round(math.sqrt(_square_fraction(p_init, it, queries) * h * w))), h, w))
        top = torch.randint(0, h - side + 1, (m,), generator=generator, device=dev)
        left = torch.randint(0, w - side + 1, (m,), generator=generator, device=dev)
        in_h = (rows_h[None] >= top[:, None]) & (rows_h[None] < top[:, None] + side)
        in_w = (rows_w[None] >= left[:, None]) & (rows_w[None] < left[:, None] + side)
        window = (in_h[:, :, None] & in_w[:, None, :])[:, None]  # (m, 1, h, w)
        if norm == "linf":
            patch = e[rep] * rand_sign((m, c, 1, 1))
        else:
            patch = torch.randn((m, c, h, w), generator=generator, device=dev) * e[rep] / math.sqrt(side * side * c)
        base = delta[rep]
        candidate = to_ball(torch.where(window, patch, base), rep)
        # A window that leaves the perturbation as it was (at small squares, often half of them: the
        # pixel already holds that sign, or the value range clips it) cannot lower the margin: no query.
        moved = (candidate != base).flatten(1).any(dim=1)
        single = side == 1 and n_moves > 0
        if single:
            move = (top * w + left) * 2**c + ((patch[:, :, 0, 0] > 0).long() * bits).sum(dim=1)
            tried[rep, move] = True
        if moved.any():
            new_margin = torch.full((m,), float("inf"), device=dev)
            new_margin[moved] = margin_of(candidate[moved], rep[moved])
            best, pick = new_margin.view(-1, k).min(dim=1)
            better = best < margin[idx]
            take = idx[better]
            chosen = torch.arange(len(idx), device=dev)[better] * k + pick[better]
            delta[take], margin[take] = candidate[chosen], best[better]
            broken[take] = best[better] < 0
            tried[take] = False
        if single:
            stuck[idx] = tried[idx].all(dim=1)
    return broken
