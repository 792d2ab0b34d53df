"""Validating an uploaded model in a separate, confined process.

The checks in :mod:`models.archive_inspection` and :mod:`models.torchscript_ops` refuse what they
know runs code; this is the second wall for whatever they miss. An upload's card is loaded (weights,
dry forward pass, evaluation data) by ``python -m models.sandbox CARD`` in a child process:

- with an address-space limit (``RLIMIT_AS``), a CPU-time limit, a file-size limit and a wall-clock
  timeout, so a model cannot exhaust the server's memory or hang the upload;
- where Debian's ``bubblewrap`` (``bwrap``) is installed and allowed to create namespaces, inside it:
  the whole system read-only, a private size-capped ``/tmp``, no network, its own process and IPC
  namespaces, no capabilities, and killed with its parent;
- on the CPU (the dry run needs no GPU, and CUDA cannot run under an address-space limit).

The child reports one line of JSON; the parent raises the same error the CLI would have raised, or
a clear one for a timeout or the memory limit. ``$AUDITS_SANDBOX`` = ``auto`` (default: bwrap when it
works), ``bwrap`` (required) or ``rlimits`` (no bwrap, limits only).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from audits import errors
from audits.errors import AuditError, ModelLoadError

SANDBOX_ENV = "AUDITS_SANDBOX"
MEMORY_ENV = "AUDITS_UPLOAD_MEMORY_MB"
TIMEOUT_ENV = "AUDITS_UPLOAD_TIMEOUT_S"
_RESULT_PREFIX = "audits-sandbox-result:"
_PROJECT_ROOT = Path(__file__).resolve().parents[1]
_ERRORS = {cls.__name__: cls for cls in (errors.CardError, errors.ModelLoadError, errors.UnsafeModelError, errors.DataError, errors.AuditError)}


@dataclass(frozen=True)
class SandboxLimits:
    """Resource limits of one validation.

    Parameters
    ----------
    memory_mb : int
        Address space of the child process (``RLIMIT_AS``), in MiB; ``$AUDITS_UPLOAD_MEMORY_MB``.
    timeout_s : float
        Wall-clock limit; the child's CPU-time limit is the same. ``$AUDITS_UPLOAD_TIMEOUT_S``.
    tmp_mb : int
        Largest file the child may write, and the size of its private ``/tmp`` under bwrap.
    """

    memory_mb: int = 4096
    timeout_s: float = 300.0
    tmp_mb: int = 64

    @classmethod
    def from_env(cls) -> SandboxLimits:
        """The defaults, overridden by ``$AUDITS_UPLOAD_MEMORY_MB`` and ``$AUDITS_UPLOAD_TIMEOUT_S``."""
        try:
            return cls(memory_mb=int(os.environ.get(MEMORY_ENV, cls.memory_mb)), timeout_s=float(os.environ.get(TIMEOUT_ENV, cls.timeout_s)))
        except ValueError:
            raise AuditError(f"${MEMORY_ENV} and ${TIMEOUT_ENV} must be numbers.", fix="Set them to whole MiB and seconds, or unset them.") from None


@dataclass(frozen=True)
class SandboxRun:
    """What a confined command did: exit status (negative: killed by that signal), output, timeout."""

    returncode: int
    stdout: str
    stderr: str
    timed_out: bool
    confined: bool  # whether bwrap ran it


@lru_cache(maxsize=1)
def bwrap_available() -> bool:
    """Whether ``bwrap`` is installed and may create the namespaces the sandbox needs here."""
    binary = shutil.which("bwrap")
    if binary is None:
        return False
    probe = subprocess.run([binary, *_bwrap_args(64), "true"], capture_output=True, timeout=30, check=False)
    return probe.returncode == 0


def _bwrap_args(tmp_mb: int) -> list[str]:
    # Everything read-only; fresh /dev, /proc and a size-capped /tmp; every namespace unshared
    # (network included); no capabilities even as root; dies with the server.
    return [
        "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--size", str(tmp_mb << 20), "--tmpfs", "/tmp",
        "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL", "--chdir", "/tmp",
    ]  # fmt: skip


# Sets the limits, then becomes the command (bwrap, or the child itself): everything under it
# inherits them. A launcher rather than preexec_fn, which may deadlock in a threaded server.
_LAUNCHER = """
import os, resource, sys
memory, cpu, size = (int(v) for v in sys.argv[1:4])
resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
os.execv(sys.argv[4], sys.argv[4:])
"""


def _limited(command: list[str], limits: SandboxLimits) -> list[str]:
    numbers = (limits.memory_mb << 20, int(limits.timeout_s) + 1, limits.tmp_mb << 20)
    return [sys.executable, "-c", _LAUNCHER, *(str(n) for n in numbers), *command]


def _child_env() -> dict[str, str]:
    keep = {k: os.environ[k] for k in ("PATH", "LANG", "LC_ALL") if k in os.environ}
    path = os.pathsep.join(p for p in (str(_PROJECT_ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {
        **keep, "PYTHONPATH": path, "HOME": "/tmp", "TMPDIR": "/tmp", "MPLCONFIGDIR": "/tmp", "PYTHONDONTWRITEBYTECODE": "1",
        "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": "",
    }  # fmt: skip


def run_confined(command: list[str], limits: SandboxLimits | None = None, *, readable: Sequence[Path] = ()) -> SandboxRun:
    """Run ``command`` under the limits, inside bwrap when the mode allows it.

    ``readable`` folders are bound read-only at their own path over the private ``/tmp`` (the
    rest of the system is read-only already).

    Raises
    ------
    AuditError
        When ``$AUDITS_SANDBOX=bwrap`` but bwrap cannot run here, or the mode is unknown.
    """
    limits = limits or SandboxLimits.from_env()
    mode = os.environ.get(SANDBOX_ENV, "auto")
    if mode not in ("auto", "bwrap", "rlimits"):
        raise AuditError(f"${SANDBOX_ENV}={mode!r} is not a sandbox mode.", fix="Use auto, bwrap or rlimits.")
    confined = mode != "rlimits" and bwrap_available()
    if mode == "bwrap" and not confined:
        raise AuditError(
            "Uploads must be validated inside bubblewrap ($AUDITS_SANDBOX=bwrap), but bwrap is not installed or may not create namespaces here.",
            fix="Install it (apt-get install bubblewrap) and allow unprivileged user namespaces, or set AUDITS_SANDBOX=auto.",
        )
    binds = [arg for folder in readable for arg in ("--ro-bind", str(Path(folder).resolve()), str(Path(folder).resolve()))]
    argv = [shutil.which("bwrap") or "bwrap", *_bwrap_args(limits.tmp_mb), *binds, *command] if confined else command
    proc = subprocess.Popen(
        _limited(argv, limits), stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=_child_env(), cwd="/tmp",
        start_new_session=True, text=True,
    )  # fmt: skip
    try:
        stdout, stderr = proc.communicate(timeout=limits.timeout_s)
        timed_out = False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the child's own session: everything it started
        stdout, stderr = proc.communicate()
        timed_out = True
    return SandboxRun(proc.returncode, stdout, stderr, timed_out, confined)


def validate_in_sandbox(card_path: Path, *, limits: SandboxLimits | None = None) -> None:
    """Load the card's model (with its dry forward pass) and evaluation data in a confined child process.

    Parameters
    ----------
    card_path : Path
        The staged card; its weights and data beside it.
    limits : SandboxLimits or None
        None: :meth:`SandboxLimits.from_env`.

    Raises
    ------
    CardError, ModelLoadError, UnsafeModelError, DataError
        As loading would raise them in the server, with the same problem and fix.
    ModelLoadError
        When the child runs out of time or memory, or dies.
    """
    limits = limits or SandboxLimits.from_env()
    card_path = Path(card_path).resolve()
    run = run_confined([sys.executable, "-m", "models.sandbox", str(card_path)], limits, readable=[card_path.parent])
    if run.timed_out:
        raise ModelLoadError(
            f"Validating the upload took longer than {limits.timeout_s:g} s (loading the model, one dry forward pass and reading the data); it was stopped.",
            fix=f"Upload a model whose forward pass on two rows finishes in seconds, or raise ${TIMEOUT_ENV} on the server.",
        )
    for line in reversed(run.stdout.splitlines()):
        if line.startswith(_RESULT_PREFIX):
            result = json.loads(line[len(_RESULT_PREFIX) :])
            if result.get("ok"):
                return
            raise _ERRORS.get(result.get("error"), AuditError)(str(result.get("problem")), fix=str(result.get("fix") or ""))
    if run.returncode in (-signal.SIGXCPU, -signal.SIGKILL):
        raise ModelLoadError(
            f"Validating the upload used more than its {limits.timeout_s:g} s of CPU time and was stopped.",
            fix=f"Upload a faster model, or raise ${TIMEOUT_ENV}.",
        )
    last = (run.stderr.strip().splitlines() or ["no output"])[-1]
    raise ModelLoadError(
        f"Validating the upload ended without a result (exit status {run.returncode}: {last[:300]}).", fix="Check the model file; it may crash torch."
    )


def _memory_error(exc: BaseException | None) -> bool:
    """Whether ``exc``, or an error it was raised from (the loader rewords dry-run failures), is an allocation failure."""
    seen = 0
    while exc is not None and seen < 10:
        text = str(exc)
        if isinstance(exc, MemoryError) or "allocate memory" in text or "std::bad_alloc" in text:
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def _main(argv: list[str]) -> int:
    """The child: load the card's model and data, print one result line. Never raises."""

    def report(**result: object) -> int:
        print(_RESULT_PREFIX + json.dumps(result), flush=True)
        return 0

    limit_mb = resource.getrlimit(resource.RLIMIT_AS)[0] >> 20
    try:
        from audits.data import load_data
        from models.card import load_card
        from models.loader import load_model

        card = load_card(argv[0])
        load_model(card, device="cpu")
        load_data(card)
    except BaseException as exc:  # everything goes back to the parent as one line
        if _memory_error(exc):
            return report(
                error="ModelLoadError",
                problem=f"Validating the upload needed more than its memory limit of {limit_mb} MiB ({str(exc).splitlines()[0][:200]}).",
                fix=f"Upload a smaller model or data, or raise ${MEMORY_ENV} on the server.",
            )
        if isinstance(exc, AuditError):
            return report(error=type(exc).__name__, problem=exc.problem, fix=exc.fix)
        first = (str(exc).splitlines() or [""])[0][:300]
        return report(
            error="ModelLoadError", problem=f"Loading the upload failed with {type(exc).__name__}: {first}", fix="Check that the model loads with the CLI."
        )
    return report(ok=True)


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
