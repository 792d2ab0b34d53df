"""Uncertainty probes, one file per method: predictive uncertainty with selective prediction, and
out-of-distribution detection. Importing this package registers them."""

from __future__ import annotations

import importlib

# Probe modules, in the order their results appear in a report.
for _module in ("predictive_uncertainty", "ood_detection"):
    importlib.import_module(f"audits.uncertainty.{_module}")
