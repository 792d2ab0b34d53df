"""JUnit XML for CI: one test suite per model, one test case per finding.

GitLab, Jenkins and GitHub (through test-report actions) show these natively. A finding
that fails (or warns, with ``fail_on='warn'``) is a ``<failure>`` whose message is the
finding's detail and evidence; a finding that was not evaluated is ``<skipped>``; an audit
that crashed is one ``<error>`` test case carrying the error.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from audits.report import write_atomic
from audits.scan.outcome import FailOn, ScanResult


def _finding_message(finding) -> str:
    parts = [finding.detail or finding.title]
    if finding.evidence:
        parts.append(f"evidence: {finding.evidence}")
    return " | ".join(parts)


def junit_xml(result: ScanResult, *, fail_on: FailOn = "fail") -> str:
    """The scan as a JUnit XML document (a string)."""
    failing = {"fail": {"fail"}, "warn": {"fail", "warn"}, "never": set()}[fail_on]
    root = ET.Element("testsuites", name=f"audits scan {result.plan}")
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for scan in result.models:
        outcome = scan.outcome
        suite = ET.SubElement(root, "testsuite", name=f"{result.plan}/{scan.model_name}", timestamp=outcome.started_at.isoformat(timespec="seconds"))
        counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
        classname = f"audits.{result.plan}.{scan.model_name}"
        props = ET.SubElement(suite, "properties")
        ET.SubElement(props, "property", name="run_id", value=scan.run_id)
        ET.SubElement(props, "property", name="verdict", value=scan.verdict)
        if outcome.report is None:
            case = ET.SubElement(suite, "testcase", name="audit", classname=classname, time=f"{outcome.audit_seconds:.3f}")
            ET.SubElement(case, "error", message=outcome.error or "the audit crashed", type="AuditCrashed").text = outcome.error or ""
            counts["tests"] += 1
            counts["errors"] += 1
        else:
            for finding in outcome.report.findings:
                case = ET.SubElement(suite, "testcase", name=f"{finding.key}: {finding.title}", classname=classname, time="0")
                counts["tests"] += 1
                if finding.status == "not_evaluated":
                    ET.SubElement(case, "skipped", message=_finding_message(finding))
                    counts["skipped"] += 1
                elif finding.status in failing:
                    measured = "n/a" if finding.measured is None else f"{finding.measured:.4g}"
                    body = f"{finding.status}: measured {measured}, threshold {finding.direction} {finding.threshold:g}\n{_finding_message(finding)}"
                    ET.SubElement(case, "failure", message=_finding_message(finding), type=finding.status).text = body
                    counts["failures"] += 1
                elif finding.status == "warn":
                    ET.SubElement(case, "system-out").text = f"warn: {_finding_message(finding)}"
        suite.set("time", f"{outcome.audit_seconds:.3f}")
        for key, value in counts.items():
            suite.set(key, str(value))
            totals[key] += value
    for key, value in totals.items():
        root.set(key, str(value))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_junit(result: ScanResult, path: str | Path, *, fail_on: FailOn = "fail") -> Path:
    """Write :func:`junit_xml` to ``path`` atomically."""
    return write_atomic(Path(path), junit_xml(result, fail_on=fail_on).encode())
