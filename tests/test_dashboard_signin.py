"""Sign-in, tested on a real server: with ``[auth]`` configured, no URL of the app serves anything
but the sign-in page; secrets that do not parse stop ``audits dashboard`` before the server
starts and stop the app from drawing anything but the parse error.

The OIDC provider need not be reachable: nobody signs in here, every request is anonymous.
Browser tests need Debian's chromium at /usr/bin/chromium and the playwright client.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dashboard import auth_config, navigation
from models.registry import zoo_names
from tests.dashboard_support import CHROMIUM, CHROMIUM_ARGS, ROOT, free_port, serve_dashboard, wait_idle

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

AUTH = """[auth]
redirect_uri = "http://127.0.0.1:{port}/oauth2callback"
cookie_secret = "a-cookie-secret-of-32-characters"
client_id = "audits-dashboard"
client_secret = "a-client-secret"
server_metadata_url = "http://127.0.0.1:9/.well-known/openid-configuration"
"""
BROKEN = AUTH + 'extra = "an unterminated string\n'  # a TOML syntax error on line 7
AUTH_DICT = {
    "redirect_uri": "http://localhost:8501/oauth2callback",
    "cookie_secret": "x" * 32,
    "client_id": "id",
    "client_secret": "secret",
    "server_metadata_url": "http://127.0.0.1:9/.well-known/openid-configuration",
}
# What a visitor who has not signed in must never see: any element that shows the app's data.
CONTENT = [
    '[data-testid="stSidebar"]',
    '[data-testid="stSidebarNav"]',
    '[data-testid="stTopNav"]',
    '[data-testid="stDataFrame"]',
    '[data-testid="stFileUploader"]',
    '[data-testid="stPlotlyChart"]',
    '[data-testid="stSelectbox"]',
    '[data-testid="stMetric"]',
    '[data-testid="stExpander"]',
    '[data-testid="stCode"]',
]


def _home(tmp_path: Path, secrets: str) -> Path:
    """A working folder whose .streamlit/secrets.toml is ``secrets`` (and HOME, so no user secrets leak in)."""
    home = tmp_path / "home"
    (home / ".streamlit").mkdir(parents=True)
    (home / ".streamlit" / "secrets.toml").write_text(secrets)
    return home


def _urls() -> list[str]:
    """Every path a visitor could ask for: the app, each page's URL, and each script's name (the old ``pages/`` URLs)."""
    entries = navigation.pages()
    return ["", *{e.url_path for e in entries}, *{Path(e.script).stem for e in entries}, "no_such_page"]


# --- the configuration, read so that it fails closed ------------------------------------


def test_secrets_that_do_not_parse_are_refused_with_the_parse_error(tmp_path):
    home = _home(tmp_path, BROKEN.format(port=8501))
    with pytest.raises(auth_config.SignInConfigError) as raised:
        auth_config.auth_from_files([str(home / ".streamlit" / "secrets.toml")])
    assert "does not parse" in raised.value.problem and "line 7" in raised.value.problem
    assert str(home / ".streamlit" / "secrets.toml") in raised.value.problem
    assert "refuses to start" in raised.value.problem and "TOML syntax" in raised.value.fix


def test_a_broken_file_without_auth_is_refused_too(tmp_path):
    """Whether it mentions auth cannot be known from a file that does not parse."""
    path = tmp_path / "secrets.toml"
    path.write_text('[database]\npassword = "x\n')
    with pytest.raises(auth_config.SignInConfigError, match="does not parse"):
        auth_config.auth_from_files([str(path)])


def test_an_incomplete_auth_section_names_what_is_missing(tmp_path):
    path = tmp_path / "secrets.toml"
    path.write_text('[auth]\nredirect_uri = "http://localhost:8501/oauth2callback"\n[auth.google]\nclient_id = "x"\n')
    with pytest.raises(auth_config.SignInConfigError) as raised:
        auth_config.auth_from_files([str(path)])
    assert "cookie_secret" in raised.value.problem
    assert "google.client_secret" in raised.value.problem and "google.server_metadata_url" in raised.value.problem


def test_complete_absent_and_folder_secrets(tmp_path):
    good = tmp_path / "secrets.toml"
    good.write_text(AUTH.format(port=8501))
    section = auth_config.auth_from_files([str(tmp_path / "missing.toml"), str(good)])
    assert section is not None and section["client_id"] == "audits-dashboard"
    assert auth_config.auth_from_files([str(tmp_path / "missing.toml")]) is None
    other = tmp_path / "other.toml"
    other.write_text('[database]\npassword = "x"\n')
    assert auth_config.auth_from_files([str(other)]) is None
    folder = tmp_path / "kube"
    (folder / "api").mkdir(parents=True)
    (folder / "api" / "token").write_text("t\n")
    secrets, found = auth_config.read_secrets([str(folder)])
    assert found and secrets == {"api": "t"}
    (folder / "stray.txt").write_text("x")
    with pytest.raises(auth_config.SignInConfigError, match="not a folder"):
        auth_config.read_secrets([str(folder)])


def test_the_check_reads_the_files_streamlit_would(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    files = auth_config.server_secrets_files(ROOT / "dashboard" / "app.py", {"server.port": "8999"})
    assert str(tmp_path / ".streamlit" / "secrets.toml") in files
    assert str(ROOT / "dashboard" / ".streamlit" / "secrets.toml") in files


def test_audits_dashboard_refuses_to_start_with_broken_secrets(tmp_path):
    """The CLI stops with the parse error before Streamlit starts (before the fix: the server ran, open)."""
    home = _home(tmp_path, BROKEN.format(port=8501))
    port = free_port()
    env = {**os.environ, "HOME": str(home), "PYTHONPATH": str(ROOT), "AUDITS_DEVICE": "cpu"}
    try:
        done = subprocess.run([sys.executable, "-m", "audits", "dashboard", "--port", str(port)], cwd=home, env=env, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("audits dashboard started a server from secrets that do not parse")
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert "does not parse" in done.stderr and "secrets.toml" in done.stderr and "line 7" in done.stderr
    assert "Dashboard on" not in done.stdout


# --- the gate in every page script --------------------------------------------------------


@pytest.mark.parametrize("entry", navigation.PAGES, ids=lambda e: e.url_path)
def test_every_page_script_gates_itself(entry):
    """A page script run on its own, with sign-in configured and nobody signed in, draws nothing."""
    at = AppTest.from_file(str(entry.path), default_timeout=60)
    at.secrets["auth"] = AUTH_DICT
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.title and not at.main.children and not at.sidebar.children


def test_the_app_shows_only_the_sign_in_page():
    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=60)
    at.secrets["auth"] = AUTH_DICT
    at.run()
    assert not at.exception
    assert [b.label for b in at.button] == ["Log in"]
    assert [t.value for t in at.title] == ["Model audits"]
    assert not at.sidebar.children  # no model picker, no account box


def test_an_incomplete_auth_section_stops_the_app():
    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=60)
    at.secrets["auth"] = {k: v for k, v in AUTH_DICT.items() if k != "cookie_secret"}
    at.run()
    assert not at.exception
    assert not at.button and not at.sidebar.children
    assert any("cookie_secret" in e.value for e in at.error)


# --- a real server in a real browser -------------------------------------------------------

BROWSER = (
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.is_file(), reason="no /usr/bin/chromium (install Debian's chromium package: apt-get install chromium)"),
    pytest.mark.skipif(not {"digits-cnn", "adult-mlp"} <= set(zoo_names()), reason="the demo zoo is not built (python -m models.build_zoo)"),
)


def _browser(test):
    for mark in BROWSER:
        test = mark(test)
    return test


def _visit_each(url: str, paths: list[str]) -> dict[str, dict]:
    """Open each path in a fresh browser context (no cookies: an anonymous visitor); what each page showed."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright client is not installed (pip install playwright)")
    seen: dict[str, dict] = {}
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            for path in paths:
                context = chromium.new_context()
                page = context.new_page()
                page.goto(f"{url}/{path}")
                wait_idle(page)
                try:  # the run's last element: the sign-in button, or the configuration error
                    page.locator('[data-testid="stMain"] button, [data-testid="stAlertContentError"]').first.wait_for(timeout=30_000)
                except sync_api.TimeoutError:  # neither came (a page of the app ran instead): what it showed is asserted below
                    pass
                wait_idle(page)
                seen[path] = {
                    "text": page.inner_text("body"),
                    "content": {sel: page.locator(sel).count() for sel in CONTENT if page.locator(sel).count()},
                    "buttons": [b.inner_text().strip() for b in page.locator('[data-testid="stMain"] button').all()],
                    "errors": [e.inner_text() for e in page.locator('[data-testid="stAlertContentError"]').all()],
                }
                context.close()
        finally:
            chromium.close()
    return seen


