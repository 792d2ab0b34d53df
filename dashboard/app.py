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

from dashboard import auth, deeplink, navigation, sidebar, state, workspace  # noqa: E402
from dashboard.auth_config import SignInConfigError  # noqa: E402

st.set_page_config(page_title="Model audits", page_icon=":material/fact_check:", layout="wide", initial_sidebar_state="expanded")
# The gate comes before anything of the app, the navigation included: a visitor who may not
# see the app gets a one-page app (sign-in, or the configuration problem) and nothing else.
try:
    access = auth.access()
except SignInConfigError as problem:
    auth.refuse(problem)
if access == "signed_out":
    auth.show_sign_in()

state.init()
deeplink.apply(list(workspace.catalog()))  # ?model=...&sample=...&method=... (a shared link)
pages = navigation.build()
st.session_state["_workspace"] = sidebar.render()
deeplink.publish(model=state.get("model"))  # every page's URL names the model; Inspect adds sample and methods
pages.run()
