"""Token salience inline in the sentence: each word with a colour behind it (red raises the
explained class, blue lowers it), as HTML for the dashboard and the HTML report.

Word pieces (``##ing``) are merged back into their word, summing their attributions, and
special tokens (``[CLS]``, ``[SEP]``, padding) are dropped, so the sentence reads as written.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import numpy as np

SPECIAL_TOKENS = frozenset({"[CLS]", "[SEP]", "[PAD]", "<s>", "</s>", "<pad>"})


def word_salience(tokens: Sequence[str], values: Sequence[float]) -> list[tuple[str, float]]:
    """``(word, summed attribution)`` per word of one explained text, in order."""
    words: list[tuple[str, float]] = []
    for token, value in zip(tokens, values, strict=False):
        if token in SPECIAL_TOKENS:
            continue
        v = float(value) if np.isfinite(value) else 0.0
        if token.startswith("##") and words:
            word, total = words[-1]
            words[-1] = (word + token[2:], total + v)
        else:
            words.append((token, v))
    return words


def salience_html(words: Sequence[tuple[str, float]], *, scale: float | None = None) -> str:
    """The words as ``<span>``\\ s with a background whose strength is ``|value| / scale``.

    ``scale`` defaults to the largest |value| of the text (each method scaled on its own, so
    methods compare in pattern, not in units). Each span's tooltip gives the exact value.
    """
    peak = scale if scale is not None else max((abs(v) for _, v in words), default=0.0)
    spans = []
    for word, value in words:
        strength = 0.0 if peak <= 0 else min(abs(value) / peak, 1.0)
        rgb = "214,39,40" if value > 0 else "31,119,180"
        spans.append(
            f'<span class="salience" title="{value:+.4g}" data-value="{value:.6g}" '
            f'style="background: rgba({rgb},{0.85 * strength:.2f}); padding: 1px 3px; margin: 1px; border-radius: 3px; line-height: 2;">'
            f"{html.escape(word)}</span>"
        )
    return " ".join(spans)
