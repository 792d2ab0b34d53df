"""Evaluation data larger than memory (tabular): read in chunks, scored once, summarized as counts.

Above a row threshold (``load_data(stream_above_rows=...)``) a tabular file is not loaded whole.
``load_data`` returns a seeded subset of its rows (for the probes that perturb or explain rows) and
a :class:`PopulationSource` naming the whole file. ``run_audit`` then streams the file once in
chunks (CSV chunks or Parquet batches), encodes and scores each chunk with the shared forward pass,
and keeps only sufficient statistics (:class:`PopulationStats`): the confusion matrix and the
reliability bins for the performance section, and per *atom* (one combination of the sensitive
values, true class, predicted class and confidence bin) a row count with the sums and sums of squares
of the confidence and of every class probability for the group metrics. Memory is bounded by the
chunk size and the number of atoms, not by the rows.

The group-metric bootstrap needs no rows: a row bootstrap of N rows draws the atom counts from a
multinomial(N, n_a / N) exactly, so the counts are drawn that way; the confidence and score sums of
m draws from an atom are its mean times m plus a normal term with the atom's own variance (the
confidence varies little inside one bin of one class pair, so this term is small).
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from audits.errors import DataError

MAX_LINE_BYTES = 1 << 20  # as audits.data: a longer line is refused, not buffered

# Defaults: files above this many rows are streamed; the probes work on a seeded subset of this size; rows per chunk.
STREAM_ABOVE_ROWS = 250_000  # the in-memory audit of 1M Adult rows took 2 GB and minutes; 163k rows 0.75 GB
SUBSET_ROWS = 100_000
CHUNK_ROWS = 200_000
_BLOCK = 1 << 24  # bytes per read when counting and picking lines


@dataclass(frozen=True)
class PopulationSource:
    """The whole evaluation file behind a streamed audit: where it is, how many rows, how it is read."""

    path: str
    n_rows: int
    chunk_rows: int
    subset_rows: int
    seed: int
    columns: tuple[str, ...]  # the file columns the audit reads


def is_parquet(path: Path) -> bool:
    return path.name.lower().endswith((".parquet", ".pq"))


def _open(path: Path):
    import gzip

    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")  # noqa: SIM115  # closed by the caller


def count_rows(path: Path) -> int:
    """Data rows of a CSV (lines after the header; a last line without newline counts) or a Parquet file (its metadata)."""
    if is_parquet(path):
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(path).metadata.num_rows)
    lines, last = 0, b"\n"
    with _open(path) as fh:
        while block := fh.read(_BLOCK):
            lines += block.count(b"\n")
            last = block[-1:]
    lines += last != b"\n"
    return max(lines - 1, 0)


def file_sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def subset_indices(n_rows: int, subset_rows: int, seed: int) -> np.ndarray:
    """Sorted file-row indices of the seeded subset (all rows when there are no more than ``subset_rows``)."""
    if subset_rows >= n_rows:
        return np.arange(n_rows)
    return np.sort(np.random.default_rng(seed).choice(n_rows, size=subset_rows, replace=False))


def read_csv_rows(path: Path, rows: np.ndarray, read_options: dict, usecols: list[str] | None) -> pd.DataFrame:
    """Rows ``rows`` (sorted data-row indices) of a CSV with one record per line, parsed as the whole file would be.

    The file is read once in blocks; line boundaries are found with numpy, so only the chosen lines reach the parser.
    """
    header = b""
    kept: list[bytes] = []
    carry = b""
    line_no = -1  # data-row index of the first complete line in the current buffer (-1: the header)
    pos = 0  # next wanted position in ``rows``
    with _open(path) as fh:
        while True:
            block = fh.read(_BLOCK)
            buffer = carry + block
            if not block:
                if buffer.strip():
                    buffer += b"\n"
                else:
                    break
            ends = np.flatnonzero(np.frombuffer(buffer, dtype=np.uint8) == 10)
            starts = np.concatenate([[0], ends[:-1] + 1])
            numbers = line_no + np.arange(len(ends))
            if line_no < 0 and len(ends):
                header = buffer[: ends[0] + 1]
            lo = np.searchsorted(rows, numbers[0]) if len(ends) else pos
            hi = np.searchsorted(rows, numbers[-1], side="right") if len(ends) else pos
            for r in rows[lo:hi]:
                i = int(r - line_no)
                kept.append(buffer[starts[i] : ends[i] + 1])
            pos = hi
            line_no += len(ends)
            carry = buffer[ends[-1] + 1 :] if len(ends) else buffer
            if len(carry) > MAX_LINE_BYTES or (len(ends) and int((ends - starts).max()) > MAX_LINE_BYTES):
                raise DataError(
                    f"Data file {path} has a line longer than {MAX_LINE_BYTES // 2**20} MB (after data row {line_no:,}).",
                    fix="Keep one record per line with only the columns the card needs (features, label, sensitive attributes).",
                )
            if not block:
                break
    return pd.read_csv(io.BytesIO(header + b"".join(kept)), usecols=usecols, **read_options)


def read_parquet_rows(path: Path, rows: np.ndarray, columns: list[str]) -> pd.DataFrame:
    """Rows ``rows`` (sorted) of a Parquet file, read batch by batch."""
    import pyarrow.parquet as pq

    parts, start = [], 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=CHUNK_ROWS, columns=columns):
        lo, hi = np.searchsorted(rows, [start, start + batch.num_rows])
        if hi > lo:
            parts.append(batch.take(rows[lo:hi] - start).to_pandas())
        start += batch.num_rows
    return pd.concat(parts, ignore_index=True)


def iter_frames(path: Path, columns: list[str], chunk_rows: int, read_options: dict) -> Iterator[pd.DataFrame]:
    """The file's ``columns`` in chunks of ``chunk_rows`` rows (CSV chunks or Parquet batches)."""
    from audits.data import _LineLimitedReader

    if is_parquet(path):
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(batch_size=chunk_rows, columns=columns):
            yield batch.to_pandas()
        return
    with _open(path) as raw, io.BufferedReader(_LineLimitedReader(raw, MAX_LINE_BYTES, str(path))) as fh:
        yield from pd.read_csv(fh, usecols=columns, chunksize=chunk_rows, **read_options)


