"""Robustness results: attacks, corruptions, calibration, tabular and text perturbations."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from audits.results.base import Measurement, ProbeResult, finite, number, proportion
from audits.serialization import serializable


def attack_subject(method: str, norm: str, epsilon: float, target: int | None = None) -> str:
    """Subject of an attack measurement: ``pgd/linf/eps=0.0313725`` (``pgd/linf/target=3/eps=...`` when targeted)."""
    aim = "" if target is None else f"target={target}/"
    return f"{method}/{norm}/{aim}eps={number(epsilon)}"


def largest_gap(table: pd.DataFrame, value: str, by: Sequence[str] = (), *, higher_is_better: bool = True) -> dict | None:
    """The largest between-group spread of ``value`` in a ``group_breakdown`` table.

    Returns ``{'attribute', 'worst', 'best', 'gap', **condition}`` for the attribute and
    condition (``by`` columns) where max - min over groups is largest; None when no
    attribute has two groups with a value.
    """
    best: dict | None = None
    if table.empty or value not in table:
        return None
    keys = ["attribute", *by]
    for key, rows in table.dropna(subset=[value]).groupby(keys, sort=False):
        if len(rows) < 2:
            continue
        lo, hi = rows[value].idxmin(), rows[value].idxmax()
        gap = float(rows.at[hi, value] - rows.at[lo, value])
        if best is None or gap > best["gap"]:
            key = key if isinstance(key, tuple) else (key,)
            worst, top = (lo, hi) if higher_is_better else (hi, lo)
            best = {**dict(zip(keys, key, strict=True)), "worst": str(rows.at[worst, "group"]), "best": str(rows.at[top, "group"]), "gap": gap}
    return best


def _gap_text(gap: dict | None, what: str, at: str = "") -> str:
    if not gap:
        return ""
    where = f" at {at} {gap[at]:.3g}" if at else ""
    return f"; largest {what} gap {gap['gap']:.2f}{where} ({gap['attribute']}: {gap['worst']} vs {gap['best']})"


@serializable
@dataclass(frozen=True, kw_only=True)
class AdversarialExamples:
    """A few attacked images: the clean image, the perturbation, labels, predictions and confidences.

    The adversarial image is ``clean + perturbation`` (already inside the value range).
    """

    rows: np.ndarray  # rows of the audit data
    epsilon: float
    clean: np.ndarray  # (k, C, H, W) pixel space
    perturbation: np.ndarray  # (k, C, H, W)
    labels: np.ndarray
    clean_predictions: np.ndarray
    adversarial_predictions: np.ndarray
    clean_confidence: np.ndarray  # probability of the clean prediction
    adversarial_confidence: np.ndarray  # probability of the adversarial prediction

    @property
    def adversarial(self) -> np.ndarray:
        return self.clean + self.perturbation


@serializable
@dataclass(frozen=True, kw_only=True)
class AttackResult(ProbeResult):
    """Accuracy under a gradient attack over an epsilon sweep.

    ``curve`` has one row per epsilon: ``robust_accuracy`` (share of evaluated rows still
    classified correctly under attack), ``attack_success_rate`` (untargeted: share of the
    rows classified correctly when clean that the attack makes wrong; targeted: share of
    rows not of the target class pushed into it) and ``n``. ``min_epsilon`` holds, per
    evaluated row, the smallest epsilon found to flip it (sweep, then bisection); NaN where
    the row was wrong when clean or survived the whole sweep.
    ``by_group`` breaks the curve down per sensitive attribute and group.
    """

    norm: str
    targeted: bool
    target: int | None = None
    rows: np.ndarray
    clean_accuracy: float
    curve: pd.DataFrame
    min_epsilon: np.ndarray
    mean_min_epsilon: float
    flipped_fraction: float  # of clean-correct rows, the share flipped somewhere in the sweep
    by_group: pd.DataFrame
    examples: AdversarialExamples | None = None

    def headline(self) -> str:
        c = self.curve
        points = c[c["epsilon"] > 0]
        head = f"{self.norm} robust acc {self.clean_accuracy:.3f} (clean)"
        if len(points):
            mid = points.iloc[len(points) // 2]
            last = points.iloc[-1]
            head += f" -> {mid['robust_accuracy']:.3f} @ {mid['epsilon']:.3g} -> {last['robust_accuracy']:.3f} @ {last['epsilon']:.3g}"
        if np.isfinite(self.mean_min_epsilon):
            head += f"; mean min eps {self.mean_min_epsilon:.3g}"
        gap = largest_gap(self.by_group, "robust_accuracy", by=["epsilon"])
        return head + _gap_text(gap, "robust-accuracy", at="epsilon")

    def measurements(self) -> Iterator[Measurement]:
        """``robust_accuracy`` per epsilon of the sweep (epsilon 0 is the clean accuracy of the same rows), with
        Wilson intervals; ``attack_success_rate`` per epsilon > 0; ``clean_accuracy`` of the evaluated rows,
        ``flipped_fraction`` and ``mean_min_epsilon`` (subject ``pgd/linf``)."""
        target = self.target if self.targeted else None
        for row in self.curve.itertuples(index=False):
            subject = attack_subject(self.method, self.norm, row.epsilon, target)
            n = int(row.n) if hasattr(row, "n") else len(self.rows)
            where = f".curve[epsilon={number(row.epsilon)}]"
            yield proportion("robust_accuracy", row.robust_accuracy, n, subject=subject, evidence=where)
            if row.epsilon > 0 and hasattr(row, "attack_success_rate"):
                yield Measurement(
                    name="attack_success_rate", subject=subject, value=finite(row.attack_success_rate), direction="lower_is_better", evidence=where, n=n
                )
        base = f"{self.method}/{self.norm}" + ("" if target is None else f"/target={target}")
        yield proportion("clean_accuracy", self.clean_accuracy, len(self.rows), subject=base, evidence=".clean_accuracy")
        yield Measurement(name="flipped_fraction", subject=base, value=finite(self.flipped_fraction), direction="lower_is_better", evidence=".flipped_fraction")
        yield Measurement(
            name="mean_min_epsilon", subject=base, value=finite(self.mean_min_epsilon), direction="higher_is_better", evidence=".mean_min_epsilon"
        )


@serializable
@dataclass(frozen=True, kw_only=True)
class CorruptionExamples:
    """One row of images per example: every corruption at severities 0 (clean) to 5.

    ``images`` is uint8 (k, n_corruptions, n_severities, C, H', W'), pixel values mapped
    from ``value_range`` to 0..255 (downsampled for large images, so reports stay small).
    """

    rows: np.ndarray
    corruptions: list[str]
    severities: list[int]
    value_range: list[float]
    images: np.ndarray


@serializable
@dataclass(frozen=True, kw_only=True)
class CorruptionResult(ProbeResult):
    """Accuracy under natural image corruptions, per corruption and severity.

    ``table``: corruption, severity, parameter (the corruption's strength at that
    severity), accuracy, relative_accuracy (/ clean accuracy), flip_rate (prediction
    changed vs clean), mean_confidence. ``mean_corruption_accuracy`` averages accuracy over
    every corruption and severity 1-5; ``relative_corruption_accuracy`` divides it by the
    clean accuracy of the same rows.
    """

    rows: np.ndarray
    clean_accuracy: float
    table: pd.DataFrame
    mean_corruption_accuracy: float
    relative_corruption_accuracy: float
    by_group: pd.DataFrame
    examples: CorruptionExamples | None = None

    def headline(self) -> str:
        per = self.table.groupby("corruption", sort=False)["accuracy"].mean()
        worst = per.idxmin() if len(per) else "-"
        gap = largest_gap(self.by_group.groupby(["attribute", "group"], as_index=False)[["drop"]].mean(), "drop", higher_is_better=False)
        return (
            f"clean acc {self.clean_accuracy:.3f}, mean corruption acc {self.mean_corruption_accuracy:.3f} "
            f"({self.relative_corruption_accuracy:.0%} of clean); worst {worst} {per.min():.3f}" + _gap_text(gap, "mean drop")
        )

    def measurements(self) -> Iterator[Measurement]:
        """``clean_accuracy`` of the evaluated rows, ``corruption_accuracy`` and ``corruption_flip_rate`` per corruption
        and severity (subject ``gaussian_noise/severity=3``, Wilson intervals), and the two summaries."""
        n = len(self.rows)
        yield proportion("clean_accuracy", self.clean_accuracy, n, subject=self.method, evidence=".clean_accuracy")
        for row in self.table.itertuples(index=False):
            subject = f"{row.corruption}/severity={int(row.severity)}"
            where = f".table[corruption={row.corruption},severity={int(row.severity)}]"
            yield proportion("corruption_accuracy", row.accuracy, n, subject=subject, evidence=where)
            yield proportion("corruption_flip_rate", row.flip_rate, n, subject=subject, direction="lower_is_better", evidence=where)
        yield Measurement(
            name="mean_corruption_accuracy",
            value=finite(self.mean_corruption_accuracy),
            direction="higher_is_better",
            evidence=".mean_corruption_accuracy",
            n=n,
        )
        yield Measurement(
            name="relative_corruption_accuracy",
            value=finite(self.relative_corruption_accuracy),
            direction="higher_is_better",
            evidence=".relative_corruption_accuracy",
            n=n,
        )


@serializable
@dataclass(frozen=True, kw_only=True)
class CalibrationResult(ProbeResult):
    """Calibration on clean data and under a distribution shift.

    ``conditions``: one row per condition (``clean`` first, then the shift at each
    strength) with accuracy, mean_confidence, overconfidence (confidence - accuracy), ece
    and n. ``reliability``: the reliability bins of every condition (condition and strength
    columns, then bin_low, bin_high, count, confidence, accuracy). ``by_group``: the same
    figures per sensitive attribute and group.
    """

    ece: float
    accuracy: float
    mean_confidence: float
    n_bins: int
    shift: str
    rows: np.ndarray  # rows evaluated under the shift (clean figures use every row)
    conditions: pd.DataFrame
    reliability: pd.DataFrame
    by_group: pd.DataFrame

    def headline(self) -> str:
        c = self.conditions
        last = c.iloc[-1]
        gap = largest_gap(self.by_group[self.by_group["condition"] == "clean"], "ece", higher_is_better=False)
        return (
            f"ECE {self.ece:.3f} clean (conf {self.mean_confidence:.2f} vs acc {self.accuracy:.2f}); "
            f"{last['condition']} {last['strength']:.3g}: ECE {last['ece']:.3f} (conf {last['mean_confidence']:.2f} vs acc {last['accuracy']:.2f})"
            + _gap_text(gap, "clean ECE")
        )

    def measurements(self) -> Iterator[Measurement]:
        """``ece`` and ``overconfidence`` per condition (subject ``clean``, or the shift and its strength)."""
        for row in self.conditions.itertuples(index=False):
            subject = "clean" if row.condition == "clean" else f"{row.condition}/strength={number(row.strength)}"
            where = f".conditions[condition={row.condition},strength={number(row.strength)}]"
            n = int(row.n) if hasattr(row, "n") else None
            yield Measurement(name="ece", subject=subject, value=finite(row.ece), direction="lower_is_better", evidence=where, n=n)
            yield Measurement(name="overconfidence", subject=subject, value=finite(row.overconfidence), evidence=where, n=n)


@serializable
@dataclass(frozen=True, kw_only=True)
class TabularPerturbationResult(ProbeResult):
    """Decision flips and accuracy under natural perturbations of tabular features.

    ``table``: perturbation (noise, missing, category_flip, shift, swap), feature ('*' =
    all features at once), strength (noise/shift: multiples of the feature's standard
    deviation; missing/category_flip: probability per cell), accuracy, flip_rate
    (prediction changed vs clean), refused (share of rows the card's missing-value policy
    would refuse) and n. ``features`` ranks raw features by how easily a change of that
    feature alone flips decisions.
    """

    rows: np.ndarray
    clean_accuracy: float
    missing_policy: str
    table: pd.DataFrame
    features: pd.DataFrame
    by_group: pd.DataFrame
    notes: list[str] = field(default_factory=list)

    def headline(self) -> str:
        t = self.table
        noise = t[(t["perturbation"] == "noise")]
        head = f"clean acc {self.clean_accuracy:.3f}"
        if len(noise):
            last = noise.iloc[-1]
            head += f"; noise {last['strength']:.3g} sd: flips {last['flip_rate']:.1%}, acc {last['accuracy']:.3f}"
        top = self.features.head(3)
        if len(top):
            head += "; most fragile: " + ", ".join(f"{r.feature} {r.fragility:.1%}" for r in top.itertuples())
        return head

    def measurements(self) -> Iterator[Measurement]:
        """``flip_rate`` and ``perturbed_accuracy`` per perturbation, feature and strength (subject ``noise/strength=0.5``
        for all features at once, ``shift/age/strength=1`` for one), with Wilson intervals; ``fragility`` per feature."""
        for row in self.table.itertuples(index=False):
            feature = "" if row.feature == "*" else f"{row.feature}/"
            subject = f"{row.perturbation}/{feature}strength={number(row.strength)}"
            where = f".table[perturbation={row.perturbation},feature={row.feature},strength={number(row.strength)}]"
            yield proportion("flip_rate", row.flip_rate, row.n, subject=subject, direction="lower_is_better", evidence=where)
            yield proportion("perturbed_accuracy", row.accuracy, row.n, subject=subject, evidence=where)
        for row in self.features.itertuples(index=False):
            yield Measurement(
                name="fragility",
                subject=str(row.feature),
                value=finite(row.fragility),
                direction="lower_is_better",
                evidence=f".features[feature={row.feature}]",
            )


@serializable
@dataclass(frozen=True, kw_only=True)
class TabularAdversarialResult(ProbeResult):
    """The smallest feature change that flips each decision, within observed ranges.

    ``decisions`` (one row per searched row): prediction, ``min_linf`` (smallest joint
    change of all free numeric features, in standard deviations, found by projected
    gradient search and bisection; NaN when none within ``max_epsilon``), and the best
    single-feature change: ``best_feature``, ``best_change`` (standard deviations; 0 for
    a categorical swap), ``best_from``/``best_to`` (raw values or levels).
    ``features``: per free feature, ``flip_fraction`` (rows that changing this feature
    alone, within its observed range or levels, can flip) and ``median_change`` (numeric:
    median smallest flipping change in standard deviations).
    """

    rows: np.ndarray
    categoricals: str
    fixed_features: list[str]
    max_epsilon: float
    flippable_fraction: float  # rows flipped by the joint numeric search within max_epsilon
    single_feature_fraction: float  # rows flipped by changing one free feature
    median_min_linf: float
    decisions: pd.DataFrame
    features: pd.DataFrame
    by_group: pd.DataFrame

    def headline(self) -> str:
        top = self.features.head(3)
        gap = largest_gap(self.by_group, "flippable", higher_is_better=False)
        return (
            f"{self.single_feature_fraction:.1%} of decisions flip with one feature, {self.flippable_fraction:.1%} within "
            f"{self.max_epsilon:g} sd on numerics (median {self.median_min_linf:.2f} sd); easiest: "
            + ", ".join(f"{r.feature} {r.flip_fraction:.1%}" for r in top.itertuples())
            + _gap_text(gap, "flippable")
        )

    def measurements(self) -> Iterator[Measurement]:
        """Shares of decisions one feature or a joint change within ``max_epsilon`` flips (Wilson), the median smallest change."""
        n = len(self.rows)
        yield proportion("flippable_fraction", self.flippable_fraction, n, direction="lower_is_better", evidence=".flippable_fraction")
        yield proportion("single_feature_flip_fraction", self.single_feature_fraction, n, direction="lower_is_better", evidence=".single_feature_fraction")
        yield Measurement(name="median_min_linf", value=finite(self.median_min_linf), direction="higher_is_better", evidence=".median_min_linf", n=n)


@serializable
@dataclass(frozen=True, kw_only=True)
class TextRobustnessResult(ProbeResult):
    """Accuracy and decision flips of a text classifier under natural perturbations.

    ``table``: one row per perturbation and severity (the probability that a word is
    perturbed) with ``accuracy``, ``flip_rate`` (prediction changed vs the clean text),
    ``confidence_drop`` (mean fall of the probability of the clean prediction), ``changed``
    (share of texts the perturbation actually altered) and ``n``. ``by_group``: accuracy
    and flip rate per sensitive attribute and group for every condition. ``examples``: a
    few perturbed texts whose decision flipped (else changed ones).
    """

    rows: np.ndarray
    clean_accuracy: float
    table: pd.DataFrame
    by_group: pd.DataFrame
    examples: pd.DataFrame
    notes: list[str] = field(default_factory=list)

    def headline(self) -> str:
        head = f"clean acc {self.clean_accuracy:.3f}"
        for kind, rows in self.table.groupby("perturbation", sort=False):
            last = rows.iloc[-1]
            head += f"; {kind} {last['severity']:.2g}: acc {last['accuracy']:.3f}, flips {last['flip_rate']:.1%}"
        gap = largest_gap(self.by_group, "flip_rate", by=["perturbation", "severity"], higher_is_better=False)
        if gap:
            head += (
                f"; largest flip-rate gap {gap['gap']:.2f} ({gap['perturbation']} {gap['severity']:.2g}, {gap['attribute']}: {gap['worst']} vs {gap['best']})"
            )
        return head

    def measurements(self) -> Iterator[Measurement]:
        """``flip_rate`` and ``perturbed_accuracy`` per perturbation and severity (subject ``typos/strength=0.1``), Wilson intervals."""
        for row in self.table.itertuples(index=False):
            subject = f"{row.perturbation}/strength={number(row.severity)}"
            where = f".table[perturbation={row.perturbation},severity={number(row.severity)}]"
            yield proportion("flip_rate", row.flip_rate, row.n, subject=subject, direction="lower_is_better", evidence=where)
            yield proportion("perturbed_accuracy", row.accuracy, row.n, subject=subject, evidence=where)


@serializable
@dataclass(frozen=True, kw_only=True)
class AutoAttackResult(AttackResult):
    """Worst case per sample over an ensemble of attacks (APGD-CE, APGD-T with the DLR loss, Square).

    ``curve`` adds, per epsilon, ``gradient_robust_accuracy`` (after the gradient attacks
    only) and ``one_step_robust_accuracy`` (APGD-CE's first step only). ``breakdown`` has
    one row per epsilon and attack: ``broken`` (share of evaluated rows this attack broke
    first, the attacks running in order on the survivors). ``broken_by`` holds per row and
    epsilon the attack that broke it (its index in ``attacks`` plus one; 0 survived, -1 wrong
    when clean; a row that survived every attack at one budget is not attacked at smaller
    ones and reads 0 there). The gradient-masking diagnostics: ``gradient_free_gain`` (largest share of
    rows over the sweep that only the gradient-free attack broke), ``iteration_gain`` (largest
    share that needed more than one APGD-CE step), ``unbounded_robust_accuracy`` (APGD-CE from
    the clean point at ``unbounded_epsilon``, which can reach any input: ~0 unless gradients
    are masked).
    """

    preset: str
    attacks: list[str]
    breakdown: pd.DataFrame
    broken_by: np.ndarray
    gradient_free_gain: float
    iteration_gain: float
    unbounded_epsilon: float
    unbounded_robust_accuracy: float

    def headline(self) -> str:
        return super().headline() + f"; only gradient-free broke {self.gradient_free_gain:.1%}, unbounded robust acc {self.unbounded_robust_accuracy:.3f}"

    def measurements(self) -> Iterator[Measurement]:
        """Those of :class:`AttackResult` plus the gradient-masking diagnostics (subject ``autoattack/linf``)."""
        yield from super().measurements()
        base = f"{self.method}/{self.norm}"
        n = len(self.rows)
        yield Measurement(
            name="gradient_free_gain", subject=base, value=finite(self.gradient_free_gain), direction="lower_is_better", evidence=".gradient_free_gain", n=n
        )
        yield Measurement(name="iteration_gain", subject=base, value=finite(self.iteration_gain), direction="higher_is_better", evidence=".iteration_gain", n=n)
        # No interval: a sanity check that should read ~0, not an estimate (a Wilson interval on a few rows would always warn).
        yield Measurement(
            name="unbounded_robust_accuracy",
            subject=base,
            value=finite(self.unbounded_robust_accuracy),
            direction="lower_is_better",
            evidence=".unbounded_robust_accuracy",
            n=n,
        )


@serializable
@dataclass(frozen=True, kw_only=True)
class MinimalPerturbationResult(ProbeResult):
    """Each evaluated row's smallest adversarial perturbation found (size in ``norm``, pixel units).

    ``distance`` is NaN where the row was wrong when clean or no perturbation was found.
    ``quantiles`` holds the distribution of the distances found (quantile, distance);
    ``by_group`` the median and mean distance per sensitive attribute and group.
    """

    norm: str
    rows: np.ndarray
    clean_accuracy: float
    distance: np.ndarray
    median_distance: float
    found_fraction: float  # of the clean-correct rows, the share with a perturbation found
    quantiles: pd.DataFrame
    by_group: pd.DataFrame

    def headline(self) -> str:
        gap = largest_gap(self.by_group, "median_distance")
        return f"{self.norm} median smallest flipping perturbation {self.median_distance:.4g} (found for {self.found_fraction:.0%})" + _gap_text(
            gap, "median-distance"
        )

    def measurements(self) -> Iterator[Measurement]:
        """``median_min_distance`` overall (subject ``l2``) and per group (subject ``l2/sex=female``), ``found_fraction``."""
        n = int(np.isfinite(self.distance).sum())
        yield Measurement(
            name="median_min_distance", subject=self.norm, value=finite(self.median_distance), direction="higher_is_better", evidence=".median_distance", n=n
        )
        for row in self.by_group.itertuples(index=False):
            yield Measurement(
                name="median_min_distance",
                subject=f"{self.norm}/{row.attribute}={row.group}",
                value=finite(row.median_distance),
                direction="higher_is_better",
                evidence=f".by_group[attribute={row.attribute},group={row.group}]",
                n=int(row.count),
            )
        yield Measurement(name="found_fraction", subject=self.norm, value=finite(self.found_fraction), direction="lower_is_better", evidence=".found_fraction")


@serializable
@dataclass(frozen=True, kw_only=True)
class SmoothingResult(ProbeResult):
    """Certified L2 robustness of the Gaussian-smoothed model (Cohen et al. 2019), per noise level ``sigma``.

    ``predictions`` and ``radius`` are (n_sigmas, n_rows): the smoothed prediction (-1:
    abstained) and its certified L2 radius (NaN when abstained), each holding with
    probability at least 1 - ``alpha``. ``curve``: sigma, radius, certified_accuracy (share of
    rows predicted right and certified beyond the radius). ``summary``: per sigma the smoothed
    accuracy, abstention rate and median radius (0 for wrong or abstained rows).
    ``by_group`` breaks the curve and the abstention down per sensitive group.
    """

    rows: np.ndarray
    clean_accuracy: float
    alpha: float
    n_samples: int
    sigmas: np.ndarray
    predictions: np.ndarray
    radius: np.ndarray
    curve: pd.DataFrame
    summary: pd.DataFrame
    by_group: pd.DataFrame

    def headline(self) -> str:
        parts = [
            f"sigma {s.sigma:.3g}: accuracy {s.smoothed_accuracy:.3f}, abstains {s.abstention_rate:.1%}, median radius {s.median_radius:.3g}"
            for s in self.summary.itertuples()
        ]
        return "; ".join(parts) + _gap_text(largest_gap(self.by_group, "certified_accuracy", by=["sigma", "radius"]), "certified-accuracy")

    def measurements(self) -> Iterator[Measurement]:
        """``certified_accuracy`` per sigma and radius (subject ``sigma=0.25/r=0.5``, Wilson intervals); per sigma
        ``smoothed_accuracy``, ``abstention_rate`` and ``median_certified_radius``."""
        n = len(self.rows)
        for row in self.curve.itertuples(index=False):
            subject = f"sigma={number(row.sigma)}/r={number(row.radius)}"
            yield proportion(
                "certified_accuracy", row.certified_accuracy, n, subject=subject, evidence=f".curve[sigma={number(row.sigma)},radius={number(row.radius)}]"
            )
        for s in self.summary.itertuples(index=False):
            subject, where = f"sigma={number(s.sigma)}", f".summary[sigma={number(s.sigma)}]"
            yield proportion("smoothed_accuracy", s.smoothed_accuracy, n, subject=subject, evidence=where)
            yield proportion("abstention_rate", s.abstention_rate, n, subject=subject, direction="lower_is_better", evidence=where)
            yield Measurement(name="median_certified_radius", subject=subject, value=finite(s.median_radius), direction="higher_is_better", evidence=where, n=n)


@serializable
@dataclass(frozen=True, kw_only=True)
class WordSubstitutionResult(ProbeResult):
    """A budgeted greedy word-substitution attack on a text classifier (synonyms only; identity terms never change).

    Per evaluated row: ``success`` (a correct decision the attack turned wrong),
    ``substitutions`` (words it replaced; 0 where it did not run or changed nothing) and
    ``attackable`` (the text has a word with an allowed synonym). ``words``: each replacement
    used in a successful attack (``original``, ``substitute``, ``uses``). ``by_group``:
    per sensitive attribute and group ``clean_accuracy``, ``attacked_accuracy`` and
    ``attack_success_rate``. ``examples``: a few attacked texts.
    """

    rows: np.ndarray
    budget: int
    clean_accuracy: float
    success: np.ndarray
    substitutions: np.ndarray
    attackable: np.ndarray
    attack_success_rate: float
    attacked_accuracy: float
    mean_substitutions: float
    words: pd.DataFrame
    by_group: pd.DataFrame
    examples: pd.DataFrame
    notes: list[str] = field(default_factory=list)

    @property
    def n_correct(self) -> int:
        """Rows right when clean: the ones attacked, and the denominator of ``attack_success_rate``."""
        return int(round(self.clean_accuracy * len(self.rows))) if len(self.rows) else 0

    def headline(self) -> str:
        head = (
            f"{self.attack_success_rate:.1%} of correct decisions flipped by at most {self.budget} synonym swaps "
            f"(accuracy {self.clean_accuracy:.3f} -> {self.attacked_accuracy:.3f})"
        )
        if self.success.any():
            head += f"; {self.mean_substitutions:.2g} swaps on average"
        gap = largest_gap(self.by_group, "attack_success_rate", higher_is_better=False)
        if gap:
            head += f"; largest gap {gap['gap']:.2f} ({gap['attribute']}: {gap['worst']} vs {gap['best']})"
        return head

    def measurements(self) -> Iterator[Measurement]:
        """``attack_success_rate`` (of correct rows) and ``attacked_accuracy`` (of all rows), subject ``word_substitution/budget=3``, Wilson intervals."""
        subject = f"{self.method}/budget={self.budget}"
        yield proportion(
            "attack_success_rate", self.attack_success_rate, self.n_correct, subject=subject, direction="lower_is_better", evidence=".attack_success_rate"
        )
        yield proportion("attacked_accuracy", self.attacked_accuracy, len(self.rows), subject=subject, evidence=".attacked_accuracy")
        yield Measurement(
            name="mean_substitutions", subject=subject, value=finite(self.mean_substitutions), direction="higher_is_better",
            evidence=".mean_substitutions", n=int(self.success.sum()),
        )  # fmt: skip
