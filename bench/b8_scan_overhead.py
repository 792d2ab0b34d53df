"""B8: what a scan adds to the audits it runs: store writes, hashing, regression diffs, JUnit and Markdown.

The zoo plan of ``examples/scan.yaml`` (quick: two models with tiny budgets) is scanned twice
into a fresh SQLite store; the second scan is the steady state (each model has a previous
run, so its regression diff loads and compares the stored report). The audits' own time
is the sum of each model's audit (load, run, policy); everything else in the scan's wall
time, plus writing JUnit and the summary, is overhead. The issue's target: under 5%.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from audits.scan.junit import write_junit
from audits.scan.plan import load_plan, parse_plan
from audits.scan.runner import run_plan
from audits.scan.summary import write_summary
from bench.harness import CaseResult, Check, Config, PeakRSS, Row

CASE = "B8"
TITLE = "Scan overhead: store, hashing, regression diff and JUnit against the audits' own time (zoo plan, SQLite)"
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "scan.yaml"
QUICK_SPEC = {"samples": 1, "max_rows": 64, "exclude": ["kernel_shap_image", "lime_image", "occlusion", "corruptions", "lime", "kernel_shap"]}


def _plan(config: Config):
    if config.quick:
        return parse_plan({"name": "bench-quick", "spec": QUICK_SPEC, "models": ["adult-mlp", "digits-cnn"]}, source="B8 quick plan")
    return load_plan(EXAMPLE)


def run(config: Config) -> CaseResult:
    loaded = _plan(config)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-scan-") as folder:
        url = f"sqlite:///{Path(folder) / 'store.db'}"
        measured = []
        for attempt in range(2):
            with PeakRSS() as rss:
                started = time.perf_counter()
                result = run_plan(loaded, store_url=url, user="bench")
                write_junit(result, Path(folder) / f"junit{attempt}.xml")
                write_summary(result, Path(folder) / f"summary{attempt}.md")
                wall = time.perf_counter() - started
            audits = sum(m.outcome.audit_seconds for m in result.models)
            measured.append((wall, audits, rss.growth_mb, result))
    wall, audits, growth, result = measured[1]
    overhead = wall - audits
    calls = sum(m.outcome.report.provenance.model_calls for m in result.models if m.outcome.report is not None)
    evaluated = sum(m.outcome.report.provenance.rows_evaluated for m in result.models if m.outcome.report is not None)
    models = len(result.models)
    rows.append(Row(CASE, "audits (their own time)", audits, calls, evaluated, growth, measured_units=models, total_units=models, unit="models", measured_time_s=audits,
                    note=f"{', '.join(m.model_name for m in result.models)}"))  # fmt: skip
    rows.append(Row(CASE, "scan overhead: store, hashing, diff, JUnit, summary", overhead, 0, 0, 0.0, quality={"overhead_fraction": overhead / audits},
                    measured_units=models, total_units=models, unit="models", measured_time_s=overhead,
                    note=f"second scan (first: {measured[0][0] - measured[0][1]:.2f} s overhead on {measured[0][1]:.1f} s of audits)"))  # fmt: skip
    checks = [Check(CASE, "scan overhead < 5% of the audits' own time", overhead / audits, overhead / audits < 0.05)]
    notes = [
        f"store: SQLite (WAL) in a temporary folder; {models} models; wall {wall:.2f} s, audits {audits:.2f} s, overhead {overhead:.3f} s ({100 * overhead / audits:.2f}%)"
    ]
    return CaseResult(CASE, TITLE, rows, checks, notes)