@dataclass
class PopulationStats:
    """Sufficient statistics of the shared forward pass over every row of a streamed file.

    ``confusion`` (K, K), ``bin_count``/``bin_confidence``/``bin_correct`` (performance bins),
    ``confidence_sum``; ``atoms``: one row per observed (sensitive values, y, pred, bin) with
    ``n``, ``conf_sum``, ``conf_sq`` and per class ``p{k}_sum``/``p{k}_sq``.
    """

    class_names: list[str]
    sensitive: list[str]
    n_bins: int  # the group metrics' calibration bins (atoms' ``bin``)
    perf_bins: int = 10
    n: int = 0
    nonfinite: int = 0
    confusion: np.ndarray = field(default=None)  # type: ignore[assignment]
    bin_count: np.ndarray = field(default=None)  # type: ignore[assignment]
    bin_confidence: np.ndarray = field(default=None)  # type: ignore[assignment]
    bin_correct: np.ndarray = field(default=None)  # type: ignore[assignment]
    confidence_sum: float = 0.0
    atoms: pd.DataFrame | None = None
    _pending: list = field(default_factory=list)

    def __post_init__(self) -> None:
        k = len(self.class_names)
        self.confusion = np.zeros((k, k), dtype=np.int64)
        self.bin_count = np.zeros(self.perf_bins, dtype=np.int64)
        self.bin_confidence = np.zeros(self.perf_bins)
        self.bin_correct = np.zeros(self.perf_bins)
        self.label_count = np.zeros(k, dtype=np.int64)

    @property
    def keys(self) -> list[str]:
        return [*dict.fromkeys(self.sensitive), "y", "pred", "bin"]

    def add(self, proba: np.ndarray, y: np.ndarray, attributes: pd.DataFrame) -> None:
        """Add one scored chunk (rows with non-finite outputs are counted and left out, as ``evaluate_performance`` does)."""
        from audits.fairness._bootstrap import confidence_bins

        self.n += len(y)
        self.label_count += np.bincount(y, minlength=len(self.class_names))
        finite = np.isfinite(proba).all(axis=1)
        if not finite.all():
            self.nonfinite += int((~finite).sum())
            proba, y, attributes = proba[finite], y[finite], attributes[finite]
        k = len(self.class_names)
        pred = proba.argmax(axis=1)
        confidence = proba.max(axis=1)
        self.confusion += np.bincount(y * k + pred, minlength=k * k).reshape(k, k)
        b = confidence_bins(confidence, self.perf_bins)
        self.bin_count += np.bincount(b, minlength=self.perf_bins)
        self.bin_confidence += np.bincount(b, weights=confidence, minlength=self.perf_bins)
        self.bin_correct += np.bincount(b, weights=(pred == y).astype(float), minlength=self.perf_bins)
        self.confidence_sum += float(confidence.sum())
        conf = confidence.astype(np.float64)
        table = {c: attributes[c].astype(str).to_numpy() for c in dict.fromkeys(self.sensitive)}
        table.update(y=y, pred=pred, bin=confidence_bins(conf, self.n_bins), n=np.ones(len(y), dtype=np.int64), conf_sum=conf, conf_sq=conf * conf)
        for j in range(k):
            p = proba[:, j].astype(np.float64)
            table[f"p{j}_sum"], table[f"p{j}_sq"] = p, p * p
        self._pending.append(pd.DataFrame(table).groupby(self.keys, sort=False, observed=True).sum().reset_index())
        if len(self._pending) >= 16:
            self._collapse()

    def _collapse(self) -> None:
        parts = ([self.atoms] if self.atoms is not None else []) + self._pending
        self._pending = []
        if parts:
            self.atoms = pd.concat(parts, ignore_index=True).groupby(self.keys, sort=True, observed=True).sum().reset_index()

    def finish(self) -> PopulationStats:
        self._collapse()
        return self

    def class_counts(self) -> np.ndarray:
        return self.label_count

    def group_sizes(self) -> dict[str, dict[str, int]]:
        assert self.atoms is not None
        return {a: {str(g): int(v) for g, v in self.atoms.groupby(a)["n"].sum().sort_index().items()} for a in dict.fromkeys(self.sensitive)}


