"""Group metrics per sensitive attribute and their intersections, disparities, with bootstrap intervals.

Metric definitions are fairlearn's (``MetricFrame`` with ``selection_rate``,
``true_positive_rate``, ... and scikit-learn's ``accuracy_score``/``precision_score``;
disparities as ``MetricFrame.difference``/``ratio``), and the point estimates equal
``MetricFrame.by_group`` (tests check every metric and group). One deliberate difference:
a rate whose denominator is empty (TPR of a group without positives) is NaN here, where
fairlearn reports 0. The bootstrap is ``_bootstrap``'s vectorized one, which resamples the
way ``MetricFrame(n_boot=...)`` does.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal

import numpy as np
import pandas as pd

from audits.errors import DataError
from audits.fairness._bootstrap import (
    BINARY_METRICS,
    DIRECTION,
    MULTICLASS_METRICS,
    Disparity,
    GroupStats,
    binary_metrics,
    bootstrap_statistics,
    disparity,
    multiclass_metrics,
    percentile_interval,
    row_codes,
)
from audits.large_data import bootstrap_from_counts, chance_gap_from_counts
from audits.probes import Probe, RunContext, register
from audits.results.fairness import INSUFFICIENT as INSUFFICIENT
from audits.results.fairness import GroupMetricsResult as GroupMetricsResult
from audits.stats import benjamini_hochberg, fisher_exact_p

if TYPE_CHECKING:
    from audits.data import AuditData
    from models.loader import ModelHandle

MissingPolicy = Literal["error", "group"]
MISSING_GROUP = "(missing)"
FOUR_FIFTHS = 0.8
# From this many eligible groups a grouping's max-min gap gets a chance check (permutation test).
CARDINALITY_WARNING = 20
CHANCE_PERMUTATIONS = 200
_MEASURES = ("difference", "ratio", "difference_to_overall", "ratio_to_overall")


@dataclass(frozen=True)
class _Grouping:
    name: str
    columns: list[str]
    labels: list[str]
    group_of_cell: np.ndarray


def sensitive_frame(data: AuditData, columns: list[str], missing: MissingPolicy) -> pd.DataFrame:
    """The sensitive columns as strings; missing values raise (naming the column) or form their own group."""
    absent = [c for c in columns if c not in data.attributes.columns]
    if absent:
        raise DataError(f"Sensitive column(s) {absent} are not in the data's attributes.", fix=f"Use one of {list(data.attributes.columns)}.")
    out = {}
    for col in columns:
        values = data.attributes[col]
        nulls = values.isna()
        if nulls.any() and missing == "error":
            raise DataError(
                f"Sensitive column {col!r} has {int(nulls.sum())} missing value(s) (first at row {int(np.flatnonzero(nulls.to_numpy())[0])}).",
                fix="Fill or drop them, or set the fairness probe's parameter missing: group to audit them as their own group.",
            )
        out[col] = values.astype(object).where(~nulls, MISSING_GROUP).astype(str)
    return pd.DataFrame(out)


def resolve_positive_class(positive_class: int | str | None, class_names: list[str], declared: str | None = None) -> int | None:
    """Index of the favourable class: the probe's ``positive_class``, else the card's ``favourable_class``
    (``declared``), else class 1 for a binary model, else None (multiclass)."""
    if positive_class is None:
        positive_class = declared
    if positive_class is None:
        return 1 if len(class_names) == 2 else None
    if isinstance(positive_class, str):
        if positive_class not in class_names:
            raise DataError(f"positive_class {positive_class!r} is not among the classes {class_names}.", fix="Name one of the model's classes.")
        return class_names.index(positive_class)
    if not 0 <= int(positive_class) < len(class_names):
        raise DataError(f"positive_class {positive_class} is out of range 0..{len(class_names) - 1}.", fix="Give a class index or name.")
    return int(positive_class)


def favourable_outcome(positive_class: int | str | None, data: AuditData) -> tuple[int | None, str | None]:
    """The favourable class index for ``data`` and, where it was assumed rather than declared, a note saying so."""
    pos = resolve_positive_class(positive_class, data.class_names, data.favourable_class)
    if positive_class is None and data.favourable_class is None and pos is not None:
        return pos, (
            f"No favourable_class in the model card: class 1 ({data.class_names[pos]!r}) is taken as the favourable outcome "
            f"(selection rates, false positives and the four-fifths rule count towards it). If {data.class_names[0]!r} is the "
            f"outcome people want, declare favourable_class: {data.class_names[0]} in the card."
        )
    return pos, None


def _groupings(frame: pd.DataFrame, combos: list[list[str]]) -> tuple[np.ndarray, int, list[_Grouping]]:
    """Finest cells (observed combinations of every used column) and each grouping as a map from cells."""
    columns = list(dict.fromkeys(c for combo in combos for c in combo))
    levels = {c: sorted(frame[c].unique()) for c in columns}
    codes = np.stack([pd.Categorical(frame[c], categories=levels[c]).codes for c in columns], axis=1).astype(np.int64)
    keys, cell = np.unique(codes, axis=0, return_inverse=True)
    out = []
    for combo in combos:
        sub = keys[:, [columns.index(c) for c in combo]]
        uniq, group_of_cell = np.unique(sub, axis=0, return_inverse=True)
        labels = [" & ".join(levels[c][k] for c, k in zip(combo, row, strict=True)) for row in uniq]
        out.append(_Grouping(" x ".join(combo), list(combo), labels, group_of_cell.reshape(-1)))
    return cell.reshape(-1), len(keys), out


def _combos(sensitive: list[str], intersections: bool | list[list[str]]) -> list[list[str]]:
    combos = [[s] for s in sensitive]
    if intersections is True:
        combos += [list(p) for p in itertools.combinations(sensitive, 2)]
    elif intersections:
        for combo in intersections:
            unknown = [c for c in combo if c not in sensitive]
            if unknown:
                raise DataError(f"intersections names {unknown}, which are not sensitive attributes {sensitive}.", fix="Name sensitive columns only.")
            if len(combo) >= 2 and list(combo) not in combos:
                combos.append(list(combo))
    return combos


@register
class GroupMetrics(Probe):
    """Per-group and intersectional metrics, disparities and fairness criteria with bootstrap intervals.

    Parameters
    ----------
    min_group_size : int
        Groups with fewer rows are reported as 'insufficient data' (metrics NaN) and left
        out of disparities and worst-group choices.
    n_boot : int
        Bootstrap resamples (0 = point estimates only).
    ci : float
        Coverage of the percentile intervals.
    intersections : bool or list of lists
        True: every pair of sensitive attributes; False: none; or the combinations to report.
    missing : {'error', 'group'}
        A missing sensitive value raises an error naming the column, or forms its own group.
    positive_class : int, str or None
        The favourable class. None: class 1 of a binary model; multiclass models get
        accuracy-type metrics instead of selection rates. Set on a multiclass model, it
        audits that class one-vs-rest.
    calibration_bins : int
        Equal-width confidence bins for the calibration error (as the performance ECE).
    """

    name: ClassVar[str] = "group_metrics"
    result_type: ClassVar = GroupMetricsResult
    category: ClassVar = "fairness"
    needs_model: ClassVar[bool] = False  # reads the shared pass (or the data) only
    modalities: ClassVar = ("image", "tabular", "text")
    default_for: ClassVar = ("image", "tabular", "text")
    title: ClassVar[str] = "Group metrics and disparities"
    description: ClassVar[str] = (
        "Selection rate, accuracy, error rates, precision, mean score and calibration error for every group of each "
        "sensitive attribute and their intersections, with fairlearn's definitions, the gaps and ratios between groups "
        "(demographic parity, equalized odds, equal opportunity, four-fifths rule) and bootstrap confidence intervals."
    )

    def __init__(
        self,
        *,
        min_group_size: int = 30,
        n_boot: int = 1000,
        ci: float = 0.95,
        intersections: bool | list[list[str]] = True,
        missing: MissingPolicy = "error",
        positive_class: int | str | None = None,
        calibration_bins: int = 10,
    ) -> None:
        if min_group_size < 1:
            raise ValueError(f"min_group_size must be at least 1, got {min_group_size}")
        if n_boot < 0:
            raise ValueError(f"n_boot must be >= 0, got {n_boot}")
        if not 0.0 < ci < 1.0:
            raise ValueError(f"ci must be in (0, 1), got {ci}")
        if missing not in ("error", "group"):
            raise ValueError(f"missing must be 'error' or 'group', got {missing!r}")
        if calibration_bins < 1:
            raise ValueError(f"calibration_bins must be at least 1, got {calibration_bins}")
        self.min_group_size = min_group_size
        self.n_boot = n_boot
        self.ci = ci
        if isinstance(intersections, list) and intersections and all(isinstance(c, str) for c in intersections):
            intersections = [intersections]  # one combination written flat: [sex, race]
        if not isinstance(intersections, bool) and not (isinstance(intersections, list) and all(isinstance(c, list) for c in intersections)):
            raise ValueError(f"intersections must be true, false or a list of attribute lists, got {intersections!r}")
        self.intersections = intersections
        self.missing = missing
        self.positive_class = positive_class
        self.calibration_bins = calibration_bins

    def check(self, model: ModelHandle, data: AuditData) -> str | None:
        reason = super().check(model, data)
        if reason is None and not data.sensitive:
            reason = "the data declares no sensitive attributes (data.sensitive in the card)"
        return reason

    def _run(self, model: ModelHandle, data: AuditData, context: RunContext) -> GroupMetricsResult:
        pos, assumed = favourable_outcome(self.positive_class, data)
        combos = _combos(list(data.sensitive), self.intersections)
        population = context.population
        if population is not None:  # streamed data: every row of the file, as counts per atom (audits/large_data.py)
            if population.n_bins != self.calibration_bins:
                raise DataError(
                    f"The streamed counts have {population.n_bins} calibration bins, the probe asks for {self.calibration_bins}.",
                    fix="Run group_metrics through run_audit with the same spec.",
                )
            frame = population.atoms[list(dict.fromkeys(data.sensitive))].astype(str)  # type: ignore[index]  # one row per atom
            cell, n_cells, groupings = _groupings(frame, combos)
            context.report(0.1, "bootstrap from counts")
            stats = bootstrap_from_counts(population, cell, n_cells, pos, self.n_boot, context.rng(self.name))
        else:
            frame = sensitive_frame(data, list(data.sensitive), self.missing)
            cell, n_cells, groupings = _groupings(frame, combos)
            codes = row_codes(context.proba, data.y, cell, n_cells, positive_class=pos, n_bins=self.calibration_bins)
            context.report(0.1, "bootstrap")
            stats = bootstrap_statistics(codes, self.n_boot, context.rng(self.name))
        compute = binary_metrics if pos is not None else multiclass_metrics
        names = list(BINARY_METRICS if pos is not None else MULTICLASS_METRICS)

        overall_stats = stats.grouped(np.zeros(n_cells, dtype=np.int64), 1)
        overall = {m: v[:, 0] for m, v in compute(overall_stats).items()}
        overall_table = _overall_table(overall, names, self.ci)
        group_rows, disparity_rows, criteria_rows, fifths_rows, reliability_rows, reference_rows = [], [], [], [], [], []
        notes: list[str] = [assumed] if assumed else []
        chance: dict[str, dict] = {}
        for g in groupings:
            gstats: GroupStats = stats.grouped(g.group_of_cell, len(g.labels))
            values = compute(gstats)
            n = gstats.n[0]
            eligible = n >= self.min_group_size
            small = [f"{lab} (n={int(k)})" for lab, k, ok in zip(g.labels, n, eligible, strict=True) if not ok]
            if small:
                notes.append(f"{g.name}: insufficient data (< {self.min_group_size} rows) for {', '.join(small)}; left out of disparities.")
            group_rows.append(_group_table(g, n, eligible, values, names, self.ci))
            if len(g.columns) == 1:
                reliability_rows += _reliability_rows(g, gstats, eligible)
            ref, how = _reference(g, n, eligible, data.reference_groups)
            if how.startswith("declared") and not eligible[ref]:
                notes.append(f"{g.name}: the declared reference group {g.labels[ref]!r} has fewer than {self.min_group_size} rows; no comparisons to it.")
            reference_rows += _reference_rows(g, ref, how, gstats, values, eligible, names, self.ci, self.n_boot)
            disp = {m: disparity(values[m], overall[m], eligible) for m in names}
            disparity_rows += _disparity_rows(g, disp, eligible, names, self.ci)
            criteria_rows += _criteria_rows(g, disp, self.ci, binary=pos is not None)
            if pos is not None:
                fifths_rows.append(_four_fifths_row(g, disp["selection_rate"], self.ci))
            if int(eligible.sum()) >= CARDINALITY_WARNING:
                chance_rng = context.rng(f"{self.name}/{g.name}/chance")
                check = (
                    chance_gap_from_counts(population, cell, g.group_of_cell, eligible, pos, chance_rng, CHANCE_PERMUTATIONS)
                    if population is not None
                    else chance_gap(context.proba, data.y, g.group_of_cell[cell], eligible, pos, chance_rng)
                )
                chance[g.name] = check
                notes.append(_cardinality_note(g.name, check))
        if pos is None:
            notes.append(
                f"Multiclass model ({len(data.class_names)} classes): selection rate, TPR, FPR and precision are not defined "
                "without a favourable class, so groups are compared on accuracy, error rate, balanced accuracy (macro recall), "
                "mean confidence and calibration error. Set positive_class to audit one class one-vs-rest."
            )
        if frame.eq(MISSING_GROUP).any().any():
            notes.append(f"Missing sensitive values form their own group {MISSING_GROUP!r}.")
        groups = pd.concat(group_rows, ignore_index=True)
        return GroupMetricsResult(
            method=self.name,
            params=self.params,
            seed=context.seed,
            task="binary" if pos is not None else "multiclass",
            positive_class=None if pos is None else data.class_names[pos],
            favourable_declared=assumed is None,
            metrics=names,
            groupings=[g.name for g in groupings],
            overall=overall_table,
            groups=groups,
            disparities=pd.DataFrame(disparity_rows),
            criteria=pd.DataFrame(criteria_rows),
            four_fifths=pd.DataFrame(fifths_rows, columns=["grouping", "ratio", "lo", "hi", "lowest_group", "highest_group", "verdict", "conclusive"]),
            reliability=pd.DataFrame(reliability_rows, columns=["grouping", "group", "bin_low", "bin_high", "count", "confidence", "accuracy"]),
            reference=_with_q_values(pd.DataFrame(reference_rows, columns=REFERENCE_COLUMNS)),
            n_boot=self.n_boot,
            ci=self.ci,
            min_group_size=self.min_group_size,
            notes=notes,
            quality={"n_rows": int(len(data) if population is None else population.n), "n_cells": int(n_cells), **({"chance_gaps": chance} if chance else {})},
        )


def chance_gap(
    proba: np.ndarray,
    y: np.ndarray,
    group: np.ndarray,
    eligible: np.ndarray,
    positive_class: int | None,
    rng: np.random.Generator,
    n_perm: int = CHANCE_PERMUTATIONS,
) -> dict:
    """The largest gap between eligible groups, against the gaps of random groupings of the same sizes.

    The metric is the selection rate (binary: the positive class predicted) or else accuracy. With k
    groups there are k(k-1)/2 pairs, so the max-min gap grows by chance alone; shuffling the group
    labels over the rows (a permutation test) gives the gap that chance produces for these sizes.

    Returns
    -------
    dict
        ``n_groups``, ``metric``, ``gap`` (observed), ``chance_p95`` (95th percentile of the shuffled
        gaps) and ``p_value`` (share of shuffles with a gap at least as large, with the +1 correction).
    """
    pred = proba.argmax(axis=1)
    hit = (pred == positive_class) if positive_class is not None else (pred == y)
    keep = eligible[group]
    codes = np.unique(group[keep], return_inverse=True)[1].reshape(-1)
    values = hit[keep].astype(np.float64)
    k = int(codes.max()) + 1
    sizes = np.bincount(codes, minlength=k)

    def gap(labels: np.ndarray) -> float:
        rates = np.bincount(labels, weights=values, minlength=k) / sizes
        return float(rates.max() - rates.min())

    observed = gap(codes)
    shuffled = np.array([gap(rng.permutation(codes)) for _ in range(n_perm)])
    return chance_gap_summary(k, positive_class, observed, shuffled)


def chance_gap_summary(n_groups: int, positive_class: int | None, observed: float, shuffled: np.ndarray) -> dict:
    """``chance_gap``'s record from the observed gap and the shuffled ones (rows or counts shuffled alike)."""
    return {
        "n_groups": n_groups,
        "metric": "selection_rate" if positive_class is not None else "accuracy",
        "gap": observed,
        "chance_p95": float(np.quantile(shuffled, 0.95)),
        "p_value": float((1 + np.sum(shuffled >= observed)) / (1 + len(shuffled))),
    }


