"""An audit's output folder replaced as a whole: a killed run never mixes a new report with old renderings.

``audits run --out DIR`` writes ``report.json``, ``report.html``, ``report.pdf`` and figures. Written
one by one into ``DIR``, a run killed half-way left the new ``report.json`` beside the previous
audit's ``report.html``/``report.pdf``. Here every output is written into a staging folder beside
``DIR`` first and then published in one step:

- ``DIR`` absent, or holding only an earlier audit's outputs: the staging folder and ``DIR`` are
  exchanged atomically (``renameat2(RENAME_EXCHANGE)`` on Linux; elsewhere two renames, with a window
  of two system calls in which ``DIR`` is absent but nothing is mixed), so ``DIR`` is all-old or all-new;
- ``DIR`` holding other files too (say ``--out .``), or a symbolic link: other files are left alone; the earlier audit's outputs
  are removed first and the new ones moved in after, so old and new never sit side by side.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

# What an audit writes into its folder (other helpers' outputs belong here too when they add some).
AUDIT_OUTPUTS = frozenset({"report.json", "report.html", "report.pdf", "attributions"})
_STAGING = ".incoming"
_RETIRED = ".retired"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _leftovers(out: Path) -> Iterator[Path]:
    """Staging and retired folders of ``out`` left by runs that were killed (their process is gone)."""
    for path in out.parent.glob(f".{out.name}.*-*"):
        kind, _, rest = path.name[len(out.name) + 2 :].partition("-")
        pid = rest.split("-")[0]
        if f".{kind}" in (_STAGING, _RETIRED) and pid.isdigit() and not _pid_alive(int(pid)):
            yield path


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths atomically (Linux ``renameat2``); False where the system cannot."""
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: the file system or kernel lacks it
        return False
    raise OSError(err, os.strerror(err), str(a))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _publish(stage: Path, out: Path) -> None:
    if not out.exists():
        stage.rename(out)
    elif out.is_dir() and not out.is_symlink() and {p.name for p in out.iterdir()} <= AUDIT_OUTPUTS:
        if _exchange(stage, out):
            shutil.rmtree(stage)  # now holds the earlier audit
        else:
            retired = out.parent / f".{out.name}{_RETIRED}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            out.rename(retired)
            stage.rename(out)
            shutil.rmtree(retired)
    else:
        if not out.is_dir():
            raise NotADirectoryError(f"{out} is not a folder")
        for name in AUDIT_OUTPUTS:  # the earlier set goes first: never old beside new
            old = out / name
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old)
            else:
                old.unlink(missing_ok=True)
        for item in stage.iterdir():
            shutil.move(item, out / item.name)  # a move, not a rename: a symlinked OUT may lie on another file system
        stage.rmdir()
    _fsync_dir(out.parent)


@contextlib.contextmanager
def replaced_folder(out: Path) -> Iterator[Path]:
    """A staging folder to write an audit's outputs into, published as ``out`` when the block succeeds.

    On an error (or a kill) ``out`` keeps the earlier outputs; the staging folder is removed, or, after
    a kill, by the next run into the same ``out``.
    """
    out = Path(out).absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    for stale in _leftovers(out):
        shutil.rmtree(stale, ignore_errors=True)
    stage = out.parent / f".{out.name}{_STAGING}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    stage.mkdir()
    try:
        yield stage
        _publish(stage, out)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
