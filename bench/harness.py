"""Measuring one contender: wall time, model calls and rows, peak memory, and a time budget.

Every contender of a case is a function ``run(n)`` that does the case's work on its first
``n`` units (rows, images, resamples) and returns what the case scores for quality. The
harness times it (best of a few repeats when it is quick), counts the model calls and rows
through the handles' meters, samples the process's resident memory, and, when a full run
would exceed the per-contender budget, measures a subset and extrapolates the full cost
linearly from two measured sizes, saying so in the row.
"""

from __future__ import annotations

import ctypes
import gc
import math
import os
import platform
import resource
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import cache
from typing import Any

import numpy as np
import torch

from models.loader import CallMeter

# A run shorter than this is repeated (best of ``repeats``): timer and scheduler noise.
QUICK_RUN_S = 2.0
MAX_REPEATS = 25
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@dataclass
class Row:
    """One line of the benchmark table (and of the JSON)."""

    case: str
    contender: str
    wall_time_s: float  # full case; extrapolated when ``extrapolated`` is true
    model_calls: float
    rows_evaluated: float
    peak_memory_mb: float  # peak resident-set growth over the run's start (measured size), MiB, freed heap trimmed first
    quality: dict[str, float | None] = field(default_factory=dict)
    ratio_to_ours: float | None = None  # this contender's time / ours in the same case and group (> 1: we are faster)
    group: str = ""  # a method within a case (B3, B4): ratios compare rows of one group
    measured_units: int = 0
    total_units: int = 0
    unit: str = ""
    measured_time_s: float = 0.0  # wall time of the run actually measured
    extrapolated: bool = False
    repeats: int = 1
    note: str = ""

    def to_json(self) -> dict:
        out = asdict(self)
        out["quality"] = {k: _finite(v) for k, v in self.quality.items()}
        for key in ("wall_time_s", "model_calls", "rows_evaluated", "peak_memory_mb", "ratio_to_ours", "measured_time_s"):
            out[key] = _finite(out[key])
        return out


@dataclass
class Check:
    """A target of the issue, checked against this run's figures."""

    case: str
    target: str
    value: float | None
    met: bool | None

    def to_json(self) -> dict:
        return {"case": self.case, "target": self.target, "value": _finite(self.value), "met": self.met}


@dataclass
class CaseResult:
    case: str
    title: str
    rows: list[Row]
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Config:
    """Knobs shared by every case."""

    quick: bool = False
    budget_s: float = 60.0  # per contender; beyond it a subset is measured and the rest extrapolated
    repeats: int = 3
    seed: int = 0


@dataclass
class Measured:
    """What ``measure`` returns: the row and the contender's output on the measured units."""

    row: Row
    output: Any
    units: int


class PeakRSS:
    """Peak resident memory of this process during a block, sampled every ``interval`` seconds.

    Reads /proc/self/statm (Linux); elsewhere falls back to getrusage's lifetime peak, whose
    growth over the block is a lower bound.
    """

    def __init__(self, interval: float = 0.01) -> None:
        self.interval = interval
        self.start = 0
        self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def current() -> int:
        try:
            with open("/proc/self/statm") as fh:
                return int(fh.read().split()[1]) * _PAGE
        except OSError:
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, self.current())

    def __enter__(self) -> PeakRSS:
        self.start = self.peak = self.current()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join()
        self.peak = max(self.peak, self.current())

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.start) / 2**20


@dataclass
class _Timed:
    seconds: float
    calls: int
    rows: int
    memory_mb: float
    output: Any
    repeats: int


