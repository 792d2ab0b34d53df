"""Text robustness: accuracy and decision flips under typos, word dropout and synonym swaps."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from audits.lexicons import load_synonyms
from audits.probes import RunContext, register
from audits.results.robustness import TextRobustnessResult as TextRobustnessResult
from audits.robustness._text import TEXT_PERTURBATIONS, perturb
from audits.robustness.base import RobustnessProbe, check_max_rows, group_breakdown

if TYPE_CHECKING:
    from audits.data import AuditData
    from models.loader import ModelHandle


@register
class TextRobustness(RobustnessProbe):
    """Typos, word dropout and synonym swaps at several severities, overall and per group.

    Parameters
    ----------
    perturbations : list of {'typos', 'word_dropout', 'synonyms'}
        ``typos``: a keyboard slip in a word (adjacent letters swapped, a letter dropped, a
        neighbouring key inserted or hit instead); ``word_dropout``: the word is deleted;
        ``synonyms``: the word is replaced by a synonym from the shipped list
        (``audits/lexicons/synonyms.yaml``; words without an entry never change).
    severities : list of float
        Probability that any one word is perturbed, in (0, 1].
    max_rows : int or None
        Seeded subset of evaluation rows (None: every row).
    synonyms : str or None
        Path of a synonym list replacing the shipped one (same YAML layout).
    n_examples : int
        Perturbed texts kept as examples.

    Perturbed texts are tokenized like the evaluation data and go through the model in
    large batches. A flip is a changed prediction, right or wrong.
    """

    name = "text_robustness"
    result_type = TextRobustnessResult
    modalities = ("text",)
    default_for = ("text",)
    title = "Text perturbations"
    description = (
        "Adds keyboard typos, deletes words and swaps words for synonyms at increasing rates, and measures how "
        "accuracy falls and how often the decision changes, overall and per group."
    )

    def __init__(
        self,
        *,
        perturbations: list[str] = TEXT_PERTURBATIONS,
        severities: list[float] = (0.1, 0.3),
        max_rows: int | None = 200,
        synonyms: str | None = None,
        n_examples: int = 6,
    ) -> None:
        unknown = sorted(set(perturbations) - set(TEXT_PERTURBATIONS))
        if unknown or not len(perturbations):
            raise ValueError(f"perturbations must be a non-empty list from {TEXT_PERTURBATIONS}, got {list(perturbations)}")
        if not len(severities) or any(not 0 < float(s) <= 1 for s in severities):
            raise ValueError(f"severities must be a non-empty list of probabilities in (0, 1], got {list(severities)}")
        if n_examples < 0:
            raise ValueError(f"n_examples must be >= 0, got {n_examples}")
        self.perturbations = list(dict.fromkeys(perturbations))
        self.severities = sorted(float(s) for s in severities)
        self.max_rows = check_max_rows(max_rows)
        self.synonyms = synonyms
        self.n_examples = n_examples

    def _run(self, model: ModelHandle, data: AuditData, context: RunContext) -> TextRobustnessResult:
        rows = self.evaluation_rows(data, self.max_rows, context)
        all_texts = data.texts
        texts = [all_texts[i] for i in rows]
        y = data.y[rows]
        clean_proba = context.proba[rows]
        clean_pred = clean_proba.argmax(axis=1)
        table = load_synonyms(self.synonyms)
        conditions = [(k, s) for k in self.perturbations for s in self.severities]
        variants: list[str] = []
        for kind, severity in conditions:
            variants += perturb(texts, kind, severity, context.rng(f"{self.name}:{kind}:{severity}"), table)
        context.report(0.2, "perturbed texts")
        proba = model.predict_proba(model.tokenize(variants)).reshape(len(conditions), len(rows), -1)
        pred = proba.argmax(axis=2)
        correct = pred == y[None, :]
        flips = pred != clean_pred[None, :]
        drop = clean_proba[np.arange(len(rows)), clean_pred][None, :] - np.take_along_axis(proba, clean_pred[None, :, None], axis=2)[..., 0]
        changed = np.array(variants, dtype=object).reshape(len(conditions), len(rows)) != np.array(texts, dtype=object)[None, :]
        records = [
            {
                "perturbation": kind,
                "severity": severity,
                "accuracy": float(correct[c].mean()),
                "flip_rate": float(flips[c].mean()),
                "confidence_drop": float(drop[c].mean()),
                "changed": float(changed[c].mean()),
                "n": len(rows),
            }  # fmt: skip
            for c, (kind, severity) in enumerate(conditions)
        ]
        by_group = group_breakdown(
            {"accuracy": correct.T, "flip_rate": flips.T},
            data.attributes.iloc[rows].reset_index(drop=True),
            data.sensitive,
            conditions=pd.DataFrame(conditions, columns=["perturbation", "severity"]),
        )
        notes = []
        if "synonyms" in self.perturbations and not changed[[c for c, (k, _) in enumerate(conditions) if k == "synonyms"]].any():
            notes.append("No evaluated text contains a word of the synonym list; pass a list that covers the data's vocabulary.")
        return TextRobustnessResult(
            method=self.name,
            params=self.params,
            seed=context.seed,
            rows=rows,
            clean_accuracy=float((clean_pred == y).mean()) if len(rows) else float("nan"),
            table=pd.DataFrame(records),
            by_group=by_group,
            examples=self._examples(conditions, rows, texts, variants, clean_pred, pred, flips, changed, data.class_names),
            notes=notes,
        )

    def _examples(self, conditions, rows, texts, variants, clean_pred, pred, flips, changed, class_names) -> pd.DataFrame:
        """Flipped texts first (the most severe conditions first), then merely changed ones."""
        n = len(rows)
        order = sorted((not flips[c, i], -conditions[c][1], c, i) for c in range(len(conditions)) for i in range(n) if changed[c, i])
        picked, seen = [], set()
        for _, _, c, i in order:
            if len(picked) >= self.n_examples:
                break
            if (conditions[c][0], i) in seen:  # one example per text and perturbation
                continue
            seen.add((conditions[c][0], i))
            picked.append({
                "perturbation": conditions[c][0], "severity": conditions[c][1], "row": int(rows[i]), "text": texts[i],
                "perturbed": variants[c * n + i], "clean_prediction": class_names[int(clean_pred[i])],
                "perturbed_prediction": class_names[int(pred[c, i])], "flipped": bool(flips[c, i]),
            })  # fmt: skip
        return pd.DataFrame(picked, columns=["perturbation", "severity", "row", "text", "perturbed", "clean_prediction", "perturbed_prediction", "flipped"])
