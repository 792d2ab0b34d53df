"""Robustness probes, one file per method. Importing this package registers them."""

from __future__ import annotations

import importlib

from audits.robustness.base import (
    AdversarialExamples,
    AttackResult,
    CalibrationResult,
    CorruptionExamples,
    CorruptionResult,
    RobustnessProbe,
    TabularAdversarialResult,
    TabularPerturbationResult,
    group_breakdown,
)

# Probe modules, in the order their results appear in a report (attacks, corruptions,
# tabular and text perturbations, calibration). Each registers its probe on import; a missing one
# is an ImportError, not a silent gap.
_PROBES = (
    "fgsm",
    "pgd",
    "autoattack",
    "minimal_perturbation",
    "corruptions",
    "tabular_perturbations",
    "tabular_adversarial",
    "text_perturbations",
    "calibration",
)
for _name in _PROBES:
    importlib.import_module(f"audits.robustness.{_name}")

__all__ = [
    "AdversarialExamples",
    "AttackResult",
    "CalibrationResult",
    "CorruptionExamples",
    "CorruptionResult",
    "RobustnessProbe",
    "TabularAdversarialResult",
    "TabularPerturbationResult",
    "group_breakdown",
]
