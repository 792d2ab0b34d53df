"""The page scripts of the dashboard, run only through ``st.navigation`` (``dashboard/navigation.py``).

Not called ``pages/``: Streamlit runs the scripts of a ``pages/`` folder beside the main script as
pages of their own (its legacy multipage mode), past the sign-in gate of ``app.py``.
"""
