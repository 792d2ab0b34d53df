"""Text models: tokenizers, Hugging Face folders and the forward pass in token-id space.

Everything is local: ``transformers`` is imported with the hub switched off
(``HF_HUB_OFFLINE=1``), every ``from_pretrained`` passes ``local_files_only=True``, weights
come from safetensors only (``use_safetensors=True``) and no remote code is trusted. The
audit space of a text model is the matrix of padded token ids (N, max_length), int64;
the attention mask is ``ids != pad_id``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from torch import nn

from audits.errors import ModelLoadError, UnsafeModelError

SAFE_SAVE_FIX = "Re-save the model and tokenizer without pickle: model.save_pretrained(folder, safe_serialization=True) and tokenizer.save_pretrained(folder)."
# Weight files that are (or may be) Python pickles; a folder holding only these is refused.
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
_TOKENIZER_FILES = (
    "tokenizer.json",
    "vocab.txt",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "merges.txt",
    "vocab.json",
    "spiece.model",
    "sentencepiece.bpe.model",
)


def import_transformers() -> ModuleType:
    """``transformers`` with the hub off, progress bars off and its logging at errors only."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # read when huggingface_hub is first imported
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import transformers
    except ImportError:
        raise ModelLoadError(
            "Text models need the 'transformers' package, which is not installed.",
            fix="pip install 'transformers>=4.40' (it comes with the audits package: pip install -e .).",
        ) from None
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    return transformers


