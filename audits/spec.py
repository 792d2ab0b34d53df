"""The audit spec: which probes run, on how many samples, with which budgets and seed."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from audits.config_files import format_validation_errors, load_yaml_file
from audits.errors import SpecError
from audits.probes import default_probe_names, make_probe, registered_probes

if TYPE_CHECKING:
    from audits.data import AuditData
    from models.loader import ModelHandle


class ProbeSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    params: dict = Field(default_factory=dict)


class AuditSpec(BaseModel):
    """Parsed once at the boundary; unknown keys, probes and parameters are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = 0
    # Samples to explain (attribution probes) and show as examples; None = per-modality default (32 images:
    # enough per class for attribution_regions and attribution_disparity to compare; 32 tabular rows; 8 texts).
    samples: Annotated[int, Field(ge=1, le=10_000)] | None = None
    sample_selection: Literal["stratified", "random", "first"] = "stratified"
    # Cap on evaluation rows for the whole audit (a seeded random subset); None = all rows.
    max_rows: Annotated[int, Field(ge=1)] | None = None
    # None = the registry's defaults for the model's modality.
    probes: list[ProbeSpec] | None = None
    # Probe names to drop from the selection (handy with the defaults).
    exclude: list[str] = Field(default_factory=list)

    def n_samples(self, modality: str) -> int:
        return self.samples or {"image": 32, "tabular": 32}.get(modality, 8)

    def probe_specs(self, modality: str, model: ModelHandle | None = None, data: AuditData | None = None) -> list[ProbeSpec]:
        """The probes to run: the spec's list, or the defaults for ``modality`` that ``model`` and ``data`` support."""
        specs = self.probes if self.probes is not None else [ProbeSpec(name=n) for n in default_probe_names(modality, model, data)]
        return [p for p in specs if p.name not in self.exclude]

    def validate_probes(self) -> None:
        """Instantiate every named probe once so bad names and parameters fail before work starts."""
        known = registered_probes()
        for name in self.exclude:
            if name not in known:
                raise SpecError(f"exclude names unknown probe {name!r}.", fix=f"Choose from: {', '.join(sorted(known))}.")
        for p in self.probes or []:
            make_probe(p.name, p.params)


def parse_spec(raw: dict | None, *, source: str = "spec") -> AuditSpec:
    """Validate a spec mapping (unknown keys, probes and parameters are errors naming the field and the fix)."""
    try:
        spec = AuditSpec.model_validate(raw or {})
    except ValidationError as exc:
        raise SpecError(
            f"Audit spec {source} is invalid: {format_validation_errors(exc, raw, root='(spec)')}.",
            fix="Correct the named fields (see docs/spec.md).",
        ) from None
    spec.validate_probes()
    return spec


def load_spec(path: str | Path) -> AuditSpec:
    path = Path(path)
    raw = load_yaml_file(path, error=SpecError, what="spec file", missing_fix="Pass the path of a spec YAML file.")
    if raw is not None and not isinstance(raw, dict):
        raise SpecError(f"Spec file {path} must be a YAML mapping.", fix="See docs/spec.md.")
    return parse_spec(raw, source=str(path))
