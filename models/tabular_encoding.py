"""Declared tabular preprocessing: raw columns -> the model's float vector, from the card alone."""

from __future__ import annotations

import numpy as np
import pandas as pd

from audits.errors import DataError
from models.card import CategoricalFeature, NumericFeature, TabularInput


class TabularEncoder:
    """Encodes raw feature columns as the card declares (one-hot categoricals, scaled numerics).

    ``groups[i]`` lists the encoded columns of raw feature ``i``, so attributions over encoded
    columns sum back to raw features.
    """

    def __init__(self, spec: TabularInput) -> None:
        self.spec = spec
        self.feature_names = spec.feature_names
        self.groups: list[np.ndarray] = []
        self.encoded_names: list[str] = []
        start = 0
        for f in spec.features:
            width = len(f.levels) if isinstance(f, CategoricalFeature) else 1
            self.groups.append(np.arange(start, start + width))
            self.encoded_names += [f"{f.name}={lv}" for lv in f.levels] if isinstance(f, CategoricalFeature) else [f.name]
            start += width
        self.width = start

    def validate(self, frame: pd.DataFrame, *, source: str = "data") -> None:
        """Raise DataError for missing columns, unknown categories, non-numeric or non-finite values."""
        missing = [n for n in self.feature_names if n not in frame.columns]
        if missing:
            raise DataError(
                f"{source} lacks the feature column(s) {missing} that the card declares.",
                fix="Add the columns to the data, or correct input.features in the card.",
            )
        for f in self.spec.features:
            col = frame[f.name]
            nulls = int(col.isna().sum())
            if nulls and self.spec.missing == "error":
                raise DataError(
                    f"{source}: column {f.name!r} has {nulls} missing value(s) (first at row {int(np.flatnonzero(col.isna().to_numpy())[0])}).",
                    fix="Fill or drop those rows, or set 'input.missing: impute' in the card to impute them as declared.",
                )
            present = col.dropna()
            if isinstance(f, CategoricalFeature):
                unknown = sorted(set(present.astype(str)) - set(f.levels))
                if unknown:
                    raise DataError(
                        f"{source}: column {f.name!r} has categories {unknown[:5]} not among the card's levels {f.levels[:8]}{'...' if len(f.levels) > 8 else ''}.",
                        fix="Map them to declared levels, or add them to the card's levels (the model must have been trained with them).",
                    )
            else:
                values = pd.to_numeric(present, errors="coerce")
                bad = values.isna() | ~np.isfinite(values.to_numpy(dtype=float, na_value=np.nan))
                if bad.any():
                    first = present[bad].iloc[0]
                    raise DataError(
                        f"{source}: numeric column {f.name!r} has {int(bad.sum())} non-numeric or infinite value(s), e.g. {first!r}.",
                        fix="Clean the column so every value is a finite number.",
                    )

    def encode(self, frame: pd.DataFrame) -> np.ndarray:
        """Encode validated raw columns into an (N, width) float32 array."""
        out = np.zeros((len(frame), self.width), dtype=np.float32)
        for f, cols in zip(self.spec.features, self.groups):
            col = frame[f.name]
            if isinstance(f, NumericFeature):
                v = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
                if f.transform == "log1p":
                    v = np.log1p(np.clip(v, 0, None))
                v = (v - f.center) / f.scale
                out[:, cols[0]] = np.nan_to_num(v, nan=0.0)
            else:
                codes = pd.Categorical(col.astype("string"), categories=f.levels).codes
                rows = np.flatnonzero(codes >= 0)
                out[rows, cols[0] + codes[rows]] = 1.0
        return out
