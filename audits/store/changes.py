"""What changed between two runs before any number moved: weights, data, spec, seed, policy, tool version.

``run_changes(old, new)`` compares two reports' provenance (a report file or a stored run's
report); ``audits diff`` prints these first, then the measurement and finding changes of
:func:`audits.diff.diff_reports`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from audits.report import AuditReport


@dataclass(frozen=True)
class Change:
    """One input of the audit that differs between two runs."""

    what: str  # 'model', 'weights', 'data', 'spec', 'seed', 'policy', 'tool version'
    old: str
    new: str
    detail: str = ""


@dataclass(frozen=True)
class RunChanges:
    """The inputs that differ between two runs (empty: same model, data, spec, seed, policy and tool)."""

    old_id: str
    new_id: str
    changes: list[Change] = field(default_factory=list)

    @property
    def same_model(self) -> bool:
        return not any(c.what == "model" for c in self.changes)

    def to_text(self) -> str:
        if not self.changes:
            return f"Runs {self.old_id} -> {self.new_id}: same model weights, data, spec, seed, policy and tool version."
        lines = [f"Runs {self.old_id} -> {self.new_id}: what changed"]
        for c in self.changes:
            lines.append(f"  {c.what:<13} {c.old} -> {c.new}" + (f" ({c.detail})" if c.detail else ""))
        return "\n".join(lines)


def _flat(value: object, prefix: str = "") -> dict[str, object]:
    if isinstance(value, dict):
        out: dict[str, object] = {}
        for k, v in value.items():
            out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: value}


def spec_differences(old: dict, new: dict) -> list[str]:
    """The dotted keys whose values differ between two specs (the seed is reported on its own)."""
    a, b = _flat(old), _flat(new)
    return sorted(k for k in set(a) | set(b) if k != "seed" and a.get(k) != b.get(k))


def run_changes(old: AuditReport, new: AuditReport) -> RunChanges:
    """The inputs that differ between the runs that wrote ``old`` and ``new``."""
    po, pn = old.provenance, new.provenance
    changes: list[Change] = []
    if po.model_name != pn.model_name:
        changes.append(Change("model", po.model_name, pn.model_name))
    if po.weights_sha256 != pn.weights_sha256:
        changes.append(Change("weights", f"sha256 {po.weights_sha256[:12]}", f"sha256 {pn.weights_sha256[:12]}"))
    if po.data_sha256 != pn.data_sha256:
        changes.append(
            Change(
                "data",
                f"sha256 {po.data_sha256[:12]}",
                f"sha256 {pn.data_sha256[:12]}",
                f"{po.data_source} -> {pn.data_source}" if po.data_source != pn.data_source else "",
            )
        )
    keys = spec_differences(po.spec, pn.spec)
    if keys:
        shown = ", ".join(keys[:6]) + (f" and {len(keys) - 6} more" if len(keys) > 6 else "")
        changes.append(Change("spec", "", "", f"changed: {shown}"))
    if po.seed != pn.seed:
        changes.append(Change("seed", str(po.seed), str(pn.seed)))
    old_policy, new_policy = old.policy or {}, new.policy or {}
    if old_policy != new_policy:
        changes.append(
            Change(
                "policy",
                str(old_policy.get("name") or "(none)"),
                str(new_policy.get("name") or "(none)"),
                "same name, other checks" if old_policy.get("name") == new_policy.get("name") else "",
            )
        )
    old_tool, new_tool = po.library_versions.get("audits", "?"), pn.library_versions.get("audits", "?")
    if old_tool != new_tool:
        changes.append(Change("tool version", str(old_tool), str(new_tool)))
    libraries = sorted(
        k for k in set(po.library_versions) | set(pn.library_versions) if k != "audits" and po.library_versions.get(k) != pn.library_versions.get(k)
    )
    if libraries:
        changes.append(Change("libraries", "", "", ", ".join(f"{k} {po.library_versions.get(k, '-')} -> {pn.library_versions.get(k, '-')}" for k in libraries)))
    return RunChanges(old_id=old.report_id, new_id=new.report_id, changes=changes)
