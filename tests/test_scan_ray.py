"""Fleets on Ray: the zoo plan with one deliberately broken card on a local Ray (2 CPUs); the driver records every run."""

from __future__ import annotations

import pytest

from audits.scan.plan import load_plan
from audits.scan.runner import run_plan
from audits.store import open_store
from tests.scan_support import broken_card, write_plan

ray = pytest.importorskip("ray", reason="Ray is an optional dependency (pip install 'audits[ray]')")

FAST_SPEC = {"samples": 1, "max_rows": 64, "exclude": ["kernel_shap_image", "lime_image", "occlusion", "corruptions", "lime", "kernel_shap"]}


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=80 * 1024**2)
    yield
    ray.shutdown()


def test_three_zoo_models_pass_and_the_broken_card_is_recorded_with_its_error(tmp_path, tabular_bundle, local_ray):
    broken = broken_card(tabular_bundle, tmp_path / "broken")
    plan = write_plan(tmp_path, {"name": "fleet", "spec": FAST_SPEC, "models": ["adult-mlp", "digits-cnn", {"card": str(broken)}, "digits-vit"]})
    url = f"sqlite:///{tmp_path / 'store.db'}"
    result = run_plan(load_plan(plan), store_url=url, executor="ray")
    assert [m.model_name for m in result.models] == ["adult-mlp", "digits-cnn", "broken-mlp", "digits-vit"]  # plan order, whatever finished first
    assert result.exit_code("never") == 3
    runs = {r.model_name: r for r in open_store(url).runs(plan="fleet")}
    assert len(runs) == 4
    for name in ("adult-mlp", "digits-cnn", "digits-vit"):
        assert runs[name].status == "completed" and runs[name].error is None
        assert open_store(url).load_report(runs[name].run_id).provenance.model_name == name
    assert runs["broken-mlp"].status == "crashed"
    assert runs["broken-mlp"].error.startswith("ModelLoadError: ") and "weights.safetensors" in runs["broken-mlp"].error
    assert open_store(url).verify().ok
