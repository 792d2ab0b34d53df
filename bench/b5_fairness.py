"""B5: group metrics with bootstrap intervals on Adult: ours vs fairlearn's ``MetricFrame(n_boot=1000)``.

Both get the model's predictions on the 16,281 evaluation rows (the audit's shared forward
pass, not timed) and the sex x race groups. fairlearn computes 5 metrics (selection rate,
accuracy, TPR, FPR, precision) on the intersectional groups and 1000 bootstrap
resamples, one MetricFrame per resample; ours (the ``group_metrics`` probe) computes its 8
metrics on sex, race and sex x race, disparities and criteria, from the same number of
resamples drawn the same way. fairlearn's run is extrapolated from fewer resamples when it
would exceed the time budget. Quality: the largest difference between our point estimates
and fairlearn's over every (group, metric) where both are defined (they must match), and
the mean difference of the 95% interval bounds (different random resamples, so only close).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
from fairlearn.metrics import MetricFrame, false_positive_rate, selection_rate, true_positive_rate
from sklearn.metrics import accuracy_score, precision_score

from audits.fairness.group_metrics import GroupMetrics
from audits.probes import RunContext
from bench.harness import CaseResult, Check, Config, measure, set_ratios, zoo

CASE = "B5"
TITLE = "Fairness metrics with bootstrap intervals, Adult: 5 metrics, sex x race, 1000 resamples"
SENSITIVE = ["sex", "race"]
METRICS = {
    "selection_rate": selection_rate,
    "accuracy": accuracy_score,
    "tpr": true_positive_rate,
    "fpr": false_positive_rate,
    "precision": precision_score,
}
QUANTILES = [0.025, 0.975]


def point_difference(ours: pd.DataFrame, theirs: pd.DataFrame, denominators: pd.DataFrame) -> float:
    """max |ours - fairlearn| over (group, metric) where ours is defined and fairlearn's denominator is not empty."""
    worst = 0.0
    for metric in METRICS:
        for group, value in theirs[metric].items():
            label = " & ".join(group) if isinstance(group, tuple) else str(group)
            mine = ours.loc[ours["group"] == label, metric]
            if len(mine) and np.isfinite(mine.iloc[0]) and denominators.loc[group, metric] > 0:
                worst = max(worst, abs(float(mine.iloc[0]) - float(value)))
    return worst


def run(config: Config) -> CaseResult:
    model, data = zoo("adult-mlp")
    n_boot = 5 if config.quick else 1000
    rows_used = np.arange(1000) if config.quick else np.arange(len(data))
    data = dataclasses.replace(data.subset(rows_used), sensitive=SENSITIVE)
    proba = model.predict_proba(data.x)
    y_true = data.y
    y_pred = proba.argmax(axis=1)
    features = data.attributes[SENSITIVE].astype(str)
    meters = [model.meter]

    def ours(n: int):
        probe = GroupMetrics(n_boot=n, intersections=[SENSITIVE], min_group_size=1)
        return probe.run(model, data, RunContext(seed=config.seed, proba=proba, sample_indices=np.zeros(0, dtype=np.int64)))

    def fairlearn(n: int) -> MetricFrame:
        return MetricFrame(metrics=METRICS, y_true=y_true, y_pred=y_pred, sensitive_features=features,
                           n_boot=n or None, ci_quantiles=QUANTILES if n else None, random_state=config.seed)  # fmt: skip

    ours_m = measure(CASE, "ours", ours, units=n_boot, unit="resamples", meters=meters, config=config,
                     note="group_metrics probe: 8 metrics on sex, race and sex x race, disparities, criteria")  # fmt: skip
    theirs_m = measure(CASE, f"fairlearn MetricFrame(n_boot={n_boot})", fairlearn, units=n_boot, unit="resamples", meters=meters, config=config,
                       pilot=2, note="5 metrics on sex x race; one MetricFrame per resample")  # fmt: skip
    result = ours_m.output
    table = result.table(" x ".join(SENSITIVE))
    frame: MetricFrame = theirs_m.output
    point = frame.by_group
    # Denominators per group and metric, to leave out rates fairlearn reports as 0 for an empty group.
    positives = pd.Series(y_true == 1).groupby([features[c] for c in SENSITIVE]).sum()
    negatives = pd.Series(y_true == 0).groupby([features[c] for c in SENSITIVE]).sum()
    predicted = pd.Series(y_pred == 1).groupby([features[c] for c in SENSITIVE]).sum()
    counts = pd.Series(np.ones(len(y_true))).groupby([features[c] for c in SENSITIVE]).sum()
    denominators = pd.DataFrame({"selection_rate": counts, "accuracy": counts, "tpr": positives, "fpr": negatives, "precision": predicted})
    point_diff = point_difference(table, point, denominators)
    bound_diffs = []
    if frame.ci_quantiles is not None:
        for metric in METRICS:
            lo, hi = frame.by_group_ci[0][metric], frame.by_group_ci[1][metric]
            for group in lo.index:
                label = " & ".join(group)
                mine = table[table["group"] == label]
                if len(mine) and np.isfinite(mine[f"{metric}_lo"].iloc[0]) and denominators.loc[group, metric] >= 30:
                    bound_diffs += [abs(mine[f"{metric}_lo"].iloc[0] - lo[group]), abs(mine[f"{metric}_hi"].iloc[0] - hi[group])]
    quality = {"point_max_abs_diff": point_diff, "ci_bound_mean_abs_diff": float(np.mean(bound_diffs)) if bound_diffs else None}
    ours_m.row.quality = dict(quality)
    theirs_m.row.quality = dict(quality)
    rows = [ours_m.row, theirs_m.row]
    set_ratios(rows)
    ratio = theirs_m.row.ratio_to_ours or 0.0
    checks = [
        Check(CASE, ">= 20x faster than fairlearn's bootstrap", ratio, ratio >= 20),
        Check(CASE, "point estimates equal fairlearn's (max |difference| < 1e-9)", point_diff, point_diff < 1e-9),
    ]
    notes = [
        f"{len(data)} rows; {int(counts.size)} sex x race groups; intervals compared where a group has >= 30 rows in the metric's denominator.",
        "fairlearn reports 0 for a rate with an empty denominator where ours reports NaN; those cells are left out of the comparison.",
    ]
    return CaseResult(CASE, TITLE, rows, checks, notes)
