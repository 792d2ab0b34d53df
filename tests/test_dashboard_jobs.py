"""Audits as background jobs, as a user sees them (AppTest): start an audit on the Audit page, leave
the page, come back in a fresh session (a reload), the job is still there and finishes in a worker
process; the sidebar shows it on every page; cancel works; a finished job's report opens from its
notification."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from audits.store.jobs import JobQueue  # noqa: E402
from models.registry import zoo_names  # noqa: E402

APP = Path(__file__).resolve().parent.parent / "dashboard" / "app.py"
TIMEOUT = 120

pytestmark = pytest.mark.skipif("digits-cnn" not in zoo_names(), reason="the demo zoo is not built (python -m models.build_zoo)")


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("AUDITS_STORE", str(tmp_path / "store"))
    monkeypatch.delenv("AUDITS_STORE_URL", raising=False)
    monkeypatch.setenv("AUDITS_WORKER_IDLE_S", "1")
    from dashboard import cache, jobs

    cache.clear()
    yield tmp_path / "store"
    for worker in [w for started in jobs._workers.values() for w in started]:  # the workers the pages started stop after 1 s idle
        worker.wait(timeout=120)
    jobs._workers.clear()


def _app() -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    assert not at.exception, [e.value for e in at.exception]
    if at.sidebar.selectbox[0].value != "digits-cnn":
        at.sidebar.selectbox[0].set_value("digits-cnn").run()
    return at


def _queue() -> JobQueue:
    from dashboard import jobs

    return jobs.queue()


def _wait(job_id: str, statuses=("completed", "failed", "cancelled"), timeout_s: float = 240):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = _queue().get(job_id)
        if job.status in statuses:
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} still {job.status} after {timeout_s} s")


def _start(at: AppTest, probes=("grad_cam",), rows: int = 200, samples: int = 0) -> str:
    at.switch_page("app_pages/audit_page.py").run()
    at.multiselect(key="_w.audit.probes.explanation").set_value(list(probes))
    at.multiselect(key="_w.audit.probes.robustness").set_value([])
    at.multiselect(key="_w.audit.probes.fairness").set_value(["group_metrics"])
    at.number_input(key="_w.audit.max_rows").set_value(rows)
    at.number_input(key="_w.audit.samples").set_value(samples)
    at.run()
    next(b for b in at.button if b.label == "Run audit").click().run()
    assert not at.exception and not at.error, [e.value for e in at.exception] + [e.value for e in at.error]
    [queued] = [s.value for s in at.success if "queued as job" in s.value]
    return queued.split("queued as job ")[1].split(":")[0]


def _sidebar_text(at: AppTest) -> str:
    return "\n".join([s.value for s in at.sidebar.success] + [p.proto.text for p in at.sidebar.get("progress")] + [s.value for s in at.sidebar.subheader])


def test_a_job_survives_leaving_the_page_and_a_reload_and_its_report_opens_from_the_notification(store):
    at = _app()
    job_id = _start(at)
    assert "Audit jobs" in _sidebar_text(at)  # at once, on the page that started it (it waited for the next page)
    job = _queue().get(job_id)
    assert job.status in ("queued", "running") and job.model_name == "digits-cnn" and job.spec["max_rows"] == 200

    at.switch_page("app_pages/fairness_page.py").run()  # leave the page: the job goes on, shown in the sidebar
    assert "Audit jobs" in _sidebar_text(at) and "digits-cnn" in _sidebar_text(at)
    assert any(b.label == "Cancel" for b in at.sidebar.button)

    finished = _wait(job_id)
    assert finished.status == "completed", finished.error
    fresh = _app()  # a browser reload is a new session: the job and its run are read from the store
    assert "Audit of digits-cnn finished" in _sidebar_text(fresh)
    next(b for b in fresh.sidebar.button if b.label == "Open report").click().run()
    assert not fresh.exception, [e.value for e in fresh.exception]
    assert fresh.session_state["audit.open"] == finished.run_id
    assert any(h.value == "Audit & reports" for h in fresh.title)  # the notification opened the Audit page
    listing = fresh.dataframe[0].value
    assert finished.run_id in set(listing["report id"])


def test_cancel_from_the_sidebar(store, monkeypatch):
    monkeypatch.setenv("AUDITS_WORKERS", "1")
    at = _app()
    slow = _start(at, probes=("lime_image", "kernel_shap_image"), rows=0, samples=400)  # long enough to cancel while it runs
    _wait(slow, statuses=("running",))
    at.switch_page("app_pages/models_page.py").run()
    next(b for b in at.sidebar.button if b.label == "Cancel").click().run()
    assert _queue().get(slow).cancel_requested
    ended = _wait(slow)
    assert ended.status == "cancelled" and ended.run_id is None
    at.run()
    assert any("cancelled" in e.value for e in at.sidebar.info)


def test_the_sidebar_lists_only_this_users_jobs(store):
    from models.registry import ZOO_DIR

    other = _queue().submit(model_name="digits-cnn", card_path=str(ZOO_DIR / "digits-cnn" / "card.yaml"), spec={"seed": 0}, user="someone-else")
    at = _app()
    assert "Audit jobs" not in _sidebar_text(at) and not any(b.label == "Cancel" for b in at.sidebar.button)
    _queue().cancel(other.job_id)  # nothing is left queued for a worker


@pytest.mark.browser
@pytest.mark.skipif(not Path("/usr/bin/chromium").is_file(), reason="no /usr/bin/chromium (install Debian's chromium package: apt-get install chromium)")
def test_a_job_in_a_real_browser_survives_navigation_and_a_reload(tmp_path):
    """A real server and headless Chromium: start an audit, go to another page, reload the browser;
    the sidebar follows the job live until its notification opens the report. Screenshots saved."""
    import os
    import shutil

    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright client is not installed (pip install playwright)")
    from tests.dashboard_support import CHROMIUM, CHROMIUM_ARGS, ROOT, serve_dashboard, wait_idle

    home = tmp_path / "home"
    home.mkdir()
    env = {"AUDITS_STORE": str(tmp_path / "store"), "HOME": str(home), "AUDITS_WORKER_IDLE_S": "2"}
    shots: list[Path] = []

    def shoot(page, name: str) -> None:
        shots.append(tmp_path / f"jobs-{name}.png")
        page.screenshot(path=str(shots[-1]), full_page=True)

    sidebar = '[data-testid="stSidebar"]'
    with serve_dashboard(cwd=ROOT, env=env, log_path=tmp_path / "streamlit.log") as url, sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1600})
            page.goto(f"{url}/audits")
            wait_idle(page)
            rows = page.get_by_label("Evaluation rows (0: all)", exact=True).and_(page.get_by_test_id("stNumberInputField"))
            rows.fill("120")
            rows.press("Enter")
            wait_idle(page)
            page.get_by_role("button", name="Run audit").click()
            page.get_by_text("queued as job").wait_for(timeout=60_000)
            shoot(page, "1-queued")

            page.locator('[data-testid="stSidebarNav"] a').filter(has_text="Models").first.click()  # leave the page
            page.locator(sidebar).get_by_text("Audit jobs").wait_for(timeout=60_000)
            shoot(page, "2-other-page")
            page.reload()  # a browser reload: a new session, the job is still there
            page.locator(sidebar).get_by_text("Audit jobs").wait_for(timeout=60_000)
            shoot(page, "3-after-reload")

            opener = page.locator(sidebar).get_by_role("button", name="Open report")
            opener.wait_for(timeout=240_000)  # the live sidebar shows the notification when the worker finishes
            assert "Audit of digits-cnn finished" in page.locator(sidebar).inner_text()
            shoot(page, "4-finished")
            opener.click()
            page.get_by_role("heading", name="Audit & reports").wait_for(timeout=60_000)
            wait_idle(page)
            assert page.url.split("?")[0].rstrip("/").endswith("/audits")
            assert page.locator('[data-testid="stException"], [data-testid="stAlertContentError"]').count() == 0
            shoot(page, "5-report-opened")
        finally:
            browser.close()
            target = os.environ.get("AUDITS_SCREENSHOTS")
            if target:
                Path(target).mkdir(parents=True, exist_ok=True)
                for shot in shots:
                    shutil.copy(shot, Path(target) / shot.name)
    assert all(s.stat().st_size > 10_000 for s in shots)
