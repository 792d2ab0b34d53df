"""Explanation trust: one table of every method's verdict per property, its reason and key numbers, and the
compact table the report sets right after each attribution gallery (:func:`trust_beside_gallery`)."""

from __future__ import annotations

from audits.render.blocks import Paragraph, RenderContext, Table, num
from audits.render.charts import pretty
from audits.render.registry import view
from audits.results import TrustResult


@view(TrustResult)
def trust_view(r: TrustResult, ctx: RenderContext) -> list:
    """Per method: pass/warn/fail on faithfulness, randomization and stability, the one-line reason and the numbers behind it."""
    rows = []
    for m in r.methods:
        verdict = r.verdict(m)
        rows.append(
            [
                pretty(m),
                *(verdict[p].replace("_", " ") for p in ("faithfulness", "randomization", "stability")),
                num(r.mean(m, "deletion_score"), 2),
                num(r.mean(m, "faithfulness_correlation"), 2),
                num(r.property_value(m, "randomization"), 2),
                num(r.mean(m, "stability_max_change"), 2),
                num(r.mean(m, "sparseness"), 2),
                r.reason(m),
            ]
        )
    blocks: list = [
        Table(
            ["Method", "Faithful", "Weight-sensitive", "Stable", "Deletion gain", "Faith. corr.", "Rand. similarity", "Noise change", "Sparseness", "Why"],
            rows,
            caption=f"Trust of each attribution method ({r.features})",
            numeric=[4, 5, 6, 7, 8],
        ),
        Paragraph(
            "Deletion gain: how much faster the target's probability falls when features leave in the map's order than in random order, as a share of "
            "its fall to the baseline (0 = random). Rand. similarity: the larger rank similarity of |map| after randomizing every layer of a copy of the "
            "model, and for a random other class (1 = the map ignores the model). Noise change: the worst relative change of the map under small input "
            "noise. Sparseness: Gini of |map|.",
            "caption",
        ),
    ]
    if r.model_skill is not None:
        skill = f"The model's predictions agree with the labels with Cohen's kappa {r.model_skill:.2f}"
        if r.model_skill_interval is not None:
            skill += f" (95% interval {r.model_skill_interval[0]:.2f} to {r.model_skill_interval[1]:.2f})"
        if r.model_learned is False:
            blocks.insert(0, Paragraph(skill + ": at chance level, so no map explains a learned decision and every method's trust score is 0.", "warning"))
        else:
            blocks.append(Paragraph(skill + ".", "caption"))
    blocks += [Paragraph(n, "note") for n in r.notes]
    return blocks


def compact_trust_table(r: TrustResult, methods: list[str] | None = None) -> Table | None:
    """The methods' verdicts in a few columns (for beside a gallery); None when none of them was scored."""
    shown = [m for m in (methods if methods is not None else r.methods) if m in r.methods]
    if not shown:
        return None
    rows = []
    for m in shown:
        verdict, score = r.verdict(m), r.score(m)
        rows.append(
            [
                pretty(m),
                *(verdict[p].replace("_", " ") for p in ("faithfulness", "randomization", "stability")),
                "-" if score is None else f"{score:.0%}",
                r.reason(m),
            ]
        )
    return Table(
        ["Method", "Faithful", "Weight-sensitive", "Stable", "Trust", "Why"],
        rows,
        caption="How far each map above can be trusted (explanation trust)",
        numeric=[4],
    )


def trust_beside_gallery(report, methods: list[str]) -> list:
    """The compact trust table of ``methods`` from the report's explanation-trust result, if it has one."""
    result = next((x for x in (*report.explanations, *report.robustness) if isinstance(x, TrustResult)), None)
    table = None if result is None else compact_trust_table(result, methods)
    return [] if table is None else [table]
