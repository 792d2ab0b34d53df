"""Optional sign-in: when ``.streamlit/secrets.toml`` has an ``[auth]`` section, every page
requires Streamlit's built-in OIDC login (``st.login``); otherwise the app is open to
whoever can reach it (by default only this machine: it binds to localhost).
"""

from __future__ import annotations

import streamlit as st


def _auth_section() -> dict | None:
    try:
        section = st.secrets.get("auth")
    except Exception:  # no secrets file, or one that does not parse: no auth configured
        return None
    return dict(section) if section else None


def logged_in() -> bool:
    # st.user always has is_logged_in under a server; .get also works where it is absent (AppTest).
    return bool(st.user.get("is_logged_in", False))


def configured() -> bool:
    return _auth_section() is not None


def provider() -> str | None:
    """The provider to log in with: the first ``[auth.<name>]`` table, or None for a flat ``[auth]``."""
    section = _auth_section() or {}
    named = [k for k, v in section.items() if hasattr(v, "keys")]
    return named[0] if named else None


def gate() -> bool:
    """True when the visitor may see the app; otherwise draw the sign-in screen and return False."""
    if not configured() or logged_in():
        return True
    st.title("Model audits")
    st.write("This dashboard requires signing in.")
    st.button("Log in", type="primary", on_click=_login, icon=":material/login:")
    return False


def _login() -> None:
    st.login(provider())


def account_box(container) -> None:
    """Who is signed in, with a log-out button (only when auth is configured)."""
    if not configured() or not logged_in():
        return
    container.divider()
    container.caption(f"Signed in as {st.user.get('email') or st.user.get('name') or 'user'}")
    container.button("Log out", on_click=st.logout, icon=":material/logout:")
