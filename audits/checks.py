"""Policy checks evaluated on the report's measurements: one small query per check type.

Every check reads :meth:`ProbeResult.measurements` (name, subject, value, interval,
direction, evidence), never a result's tables or its class: a new result type becomes
checkable by yielding measurements, and the generic ``measurement`` check reaches any of
them by name and subject glob. Status rules are in :mod:`audits.policy`'s docstring.
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from audits.findings import Finding
from audits.results.base import Measurement
from audits.stats import wilson

if TYPE_CHECKING:
    from audits.policy import (
        ExplanationQuality,
        FourFifths,
        MaxCalibrationError,
        MaxCounterfactualFlipRate,
        MaxDisparity,
        MaxNonfiniteOutputs,
        MaxPerturbationFlipRate,
        MaxSliceErrorExcess,
        MeasurementCheck,
        MinAccuracy,
        MinCorruptionAccuracy,
        MinRobustAccuracy,
        TopFeatures,
        _Check,
    )
    from audits.report import AuditReport

# Subjects of untargeted attack measurements: ``pgd/linf/eps=0.0313725``.
_ATTACK = re.compile(r"^(?P<method>[^/]+)/(?P<norm>[^/]+)/eps=(?P<eps>[^/]+)$")
# Subjects of whole-input perturbations: ``noise/strength=0.5`` (per-feature ones have a third part).
_PERTURBATION = re.compile(r"^(?P<kind>[^/]+)/strength=(?P<x>[^/]+)$")
_CORRUPTION = re.compile(r"^(?P<corruption>[^/]+)/severity=(?P<severity>\d+)$")


def result_anchor(kind: str, index: int, method: str) -> str:
    """The HTML/PDF anchor of a result's section (``robustness-1-pgd``)."""
    return f"{kind}-{index}-{method}".replace("_", "-")


@dataclass(frozen=True)
class Located:
    """A measurement with where its result sits: ``pointer`` (``robustness[1]``), section anchor and method."""

    m: Measurement
    pointer: str
    anchor: str
    method: str


def located(report: AuditReport) -> list[Located]:
    """Every measurement of the report, with its result's location (evidence prefixed with it)."""
    from audits.report import RESULT_KINDS

    out = [Located(_prefixed(m, "performance"), "performance", "performance", "performance") for m in report.performance.measurements()]
    for kind in RESULT_KINDS:
        for i, result in enumerate(getattr(report, kind)):
            pointer, anchor = f"{kind}[{i}]", result_anchor(kind, i, result.method)
            out += [Located(_prefixed(m, pointer), pointer, anchor, result.method) for m in result.measurements()]
    return out


def _prefixed(m: Measurement, pointer: str) -> Measurement:
    return replace(m, evidence=f"{pointer}{m.evidence}")


def query(found: Iterable[Located], name: str, subject: str | None = None) -> list[Located]:
    """Measurements named ``name`` whose subject matches the glob ``subject`` (None: any)."""
    return [x for x in found if x.m.name == name and (subject is None or fnmatch.fnmatchcase(x.m.subject, subject))]


def first_result(found: list[Located]) -> list[Located]:
    """The measurements of the first result among ``found`` (checks that read one result, as before)."""
    return [x for x in found if x.pointer == found[0].pointer] if found else []


# ---------------------------------------------------------------------------- findings


def _finite(v) -> float | None:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _status(check: _Check, value: float | None, interval: list[float] | None) -> tuple[str, str]:
    """Status and a short reason, by the rules in the policy module's docstring."""
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


def finding(
    check: _Check, *, title: str, value, interval=None, evidence: str = "", section: str = "", subject: str = "", detail: str = "", reason: str = ""
) -> Finding:
    """One finding of ``check``: its status from the value and interval, or not evaluated with ``reason``."""
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


def missing(check: _Check, title: str, reason: str, section: str = "", subject: str = "") -> list[Finding]:
    return [finding(check, title=title, value=None, section=section, subject=subject, reason=reason)]


