"""A real-browser smoke test: start the dashboard, drive headless Chromium through every page
(and the model-dependent ones again for the tabular model), assert no error element, save
screenshots.

Screenshots go to the test's tmp folder, and also to ``$AUDITS_SCREENSHOTS`` when set.
Needs Debian's ``chromium`` at /usr/bin/chromium (CI installs it) and the ``playwright``
client; skipped with the reason when either is missing. Deselect with ``-m "not browser"``.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from dashboard import navigation
from models.registry import zoo_names
from tests.dashboard_support import ADULT_SPEC, CHROMIUM, CHROMIUM_ARGS, DIGITS_SPEC, ROOT, TEXT_SPEC, serve_dashboard, store_audit, wait_idle

NAV = [entry.title for entry in navigation.pages()]  # every page of the app, History included
# Pages whose content depends on the model: visited again for the tabular model.
PER_MODEL = ["Inspect", "Robustness", "Fairness"]
# The text model's pages, when it is in the zoo (its labels were cut: "non-t...", an axis label).
TEXT_PAGES = ["Inspect", "Robustness", "Fairness", "Error analysis", "Audit & reports"]
HAS_TEXT = "toxicity-minilm" in zoo_names()
ERRORS = '[data-testid="stException"], [data-testid="stAlertContentError"]'
# Tall enough for the longest page, so screenshots need no resize (which would redraw every chart).
VIEWPORT = {"width": 1440, "height": 6400}

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.is_file(), reason="no /usr/bin/chromium (install Debian's chromium package: apt-get install chromium)"),
    pytest.mark.skipif(not {"digits-cnn", "adult-mlp"} <= set(zoo_names()), reason="the demo zoo is not built (python -m models.build_zoo)"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The dashboard on a free localhost port, over a store holding a small audit of each zoo model."""
    store = tmp_path_factory.mktemp("browser-store")
    adult = {**ADULT_SPEC, "probes": [*ADULT_SPEC["probes"], {"name": "slice_discovery"}]}  # the Error analysis page's slices
    for name, spec in (("digits-cnn", DIGITS_SPEC), ("adult-mlp", adult), *((("toxicity-minilm", TEXT_SPEC),) if HAS_TEXT else ())):
        store_audit(name, spec, root=store)
    home = tmp_path_factory.mktemp("browser-home")  # no secrets: sign-in is off
    started = time.perf_counter()
    with serve_dashboard(cwd=ROOT, env={"AUDITS_STORE": str(store), "HOME": str(home)}, log_path=home / "streamlit.log") as url:
        yield {"url": url, "ready_s": time.perf_counter() - started, "store": store}


def _shoot(page, folder: Path, name: str) -> Path:
    """The page down to the end of its content (the viewport is tall, so nothing re-lays out)."""
    bottom = page.evaluate(
        "() => { const b = document.querySelector('[data-testid=\"stMainBlockContainer\"]'); return b ? b.getBoundingClientRect().bottom : 900; }"
    )
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), clip={"x": 0, "y": 0, "width": VIEWPORT["width"], "height": int(min(max(bottom + 40, 900), VIEWPORT["height"]))})
    return path


# Chart text (tick labels, axis titles, legend entries, titles) that is cut: drawn outside its
# chart's box, or shortened with an ellipsis.
_CUT_CHART_TEXT = r"""() => {
  const out = [];
  for (const plot of document.querySelectorAll('.js-plotly-plot')) {
    const box = plot.getBoundingClientRect();
    if (box.width === 0) continue;
    for (const t of plot.querySelectorAll('.xtick text, .ytick text, .g-xtitle text, .g-ytitle text, .legendtext, .gtitle')) {
      const r = t.getBoundingClientRect();
      const text = t.textContent.trim();
      if (r.width === 0 || !text) continue;
      if (r.left < box.left - 1 || r.right > box.right + 1 || r.top < box.top - 1 || r.bottom > box.bottom + 1 || /(\.\.\.|\u2026)$/.test(text))
        out.push(text);
    }
  }
  return out;
}"""


def _cut_chart_text(page) -> list[str]:
    return page.evaluate(_CUT_CHART_TEXT)


def _keep(shots: list[Path]) -> None:
    """Copy the screenshots taken so far to ``$AUDITS_SCREENSHOTS`` (also when the test failed: they show why)."""
    target = os.environ.get("AUDITS_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        for shot in shots:
            if shot.is_file():
                shutil.copy(shot, Path(target) / shot.name)


def _visit(page, label: str) -> None:
    page.locator('[data-testid="stSidebarNav"] a').filter(has_text=label).first.click()
    wait_idle(page)


def _pick_model(page, name: str) -> None:
    page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]').first.click()
    page.get_by_role("option", name=name, exact=True).click()
    wait_idle(page)


