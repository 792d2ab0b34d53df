"""Audit policies: checks with thresholds, evaluated against a report into findings.

A policy is a YAML file parsed once into typed checks (pydantic; unknown keys and
checks are errors naming the field). ``evaluate_policy(report, policy)`` turns every
check that applies to the report's model into one or more :class:`Finding` s: pass,
warn, fail or not evaluated, with the measured value, the threshold, an interval where
the measurement has one and a pointer to its evidence in the report.

Status rules, for a check whose value must stay at or above its threshold ("min"; a
"max" check mirrors them):

- ``fail``: the value is below ``threshold`` (``warn`` instead when the check sets
  ``on_violation: warn``);
- ``warn``: the value is below the check's ``warn`` level, or its interval reaches
  below ``threshold`` (the pass is not conclusive);
- ``pass`` otherwise; ``not_evaluated`` when the report holds no evidence for it (the
  probe did not run, was skipped or failed), with the reason.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from audits.errors import AuditError
from audits.findings import SEVERITY, STATUSES, Finding, Status, overall_verdict, status_counts  # noqa: F401  (re-exported)
from audits.stats import wilson

if TYPE_CHECKING:
    from audits.report import AuditReport

DEFAULT_POLICY = "default.yaml"


class PolicyError(AuditError):
    """The policy file is missing, malformed or names unknown checks or fields."""


# ---------------------------------------------------------------------------- checks


class _Check(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str | None = None
    title: str | None = None
    # Plain-language reason for the check and its threshold (printed in the report).
    rationale: str = ""
    threshold: float
    # A second, stricter level: values between it and ``threshold`` warn.
    warn: float | None = None
    on_violation: Literal["fail", "warn"] = "fail"
    # Applies only to these modalities / tasks (None: all).
    modalities: list[Literal["image", "tabular", "text"]] | None = None
    tasks: list[Literal["binary", "multiclass"]] | None = None

    direction: Literal["min", "max"] = "min"  # overridden per check type

    @property
    def check_id(self) -> str:
        return self.id or self.check  # type: ignore[attr-defined]

    def applies(self, modality: str, task: str) -> bool:
        return (self.modalities is None or modality in self.modalities) and (self.tasks is None or task in self.tasks)

    def describe(self) -> str:
        """The check in a few words, for tables (e.g. 'accuracy >= 0.8')."""
        op = ">=" if self.direction == "min" else "<="
        return f"{self.title or self.check_id} {op} {self.threshold:g}"  # type: ignore[attr-defined]


class MinAccuracy(_Check):
    """Clean accuracy (or balanced accuracy) of the whole evaluation set."""

    check: Literal["min_accuracy"]
    metric: Literal["accuracy", "balanced_accuracy"] = "accuracy"


class MaxCalibrationError(_Check):
    """Expected calibration error on clean data (the performance section's ECE)."""

    check: Literal["max_calibration_error"]
    direction: Literal["max"] = "max"


class MinRobustAccuracy(_Check):
    """Accuracy under a gradient attack at ``epsilon`` (linear interpolation on the sweep)."""

    check: Literal["min_robust_accuracy"]
    epsilon: Annotated[float, Field(gt=0)]
    attack: str = "strongest"  # a probe name (fgsm, pgd) or 'strongest': the lowest of them
    norm: Literal["linf", "l2"] = "linf"
    relative: bool = False  # divide by the clean accuracy of the same rows


class MinCorruptionAccuracy(_Check):
    """Accuracy under natural corruptions, averaged over corruptions (or the worst one)."""

    check: Literal["min_corruption_accuracy"]
    severity: Annotated[int, Field(ge=1, le=5)] | None = None  # None: mean over severities 1-5
    aggregate: Literal["mean", "worst"] = "mean"
    relative: bool = True


class MaxPerturbationFlipRate(_Check):
    """Share of decisions that change under a natural perturbation (tabular or text) at ``strength``."""

    check: Literal["max_perturbation_flip_rate"]
    direction: Literal["max"] = "max"
    perturbation: str = "noise"
    strength: float


class MaxDisparity(_Check):
    """Between-group disparity of one group metric, one finding per grouping."""

    check: Literal["max_disparity"]
    direction: Literal["max"] = "max"
    metric: str
    measure: Literal["difference", "difference_to_overall"] = "difference"
    groupings: Literal["single", "intersectional", "all"] | list[str] = "single"


class FourFifths(_Check):
    """Lowest over highest group selection rate (binary models), one finding per grouping."""

    check: Literal["four_fifths"]
    threshold: float = 0.8
    groupings: Literal["single", "intersectional", "all"] | list[str] = "single"


class MaxCounterfactualFlipRate(_Check):
    """Share of decisions that change when only a sensitive input changes, per attribute."""

    check: Literal["max_counterfactual_flip_rate"]
    direction: Literal["max"] = "max"


class ExplanationQuality(_Check):
    """A per-sample quality number of attribution methods (``quality[key]``), summarized.

    ``method`` is a probe name or a glob ('lime*'); every matching result gives a finding.
    ``relative`` divides each sample's value by |output - base value| (completeness
    errors as a share of what the attributions must add up to).
    """

    check: Literal["explanation_quality"]
    method: str = "*"
    key: str
    statistic: Literal["mean", "median", "max", "min"] = "mean"
    direction: Literal["min", "max"] = "max"
    relative: bool = False


Check = Annotated[
    MinAccuracy
    | MaxCalibrationError
    | MinRobustAccuracy
    | MinCorruptionAccuracy
    | MaxPerturbationFlipRate
    | MaxDisparity
    | FourFifths
    | MaxCounterfactualFlipRate
    | ExplanationQuality,
    Field(discriminator="check"),
]
CHECK_TYPES = {cls.model_fields["check"].annotation.__args__[0]: cls for cls in Check.__origin__.__args__}  # type: ignore[attr-defined]


class Policy(BaseModel):
    """A named list of checks. Check ids must be unique (they identify findings across reports)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    policy_version: Literal[1] = 1
    name: str = "custom"
    description: str = ""
    checks: list[Check]

    @model_validator(mode="after")
    def _unique_ids(self) -> Policy:
        ids = [c.check_id for c in self.checks]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"check ids must be unique; repeated: {dupes} (give each an 'id')")
        return self


def parse_policy(raw: dict | None, *, source: str = "policy") -> Policy:
    """Validate a policy mapping; errors name the field and the fix."""
    if not isinstance(raw, dict):
        raise PolicyError(f"Policy {source} must be a YAML mapping with a 'checks' list.", fix="See the README's 'Audit policies' section.")
    try:
        return Policy.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(policy)'}: {e['msg']}" for e in exc.errors()[:6])
        raise PolicyError(
            f"Policy {source} is invalid: {problems}.",
            fix=f"Correct the named fields; checks are {', '.join(sorted(CHECK_TYPES))} (see the README's 'Audit policies' section).",
        ) from None


def load_policy(path: str | Path | None = None) -> Policy:
    """The policy in ``path``, or the default policy shipped with the package when None."""
    if path is None:
        text = resources.files("audits.policies").joinpath(DEFAULT_POLICY).read_text()
        return parse_policy(yaml.safe_load(text), source="default")
    path = Path(path)
    if not path.is_file():
        raise PolicyError(f"Policy file {path} does not exist.", fix="Pass the path of a policy YAML file (or leave --policy out for the default policy).")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise PolicyError(f"Policy file {path} is not valid YAML: {exc}", fix="Fix the YAML syntax.") from None
    return parse_policy(raw, source=str(path))


# ---------------------------------------------------------------------------- evaluation


def result_anchor(kind: str, index: int, method: str) -> str:
    """The HTML/PDF anchor of a result's section (``robustness-1-pgd``)."""
    return f"{kind}-{index}-{method}".replace("_", "-")


@dataclass(frozen=True)
class _Located:
    result: object
    pointer: str  # e.g. robustness[1]
    anchor: str


def _results(report: AuditReport, kind: str, match) -> list[_Located]:
    items = getattr(report, kind)
    return [_Located(r, f"{kind}[{i}]", result_anchor(kind, i, r.method)) for i, r in enumerate(items) if match(r)]


def _type_name(result) -> str:
    return type(result).__name__


def _finite(v) -> float | None:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _interp(xs: np.ndarray, ys: np.ndarray, x: float) -> float | None:
    """Linear interpolation of y at x inside the sampled range (None outside it)."""
    xs, ys = np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)
    keep = np.isfinite(xs) & np.isfinite(ys)
    xs, ys = xs[keep], ys[keep]
    if not len(xs) or x < xs.min() - 1e-12 or x > xs.max() + 1e-12:
        return None
    order = np.argsort(xs)
    return float(np.interp(x, xs[order], ys[order]))


