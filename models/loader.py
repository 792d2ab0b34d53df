"""Safe model loading: the one place that decides the device and puts the model in eval mode.

Nothing here unpickles arbitrary objects: state dicts come from safetensors or from
``torch.load(weights_only=True)``; whole models come from TorchScript or ``torch.export``.
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

import numpy as np
import torch
from torch import nn

from audits.errors import ModelLoadError, UnsafeModelError
from models.card import ImageInput, ModelCard, TabularInput
from models.tabular_encoding import TabularEncoder

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

    Audit space is pixel space for images (the card's normalization runs inside) and the
    encoded feature vector for tabular data. Its output is always logits.
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
        return spec.shape if isinstance(spec, ImageInput) else (spec.encoded_width,)

    def to_tensor(self, x: np.ndarray | torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(x, dtype=torch.float32).to(self.device)

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
            return self.map_batches(self.model, x, batch_size).float().cpu().numpy()

    def predict_proba(self, x: np.ndarray | torch.Tensor, batch_size: int | None = None) -> np.ndarray:
        """Class probabilities for audit-space inputs, computed in batches under inference mode."""
        with torch.inference_mode():
            return self.map_batches(lambda t: torch.softmax(self.model(t), dim=1), x, batch_size).float().cpu().numpy()

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
        if result.missing_keys or result.unexpected_keys:
            raise ModelLoadError(
                f"The weights in {path.name} do not fit {card.architecture.target}: "
                f"missing {result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]}.",
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


def _dry_run(handle: ModelHandle) -> None:
    spec = handle.card.input
    x = torch.zeros((2, *handle.input_shape), device=handle.device)
    if isinstance(spec, ImageInput):
        x += spec.value_range[0]
    try:
        with torch.inference_mode():
            out = handle.model(x)
    except Exception as exc:  # any failure here means the card's input spec does not fit the model
        raise ModelLoadError(
            f"A dry forward pass with the card's input shape {tuple(handle.input_shape)} failed: {str(exc).splitlines()[0]}.",
            fix="Make the card's input spec (channels/height/width, or the feature list) match what the model expects.",
        ) from None
    finally:
        handle.meter.calls, handle.meter.rows = 0, 0
    if out.ndim != 2 or out.shape[1] != handle.n_classes:
        raise ModelLoadError(
            f"The model returns shape {tuple(out.shape)} for a batch of 2, but the card lists {handle.n_classes} classes.",
            fix="Make class_names match the model's outputs (one score per class).",
        )
    if not torch.isfinite(out).all():
        raise ModelLoadError("The model returns non-finite outputs on a dry forward pass.", fix="Check the weights file.")


def load_model(card: ModelCard, *, device: str | None = None) -> ModelHandle:
    """Load the card's model safely onto the chosen device and check it against the card."""
    path = card.weights_path
    if not path.is_file():
        raise ModelLoadError(f"Weights file {path} does not exist.", fix="Correct 'weights' in the card (relative paths resolve against the card's folder).")
    target = resolve_device(device)
    net = _load_network(card, path, target)
    return wrap_model(net, card, device=str(target), weights_sha256=sha256_file(path))


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
    wrapped = _LogOf(net) if card.output == "probabilities" else net
    spec = card.input
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
    )
    _dry_run(handle)
    return handle


def _default_batch_size(card: ModelCard, device: torch.device) -> int:
    # Aim for ~32 MiB of input per batch on CPU (cache-friendly), ~512 MiB on CUDA.
    spec = card.input
    row_bytes = 4 * (int(np.prod(spec.shape)) if isinstance(spec, ImageInput) else spec.encoded_width)
    budget = (512 << 20) if device.type == "cuda" else (32 << 20)
    return int(max(64, min(65536, budget // max(row_bytes, 1))))