@_browser
def test_no_url_serves_anything_but_the_sign_in_page(tmp_path):
    """Before the fix ``/models_page`` (the ``pages/`` folder's URL) served the model table and the upload form."""
    port = free_port()
    home = _home(tmp_path, AUTH.format(port=port))
    with serve_dashboard(cwd=home, env={"HOME": str(home), "AUDITS_STORE": str(tmp_path / "store")}, log_path=tmp_path / "streamlit.log", port=port) as url:
        seen = _visit_each(url, _urls())
    models = zoo_names()
    for path, page in seen.items():
        assert not page["content"], (path, page["content"])
        assert any(b.endswith("Log in") for b in page["buttons"]), (path, page["buttons"], page["text"][:300])
        assert "This dashboard requires signing in." in page["text"], path
        leaked = [name for name in models if name in page["text"]] + [
            t for t in ("Register a model", "Inspect a prediction", "Stored audits") if t in page["text"]
        ]
        assert not leaked, (path, leaked)


@_browser
def test_a_server_with_broken_secrets_draws_only_the_parse_error(tmp_path):
    """``streamlit run`` itself cannot be stopped from the app, so the app refuses to draw anything else."""
    port = free_port()
    home = _home(tmp_path, BROKEN.format(port=port))
    with serve_dashboard(cwd=home, env={"HOME": str(home), "AUDITS_STORE": str(tmp_path / "store")}, log_path=tmp_path / "streamlit.log", port=port) as url:
        seen = _visit_each(url, ["", "models", "models_page"])
    for path, page in seen.items():
        assert not page["content"], (path, page["content"])
        assert not any("Log in" in b for b in page["buttons"]), path
        assert any("does not parse" in e and "line 7" in e for e in page["errors"]), (path, page["errors"], page["text"][:300])
        assert not [name for name in zoo_names() if name in page["text"]], path
