"""Evaluation data: loaded once, validated at the boundary, handed to probes as ``AuditData``."""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np
import pandas as pd

from audits.errors import DataError
from models.card import ImageInput, ModelCard, TextInput
from models.tabular_encoding import TabularEncoder

if TYPE_CHECKING:
    from audits.large_data import PopulationSource


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
    # From the card: the favourable outcome (None: class 1 of a binary model) and per-attribute reference groups.
    favourable_class: str | None = None
    reference_groups: dict[str, str] = field(default_factory=dict)
    # format: predictions: the decisions as class probabilities (N, K) for the shared pass, and the raw
    # favourable-class score with the card's decision threshold (None where the file holds labels only).
    predictions: np.ndarray | None = None
    scores: np.ndarray | None = None
    threshold: float | None = None
    # Tabular data above the streaming threshold: these rows are a seeded subset of the file, which
    # ``run_audit`` streams whole for the performance and group metrics (see audits/large_data.py).
    population: PopulationSource | None = None
    # File-row index of each row here (streamed data only).
    file_rows: np.ndarray | None = None

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
            favourable_class=self.favourable_class,
            reference_groups=self.reference_groups,
            predictions=None if self.predictions is None else self.predictions[index],
            scores=None if self.scores is None else self.scores[index],
            threshold=self.threshold,
            file_rows=None if self.file_rows is None else self.file_rows[index],
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
            f"{source} lacks the sensitive column(s) {missing} that the card declares (columns present: {_file_columns(frame)[:12]}).",
            fix="Add the columns to the data, or remove them from data.sensitive in the card.",
        )


# Limits on evaluation tables: far above any real evaluation set (the zoo's widest has 14
# columns, its longest line ~400 characters), low enough that a hostile file is refused before it
# is parsed: an 84 MB CSV with a million unused columns cost 3 GB of memory when read whole.
MAX_COLUMNS = 10_000
MAX_LINE_BYTES = 1 << 20


class _LineLimitedReader(io.RawIOBase):
    """A byte stream that fails once any line runs past ``limit`` bytes (checked as pandas reads it)."""

    def __init__(self, raw: BinaryIO, limit: int, source: str) -> None:
        self._raw, self._limit, self._source, self._line = raw, limit, source, 0
        self.line_number = 1

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]  # io's buffer protocol
        chunk = self._raw.read(len(buffer))
        n = len(chunk)
        buffer[:n] = chunk
        if self._line + n > self._limit:  # only then can a line in this chunk run past the limit
            start, carried = 0, self._line
            end = chunk.find(b"\n")
            while end >= 0:
                self._check(carried + end - start)
                carried, start = 0, end + 1
                self.line_number += 1
                end = chunk.find(b"\n", start)
            self._line = carried + n - start
        else:
            last = chunk.rfind(b"\n")
            self.line_number += chunk.count(b"\n")
            self._line = self._line + n if last < 0 else n - last - 1
        self._check(self._line)
        return n

    def _check(self, length: int) -> None:
        if length > self._limit:
            raise DataError(
                f"Data file {self._source} has a line longer than {self._limit // 2**20} MB (line {self.line_number}).",
                fix="Keep one record per line with only the columns the card needs (features, label, sensitive attributes).",
            )


def _open_bytes(path: Path) -> BinaryIO:
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")  # noqa: SIM115  # closed by the caller


def _csv_header(path: Path, skip_spaces: bool) -> list[str]:
    """The column names of a CSV, reading at most ``MAX_LINE_BYTES`` of it."""
    with _open_bytes(path) as fh:
        line = fh.readline(MAX_LINE_BYTES + 1)
    if len(line) > MAX_LINE_BYTES:
        raise DataError(
            f"Data file {path} has a header line longer than {MAX_LINE_BYTES // 2**20} MB.",
            fix=f"Keep only the columns the card needs (at most {MAX_COLUMNS:,}): features, label and sensitive attributes.",
        )
    try:
        names = next(csv.reader([line.decode("utf-8-sig").rstrip("\r\n")], skipinitialspace=skip_spaces), [])
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"Data file {path} cannot be read: its header is not UTF-8 CSV ({exc}).", fix="Save the data as UTF-8 CSV with a header row.") from None
    return names


