"""Fairness results (group metrics, counterfactual flips, proxies, mitigation preview, attribution disparity, identity terms): their charts and document blocks."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from audits.render.blocks import MAX_TABLE_ROWS, Paragraph, RenderContext, Table, chunks, ci, figure, frame_table, num
from audits.render.charts import BarChart, HeatmapChart, LineChart, RefLine, Series, pretty
from audits.render.registry import view
from audits.results.fairness import (
    AttributionDisparityResult,
    CounterfactualFlipResult,
    GroupMetricsResult,
    IdentityTermResult,
    IndividualFairnessResult,
    MitigationPreviewResult,
    ProxyFeaturesResult,
    ThresholdSweepResult,
)

# ---------------------------------------------------------------------------- charts


def group_metric_chart(result, grouping: str, metrics: Sequence[str] | None = None) -> BarChart:
    """Per group of one grouping: a few metrics with their bootstrap intervals."""
    metrics = list(metrics or _main_metrics(result))
    t = result.table(grouping)
    t = t[t["status"] == "ok"]
    groups = [f"{g} (n={int(n)})" for g, n in zip(t["group"], t["n"], strict=True)]
    series = [Series(pretty(m), groups, list(t[m]), list(t[f"{m}_lo"]), list(t[f"{m}_hi"])) for m in metrics if m in t]
    return BarChart(
        title=f"{grouping}: metrics per group ({int(result.ci * 100)}% intervals)",
        categories=groups,
        series=series,
        value_label="rate (0-1)",
        value_range=(0.0, 1.05),
        height=0.9 + 0.22 * len(groups) * len(series) ** 0.5,
    )


def _main_metrics(result) -> list[str]:
    wanted = ("selection_rate", "tpr", "fpr", "accuracy") if result.task == "binary" else ("accuracy", "balanced_accuracy", "calibration_error")
    return [m for m in wanted if m in result.metrics]


def group_reliability_chart(result, grouping: str) -> LineChart:
    """Calibration within groups: each eligible group's reliability curve (accuracy against confidence per bin)."""
    t = result.reliability[result.reliability["grouping"] == grouping] if len(result.reliability) else result.reliability
    ece = result.table(grouping).set_index("group")["calibration_error"]
    series = [Series("perfect calibration", [0.0, 1.0], [0.0, 1.0], mode="lines", dash=True)]
    for group, rows in t.groupby("group", sort=False):
        series.append(
            Series(
                f"{group} (ECE {ece.get(group, float('nan')):.3f})",
                list(rows["confidence"]),
                list(rows["accuracy"]),
                text=[f"{int(c)} rows" for c in rows["count"]],
            )
        )
    return LineChart(
        title=f"{grouping}: calibration within groups (reliability per group)",
        x_label="mean confidence in bin",
        y_label="accuracy in bin",
        series=series,
        x_range=(0.0, 1.0),
        y_range=(0.0, 1.02),
    )


def disparity_chart(result, groupings: Sequence[str] | None = None, metrics: Sequence[str] | None = None) -> BarChart:
    """Max - min difference between groups per metric, one colour per grouping, with intervals."""
    d = result.disparities
    groupings = list(groupings or [g for g in result.groupings if " x " not in g])
    metrics = [m for m in (metrics or result.metrics) if m in set(d["metric"])]
    cats = [pretty(m) for m in metrics]
    series = []
    for g in groupings:
        rows = d[d["grouping"] == g].set_index("metric").reindex(metrics)
        series.append(Series(g, cats, list(rows["difference"]), list(rows["difference_lo"]), list(rows["difference_hi"])))
    return BarChart(
        title=f"Disparities between groups (max - min, {int(result.ci * 100)}% intervals)",
        categories=cats,
        series=series,
        value_label="difference between best and worst group",
        height=0.9 + 0.22 * len(cats) * max(len(series), 1) ** 0.5,
    )


