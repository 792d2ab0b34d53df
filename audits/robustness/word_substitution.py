"""A budgeted greedy word-substitution attack on text classifiers: synonyms only, identity terms never change."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import numpy as np
import pandas as pd

from audits.lexicons import load_identity_lexicon, load_synonyms, match_case
from audits.probes import RunContext, register
from audits.results.robustness import WordSubstitutionResult
from audits.robustness._text import _WORD
from audits.robustness.base import RobustnessProbe, check_max_rows, group_breakdown

if TYPE_CHECKING:
    from audits.data import AuditData
    from models.loader import ModelHandle


def protected_spans(text: str, patterns: list) -> list[tuple[int, int]]:
    """Character spans of every identity term (single words and phrases) in ``text``."""
    return [(m.start(), m.end()) for p in patterns for m in p.finditer(text)]


@register
class WordSubstitution(RobustnessProbe):
    """Greedy word-substitution attack: per text, the synonym swap that most lowers the true class, up to ``budget`` swaps.

    Each step tries, for every text still standing, every single swap of a not yet swapped
    word for one of its synonyms (``audits/lexicons/synonyms.yaml`` or ``synonyms``), scores
    all of them in one batched pass, and keeps per text the one that leaves the true class
    least probable; a text stops when its decision turns wrong, when every swap would raise
    that probability, or after ``budget`` swaps (a swap that leaves it unchanged is taken:
    a model keyed on either of two words needs both replaced). Identity terms (``identity_terms.yaml``,
    single words and phrases) are never replaced, and no word is replaced by one.

    Parameters
    ----------
    budget : int
        Most words replaced per text.
    max_rows : int or None
        Seeded subset of evaluation rows (None: every row).
    synonyms, identity_terms : str or None
        Paths of lists replacing the shipped ones (same YAML layouts).
    n_examples : int
        Attacked texts kept as examples (flipped ones first).
    """

    name = "word_substitution"
    result_type = WordSubstitutionResult
    modalities = ("text",)
    default_for: ClassVar = ()
    title = "Word-substitution attack (synonyms)"
    description = (
        "Replaces words by synonyms, a few at a time and always the swap that hurts the model most, to find the share of "
        "correct decisions that meaning-preserving rewording overturns; identity terms are never touched."
    )

    def __init__(
        self,
        *,
        budget: int = 3,
        max_rows: int | None = 200,
        synonyms: str | None = None,
        identity_terms: str | None = None,
        n_examples: int = 6,
    ) -> None:
        if int(budget) < 1:
            raise ValueError(f"budget must be at least 1 substitution, got {budget}")
        if n_examples < 0:
            raise ValueError(f"n_examples must be >= 0, got {n_examples}")
        self.budget = int(budget)
        self.max_rows = check_max_rows(max_rows)
        self.synonyms = synonyms
        self.identity_terms = identity_terms
        self.n_examples = n_examples

    def _run(self, model: ModelHandle, data: AuditData, context: RunContext) -> WordSubstitutionResult:
        rows = self.evaluation_rows(data, self.max_rows, context)
        all_texts = data.texts
        texts = [all_texts[i] for i in rows]
        y = data.y[rows]
        n = len(rows)
        clean_proba = context.proba[rows]
        clean_ok = clean_proba.argmax(axis=1) == y
        lexicon = load_identity_lexicon(self.identity_terms)
        identity = {t for c in lexicon.categories for terms in c.groups.values() for t in terms if t is not None}
        patterns = [c.pattern for c in lexicon.categories]
        table = {
            w: [s for s in options if s.lower() not in identity]
            for w, options in load_synonyms(self.synonyms).items()
            if w not in identity
        }  # fmt: skip

        # Per text: its words' spans and the synonyms allowed at each (identity spans excluded).
        spans: list[list[tuple[int, int]]] = []
        options: list[dict[int, list[str]]] = []
        for text in texts:
            guarded = protected_spans(text, patterns)
            words = list(_WORD.finditer(text))
            spans.append([(m.start(), m.end()) for m in words])
            allowed = {}
            for k, m in enumerate(words):
                if any(a < m.end() and m.start() < b for a, b in guarded):
                    continue
                subs = table.get(m.group(0).lower())
                if subs:
                    allowed[k] = [match_case(m.group(0), s) for s in subs]
            options.append(allowed)
        attackable = np.array([bool(o) for o in options], dtype=bool)

        def render(i: int, swaps: dict[int, str]) -> str:
            text, out, last = texts[i], [], 0
            for k in sorted(swaps):
                a, b = spans[i][k]
                out += [text[last:a], swaps[k]]
                last = b
            return "".join([*out, text[last:]])

        current: list[dict[int, str]] = [{} for _ in range(n)]
        p_true = clean_proba[np.arange(n), y].astype(np.float64)
        pred = clean_proba.argmax(axis=1)
        active = clean_ok & attackable
        for step in range(self.budget):
            context.report(step / self.budget, f"substitution {step + 1} of {self.budget}")
            owners, candidates, texts_out = [], [], []
            for i in np.flatnonzero(active):
                for k, subs in options[i].items():
                    if k in current[i]:
                        continue
                    for s in subs:
                        swaps = {**current[i], k: s}
                        owners.append(i)
                        candidates.append(swaps)
                        texts_out.append(render(i, swaps))
            if not texts_out:
                break
            proba = model.predict_proba(model.tokenize(texts_out))
            owners_a = np.asarray(owners)
            score = proba[np.arange(len(owners_a)), y[owners_a]]
            # Per text the candidate with the lowest probability of the true class (first on ties).
            order = np.lexsort((np.arange(len(owners_a)), score, owners_a))
            first = order[np.r_[True, owners_a[order][1:] != owners_a[order][:-1]]]
            stepped = np.zeros(n, dtype=bool)
            for j in first:
                i = owners_a[j]
                if score[j] > p_true[i]:  # every swap raises the true class (a plateau still steps on: keys can need two swaps)
                    active[i] = False
                    continue
                current[i], p_true[i], pred[i] = candidates[j], score[j], int(proba[j].argmax())
                stepped[i] = True
            active &= stepped & (pred == y)
        success = clean_ok & (pred != y)
        substitutions = np.array([len(c) for c in current], dtype=np.int64)
        attacked = [render(i, current[i]) if current[i] else texts[i] for i in range(n)]

        used: dict[tuple[str, str], int] = {}
        for i in np.flatnonzero(success):
            for k, s in current[i].items():
                a, b = spans[i][k]
                key = (texts[i][a:b].lower(), s.lower())
                used[key] = used.get(key, 0) + 1
        words = pd.DataFrame([{"original": o, "substitute": s, "uses": u} for (o, s), u in used.items()], columns=["original", "substitute", "uses"])
        words = words.sort_values(["uses", "original", "substitute"], ascending=[False, True, True], ignore_index=True)
        by_group = group_breakdown(
            {
                "clean_accuracy": clean_ok,
                "attacked_accuracy": clean_ok & ~success,
                "attack_success_rate": np.where(clean_ok, success, np.nan),
            },
            data.attributes.iloc[rows].reset_index(drop=True),
            data.sensitive,
        )
        picked = sorted((i for i in range(n) if current[i]), key=lambda i: (not success[i], i))[: self.n_examples]
        examples = pd.DataFrame(
            [
                {
                    "row": int(rows[i]),
                    "text": texts[i],
                    "attacked": attacked[i],
                    "substitutions": int(substitutions[i]),
                    "clean_prediction": data.class_names[int(clean_proba[i].argmax())],
                    "attacked_prediction": data.class_names[int(pred[i])],
                    "flipped": bool(success[i]),
                }  # fmt: skip
                for i in picked
            ],
            columns=["row", "text", "attacked", "substitutions", "clean_prediction", "attacked_prediction", "flipped"],
        )
        notes = []
        if n and not attackable.any():
            notes.append("No evaluated text has a word of the synonym list outside the identity terms; pass a list that covers the data's vocabulary.")
        n_ok = int(clean_ok.sum())
        return WordSubstitutionResult(
            method=self.name,
            params=self.params,
            seed=context.seed,
            rows=rows,
            budget=self.budget,
            clean_accuracy=float(clean_ok.mean()) if n else float("nan"),
            success=success,
            substitutions=substitutions,
            attackable=attackable,
            attack_success_rate=float(success.sum() / n_ok) if n_ok else float("nan"),
            attacked_accuracy=float((clean_ok & ~success).mean()) if n else float("nan"),
            mean_substitutions=float(substitutions[success].mean()) if success.any() else float("nan"),
            words=words,
            by_group=by_group,
            examples=examples,
            notes=notes,
        )