def performance_from_stats(stats: PopulationStats):
    """The performance result of the whole file, from its counts (the figures ``evaluate_performance`` gives on the rows)."""
    from dataclasses import replace

    from audits.performance import per_class_table
    from audits.results.performance import PerformanceResult

    confusion = stats.confusion
    per_class = per_class_table(confusion, stats.class_names)
    recall = per_class["recall"].to_numpy()
    tp = np.diag(confusion).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.where(stats.bin_count > 0, stats.bin_confidence / stats.bin_count, np.nan)
        mean_acc = np.where(stats.bin_count > 0, stats.bin_correct / stats.bin_count, np.nan)
    scored = int(confusion.sum())
    edges = np.linspace(0.0, 1.0, stats.perf_bins + 1)
    reliability = pd.DataFrame({"bin_low": edges[:-1], "bin_high": edges[1:], "count": stats.bin_count, "confidence": mean_conf, "accuracy": mean_acc})
    result = PerformanceResult(
        n=scored,
        accuracy=float(tp.sum() / scored) if scored else float("nan"),
        balanced_accuracy=float(np.nanmean(recall)) if np.isfinite(recall).any() else float("nan"),
        per_class=per_class,
        confusion=confusion,
        ece=float(np.nansum(stats.bin_count * np.abs(mean_acc - mean_conf)) / max(scored, 1)),
        reliability=reliability,
        mean_confidence=float(stats.confidence_sum / scored) if scored else float("nan"),
    )
    if stats.nonfinite:
        nan = float("nan")
        return replace(result, n=int(stats.n), accuracy=nan, balanced_accuracy=nan, ece=nan, mean_confidence=nan, nonfinite_rows=int(stats.nonfinite))
    return result


def stream_population(model, card, source: PopulationSource, spec, progress=None) -> PopulationStats:
    """One pass over the whole file: validate, encode and score each chunk, keep the counts."""
    from audits.data import tabular_chunk

    n_bins = 10
    for p in spec.probe_specs("tabular"):
        if p.name == "group_metrics":
            n_bins = int(p.params.get("calibration_bins", 10))
    sensitive = list(card.data.sensitive) if card.data else []
    stats = PopulationStats(class_names=list(card.class_names), sensitive=sensitive, n_bins=n_bins)
    path = Path(source.path)
    from audits.data import CSV_READ_OPTIONS

    done = 0
    for frame in iter_frames(path, list(source.columns), source.chunk_rows, CSV_READ_OPTIONS):
        x, y, attributes = tabular_chunk(card, frame, path.name, first_row=done)
        stats.add(model.predict_proba(x), y, attributes)
        done += len(y)
        if progress is not None:
            progress(done / max(source.n_rows, 1), f"streamed {done:,} of {source.n_rows:,} rows")
    if done != source.n_rows:
        raise DataError(
            f"{path.name} changed while it was audited: {source.n_rows:,} rows counted, {done:,} read.", fix="Audit a file that is not being written to."
        )
    return stats.finish()


def _cells(stats: PopulationStats, positive_class: int | None):
    """Per atom: its cell, label code, flag, correct, bin and the moments of its confidence and score."""
    atoms = stats.atoms
    assert atoms is not None
    y, pred = atoms["y"].to_numpy(), atoms["pred"].to_numpy()
    correct = (pred == y).astype(np.int64)
    if positive_class is not None:
        label, flag, n_labels = (y == positive_class).astype(np.int64), (pred == positive_class).astype(np.int64), 2
        s_sum, s_sq = atoms[f"p{positive_class}_sum"].to_numpy(), atoms[f"p{positive_class}_sq"].to_numpy()
    else:
        label, flag, n_labels = y.astype(np.int64), correct, len(stats.class_names)
        s_sum, s_sq = atoms["conf_sum"].to_numpy(), atoms["conf_sq"].to_numpy()
    return label, flag, n_labels, correct, atoms["bin"].to_numpy().astype(np.int64), atoms["conf_sum"].to_numpy(), atoms["conf_sq"].to_numpy(), s_sum, s_sq