def absent(report: AuditReport, what: str) -> str:
    """Why the report holds no ``what``: names the probes that were skipped or failed in this audit, if any."""
    by_reason: dict[str, list[str]] = {}
    for s in report.skipped:  # probes skipped for one reason are named together (a predictions card skips ten at once)
        by_reason.setdefault(s.reason, []).append(s.name)
    notes = [f"{', '.join(names)} {'was' if len(names) == 1 else 'were'} skipped: {reason}" for reason, names in by_reason.items()]
    notes += [f"{f.name} failed: {f.error}" for f in report.failures]
    return f"no {what} in the report" + (f" ({'; '.join(notes)})" if notes else "")


def from_measurement(
    check: _Check, x: Located, *, title: str, detail: str = "", reason: str = "", value=..., interval=..., evidence: str | None = None
) -> Finding:
    """The finding of one measurement (``value``/``interval`` override the measurement's, e.g. for relative checks)."""
    return finding(
        check,
        title=title,
        value=x.m.value if value is ... else value,
        interval=x.m.interval if interval is ... else interval,
        subject=x.m.subject,
        evidence=x.m.evidence if evidence is None else evidence,
        section=x.anchor,
        detail=detail,
        reason=reason,
    )


def _interp(points: list[tuple[float, float]], x: float) -> float | None:
    """Linear interpolation of y at x inside the sampled range (None outside it)."""
    pts = sorted((a, b) for a, b in points if math.isfinite(a) and b is not None and math.isfinite(b))
    if not pts or x < pts[0][0] - 1e-12 or x > pts[-1][0] + 1e-12:
        return None
    xs, ys = zip(*pts, strict=True)
    return float(np.interp(x, xs, ys))


def _invalid(report: AuditReport) -> str:
    rows = getattr(report.performance, "nonfinite_rows", 0)
    return f"invalid: {rows:,} of {report.performance.n:,} rows gave non-finite outputs" if rows else ""


# ---------------------------------------------------------------------------- one function per check type


def eval_min_accuracy(check: MinAccuracy, report: AuditReport, found: list[Located]) -> list[Finding]:
    label = check.metric.replace("_", " ")
    (x,) = query(found, check.metric, "")
    return [from_measurement(check, x, title=label.capitalize(), detail=f"{label} on {x.m.n:,} rows", reason=_invalid(report))]


def eval_calibration(check: MaxCalibrationError, report: AuditReport, found: list[Located]) -> list[Finding]:
    (x,) = query(found, "ece", "")
    conf, acc = (query(found, name, "")[0].m.value for name in ("mean_confidence", "accuracy"))
    detail = f"mean confidence {conf:.3f} vs accuracy {acc:.3f}" if conf is not None and acc is not None else ""
    return [from_measurement(check, x, title="Expected calibration error", detail=detail, reason=_invalid(report))]


def eval_nonfinite(check: MaxNonfiniteOutputs, report: AuditReport, found: list[Located]) -> list[Finding]:
    (x,) = query(found, "nonfinite_output_rows", "")
    detail = f"{int(x.m.value or 0):,} of {x.m.n:,} rows gave non-finite outputs (NaN or infinity)"
    return [from_measurement(check, x, title="Rows with non-finite model outputs", detail=detail)]


