"""B7 (the store at scale) on tiny sizes: it runs, verifies its own chain and lists every run."""

from __future__ import annotations

import json

from bench.__main__ import main


def test_store_bench_quick_run(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["--cases", "B7", "--quick", "--out", str(out), "--repeats", "1"]) == 0
    report = json.loads(out.read_text())
    checks = {c["target"]: c for c in report["checks"] if c["case"] == "B7"}
    assert checks["audits verify over 200 records finds the chain intact"]["met"] is True
    assert checks["audits history lists all 50 runs"]["met"] is True
    groups = {r["group"] for r in report["rows"] if r["case"] == "B7"}
    assert {"audits verify", "Store.verify() in process", "audits history"} <= groups
    capsys.readouterr()
