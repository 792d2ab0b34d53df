"""The report as a document: the top-level sections shared by the PDF and the HTML.

``build_document(report)`` lays out the whole audit: summary, provenance, data,
performance, explanations, robustness, fairness, findings and the appendices (methods,
policy). Each result's subsection comes from its view (``audits.render.registry.view_for``:
keyed by result class); a result type without a view shows what it measured. A section
with nothing to show says why instead of staying empty.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from audits.findings import SEVERITY, overall_verdict, status_counts
from audits.policy import result_anchor
from audits.render.blocks import (
    MAX_TABLE_ROWS,
    Anchor,
    Document,
    KeyValues,
    Paragraph,
    RenderContext,
    Section,
    Table,
    figure,
    findings_table,
    num,
    pct,
    status_text,
)
from audits.render.catalog import probe_category, probe_info, probe_title
from audits.render.charts import pretty
from audits.render.registry import generic_view, view_for
from audits.render.views.attribution import overview_blocks
from audits.render.views.robustness import attack_curve_chart
from audits.results.robustness import AttackResult

if TYPE_CHECKING:
    from audits.report import AuditReport


def _cost(result) -> Paragraph:
    cost = result.cost
    return Paragraph(
        f"Cost: {cost.model_calls:,} model calls, {cost.rows_evaluated:,} rows through the model, {cost.wall_time_s:.2f} s. Seed {result.seed}.", "caption"
    )


def _notes(result) -> list:
    return [Paragraph(n, "note") for n in getattr(result, "notes", []) or []]


def _section_findings(anchor: str, ctx: RenderContext) -> list:
    found = ctx.findings_by_section.get(anchor, [])
    return [findings_table(found, link=False, caption="Policy findings for this section")] if found else []


def _summary(report: AuditReport, doc_verdict: str, counts: dict) -> Section:
    p, perf = report.provenance, report.performance
    items = [
        ("Overall verdict", status_text(doc_verdict).upper()),
        ("Findings", ", ".join(f"{counts[s]} {status_text(s)}" for s in ("fail", "warn", "pass", "not_evaluated"))),
        ("Model", f"{p.model_name} ({p.model_format}, {p.parameter_count:,} parameters)"),
        ("Evaluation data", f"{report.data_summary.n_rows:,} rows, {report.data_summary.modality}, {len(report.data_summary.class_names)} classes"),
        ("Accuracy", num(perf.accuracy)),
        ("Expected calibration error", num(perf.ece)),
        ("Probes run", str(len(report.probe_results()))),
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
            [("Explained samples", str(budgets.get("explained_samples", "-"))), ("Evaluation rows", str(budgets.get("evaluation_rows", "-")))]
            + ([("Rows streamed (performance, group metrics)", f"{budgets['streamed_rows']:,}")] if "streamed_rows" in budgets else []),
            caption="Sample budgets",
        )
    )
    results = report.probe_results()
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


def _rows_audited(report: AuditReport) -> str:
    d, budgets = report.data_summary, report.provenance.sample_budgets or {}
    if "streamed_rows" in budgets:  # a file above the streaming threshold (docs/large-data.md)
        return (
            f"{d.n_rows:,}, streamed in chunks of {budgets['chunk_rows']:,} rows for performance and group metrics; "
            f"the other probes on a seeded random subset of {budgets['subset_rows']:,} rows"
        )
    return f"{d.n_rows:,} of {d.n_rows_available:,}" + (" (seeded random subset)" if d.row_indices is not None else "")


def _data(report: AuditReport) -> Section:
    d = report.data_summary
    items = [
        ("Modality", d.modality),
        ("Rows audited", _rows_audited(report)),
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
    blocks = view_for(report.performance)(report.performance, ctx) + _section_findings("performance", ctx)
    return Section("performance", "Performance", blocks)


def _explanations(report: AuditReport, ctx: RenderContext) -> Section:
    results = report.explanations
    section = Section("explanations", "Explanations")
    if not results:
        reasons = [f"{s.name}: {s.reason}" for s in report.skipped if probe_category(s.name) == "explanation"]
        section.blocks.append(
            Paragraph(
                "No attribution method produced a result." + (" Skipped: " + "; ".join(reasons) if reasons else " None was selected in the audit spec."), "note"
            )
        )
        return section
    overview = Section("explanations-overview", "Attributions", overview_blocks(report, ctx))
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
        anchor = result_anchor("explanations", i, r.method)
        blocks = view_for(r)(r, ctx) + _section_findings(anchor, ctx)
        if not blocks:
            continue
        sub = Section(anchor, probe_title(r.method), blocks)
        quality.children.append(sub)
    section.children.append(quality)
    return section


def _category(report: AuditReport, ctx: RenderContext, kind: str, title: str, anchor: str, intro: list | None = None) -> Section:
    results = getattr(report, kind)
    section = Section(anchor, title, list(intro or []))
    if not results:
        category = {"robustness": "robustness", "fairness": "fairness", "concepts": "concepts"}[kind]
        reasons = [f"{s.name}: {s.reason}" for s in report.skipped if probe_category(s.name) == category]
        reasons += [f"{f.name} failed: {f.error}" for f in report.failures if probe_category(f.name) == category]
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
            blocks += view_for(r)(r, ctx)
        except Exception as exc:  # a view's bug must not lose the report: say so, then show what the result measured
            blocks.append(Paragraph(f"This section could not be laid out ({exc!r}); what the result measured follows.", "warning"))
            blocks += generic_view(r, ctx)
        blocks += _notes(r)
        blocks.append(_cost(r))
        blocks += _section_findings(sub_anchor, ctx)
        section.children.append(Section(sub_anchor, probe_title(r.method), blocks))
    return section


def _robustness(report: AuditReport, ctx: RenderContext) -> Section:
    attacks = [r for r in report.robustness if isinstance(r, AttackResult)]
    intro = figure(attack_curve_chart(attacks), "All attacks on the same rows; a steeper fall means a more fragile model.") if attacks else []
    return _category(report, ctx, "robustness", "Robustness", "robustness", intro)


def _favourable_intro(report: AuditReport) -> list:
    """The fairness section's first line: which outcome counts as favourable, and whether the card declared it."""
    summary = report.data_summary
    names = summary.class_names
    if summary.favourable_class is not None:
        text = f"Favourable outcome: '{summary.favourable_class}' (declared in the model card). Selection rates, false positives, the four-fifths rule and counterfactual flips count towards it."
        blocks: list = [Paragraph(text, "body")]
    elif len(names) == 2:
        text = (
            f"Favourable outcome: '{names[1]}' (class 1), ASSUMED: the model card declares no favourable_class. If '{names[0]}' is the "
            f"outcome people want, every selection rate and the four-fifths rule below read the wrong way round; declare favourable_class in the card."
        )
        blocks = [Paragraph(text, "warning")]
    else:
        blocks = [Paragraph(f"Favourable outcome: none declared ({len(names)} classes); groups are compared on accuracy-type metrics.", "note")]
    if summary.reference_groups:
        refs = ", ".join(f"{a}: {g}" for a, g in summary.reference_groups.items())
        blocks.append(Paragraph(f"Reference groups (declared in the card): {refs}; other attributes use their largest group.", "body"))
    return blocks


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
    for r in report.probe_results():
        if r.method in seen:
            continue
        seen.append(r.method)
        info = probe_info(r.method)
        description = info.description if info is not None and info.description else "No description is registered for this method in this version."
        params = ", ".join(f"{k} = {_param(v)}" for k, v in r.params.items()) or "none"
        category = info.category if info is not None else "-"
        blocks.append(Paragraph(f"<b>{probe_title(r.method)}</b> ({r.method}, {category}). {description} Parameters: {params}.", "body"))
    for s in report.skipped:
        if s.name not in seen:
            info = probe_info(s.name)
            desc = info.description if info is not None else ""
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
    ctx = RenderContext.of(report)
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
        _category(report, ctx, "fairness", "Fairness", "fairness", _favourable_intro(report)),
        _category(report, ctx, "concepts", "Concepts and features", "concepts"),
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
