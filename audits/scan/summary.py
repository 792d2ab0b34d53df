"""A Markdown summary of a scan for CI job summaries (e.g. ``$GITHUB_STEP_SUMMARY``)."""

from __future__ import annotations

from pathlib import Path

from audits.findings import status_counts
from audits.report import write_atomic
from audits.scan.outcome import FailOn, ScanResult

_MARK = {"pass": "✅ pass", "warn": "⚠️ warn", "fail": "❌ fail", "crashed": "💥 crashed", "not_evaluated": "➖ not evaluated"}


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def summary_markdown(result: ScanResult, *, fail_on: FailOn = "fail") -> str:
    """One table row per model, then the failing findings and regressions."""
    code = result.exit_code(fail_on)
    seconds = (result.ended_at - result.started_at).total_seconds()
    lines = [
        f"## Audit scan `{result.plan}`",
        "",
        f"{len(result.models)} model(s) in {seconds:.1f} s; exit code {code} (fail on {fail_on}).",
        "",
        "| model | verdict | fail | warn | pass | not evaluated | regressions | run |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for scan in result.models:
        report = scan.outcome.report
        counts = status_counts(report.findings) if report is not None else dict.fromkeys(("fail", "warn", "pass", "not_evaluated"), 0)
        lines.append(
            f"| {_cell(scan.model_name)} | {_MARK.get(scan.verdict, scan.verdict)} | {counts['fail']} | {counts['warn']} | {counts['pass']} | {counts['not_evaluated']} "
            f"| {len(scan.regressions)} | `{scan.run_id}` |"
        )
    details: list[str] = []
    shown = {"fail"} | ({"warn"} if fail_on == "warn" else set())
    for scan in result.models:
        if scan.outcome.report is None:
            details.append(f"- **{_cell(scan.model_name)}** crashed: {_cell(scan.outcome.error or '')}")
            continue
        for f in scan.outcome.report.findings:
            if f.status in shown:
                measured = "n/a" if f.measured is None else f"{f.measured:.4g}"
                details.append(
                    f"- **{_cell(scan.model_name)}** {f.status}: {_cell(f.title)} ({_cell(f.subject or '-')}): {measured} vs {f.direction} {f.threshold:g}. {_cell(f.detail)}"
                )
        for r in scan.regressions:
            details.append(f"- **{_cell(scan.model_name)}** regressed: {_cell(r['title'])}: {r['old_status']} -> {r['new_status']}")
        for a in scan.alerts:
            if not a.ok:
                details.append(f"- **{_cell(scan.model_name)}** alert to {_cell(a.target)} failed after {a.attempts} attempt(s): {_cell(a.error or '')}")
    if details:
        lines += ["", "### Findings to act on", "", *details]
    return "\n".join(lines) + "\n"


def write_summary(result: ScanResult, path: str | Path, *, fail_on: FailOn = "fail") -> Path:
    """Write :func:`summary_markdown` to ``path`` atomically (replacing it; each CI step gets its own summary file)."""
    return write_atomic(Path(path), summary_markdown(result, fail_on=fail_on).encode())