def _cardinality_note(grouping: str, c: dict) -> str:
    metric = c["metric"].replace("_", " ")
    verdict = (
        "the gap is within what random groupings give: treat it as noise, not as a disparity"
        if c["p_value"] > 0.05
        else "the gap exceeds what random groupings give"
    )
    return (
        f"Cardinality warning: {grouping} has {c['n_groups']} groups. With {c['n_groups'] * (c['n_groups'] - 1) // 2} pairs the largest gap "
        f"grows by chance alone (multiple comparisons): the {metric} gap {c['gap']:.3f} against {c['chance_p95']:.3f} at the 95th percentile "
        f"of random groupings of the same sizes (permutation p = {c['p_value']:.2f}); {verdict}. Merge small levels or audit fewer groups."
    )


REFERENCE_COLUMNS = [
    "grouping", "reference_group", "reference_source", "group", "status", "metric", "value", "reference_value",
    "difference", "difference_lo", "difference_hi", "ratio", "ratio_lo", "ratio_hi", "test", "p_value",
]  # fmt: skip
# Rates as (numerator, denominator) of the outcome counts (tn, fp, fn, tp): these get Fisher's exact test.
_RATE_COUNTS = {
    "selection_rate": (("tp", "fp"), ("tp", "fp", "fn", "tn")),
    "base_rate": (("tp", "fn"), ("tp", "fp", "fn", "tn")),
    "accuracy": (("tp", "tn"), ("tp", "fp", "fn", "tn")),
    "tpr": (("tp",), ("tp", "fn")),
    "fnr": (("fn",), ("tp", "fn")),
    "fpr": (("fp",), ("fp", "tn")),
    "tnr": (("tn",), ("fp", "tn")),
    "precision": (("tp",), ("tp", "fp")),
    "fdr": (("fp",), ("tp", "fp")),
    "npv": (("tn",), ("tn", "fn")),
    "for": (("fn",), ("tn", "fn")),
}


