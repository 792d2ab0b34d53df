"""Tokens as players: what text attribution probes share.

A text sample is a row of token ids padded to ``max_length``. Its *players* (what SHAP and
LIME switch on and off) are words or tokens; special tokens (CLS, SEP, padding) are never
players and always stay. ``segments`` label each position with its player (0..M-1) or -1
for a fixed position, as superpixel maps do for images, so the batched coalition machinery
of ``_masking`` applies unchanged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np
import torch

if TYPE_CHECKING:
    from models.loader import ModelHandle

Players = Literal["words", "tokens"]
PLAYERS: tuple[str, ...] = ("words", "tokens")
Replacement = Literal["mask", "pad"]
REPLACEMENTS: tuple[str, ...] = ("mask", "pad")


def token_lengths(ids: np.ndarray, pad_id: int) -> np.ndarray:
    """Per row, one past the last non-padding position (the row's length in tokens)."""
    used = ids != pad_id
    last = used.shape[1] - np.argmax(used[:, ::-1], axis=1)
    return np.where(used.any(axis=1), last, 0).astype(np.int64)


def sample_tokens(model: ModelHandle, ids: np.ndarray) -> list[list[str]]:
    """Each row's tokens up to its last non-padding position (special tokens included)."""
    lengths = token_lengths(ids, model.tokenizer.pad_token_id)
    return [list(model.tokenizer.convert_ids_to_tokens([int(t) for t in row[:n]])) for row, n in zip(ids, lengths, strict=True)]


def fixed_positions(model: ModelHandle, ids: np.ndarray) -> np.ndarray:
    """(n, T) bool: positions holding a special token (CLS, SEP, padding, ...), which no probe perturbs."""
    from models.text import special_ids

    return np.isin(ids, special_ids(model.tokenizer))


def player_segments(model: ModelHandle, ids: np.ndarray, texts: list[str], players: Players) -> np.ndarray:
    """(n, T) int64 player of every position: 0..M_i-1 in reading order, -1 for special tokens.

    ``'words'`` groups the word pieces of one word (the tokenizer's ``word_ids``); when the
    tokenizer cannot say (a slow tokenizer, or texts that no longer encode to ``ids``), each
    token is its own player.
    """
    fixed = fixed_positions(model, ids)
    segments = np.where(fixed, -1, 0).astype(np.int64)
    words = _word_ids(model, ids, texts) if players == "words" else None
    for i in range(len(ids)):
        free = np.flatnonzero(~fixed[i])
        if words is not None:
            labels = np.unique(words[i, free], return_inverse=True)[1]
        else:
            labels = np.arange(len(free))
        segments[i, free] = labels
    return segments


def _word_ids(model: ModelHandle, ids: np.ndarray, texts: list[str]) -> np.ndarray | None:
    tokenizer = model.tokenizer
    try:
        enc = tokenizer(list(texts), padding="max_length", truncation=True, max_length=ids.shape[1], return_attention_mask=False, return_token_type_ids=False)
        if not np.array_equal(np.asarray(enc["input_ids"], dtype=np.int64), ids):
            return None
        rows = [[-1 if w is None else w for w in enc.word_ids(i)] for i in range(len(texts))]
    except (ValueError, AttributeError, NotImplementedError):  # tokenizers without word alignment
        return None
    return np.asarray(rows, dtype=np.int64)


def player_groups(segments: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """(number of players, sample positions) for each distinct player count, ascending."""
    counts = segments.max(axis=1) + 1
    return [(int(m), np.flatnonzero(counts == m)) for m in np.unique(counts)]


def spread_over_tokens(values: np.ndarray, segments: np.ndarray) -> np.ndarray:
    """(n, M) player values -> (n, T): each word's value shared equally by its tokens; 0 at fixed positions."""
    m = values.shape[1]
    out = np.zeros(segments.shape, dtype=np.float64)
    for i, row in enumerate(segments):
        free = row >= 0
        if not free.any() or m == 0:
            continue
        sizes = np.bincount(row[free], minlength=m)
        out[i, free] = (values[i] / np.maximum(sizes, 1))[row[free]]
    return out


def hidden_ids(model: ModelHandle, ids: np.ndarray, replacement: Replacement) -> np.ndarray:
    """``ids`` with every non-special token replaced by the mask token (or padding)."""
    from models.text import replacement_id

    return np.where(fixed_positions(model, ids), ids, replacement_id(model.tokenizer, replacement))


class TokenMasker:
    """Token ids for coalitions of players: a player outside the coalition shows the
    replacement token ([MASK], or padding, which the attention mask then hides) at each of
    its positions; special tokens always stay."""

    def __init__(self, ids: torch.Tensor, segments: torch.Tensor, replacement: int) -> None:
        self.ids = ids
        self.segments = segments.long()
        self.replacement = int(replacement)
        self.rows_per_pair = 1
        # The gathered ids and result (int64), the gathered segment labels and the keep flags.
        self.row_bytes = 8 * 3 * ids.shape[1] + ids.shape[1]

    def __call__(self, samples: torch.Tensor, masks: torch.Tensor, coalitions: torch.Tensor) -> torch.Tensor:
        seg = self.segments[samples]
        keep = masks.gather(1, seg.clamp(min=0)) | (seg < 0)
        return torch.where(keep, self.ids[samples], torch.full_like(seg, self.replacement))
