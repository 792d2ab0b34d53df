"""Safe model loading: the one place that decides the device and puts the model in eval mode.

Nothing here unpickles arbitrary objects: state dicts come from safetensors or from
``torch.load(weights_only=True)``; whole models come from TorchScript or ``torch.export``;
Hugging Face text models come from a local ``save_pretrained`` folder of safetensors
(``models.text``), never from the hub.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from audits.errors import ModelLoadError, UnsafeModelError
from models.card import ImageInput, ModelCard, TabularInput, TextInput
from models.tabular_encoding import TabularEncoder
from models.text import TextForward

DEVICE_ENV = "AUDITS_DEVICE"
_PICKLE_FIX = (
    "Export the model without pickle: save its state_dict with safetensors "
    "(safetensors.torch.save_file(model.state_dict(), 'weights.safetensors')) and name its class in the "
    "card's 'architecture', or save it with torch.jit.save / torch.export.save."
)


def resolve_device(requested: str | None = None) -> torch.device:
    """``requested`` (flag) > ``$AUDITS_DEVICE`` > CUDA when available > CPU."""
    name = requested or os.environ.get(DEVICE_ENV) or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ModelLoadError(f"Unknown device {name!r}.", fix="Use 'cpu', 'cuda' or 'cuda:N'.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(
            f"Device {name!r} was requested but CUDA is not available on this machine.",
            fix=f"Use --device cpu (or unset {DEVICE_ENV}).",
        )
    return device


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class CallMeter:
    """Counts forward calls and rows through the audited model."""

    calls: int = 0
    rows: int = 0

    def snapshot(self) -> tuple[int, int]:
        return self.calls, self.rows


class _Normalize(nn.Module):
    def __init__(self, mean: list[float], std: list[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class _LogOf(nn.Module):
    """Turns a probability-output network into log-probabilities (softmax-invariant logits)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log(self.net(x).clamp_min(1e-12))


class MeteredModel(nn.Module):
    """The audited network in audit space, counting every forward call and row.

    Audit space is pixel space for images (the card's normalization runs inside), the
    encoded feature vector for tabular data and padded token ids (N, T) int64 for text (the
    attention mask is built inside). Its output is always logits.
    """

    def __init__(self, net: nn.Module, meter: CallMeter, normalization: nn.Module | None) -> None:
        super().__init__()
        self.net = net
        self.normalize = normalization
        self._meter = meter
        self.training = False  # set directly: eval() would recurse into modules that refuse it

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._meter.calls += 1
        self._meter.rows += int(x.shape[0])
        if self.normalize is not None:
            x = self.normalize(x)
        return self.net(x)