def four_fifths_chart(result, threshold: float = 0.8) -> BarChart:
    """Selection-rate ratio (lowest / highest group) per grouping against the four-fifths line."""
    t = result.four_fifths
    cats = list(t["grouping"])
    return BarChart(
        title=f"Four-fifths rule: selection-rate ratio ({int(result.ci * 100)}% intervals)",
        categories=cats,
        series=[Series("ratio", cats, list(t["ratio"]), list(t["lo"]), list(t["hi"]))],
        value_label="lowest / highest group selection rate",
        ref_lines=[RefLine(threshold, f"four-fifths ({threshold:g})", axis="x")],
        value_range=(0.0, 1.05),
        height=0.9 + 0.3 * len(cats),
    )


def counterfactual_chart(result) -> BarChart:
    """Counterfactual flip rate per attribute and original group, with Wilson intervals."""
    t = result.by_group
    cats = [f"{a}: {g}" for a, g in zip(t["attribute"], t["group"], strict=True)]
    return BarChart(
        title=f"Decisions that change when only the sensitive input changes ({int(result.ci * 100)}% intervals)",
        categories=cats,
        series=[Series("flip rate", cats, list(t["flip_rate"]), list(t["lo"]), list(t["hi"]))],
        value_label="share of decisions that change",
        height=0.9 + 0.24 * len(cats),
    )


def proxy_chart(result, *, top_k: int = 5) -> BarChart:
    """Normalized mutual information of the top features with each sensitive attribute."""
    mi = result.mutual_information
    mi = mi[~mi["sensitive"].astype(bool)] if "sensitive" in mi else mi
    rows = mi.sort_values(["attribute", "rank"]).groupby("attribute", sort=False).head(top_k)
    cats = [f"{a}: {f}" for a, f in zip(rows["attribute"], rows["feature"], strict=True)]
    return BarChart(
        title="Possible proxies: information each feature carries about a sensitive attribute",
        categories=cats,
        series=[Series("normalized MI", cats, list(rows["normalized_mi"]))],
        value_label="normalized mutual information (0-1)",
        ref_lines=[RefLine(result.threshold, f"proxy threshold {result.threshold:g}", axis="x")],
        height=0.9 + 0.22 * len(cats),
    )


def mitigation_chart(result, attribute: str) -> LineChart:
    """Held-out accuracy against the demographic-parity difference for each post-processing setting."""
    t = result.curve[result.curve["attribute"] == attribute]
    series = []
    for (method, constraint), rows in t.groupby(["method", "constraint"], sort=False):
        name = pretty(method) if method == "unmitigated" else f"{pretty(method)} ({pretty(constraint)})"
        text = [f"setting {s:g}" for s in rows["setting"]]
        series.append(
            Series(name, list(rows["dp_difference"]), list(rows["accuracy"]), mode="markers" if method == "unmitigated" else "lines+markers", text=text)
        )
    return LineChart(
        title=f"{attribute}: accuracy against demographic-parity difference (PREVIEW)",
        x_label="demographic-parity difference (max - min selection rate)",
        y_label="held-out accuracy",
        series=series,
    )


def attribution_disparity_chart(result) -> BarChart:
    """Divergence of each group's attribution shares from the rest, against chance."""
    s = result.summary
    s = s[s["status"] == "ok"]
    cats = [f"{pretty(m)} {a}={g}" for m, a, g in zip(s["method"], s["attribute"], s["group"], strict=True)]
    return BarChart(
        title=f"Attribution divergence per group vs chance ({int(result.ci * 100)}% intervals)",
        categories=cats,
        series=[Series("divergence", cats, list(s["divergence"]), list(s["lo"]), list(s["hi"])), Series("chance", cats, list(s["chance"]))],
        value_label="total-variation distance of attribution shares (0-1)",
        height=0.9 + 0.26 * len(cats),
    )


