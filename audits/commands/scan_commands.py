"""``audits scan`` (run a plan now, CI exit codes, JUnit, Markdown) and ``audits schedule`` (run it on its cron)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from typing import TYPE_CHECKING

from audits.scan.outcome import EXIT_CRASH, exit_code_for

if TYPE_CHECKING:
    from audits.scan.outcome import FailOn, ModelScan

FAIL_ON_HELP = "exit 1 when a verdict is fail (default), fail or warn ('warn'), or never; an audit that crashed exits 3, bad input 2"


def _print_model(scan: ModelScan) -> None:
    report = scan.outcome.report
    line = f"  {scan.model_name:<18} {scan.verdict.upper():<8} run {scan.run_id}  {scan.outcome.audit_seconds:6.1f} s"
    if report is not None:
        counts = {s: sum(f.status == s for f in report.findings) for s in ("fail", "warn", "pass", "not_evaluated")}
        line += f"  ({counts['fail']} fail, {counts['warn']} warn, {counts['pass']} pass, {counts['not_evaluated']} not evaluated)"
    else:
        line += f"  {scan.outcome.error}"
    if scan.regressions:
        line += f"  {len(scan.regressions)} regression(s) since run {scan.regressions[0]['previous_run_id']}"
    for alert in scan.alerts:
        line += f"\n    alert to {alert.target}: " + ("delivered" if alert.ok else f"FAILED after {alert.attempts} attempt(s): {alert.error}")
    print(line, flush=True)


def cmd_scan(args: argparse.Namespace) -> int:
    """Audit every model of the plan now, record each run, write JUnit and Markdown; exit code for CI."""
    from audits.scan.junit import write_junit
    from audits.scan.plan import load_plan
    from audits.scan.runner import run_plan
    from audits.scan.summary import write_summary
    from models.device import set_cpu_threads

    set_cpu_threads(args.threads)  # the local executor audits in this process
    loaded = load_plan(args.plan)
    print(f"Scan {loaded.name}: {len(loaded.plan.models)} model entr{'y' if len(loaded.plan.models) == 1 else 'ies'}, executor {args.executor}", flush=True)
    result = run_plan(loaded, store_url=args.store, executor=args.executor, address=args.address, device=args.device, on_model=_print_model)
    code = result.exit_code(args.fail_on)
    if args.junit:
        print(f"  wrote {write_junit(result, args.junit, fail_on=args.fail_on)}")
    if args.summary:
        print(f"  wrote {write_summary(result, args.summary, fail_on=args.fail_on)}")
    seconds = (result.ended_at - result.started_at).total_seconds()
    print(f"  {len(result.models)} run(s) recorded in {seconds:.1f} s; exit {code} (fail on {args.fail_on})")
    return code


def cmd_schedule(args: argparse.Namespace) -> int:
    """Run the plan on its cron schedule until SIGINT or SIGTERM (the running scan finishes first)."""
    from audits.scan.scheduler import PlanScheduler

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    scheduler = PlanScheduler(args.plan, store_url=args.store)
    stop = threading.Event()

    def _stop(signum, _frame) -> None:
        logging.getLogger("audits.scan").info("signal %s: stopping after the running scan", signum)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _stop)
    schedule = scheduler.schedule
    print(f"Scheduling plan {scheduler.loaded.name}: cron '{schedule.cron}' ({schedule.timezone}), store {scheduler.store.location}; Ctrl+C stops", flush=True)
    scheduler.run_forever(stop)
    return 0


def run_exit_code(verdict: str, fail_on: FailOn) -> int:
    """``audits run --fail-on``: the same exit codes as ``audits scan``."""
    return exit_code_for([verdict], fail_on)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add ``scan`` and ``schedule`` to the ``audits`` command."""
    scan = sub.add_parser(
        "scan", help="audit every model of a scan plan now and record each run (exit 0 pass, 1 policy fails, 2 bad input, 3 an audit crashed)"
    )
    scan.add_argument("--plan", required=True, help="scan plan YAML (see examples/scan.yaml)")
    scan.add_argument("--store", help="store URL (default: the plan's 'store', then $AUDITS_STORE_URL, then SQLite under ./audit-store)")
    scan.add_argument("--fail-on", choices=("fail", "warn", "never"), default="fail", help=FAIL_ON_HELP)
    scan.add_argument("--junit", help="write JUnit XML here: one test case per finding")
    scan.add_argument("--summary", help="write a Markdown summary here (e.g. $GITHUB_STEP_SUMMARY)")
    scan.add_argument("--executor", choices=("local", "ray"), default="local", help="run the audits in this process (default) or as Ray tasks")
    scan.add_argument("--address", help="Ray cluster address for --executor ray ('auto': the cluster of this machine; default: a new local Ray)")
    scan.add_argument("--device", help="cpu, cuda or cuda:N for the local executor (default: $AUDITS_DEVICE, else CUDA when available)")
    scan.add_argument("--threads", type=int, help="CPU threads for torch in the local executor (default: torch's own; 1 on a busy shared runner)")
    scan.set_defaults(func=cmd_scan)

    schedule = sub.add_parser("schedule", help="run a scan plan on its cron schedule until stopped (job state kept in the store)")
    schedule.add_argument("--plan", required=True, help="scan plan YAML with a 'schedule'")
    schedule.add_argument("--store", help="store URL (default: the plan's 'store', then $AUDITS_STORE_URL, then SQLite under ./audit-store)")
    schedule.set_defaults(func=cmd_schedule)


__all__ = ["EXIT_CRASH", "add_parsers", "cmd_scan", "cmd_schedule", "run_exit_code"]
