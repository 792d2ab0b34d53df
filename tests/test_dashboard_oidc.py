"""Sign-in for real: a real OpenID Connect provider (npm ``oidc-provider`` on Node.js, started here),
the dashboard with an ``[auth]`` section pointing at it, and headless Chromium. An anonymous
visitor sees no page content and no data; signing in at the provider shows the app with the
user's email; signing out brings back the sign-in page and nothing else.

Needs Debian's chromium at /usr/bin/chromium, the playwright client, Node.js with npm and the
npm registry (the provider is installed once into ``~/.cache/audits-tests``); skipped with the
reason when any is missing. Screenshots go to the test's tmp folder and ``$AUDITS_SCREENSHOTS``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from models.registry import zoo_names
from tests.dashboard_support import CHROMIUM, CHROMIUM_ARGS, free_port, serve_dashboard, wait_idle
from tests.oidc_support import CLIENT_ID, CLIENT_SECRET, start_provider

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.is_file(), reason="no /usr/bin/chromium (install Debian's chromium package: apt-get install chromium)"),
    pytest.mark.skipif("digits-cnn" not in zoo_names(), reason="the demo zoo is not built (python -m models.build_zoo)"),
]
USER = "ana@example.com"
# Elements that show the app or its data: none may be on the page before sign-in or after sign-out.
CONTENT = [
    '[data-testid="stSidebar"]',
    '[data-testid="stSidebarNav"]',
    '[data-testid="stDataFrame"]',
    '[data-testid="stFileUploader"]',
    '[data-testid="stPlotlyChart"]',
    '[data-testid="stSelectbox"]',
    '[data-testid="stMetric"]',
    '[data-testid="stImage"]',
]


def _secrets(home: Path, port: int, issuer: str) -> None:
    (home / ".streamlit").mkdir(parents=True)
    (home / ".streamlit" / "secrets.toml").write_text(
        "[auth]\n"
        f'redirect_uri = "http://127.0.0.1:{port}/oauth2callback"\n'
        'cookie_secret = "a-cookie-secret-for-tests-only-0123456789"\n'
        f'client_id = "{CLIENT_ID}"\n'
        f'client_secret = "{CLIENT_SECRET}"\n'
        f'server_metadata_url = "{issuer}/.well-known/openid-configuration"\n'
        # Streamlit asks for prompt=select_account by default, a prompt oidc-provider does not offer.
        'client_kwargs = { prompt = "login" }\n'
    )


def _shown(page) -> dict:
    return {sel: page.locator(sel).count() for sel in CONTENT if page.locator(sel).count()}


def _assert_signed_out(page, where: str) -> None:
    page.get_by_role("button", name="Log in").wait_for(timeout=60_000)
    wait_idle(page)
    text = page.inner_text("body")
    assert "This dashboard requires signing in." in text, (where, text[:300])
    assert not _shown(page), (where, _shown(page))
    leaked = [name for name in zoo_names() if name in text] + [t for t in ("Inspect a prediction", "Stored audits", USER) if t in text]
    assert not leaked, (where, leaked)


def _keep(shots: list[Path]) -> None:
    target = os.environ.get("AUDITS_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        for shot in shots:
            if shot.is_file():
                shutil.copy(shot, Path(target) / shot.name)


def test_sign_in_and_out_against_a_real_openid_connect_provider(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright client is not installed (pip install playwright)")
    port, provider_port = free_port(), free_port()
    home = tmp_path / "home"
    shots: list[Path] = []
    with start_provider(port=provider_port, redirect_uri=f"http://127.0.0.1:{port}/oauth2callback", log_path=tmp_path / "oidc.log") as issuer:
        _secrets(home, port, issuer)
        env = {"HOME": str(home), "AUDITS_STORE": str(tmp_path / "store")}
        with serve_dashboard(cwd=home, env=env, log_path=tmp_path / "streamlit.log", port=port) as url, sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
                # 1. anonymous: the sign-in page only, at the app's address and at a page's own URL
                for path in ("models", ""):  # the app address last: its sign-in page is the one used below
                    page.goto(f"{url}/{path}")
                    _assert_signed_out(page, f"anonymous /{path}")
                shots.append(tmp_path / "signin-1-anonymous.png")
                page.screenshot(path=str(shots[-1]))

                # 2. sign in at the provider: its login form, then its consent form
                page.get_by_role("button", name="Log in").click()
                page.wait_for_url(f"{issuer}/**", timeout=60_000)
                page.locator('input[name="login"]').fill(USER)
                page.locator('input[name="password"]').fill("any password")
                shots.append(tmp_path / "signin-2-provider.png")
                page.screenshot(path=str(shots[-1]))
                page.locator('button[type="submit"]').click()
                page.wait_for_load_state()
                if page.url.startswith(issuer):  # the consent page
                    page.locator('button[type="submit"]').click()
                page.wait_for_url(f"{url}/**", timeout=60_000)

                # 3. the app, with who is signed in
                page.get_by_text(f"Signed in as {USER}").wait_for(timeout=90_000)
                wait_idle(page)
                assert page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]').count() >= 1
                assert page.locator("h1").first.is_visible()
                shots.append(tmp_path / "signin-3-signed-in.png")
                page.screenshot(path=str(shots[-1]))

                # 4. sign out: back to the sign-in page, also after a reload
                page.get_by_role("button", name="Log out").click()
                # Streamlit ends the provider's session too (its end_session_endpoint), which asks to confirm.
                page.wait_for_url(f"{issuer}/session/end**", timeout=60_000)
                page.locator('button[type="submit"]').first.click()
                page.wait_for_url(f"{url}/**", timeout=60_000)
                _assert_signed_out(page, "after sign-out")
                page.reload()
                _assert_signed_out(page, "after sign-out and a reload")
                shots.append(tmp_path / "signin-4-signed-out.png")
                page.screenshot(path=str(shots[-1]))
            except BaseException:
                shots.append(tmp_path / "signin-failed.png")  # what the page showed when the test failed
                page.screenshot(path=str(shots[-1]))
                raise
            finally:
                browser.close()
                _keep(shots)


def test_client_kwargs_is_an_option_not_a_provider():
    """Before the fix, ``client_kwargs = { prompt = "login" }`` was read as a provider named client_kwargs and refused."""
    from dashboard import auth
    from dashboard.auth_config import validate_auth

    flat = {
        "redirect_uri": "http://localhost:8501/oauth2callback",
        "cookie_secret": "x" * 32,
        "client_id": "id",
        "client_secret": "secret",
        "server_metadata_url": "http://127.0.0.1:9/.well-known/openid-configuration",
        "client_kwargs": {"prompt": "login"},
    }
    assert validate_auth(flat)["client_kwargs"] == {"prompt": "login"}
    assert auth.provider(flat) is None  # st.login() with the default provider
    named = {
        "redirect_uri": flat["redirect_uri"],
        "cookie_secret": flat["cookie_secret"],
        "keycloak": {**{k: flat[k] for k in ("client_id", "client_secret", "server_metadata_url")}, "client_kwargs": {"prompt": "login"}},
    }
    assert auth.provider(validate_auth(named)) == "keycloak"
