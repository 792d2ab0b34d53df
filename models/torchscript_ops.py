"""Loading a TorchScript archive without running any of its code before it is checked.

``torch.jit.load`` compiles the archive's code and, for every object whose class defines
``__setstate__``, runs that method while loading; ``forward`` runs on the dry run. So:

1. before loading, the archive's code and pickles are read as bytes: any ``__setstate__`` in the
   code, and any TorchBind class (``torch.classes.*``: C++ objects such as process groups, NNAPI
   compilations or quantized packed weights, whose own ``__setstate__`` runs while loading), is refused;
2. the archive is compiled into a compilation unit of its own, and every function in it (every
   method of every module and class, whether ``forward`` calls it or not) is checked against the
   operator allowlist of :mod:`models.operator_allowlist`, blocks and subgraphs included;
3. only then is the module handed back (and the loader runs its dry forward pass).
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import torch

from audits.errors import ModelLoadError, UnsafeModelError
from models.archive_inspection import pickle_globals
from models.operator_allowlist import REFUSAL_FIX, operator_refusal

_LOAD_HOOK = re.compile(rb"__setstate__")
_TORCHBIND = re.compile(rb"torch\.classes\.")
_MAX_CODE_BYTES = 64 << 20  # TorchScript code of the largest real models is a few MB


def _names_torchbind(pickle_bytes: bytes) -> bool:
    """Whether a TorchScript pickle names a TorchBind class, or names classes in a way that cannot be read."""
    try:
        return any("torch.classes" in f"{module}.{name}" for module, name in pickle_globals(pickle_bytes))
    except ValueError:
        return True


def refuse_load_hooks(path: Path) -> None:
    """Refuse an archive whose code defines ``__setstate__`` or that holds TorchBind objects (both run inside ``torch.jit.load``).

    Raises
    ------
    UnsafeModelError
        Naming the code file; nothing from the archive has run.
    ModelLoadError
        When the file is not a zip archive or its code is unreasonably large.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            names = [info.filename for info in infos]
            if len(names) != len(set(names)):
                duplicate = next(n for n in names if names.count(n) > 1)
                raise UnsafeModelError(
                    f"{path.name} holds the entry {duplicate!r} twice; readers disagree on which copy counts, so the archive is refused.",
                    fix="Save the model again with torch.jit.save.",
                )
            total = 0
            for info in infos:
                if not info.filename.endswith((".py", ".pkl")):
                    continue
                total += info.file_size
                if total > _MAX_CODE_BYTES:
                    raise ModelLoadError(
                        f"{path.name} holds more than {_MAX_CODE_BYTES >> 20} MB of TorchScript code and pickles.",
                        fix="Save the model again with torch.jit.save.",
                    )
                with archive.open(info) as fh:
                    code = fh.read(_MAX_CODE_BYTES + 1)
                if _TORCHBIND.search(code) or (info.filename.endswith(".pkl") and _names_torchbind(code)):
                    raise UnsafeModelError(
                        f"{path.name} uses a TorchBind class (torch.classes.*) in {info.filename}: C++ objects outside the model's code, "
                        "some of which run while loading. The model is refused.",
                        fix="Export a float model without quantized packed parameters or other torch.classes objects.",
                    )
                if info.filename.endswith(".py") and _LOAD_HOOK.search(code):
                    raise UnsafeModelError(
                        f"{path.name} defines __setstate__ in {info.filename}: torch.jit.load would run it while loading, before any check. The model is refused.",
                        fix="Remove __setstate__ from the model's modules and classes (keep state in tensors and plain attributes) and save it again.",
                    )
    except zipfile.BadZipFile as exc:
        raise ModelLoadError(f"{path.name} is not a loadable TorchScript archive ({exc}).", fix="Save it with torch.jit.save.") from None


def _graph_kinds(graph: torch.Graph) -> list[str]:
    """Every node kind in ``graph``, descending into blocks (if/loop bodies) and subgraphs."""
    kinds: list[str] = []
    pending = [graph.nodes()]
    while pending:
        for node in pending.pop():
            kinds.append(node.kind())
            pending.extend(block.nodes() for block in node.blocks())
            if node.hasAttribute("Subgraph"):
                pending.append(node.g("Subgraph").nodes())
    return kinds


def check_compilation_unit(unit: torch._C.CompilationUnit, source: str) -> None:
    """Refuse the first function in ``unit`` that calls an operator outside the allowlist.

    Raises
    ------
    UnsafeModelError
        Naming the operator, the function that calls it and why it is refused.
    """
    for function in unit.get_functions():
        for kind in _graph_kinds(function.graph):
            reason = operator_refusal(kind)
            if reason is not None:
                raise UnsafeModelError(
                    f"{source} calls the operator {kind} in {function.qualified_name}, which is refused: {reason}. Nothing of the model was run.",
                    fix=REFUSAL_FIX,
                )


def load_torchscript(path: Path, device: torch.device) -> torch.jit.ScriptModule:
    """Load a TorchScript archive after checking its code; the model has not run when this returns.

    Parameters
    ----------
    path : Path
        The ``torch.jit.save`` archive.
    device : torch.device
        Where its tensors go (``map_location``).

    Raises
    ------
    UnsafeModelError
        When the archive has load-time code or calls a refused operator.
    RuntimeError, zipfile.BadZipFile
        From torch when the archive does not compile (the loader turns them into ModelLoadError).
    """
    refuse_load_hooks(path)
    unit = torch._C.CompilationUnit()
    # torch.jit.load does exactly this, with its own unit that would not be reachable afterwards.
    cpp_module = torch._C.import_ir_module(unit, str(path), device, {}, False)
    check_compilation_unit(unit, path.name)
    return torch.jit._recursive.wrap_cpp_module(cpp_module)
