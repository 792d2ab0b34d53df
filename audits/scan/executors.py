"""Where the audits of a plan run: in this process (``local``) or as Ray tasks (``ray``).

Executors only compute: each yields one :class:`AuditOutcome` per target as it finishes,
and the driver (``audits.scan.runner``) writes every result to the store. An audit that
raises becomes an outcome with its error; it never stops the other models.
"""

from __future__ import annotations

import traceback
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Literal

from audits.errors import AuditError
from audits.scan import outcome as clock
from audits.scan.outcome import AuditOutcome
from audits.scan.plan import ScanTarget

ExecutorName = Literal["local", "ray"]


def _now() -> datetime:
    return clock.utcnow()


def audit_target(target: ScanTarget, *, device: str | None = None):
    """Load the target's model and data, run its spec, check its policy: the AuditReport."""
    from audits.data import load_data
    from audits.engine import run_audit
    from audits.policy import apply_policy
    from models.card import load_card
    from models.loader import load_model

    card = load_card(target.card_path)
    handle = load_model(card, device=device)
    data = load_data(card, None, seed=target.spec.seed)
    return apply_policy(run_audit(handle, data, target.spec), target.policy)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, AuditError):
        return f"{type(exc).__name__}: {exc.problem}" + (f" Fix: {exc.fix}" if exc.fix else "")
    frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    where = f" (at {frame.filename.rsplit('/', 1)[-1]}:{frame.lineno})" if frame else ""
    return f"{type(exc).__name__}: {exc}{where}"


def run_target(target: ScanTarget, *, device: str | None = None) -> AuditOutcome:
    """Audit one target; any exception becomes the outcome's error (the run is then recorded as crashed)."""
    started = _now()
    try:
        report = audit_target(target, device=device)
    except Exception as exc:  # noqa: BLE001 (one model's crash must not stop the plan)
        return AuditOutcome(model_name=target.model_name, started_at=started, ended_at=_now(), error=_describe(exc))
    return AuditOutcome(model_name=target.model_name, started_at=started, ended_at=_now(), report=report)


class LocalExecutor:
    """Audits the targets one after another in this process (the default)."""

    name = "local"

    def __init__(self, *, device: str | None = None) -> None:
        self.device = device

    def map(self, targets: Sequence[ScanTarget]) -> Iterator[AuditOutcome]:
        for target in targets:
            yield run_target(target, device=self.device)


def _ray_task(raw_target: dict) -> dict:
    """Runs on a Ray worker: plain data in and out (the report as its JSON text)."""
    target = ScanTarget.from_dict(raw_target)
    outcome = run_target(target)
    return {
        "model_name": outcome.model_name,
        "started_at": outcome.started_at.isoformat(),
        "ended_at": outcome.ended_at.isoformat(),
        "report": outcome.report.to_json() if outcome.report is not None else None,
        "error": outcome.error,
    }


class RayExecutor:
    """Audits the targets as Ray tasks on a cluster (``address``) or a local Ray; a GPU per task when the cluster has GPUs.

    Uses the Ray runtime already initialised in this process when there is one
    (``ray.init(num_cpus=2)`` in a test), else connects to ``address`` (``auto``: the
    cluster this machine belongs to; None: start a local Ray).
    """

    name = "ray"

    def __init__(self, *, address: str | None = None, num_cpus_per_task: float = 1.0) -> None:
        self.address = address
        self.num_cpus_per_task = num_cpus_per_task

    def _connect(self):
        try:
            import ray
        except ImportError:
            raise AuditError(
                "The ray executor needs Ray, which is not installed.",
                fix="Install it with: pip install 'audits[ray]' (or pip install ray), or use --executor local.",
            ) from None
        if not ray.is_initialized():
            try:
                ray.init(address=self.address, include_dashboard=False, log_to_driver=False)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise AuditError(
                    f"Cannot connect to the Ray cluster at {self.address or 'a new local Ray'}: {exc}",
                    fix="Start the cluster (ray start --head) or pass --address of a running one.",
                ) from None
        return ray

    def map(self, targets: Sequence[ScanTarget]) -> Iterator[AuditOutcome]:
        from audits.report import AuditReport

        ray = self._connect()
        gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
        task = ray.remote(num_cpus=self.num_cpus_per_task, num_gpus=gpus, max_retries=0)(_ray_task)
        pending = {task.remote(t.to_dict()): (t, _now()) for t in targets}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            ref = done[0]
            target, submitted = pending.pop(ref)
            try:
                raw = ray.get(ref)
            except Exception as exc:  # noqa: BLE001 (a worker that died: that model's run crashed, not the plan)
                yield AuditOutcome(model_name=target.model_name, started_at=submitted, ended_at=_now(), error=f"Ray task failed: {_describe(exc)}")
                continue
            report = AuditReport.from_json(raw["report"]) if raw["report"] is not None else None
            yield AuditOutcome(
                model_name=raw["model_name"],
                started_at=datetime.fromisoformat(raw["started_at"]),
                ended_at=datetime.fromisoformat(raw["ended_at"]),
                report=report,
                error=raw["error"],
            )


def make_executor(name: ExecutorName = "local", *, address: str | None = None, device: str | None = None) -> LocalExecutor | RayExecutor:
    """The executor called ``name``."""
    if name == "local":
        return LocalExecutor(device=device)
    if name == "ray":
        return RayExecutor(address=address)
    raise AuditError(f"Unknown executor {name!r}.", fix="Use --executor local or --executor ray.")