def _check_width(path: Path, columns: list[str]) -> None:
    if len(columns) > MAX_COLUMNS:
        raise DataError(
            f"Data file {path} has {len(columns):,} columns; evaluation data is limited to {MAX_COLUMNS:,}.",
            fix="Keep only the columns the card needs: features, label and sensitive attributes.",
        )


def _read_table(path: Path, columns: list[str] | None = None, *, text_column: str | None = None) -> pd.DataFrame:
    """Read a CSV or Parquet file, only its ``columns`` that exist (all when None), within the limits above.

    ``text_column`` (text data) is read verbatim: 'NA' and 'null' stay text, and only empty cells
    of the other columns count as missing. The returned frame's ``attrs["file_columns"]`` lists every
    column of the file, for messages about absent ones.
    """
    if not path.is_file():
        raise DataError(f"Data file {path} does not exist.", fix="Correct data.path in the card (relative paths resolve against the card's folder).")
    name = path.name.lower()
    try:
        if name.endswith((".parquet", ".pq")):
            import pyarrow.parquet as pq

            file_columns = list(pq.read_schema(path).names)
            _check_width(path, file_columns)
            wanted = file_columns if columns is None else [c for c in file_columns if c in set(columns)]
            frame = pd.read_parquet(path, columns=wanted or file_columns[:1])  # one column at least, for the row count
        elif name.endswith((".csv", ".csv.gz")):
            file_columns = _csv_header(path, skip_spaces=text_column is None)
            _check_width(path, file_columns)
            wanted = None if columns is None else [c for c in file_columns if c in set(columns)]
            options: dict = {"keep_default_na": False, "dtype": {text_column: str}} if text_column else {"skipinitialspace": True}
            with _open_bytes(path) as raw, io.BufferedReader(_LineLimitedReader(raw, MAX_LINE_BYTES, str(path))) as fh:
                frame = pd.read_csv(fh, usecols=None if wanted is None else (wanted or file_columns[:1]), **options)
            if text_column:  # empty cells are missing values, except in the text column
                for column in frame.columns:
                    if column != text_column and pd.api.types.is_string_dtype(frame[column].dtype):
                        frame[column] = frame[column].mask(frame[column] == "")
        else:
            raise DataError(f"Data file {path} has an unsupported extension.", fix="Use .csv, .csv.gz or .parquet for tabular data.")
    except DataError:
        raise
    except Exception as exc:  # pandas and pyarrow raise many parser error types
        raise DataError(f"Data file {path} cannot be read: {exc}.", fix="Provide a valid CSV or Parquet file.") from None
    if columns is not None:  # drop the column read only to count rows
        frame = frame[[c for c in frame.columns if c in set(columns)]]
    if len(frame) == 0:
        raise DataError(f"Data file {path} has no rows (only a header).", fix="Provide the evaluation rows: at least one per class, ideally hundreds.")
    frame.attrs["file_columns"] = file_columns
    return frame


def _file_columns(frame: pd.DataFrame) -> list[str]:
    return list(frame.attrs.get("file_columns", frame.columns))


def _load_image(card: ModelCard, path: Path, attributes_path: str | None = None) -> AuditData:
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
    if len(x) == 0:
        raise DataError(f"{path.name} holds no images (x has shape {x.shape}).", fix="Provide the evaluation images: at least one per class, ideally hundreds.")
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
    if data_card is not None and attributes_path:
        attr_path = card.resolve(attributes_path)
        attributes = _read_table(attr_path, list(data_card.sensitive))
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


CSV_READ_OPTIONS: dict = {"skipinitialspace": True}  # tabular CSV, as ``_read_table`` reads it