def _reference(g: _Grouping, n: np.ndarray, eligible: np.ndarray, declared: dict[str, str]) -> tuple[int, str]:
    """The reference group of a grouping: declared in the card (single attributes), else the largest group."""
    if len(g.columns) == 1 and g.columns[0] in declared:
        name = declared[g.columns[0]]
        if name not in g.labels:
            raise DataError(
                f"The card's reference group {name!r} for {g.columns[0]!r} is not a value in the data (values: {g.labels[:12]}).",
                fix=f"Set data.reference_groups.{g.columns[0]} in the card to one of the values present.",
            )
        return g.labels.index(name), "declared in the card"
    sizes = np.where(eligible, n, -1) if eligible.any() else n
    return int(np.argmax(sizes)), "largest group"


def _outcome_counts(stats: GroupStats, k: int) -> dict[str, float]:
    o = stats.outcome[0, k]
    if o.shape[0] != 2:  # multiclass: (true class, correct)
        correct, total = float(o[:, 1].sum()), float(o.sum())
        return {"correct": correct, "total": total}
    return {"tn": float(o[0, 0]), "fp": float(o[0, 1]), "fn": float(o[1, 0]), "tp": float(o[1, 1])}


def _rate_test(metric: str, a: dict[str, float], b: dict[str, float]) -> float:
    if metric in _RATE_COUNTS and "tp" in a:
        num, den = _RATE_COUNTS[metric]
        return fisher_exact_p(sum(a[c] for c in num), sum(a[c] for c in den), sum(b[c] for c in num), sum(b[c] for c in den))
    if metric in ("accuracy", "error_rate") and "correct" in a:
        return fisher_exact_p(a["correct"], a["total"], b["correct"], b["total"])
    return float("nan")


