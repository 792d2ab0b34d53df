"""What the CLI loads and how it runs: listing commands import nothing heavy, a re-render never imports torch,
and ``--threads`` sets torch's threads or refuses a bad count."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from audits.cli import main

from .report_fixtures import saved

REPO = Path(__file__).resolve().parents[1]


def _modules_after(code: str) -> set[str]:
    """Run ``code`` in a fresh interpreter and return the top-level modules it had imported."""
    probe = code + "\nimport sys; print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True)
    return set(done.stdout.split("\n")[-2].split())


def test_help_and_zoo_listing_import_neither_torch_nor_pandas():
    loaded = _modules_after("from audits.cli import main, build_parser\nbuild_parser()\nmain(['models'])")
    assert not {"torch", "pandas", "matplotlib", "plotly"} & loaded, loaded


def test_report_rerender_does_not_import_torch(tmp_path):
    report = saved("adult-mlp", tmp_path)
    loaded = _modules_after(f"from audits.cli import main\nassert main(['report', {str(report)!r}, '--html', {str(tmp_path / 'r.html')!r}]) == 0")
    assert "torch" not in loaded
    assert (tmp_path / "r.html").stat().st_size > 10_000


def test_threads_flag_sets_torch_threads(tmp_path, image_bundle):
    before = torch.get_num_threads()
    try:
        code = main(["run", "--model", str(image_bundle["card_path"]), "--out", str(tmp_path / "o"), "--quiet", "--no-pdf", "--no-html",
                     "--threads", "2", "--fail-on", "never", "--spec", str(_tiny_spec(tmp_path))])  # fmt: skip
        assert code == 0
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("command", [["run", "--model", "digits-cnn", "--out", "OUT"], ["scan", "--plan", "examples/scan.yaml"]])
def test_threads_flag_refuses_zero_with_the_fix(command, tmp_path, capsys):
    argv = [part.replace("OUT", str(tmp_path / "o")) for part in command] + ["--threads", "0"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--threads 0 is not a thread count" in err and "fix: Pass a whole number of at least 1" in err
    assert not (tmp_path / "o").exists()


def _tiny_spec(folder: Path) -> Path:
    spec = folder / "spec.yaml"
    spec.write_text("probes:\n  - name: saliency\n")
    return spec


def test_feature_visualization_does_not_import_torch_dynamo():
    """Feature visualization optimises without torch.optim, whose first optimizer imports torch._dynamo (seconds of an audit)."""
    code = (
        "from audits.engine import run_audit\nfrom audits.spec import parse_spec\nfrom audits.data import load_data\n"
        "from models.loader import load_model\nfrom models.registry import resolve_card\n"
        "card = resolve_card('digits-cnn')\nreport = run_audit(load_model(card, device='cpu'), load_data(card), "
        "parse_spec({'samples': 1, 'max_rows': 64, 'probes': [{'name': 'feature_visualization', 'params': {'steps': 4}}]}))\n"
        "assert report.concepts and not report.failures, report.failures\n"
        "import sys; assert 'torch._dynamo' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, capture_output=True, text=True)


def test_the_probe_registry_imports_neither_fairlearn_nor_scikit_learn():
    """Tabular-only probes import fairlearn and scikit-learn when they run, so an image audit (and the registry) does not pay for them."""
    loaded = _modules_after("from audits.probes import registered_probes\nregistered_probes()")
    assert not {"fairlearn", "sklearn"} & loaded, {"fairlearn", "sklearn"} & loaded


def test_an_audit_imports_no_face_store_or_tabular_library_before_it_renders():
    """What ``audits run`` imports before the audit (the engine, the loader, the export module, every probe) leaves out the
    dashboard, the store, the tabular-only and text-only libraries, and the HTML and PDF renderers (imported when writing)."""
    loaded = _modules_after(
        "import audits.cli, audits.engine, audits.data, audits.policy, audits.spec, audits.render.export, models.loader, models.registry\n"
        "from audits.probes import registered_probes\nregistered_probes()"
    )
    unused = {"streamlit", "sklearn", "fairlearn", "sqlalchemy", "psycopg", "transformers", "kaleido", "ray", "plotly", "reportlab"}
    assert not unused & loaded, unused & loaded
    assert {"torch", "captum"} <= loaded  # the probes' own libraries are there: the check sees what was imported