def test_every_page_in_a_real_browser(server, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright client is not installed (pip install playwright)")
    shots: list[Path] = []
    timings: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=CHROMIUM_ARGS,
        )
        try:
            page = browser.new_page(viewport=VIEWPORT)
            started = time.perf_counter()
            page.goto(server["url"])
            wait_idle(page)
            timings.append(f"first page: {time.perf_counter() - started:.1f} s")
            for model in ("digits-cnn", "adult-mlp", *(("toxicity-minilm",) if HAS_TEXT else ())):
                if model != "digits-cnn":
                    _pick_model(page, model)
                for label in {"digits-cnn": NAV, "adult-mlp": PER_MODEL}.get(model, TEXT_PAGES):
                    started = time.perf_counter()
                    _visit(page, label)
                    timings.append(f"{model} {label}: {time.perf_counter() - started:.1f} s")
                    assert page.locator("h1").first.is_visible(), (model, label)
                    errors = [e.inner_text()[:300] for e in page.locator(ERRORS).all()]
                    assert not errors, (model, label, errors)
                    if label.startswith("Audit"):  # the findings table shows each detail whole (it was cut off)
                        page.locator('[data-testid="stTable"] td').first.wait_for(timeout=60_000)
                        page.wait_for_timeout(1500)
                        clipped = page.evaluate(
                            "() => [...document.querySelectorAll('[data-testid=\"stTable\"] td')].filter(e => e.scrollWidth > e.clientWidth + 1).map(e => e.innerText)"
                        )
                        assert not clipped, clipped
                    shots.append(_shoot(page, tmp_path, f"{model}-{label.split()[0].lower()}"))
                    assert not _cut_chart_text(page), (model, label, _cut_chart_text(page))  # no axis label cut
                    assert not _unclipped_metrics(page), (model, label, _unclipped_metrics(page))
        finally:
            browser.close()
            _keep(shots)
    print("; ".join(timings))
    assert len(shots) == len(NAV) + len(PER_MODEL) + (len(TEXT_PAGES) if HAS_TEXT else 0) and all(s.stat().st_size > 10_000 for s in shots)