def _reference_rows(
    g: _Grouping, ref: int, how: str, stats: GroupStats, values: dict[str, np.ndarray], eligible: np.ndarray, names: list[str], ci: float, n_boot: int
) -> list[dict]:
    """Each other group against the reference: difference and ratio with bootstrap intervals (the same resamples)
    and a two-sided test: Fisher's exact test for rates (counts), else the bootstrap (share of resamples on either side of 0)."""
    rows = []
    ref_counts = _outcome_counts(stats, ref)
    for k, label in enumerate(g.labels):
        if k == ref:
            continue
        ok = bool(eligible[k] and eligible[ref])
        counts = _outcome_counts(stats, k)
        # Every metric's difference and ratio in one interval call each (the quantiles are per column).
        diffs = np.stack([values[m][:, k] - values[m][:, ref] for m in names], axis=1)
        ratios = np.stack([_ratio(values[m][:, k], values[m][:, ref]) for m in names], axis=1)
        (dlos, dhis), (rlos, rhis) = _interval(diffs, ci), _interval(ratios, ci)
        for i, m in enumerate(names):
            v = values[m]
            diff, ratio = diffs[:, i], ratios[:, i]
            dlo, dhi, rlo, rhi = dlos[i : i + 1], dhis[i : i + 1], rlos[i : i + 1], rhis[i : i + 1]
            test, p = "fisher_exact", _rate_test(m, counts, ref_counts)
            if test == "fisher_exact" and not np.isfinite(p) and not (m in _RATE_COUNTS or m == "error_rate"):
                test, p = "bootstrap", _bootstrap_p(diff)
            nan = float("nan")
            rows.append({
                "grouping": g.name, "reference_group": g.labels[ref], "reference_source": how, "group": label,
                "status": "ok" if ok else INSUFFICIENT, "metric": m,
                "value": float(v[0, k]) if ok else nan, "reference_value": float(v[0, ref]) if eligible[ref] else nan,
                "difference": float(diff[0]) if ok else nan, "difference_lo": float(dlo[0]) if ok else nan, "difference_hi": float(dhi[0]) if ok else nan,
                "ratio": float(ratio[0]) if ok else nan, "ratio_lo": float(rlo[0]) if ok else nan, "ratio_hi": float(rhi[0]) if ok else nan,
                "test": test if ok else "-", "p_value": p if ok else nan,
            })  # fmt: skip
    return rows


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = np.full(a.shape, np.nan)
    np.divide(a, b, out=out, where=np.isfinite(a) & np.isfinite(b) & (b > 0))
    return out


