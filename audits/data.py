"""Evaluation data: loaded once, validated at the boundary, handed to probes as ``AuditData``."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from audits.errors import DataError
from models.card import ImageInput, ModelCard, TextInput
from models.tabular_encoding import TabularEncoder


@dataclass(frozen=True)
class AuditData:
    """The evaluation set in audit space.

    ``x`` is pixel-space images (N, C, H, W), the encoded tabular matrix (N, D) or, for
    text, token ids (N, max_length) int64 padded with the tokenizer's pad id; ``raw`` keeps
    tabular raw columns, or for text the one text column (see ``texts``); ``attributes``
    holds per-sample attributes (sensitive columns at least), aligned with ``x``.
    """

    modality: str
    x: np.ndarray
    y: np.ndarray
    class_names: list[str]
    attributes: pd.DataFrame
    sensitive: list[str]
    source: str
    sha256: str
    raw: pd.DataFrame | None = None
    feature_names: list[str] = field(default_factory=list)
    feature_groups: list[np.ndarray] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.y)

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    @property
    def texts(self) -> list[str]:
        """Text data: the raw texts, aligned with ``x``."""
        if self.modality != "text" or self.raw is None:
            raise ValueError(f"{self.modality} data has no texts")
        return self.raw.iloc[:, 0].tolist()

    def subset(self, index: np.ndarray) -> AuditData:
        """Rows ``index`` of every aligned field (a copy)."""
        index = np.asarray(index)
        return AuditData(
            modality=self.modality,
            x=self.x[index],
            y=self.y[index],
            class_names=self.class_names,
            attributes=self.attributes.iloc[index].reset_index(drop=True),
            sensitive=self.sensitive,
            source=self.source,
            sha256=self.sha256,
            raw=None if self.raw is None else self.raw.iloc[index].reset_index(drop=True),
            feature_names=self.feature_names,
            feature_groups=self.feature_groups,
        )


def _sha256(*paths: Path) -> str:
    digest = hashlib.sha256()
    for p in paths:
        digest.update(p.read_bytes())
    return digest.hexdigest()


def _labels(values: pd.Series | np.ndarray, class_names: list[str], source: str) -> np.ndarray:
    values = pd.Series(np.asarray(values))
    if values.isna().any():
        raise DataError(f"{source}: the label column has {int(values.isna().sum())} missing value(s).", fix="Drop or label those rows.")
    if values.dtype.kind in "OSUT" or str(values.dtype) in ("string", "str"):
        lookup = {name: i for i, name in enumerate(class_names)}
        unknown = sorted(set(values.astype(str)) - set(lookup))
        if unknown:
            raise DataError(
                f"{source}: labels {unknown[:5]} are not among the card's class_names {class_names}.",
                fix="Use class names from the card (or class indices 0..K-1) as labels.",
            )
        return values.astype(str).map(lookup).to_numpy(dtype=np.int64)
    numeric = values.to_numpy()
    if numeric.dtype.kind == "f" and not np.all(np.isfinite(numeric) & (numeric == np.round(numeric))):
        raise DataError(f"{source}: labels must be whole class indices; found non-integer values.", fix="Store labels as integers 0..K-1 or class names.")
    labels = numeric.astype(np.int64)
    bad = (labels < 0) | (labels >= len(class_names))
    if bad.any():
        raise DataError(
            f"{source}: {int(bad.sum())} label(s) out of range 0..{len(class_names) - 1} (e.g. {int(labels[bad][0])}).",
            fix="Labels must index the card's class_names.",
        )
    return labels


def _check_sensitive(frame: pd.DataFrame, sensitive: list[str], source: str) -> None:
    missing = [c for c in sensitive if c not in frame.columns]
    if missing:
        raise DataError(
            f"{source} lacks the sensitive column(s) {missing} that the card declares (columns present: {list(frame.columns)[:12]}).",
            fix="Add the columns to the data, or remove them from data.sensitive in the card.",
        )


def _read_table(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(f"Data file {path} does not exist.", fix="Correct data.path in the card (relative paths resolve against the card's folder).")
    name = path.name.lower()
    try:
        if name.endswith(".parquet") or name.endswith(".pq"):
            return pd.read_parquet(path)
        if name.endswith((".csv", ".csv.gz")):
            return pd.read_csv(path, skipinitialspace=True)
    except Exception as exc:  # pandas raises many parser error types
        raise DataError(f"Data file {path} cannot be read: {exc}.", fix="Provide a valid CSV or Parquet file.") from None
    raise DataError(f"Data file {path} has an unsupported extension.", fix="Use .csv, .csv.gz or .parquet for tabular data.")


def _load_image(card: ModelCard, path: Path) -> AuditData:
    spec = card.input
    assert isinstance(spec, ImageInput)
    if not path.is_file():
        raise DataError(f"Data file {path} does not exist.", fix="Correct data.path in the card.")
    try:
        with np.load(path, allow_pickle=False) as npz:
            if "x" not in npz or "y" not in npz:
                raise DataError(f"{path.name} must hold arrays 'x' (N x C x H x W) and 'y' (N,); it has {list(npz.keys())}.", fix="Save with np.savez(path, x=images, y=labels).")
            x, y = npz["x"], npz["y"]
    except ValueError as exc:
        raise DataError(f"{path.name} is not a readable .npz without pickles ({exc}).", fix="Save plain numeric arrays with np.savez.") from None
    if x.ndim != 4 or tuple(x.shape[1:]) != spec.shape:
        raise DataError(f"{path.name}: x has shape {x.shape}, the card expects N x {spec.channels} x {spec.height} x {spec.width}.", fix="Store images as N x C x H x W matching the card's input spec.")
    x = x.astype(np.float32, copy=False)
    if not np.isfinite(x).all():
        bad = np.flatnonzero(~np.isfinite(x).reshape(len(x), -1).all(axis=1))
        raise DataError(f"{path.name}: {len(bad)} image(s) contain NaN or inf (first: index {int(bad[0])}).", fix="Remove or repair those images.")
    lo, hi = spec.value_range
    if x.min() < lo - 1e-6 or x.max() > hi + 1e-6:
        raise DataError(f"{path.name}: pixel values span [{x.min():.3g}, {x.max():.3g}], outside the card's value_range {list(spec.value_range)}.", fix="Store un-normalized pixels in value_range; the card's normalization is applied by the audit.")
    if len(y) != len(x):
        raise DataError(f"{path.name}: {len(x)} images but {len(y)} labels.", fix="Store one label per image.")
    labels = _labels(y, card.class_names, path.name)
    files = [path]
    data_card = card.data
    if data_card is not None and data_card.attributes_path:
        attr_path = card.resolve(data_card.attributes_path)
        attributes = _read_table(attr_path)
        files.append(attr_path)
        if len(attributes) != len(x):
            raise DataError(f"{attr_path.name} has {len(attributes)} rows but {path.name} has {len(x)} images.", fix="Give exactly one attribute row per image, in the same order.")
    else:
        attributes = pd.DataFrame(index=range(len(x)))
    sensitive = list(data_card.sensitive) if data_card else []
    _check_sensitive(attributes, sensitive, "the attributes file")
    _check_attribute_values(attributes, sensitive, "the attributes file")
    return AuditData(
        modality="image", x=x, y=labels, class_names=card.class_names, attributes=attributes.reset_index(drop=True),
        sensitive=sensitive, source=str(path), sha256=_sha256(*files),
    )


def _check_attribute_values(frame: pd.DataFrame, sensitive: list[str], source: str) -> None:
    for col in sensitive:
        nulls = int(frame[col].isna().sum())
        if nulls:
            raise DataError(f"{source}: sensitive column {col!r} has {nulls} missing value(s).", fix="Fill them (for example with an explicit 'unknown' group) or drop those rows.")


def _load_tabular(card: ModelCard, path: Path, label_column: str) -> AuditData:
    frame = _read_table(path)
    if label_column not in frame.columns:
        raise DataError(f"{path.name} has no label column {label_column!r} (columns: {list(frame.columns)[:12]}).", fix="Set data.label_column in the card to the label's column name.")
    encoder = TabularEncoder(card.input)  # type: ignore[arg-type]
    encoder.validate(frame, source=path.name)
    sensitive = list(card.data.sensitive) if card.data else []
    _check_sensitive(frame, sensitive, path.name)
    _check_attribute_values(frame, sensitive, path.name)
    labels = _labels(frame[label_column], card.class_names, path.name)
    raw = frame[encoder.feature_names].reset_index(drop=True)
    extra = [c for c in frame.columns if c not in encoder.feature_names and c != label_column]
    attributes = frame[list(dict.fromkeys(sensitive + extra))].reset_index(drop=True)
    return AuditData(
        modality="tabular", x=encoder.encode(raw), y=labels, class_names=card.class_names,
        attributes=attributes,
        sensitive=sensitive, source=str(path), sha256=_sha256(path), raw=raw,
        feature_names=encoder.feature_names, feature_groups=encoder.groups,
    )


def _read_text_table(path: Path, text_column: str) -> pd.DataFrame:
    """A CSV or Parquet table whose text column is read verbatim ('NA' and 'null' stay text)."""
    name = path.name.lower()
    if not path.is_file() or not name.endswith((".csv", ".csv.gz")):
        return _read_table(path)
    try:
        frame = pd.read_csv(path, keep_default_na=False, dtype={text_column: str})
    except Exception as exc:  # pandas raises many parser error types
        raise DataError(f"Data file {path} cannot be read: {exc}.", fix="Provide a valid CSV or Parquet file.") from None
    for column in frame.columns:  # empty cells are missing values, except in the text column
        if column != text_column and pd.api.types.is_string_dtype(frame[column].dtype):
            frame[column] = frame[column].mask(frame[column] == "")
    return frame


def _check_texts(values: pd.Series, source: str, column: str) -> list[str]:
    missing = values.isna().to_numpy()
    if missing.any():
        raise DataError(f"{source}: the text column {column!r} has {int(missing.sum())} missing value(s) (first: row {int(np.flatnonzero(missing)[0])}).", fix="Drop those rows or fill them with the text.")
    not_text = np.array([not isinstance(v, str) for v in values])
    if not_text.any():
        first = int(np.flatnonzero(not_text)[0])
        raise DataError(f"{source}: {int(not_text.sum())} value(s) of the text column {column!r} are not strings (row {first}: {values.iloc[first]!r}).", fix="Store the texts as strings.")
    empty = np.array([not v.strip() for v in values])
    if empty.any():
        raise DataError(f"{source}: {int(empty.sum())} text(s) in {column!r} are empty or blank (first: row {int(np.flatnonzero(empty)[0])}).", fix="Drop those rows: an empty text has nothing to classify or explain.")
    return list(values)


def _load_text(card: ModelCard, path: Path, label_column: str) -> AuditData:
    from models.text import encode_texts, load_tokenizer

    spec = card.input
    assert isinstance(spec, TextInput)
    frame = _read_text_table(path, spec.text_column)
    for column, what in ((spec.text_column, "text"), (label_column, "label")):
        if column not in frame.columns:
            key = "input.text_column" if what == "text" else "data.label_column"
            raise DataError(f"{path.name} has no {what} column {column!r} (columns: {list(frame.columns)[:12]}).", fix=f"Set {key} in the card to the {what}'s column name.")
    texts = _check_texts(frame[spec.text_column], path.name, spec.text_column)
    sensitive = list(card.data.sensitive) if card.data else []
    _check_sensitive(frame, sensitive, path.name)
    _check_attribute_values(frame, sensitive, path.name)
    labels = _labels(frame[label_column], card.class_names, path.name)
    tokenizer = load_tokenizer(card.tokenizer_path)
    extra = [c for c in frame.columns if c not in (spec.text_column, label_column)]
    return AuditData(
        modality="text", x=encode_texts(tokenizer, texts, spec.max_length), y=labels, class_names=card.class_names,
        attributes=frame[list(dict.fromkeys(sensitive + extra))].reset_index(drop=True),
        sensitive=sensitive, source=str(path), sha256=_sha256(path), raw=frame[[spec.text_column]].reset_index(drop=True),
    )  # fmt: skip


def load_data(card: ModelCard, path: str | Path | None = None) -> AuditData:
    """Load and validate the card's evaluation data (or ``path``, a file of the same layout)."""
    if card.data is None and path is None:
        raise DataError(f"Model card {card.name!r} declares no evaluation data.", fix="Add a 'data:' section to the card or pass a data file.")
    data_path = Path(path) if path is not None else card.resolve(card.data.path)  # type: ignore[union-attr]
    label_column = card.data.label_column if card.data else "y"
    if card.modality == "image":
        return _load_image(card, data_path)
    if card.modality == "text":
        return _load_text(card, data_path, label_column)
    return _load_tabular(card, data_path, label_column)