def _status(check: _Check, value: float | None, interval: list[float] | None) -> tuple[str, str]:
    """Status and a short reason, by the rules in the module docstring."""
    if value is None:
        return "not_evaluated", ""
    sign = 1.0 if check.direction == "min" else -1.0
    margin = sign * (value - check.threshold)  # >= 0 passes
    if margin < 0:
        inconclusive = interval is not None and sign * (max(interval) if sign > 0 else min(interval)) - sign * check.threshold >= 0
        side = "below" if check.direction == "min" else "above"
        note = " (inconclusive: the interval reaches the threshold)" if inconclusive else ""
        return check.on_violation, f"{side} the threshold{note}"
    if check.warn is not None and sign * (value - check.warn) < 0:
        return "warn", f"within the warning band (warn level {check.warn:g})"
    if interval is not None and sign * ((min(interval) if sign > 0 else max(interval)) - check.threshold) < 0:
        return "warn", "the interval reaches the threshold"
    return "pass", ""


def _finding(check: _Check, *, title: str, value, interval=None, evidence: str, section: str, subject: str = "", detail: str = "", reason: str = "") -> Finding:
    value = _finite(value)
    interval = [float(v) for v in interval] if interval is not None and all(_finite(v) is not None for v in interval) else None
    status, why = _status(check, value, interval)
    if status == "not_evaluated":
        detail = reason or detail or "no evidence in the report"
    elif why:
        detail = f"{detail}; {why}" if detail else why
    return Finding(
        check_id=check.check_id, check=check.check, title=check.title or title, subject=subject, status=status,  # type: ignore[attr-defined]
        measured=value, threshold=float(check.threshold), warn_threshold=None if check.warn is None else float(check.warn),
        direction=check.direction, interval=interval, evidence=evidence, section=section, detail=detail,
    )  # fmt: skip


