"""Concept tests (TCAV) and feature visualization: what a network's internal directions and units respond to."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from audits.results.base import Measurement, ProbeResult, bounds, finite
from audits.serialization import serializable


@serializable
@dataclass(frozen=True, kw_only=True)
class TCAVResult(ProbeResult):
    """Testing with Concept Activation Vectors (Kim et al., 2018) at one layer.

    ``concepts[c]`` names concept ``c`` (``site=C``, or a file's stem), ``concept_sources[c]``
    where its examples came from (``attribute`` or a path) and ``sensitive[c]`` whether it is a
    value of a sensitive attribute. ``scores`` (concepts, classes, runs) holds the TCAV score of
    every run: the share of the class's evaluation rows whose class logit rises along the run's
    concept activation vector (CAV; a linear classifier of the concept's layer activations
    against a fresh random set of rows). ``random_scores`` (classes, runs) the same for CAVs of
    random rows against random rows, the null. ``p_values`` (concepts, classes) the two-sided
    Welch t-test of a concept's run scores against the random ones, ``significant`` whether it
    stays below ``alpha`` after Bonferroni over every concept and class (as in the paper).
    ``cav_accuracy`` (concepts, runs) each CAV's accuracy on held-out examples (0.5: the layer
    does not separate the concept from random rows). ``class_rows[k]`` the rows scored per class.
    """

    layer: str
    concepts: list[str]
    concept_sources: list[str]
    sensitive: list[bool]
    n_examples: list[int]
    class_names: list[str]
    class_rows: np.ndarray
    scores: np.ndarray
    random_scores: np.ndarray
    p_values: np.ndarray
    significant: np.ndarray
    cav_accuracy: np.ndarray
    alpha: float = 0.05
    notes: list[str] = field(default_factory=list)

    def mean_scores(self) -> np.ndarray:
        """(concepts, classes): the TCAV score averaged over runs."""
        return np.asarray(self.scores, dtype=np.float64).mean(axis=2)

    def random_mean(self) -> np.ndarray:
        """(classes,): the random CAVs' mean TCAV score per class."""
        return np.asarray(self.random_scores, dtype=np.float64).mean(axis=1)

    def raises(self) -> np.ndarray:
        """(concepts, classes): significant and above the random score (moving towards the concept raises the class)."""
        return np.asarray(self.significant, dtype=bool) & (self.mean_scores() > self.random_mean()[None, :])

    def excess(self) -> np.ndarray:
        """(concepts, classes): |concept score - random score| where the test is significant, else 0."""
        diff = np.abs(self.mean_scores() - self.random_mean()[None, :])
        return np.where(np.asarray(self.significant, dtype=bool), diff, 0.0)

    def headline(self) -> str:
        sig = np.asarray(self.significant, dtype=bool)
        pairs = [f"{self.concepts[c]} -> {self.class_names[k]}" for c, k in zip(*np.nonzero(sig), strict=True)]
        return f"TCAV at {self.layer}: {len(self.concepts)} concepts x {len(self.class_names)} classes; " + (
            f"significant: {', '.join(pairs[:6])}" + (" ..." if len(pairs) > 6 else "") if pairs else "no concept significant"
        )

    def measurements(self) -> Iterator[Measurement]:
        scores = np.asarray(self.scores, dtype=np.float64)
        means = self.mean_scores()
        excess = self.excess()
        p = np.asarray(self.p_values, dtype=np.float64)
        for c, concept in enumerate(self.concepts):
            acc = np.asarray(self.cav_accuracy[c], dtype=np.float64)
            yield Measurement(name="tcav_cav_accuracy", subject=f"concept={concept}", value=finite(acc.mean()), evidence=f".cav_accuracy[{c}]", n=len(acc))
            for k, cls in enumerate(self.class_names):
                subject = f"concept={concept}/class={cls}"
                runs = scores[c, k]
                spread = 1.96 * runs.std(ddof=1) / np.sqrt(len(runs)) if len(runs) > 1 else float("nan")
                evidence = f".scores[{c}][{k}]"
                n = int(self.class_rows[k])
                yield Measurement(
                    name="tcav_score",
                    subject=subject,
                    value=finite(means[c, k]),
                    interval=bounds(means[c, k] - spread, means[c, k] + spread),
                    evidence=evidence,
                    n=n,
                )
                yield Measurement(name="tcav_p_value", subject=subject, value=finite(p[c, k]), evidence=f".p_values[{c}][{k}]", n=n)
            if self.sensitive[c]:
                # The policy reads this: how far a sensitive attribute's value moves its most affected class, where significant.
                k = int(np.argmax(excess[c]))
                yield Measurement(
                    name="tcav_sensitive_excess",
                    subject=f"concept={concept}",
                    value=finite(excess[c, k]),
                    direction="lower_is_better",
                    evidence=f".scores[{c}][{k}]",
                    n=int(self.class_rows[k]),
                )


@serializable
@dataclass(frozen=True, kw_only=True)
class FeatureVisualizationResult(ProbeResult):
    """Activation maximisation and the evaluation images that most activate each class and channel.

    ``class_images`` (classes, C, H, W) are the pixel-space inputs optimised to raise each class
    logit (regularised by jitter, blur and a decorrelated Fourier parameterisation, see the probe),
    ``class_logits`` (classes,) the logit each reached and ``class_probability`` the class's
    softmax probability on it; ``eval_max_logits`` (classes,) the highest logit of that class on
    the evaluation rows, for scale. ``channels`` the indices of the target layer's channels shown,
    ``channel_images`` (channels, C, H, W) the inputs optimised for each channel's mean activation.
    ``top_class_rows`` (classes, m) and ``top_channel_rows`` (channels, m) the evaluation rows with
    the highest class logit / channel activation, ``top_channel_values`` the activations and
    ``top_class_images`` / ``top_channel_images`` (rows, m, C, H, W) those images (float16, for the gallery).
    ``steps`` the optimisation steps run; ``value_range`` the pixel range.
    """

    layer: str
    class_names: list[str]
    class_images: np.ndarray
    class_logits: np.ndarray
    class_probability: np.ndarray
    eval_max_logits: np.ndarray
    channels: np.ndarray
    channel_images: np.ndarray
    channel_activation: np.ndarray
    top_class_rows: np.ndarray
    top_class_logits: np.ndarray
    top_class_images: np.ndarray
    top_channel_rows: np.ndarray
    top_channel_values: np.ndarray
    top_channel_images: np.ndarray
    steps: int
    value_range: list[float]
    notes: list[str] = field(default_factory=list)

    def headline(self) -> str:
        reached = np.asarray(self.class_probability, dtype=np.float64)
        return f"Feature visualization of {len(self.class_names)} classes and {len(self.channels)} channels of {self.layer}: the optimised images reach a mean class probability of {reached.mean():.2f}"

    def measurements(self) -> Iterator[Measurement]:
        for k, cls in enumerate(self.class_names):
            ratio = float(self.class_logits[k]) / float(self.eval_max_logits[k]) if float(self.eval_max_logits[k]) > 0 else float("nan")
            yield Measurement(
                name="visualization_class_probability", subject=f"class={cls}", value=finite(self.class_probability[k]), evidence=f".class_probability[{k}]"
            )
            yield Measurement(name="visualization_logit_ratio", subject=f"class={cls}", value=finite(ratio), evidence=f".class_logits[{k}]")
