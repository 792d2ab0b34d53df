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
}
# The three properties a verdict rests on: the measurement each reads and which way it must stay.
PROPERTIES: dict[str, tuple[str, Literal["min", "max"]]] = {
    "faithfulness": ("trust_faithfulness", "min"),
    "randomization": ("trust_randomization_similarity", "max"),
    "stability": ("trust_stability_change", "max"),
}
# Default thresholds (fail, warn); the default policy checks the same measurements with the same numbers.
DEFAULT_THRESHOLDS: dict[str, tuple[float, float]] = {"faithfulness": (0.05, 0.15), "randomization": (0.8, 0.5), "stability": (1.0, 0.5)}
_WORDS: dict[str, dict[str, str]] = {
    "faithfulness": {"pass": "faithful", "warn": "only weakly faithful", "fail": "no more faithful than a random ordering"},
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


def grade(value: float | None, fail: float, warn: float, direction: Literal["min", "max"]) -> Status:
    """pass / warn / fail of ``value`` against a fail threshold and a warning band."""
    if value is None:
        return "not_evaluated"
    if direction == "min":
        return "fail" if value < fail else "warn" if value < warn else "pass"
    return "fail" if value > fail else "warn" if value > warn else "pass"


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
    notes: list[str] = field(default_factory=list)

    def mean(self, method: str, name: str) -> float | None:
        """Mean over samples of one metric (None when not computed or all NaN)."""
        return _mean(self.metrics.get(method, {}).get(name))

    def property_value(self, method: str, prop: str) -> float | None:
        """The number a property is judged on: mean deletion score, the larger of the two
        randomization similarities, the mean worst-case change under noise."""
        if prop == "faithfulness":
            return self.mean(method, "deletion_score")
        if prop == "randomization":
            values = [v for v in (self.mean(method, "model_randomization_similarity"), self.mean(method, "random_logit_similarity")) if v is not None]
            return max(values) if values else None
        return self.mean(method, "stability_max_change")

    def verdict(self, method: str) -> dict[str, Status]:
        """pass / warn / fail per property with this result's thresholds."""
        return {p: grade(self.property_value(method, p), *self.thresholds[p], PROPERTIES[p][1]) for p in PROPERTIES}

    def score(self, method: str) -> float | None:
        """Share of the possible verdict points (pass 2, warn 1, fail 0) over the evaluated properties."""
        points = [{"pass": 2, "warn": 1, "fail": 0}[s] for s in self.verdict(method).values() if s != "not_evaluated"]
        return sum(points) / (2 * len(points)) if points else None

    def reason(self, method: str) -> str:
        """One line on why: the good properties, then 'but' and the bad ones."""
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
        score, and the mean of every per-sample metric as ``trust_<metric>``."""
        for method in self.methods:
            n = len(next(iter(self.metrics.get(method, {}).values()), []))
            for prop, (name, way) in PROPERTIES.items():
                yield Measurement(
                    name=name,
                    subject=method,
                    value=self.property_value(method, prop),
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
