"""Entry point: ``streamlit run dashboard/app.py`` (or ``audits dashboard``)."""

from __future__ import annotations

import sys
from pathlib import Path

# Streamlit puts this file's folder on sys.path, not the project root; the dashboard
# package lives at the root (an editable install may predate it).
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import streamlit as st  # noqa: E402

from dashboard import auth, sidebar, state  # noqa: E402

PAGES_DIR = Path(__file__).resolve().parent / "pages"

st.set_page_config(page_title="Model audits", page_icon=":material/fact_check:", layout="wide", initial_sidebar_state="expanded")
state.init()
if not auth.gate():
    st.stop()

navigation = st.navigation(
    {
        "Analyse": [
            st.Page(PAGES_DIR / "inspect_page.py", title="Inspect", icon=":material/image_search:", url_path="inspect", default=True),
            st.Page(PAGES_DIR / "robustness_page.py", title="Robustness", icon=":material/shield:", url_path="robustness"),
            st.Page(PAGES_DIR / "fairness_page.py", title="Fairness", icon=":material/balance:", url_path="fairness"),
        ],
        "Manage": [
            st.Page(PAGES_DIR / "models_page.py", title="Models", icon=":material/inventory_2:", url_path="models"),
            st.Page(PAGES_DIR / "audit_page.py", title="Audit & reports", icon=":material/description:", url_path="audits"),
            st.Page(PAGES_DIR / "history_page.py", title="History", icon=":material/history:", url_path="history"),
        ],
    }
)
st.session_state["_workspace"] = sidebar.render()
navigation.run()
