"""Explainability, robustness and fairness audits for PyTorch models.

The engine: load a model from its card, load its evaluation data, run an audit::

    from audits import load_card, load_model, load_data, run_audit
    card = load_card("models/zoo/digits-cnn/card.yaml")
    report = run_audit(load_model(card), load_data(card))
    report.save("report.json")
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# Public names -> defining module. Resolved lazily (PEP 562) so that importing a
# submodule such as audits.errors never drags in the whole engine (and models/ can
# import audits.errors without a cycle).
_EXPORTS = {
    "AuditData": "audits.data",
    "load_data": "audits.data",
    "build_context": "audits.engine",
    "run_audit": "audits.engine",
    "AuditError": "audits.errors",
    "registered_probes": "audits.probes",
    "SCHEMA_VERSION": "audits.report",
    "AuditReport": "audits.report",
    "AuditSpec": "audits.spec",
    "load_spec": "audits.spec",
    "parse_spec": "audits.spec",
    "ModelCard": "models.card",
    "load_card": "models.card",
    "ModelHandle": "models.loader",
    "load_model": "models.loader",
    "wrap_model": "models.loader",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'audits' has no attribute {name!r}")