def identity_term_chart(result, *, top_k: int = 40) -> BarChart:
    """Mean score shift when a text is made to name each identity group (the ``top_k`` largest |shifts|)."""
    g = result.groups.dropna(subset=["mean_shift"])
    shown = g.loc[g["mean_shift"].abs().sort_values(ascending=False).index[:top_k]].sort_index()
    cut = f" ({len(shown)} largest of {len(g)})" if len(shown) < len(g) else ""
    g = shown
    cats = [f"{src}: {cat}/{grp}" for src, cat, grp in zip(g["source"], g["category"], g["group"], strict=True)]
    return BarChart(
        title=f"Score shift when only the identity term changes{cut}",
        categories=cats,
        series=[Series("mean shift", cats, list(g["mean_shift"]))],
        value_label="mean change of the score (counterfactual - original)",
        ref_lines=[RefLine(0.0, "", axis="x")],
        signed_colors=True,
        height=0.9 + 0.22 * len(cats),
    )


def identity_term_flip_chart(result, *, top_k: int = 40) -> BarChart | None:
    """Share of decisions that change when a text is made to name each identity group, with Wilson intervals (the ``top_k`` highest)."""
    g = result.groups.dropna(subset=["flip_rate"])
    if g.empty:
        return None
    shown = g.loc[g["flip_rate"].sort_values(ascending=False, kind="stable").index[:top_k]].sort_index()
    cut = f" ({len(shown)} highest of {len(g)})" if len(shown) < len(g) else ""
    cats = [f"{src}: {cat}/{grp}" for src, cat, grp in zip(shown["source"], shown["category"], shown["group"], strict=True)]
    return BarChart(
        title=f"Decisions that change when only the identity term changes{cut}",
        categories=cats,
        series=[Series("flip rate", cats, list(shown["flip_rate"]), lo=list(shown["lo"]), hi=list(shown["hi"]))],
        value_label=f"share of decisions that change ({result.ci:.0%} interval)",
        value_range=(0.0, 1.0),
        height=0.9 + 0.22 * len(cats),
    )


def intersection_heatmap_chart(result, grouping: str, metric: str, *, separator: str = " & ") -> HeatmapChart:
    """``GroupMetricsResult``: one metric over a two-way intersection ('sex x race') as a heatmap.

    Rows are the first attribute's groups, columns the second's; each cell shows the value,
    its interval and n; cells with too few rows (or none) are left blank and say so.
    """
    parts = grouping.split(" x ")
    if len(parts) != 2:
        raise ValueError(f"{grouping!r} is not a two-way intersection ('a x b'); pick one of the result's groupings that joins two attributes with ' x '")
    t = result.table(grouping)
    split = t["group"].astype(str).str.split(separator, n=1, expand=True)
    t = t.assign(first=split[0], second=split[1] if split.shape[1] > 1 else "")
    rows, cols = sorted(t["first"].unique()), sorted(t["second"].unique())
    z = np.full((len(rows), len(cols)), np.nan)
    text = np.full((len(rows), len(cols)), "no rows", dtype=object)
    for rec in t.to_dict("records"):
        i, j = rows.index(rec["first"]), cols.index(rec["second"])
        value = float(rec[metric])
        if rec["status"] == "ok" and np.isfinite(value):
            z[i, j] = value
            lo, hi = float(rec.get(f"{metric}_lo", np.nan)), float(rec.get(f"{metric}_hi", np.nan))
            text[i, j] = f"{value:.2f}\n[{lo:.2f}, {hi:.2f}]\nn={int(rec['n'])}" if np.isfinite(lo) else f"{value:.2f}\nn={int(rec['n'])}"
        else:
            text[i, j] = f"too few\nn={int(rec['n'])}"
    label = pretty(metric)
    return HeatmapChart(
        title=f"{label} by {parts[0]} and {parts[1]} ({int(result.ci * 100)}% intervals; blank: fewer than {result.min_group_size} rows)",
        x_label=parts[1],
        y_label=parts[0],
        x_labels=[str(c) for c in cols],
        y_labels=[str(r) for r in rows],
        values=z,
        colorbar=label,
        zmin=0.0,
        zmax=1.0,
        annotations=text,
        height=(130 + 62 * len(rows)) / 110,
    )


# ---------------------------------------------------------------------------- views


