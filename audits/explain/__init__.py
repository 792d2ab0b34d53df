"""Attribution probes, one file per method. Importing this package registers them."""

from __future__ import annotations

import importlib

from audits.explain.base import AttributionProbe, AttributionResult

# Method modules in report order; each registers its probe(s) on import (audits.probes imports
# any module not listed here after these).
_METHODS = (
    "grad_cam",
    "integrated_gradients",
    "saliency",
    "gradient_shap",
    "occlusion",
    "kernel_shap",
    "lime",
    "attention_maps",
    "text_attention",
    "layer_integrated_gradients",
    "kernel_shap_text",
    "lime_text",
    "explanation_trust",
)
for _name in _METHODS:
    importlib.import_module(f"audits.explain.{_name}")

__all__ = ["AttributionProbe", "AttributionResult"]
