"""Compliance scans: plans (YAML), a runner that records every run in the store, JUnit and Markdown for CI, webhook alerts,
a cron scheduler (APScheduler) and a Ray executor for fleets.

>>> loaded = load_plan("examples/scan.yaml")
>>> result = run_plan(loaded)           # audits every model, records each run
>>> result.exit_code("fail")            # 0 pass, 1 a policy fails, 3 an audit crashed
"""

from __future__ import annotations

from audits.scan.junit import junit_xml, write_junit
from audits.scan.outcome import AlertDelivery, AuditOutcome, ModelScan, ScanResult, exit_code_for
from audits.scan.plan import LoadedPlan, PlanError, ScanPlan, ScanTarget, load_plan, parse_plan, resolve_targets
from audits.scan.runner import PlanBusy, StoreUnavailable, run_plan
from audits.scan.summary import summary_markdown, write_summary

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
