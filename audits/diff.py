"""What changed between two audit reports: metric deltas with direction, finding status changes, model hash.

``diff_reports(old, new)`` compares clean performance, every finding's measured value
and status (matched by check id and subject), the scalar figures of probe results
present in both (matched by method), and the model and data hashes. A finding
*regressed* when its status got worse (pass -> warn -> fail) or when a finding new in
``new`` does not pass; ``audits diff`` exits non-zero then.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np

from audits.policy import SEVERITY, Finding

if TYPE_CHECKING:
    from audits.report import AuditReport

Better = Literal["higher", "lower"] | None
TOLERANCE = 1e-9
# Which way is better for scalar result fields, by field name (unknown: no direction).
_BETTER: dict[str, Better] = {
    "accuracy": "higher",
    "balanced_accuracy": "higher",
    "clean_accuracy": "higher",
    "mean_corruption_accuracy": "higher",
    "relative_corruption_accuracy": "higher",
    "mean_min_epsilon": "higher",
    "median_min_linf": "higher",
    "flipped_fraction": "lower",
    "flippable_fraction": "lower",
    "single_feature_fraction": "lower",
    "ece": "lower",
}


@dataclass(frozen=True)
class MetricChange:
    """One number in both reports (or in one of them) that differs."""

    name: str
    old: float | None
    new: float | None
    better: Better = None

    @property
    def delta(self) -> float | None:
        return None if self.old is None or self.new is None else self.new - self.old

    @property
    def verdict(self) -> str:
        """'better', 'worse', 'changed' (no direction), 'new' or 'gone'."""
        if self.old is None:
            return "new"
        if self.new is None:
            return "gone"
        if self.better is None:
            return "changed"
        return "better" if (self.delta > 0) == (self.better == "higher") else "worse"


@dataclass(frozen=True)
class FindingChange:
    key: str
    title: str
    old_status: str | None
    new_status: str | None
    old_value: float | None
    new_value: float | None
    threshold: str = ""

    @property
    def kind(self) -> str:
        """'regressed', 'new failure', 'improved', 'resolved', 'added', 'removed' or 'changed'."""
        old, new = SEVERITY.get(self.old_status or ""), SEVERITY.get(self.new_status or "")
        if self.old_status is None:
            return "new failure" if new is not None and new > 0 else "added"
        if self.new_status is None:
            return "resolved" if old is not None and old > 0 else "removed"
        if old is not None and new is not None and new > old:
            return "new failure" if self.new_status == "fail" and self.old_status == "pass" else "regressed"
        if old is not None and new is not None and new < old:
            return "resolved" if self.new_status == "pass" else "improved"
        return "changed"

    @property
    def is_regression(self) -> bool:
        return self.kind in ("regressed", "new failure")


@dataclass(frozen=True)
class ReportDiff:
    old_id: str
    new_id: str
    model_name: str
    old_weights: str
    new_weights: str
    old_data: str
    new_data: str
    findings: list[FindingChange] = field(default_factory=list)
    metrics: list[MetricChange] = field(default_factory=list)
    probes_added: list[str] = field(default_factory=list)
    probes_removed: list[str] = field(default_factory=list)

    @property
    def model_changed(self) -> bool:
        return self.old_weights != self.new_weights

    @property
    def data_changed(self) -> bool:
        return self.old_data != self.new_data

    @property
    def regressions(self) -> list[FindingChange]:
        return [f for f in self.findings if f.is_regression]

    @property
    def regressed(self) -> bool:
        return bool(self.regressions)

    @property
    def is_empty(self) -> bool:
        return not (self.findings or self.metrics or self.probes_added or self.probes_removed or self.model_changed or self.data_changed)

    def to_text(self) -> str:
        lines = [f"Audit diff for {self.model_name}: report {self.old_id} -> {self.new_id}"]
        weights = f"CHANGED {self.old_weights[:12]} -> {self.new_weights[:12]}" if self.model_changed else f"unchanged (sha256 {self.new_weights[:12]})"
        lines.append(f"  model weights: {weights}")
        lines.append(f"  evaluation data: {'CHANGED' if self.data_changed else 'unchanged'}")
        if self.is_empty:
            lines.append("No differences.")
            return "\n".join(lines)
        if self.probes_added or self.probes_removed:
            lines.append(f"  probes added: {', '.join(self.probes_added) or '-'}; removed: {', '.join(self.probes_removed) or '-'}")
        kinds = [f.kind for f in self.findings]
        lines.append(
            f"Findings: {kinds.count('regressed')} regressed, {kinds.count('new failure')} new failure(s), {kinds.count('resolved')} resolved, "
            f"{kinds.count('improved')} improved, {kinds.count('added') + kinds.count('removed') + kinds.count('changed')} other"
        )
        for f in sorted(self.findings, key=lambda f: (not f.is_regression, f.key)):
            lines.append(
                f"  {f.kind.upper():<12} {f.key}: {f.old_status or '-'} -> {f.new_status or '-'} ({_fmt(f.old_value)} -> {_fmt(f.new_value)}{', ' + f.threshold if f.threshold else ''})"
            )
        if self.metrics:
            lines.append("Metrics:")
            width = max(len(m.name) for m in self.metrics)
            for m in self.metrics:
                delta = f"{m.delta:+.4g}" if m.delta is not None else ""
                lines.append(f"  {m.name:<{width}}  {_fmt(m.old):>9} -> {_fmt(m.new):<9} {delta:>10}  {_arrow(m)} {m.verdict}")
        return "\n".join(lines)


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.4g}"


def _arrow(m: MetricChange) -> str:
    if m.delta is None:
        return " "
    return "^" if m.delta > 0 else "v"


def _value(v) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _same(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return abs(a - b) <= TOLERANCE * max(1.0, abs(a), abs(b))


def _metric(out: list[MetricChange], name: str, old, new, better: Better) -> None:
    old, new = _value(old), _value(new)
    if not _same(old, new):
        out.append(MetricChange(name, old, new, better))


def _scalars(result) -> dict[str, float]:
    out = {}
    for f in dataclasses.fields(result):
        if f.name in ("seed", "cost", "params"):
            continue
        v = getattr(result, f.name)
        if isinstance(v, (float, np.floating)) and not isinstance(v, bool):
            out[f.name] = float(v)
    return out


def _threshold(f: Finding) -> str:
    return f"threshold {'>=' if f.direction == 'min' else '<='} {f.threshold:g}"


def diff_reports(old: AuditReport, new: AuditReport) -> ReportDiff:
    """Compare two reports (see the module docstring)."""
    metrics: list[MetricChange] = []
    for name, better in (("accuracy", "higher"), ("balanced_accuracy", "higher"), ("ece", "lower"), ("mean_confidence", None)):
        _metric(metrics, f"performance.{name}", getattr(old.performance, name), getattr(new.performance, name), better)

    old_f = {f.key: f for f in old.findings}
    new_f = {f.key: f for f in new.findings}
    findings: list[FindingChange] = []
    for key in list(old_f) + [k for k in new_f if k not in old_f]:
        a, b = old_f.get(key), new_f.get(key)
        ref = b or a
        if a is not None and b is not None:
            _metric(metrics, f"finding {key}", a.measured, b.measured, "higher" if ref.direction == "min" else "lower")
        if a is not None and b is not None and a.status == b.status:
            continue
        findings.append(
            FindingChange(
                key=key,
                title=ref.title,
                old_status=a.status if a else None,
                new_status=b.status if b else None,
                old_value=a.measured if a else None,
                new_value=b.measured if b else None,
                threshold=_threshold(ref),
            )  # fmt: skip
        )

    def by_method(report: AuditReport) -> dict[str, object]:
        return {r.method: r for r in report.explanations + report.robustness + report.fairness}

    old_r, new_r = by_method(old), by_method(new)
    for method in [m for m in old_r if m in new_r]:
        a, b = _scalars(old_r[method]), _scalars(new_r[method])
        for name in [n for n in a if n in b]:
            _metric(metrics, f"{method}.{name}", a[name], b[name], _BETTER.get(name))

    return ReportDiff(
        old_id=old.report_id,
        new_id=new.report_id,
        model_name=new.provenance.model_name,
        old_weights=old.provenance.weights_sha256,
        new_weights=new.provenance.weights_sha256,
        old_data=old.provenance.data_sha256,
        new_data=new.provenance.data_sha256,
        findings=findings,
        metrics=metrics,
        probes_added=[m for m in new_r if m not in old_r],
        probes_removed=[m for m in old_r if m not in new_r],
    )


def diff_tables(diff: ReportDiff) -> list:
    """The diff as report blocks (for the HTML section)."""
    from audits.render.sections import KeyValues, Paragraph, Table, num, status_text

    blocks: list = [
        KeyValues(
            [
                ("Reports", f"{diff.old_id} -> {diff.new_id}"),
                (
                    "Model weights",
                    f"changed: {diff.old_weights[:16]} -> {diff.new_weights[:16]}" if diff.model_changed else f"unchanged ({diff.new_weights[:16]})",
                ),
                ("Evaluation data", "changed" if diff.data_changed else "unchanged"),
                ("Regressions", str(len(diff.regressions))),
            ]
        )
    ]
    if diff.is_empty:
        return blocks + [Paragraph("No differences.", "body")]
    if diff.findings:
        rows = [
            [f.kind, f.key, status_text(f.old_status or "-"), status_text(f.new_status or "-"), num(f.old_value), num(f.new_value), f.threshold]
            for f in diff.findings
        ]
        blocks.append(
            Table(
                ["Change", "Finding", "Old status", "New status", "Old value", "New value", "Threshold"],
                rows,
                caption="Findings whose status changed",
                status_column=3,
                numeric=[4, 5],
            )
        )
    if diff.metrics:
        rows = [[m.name, num(m.old, 4), num(m.new, 4), "-" if m.delta is None else f"{m.delta:+.4g}", m.verdict] for m in diff.metrics]
        blocks.append(Table(["Metric", "Old", "New", "Delta", "Direction"], rows, caption="Numbers that changed", numeric=[1, 2, 3]))
    if diff.probes_added or diff.probes_removed:
        blocks.append(Paragraph(f"Probes added: {', '.join(diff.probes_added) or 'none'}; removed: {', '.join(diff.probes_removed) or 'none'}."))
    return blocks
