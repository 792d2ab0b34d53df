"""Explanation trust: faithfulness, randomization sanity, stability and sparseness of every attribution map."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from audits.results.base import Direction, Measurement, ProbeResult, finite
from audits.serialization import serializable

Status = Literal["pass", "warn", "fail", "not_evaluated"]
# Per-sample metrics: which way is better (the measurement of each is its mean over samples).
METRIC_DIRECTION: dict[str, Direction] = {
    "deletion_score": "higher_is_better",
    "insertion_score": "higher_is_better",
    "deletion_auc": "lower_is_better",
    "insertion_auc": "higher_is_better",
    "faithfulness_correlation": "higher_is_better",
    "model_randomization_similarity": "lower_is_better",
    "random_logit_similarity": "lower_is_better",
    "stability_max_change": "lower_is_better",
    "stability_mean_change": "lower_is_better",
    "sparseness": "neutral",
    "deletion_gain": "higher_is_better",
    "deletion_span": "neutral",
}
# The three properties a verdict rests on: the measurement each reads and which way it must stay.
PROPERTIES: dict[str, tuple[str, Literal["min", "max"]]] = {
    "faithfulness": ("trust_faithfulness", "min"),
    "randomization": ("trust_randomization_similarity", "max"),
    "stability": ("trust_stability_change", "max"),
}
# Default thresholds (fail, warn); audits/policies/trust.yaml checks the same measurements with the same numbers.
DEFAULT_THRESHOLDS: dict[str, tuple[float, float]] = {"faithfulness": (0.0, 0.12), "randomization": (0.8, 0.5), "stability": (1.0, 0.4)}
# Below this Cohen's kappa (predictions against labels) the model has learned no decision worth explaining.
MIN_MODEL_SKILL = 0.2
_WORDS: dict[str, dict[str, str]] = {
    "faithfulness": {"pass": "faithful", "warn": "only weakly faithful", "fail": "less faithful than a random ordering"},
    "randomization": {
        "pass": "sensitive to the model's weights",
        "warn": "partly insensitive to the model's weights",
        "fail": "insensitive to the model's weights",
    },
    "stability": {"pass": "stable under small noise", "warn": "somewhat unstable under small noise", "fail": "unstable under small noise"},
}


def _mean(values: np.ndarray | None) -> float | None:
    if values is None:
        return None
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    return finite(v.mean()) if v.size else None


def grade(value: float | None, fail: float, warn: float, direction: Literal["min", "max"], interval: list[float] | None = None) -> Status:
    """pass / warn / fail of ``value`` against a fail threshold and a warning band, by the policy's rule:
    fail beyond the threshold, warn in the warning band or when the interval reaches the threshold."""
    if value is None:
        return "not_evaluated"
    sign = 1.0 if direction == "min" else -1.0
    if sign * (value - fail) < 0:
        return "fail"
    if sign * (value - warn) < 0:
        return "warn"
    if interval is not None and sign * ((min(interval) if sign > 0 else max(interval)) - fail) < 0:
        return "warn"
    return "pass"


def cohen_kappa(predicted: np.ndarray, labels: np.ndarray) -> tuple[float, list[float]] | None:
    """Cohen's kappa of predictions against labels (0 = chance agreement given both marginals) and its
    large-sample 95% interval; None without rows."""
    predicted, labels = np.asarray(predicted).ravel(), np.asarray(labels).ravel()
    n = len(labels)
    if n == 0:
        return None
    classes = np.union1d(predicted, labels)
    p_o = float(np.mean(predicted == labels))
    p_e = float(sum(np.mean(predicted == c) * np.mean(labels == c) for c in classes))
    if p_e >= 1.0:
        return 0.0, [0.0, 0.0]
    kappa = (p_o - p_e) / (1.0 - p_e)
    half = 1.96 * np.sqrt(max(p_o * (1.0 - p_o), 0.0) / n) / (1.0 - p_e)
    return float(kappa), [float(kappa - half), float(kappa + half)]


@serializable
@dataclass(frozen=True, kw_only=True)
class TrustResult(ProbeResult):
    """How far each attribution method's maps can be trusted, per explained sample.

    ``metrics[method][name]`` holds one value per scored sample (``METRIC_DIRECTION`` lists
    the names): deletion/insertion AUC of the target's probability and their gain over random
    orderings as a share of |p(input) - p(baseline)| (``*_score``: 0 = random), faithfulness
    correlation (Pearson of attribution sums and logit drops over random feature subsets),
    Spearman similarity of |map| after randomizing every layer (``model_randomization``) and for
    a random other class (``random_logit``), the relative change of the map under small input
    noise (worst and mean over draws) and the Gini sparseness of |map|.
    ``cascade[method]`` (stages, samples) is the similarity after randomizing the top 1, 2, ...
    layer groups (top-down cascade; the last stage is every layer, the one-shot value).
    ``deletion_curves[method]`` (samples, steps + 1) the mean-normalised deletion curve;
    ``costs[method]`` [model calls, rows] spent scoring it (deterministic, unlike seconds) and
    ``map_costs[method]`` the same for the map itself.
    """

    methods: list[str]
    features: str
    metrics: dict[str, dict[str, np.ndarray]]
    cascade: dict[str, np.ndarray] = field(default_factory=dict)
    cascade_layers: list[list[str]] = field(default_factory=list)
    deletion_curves: dict[str, np.ndarray] = field(default_factory=dict)
    costs: dict[str, list[int]] = field(default_factory=dict)
    map_costs: dict[str, list[int]] = field(default_factory=dict)
    thresholds: dict[str, list[float]] = field(default_factory=lambda: {k: list(v) for k, v in DEFAULT_THRESHOLDS.items()})
    intervals: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    model_skill: float | None = None
    model_skill_interval: list[float] | None = None
    notes: list[str] = field(default_factory=list)

    def mean(self, method: str, name: str) -> float | None:
        """Mean over samples of one metric (None when not computed or all NaN)."""
        return _mean(self.metrics.get(method, {}).get(name))

    def property_value(self, method: str, prop: str) -> float | None:
        """The number a property is judged on: the pooled deletion gain (the samples' gains over random
        orderings summed, as a share of their summed output ranges), the mean over samples of the
        randomization similarities (model randomization and random logit, averaged per sample), the
        mean worst-case change under noise."""
        return property_values(self.metrics.get(method, {}), prop)

    def interval(self, method: str, prop: str) -> list[float] | None:
        """The 95% bootstrap interval (over the scored samples) of a property value, where computed."""
        return self.intervals.get(method, {}).get(prop)

    @property
    def model_learned(self) -> bool | None:
        """Whether the model's predictions agree with the labels beyond chance (kappa at least
        ``MIN_MODEL_SKILL``); None where there were no labels."""
        return None if self.model_skill is None else self.model_skill >= MIN_MODEL_SKILL

    def verdict(self, method: str) -> dict[str, Status]:
        """pass / warn / fail per property with this result's thresholds (the policy's rule, with the interval)."""
        return {p: grade(self.property_value(method, p), *self.thresholds[p], PROPERTIES[p][1], self.interval(method, p)) for p in PROPERTIES}

    def score(self, method: str) -> float | None:
        """Share of the possible verdict points (pass 2, warn 1, fail 0) over the evaluated properties;
        0 when the model predicts no better than chance: its maps, faithful or not, explain no learned decision."""
        points = [{"pass": 2, "warn": 1, "fail": 0}[s] for s in self.verdict(method).values() if s != "not_evaluated"]
        if not points:
            return None
        return 0.0 if self.model_learned is False else sum(points) / (2 * len(points))

    def reason(self, method: str) -> str:
        """One line on why: the good properties, then 'but' and the bad ones (and the model gate first)."""
        line = self._property_reason(method)
        if self.model_learned is False:
            return f"Not trusted: the model predicts at chance level (Cohen's kappa {self.model_skill:.2f}), so no map explains a learned decision; {line[:1].lower()}{line[1:]}"
        return line

    def _property_reason(self, method: str) -> str:
        verdict = self.verdict(method)
        good = [_WORDS[p][s] for p, s in verdict.items() if s == "pass"]
        bad = [_WORDS[p][s] for p, s in verdict.items() if s in ("warn", "fail")]
        missing = [p for p, s in verdict.items() if s == "not_evaluated"]
        line = ", ".join(good)
        if bad:
            line = f"{line} but {', '.join(bad)}" if line else ", ".join(bad)
        if missing:
            line += f" ({', '.join(missing)} not evaluated)"
        return line[:1].upper() + line[1:] if line else "Not evaluated"

    def headline(self) -> str:
        parts = [f"{m}: {'/'.join(s[0].upper() for s in self.verdict(m).values())}" for m in self.methods]
        return "trust (faithfulness/randomization/stability): " + ", ".join(parts)

    def measurements(self) -> Iterator[Measurement]:
        """Per method (the subject): the three property values the verdict rests on, the trust
        score, and the mean of every per-sample metric as ``trust_<metric>``; once, the model's
        skill (Cohen's kappa) the trust score is gated on."""
        if self.model_skill is not None:
            yield Measurement(
                name="trust_model_skill", value=self.model_skill, interval=self.model_skill_interval, direction="higher_is_better", evidence=".model_skill"
            )
        for method in self.methods:
            n = len(next(iter(self.metrics.get(method, {}).values()), []))
            for prop, (name, way) in PROPERTIES.items():
                yield Measurement(
                    name=name,
                    subject=method,
                    value=self.property_value(method, prop),
                    interval=self.interval(method, prop),
                    direction="higher_is_better" if way == "min" else "lower_is_better",
                    evidence=f".metrics.{method}",
                    n=n,
                )
            yield Measurement(name="trust_score", subject=method, value=self.score(method), direction="higher_is_better", evidence=f".metrics.{method}", n=n)
            for metric, values in self.metrics.get(method, {}).items():
                yield Measurement(
                    name=f"trust_{metric}",
                    subject=method,
                    value=_mean(values),
                    direction=METRIC_DIRECTION.get(metric, "neutral"),
                    evidence=f".metrics.{method}.{metric}",
                    n=int(np.isfinite(np.asarray(values, dtype=np.float64)).sum()),
                )


def property_terms(metrics: dict[str, np.ndarray], prop: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-sample numerator and denominator of a property value (value = sum of one / sum of the other,
    over the samples where both are finite): deletion gains and output ranges for faithfulness (a pooled
    share), the per-sample mean of the randomization similarities, or the worst change under noise, over 1."""

    def get(name: str) -> np.ndarray | None:
        v = metrics.get(name)
        return None if v is None else np.asarray(v, dtype=np.float64)

    if prop == "faithfulness":
        gain, span = get("deletion_gain"), get("deletion_span")
        if gain is not None and span is not None:
            return gain, span
        score = get("deletion_score")  # results stored before pooled gains: the mean of per-sample shares
        return None if score is None else (score, np.ones_like(score))
    if prop == "randomization":
        sims = [v for v in (get("model_randomization_similarity"), get("random_logit_similarity")) if v is not None]
        if not sims or not min(len(v) for v in sims):
            return None
        stack = np.stack([v[: min(len(v) for v in sims)] for v in sims])
        counts = np.isfinite(stack).sum(axis=0)
        per_sample = np.where(counts > 0, np.where(np.isfinite(stack), stack, 0.0).sum(axis=0) / np.maximum(counts, 1), np.nan)
        return per_sample, np.ones_like(per_sample)
    change = get("stability_max_change")
    return None if change is None else (change, np.ones_like(change))


def property_values(metrics: dict[str, np.ndarray], prop: str) -> float | None:
    """A property's value from per-sample metrics (None when not computed)."""
    terms = property_terms(metrics, prop)
    if terms is None:
        return None
    num, den = terms
    ok = np.isfinite(num) & np.isfinite(den)
    return finite(num[ok].sum() / den[ok].sum()) if ok.any() and den[ok].sum() > 0 else None


def bootstrap_interval(metrics: dict[str, np.ndarray], prop: str, rng: np.random.Generator, n_boot: int) -> list[float] | None:
    """95% percentile-bootstrap interval of a property value, resampling the samples it rests on."""
    terms = property_terms(metrics, prop)
    if terms is None or len(terms[0]) < 2:
        return None
    num, den = terms
    ok = np.isfinite(num) & np.isfinite(den)
    num, den = np.where(ok, num, 0.0), np.where(ok, den, 0.0)
    draws = rng.integers(0, len(num), size=(n_boot, len(num)))
    tops, bottoms = num[draws].sum(axis=1), den[draws].sum(axis=1)
    boot = tops[bottoms > 0] / bottoms[bottoms > 0]
    return [float(np.quantile(boot, 0.025)), float(np.quantile(boot, 0.975))] if len(boot) else None
