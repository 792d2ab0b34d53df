"""Clean performance (accuracy, per-class metrics, confusion, calibration): its charts and document blocks."""

from __future__ import annotations

import numpy as np

from audits.render.blocks import KeyValues, RenderContext, ci, figure, frame_table, num
from audits.render.charts import REFERENCE, BarChart, HeatmapChart, LineChart, Series, pretty
from audits.render.registry import view
from audits.results.performance import PerformanceResult
from audits.stats import wilson

# ---------------------------------------------------------------------------- charts


def reliability_chart(performance) -> LineChart:
    """Reliability diagram: accuracy against mean confidence per confidence bin."""
    t = performance.reliability
    t = t[t["count"] > 0]
    text = [f"{int(c)} rows" for c in t["count"]]
    return LineChart(
        title=f"Reliability (ECE {performance.ece:.3f})",
        x_label="mean confidence in bin",
        y_label="accuracy in bin",
        series=[
            Series(REFERENCE, [0.0, 1.0], [0.0, 1.0], mode="lines", dash=True),
            Series("model", list(t["confidence"]), list(t["accuracy"]), text=text),
        ],
        x_range=(0.0, 1.0),
        y_range=(0.0, 1.02),
    )


def confusion_chart(performance, class_names: list[str]) -> HeatmapChart:
    """Confusion matrix as the share of each true class (rows), with counts."""
    cm = np.asarray(performance.confusion, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = cm / cm.sum(axis=1, keepdims=True)
    notes = np.array([[f"{int(v)}" for v in row] for row in cm], dtype=object) if len(class_names) <= 12 else None
    return HeatmapChart(
        title="Confusion matrix (share of each true class; counts in cells)",
        x_label="predicted class",
        y_label="true class",
        x_labels=list(class_names),
        y_labels=list(class_names),
        values=share,
        colorbar="share of true class",
        zmin=0.0,
        zmax=1.0,
        annotations=notes,
        height=min(1.2 + 0.32 * len(class_names), 5.0),
    )


def per_class_chart(performance) -> BarChart:
    """Precision, recall and F1 per class."""
    t = performance.per_class
    cats = [str(c) for c in t["class"]]
    return BarChart(
        title="Per-class precision, recall and F1",
        categories=cats,
        series=[Series(pretty(m), cats, list(t[m])) for m in ("precision", "recall", "f1")],
        value_label="score (0-1)",
        horizontal=False,
        value_range=(0.0, 1.05),
        height=2.8,
    )


# ---------------------------------------------------------------------------- view


@view(PerformanceResult)
def performance_view(perf: PerformanceResult, ctx: RenderContext) -> list:
    """Headline metrics with the accuracy's Wilson interval, the per-class table, the confusion matrix (up to 30 classes) and the calibration."""
    acc_ci = wilson(perf.accuracy, perf.n)
    items = [
        ("Accuracy", ci(perf.accuracy, *(acc_ci or [None, None])) + " (95% Wilson interval)"),
        ("Balanced accuracy", num(perf.balanced_accuracy)),
        ("Expected calibration error (10 bins)", num(perf.ece)),
        ("Mean confidence", num(perf.mean_confidence)),
        ("Rows", f"{perf.n:,}"),
    ]
    blocks: list = [KeyValues(items)]
    blocks += frame_table(perf.per_class, caption="Per-class metrics")
    if len(ctx.class_names) <= 30:
        blocks += figure(confusion_chart(perf, ctx.class_names))
    blocks += figure(per_class_chart(perf))
    blocks += figure(reliability_chart(perf), empty="No confidence bin has rows.")
    return blocks


def _threshold_series(curves, threshold: float, x_of, y_of, *, start_at_zero: bool, max_points: int = 400) -> list[Series]:
    """One line per group (thinned to ``max_points``) and the point at ``threshold`` on each."""
    out = []
    for k, c in enumerate(curves, start=1):  # slot 0 is the ROC chart's chance line
        first = 0.0 if start_at_zero or not len(y_of(c)) else y_of(c)[0]
        xs, ys = np.r_[0.0, x_of(c)], np.r_[first, y_of(c)]
        step = max(1, len(xs) // max_points)
        keep = np.r_[np.arange(0, len(xs), step), len(xs) - 1]
        out.append(Series(f"{c.group} (n={c.n:,})", list(xs[keep]), list(ys[keep]), mode="lines", color=k))
    for k, c in enumerate(curves, start=1):  # each group's point in its line's colour, the same slot on both charts
        at = c.at(threshold)
        x, y = x_of(at), y_of(at)
        out.append(
            Series(
                f"{c.group} at {threshold:.2f}",
                [float(x)],
                [float(np.nan_to_num(y))],
                mode="markers",
                text=[f"{c.group}: threshold {threshold:.2f}"],
                color=k,
            )
        )
    return out


def roc_chart(curves, threshold: float, positive: str) -> LineChart:
    """ROC curves (TPR against FPR) per group, with each group's point at ``threshold``."""
    return LineChart(
        title=f"ROC for '{positive}' (AUC overall {curves[0].auc:.3f})",
        x_label="false positive rate",
        y_label="true positive rate",
        series=[Series("chance (random scores)", [0.0, 1.0], [0.0, 1.0], mode="lines", dash=True)]
        + _threshold_series(
            curves, threshold, lambda c: c["fpr"] if isinstance(c, dict) else c.fpr, lambda c: c["tpr"] if isinstance(c, dict) else c.tpr, start_at_zero=True
        ),
        x_range=(0.0, 1.0),
        y_range=(0.0, 1.02),
    )


def precision_recall_chart(curves, threshold: float, positive: str) -> LineChart:
    """Precision against recall per group, with each group's point at ``threshold``."""
    return LineChart(
        title=f"Precision-recall for '{positive}'",
        x_label="recall (true positive rate)",
        y_label="precision",
        series=_threshold_series(
            curves,
            threshold,
            lambda c: c["tpr"] if isinstance(c, dict) else c.tpr,
            lambda c: c["precision"] if isinstance(c, dict) else c.precision,
            start_at_zero=False,
        ),
        x_range=(0.0, 1.0),
        y_range=(0.0, 1.02),
    )
