"""Cost of explanation trust: the default audit of a zoo model with and without ``explanation_trust``, in one process.

``python -m bench.trust_cost digits-cnn --repeats 2`` runs the default audit without (``exclude``)
and with the trust probe, interleaved, and prints the best wall and CPU times of each and their
ratios, and the ratio within each full run (its wall time over the same minus the trust probe's
own recorded time), which is robust to load that changes between runs on a shared machine.
"""

from __future__ import annotations

import argparse
import time

from audits.data import load_data
from audits.engine import run_audit
from audits.policy import apply_policy
from audits.spec import parse_spec
from models.loader import load_model
from models.registry import resolve_card


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    card = resolve_card(args.model)
    model, data = load_model(card, device="cpu"), load_data(card)
    wall: dict[str, list[float]] = {"without": [], "with": []}
    cpu: dict[str, list[float]] = {"without": [], "with": []}
    inner: list[float] = []
    rows: dict[str, int] = {}
    for _ in range(args.repeats):
        for key, spec in (("without", {"exclude": ["explanation_trust"], "seed": args.seed}), ("with", {"seed": args.seed})):
            start, start_cpu = time.perf_counter(), time.process_time()
            report = apply_policy(run_audit(model, data, parse_spec(spec)))
            wall[key].append(time.perf_counter() - start)
            cpu[key].append(time.process_time() - start_cpu)
            rows[key] = report.provenance.rows_evaluated
        own = sum(r.cost.wall_time_s for r in report.robustness if r.method == "explanation_trust")
        inner.append(wall["with"][-1] / (wall["with"][-1] - own))
    lo, hi = min(wall["without"]), min(wall["with"])
    clo, chi = min(cpu["without"]), min(cpu["with"])
    print(
        f"{args.model}: wall without {lo:.1f} s, with {hi:.1f} s (best of {args.repeats}), ratio {hi / lo:.2f}; "
        f"CPU without {clo:.1f} s, with {chi:.1f} s, ratio {chi / clo:.2f}; within-run ratios {', '.join(f'{r:.2f}' for r in inner)}; "
        f"model rows {rows['without']:,} -> {rows['with']:,}"
    )


if __name__ == "__main__":
    main()