def release_freed_memory() -> None:
    """Hand freed heap back to the OS (glibc's malloc_trim), so the next run's RSS growth shows
    what it allocates rather than what earlier runs left in the allocator; a no-op elsewhere."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _time_once(fn: Callable[[int], Any], n: int, meters: Sequence[CallMeter], *, trim: bool = True) -> _Timed:
    if trim:
        release_freed_memory()
    before = [m.snapshot() for m in meters]
    with PeakRSS() as rss, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # libraries' deprecation chatter must not abort a run under pytest
        start = time.perf_counter()
        output = fn(n)
        seconds = time.perf_counter() - start
    calls = sum(m.calls - b[0] for m, b in zip(meters, before, strict=True))
    rows = sum(m.rows - b[1] for m, b in zip(meters, before, strict=True))
    return _Timed(seconds, calls, rows, rss.growth_mb, output, 1)


def _best_of(fn: Callable[[int], Any], n: int, meters: Sequence[CallMeter], repeats: int) -> _Timed:
    """Best of ``repeats`` runs when a run is quick; sub-second runs repeat more (up to
    ``MAX_REPEATS``, while the repeats add up to under ``QUICK_RUN_S``): on a shared machine the
    fastest run is the one least disturbed by other work.

    Only the first run starts from a trimmed heap (its memory growth is the figure reported); the
    repeats run as the next probe of an audit does, on the heap the run before left. Trimming
    before every repeat made each one first-touch its pages again: that charged a method that
    allocates its whole batch at once (ours, at the plan's batch size) for page faults an audit
    never pays, and favoured the floor's smaller chosen batch.
    """
    best = _time_once(fn, n, meters)
    done, spent = 1, best.seconds
    while best.seconds < QUICK_RUN_S and (done < repeats or (repeats > 1 and done < MAX_REPEATS and spent < QUICK_RUN_S)):
        again = _time_once(fn, n, meters, trim=False)
        spent += again.seconds
        done += 1
        peak = max(again.memory_mb, best.memory_mb)  # memory: the largest over the repeats
        if again.seconds < best.seconds:
            best = again
        best.memory_mb = peak
    best.repeats = done
    return best


def measure(
    case: str,
    contender: str,
    fn: Callable[[int], Any],
    *,
    units: int,
    unit: str,
    meters: Sequence[CallMeter],
    config: Config,
    pilot: int | None = None,
    note: str = "",
    group: str = "",
) -> Measured:
    """Time ``fn(units)``, or with ``pilot`` set and a full run over budget, a subset of it.

    With ``pilot`` the contender first runs on ``pilot`` units (which also warms it up); if
    that rate says the full run fits the budget, the full run is measured, else the
    largest subset that fits, and the full cost is extrapolated linearly through the two
    measured sizes (fixed cost plus per-unit cost).
    """
    if pilot is None or pilot >= units:
        timed = _best_of(fn, units, meters, config.repeats)
        row = Row(case, contender, timed.seconds, timed.calls, timed.rows, timed.memory_mb, measured_units=units, total_units=units,
                  unit=unit, measured_time_s=timed.seconds, repeats=timed.repeats, note=note)  # fmt: skip
        row.group = group
        return Measured(row, timed.output, units)
    first = _time_once(fn, pilot, meters)
    per_unit = first.seconds / max(pilot, 1)
    if per_unit * units <= config.budget_s or units - 1 <= pilot:  # fits, or no subset lies between pilot and full
        timed = _best_of(fn, units, meters, config.repeats)
        row = Row(case, contender, timed.seconds, timed.calls, timed.rows, max(timed.memory_mb, first.memory_mb), measured_units=units,
                  total_units=units, unit=unit, measured_time_s=timed.seconds, repeats=timed.repeats, note=note)  # fmt: skip
        row.group = group
        return Measured(row, timed.output, units)
    n = int(min(units - 1, max(pilot + 1, math.floor(0.8 * config.budget_s / max(per_unit, 1e-9)))))
    second = _time_once(fn, n, meters)

    def scale(a: float, b: float) -> float:
        slope = (b - a) / (n - pilot)
        if slope <= 0:  # noise swamped the difference: fall back to the measured rate
            return b / n * units
        return b + slope * (units - n)

    extra = f"extrapolated from {n} of {units} {unit}"
    row = Row(
        case, contender, scale(first.seconds, second.seconds), scale(first.calls, second.calls), scale(first.rows, second.rows),
        max(first.memory_mb, second.memory_mb), measured_units=n, total_units=units, unit=unit, measured_time_s=second.seconds,
        extrapolated=True, note=f"{extra}; {note}" if note else extra, group=group,
    )  # fmt: skip
    return Measured(row, second.output, n)


def set_ratios(rows: list[Row], ours: str = "ours") -> None:
    """Fill ``ratio_to_ours`` (contender time / our time) within each case and group."""
    base = {(r.case, r.group): r.wall_time_s for r in rows if r.contender == ours}
    for r in rows:
        key = (r.case, r.group)
        if key in base and base[key] > 0:
            r.ratio_to_ours = r.wall_time_s / base[key]


def machine() -> dict:
    """The machine the run is on: CPU, cores, torch and its threads, device, load average."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            names = [line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": "cpu",
        "load_average": [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    }
    try:
        from threadpoolctl import threadpool_info

        info["blas_threads"] = max((pool["num_threads"] for pool in threadpool_info()), default=None)
    except ImportError:
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
    return info


@cache
def zoo(name: str):
    """(handle, data) of a zoo model on the CPU (or $AUDITS_DEVICE), loaded once per process."""
    from audits.data import load_data
    from models.loader import load_model
    from models.registry import resolve_card

    card = resolve_card(name)
    return load_model(card), load_data(card)


def _finite(v: Any) -> Any:
    if isinstance(v, (float, np.floating)):
        v = float(v)
        return v if math.isfinite(v) else None
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, np.bool_):
        return bool(v)
    return v
