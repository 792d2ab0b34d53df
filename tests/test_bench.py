"""The benchmark suite: a smoke run of every case on tiny sizes, the harness's budget logic, and
the exact-Shapley reference that backs B1's quality column."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from audits.data import AuditData
from audits.explain.kernel_shap import KernelShapTabular
from audits.probes import RunContext
from bench import CASES
from bench.__main__ import main
from bench.b1_kernel_shap import codes_of, decode, exact_shapley
from bench.harness import CallMeter, Config, measure
from bench.table import format_markdown, format_table
from models.card import parse_card
from models.loader import wrap_model
from models.tabular_encoding import TabularEncoder

ROW_FIELDS = {
    "case": str,
    "contender": str,
    "group": str,
    "unit": str,
    "note": str,
    "extrapolated": bool,
    "measured_units": int,
    "total_units": int,
    "repeats": int,
    "quality": dict,
}
NUMBERS = ("wall_time_s", "model_calls", "rows_evaluated", "peak_memory_mb", "measured_time_s")


@pytest.mark.parametrize("cases", ["B1,B2,B3", "B4,B5,B6", "B10,B11", "B14"])
def test_quick_run_writes_valid_json_and_a_table(cases, tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["--cases", cases, "--quick", "--out", str(out), "--repeats", "1", "--timeout-per-contender", "1"]) == 0
    report = json.loads(out.read_text())  # strict JSON: no NaN or Infinity
    assert report["schema"] == 1 and report["config"]["quick"] is True
    assert {"cpu", "cores", "torch", "load_average"} <= set(report["machine"])
    names = cases.split(",")
    assert [c["case"] for c in report["cases"]] == names
    failed = [c for c in report["checks"] if c["target"] == "case ran"]
    assert not failed, [c["notes"] for c in report["cases"]]
    for name in names:
        rows = [r for r in report["rows"] if r["case"] == name]
        assert rows and any(r["contender"] == "ours" for r in rows), name
        assert any(c["case"] == name for c in report["checks"]), name
        for row in rows:
            for key, kind in ROW_FIELDS.items():
                assert isinstance(row[key], kind), (name, key, row[key])
            for key in NUMBERS:
                assert row[key] is None or (isinstance(row[key], (int, float)) and row[key] >= 0), (name, key, row[key])
            assert row["wall_time_s"] > 0 or row["contender"] == "floor"
            assert row["ratio_to_ours"] is None or row["ratio_to_ours"] > 0
            assert row["extrapolated"] == ("extrapolated from" in row["note"])
    text = capsys.readouterr().out
    assert all(f"{c['case']}: {c['title']}" in text for c in report["cases"])
    markdown = format_markdown(report)
    assert markdown.count("### ") == len(names) and "| contender |" in markdown
    assert format_table(report).startswith("machine:")


def test_unknown_case_is_refused(tmp_path, capsys):
    assert main(["--cases", "B99", "--out", str(tmp_path / "x.json")]) == 2
    assert "B99" in capsys.readouterr().err
    assert set(CASES) == {"B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B9", "B10", "B11", "B12", "B13", "B14", "B15"}


def test_a_contender_over_budget_is_measured_on_a_subset_and_extrapolated():
    meter = CallMeter()

    def slow(n: int) -> int:
        meter.calls += n
        meter.rows += 10 * n
        time.sleep(0.02 * n + 0.01)
        return n

    m = measure("T", "slow", slow, units=100, unit="rows", meters=[meter], config=Config(budget_s=0.3, repeats=1), pilot=2)
    assert m.row.extrapolated and 2 < m.units < 100 and m.output == m.units
    assert m.row.note.startswith(f"extrapolated from {m.units} of 100 rows")
    assert m.row.wall_time_s == pytest.approx(0.02 * 100 + 0.01, rel=0.35)
    assert m.row.model_calls == pytest.approx(100) and m.row.rows_evaluated == pytest.approx(1000)
    fast = measure("T", "fast", slow, units=3, unit="rows", meters=[meter], config=Config(budget_s=10, repeats=2), pilot=1)
    assert not fast.row.extrapolated and fast.units == 3 and fast.row.model_calls == 3


def _tabular(n_rows: int = 12):
    features = [{"name": "a", "type": "numeric"}, {"name": "b", "type": "numeric"}, {"name": "c", "type": "categorical", "levels": ["x", "y", "z"]}]
    card = parse_card(
        {
            "name": "t",
            "modality": "tabular",
            "format": "torchscript",
            "weights": "none.pt",
            "class_names": ["no", "yes"],
            "input": {"kind": "tabular", "features": features},
        },
        base_dir=Path("."),
    )
    encoder = TabularEncoder(card.input)
    rng = np.random.default_rng(0)
    x = np.zeros((n_rows, encoder.width), dtype=np.float32)
    x[:, :2] = rng.normal(size=(n_rows, 2))
    x[np.arange(n_rows), 2 + rng.integers(0, 3, n_rows)] = 1.0
    torch.manual_seed(0)
    model = wrap_model(nn.Sequential(nn.Linear(encoder.width, 8), nn.Tanh(), nn.Linear(8, 2)), card, device="cpu")
    data = AuditData(
        modality="tabular", x=x, y=np.zeros(n_rows, dtype=np.int64), class_names=["no", "yes"], attributes=pd.DataFrame(index=range(n_rows)),
        sensitive=[], source="test", sha256="", feature_names=encoder.feature_names, feature_groups=encoder.groups,
    )  # fmt: skip
    return model, data


def test_b1_exact_shapley_reference_agrees_with_our_kernel_shap_probe():
    model, data = _tabular()
    rows = np.array([0, 3, 7])
    context = RunContext(seed=0, proba=model.predict_proba(data.x), sample_indices=rows)
    ours = KernelShapTabular(n_background=len(data.x), target=1, output="probability").run(model, data, context)
    reference = exact_shapley(model, data.x[rows], data.x, data.feature_groups, target=1)
    np.testing.assert_allclose(ours.attributions, reference, atol=1e-6)


def test_b1_raw_codes_round_trip():
    _, data = _tabular()
    np.testing.assert_array_equal(decode(codes_of(data.x, data.feature_groups), data.feature_groups, data.x.shape[1]), data.x)
