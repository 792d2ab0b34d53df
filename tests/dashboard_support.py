"""Shared by the dashboard tests: small audits of the zoo models for the store the pages read."""

from __future__ import annotations

from models.registry import ZOO_DIR

# The probes the pages draw, on budgets that keep the suite quick.
DIGITS_SPEC = {
    "seed": 0,
    "samples": 4,
    "max_rows": 240,
    "probes": [
        {"name": "grad_cam"},
        {"name": "fgsm", "params": {"max_rows": 64}},
        {"name": "corruptions", "params": {"corruptions": ["gaussian_noise", "contrast"], "severities": [1, 3, 5], "max_rows": 64}},
        {"name": "group_metrics", "params": {"n_boot": 50}},
    ],
}
ADULT_SPEC = {
    "seed": 0,
    "samples": 4,
    "max_rows": 1500,
    "probes": [
        {"name": "integrated_gradients"},
        {"name": "tabular_perturbations", "params": {"max_rows": 300}},
        {"name": "group_metrics", "params": {"n_boot": 50, "min_group_size": 20}},
        {"name": "counterfactual_flips", "params": {"max_rows": 500}},
        {"name": "mitigation_preview", "params": {"steps": 4}},
    ],
}


def store_audit(name: str, spec: dict, root=None):
    """Audit zoo model ``name`` with ``spec`` (findings from the default policy) into the store."""
    from audits.data import load_data
    from audits.engine import run_audit
    from audits.spec import parse_spec
    from dashboard.stored_runs import RunStore
    from models.card import load_card
    from models.loader import load_model

    card = load_card(ZOO_DIR / name / "card.yaml")
    report = run_audit(load_model(card), load_data(card), parse_spec(spec))
    try:
        from audits.policy import apply_policy

        report = apply_policy(report)
    except ImportError:  # the policy module ships with the report engine
        pass
    return RunStore.at(root).save(report)
