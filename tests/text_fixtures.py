"""Tiny text models for tests: a word-level BERT tokenizer built offline, a random BERT classifier
saved with ``save_pretrained``, bag-of-words models with known answers, and evaluation CSVs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from models.text import import_transformers

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = (
    "the a an i you we they it this that is are was and or but not to of in on for with at my your our "
    "good great bad awful nice thanks thank fixing fixed article source page edit edits idiot fool stupid "
    "garbage loser pathetic shut up am person people friend neighbour says reader teacher family "
    "muslim christian jewish hindu buddhist sikh atheist muslims christians mosque church "
    "woman man women men she he female male gay straight lesbian bisexual "
    "cat sat mat dog ran park movie film love hate really very"
).split()
PUNCTUATION = [".", ",", "!", "?", ":", "'", "-"]
VOCAB = SPECIALS + WORDS + PUNCTUATION


def make_tokenizer():
    """An uncased word-level BERT tokenizer over ``VOCAB`` (unknown words become [UNK])."""
    transformers = import_transformers()
    return transformers.BertTokenizer(vocab={t: i for i, t in enumerate(VOCAB)}, do_lower_case=True)


def tiny_bert(n_classes: int = 2, seed: int = 0, layers: int = 2, heads: int = 2):
    """A randomly initialised BertForSequenceClassification (hidden 32) in eval mode."""
    transformers = import_transformers()
    torch.manual_seed(seed)
    config = transformers.BertConfig(
        vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=layers, num_attention_heads=heads, intermediate_size=64,
        max_position_embeddings=64, num_labels=n_classes, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )  # fmt: skip
    return transformers.BertForSequenceClassification(config).eval()


def save_model(folder: Path, model, tokenizer) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


TEXTS = [
    "thanks for fixing the article",
    "you are an idiot",
    "i love this movie",
    "the cat sat on the mat",
    "shut up , you pathetic loser",
    "my muslim friend says this page is good",
    "as a christian person i hate this edit",
    "the dog ran in the park",
    "this source is really bad",
    "my jewish neighbour says thanks",
    "you are a stupid fool",
    "she is a great teacher",
]


def text_frame(n: int, seed: int = 0) -> pd.DataFrame:
    """``n`` rows cycling through ``TEXTS`` with labels and a two-level sensitive column."""
    rng = np.random.default_rng(seed)
    texts = [TEXTS[i % len(TEXTS)] for i in range(n)]
    toxic = [any(w in t.split() for w in ("idiot", "stupid", "loser", "hate", "bad")) for t in texts]
    return pd.DataFrame({"text": texts, "label": np.where(toxic, "toxic", "ok"), "group": rng.choice(["a", "b"], n)})


def text_card(name: str = "tiny-bert", **overrides) -> dict:
    card = {
        "name": name,
        "modality": "text",
        "format": "huggingface",
        "weights": "model",
        "class_names": ["ok", "toxic"],
        "input": {"kind": "text", "text_column": "text", "max_length": 24},
        "data": {"path": "eval.csv", "label_column": "label", "sensitive": ["group"]},
    }
    card.update(overrides)
    return card


class KeyedBag(nn.Module):
    """Logits (0, strength * [any key token present] - strength / 2): a model that reads only ``keys``."""

    def __init__(self, keys: list[int], strength: float = 4.0) -> None:
        super().__init__()
        self.register_buffer("keys", torch.as_tensor(keys, dtype=torch.long))
        self.strength = strength
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        hit = torch.isin(input_ids, self.keys).any(dim=1).float()
        score = self.scale * (self.strength * hit - self.strength / 2)
        return torch.stack([torch.zeros_like(score), score], dim=1)


class WordWeights(nn.Module):
    """Logits (0, sum of per-token weights over unmasked tokens): additive in the tokens, so its
    Shapley values per word are known exactly."""

    def __init__(self, weights: torch.Tensor) -> None:
        super().__init__()
        self.weights = nn.Parameter(weights.float())

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        score = (self.weights[input_ids] * mask).sum(dim=1)
        return torch.stack([torch.zeros_like(score), score], dim=1)
