"""Fairness results: group metrics, counterfactual flips, proxies, mitigation preview, identity terms, attribution disparity."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from audits.results.base import Direction, Measurement, ProbeResult, bounds, finite
from audits.serialization import serializable

# Status of a group with too few rows for its metrics (they are left NaN).
INSUFFICIENT = "insufficient data"
# Label every mitigation preview carries: the audited model itself is not changed.
PREVIEW_LABEL = "PREVIEW: the audited model is unchanged"
# Which way is better for each group metric (between-group differences are always lower-is-better).
_METRIC_DIRECTION: dict[str, Direction] = {
    "accuracy": "higher_is_better",
    "balanced_accuracy": "higher_is_better",
    "tpr": "higher_is_better",
    "precision": "higher_is_better",
    "tnr": "higher_is_better",
    "npv": "higher_is_better",
    "fpr": "lower_is_better",
    "fnr": "lower_is_better",
    "fdr": "lower_is_better",
    "for": "lower_is_better",
    "calibration_error": "lower_is_better",
}
# Disparity measures yielded per (grouping, metric): name suffix -> direction.
_MEASURES: dict[str, Direction] = {"difference": "lower_is_better", "ratio": "higher_is_better", "difference_to_overall": "lower_is_better"}


@serializable
@dataclass(frozen=True, kw_only=True)
class GroupMetricsResult(ProbeResult):
    """Per-group metrics with intervals, their disparities and the named fairness criteria.

    ``groups`` has one row per (grouping, group): ``n``, ``status`` ('ok' or 'insufficient
    data': fewer rows than ``min_group_size``, metrics left NaN), and per metric its value
    and ``<metric>_lo``/``<metric>_hi`` bootstrap bounds. ``disparities`` has one row per
    (grouping, metric): difference (max - min) and ratio (min / max) between eligible groups,
    and to the overall value, each with bounds, plus the worst- and best-off group.
    ``criteria``: demographic parity, equalized odds, equal opportunity, equal accuracy
    (multiclass: accuracy, balanced accuracy and calibration gaps). ``four_fifths``: the
    selection-rate ratio against 0.8 (binary only). ``reliability``: per group of each single
    attribute, its reliability curve (the group's ``calibration_error`` is that curve's ECE).
    """

    task: str  # 'binary' or 'multiclass'
    positive_class: str | None
    metrics: list[str]
    groupings: list[str]
    overall: pd.DataFrame
    groups: pd.DataFrame
    disparities: pd.DataFrame
    criteria: pd.DataFrame
    four_fifths: pd.DataFrame
    n_boot: int
    ci: float
    min_group_size: int
    notes: list[str] = field(default_factory=list)
    quality: dict = field(default_factory=dict)
    # False where the favourable class was assumed (class 1 of a binary model), not declared in the card or spec.
    favourable_declared: bool = True
    # Per group of each single attribute: its reliability curve (bin_low, bin_high, count, confidence, accuracy).
    reliability: pd.DataFrame = field(default_factory=pd.DataFrame)
    # Per grouping, every other group against its reference group (declared in the card, else the largest):
    # difference and ratio with bootstrap intervals, a two-sided test (p_value) and BH q_value within the grouping.
    reference: pd.DataFrame = field(default_factory=pd.DataFrame)

    def table(self, grouping: str) -> pd.DataFrame:
        """The rows of ``groups`` for one grouping (e.g. 'sex' or 'sex x race')."""
        return self.groups[self.groups["grouping"] == grouping].reset_index(drop=True)

    def criterion(self, grouping: str, name: str) -> pd.Series:
        rows = self.criteria[(self.criteria["grouping"] == grouping) & (self.criteria["criterion"] == name)]
        if rows.empty:
            raise KeyError(f"no criterion {name!r} for grouping {grouping!r}")
        return rows.iloc[0]

    def headline(self) -> str:
        singles = [g for g in self.groupings if " x " not in g]
        parts = []
        if self.task == "binary":
            for g in singles:
                row = self.four_fifths[self.four_fifths["grouping"] == g]
                if len(row) and np.isfinite(row.iloc[0]["ratio"]):
                    r = row.iloc[0]
                    parts.append(f"{g} selection-rate ratio {r['ratio']:.2f} [{r['lo']:.2f}, {r['hi']:.2f}] 4/5 {r['verdict']}")
        else:
            for g in singles:
                c = self.criteria[(self.criteria["grouping"] == g) & (self.criteria["criterion"] == "equal_accuracy_gap")]
                if len(c) and np.isfinite(c.iloc[0]["value"]):
                    r = c.iloc[0]
                    parts.append(f"{g} accuracy gap {r['value']:.3f} [{r['lo']:.3f}, {r['hi']:.3f}] (worst {r['worst_group']})")
        n_small = int((self.groups["status"] == INSUFFICIENT).sum())
        tail = f"; {n_small} group(s) with insufficient data" if n_small else ""
        return "; ".join(parts) + tail if parts else f"no grouping with two eligible groups{tail}"

    def measurements(self) -> Iterator[Measurement]:
        """Per group ``group_<metric>`` (subject ``sex=Female``); per grouping and metric ``<metric>_difference``,
        ``<metric>_ratio`` and ``<metric>_difference_to_overall`` (subject the grouping, e.g. ``sex`` or ``sex x race``);
        per grouping ``four_fifths_ratio`` (binary models). All with their bootstrap intervals; value None where a
        grouping has fewer than two groups with enough rows."""
        for row in self.groups.to_dict("records"):
            subject = f"{row['grouping']}={row['group']}"
            for metric in self.metrics:
                yield Measurement(
                    name=f"group_{metric}",
                    subject=subject,
                    value=finite(row.get(metric)),
                    interval=bounds(row.get(f"{metric}_lo"), row.get(f"{metric}_hi")),
                    direction=_METRIC_DIRECTION.get(metric, "neutral"),
                    evidence=f".groups[grouping={row['grouping']},group={row['group']}]",
                    n=int(row["n"]),
                )
        d = self.disparities
        for metric in self.metrics:
            for grouping in self.groupings:
                rows = d[(d["grouping"] == grouping) & (d["metric"] == metric)]
                r = rows.iloc[0] if len(rows) else {}
                for measure, direction in _MEASURES.items():
                    yield Measurement(
                        name=f"{metric}_{measure}",
                        subject=grouping,
                        value=finite(r.get(measure)),
                        interval=bounds(r.get(f"{measure}_lo"), r.get(f"{measure}_hi")),
                        direction=direction,
                        evidence=f".disparities[grouping={grouping},metric={metric}]",
                    )
        for row in self.reference.to_dict("records") if len(self.reference) else ():
            where = f".reference[grouping={row['grouping']},group={row['group']},metric={row['metric']}]"
            subject = f"{row['grouping']}={row['group']}"
            yield Measurement(
                name=f"{row['metric']}_difference_to_reference", subject=subject, value=finite(row["difference"]),
                interval=bounds(row["difference_lo"], row["difference_hi"]), direction="neutral", evidence=where,
            )  # fmt: skip
            yield Measurement(
                name=f"{row['metric']}_ratio_to_reference", subject=subject, value=finite(row["ratio"]),
                interval=bounds(row["ratio_lo"], row["ratio_hi"]), direction="neutral", evidence=where,
            )  # fmt: skip
        if self.task == "binary":
            for grouping in self.groupings:
                rows = self.four_fifths[self.four_fifths["grouping"] == grouping] if len(self.four_fifths) else self.four_fifths
                r = rows.iloc[0] if len(rows) else {}
                yield Measurement(
                    name="four_fifths_ratio",
                    subject=grouping,
                    value=finite(r.get("ratio")),
                    interval=bounds(r.get("lo"), r.get("hi")),
                    direction="higher_is_better",
                    evidence=f".four_fifths[grouping={grouping}]",
                )


@serializable
@dataclass(frozen=True, kw_only=True)
class CounterfactualFlipResult(ProbeResult):
    """How often the decision changes when only a sensitive input changes.

    ``summary``: per attribute, the share of rows whose decision changes under at least one
    other value (``flip_rate``, Wilson interval ``lo``/``hi``) and the mean |change| of the
    favourable-class score (binary) or of the predicted class's probability. ``by_group``:
    the same per original group. ``pairs``: per (original group, counterfactual value), with
    the direction of binary flips (``to_favourable``/``to_unfavourable``).
    """

    attributes: list[str]
    not_inputs: list[str]
    positive_class: str | None
    summary: pd.DataFrame
    by_group: pd.DataFrame
    pairs: pd.DataFrame
    n_rows: int
    ci: float
    notes: list[str] = field(default_factory=list)

    def flip_rate(self, attribute: str) -> float:
        row = self.summary[self.summary["attribute"] == attribute]
        return float(row.iloc[0]["flip_rate"]) if len(row) else float("nan")

    def headline(self) -> str:
        parts = [f"{r.attribute} {r.flip_rate:.2%} [{r.lo:.2%}, {r.hi:.2%}]" for r in self.summary.itertuples()]
        tail = f"; not model inputs: {', '.join(self.not_inputs)}" if self.not_inputs else ""
        return ("decision flips: " + ", ".join(parts) if parts else "no sensitive input") + tail

    def measurements(self) -> Iterator[Measurement]:
        """``counterfactual_flip_rate`` per attribute (and per ``attribute=group``), with Wilson intervals."""
        for frame, table in ((self.summary, "summary"), (self.by_group, "by_group")):
            for row in frame.to_dict("records"):
                subject = row["attribute"] if table == "summary" else f"{row['attribute']}={row['group']}"
                where = f".{table}[attribute={row['attribute']}" + ("]" if table == "summary" else f",group={row['group']}]")
                yield Measurement(
                    name="counterfactual_flip_rate",
                    subject=subject,
                    value=finite(row["flip_rate"]),
                    interval=bounds(row["lo"], row["hi"]),
                    direction="lower_is_better",
                    evidence=where,
                    n=int(row["n"]),
                )


@serializable
@dataclass(frozen=True, kw_only=True)
class ProxyFeaturesResult(ProbeResult):
    """Mutual information of each input with each sensitive attribute, and probe-model scores.

    ``mutual_information``: one row per (attribute, feature): ``mi`` (nats),
    ``normalized_mi`` (MI / entropy of the attribute: the share of its uncertainty the
    feature removes, 0..1), ``rank`` within the attribute, ``sensitive`` (the feature is
    itself a sensitive attribute), ``importance_rank`` (1 = the model's most important
    feature by the audit's attributions; NaN without them). ``probe_models``: per attribute,
    the held-out macro AUC (0.5 = chance), accuracy (against the majority-class baseline)
    and balanced accuracy (against 1 / number of groups) of a logistic regression
    predicting it from all other inputs. ``proxies``: per attribute,
    the features whose normalized MI reaches ``threshold`` (best first).
    """

    mutual_information: pd.DataFrame
    probe_models: pd.DataFrame
    proxies: dict
    threshold: float
    n_rows: int
    notes: list[str] = field(default_factory=list)

    def top(self, attribute: str, k: int = 3) -> list[str]:
        rows = self.mutual_information[self.mutual_information["attribute"] == attribute]
        return list(rows.sort_values("rank")["feature"].head(k))

    def headline(self) -> str:
        parts = []
        for attr, feats in self.proxies.items():
            probe = self.probe_models[self.probe_models["attribute"] == attr]
            auc = f", probe AUC {probe.iloc[0]['auc']:.2f}" if len(probe) and np.isfinite(probe.iloc[0]["auc"]) else ""
            parts.append(f"{attr}: {', '.join(feats[:3]) or 'none'}{auc}")
        return "proxies " + "; ".join(parts)

    def measurements(self) -> Iterator[Measurement]:
        """Per sensitive attribute: ``proxy_auc`` (how well the other inputs predict it; 0.5 = chance) and
        ``max_normalized_mi`` (the largest share of its uncertainty one non-sensitive feature removes)."""
        for row in self.probe_models.to_dict("records"):
            yield Measurement(
                name="proxy_auc",
                subject=row["attribute"],
                value=finite(row.get("auc")),
                direction="lower_is_better",
                evidence=f".probe_models[attribute={row['attribute']}]",
            )
        mi = self.mutual_information
        for attribute in dict.fromkeys(mi["attribute"]) if len(mi) else ():
            rows = mi[(mi["attribute"] == attribute) & ~mi["sensitive"].astype(bool)]
            top = rows.loc[rows["normalized_mi"].idxmax()] if rows["normalized_mi"].notna().any() else None
            yield Measurement(
                name="max_normalized_mi",
                subject=attribute,
                value=None if top is None else finite(top["normalized_mi"]),
                direction="lower_is_better",
                evidence=f".mutual_information[attribute={attribute}" + ("]" if top is None else f",feature={top['feature']}]"),
                n=self.n_rows,
            )


@serializable
@dataclass(frozen=True, kw_only=True)
class MitigationPreviewResult(ProbeResult):
    """Held-out accuracy and disparities of threshold post-processing, per sensitive attribute.

    ``curve`` has one row per (attribute, method, setting): ``method`` is 'unmitigated'
    (the model as audited), 'group_thresholds' (``setting`` = how far each group's
    selection rate moved towards the common rate, 0..1) or 'threshold_optimizer'
    (``constraint`` and ``setting`` = fairlearn's tolerance), with held-out ``accuracy``,
    ``selection_rate``, ``dp_difference`` (max - min selection rate), ``eo_difference``
    (equalized odds: max of the TPR and FPR gaps), the thresholds where deterministic, and
    ``pareto`` (no other row of the attribute is at least as accurate and as fair).
    """

    preview: bool
    label: str
    positive_class: str
    attributes: list[str]
    curve: pd.DataFrame
    n_fit: int
    n_test: int
    notes: list[str] = field(default_factory=list)

    def headline(self) -> str:
        parts = []
        for attr in self.attributes:
            rows = self.curve[self.curve["attribute"] == attr]
            base = rows[rows["method"] == "unmitigated"]
            opt = rows[(rows["method"] == "threshold_optimizer") & (rows["constraint"] == "demographic_parity")]
            if base.empty or opt.empty:
                continue
            b, o = base.iloc[0], opt.loc[opt["dp_difference"].idxmin()]
            parts.append(f"{attr} DP diff {b['dp_difference']:.2f}->{o['dp_difference']:.2f} at accuracy {b['accuracy']:.3f}->{o['accuracy']:.3f}")
        return f"{PREVIEW_LABEL}; " + ("; ".join(parts) if parts else "no trade-off computed")

    def measurements(self) -> Iterator[Measurement]:
        """Held-out, per attribute: the audited model's ``heldout_dp_difference``/``heldout_eo_difference`` and the lowest
        demographic-parity difference threshold post-processing reached (``mitigated_dp_difference``, a preview)."""
        for attr in self.attributes:
            rows = self.curve[self.curve["attribute"] == attr]
            base = rows[rows["method"] == "unmitigated"]
            if len(base):
                b = base.iloc[0]
                where = f".curve[attribute={attr},method=unmitigated]"
                yield Measurement(
                    name="heldout_dp_difference", subject=attr, value=finite(b["dp_difference"]), direction="lower_is_better", evidence=where, n=self.n_test
                )
                yield Measurement(
                    name="heldout_eo_difference", subject=attr, value=finite(b["eo_difference"]), direction="lower_is_better", evidence=where, n=self.n_test
                )
            mitigated = rows[rows["method"] != "unmitigated"]
            if len(mitigated) and mitigated["dp_difference"].notna().any():
                best = mitigated.loc[mitigated["dp_difference"].idxmin()]
                yield Measurement(
                    name="mitigated_dp_difference",
                    subject=attr,
                    value=finite(best["dp_difference"]),
                    evidence=f".curve[attribute={attr},method={best['method']},setting={best['setting']}]",
                    n=self.n_test,
                )


@serializable
@dataclass(frozen=True, kw_only=True)
class IdentityTermResult(ProbeResult):
    """Score shifts and decision flips when only the identity group a text names changes.

    The score is the probability of ``score_class`` (the favourable class, or class 1 of a
    binary model); for a multiclass model without one, of the class predicted for the
    original text. A shift is counterfactual minus original score; a flip is a changed
    decision. ``groups``: per source ('templates', 'evaluation'), category and group, the
    variants swapped *into* that group: ``n``, ``flips``, ``flip_rate`` with Wilson
    interval ``lo``/``hi`` and ``mean_shift``; templates add ``mean_score`` and
    ``positive_rate`` (share of filled templates decided as ``score_class``), evaluation
    texts ``n_source`` (texts that named the group). ``pairs``: the same per (from_group,
    to_group). ``summary``: per source and category, texts used, variants, overall flip
    rate and the most shifted group. ``examples``: the largest shifts.
    """

    score_class: str | None
    categories: list[str]
    groups: pd.DataFrame
    pairs: pd.DataFrame
    summary: pd.DataFrame
    examples: pd.DataFrame
    lexicon: str
    ci: float
    notes: list[str] = field(default_factory=list)

    def flip_rate(self, group: str, source: str = "templates") -> float:
        rows = self.groups[(self.groups["group"] == group) & (self.groups["source"] == source)]
        return float(rows.iloc[0]["flip_rate"]) if len(rows) else float("nan")

    def headline(self) -> str:
        parts = []
        for source, rows in self.groups.groupby("source", sort=False):
            rows = rows.dropna(subset=["mean_shift"])
            if rows.empty:
                continue
            total = rows["flips"].sum() / max(rows["n"].sum(), 1)
            up, down = rows.loc[rows["mean_shift"].idxmax()], rows.loc[rows["mean_shift"].idxmin()]
            score = f"P({self.score_class})" if self.score_class else "score"
            text = f"{source}: flips {total:.1%}"
            if up["mean_shift"] > 0:
                text += f", {score} up most into {up['category']}/{up['group']} {up['mean_shift']:+.3f} (flips {up['flip_rate']:.1%})"
            if down["mean_shift"] < 0:
                text += f", down most into {down['category']}/{down['group']} {down['mean_shift']:+.3f}"
            parts.append(text)
        return "; ".join(parts) or "no identity terms found"

    def measurements(self) -> Iterator[Measurement]:
        """``identity_flip_rate`` per source, category and group swapped into (subject ``templates/gender/female``),
        with Wilson intervals, and ``identity_score_shift`` (mean score change; no better direction)."""
        for row in self.groups.to_dict("records"):
            subject = f"{row['source']}/{row['category']}/{row['group']}"
            where = f".groups[source={row['source']},category={row['category']},group={row['group']}]"
            n = int(row["n"])
            yield Measurement(
                name="identity_flip_rate", subject=subject, value=finite(row["flip_rate"]), interval=bounds(row["lo"], row["hi"]),
                direction="lower_is_better", evidence=where, n=n,
            )  # fmt: skip
            yield Measurement(name="identity_score_shift", subject=subject, value=finite(row["mean_shift"]), evidence=where, n=n)


@serializable
@dataclass(frozen=True, kw_only=True)
class AttributionDisparityResult(ProbeResult):
    """Per method, attribute and group: attribution shares and their divergence from the rest.

    ``summary`` has one row per (method, attribute, group): ``n`` explained samples,
    ``status`` ('ok' or 'insufficient data' when the group or the rest has fewer than
    ``min_samples``), ``divergence`` with bootstrap bounds, ``chance`` (mean divergence of
    random splits of the same sizes), ``p_value`` and, for tabular models, the features the
    group relies on most and the one it over-relies on most relative to the rest.
    ``features`` (tabular) has the per-feature mean |attribution| and shares; ``maps``
    (images) holds each group's share map, keyed 'method/attribute/group'.
    """

    modality: str
    methods: list[str]
    summary: pd.DataFrame
    features: pd.DataFrame
    maps: dict
    min_samples: int
    n_boot: int
    ci: float
    notes: list[str] = field(default_factory=list)

    def headline(self) -> str:
        if self.summary.empty:
            return "no attributions to compare"
        ok = self.summary[self.summary["status"] == "ok"]
        if ok.empty:
            return f"{len(self.summary)} group(s), all with fewer than {self.min_samples} explained samples"
        r = ok.loc[ok["divergence"].idxmax()]
        return (
            f"largest divergence {r['method']} {r['attribute']}={r['group']} {r['divergence']:.2f} "
            f"[{r['lo']:.2f}, {r['hi']:.2f}] vs chance {r['chance']:.2f} (p={r['p_value']:.2f}, n={int(r['n'])})"
        )

    def measurements(self) -> Iterator[Measurement]:
        """``attribution_divergence`` per method and group (subject ``grad_cam/sex=Female``), with bootstrap bounds;
        value None for groups with too few explained samples. ``attribution_divergence_excess_by_group`` per group
        (subject ``sex=Female``): the median over methods of the divergence minus its chance level (random groups of the
        same size), with the medians of the bounds shifted alike - a group the explanations treat apart in most methods,
        beyond what so few samples give by chance. ``attribution_divergence_excess`` per attribute (subject ``sex``):
        its ``eligible`` group (one the budget is expected to compare, from the group's share of the data) with the
        largest such excess (evidence names it), for every attribute with an eligible group, so the findings stay the
        same whichever samples a seed picks."""
        ok = self.summary[self.summary["status"] == "ok"] if len(self.summary) else self.summary
        eligible_attrs = list(dict.fromkeys(self.summary.loc[self.summary["eligible"].astype(bool), "attribute"])) if "eligible" in self.summary else []
        if len(ok):
            ok = ok.assign(excess=ok["divergence"] - ok["chance"], ex_lo=ok["lo"] - ok["chance"], ex_hi=ok["hi"] - ok["chance"])
            per_group = [
                (attr, group, rows["excess"].median(), rows["ex_lo"].median(), rows["ex_hi"].median(), int(rows["n"].max()), bool(rows.get("eligible", rows["n"] > 0).all()))
                for (attr, group), rows in ok.groupby(["attribute", "group"], sort=False)
            ]  # fmt: skip
        else:
            per_group = []
        for attr in eligible_attrs:  # attributes whose groups the budget is expected to compare; None if this draw could not
            found = [g for g in per_group if g[0] == attr and g[6]]
            if not found:
                yield Measurement(name="attribution_divergence_excess", subject=str(attr), value=None, direction="lower_is_better", evidence=".summary")
                continue
            _, group, excess, lo, hi, n, _ = max(found, key=lambda g: g[2])
            yield Measurement(
                name="attribution_divergence_excess", subject=str(attr), value=finite(excess), interval=bounds(lo, hi),
                direction="lower_is_better", evidence=f".summary[attribute={attr},group={group}]", n=n,
            )  # fmt: skip
        if per_group:
            for attr, group, excess, lo, hi, n, _ in per_group:
                yield Measurement(
                    name="attribution_divergence_excess_by_group", subject=f"{attr}={group}", value=finite(excess), interval=bounds(lo, hi),
                    direction="lower_is_better", evidence=f".summary[attribute={attr},group={group}]", n=n,
                )  # fmt: skip
        for row in self.summary.to_dict("records"):
            yield Measurement(
                name="attribution_divergence",
                subject=f"{row['method']}/{row['attribute']}={row['group']}",
                value=finite(row["divergence"]),
                interval=bounds(row["lo"], row["hi"]),
                direction="lower_is_better",
                evidence=f".summary[method={row['method']},attribute={row['attribute']},group={row['group']}]",
                n=int(row["n"]),
            )


@serializable
@dataclass(frozen=True, kw_only=True)
class IndividualFairnessResult(ProbeResult):
    """Consistency of decisions among nearest neighbours and the inequality of per-row benefits.

    ``overall``: ``consistency`` (1 = every row decided like its ``k`` nearest neighbours),
    ``theil`` (generalized entropy index with alpha 1) and ``generalized_entropy`` (alpha
    ``alpha``) of the benefits ``decision - label + 1`` (towards ``positive_class``).
    ``decomposition``: per attribute and index, ``total`` = ``between`` + ``within`` and the
    between-group share. ``groups``: per attribute and group, ``n``, ``status``, mean
    ``consistency``, ``mean_benefit`` and the group's own Theil index.
    """

    positive_class: str
    k: int
    alpha: float
    overall: dict
    decomposition: pd.DataFrame
    groups: pd.DataFrame
    n_rows: int
    n_consistency_rows: int
    min_group_size: int
    notes: list[str] = field(default_factory=list)

    def headline(self) -> str:
        o = self.overall
        parts = [f"consistency {o['consistency']:.3f} (k={self.k})", f"Theil index {o['theil']:.4f}"]
        theil = self.decomposition[self.decomposition["index"] == "theil"] if len(self.decomposition) else self.decomposition
        for r in theil.to_dict("records"):
            share = f" ({r['between_share']:.0%} of it)" if np.isfinite(r["between_share"]) else ""
            parts.append(f"between {r['attribute']} groups {r['between']:.4f}{share}")
        return ", ".join(parts)

    def measurements(self) -> Iterator[Measurement]:
        """``consistency`` (overall and per ``attribute=group``), ``theil_index`` and ``generalized_entropy_index`` overall,
        and per attribute ``theil_between_group``/``theil_within_group`` (and the same for the generalized entropy index)."""
        o = self.overall
        yield Measurement(
            name="consistency", subject="all", value=finite(o.get("consistency")), direction="higher_is_better", evidence=".overall", n=self.n_consistency_rows
        )
        yield Measurement(name="theil_index", subject="all", value=finite(o.get("theil")), direction="lower_is_better", evidence=".overall", n=self.n_rows)
        yield Measurement(
            name="generalized_entropy_index",
            subject="all",
            value=finite(o.get("generalized_entropy")),
            direction="lower_is_better",
            evidence=".overall",
            n=self.n_rows,
        )
        for r in self.decomposition.to_dict("records"):
            where = f".decomposition[attribute={r['attribute']},index={r['index']}]"
            for part in ("between", "within"):
                yield Measurement(
                    name=f"{r['index']}_{part}_group", subject=r["attribute"], value=finite(r[part]), direction="lower_is_better", evidence=where, n=self.n_rows
                )
        for r in self.groups.to_dict("records"):
            yield Measurement(
                name="consistency", subject=f"{r['attribute']}={r['group']}", value=finite(r["consistency"]), direction="higher_is_better",
                evidence=f".groups[attribute={r['attribute']},group={r['group']}]", n=int(r["n"]),
            )  # fmt: skip


@serializable
@dataclass(frozen=True, kw_only=True)
class ThresholdSweepResult(ProbeResult):
    """Per group, the decisions as the threshold on the favourable-class score moves.

    ``curve``: one row per (attribute, group, threshold) with ``selection_rate``, ``tpr``, ``fpr``
    and ``precision`` (attribute and group '(all rows)' for everyone; groups below
    ``min_group_size`` have one row with status 'insufficient data'). ``threshold`` is the
    decision threshold in use (the card's, or 0.5 on a model's probability), ``score_source``
    says which score was swept. ``at_rate``: per group, the same rates at ``cutoff``, the
    threshold that selects ``selection_rate`` of all rows (empty when not asked for).
    """

    positive_class: str
    score_source: str
    threshold: float
    selection_rate: float | None
    cutoff: float | None
    curve: pd.DataFrame
    at_rate: pd.DataFrame
    min_group_size: int
    notes: list[str] = field(default_factory=list)

    def at(self, attribute: str, group: str, threshold: float) -> pd.Series:
        """The rates of one group at one swept threshold."""
        c = self.curve
        rows = c[(c["attribute"] == attribute) & (c["group"] == group) & np.isclose(c["threshold"].astype(float), threshold)]
        if rows.empty:
            raise KeyError(f"no swept threshold {threshold} for {attribute}={group}")
        return rows.iloc[0]

    def headline(self) -> str:
        c = self.curve[(self.curve["status"] == "ok") & (self.curve["attribute"] != "(all rows)")]
        here = c[np.isclose(c["threshold"].astype(float), self.threshold)]
        parts = []
        for attr, rows in here.groupby("attribute", sort=False):
            if len(rows) >= 2:
                parts.append(
                    f"{attr} FPR {rows['fpr'].min():.3f}-{rows['fpr'].max():.3f}, selection rate {rows['selection_rate'].min():.3f}-{rows['selection_rate'].max():.3f}"
                )
        return f"at threshold {self.threshold:g} on {self.score_source}: " + ("; ".join(parts) if parts else "fewer than two groups with enough rows")

    def measurements(self) -> Iterator[Measurement]:
        """At the chosen selection rate (when asked for), per group: ``at_rate_selection_rate``, ``at_rate_tpr``, ``at_rate_fpr``."""
        for row in self.at_rate.to_dict("records") if len(self.at_rate) else ():
            for metric, direction in (("selection_rate", "neutral"), ("tpr", "higher_is_better"), ("fpr", "lower_is_better")):
                yield Measurement(
                    name=f"at_rate_{metric}", subject=f"{row['attribute']}={row['group']}", value=finite(row.get(metric)), direction=direction,
                    evidence=f".at_rate[attribute={row['attribute']},group={row['group']}]", n=int(row["n"]),
                )  # fmt: skip
