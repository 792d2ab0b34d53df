"""What-if: an edited tabular row or text, as evaluation data a probe can explain.

The edited sample is appended to a seeded subset of the evaluation rows (the background that
perturbation methods such as KernelSHAP and LIME draw from), so explaining it is one probe run
on a small ``AuditData``, whatever the size of the evaluation set. Edits are validated as the
card declares (unknown categories, non-numeric values and empty texts are refused with a fix).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from audits.data import AuditData
from audits.errors import DataError
from models.card import ModelCard, TextInput

if TYPE_CHECKING:
    from models.loader import ModelHandle

BACKGROUND_ROWS = 256


def _background(data: AuditData, rows: int, seed: int) -> np.ndarray:
    n = len(data)
    if n <= rows:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=rows, replace=False))


def _with_row(data: AuditData, x_row: np.ndarray, raw_row: pd.DataFrame, like: int, background: int, seed: int) -> tuple[AuditData, int]:
    base = data.subset(_background(data, background, seed))
    attributes = pd.concat([base.attributes, data.attributes.iloc[[like]]], ignore_index=True)
    edited = AuditData(
        modality=data.modality,
        x=np.concatenate([base.x, x_row.astype(base.x.dtype, copy=False)]),
        y=np.r_[base.y, data.y[like]],
        class_names=data.class_names,
        attributes=attributes,
        sensitive=data.sensitive,
        source=f"{data.source} (row {like} edited)",
        sha256=data.sha256,
        raw=pd.concat([base.raw, raw_row], ignore_index=True) if base.raw is not None else None,
        feature_names=data.feature_names,
        feature_groups=data.feature_groups,
    )
    return edited, len(edited) - 1


def edited_row(data: AuditData, card: ModelCard, values: dict, *, like: int, background: int = BACKGROUND_ROWS, seed: int = 0) -> tuple[AuditData, int]:
    """Tabular: row ``like`` with the raw feature ``values`` changed; returns ``(data, index of the edited row)``.

    The label and sensitive attributes are those of row ``like``.
    """
    from models.tabular_encoding import TabularEncoder

    if data.modality != "tabular" or data.raw is None:
        raise DataError(f"A what-if row needs tabular data; this model's data is {data.modality}.", fix="Use the text editor for text models.")
    encoder = TabularEncoder(card.input)  # type: ignore[arg-type]
    row = data.raw.iloc[[like]].reset_index(drop=True).copy()
    for name, value in values.items():
        if name not in row.columns:
            raise DataError(f"The what-if row has no feature {name!r}.", fix=f"Edit one of: {', '.join(row.columns)}.")
        row.loc[0, name] = value
    encoder.validate(row, source="the edited row")
    return _with_row(data, encoder.encode(row), row, like, background, seed)


def edited_text(data: AuditData, card: ModelCard, text: str, *, like: int, background: int = BACKGROUND_ROWS, seed: int = 0) -> tuple[AuditData, int]:
    """Text: ``text`` in place of text ``like``; returns ``(data, index of the edited text)``."""
    from models.text import encode_texts, load_tokenizer

    if data.modality != "text" or not isinstance(card.input, TextInput):
        raise DataError(f"A what-if text needs a text model; this one is {data.modality}.", fix="Use the row editor for tabular models.")
    if not text.strip():
        raise DataError("The edited text is empty.", fix="Type a sentence to classify and explain.")
    ids = encode_texts(load_tokenizer(card.tokenizer_path), [text], card.input.max_length)
    return _with_row(data, ids, pd.DataFrame({data.raw.columns[0]: [text]}), like, background, seed)


def predict_one(model: ModelHandle, data: AuditData, index: int) -> np.ndarray:
    """The class probabilities of row ``index`` (one model call)."""
    return model.predict_proba(data.x[index : index + 1])[0]
