"""B15: adult-mlp's default audit on evaluation data larger than memory: 1M and 10M rows of jittered Adult.

The files are generated once by ``bench.bigdata`` (chunk by chunk) into ``$B15_DIR`` (default
/tmp/audits-b15) and kept for later runs. Each audit runs in its own subprocess
(``python -m bench.bigdata audit``), which reports its wall time and its own peak resident memory
(``VmHWM``: the whole process, imports included, not growth over a start). Above
``large_data.STREAM_ABOVE_ROWS`` rows the file is streamed in chunks for the performance and group
metrics and the other probes run on a seeded subset (``large_data.SUBSET_ROWS``); at 1M rows the
in-memory audit (the threshold raised past the file) runs too, as the baseline.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from bench.bigdata import generate
from bench.harness import CaseResult, Check, Config, Row

CASE = "B15"
TITLE = "Large data: adult-mlp's default audit on 1M and 10M rows of jittered Adult, streamed in chunks (wall time, peak memory)"
MAX_WALL_S = 600.0
MAX_PEAK_MB = 4096.0
MAX_GROWTH = 1.25  # peak memory at 10x the rows against the smaller file


def _audit(path: Path, extra: list[str]) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "bench.bigdata", "audit", "--data", str(path), "--threads", "1", *extra],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(config: Config) -> CaseResult:
    folder = Path(os.environ.get("B15_DIR", "/tmp/audits-b15"))
    folder.mkdir(parents=True, exist_ok=True)
    if config.quick:  # the streamed path at toy sizes: 3k and 30k rows, streamed above 1k rows
        sizes, small = (3_000, 30_000), ["--stream-above", "1000", "--subset-rows", "1000", "--chunk-rows", "2000"]
    else:
        sizes, small = (1_000_000, 10_000_000), []
    rows, checks, notes = [], [], []
    streamed: dict[int, dict] = {}
    for n in sizes:
        path = folder / f"adult-{n}.csv"
        if not path.exists():
            generate(path, n, seed=config.seed)
        runs = [("ours", small)]
        if n == sizes[0]:
            runs.append(("in memory", ["--stream-above", str(n)]))
        for contender, extra in runs:
            result = _audit(path, extra)
            if contender == "ours":
                streamed[n] = result
            rows.append(
                Row(
                    case=CASE, contender=contender, group=f"{n:,} rows", wall_time_s=result["wall_s"], model_calls=float("nan"),
                    rows_evaluated=float(result["rows"]), peak_memory_mb=result["peak_rss_mb"], unit="rows", total_units=n, measured_units=n,
                    quality={"accuracy": result["accuracy"], "dp_sex": (result["dp_sex"] or [None])[0]},
                    note=f"probes on {result['probe_rows']:,} rows; load {result['load_s']:.1f} s, audit {result['audit_s']:.1f} s"
                    + (f"; failed: {', '.join(result['failures'])}" if result["failures"] else ""),
                )  # fmt: skip
            )
            notes.append(f"{n:,} rows, {contender}: {json.dumps(result)}")
    lo, hi = streamed[sizes[0]], streamed[sizes[1]]
    for row in rows:
        base = next(r for r in rows if r.group == row.group and r.contender == "ours")
        row.ratio_to_ours = row.wall_time_s / base.wall_time_s
    growth = hi["peak_rss_mb"] / lo["peak_rss_mb"]
    label = f"{sizes[1]:,} rows"
    checks += [
        Check(case=CASE, target=f"{label}: default audit within {MAX_WALL_S:.0f} s", value=hi["wall_s"], met=hi["wall_s"] <= MAX_WALL_S),
        Check(case=CASE, target=f"{label}: peak memory within {MAX_PEAK_MB:.0f} MB", value=hi["peak_rss_mb"], met=hi["peak_rss_mb"] <= MAX_PEAK_MB),
        Check(case=CASE, target=f"memory flat: peak at {label} within {MAX_GROWTH}x of {sizes[0]:,} rows", value=growth, met=growth <= MAX_GROWTH),
        Check(case=CASE, target="no probe failed", value=float(len(lo["failures"]) + len(hi["failures"])), met=not (lo["failures"] or hi["failures"])),
    ]
    return CaseResult(case=CASE, title=TITLE, rows=rows, checks=checks, notes=notes)
