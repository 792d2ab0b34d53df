"""How each result class is drawn on a page (``DRAWERS``, keyed by class): charts from
``audits.render.views`` (drawn by ``audits.render.plotly_backend``), tables from the result's own
fields (``audits.render.tables``).

``result_view.draw_result`` picks the drawer by the result's class hierarchy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st

from audits.render import tables
from audits.render.charts import Chart
from audits.render.plotly_backend import to_plotly
from audits.render.views import fairness as fairness_view
from audits.render.views import robustness as robustness_view
from audits.results.fairness import (
    AttributionDisparityResult,
    CounterfactualFlipResult,
    GroupMetricsResult,
    IdentityTermResult,
    MitigationPreviewResult,
    ProxyFeaturesResult,
)
from audits.results.robustness import (
    AttackResult,
    CalibrationResult,
    CorruptionResult,
    TabularAdversarialResult,
    TabularPerturbationResult,
    TextRobustnessResult,
)
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


def _calibration(r, ws, key):
    c1, c2 = st.columns(2)
    with c1:
        _plot(lambda: robustness_view.calibration_reliability_chart(r), f"{key}.reliability", "the reliability curves")
    with c2:
        _plot(lambda: robustness_view.calibration_shift_chart(r), f"{key}.shift", "the calibration under shift")
    with st.expander("Calibration per condition (table)"):
        show_table(r.conditions, key=f"{key}.table")


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


def _counterfactual(r, ws, key):
    _plot(lambda: fairness_view.counterfactual_chart(r), f"{key}.figure", "the counterfactual flip rates")
    show_table(r.summary, key=f"{key}.summary")
    for note in r.notes:
        st.caption(escape(str(note)))


def _proxies(r, ws, key):
    _plot(lambda: fairness_view.proxy_chart(r), f"{key}.figure", "the proxy features")
    with st.expander("Probe models predicting each attribute from the other features (table)"):
        show_table(r.probe_models, key=f"{key}.probes")


def _mitigation(r, ws, key):
    st.warning(r.label, icon=":material/visibility:")
    attribute = st.selectbox("Attribute", r.attributes, key=f"{key}.attribute")
    _plot(lambda: fairness_view.mitigation_chart(r, attribute), f"{key}.figure.{attribute}", "the mitigation trade-off")
    with st.expander("Trade-off points (table)"):
        show_table(r.curve[r.curve["attribute"] == attribute], key=f"{key}.table.{attribute}")


def _attribution_disparity(r, ws, key):
    if len(r.summary) and (r.summary["status"] == "ok").any():
        _plot(lambda: fairness_view.attribution_disparity_chart(r), f"{key}.figure", "the attribution disparity")
    with st.expander("Divergence per method and group (table)"):
        show_table(r.summary, key=f"{key}.summary")
    for note in r.notes:
        st.caption(escape(str(note)))


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
    AttackResult: _attack,
    CorruptionResult: _corruption,
    CalibrationResult: _calibration,
    TabularPerturbationResult: _tabular_perturbation,
    TabularAdversarialResult: _tabular_adversarial,
    GroupMetricsResult: _group_metrics,
    CounterfactualFlipResult: _counterfactual,
    ProxyFeaturesResult: _proxies,
    MitigationPreviewResult: _mitigation,
    AttributionDisparityResult: _attribution_disparity,
    TextRobustnessResult: _text_robustness,
    IdentityTermResult: _identity_terms,
}
