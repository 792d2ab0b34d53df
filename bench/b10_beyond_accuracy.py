"""B10: what the issue-17 probes (uncertainty, OOD detection, membership inference) add to each zoo model's default audit.

For each zoo model, ``run_audit`` with the default spec and with the default spec less the issue's
probes, in the same process on the same loaded model, alternating (less, full) ``repeats`` times;
the best time of each side is kept. The ratio full / less is the audit's slowdown, which the issue
bounds at 1.5. ``ISSUE_PROBES`` lists the probes counted as new: the concept probes (TCAV, feature
visualisation) belong in it once they are merged, so the ratio covers the whole issue.
"""

from __future__ import annotations

import time

from audits.engine import run_audit
from audits.probes import default_probe_names, registered_probes
from audits.spec import AuditSpec, ProbeSpec
from bench.harness import CaseResult, Check, Config, Row, zoo

CASE = "B10"
TITLE = "Beyond accuracy (issue 17): each zoo model's default audit with and without the new probes"
MODELS = ("digits-cnn", "adult-mlp", "digits-vit", "toxicity-minilm")
# The probes the issue adds (those registered in this tree are counted).
ISSUE_PROBES = ("uncertainty", "ood_detection", "membership_inference", "tcav", "feature_visualization")
MAX_RATIO = 1.5


def _timed(model, data, names: list[str]) -> tuple[float, int, int, list[str]]:
    start = time.perf_counter()
    report = run_audit(model, data, AuditSpec(probes=[ProbeSpec(name=n) for n in names]))
    wall = time.perf_counter() - start
    return wall, report.provenance.model_calls, report.provenance.rows_evaluated, [f.name for f in report.failures]


def run(config: Config) -> CaseResult:
    registered = registered_probes()
    new = [n for n in ISSUE_PROBES if n in registered]
    rows, checks, notes = [], [], [f"new probes counted: {', '.join(new)}"]
    for name in MODELS[:2] if config.quick else MODELS:
        model, data = zoo(name)
        full = default_probe_names(data.modality)
        less = [n for n in full if n not in new]
        best: dict[str, tuple[float, int, int, list[str]]] = {}
        for _ in range(1 if config.quick else max(1, min(config.repeats, 2))):
            for side, names in (("default less new probes", less), ("default", full)):
                timed = _timed(model, data, names)
                if side not in best or timed[0] < best[side][0]:
                    best[side] = timed
        for side, (wall, calls, evaluated, failures) in best.items():
            rows.append(Row(case=CASE, contender=side, wall_time_s=wall, model_calls=calls, rows_evaluated=evaluated, peak_memory_mb=float("nan"), group=name))
            if failures:
                notes.append(f"{name} {side}: probes failed: {', '.join(failures)}")
        ratio = best["default"][0] / best["default less new probes"][0]
        added = [n for n in full if n in new]
        notes.append(f"{name}: ratio {ratio:.2f} ({', '.join(added)} added to {len(less)} probes)")
        checks.append(
            Check(case=CASE, target=f"{name}: default audit within {MAX_RATIO}x of the audit without the new probes", value=ratio, met=ratio <= MAX_RATIO)
        )
    for r in rows:  # ratio of each side to the audit without the new probes, per model
        base = next(b.wall_time_s for b in rows if b.group == r.group and b.contender == "default less new probes")
        r.ratio_to_ours = r.wall_time_s / base if base > 0 else None
    return CaseResult(case=CASE, title=TITLE, rows=rows, checks=checks, notes=notes)
