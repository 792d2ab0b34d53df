"""Errors shown in the page: the problem and the fix, never a traceback; the page stays up."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import streamlit as st

from audits.errors import AuditError
from dashboard.markup import escape


def show_error(exc: BaseException, what: str = "") -> None:
    """An error box: an ``AuditError``'s problem and fix, or any other exception's message."""
    if isinstance(exc, AuditError):
        text = escape(exc.problem) + (f"\n\n**Fix:** {escape(exc.fix)}" if exc.fix else "")
    else:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        prefix = f"{what} failed" if what else "Something failed"
        text = (
            escape(f"{prefix}: {type(exc).__name__}{': ' + message if message else ''}.")
            + "\n\n**Fix:** check the inputs above; if it persists, report it with this message."
        )
    st.error(text, icon=":material/error:")


@contextmanager
def guarded(what: str) -> Iterator[None]:
    """Run a block; on an error show it (problem and fix) and carry on with the rest of the page.

    Streamlit's own control flow (``st.stop``, reruns) derives from ``BaseException`` and
    passes through untouched.
    """
    try:
        yield
    except Exception as exc:  # a failed probe or render must not take the page down
        show_error(exc, what)


def progress_callback(bar, label: str):
    """A ``progress(fraction, message)`` callback that drives an ``st.progress`` bar."""

    def update(fraction: float, message: str) -> None:
        bar.progress(min(max(float(fraction), 0.0), 1.0), text=f"{label}: {message}" if message else label)

    return update