def _tabular_frame(card: ModelCard, frame: pd.DataFrame, source: str, label_column: str, encoder: TabularEncoder) -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame]:
    """Validated raw features, labels and sensitive attributes of a tabular frame."""
    sensitive = list(card.data.sensitive) if card.data else []
    if label_column not in frame.columns:
        raise DataError(f"{source} has no label column {label_column!r} (columns: {_file_columns(frame)[:12]}).", fix="Set data.label_column in the card to the label's column name.")
    if encoder.source_columns != encoder.feature_names:  # pre-encoded attributes: their one-hot columns, decoded
        file_columns = frame.attrs.get("file_columns")
        frame = encoder.decode_one_hot(frame, source=source)
        frame.attrs["file_columns"] = file_columns
    encoder.validate(frame, source=source)
    _check_sensitive(frame, sensitive, source)
    _check_attribute_values(frame, sensitive, source)
    labels = _labels(frame[label_column], card.class_names, source)
    raw = frame[encoder.feature_names].reset_index(drop=True)
    attributes = frame[list(dict.fromkeys(sensitive))].reset_index(drop=True)
    return raw, labels, attributes


def tabular_chunk(card: ModelCard, frame: pd.DataFrame, source: str, *, first_row: int = 0) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """One chunk of a streamed tabular file: encoded inputs, labels and sensitive attributes (validated as a whole file is)."""
    label_column = card.data.label_column if card.data else "y"
    where = f"{source} (rows {first_row + 1:,} to {first_row + len(frame):,})"
    raw, labels, attributes = _tabular_frame(card, frame, where, label_column, TabularEncoder(card.input))  # type: ignore[arg-type]
    return TabularEncoder(card.input).encode(raw), labels, attributes  # type: ignore[arg-type]


def _load_tabular(card: ModelCard, path: Path, label_column: str) -> AuditData:
    encoder = TabularEncoder(card.input)  # type: ignore[arg-type]
    sensitive = list(card.data.sensitive) if card.data else []
    frame = _read_table(path, [*encoder.source_columns, label_column, *sensitive])
    raw, labels, attributes = _tabular_frame(card, frame, path.name, label_column, encoder)
    return AuditData(
        modality="tabular", x=encoder.encode(raw), y=labels, class_names=card.class_names,
        attributes=attributes,
        sensitive=sensitive, source=str(path), sha256=_sha256(path), raw=raw,
        feature_names=encoder.feature_names, feature_groups=encoder.groups,
    )  # fmt: skip


def _load_tabular_subset(card: ModelCard, path: Path, label_column: str, n_rows: int, *, subset_rows: int, chunk_rows: int, seed: int) -> AuditData:
    """A seeded subset of a large tabular file, with the file named as the population to stream."""
    from audits.large_data import PopulationSource, is_parquet, read_csv_rows, read_parquet_rows, subset_indices

    encoder = TabularEncoder(card.input)  # type: ignore[arg-type]
    sensitive = list(card.data.sensitive) if card.data else []
    wanted = set([*encoder.source_columns, label_column, *sensitive])
    if is_parquet(path):
        import pyarrow.parquet as pq

        file_columns = list(pq.read_schema(path).names)
    else:
        file_columns = _csv_header(path, skip_spaces=True)
    _check_width(path, file_columns)
    columns = [c for c in file_columns if c in wanted]
    rows = subset_indices(n_rows, subset_rows, seed)
    try:
        frame = read_parquet_rows(path, rows, columns) if is_parquet(path) else read_csv_rows(path, rows, CSV_READ_OPTIONS, columns)
    except DataError:
        raise
    except Exception as exc:  # pandas and pyarrow raise many parser error types
        raise DataError(f"Data file {path} cannot be read: {exc}.", fix="Provide a valid CSV (one record per line) or Parquet file.") from None
    frame.attrs["file_columns"] = file_columns
    raw, labels, attributes = _tabular_frame(card, frame, path.name, label_column, encoder)
    from audits.large_data import file_sha256

    return AuditData(
        modality="tabular", x=encoder.encode(raw), y=labels, class_names=card.class_names,
        attributes=attributes,
        sensitive=sensitive, source=str(path), sha256=file_sha256(path), raw=raw,
        feature_names=encoder.feature_names, feature_groups=encoder.groups,
        population=PopulationSource(path=str(path), n_rows=n_rows, chunk_rows=chunk_rows, subset_rows=len(rows), seed=seed, columns=tuple(columns)),
        file_rows=rows,
    )  # fmt: skip


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
    sensitive = list(card.data.sensitive) if card.data else []
    frame = _read_table(path, [spec.text_column, label_column, *sensitive], text_column=spec.text_column)
    for column, what in ((spec.text_column, "text"), (label_column, "label")):
        if column not in frame.columns:
            key = "input.text_column" if what == "text" else "data.label_column"
            raise DataError(f"{path.name} has no {what} column {column!r} (columns: {_file_columns(frame)[:12]}).", fix=f"Set {key} in the card to the {what}'s column name.")
    texts = _check_texts(frame[spec.text_column], path.name, spec.text_column)
    _check_sensitive(frame, sensitive, path.name)
    _check_attribute_values(frame, sensitive, path.name)
    labels = _labels(frame[label_column], card.class_names, path.name)
    tokenizer = load_tokenizer(card.tokenizer_path)
    return AuditData(
        modality="text", x=encode_texts(tokenizer, texts, spec.max_length), y=labels, class_names=card.class_names,
        attributes=frame[list(dict.fromkeys(sensitive))].reset_index(drop=True),
        sensitive=sensitive, source=str(path), sha256=_sha256(path), raw=frame[[spec.text_column]].reset_index(drop=True),
    )  # fmt: skip


