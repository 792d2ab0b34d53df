"""Optional sign-in: when Streamlit's secrets have an ``[auth]`` section, every page requires
Streamlit's built-in OIDC login (``st.login``); otherwise the app is open to whoever can
reach it (by default only this machine: it binds to localhost).

Fails closed: secrets that do not parse, or an incomplete ``[auth]`` section, stop the app
with the problem (``auth_config``). The gate runs in ``app.py`` before the navigation is
built, and again at the top of every page script, however the script is reached.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, NoReturn

import streamlit as st

from dashboard.auth_config import SignInConfigError, provider_tables, read_secrets, validate_auth
from dashboard.feedback import show_error

Access = Literal["open", "signed_in", "signed_out"]


def auth_section() -> dict[str, Any] | None:
    """The ``[auth]`` section ``st.login`` will use (validated), or None when sign-in is not configured.

    Raises
    ------
    SignInConfigError
        When a secrets source does not parse or the section is incomplete.
    """
    # Every file Streamlit reads must parse: Streamlit alone would treat a broken one as absent.
    _, found = read_secrets(st.get_option("secrets.files"))
    try:
        section = st.secrets["auth"]
    except KeyError:  # secrets without an [auth] section
        return None
    except FileNotFoundError as exc:  # Streamlit found no secrets, or could not load one
        if found:
            raise SignInConfigError(f"Streamlit could not load the secrets ({exc}).", fix="Correct the secrets files named above.") from exc
        return None
    return validate_auth(section)


def logged_in() -> bool:
    # st.user always has is_logged_in under a server; .get also works where it is absent (AppTest).
    return bool(st.user.get("is_logged_in", False))


def signed_in_identity() -> str | None:
    """Who is signed in (email, else name), for the audit's record; None when sign-in is not configured."""
    if not logged_in():
        return None
    return str(st.user.get("email") or st.user.get("name") or "signed-in user")


def access() -> Access:
    """Whether the app is open, or who may see it: raises ``SignInConfigError`` on a broken configuration."""
    if auth_section() is None:
        return "open"
    return "signed_in" if logged_in() else "signed_out"


def require_signed_in() -> None:
    """Stop the page script unless the visitor may see it (a broken configuration counts as no).

    The first line of every page script: ``app.py`` gates before running a page, and this
    repeats the gate for a script reached any other way.
    """
    try:
        allowed = access() != "signed_out"
    except SignInConfigError:
        allowed = False
    if not allowed:
        st.stop()


def provider(section: dict[str, Any] | None) -> str | None:
    """The provider to log in with: the first ``[auth.<name>]`` table, or None for a flat ``[auth]``."""
    named = list(provider_tables(section or {}))
    return named[0] if named else None


def _login() -> None:
    st.login(provider(auth_section()))


def sign_in() -> None:
    """The sign-in page: a title, one sentence and the log-in button, nothing of the app."""
    st.title("Model audits")
    st.write("This dashboard requires signing in.")
    st.button("Log in", type="primary", on_click=_login, icon=":material/login:")


def _only(page: Callable[[], None], title: str, icon: str) -> NoReturn:
    """Run ``page`` as the app's only page, with no navigation shown, then end the script run.

    Building the navigation (even hidden) also switches Streamlit away from its legacy
    ``pages/`` folder mode for good.
    """
    st.navigation([st.Page(page, title=title, icon=icon, default=True)], position="hidden").run()
    st.stop()


def show_sign_in() -> NoReturn:
    _only(sign_in, "Sign in", ":material/login:")


def refuse(problem: SignInConfigError) -> NoReturn:
    """Draw only the configuration problem (and its fix), no page of the app."""

    def configuration_error() -> None:
        st.title("Model audits")
        show_error(problem)

    _only(configuration_error, "Configuration error", ":material/error:")


def account_box(container) -> None:
    """Who is signed in, with a log-out button (only when auth is configured)."""
    if access() != "signed_in":
        return
    container.divider()
    container.caption(f"Signed in as {st.user.get('email') or st.user.get('name') or 'user'}")
    container.button("Log out", on_click=st.logout, icon=":material/logout:")
