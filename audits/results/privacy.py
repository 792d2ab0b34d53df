"""Privacy results: membership inference against a sample of the training data."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import pandas as pd

from audits.results.base import Measurement, ProbeResult, bounds, finite, number, proportion
from audits.serialization import serializable


@serializable
@dataclass(frozen=True, kw_only=True)
class MembershipInferenceResult(ProbeResult):
    """How well an attacker tells training rows (members) from evaluation rows (non-members) by the model's outputs.

    ``attacks``: one row per attack (``loss``: minus the cross-entropy of the true label;
    ``confidence``: the top softmax probability, needing no label; ``calibrated_loss``: the
    mean loss over small random perturbations of the row minus its own loss, a per-example
    threshold that discounts how hard the row is) with its AUC and 95% interval
    (Hanley-McNeil), and for each false-positive-rate target (``fpr_targets``) the
    true-positive rate with its Wilson interval and the false-positive rate achieved (below
    the target when the non-members are too few to resolve it). ``roc``: per attack, points
    (fpr, tpr) of the ROC curve. ``by_group``: per attack, sensitive attribute and group,
    the AUC of members against non-members of that group, its interval and the counts.
    """

    n_members: int
    n_nonmembers: int
    train_source: str
    member_accuracy: float
    nonmember_accuracy: float
    fpr_targets: list[float]
    attacks: pd.DataFrame
    roc: pd.DataFrame
    by_group: pd.DataFrame
    notes: list[str] = field(default_factory=list)

    def headline(self) -> str:
        parts = [f"{r.attack} AUC {r.auc:.3f} [{r.auc_low:.3f}, {r.auc_high:.3f}]" for r in self.attacks.itertuples(index=False)]
        return f"{self.n_members} members vs {self.n_nonmembers} non-members: " + "; ".join(parts)

    def measurements(self) -> Iterator[Measurement]:
        """Per attack: ``membership_auc`` (with its interval), ``membership_auc_lower_bound`` (the interval's lower end,
        which policies compare with chance) and ``membership_tpr`` at each false-positive-rate target (subject
        ``loss/fpr=0.01``, Wilson interval); per group ``membership_auc`` (subject ``loss/sex=Female``)."""
        for r in self.attacks.itertuples(index=False):
            where = f".attacks[attack={r.attack}]"
            n = int(r.n_members + r.n_nonmembers)
            interval = bounds(r.auc_low, r.auc_high)
            yield Measurement(name="membership_auc", subject=r.attack, value=finite(r.auc), interval=interval, direction="lower_is_better", evidence=where, n=n)
            yield Measurement(name="membership_auc_lower_bound", subject=r.attack, value=finite(r.auc_low), direction="lower_is_better", evidence=where, n=n)
            for fpr in self.fpr_targets:
                tpr = getattr(r, f"tpr_at_{_key(fpr)}")
                yield proportion("membership_tpr", tpr, int(r.n_members), subject=f"{r.attack}/fpr={number(fpr)}", direction="lower_is_better", evidence=where)
        for r in self.by_group.itertuples(index=False):
            yield Measurement(
                name="membership_auc",
                subject=f"{r.attack}/{r.attribute}={r.group}",
                value=finite(r.auc),
                interval=bounds(r.auc_low, r.auc_high),
                direction="lower_is_better",
                evidence=f".by_group[attack={r.attack},attribute={r.attribute},group={r.group}]",
                n=int(r.n_members + r.n_nonmembers),
            )


def _key(fpr: float) -> str:
    """Column suffix of a false-positive-rate target: 0.01 -> ``fpr_0_01``, 0.001 -> ``fpr_0_001``."""
    return "fpr_" + number(fpr).replace(".", "_").replace("-", "m")


def tpr_column(fpr: float) -> str:
    """The ``attacks`` column holding the true-positive rate at ``fpr``."""
    return f"tpr_at_{_key(fpr)}"
