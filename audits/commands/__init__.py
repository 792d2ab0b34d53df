"""Subcommands of the ``audits`` CLI, grouped by the part of the engine they face; each module exposes ``add_parsers(sub)``."""