def eval_robust(check: MinRobustAccuracy, report: AuditReport, found: list[Located]) -> list[Finding]:
    """The attack's robust accuracy interpolated at the check's epsilon; 'strongest' is the minimum over every attack."""
    title = f"Robust accuracy at {check.norm} epsilon {check.epsilon:.4g}"
    curves: dict[str, list[tuple[float, Located]]] = {}
    for x in query(found, "robust_accuracy"):
        parts = _ATTACK.match(x.m.subject)
        if parts and parts["norm"] == check.norm and (check.attack == "strongest" or parts["method"] == check.attack):
            curves.setdefault(x.pointer, []).append((float(parts["eps"]), x))
    if not curves:
        return missing(check, title, absent(report, f"robust accuracy of an untargeted {check.norm} attack ({check.attack})"))
    best = None
    for points in curves.values():
        value = _interp([(eps, x.m.value) for eps, x in points], check.epsilon)
        if value is not None and (best is None or value < best[0]):
            best = (value, points[0][1])
    if best is None:
        return missing(check, title, f"epsilon {check.epsilon:g} lies outside the attacks' sweeps", next(iter(curves.values()))[0][1].anchor)
    value, x = best
    n = x.m.n or 0
    method = x.method
    clean = next((c.m.value for c in query(found, "clean_accuracy") if c.pointer == x.pointer), None)
    interval = wilson(value, n)
    detail = f"{method}: {value:.3f} under attack vs {clean if clean is None else format(clean, '.3f')} clean on {n} rows"
    if check.relative:
        interval = None if interval is None or not clean else [v / clean for v in interval]
        value = value / clean if clean else None
        detail = f"{method}: robust / clean accuracy; " + detail
    return [
        finding(
            check,
            title=title,
            value=value,
            interval=interval,
            # 'strongest' keeps one subject: which attack is lowest can change with the seed when two tie
            # (PGD and AutoAttack on digits-cnn), and the finding must not move with it; the detail names it.
            subject="strongest" if check.attack == "strongest" else method,
            evidence=f"{x.pointer}.curve[epsilon={check.epsilon:g}]",
            section=x.anchor,
            detail=detail,
        )
    ]


def eval_corruption(check: MinCorruptionAccuracy, report: AuditReport, found: list[Located]) -> list[Finding]:
    what = "relative " if check.relative else ""
    title = f"{check.aggregate.capitalize()} {what}corruption accuracy" + (f" at severity {check.severity}" if check.severity else "")
    cells = first_result(query(found, "corruption_accuracy"))
    if not cells:
        return missing(check, title, absent(report, "corruption accuracy"))
    x0 = cells[0]
    clean = next((c.m.value for c in query(found, "clean_accuracy") if c.pointer == x0.pointer), None)
    per: dict[str, list[float]] = {}
    for x in cells:
        parts = _CORRUPTION.match(x.m.subject)
        severity = int(parts["severity"]) if parts else 0
        if parts and x.m.value is not None and (severity >= 1 if check.severity is None else severity == check.severity):
            value = x.m.value if not check.relative else x.m.value / clean if clean else math.nan
            per.setdefault(parts["corruption"], []).append(value)
    means = {c: float(np.mean(v)) for c, v in per.items()}
    if not means:
        return missing(check, title, f"no corruption at severity {check.severity}", x0.anchor)
    worst = min(means, key=means.get)
    value = float(np.mean(list(means.values())) if check.aggregate == "mean" else means[worst])
    detail = f"over {len(means)} corruptions; worst {worst} {means[worst]:.3f}"
    return [finding(check, title=title, value=value, evidence=f"{x0.pointer}.table", section=x0.anchor, detail=detail)]


def eval_perturbation(check: MaxPerturbationFlipRate, report: AuditReport, found: list[Located]) -> list[Finding]:
    title = f"Decision flips under {check.perturbation} at {check.strength:g}"
    flips = first_result(query(found, "flip_rate"))
    if not flips:
        return missing(check, title, absent(report, "tabular or text perturbation result"))
    x0 = flips[0]
    points = [(float(p["x"]), x) for x in flips if (p := _PERTURBATION.match(x.m.subject)) and p["kind"] == check.perturbation]
    value = _interp([(s, x.m.value) for s, x in points], check.strength)
    if value is None:
        return missing(check, title, f"no {check.perturbation} perturbation covering strength {check.strength:g} in {x0.method}", x0.anchor)
    n = points[0][1].m.n or 0
    # The table's own column name for the strength (text results call it severity).
    column = re.search(r",(\w+)=[^,\]]*\]$", points[0][1].m.evidence)
    column = column[1] if column else "strength"
    evidence = f"{x0.pointer}.table[perturbation={check.perturbation},{column}={check.strength:g}]"
    return [
        finding(
            check,
            title=title,
            value=value,
            interval=wilson(value, n),
            evidence=evidence,
            section=x0.anchor,
            detail=f"{x0.method}: {value:.1%} of {n} decisions change",
        )
    ]


