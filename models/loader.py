"""Safe model loading: the one place that decides the device and puts the model in eval mode.

Nothing here unpickles arbitrary objects: the format readers (``models.formats``) take
state dicts from safetensors or ``torch.load(weights_only=True)`` and whole models from
TorchScript or ``torch.export``; Hugging Face text models come from a local
``save_pretrained`` folder of safetensors (``models.text``), never from the hub. The device
is resolved once per load (``models.device``), the model is checked on a dry run
(``models.dry_run``) and wrapped in the probe-facing ``ModelHandle`` (``models.handle``).
"""

from __future__ import annotations

import hashlib
import importlib
import os
from pathlib import Path

import torch
from torch import nn

from audits.errors import ModelLoadError
from models.card import ImageInput, ModelCard, TabularInput, TextInput
from models.device import DEVICE_ENV, plan_batch_size, resolve_device
from models.dry_run import dry_run
from models.formats import read_exported_program, read_safetensors, read_state_dict, read_torchscript, sha256_file
from models.handle import CallMeter, MeteredModel, ModelHandle
from models.tabular_encoding import TabularEncoder
from models.text import TextForward

__all__ = [
    "DEVICE_ENV",
    "CallMeter",
    "MeteredModel",
    "ModelHandle",
    "external_weights",
    "load_ensemble",
    "load_model",
    "model_sha256",
    "resolve_device",
    "sha256_file",
    "wrap_model",
]


def load_model(card: ModelCard, *, device: str | None = None) -> ModelHandle:
    """Load the card's model safely onto the chosen device and check it against the card.

    Parameters
    ----------
    card : ModelCard
        The validated card; its weights path resolves against the card's folder.
    device : str or None
        ``'cpu'``, ``'cuda'``, ``'cuda:N'``; None for ``$AUDITS_DEVICE``, else CUDA when available.

    Returns
    -------
    ModelHandle
        The model in eval mode on the device, checked on a dry run, with its batch size planned.

    Raises
    ------
    ModelLoadError
        The weights are missing, link out of the card's folder, do not fit the card, or the
        dry run fails; ``UnsafeModelError`` (a subclass) when they would need pickled objects.
    """
    if card.format == "predictions":
        from models.predictions import PredictionsHandle

        return PredictionsHandle.of(card)  # type: ignore[return-value]  # stands in for a ModelHandle: decisions, no network
    path = card.weights_path
    if card.format == "huggingface":
        if not path.is_dir():
            raise ModelLoadError(
                f"Model folder {path} does not exist.",
                fix="Point 'weights' at the folder written by save_pretrained (relative paths resolve against the card's folder).",
            )
    elif not path.is_file():
        raise ModelLoadError(f"Weights file {path} does not exist.", fix="Correct 'weights' in the card (relative paths resolve against the card's folder).")
    refuse_links_out(card, path)
    if card.tokenizer_path is not None and card.tokenizer_path.is_dir():
        refuse_links_out(card, card.tokenizer_path, field="input.tokenizer")
    target = resolve_device(device)
    net = _read_network(card, path)
    if card.format == "huggingface":
        from models.text import huggingface_sha256

        digest = huggingface_sha256(path)
    else:
        digest = model_sha256(net, sha256_file(path))
    return _assemble(net, card, target, digest)


def load_ensemble(model: ModelHandle) -> list[ModelHandle]:
    """The deep ensemble the card declares: ``model`` and one handle per ``ensemble`` weights file.

    Each member is loaded like ``model`` (same architecture, format and checks) onto ``model``'s
    device, and counts its calls into ``model``'s meter, so a probe's cost includes every member.
    Returns ``[model]`` when the card lists no further weights.
    """
    members = [model]
    for weights in model.card.ensemble:
        card = model.card.model_copy(update={"weights": weights, "ensemble": []})
        member = load_model(card, device=str(model.device))
        member.model._meter = model.meter
        member.meter = model.meter
        members.append(member)
    return members


