"""Readers for each weights format, none of which unpickles arbitrary objects.

State dicts come from safetensors or from ``torch.load(weights_only=True)``; whole models
from TorchScript (``read_torchscript``) or ``torch.export`` (``read_exported_program``).
A file that is a Python pickle under another format's name is refused before anything reads
it, and a checkpoint that needs Python objects is refused naming the globals it needs.
Every reader returns its model or tensors on the CPU; the loader places them.
"""

from __future__ import annotations

import hashlib
import io
import pickletools
import re
import zipfile
from pathlib import Path
from typing import Literal

import torch

from audits.errors import ModelLoadError, UnsafeModelError
from models.archive_inspection import inspect_export_archive
from models.torchscript_ops import load_torchscript

PICKLE_FIX = (
    "Export the model without pickle: save its state_dict with safetensors "
    "(safetensors.torch.save_file(model.state_dict(), 'weights.safetensors')) and name its class in the "
    "card's 'architecture', or save it with torch.jit.save / torch.export.save."
)
# A refused checkpoint's pickle is scanned for the globals it names (for the message only);
# a state dict's pickle is small (tensor bytes live in other archive members), so this bounds
# the read without cutting a real one short.
_SCAN_LIMIT = 16 << 20
_TORCH_GLOBAL = re.compile(r"Unsupported global: GLOBAL (\S+)")


def sha256_file(path: Path) -> str:
    """The sha256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sniff(path: Path) -> Literal["zip", "pickle", "other"]:
    """What the file's first bytes say it is: a zip archive, a Python pickle, or something else."""
    with open(path, "rb") as fh:
        head = fh.read(8)
    if head[:2] == b"PK":
        return "zip"
    if head[:1] == b"\x80" or head[:1] in (b"(", b"]", b"}"):
        return "pickle"
    return "other"


def refuse_pickle(path: Path, fmt: str) -> None:
    """Raise ``UnsafeModelError``: ``path`` is a pickle although the card says ``fmt``."""
    raise UnsafeModelError(
        f"{path.name} is a Python pickle, but the card says format {fmt!r}. Pickles can run arbitrary code when loaded, so they are refused.",
        fix=PICKLE_FIX,
    )


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a safetensors file (a pickle under that name is refused unread)."""
    if sniff(path) == "pickle":
        refuse_pickle(path, "safetensors")
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelLoadError(
            f"{path.name} is not a readable safetensors file ({exc}).", fix="Re-export the weights with safetensors.torch.save_file."
        ) from None


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from ``torch.save``: only tensors and plain containers may be unpickled.

    Raises
    ------
    UnsafeModelError
        The checkpoint needs other Python objects; the message names the globals it needs
        (``builtins.exec``, ``mymodule.Thing``), read from its pickle without running it.
    ModelLoadError
        The file is not a checkpoint, or holds something other than a dict of tensors.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError or RuntimeError depending on the payload
        text = str(exc)
        if "weights_only" in text or "Unsupported global" in text or "Unpickler" in text:
            needed = unsafe_globals(path) or _TORCH_GLOBAL.findall(text)[:1]
            named = f"; it needs {', '.join(needed)}" if needed else ""
            raise UnsafeModelError(
                f"{path.name} needs arbitrary Python objects to load (it is not a plain tensor state_dict){named}. It is refused: "
                "unpickling those objects could run any code.",
                fix=PICKLE_FIX,
            ) from None
        raise ModelLoadError(f"{path.name} cannot be read as a PyTorch state_dict ({text.splitlines()[0]}).", fix=PICKLE_FIX) from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelLoadError(f"{path.name} does not hold a state_dict of tensors.", fix=PICKLE_FIX)
    return state


def read_torchscript(path: Path) -> torch.jit.ScriptModule:
    """A TorchScript module (``torch.jit.save``) on the CPU; a pickle under that name is refused unread."""
    _require_zip(path, "torchscript", "Save it with torch.jit.save.")
    try:
        return load_torchscript(path, torch.device("cpu"))  # checks its code before any of it runs
    except (RuntimeError, zipfile.BadZipFile) as exc:
        raise ModelLoadError(
            f"{path.name} is not a loadable TorchScript archive ({str(exc).splitlines()[0]}).",
            fix="Save it with torch.jit.save(torch.jit.script(model) or torch.jit.trace(model, example), path).",
        ) from None


def read_exported_program(path: Path) -> torch.export.ExportedProgram:
    """A ``torch.export`` program (``torch.export.save``); a pickle under that name is refused unread."""
    _require_zip(path, "torch_export", "Save it with torch.export.save.")
    inspect_export_archive(path)  # refuses pickled entries, native code and foreign graph targets unread
    try:
        return torch.export.load(str(path))
    except Exception as exc:  # torch.export raises several unrelated types on bad archives
        raise ModelLoadError(
            f"{path.name} is not a loadable torch.export archive ({str(exc).splitlines()[0]}).",
            fix="Save it with torch.export.save(torch.export.export(model, (example,)), path).",
        ) from None


def _require_zip(path: Path, fmt: str, fix: str) -> None:
    kind = sniff(path)
    if kind == "pickle":
        refuse_pickle(path, fmt)
    if kind != "zip":
        raise ModelLoadError(f"{path.name} is not a {fmt} archive.", fix=fix)


def unsafe_globals(path: Path, limit: int = 5) -> list[str]:
    """The Python globals a ``torch.save`` checkpoint names that ``weights_only`` loading refuses.

    Reads the checkpoint's pickle opcodes with ``pickletools`` (nothing is imported or
    called), as ``module.name`` (``builtins.exec``, ``mymodule.Thing``); globals torch allows
    (tensors, ``collections.OrderedDict``) are left out. Empty when none can be read.
    """
    try:
        data = _checkpoint_pickle(path)
    except (OSError, zipfile.BadZipFile, KeyError):
        return []
    allowed = _allowed_globals()
    found: list[str] = []
    for name in _pickle_globals(data):
        if name not in allowed and name not in found:
            found.append(name)
    return found[:limit]


def _checkpoint_pickle(path: Path) -> bytes:
    """The pickle bytes of a checkpoint: ``*/data.pkl`` of a zip archive, else the file's head."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            member = next((n for n in archive.namelist() if n.endswith("data.pkl")), None)
            if member is None:
                return b""
            with archive.open(member) as fh:
                return fh.read(_SCAN_LIMIT)
    with open(path, "rb") as fh:
        return fh.read(_SCAN_LIMIT)