def _groupings(subjects: list[str], which) -> list[str]:
    if isinstance(which, list):
        return [g for g in subjects if g in which]
    return {"single": [g for g in subjects if " x " not in g], "intersectional": [g for g in subjects if " x " in g], "all": subjects}[which]


def _extremes(found: list[Located], name: str, grouping: str) -> str:
    """The worst- and best-off group of a per-group measurement within one grouping (lowest and highest without a direction)."""
    rows = [x for x in query(found, name) if x.m.subject.split("=", 1)[0] == grouping and x.m.value is not None]
    if len(rows) < 2:
        return grouping
    groups = sorted((x.m.value, x.m.subject.split("=", 1)[1]) for x in rows)
    (lo, lo_g), (hi, hi_g) = groups[0], groups[-1]
    direction = rows[0].m.direction
    if direction == "neutral":
        return f"{grouping}: lowest {lo_g} {lo:.3f}, highest {hi_g} {hi:.3f}"
    (w, w_g), (b, b_g) = ((lo, lo_g), (hi, hi_g)) if direction == "higher_is_better" else ((hi, hi_g), (lo, lo_g))
    return f"{grouping}: worst {w_g} {w:.3f}, best {b_g} {b:.3f}"


def _group_metric_names(found: list[Located]) -> list[str]:
    return sorted({x.m.name.removesuffix("_difference") for x in found if x.m.name.endswith("_difference") and not x.m.name.startswith("heldout_")})


def eval_disparity(check: MaxDisparity, report: AuditReport, found: list[Located]) -> list[Finding]:
    metric = {"tpr": "TPR", "fpr": "FPR", "fnr": "FNR"}.get(check.metric, check.metric.replace("_", " ").capitalize())
    title = f"{metric} {check.measure.replace('_', ' ')} between groups"
    rows = first_result(query(found, f"{check.metric}_{check.measure}"))
    if not rows:
        metrics = _group_metric_names(found)
        if metrics:
            return missing(check, title, f"metric {check.metric!r} is not computed for this model (metrics: {', '.join(metrics)})")
        return missing(check, title, absent(report, "group metrics"))
    out = []
    for grouping in _groupings([x.m.subject for x in rows], check.groupings):
        x = next(r for r in rows if r.m.subject == grouping)
        detail = _extremes(found, f"group_{check.metric}", grouping)
        out.append(from_measurement(check, x, title=title, detail=detail, reason=f"{grouping}: fewer than two groups with enough rows"))
    return out or missing(check, title, f"no {check.groupings} groupings in the group metrics", rows[0].anchor)


def eval_four_fifths(check: FourFifths, report: AuditReport, found: list[Located]) -> list[Finding]:
    title = "Four-fifths rule (selection-rate ratio)"
    rows = first_result(query(found, "four_fifths_ratio"))
    if not rows:
        if _group_metric_names(found):
            return missing(check, title, "selection rates need a binary model (or a favourable class)")
        return missing(check, title, absent(report, "group metrics"))
    out = []
    for grouping in _groupings([x.m.subject for x in rows], check.groupings):
        x = next(r for r in rows if r.m.subject == grouping)
        detail = _extremes(found, "group_selection_rate", grouping)
        out.append(from_measurement(check, x, title=title, detail=detail, reason=f"{grouping}: fewer than two groups with enough rows"))
    return out


def eval_counterfactual(check: MaxCounterfactualFlipRate, report: AuditReport, found: list[Located]) -> list[Finding]:
    title = "Counterfactual flip rate"
    rows = [x for x in first_result(query(found, "counterfactual_flip_rate")) if "=" not in x.m.subject]
    if not rows:
        return missing(check, title, absent(report, "counterfactual flip rate (no sensitive attribute is a model input, or the probe did not run)"))
    out = []
    for x in rows:
        flips = "-" if x.m.value is None else f"{round(x.m.value * (x.m.n or 0)):,}"
        out.append(from_measurement(check, x, title=title, detail=f"{x.m.subject}: {flips} of {x.m.n:,} decisions change"))
    return out


