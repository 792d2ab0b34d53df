"""Typed, serializable result objects of every probe, importing numpy and pandas only.

This package never imports torch or a probe module: loading and rendering a report
needs only these classes. Results are grouped by family (base, performance,
attribution, robustness, fairness, uncertainty, privacy); importing the package imports every family, which
registers each class for deserialization. Each result says what it measured through
:meth:`ProbeResult.measurements`.
"""

from __future__ import annotations

from audits.results.attribution import AttentionMapsResult, AttributionResult, TextAttentionResult
from audits.results.base import Cost, Measurement, ProbeFailure, ProbeResult, SkippedProbe
from audits.results.concepts import FeatureVisualizationResult, TCAVResult
from audits.results.discovery import AttributionRegionsResult, SliceDiscoveryResult, TriggerScanResult, TriggerValuesResult, TriggerWordsResult
from audits.results.fairness import (
    AttributionDisparityResult,
    CounterfactualFlipResult,
    GroupMetricsResult,
    IdentityTermResult,
    IndividualFairnessResult,
    MitigationPreviewResult,
    ProxyFeaturesResult,
    ThresholdSweepResult,
)
from audits.results.performance import PerformanceResult
from audits.results.privacy import MembershipInferenceResult
from audits.results.robustness import (
    AdversarialExamples,
    AttackResult,
    CalibrationResult,
    CorruptionExamples,
    CorruptionResult,
    TabularAdversarialResult,
    TabularPerturbationResult,
    TextRobustnessResult,
)
from audits.results.trust import TrustResult
from audits.results.uncertainty import OODDetectionResult, UncertaintyResult

__all__ = [
    "AdversarialExamples",
    "AttackResult",
    "AttentionMapsResult",
    "AttributionDisparityResult",
    "AttributionRegionsResult",
    "AttributionResult",
    "CalibrationResult",
    "CorruptionExamples",
    "CorruptionResult",
    "Cost",
    "CounterfactualFlipResult",
    "FeatureVisualizationResult",
    "GroupMetricsResult",
    "IdentityTermResult",
    "IndividualFairnessResult",
    "Measurement",
    "MembershipInferenceResult",
    "MitigationPreviewResult",
    "OODDetectionResult",
    "PerformanceResult",
    "ProbeFailure",
    "ProbeResult",
    "ProxyFeaturesResult",
    "SkippedProbe",
    "SliceDiscoveryResult",
    "TCAVResult",
    "TabularAdversarialResult",
    "TabularPerturbationResult",
    "TextAttentionResult",
    "TextRobustnessResult",
    "ThresholdSweepResult",
    "TriggerScanResult",
    "TriggerValuesResult",
    "TriggerWordsResult",
    "TrustResult",
    "UncertaintyResult",
]
