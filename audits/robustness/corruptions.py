"""Natural corruptions: accuracy under noise, blur, contrast, brightness, pixelation, JPEG and occlusion."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from audits.probes import RunContext, register
from audits.results.robustness import CorruptionExamples, CorruptionResult
from audits.robustness._corruptions import (
    CORRUPTIONS,
    MAX_SEVERITY,
    check_corruptions,
    check_severities,
    corrupt,
    corrupted_proba,
    parameter,
)
from audits.robustness.base import RobustnessProbe, check_max_rows, group_breakdown

if TYPE_CHECKING:
    from audits.data import AuditData
    from models.loader import ModelHandle

# Example images larger than this (per side) are downsampled for the report.
EXAMPLE_SIDE = 64


@register
class Corruptions(RobustnessProbe):
    """The corruption suite (after ImageNet-C) at severities 1-5 on a seeded subset of images.

    Parameters
    ----------
    corruptions : list of str or None
        Any of gaussian_noise, shot_noise, gaussian_blur, contrast, brightness, pixelate,
        jpeg, occlusion; None: all of them.
    severities : list of int
        Severities to evaluate, 1 (mild) to 5 (severe).
    max_rows : int or None
        Evaluate a seeded random subset of this many images (None: every image).
    n_examples : int
        Images (from the audit's explained samples) shown under every corruption and severity.
    """

    name = "corruptions"
    result_type = CorruptionResult
    modalities = ("image",)
    default_for = ("image",)
    title = "Natural corruptions"
    description = (
        "Re-measures accuracy on images degraded the way real inputs are (sensor noise, blur, low contrast, "
        "over-exposure, low resolution, JPEG artefacts, an occluding patch), at five increasing severities."
    )

    def __init__(
        self,
        *,
        corruptions: list[str] | None = None,
        severities: list[int] = (1, 2, 3, 4, 5),
        max_rows: int | None = 512,
        n_examples: int = 2,
    ) -> None:
        self.corruptions = check_corruptions(corruptions) if corruptions is not None else None
        self.severities = check_severities(list(severities))
        self.max_rows = check_max_rows(max_rows)
        if n_examples < 0:
            raise ValueError(f"n_examples must be >= 0, got {n_examples}")
        self.n_examples = int(n_examples)

    def _run(self, model: ModelHandle, data: AuditData, context: RunContext) -> CorruptionResult:
        names = self.corruptions or list(CORRUPTIONS)
        value_range = tuple(float(v) for v in model.card.input.value_range)
        rows = self.evaluation_rows(data, self.max_rows, context)
        y = data.y[rows]
        clean_pred = context.predictions[rows]
        clean_ok = clean_pred == y
        clean_accuracy = float(clean_ok.mean()) if len(rows) else float("nan")
        correct, flipped, records = [], [], []
        for i, name in enumerate(names):
            context.report(i / len(names), name)
            proba = corrupted_proba(model, data.x[rows], name, self.severities, self._seed(context, name), value_range)
            pred = proba.argmax(axis=2)  # (S, n)
            for s, severity in enumerate(self.severities):
                ok = pred[s] == y
                correct.append(ok)
                flipped.append(pred[s] != clean_pred)
                records.append(
                    {
                        "corruption": name,
                        "severity": severity,
                        "parameter": parameter(name, severity),
                        "accuracy": float(ok.mean()),
                        "relative_accuracy": float(ok.mean() / clean_accuracy) if clean_accuracy > 0 else float("nan"),
                        "flip_rate": float(flipped[-1].mean()),
                        "mean_confidence": float(proba[s].max(axis=1).mean()),
                        "n": len(rows),
                    }
                )
        table = pd.DataFrame(records)
        correct_m = np.stack(correct, axis=1)  # (n, conditions)
        conditions = table[["corruption", "severity"]]
        by_group = group_breakdown(
            {"clean_accuracy": np.repeat(clean_ok[:, None], len(table), axis=1), "accuracy": correct_m, "flip_rate": np.stack(flipped, axis=1)},
            data.attributes.iloc[rows].reset_index(drop=True), data.sensitive, conditions,
        )  # fmt: skip
        by_group.insert(by_group.columns.get_loc("accuracy") + 1, "drop", by_group["clean_accuracy"] - by_group["accuracy"])
        mca = float(table["accuracy"].mean())
        return CorruptionResult(
            method=self.name,
            params=self.params,
            seed=context.seed,
            rows=rows,
            clean_accuracy=clean_accuracy,
            table=table,
            mean_corruption_accuracy=mca,
            relative_corruption_accuracy=mca / clean_accuracy if clean_accuracy > 0 else float("nan"),
            by_group=by_group,
            examples=self._examples(model, data, context, names, value_range),
        )

    def _seed(self, context: RunContext, corruption: str) -> int:
        return int(context.rng(f"{self.name}:{corruption}").integers(2**62))

    def _examples(
        self, model: ModelHandle, data: AuditData, context: RunContext, names: list[str], value_range: tuple[float, float]
    ) -> CorruptionExamples | None:
        idx = np.asarray(context.sample_indices)[: self.n_examples]
        if not len(idx):
            return None
        severities = list(range(MAX_SEVERITY + 1))
        x = model.to_tensor(data.x[idx])
        generator = torch.Generator(device=model.device)
        low, high = value_range
        images = []
        for name in names:
            per_severity = []
            for s in severities:
                generator.manual_seed(self._seed(context, name))
                img = corrupt(x, name, s, generator, value_range)
                if max(img.shape[-2:]) > EXAMPLE_SIDE:
                    factor = EXAMPLE_SIDE / max(img.shape[-2:])
                    img = F.interpolate(img, size=(max(1, round(img.shape[-2] * factor)), max(1, round(img.shape[-1] * factor))), mode="area")
                per_severity.append(((img - low) / (high - low) * 255).round().clamp(0, 255).to(torch.uint8).cpu().numpy())
            images.append(np.stack(per_severity, axis=1))  # (k, S, C, H, W)
        return CorruptionExamples(
            rows=idx.astype(np.int64),
            corruptions=list(names),
            severities=severities,
            value_range=[float(low), float(high)],
            images=np.stack(images, axis=1),
        )
