"""Uncertainty results: predictive uncertainty with selective prediction, and out-of-distribution detection."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from audits.results.base import Measurement, ProbeResult, finite, number, proportion
from audits.serialization import serializable


@serializable
@dataclass(frozen=True, kw_only=True)
class UncertaintyResult(ProbeResult):
    """Predictive uncertainty from each available source, and selective prediction on it.

    ``sources``: one row per source of predictive distributions (``softmax``: the single
    deterministic pass; ``mc_dropout``; ``ensemble``; ``tta``: test-time augmentation) with
    passes, accuracy of the averaged prediction, mean predictive entropy, mean expected
    entropy, mean mutual information (predictive minus expected entropy: the part of the
    uncertainty due to disagreement between passes), entropy of right and of wrong
    predictions, AURC (area under the risk-coverage curve, confidence = the averaged
    prediction's top probability), E-AURC (AURC minus the best AURC any ranking of these
    errors reaches), selective accuracy at ``coverage`` and n. ``risk_coverage``: per
    source, accuracy and risk at each coverage of a grid. ``by_group``: per source,
    sensitive attribute and group, accuracy, mean entropy, AURC and selective accuracy at
    ``coverage``. ``notes`` say which sources were skipped and why.
    """

    rows: np.ndarray
    coverage: float
    sources: pd.DataFrame
    risk_coverage: pd.DataFrame
    by_group: pd.DataFrame
    notes: list[str] = field(default_factory=list)

    def headline(self) -> str:
        parts = []
        for r in self.sources.itertuples(index=False):
            parts.append(f"{r.source}: entropy {r.mean_entropy:.3f}, MI {r.mean_mutual_information:.3f}, AURC {r.aurc:.3f}")
        return "; ".join(parts)

    def measurements(self) -> Iterator[Measurement]:
        """Per source: ``aurc``, ``e_aurc``, ``mean_predictive_entropy``, ``mean_mutual_information`` and ``selective_accuracy``
        (subject ``mc_dropout/coverage=0.8``, Wilson interval); per group ``aurc`` and ``selective_accuracy`` (subject
        ``softmax/site=C``)."""
        for r in self.sources.itertuples(index=False):
            where = f".sources[source={r.source}]"
            n = int(r.n)
            yield Measurement(name="aurc", subject=r.source, value=finite(r.aurc), direction="lower_is_better", evidence=where, n=n)
            yield Measurement(name="e_aurc", subject=r.source, value=finite(r.e_aurc), direction="lower_is_better", evidence=where, n=n)
            yield Measurement(name="mean_predictive_entropy", subject=r.source, value=finite(r.mean_entropy), evidence=where, n=n)
            yield Measurement(name="mean_mutual_information", subject=r.source, value=finite(r.mean_mutual_information), evidence=where, n=n)
            yield proportion(
                "selective_accuracy", r.selective_accuracy, _kept(n, self.coverage), subject=f"{r.source}/coverage={number(self.coverage)}", evidence=where
            )
        for r in self.by_group.itertuples(index=False):
            subject = f"{r.source}/{r.attribute}={r.group}"
            where = f".by_group[source={r.source},attribute={r.attribute},group={r.group}]"
            yield Measurement(name="aurc", subject=subject, value=finite(r.aurc), direction="lower_is_better", evidence=where, n=int(r.count))
            yield proportion(
                "selective_accuracy",
                r.selective_accuracy,
                round(int(r.count) * self.coverage),
                subject=f"{subject}/coverage={number(self.coverage)}",
                evidence=where,
            )


def _kept(n: int, coverage: float) -> int:
    """Rows the selective accuracy rests on: the ``coverage`` share of ``n``, rounded up, at least one (0 when n is 0)."""
    return 0 if n <= 0 else max(1, math.ceil(coverage * n - 1e-9))


@serializable
@dataclass(frozen=True, kw_only=True)
class OODDetectionResult(ProbeResult):
    """How well confidence scores separate clean inputs from the corruption suite's shifted ones.

    ``table``: per corruption, severity and score (``msp``: maximum softmax probability;
    ``energy``: log-sum-exp of the logits, i.e. minus the energy; ``ensemble_agreement``:
    minus the ensemble's mutual information, when the card declares an ensemble) the
    AUROC of telling clean (higher score) from shifted inputs, its 95% interval
    (Hanley-McNeil), the shifted inputs' accuracy and n, and the score's mean on the clean
    and on the shifted inputs (``clean_mean_score``, ``shifted_mean_score``; for
    ``ensemble_agreement`` minus the members' mean disagreement, their mutual information in
    nats; absent in reports made before they were added). ``summary``: per severity and
    score, the mean AUROC over the corruptions.
    """

    rows: np.ndarray
    clean_accuracy: float
    scores: list[str]
    table: pd.DataFrame
    summary: pd.DataFrame
    notes: list[str] = field(default_factory=list)

    def headline(self) -> str:
        top = self.summary[self.summary["severity"] == self.summary["severity"].max()]
        return "mean AUROC at severity {}: ".format(int(top["severity"].iloc[0]) if len(top) else "-") + ", ".join(
            f"{r.score} {r.mean_auroc:.3f}" for r in top.itertuples(index=False)
        )

    def measurements(self) -> Iterator[Measurement]:
        """``ood_auroc`` per score, corruption and severity (subject ``msp/gaussian_noise/severity=3``, with its interval)
        and ``mean_ood_auroc`` per score and severity (subject ``energy/severity=5``)."""
        for r in self.table.itertuples(index=False):
            yield Measurement(
                name="ood_auroc",
                subject=f"{r.score}/{r.corruption}/severity={int(r.severity)}",
                value=finite(r.auroc),
                interval=None if not (np.isfinite(r.auroc_low) and np.isfinite(r.auroc_high)) else [float(r.auroc_low), float(r.auroc_high)],
                direction="higher_is_better",
                evidence=f".table[corruption={r.corruption},severity={int(r.severity)},score={r.score}]",
                n=int(r.n),
            )
        for r in self.summary.itertuples(index=False):
            yield Measurement(
                name="mean_ood_auroc",
                subject=f"{r.score}/severity={int(r.severity)}",
                value=finite(r.mean_auroc),
                direction="higher_is_better",
                evidence=f".summary[severity={int(r.severity)},score={r.score}]",
            )