def _group_table(r, grouping: str, metrics: list[str]) -> Table:
    t = r.table(grouping)
    rows = []
    for rec in t.to_dict("records"):
        row = [str(rec["group"]), num(int(rec["n"]))]
        for m in metrics:
            row.append(ci(rec[m], rec[f"{m}_lo"], rec[f"{m}_hi"]) if rec["status"] == "ok" else "insufficient data")
        rows.append(row)
    return Table(
        ["Group", "n", *[pretty(m) for m in metrics]], rows, caption=f"{grouping}: per-group metrics ({int(r.ci * 100)}% bootstrap intervals)", numeric=[1]
    )


def _reference_blocks(r: GroupMetricsResult, groupings: list[str]) -> list:
    """Each group against its grouping's reference group, for the main metrics (report.json holds every metric)."""
    ref = r.reference
    if not len(ref):
        return []
    main = [m for m in ("selection_rate", "tpr", "fpr", "precision", "accuracy") if m in r.metrics] if r.task == "binary" else ["accuracy", "calibration_error"]
    ref = ref[ref["grouping"].isin(groupings) & ref["metric"].isin(main)]
    rows = []
    for rec in ref.to_dict("records"):
        ok = rec["status"] == "ok"
        rows.append([
            rec["grouping"], f"{rec['group']} vs {rec['reference_group']}", pretty(rec["metric"]),
            num(rec["value"]) if ok else "insufficient data", num(rec["reference_value"]),
            ci(rec["difference"], rec["difference_lo"], rec["difference_hi"]) if ok else "-",
            ci(rec["ratio"], rec["ratio_lo"], rec["ratio_hi"]) if ok else "-",
            num(rec["p_value"]) if ok else "-", num(rec["q_value"]) if ok else "-",
        ])  # fmt: skip
    if not rows:
        return []
    sources = "; ".join(
        f"{g}: {grp} ({src})" for g, grp, src in ref[["grouping", "reference_group", "reference_source"]].drop_duplicates().itertuples(index=False)
    )
    blocks: list = [
        Paragraph(
            f"Reference groups - {sources}. Each group is compared with its reference: difference (group - reference) and ratio (group / reference), with {int(r.ci * 100)}% bootstrap intervals, a two-sided test (Fisher's exact test for rates) and Benjamini-Hochberg q-values within the attribute.",
            "body",
        )
    ]
    blocks.append(
        Table(
            ["Grouping", "Group", "Metric", "Value", "Reference", "Difference", "Ratio", "p", "q"],
            rows[: MAX_TABLE_ROWS * 2],
            caption="Disparities to the reference group",
        )
    )
    if len(rows) > MAX_TABLE_ROWS * 2:
        blocks.append(Paragraph(f"First {MAX_TABLE_ROWS * 2} of {len(rows)} rows; report.json holds them all (every metric).", "note"))
    return blocks