def wrap_model(net: nn.Module, card: ModelCard, *, device: str | None = None, weights_sha256: str | None = None) -> ModelHandle:
    """A handle for a network already in memory (notebooks, tests); same checks as ``load_model``.

    Parameters
    ----------
    net : nn.Module
        The network; it is moved to the device, switched to eval mode and frozen.
    card : ModelCard
        The card it must fit.
    device : str or None
        As for ``load_model``.
    weights_sha256 : str or None
        The identity to record; None for a digest over the state dict's names and bytes.

    Returns
    -------
    ModelHandle
        As ``load_model`` returns.
    """
    if weights_sha256 is None:
        digest = hashlib.sha256()
        for name, tensor in sorted(net.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        weights_sha256 = digest.hexdigest()
    return _assemble(net, card, resolve_device(device), weights_sha256)


def refuse_links_out(card: ModelCard, path: Path, *, field: str = "weights") -> None:
    """Refuse a symbolic link, on the way from the card's folder to ``path`` or inside ``path``
    (a model folder), whose target lies outside the card's folder.

    A card or an uploaded bundle could otherwise make the audit read, hash and report on any
    file of the machine. Paths the card names outside its folder itself (absolute, ``../``)
    are the card author's statement and are not links; they are left to the card's checks.
    """
    base = card.base_dir.resolve()
    try:
        relative = Path(os.path.abspath(path)).relative_to(base)
    except ValueError:
        return
    candidates, current = [], base
    for part in relative.parts:
        current = current / part
        candidates.append(current)
    if current.is_dir() and not current.is_symlink():
        candidates += sorted(current.iterdir())
    for candidate in candidates:
        if candidate.is_symlink():
            target = candidate.resolve()
            if not target.is_relative_to(base):
                raise ModelLoadError(
                    f"The card's {field} {candidate} is a symbolic link to {target}, outside the card's folder {base}; "
                    "links out of the card's folder are refused, so a card cannot make the audit read other files on this machine.",
                    fix=f'Replace the link with a copy of what it points to: cp -r --remove-destination "{target}" "{candidate}".',
                )


def _read_network(card: ModelCard, path: Path) -> nn.Module:
    """The card's network on the CPU, read by the format's reader."""
    if card.format == "huggingface":
        from models.text import load_huggingface

        return load_huggingface(path)
    if card.format in ("safetensors", "pytorch_state_dict"):
        net = build_architecture(card)
        state = read_safetensors(path) if card.format == "safetensors" else read_state_dict(path)
        _fit_state_dict(net, state, card, path)
        return net
    if card.format == "torchscript":
        return read_torchscript(path)
    return read_exported_program(path).module()


def build_architecture(card: ModelCard) -> nn.Module:
    """An instance of the card's ``architecture`` (an importable ``module:Class`` nn.Module) with its kwargs."""
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
        raise ModelLoadError(
            f"Cannot construct {card.architecture.target} with kwargs {card.architecture.kwargs}: {exc}.", fix="Correct architecture.kwargs in the card."
        ) from None


def _fit_state_dict(net: nn.Module, state: dict[str, torch.Tensor], card: ModelCard, path: Path) -> None:
    """Load ``state`` into ``net``: every key must fit, except those the architecture loads itself."""
    assert card.architecture is not None
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
            f"The weights in {path.name} do not fit {card.architecture.target}: missing {missing[:5]}, unexpected {result.unexpected_keys[:5]}.",
            fix="Check architecture.kwargs in the card against how the model was trained.",
        )


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


def _assemble(net: nn.Module, card: ModelCard, device: torch.device, weights_sha256: str) -> ModelHandle:
    """Place, freeze and check ``net`` on ``device`` (resolved by the caller, once) and plan its batches."""
    net = net.to(device)
    try:
        net.eval()
    except NotImplementedError:  # torch.export modules are captured in a fixed mode and refuse eval()
        pass
    for p in net.parameters():
        p.requires_grad_(False)
    spec = card.input
    tokenizer = text_forward = None
    core = net
    if isinstance(spec, TextInput):
        from models.text import load_tokenizer

        assert card.tokenizer_path is not None
        tokenizer = load_tokenizer(card.tokenizer_path)
        _check_max_length(net, spec)
        core = text_forward = TextForward(net, tokenizer.pad_token_id)
    wrapped = _LogOf(core) if card.output == "probabilities" else core
    normalization = None
    if isinstance(spec, ImageInput) and spec.normalization is not None:
        normalization = _Normalize(spec.normalization.mean, spec.normalization.std).to(device)
    meter = CallMeter()
    model = MeteredModel(wrapped, meter, normalization)
    activation_bytes = dry_run(model, _dry_input(card, device, tokenizer), card, net)
    return ModelHandle(
        card=card,
        model=model,
        network=net,
        device=device,
        weights_sha256=weights_sha256,
        parameter_count=sum(p.numel() for p in net.parameters()),
        encoder=TabularEncoder(spec) if isinstance(spec, TabularInput) else None,
        meter=meter,
        batch_size=plan_batch_size(spec, device, activation_bytes),
        tokenizer=tokenizer,
        text_forward=text_forward,
    )


def _check_max_length(net: nn.Module, spec: TextInput) -> None:
    from models.text import position_limit

    limit = position_limit(net)
    if limit is not None and spec.max_length > limit:
        raise ModelLoadError(
            f"The card's input.max_length is {spec.max_length} tokens, but the model's position embeddings cover only {limit} positions: "
            "texts longer than that would fail in the middle of the audit.",
            fix=f"Set input.max_length to at most {limit} in the card (longer texts are then truncated).",
        )


def _dry_input(card: ModelCard, device: torch.device, tokenizer: object) -> torch.Tensor:
    """A batch of 2 in the card's input shape: the low end of the value range for images, zeros
    for tabular rows, and for text a short sentence beside a row of ``max_length`` tokens (so a
    model that cannot take the card's full length fails here, not on the first long text)."""
    spec = card.input
    if isinstance(spec, TextInput):
        from models.text import encode_texts

        long_text = " ".join(["a"] * spec.max_length)
        return torch.as_tensor(encode_texts(tokenizer, ["An example sentence for a dry run.", long_text], spec.max_length), device=device)
    if isinstance(spec, ImageInput):
        return torch.full((2, *spec.shape), spec.value_range[0], device=device)
    return torch.zeros((2, spec.encoded_width), device=device)