def _missing(check: _Check, title: str, reason: str, section: str = "") -> list[Finding]:
    return [_finding(check, title=title, value=None, evidence="", section=section, reason=reason)]


def _skip_reason(report: AuditReport, names: list[str], default: str) -> str:
    """Why a probe left no result: its skip reason or failure, else ``default``."""
    for s in report.skipped:
        if s.name in names:
            return f"{s.name} was skipped: {s.reason}"
    for f in report.failures:
        if f.name in names:
            return f"{f.name} failed: {f.error}"
    return default


def _eval_min_accuracy(check: MinAccuracy, report: AuditReport) -> list[Finding]:
    perf = report.performance
    value = getattr(perf, check.metric)
    interval = wilson(value, perf.n) if check.metric == "accuracy" else None
    label = check.metric.replace("_", " ")
    return [
        _finding(
            check,
            title=label.capitalize(),
            value=value,
            interval=interval,
            evidence=f"performance.{check.metric}",
            section="performance",
            detail=f"{label} on {perf.n:,} rows",
        )
    ]


def _eval_calibration(check: MaxCalibrationError, report: AuditReport) -> list[Finding]:
    perf = report.performance
    detail = f"mean confidence {perf.mean_confidence:.3f} vs accuracy {perf.accuracy:.3f}"
    return [_finding(check, title="Expected calibration error", value=perf.ece, evidence="performance.ece", section="performance", detail=detail)]


