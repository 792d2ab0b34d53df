"""Policies shipped with the package (``default.yaml``: the default audit policy)."""
