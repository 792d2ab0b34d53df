"""The benchmark suite: the engine against the libraries' own defaults, case by case.

Run ``python -m bench`` from the repository root. Each case lives in its own module
(``b1_kernel_shap`` ... ``b6_end_to_end``) with a ``run(config) -> CaseResult``; the
harness (``bench.harness``) measures every contender the same way.
"""

from __future__ import annotations

import importlib
import traceback
from collections.abc import Callable

from bench.harness import CaseResult, Check, Config

CASES = {
    "B1": "bench.b1_kernel_shap",
    "B2": "bench.b2_lime_image",
    "B3": "bench.b3_gradients",
    "B4": "bench.b4_attacks",
    "B5": "bench.b5_fairness",
    "B6": "bench.b6_end_to_end",
    "B7": "bench.b7_store",
    "B8": "bench.b8_scan_overhead",
    "B9": "bench.b9_trust",
    "B10": "bench.b10_autoattack",
    "B11": "bench.b11_default_autoattack",
    "B12": "bench.b12_beyond_accuracy",
    "B13": "bench.b13_dashboard",
    "B14": "bench.b14_cli_process",
    "B15": "bench.b15_large_data",
}


def run_cases(names: list[str], config: Config, progress: Callable[[str], None] | None = None) -> list[CaseResult]:
    """Run the named cases in order; a case that fails is reported as a failed check, not raised."""
    results = []
    for name in names:
        if progress is not None:
            progress(f"[bench] {name} ...")
        module = importlib.import_module(CASES[name])
        try:
            result = module.run(config)
        except Exception as exc:  # one broken case must not lose the others' figures
            detail = traceback.format_exc(limit=3)
            result = CaseResult(
                name, getattr(module, "TITLE", name), [], [Check(name, "case ran", None, False)], [f"failed: {type(exc).__name__}: {exc}", detail]
            )
        results.append(result)
    return results
