"""Small real reports of the zoo models for the report tests, computed once per test process."""

from __future__ import annotations

import functools
from pathlib import Path

from audits.data import load_data
from audits.engine import run_audit
from audits.policy import apply_policy
from audits.report import AuditReport
from audits.spec import parse_spec
from models.loader import load_model
from models.registry import resolve_card

SPECS = {
    "digits-cnn": {
        "max_rows": 240,
        "samples": 4,
        "probes": [
            {"name": "grad_cam"},
            {"name": "integrated_gradients", "params": {"n_steps": 8}},
            {"name": "lime_image", "params": {"n_samples": 200}},
            {"name": "fgsm", "params": {"max_rows": 96, "n_examples": 2, "refine_steps": 1}},
            {"name": "corruptions", "params": {"max_rows": 96, "n_examples": 1, "corruptions": ["gaussian_noise", "contrast", "occlusion"]}},
            {"name": "calibration", "params": {"max_rows": 200}},
            {"name": "group_metrics", "params": {"n_boot": 100}},
            {"name": "slice_discovery"},
            {"name": "trigger_scan", "params": {"max_images": 120}},
            {"name": "tcav", "params": {"n_runs": 10}},
            {"name": "feature_visualization", "params": {"steps": 16, "n_channels": 2}},
            {"name": "explanation_trust", "params": {"n_samples": 2, "faithfulness_samples": 4, "steps": 8, "noise_draws": 1, "cascade_stages": 1}},
        ],
    },
    "adult-mlp": {
        "max_rows": 1500,
        "samples": 8,
        "probes": [
            {"name": "integrated_gradients", "params": {"n_steps": 16}},
            {"name": "lime", "params": {"n_samples": 300}},
            {"name": "tabular_perturbations", "params": {"max_rows": 400}},
            {"name": "group_metrics", "params": {"n_boot": 100}},
            {"name": "counterfactual_flips", "params": {"max_rows": 1500}},
            {"name": "slice_discovery"},
            {"name": "explanation_trust", "params": {"n_samples": 2, "faithfulness_samples": 4, "steps": 8, "noise_draws": 1, "cascade_stages": 1}},
            {"name": "tcav", "params": {"n_runs": 10}},
        ],
    },
}


@functools.cache
def zoo_report(name: str) -> AuditReport:
    """A quick audit of a zoo model with the default policy applied."""
    card = resolve_card(name)
    report = run_audit(load_model(card, device="cpu"), load_data(card), parse_spec(SPECS[name]))
    return apply_policy(report)


@functools.cache
def _rendered(name: str, kind: str) -> bytes:
    from audits.render.html import render_html
    from audits.render.pdf import render_pdf

    report = zoo_report(name)
    return render_pdf(report) if kind == "pdf" else render_html(report).encode()


def rendered_pdf(name: str) -> bytes:
    return _rendered(name, "pdf")


def rendered_html(name: str) -> str:
    return _rendered(name, "html").decode()


def saved(name: str, folder: Path) -> Path:
    """The report written as JSON into ``folder``."""
    return zoo_report(name).save(folder / f"{name}.json")
