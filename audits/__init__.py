"""Explainability, robustness and fairness audits for PyTorch models.

The engine: load a model from its card, load its evaluation data, run an audit::

    from audits import load_card, load_model, load_data, run_audit
    card = load_card("models/zoo/digits-cnn/card.yaml")
    report = run_audit(load_model(card), load_data(card))
    report.save("report.json")
"""

from __future__ import annotations

from audits.data import AuditData, load_data
from audits.engine import build_context, run_audit
from audits.errors import AuditError
from audits.probes import registered_probes
from audits.report import SCHEMA_VERSION, AuditReport
from audits.spec import AuditSpec, load_spec, parse_spec
from models.card import ModelCard, load_card
from models.loader import ModelHandle, load_model, wrap_model

__version__ = "0.1.0"

__all__ = [
    "SCHEMA_VERSION",
    "AuditData",
    "AuditError",
    "AuditReport",
    "AuditSpec",
    "ModelCard",
    "ModelHandle",
    "build_context",
    "load_card",
    "load_data",
    "load_model",
    "load_spec",
    "parse_spec",
    "registered_probes",
    "run_audit",
    "wrap_model",
]