def _bootstrap_p(diff: np.ndarray) -> float:
    """Two-sided bootstrap p-value of a difference: twice the share of resamples on the far side of 0 (NaN without resamples)."""
    d = diff[1:]
    d = d[np.isfinite(d)]
    if len(d) < 2:
        return float("nan")
    return float(min(1.0, 2.0 * min((d <= 0).mean(), (d >= 0).mean())))


def _with_q_values(frame: pd.DataFrame) -> pd.DataFrame:
    """Benjamini-Hochberg q-values within each grouping (many groups x metrics are tested at once)."""
    frame = frame.copy()
    frame["q_value"] = np.nan
    for _, idx in frame.groupby("grouping", sort=False).groups.items():
        frame.loc[idx, "q_value"] = benjamini_hochberg(frame.loc[idx, "p_value"].to_numpy(dtype=np.float64))
    return frame


def _reliability_rows(g: _Grouping, stats: GroupStats, eligible: np.ndarray) -> list[dict]:
    """Per eligible group, its reliability curve: per confidence bin, rows, mean confidence and accuracy (as the performance section's)."""
    counts = stats.calibration[0].sum(axis=-1)  # (G, B)
    correct = stats.calibration[0][..., 1]
    confidence = stats.confidence_sum[0]
    n_bins = counts.shape[1]
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    rows = []
    for k, label in enumerate(g.labels):
        if not eligible[k]:
            continue
        for b in np.flatnonzero(counts[k] > 0):
            c = float(counts[k, b])
            rows.append({
                "grouping": g.name, "group": label, "bin_low": float(edges[b]), "bin_high": float(edges[b + 1]), "count": int(c),
                "confidence": float(confidence[k, b] / c), "accuracy": float(correct[k, b] / c),
            })  # fmt: skip
    return rows


