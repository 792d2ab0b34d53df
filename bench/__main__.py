"""``python -m bench``: run the benchmark cases side by side, print the table, write JSON.

Examples
--------
python -m bench                                # every case, full sizes
python -m bench --cases B1,B3 --out bench.json # some cases
python -m bench --quick                        # tiny sizes (the test suite's smoke run)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from bench import CASES, run_cases
from bench.harness import Config, machine
from bench.table import format_markdown, format_table


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description="Benchmark the audit engine against the libraries' own defaults.")
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated cases (default: all of {','.join(CASES)})")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke run")
    parser.add_argument("--out", default="bench-results.json", help="JSON file to write (default: bench-results.json)")
    parser.add_argument("--timeout-per-contender", type=float, default=60.0, metavar="S",
                        help="seconds a contender may take; beyond it a subset is measured and the full cost extrapolated (default 60)")  # fmt: skip
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs for contenders that take under 2 s (default 3)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op and BLAS/OpenMP threads for every contender (default: the libraries' own choice)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--markdown", default=None, metavar="FILE", help="also write the tables as Markdown (for BENCHMARKS.md)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    names = [c.strip().upper() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in names if c not in CASES]
    if unknown:
        print(f"unknown case(s) {unknown}; choose from {', '.join(CASES)}", file=sys.stderr)
        return 2
    if args.threads:
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(args.threads)
        threadpool_limits(limits=args.threads)  # numpy's BLAS too (shap, lime, our solves alike)
    config = Config(quick=args.quick, budget_s=args.timeout_per_contender, repeats=args.repeats, seed=args.seed)
    before = machine()
    started = time.perf_counter()
    results = run_cases(names, config, progress=lambda msg: print(msg, file=sys.stderr, flush=True))
    after = machine()
    report = {
        "schema": 1,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {**before, "load_average_after": after["load_average"]},
        "config": {"cases": names, "quick": config.quick, "timeout_per_contender_s": config.budget_s, "repeats": config.repeats, "seed": config.seed},
        "wall_time_s": time.perf_counter() - started,
        "cases": [{"case": r.case, "title": r.title, "notes": r.notes} for r in results],
        "rows": [row.to_json() for r in results for row in r.rows],
        "checks": [c.to_json() for r in results for c in r.checks],
    }
    Path(args.out).write_text(json.dumps(report, indent=2))
    if args.markdown:
        Path(args.markdown).write_text(format_markdown(report))
    print(format_table(report))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
