"""One image under every corruption and severity, with the model's prediction on each.

The corruption probe measures accuracy over many images; this shows a person what the
corruptions look like on one chosen image and where its prediction breaks. It reuses the
probe's corruption functions (same strengths per severity) and runs every variant through
the model in one batched call.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from audits.robustness._corruptions import CORRUPTIONS, MAX_SEVERITY, check_corruptions, corrupt, parameter
from audits.serialization import serializable

if TYPE_CHECKING:
    from audits.data import AuditData
    from models.loader import ModelHandle


@serializable
@dataclass(frozen=True, kw_only=True)
class CorruptionGallery:
    """``images[i, s]`` is the row under ``corruptions[i]`` at ``severities[s]`` (pixel space).

    ``predictions``/``confidence`` (n_corruptions, n_severities): the predicted class and its
    probability; ``label_probability``: the probability of the true label.
    """

    row: int
    label: int
    corruptions: list[str]
    severities: list[int]
    parameters: np.ndarray  # (n_corruptions, n_severities): each corruption's strength
    value_range: list[float]
    images: np.ndarray  # (n_corruptions, n_severities, C, H, W)
    predictions: np.ndarray
    confidence: np.ndarray
    label_probability: np.ndarray

    @property
    def first_flip(self) -> dict[str, int | None]:
        """Per corruption, the lowest severity whose prediction differs from the clean one."""
        out: dict[str, int | None] = {}
        for i, name in enumerate(self.corruptions):
            changed = np.flatnonzero(self.predictions[i] != self.predictions[i, 0])
            out[name] = int(self.severities[changed[0]]) if len(changed) else None
        return out


def corruption_gallery(model: ModelHandle, data: AuditData, row: int, *, corruptions: list[str] | None = None, seed: int = 0) -> CorruptionGallery:
    """Image ``row`` of ``data`` under each corruption at severities 0 (clean) to 5, with predictions."""
    if data.modality != "image":
        raise ValueError(f"the corruption gallery needs image data, not {data.modality}")
    names = check_corruptions(corruptions) if corruptions is not None else list(CORRUPTIONS)
    severities = list(range(MAX_SEVERITY + 1))
    value_range = tuple(float(v) for v in model.card.input.value_range)
    x = model.to_tensor(data.x[row : row + 1])
    generator = torch.Generator(device=model.device)
    variants = []
    for name in names:
        salt = int.from_bytes(hashlib.sha256(f"{seed}:gallery:{name}".encode()).digest()[:8], "little") >> 2
        for s in severities:
            generator.manual_seed(salt)  # the same noise draw at every severity, as in the probe
            variants.append(corrupt(x, name, s, generator, value_range))
    batch = torch.cat(variants)
    proba = model.predict_proba(batch).reshape(len(names), len(severities), -1)
    label = int(data.y[row])
    return CorruptionGallery(
        row=int(row),
        label=label,
        corruptions=names,
        severities=severities,
        parameters=np.array([[parameter(n, s) for s in severities] for n in names], dtype=np.float64),
        value_range=list(value_range),
        images=batch.cpu().numpy().reshape(len(names), len(severities), *x.shape[1:]),
        predictions=proba.argmax(axis=2),
        confidence=proba.max(axis=2),
        label_probability=proba[:, :, label],
    )
