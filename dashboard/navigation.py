"""The dashboard's pages: one table, turned into ``st.navigation`` by ``app.py`` after the sign-in gate.

Pages are reached only through this navigation (the scripts live in ``app_pages/``, a folder
name Streamlit gives no meaning of its own), and each script repeats the gate on its first line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import streamlit as st

PAGES_DIR = Path(__file__).resolve().parent / "app_pages"


@dataclass(frozen=True)
class PageEntry:
    """One page: its script in ``app_pages/``, how the navigation shows it, and its URL path."""

    script: str
    title: str
    icon: str
    url_path: str
    section: str
    default: bool = False

    @property
    def path(self) -> Path:
        return PAGES_DIR / self.script


PAGES: tuple[PageEntry, ...] = (
    PageEntry("inspect_page.py", "Inspect", ":material/image_search:", "inspect", "Analyse", default=True),
    PageEntry("robustness_page.py", "Robustness", ":material/shield:", "robustness", "Analyse"),
    PageEntry("fairness_page.py", "Fairness", ":material/balance:", "fairness", "Analyse"),
    PageEntry("concepts_page.py", "Concepts", ":material/psychology:", "concepts", "Analyse"),
    PageEntry("errors_page.py", "Error analysis", ":material/troubleshoot:", "errors", "Analyse"),
    PageEntry("models_page.py", "Models", ":material/inventory_2:", "models", "Manage"),
    PageEntry("audit_page.py", "Audit & reports", ":material/description:", "audits", "Manage"),
    PageEntry("history_page.py", "History", ":material/history:", "history", "Manage"),
)


def pages() -> tuple[PageEntry, ...]:
    """Every page of the app, in navigation order."""
    return PAGES


def build():
    """The app's ``st.navigation`` (call only after the sign-in gate has passed).

    Streamlit serves its default page at ``/`` only, so a default page's own URL path
    (``/inspect``) would answer "Page not found". Every listed page therefore keeps its URL,
    and a hidden default page at ``/`` forwards to the page marked ``default``.
    """
    sections: dict[str, list] = {}
    landing = None
    for entry in pages():
        page = st.Page(entry.path, title=entry.title, icon=entry.icon, url_path=entry.url_path)
        sections.setdefault(entry.section, []).append(page)
        if entry.default:
            landing = page

    def forward() -> None:
        st.switch_page(landing, query_params=st.query_params.to_dict())  # a deep link keeps its parameters

    first = next(iter(sections))
    sections[first].insert(0, st.Page(forward, title="Start", url_path="start", default=True, visibility="hidden"))
    return st.navigation(sections)
