"""Constrained adversarial search on tabular rows: the smallest plausible change that flips each decision."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd

from audits.probes import RunContext, register
from audits.results.robustness import TabularAdversarialResult
from audits.robustness._tabular import TabularLayout, minimal_joint_epsilon, predict, set_levels
from audits.robustness.base import RobustnessProbe, check_max_rows, group_breakdown

if TYPE_CHECKING:
    from audits.data import AuditData
    from models.loader import ModelHandle

CategoricalMode = Literal["fixed", "search"]


def _raw_text(value: float) -> str:
    # Round away float noise from the inverse transform (expm1 of ~0 is -5e-09, not 0).
    return f"{round(float(value), 6) + 0.0:.4g}"


@register
class TabularAdversarial(RobustnessProbe):
    """Searches, per row, for the smallest change within the data's observed ranges that flips the decision.

    Two searches run on a seeded subset of rows, both batched on the model's device:

    * **single feature**: every free numeric feature is scanned over a grid spanning its
      observed range (then bisected to the flip boundary nearest the row's value), and
      every free categorical feature is tried at each of its other levels;
    * **joint numeric**: projected gradient steps move all free numeric features together,
      each by at most epsilon standard deviations and within its observed range; two
      rounds of epsilon grids give the smallest joint change (L-inf, in sd) that flips.

    Parameters
    ----------
    categoricals : {'fixed', 'search'}
        'search': categorical features may switch level (single-feature search);
        'fixed': they never change.
    fixed_features : list of str or None
        Features never changed. None: the card's sensitive attributes that are model
        inputs (a decision flipped by changing them is a fairness question, answered by
        the counterfactual fairness probe). Use [] to let every feature move.
    max_rows : int or None
        Seeded random subset of rows searched (None: every row).
    max_epsilon : float
        Largest joint change searched, in standard deviations.
    steps : int
        Gradient steps per joint search.
    search_points : int
        Epsilons tried at once per row in each of the joint search's two rounds (a grid
        over (0, max_epsilon], then a grid inside the interval where the row first flipped);
        resolution max_epsilon / search_points / (search_points + 1).
    refine_steps : int
        Bisection steps towards each single-feature flip boundary.
    grid_points : int
        Grid points over each numeric feature's observed range in the single-feature scan.
    category_cost : float
        How many standard deviations of numeric change a level switch counts as when picking
        each row's smallest single-feature change.
    """

    name = "tabular_adversarial"
    result_type = TabularAdversarialResult
    modalities = ("tabular",)
    default_for = ("tabular",)
    title = "Constrained adversarial search (tabular)"
    description = (
        "Looks for the smallest realistic change to a record (numeric values kept within the ranges seen in the data, "
        "categories switched only to observed levels) that changes the model's decision, and reports which features "
        "flip decisions most easily."
    )

    def __init__(
        self,
        *,
        categoricals: CategoricalMode = "search",
        fixed_features: list[str] | None = None,
        max_rows: int | None = 300,
        max_epsilon: float = 3.0,
        steps: int = 20,
        search_points: int = 12,
        refine_steps: int = 8,
        grid_points: int = 33,
        category_cost: float = 1.0,
    ) -> None:
        if categoricals not in ("fixed", "search"):
            raise ValueError(f"categoricals must be 'fixed' or 'search', got {categoricals!r}")
        if max_epsilon <= 0 or steps < 1 or search_points < 1 or refine_steps < 0 or grid_points < 2 or category_cost < 0:
            raise ValueError("need max_epsilon > 0, steps >= 1, search_points >= 1, refine_steps >= 0, grid_points >= 2, category_cost >= 0")
        self.categoricals = categoricals
        self.fixed_features = None if fixed_features is None else list(fixed_features)
        self.max_rows = check_max_rows(max_rows)
        self.max_epsilon = float(max_epsilon)
        self.steps = int(steps)
        self.search_points = int(search_points)
        self.refine_steps = int(refine_steps)
        self.grid_points = int(grid_points)
        self.category_cost = float(category_cost)

    def check(self, model: ModelHandle, data: AuditData) -> str | None:
        reason = super().check(model, data)
        if reason is None and self.fixed_features is not None:
            unknown = sorted(set(self.fixed_features) - set(data.feature_names))
            if unknown:
                reason = f"fixed_features {unknown} are not model inputs ({', '.join(data.feature_names)})"
        return reason

    def _run(self, model: ModelHandle, data: AuditData, context: RunContext) -> TabularAdversarialResult:
        layout = TabularLayout.of(model, data)
        fixed = self.fixed_features if self.fixed_features is not None else [s for s in data.sensitive if s in layout.names]
        free_numeric = np.array([j for j in layout.numeric if layout.names[j] not in fixed and layout.spread[j] > 0], dtype=np.int64)
        free_categorical = (
            np.array([j for j in layout.categorical if layout.names[j] not in fixed], dtype=np.int64)
            if self.categoricals == "search"
            else np.zeros(0, dtype=np.int64)
        )
        rows = self.evaluation_rows(data, self.max_rows, context)
        x = data.x[rows]
        pred0 = context.predictions[rows]
        n = len(rows)

        context.report(0.0, "single-feature scan")
        numeric_change, numeric_to = self._scan_numeric(model, x, pred0, layout, free_numeric)
        level_flip, level_to = self._scan_categorical(model, x, pred0, layout, free_categorical)
        context.report(0.4, "joint search")
        min_linf = minimal_joint_epsilon(model, x, pred0, free_numeric, layout, self.max_epsilon, self.steps, self.search_points)

        # Each row's smallest single-feature change: numeric in sd, a level switch at category_cost.
        features = [*free_numeric, *free_categorical]
        cost = np.full((n, len(features)), np.inf)
        cost[:, : len(free_numeric)] = np.where(np.isfinite(numeric_change), numeric_change, np.inf)
        cost[:, len(free_numeric) :] = np.where(level_flip, self.category_cost, np.inf)
        any_single = np.isfinite(cost).any(axis=1) if len(features) else np.zeros(n, dtype=bool)
        best = cost.argmin(axis=1) if len(features) else np.zeros(n, dtype=np.int64)
        decisions = self._decisions(data, layout, rows, x, pred0, min_linf, features, free_numeric, best, any_single, numeric_change, numeric_to, level_to)

        feature_rows = []
        for k, j in enumerate(features):
            is_num = k < len(free_numeric)
            flipped = np.isfinite(numeric_change[:, k]) if is_num else level_flip[:, k - len(free_numeric)]
            feature_rows.append(
                {
                    "feature": layout.names[j],
                    "type": layout.kinds[j],
                    "flip_fraction": float(flipped.mean()) if n else float("nan"),
                    "median_change": float(np.median(numeric_change[flipped, k])) if is_num and flipped.any() else float("nan"),
                }
            )
        table = pd.DataFrame(feature_rows, columns=["feature", "type", "flip_fraction", "median_change"])
        table = table.sort_values(["flip_fraction", "median_change"], ascending=[False, True], kind="stable").reset_index(drop=True)
        flippable = np.isfinite(min_linf)
        by_group = group_breakdown(
            {"flippable": flippable, "single_feature": any_single, "min_linf": min_linf},
            data.attributes.iloc[rows].reset_index(drop=True), data.sensitive,
        )  # fmt: skip
        return TabularAdversarialResult(
            method=self.name,
            params=self.params,
            seed=context.seed,
            rows=rows,
            categoricals=self.categoricals,
            fixed_features=list(fixed),
            max_epsilon=self.max_epsilon,
            flippable_fraction=float(flippable.mean()) if n else float("nan"),
            single_feature_fraction=float(any_single.mean()) if n else float("nan"),
            median_min_linf=float(np.median(min_linf[flippable])) if flippable.any() else float("nan"),
            decisions=decisions,
            features=table,
            by_group=by_group,
        )

    def _scan_numeric(self, model, x, pred0, layout, free) -> tuple[np.ndarray, np.ndarray]:
        """Per row and free numeric feature: smallest |change| (sd) that flips, and the encoded value reached.

        A grid over the observed range finds the nearest flipping value on each side; bisection
        between it and its non-flipping neighbour towards the row's value sharpens the boundary.
        """
        n, g = len(x), self.grid_points
        change = np.full((n, len(free)), np.nan)
        reached = np.full((n, len(free)), np.nan)
        if not len(free) or not n:
            return change, reached
        cols = np.array([layout.column(j) for j in free])
        grids = np.stack([np.linspace(layout.low[j], layout.high[j], g) for j in free])  # (F, G)
        # Every (feature, grid value, row) variant at once.
        variants = np.repeat(x[None, None], len(free), axis=0).repeat(g, axis=1)  # (F, G, n, D)
        variants[np.arange(len(free))[:, None, None], np.arange(g)[None, :, None], np.arange(n)[None, None, :], cols[:, None, None]] = grids[:, :, None]
        flips = predict(model, variants.reshape(-1, x.shape[1]))[0].reshape(len(free), g, n) != pred0[None, None, :]
        original = x[:, cols].T  # (F, n)
        distance = np.abs(grids[:, :, None] - original[:, None, :])  # (F, G, n)
        distance = np.where(flips, distance, np.inf)
        nearest = distance.argmin(axis=1)  # (F, n)
        found = np.isfinite(distance.min(axis=1))
        hi = np.take_along_axis(grids, nearest, axis=1)  # flipping value, (F, n)
        step = grids[:, 1:2] - grids[:, 0:1]
        toward = np.sign(original - hi)
        # The neighbour towards the row's value, or the value itself when it is closer.
        neighbour = hi + toward * step
        lo = np.where(np.abs(neighbour - hi) >= np.abs(original - hi), original, neighbour)
        fi, ri = np.nonzero(found)
        if len(fi):
            lo_v, hi_v = lo[fi, ri], hi[fi, ri]
            for _ in range(self.refine_steps):
                mid = (lo_v + hi_v) / 2
                probe = x[ri].copy()
                probe[np.arange(len(ri)), cols[fi]] = mid
                broke = predict(model, probe)[0] != pred0[ri]
                hi_v, lo_v = np.where(broke, mid, hi_v), np.where(broke, lo_v, mid)
            hi[fi, ri] = hi_v
        spread = layout.spread[free][:, None]
        change_f = np.where(found, np.abs(hi - original) / spread, np.nan)
        return change_f.T, np.where(found, hi, np.nan).T

    def _scan_categorical(self, model, x, pred0, layout, free) -> tuple[np.ndarray, np.ndarray]:
        """Per row and free categorical feature: whether some other level flips it, and which (the most frequent such level)."""
        n = len(x)
        flip_any = np.zeros((n, len(free)), dtype=bool)
        level_to = np.full((n, len(free)), -1, dtype=np.int64)
        if not len(free) or not n:
            return flip_any, level_to
        everyone = np.arange(n)
        blocks, index = [], []
        for k, j in enumerate(free):
            current = layout.codes(x, j)
            for level in np.flatnonzero(layout.frequency[j] > 0):  # observed levels only
                blocks.append(set_levels(x, layout, j, everyone, np.full(n, level)))
                index.append((k, level, current != level))
        pred = predict(model, np.concatenate(blocks))[0].reshape(len(blocks), n)
        best_freq = np.full((n, len(free)), -1.0)
        for b, (k, level, differs) in enumerate(index):
            flips = (pred[b] != pred0) & differs
            freq = layout.frequency[free[k]][level]
            better = flips & (freq > best_freq[:, k])
            level_to[better, k] = level
            best_freq[better, k] = freq
            flip_any[:, k] |= flips
        return flip_any, level_to

    def _decisions(
        self, data, layout, rows, x, pred0, min_linf, features, free_numeric, best, any_single, numeric_change, numeric_to, level_to
    ) -> pd.DataFrame:
        n = len(rows)
        names = np.array([layout.names[j] for j in features] or [""], dtype=object)
        best_feature = np.where(any_single, names[best] if len(features) else "", "")
        best_change = np.full(n, np.nan)
        best_from = np.full(n, "", dtype=object)
        best_to = np.full(n, "", dtype=object)
        n_num = len(free_numeric)
        for r in np.flatnonzero(any_single):  # formatting only: the search itself is batched
            k = int(best[r])
            j = features[k]
            if k < n_num:
                best_change[r] = numeric_change[r, k]
                best_from[r] = _raw_text(layout.to_raw(j, x[r, layout.column(j)]))
                best_to[r] = _raw_text(layout.to_raw(j, numeric_to[r, k]))
            else:
                best_change[r] = 0.0
                code = layout.codes(x[r : r + 1], j)[0]
                best_from[r] = layout.levels[j][code] if code >= 0 else "(none)"
                best_to[r] = layout.levels[j][level_to[r, k - n_num]]
        return pd.DataFrame(
            {
                "row": rows.astype(np.int64),
                "prediction": [data.class_names[p] for p in pred0],
                "min_linf": min_linf,
                "best_feature": best_feature.astype(object),
                "best_change": best_change,
                "best_from": best_from,
                "best_to": best_to,
            }
        )
