"""What changed between two audit reports: measurement deltas with direction and intervals, finding status changes, hashes.

``diff_reports(old, new)`` compares every measurement both reports hold (matched by the
result that measured it and the measurement's name and subject), every finding's status
(matched by check id and subject), and the model and data hashes.

A *measurement* regressed when it got worse (by its ``direction``) and the change lies
outside the intervals: the two intervals do not overlap (or, where only one side has an
interval, the other value lies outside it). A measurement without intervals can be
"worse" but never "regressed", so a rerun with another seed does not flap. A *finding* regressed when its
status got worse (pass -> warn -> fail) or a finding new in ``new`` does not pass, unless
both findings have intervals and the change lies within them (the same rule).
``audits diff`` exits non-zero when a finding regressed (the policy is the contract);
measurement regressions are listed and counted beside it.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from audits.findings import SEVERITY, Finding
from audits.results.base import Measurement

if TYPE_CHECKING:
    from audits.report import AuditReport

Better = Literal["higher", "lower"] | None
TOLERANCE = 1e-9
_BETTER: dict[str, Better] = {"higher_is_better": "higher", "lower_is_better": "lower", "neutral": None}


def outside(old_value: float | None, old_interval: list[float] | None, new_value: float | None, new_interval: list[float] | None) -> bool:
    """Whether a change lies outside the measurements' intervals (False when neither side has one).

    With both intervals: they do not overlap (two estimates of the same quantity from
    independent reruns overlap in all but about 1% of cases, so a seed alone does not
    flag it). With one interval: the other side's value lies outside it.
    """
    if old_value is None or new_value is None:
        return False
    if old_interval is not None and new_interval is not None:
        return max(new_interval) < min(old_interval) - TOLERANCE or min(new_interval) > max(old_interval) + TOLERANCE
    interval, value = (old_interval, new_value) if old_interval is not None else (new_interval, old_value)
    return interval is not None and not min(interval) - TOLERANCE <= value <= max(interval) + TOLERANCE


@dataclass(frozen=True)
class MetricChange:
    """One measurement in both reports (or in one of them) that differs."""

    name: str
    old: float | None
    new: float | None
    better: Better = None
    old_interval: list[float] | None = None
    new_interval: list[float] | None = None

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

    @property
    def outside_intervals(self) -> bool:
        return outside(self.old, self.old_interval, self.new, self.new_interval)

    @property
    def regressed(self) -> bool:
        """Worse, and by more than the intervals allow (see the module docstring)."""
        return self.verdict == "worse" and self.outside_intervals


@dataclass(frozen=True)
class FindingChange:
    key: str
    title: str
    old_status: str | None
    new_status: str | None
    old_value: float | None
    new_value: float | None
    threshold: str = ""
    # The change lies within the findings' intervals (a rerun's noise), so a worse status is not a regression.
    within_intervals: bool = False

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
        return self.kind in ("regressed", "new failure") and not self.within_intervals


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
    old_model_name: str = ""  # empty: the same as ``model_name``
    old_seed: int | None = None
    new_seed: int | None = None

    @property
    def same_model(self) -> bool:
        """Both reports audit a model of the same name (the weights may still differ)."""
        return not self.old_model_name or self.old_model_name == self.model_name

    @property
    def seed_only(self) -> bool:
        """Same model, weights and data; only the seed differs (changes are run-to-run noise)."""
        return self.same_model and not self.model_changed and not self.data_changed and self.old_seed != self.new_seed

    @property
    def model_changed(self) -> bool:
        return self.old_weights != self.new_weights

    @property
    def data_changed(self) -> bool:
        return self.old_data != self.new_data

    @property
    def regressions(self) -> list[FindingChange]:
        """Findings that regressed (these set ``audits diff``'s exit code)."""
        return [f for f in self.findings if f.is_regression]

    @property
    def metric_regressions(self) -> list[MetricChange]:
        """Measurements that got worse by more than their intervals allow."""
        return [m for m in self.metrics if m.regressed]

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
        noise = sum(f.within_intervals for f in self.findings)
        lines.append(
            f"Findings: {len(self.regressions)} regressed or newly failing, {kinds.count('resolved')} resolved, {kinds.count('improved')} improved, "
            f"{noise} worse within their intervals, {kinds.count('added') + kinds.count('removed') + kinds.count('changed')} other"
        )
        for f in sorted(self.findings, key=lambda f: (not f.is_regression, f.key)):
            note = " (within the intervals)" if f.within_intervals else ""
            lines.append(
                f"  {f.kind.upper():<12} {f.key}: {f.old_status or '-'} -> {f.new_status or '-'} "
                f"({_fmt(f.old_value)} -> {_fmt(f.new_value)}{', ' + f.threshold if f.threshold else ''}){note}"
            )
        if self.metrics:
            lines.append(f"Measurements: {len(self.metrics)} changed, {len(self.metric_regressions)} regressed (worse beyond their intervals)")
            width = max(len(m.name) for m in self.metrics)
            for m in sorted(self.metrics, key=lambda m: not m.regressed):
                delta = f"{m.delta:+.4g}" if m.delta is not None else ""
                verdict = (
                    "REGRESSED"
                    if m.regressed
                    else m.verdict + (" (within the intervals)" if m.verdict == "worse" and (m.old_interval or m.new_interval) else "")
                )
                lines.append(f"  {m.name:<{width}}  {_fmt(m.old):>9} -> {_fmt(m.new):<9} {delta:>10}  {_arrow(m)} {verdict}")
        return "\n".join(lines)


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.4g}"


