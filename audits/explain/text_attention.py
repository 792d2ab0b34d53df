"""Attention maps of a text transformer: every layer and head, head averages and rollout."""

from __future__ import annotations

from dataclasses import fields
from typing import TYPE_CHECKING, Literal

import numpy as np

from audits.explain._attention import head_average, rollout
from audits.explain._text import token_lengths
from audits.explain.base import AttributionProbe, Output
from audits.probes import RunContext, register
from audits.results.attribution import TextAttentionResult as TextAttentionResult

if TYPE_CHECKING:
    from audits.data import AuditData
    from models.loader import ModelHandle

Readout = Literal["cls", "mean"]
# Decimals kept of the raw per-head maps: enough to read them, and it keeps reports compact.
_HEAD_DECIMALS = 4


@register
class TextAttention(AttributionProbe):
    """Attention maps per layer and head, head averages and attention rollout (Abnar & Zuidema, 2020).

    Parameters
    ----------
    residual : bool
        Rollout adds the skip connection (0.5 * A + 0.5 * I per layer, renormalized).
    start_layer : int
        First layer included in the rollout.
    readout : {'cls', 'mean'} or None
        Which rollout row becomes the per-token attribution: the CLS token's (models that
        classify from CLS) or the mean over the text's tokens (mean-pooling models). None
        reads the network's ``readout`` attribute, else 'cls'.
    store_heads : bool
        Keep the raw per-head maps in the result (they dominate its size).

    Attention weights show where the model routes information, not how much each token
    changes the output: read them next to the gradient and perturbation attributions.
    ``quality['rollout_row_sum_error']`` is max |row sum - 1| of each text's rollout.
    """

    name = "text_attention"
    result_type = TextAttentionResult
    modalities = ("text",)
    default_for = ("text",)
    title = "Attention maps and rollout"
    description = (
        "Reads the transformer's attention weights for every layer and head and follows them through the layers "
        "(attention rollout) to show which tokens feed the representation the classifier reads."
    )

    def __init__(
        self,
        *,
        residual: bool = True,
        start_layer: int = 0,
        readout: Readout | None = None,
        store_heads: bool = True,
        target: int | None = None,
        output: Output | None = None,
    ) -> None:
        super().__init__(target=target, output=output)
        if readout not in (None, "cls", "mean"):
            raise ValueError(f"readout must be 'cls', 'mean' or None, got {readout!r}")
        if start_layer < 0:
            raise ValueError(f"start_layer must be >= 0, got {start_layer}")
        self.residual = residual
        self.start_layer = start_layer
        self.readout = readout
        self.store_heads = store_heads

    def check(self, model: ModelHandle, data: AuditData) -> str | None:
        from models.text import returns_attentions

        reason = super().check(model, data)
        if reason is None and not returns_attentions(model.network):
            reason = "the network holds no Hugging Face transformer that returns attention maps"
        return reason

    def _run(self, model: ModelHandle, data: AuditData, context: RunContext) -> TextAttentionResult:
        idx = context.sample_indices
        ids = data.x[idx]
        maps = model.attentions(ids)  # (L, n, H, T, T)
        if self.start_layer >= maps.shape[0]:
            raise ValueError(f"start_layer {self.start_layer} is past the model's {maps.shape[0]} layers")
        readout = self.readout or getattr(model.network, "readout", "cls")
        lengths = token_lengths(ids, model.tokenizer.pad_token_id)
        t = int(max(lengths.max(initial=1), 1))
        n, (n_layers, _, n_heads) = len(idx), maps.shape[:3]
        raw = np.zeros((n, n_layers, n_heads, t, t))
        rolled = np.zeros((n, t, t))
        attributions = np.zeros(ids.shape, dtype=np.float32)
        row_error = np.zeros(n, dtype=np.float32)
        for i, k in enumerate(lengths):
            own = maps[:, i : i + 1, :, :k, :k].astype(np.float64)  # the text's tokens only
            raw[i, :, :, :k, :k] = own[:, 0]
            r = rollout(own, residual=self.residual, start_layer=self.start_layer)[0]
            rolled[i, :k, :k] = r
            row_error[i] = float(np.abs(r.sum(axis=1) - 1).max()) if k else 0.0
            attributions[i, :k] = r[0] if readout == "cls" else r.mean(axis=0)
        base = self.result(model, data, context, attributions, quality={"rollout_row_sum_error": row_error})
        return TextAttentionResult(
            **{f.name: getattr(base, f.name) for f in fields(base)},
            readout=readout,
            residual=self.residual,
            n_tokens=t,
            attention=np.round(raw, _HEAD_DECIMALS) if self.store_heads else None,
            layer_attention=head_average(raw.transpose(1, 0, 2, 3, 4)).transpose(1, 0, 2, 3).astype(np.float32),
            rollout=rolled.astype(np.float32),
        )
