"""Shared by the dashboard tests: small audits of the zoo models for the store the pages read, and a
real dashboard server for the browser tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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
        {"name": "tcav", "params": {"n_runs": 10}},
        {"name": "feature_visualization", "params": {"steps": 32, "n_channels": 2}},
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
        {"name": "tcav", "params": {"n_runs": 10}},
    ],
}
# The text model's pages (salience, robustness and identity-term charts, slices), on a small budget.
TEXT_SPEC = {
    "seed": 0,
    "samples": 3,
    "max_rows": 300,
    "probes": [
        {"name": "layer_integrated_gradients"},
        {"name": "text_attention"},
        {"name": "text_robustness", "params": {"max_rows": 60}},
        {"name": "group_metrics", "params": {"n_boot": 50}},
        {"name": "identity_terms"},
        {"name": "slice_discovery"},
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


# --- a real dashboard server for the browser tests ---------------------------------------

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "dashboard" / "app.py"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve_dashboard(*, cwd: Path, env: dict[str, str], log_path: Path, port: int | None = None, start_timeout_s: float = 90) -> Iterator[str]:
    """``streamlit run dashboard/app.py`` on a free localhost port from ``cwd``; yields its URL, stops it after.

    ``cwd`` is where Streamlit looks for ``.streamlit/`` (config and secrets), so a test gives
    each server its own; set ``HOME`` in ``env`` too, so no user-level secrets leak in.
    """
    port = port or free_port()
    command = [sys.executable, "-m", "streamlit", "run", str(APP), "--server.port", str(port), "--server.address", "127.0.0.1"]
    command += ["--server.headless", "true", "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]
    full_env = {**os.environ, "AUDITS_DEVICE": "cpu", "PYTHONPATH": str(ROOT), **env}
    with open(log_path, "w+") as log:
        proc = subprocess.Popen(command, cwd=cwd, env=full_env, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        started = time.perf_counter()
        try:
            while True:
                try:
                    with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                        if response.status == 200:
                            break
                except OSError:
                    pass
                if proc.poll() is not None or time.perf_counter() - started > start_timeout_s:
                    log.seek(0)
                    raise RuntimeError(f"the dashboard did not start:\n{log.read()[-3000:]}")
                time.sleep(0.3)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:  # a busy machine can stall the graceful stop
                proc.kill()
                proc.wait(timeout=20)


def wait_idle(page, timeout_s: float = 90) -> None:
    """Until the script run triggered by the last action has finished and charts have drawn."""
    page.wait_for_timeout(250)
    page.wait_for_function(
        "() => { const a = document.querySelector('[data-testid=\"stApp\"]');"
        " return a && a.getAttribute('data-test-script-state') === 'notRunning' && a.getAttribute('data-test-connection-state') === 'CONNECTED'; }",
        timeout=timeout_s * 1000,
    )
    page.wait_for_timeout(600)  # plotly draws after the run ends
