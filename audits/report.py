"""The AuditReport: one self-describing, versioned, serializable record of an audit."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from audits.errors import ReportError
from audits.findings import Finding

# Importing the package imports every result family, which registers each class for
# deserialization without importing torch or a probe.
from audits.results import AttributionResult, Measurement, PerformanceResult, ProbeFailure, ProbeResult, SkippedProbe
from audits.serialization import from_jsonable, serializable, to_jsonable

SCHEMA_VERSION = "1.0"
# Majors this code can read. A newer major is refused with a clear error.
READABLE_MAJORS = {"1"}
# Upgrades of older report dicts, keyed by the schema version they read; each returns the
# dict at a newer version. ``from_dict`` chains them until the version is readable.
MIGRATIONS: dict[str, Callable[[dict], dict]] = {}

if TYPE_CHECKING:
    from audits.data import AuditData


@serializable
@dataclass(frozen=True, kw_only=True)
class Provenance:
    """What was audited, how, with what, and at what cost: enough to reproduce the audit."""

    model_name: str
    model_format: str
    weights_sha256: str
    parameter_count: int
    device: str
    data_source: str
    data_sha256: str
    seed: int
    spec: dict
    library_versions: dict
    model_notes: dict = field(default_factory=dict)
    wall_time_s: float = 0.0
    model_calls: int = 0
    rows_evaluated: int = 0
    sample_budgets: dict = field(default_factory=dict)
    # Record keeping (EU AI Act Art. 12): when the audit ran (UTC, ISO 8601), for whom, with which
    # tool and where. Empty in reports written before these were recorded.
    started_at: str = ""
    ended_at: str = ""
    user: str = ""
    tool_version: str = ""
    host: str = ""


@serializable
@dataclass(frozen=True, kw_only=True)
class DataSummary:
    modality: str
    n_rows: int
    n_rows_available: int
    class_names: list[str]
    class_counts: dict
    sensitive: list[str]
    group_sizes: dict  # attribute -> {group: count}
    feature_names: list[str] = field(default_factory=list)
    # Rows of the evaluation file that were audited (None = all); sample indices refer to these.
    row_indices: np.ndarray | None = None
    # The favourable outcome as the model card declares it (None: not declared) and the reference groups.
    favourable_class: str | None = None
    reference_groups: dict = field(default_factory=dict)


@serializable
@dataclass(frozen=True, kw_only=True)
class ExplainedSamples:
    """The explained samples' inputs, so a report draws its galleries without the data.

    ``indices`` are rows of the audited data (as ``AttributionResult.sample_indices``).
    Images are uint8 (n, C, H, W), pixel values mapped from ``value_range`` to 0..255;
    tabular rows keep their raw columns and texts their text column in ``raw``.
    """

    indices: np.ndarray
    labels: np.ndarray
    predictions: np.ndarray
    confidence: np.ndarray  # probability of the predicted class
    images: np.ndarray | None = None
    value_range: list[float] = field(default_factory=lambda: [0.0, 1.0])
    raw: pd.DataFrame | None = None

    def image(self, row: int) -> np.ndarray:
        """Sample ``row`` as float (C, H, W) in [0, 1]."""
        return self.images[row].astype(np.float32) / 255.0


def explained_samples(data: AuditData, proba: np.ndarray, indices: np.ndarray, value_range: tuple[float, float] | None = None) -> ExplainedSamples:
    """The inputs, labels and predictions of rows ``indices`` of ``data``."""
    indices = np.asarray(indices, dtype=np.int64)
    images = None
    if data.modality == "image":
        lo, hi = value_range or (0.0, 1.0)
        images = np.round(np.clip((data.x[indices] - lo) / (hi - lo), 0.0, 1.0) * 255).astype(np.uint8)
    raw = None if data.raw is None else data.raw.iloc[indices].reset_index(drop=True)
    return ExplainedSamples(
        indices=indices,
        labels=data.y[indices].astype(np.int64),
        predictions=proba[indices].argmax(axis=1).astype(np.int64),
        confidence=proba[indices].max(axis=1).astype(np.float64),
        images=images,
        value_range=[float(v) for v in (value_range or (0.0, 1.0))],
        raw=raw,
    )


# The report fields holding probe results, in report order.
RESULT_KINDS: tuple[str, ...] = ("explanations", "robustness", "fairness", "concepts")


@serializable
@dataclass(frozen=True, kw_only=True)
class AuditReport:
    """Provenance, data summary, performance and every probe's typed result."""

    schema_version: str
    report_id: str
    created_at: str
    provenance: Provenance
    data_summary: DataSummary
    performance: PerformanceResult
    explanations: list[AttributionResult] = field(default_factory=list)
    robustness: list[ProbeResult] = field(default_factory=list)
    fairness: list[ProbeResult] = field(default_factory=list)
    # Concept tests and feature visualization: what the network's internal directions and units respond to.
    concepts: list[ProbeResult] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    skipped: list[SkippedProbe] = field(default_factory=list)
    failures: list[ProbeFailure] = field(default_factory=list)
    # The explained samples' inputs (for galleries) and the policy the findings come from.
    samples: ExplainedSamples | None = None
    policy: dict = field(default_factory=dict)
    # sha256 of the canonical JSON of everything else, set when the report is written
    # (see ``content_sha256``); re-rendering refuses a report whose content no longer matches.
    content_sha256: str = ""

    def probe_results(self) -> list[ProbeResult]:
        """Every probe's result, in report order (explanations, robustness, fairness, concepts)."""
        return [r for kind in RESULT_KINDS for r in getattr(self, kind)]

    def explanation(self, method: str) -> AttributionResult | None:
        return next((r for r in self.explanations if r.method == method), None)

    def measurements(self) -> list[Measurement]:
        """Every measurement of the report, its evidence pointing from the report's root."""
        out = [replace(m, evidence=f"performance{m.evidence}") for m in self.performance.measurements()]
        for kind in RESULT_KINDS:
            for i, result in enumerate(getattr(self, kind)):
                out += [replace(m, evidence=f"{kind}[{i}]{m.evidence}") for m in result.measurements()]
        return out

    def to_dict(self) -> dict:
        """The report as JSON-ready data, carrying the sha256 of its own canonical content."""
        raw = to_jsonable(self)
        raw["content_sha256"] = content_sha256(raw)
        return raw

    @classmethod
    def from_dict(cls, raw: dict) -> AuditReport:
        version = str(raw.get("schema_version", ""))
        while version.split(".")[0] not in READABLE_MAJORS and version in MIGRATIONS:
            raw = MIGRATIONS[version](dict(raw))
            version = str(raw.get("schema_version", ""))
        if version.split(".")[0] not in READABLE_MAJORS:
            older = _version_key(version) < _version_key(SCHEMA_VERSION)
            raise ReportError(
                f"Report schema version {version or '(missing)'} is not readable by this version (reads {sorted(READABLE_MAJORS)}.x"
                + (", and no migration upgrades it)." if older else ")."),
                fix="Re-run the audit with this version to regenerate the report." if older else "Open it with the tool version that wrote it (or newer), or re-run the audit.",
            )
        try:
            report = from_jsonable(raw)
        except (TypeError, KeyError, ValueError) as exc:
            raise ReportError(f"The report does not match schema {version}: {exc}.", fix="Re-run the audit to regenerate it.") from None
        if not isinstance(report, cls):
            raise ReportError("The JSON is not an AuditReport.", fix="Pass a report.json written by 'audits run'.")
        return report

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> AuditReport:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ReportError(f"The report is not valid JSON: {exc}.", fix="Pass an intact report.json.") from None
        if not isinstance(raw, dict):
            raise ReportError("The report JSON is not an object.", fix="Pass a report.json written by 'audits run'.")
        return cls.from_dict(raw)

    def save(self, path: str | Path) -> Path:
        return write_atomic(Path(path), self.to_json().encode())

    @classmethod
    def load(cls, path: str | Path, *, verify: bool = False) -> AuditReport:
        """Read a report.json; with ``verify``, refuse one whose content does not match its recorded sha256."""
        path = Path(path)
        if not path.is_file():
            raise ReportError(f"Report {path} does not exist.", fix="Pass the path of a report.json.")
        text = path.read_text()
        if verify:
            try:
                raw = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ReportError(f"The report is not valid JSON: {exc}.", fix="Pass an intact report.json.") from None
            if isinstance(raw, dict):
                verify_content(raw, source=str(path))
                return cls.from_dict(raw)
        return cls.from_json(text)