def load_data(
    card: ModelCard, path: str | Path | None = None, *, stream_above_rows: int | None = None, subset_rows: int | None = None, chunk_rows: int | None = None, seed: int = 0
) -> AuditData:
    """Load and validate the card's evaluation data (or ``path``, a file of the same layout).

    A tabular file of more than ``stream_above_rows`` rows (default ``large_data.STREAM_ABOVE_ROWS``) is not
    loaded whole: the result holds a seeded subset of ``subset_rows`` rows (``seed``) for the probes and names
    the file as ``population``, which ``run_audit`` streams in chunks of ``chunk_rows`` rows for the
    performance and group metrics. Smaller files load as before.
    """
    if card.data is None and path is None:
        raise DataError(f"Model card {card.name!r} declares no evaluation data.", fix="Add a 'data:' section to the card or pass a data file.")
    data_path = Path(path) if path is not None else card.resolve(card.data.path)  # type: ignore[union-attr]
    label_column = card.data.label_column if card.data else "y"
    if card.modality == "image":
        data = _load_image(card, data_path, card.data.attributes_path if card.data else None)
    elif card.modality == "text":
        data = _load_text(card, data_path, label_column)
    else:
        from audits import large_data

        threshold = large_data.STREAM_ABOVE_ROWS if stream_above_rows is None else stream_above_rows
        n_rows = large_data.count_rows(data_path) if card.format != "predictions" and data_path.is_file() and _is_table(data_path) else 0
        if n_rows > threshold:
            data = _load_tabular_subset(
                card, data_path, label_column, n_rows, seed=seed,
                subset_rows=large_data.SUBSET_ROWS if subset_rows is None else subset_rows, chunk_rows=large_data.CHUNK_ROWS if chunk_rows is None else chunk_rows,
            )  # fmt: skip
        else:
            data = _load_tabular(card, data_path, label_column)
    data = replace(data, favourable_class=card.favourable_class, reference_groups=dict(card.data.reference_groups) if card.data else {})
    if card.format == "predictions":
        data = _with_predictions(card, data_path, data)
    return data


def _is_table(path: Path) -> bool:
    return path.name.lower().endswith((".parquet", ".pq", ".csv", ".csv.gz"))


