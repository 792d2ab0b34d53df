"""Titles, descriptions and categories of the registered probes, readable without importing a probe.

Probe modules import torch; a report re-render must not. ``probes.json`` is written from the
probe registry (``python -m audits.render.catalog``) and a test fails when it is stale.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

from audits.render.charts import pretty

CATALOG = Path(__file__).with_name("probes.json")


@dataclass(frozen=True)
class ProbeInfo:
    """What the document says about a probe: its title, description and category."""

    name: str
    title: str
    description: str
    category: str


@functools.cache
def _catalog() -> dict[str, ProbeInfo]:
    raw = json.loads(CATALOG.read_text(encoding="utf-8"))
    return {name: ProbeInfo(name=name, **fields) for name, fields in raw.items()}


def probe_info(name: str) -> ProbeInfo | None:
    """The catalogue entry of probe ``name`` (None for a probe this version does not know)."""
    return _catalog().get(name)


def probe_title(name: str) -> str:
    """The probe's title, or its name in words when it has none."""
    info = probe_info(name)
    return (info.title if info is not None and info.title else pretty(name)).strip()


def probe_category(name: str) -> str | None:
    """'explanation', 'robustness' or 'fairness' (None when unknown)."""
    info = probe_info(name)
    return info.category if info is not None else None


def catalog_from_registry() -> dict[str, dict[str, str]]:
    """The catalogue as the probe registry has it now (imports every probe, so torch)."""
    from audits.probes import registered_probes

    return {
        name: {"title": cls.title or "", "description": cls.description or "", "category": cls.category} for name, cls in sorted(registered_probes().items())
    }


def render_catalog() -> str:
    """``probes.json`` text for the current registry."""
    return json.dumps(catalog_from_registry(), indent=1, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    CATALOG.write_text(render_catalog(), encoding="utf-8")
    print(f"wrote {CATALOG}")
