"""AutoAttack-style evaluation: APGD-CE, APGD-T (DLR) and Square, worst case per sample (Croce & Hein, 2020)."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal

import numpy as np
import pandas as pd
import torch

from audits.probes import register
from audits.results.robustness import AutoAttackResult
from audits.robustness._apgd import apgd, square
from audits.robustness._attacks import AttackProbe, Norm, random_start_points
from audits.robustness.base import group_breakdown

if TYPE_CHECKING:
    from audits.data import AuditData
    from audits.probes import RunContext
    from models.loader import ModelHandle

Preset = Literal["quick", "strong"]
# (APGD steps, APGD-T target classes, Square queries, Square windows tried per row per step). 'strong' is
# AutoAttack's standard version: 100 steps, 9 targets, 5000 queries, the queries spent 8 at a time (one
# batched forward for 8 candidate windows, the best kept: 625 steps instead of 5000, as strong on B10). 'quick' (the default probe) costs about PGD-10 with its
# sweep: 20 steps (10 lose 3 points of robust accuracy at 16/255 on digits-cnn; 20 match 3 targets and
# 300 queries within 0.4 points), the runner-up class as the one target, 100 queries.
PRESETS: dict[str, tuple[int, int, int, int]] = {"quick": (20, 1, 100, 1), "strong": (100, 9, 5000, 8)}
ATTACKS = ("apgd-ce", "apgd-t", "square")
# The default sweep (fractions of the value range): the field's reporting points. The full FGSM/PGD sweep's
# small budgets leave nearly every row standing for Square to query: 7x the cost on digits-cnn (254 s vs 42 s).
SWEEP = (0.0, 8 / 255, 16 / 255, 0.1, 0.3)


@register
class AutoAttack(AttackProbe):
    """An ensemble of parameter-free attacks, each run on the rows the ones before it could not break.

    APGD with the cross-entropy (random start), APGD with the targeted DLR loss towards
    each of the top runner-up classes, then Square, which uses outputs only, so a masked
    gradient cannot hide a weak margin. A row counts as robust at epsilon only if every
    attack failed. Also measures whether gradients look masked (see :class:`AutoAttackResult`).

    Parameters
    ----------
    preset : {'quick', 'strong'}
        'quick': 20 APGD steps, 1 target class (the runner-up), 100 Square queries. 'strong': AutoAttack's
        standard 100 steps, 9 targets, 5000 queries.
    steps, targets, queries : int or None
        Override the preset's APGD steps, APGD-T target classes (0 skips APGD-T) and Square
        queries (0 skips Square).
    candidates : int or None
        Override the preset's Square windows per row per step (quick 1, strong 8): each step
        queries that many windows on the current perturbation in one batched forward and keeps
        the best, so ``queries`` costs ``queries / candidates`` steps.
    epsilons : list of float or None
        Budgets in pixel units; None: 0, 8/255, 16/255, 0.1 and 0.3 times the value range's width
        (L2: times sqrt(C*H*W)/2 as well, as for the other attacks).
    norm, max_rows
        As for every attack (:class:`~audits.robustness._attacks.AttackProbe`); 256 rows by
        default (the first half of FGSM's and PGD's 512), which keeps the default probe within
        half the cost of the other default robustness probes on digits-cnn.
    """

    name = "autoattack"
    title = "AutoAttack ensemble (APGD-CE, APGD-T, Square)"
    description = (
        "Attacks every image with three complementary attacks, two gradient-based and one that needs no gradient, and counts "
        "it as robust only if all fail; also checks whether the gradients look masked, which would make any gradient "
        "attack overstate robustness."
    )
    default_for: ClassVar = ("image",)
    result_type: ClassVar = AutoAttackResult

    def __init__(
        self,
        *,
        preset: Preset = "quick",
        norm: Norm = "linf",
        epsilons: list[float] | None = None,
        steps: int | None = None,
        targets: int | None = None,
        queries: int | None = None,
        candidates: int | None = None,
        max_rows: int | None = 256,
    ) -> None:
        super().__init__(norm=norm, epsilons=epsilons, max_rows=max_rows, refine_steps=0, n_examples=0)
        if preset not in PRESETS:
            raise ValueError(f"preset must be one of {tuple(PRESETS)}, got {preset!r}")
        d_steps, d_targets, d_queries, d_candidates = PRESETS[preset]
        self.preset = preset
        self.steps = int(d_steps if steps is None else steps)
        self.targets = int(d_targets if targets is None else targets)
        self.queries = int(d_queries if queries is None else queries)
        self.candidates = int(d_candidates if candidates is None else candidates)
        if self.steps < 1 or self.targets < 0 or self.queries < 0:
            raise ValueError(f"steps must be >= 1 and targets, queries >= 0, got {self.steps}, {self.targets}, {self.queries}")
        if self.candidates < 1:
            raise ValueError(f"candidates must be >= 1 (Square windows per row per step), got {self.candidates}")

    def sweep(self, model: ModelHandle) -> np.ndarray:
        if self.epsilons is not None:
            return np.asarray(self.epsilons, dtype=np.float64)
        low, high = model.card.input.value_range
        scale = (high - low) * (1.0 if self.norm == "linf" else np.sqrt(np.prod(model.input_shape)) / 2)
        return np.asarray(SWEEP) * scale

    def _run(self, model: ModelHandle, data: AuditData, context: RunContext) -> AutoAttackResult:
        low, high = (float(v) for v in model.card.input.value_range)
        eps = self.sweep(model)
        rows = self.evaluation_rows(data, self.max_rows, context)
        n, m = len(rows), len(eps)
        x = model.to_tensor(data.x[rows])
        y_np = data.y[rows]
        y = torch.as_tensor(y_np, dtype=torch.long, device=model.device)
        proba = context.proba[rows]
        clean_ok = proba.argmax(axis=1) == y_np
        # Runner-up classes by clean probability: the targets of APGD-T, most likely first.
        order = np.argsort(-proba, axis=1, kind="stable")
        runner_up = np.stack([o[o != label] for o, label in zip(order, y_np, strict=True)]) if n else np.zeros((0, proba.shape[1] - 1), np.int64)
        n_targets = min(self.targets, proba.shape[1] - 1)
        targets = torch.as_tensor(runner_up[:, :n_targets].copy(), dtype=torch.long, device=model.device)
        generator = torch.Generator(device=model.device).manual_seed(int(context.rng(self.name).integers(2**62)))
        start = random_start_points(tuple(x.shape), self.norm, generator, model.device)
        eps_t = torch.as_tensor(eps, dtype=torch.float32, device=model.device)

        # broken_by per (row, epsilon): -1 wrong when clean, 0 survived, else 1 + index of the attack.
        broken_by = np.where(clean_ok[:, None], 0, -1).repeat(m, axis=1).astype(np.int8)
        one_step = np.zeros((n, m), dtype=bool)

        def batched(fn, r: np.ndarray, c: np.ndarray) -> np.ndarray:
            if len(r) == 0:
                return np.zeros((0, 2), dtype=bool)
            r_t = torch.as_tensor(r, device=model.device)
            c_t = torch.as_tensor(c, device=model.device)

            def run(i: torch.Tensor) -> torch.Tensor:
                i = i.long()
                return fn(r_t[i], eps_t[c_t[i]])

            with torch.inference_mode(False), torch.enable_grad():
                # Even chunks: a short last chunk would pay every APGD step's overhead for a few rows.
                size = -(-len(r) // -(-len(r) // model.batch_size))
                return model.map_batches(run, np.arange(len(r)), size).cpu().numpy()

        def apgd_ce(s: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
            broken, at = apgd(model.model, x[s], y[s], e, self.norm, self.steps, low, high, start=start[s])
            return torch.stack([broken, (at >= 0) & (at <= 1)], dim=1)

        def apgd_t(st: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
            s, t = st // max(n_targets, 1), st % max(n_targets, 1)
            broken, _ = apgd(model.model, x[s], y[s], e, self.norm, self.steps, low, high, start=start[s], target=targets[s, t])
            return broken[:, None]

        def square_attack(s: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
            with torch.inference_mode():
                return square(model.model, x[s], y[s], e, self.norm, self.queries, low, high, generator, per_step=self.candidates)[:, None]

        # Every attack runs, per row, only at the largest budget the row still stands at (its frontier): a
        # row the whole ensemble leaves standing there counts as robust at every smaller budget without being
        # attacked there (the smaller ball lies inside the larger). APGD-CE, which breaks nearly every
        # breakable row, runs first, budget by budget from the largest, on the rows it broke at the budget
        # above. Then APGD-T and Square run on every row's frontier at once (one Square loop for every
        # budget); where they break a row, the next smaller budget becomes its frontier in another round.
        descending = np.argsort(-eps, kind="stable")
        descending = descending[eps[descending] > 0]
        ce_done = np.zeros((n, m), dtype=bool)

        def run_ce(r: np.ndarray, c: np.ndarray) -> None:
            out = batched(apgd_ce, r, c)
            broken_by[r[out[:, 0]], c[out[:, 0]]] = 1
            one_step[r[out[:, 1]], c[out[:, 1]]] = True
            ce_done[r, c] = True

        above: int | None = None
        for k, j in enumerate(descending):
            context.report(k / max(len(descending), 1) / 3, f"APGD-CE, epsilon {eps[j]:.4g}")
            r = np.flatnonzero(clean_ok if above is None else broken_by[:, above] > 0)
            run_ce(r, np.full(len(r), j))
            above = j
        finished = np.zeros((n, m), dtype=bool)  # the whole ensemble ran on this (row, epsilon)
        rounds = 0
        while True:
            standing = (broken_by[:, descending] == 0) & ~finished[:, descending]
            first = standing.argmax(axis=1)
            r = np.flatnonzero(standing.any(axis=1) & ~(finished[:, descending] & (broken_by[:, descending] == 0)).any(axis=1))
            c = descending[first[r]]
            if len(r) == 0:
                break
            rounds += 1
            label = f"round {rounds}" if rounds > 1 else ""
            fresh = ~ce_done[r, c]  # frontiers that moved below a budget APGD-CE had left standing
            if fresh.any():
                run_ce(r[fresh], c[fresh])
                keep = broken_by[r, c] == 0
                r, c = r[keep], c[keep]
            if n_targets:
                # Every target class at once: a row counts as broken by APGD-T when any target's run broke it,
                # which is what the attacks run one target after another find, in a tenth of the iterations.
                context.report(1 / 3, f"APGD-T, {n_targets} targets {label}".strip())
                live = np.flatnonzero(broken_by[r, c] == 0)
                pick = np.repeat(live, n_targets)
                which = np.tile(np.arange(n_targets), len(live))
                out = batched(apgd_t, r[pick] * n_targets + which, c[pick])
                hit = np.zeros(len(r), dtype=bool)
                np.logical_or.at(hit, pick, out[:, 0])
                broken_by[r[hit], c[hit]] = 2
            if self.queries > 0:
                context.report(2 / 3, f"Square {label}".strip())
                live = broken_by[r, c] == 0
                out = batched(square_attack, r[live], c[live])
                broken_by[r[live][out[:, 0]], c[live][out[:, 0]]] = 3
            finished[r, c] = True
        gradient_ok = clean_ok[:, None] & ((broken_by == 0) | (broken_by == 3))

        # Masking diagnostic: APGD-CE from the clean point with a budget that reaches every input.
        context.report(0.97, "unbounded epsilon")
        unbounded = (high - low) * (1.0 if self.norm == "linf" else float(np.sqrt(np.prod(model.input_shape))))
        r = np.flatnonzero(clean_ok)
        eps_un = torch.full((1,), unbounded, dtype=torch.float32, device=model.device)

        def apgd_unbounded(s: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
            broken, _ = apgd(model.model, x[s], y[s], eps_un.expand(len(s)), self.norm, self.steps, low, high)
            return broken[:, None]

        out = batched(apgd_unbounded, r, np.zeros(len(r), dtype=np.int64))
        unbounded_ra = float((~out[:, 0]).sum() / n) if n else float("nan")

        robust = broken_by == 0
        wrong = ~robust
        one_step_ok = clean_ok[:, None] & ~one_step
        curve = pd.DataFrame(
            {
                "epsilon": eps,
                "robust_accuracy": robust.mean(axis=0) if n else np.full(m, np.nan),
                "attack_success_rate": wrong[clean_ok].mean(axis=0) if clean_ok.any() else np.full(m, np.nan),
                "gradient_robust_accuracy": gradient_ok.mean(axis=0) if n else np.full(m, np.nan),
                "one_step_robust_accuracy": one_step_ok.mean(axis=0) if n else np.full(m, np.nan),
                "n": np.full(m, n, dtype=np.int64),
            }
        )
        breakdown = pd.DataFrame(
            [
                {"epsilon": float(e), "attack": a, "broken": float((broken_by[:, j] == k + 1).mean()) if n else float("nan")}
                for j, e in enumerate(eps)
                for k, a in enumerate(ATTACKS)
            ]
        )
        flips = wrong & clean_ok[:, None] & (eps[None, :] > 0)
        found = flips.any(axis=1)
        min_eps = np.where(found, eps[flips.argmax(axis=1)], np.nan)
        attributes = data.attributes.iloc[rows].reset_index(drop=True)
        by_group = group_breakdown(
            {
                "clean_accuracy": np.repeat(clean_ok[:, None], m, axis=1),
                "robust_accuracy": robust,
                "attack_success_rate": np.where(clean_ok[:, None], wrong, np.nan),
            },
            attributes, data.sensitive, pd.DataFrame({"epsilon": eps}),
        )  # fmt: skip
        by_group.insert(by_group.columns.get_loc("robust_accuracy") + 1, "drop", by_group["clean_accuracy"] - by_group["robust_accuracy"])
        only_square = (broken_by == 3).mean(axis=0) if n else np.zeros(m)
        needed_steps = ((broken_by == 1) & ~one_step).mean(axis=0) if n else np.zeros(m)
        return AutoAttackResult(
            method=self.name,
            params=self.params,
            seed=context.seed,
            norm=self.norm,
            targeted=False,
            rows=rows,
            clean_accuracy=float(clean_ok.mean()) if n else float("nan"),
            curve=curve,
            min_epsilon=min_eps,
            mean_min_epsilon=float(min_eps[found].mean()) if found.any() else float("nan"),
            flipped_fraction=float(found[clean_ok].mean()) if clean_ok.any() else float("nan"),
            by_group=by_group,
            preset=self.preset,
            attacks=list(ATTACKS),
            breakdown=breakdown,
            broken_by=broken_by,
            gradient_free_gain=float(only_square.max()) if m else float("nan"),
            iteration_gain=float(needed_steps.max()) if m else float("nan"),
            unbounded_epsilon=float(unbounded),
            unbounded_robust_accuracy=unbounded_ra,
        )