def _pickle_globals(data: bytes) -> list[str]:
    """``module.name`` of every GLOBAL / STACK_GLOBAL in the (possibly several) pickles in ``data``."""
    names: list[str] = []
    stream = io.BytesIO(data)
    for _ in range(8):  # the legacy torch.save format is a few pickles in a row
        if stream.tell() >= len(data):
            break
        pushed: list[object] = []  # strings pushed, directly or from the memo (what STACK_GLOBAL pops)
        memo: dict[int, object] = {}
        try:
            for op, arg, _pos in pickletools.genops(stream):
                if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING", "STRING"):
                    pushed.append(arg)
                elif op.name in ("GET", "BINGET", "LONG_BINGET"):
                    pushed.append(memo.get(arg))
                elif op.name in ("PUT", "BINPUT", "LONG_BINPUT"):
                    memo[arg] = pushed[-1] if pushed else None
                elif op.name == "MEMOIZE":
                    memo[len(memo)] = pushed[-1] if pushed else None
                elif op.name == "GLOBAL":
                    module, _, name = str(arg).partition(" ")
                    names.append(f"{_py3_module(module)}.{name}")
                    pushed.append(None)
                elif op.name == "STACK_GLOBAL" and len(pushed) >= 2 and all(isinstance(v, str) for v in pushed[-2:]):
                    names.append(f"{_py3_module(str(pushed[-2]))}.{pushed[-1]}")
                    pushed.append(None)
                elif op.name not in ("FRAME", "PROTO", "STOP"):
                    pushed.append(None)
        except Exception:  # a truncated or hostile pickle: keep what was read (this is for the message only)
            break
    return names


def _py3_module(module: str) -> str:
    return {"__builtin__": "builtins", "copy_reg": "copyreg"}.get(module, module)


def _allowed_globals() -> set[str]:
    """Globals ``torch.load(weights_only=True)`` accepts, as ``module.name``."""
    allowed = {"collections.OrderedDict", "builtins.set", "builtins.frozenset", "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_parameter"}
    try:  # torch keeps the full list private; fall back to the common ones above when it moves
        from torch._weights_only_unpickler import _get_allowed_globals

        allowed.update(_get_allowed_globals())
    except (ImportError, AttributeError):
        pass
    for obj in torch.serialization.get_safe_globals():
        target = obj[0] if isinstance(obj, tuple) else obj
        allowed.add(f"{getattr(target, '__module__', '')}.{getattr(target, '__qualname__', '')}")
    return allowed
