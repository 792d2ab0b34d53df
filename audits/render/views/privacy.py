"""Privacy results (membership inference): charts and document blocks."""

from __future__ import annotations

import pandas as pd

from audits.render.blocks import KeyValues, Paragraph, RenderContext, ci, figure, frame_table, num
from audits.render.charts import LineChart, Series, pretty
from audits.render.registry import view
from audits.results.privacy import MembershipInferenceResult, tpr_column

MEMBERSHIP_EXPLAINED = (
    "What this means: an attacker who holds a record and can query the model tries to tell whether the record was in "
    "the training data, by thresholding the model's loss or confidence on it. The AUC is the chance that a random "
    "training record scores as more 'member-like' than a random unseen one (0.5: no better than a coin), and the "
    "true-positive rate at 1% and 0.1% false positives says how many training records the attacker identifies with "
    "confidence, the measure Carlini et al. (2022) argue for: an attack can have an AUC near 0.5 and still expose a few "
    "records reliably. What it does not mean: these are simple attacks without shadow or reference models, so a result "
    "near chance is a lower bound on leakage, not a proof of privacy (stronger attacks such as LiRA may do better); and "
    "a high AUC measures a generalisation gap between the training sample and the evaluation data, which a "
    "distribution difference between the two files, not only memorisation, can cause."
)


def roc_chart(result: MembershipInferenceResult) -> LineChart:
    """ROC curve of each attack, with the diagonal of chance."""
    series = [Series(pretty(a), list(rows["fpr"]), list(rows["tpr"])) for a, rows in result.roc.groupby("attack", sort=False)]
    series.append(Series("chance", [0.0, 1.0], [0.0, 1.0], mode="lines", dash=True))
    return LineChart(
        title="Membership inference ROC",
        x_label="false-positive rate (non-members flagged)",
        y_label="true-positive rate (members found)",
        series=series,
        y_range=(0.0, 1.02),
        x_range=(0.0, 1.0),
    )


@view(MembershipInferenceResult)
def membership_view(r: MembershipInferenceResult, ctx: RenderContext) -> list:
    """The attacks' AUC and low-FPR true-positive rates, the ROC curves and the per-group AUC."""
    blocks: list = [
        Paragraph(MEMBERSHIP_EXPLAINED, "body"),
        KeyValues(
            [
                ("Members (training sample)", f"{r.n_members:,} rows of {r.train_source}"),
                ("Non-members (evaluation data)", f"{r.n_nonmembers:,}"),
                ("Accuracy on members / non-members", f"{num(r.member_accuracy)} / {num(r.nonmember_accuracy)}"),
            ]
        ),
    ]
    rows = []
    for a in r.attacks.itertuples(index=False):
        row = {"attack": a.attack, "AUC [95% CI]": ci(a.auc, a.auc_low, a.auc_high)}
        for fpr in r.fpr_targets:
            col = tpr_column(fpr)
            row[f"TPR at {fpr:.1%} FPR"] = ci(getattr(a, col), getattr(a, f"{col}_low"), getattr(a, f"{col}_high"))
            row[f"FPR achieved ({fpr:.1%})"] = num(getattr(a, f"{col}_fpr_achieved"), 4)
        rows.append(row)
    blocks += frame_table(
        pd.DataFrame(rows), caption="Attacks: AUC and true-positive rate at low false-positive rates (intervals: Hanley-McNeil for AUC, Wilson for TPR)"
    )
    blocks += figure(roc_chart(r))
    if not r.by_group.empty:
        blocks += frame_table(r.by_group, caption="Per group: AUC of the attack among that group's members and non-members")
    return blocks
