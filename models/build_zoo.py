"""Rebuild the demo model zoo: ``python -m models.build_zoo [--only NAME] [--out DIR] [--seed N] [--training-samples]``.

Each model is trained by its recipe (``models/recipes/``) with a fixed seed, deterministic torch
algorithms and a fixed thread count, so a rebuild reproduces the committed files byte for byte.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path

from models.recipes import RECIPES

DEFAULT_OUT = Path(__file__).resolve().parent / "zoo"


def build(names: list[str], out: Path, seed: int = 0) -> dict[str, dict]:
    results: dict[str, dict] = {}
    for name in names:
        recipe = importlib.import_module(RECIPES[name])
        started = time.perf_counter()
        metrics = recipe.build(out / name, seed=seed)
        metrics["build_seconds"] = round(time.perf_counter() - started, 1)
        results[name] = metrics
        print(f"{name}: built in {out / name} ({metrics['build_seconds']} s)", file=sys.stderr, flush=True)
    return results


def write_training_samples(names: list[str], out: Path, seed: int = 0) -> dict[str, dict]:
    """Write only each model's training sample (``data.train_path``) from its recipe's data code, without retraining."""
    return {name: importlib.import_module(RECIPES[name]).write_training_sample(out / name, seed=seed) for name in names}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.build_zoo", description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(RECIPES), action="append", help="build only this model (repeatable)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"zoo folder (default: {DEFAULT_OUT})")
    parser.add_argument("--seed", type=int, default=0, help="training seed (default 0, the committed zoo)")
    parser.add_argument("--training-samples", action="store_true", help="write only the training samples (data.train_path), without retraining")
    args = parser.parse_args(argv)
    names = args.only or list(RECIPES)
    results = write_training_samples(names, args.out, seed=args.seed) if args.training_samples else build(names, args.out, seed=args.seed)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
