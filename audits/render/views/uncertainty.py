"""Uncertainty results (predictive uncertainty with selective prediction, out-of-distribution detection): charts and document blocks."""

from __future__ import annotations

import numpy as np

from audits.render.blocks import KeyValues, Paragraph, RenderContext, figure, frame_table, num, pct
from audits.render.charts import HeatmapChart, LineChart, RefLine, Series, pretty
from audits.render.registry import view
from audits.results.uncertainty import OODDetectionResult, UncertaintyResult

UNCERTAINTY_EXPLAINED = (
    "What this means: predictive entropy is how spread the model's averaged prediction is over the classes (0: all "
    "probability on one class); mutual information is the part of it that comes from disagreement between MC dropout "
    "passes, ensemble members or shifted views of an input, a sign the model has not seen enough inputs like it. The "
    "risk-coverage curve shows the accuracy on the share of inputs the model is most confident about: if its confidence "
    "ranks its errors last, abstaining on the least confident inputs raises accuracy, and the AURC (area under the "
    "error rate against coverage, lower is better) is small; E-AURC subtracts what a perfect ranking of the same errors "
    "would reach. What it does not mean: entropy is not a probability of error, low uncertainty on these rows says "
    "nothing about inputs unlike the evaluation data, and MC dropout and test-time augmentation are approximations "
    "whose spread depends on the dropout rate and the shifts chosen, so compare sources with care."
)

OOD_EXPLAINED = (
    "What this means: each score (maximum softmax probability, energy, and ensemble agreement when the card lists an "
    "ensemble) is computed on clean images and on the same images under a corruption; the AUROC is the chance that a "
    "clean image scores higher than a corrupted one. Near 1, a threshold on the score can flag shifted inputs for a "
    "human to check; near 0.5 it cannot, and the model will answer shifted inputs with its usual confidence. What it "
    "does not mean: the corruption suite is one kind of shift (sensor-like degradations); a high AUROC here does not "
    "show that the score flags other shifts (new classes, other populations, adversarial inputs), and mild severities "
    "barely change an image, so an AUROC near 0.5 there is expected. With an ensemble, the table of its disagreement shows "
    "how much more its members disagree on shifted images than on clean ones; members that agree are no proof that "
    "the answer is right (they share their training data)."
)


def risk_coverage_chart(result: UncertaintyResult) -> LineChart:
    """Selective accuracy against coverage, one line per source."""
    c = result.risk_coverage
    series = [Series(pretty(s), list(rows["coverage"]), list(rows["accuracy"])) for s, rows in c.groupby("source", sort=False)]
    return LineChart(
        title="Accuracy against coverage (abstaining on the least confident inputs)",
        x_label="coverage (share of inputs answered, most confident first)",
        y_label="accuracy on the answered inputs",
        series=series,
        ref_lines=[RefLine(result.coverage, f"coverage {result.coverage:g}", axis="x")],
        x_range=(0.0, 1.02),
    )


def ood_heatmap(result: OODDetectionResult, score: str) -> HeatmapChart:
    """AUROC per corruption (rows) and severity (columns) for one score."""
    t = result.table[result.table["score"] == score]
    corruptions = list(dict.fromkeys(t["corruption"]))
    severities = sorted(set(int(s) for s in t["severity"]))
    values = np.full((len(corruptions), len(severities)), np.nan)
    for r in t.itertuples(index=False):
        values[corruptions.index(r.corruption), severities.index(int(r.severity))] = r.auroc
    return HeatmapChart(
        title=f"OOD detection AUROC: {pretty(score)}",
        x_label="severity",
        y_label="corruption",
        x_labels=[str(s) for s in severities],
        y_labels=[pretty(c) for c in corruptions],
        values=values,
        colorbar="AUROC",
        zmin=0.5,
        zmax=1.0,
        annotations=np.vectorize(lambda v: "-" if not np.isfinite(v) else f"{v:.2f}")(values),
        height=0.9 + 0.3 * len(corruptions),
    )


@view(UncertaintyResult)
def uncertainty_view(r: UncertaintyResult, ctx: RenderContext) -> list:
    """Entropy, mutual information and AURC per source, the risk-coverage curve and the per-group figures."""
    blocks: list = [
        Paragraph(UNCERTAINTY_EXPLAINED, "body"),
        KeyValues([("Rows", f"{len(r.rows):,}"), ("Coverage for selective accuracy", pct(r.coverage, 0))]),
    ]
    blocks += frame_table(
        r.sources,
        columns=[
            "source",
            "passes",
            "accuracy",
            "mean_entropy",
            "mean_mutual_information",
            "entropy_correct",
            "entropy_wrong",
            "aurc",
            "e_aurc",
            "selective_accuracy",
        ],
        caption=f"Uncertainty per source (selective accuracy: on the {pct(r.coverage, 0)} most confident rows)",
    )
    blocks += figure(risk_coverage_chart(r))
    if not r.by_group.empty:
        blocks += frame_table(r.by_group, caption=f"Per group: accuracy, entropy, AURC and selective accuracy at coverage {num(r.coverage, 2)}")
    return blocks


@view(OODDetectionResult)
def ood_view(r: OODDetectionResult, ctx: RenderContext) -> list:
    """Mean AUROC per score and severity, and one heatmap per score (corruption by severity)."""
    blocks: list = [
        Paragraph(OOD_EXPLAINED, "body"),
        KeyValues([("Clean images", f"{len(r.rows):,}"), ("Clean accuracy", num(r.clean_accuracy)), ("Scores", ", ".join(pretty(s) for s in r.scores))]),
    ]
    wide = r.summary.pivot(index="severity", columns="score", values="mean_auroc").reset_index()
    blocks += frame_table(wide, caption="Mean AUROC over the corruptions, per severity and score")
    disagreement = ensemble_disagreement(r)
    if disagreement is not None:
        blocks += frame_table(
            disagreement,
            caption="Ensemble disagreement (the members' mutual information, nats), mean over the clean images and over the shifted ones, per severity",
        )
    for score in r.scores:
        blocks += figure(ood_heatmap(r, score))
    return blocks


def ensemble_disagreement(r: OODDetectionResult):
    """Per severity: the ensemble's mean disagreement (mutual information) on clean and on shifted images, averaged over
    the corruptions; None without an ensemble (or for reports made before the means were recorded)."""
    t = r.table[r.table["score"] == "ensemble_agreement"]
    if t.empty or "shifted_mean_score" not in t.columns:
        return None
    out = t.groupby("severity", as_index=False)[["clean_mean_score", "shifted_mean_score"]].mean()
    return out.assign(clean=-out["clean_mean_score"], shifted=-out["shifted_mean_score"])[["severity", "clean", "shifted"]]
