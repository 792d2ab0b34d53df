"""Cost of the concept probes (TCAV, feature visualization): the default audit of a zoo model with and without them, in one process.

``python -m bench.concepts_cost digits-cnn --repeats 2`` runs the default audit without
(``exclude``) and with the concept probes, interleaved, and prints the best of each, their
ratio, and the ratio within each full run (its wall time over the same minus the new probes'
own recorded time), which is robust to load that changes between runs on a shared machine.
"""

from __future__ import annotations

import argparse
import time

from audits.data import load_data
from audits.engine import run_audit
from audits.policy import apply_policy
from audits.probes import default_probe_names
from audits.spec import parse_spec
from models.loader import load_model
from models.registry import resolve_card

NEW = ("tcav", "feature_visualization")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    card = resolve_card(args.model)
    model, data = load_model(card, device="cpu"), load_data(card)
    new = [p for p in NEW if p in default_probe_names(data.modality)]
    times: dict[str, list[float]] = {"without": [], "with": []}
    inner: list[float] = []
    for _ in range(args.repeats):
        for key, spec in (("without", {"exclude": new}), ("with", {})):
            start = time.perf_counter()
            report = apply_policy(run_audit(model, data, parse_spec(spec)))
            times[key].append(time.perf_counter() - start)
        own = sum(r.cost.wall_time_s for r in report.concepts if r.method in new)
        inner.append(times["with"][-1] / (times["with"][-1] - own))
    lo, hi = min(times["without"]), min(times["with"])
    own_s = {r.method: round(r.cost.wall_time_s, 2) for r in report.concepts}
    print(
        f"{args.model}: concept probes' own time {own_s}; without {lo:.1f} s, with {hi:.1f} s (best of {args.repeats}), ratio {hi / lo:.2f}; within-run ratios {', '.join(f'{r:.2f}' for r in inner)}"
    )


if __name__ == "__main__":
    main()