def _eval_robust(check: MinRobustAccuracy, report: AuditReport) -> list[Finding]:
    title = f"Robust accuracy at {check.norm} epsilon {check.epsilon:.4g}"
    found = _results(report, "robustness", lambda r: _type_name(r) == "AttackResult" and r.norm == check.norm and not r.targeted)
    if check.attack != "strongest":
        found = [f for f in found if f.result.method == check.attack]
    if not found:
        names = ["fgsm", "pgd"] if check.attack == "strongest" else [check.attack]
        return _missing(check, title, _skip_reason(report, names, f"no untargeted {check.norm} attack result ({check.attack}) in the report"))
    best = None
    for loc in found:
        c = loc.result.curve
        value = _interp(c["epsilon"], c["robust_accuracy"], check.epsilon)
        if value is None:
            continue
        n = int(c["n"].iloc[0]) if "n" in c and len(c) else len(loc.result.rows)
        if best is None or value < best[0]:
            best = (value, n, loc)
    if best is None:
        return _missing(check, title, f"epsilon {check.epsilon:g} lies outside the attacks' sweeps", found[0].anchor)
    value, n, loc = best
    clean = loc.result.clean_accuracy
    interval = wilson(value, n)
    detail = f"{loc.result.method}: {value:.3f} under attack vs {clean:.3f} clean on {n} rows"
    if check.relative:
        interval = None if interval is None or not clean else [v / clean for v in interval]
        value = value / clean if clean else None
        detail = f"{loc.result.method}: robust / clean accuracy; " + detail
    return [
        _finding(
            check,
            title=title,
            value=value,
            interval=interval,
            subject=loc.result.method,
            evidence=f"{loc.pointer}.curve[epsilon={check.epsilon:g}]",
            section=loc.anchor,
            detail=detail,
        )
    ]


def _eval_corruption(check: MinCorruptionAccuracy, report: AuditReport) -> list[Finding]:
    what = "relative " if check.relative else ""
    title = f"{check.aggregate.capitalize()} {what}corruption accuracy" + (f" at severity {check.severity}" if check.severity else "")
    found = _results(report, "robustness", lambda r: _type_name(r) == "CorruptionResult")
    if not found:
        return _missing(check, title, _skip_reason(report, ["corruptions"], "no corruption result in the report"))
    loc = found[0]
    t = loc.result.table
    t = t[t["severity"] >= 1] if check.severity is None else t[t["severity"] == check.severity]
    column = "relative_accuracy" if check.relative else "accuracy"
    per = t.groupby("corruption", sort=False)[column].mean()
    if per.empty:
        return _missing(check, title, f"no corruption at severity {check.severity}", loc.anchor)
    value = float(per.mean() if check.aggregate == "mean" else per.min())
    detail = f"over {len(per)} corruptions; worst {per.idxmin()} {per.min():.3f}"
    return [_finding(check, title=title, value=value, evidence=f"{loc.pointer}.table", section=loc.anchor, detail=detail)]


def _eval_perturbation(check: MaxPerturbationFlipRate, report: AuditReport) -> list[Finding]:
    title = f"Decision flips under {check.perturbation} at {check.strength:g}"
    found = _results(report, "robustness", lambda r: _type_name(r) in ("TabularPerturbationResult", "TextRobustnessResult"))
    if not found:
        return _missing(
            check, title, _skip_reason(report, ["tabular_perturbations", "text_robustness"], "no tabular or text perturbation result in the report")
        )
    loc = found[0]
    t = loc.result.table
    rows = t[t["perturbation"] == check.perturbation]
    if "feature" in rows:
        rows = rows[rows["feature"] == "*"]
    x = "strength" if "strength" in rows else "severity"
    value = _interp(rows[x], rows["flip_rate"], check.strength) if len(rows) else None
    if value is None:
        return _missing(check, title, f"no {check.perturbation} perturbation covering strength {check.strength:g} in {loc.result.method}", loc.anchor)
    n = int(rows["n"].iloc[0]) if "n" in rows else 0
    detail = f"{loc.result.method}: {value:.1%} of {n} decisions change"
    return [
        _finding(
            check,
            title=title,
            value=value,
            interval=wilson(value, n),
            evidence=f"{loc.pointer}.table[perturbation={check.perturbation},{x}={check.strength:g}]",
            section=loc.anchor,
            detail=detail,
        )
    ]


