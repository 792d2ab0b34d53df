"""Audit policies: checks with thresholds, evaluated against a report into findings.

A policy is a YAML file parsed once into typed checks (pydantic; unknown keys and
checks are errors naming the field). ``evaluate_policy(report, policy)`` turns every
check that applies to the report's model into one or more :class:`Finding` s: pass,
warn, fail or not evaluated, with the measured value, the threshold, an interval where
the measurement has one and a pointer to its evidence in the report.

Every check reads the report's measurements (:mod:`audits.checks`): each check type is
a query on measurement names and subjects, and ``check: measurement`` checks any
measurement by ``name`` and a ``subject`` glob, so a new result type needs no policy code.

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

from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from audits.checks import EVALUATORS, located
from audits.checks import result_anchor as result_anchor
from audits.config_files import parse_yaml
from audits.errors import AuditError
from audits.findings import SEVERITY, STATUSES, Finding, Status, overall_verdict, status_counts  # noqa: F401  (re-exported)
from audits.stats import wilson as wilson

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


class MaxNonfiniteOutputs(_Check):
    """Rows of the evaluation data whose model outputs held NaN or infinity (the metrics over them are invalid)."""

    check: Literal["max_nonfinite_outputs"]
    direction: Literal["max"] = "max"
    threshold: float = 0


class MeasurementCheck(_Check):
    """Any measurement of the report: one finding per measurement named ``name`` whose subject matches ``subject``.

    ``subject`` is a glob (``pgd/linf/eps=*``, ``sex``, ``*``; '' for subject-less
    measurements such as ``accuracy``); ``direction`` says whether the value must stay at or
    above (``min``) or at or below (``max``) the threshold.
    """

    check: Literal["measurement"]
    name: str
    subject: str = "*"
    direction: Literal["min", "max"]


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


class MaxSliceErrorExcess(_Check):
    """Slices of the evaluation data (slice discovery) whose error rate exceeds the overall one: one finding per
    significant slice (its excess error rate), or one passing finding when no slice errs significantly more."""

    check: Literal["max_slice_error_excess"]
    direction: Literal["max"] = "max"


class TopFeatures(_Check):
    """Informational: the features that drive the model (mean share of |attribution| over the attribution methods).

    The finding passes and names the ``k`` top features with their shares; it fails only if one
    feature's share exceeds ``threshold`` (default 1: never, the finding informs).
    """

    check: Literal["top_features"]
    direction: Literal["max"] = "max"
    threshold: float = 1.0
    k: Annotated[int, Field(ge=1, le=20)] = 3


Check = Annotated[
    MinAccuracy
    | MaxCalibrationError
    | MinRobustAccuracy
    | MinCorruptionAccuracy
    | MaxPerturbationFlipRate
    | MaxDisparity
    | FourFifths
    | MaxCounterfactualFlipRate
    | ExplanationQuality
    | MaxNonfiniteOutputs
    | MeasurementCheck
    | MaxSliceErrorExcess
    | TopFeatures,
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
        raise PolicyError(f"Policy {source} must be a YAML mapping with a 'checks' list.", fix="See 'Policies' in docs/reports.md.")
    try:
        return Policy.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(policy)'}: {e['msg']}" for e in exc.errors()[:6])
        raise PolicyError(
            f"Policy {source} is invalid: {problems}.",
            fix=f"Correct the named fields; checks are {', '.join(sorted(CHECK_TYPES))} (see 'Policies' in docs/reports.md).",
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
        raw = parse_yaml(path.read_bytes(), source=str(path), error=PolicyError, what="policy file")  # safe, alias-free, size-capped
    except yaml.YAMLError as exc:
        raise PolicyError(f"Policy file {path} is not valid YAML: {exc}", fix="Fix the YAML syntax.") from None
    return parse_policy(raw, source=str(path))


# ---------------------------------------------------------------------------- evaluation


def report_task(report: AuditReport) -> str:
    return "binary" if len(report.data_summary.class_names) == 2 else "multiclass"


def applicable_checks(report: AuditReport, policy: Policy) -> list:
    """The policy's checks that apply to the report's modality and task."""
    modality, task = report.data_summary.modality, report_task(report)
    return [c for c in policy.checks if c.applies(modality, task)]


def evaluate_policy(report: AuditReport, policy: Policy | None = None) -> list[Finding]:
    """Every applicable check of ``policy`` (default: the shipped default policy) as findings."""
    policy = policy or load_policy()
    found = located(report)
    findings: list[Finding] = []
    for check in applicable_checks(report, policy):
        findings += EVALUATORS[check.check](check, report, found)
    return findings


def apply_policy(report: AuditReport, policy: Policy | None = None) -> AuditReport:
    """The report with its findings (re)computed from ``policy``, and the policy recorded beside them."""
    policy = policy or load_policy()
    return replace(report, findings=evaluate_policy(report, policy), policy=policy.model_dump(mode="json", exclude_none=True))
