"""Large evaluation data for the streaming benchmark (B15): Adult replicated and jittered to any number of rows.

``python -m bench.bigdata generate --rows 10000000 --out /tmp/adult-10m.csv`` writes the file chunk by
chunk (memory-flat in the row count): rows of adult-mlp's eval.csv.gz drawn with replacement, ages moved
by up to 2 years (age_band recomputed), hours per week by up to 3, capital gains and losses scaled by up
to 5 %; labels, categories and every other column kept. ``.parquet`` output writes one row group per chunk.

``python -m bench.bigdata audit --data FILE`` runs adult-mlp's default audit on FILE in this process and
prints one JSON line: load and audit seconds, peak resident memory (``VmHWM``), rows streamed, the
subset size and the headline figures. B15 runs it in a subprocess per size so each peak is its own.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ZOO_CARD = "adult-mlp"
AGE_BANDS = ((0, "<25"), (25, "25-44"), (45, "45-64"), (65, "65+"))


def _source() -> pd.DataFrame:
    from models.registry import resolve_card

    card = resolve_card(ZOO_CARD)
    return pd.read_csv(card.resolve(card.data.path), skipinitialspace=True)  # type: ignore[union-attr]


def age_band(age: np.ndarray) -> np.ndarray:
    bands = np.array([b for _, b in AGE_BANDS], dtype=object)
    return bands[np.searchsorted([lo for lo, _ in AGE_BANDS], age, side="right") - 1]


def jittered(source: pd.DataFrame, n: int, rng: np.random.Generator) -> pd.DataFrame:
    """``n`` rows of ``source`` drawn with replacement, numeric columns jittered (see the module doc)."""
    out = source.iloc[rng.integers(0, len(source), n)].reset_index(drop=True)
    out["age"] = np.clip(out["age"].to_numpy() + rng.integers(-2, 3, n), 17, 90)
    out["hours-per-week"] = np.clip(out["hours-per-week"].to_numpy() + rng.integers(-3, 4, n), 1, 99)
    for column in ("capital-gain", "capital-loss"):
        out[column] = np.round(out[column].to_numpy() * rng.uniform(0.95, 1.05, n)).astype(np.int64)
    out["age_band"] = age_band(out["age"].to_numpy())
    return out


def generate(path: str | Path, n_rows: int, *, seed: int = 0, chunk_rows: int = 500_000) -> Path:
    """Write ``n_rows`` jittered Adult rows to ``path`` (.csv, .csv.gz or .parquet), ``chunk_rows`` at a time."""
    path = Path(path)
    source = _source()
    rng = np.random.default_rng(seed)
    parquet = path.name.lower().endswith((".parquet", ".pq"))
    tmp = path.with_name(path.name + ".partial")
    writer = None
    try:
        done = 0
        while done < n_rows:
            chunk = jittered(source, min(chunk_rows, n_rows - done), rng)
            if parquet:
                import pyarrow as pa
                import pyarrow.parquet as pq

                table = pa.Table.from_pandas(chunk, preserve_index=False)
                writer = writer or pq.ParquetWriter(tmp, table.schema)
                writer.write_table(table)
            else:
                chunk.to_csv(tmp, mode="a" if done else "w", header=not done, index=False, compression="gzip" if path.name.lower().endswith(".gz") else None)
            done += len(chunk)
    finally:
        if writer is not None:
            writer.close()
    tmp.replace(path)
    return path


def audit(data_path: str, *, stream_above_rows: int | None, subset_rows: int | None, chunk_rows: int | None, seed: int = 0) -> dict:
    """Adult-mlp's default audit on ``data_path`` in this process: timings, peak memory, headline figures."""
    from audits.data import load_data
    from audits.engine import run_audit
    from audits.spec import AuditSpec
    from models.loader import load_model
    from models.registry import resolve_card

    started = time.perf_counter()
    card = resolve_card(ZOO_CARD)
    model = load_model(card, device="cpu")
    data = load_data(card, data_path, stream_above_rows=stream_above_rows, subset_rows=subset_rows, chunk_rows=chunk_rows, seed=seed)
    loaded = time.perf_counter()
    report = run_audit(model, data, AuditSpec(seed=seed))
    ended = time.perf_counter()
    gm = next((r for r in report.fairness if r.method == "group_metrics"), None)
    dp = None if gm is None else gm.criteria.query("grouping == 'sex' and criterion == 'demographic_parity_difference'").iloc[0]
    return {
        "rows": int(report.data_summary.n_rows),
        "probe_rows": int(len(data)),
        "streamed": data.population is not None,
        "load_s": loaded - started,
        "audit_s": ended - loaded,
        "wall_s": ended - started,
        "peak_rss_mb": peak_rss_mb(),
        "accuracy": report.performance.accuracy,
        "dp_sex": None if dp is None else [float(dp["value"]), float(dp["lo"]), float(dp["hi"])],
        "failures": [f.name for f in report.failures],
        "budgets": {k: v for k, v in report.provenance.sample_budgets.items() if k != "probes"},
    }


def peak_rss_mb() -> float:
    """This program's peak resident memory: the kernel's high-water mark of its own address space
    (``VmHWM``). ``getrusage``'s ``ru_maxrss`` is not that: Linux carries it across ``fork`` and
    ``exec``, so a child started by a large process (the bench after its other cases) reports the
    parent's size. ``ru_maxrss`` only where /proc is missing."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bigdata")
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="write jittered Adult rows")
    gen.add_argument("--rows", type=int, required=True)
    gen.add_argument("--out", required=True, help=".csv, .csv.gz or .parquet")
    gen.add_argument("--seed", type=int, default=0)
    run = sub.add_parser("audit", help="adult-mlp's default audit on a file; one JSON line")
    run.add_argument("--data", required=True)
    run.add_argument("--stream-above", type=int, default=None)
    run.add_argument("--subset-rows", type=int, default=None)
    run.add_argument("--chunk-rows", type=int, default=None)
    run.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    if args.command == "generate":
        started = time.perf_counter()
        path = generate(args.out, args.rows, seed=args.seed)
        print(f"wrote {args.rows:,} rows to {path} ({path.stat().st_size / 2**20:.0f} MiB) in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        return 0
    import torch

    torch.set_num_threads(args.threads)
    print(json.dumps(audit(args.data, stream_above_rows=args.stream_above, subset_rows=args.subset_rows, chunk_rows=args.chunk_rows)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
