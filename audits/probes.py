"""The probe interface and registry.

A probe is one method in one file: parameters in ``__init__`` (stored, not validated
against data), ``check(model, data)`` says why it cannot run (or None), and
``run(model, data, context)`` returns a typed, serializable result whose cost (model
calls, rows, wall time) the base records.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import inspect
import pkgutil
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal

import numpy as np

from audits.errors import SpecError
from audits.results import Cost, ProbeResult

if TYPE_CHECKING:
    from audits.data import AuditData
    from audits.large_data import PopulationStats
    from models.loader import ModelHandle

Category = Literal["explanation", "robustness", "fairness", "concepts"]
CATEGORY_ORDER: tuple[Category, ...] = ("explanation", "robustness", "fairness", "concepts")
ProgressFn = Callable[[float, str], None]
# Packages whose modules register probes on import.
_PROBE_PACKAGES = ("audits.explain", "audits.robustness", "audits.fairness", "audits.discovery", "audits.uncertainty", "audits.privacy")


@dataclass(frozen=True)
class RunContext:
    """What the engine shares with every probe of one audit."""

    seed: int
    proba: np.ndarray  # (N, K) class probabilities from the audit's one shared forward pass
    sample_indices: np.ndarray  # rows to explain / show examples for
    progress: ProgressFn | None = None
    # Results of probes that ran before this one in the same audit (explanations run first,
    # then robustness, then fairness), so a probe can build on them (e.g. attribution disparity).
    earlier: tuple[ProbeResult, ...] = ()
    # Streamed data (audits/large_data.py): counts of the shared pass over every row of the file; the probes
    # that can work from counts (group metrics) use them, the others work on the rows of ``data``, a subset.
    population: PopulationStats | None = None

    @property
    def predictions(self) -> np.ndarray:
        return self.proba.argmax(axis=1)

    def rng(self, salt: str) -> np.random.Generator:
        """A generator seeded by the audit seed and ``salt``, so probes do not share streams."""
        digest = hashlib.sha256(f"{self.seed}:{salt}".encode()).digest()
        return np.random.default_rng(int.from_bytes(digest[:8], "little"))

    def report(self, fraction: float, message: str = "") -> None:
        if self.progress is not None:
            self.progress(min(max(fraction, 0.0), 1.0), message)


class Probe(ABC):
    """Base of every probe. Subclasses set the class attributes and implement ``_run``."""

    name: ClassVar[str]
    category: ClassVar[Category]
    # The class of what ``run`` returns: render, policy and diff dispatch on it, never on a name.
    result_type: ClassVar[type[ProbeResult]]
    modalities: ClassVar[tuple[str, ...]]
    # Modalities for which the default audit spec includes this probe.
    default_for: ClassVar[tuple[str, ...]] = ()
    title: ClassVar[str] = ""
    description: ClassVar[str] = ""
    # Whether the probe reads the shared forward pass (``context.proba``/``predictions``); when
    # that pass gave non-finite outputs, such probes are skipped (their figures would be invalid).
    uses_shared_outputs: ClassVar[bool] = True
    # Whether the probe runs the model on new or changed inputs. A predictions card (decisions of a
    # system that is not loaded) runs only the probes that set this False.
    needs_model: ClassVar[bool] = True

    def check(self, model: ModelHandle, data: AuditData) -> str | None:
        """Why this probe cannot run on ``model`` and ``data``; None when it can."""
        if model.modality not in self.modalities:
            return f"{self.name} applies to {', '.join(self.modalities)} models, not {model.modality}"
        if self.needs_model and not getattr(model, "queryable", True):
            return "it runs the model on new inputs; a predictions card has decisions only, no model"
        return None

    def supports(self, model: ModelHandle, data: AuditData) -> bool:
        return self.check(model, data) is None

    @property
    def params(self) -> dict:
        """The constructor parameters as set (for the report)."""
        sig = inspect.signature(type(self).__init__)
        return {n: getattr(self, n) for n in sig.parameters if n != "self" and hasattr(self, n)}

    def run(self, model: ModelHandle, data: AuditData, context: RunContext) -> ProbeResult:
        """Run the probe and record its cost on the result."""
        reason = self.check(model, data)
        if reason is not None:
            raise ValueError(reason)
        start = time.perf_counter()
        with model.metered() as meter:
            result = self._run(model, data, context)
        cost = Cost(model_calls=meter.calls, rows_evaluated=meter.rows, wall_time_s=time.perf_counter() - start, batch_fallbacks=meter.batch_fallbacks)
        return dataclasses.replace(result, cost=cost)

    @abstractmethod
    def _run(self, model: ModelHandle, data: AuditData, context: RunContext) -> ProbeResult: ...


PROBES: dict[str, type[Probe]] = {}


def register(cls: type[Probe]) -> type[Probe]:
    """Class decorator: make a probe selectable by its ``name``."""
    if cls.name in PROBES and PROBES[cls.name] is not cls:
        raise TypeError(f"two probes named {cls.name}")
    result_type = getattr(cls, "result_type", None)
    if not (isinstance(result_type, type) and issubclass(result_type, ProbeResult)):
        raise TypeError(f"probe {cls.name} must declare result_type, the ProbeResult subclass its run() returns")
    PROBES[cls.name] = cls
    return cls


def _load_builtin() -> None:
    """Import every probe package and every public module in it: a new probe file registers itself.

    A package's ``__init__`` imports its modules in report order first; modules it does not list
    (a probe just added) are imported after them, so adding a probe touches no list.
    """
    for package in _PROBE_PACKAGES:
        try:
            imported = importlib.import_module(package)
        except ModuleNotFoundError as exc:
            if exc.name != package:
                raise
            continue
        for module in pkgutil.iter_modules(imported.__path__):
            if not module.name.startswith("_"):
                importlib.import_module(f"{package}.{module.name}")


def registered_probes() -> dict[str, type[Probe]]:
    _load_builtin()
    return dict(PROBES)


def default_probe_names(modality: str, model: ModelHandle | None = None, data: AuditData | None = None) -> list[str]:
    """The probes a default audit of ``modality`` runs.

    With ``model`` and ``data``, only those that can run on them (``Probe.check`` is None): a
    default never names a probe that could not apply (attention maps on a CNN, say).
    """
    names = [n for n, cls in registered_probes().items() if modality in cls.default_for]
    if model is None or data is None:
        return names
    return [n for n in names if make_probe(n).check(model, data) is None]


def make_probe(name: str, params: dict | None = None) -> Probe:
    """Instantiate a registered probe; unknown names and parameters raise SpecError."""
    probes = registered_probes()
    if name not in probes:
        raise SpecError(f"Unknown probe {name!r}.", fix=f"Choose from: {', '.join(sorted(probes))}.")
    cls = probes[name]
    params = dict(params or {})
    sig = inspect.signature(cls.__init__)
    accepted = [n for n in sig.parameters if n != "self"]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise SpecError(f"Probe {name!r} has no parameter(s) {unknown}.", fix=f"Its parameters are: {', '.join(accepted) or 'none'}.")
    try:
        return cls(**params)
    except (TypeError, ValueError) as exc:
        raise SpecError(f"Invalid parameters for probe {name!r}: {exc}.", fix=f"Its parameters are: {', '.join(accepted)}.") from None
