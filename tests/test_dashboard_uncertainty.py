"""The Robustness page shows the uncertainty, OOD-detection and membership-inference results, each with
its paragraph on what it means and what it does not (AppTest, headless)."""

from __future__ import annotations

import pytest

pytest.importorskip("streamlit")

from tests.dashboard_support import store_audit  # noqa: E402
from tests.test_dashboard_pages import _app, _captions, _page, _problems  # noqa: E402

SPEC = {
    "seed": 0,
    "samples": 2,
    "max_rows": 200,
    "probes": [
        {"name": "uncertainty", "params": {"max_rows": 100, "mc_passes": 4}},
        {"name": "ood_detection", "params": {"corruptions": ["gaussian_noise", "contrast"], "severities": [1, 5], "max_rows": 100}},
        {"name": "membership_inference", "params": {"max_rows": 150}},
    ],
}


def test_robustness_page_shows_uncertainty_ood_and_membership_with_their_explanations(tmp_path, monkeypatch):
    monkeypatch.setenv("AUDITS_STORE", str(tmp_path))
    from dashboard import cache

    cache.clear()
    store_audit("digits-cnn", SPEC)
    at = _page(_app("digits-cnn"), "robustness_page")
    assert not _problems(at), _problems(at)
    headers = [s.value for s in at.subheader]
    for title in ("Predictive uncertainty and selective prediction", "Out-of-distribution detection", "Membership inference (privacy)"):
        assert title in headers, headers
    text = "\n".join(m.value for m in at.markdown)
    assert text.count("What it does not mean") == 3
    assert len(at.get("plotly_chart")) >= 4  # risk-coverage, two OOD heatmaps, ROC
    assert "Deep ensemble skipped" in _captions(at)
    cache.clear()