def _interval(samples: np.ndarray, ci: float) -> tuple[np.ndarray, np.ndarray]:
    if len(samples) < 2:  # no resamples: point estimates only
        nan = np.full(samples.shape[1:], np.nan)
        return nan, nan.copy()
    return percentile_interval(samples[1:], ci)


def _overall_table(overall: dict[str, np.ndarray], names: list[str], ci: float) -> pd.DataFrame:
    rows = []
    for m in names:
        lo, hi = _interval(overall[m], ci)
        rows.append({"metric": m, "value": float(overall[m][0]), "lo": float(lo), "hi": float(hi)})
    return pd.DataFrame(rows)


def _group_table(g: _Grouping, n: np.ndarray, eligible: np.ndarray, values: dict[str, np.ndarray], names: list[str], ci: float) -> pd.DataFrame:
    table = pd.DataFrame({"grouping": g.name, "group": g.labels, "n": n.astype(np.int64), "status": np.where(eligible, "ok", INSUFFICIENT)})
    los, his = _interval(np.stack([values[m] for m in names], axis=1), ci)
    for m, lo, hi in zip(names, los, his, strict=True):
        # An insufficient group's rate is not reported (a group of one is not "a rate of 0 or 1").
        table[m] = np.where(eligible, values[m][0], np.nan)
        table[f"{m}_lo"] = np.where(eligible, lo, np.nan)
        table[f"{m}_hi"] = np.where(eligible, hi, np.nan)
    return table