@view(GroupMetricsResult)
def group_metrics_view(r: GroupMetricsResult, ctx: RenderContext) -> list:
    """Per-group tables and charts per grouping, disparities, fairness criteria, the four-fifths rule and intersectional groups."""
    singles = [g for g in r.groupings if " x " not in g]
    inter = [g for g in r.groupings if " x " in g]
    metrics = [m for m in r.metrics if f"{m}_lo" in r.groups]
    blocks: list = [
        Paragraph(
            f"Task: {r.task}"
            + (
                f", favourable class '{r.positive_class}'" + ("" if r.favourable_declared else " (assumed: class 1; the card declares no favourable_class)")
                if r.positive_class
                else ""
            )
            + f". Groups with fewer than {r.min_group_size} rows are "
            f"reported as insufficient data and left out of disparities. Intervals: {r.n_boot} bootstrap resamples."
        )
    ]
    for g in singles:
        for chunk in chunks(metrics, 4):
            blocks.append(_group_table(r, g, chunk))
        blocks += figure(group_metric_chart(r, g))
        if len(r.reliability) and (r.reliability["grouping"] == g).any():
            blocks += figure(group_reliability_chart(r, g))
    if singles:
        blocks += figure(disparity_chart(r, singles))
    d = r.disparities[r.disparities["grouping"].isin(singles)]
    rows = [
        [rec["grouping"], pretty(rec["metric"]), ci(rec["difference"], rec["difference_lo"], rec["difference_hi"]), ci(rec["ratio"], rec["ratio_lo"], rec["ratio_hi"]), str(rec["worst_group"]) if isinstance(rec["worst_group"], str) else "-", str(rec["best_group"]) if isinstance(rec["best_group"], str) else "-"]
        for rec in d.to_dict("records")
    ]  # fmt: skip
    if rows:
        blocks.append(Table(["Grouping", "Metric", "Difference (max - min)", "Ratio (min / max)", "Worst", "Best"], rows, caption="Disparities between groups"))
    blocks += _reference_blocks(r, singles)
    crit = r.criteria[r.criteria["grouping"].isin(singles)]
    if not crit.empty:
        rows = [
            [
                rec["grouping"],
                pretty(rec["criterion"]),
                ci(rec["value"], rec["lo"], rec["hi"]),
                str(rec["worst_group"]) if isinstance(rec["worst_group"], str) else "-",
                rec["definition"],
            ]
            for rec in crit.to_dict("records")
        ]
        blocks.append(Table(["Grouping", "Criterion", "Value", "Worst group", "Definition"], rows, caption="Fairness criteria"))
    if r.task == "binary" and not r.four_fifths.empty:
        ff = r.four_fifths
        rows = [
            [
                rec["grouping"],
                ci(rec["ratio"], rec["lo"], rec["hi"]),
                str(rec["lowest_group"]),
                str(rec["highest_group"]),
                rec["verdict"],
                "yes" if rec["conclusive"] else "no",
            ]
            for rec in ff.to_dict("records")
        ]
        blocks.append(
            Table(
                ["Grouping", "Selection-rate ratio", "Lowest group", "Highest group", "Four-fifths", "Conclusive"],
                rows,
                caption="Four-fifths rule (ratio of the lowest to the highest selection rate)",
                status_column=4,
            )
        )
        blocks += figure(four_fifths_chart(r))
    else:
        blocks.append(Paragraph("Four-fifths rule: not applicable. It compares selection rates, which need a binary model (or a favourable class).", "note"))
    if inter:
        main = [m for m in metrics if m in ("selection_rate", "tpr", "fpr", "accuracy")][:3] or metrics[:3]
        rows = []
        for g in inter:
            for rec in r.table(g).to_dict("records"):
                ok = rec["status"] == "ok"
                rows.append(
                    [g, str(rec["group"]), num(int(rec["n"])), *[ci(rec[m], rec[f"{m}_lo"], rec[f"{m}_hi"]) if ok else "insufficient data" for m in main]]
                )
        blocks.append(Table(["Grouping", "Group", "n", *[pretty(m) for m in main]], rows[: MAX_TABLE_ROWS * 2], caption="Intersectional groups", numeric=[2]))
        if len(rows) > MAX_TABLE_ROWS * 2:
            blocks.append(Paragraph(f"First {MAX_TABLE_ROWS * 2} of {len(rows)} intersectional groups; report.json holds them all.", "note"))
    else:
        blocks.append(Paragraph("No intersectional groups: the data declares one sensitive attribute (or intersections were turned off).", "note"))
    return blocks


