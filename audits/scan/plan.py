"""Scan plans: which models are audited against which policy and spec, when, where results go and who is told.

A plan is YAML parsed once into typed objects (pydantic); every error names the field and
the fix. Paths in a plan resolve against the plan file's folder. ``resolve_targets`` turns
the plan into one :class:`ScanTarget` per model, with its card parsed, its spec and policy
validated, so bad input fails before any audit starts (and before anything is recorded).
"""

from __future__ import annotations

import glob as globlib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from audits.config_files import load_yaml_file
from audits.errors import AuditError
from audits.policy import Policy, load_policy, parse_policy
from audits.spec import AuditSpec, load_spec, parse_spec

PLAN_VERSION = 1
DEFAULT_MISFIRE_GRACE_S = 86_400
DEFAULT_LOCK_TTL_S = 6 * 3600
_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class PlanError(AuditError):
    """The scan plan is missing, malformed or names something that does not exist."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Schedule(_Strict):
    """When ``audits schedule`` runs the plan: a cron expression read in ``timezone``.

    Five fields (minute hour day month weekday) as in crontab, or six with a leading
    seconds field. ``misfire_grace_s``: a scheduler that was down catches up once when
    the last missed time is at most this old, else it waits for the next time.
    """

    cron: str = Field(description="crontab expression: 5 fields (minute hour day month weekday) or 6 with leading seconds")
    timezone: str = Field("UTC", description="IANA time zone the cron expression is read in, e.g. Europe/Berlin")
    misfire_grace_s: Annotated[int, Field(ge=1)] = Field(DEFAULT_MISFIRE_GRACE_S, description="latest lateness (s) at which a missed run is still caught up")
    lock_ttl_s: Annotated[int, Field(ge=10)] = Field(DEFAULT_LOCK_TTL_S, description="how long a crashed scheduler's plan lock blocks others (s)")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}; use an IANA name such as UTC or Europe/Berlin") from None
        return value

    @model_validator(mode="after")
    def _valid_cron(self) -> Schedule:
        cron_trigger(self.cron, self.timezone)
        return self


class Webhook(_Strict):
    """A URL that receives a JSON POST when a run fails its policy or regresses."""

    url: str = Field(description="http(s) URL the alert is POSTed to")
    timeout_s: Annotated[float, Field(gt=0, le=60)] = Field(5.0, description="seconds one attempt may take")
    retries: Annotated[int, Field(ge=0, le=5)] = Field(2, description="further attempts after a failed one")
    headers: dict[str, str] = Field(default_factory=dict, description="extra HTTP headers; ${NAME} in a value is read from the environment when sent")

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"webhook url {value!r} must start with http:// or https://")
        return value


class Notify(_Strict):
    """Where alerts go and when: on a failing verdict (or a warning with ``on_warn``) and on a regression."""

    webhooks: list[Webhook] = Field(default_factory=list)
    on_warn: bool = Field(False, description="also alert when the verdict is warn")
    run_url: str = Field(
        "http://localhost:8501/history?model={model}&run={run_id}", description="link to a run in alerts; {run_id}, {model} and {plan} are replaced"
    )


class ModelEntry(_Strict):
    """One model line of a plan: exactly one of ``zoo``, ``card`` or ``glob``, with optional spec and policy."""

    zoo: str | None = Field(None, description="name of a zoo model (audits models lists them)")
    card: str | None = Field(None, description="path of a model card YAML or of a folder holding card.yaml")
    glob: str | None = Field(None, description="glob of card files, e.g. cards/*/card.yaml")
    spec: str | dict | None = Field(None, description="audit spec: a YAML path or an inline mapping (default: the plan's)")
    policy: str | dict | None = Field(None, description="policy: a YAML path or an inline mapping (default: the plan's)")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, raw: Any) -> Any:
        if isinstance(raw, str):  # "adult-mlp" or "cards/x/card.yaml"
            return {"card": raw} if raw.endswith((".yaml", ".yml")) or "/" in raw else {"zoo": raw}
        return raw

    @model_validator(mode="after")
    def _one_source(self) -> ModelEntry:
        given = [k for k in ("zoo", "card", "glob") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(f"give exactly one of zoo, card or glob (got {', '.join(given) or 'none'})")
        return self


class ScanPlan(_Strict):
    """A scan plan (``plan_version: 1``)."""

    plan_version: int = Field(PLAN_VERSION, description="plan format version (1)")
    name: str = Field(pattern=_NAME_PATTERN, description="plan name: identifies its runs, lock and schedule in the store")
    store: str | None = Field(None, description="store URL (default: --store, then $AUDITS_STORE_URL, then SQLite under ./audit-store)")
    spec: str | dict | None = Field(None, description="audit spec for every model: a YAML path or an inline mapping")
    policy: str | dict | None = Field(None, description="policy for every model: a YAML path or an inline mapping (default: the shipped policy)")
    models: list[ModelEntry] = Field(min_length=1)
    schedule: Schedule | None = None
    notify: Notify = Field(default_factory=Notify)

    @field_validator("plan_version")
    @classmethod
    def _version(cls, value: int) -> int:
        if value != PLAN_VERSION:
            raise ValueError(f"plan_version {value} is not supported by this version of audits (it reads {PLAN_VERSION})")
        return value


@dataclass(frozen=True)
class ScanTarget:
    """One model of a plan, resolved: its card file, spec and policy (all validated)."""

    model_name: str
    card_path: Path
    spec: AuditSpec
    policy: Policy

    def to_dict(self) -> dict:
        """Plain data for a remote worker (Ray): the worker parses it again."""
        return {
            "model_name": self.model_name,
            "card_path": str(self.card_path),
            "spec": self.spec.model_dump(mode="json"),
            "policy": self.policy.model_dump(mode="json"),
        }

    @classmethod
    def from_dict(cls, raw: dict) -> ScanTarget:
        """The target :meth:`to_dict` described, its spec and policy validated again."""
        return cls(
            model_name=raw["model_name"],
            card_path=Path(raw["card_path"]),
            spec=AuditSpec.model_validate(raw["spec"]),
            policy=Policy.model_validate(raw["policy"]),
        )


@dataclass(frozen=True)
class LoadedPlan:
    """A validated plan and the folder its relative paths resolve against."""

    plan: ScanPlan
    base_dir: Path
    source: str

    @property
    def name(self) -> str:
        """The plan's name."""
        return self.plan.name


