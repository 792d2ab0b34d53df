"""The probes the pages offer, read from the probe registry (never a list typed into a page)."""

from __future__ import annotations

import inspect

from audits.probes import Probe, registered_probes


def probe_names(category: str, modality: str | None = None) -> set[str]:
    """Names of the registered probes of ``category`` (``explanation``, ``robustness``, ``fairness``), for ``modality`` when given."""
    return {n for n, cls in registered_probes().items() if cls.category == category and (modality is None or modality in cls.modalities)}


def budget_params(probe_cls: type[Probe]) -> dict[str, int | float | bool]:
    """A probe's numeric budgets and switches (its int/float/bool keyword parameters with a default)."""
    out: dict[str, int | float | bool] = {}
    for name, p in inspect.signature(probe_cls.__init__).parameters.items():
        if name in ("self", "target") or p.default is inspect.Parameter.empty:
            continue
        if isinstance(p.default, bool | int | float):
            out[name] = p.default
    return out


def takes_target(probe_cls: type[Probe]) -> bool:
    """Whether the probe explains a chosen class (has a ``target`` parameter)."""
    return "target" in inspect.signature(probe_cls.__init__).parameters