def _arrow(m: MetricChange) -> str:
    if m.delta is None:
        return " "
    return "^" if m.delta > 0 else "v"


def _same(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return abs(a - b) <= TOLERANCE * max(1.0, abs(a), abs(b))


def _threshold(f: Finding) -> str:
    return f"threshold {'>=' if f.direction == 'min' else '<='} {f.threshold:g}"


def measurements_by_name(report: AuditReport) -> dict[str, Measurement]:
    """Every measurement of ``report`` under a name stable across reports: ``performance.accuracy``,
    ``fgsm.robust_accuracy/fgsm/linf/eps=0.03137254902`` (the result's method, or its place when a method repeats)."""
    from audits.report import RESULT_KINDS

    results = [("performance", "performance", report.performance)]
    for kind in RESULT_KINDS:
        results += [(r.method, f"{kind}[{i}]", r) for i, r in enumerate(getattr(report, kind))]
    repeated = {m for m, n in Counter(method for method, _, _ in results).items() if n > 1}
    out: dict[str, Measurement] = {}
    for method, pointer, result in results:
        source = pointer if method in repeated else method
        for m in result.measurements():
            out.setdefault(f"{source}.{m.key}", m)
    return out


def diff_reports(old: AuditReport, new: AuditReport) -> ReportDiff:
    """Compare two reports (see the module docstring)."""
    old_m, new_m = measurements_by_name(old), measurements_by_name(new)
    metrics: list[MetricChange] = []
    for name in [n for n in old_m if n in new_m]:
        a, b = old_m[name], new_m[name]
        if not _same(a.value, b.value):
            metrics.append(MetricChange(name, a.value, b.value, _BETTER.get(b.direction), a.interval, b.interval))

    old_f = {f.key: f for f in old.findings}
    new_f = {f.key: f for f in new.findings}
    findings: list[FindingChange] = []
    for key in list(old_f) + [k for k in new_f if k not in old_f]:
        a, b = old_f.get(key), new_f.get(key)
        if a is not None and b is not None and a.status == b.status:
            continue
        ref = b or a
        noise = a is not None and b is not None and a.interval is not None and b.interval is not None
        noise = noise and not outside(_finite(a.measured), a.interval, _finite(b.measured), b.interval)
        findings.append(
            FindingChange(
                key=key,
                title=ref.title,
                old_status=a.status if a else None,
                new_status=b.status if b else None,
                old_value=a.measured if a else None,
                new_value=b.measured if b else None,
                threshold=_threshold(ref),
                within_intervals=noise,
            )  # fmt: skip
        )

    old_r = [r.method for r in old.explanations + old.robustness + old.fairness]
    new_r = [r.method for r in new.explanations + new.robustness + new.fairness]
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
        probes_added=[m for m in dict.fromkeys(new_r) if m not in old_r],
        probes_removed=[m for m in dict.fromkeys(old_r) if m not in new_r],
        old_model_name=old.provenance.model_name,
        old_seed=old.provenance.seed,
        new_seed=new.provenance.seed,
    )


def _finite(v) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def diff_tables(diff: ReportDiff) -> list:
    """The diff as report blocks (for the HTML section)."""
    from audits.render.blocks import KeyValues, Paragraph, Table, num, status_text

    blocks: list = [
        KeyValues(
            [
                ("Reports", f"{diff.old_id} -> {diff.new_id}"),
                (
                    "Model weights",
                    f"changed: {diff.old_weights[:16]} -> {diff.new_weights[:16]}" if diff.model_changed else f"unchanged ({diff.new_weights[:16]})",
                ),
                ("Evaluation data", "changed" if diff.data_changed else "unchanged"),
                ("Regressions", f"{len(diff.regressions)} finding(s), {len(diff.metric_regressions)} measurement(s) beyond their intervals"),
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
        rows = [
            [
                m.name,
                num(m.old, 4),
                num(m.new, 4),
                "-" if m.delta is None else f"{m.delta:+.4g}",
                "regressed (beyond the intervals)" if m.regressed else m.verdict,
            ]
            for m in sorted(diff.metrics, key=lambda m: not m.regressed)
        ]
        blocks.append(Table(["Measurement", "Old", "New", "Delta", "Direction"], rows, caption="Measurements that changed", numeric=[1, 2, 3]))
    if diff.probes_added or diff.probes_removed:
        blocks.append(Paragraph(f"Probes added: {', '.join(diff.probes_added) or 'none'}; removed: {', '.join(diff.probes_removed) or 'none'}."))
    return blocks