def _label(g: _Grouping, index: int | None) -> str | None:
    return None if index is None else g.labels[index]


def _worst_best(g: _Grouping, metric: str, d: Disparity) -> tuple[str | None, str | None]:
    direction = DIRECTION[metric]
    if direction == 0:
        return None, None
    worst, best = (d.low, d.high) if direction > 0 else (d.high, d.low)
    return _label(g, worst), _label(g, best)


def _disparity_rows(g: _Grouping, disp: dict[str, Disparity], eligible: np.ndarray, names: list[str], ci: float) -> list[dict]:
    rows = []
    for m in names:
        d = disp[m]
        worst, best = _worst_best(g, m, d)
        row = {"grouping": g.name, "metric": m, "n_groups": int(eligible.sum()), "worst_group": worst, "best_group": best}
        stacked = np.stack([getattr(d, measure) for measure in _MEASURES], axis=1)
        los, his = _interval(stacked, ci)  # one call for the measures (the quantiles are per column)
        for i, measure in enumerate(_MEASURES):
            row[measure], row[f"{measure}_lo"], row[f"{measure}_hi"] = float(stacked[0, i]), float(los[i]), float(his[i])
        rows.append(row)
    return rows


def _criteria_rows(g: _Grouping, disp: dict[str, Disparity], ci: float, *, binary: bool) -> list[dict]:
    def row(criterion: str, samples: np.ndarray, worst: str | None, definition: str) -> dict:
        lo, hi = _interval(samples, ci)
        return {
            "grouping": g.name,
            "criterion": criterion,
            "value": float(samples[0]),
            "lo": float(lo),
            "hi": float(hi),
            "worst_group": worst,
            "definition": definition,
        }

    def worst(m: str) -> str | None:
        return _worst_best(g, m, disp[m])[0]

    if not binary:
        return [
            row("equal_accuracy_gap", disp["accuracy"].difference, worst("accuracy"), "max - min accuracy between groups"),
            row("balanced_accuracy_gap", disp["balanced_accuracy"].difference, worst("balanced_accuracy"), "max - min macro recall between groups"),
            row("calibration_gap", disp["calibration_error"].difference, worst("calibration_error"), "max - min calibration error between groups"),
        ]
    tpr, fpr = disp["tpr"].difference, disp["fpr"].difference
    # Equalized odds (fairlearn's worst case): the larger of the TPR and FPR gaps, per resample.
    odds = np.where(np.isnan(tpr) | np.isnan(fpr), np.nan, np.maximum(tpr, fpr))
    odds_worst = worst("fpr") if fpr[0] > tpr[0] else worst("tpr")
    return [
        row("demographic_parity_difference", disp["selection_rate"].difference, worst("selection_rate"), "max - min selection rate between groups"),
        row("demographic_parity_ratio", disp["selection_rate"].ratio, worst("selection_rate"), "min / max selection rate between groups"),
        row("equalized_odds_difference", odds, odds_worst, "max of the TPR gap and the FPR gap between groups"),
        row("equal_opportunity_difference", tpr, worst("tpr"), "max - min true positive rate between groups"),
        row("equal_accuracy_gap", disp["accuracy"].difference, worst("accuracy"), "max - min accuracy between groups"),
    ]


def _four_fifths_row(g: _Grouping, d: Disparity, ci: float) -> dict:
    lo, hi = _interval(d.ratio, ci)
    value = float(d.ratio[0])
    verdict = "n/a" if not np.isfinite(value) else ("pass" if value >= FOUR_FIFTHS else "fail")
    # Conclusive when the whole interval lies on the verdict's side of 0.8.
    conclusive = bool(np.isfinite(lo) and np.isfinite(hi) and (lo >= FOUR_FIFTHS or hi < FOUR_FIFTHS))
    return {
        "grouping": g.name,
        "ratio": value,
        "lo": float(lo),
        "hi": float(hi),
        "lowest_group": _label(g, d.low),
        "highest_group": _label(g, d.high),
        "verdict": verdict,
        "conclusive": conclusive,
    }
