"""Out-of-distribution detection: do confidence scores tell clean images from the corruption suite's shifted ones?"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import numpy as np
import pandas as pd
from scipy.special import logsumexp, softmax

from audits.probes import Probe, RunContext, register
from audits.results.uncertainty import OODDetectionResult
from audits.robustness._corruptions import check_corruptions, check_severities, corrupted_proba
from audits.robustness.base import RobustnessProbe, check_max_rows
from audits.stats import auroc, auroc_interval
from audits.uncertainty._sources import decompose

if TYPE_CHECKING:
    from audits.data import AuditData
    from models.loader import ModelHandle


@register
class OODDetection(Probe):
    """AUROC of maximum softmax probability, energy and (with an ensemble) ensemble agreement at separating clean
    images from the same images under each corruption and severity.

    The shifted images are the corruption suite's (same corruption seeds as the ``corruptions`` probe, so
    the same noise draws); clean inputs should score higher than shifted ones. An AUROC near 0.5 means the
    score cannot flag the shift, so a deployment could not rely on it to abstain on such inputs.

    Parameters
    ----------
    corruptions : list of str or None
        Corruptions of the suite (see the ``corruptions`` probe); None: all of them.
    severities : list of int
        Severities, 1 (mild) to 5 (severe).
    max_rows : int or None
        Seeded subset of clean images (None: every image); each is compared with its own corrupted versions.
    """

    name = "ood_detection"
    category: ClassVar = "robustness"
    result_type = OODDetectionResult
    modalities = ("image",)
    default_for = ("image",)
    title = "Out-of-distribution detection"
    description = (
        "Measures whether the model's confidence (maximum softmax probability), its energy score and, with an ensemble, "
        "the members' agreement tell clean images from noisy, blurred, low-contrast or occluded ones: the AUROC per "
        "corruption and severity."
    )

    def __init__(self, *, corruptions: list[str] | None = None, severities: list[int] = (1, 3, 5), max_rows: int | None = 512) -> None:
        self.corruptions = check_corruptions(corruptions) if corruptions is not None else None
        self.severities = check_severities(list(severities))
        self.max_rows = check_max_rows(max_rows)

    def _run(self, model: ModelHandle, data: AuditData, context: RunContext) -> OODDetectionResult:
        names = self.corruptions or check_corruptions(None)
        rows = RobustnessProbe.evaluation_rows(data, self.max_rows, context)
        x, y = data.x[rows], data.y[rows]
        value_range = tuple(float(v) for v in model.card.input.value_range)
        notes: list[str] = []
        scores = ["msp", "energy"]
        if model.card.output == "probabilities":
            scores.remove("energy")
            notes.append("Energy left out: the network outputs probabilities, so its logits (log-probabilities) all have log-sum-exp 0.")
        members = [model]
        if model.card.ensemble:
            from models.loader import load_ensemble

            members = load_ensemble(model)
            scores.append("ensemble_agreement")

        def score(outputs: list[np.ndarray]) -> dict[str, np.ndarray]:
            """Scores per row from each member's logits (n, K); higher = more like the clean data."""
            logits = outputs[0]
            out = {"msp": softmax(logits, axis=1).max(axis=1)}
            if "energy" in scores:
                out["energy"] = logsumexp(logits, axis=1)
            if "ensemble_agreement" in scores:
                out["ensemble_agreement"] = -decompose(np.stack([softmax(o, axis=1) for o in outputs]))[3]
            return out

        clean_logits = [m.logits(x) for m in members]
        clean = score(clean_logits)
        clean_accuracy = float((clean_logits[0].argmax(axis=1) == y).mean()) if len(y) else float("nan")
        records = []
        for i, name in enumerate(names):
            context.report(i / len(names), name)
            seed = int(context.rng(f"corruptions:{name}").integers(2**62))  # the corruptions probe's draws
            shifted = [corrupted_proba(m, x, name, self.severities, seed, value_range, logits=True) for m in members]  # (S, n, K) each
            for s, severity in enumerate(self.severities):
                per = score([o[s] for o in shifted])
                accuracy = float((shifted[0][s].argmax(axis=1) == y).mean()) if len(y) else float("nan")
                for key in scores:
                    a = auroc(clean[key], per[key])
                    interval = auroc_interval(a, len(rows), len(rows)) or [float("nan"), float("nan")]
                    records.append(
                        {
                            "corruption": name,
                            "severity": int(severity),
                            "score": key,
                            "auroc": a,
                            "auroc_low": interval[0],
                            "auroc_high": interval[1],
                            "shifted_accuracy": accuracy,
                            "n": 2 * len(rows),
                            "clean_mean_score": float(clean[key].mean()) if len(rows) else float("nan"),
                            "shifted_mean_score": float(per[key].mean()) if len(rows) else float("nan"),
                        }
                    )
        table = pd.DataFrame(
            records,
            columns=["corruption", "severity", "score", "auroc", "auroc_low", "auroc_high", "shifted_accuracy", "n", "clean_mean_score", "shifted_mean_score"],
        )
        summary = table.groupby(["severity", "score"], sort=False, as_index=False)["auroc"].mean().rename(columns={"auroc": "mean_auroc"})
        return OODDetectionResult(
            method=self.name,
            params=self.params,
            seed=context.seed,
            rows=rows,
            clean_accuracy=clean_accuracy,
            scores=scores,
            table=table,
            summary=summary,
            notes=notes,
        )
