"""The probe-facing model handle: the network in audit space, metered, with a batched predictor.

Probes receive a ``ModelHandle`` and read its device and batch size; they never move or
switch the model (``models.loader`` decided both). Every forward call and row through the
model is counted in its ``CallMeter``, and so is every out-of-memory fallback, so a probe's
cost says what it spent and at which batch sizes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from audits.errors import ModelLoadError
from models.card import ImageInput, ModelCard, TextInput
from models.tabular_encoding import TabularEncoder
from models.text import TextForward


@dataclass
class CallMeter:
    """Counts forward calls and rows through the audited model, and out-of-memory fallbacks.

    ``batch_fallbacks`` counts the times ``ModelHandle.map_batches`` halved a batch after an
    out-of-memory error (each halving once); probes copy it into ``Cost.batch_fallbacks``.
    """

    calls: int = 0
    rows: int = 0
    batch_fallbacks: int = 0

    def snapshot(self) -> tuple[int, int]:
        """Calls and rows so far (subtract two snapshots for the cost of a block)."""
        return self.calls, self.rows


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


class CardFacts:
    """What any handle answers from its card alone (shared by ``ModelHandle`` and ``PredictionsHandle``)."""

    card: ModelCard

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


@dataclass
class ModelHandle(CardFacts):
    """A loaded model: the module in audit space, its device, identity and a batched predictor.

    Built by ``models.loader.load_model`` / ``wrap_model``, which place the model, switch it
    to eval mode, check it on a dry run and size ``batch_size`` from its measured activations.
    ``batch_size`` is a plan, not state: an out-of-memory error shrinks the batches of the one
    call it happened in, never the plan for later calls.
    """

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
    # A handle runs its network; ``models.predictions.PredictionsHandle`` (decisions only) does not.
    queryable: ClassVar[bool] = True

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
        text_forward = self.text_forward
        if text_forward is None:
            raise ValueError(f"{self.name} is not a text model")
        length = int(x.shape[1])

        def one_batch(ids: torch.Tensor) -> torch.Tensor:
            self.meter.calls += 1
            self.meter.rows += int(ids.shape[0])
            maps = text_forward.attentions(ids)
            pad = length - maps.shape[-1]
            # Rows first for map_batches; on the CPU at once, so device memory holds one batch.
            return torch.nn.functional.pad(maps, (0, pad, 0, pad)).transpose(0, 1).cpu()

        with torch.inference_mode():
            out = self.map_batches(one_batch, x, batch_size)
        if not len(x):
            return np.zeros((0, 0, 0, length, length), dtype=np.float32)
        return out.transpose(0, 1).contiguous().numpy()

    def embedding_layer(self) -> nn.Module:
        """Text models: the token embedding layer (for layer attributions)."""
        from models.text import input_embeddings

        return input_embeddings(self.network)

    def map_batches(self, fn: Callable[[torch.Tensor], torch.Tensor], x: np.ndarray | torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
        """Apply ``fn`` to ``x`` in batches on the model's device and concatenate the outputs.

        Parameters
        ----------
        fn : callable
            Maps a batch of audit-space rows (on the device) to one output row per input row.
        x : array or tensor
            The rows.
        batch_size : int or None
            Rows per batch; None for the handle's planned ``batch_size``.

        Returns
        -------
        torch.Tensor
            ``fn``'s outputs for every row, in order.

        Notes
        -----
        After an out-of-memory error the failing batch is retried at half the size, and the
        rest of this call keeps the smaller size (down to one row, then the error stands).
        Each halving adds one to ``meter.batch_fallbacks`` (the probe's cost records it); the
        handle's ``batch_size`` is left alone, so later calls start from the plan again.
        """
        size = max(1, int(batch_size or self.batch_size))
        outs: list[torch.Tensor] = []
        start = 0
        while start < len(x):
            try:
                out = fn(self.to_tensor(x[start : start + size]))
            except torch.OutOfMemoryError:
                if size <= 1:
                    raise
                size //= 2
                self.meter.batch_fallbacks += 1
                torch.cuda.empty_cache()
                continue
            outs.append(out)
            start += size
        return torch.cat(outs) if outs else torch.empty(0, device=self.device)

    def logits(self, x: np.ndarray | torch.Tensor, batch_size: int | None = None) -> np.ndarray:
        """Model outputs (logits) for audit-space inputs, computed in batches under inference mode."""
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
        """Count the model calls, rows and out-of-memory fallbacks inside the block (the result's cost)."""
        calls, rows, fallbacks = self.meter.calls, self.meter.rows, self.meter.batch_fallbacks
        delta = CallMeter()
        try:
            yield delta
        finally:
            delta.calls = self.meter.calls - calls
            delta.rows = self.meter.rows - rows
            delta.batch_fallbacks = self.meter.batch_fallbacks - fallbacks

    def dropout_modules(self) -> list[nn.Module]:
        """The network's dropout layers with a non-zero rate (``nn.Dropout``, ``Dropout1d/2d/3d``, ``AlphaDropout``...)."""
        return [m for m in self.network.modules() if isinstance(m, nn.modules.dropout._DropoutNd) and float(m.p) > 0]

    @contextmanager
    def dropout_active(self) -> Iterator[int]:
        """Inside the block, only the dropout layers sample (Monte Carlo dropout); yields how many there are.

        Every other module stays in the mode the loader set (normalization layers keep their running
        statistics; attention modules keep their fused eval path), and each dropout layer gets back
        its own mode afterwards, also when the block raises. Parameters are never touched.
        """
        modules = self.dropout_modules()
        modes = [m.training for m in modules]
        try:
            for m in modules:
                m.training = True  # set directly: dropout layers have no children, and train() may be refused
            yield len(modules)
        finally:
            for m, mode in zip(modules, modes, strict=True):
                m.training = mode

    def find_layer(self, name: str) -> nn.Module:
        """The network's submodule called ``name``; refused naming its convolution layers when absent."""
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
