"""Natural text perturbations: character typos, word dropout and synonym swaps.

Each works on the words of a text (runs of letters, apostrophes inside allowed) and leaves
punctuation and spacing alone. ``severity`` is the probability that any one eligible word is
perturbed; draws come from the generator passed in, so a seed fixes every edit.
"""

from __future__ import annotations

import re
from typing import Literal

import numpy as np

from audits.lexicons import match_case

TextPerturbation = Literal["typos", "word_dropout", "synonyms"]
TEXT_PERTURBATIONS: tuple[str, ...] = ("typos", "word_dropout", "synonyms")
_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")
_KEYBOARD = ["qwertyuiop", "asdfghjkl", "zxcvbnm"]


def _neighbours() -> dict[str, str]:
    """Letters next to each letter on a QWERTY keyboard (same row and the rows above and below)."""
    where = {c: (r, i) for r, row in enumerate(_KEYBOARD) for i, c in enumerate(row)}
    out = {}
    for c, (r, i) in where.items():
        near = [d for d, (r2, i2) in where.items() if d != c and abs(r2 - r) <= 1 and abs(i2 - i) <= 1]
        out[c] = "".join(near)
    return out


NEIGHBOURS = _neighbours()


def typo(word: str, rng: np.random.Generator) -> str:
    """One keyboard-style slip: swap two adjacent letters, drop one, insert or substitute a neighbour key."""
    n = len(word)
    kind = int(rng.integers(4)) if n >= 2 else 2
    i = int(rng.integers(n))
    if kind == 0:  # swap adjacent letters
        i = min(i, n - 2)
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    if kind == 1:  # drop a letter
        return word[:i] + word[i + 1 :]
    near = NEIGHBOURS.get(word[i].lower(), "") or "e"
    key = near[int(rng.integers(len(near)))]
    key = key.upper() if word[i].isupper() else key
    if kind == 2:  # insert a neighbouring key after the letter
        return word[: i + 1] + key + word[i + 1 :]
    return word[:i] + key + word[i + 1 :]  # hit a neighbouring key instead


def add_typos(text: str, severity: float, rng: np.random.Generator) -> str:
    """Each word of two or more letters gets one typo with probability ``severity``."""
    return _WORD.sub(lambda m: typo(m.group(0), rng) if len(m.group(0)) >= 2 and rng.random() < severity else m.group(0), text)


def drop_words(text: str, severity: float, rng: np.random.Generator) -> str:
    """Each word is deleted with probability ``severity`` (one word always survives)."""
    matches = list(_WORD.finditer(text))
    if len(matches) < 2:
        return text
    drop = rng.random(len(matches)) < severity
    if drop.all():
        drop[int(rng.integers(len(matches)))] = False
    if not drop.any():
        return text
    pieces, last = [], 0
    for m, gone in zip(matches, drop, strict=True):
        if gone:
            pieces.append(text[last : m.start()])
            last = m.end()
    pieces.append(text[last:])
    out = re.sub(r"[ \t]{2,}", " ", "".join(pieces))
    return re.sub(r" +([,.!?;:])", r"\1", out).strip()


def swap_synonyms(text: str, severity: float, rng: np.random.Generator, synonyms: dict[str, list[str]]) -> str:
    """Each word with an entry in ``synonyms`` is replaced by one of them with probability ``severity``."""

    def swap(m: re.Match) -> str:
        word = m.group(0)
        options = synonyms.get(word.lower())
        if not options or rng.random() >= severity:
            return word
        return match_case(word, options[int(rng.integers(len(options)))])

    return _WORD.sub(swap, text)


def perturb(texts: list[str], kind: str, severity: float, rng: np.random.Generator, synonyms: dict[str, list[str]]) -> list[str]:
    """Every text perturbed by ``kind`` at ``severity``."""
    if kind == "typos":
        return [add_typos(t, severity, rng) for t in texts]
    if kind == "word_dropout":
        return [drop_words(t, severity, rng) for t in texts]
    if kind == "synonyms":
        return [swap_synonyms(t, severity, rng, synonyms) for t in texts]
    raise ValueError(f"perturbation must be one of {TEXT_PERTURBATIONS}, got {kind!r}")