def cron_trigger(expression: str, timezone: str = "UTC"):
    """An APScheduler ``CronTrigger`` for 5-field crontab syntax or 6 fields with leading seconds."""
    from apscheduler.triggers.cron import CronTrigger

    fields = expression.split()
    if len(fields) not in (5, 6):
        raise ValueError(f"cron {expression!r} has {len(fields)} fields; write 5 (minute hour day month weekday) or 6 (seconds first), e.g. '0 2 * * *'")
    names = (["second"] if len(fields) == 6 else []) + ["minute", "hour", "day", "month", "day_of_week"]
    try:
        return CronTrigger(**dict(zip(names, fields, strict=True)), timezone=ZoneInfo(timezone))
    except ValueError as exc:
        raise ValueError(f"cron {expression!r} is invalid ({exc}); e.g. '0 2 * * *' is 02:00 every day") from None


def _problems(exc: ValidationError) -> str:
    out = []
    for e in exc.errors()[:6]:
        where = ".".join(str(p) for p in e["loc"]) or "(plan)"
        msg = e["msg"].removeprefix("Value error, ")
        out.append(f"{where}: {msg}")
    return "; ".join(out)


def parse_plan(raw: Any, *, source: str = "plan", base_dir: Path | None = None) -> LoadedPlan:
    """Validate a plan mapping; errors name the field and the fix."""
    if not isinstance(raw, dict):
        raise PlanError(f"Scan plan {source} must be a YAML mapping with 'name' and 'models'.", fix="See docs/scans.md and examples/scan.yaml.")
    try:
        plan = ScanPlan.model_validate(raw)
    except ValidationError as exc:
        raise PlanError(
            f"Scan plan {source} is invalid: {_problems(exc)}.", fix="Correct the named fields (docs/scans.md; schema: schemas/scan_plan.schema.json)."
        ) from None
    return LoadedPlan(plan=plan, base_dir=(base_dir or Path.cwd()).resolve(), source=source)