@view(CounterfactualFlipResult)
def counterfactual_view(r: CounterfactualFlipResult, ctx: RenderContext) -> list:
    """Flip rates when only the sensitive input changes, per attribute and per original and counterfactual value."""
    blocks: list = []
    if r.summary.empty:
        blocks.append(Paragraph("No sensitive attribute is a model input, so there is nothing to flip; see the proxy analysis for indirect use.", "note"))
        return blocks
    rows = [
        [rec["attribute"], num(int(rec["n"])), num(int(rec["flips"])), ci(rec["flip_rate"], rec["lo"], rec["hi"]), num(rec["mean_abs_score_change"])]
        for rec in r.summary.to_dict("records")
    ]
    blocks.append(
        Table(
            ["Attribute", "Rows", "Flips", "Flip rate", "Mean |score change|"],
            rows,
            caption=f"Decisions that change under a counterfactual sensitive value ({int(r.ci * 100)}% Wilson intervals)",
            numeric=[1, 2, 4],
        )
    )
    blocks += figure(counterfactual_chart(r))
    if "to_favourable" in r.pairs:
        blocks += frame_table(
            r.pairs,
            columns=["attribute", "group", "counterfactual", "n", "flip_rate", "to_favourable", "to_unfavourable"],
            caption="Flips per original and counterfactual value, by direction",
        )
    return blocks


@view(ProxyFeaturesResult)
def proxy_features_view(r: ProxyFeaturesResult, ctx: RenderContext) -> list:
    """How well the other inputs predict each sensitive attribute, and the features that carry it."""
    blocks = frame_table(
        r.probe_models,
        columns=["attribute", "auc", "accuracy", "majority_baseline", "balanced_accuracy", "chance_balanced_accuracy"],
        caption="How well the other inputs predict each sensitive attribute (held-out logistic regression)",
    )
    blocks += figure(proxy_chart(r))
    rows = [[a, ", ".join(f) or "none"] for a, f in r.proxies.items()]
    if rows:
        blocks.append(Table(["Attribute", f"Features with normalized MI >= {r.threshold:g}"], rows, caption="Possible proxies"))
    return blocks


@view(MitigationPreviewResult)
def mitigation_view(r: MitigationPreviewResult, ctx: RenderContext) -> list:
    """The accuracy / demographic-parity trade-off of post-processing, per attribute (a preview: the model is unchanged)."""
    blocks: list = [Paragraph(r.label + ". Thresholds are fitted on one half of the evaluation data and judged on the other.", "warning")]
    for attr in r.attributes:
        blocks += figure(mitigation_chart(r, attr))
    best = []
    for attr in r.attributes:
        rows = r.curve[r.curve["attribute"] == attr]
        base = rows[rows["method"] == "unmitigated"]
        pareto = rows[rows["pareto"].astype(bool)] if "pareto" in rows else rows
        if base.empty or pareto.empty:
            continue
        fairest = pareto.loc[pareto["dp_difference"].idxmin()]
        b = base.iloc[0]
        best.append(
            [
                attr,
                num(b["accuracy"]),
                num(b["dp_difference"]),
                f"{pretty(fairest['method'])} {num(fairest['setting'], 2)}",
                num(fairest["accuracy"]),
                num(fairest["dp_difference"]),
            ]
        )
    if best:
        blocks.append(
            Table(
                ["Attribute", "Accuracy as audited", "DP difference as audited", "Fairest Pareto setting", "Its accuracy", "Its DP difference"],
                best,
                caption="Trade-off summary (held-out half)",
            )
        )
    return blocks


@view(AttributionDisparityResult)
def attribution_disparity_view(r: AttributionDisparityResult, ctx: RenderContext) -> list:
    """How far each group's attribution shares diverge from the rest, against chance."""
    ok = r.summary[r.summary["status"] == "ok"] if not r.summary.empty else r.summary
    if ok.empty:
        return [
            Paragraph(
                "No group has enough explained samples to compare attributions (see the note below); explain more samples to enable this analysis.", "note"
            )
        ]
    cols = ["method", "attribute", "group", "n", "divergence", "lo", "hi", "chance", "p_value"] + [col for col in ("most_over_relied",) if col in ok]
    blocks = frame_table(ok, columns=cols, caption="Divergence of each group's attribution shares from the rest")
    blocks += figure(attribution_disparity_chart(r))
    return blocks