def eval_explanation(check: ExplanationQuality, report: AuditReport, found: list[Located]) -> list[Finding]:
    title = f"{check.key.replace('_', ' ').capitalize()} ({check.statistic}{', relative' if check.relative else ''})"
    name = f"{'relative_' if check.relative else ''}{check.key}_{check.statistic}"
    rows = query(found, name, check.method)
    if not rows:
        return missing(
            check, title, f"no attribution result of {check.method!r} reports quality {check.key!r}" + (" with outputs to scale by" if check.relative else "")
        )
    return [from_measurement(check, x, title=title, detail=f"{x.m.subject}: {check.statistic} over {x.m.n} explained samples") for x in rows]


def eval_measurement(check: MeasurementCheck, report: AuditReport, found: list[Located]) -> list[Finding]:
    """The generic check: one finding per measurement named ``check.name`` whose subject matches ``check.subject``."""
    title = check.name.replace("_", " ").capitalize()
    rows = query(found, check.name, check.subject)
    if not rows:
        return missing(check, title, absent(report, f"measurement {check.name!r} with subject {check.subject!r}"))
    return [
        from_measurement(check, x, title=title, detail=f"{x.method}: {check.name}" + (f" on {x.m.n:,} rows" if x.m.n else ""), reason=f"{x.m.key} has no value")
        for x in rows
    ]


def eval_slices(check: MaxSliceErrorExcess, report: AuditReport, found: list[Located]) -> list[Finding]:
    """One finding per significant slice; one passing finding (the worst excess, 0) when none is significant."""
    title = "Slice with a high error rate"
    (worst,) = first_result(query(found, "worst_slice_error_excess", "")) or (None,)
    if worst is None:
        return missing(check, title, absent(report, "slice discovery"))
    rows = [x for x in query(found, "slice_error_excess") if x.pointer == worst.pointer]
    if not rows:
        return [from_measurement(check, worst, title=title, detail="no slice of the evaluation data errs significantly more than overall (Benjamini-Hochberg, every column and pair)")]
    return [
        from_measurement(
            check, x, title=title,
            detail=f"{x.m.subject}: {x.m.n:,} rows err {x.m.value:+.1%} more often than overall; look at these rows, "
            "collect or reweight data like them, or state the limitation",
        )  # fmt: skip
        for x in rows
    ]


def eval_top_features(check: TopFeatures, report: AuditReport, found: list[Located]) -> list[Finding]:
    """Informational: the features with the largest mean share of |attribution| over the methods."""
    title = "Features that drive the model"
    rows = query(found, "feature_importance_share")
    if not rows:
        return missing(check, title, absent(report, "per-feature attributions (tabular models)"))
    shares: dict[str, list[float]] = {}
    for x in rows:
        if x.m.value is not None:
            shares.setdefault(x.m.subject.split("/", 1)[1], []).append(x.m.value)
    mean = sorted(((float(np.mean(v)), f) for f, v in shares.items()), reverse=True)
    if not mean:
        return missing(check, title, "the attribution methods gave no finite importances")
    methods = sorted({x.method for x in rows})
    named = ", ".join(f"{f} ({s:.0%})" for s, f in mean[: check.k])
    detail = f"mean share of |attribution| over {', '.join(methods)}: {named}; check that these are features the model should rely on"
    # No subject: the finding's identity must not change when two features swap places.
    return [finding(check, title=title, value=mean[0][0], evidence=rows[0].m.evidence, section=rows[0].anchor, detail=detail)]


EVALUATORS: dict[str, Callable[..., list[Finding]]] = {
    "min_accuracy": eval_min_accuracy,
    "max_calibration_error": eval_calibration,
    "max_nonfinite_outputs": eval_nonfinite,
    "min_robust_accuracy": eval_robust,
    "min_corruption_accuracy": eval_corruption,
    "max_perturbation_flip_rate": eval_perturbation,
    "max_disparity": eval_disparity,
    "four_fifths": eval_four_fifths,
    "max_counterfactual_flip_rate": eval_counterfactual,
    "explanation_quality": eval_explanation,
    "measurement": eval_measurement,
    "max_slice_error_excess": eval_slices,
    "top_features": eval_top_features,
}