def _folder_sha256(folder: Path, names: list[str]) -> str:
    digest = hashlib.sha256()
    for name in sorted(names):
        digest.update(name.encode())
        digest.update(b"\0")
        with open(folder / name, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def huggingface_files(folder: Path) -> list[str]:
    """The files of a ``save_pretrained`` folder that define the model (config, weights, tokenizer)."""
    names = [p.name for p in folder.iterdir() if p.is_file()]
    return sorted(n for n in names if n.endswith((".json", ".safetensors", ".txt", ".model")))


def huggingface_sha256(folder: Path) -> str:
    """One digest over the folder's config, safetensors and tokenizer files (names and bytes)."""
    return _folder_sha256(folder, huggingface_files(folder))


def check_huggingface_folder(folder: Path) -> None:
    """Refuse a folder that is not a safetensors ``save_pretrained`` output, naming the fix."""
    if not folder.is_dir():
        raise ModelLoadError(
            f"{folder} is not a folder; format 'huggingface' expects the folder written by save_pretrained.",
            fix="Point 'weights' at the folder holding config.json and model.safetensors.",
        )
    names = [p.name for p in folder.iterdir() if p.is_file()]
    if "config.json" not in names:
        raise ModelLoadError(f"{folder} has no config.json.", fix="Save the model with model.save_pretrained(folder, safe_serialization=True).")
    if not any(n.endswith(".safetensors") for n in names):
        pickles = sorted(n for n in names if n.endswith(_PICKLE_SUFFIXES))
        if pickles:
            raise UnsafeModelError(
                f"{folder} holds weights only as {', '.join(pickles)} (PyTorch pickles, which can run arbitrary code when loaded); they are refused.",
                fix=SAFE_SAVE_FIX,
            )
        raise ModelLoadError(f"{folder} holds no *.safetensors weights.", fix=SAFE_SAVE_FIX)


def load_huggingface(folder: Path) -> nn.Module:
    """A sequence classifier from a local ``save_pretrained`` folder, on the CPU: safetensors only, no hub, no remote code."""
    check_huggingface_folder(folder)
    transformers = import_transformers()
    try:
        net = transformers.AutoModelForSequenceClassification.from_pretrained(
            str(folder), local_files_only=True, use_safetensors=True, trust_remote_code=False, attn_implementation=_fast_attention()
        )
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ModelLoadError(
            f"{folder} cannot be loaded as a Hugging Face sequence classifier: {str(exc).splitlines()[0]}",
            fix="Save an AutoModelForSequenceClassification with save_pretrained(folder, safe_serialization=True).",
        ) from None
    return net


def _fast_attention() -> str:
    # SDPA for speed; attention maps switch to eager attention on demand (see eager_attention).
    return "sdpa" if hasattr(torch.nn.functional, "scaled_dot_product_attention") else "eager"


@lru_cache(maxsize=8)
def _cached_tokenizer(path: str, stamp: tuple):
    transformers = import_transformers()
    return transformers.AutoTokenizer.from_pretrained(path, local_files_only=True, trust_remote_code=False)


def load_tokenizer(folder: Path):
    """The tokenizer saved in ``folder`` (cached per folder and file times)."""
    if not folder.is_dir():
        raise ModelLoadError(
            f"Tokenizer folder {folder} does not exist.", fix="Set input.tokenizer in the card to the folder written by tokenizer.save_pretrained."
        )
    present = [n for n in _TOKENIZER_FILES if (folder / n).is_file()]
    if not present:
        raise ModelLoadError(
            f"{folder} holds no tokenizer files ({', '.join(_TOKENIZER_FILES[:3])}, ...).", fix="Save the tokenizer with tokenizer.save_pretrained(folder)."
        )
    stamp = tuple((n, (folder / n).stat().st_mtime_ns) for n in present)
    try:
        tokenizer = _cached_tokenizer(str(folder.resolve()), stamp)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(
            f"The tokenizer in {folder} cannot be loaded: {str(exc).splitlines()[0]}", fix="Save it again with tokenizer.save_pretrained(folder)."
        ) from None
    if tokenizer.pad_token_id is None:
        raise ModelLoadError(
            f"The tokenizer in {folder} has no padding token, which batching needs.",
            fix="Set tokenizer.pad_token (for example to its eos token) and save it again.",
        )
    return tokenizer


def encode_texts(tokenizer, texts: list[str], max_length: int) -> np.ndarray:
    """Token ids (N, max_length) int64, padded with the pad id and truncated to ``max_length``."""
    if not len(texts):
        return np.zeros((0, max_length), dtype=np.int64)
    enc = tokenizer(list(texts), padding="max_length", truncation=True, max_length=max_length, return_attention_mask=False, return_token_type_ids=False)
    return np.asarray(enc["input_ids"], dtype=np.int64)


def special_ids(tokenizer) -> np.ndarray:
    """Ids of the tokenizer's special tokens (CLS, SEP, PAD, ...), which probes never perturb."""
    return np.asarray(sorted(set(tokenizer.all_special_ids)), dtype=np.int64)


def replacement_id(tokenizer, kind: str = "mask") -> int:
    """The id that stands for a hidden token: the mask token (else unk, else pad), or the pad token."""
    if kind == "pad":
        return int(tokenizer.pad_token_id)
    for candidate in (tokenizer.mask_token_id, tokenizer.unk_token_id, tokenizer.pad_token_id):
        if candidate is not None:
            return int(candidate)
    raise ValueError("the tokenizer has no mask, unknown or padding token")


def logits_of(output) -> torch.Tensor:
    """Logits from whatever a classifier returns: a tensor, a ModelOutput with ``.logits``, or a tuple."""
    if isinstance(output, torch.Tensor):
        return output
    logits = getattr(output, "logits", None)
    if logits is not None:
        return logits
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise TypeError(f"the text model returned {type(output).__name__}, not logits")


class TextForward(nn.Module):
    """Token ids (N, T) -> logits: builds the attention mask and drops trailing all-padding columns.

    Dropping columns that are padding in every row of the batch changes nothing for a model
    that masks padding (the other tokens never attend to it) and saves most of the compute
    on short texts padded to a long ``max_length``.
    """

    def __init__(self, net: nn.Module, pad_id: int) -> None:
        super().__init__()
        self.net = net
        self.pad_id = int(pad_id)
        self.training = False

    def trim(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mask = ids != self.pad_id
        used = mask.any(dim=0).nonzero()
        length = int(used.max()) + 1 if len(used) else 1
        return ids[:, :length], mask[:, :length].long()

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        ids, mask = self.trim(ids.long())
        return logits_of(self.net(ids, mask))

    def attentions(self, ids: torch.Tensor) -> torch.Tensor:
        """Attention probabilities (L, N, H, T', T') over the trimmed length T', eager attention."""
        ids, mask = self.trim(ids.long())
        with eager_attention(self.net):
            out = self.net(ids, mask, output_attentions=True)
        maps = getattr(out, "attentions", None)
        if not maps:
            raise ValueError("the model returned no attention maps for output_attentions=True")
        return torch.stack([a.float() for a in maps])


def hf_models(net: nn.Module) -> list[nn.Module]:
    """The outermost Hugging Face ``PreTrainedModel`` modules inside ``net``."""
    pretrained = import_transformers().PreTrainedModel
    found = [(n, m) for n, m in net.named_modules() if isinstance(m, pretrained)]

    def inside(name: str, other: str) -> bool:
        return name != other and (other == "" or name.startswith(f"{other}."))

    return [m for n, m in found if not any(inside(n, o) for o, _ in found)]


def returns_attentions(net: nn.Module) -> bool:
    """Whether the network holds a Hugging Face transformer that can hand back its attention maps."""
    return bool(hf_models(net))


@contextmanager
def eager_attention(net: nn.Module) -> Iterator[None]:
    """Switch every Hugging Face transformer inside ``net`` to eager attention (the implementation
    that materializes attention probabilities) for the block, then restore it."""
    saved = []
    for model in hf_models(net):
        current = model.config._attn_implementation
        if current != "eager":
            _set_attention(model, "eager")
            saved.append((model, current))
    try:
        yield
    finally:
        for model, current in saved:
            _set_attention(model, current)


def _set_attention(model: nn.Module, implementation: str) -> None:
    setter = getattr(model, "set_attn_implementation", None)
    if callable(setter):
        setter(implementation)
    else:  # older transformers: the implementation is read from the config at every forward
        model.config._attn_implementation = implementation


def input_embeddings(net: nn.Module) -> nn.Module:
    """The token embedding layer: ``get_input_embeddings()`` where the network has it, else its first nn.Embedding."""
    getter = getattr(net, "get_input_embeddings", None)
    if callable(getter):
        layer = getter()
        if isinstance(layer, nn.Module):
            return layer
    for module in net.modules():
        if isinstance(module, nn.Embedding):
            return module
    raise ValueError("the network has no token embedding layer (nn.Embedding)")


# Families whose position ids start after the padding id (RoBERTa's scheme), so a table of
# n position embeddings covers n - padding_idx - 1 tokens.
_OFFSET_POSITIONS = ("roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "longformer", "roberta-prelayernorm", "data2vec-text", "ibert", "mpnet")


def position_limit(net: nn.Module) -> int | None:
    """The most tokens the network's learned absolute position embeddings cover, when it has them.

    Read from the ``position_embeddings`` table (an ``nn.Embedding``) of every Hugging Face
    transformer inside ``net``; None for networks without such a table (relative or rotary
    positions, bag-of-words models), which the dry run's full-length row checks instead.
    """
    limits = []
    for model in hf_models(net):
        config = getattr(model, "config", None)
        if getattr(config, "position_embedding_type", "absolute") not in (None, "absolute"):
            continue
        for name, module in model.named_modules():
            if name.rsplit(".", 1)[-1] == "position_embeddings" and isinstance(module, nn.Embedding):
                offset = (module.padding_idx or 0) + 1 if getattr(config, "model_type", "") in _OFFSET_POSITIONS else 0
                limits.append(int(module.num_embeddings) - offset)
                break
    return min(limits) if limits else None