def _version_key(version: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in version.split("."))
    except ValueError:
        return (-1,)


def content_sha256(raw: dict) -> str:
    """sha256 of a report dict's canonical JSON (sorted keys, no spaces), leaving out ``content_sha256`` itself."""
    body = {k: v for k, v in raw.items() if k != "content_sha256"}
    # Through JSON once first, so the hash is the same before writing and after reading (int keys become strings).
    body = json.loads(json.dumps(body, allow_nan=False))
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def verify_content(raw: dict, *, source: str = "the report") -> bool:
    """Check a report dict against its recorded content hash.

    Returns
    -------
    bool
        True when it matches, False when the report records none (written before hashes were).

    Raises
    ------
    ReportError
        When the content no longer matches the recorded hash: the file was edited after it was written.
    """
    recorded = raw.get("content_sha256")
    if not recorded:
        return False
    if content_sha256(raw) != recorded:
        raise ReportError(
            f"{source} was changed after it was written: its content no longer matches its sha256 ({str(recorded)[:12]}...).",
            fix="Use the report as the audit wrote it (from its store or a backup), or re-run the audit; an edited report cannot be re-rendered.",
        )
    return True


def write_atomic(path: Path, payload: bytes) -> Path:
    """Write to a temporary file beside ``path``, then rename: a killed write leaves no partial file.

    The file and then its folder are fsynced, so after a power loss the new name points at the
    complete new content (a rename is durable only once the directory entry is on disk).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp makes the file private (0600); reports are meant to be shared.
        os.chmod(tmp, 0o644)
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
    return path
