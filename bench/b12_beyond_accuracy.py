"""B12: what the issue-17 probes (uncertainty, OOD detection, membership inference, TCAV, feature visualization)
add to each zoo model's default audit.

One default audit per zoo model (``run_audit``, default spec). Probes run one after another on the
shared forward pass, and each result records its own wall time, so the audit without the new probes
costs the audit's wall time less theirs: the ratio full / (full - new) comes from that one run, under
the same machine load for both terms. ``ISSUE_PROBES`` lists the probes counted as new. A second check
per model: every issue-17 probe that applies to the model (``Probe.check`` is None) ran in its default audit.
``B12_MODELS`` (comma-separated) restricts the models, to split the case over processes.
"""

from __future__ import annotations

import os
import time

from audits.engine import run_audit
from audits.probes import make_probe, registered_probes
from audits.spec import AuditSpec
from bench.harness import CaseResult, Check, Config, Row, zoo

CASE = "B12"
TITLE = "Beyond accuracy (issue 17): each zoo model's default audit, and the share of it the new probes take"
MODELS = ("digits-cnn", "adult-mlp", "digits-vit", "toxicity-minilm")
# The probes the issue adds (those registered in this tree are counted).
ISSUE_PROBES = ("uncertainty", "ood_detection", "membership_inference", "tcav", "feature_visualization")
MAX_RATIO = 1.5


def run(config: Config) -> CaseResult:
    registered = registered_probes()
    new = [n for n in ISSUE_PROBES if n in registered]
    chosen = [m.strip() for m in os.environ.get("B12_MODELS", "").split(",") if m.strip()] or list(MODELS[:2] if config.quick else MODELS)
    rows, checks, notes = [], [], [f"new probes counted: {', '.join(new)}"]
    for name in chosen:
        model, data = zoo(name)
        start = time.perf_counter()
        report = run_audit(model, data, AuditSpec(seed=config.seed))
        wall = time.perf_counter() - start
        results = [*report.explanations, *report.robustness, *report.fairness, *report.concepts]
        added = [r for r in results if r.method in new]
        applicable = [n for n in new if make_probe(n).check(model, data) is None]
        missing = sorted(set(applicable) - {r.method for r in added})
        added_s = sum(r.cost.wall_time_s for r in added)
        added_calls = sum(r.cost.model_calls for r in added)
        added_rows = sum(r.cost.rows_evaluated for r in added)
        calls, evaluated = report.provenance.model_calls, report.provenance.rows_evaluated
        rows.append(
            Row(
                case=CASE,
                contender="default less new probes",
                wall_time_s=wall - added_s,
                model_calls=calls - added_calls,
                rows_evaluated=evaluated - added_rows,
                peak_memory_mb=float("nan"),
                group=name,
            )
        )
        rows.append(Row(case=CASE, contender="default", wall_time_s=wall, model_calls=calls, rows_evaluated=evaluated, peak_memory_mb=float("nan"), group=name))
        ratio = wall / (wall - added_s)
        rows[-2].ratio_to_ours, rows[-1].ratio_to_ours = 1.0, ratio
        notes.append(f"{name}: {wall:.1f} s, new probes " + ", ".join(f"{r.method} {r.cost.wall_time_s:.1f} s" for r in added) + f"; ratio {ratio:.2f}")
        if report.failures:
            notes.append(f"{name}: probes failed: {', '.join(f.name for f in report.failures)}")
        checks.append(
            Check(case=CASE, target=f"{name}: default audit within {MAX_RATIO}x of the audit without the new probes", value=ratio, met=ratio <= MAX_RATIO)
        )
        notes.append(
            f"{name}: issue-17 probes that apply: {', '.join(applicable)}" + (f"; NOT run by default: {', '.join(missing)}" if missing else "; all ran")
        )
        checks.append(Check(case=CASE, target=f"{name}: every issue-17 probe that applies runs by default", value=float(len(missing)), met=not missing))
    return CaseResult(case=CASE, title=TITLE, rows=rows, checks=checks, notes=notes)
