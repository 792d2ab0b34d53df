"""Compliance scans: plans (YAML), a runner that records every run in the store, JUnit and Markdown for CI, webhook alerts,
a cron scheduler (APScheduler) and a Ray executor for fleets.

>>> loaded = load_plan("examples/scan.yaml")
>>> result = run_plan(loaded)           # audits every model, records each run
>>> result.exit_code("fail")            # 0 pass, 1 a policy fails, 3 an audit crashed
"""

from __future__ import annotations

# Submodules load on first use (PEP 562): `audits --help` and `audits run` import this package for
# its exit codes, and the JUnit writer alone pulls in pandas through the report.
_EXPORTS = {
    "junit_xml": "junit", "write_junit": "junit",
    "AlertDelivery": "outcome", "AuditOutcome": "outcome", "ModelScan": "outcome", "ScanResult": "outcome", "exit_code_for": "outcome",
    "LoadedPlan": "plan", "PlanError": "plan", "ScanPlan": "plan", "ScanTarget": "plan", "load_plan": "plan", "parse_plan": "plan", "resolve_targets": "plan",
    "PlanBusy": "runner", "StoreUnavailable": "runner", "run_plan": "runner",
    "summary_markdown": "summary", "write_summary": "summary",
}  # fmt: skip


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


__all__ = [
    "AlertDelivery",
    "AuditOutcome",
    "LoadedPlan",
    "ModelScan",
    "PlanBusy",
    "PlanError",
    "ScanPlan",
    "ScanResult",
    "ScanTarget",
    "StoreUnavailable",
    "exit_code_for",
    "junit_xml",
    "load_plan",
    "parse_plan",
    "resolve_targets",
    "run_plan",
    "summary_markdown",
    "write_junit",
    "write_summary",
]