def load_plan(path: str | Path) -> LoadedPlan:
    """Read and validate the plan in ``path``."""
    path = Path(path)
    raw = load_yaml_file(path, error=PlanError, what="scan plan", missing_fix="Pass the path of a scan plan YAML (see examples/scan.yaml).")
    return parse_plan(raw, source=str(path), base_dir=path.resolve().parent)


def _spec(value: str | dict | None, base: Path, where: str) -> AuditSpec:
    if value is None:
        return AuditSpec()
    try:
        return parse_spec(value, source=f"{where} (inline)") if isinstance(value, dict) else load_spec(base / value)
    except AuditError as exc:
        raise PlanError(f"{where}: {exc.problem}", fix=exc.fix) from None


def _policy(value: str | dict | None, base: Path, where: str) -> Policy:
    try:
        if value is None:
            return load_policy(None)
        return parse_policy(value, source=f"{where} (inline)") if isinstance(value, dict) else load_policy(base / value)
    except AuditError as exc:
        raise PlanError(f"{where}: {exc.problem}", fix=exc.fix) from None


def _cards(entry: ModelEntry, base: Path, where: str) -> list[Path]:
    from models.registry import ZOO_DIR, zoo_names

    if entry.zoo is not None:
        names = zoo_names()
        if entry.zoo not in names:
            raise PlanError(
                f"{where}.zoo: unknown model {entry.zoo!r}.",
                fix=f"Use one of the zoo models ({', '.join(names) or 'none built: run python -m models.build_zoo'}), or 'card:' with the path of a card YAML.",
            )
        return [ZOO_DIR / entry.zoo / "card.yaml"]
    if entry.card is not None:
        path = base / entry.card
        path = path / "card.yaml" if path.is_dir() else path
        if not path.is_file():
            raise PlanError(
                f"{where}.card: {path} does not exist.", fix="Give the path of a model card YAML (relative to the plan file) or of a folder holding card.yaml."
            )
        return [path]
    pattern = str(base / entry.glob) if not Path(entry.glob).is_absolute() else entry.glob
    found = sorted(Path(p) for p in globlib.glob(pattern, recursive=True) if Path(p).is_file())
    if not found:
        raise PlanError(
            f"{where}.glob: {entry.glob!r} matches no card file under {base}.", fix="Correct the pattern (relative to the plan file), e.g. cards/*/card.yaml."
        )
    return found


def resolve_targets(loaded: LoadedPlan) -> list[ScanTarget]:
    """One validated target per model of the plan, in plan order; duplicates are an error."""
    from models.card import load_card

    plan, base = loaded.plan, loaded.base_dir
    default_spec = _spec(plan.spec, base, "spec") if plan.spec is not None else None
    default_policy = _policy(plan.policy, base, "policy")
    targets: list[ScanTarget] = []
    seen: dict[str, str] = {}
    for i, entry in enumerate(plan.models):
        where = f"models[{i}]"
        spec = _spec(entry.spec, base, f"{where}.spec") if entry.spec is not None else (default_spec or AuditSpec())
        policy = _policy(entry.policy, base, f"{where}.policy") if entry.policy is not None else default_policy
        for card_path in _cards(entry, base, where):
            try:
                card = load_card(card_path)
            except AuditError as exc:
                raise PlanError(f"{where}: card {card_path}: {exc.problem}", fix=exc.fix) from None
            if card.name in seen:
                raise PlanError(
                    f"{where}: model {card.name!r} is already in the plan ({seen[card.name]}).", fix="List each model once; its runs are keyed by its name."
                )
            seen[card.name] = where
            targets.append(ScanTarget(model_name=card.name, card_path=card_path.resolve(), spec=spec, policy=policy))
    return targets