def _groupings(result, which) -> list[str]:
    all_ = list(result.groupings)
    if isinstance(which, list):
        return [g for g in all_ if g in which]
    single = [g for g in all_ if " x " not in g]
    return {"single": single, "intersectional": [g for g in all_ if " x " in g], "all": all_}[which]


def _group_results(report: AuditReport, check, title: str) -> tuple[list[_Located], list[Finding]]:
    found = _results(report, "fairness", lambda r: _type_name(r) == "GroupMetricsResult")
    if not found:
        return [], _missing(check, title, _skip_reason(report, ["group_metrics"], "no group metrics in the report"))
    return found, []


def _eval_disparity(check: MaxDisparity, report: AuditReport) -> list[Finding]:
    metric = {"tpr": "TPR", "fpr": "FPR", "fnr": "FNR"}.get(check.metric, check.metric.replace("_", " ").capitalize())
    title = f"{metric} {check.measure.replace('_', ' ')} between groups"
    found, missing = _group_results(report, check, title)
    if missing:
        return missing
    loc = found[0]
    d = loc.result.disparities
    if check.metric not in set(d["metric"]):
        return _missing(
            check, title, f"metric {check.metric!r} is not computed for this {loc.result.task} model (metrics: {', '.join(loc.result.metrics)})", loc.anchor
        )
    out = []
    for grouping in _groupings(loc.result, check.groupings):
        rows = d[(d["grouping"] == grouping) & (d["metric"] == check.metric)]
        evidence = f"{loc.pointer}.disparities[grouping={grouping},metric={check.metric}]"
        if rows.empty or _finite(rows.iloc[0][check.measure]) is None:
            out.append(
                _finding(
                    check,
                    title=title,
                    value=None,
                    subject=grouping,
                    evidence=evidence,
                    section=loc.anchor,
                    reason=f"{grouping}: fewer than two groups with enough rows",
                )
            )
            continue
        r = rows.iloc[0]
        interval = [r[f"{check.measure}_lo"], r[f"{check.measure}_hi"]]
        detail = f"{grouping}: worst {r['worst_group']}, best {r['best_group']}" if isinstance(r["worst_group"], str) else grouping
        out.append(
            _finding(check, title=title, value=r[check.measure], interval=interval, subject=grouping, evidence=evidence, section=loc.anchor, detail=detail)
        )
    return out or _missing(check, title, f"no {check.groupings} groupings in the group metrics", loc.anchor)


def _eval_four_fifths(check: FourFifths, report: AuditReport) -> list[Finding]:
    title = "Four-fifths rule (selection-rate ratio)"
    found, missing = _group_results(report, check, title)
    if missing:
        return missing
    loc = found[0]
    table = loc.result.four_fifths
    if loc.result.task != "binary" or table.empty:
        return _missing(check, title, "selection rates need a binary model (or a favourable class)", loc.anchor)
    out = []
    for grouping in _groupings(loc.result, check.groupings):
        rows = table[table["grouping"] == grouping]
        evidence = f"{loc.pointer}.four_fifths[grouping={grouping}]"
        if rows.empty:
            out.append(
                _finding(
                    check,
                    title=title,
                    value=None,
                    subject=grouping,
                    evidence=evidence,
                    section=loc.anchor,
                    reason=f"{grouping}: fewer than two groups with enough rows",
                )
            )
            continue
        r = rows.iloc[0]
        detail = f"{grouping}: {r['lowest_group']} vs {r['highest_group']}"
        out.append(
            _finding(check, title=title, value=r["ratio"], interval=[r["lo"], r["hi"]], subject=grouping, evidence=evidence, section=loc.anchor, detail=detail)
        )
    return out