def test_every_page_opens_from_its_own_url(server):
    """Deep links: /inspect (the default page) and every other page's URL open that page, never "Page not found"."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright client is not installed (pip install playwright)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            for entry in navigation.pages():
                page.goto(f"{server['url'].rstrip('/')}/{entry.url_path}")
                wait_idle(page)
                assert page.get_by_text("Page not found").count() == 0, entry.url_path
                assert urlparse(page.url).path.rstrip("/").endswith(f"/{entry.url_path}"), (entry.url_path, page.url)
                assert parse_qs(urlparse(page.url).query).get("model"), page.url  # every page's URL names the model (deep links)
            page.goto(server["url"])  # the bare address forwards to the default page
            wait_idle(page)
            default = next(e for e in navigation.pages() if e.default)
            assert urlparse(page.url).path.rstrip("/").endswith(f"/{default.url_path}") and page.get_by_text("Page not found").count() == 0
        finally:
            browser.close()


def _unclipped_metrics(page) -> list[str]:
    """Metric values whose text is cut (an ellipsis: the element's content is wider than its box)."""
    return page.evaluate(
        '() => [...document.querySelectorAll(\'[data-testid="stMetricValue"] div, [data-testid="stMetricValue"]\')]'
        ".filter(e => e.scrollWidth > e.clientWidth + 1).map(e => e.innerText)"
    )


def _open_link(page, url: str, row: int, timeout_s: float = 120) -> None:
    """Open a deep link and wait until its row is shown (right after a load the app is idle before its first run)."""
    page.goto(url)
    page.get_by_text(re.compile(rf"row {row:,} (matches|does not)")).first.wait_for(timeout=timeout_s * 1000)
    page.wait_for_function(
        f"() => {{ const e = document.querySelector('[data-testid=\"stNumberInputField\"]'); return e && e.value === '{row}'; }}", timeout=timeout_s * 1000
    )
    wait_idle(page, timeout_s)


def test_daily_use_flows_in_a_real_browser(server, tmp_path):
    """Deep links (model, sample, method), a clicked thumbnail, a tabular row by index with a what-if edit,
    the text model's inline salience with uncut class names; screenshots of each."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright client is not installed (pip install playwright)")
    shots: list[Path] = []
    timings: list[str] = []
    base = server["url"].rstrip("/")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            started = time.perf_counter()
            _open_link(page, f"{base}/inspect?model=digits-cnn&sample=212&method=grad_cam", 212)
            timings.append(f"deep link digits-cnn 212 Grad-CAM: {time.perf_counter() - started:.1f} s")
            assert page.get_by_text("Page not found").count() == 0
            assert page.locator('[data-testid="stNumberInputField"]').first.input_value() == "212"
            assert page.get_by_text("Explains").count() >= 1 and not page.locator(ERRORS).count()
            assert "sample=212" in page.url and "method=grad_cam" in page.url
            shots.append(_shoot(page, tmp_path, "deeplink-digits-cnn-212-grad-cam"))
            # Thumbnails: browse, click the third, its row opens and its Grad-CAM is drawn.
            page.get_by_text("Browse the matching rows from this one").click()
            wait_idle(page)
            thumb = page.locator("button").filter(has_text=re.compile(r"^#\d+: ")).nth(2)
            row = int(re.match(r"#(\d+)", thumb.inner_text()).group(1))
            started = time.perf_counter()
            thumb.click()
            page.get_by_text(re.compile(rf"row {row:,} matches")).first.wait_for(timeout=120_000)
            wait_idle(page)
            timings.append(f"thumbnail click to Grad-CAM: {time.perf_counter() - started:.1f} s")
            assert page.locator('[data-testid="stNumberInputField"]').first.input_value() == str(row)
            assert f"sample={row}" in page.url and not page.locator(ERRORS).count()
            shots.append(_shoot(page, tmp_path, "thumbnails-clicked"))
            # A tabular row far past 500, by its link; a what-if edit.
            _open_link(page, f"{base}/inspect?model=adult-mlp&sample=16000&method=integrated_gradients", 16000)
            assert page.locator('[data-testid="stNumberInputField"]').first.input_value() == "16000"
            hours = page.get_by_label("hours-per-week")
            hours.fill("2")
            hours.press("Enter")
            page.get_by_text("Predicted (edited)").first.wait_for(timeout=120_000)
            wait_idle(page)
            assert page.get_by_text("Predicted (edited)").count() == 1 and not page.locator(ERRORS).count()
            shots.append(_shoot(page, tmp_path, "adult-what-if"))
            # ROC and precision-recall: move the threshold slider; the decisions at the new threshold are shown.
            roc = page.locator('[data-testid="stSlider"]').filter(has_text="Threshold on the positive class")
            thumb, shown = roc.get_by_role("slider"), roc.get_by_test_id("stSliderThumbValue")
            before = float(shown.inner_text())
            thumb.focus()
            for _ in range(20):
                thumb.press("ArrowRight")
            wait_idle(page)
            after = float(shown.inner_text())
            assert after > before, (before, after)
            page.get_by_text(f"At threshold {after:.2f}").first.wait_for(timeout=60_000)
            assert not page.locator(ERRORS).count() and not _cut_chart_text(page)
            shots.append(_shoot(page, tmp_path, "adult-roc-threshold"))
            # Error analysis: the audit's slices, one opened with its misclassified rows.
            _visit(page, "Error analysis")
            page.get_by_role("heading", name="Slices").wait_for(timeout=60_000)
            assert page.locator('[data-testid="stMetricValue"]').count() >= 4 and not page.locator(ERRORS).count()
            assert not _cut_chart_text(page), _cut_chart_text(page)
            shots.append(_shoot(page, tmp_path, "adult-error-analysis"))
            # Text: inline salience per method, class names not cut ("non-t...").
            if "toxicity-minilm" in zoo_names():
                _open_link(page, f"{base}/inspect?model=toxicity-minilm&sample=3&method=layer_integrated_gradients,kernel_shap_text", 3, timeout_s=240)
                assert page.locator("span.salience").count() > 4 and not page.locator(ERRORS).count()
                assert not _unclipped_metrics(page), _unclipped_metrics(page)
                shots.append(_shoot(page, tmp_path, "text-inline-salience"))
                # Text what-if: edit the sentence; the prediction and both methods' salience follow.
                box = page.get_by_label("Text", exact=True)
                box.fill("You are a wonderful person and a good friend")
                box.press("Control+Enter")
                page.get_by_text("Predicted (edited)").first.wait_for(timeout=120_000)
                wait_idle(page, 240)
                edited = page.locator("span.salience").filter(has_text="wonderful")
                assert edited.count() == 2 and not page.locator(ERRORS).count()  # both methods, on the edited words
                shots.append(_shoot(page, tmp_path, "text-what-if"))
        finally:
            browser.close()
            _keep(shots)
    print("; ".join(timings))
    assert all(s.stat().st_size > 10_000 for s in shots)


def test_two_users_at_once_one_running_an_audit(server, tmp_path):
    """Two independent browser sessions: one starts an audit job; while it runs in its worker, the
    other's pages still answer (navigate, content drawn, no error). Then the first cancels it from
    its sidebar and the job ends cancelled. Screenshots of both."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright client is not installed (pip install playwright)")
    from audits.store.jobs import JobQueue
    from dashboard.stored_runs import RunStore

    queue = JobQueue(RunStore.at(server["store"]).store)
    base = server["url"].rstrip("/")
    shots: list[Path] = []
    answered: list[tuple[str, float]] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            ana, bo = browser.new_context(viewport={"width": 1440, "height": 1600}), browser.new_context(viewport={"width": 1440, "height": 1600})
            a, b = ana.new_page(), bo.new_page()  # no shared cookies or storage: two sessions
            b.goto(f"{base}/inspect?model=adult-mlp&sample=7&method=integrated_gradients")
            wait_idle(b)
            a.goto(f"{base}/audits?model=digits-cnn")
            wait_idle(a)
            rows = a.get_by_label("Evaluation rows (0: all)", exact=True).and_(a.get_by_test_id("stNumberInputField"))
            rows.fill("0")  # every row, every default probe, 400 explained samples: minutes of work to work beside
            rows.press("Enter")
            wait_idle(a)
            samples = a.get_by_label("Samples to explain (0: default)", exact=True).and_(a.get_by_test_id("stNumberInputField"))
            samples.fill("400")
            samples.press("Enter")
            wait_idle(a)
            a.get_by_role("button", name="Run audit").click()
            a.get_by_text("queued as job").wait_for(timeout=60_000)
            job_id = re.search(r"queued as job (\w+)", a.get_by_text("queued as job").first.inner_text()).group(1)
            deadline = time.monotonic() + 120
            while queue.get(job_id).status == "queued" and time.monotonic() < deadline:
                time.sleep(0.2)
            assert queue.get(job_id).status == "running"
            for label in ("Robustness", "Fairness", "Models", "Inspect"):
                started = time.perf_counter()
                _visit(b, label)  # its sidebar follows the job live too (one identity without sign-in): wait for the page itself
                settled = (  # the page drawn and settled: its title shown, no script running
                    "() => { const a = document.querySelector('[data-testid=\"stApp\"]'); const h = document.querySelector('[data-testid=\"stMain\"] h1');"
                    " return h && h.offsetParent !== null && a.getAttribute('data-test-script-state') === 'notRunning'; }"
                )
                b.wait_for_function(settled, timeout=120_000)
                b.wait_for_timeout(1500)
                # The sidebar's live job view reruns the page; a rerun may blank it for a moment: wait for it to settle again.
                b.wait_for_function(settled, timeout=120_000)
                shots.append(tmp_path / f"two-users-b-{label.lower()}.png")
                b.screenshot(path=str(shots[-1]))
                assert b.locator('[data-testid="stMain"] h1').first.is_visible() and not b.locator(ERRORS).count(), label
                answered.append((label, time.perf_counter() - started))
                assert queue.get(job_id).status == "running", f"the job ended before {label} was checked beside it"
            sidebar = a.locator('[data-testid="stSidebar"]')
            sidebar.get_by_text("Audit jobs").wait_for(timeout=60_000)
            shots.append(tmp_path / "two-users-a-job-running.png")
            a.screenshot(path=str(shots[-1]))
            clicked = time.monotonic()
            sidebar.get_by_role("button", name="Cancel").first.click()
            deadline = time.monotonic() + 180
            while queue.get(job_id).status == "running" and time.monotonic() < deadline:
                time.sleep(0.2)
            ended = queue.get(job_id)
            assert ended.status == "cancelled" and ended.run_id is None, (ended.status, ended.message)
            cancel_s = time.monotonic() - clicked
            sidebar.get_by_text("cancelled").first.wait_for(timeout=60_000)
            shots.append(tmp_path / "two-users-a-cancelled.png")
            a.screenshot(path=str(shots[-1]))
        finally:
            browser.close()
            _keep(shots)
    print("; ".join(f"{label} beside the job: {s:.1f} s" for label, s in answered) + f"; cancel to cancelled: {cancel_s:.1f} s")