@view(IdentityTermResult)
def identity_terms_view(r: IdentityTermResult, ctx: RenderContext) -> list:
    """Score shifts when only the identity term of a text changes, with the largest examples."""
    blocks = frame_table(r.summary, caption="Identity-term swaps per source and category")
    blocks += figure(identity_term_chart(r))
    if (flips := identity_term_flip_chart(r)) is not None:
        blocks += figure(flips)
    if not r.examples.empty:
        blocks += frame_table(r.examples, caption="Largest shifts", max_rows=6)
    return blocks


@view(IndividualFairnessResult)
def individual_fairness_view(r: IndividualFairnessResult, ctx: RenderContext) -> list:
    """Consistency and the inequality of benefits, with the between/within-group split per attribute."""
    o = r.overall
    blocks: list = [
        Table(
            ["Measure", "Value", "Reads"],
            [
                ["Consistency", num(o["consistency"]), f"1 = every row is decided like its {r.k} nearest neighbours in the input space"],
                ["Theil index (GE, alpha 1)", num(o["theil"], 4), "0 = equal benefits (decision - label + 1) for everyone"],
                [f"Generalized entropy index (alpha {r.alpha:g})", num(o["generalized_entropy"], 4), "0 = equal benefits"],
            ],
            caption=f"Individual fairness (favourable class '{r.positive_class}')",
        )
    ]
    if len(r.decomposition):
        rows = [
            [rec["attribute"], pretty(rec["index"]), num(rec["total"], 4), num(rec["between"], 4), num(rec["within"], 4), num(rec["between_share"])]
            for rec in r.decomposition.to_dict("records")
        ]
        blocks.append(
            Table(
                ["Attribute", "Index", "Total", "Between groups", "Within groups", "Between share"],
                rows,
                caption="Inequality of benefits: between-group and within-group parts (they add up to the total)",
            )
        )
    if len(r.groups):
        blocks += frame_table(r.groups, columns=["attribute", "group", "n", "status", "consistency", "mean_benefit", "theil"], caption="Per group")
    return blocks


def threshold_sweep_chart(result, attribute: str, metric: str) -> LineChart:
    """One rate against the threshold, one line per group of ``attribute`` (and all rows), the threshold in use marked."""
    c = result.curve[(result.curve["status"] == "ok") & result.curve["attribute"].isin([attribute, "(all rows)"])]
    series = [Series(str(g), list(rows["threshold"]), list(rows[metric])) for g, rows in c.groupby("group", sort=False)]
    return LineChart(
        title=f"{attribute}: {pretty(metric)} against the threshold",
        x_label=f"threshold on {result.score_source}",
        y_label=pretty(metric),
        series=series,
        ref_lines=[RefLine(result.threshold, f"threshold in use ({result.threshold:g})", axis="x")],
        y_range=(0.0, 1.02),
    )


@view(ThresholdSweepResult)
def threshold_sweep_view(r: ThresholdSweepResult, ctx: RenderContext) -> list:
    """Per attribute, selection rate, TPR, FPR and precision per group against the threshold (charts and a table)."""
    blocks: list = [
        Paragraph(
            f"Favourable class '{r.positive_class}'; the threshold moves over {r.score_source}; a row is decided favourable when its score is at least the threshold.",
            "body",
        )
    ]
    attributes = [a for a in dict.fromkeys(r.curve["attribute"]) if a != "(all rows)"]
    for attr in attributes:
        for metric in ("selection_rate", "tpr", "fpr", "precision"):
            blocks += figure(threshold_sweep_chart(r, attr, metric))
        rows = r.curve[(r.curve["attribute"] == attr) & (r.curve["status"] == "ok")]
        blocks += frame_table(
            rows,
            columns=["group", "threshold", "n", "selection_rate", "tpr", "fpr", "precision"],
            caption=f"{attr}: rates per group and threshold",
            max_rows=MAX_TABLE_ROWS * 3,
        )
    if len(r.at_rate):
        blocks += frame_table(
            r.at_rate,
            columns=["attribute", "group", "n", "status", "threshold", "selection_rate", "tpr", "fpr", "precision"],
            caption=f"Decisions at selection rate {r.selection_rate:g} (threshold {r.cutoff:.4g})",
        )
    return blocks
