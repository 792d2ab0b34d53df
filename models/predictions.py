"""The handle of a ``format: predictions`` card: decisions of a system the audit cannot load.

A vendor's risk score, a rules engine or a model in another framework is audited from a table
of its decisions (``audits.data`` reads and validates them into ``AuditData.predictions``).
There is no network to query, so this handle serves the identity and the bookkeeping the
engine records (name, format, the decisions file's sha256, a meter that stays at zero) and
refuses ``predict_proba``: probes that must run the system on new inputs (attributions,
robustness, counterfactual flips) declare ``needs_model`` and are skipped with a reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch

from audits.errors import ModelLoadError
from models.card import ModelCard
from models.formats import sha256_file
from models.handle import CallMeter, CardFacts
from models.tabular_encoding import TabularEncoder

NO_MODEL_REASON = "the card audits precomputed decisions (format: predictions): there is no model to run on new or changed inputs"


@dataclass
class PredictionsHandle(CardFacts):
    """Stands where a ``ModelHandle`` stands for a predictions card; it never computes a prediction."""

    card: ModelCard
    weights_sha256: str
    encoder: TabularEncoder | None
    meter: CallMeter = field(default_factory=CallMeter)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    parameter_count: int = 0
    batch_size: int = 1024
    tokenizer: None = None
    text_forward: None = None
    # Probes read this to know they cannot query the system (see ``audits.probes.Probe.check``).
    queryable: ClassVar[bool] = False

    @classmethod
    def of(cls, card: ModelCard) -> PredictionsHandle:
        path = card.weights_path  # the decisions file
        if not path.is_file():
            raise ModelLoadError(
                f"Predictions file {path} does not exist.", fix="Correct data.path in the card (relative paths resolve against the card's folder)."
            )
        return cls(card=card, weights_sha256=sha256_file(path), encoder=TabularEncoder(card.input))  # type: ignore[arg-type]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.card.input.encoded_width,)  # type: ignore[union-attr]

    @contextmanager
    def metered(self) -> Iterator[CallMeter]:
        """A probe's cost: always zero model calls (there is no model)."""
        yield CallMeter()

    def predict_proba(self, x: np.ndarray | torch.Tensor, batch_size: int | None = None) -> np.ndarray:
        raise ModelLoadError(
            f"{self.name}: {NO_MODEL_REASON}.",
            fix="Use the decisions in the evaluation file (AuditData.predictions); probes that need the model are skipped.",
        )

    logits = predict_proba
