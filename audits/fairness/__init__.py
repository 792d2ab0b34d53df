"""Fairness probes, one file per method. Importing this package registers them.

Each module is imported explicitly: a missing one is an ImportError, never skipped.
"""

from __future__ import annotations

from audits.fairness import (  # noqa: F401
    attribution_disparity,
    counterfactual,
    group_metrics,
    identity_terms,
    individual_fairness,
    mitigation,
    proxies,
    threshold_sweep,
)
from audits.fairness.attribution_disparity import AttributionDisparityResult
from audits.fairness.counterfactual import CounterfactualFlipResult
from audits.fairness.group_metrics import GroupMetricsResult
from audits.fairness.identity_terms import IdentityTermResult
from audits.fairness.individual_fairness import IndividualFairnessResult
from audits.fairness.mitigation import MitigationPreviewResult
from audits.fairness.proxies import ProxyFeaturesResult
from audits.fairness.threshold_sweep import ThresholdSweepResult

__all__ = [
    "AttributionDisparityResult",
    "CounterfactualFlipResult",
    "GroupMetricsResult",
    "IdentityTermResult",
    "IndividualFairnessResult",
    "MitigationPreviewResult",
    "ProxyFeaturesResult",
    "ThresholdSweepResult",
]
