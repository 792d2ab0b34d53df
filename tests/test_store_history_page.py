"""The History page, headless with AppTest, over a store holding runs recorded outside the dashboard:
the run list, the verdict timeline, trends with intervals, the diff of two runs and the chain's status."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from audits.store import open_store  # noqa: E402
from models.registry import zoo_names  # noqa: E402
from tests.store_support import small_audit  # noqa: E402

APP = Path(__file__).resolve().parent.parent / "dashboard" / "app.py"
PAGE = "app_pages/history_page.py"

pytestmark = pytest.mark.skipif(not zoo_names(), reason="the demo zoo is not built (python -m models.build_zoo): the sidebar needs a model")


@pytest.fixture
def recorded(tmp_path, image_bundle, monkeypatch):
    """Three completed runs of tiny-cnn (seeds 0, 0, 1) and one crashed run, recorded as the CLI would."""
    monkeypatch.setenv("AUDITS_STORE", str(tmp_path / "store"))
    monkeypatch.delenv("AUDITS_STORE_URL", raising=False)
    from dashboard import cache

    cache.clear()
    store = open_store()
    t0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
    runs = []
    for i, seed in enumerate((0, 0, 1)):
        report = small_audit(image_bundle["card_path"], seed)
        start = t0 + timedelta(days=i)
        runs.append(store.record_run(report, model_name="tiny-cnn", plan="nightly", started_at=start, ended_at=start + timedelta(seconds=3), user="ci"))
    crash = t0 + timedelta(days=3)
    runs.append(store.record_run(None, model_name="tiny-cnn", plan="nightly", started_at=crash, ended_at=crash, user="ci", status="crashed", error="boom"))
    return store, runs


def _history(model: str = "tiny-cnn") -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=120).run()
    at.switch_page(PAGE).run()
    if at.selectbox(key="_w.history.model").value != model:
        at.selectbox(key="_w.history.model").set_value(model).run()
    return at


def test_history_page_shows_runs_trends_diff_and_chain(recorded):
    store, runs = recorded
    at = _history()
    assert not at.exception and not at.error, [e.value for e in at.exception] + [e.value for e in at.error]
    assert at.title[0].value == "History"
    assert "4 record(s), chain intact" in at.success[0].value
    assert at.subheader[0].value == "4 run(s) of tiny-cnn"
    listing = at.dataframe[0].value
    assert list(listing["run_id"]) == [r.run_id for r in reversed(runs)]  # newest first
    assert list(listing["status"]) == ["crashed", "completed", "completed", "completed"] and "accuracy" in listing.columns
    charts = at.get("plotly_chart")
    assert len(charts) == 3  # the verdict timeline and two trends
    assert "Verdicts of tiny-cnn" in charts[0].proto.spec and "accuracy" in charts[1].proto.spec and "confidence interval" in charts[1].proto.spec
    # The diff defaults to the two newest completed runs: seed 0 -> 1 is named first.
    assert at.selectbox(key="_w.history.diff_a").value == runs[1].run_id and at.selectbox(key="_w.history.diff_b").value == runs[2].run_id
    changes = at.dataframe[1].value
    assert list(changes["what"]) == ["seed"] and list(changes["A"]) == ["0"] and list(changes["B"]) == ["1"]
    # Two runs with the same inputs: nothing changed but the run.
    at.selectbox(key="_w.history.diff_b").set_value(runs[0].run_id).run()
    assert any("Same model weights, data, spec, seed, policy and tool version" in c.value for c in at.caption)


def test_history_page_names_a_tampered_run(recorded):
    store, runs = recorded
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE measurements SET value = 0.99 WHERE run_id = :r AND name = 'accuracy'"), {"r": runs[1].run_id})
    at = _history()
    assert not at.exception
    assert len(at.error) == 1 and f"run {runs[1].run_id}: its stored measurements no longer match" in at.error[0].value


def test_audit_page_lists_and_opens_runs_recorded_by_the_cli(recorded):
    store, runs = recorded
    at = AppTest.from_file(str(APP), default_timeout=120).run()
    at.switch_page("app_pages/audit_page.py").run()
    assert not at.exception, [e.value for e in at.exception]
    listing = next(d.value for d in at.dataframe if "report id" in d.value.columns)
    completed = [r.run_id for r in reversed(runs) if r.status == "completed"]
    assert list(listing["report id"]) == completed and set(listing["model"]) == {"tiny-cnn"}
    opened = at.selectbox(key="_w.audit.open")
    opened.set_value(runs[0].run_id).run()
    assert not at.exception and any(m.label == "Verdict" and m.value == "fail" for m in at.metric)
