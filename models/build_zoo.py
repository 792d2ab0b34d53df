"""Rebuild the demo model zoo: ``python -m models.build_zoo [--only NAME] [--out DIR] [--seed N] [--training-samples | --ensembles]``.

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


def write_ensembles(names: list[str], out: Path, seed: int = 0) -> dict[str, list[float]]:
    """Write only the deep-ensemble members and card of each recipe that has one (``write_ensemble``), without retraining the model."""
    recipes = {name: importlib.import_module(RECIPES[name]) for name in names}
    return {name: recipe.write_ensemble(out / name, seed=seed) for name, recipe in recipes.items() if hasattr(recipe, "write_ensemble")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.build_zoo", description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(RECIPES), action="append", help="build only this model (repeatable)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"zoo folder (default: {DEFAULT_OUT})")
    parser.add_argument("--seed", type=int, default=0, help="training seed (default 0, the committed zoo)")
    parser.add_argument("--training-samples", action="store_true", help="write only the training samples (data.train_path), without retraining")
    parser.add_argument(
        "--ensembles",
        action="store_true",
        help="write only the extra ensemble members and ensemble cards (digits-cnn's ensemble.yaml), leaving card.yaml and weights as they are",
    )
    args = parser.parse_args(argv)
    names = args.only or list(RECIPES)
    if args.ensembles:
        results = write_ensembles(names, args.out, seed=args.seed)
    elif args.training_samples:
        results = write_training_samples(names, args.out, seed=args.seed)
    else:
        results = build(names, args.out, seed=args.seed)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
