"""Bad input gets one message naming the problem and the fix, exit 2 and no partial record; a crashed audit fails only its own run (exit 3)."""

from __future__ import annotations

import sqlite3
import time
import xml.etree.ElementTree as ET

import pytest

from audits.cli import main
from audits.store import open_store
from tests.scan_support import FAILING, FAST_TABULAR_SPEC, PASSING, broken_card, write_plan


def _scan(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["scan", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(
    ("plan", "expected"),
    [
        ({"name": "p", "models": ["no-such-model"]}, "models[0].zoo: unknown model 'no-such-model'"),
        ({"name": "p", "models": ["adult-mlp"], "schedule": {"cron": "0 25 * * *"}}, "cron '0 25 * * *' is invalid"),
    ],
)
def test_a_bad_plan_exits_2_before_the_store_is_touched(tmp_path, capsys, plan, expected):
    store_path = tmp_path / "store.db"
    code, out, err = _scan(capsys, "--plan", str(write_plan(tmp_path, plan)), "--store", f"sqlite:///{store_path}")
    assert code == 2
    assert expected in err and "\nfix: " in err and err.count("error:") == 1
    assert not store_path.exists()  # nothing opened, nothing recorded


def test_an_unreachable_store_exits_2_naming_the_store_and_the_fix(tmp_path, capsys, tabular_bundle):
    plan = write_plan(tmp_path, {"name": "p", "spec": FAST_TABULAR_SPEC, "models": [{"card": str(tabular_bundle["card_path"])}]})
    started = time.monotonic()
    code, out, err = _scan(capsys, "--plan", str(plan), "--store", "postgresql+psycopg://audits:secret@127.0.0.1:9/audits")
    assert code == 2 and time.monotonic() - started < 30
    assert "127.0.0.1" in err and "\nfix: " in err and "secret" not in err
    assert "tiny-mlp" not in out  # no audit ran


def test_a_locked_database_exits_2_and_records_nothing(tmp_path, capsys, tabular_bundle, monkeypatch):
    path = tmp_path / "store.db"
    url = f"sqlite:///{path}"
    open_store(url).close()
    plan = write_plan(tmp_path, {"name": "p", "spec": FAST_TABULAR_SPEC, "models": [{"card": str(tabular_bundle["card_path"])}]})
    monkeypatch.setenv("AUDITS_STORE_BUSY_S", "0.5")
    holder = sqlite3.connect(path, timeout=0.1, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another writer holds the database
    try:
        code, out, err = _scan(capsys, "--plan", str(plan), "--store", url)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert code == 2
    assert "locked" in err and "\nfix: " in err and err.count("error:") == 1
    assert open_store(url).runs() == []  # no partial run record


def test_a_plan_held_by_another_scan_exits_2_and_records_nothing(tmp_path, capsys, tabular_bundle):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    store = open_store(url)
    plan = write_plan(tmp_path, {"name": "busy", "spec": FAST_TABULAR_SPEC, "models": [{"card": str(tabular_bundle["card_path"])}]})
    with store.plan_lock("busy", 60) as acquired:
        assert acquired
        code, out, err = _scan(capsys, "--plan", str(plan), "--store", url)
    assert code == 2 and "being scanned by another process" in err and "\nfix: " in err
    assert store.runs() == []


def test_a_crashed_audit_fails_its_own_run_not_the_plan(tmp_path, capsys, tabular_bundle):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    broken = broken_card(tabular_bundle, tmp_path / "broken")
    plan = write_plan(
        tmp_path,
        {
            "name": "p",
            "spec": FAST_TABULAR_SPEC,
            "policy": PASSING,
            "models": [{"card": str(broken)}, {"card": str(tabular_bundle["card_path"]), "policy": FAILING}],
        },
    )
    code, out, err = _scan(capsys, "--plan", str(plan), "--store", url, "--junit", str(tmp_path / "junit.xml"))
    assert code == 3  # a crash outranks the failing policy of the other model
    runs = {r.model_name: r for r in open_store(url).runs()}
    assert runs["tiny-mlp"].status == "completed" and runs["tiny-mlp"].verdict == "fail"
    assert runs["broken-mlp"].status == "crashed"
    assert runs["broken-mlp"].error.startswith("ModelLoadError: ") and "weights.safetensors" in runs["broken-mlp"].error, runs["broken-mlp"].error
    assert "CRASHED" in out
    suite = next(s for s in ET.parse(tmp_path / "junit.xml").getroot().iter("testsuite") if s.get("name") == "p/broken-mlp")
    error = suite.find("testcase/error")
    assert error is not None and error.get("message") == runs["broken-mlp"].error
