"""What every attribution probe shares: the result type, target choice and feature grouping."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal

import numpy as np
import torch

from audits.probes import Probe, RunContext
from audits.results.attribution import AttributionResult as AttributionResult

if TYPE_CHECKING:
    from audits.data import AuditData
    from models.loader import ModelHandle

Output = Literal["logit", "probability"]


class AttributionProbe(Probe):
    """Base of attribution probes: ``target`` (None = predicted class) and ``output`` space."""

    category: ClassVar = "explanation"
    result_type: ClassVar[type[AttributionResult]] = AttributionResult
    default_output: ClassVar[Output] = "logit"

    def __init__(self, *, target: int | None = None, output: Output | None = None) -> None:
        self.target = target
        self.output = output

    @property
    def output_space(self) -> Output:
        return self.output or self.default_output

    def check(self, model: ModelHandle, data: AuditData) -> str | None:
        reason = super().check(model, data)
        if reason is None and self.target is not None and not 0 <= self.target < model.n_classes:
            reason = f"target class {self.target} is out of range 0..{model.n_classes - 1}"
        return reason

    def targets(self, context: RunContext) -> np.ndarray:
        idx = context.sample_indices
        if self.target is not None:
            return np.full(len(idx), self.target, dtype=np.int64)
        return context.predictions[idx].astype(np.int64)

    def result(self, model: ModelHandle, data: AuditData, context: RunContext, attributions: np.ndarray, **extra) -> AttributionResult:
        """Assemble the result, summing encoded tabular columns back into raw features."""
        attributions = np.asarray(attributions, dtype=np.float32)
        if data.modality == "tabular" and attributions.shape[1] != data.n_features:
            attributions = sum_feature_groups(attributions, data.feature_groups)
        elif data.modality == "image" and attributions.ndim == 4:
            attributions = attributions.sum(axis=1)
        elif data.modality == "text" and "tokens" not in extra:
            from audits.explain._text import sample_tokens

            extra["tokens"] = sample_tokens(model, data.x[context.sample_indices])
        return AttributionResult(
            method=self.name,
            params=self.params,
            seed=context.seed,
            modality=data.modality,
            output=self.output_space,
            sample_indices=np.asarray(context.sample_indices, dtype=np.int64),
            targets=self.targets(context),
            attributions=attributions,
            feature_names=list(data.feature_names),
            **extra,
        )


def sum_feature_groups(encoded: np.ndarray, groups: list[np.ndarray]) -> np.ndarray:
    """(n, D) attributions over encoded columns -> (n, M) over raw features."""
    return np.stack([encoded[:, g].sum(axis=1) for g in groups], axis=1).astype(np.float32)


def target_outputs(fn, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``fn(x)[i, targets[i]]`` for a batch."""
    return fn(x).gather(1, targets.view(-1, 1)).squeeze(1)


def background_rows(data: AuditData, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` rows of ``data.x`` drawn without replacement (all rows when fewer)."""
    if len(data.x) <= n:
        return data.x.copy()
    return data.x[np.sort(rng.choice(len(data.x), size=n, replace=False))]
