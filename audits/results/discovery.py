"""Results of the discovery probes: problems the audit finds without being told where to look.

``SliceDiscoveryResult`` holds the slices of the evaluation data (one column's value or
quantile bin, or a pair of them) whose error rate is significantly above the overall one;
``TriggerScanResult`` holds the patches whose pasting onto images of other classes pulls
predictions into one class. numpy/pandas only, never torch.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from audits.results.base import Measurement, ProbeResult, bounds, finite
from audits.serialization import serializable


@serializable
@dataclass(frozen=True, kw_only=True)
class SliceDiscoveryResult(ProbeResult):
    """Slices of the evaluation data whose error rate is above the overall error rate.

    ``slices`` has one row per tested slice of at least ``min_size`` rows: ``slice``
    (``education=HS-grad`` or ``age=[17, 25) & sex=Male``), ``columns``, ``size``,
    ``errors``, ``error_rate`` with its Wilson bounds ``lo``/``hi``, the one-sided binomial
    ``p_value`` against the overall rate, the Benjamini-Hochberg ``q_value`` over every
    tested slice, ``significant`` (q below ``fdr``) and ``examples`` (up to five
    misclassified row indices, comma-separated). Rows are sorted by error rate, worst first.
    """

    n_rows: int
    overall_error: float
    min_size: int
    fdr: float
    n_tested: int
    slices: pd.DataFrame

    @property
    def flagged(self) -> pd.DataFrame:
        """The significant slices, worst first."""
        return self.slices[self.slices["significant"].astype(bool)] if len(self.slices) else self.slices

    def headline(self) -> str:
        return f"{len(self.flagged)} of {self.n_tested} slices err significantly more than overall ({self.overall_error:.1%})"

    def measurements(self) -> Iterator[Measurement]:
        """``slice_error_excess`` per significant slice (its error rate minus the overall one, with the Wilson interval
        shifted alike) and ``worst_slice_error_excess`` (the largest of them; 0 when no slice is significant)."""
        worst = 0.0
        for row in self.flagged.to_dict("records"):
            excess = float(row["error_rate"]) - self.overall_error
            worst = max(worst, excess)
            yield Measurement(
                name="slice_error_excess",
                subject=str(row["slice"]),
                value=finite(excess),
                interval=bounds(row["lo"] - self.overall_error, row["hi"] - self.overall_error),
                direction="lower_is_better",
                evidence=f".slices[slice={row['slice']}]",
                n=int(row["size"]),
            )
        yield Measurement(name="worst_slice_error_excess", value=worst, direction="lower_is_better", evidence=".slices", n=self.n_rows)


@serializable
@dataclass(frozen=True, kw_only=True)
class TriggerScanResult(ProbeResult):
    """Flip rates of small patches pasted onto images of other classes.

    ``cells`` has one row per (patch, position, class): ``patch`` (``max``, ``min``,
    ``checker`` or ``salient``), ``size`` (pixels), ``row``/``col`` (top-left corner),
    ``target`` (class name), ``n`` (images from other classes), ``flip_rate`` (share of
    them then predicted as ``target``, pooled), ``source_median`` (the median over source
    classes of their own flip rate into ``target``: a trigger pulls every class, a natural
    confusion only a few), ``lo``/``hi`` (Wilson bounds of ``source_median`` over the
    median source class's count), ``typical`` (median ``source_median`` of the target over
    every patch and position) and ``excess`` (``source_median - typical``). ``examples``
    holds, for the strongest cell, up to eight patched images (N, C, H, W) and their
    predictions; ``example_cell`` names that cell.
    """

    n_images: int
    cells: pd.DataFrame
    examples: np.ndarray
    example_predictions: list[str]
    example_cell: str = ""

    def strongest(self, k: int = 5) -> pd.DataFrame:
        """The ``k`` cells with the largest excess over the typical flip rate."""
        return self.cells.sort_values("excess", ascending=False).head(k) if len(self.cells) else self.cells

    def headline(self) -> str:
        if not len(self.cells):
            return "no patch tested"
        top = self.strongest(1).iloc[0]
        return f"strongest patch: {top['patch']} {top['size']}px at ({top['row']},{top['col']}) pulls {top['source_median']:.0%} into {top['target']}"

    def measurements(self) -> Iterator[Measurement]:
        """``trigger_flip_excess`` per target class: its strongest (patch, position), the median source class's flip rate
        into the target minus the typical one, with the Wilson interval shifted alike."""
        if not len(self.cells):
            return
        for target, rows in self.cells.groupby("target", sort=False):
            top = rows.loc[rows["excess"].idxmax()]
            cell = f"{top['patch']}/size={int(top['size'])}/at={int(top['row'])},{int(top['col'])}"
            where = f".cells[patch={top['patch']},size={int(top['size'])},row={int(top['row'])},col={int(top['col'])},target={target}]"
            yield Measurement(
                name="trigger_flip_excess",
                subject=f"class={target}",
                value=finite(top["excess"]),
                interval=bounds(top["lo"] - top["typical"], top["hi"] - top["typical"]),
                direction="lower_is_better",
                evidence=where,
                n=int(top["n"]),
            )
            yield Measurement(
                name="trigger_flip_rate", subject=f"class={target}/{cell}", value=finite(top["source_median"]), direction="lower_is_better",
                evidence=where, n=int(top["n"]),
            )  # fmt: skip


@serializable
@dataclass(frozen=True, kw_only=True)
class TriggerWordsResult(ProbeResult):
    """Flip rates of single words inserted into texts (text models).

    ``words`` has one row per (word, class): ``word``, ``target`` (class name), ``n``
    (texts not predicted as the target before), ``flip_rate`` (share of them predicted as
    the target once the word is inserted) with Wilson bounds ``lo``/``hi``, ``typical`` (the
    median flip rate into the target over every tested word) and ``excess``
    (``flip_rate - typical``). ``examples`` lists, for the strongest word, up to five
    rewritten texts that flipped. ``ranked_by`` says where the candidate words came from.
    """

    n_texts: int
    words: pd.DataFrame
    examples: list[str]
    ranked_by: str = ""

    def strongest(self, k: int = 5) -> pd.DataFrame:
        """The ``k`` (word, class) rows with the largest excess over the typical flip rate."""
        return self.words.sort_values("excess", ascending=False).head(k) if len(self.words) else self.words

    def headline(self) -> str:
        if not len(self.words):
            return "no word tested"
        top = self.strongest(1).iloc[0]
        return f"strongest word: {top['word']!r} flips {top['flip_rate']:.0%} of texts into {top['target']}"

    def measurements(self) -> Iterator[Measurement]:
        """``trigger_word_excess`` per target class: its strongest word's flip rate minus the typical one (Wilson interval
        shifted alike), subject ``class=<target>``."""
        if not len(self.words):
            return
        for target, rows in self.words.groupby("target", sort=False):
            top = rows.loc[rows["excess"].idxmax()]
            yield Measurement(
                name="trigger_word_excess",
                subject=f"class={target}",
                value=finite(top["excess"]),
                interval=bounds(top["lo"] - top["typical"], top["hi"] - top["typical"]),
                direction="lower_is_better",
                evidence=f".words[word={top['word']},target={target}]",
                n=int(top["n"]),
            )


@serializable
@dataclass(frozen=True, kw_only=True)
class AttributionRegionsResult(ProbeResult):
    """Where the attribution mass sits, per attribution method and predicted class (image models).

    Each explained sample's |attribution| map is cut into a ``grid`` x ``grid`` grid of
    cells (``r0c0`` top left) and a ``border`` ring of ``border_px`` pixels; a region's
    share is its part of the sample's total |attribution|. ``regions`` has one row per
    (method, class, region): ``method``, ``target`` (predicted class), ``region``, ``n``
    (the class's explained samples), ``share`` (their mean share), ``uniform`` (the
    region's share of the pixels), ``others`` (the largest of the other classes' mean
    shares: a region another class leans on too is part of how things look, not a cue of
    one class; NaN when no other class was explained), ``excess`` (the median over the
    class's samples of their share minus the larger of ``uniform`` and ``others``: a
    region that holds the mass of only one sample does not count), ``lo``/``hi`` (its
    bootstrap interval over the class's samples) and ``consistency`` (the share of the
    class's samples above that reference). Classes with fewer than ``min_samples``
    explained samples are left out (``notes`` says which). ``classes`` has one row per class:
    see :meth:`per_class`.
    """

    grid: int
    border_px: int
    min_samples: int
    methods: list[str]
    regions: pd.DataFrame
    classes: pd.DataFrame
    notes: list[str]

    def strongest(self, k: int = 5) -> pd.DataFrame:
        """The ``k`` (method, class, region) rows with the largest excess."""
        return self.regions.sort_values("excess", ascending=False).head(k) if len(self.regions) else self.regions

    def per_class(self) -> pd.DataFrame:
        """Per class: ``excess``, the median over methods of each method's largest excess (a shortcut shows in most
        methods, one method's quirk does not), its bootstrap bounds ``lo``/``hi`` (the class's samples resampled
        jointly for every method), the ``region`` most methods name, ``n`` samples and ``methods`` compared."""
        return self.classes

    def headline(self) -> str:
        c = self.per_class()
        if not len(c) or "excess" not in c:
            return "no class with enough explained samples"
        r = c.loc[c["excess"].idxmax()]
        return f"most concentrated: class {r['target']} in {r['region']} ({r['excess']:+.0%} of its attribution over uniform and other classes)"

    def measurements(self) -> Iterator[Measurement]:
        """``attribution_region_excess`` (no subject): the most concentrated class's excess, its evidence naming the
        class and region - one measurement whatever classes had enough explained samples, so the finding does not come
        and go with the seed's choice of samples; ``attribution_region_excess_by_class`` per class (``class=7``; the
        median over methods, see :meth:`per_class`) and ``attribution_region_excess_by_method`` (``grad_cam/class=7``)."""
        c = self.per_class()
        if len(c) and "excess" in c and c["excess"].notna().any():
            row = c.loc[c["excess"].idxmax()]
            yield Measurement(
                name="attribution_region_excess", value=finite(row["excess"]), interval=bounds(row["lo"], row["hi"]), direction="lower_is_better",
                evidence=f".regions[target={row['target']},region={row['region']}]", n=int(row["n"]),
            )  # fmt: skip
        for row in c.to_dict("records"):
            yield Measurement(
                name="attribution_region_excess_by_class", subject=f"class={row['target']}", value=finite(row["excess"]),
                interval=bounds(row["lo"], row["hi"]), direction="lower_is_better",
                evidence=f".regions[target={row['target']},region={row['region']}]", n=int(row["n"]),
            )  # fmt: skip
        if not len(self.regions):
            return
        top = self.regions.loc[self.regions.groupby(["method", "target"], sort=False)["excess"].idxmax()]
        for row in top.to_dict("records"):
            yield Measurement(
                name="attribution_region_excess_by_method", subject=f"{row['method']}/class={row['target']}", value=finite(row["excess"]),
                interval=bounds(row["lo"], row["hi"]), direction="lower_is_better",
                evidence=f".regions[method={row['method']},target={row['target']},region={row['region']}]", n=int(row["n"]),
            )  # fmt: skip


@serializable
@dataclass(frozen=True, kw_only=True)
class TriggerValuesResult(ProbeResult):
    """Flip rates of single feature values set on rows of the other classes (tabular models).

    ``values`` has one row per (feature, value, class): ``feature``, ``value`` (a categorical
    level or a numeric quantile), ``target`` (class name), ``n`` (rows not predicted as the
    target before), ``flip_rate`` (share of them predicted as the target with the value set)
    with Wilson bounds ``lo``/``hi``, ``typical`` (median flip rate into the target over every
    tested value), ``reference`` (the larger of ``typical`` and the flip rates of the feature's
    other levels, or, for numerics, its neighbouring quantiles) and ``excess``
    (``flip_rate - reference``). ``examples`` lists up to five row indices the strongest value flipped.
    """

    n_rows: int
    values: pd.DataFrame
    examples: list[int]

    def strongest(self, k: int = 5) -> pd.DataFrame:
        """The ``k`` (feature, value, class) rows with the largest excess."""
        return self.values.sort_values("excess", ascending=False).head(k) if len(self.values) else self.values

    def headline(self) -> str:
        if not len(self.values):
            return "no value tested"
        top = self.strongest(1).iloc[0]
        return f"strongest value: {top['feature']}={top['value']} turns {top['flip_rate']:.0%} of rows into {top['target']}"

    def measurements(self) -> Iterator[Measurement]:
        """``trigger_value_excess`` per target class: its strongest value's flip rate minus the reference (Wilson
        interval shifted alike), subject ``class=<target>``."""
        if not len(self.values):
            return
        for target, rows in self.values.groupby("target", sort=False):
            top = rows.loc[rows["excess"].idxmax()]
            yield Measurement(
                name="trigger_value_excess",
                subject=f"class={target}",
                value=finite(top["excess"]),
                interval=bounds(top["lo"] - top["reference"], top["hi"] - top["reference"]),
                direction="lower_is_better",
                evidence=f".values[feature={top['feature']},value={top['value']},target={target}]",
                n=int(top["n"]),
            )
