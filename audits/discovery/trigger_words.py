"""Trigger words (text): single words that, inserted into a text, flip the decision to one class.

Candidate words come from the evaluation texts' vocabulary, ranked by how strongly a word's
presence goes with one predicted class in the shared forward pass. Each candidate is
inserted at the start of every audited text not already predicted as the class, and the
rewritten texts go through the model in one batched pass. A word whose flip rate is far
above the typical word's is a cue the model keys on by itself.

The words and the texts do not depend on the seed (the texts are evenly spaced over the
evaluation data): ranking by the attributions of the seeded explained samples, and a seeded
subset of texts, moved the toxicity demo's finding between pass and warn from seed to seed.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import pandas as pd

from audits.probes import Probe, RunContext, register
from audits.results.discovery import TriggerWordsResult
from audits.stats import wilson_interval

if TYPE_CHECKING:
    from audits.data import AuditData
    from models.loader import ModelHandle

_WORD = re.compile(r"[a-z][a-z'-]+")


def candidate_words(texts: list[str], pred: np.ndarray, n_classes: int, k: int, attributed: list[str]) -> list[str]:
    """Up to ``k`` words: the attributed tokens found in the vocabulary first, then the words whose presence goes most
    with one predicted class (smoothed log-odds over texts, words in at least 3 texts)."""
    docs = [set(_WORD.findall(t.lower())) for t in texts]
    df = Counter(w for d in docs for w in d)
    vocab = [w for w, c in df.items() if c >= 3]
    picked = [w for w in dict.fromkeys(a.lower().lstrip("#") for a in attributed) if w in df][: k // 2]
    if vocab:
        counts = np.zeros((len(vocab), n_classes))
        where = {w: i for i, w in enumerate(vocab)}
        for d, p in zip(docs, pred, strict=True):
            for w in d:
                if w in where:
                    counts[where[w], p] += 1
        share = (counts + 1) / (counts.sum(axis=1, keepdims=True) + n_classes)
        prior = (np.bincount(pred, minlength=n_classes) + 1) / (len(pred) + n_classes)
        score = np.log(share / prior).max(axis=1)
        picked += [vocab[i] for i in np.argsort(-score, kind="stable") if vocab[i] not in picked]
    return picked[:k]


@register
class TriggerWords(Probe):
    """Single words that alone flip decisions into one class (text models).

    Parameters
    ----------
    n_words : int
        Candidate words tested.
    max_rows : int
        Texts each word is inserted into (evenly spaced over the evaluation data when there are more).
    """

    name: ClassVar[str] = "trigger_words"
    result_type: ClassVar = TriggerWordsResult
    category: ClassVar = "robustness"
    modalities: ClassVar = ("text",)
    default_for: ClassVar = ("text",)
    title: ClassVar[str] = "Trigger words"
    description: ClassVar[str] = (
        "Inserts single words from the evaluation texts' vocabulary (ranked by attributions) into texts: which flip decisions into one class."
    )

    def __init__(self, n_words: int = 20, max_rows: int = 64) -> None:
        self.n_words = n_words
        self.max_rows = max_rows

    def _run(self, model: ModelHandle, data: AuditData, context: RunContext) -> TriggerWordsResult:
        texts, pred = data.texts, context.predictions
        words = candidate_words(texts, pred, len(data.class_names), self.n_words, [])
        rows = np.arange(len(texts))
        if len(rows) > self.max_rows:  # evenly spaced, not seeded: the verdict must not move with the seed
            rows = np.unique(np.linspace(0, len(rows) - 1, self.max_rows).round().astype(np.int64))
        base = [texts[i] for i in rows]
        orig = pred[rows]
        new = np.empty((len(words), len(rows)), dtype=np.int64)
        for j, w in enumerate(words):
            new[j] = model.predict_proba(model.tokenize([f"{w} {t}" for t in base])).argmax(axis=1)
            context.report((j + 1) / max(len(words), 1), "words")
        table = []
        for target in range(len(data.class_names)):
            others = orig != target
            n = int(others.sum())
            if not n:
                continue
            for j, w in enumerate(words):
                k = int((new[j][others] == target).sum())
                lo, hi = wilson_interval(k, n)
                table.append(
                    {"word": w, "target": data.class_names[target], "n": n, "flip_rate": k / n, "lo": float(lo), "hi": float(hi), "_j": j, "_t": target}
                )
        frame = pd.DataFrame(table)
        examples: list[str] = []
        if len(frame):
            frame["typical"] = frame.groupby("target", sort=False)["flip_rate"].transform("median")
            frame["excess"] = frame["flip_rate"] - frame["typical"]
            top = frame.loc[frame["excess"].idxmax()]
            j, t = int(top["_j"]), int(top["_t"])
            examples = [f"{words[j]} {base[i]}" for i in np.flatnonzero((orig != t) & (new[j] == t))[:5]]
            frame = frame.drop(columns=["_j", "_t"])
        ranked = "class association in the evaluation texts"
        return TriggerWordsResult(method=self.name, params=self.params, seed=context.seed, n_texts=len(rows), words=frame, examples=examples, ranked_by=ranked)
