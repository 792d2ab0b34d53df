"""The probe-facing handle: batching, out-of-memory fallback recorded in the cost, and the loader's split."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from audits.data import load_data
from audits.probes import RunContext, make_probe
from audits.serialization import from_jsonable, to_jsonable
from models.card import load_card
from models.loader import wrap_model

ROOT = Path(__file__).resolve().parent.parent


class _OutOfMemoryOnce(nn.Module):
    """Wraps a network; once armed, the next forward pass of more than one row raises a CUDA
    out-of-memory error (as a GPU would on a batch too large), then all passes succeed."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.armed = False
        self.batches: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.batches.append(int(x.shape[0]))
        if self.armed and x.shape[0] > 1:
            self.armed = False
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (simulated)")
        return self.net(x)


@pytest.fixture
def oom_handle(tabular_bundle):
    net = _OutOfMemoryOnce(tabular_bundle["net"])
    handle = wrap_model(net, load_card(tabular_bundle["card_path"]))
    data = load_data(handle.card)
    return handle, net, data


def test_an_out_of_memory_error_halves_that_call_only_and_is_counted(oom_handle):
    handle, net, data = oom_handle
    planned = handle.batch_size
    assert planned > len(data)  # the tabular rows fit one planned batch
    expected = handle.predict_proba(data.x)
    net.armed, net.batches = True, []
    # An explicit small batch (as probes pass for gradient chunks) must not become the handle's plan.
    with handle.metered() as cost:
        proba = handle.predict_proba(data.x, batch_size=2)
    np.testing.assert_allclose(proba, expected, atol=1e-6)
    assert cost.batch_fallbacks == 1
    assert net.batches[:2] == [2, 1] and set(net.batches[2:]) == {1}  # the rest of that call stays at 1 row
    assert cost.rows == len(data) + 2  # the failed batch's rows went in too, and are counted
    assert handle.batch_size == planned
    net.batches = []
    with handle.metered() as later:
        handle.predict_proba(data.x)
    assert net.batches == [len(data)] and later.calls == 1 and later.batch_fallbacks == 0


def test_an_out_of_memory_error_resumes_at_the_failed_batch(oom_handle):
    handle, net, data = oom_handle
    expected = handle.predict_proba(data.x)
    net.batches = []
    handle.predict_proba(data.x[:1])  # a one-row call never falls back: there is nothing to halve
    net.armed, net.batches = True, []
    proba = handle.predict_proba(data.x, batch_size=16)
    np.testing.assert_allclose(proba, expected, atol=1e-6)
    # 16 fails, then 8-row batches from row 0 to the end: no batch is computed twice.
    assert net.batches == [16] + [8] * (len(data) // 8) + ([len(data) % 8] if len(data) % 8 else [])


def test_one_row_that_does_not_fit_raises(oom_handle):
    handle, net, data = oom_handle

    def always_oom(_t: torch.Tensor) -> torch.Tensor:
        raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    with handle.metered() as cost, pytest.raises(torch.OutOfMemoryError):
        handle.map_batches(always_oom, data.x[:4], batch_size=4)
    assert cost.batch_fallbacks == 2  # 4 -> 2 -> 1, then the error stands


def test_a_probe_records_its_fallbacks_in_its_cost(oom_handle):
    handle, net, data = oom_handle
    context = RunContext(seed=0, proba=handle.predict_proba(data.x), sample_indices=np.arange(6))
    probe = make_probe("integrated_gradients", {"n_steps": 8})
    clean = probe.run(handle, data, context)
    assert clean.cost.batch_fallbacks == 0
    net.armed = True
    result = probe.run(handle, data, context)
    assert result.cost.batch_fallbacks == 1
    np.testing.assert_allclose(result.attributions, clean.attributions, atol=1e-5)
    stored = from_jsonable(json.loads(json.dumps(to_jsonable(result))))  # as the report stores it
    assert stored.cost.batch_fallbacks == 1


def test_the_loader_keeps_its_public_names():
    import models.loader as loader

    for name in ("load_model", "wrap_model", "ModelHandle", "CallMeter", "MeteredModel", "resolve_device", "sha256_file", "external_weights", "model_sha256"):
        assert hasattr(loader, name), name
    from models.handle import ModelHandle

    assert loader.ModelHandle is ModelHandle


def test_load_model_resolves_the_device_once(image_bundle, monkeypatch):
    import models.loader as loader

    calls = []
    real = loader.resolve_device
    monkeypatch.setattr(loader, "resolve_device", lambda requested=None: calls.append(requested) or real(requested))
    loader.load_model(load_card(image_bundle["card_path"]))
    assert calls == [None]


def test_probes_never_place_or_switch_the_model():
    """Device placement and eval mode belong to the loader (models/); probes only read them."""
    pattern = re.compile(r"\.(eval|train)\(\)|\b(model|network|net|module)\.(to|cuda|cpu)\(|\.model\.(to|cuda|cpu)\(")
    offenders = []
    for folder in ("explain", "robustness", "fairness"):
        for path in sorted((ROOT / "audits" / folder).glob("*.py")):
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if pattern.search(line):
                    offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, offenders