def _with_predictions(card: ModelCard, path: Path, data: AuditData) -> AuditData:
    """Attach the decisions a ``format: predictions`` card names: validated, as probabilities for the shared pass.

    A score s of the favourable class with threshold t becomes P(favourable) = s moved piecewise-linearly so that
    t sits at 0.5 (order kept; unchanged when t = 0.5 for probabilities), so the decision is the argmax as for a model.
    """
    spec = card.predictions
    assert spec is not None
    columns = [c for c in (spec.score_column, spec.label_column) if c]
    frame = _read_table(path, columns)
    for column in columns:
        if column not in frame.columns:
            key = "predictions.score_column" if column == spec.score_column else "predictions.label_column"
            raise DataError(f"{path.name} has no column {column!r} that {key} names (columns: {_file_columns(frame)[:12]}).", fix=f"Set {key} in the card to the column holding it.")
    k = len(card.class_names)
    pos = card.class_names.index(card.favourable_class) if card.favourable_class else (1 if k == 2 else None)
    decided = None
    if spec.label_column:
        values = frame[spec.label_column]
        if values.isna().any():
            raise DataError(
                f"{path.name}: the predicted-label column {spec.label_column!r} has {int(values.isna().sum())} missing value(s) (first at row {int(np.flatnonzero(values.isna().to_numpy())[0])}).",
                fix="Fill in the decision of every row, or drop the rows without one.",
            )
        decided = _labels(values, card.class_names, f"{path.name} (predicted-label column {spec.label_column!r})")
    scores = proba = None
    if spec.score_column:
        raw = pd.to_numeric(frame[spec.score_column], errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isfinite(raw)
        if bad.any():
            raise DataError(
                f"{path.name}: the score column {spec.score_column!r} has {int(bad.sum())} missing, non-numeric or infinite value(s) (first at row {int(np.flatnonzero(bad)[0])}).",
                fix="Give every row a finite score (or drop rows the system did not score).",
            )
        if spec.score_kind == "probability" and (raw.min() < 0.0 or raw.max() > 1.0):
            out = int(((raw < 0) | (raw > 1)).sum())
            raise DataError(
                f"{path.name}: the score column {spec.score_column!r} holds {out} value(s) outside [0, 1] (range {raw.min():.4g} to {raw.max():.4g}), but the card declares probabilities.",
                fix="Give probabilities in [0, 1], or set predictions.score_kind: score (with a threshold in the score's own units).",
            )
        lo, hi = (0.0, 1.0) if spec.score_kind == "probability" else (min(raw.min(), spec.threshold), max(raw.max(), spec.threshold))
        t = spec.threshold
        below = (raw - lo) / (t - lo) * 0.5 if t > lo else np.zeros_like(raw)
        above = 0.5 + (raw - t) / (hi - t) * 0.5 if hi > t else np.ones_like(raw)
        p_fav = np.where(raw >= t, np.maximum(above, np.nextafter(0.5, 1.0)), np.minimum(below, np.nextafter(0.5, 0.0)))
        other = 1 - pos
        proba = np.zeros((len(raw), 2))
        proba[:, pos], proba[:, other] = p_fav, 1.0 - p_fav
        scores = raw
        if decided is not None:
            disagree = proba.argmax(axis=1) != decided
            if disagree.any():
                raise DataError(
                    f"{path.name}: the decisions in {spec.label_column!r} disagree with {spec.score_column!r} >= {t:g} on {int(disagree.sum())} row(s) (first: row {int(np.flatnonzero(disagree)[0])}).",
                    fix="Set predictions.threshold to the one the system used, or name only one of the two columns.",
                )
    elif decided is not None:
        proba = np.eye(k)[decided]
    return replace(data, predictions=proba, scores=scores, threshold=spec.threshold if scores is not None else None)


def load_training_sample(card: ModelCard) -> AuditData | None:
    """The card's sample of the training data (``data.train_path``, the evaluation data's layout); None when it declares none.

    Images take their attributes from ``data.train_attributes_path``; tabular and text rows carry them
    in the file, like the evaluation data. The same checks apply (labels, value range, sensitive columns).
    """
    if card.data is None or not card.data.train_path:
        return None
    path = card.resolve(card.data.train_path)
    if card.modality == "image":
        if card.data.sensitive and not card.data.train_attributes_path:
            raise DataError(
                f"Model card {card.name!r} declares data.train_path but no data.train_attributes_path for its sensitive attribute(s) {card.data.sensitive}.",
                fix="Add data.train_attributes_path: a CSV with one row of those columns per training image, in order.",
            )
        data = _load_image(card, path, card.data.train_attributes_path)
    elif card.modality == "text":
        data = _load_text(card, path, card.data.label_column)
    else:
        data = _load_tabular(card, path, card.data.label_column)
    return replace(data, favourable_class=card.favourable_class, reference_groups=dict(card.data.reference_groups))