@dataclass
class ModelHandle:
    """A loaded model: the module in audit space, its device, identity and a batched predictor."""

    card: ModelCard
    model: MeteredModel
    network: nn.Module  # the user's network as loaded (for layer lookup by name)
    device: torch.device
    weights_sha256: str
    parameter_count: int
    encoder: TabularEncoder | None
    meter: CallMeter = field(default_factory=CallMeter)
    batch_size: int = 1024
    # Text models: the tokenizer (a transformers tokenizer) and the ids -> logits adapter.
    tokenizer: Any = None
    text_forward: TextForward | None = None

    @property
    def name(self) -> str:
        return self.card.name

    @property
    def format(self) -> str:
        return self.card.format

    @property
    def modality(self) -> str:
        return self.card.modality

    @property
    def n_classes(self) -> int:
        return self.card.n_classes

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one sample in audit space."""
        spec = self.card.input
        return spec.shape if isinstance(spec, (ImageInput, TextInput)) else (spec.encoded_width,)

    def to_tensor(self, x: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Audit-space inputs on the model's device: float32, or int64 token ids for text."""
        dtype = torch.long if self.modality == "text" else torch.float32
        return torch.as_tensor(x, dtype=dtype).to(self.device)

    def tokenize(self, texts: list[str]) -> np.ndarray:
        """Text models: token ids (N, max_length) int64, exactly as the evaluation data are encoded."""
        from models.text import encode_texts

        if self.tokenizer is None:
            raise ValueError(f"{self.name} is not a text model")
        return encode_texts(self.tokenizer, texts, self.card.input.max_length)

    def attentions(self, x: np.ndarray | torch.Tensor, batch_size: int | None = None) -> np.ndarray:
        """Text transformers: attention probabilities (L, N, H, T, T) of every layer and head.

        Computed with eager attention, batch by batch (metered like any forward pass); positions
        past a batch's longest text are zero.
        """
        if self.text_forward is None:
            raise ValueError(f"{self.name} is not a text model")
        size = batch_size or self.batch_size
        length = int(x.shape[1])
        parts = []
        with torch.inference_mode():
            for start in range(0, len(x), size):
                ids = self.to_tensor(x[start : start + size])
                self.meter.calls += 1
                self.meter.rows += int(ids.shape[0])
                maps = self.text_forward.attentions(ids)
                pad = length - maps.shape[-1]
                parts.append(torch.nn.functional.pad(maps, (0, pad, 0, pad)).cpu().numpy())
        return np.concatenate(parts, axis=1) if parts else np.zeros((0, 0, 0, length, length), dtype=np.float32)

    def embedding_layer(self) -> nn.Module:
        """Text models: the token embedding layer (for layer attributions)."""
        from models.text import input_embeddings

        return input_embeddings(self.network)

    def map_batches(self, fn: Callable[[torch.Tensor], torch.Tensor], x: np.ndarray | torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
        """Apply ``fn`` to ``x`` in batches on the model's device; halve the batch on CUDA OOM."""
        size = batch_size or self.batch_size
        while True:
            try:
                outs = [fn(self.to_tensor(x[i : i + size])) for i in range(0, len(x), size)]
                return torch.cat(outs) if outs else torch.empty(0, device=self.device)
            except torch.OutOfMemoryError:
                if size <= 1:
                    raise
                size //= 2
                self.batch_size = size
                torch.cuda.empty_cache()

    def logits(self, x: np.ndarray | torch.Tensor, batch_size: int | None = None) -> np.ndarray:
        with torch.inference_mode():
            return self._rowwise(self.model, x, batch_size).float().cpu().numpy()

    def predict_proba(self, x: np.ndarray | torch.Tensor, batch_size: int | None = None) -> np.ndarray:
        """Class probabilities for audit-space inputs, computed in batches under inference mode."""
        with torch.inference_mode():
            return self._rowwise(lambda t: torch.softmax(self.model(t), dim=1), x, batch_size).float().cpu().numpy()

    def _rowwise(self, fn: Callable[[torch.Tensor], torch.Tensor], x: np.ndarray | torch.Tensor, batch_size: int | None) -> torch.Tensor:
        """``map_batches`` for a row-by-row function; text rows are batched by length (shortest first),
        so each batch is trimmed to its own longest text, and returned in the original order."""
        if self.text_forward is None or len(x) <= 1:
            return self.map_batches(fn, x, batch_size)
        ids = np.asarray(x.cpu() if isinstance(x, torch.Tensor) else x)
        order = np.argsort((ids != self.text_forward.pad_id).sum(axis=1), kind="stable")
        out = self.map_batches(fn, ids[order], batch_size)
        return out[torch.as_tensor(np.argsort(order), device=out.device)]

    def output_fn(self, output: str) -> Callable[[torch.Tensor], torch.Tensor]:
        """The function probes explain: ``'logit'`` (model outputs) or ``'probability'`` (softmax)."""
        if output == "logit":
            return self.model
        if output == "probability":
            return lambda t: torch.softmax(self.model(t), dim=1)
        raise ValueError(f"output must be 'logit' or 'probability', got {output!r}")

    @contextmanager
    def metered(self) -> Iterator[CallMeter]:
        """Count the model calls and rows inside the block (the result's cost)."""
        before = self.meter.snapshot()
        delta = CallMeter()
        try:
            yield delta
        finally:
            delta.calls = self.meter.calls - before[0]
            delta.rows = self.meter.rows - before[1]

    def find_layer(self, name: str) -> nn.Module:
        modules = dict(self.network.named_modules())
        if name not in modules:
            convs = [n for n, m in modules.items() if isinstance(m, nn.Conv2d)]
            raise ModelLoadError(
                f"Layer {name!r} named by the card's target_layer is not in {self.name}.",
                fix=f"Use one of its convolution layers: {convs[-5:] or 'none found'}.",
            )
        return modules[name]

    def cam_layer(self) -> tuple[str, nn.Module] | None:
        """The card's target layer, else the last Conv2d; None when the network has none it can hook."""
        if self.card.target_layer:
            return self.card.target_layer, self.find_layer(self.card.target_layer)
        convs = [(n, m) for n, m in self.network.named_modules() if isinstance(m, nn.Conv2d)]
        return convs[-1] if convs else None


def _sniff(path: Path) -> str:
    with open(path, "rb") as fh:
        head = fh.read(8)
    if head[:2] == b"PK":
        return "zip"
    if head[:1] == b"\x80" or head[:1] in (b"(", b"]", b"}"):
        return "pickle"
    return "other"


def _refuse_pickle(path: Path, fmt: str) -> None:
    raise UnsafeModelError(
        f"{path.name} is a Python pickle, but the card says format {fmt!r}. Pickles can run arbitrary code "
        "when loaded, so they are refused.",
        fix=_PICKLE_FIX,
    )


def _build_architecture(card: ModelCard) -> nn.Module:
    assert card.architecture is not None
    module_name, class_name = card.architecture.target.split(":")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise ModelLoadError(
            f"Architecture {card.architecture.target!r} cannot be imported: {exc}.",
            fix="Name an importable 'module:Class' (for example models.architectures:DigitsCNN) and install its package.",
        ) from None
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ModelLoadError(f"{card.architecture.target!r} is not an nn.Module class.", fix="Name an nn.Module subclass.")
    try:
        return cls(**card.architecture.kwargs)
    except TypeError as exc:
        raise ModelLoadError(f"Cannot construct {card.architecture.target} with kwargs {card.architecture.kwargs}: {exc}.", fix="Correct architecture.kwargs in the card.") from None


def _load_state_dict(card: ModelCard, path: Path) -> dict[str, torch.Tensor]:
    if card.format == "safetensors":
        if _sniff(path) == "pickle":
            _refuse_pickle(path, card.format)
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise ModelLoadError(f"{path.name} is not a readable safetensors file ({exc}).", fix="Re-export the weights with safetensors.torch.save_file.") from None
    # pytorch_state_dict: only plain tensors and containers may be unpickled.
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError or RuntimeError depending on the payload
        text = str(exc)
        if "weights_only" in text or "Unsupported global" in text or "Unpickler" in text:
            raise UnsafeModelError(
                f"{path.name} needs arbitrary Python objects to load (it is not a plain tensor state_dict); it is refused.",
                fix=_PICKLE_FIX,
            ) from None
        raise ModelLoadError(f"{path.name} cannot be read as a PyTorch state_dict ({text.splitlines()[0]}).", fix=_PICKLE_FIX) from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelLoadError(f"{path.name} does not hold a state_dict of tensors.", fix=_PICKLE_FIX)
    return state


def _load_network(card: ModelCard, path: Path, device: torch.device) -> nn.Module:
    if card.format == "huggingface":
        from models.text import load_huggingface

        return load_huggingface(path, device)
    if card.format in ("safetensors", "pytorch_state_dict"):
        net = _build_architecture(card)
        state = _load_state_dict(card, path)
        try:
            result = net.load_state_dict(state, strict=False)
        except RuntimeError as exc:  # shape mismatches
            mismatches = [line.strip() for line in str(exc).splitlines() if "size mismatch" in line][:3]
            raise ModelLoadError(
                f"The weights in {path.name} do not fit {card.architecture.target}: {' '.join(mismatches) or exc}",
                fix="Check architecture.kwargs in the card against how the model was trained.",
            ) from None
        # Keys under an external prefix were loaded by the architecture itself (see external_weights).
        prefixes = tuple(external_weights(net))
        missing = [k for k in result.missing_keys if not (prefixes and k.startswith(prefixes))]
        if missing or result.unexpected_keys:
            raise ModelLoadError(
                f"The weights in {path.name} do not fit {card.architecture.target}: "
                f"missing {missing[:5]}, unexpected {result.unexpected_keys[:5]}.",
                fix="Check architecture.kwargs in the card against how the model was trained.",
            )
        return net.to(device)
    if _sniff(path) != "zip":
        if _sniff(path) == "pickle":
            _refuse_pickle(path, card.format)
        raise ModelLoadError(f"{path.name} is not a {card.format} archive.", fix="Save it with torch.jit.save or torch.export.save.")
    if card.format == "torchscript":
        try:
            return torch.jit.load(str(path), map_location=device)
        except (RuntimeError, zipfile.BadZipFile) as exc:
            raise ModelLoadError(f"{path.name} is not a loadable TorchScript archive ({str(exc).splitlines()[0]}).", fix="Save it with torch.jit.save(torch.jit.script(model) or torch.jit.trace(model, example), path).") from None
    try:
        program = torch.export.load(str(path))
    except Exception as exc:  # torch.export raises several unrelated types on bad archives
        raise ModelLoadError(f"{path.name} is not a loadable torch.export archive ({str(exc).splitlines()[0]}).", fix="Save it with torch.export.save(torch.export.export(model, (example,)), path).") from None
    return program.module().to(device)


def external_weights(net: nn.Module) -> dict[str, str]:
    """State-dict prefixes an architecture loads itself, with the sha256 of their source.

    An architecture built on a pretrained encoder from an installed package (for example
    ``models.text_architectures.MiniLMClassifier``) sets ``external_weights = {"encoder.":
    sha256}``: the card's weights file then holds only the rest (the head), the strict key
    check ignores missing keys under those prefixes, and the model's sha256 covers both.
    """
    value = getattr(net, "external_weights", None)
    return dict(value) if isinstance(value, dict) else {}


def model_sha256(net: nn.Module, weights_sha256: str) -> str:
    """The weights file's sha256, or with external weights one digest over it and every external source."""
    external = external_weights(net)
    if not external:
        return weights_sha256
    parts = [f"weights={weights_sha256}", *(f"{prefix}={digest}" for prefix, digest in sorted(external.items()))]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _dry_run(handle: ModelHandle) -> int:
    """Check the model against the card on a batch of 2; return the bytes of activations one row
    produces in a forward pass (every leaf module's output), 0 when the layers are hidden."""
    spec = handle.card.input
    if isinstance(spec, TextInput):
        x = handle.to_tensor(handle.tokenize(["An example sentence for a dry run.", "Another one."]))
    else:
        x = torch.zeros((2, *handle.input_shape), device=handle.device)
    if isinstance(spec, ImageInput):
        x += spec.value_range[0]
    sizes: list[int] = []

    def record(_module: nn.Module, _inputs: object, out: object) -> None:
        if isinstance(out, torch.Tensor):
            sizes.append(out.numel() * out.element_size())

    # TorchScript submodules take no hooks: their activations stay unmeasured.
    leaves = [m for m in handle.model.net.modules() if not any(True for _ in m.children()) and not isinstance(m, torch.jit.ScriptModule)]
    hooks = [m.register_forward_hook(record) for m in leaves]
    try:
        with torch.inference_mode():
            out = handle.model(x)
    except Exception as exc:  # any failure here means the card's input spec does not fit the model
        raise ModelLoadError(
            f"A dry forward pass with the card's input shape {tuple(handle.input_shape)} failed: {str(exc).splitlines()[0]}.",
            fix="Make the card's input spec (channels/height/width, or the feature list) match what the model expects.",
        ) from None
    finally:
        for hook in hooks:
            hook.remove()
        handle.meter.calls, handle.meter.rows = 0, 0
    if out.ndim != 2 or out.shape[1] != handle.n_classes:
        raise ModelLoadError(
            f"The model returns shape {tuple(out.shape)} for a batch of 2, but the card lists {handle.n_classes} classes.",
            fix="Make class_names match the model's outputs (one score per class).",
        )
    if not torch.isfinite(out).all():
        raise ModelLoadError("The model returns non-finite outputs on a dry forward pass.", fix="Check the weights file.")
    return sum(sizes) // len(x)


def load_model(card: ModelCard, *, device: str | None = None) -> ModelHandle:
    """Load the card's model safely onto the chosen device and check it against the card."""
    path = card.weights_path
    if card.format == "huggingface":
        if not path.is_dir():
            raise ModelLoadError(f"Model folder {path} does not exist.", fix="Point 'weights' at the folder written by save_pretrained (relative paths resolve against the card's folder).")
    elif not path.is_file():
        raise ModelLoadError(f"Weights file {path} does not exist.", fix="Correct 'weights' in the card (relative paths resolve against the card's folder).")
    target = resolve_device(device)
    net = _load_network(card, path, target)
    if card.format == "huggingface":
        from models.text import huggingface_sha256

        digest = huggingface_sha256(path)
    else:
        digest = model_sha256(net, sha256_file(path))
    return wrap_model(net, card, device=str(target), weights_sha256=digest)


def wrap_model(net: nn.Module, card: ModelCard, *, device: str | None = None, weights_sha256: str | None = None) -> ModelHandle:
    """A handle for a network already in memory (notebooks, tests); same checks as ``load_model``."""
    target = resolve_device(device)
    net = net.to(target)
    try:
        net.eval()
    except NotImplementedError:  # torch.export modules are captured in a fixed mode and refuse eval()
        pass
    for p in net.parameters():
        p.requires_grad_(False)
    if weights_sha256 is None:
        digest = hashlib.sha256()
        for name, tensor in sorted(net.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        weights_sha256 = digest.hexdigest()
    spec = card.input
    tokenizer = text_forward = None
    core = net
    if isinstance(spec, TextInput):
        from models.text import load_tokenizer

        tokenizer = load_tokenizer(card.tokenizer_path)
        core = text_forward = TextForward(net, tokenizer.pad_token_id)
    wrapped = _LogOf(core) if card.output == "probabilities" else core
    normalization = None
    if isinstance(spec, ImageInput) and spec.normalization is not None:
        normalization = _Normalize(spec.normalization.mean, spec.normalization.std).to(target)
    meter = CallMeter()
    handle = ModelHandle(
        card=card,
        model=MeteredModel(wrapped, meter, normalization),
        network=net,
        device=target,
        weights_sha256=weights_sha256,
        parameter_count=sum(p.numel() for p in net.parameters()),
        encoder=TabularEncoder(spec) if isinstance(spec, TabularInput) else None,
        meter=meter,
        batch_size=_default_batch_size(card, target),
        tokenizer=tokenizer,
        text_forward=text_forward,
    )
    handle.batch_size = _default_batch_size(card, target, _dry_run(handle))
    return handle


# Forward activations per batch: cache-sized on CPU (measured on the zoo models, 2-core CPU:
# 4 MiB gives the CNN ~160-row batches, 2-4x the throughput of 16k-row ones, and the MLP
# ~3.5k-row ones, at its best), a share of free memory on CUDA (backward keeps them and
# adds as much again).
_CPU_ACTIVATION_BUDGET = 4 << 20
_CUDA_FREE_SHARE = 8
_HIDDEN_ACTIVATION_FACTOR = 16  # activations per input byte assumed when the layers are hidden


def _default_batch_size(card: ModelCard, device: torch.device, activation_bytes: int = 0) -> int:
    """Rows per batch from the forward activations of one row (``activation_bytes``, measured on the
    dry run; 0 = unknown) and the memory to spend: a CPU cache-sized budget, or on CUDA a share
    of the free device memory. ``map_batches`` halves it on CUDA out-of-memory."""
    spec = card.input
    if isinstance(spec, TextInput):
        # Transformer cost grows with tokens, not bytes: a few thousand tokens per batch on CPU.
        tokens = (1 << 20) if device.type == "cuda" else (1 << 15)
        return int(max(8, min(4096, tokens // spec.max_length)))
    input_bytes = 4 * (int(np.prod(spec.shape)) if isinstance(spec, ImageInput) else spec.encoded_width)
    per_row = input_bytes + (activation_bytes or _HIDDEN_ACTIVATION_FACTOR * input_bytes)
    if device.type == "cuda":
        budget = torch.cuda.mem_get_info(device)[0] // _CUDA_FREE_SHARE
    else:
        budget = _CPU_ACTIVATION_BUDGET
    # At least 256 rows on CPU: below that, per-call overhead dominates (a ViT's attention
    # activations alone would otherwise give ~46-row batches and 10x the model calls).
    floor = 256 if device.type == "cpu" else 8
    return int(max(floor, min(65536, budget // max(per_row, 1))))
