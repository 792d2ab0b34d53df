"""B11: what the default autoattack probe adds to the robustness part of the default digits-cnn audit.

One audit runs every default image probe of the robustness category (FGSM, PGD, corruptions,
calibration, trigger scan, explanation trust) and the default ``autoattack`` (quick preset); the
ratio is taken within that one run from each probe's recorded ``cost.wall_time_s``, so that the
load of a shared machine moves both sides alike. Two ratios: over every robustness-section probe,
and over the attacks, corruptions and calibration only (the stricter reading).
"""

from __future__ import annotations

from audits.engine import run_audit
from audits.probes import default_probe_names, registered_probes
from audits.spec import parse_spec
from bench.harness import CaseResult, Check, Config, Row, zoo

CASE = "B11"
TITLE = "Default autoattack (quick) in the robustness part of the default digits-cnn audit"
CORE = ("fgsm", "pgd", "corruptions", "calibration")


def run(config: Config) -> CaseResult:
    model, data = zoo("digits-cnn")
    names = [n for n in default_probe_names("image") if registered_probes()[n].category == "robustness" and n != "autoattack"]
    params = {"max_rows": 32} if config.quick else {}
    spec = parse_spec({"seed": config.seed, "max_rows": 128 if config.quick else None,
                       "probes": [*({"name": n} for n in names), {"name": "autoattack", "params": params}]})  # fmt: skip
    report = run_audit(model, data, spec)
    cost = {r.method: r.cost for r in report.robustness}
    rows = [
        Row(
            CASE,
            "ours" if name == "autoattack" else name,
            c.wall_time_s,
            c.model_calls,
            c.rows_evaluated,
            0.0,
            measured_units=len(data),
            total_units=len(data),
            unit="images",
            measured_time_s=c.wall_time_s,
            group="default audit",
            note=("autoattack (quick), the probe added; " if name == "autoattack" else "") + "the probe's recorded cost in one audit",
        )  # fmt: skip
        for name, c in cost.items()
    ]
    added = cost["autoattack"].wall_time_s
    others = sum(c.wall_time_s for n, c in cost.items() if n != "autoattack")
    core = sum(c.wall_time_s for n, c in cost.items() if n in CORE)
    ratio_all, ratio_core = (others + added) / others, (core + added) / core
    checks = [
        Check(CASE, "robustness-section probes with autoattack / without, within one run (<= 1.5)", ratio_all, ratio_all <= 1.5),
        Check(CASE, "attacks + corruptions + calibration with autoattack / without, within one run (<= 1.5)", ratio_core, ratio_core <= 1.5),
    ]
    notes = [f"probes: {', '.join(cost)}; ratios {ratio_all:.2f} (all) and {ratio_core:.2f} (attacks, corruptions, calibration)."]
    return CaseResult(CASE, TITLE, rows, checks, notes)