def bootstrap_from_counts(stats: PopulationStats, cell: np.ndarray, n_cells: int, positive_class: int | None, n_boot: int, rng: np.random.Generator):
    """``GroupStats`` of the whole file (replicate 0) and ``n_boot`` resamples drawn from the atoms' counts.

    A resample of N rows with replacement gives atom counts multinomial(N, n_a / N) (exactly the row
    bootstrap's law for every count); the confidence and score sums add a normal term with each atom's
    own within-atom variance.
    """
    from scipy import sparse

    from audits.fairness._bootstrap import GroupStats

    label, flag, n_labels, correct, bins, c_sum, c_sq, s_sum, s_sq = _cells(stats, positive_class)
    n = stats.atoms["n"].to_numpy().astype(np.float64)  # type: ignore[index]
    total = int(n.sum())
    c, lab, b = n_cells, n_labels, stats.n_bins
    k_out, k_cal, k_conf = c * lab * 2, c * b * 2, c * b
    a = len(n)
    count_cols = np.stack([(cell * lab + label) * 2 + flag, k_out + (cell * b + bins) * 2 + correct], axis=1)
    counts_map = sparse.csr_matrix((np.ones(2 * a), (np.repeat(np.arange(a), 2), count_cols.ravel())), shape=(a, k_out + k_cal))
    conf_map = sparse.csr_matrix((np.ones(a), (np.arange(a), cell * b + bins)), shape=(a, k_conf))
    score_map = sparse.csr_matrix((np.ones(a), (np.arange(a), cell)), shape=(a, c))
    with np.errstate(invalid="ignore", divide="ignore"):
        c_mean, s_mean = c_sum / n, s_sum / n
        c_sd = np.sqrt(np.maximum(c_sq / n - c_mean**2, 0.0))
        s_sd = np.sqrt(np.maximum(s_sq / n - s_mean**2, 0.0))
    m = np.vstack([n[None, :], rng.multinomial(total, n / total, size=n_boot).astype(np.float64)]) if n_boot else n[None, :]
    conf = m * c_mean + np.sqrt(m) * c_sd * np.vstack([np.zeros((1, a)), rng.standard_normal((n_boot, a))])
    score = m * s_mean + np.sqrt(m) * s_sd * np.vstack([np.zeros((1, a)), rng.standard_normal((n_boot, a))])
    conf[0], score[0] = c_sum, s_sum  # the original sample: the exact sums
    r = len(m)
    flat = np.asarray((sparse.csr_matrix(m) @ counts_map).todense())
    outcome, calibration = flat[:, :k_out], flat[:, k_out:]
    return GroupStats(
        outcome=outcome.reshape(r, c, lab, 2),
        calibration=calibration.reshape(r, c, b, 2),
        confidence_sum=np.asarray(conf @ conf_map).reshape(r, c, b),
        score_sum=np.asarray(score @ score_map).reshape(r, c),
    )


def chance_gap_from_counts(
    stats: PopulationStats, cell: np.ndarray, group_of_cell: np.ndarray, eligible: np.ndarray, positive_class: int | None, rng: np.random.Generator, n_perm: int
) -> dict:
    """``group_metrics.chance_gap`` from counts: shuffling group labels over rows deals the hits to the groups as a
    multivariate hypergeometric draw of the total hits over the group sizes."""
    from audits.fairness.group_metrics import chance_gap_summary

    atoms = stats.atoms
    assert atoms is not None
    y, pred, n = atoms["y"].to_numpy(), atoms["pred"].to_numpy(), atoms["n"].to_numpy().astype(np.int64)
    hit = (pred == positive_class) if positive_class is not None else (pred == y)
    group = group_of_cell[cell]
    keep = eligible[group]
    codes = np.unique(group[keep], return_inverse=True)[1].reshape(-1)
    k = int(codes.max()) + 1
    sizes = np.bincount(codes, weights=n[keep], minlength=k).astype(np.int64)
    hits = np.bincount(codes, weights=(n * hit)[keep], minlength=k)
    rates = hits / sizes
    observed = float(rates.max() - rates.min())
    shuffled_hits = rng.multivariate_hypergeometric(sizes, int(hits.sum()), size=n_perm)
    shuffled_rates = shuffled_hits / sizes
    shuffled = shuffled_rates.max(axis=1) - shuffled_rates.min(axis=1)
    return chance_gap_summary(k, positive_class, observed, shuffled)
