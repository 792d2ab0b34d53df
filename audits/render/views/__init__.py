"""One view per result family: its chart descriptions and document blocks in one module.

Importing this package registers every view with ``audits.render.registry``.
"""

from __future__ import annotations

from audits.render.views import attribution, concepts, discovery, fairness, performance, privacy, robustness, trust, uncertainty

__all__ = ["attribution", "concepts", "discovery", "fairness", "performance", "privacy", "robustness", "trust", "uncertainty"]
