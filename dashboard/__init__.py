"""The Streamlit dashboard: a thin face over the engine (``streamlit run dashboard/app.py``).

It computes nothing the engine does not: attributions are ``make_probe(...).run``, audits
are ``run_audit``, figures are the shared ``result -> figure`` functions in
``audits/render/``. Caching lives only in ``dashboard/cache.py``.
"""