def _eval_counterfactual(check: MaxCounterfactualFlipRate, report: AuditReport) -> list[Finding]:
    title = "Counterfactual flip rate"
    found = _results(report, "fairness", lambda r: _type_name(r) == "CounterfactualFlipResult")
    if not found:
        return _missing(check, title, _skip_reason(report, ["counterfactual_flips"], "no counterfactual result in the report"))
    loc = found[0]
    out = []
    for r in loc.result.summary.itertuples():
        detail = f"{r.attribute}: {int(r.flips)} of {int(r.n)} decisions change"
        out.append(
            _finding(
                check,
                title=title,
                value=r.flip_rate,
                interval=[r.lo, r.hi],
                subject=r.attribute,
                evidence=f"{loc.pointer}.summary[attribute={r.attribute}]",
                section=loc.anchor,
                detail=detail,
            )
        )
    return out or _missing(check, title, "no sensitive attribute is a model input", loc.anchor)


def _eval_explanation(check: ExplanationQuality, report: AuditReport) -> list[Finding]:
    title = f"{check.key.replace('_', ' ').capitalize()} ({check.statistic}{', relative' if check.relative else ''})"
    found = _results(report, "explanations", lambda r: fnmatch.fnmatchcase(r.method, check.method) and check.key in r.quality)
    if not found:
        return _missing(check, title, f"no attribution result of {check.method!r} reports quality {check.key!r}")
    out = []
    for loc in found:
        r = loc.result
        values = np.atleast_1d(np.asarray(r.quality[check.key], dtype=np.float64))
        if check.relative:
            if r.outputs is None:
                out.append(
                    _finding(
                        check, title=title, value=None, subject=r.method, evidence="", section=loc.anchor, reason=f"{r.method} stores no outputs to scale by"
                    )
                )
                continue
            scale = np.abs(np.asarray(r.outputs, dtype=np.float64) - (0.0 if r.base_values is None else np.asarray(r.base_values, dtype=np.float64)))
            values = values / np.maximum(scale, 1e-12)
        values = values[np.isfinite(values)]
        value = float(getattr(np, check.statistic)(values)) if values.size else None
        detail = f"{r.method}: {check.statistic} over {values.size} explained samples"
        out.append(
            _finding(check, title=title, value=value, subject=r.method, evidence=f"{loc.pointer}.quality.{check.key}", section=loc.anchor, detail=detail)
        )
    return out


_EVALUATORS = {
    "min_accuracy": _eval_min_accuracy,
    "max_calibration_error": _eval_calibration,
    "min_robust_accuracy": _eval_robust,
    "min_corruption_accuracy": _eval_corruption,
    "max_perturbation_flip_rate": _eval_perturbation,
    "max_disparity": _eval_disparity,
    "four_fifths": _eval_four_fifths,
    "max_counterfactual_flip_rate": _eval_counterfactual,
    "explanation_quality": _eval_explanation,
}


def report_task(report: AuditReport) -> str:
    return "binary" if len(report.data_summary.class_names) == 2 else "multiclass"


def applicable_checks(report: AuditReport, policy: Policy) -> list:
    """The policy's checks that apply to the report's modality and task."""
    modality, task = report.data_summary.modality, report_task(report)
    return [c for c in policy.checks if c.applies(modality, task)]


def evaluate_policy(report: AuditReport, policy: Policy | None = None) -> list[Finding]:
    """Every applicable check of ``policy`` (default: the shipped default policy) as findings."""
    policy = policy or load_policy()
    findings: list[Finding] = []
    for check in applicable_checks(report, policy):
        findings += _EVALUATORS[check.check](check, report)
    return findings


def apply_policy(report: AuditReport, policy: Policy | None = None) -> AuditReport:
    """The report with its findings (re)computed from ``policy``, and the policy recorded beside them."""
    policy = policy or load_policy()
    return replace(report, findings=evaluate_policy(report, policy), policy=policy.model_dump(mode="json", exclude_none=True))
