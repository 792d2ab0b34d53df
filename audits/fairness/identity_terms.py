"""Identity-term counterfactuals for text: swap the group a text names, does the score move?

Two sources of texts. Templates: neutral sentences with one identity slot, filled with every
group of a category. Evaluation texts: every text that names exactly one group of a category
(whole-word match on the lexicon's terms) is rewritten into each other group by swapping the
aligned terms ("mosque" -> "church"). Nothing else changes, so a model that ignores identity
terms moves by exactly 0. All variants go through the model in large batches.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, ClassVar, Literal

import numpy as np
import pandas as pd

from audits.fairness.group_metrics import resolve_positive_class
from audits.lexicons import IdentityCategory, load_identity_lexicon, match_case
from audits.probes import Probe, RunContext, register
from audits.results.fairness import IdentityTermResult as IdentityTermResult
from audits.stats import wilson_interval

if TYPE_CHECKING:
    from audits.data import AuditData
    from models.loader import ModelHandle

Source = Literal["templates", "evaluation"]
SOURCES: tuple[str, ...] = ("templates", "evaluation")
_ARTICLE = re.compile(r"(?:^|(?<=\W))(an?|An?|AN?)(\s+)$")
_SLOT = re.compile(r"(?:\b(an?|An?) )?\{(adjective|Adjective)\}")


def _article(article: str, word: str) -> str:
    """'a' or 'an' before ``word`` (by its first letter), in the case of ``article``."""
    right = "an" if word[:1].lower() in "aeiou" else "a"
    return match_case(article, right) if article[:1].isupper() else right


def fill(template: str, adjective: str) -> str:
    """The template with its identity slot filled ('{Adjective}' capitalized), fixing 'a'/'an'."""

    def slot(m: re.Match) -> str:
        word = adjective[:1].upper() + adjective[1:] if m.group(2) == "Adjective" else adjective
        return (f"{_article(m.group(1), word)} " if m.group(1) else "") + word

    return _SLOT.sub(slot, template)


def mentioned_groups(text: str, category: IdentityCategory) -> set[str]:
    return {category.group_of(m.group(0)) for m in category.pattern.finditer(text)} - {None}


def swap(text: str, category: IdentityCategory, target: str) -> str | None:
    """``text`` with every term of ``category`` replaced by its counterpart in ``target`` (case and
    'a'/'an' kept right); None when some term has no counterpart there."""
    out, last = [], 0
    for m in category.pattern.finditer(text):
        new = category.counterpart(m.group(0), target)
        if new is None:
            return None
        before = text[last : m.start()]
        art = _ARTICLE.search(before)
        if art:
            before = before[: art.start(1)] + _article(art.group(1), new) + art.group(2)
        out += [before, match_case(m.group(0), new)]
        last = m.end()
    out.append(text[last:])
    return "".join(out)


@register
class IdentityTerms(Probe):
    """Identity-term counterfactuals from templates and from the evaluation texts.

    Parameters
    ----------
    sources : list of {'templates', 'evaluation'}
        Where texts come from: the lexicon's templates filled with every group, and/or the
        evaluation texts that name one group of a category.
    categories : list of str or None
        Lexicon categories to probe (None: all; the shipped list has gender, gender_identity,
        sexual_orientation, religion, race_ethnicity, nationality, age, disability).
    lexicon : str or None
        Path of an identity lexicon replacing the shipped ``audits/lexicons/identity_terms.yaml``.
    max_rows : int or None
        Seeded subset of evaluation rows scanned for identity terms (None: all).
    positive_class : int, str or None
        The class whose probability is the score (None: class 1 of a binary model).
    ci : float
        Coverage of the Wilson intervals of flip rates.
    n_examples : int
        Largest-shift variants kept as examples.
    """

    name: ClassVar[str] = "identity_terms"
    result_type: ClassVar = IdentityTermResult
    category: ClassVar = "fairness"
    modalities: ClassVar = ("text",)
    default_for: ClassVar = ("text",)
    title: ClassVar[str] = "Identity-term counterfactuals"
    description: ClassVar[str] = (
        "Rewrites texts so that they name a different gender, religion, nationality or other identity group (from "
        "templates and from the evaluation texts, with a curated term list) and measures, per group, how much the "
        "model's score moves and how often its decision changes. A model that ignores identity terms scores 0."
    )

    def __init__(
        self,
        *,
        sources: list[Source] = SOURCES,
        categories: list[str] | None = None,
        lexicon: str | None = None,
        max_rows: int | None = 200,
        positive_class: int | str | None = None,
        ci: float = 0.95,
        n_examples: int = 8,
    ) -> None:
        if not len(sources) or set(sources) - set(SOURCES):
            raise ValueError(f"sources must be a non-empty list from {SOURCES}, got {list(sources)}")
        if max_rows is not None and max_rows < 1:
            raise ValueError(f"max_rows must be at least 1 or None, got {max_rows}")
        if not 0.0 < ci < 1.0:
            raise ValueError(f"ci must be in (0, 1), got {ci}")
        if n_examples < 0:
            raise ValueError(f"n_examples must be >= 0, got {n_examples}")
        self.sources = list(dict.fromkeys(sources))
        self.categories = None if categories is None else list(categories)
        self.lexicon = lexicon
        self.max_rows = max_rows
        self.positive_class = positive_class
        self.ci = ci
        self.n_examples = n_examples

    def check(self, model: ModelHandle, data: AuditData) -> str | None:
        reason = super().check(model, data)
        if reason is None and self.categories is not None:
            known = [c.name for c in load_identity_lexicon(self.lexicon).categories]
            unknown = sorted(set(self.categories) - set(known))
            if unknown:
                reason = f"categories {unknown} are not in the lexicon (it has {', '.join(known)})"
        return reason

    def _run(self, model: ModelHandle, data: AuditData, context: RunContext) -> IdentityTermResult:
        lexicon = load_identity_lexicon(self.lexicon)
        categories = [c for c in lexicon.categories if self.categories is None or c.name in self.categories]
        pos = resolve_positive_class(self.positive_class, data.class_names, data.favourable_class)
        # Every text to score, and the (original, counterfactual) pairs between them.
        texts: list[str] = []
        pairs: list[dict] = []  # source, category, from_group, to_group, a (original index), b (counterfactual index)
        notes: list[str] = []
        summary_base: list[dict] = []
        if "templates" in self.sources:
            for cat in categories:
                start = len(texts)
                groups = list(cat.groups)
                for template in lexicon.templates:
                    texts += [fill(template, cat.adjectives[g]) for g in groups]
                for t in range(len(lexicon.templates)):
                    base = start + t * len(groups)
                    pairs += [
                        {"source": "templates", "category": cat.name, "from_group": g0, "to_group": g1, "a": base + i, "b": base + j}
                        for i, g0 in enumerate(groups) for j, g1 in enumerate(groups) if i != j
                    ]  # fmt: skip
                summary_base.append({"source": "templates", "category": cat.name, "n_texts": len(lexicon.templates), "n_ambiguous": 0})
        if "evaluation" in self.sources:
            rows = np.arange(len(data))
            if self.max_rows is not None and self.max_rows < len(rows):
                rows = np.sort(context.rng(self.name).choice(len(rows), size=self.max_rows, replace=False))
            all_texts = data.texts
            for cat in categories:
                used = ambiguous = 0
                for r in rows:
                    text = all_texts[r]
                    found = mentioned_groups(text, cat)
                    if len(found) != 1:
                        ambiguous += len(found) > 1
                        continue
                    (g0,) = found
                    made = False
                    for g1 in cat.groups:
                        variant = None if g1 == g0 else swap(text, cat, g1)
                        if variant is None or variant == text:
                            continue
                        texts.append(variant)
                        # A negative index -1 - row: the original is scored by the audit's shared forward pass.
                        pairs.append({"source": "evaluation", "category": cat.name, "from_group": g0, "to_group": g1, "a": -1 - int(r), "b": len(texts) - 1})
                        made = True
                    used += made
                summary_base.append({"source": "evaluation", "category": cat.name, "n_texts": used, "n_ambiguous": ambiguous})
            if not any(p["source"] == "evaluation" for p in pairs):
                notes.append("No scanned evaluation text names an identity group of the lexicon; only templates were probed.")
        context.report(0.2, f"{len(texts)} texts")
        proba = model.predict_proba(model.tokenize(texts)) if texts else np.zeros((0, len(data.class_names)))

        def probs(index: np.ndarray) -> np.ndarray:
            own = index >= 0
            out = np.empty((len(index), proba.shape[1]))
            out[own] = proba[index[own]]
            out[~own] = context.proba[-1 - index[~own]]
            return out

        frame = pd.DataFrame(pairs, columns=["source", "category", "from_group", "to_group", "a", "b"])
        p_a, p_b = probs(frame["a"].to_numpy()), probs(frame["b"].to_numpy())
        pred_a, pred_b = p_a.argmax(axis=1), p_b.argmax(axis=1)
        cls = np.full(len(frame), pos) if pos is not None else pred_a
        frame["score"] = p_a[np.arange(len(frame)), cls]
        frame["counterfactual_score"] = p_b[np.arange(len(frame)), cls]
        frame["shift"] = frame["counterfactual_score"] - frame["score"]
        frame["flipped"] = pred_a != pred_b
        groups_table = self._groups(frame, proba, pos)
        return IdentityTermResult(
            method=self.name, params=self.params, seed=context.seed,
            score_class=None if pos is None else data.class_names[pos], categories=[c.name for c in categories],
            groups=groups_table, pairs=self._rates(frame, ["source", "category", "from_group", "to_group"]),
            summary=self._summary(frame, summary_base, groups_table), examples=self._examples(frame, texts, data),
            lexicon=lexicon.source, ci=self.ci, notes=notes,
        )  # fmt: skip

    def _rates(self, frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
        columns = [*keys, "n", "flips", "flip_rate", "lo", "hi", "mean_shift"]
        if frame.empty:
            return pd.DataFrame(columns=columns)
        table = frame.groupby(keys, sort=False).agg(n=("flipped", "size"), flips=("flipped", "sum"), mean_shift=("shift", "mean")).reset_index()
        table["flips"] = table["flips"].astype(np.int64)
        table["flip_rate"] = table["flips"] / table["n"]
        table["lo"], table["hi"] = wilson_interval(table["flips"].to_numpy(), table["n"].to_numpy(), self.ci)
        return table[columns]

    def _groups(self, frame: pd.DataFrame, proba: np.ndarray, pos: int | None) -> pd.DataFrame:
        table = self._rates(frame.rename(columns={"to_group": "group"}), ["source", "category", "group"])
        table["mean_score"] = np.nan
        table["positive_rate"] = np.nan
        table["n_source"] = np.nan
        for i, row in table.iterrows():
            own = frame[(frame["source"] == row["source"]) & (frame["category"] == row["category"])]
            if row["source"] == "templates":
                # Each filled template appears as the original of every pair it starts.
                idx = np.unique(own.loc[own["from_group"] == row["group"], "a"].to_numpy())
                scores = proba[idx][:, pos] if pos is not None else proba[idx].max(axis=1)
                table.at[i, "mean_score"] = float(scores.mean())
                if pos is not None:
                    table.at[i, "positive_rate"] = float((proba[idx].argmax(axis=1) == pos).mean())
            else:
                table.at[i, "n_source"] = float(own.loc[own["from_group"] == row["group"], "a"].nunique())
        return table

    @staticmethod
    def _summary(frame: pd.DataFrame, base: list[dict], groups: pd.DataFrame) -> pd.DataFrame:
        records = []
        for entry in base:
            own = frame[(frame["source"] == entry["source"]) & (frame["category"] == entry["category"])]
            g = groups[(groups["source"] == entry["source"]) & (groups["category"] == entry["category"])].dropna(subset=["mean_shift"])
            top = g.loc[g["mean_shift"].abs().idxmax()] if len(g) else None
            records.append({
                **entry, "n_variants": len(own), "flip_rate": float(own["flipped"].mean()) if len(own) else np.nan,
                "mean_abs_shift": float(own["shift"].abs().mean()) if len(own) else np.nan,
                "most_shifted_group": None if top is None else str(top["group"]),
                "most_shifted": np.nan if top is None else float(top["mean_shift"]),
            })  # fmt: skip
        return pd.DataFrame(
            records, columns=["source", "category", "n_texts", "n_ambiguous", "n_variants", "flip_rate", "mean_abs_shift", "most_shifted_group", "most_shifted"]
        )

    def _examples(self, frame: pd.DataFrame, texts: list[str], data: AuditData) -> pd.DataFrame:
        columns = ["source", "category", "from_group", "to_group", "text", "counterfactual", "score", "counterfactual_score", "flipped"]
        if frame.empty or not self.n_examples:
            return pd.DataFrame(columns=columns)
        top = frame.reindex(frame["shift"].abs().sort_values(ascending=False, kind="stable").index).head(self.n_examples)
        all_texts = data.texts if (top["a"] < 0).any() else []
        return pd.DataFrame({
            **{k: top[k].to_numpy() for k in ("source", "category", "from_group", "to_group")},
            "text": [texts[a] if a >= 0 else all_texts[-1 - a] for a in top["a"]],
            "counterfactual": [texts[b] for b in top["b"]],
            "score": top["score"].to_numpy(), "counterfactual_score": top["counterfactual_score"].to_numpy(),
            "flipped": top["flipped"].to_numpy(),
        })[columns]  # fmt: skip
