"""Result classes whose page drawing needs more than their registry view (``DRAWERS``, keyed by
class): a grouping or attribute to pick, side-by-side curves with table expanders. Every other
result is drawn through its view in ``audits.render.registry`` (``result_view.draw_registered_view``).
Charts come from ``audits.render.views`` (drawn by ``audits.render.plotly_backend``), tables from
the result's own fields (``audits.render.tables``).

``result_view.draw_result`` picks the drawer by the result's class hierarchy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd
import streamlit as st

from audits.render import tables
from audits.render.charts import Chart
from audits.render.plotly_backend import to_plotly
from audits.render.views import concepts as concepts_view
from audits.render.views import fairness as fairness_view
from audits.render.views import privacy as privacy_view
from audits.render.views import robustness as robustness_view
from audits.render.views import uncertainty as uncertainty_view
from audits.results.concepts import FeatureVisualizationResult, TCAVResult
from audits.results.fairness import GroupMetricsResult, IdentityTermResult, MitigationPreviewResult
from audits.results.privacy import MembershipInferenceResult
from audits.results.robustness import AttackResult, CorruptionResult, TabularAdversarialResult, TabularPerturbationResult, TextRobustnessResult
from audits.results.uncertainty import OODDetectionResult, UncertaintyResult
from dashboard.display import plot, show_table, table_height
from dashboard.feedback import guarded
from dashboard.markup import escape
from dashboard.samples import value_range
from dashboard.workspace import Workspace

Drawer = Callable[[Any, Workspace | None, str], None]


def _plot(make: Callable[[], Chart], key: str, what: str) -> None:
    """Draw one chart description (``audits.render.views``) with plotly; if it cannot be drawn, say so and keep going."""
    with guarded(f"Drawing {what}"):
        plot(to_plotly(make()), key=key)


def _class_names(ws: Workspace | None, fallback: int = 0) -> list[str]:
    return list(ws.data.class_names) if ws is not None else [str(i) for i in range(fallback)]


def _plot_if(make: Callable[[], Chart | None], key: str, what: str) -> None:
    """Like ``_plot`` for a chart that may not apply (None: nothing drawn)."""
    with guarded(f"Drawing {what}"):
        chart = make()
        if chart is not None:
            plot(to_plotly(chart), key=key)


# --- robustness ------------------------------------------------------------------------


def _attack(r, ws, key):
    c1, c2 = st.columns(2)
    with c1:
        _plot(lambda: robustness_view.attack_curve_chart([r]), f"{key}.curve", "the robustness curve")
    with c2:
        _plot(lambda: robustness_view.attack_group_chart(r), f"{key}.groups", "the per-group curve")
    if r.examples is not None and ws is not None and ws.data.modality == "image":
        _plot(lambda: robustness_view.adversarial_examples_chart(r, _class_names(ws), value_range(ws)), f"{key}.examples", "the adversarial examples")
    with st.expander("Robust accuracy per epsilon (table)"):
        show_table(r.curve, key=f"{key}.table")


def _corruption(r, ws, key):
    c1, c2 = st.columns(2)
    with c1:
        _plot(lambda: robustness_view.corruption_chart(r), f"{key}.curve", "the corruption curves")
    with c2:
        _plot(lambda: robustness_view.corruption_group_chart(r), f"{key}.groups", "the per-group corruption curve")
    with st.expander("Accuracy per corruption and severity (table)"):
        show_table(r.table, key=f"{key}.table")


def _tabular_perturbation(r, ws, key):
    c1, c2 = st.columns(2)
    with c1:
        _plot(lambda: robustness_view.tabular_perturbation_chart(r), f"{key}.curve", "the perturbation curves")
    with c2:
        _plot(lambda: robustness_view.tabular_fragility_chart(r), f"{key}.fragility", "the feature fragility")
    with st.expander("Flip rate per perturbation (table)"):
        show_table(r.table, key=f"{key}.table")
    for note in r.notes:
        st.caption(escape(str(note)))


def _tabular_adversarial(r, ws, key):
    _plot(lambda: robustness_view.tabular_adversarial_chart(r), f"{key}.features", "the per-feature flip fractions")
    c1, c2 = st.columns(2)
    with c1, st.expander("Smallest flipping change per decision (table)"):
        show_table(r.decisions, key=f"{key}.decisions")
    with c2, st.expander("Flippable share per group (table)"):
        show_table(r.by_group, key=f"{key}.groups")


# --- fairness --------------------------------------------------------------------------


def _group_metrics(r, ws, key):
    singles = [g for g in r.groupings if " x " not in g]
    crossed = [g for g in r.groupings if " x " in g]
    grouping = st.selectbox("Grouping", r.groupings, key=f"{key}.grouping", help="A sensitive attribute, or an intersection of two ('sex x race').")
    table = r.table(grouping)
    c1, c2 = st.columns(2)
    with c1:
        _plot(lambda: fairness_view.group_metric_chart(r, grouping), f"{key}.groups.{grouping}", "the group metrics")
    with c2:
        _plot(lambda: fairness_view.disparity_chart(r, singles), f"{key}.disparity", "the disparities")
    st.markdown(
        f"**{grouping}: every metric per group**, as value [{int(r.ci * 100)}% bootstrap interval]; groups under {r.min_group_size} rows are not measured"
    )
    show_table(tables.interval_table(table, list(r.metrics)), key=f"{key}.table.{grouping}", height=table_height(len(table)))
    if crossed:
        st.markdown("**Intersectional groups**")
        i1, i2 = st.columns(2)
        which = i1.selectbox("Intersection", crossed, key=f"{key}.cross")
        metric = i2.selectbox("Metric", list(r.metrics), key=f"{key}.cross_metric", format_func=lambda m: m.replace("_", " "))
        _plot(lambda: fairness_view.intersection_heatmap_chart(r, which, metric), f"{key}.heat.{which}.{metric}", "the intersectional heatmap")
    if r.task == "binary" and len(r.four_fifths):
        _plot(lambda: fairness_view.four_fifths_chart(r), f"{key}.fourfifths", "the four-fifths rule")
    with st.expander("Fairness criteria (table)"):
        show_table(r.criteria, key=f"{key}.criteria")
    for note in r.notes[:6]:
        st.caption(escape(str(note)))


def _mitigation(r, ws, key):
    st.warning(r.label, icon=":material/visibility:")
    attribute = st.selectbox("Attribute", r.attributes, key=f"{key}.attribute")
    _plot(lambda: fairness_view.mitigation_chart(r, attribute), f"{key}.figure.{attribute}", "the mitigation trade-off")
    with st.expander("Trade-off points (table)"):
        show_table(r.curve[r.curve["attribute"] == attribute], key=f"{key}.table.{attribute}")


# --- uncertainty and privacy --------------------------------------------------------------


def _notes(r) -> None:
    for note in getattr(r, "notes", None) or []:
        st.caption(escape(str(note)))


def _uncertainty(r, ws, key):
    st.markdown(escape(uncertainty_view.UNCERTAINTY_EXPLAINED))
    show_table(r.sources, key=f"{key}.sources")
    _plot(lambda: uncertainty_view.risk_coverage_chart(r), f"{key}.curve", "the risk-coverage curve")
    if len(r.by_group):
        with st.expander("Per group (table)"):
            show_table(r.by_group, key=f"{key}.groups", height=table_height(len(r.by_group)))
    _notes(r)


def _ood(r, ws, key):
    st.markdown(escape(uncertainty_view.OOD_EXPLAINED))
    columns = st.columns(len(r.scores))
    for column, score in zip(columns, r.scores, strict=True):
        with column:
            _plot(lambda score=score: uncertainty_view.ood_heatmap(r, score), f"{key}.{score}", f"the {score} AUROC")
    disagreement = uncertainty_view.ensemble_disagreement(r)
    if disagreement is not None:
        st.markdown("**Ensemble disagreement** (the members' mutual information, nats): clean images against shifted ones, per severity")
        show_table(disagreement, key=f"{key}.disagreement")
    with st.expander("AUROC per corruption, severity and score (table)"):
        show_table(r.table, key=f"{key}.table", height=table_height(len(r.table)))
    _notes(r)


def _membership(r, ws, key):
    st.markdown(escape(privacy_view.MEMBERSHIP_EXPLAINED))
    show_table(r.attacks, key=f"{key}.attacks")
    _plot(lambda: privacy_view.roc_chart(r), f"{key}.roc", "the ROC curves")
    if len(r.by_group):
        with st.expander("Per group (table)"):
            show_table(r.by_group, key=f"{key}.groups", height=table_height(len(r.by_group)))
    _notes(r)


# --- concepts --------------------------------------------------------------------------


def _tcav(r, ws, key):
    st.markdown(escape(concepts_view.TCAV_MEANING))
    _plot(lambda: concepts_view.tcav_chart(r), f"{key}.heatmap", "the TCAV heatmap")
    means, rand, p = r.mean_scores(), r.random_mean(), r.p_values
    rows = [
        {
            "concept": c,
            "class": k,
            "tcav_score": means[i, j],
            "random": rand[j],
            "p": p[i, j],
            "significant": bool(r.significant[i, j]),
            "sensitive": r.sensitive[i],
        }
        for i, c in enumerate(r.concepts)
        for j, k in enumerate(r.class_names)
    ]
    with st.expander("Scores, random baselines and p-values (table)"):
        show_table(pd.DataFrame(rows), key=f"{key}.table", height=table_height(len(rows)))
    for note in r.notes:
        st.caption(escape(note))


def _feature_visualization(r, ws, key):
    st.markdown(escape(concepts_view.FV_MEANING))
    _plot(lambda: concepts_view.class_gallery(r), f"{key}.classes", "the class gallery")
    if len(r.channels):
        _plot(lambda: concepts_view.channel_gallery(r), f"{key}.channels", "the channel gallery")


def _text_robustness(r, ws, key):
    c1, c2 = st.columns(2)
    with c1:
        _plot(lambda: robustness_view.text_robustness_chart(r), f"{key}.curve", "the text perturbation curves")
    with c2:
        _plot_if(lambda: robustness_view.text_robustness_group_chart(r), f"{key}.groups", "the per-group flip rates")
    if not r.examples.empty:
        st.markdown("**Perturbed texts whose decision changed**")
        show_table(r.examples, key=f"{key}.examples")
    with st.expander("Accuracy and flips per perturbation and strength (table)"):
        show_table(r.table, key=f"{key}.table")
    for note in r.notes:
        st.caption(escape(str(note)))


def _identity_terms(r, ws, key):
    c1, c2 = st.columns(2)
    with c1:
        _plot(lambda: fairness_view.identity_term_chart(r), f"{key}.shift", "the identity-term score shifts")
    with c2:
        _plot_if(lambda: fairness_view.identity_term_flip_chart(r), f"{key}.flips", "the identity-term flip rates")
    show_table(r.summary, key=f"{key}.summary")
    if not r.examples.empty:
        with st.expander("Largest shifts (examples)"):
            show_table(r.examples, key=f"{key}.examples")
    for note in r.notes:
        st.caption(escape(str(note)))


DRAWERS: dict[type, Drawer] = {
    TCAVResult: _tcav,
    FeatureVisualizationResult: _feature_visualization,
    AttackResult: _attack,
    CorruptionResult: _corruption,
    TabularPerturbationResult: _tabular_perturbation,
    TabularAdversarialResult: _tabular_adversarial,
    GroupMetricsResult: _group_metrics,
    MitigationPreviewResult: _mitigation,
    UncertaintyResult: _uncertainty,
    OODDetectionResult: _ood,
    MembershipInferenceResult: _membership,
    TextRobustnessResult: _text_robustness,
    IdentityTermResult: _identity_terms,
}
