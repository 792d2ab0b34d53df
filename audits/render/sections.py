"""The report as a document: sections of paragraphs, tables and charts, shared by the PDF and HTML.

``build_document(report)`` lays out the whole audit: summary, provenance, data,
performance, explanations, robustness, fairness, findings and the appendices (methods,
policy). Each probe result gets its subsection from the renderer registered for its
type (``@section_renderer(ResultType)``, looked up along the type's MRO); a result type
without one (a probe added later) falls back to :func:`generic_blocks`: its headline, its
scalar fields and its tables, so it still shows up. A section with nothing to show says
why instead of staying empty.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd

from audits.policy import SEVERITY, Finding, overall_verdict, result_anchor, status_counts
from audits.render import charts as c
from audits.render.charts import Chart, is_empty, pretty

if TYPE_CHECKING:
    from audits.report import AuditReport

# ---------------------------------------------------------------------------- blocks


@dataclass(frozen=True)
class Paragraph:
    text: str
    kind: Literal["body", "note", "warning", "caption"] = "body"


@dataclass(frozen=True)
class Link:
    """A table cell linking to a section anchor."""

    text: str
    anchor: str


@dataclass(frozen=True)
class Anchor:
    """A table cell that is a link target (a result without a section of its own)."""

    text: str
    name: str


@dataclass(frozen=True)
class Table:
    """Rows of already formatted cells (str, :class:`Link` or :class:`Anchor`).

    ``status_column`` names a column whose cells ('pass', 'warn', 'fail', 'not evaluated')
    are coloured; ``numeric`` columns are right-aligned.
    """

    columns: list[str]
    rows: list[list]
    caption: str = ""
    status_column: int | None = None
    numeric: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class KeyValues:
    """A two-column table of labelled values."""

    items: list[tuple[str, str]]
    caption: str = ""


@dataclass(frozen=True)
class Figure:
    chart: Chart
    caption: str = ""


Block = Paragraph | Table | KeyValues | Figure


@dataclass
class Section:
    anchor: str
    title: str
    blocks: list = field(default_factory=list)
    children: list[Section] = field(default_factory=list)

    def walk(self):
        yield self
        for child in self.children:
            yield from child.walk()


@dataclass
class Document:
    title: str
    model_name: str
    report_id: str
    created_at: str
    verdict: str
    counts: dict[str, int]
    cover: list[tuple[str, str]]
    sections: list[Section]

    def walk(self):
        for s in self.sections:
            yield from s.walk()

    def figures(self) -> list[Figure]:
        return [b for s in self.walk() for b in s.blocks if isinstance(b, Figure)]

    def anchors(self) -> set[str]:
        """Every link target: section anchors and anchor cells."""
        names = {s.anchor for s in self.walk()}
        for s in self.walk():
            for b in s.blocks:
                if isinstance(b, Table):
                    names |= {cell.name for row in b.rows for cell in row if isinstance(cell, Anchor)}
        return names


@dataclass(frozen=True)
class RenderContext:
    """What section renderers need besides the result itself."""

    report: AuditReport
    findings_by_section: dict[str, list[Finding]]

    @property
    def class_names(self) -> list[str]:
        return self.report.data_summary.class_names


# ---------------------------------------------------------------------------- formatting

MAX_TABLE_ROWS = 40


def num(v, digits: int = 3) -> str:
    """A number for a table: fixed decimals, integers as integers, '-' for missing."""
    if v is None:
        return "-"
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}"
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    if not math.isfinite(f):
        return "-"
    if f != 0 and (abs(f) >= 1e5 or abs(f) < 10 ** (-digits)):
        return f"{f:.{digits}g}"
    return f"{f:.{digits}f}"


def ci(v, lo, hi, digits: int = 3) -> str:
    """'0.123 [0.100, 0.150]' (or the value alone when the bounds are missing)."""
    if _missing(lo) or _missing(hi):
        return num(v, digits)
    return f"{num(v, digits)} [{num(lo, digits)}, {num(hi, digits)}]"


def pct(v, digits: int = 1) -> str:
    return "-" if _missing(v) else f"{float(v) * 100:.{digits}f}%"


def _missing(v) -> bool:
    try:
        return v is None or not math.isfinite(float(v))
    except (TypeError, ValueError):
        return True


def status_text(status: str) -> str:
    return status.replace("_", " ")


def frame_table(
    frame: pd.DataFrame, *, columns: list[str] | None = None, caption: str = "", digits: int = 3, max_rows: int = MAX_TABLE_ROWS, rename: dict | None = None
) -> list:
    """A DataFrame as a Table block (numbers formatted, long frames cut with a note)."""
    frame = frame if columns is None else frame[[col for col in columns if col in frame]]
    rows = []
    for rec in frame.head(max_rows).itertuples(index=False):
        rows.append([num(v, digits) if not isinstance(v, str) else v for v in rec])
    numeric = [i for i, col in enumerate(frame.columns) if pd.api.types.is_numeric_dtype(frame[col])]
    blocks: list = [Table(columns=[(rename or {}).get(col, pretty(col)) for col in frame.columns], rows=rows, caption=caption, numeric=numeric)]
    if len(frame) > max_rows:
        blocks.append(Paragraph(f"First {max_rows} of {len(frame)} rows; report.json holds them all.", "note"))
    return blocks


# ---------------------------------------------------------------------------- registry

SectionRenderer = Callable[[object, RenderContext], list]
_RENDERERS: dict[type, SectionRenderer] = {}
_BUILTIN: list[bool] = []  # set once the built-in renderers are registered


def section_renderer(*types: type) -> Callable[[SectionRenderer], SectionRenderer]:
    """Register a function ``(result, ctx) -> blocks`` as the section body of ``types``."""

    def wrap(fn: SectionRenderer) -> SectionRenderer:
        for t in types:
            _RENDERERS[t] = fn
        return fn

    return wrap


def renderer_for(result) -> SectionRenderer:
    for t in type(result).__mro__:
        if t in _RENDERERS:
            return _RENDERERS[t]
    return generic_blocks


def generic_blocks(result, ctx: RenderContext) -> list:
    """Any result: its scalar fields and the first rows of its tables."""
    blocks: list = []
    scalars, frames = [], []
    skip = {"method", "params", "seed", "cost", "notes"}
    for f in dataclasses.fields(result):
        if f.name in skip:
            continue
        v = getattr(result, f.name)
        if isinstance(v, pd.DataFrame):
            frames.append((f.name, v))
        elif isinstance(v, (int, float, str, bool, np.integer, np.floating)) and not isinstance(v, np.ndarray):
            scalars.append((pretty(f.name), num(v) if not isinstance(v, str) else v))
        elif isinstance(v, list) and all(isinstance(x, str) for x in v) and v:
            scalars.append((pretty(f.name), ", ".join(v)))
    if scalars:
        blocks.append(KeyValues(scalars, caption="Figures"))
    for name, frame in frames:
        if frame.empty:
            continue
        cols = list(frame.columns)[:7]
        blocks += frame_table(frame, columns=cols, caption=f"{pretty(name)}" + (" (first columns)" if len(frame.columns) > 7 else ""), max_rows=15)
    if not blocks:
        blocks.append(Paragraph("This result type has no dedicated layout in this version; its data is in report.json.", "note"))
    return blocks


# ---------------------------------------------------------------------------- shared pieces


def _probe_class(method: str):
    from audits.probes import registered_probes

    return registered_probes().get(method)


def probe_title(method: str) -> str:
    cls = _probe_class(method)
    return (cls.title if cls is not None and cls.title else pretty(method)).strip()


def _cost(result) -> Paragraph:
    cost = result.cost
    return Paragraph(
        f"Cost: {cost.model_calls:,} model calls, {cost.rows_evaluated:,} rows through the model, {cost.wall_time_s:.2f} s. Seed {result.seed}.", "caption"
    )


def _notes(result) -> list:
    return [Paragraph(n, "note") for n in getattr(result, "notes", []) or []]


def findings_table(findings: list[Finding], *, link: bool = True, caption: str = "") -> Table:
    rows = []
    for f in findings:
        op = ">=" if f.direction == "min" else "<="
        threshold = f"{op} {num(f.threshold)}" + (f" (warn {op} {num(f.warn_threshold)})" if f.warn_threshold is not None else "")
        interval = "-" if not f.interval else f"[{num(f.interval[0])}, {num(f.interval[1])}]"
        title = f.title + (f" ({f.subject})" if f.subject else "")
        evidence = Link(f.evidence or f.section, f.section) if link and f.section else (f.evidence or "-")
        rows.append([status_text(f.status), title, num(f.measured), threshold, interval, f.detail, evidence])
    return Table(["Status", "Check", "Measured", "Threshold", "Interval", "Detail", "Evidence"], rows, caption=caption, status_column=0, numeric=[2])


def _section_findings(anchor: str, ctx: RenderContext) -> list:
    found = ctx.findings_by_section.get(anchor, [])
    return [findings_table(found, link=False, caption="Policy findings for this section")] if found else []


def _figure(chart: Chart, caption: str = "", empty: str = "") -> list:
    if is_empty(chart):
        return [Paragraph(empty or f"Nothing to draw for '{chart.title}'.", "note")] if empty else []
    return [Figure(chart, caption)]


# ---------------------------------------------------------------------------- robustness renderers


def _register_builtin() -> None:
    """Register the renderers of the built-in result types (imported lazily: result modules import torch).

    Renderers registered before (by ``@section_renderer``) take precedence.
    """
    if _BUILTIN:
        return
    _BUILTIN.append(True)
    import importlib

    builtin = [
        ("audits.robustness.base", "AttackResult", _attack),
        ("audits.robustness.base", "CorruptionResult", _corruption),
        ("audits.robustness.base", "CalibrationResult", _calibration),
        ("audits.robustness.base", "TabularPerturbationResult", _tabular_perturbation),
        ("audits.robustness.base", "TabularAdversarialResult", _tabular_adversarial),
        ("audits.robustness.text_perturbations", "TextRobustnessResult", _text_robustness),
        ("audits.fairness.group_metrics", "GroupMetricsResult", _group_metrics),
        ("audits.fairness.counterfactual", "CounterfactualFlipResult", _counterfactual),
        ("audits.fairness.proxies", "ProxyFeaturesResult", _proxies),
        ("audits.fairness.mitigation", "MitigationPreviewResult", _mitigation),
        ("audits.fairness.attribution_disparity", "AttributionDisparityResult", _attribution_disparity),
        ("audits.fairness.identity_terms", "IdentityTermResult", _identity_terms),
        ("audits.explain.attention_maps", "AttentionMapsResult", _attention_maps),
    ]
    for module, name, fn in builtin:
        try:
            cls = getattr(importlib.import_module(module), name)
        except (ModuleNotFoundError, AttributeError):  # a result type this build lacks: nothing to render
            continue
        _RENDERERS.setdefault(cls, fn)


def _attack(r, ctx: RenderContext) -> list:
    curve = r.curve.copy()
    blocks: list = [
        KeyValues(
            [
                ("Norm / targeted", f"{pretty(r.norm)} / {'yes, class ' + str(r.target) if r.targeted else 'no'}"),
                ("Rows attacked", f"{len(r.rows):,}"),
                ("Clean accuracy", num(r.clean_accuracy)),
                ("Mean smallest flipping epsilon", num(r.mean_min_epsilon, 4)),
                ("Correct rows flipped within the sweep", pct(r.flipped_fraction)),
            ]
        )
    ]
    blocks += frame_table(curve, columns=["epsilon", "robust_accuracy", "attack_success_rate", "n"], caption="Robust accuracy per epsilon", digits=4)
    if not r.by_group.empty:
        blocks += _figure(c.attack_group_chart(r))
    if r.examples is not None and len(r.examples.rows) and ctx.report.data_summary.modality == "image":
        vr = ctx.report.samples.value_range if ctx.report.samples is not None else [0.0, 1.0]
        blocks += _figure(c.adversarial_examples_chart(r, ctx.class_names, vr))
    return blocks


def _corruption(r, ctx: RenderContext) -> list:
    t = r.table
    pivot = t.pivot_table(index="corruption", columns="severity", values="accuracy", sort=False)
    pivot.columns = [f"sev. {int(s)}" for s in pivot.columns]
    pivot["mean"] = pivot.mean(axis=1)
    pivot = pivot.reset_index()
    blocks: list = [
        KeyValues(
            [
                ("Rows", f"{len(r.rows):,}"),
                ("Clean accuracy", num(r.clean_accuracy)),
                ("Mean corruption accuracy (severities 1-5)", num(r.mean_corruption_accuracy)),
                ("Relative to clean", pct(r.relative_corruption_accuracy)),
            ]
        )
    ]
    blocks += frame_table(pivot, caption="Accuracy per corruption and severity")
    blocks += _figure(c.corruption_chart(r))
    if not r.by_group.empty:
        blocks += _figure(c.corruption_group_chart(r))
    if r.examples is not None and len(r.examples.rows):
        blocks += _figure(c.corruption_examples_chart(r))
    return blocks


def _calibration(r, ctx: RenderContext) -> list:
    blocks = frame_table(r.conditions, caption=f"Calibration on clean data and under {pretty(r.shift)}")
    blocks += _figure(c.calibration_shift_chart(r))
    blocks += _figure(c.calibration_reliability_chart(r))
    if not r.by_group.empty:
        clean = r.by_group[r.by_group["condition"] == "clean"]
        blocks += frame_table(clean, columns=["attribute", "group", "accuracy", "mean_confidence", "ece", "count"], caption="Clean calibration per group")
    return blocks


def _tabular_perturbation(r, ctx: RenderContext) -> list:
    t = r.table[r.table["feature"] == "*"]
    blocks: list = [KeyValues([("Rows", f"{len(r.rows):,}"), ("Clean accuracy", num(r.clean_accuracy)), ("Missing-value policy", r.missing_policy)])]
    blocks += frame_table(t, columns=["perturbation", "strength", "accuracy", "flip_rate", "refused", "n"], caption="Every feature perturbed at once")
    blocks += _figure(c.tabular_perturbation_chart(r))
    blocks += frame_table(r.features, caption="Fragility per feature (share of decisions a change of that feature alone flips)")
    return blocks


def _tabular_adversarial(r, ctx: RenderContext) -> list:
    blocks: list = [
        KeyValues(
            [
                ("Decisions searched", f"{len(r.rows):,}"),
                (f"Flipped within {r.max_epsilon:g} sd on numeric features", pct(r.flippable_fraction)),
                ("Flipped by one feature", pct(r.single_feature_fraction)),
                ("Median smallest joint change (sd)", num(r.median_min_linf)),
                ("Categoricals", r.categoricals),
                ("Fixed features", ", ".join(r.fixed_features) or "none"),
            ]
        )
    ]
    blocks += _figure(c.tabular_adversarial_chart(r))
    blocks += frame_table(r.by_group, caption="Per group: share flippable, share flippable by one feature, median smallest change")
    return blocks


def _text_robustness(r, ctx: RenderContext) -> list:
    blocks = frame_table(r.table, caption="Accuracy and flips per perturbation and severity")
    blocks += _figure(c.text_robustness_chart(r))
    if not r.examples.empty:
        blocks += frame_table(r.examples, caption="Examples", max_rows=6)
    return blocks


# ---------------------------------------------------------------------------- fairness renderers


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


def _chunks(items: list, size: int) -> list[list]:
    """``items`` in balanced chunks of at most ``size`` (5 -> 3 + 2, not 4 + 1)."""
    if not items:
        return []
    n = -(-len(items) // size)
    even = -(-len(items) // n)
    return [items[i : i + even] for i in range(0, len(items), even)]


def _group_metrics(r, ctx: RenderContext) -> list:
    singles = [g for g in r.groupings if " x " not in g]
    inter = [g for g in r.groupings if " x " in g]
    metrics = [m for m in r.metrics if f"{m}_lo" in r.groups]
    blocks: list = [
        Paragraph(
            f"Task: {r.task}"
            + (f", favourable class '{r.positive_class}'" if r.positive_class else "")
            + f". Groups with fewer than {r.min_group_size} rows are "
            f"reported as insufficient data and left out of disparities. Intervals: {r.n_boot} bootstrap resamples."
        )
    ]
    for g in singles:
        for chunk in _chunks(metrics, 4):
            blocks.append(_group_table(r, g, chunk))
        blocks += _figure(c.group_metric_chart(r, g))
    if singles:
        blocks += _figure(c.disparity_chart(r, singles))
    d = r.disparities[r.disparities["grouping"].isin(singles)]
    rows = [
        [rec["grouping"], pretty(rec["metric"]), ci(rec["difference"], rec["difference_lo"], rec["difference_hi"]), ci(rec["ratio"], rec["ratio_lo"], rec["ratio_hi"]), str(rec["worst_group"]) if isinstance(rec["worst_group"], str) else "-", str(rec["best_group"]) if isinstance(rec["best_group"], str) else "-"]
        for rec in d.to_dict("records")
    ]  # fmt: skip
    if rows:
        blocks.append(Table(["Grouping", "Metric", "Difference (max - min)", "Ratio (min / max)", "Worst", "Best"], rows, caption="Disparities between groups"))
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
        blocks += _figure(c.four_fifths_chart(r))
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


def _counterfactual(r, ctx: RenderContext) -> list:
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
    blocks += _figure(c.counterfactual_chart(r))
    if "to_favourable" in r.pairs:
        blocks += frame_table(
            r.pairs,
            columns=["attribute", "group", "counterfactual", "n", "flip_rate", "to_favourable", "to_unfavourable"],
            caption="Flips per original and counterfactual value, by direction",
        )
    return blocks


def _proxies(r, ctx: RenderContext) -> list:
    blocks = frame_table(
        r.probe_models,
        columns=["attribute", "auc", "accuracy", "majority_baseline", "balanced_accuracy", "chance_balanced_accuracy"],
        caption="How well the other inputs predict each sensitive attribute (held-out logistic regression)",
    )
    blocks += _figure(c.proxy_chart(r))
    rows = [[a, ", ".join(f) or "none"] for a, f in r.proxies.items()]
    if rows:
        blocks.append(Table(["Attribute", f"Features with normalized MI >= {r.threshold:g}"], rows, caption="Possible proxies"))
    return blocks


def _mitigation(r, ctx: RenderContext) -> list:
    blocks: list = [Paragraph(r.label + ". Thresholds are fitted on one half of the evaluation data and judged on the other.", "warning")]
    for attr in r.attributes:
        blocks += _figure(c.mitigation_chart(r, attr))
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


def _attribution_disparity(r, ctx: RenderContext) -> list:
    ok = r.summary[r.summary["status"] == "ok"] if not r.summary.empty else r.summary
    if ok.empty:
        return [
            Paragraph(
                "No group has enough explained samples to compare attributions (see the note below); explain more samples to enable this analysis.", "note"
            )
        ]
    cols = ["method", "attribute", "group", "n", "divergence", "lo", "hi", "chance", "p_value"] + [col for col in ("most_over_relied",) if col in ok]
    blocks = frame_table(ok, columns=cols, caption="Divergence of each group's attribution shares from the rest")
    blocks += _figure(c.attribution_disparity_chart(r))
    return blocks


def _identity_terms(r, ctx: RenderContext) -> list:
    blocks = frame_table(r.summary, caption="Identity-term swaps per source and category")
    blocks += _figure(c.identity_term_chart(r))
    if not r.examples.empty:
        blocks += frame_table(r.examples, caption="Largest shifts", max_rows=6)
    return blocks


def _attention_maps(r, ctx: RenderContext) -> list:
    samples = ctx.report.samples
    if samples is None:
        return []
    maps = r.pixel_maps(r.layer_maps)  # (L, n, H, W)
    cells, labels = [], []
    for j in range(min(4, maps.shape[1])):
        where = np.flatnonzero(np.asarray(samples.indices) == int(r.sample_indices[j]))
        if not len(where):
            continue
        base = c._grey_or_rgb(samples.image(int(where[0])))
        cells.append(
            [c.ImageCell(base, c._scaled(maps[layer, j], "magnitude"), "magnitude") for layer in range(maps.shape[0])]
            + [c.ImageCell(base, c._scaled(r.attributions[j], "magnitude"), "magnitude")]
        )
        labels.append(f"#{int(r.sample_indices[j])}")
    if not cells:
        return []
    grid = c.ImageGrid(
        title="CLS attention per layer (mean over heads) and rollout",
        col_labels=[f"layer {i}" for i in range(maps.shape[0])] + ["rollout"],
        row_labels=labels,
        cells=cells,
        legend="Brighter: more attention. Each map is scaled to its own maximum.",
        colorbar="magnitude",
        colorbar_label="attention / max",
    )
    return [Figure(grid)]


# ---------------------------------------------------------------------------- main sections


def _summary(report: AuditReport, doc_verdict: str, counts: dict) -> Section:
    p, perf = report.provenance, report.performance
    items = [
        ("Overall verdict", status_text(doc_verdict).upper()),
        ("Findings", ", ".join(f"{counts[s]} {status_text(s)}" for s in ("fail", "warn", "pass", "not_evaluated"))),
        ("Model", f"{p.model_name} ({p.model_format}, {p.parameter_count:,} parameters)"),
        ("Evaluation data", f"{report.data_summary.n_rows:,} rows, {report.data_summary.modality}, {len(report.data_summary.class_names)} classes"),
        ("Accuracy", num(perf.accuracy)),
        ("Expected calibration error", num(perf.ece)),
        ("Probes run", str(len(report.explanations) + len(report.robustness) + len(report.fairness))),
        ("Probes skipped / failed", f"{len(report.skipped)} / {len(report.failures)}"),
    ]
    blocks: list = [KeyValues(items)]
    worst = sorted([f for f in report.findings if f.status in ("fail", "warn")], key=lambda f: -SEVERITY[f.status])
    if worst:
        blocks.append(findings_table(worst[:MAX_TABLE_ROWS], caption="Failed and warning findings (the full list is in the Findings section)"))
    elif report.findings:
        blocks.append(Paragraph("Every evaluated check of the policy passed.", "body"))
    else:
        blocks.append(Paragraph("No policy was applied to this report, so there are no findings; re-render it with a policy (audits report --policy).", "note"))
    return Section("summary", "Summary", blocks)


def _provenance(report: AuditReport) -> Section:
    p = report.provenance
    items = [
        ("Model", p.model_name),
        ("Format", p.model_format),
        ("Weights sha256", p.weights_sha256),
        ("Parameters", f"{p.parameter_count:,}"),
        ("Device", p.device),
        ("Data source", p.data_source),
        ("Data sha256", p.data_sha256),
        ("Seed", str(p.seed)),
        ("Audit wall time", f"{p.wall_time_s:.1f} s"),
        ("Model calls / rows through the model", f"{p.model_calls:,} / {p.rows_evaluated:,}"),
        ("Report id / created", f"{report.report_id} / {report.created_at}"),
        ("Schema version", report.schema_version),
    ]
    items += [(f"Note: {k}", str(v)) for k, v in p.model_notes.items()]
    blocks: list = [KeyValues(items, caption="What was audited, how and at what cost")]
    budgets = p.sample_budgets or {}
    blocks.append(
        KeyValues(
            [("Explained samples", str(budgets.get("explained_samples", "-"))), ("Evaluation rows", str(budgets.get("evaluation_rows", "-")))],
            caption="Sample budgets",
        )
    )
    results = report.explanations + report.robustness + report.fairness
    rows = [
        [
            r.method,
            ", ".join(f"{k}={_param(v)}" for k, v in r.params.items()) or "-",
            num(r.cost.model_calls),
            num(r.cost.rows_evaluated),
            f"{r.cost.wall_time_s:.2f}",
        ]
        for r in results
    ]
    if rows:
        blocks.append(
            Table(["Probe", "Parameters", "Model calls", "Rows", "Seconds"], rows, caption="Probes, their parameters and their cost", numeric=[2, 3, 4])
        )
    versions = sorted(p.library_versions.items())
    blocks.append(
        Table(
            ["Library", "Version"] * 2,
            [[*a, *b] for a, b in zip(versions[::2], versions[1::2] + [("", "")] * (len(versions) % 2), strict=False)],
            caption="Library versions",
        )
    )
    coverage = [[s.name, "skipped", s.reason] for s in report.skipped] + [
        [f.name, "failed", f.error + (f" Fix: {f.fix}" if f.fix else "")] for f in report.failures
    ]
    if coverage:
        blocks.append(Table(["Probe", "Outcome", "Reason"], coverage, caption="Selected probes that did not produce a result"))
    else:
        blocks.append(Paragraph("Every selected probe produced a result.", "caption"))
    return Section("provenance", "Provenance", blocks)


def _param(v) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, list):
        return "[" + ", ".join(_param(x) for x in v[:8]) + (", ..." if len(v) > 8 else "") + "]"
    return str(v)


def _data(report: AuditReport) -> Section:
    d = report.data_summary
    items = [
        ("Modality", d.modality),
        ("Rows audited", f"{d.n_rows:,} of {d.n_rows_available:,}" + (" (seeded random subset)" if d.row_indices is not None else "")),
        ("Classes", ", ".join(d.class_names) if len(d.class_names) <= 12 else f"{len(d.class_names)} classes"),
        ("Sensitive attributes", ", ".join(d.sensitive) or "none declared"),
    ]
    if d.feature_names:
        items.append(("Features", ", ".join(d.feature_names)))
    blocks: list = [KeyValues(items)]
    total = max(sum(d.class_counts.values()), 1)
    blocks.append(
        Table(["Class", "Rows", "Share"], [[str(k), num(int(v)), pct(v / total)] for k, v in d.class_counts.items()], caption="Class balance", numeric=[1, 2])
    )
    for attr, groups in d.group_sizes.items():
        n = max(sum(groups.values()), 1)
        blocks.append(
            Table(["Group", "Rows", "Share"], [[str(g), num(int(v)), pct(v / n)] for g, v in groups.items()], caption=f"Groups of '{attr}'", numeric=[1, 2])
        )
    if not d.sensitive:
        blocks.append(Paragraph("The data declares no sensitive attribute, so no group analysis is possible.", "note"))
    return Section("data", "Data", blocks)


def _performance(report: AuditReport, ctx: RenderContext) -> Section:
    perf = report.performance
    from audits.policy import wilson

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
    if len(report.data_summary.class_names) <= 30:
        blocks += _figure(c.confusion_chart(perf, report.data_summary.class_names))
    blocks += _figure(c.per_class_chart(perf))
    blocks += _figure(c.reliability_chart(perf), empty="No confidence bin has rows.")
    blocks += _section_findings("performance", ctx)
    return Section("performance", "Performance", blocks)


def _explanations(report: AuditReport, ctx: RenderContext) -> Section:
    results = report.explanations
    section = Section("explanations", "Explanations")
    if not results:
        reasons = [f"{s.name}: {s.reason}" for s in report.skipped if (cls := _probe_class(s.name)) is not None and cls.category == "explanation"]
        section.blocks.append(
            Paragraph(
                "No attribution method produced a result." + (" Skipped: " + "; ".join(reasons) if reasons else " None was selected in the audit spec."), "note"
            )
        )
        return section
    modality = report.data_summary.modality
    samples = report.samples
    overview = Section("explanations-overview", "Attributions")
    if modality == "image":
        if samples is None or samples.images is None:
            overview.blocks.append(
                Paragraph("This report does not store the explained images (written by an older version), so no gallery can be drawn.", "note")
            )
        else:
            image_results = [r for r in results if r.modality == "image" and r.attributions.ndim == 3]
            for rows in _chunks(list(range(len(samples.indices))), 8):
                overview.blocks += _figure(c.attribution_gallery_chart(image_results, samples, ctx.class_names, rows=rows))
    elif modality == "tabular":
        overview.blocks += _figure(
            c.global_importance_chart(results), "Bars are scaled per method, so methods compare in ranking and shape, not in absolute size."
        )
        top = [[pretty(r.method), r.output, ", ".join(r.top_features(5))] for r in results if r.feature_names]
        overview.blocks.append(Table(["Method", "Output", "Top 5 features (mean |attribution|)"], top, caption="Most important features per method"))
        first = next((r for r in results if r.method == "kernel_shap"), results[0])
        for row in range(min(3, len(first.sample_indices))):
            overview.blocks += _figure(c.tabular_sample_chart(first, row, samples, ctx.class_names))
    else:
        overview.blocks += _figure(c.token_chart(results, samples, ctx.class_names), empty="No token attributions to show.")
    section.children.append(overview)
    quality = Section("explanations-quality", "Methods and trust")
    rows = []
    for i, r in enumerate(results):
        anchor = result_anchor("explanations", i, r.method)
        q = []
        for k, v in r.quality.items():
            arr = np.asarray(v, dtype=np.float64).ravel() if not isinstance(v, bool) else np.asarray([float(v)])
            arr = arr[np.isfinite(arr)]
            if arr.size:
                q.append(f"{pretty(k)}: mean {num(arr.mean())}" + (f", max {num(arr.max())}" if arr.size > 1 else ""))
        rows.append(
            [
                Anchor(probe_title(r.method), anchor),
                r.output,
                num(len(r.sample_indices)),
                "; ".join(q) or "-",
                f"{r.cost.wall_time_s:.2f} s, {r.cost.model_calls} calls",
            ]
        )
    quality.blocks.append(
        Table(["Method", "Output explained", "Samples", "Quality per sample", "Cost"], rows, caption="Attribution methods and the quality numbers each reports")
    )
    quality.blocks.append(
        Paragraph(
            "Completeness / additivity error: how far the attributions are from adding up to the model's output change (0 is exact). "
            "R^2: how much of the model's local behaviour LIME's linear surrogate explains (1 is perfect). Empty map: Grad-CAM maps that are all zero.",
            "caption",
        )
    )
    for i, r in enumerate(results):
        extra = renderer_for(r) if type(r).__name__ != "AttributionResult" and renderer_for(r) is not generic_blocks else None
        anchor = result_anchor("explanations", i, r.method)
        found = ctx.findings_by_section.get(anchor, [])
        if extra is None and not found:
            continue
        sub = Section(anchor, probe_title(r.method), (extra(r, ctx) if extra else []) + _section_findings(anchor, ctx))
        quality.children.append(sub)
    section.children.append(quality)
    return section


def _category(report: AuditReport, ctx: RenderContext, kind: str, title: str, anchor: str, intro: list | None = None) -> Section:
    results = getattr(report, kind)
    section = Section(anchor, title, list(intro or []))
    if not results:
        category = {"robustness": "robustness", "fairness": "fairness"}[kind]
        reasons = [f"{s.name}: {s.reason}" for s in report.skipped if (cls := _probe_class(s.name)) is not None and cls.category == category]
        reasons += [f"{f.name} failed: {f.error}" for f in report.failures if (cls := _probe_class(f.name)) is not None and cls.category == category]
        why = ("Skipped or failed: " + "; ".join(reasons)) if reasons else f"No {category} probe was selected in the audit spec."
        if category == "fairness" and not report.data_summary.sensitive:
            why = "The data declares no sensitive attribute, so no fairness analysis was possible. " + why
        section.blocks.append(Paragraph(f"No {category} result. {why}", "note"))
        return section
    for i, r in enumerate(results):
        sub_anchor = result_anchor(kind, i, r.method)
        blocks: list = []
        headline = r.headline()
        if headline:
            blocks.append(Paragraph(headline, "caption"))
        try:
            blocks += renderer_for(r)(r, ctx)
        except Exception as exc:  # a renderer bug must not lose the report: fall back to the generic layout
            blocks.append(Paragraph(f"This section could not be laid out ({type(exc).__name__}: {exc}); its figures follow.", "warning"))
            blocks += generic_blocks(r, ctx)
        blocks += _notes(r)
        blocks.append(_cost(r))
        blocks += _section_findings(sub_anchor, ctx)
        section.children.append(Section(sub_anchor, probe_title(r.method), blocks))
    return section


def _robustness(report: AuditReport, ctx: RenderContext) -> Section:
    attacks = [r for r in report.robustness if type(r).__name__ == "AttackResult"]
    intro = _figure(c.attack_curve_chart(attacks), "All attacks on the same rows; a steeper fall means a more fragile model.") if attacks else []
    return _category(report, ctx, "robustness", "Robustness", "robustness", intro)


def _findings(report: AuditReport) -> Section:
    if not report.findings:
        return Section("findings", "Findings", [Paragraph("No policy was applied to this report, so there are no findings.", "note")])
    counts = status_counts(report.findings)
    order = sorted(report.findings, key=lambda f: (-SEVERITY.get(f.status, -1), f.check_id))
    blocks: list = [
        Paragraph(
            f"Policy '{report.policy.get('name', 'unnamed')}': {counts['fail']} fail, {counts['warn']} warn, {counts['pass']} pass, {counts['not_evaluated']} not evaluated. "
            "A check fails beyond its threshold and warns inside its warning band or when its interval reaches the threshold. Evidence links lead to the section that shows it."
        ),
        findings_table(order),
    ]
    return Section("findings", "Findings", blocks)


def _methods(report: AuditReport) -> Section:
    blocks: list = [
        Paragraph(
            "Clean performance: accuracy is the share of rows whose predicted class (the most probable one) is the label; the expected calibration error (ECE) "
            "sorts rows into ten equal-width confidence bins and averages |accuracy - confidence| over the bins, weighted by their size.",
        ),
        Paragraph(
            "Intervals: proportions (accuracy, flip rates) carry 95% Wilson score intervals; group metrics and disparities carry bootstrap percentile intervals "
            "over resampled rows; an interval that reaches a threshold makes a passing finding a warning.",
        ),
    ]
    seen = []
    for r in report.explanations + report.robustness + report.fairness:
        if r.method in seen:
            continue
        seen.append(r.method)
        cls = _probe_class(r.method)
        description = cls.description if cls is not None and cls.description else "No description is registered for this method in this version."
        params = ", ".join(f"{k} = {_param(v)}" for k, v in r.params.items()) or "none"
        category = cls.category if cls is not None else "-"
        blocks.append(Paragraph(f"<b>{probe_title(r.method)}</b> ({r.method}, {category}). {description} Parameters: {params}.", "body"))
    for s in report.skipped:
        if s.name not in seen:
            cls = _probe_class(s.name)
            desc = cls.description if cls is not None else ""
            blocks.append(Paragraph(f"<b>{probe_title(s.name)}</b> ({s.name}): not run, {s.reason}. {desc}", "body"))
    return Section("methods", "Appendix A: Methods", blocks)


def _policy(report: AuditReport) -> Section:
    pol = report.policy or {}
    checks = pol.get("checks", [])
    if not checks:
        return Section("policy", "Appendix B: Policy", [Paragraph("No policy is recorded in this report.", "note")])
    rows = []
    for ch in checks:
        op = "<=" if ch.get("direction") == "max" else ">="
        applies = ", ".join((ch.get("modalities") or []) + (ch.get("tasks") or [])) or "all models"
        params = ", ".join(
            f"{k}={_param(v)}"
            for k, v in ch.items()
            if k not in ("id", "check", "title", "rationale", "threshold", "warn", "on_violation", "modalities", "tasks", "direction")
        )
        limit = (
            f"{op} {ch.get('threshold')}"
            + (f"; warn {op} {ch['warn']}" if ch.get("warn") is not None else "")
            + ("; warns only" if ch.get("on_violation") == "warn" else "")
        )
        rows.append([ch.get("id") or ch.get("check"), f"{ch.get('check')}" + (f" ({params})" if params else ""), limit, applies, ch.get("rationale", "")])
    blocks: list = [Paragraph(f"Policy '{pol.get('name', 'unnamed')}'. {pol.get('description', '')}")]
    blocks.append(Table(["Id", "Check", "Limit", "Applies to", "Why"], rows, caption="Checks of the policy"))
    return Section("policy", "Appendix B: Policy", blocks)


def build_document(report: AuditReport) -> Document:
    """The whole report as sections of blocks (see the module docstring)."""
    _register_builtin()
    by_section: dict[str, list[Finding]] = {}
    for f in report.findings:
        by_section.setdefault(f.section, []).append(f)
    ctx = RenderContext(report=report, findings_by_section=by_section)
    verdict = overall_verdict(report.findings) if report.findings else "no policy"
    counts = status_counts(report.findings)
    p = report.provenance
    sections = [
        _summary(report, verdict, counts),
        _provenance(report),
        _data(report),
        _performance(report, ctx),
        _explanations(report, ctx),
        _robustness(report, ctx),
        _category(report, ctx, "fairness", "Fairness", "fairness"),
        _findings(report),
        _methods(report),
        _policy(report),
    ]
    cover = [
        ("Model", f"{p.model_name} ({p.model_format}, {p.parameter_count:,} parameters)"),
        ("Weights sha256", p.weights_sha256),
        ("Data", f"{report.data_summary.n_rows:,} rows from {p.data_source.rsplit('/', 1)[-1]}"),
        ("Audit date", report.created_at),
        ("Report id", report.report_id),
        ("Policy", report.policy.get("name", "none") if report.policy else "none"),
    ]
    return Document(
        title="Model audit report",
        model_name=p.model_name,
        report_id=report.report_id,
        created_at=report.created_at,
        verdict=verdict,
        counts=counts,
        cover=cover,
        sections=sections,
    )
