"""Inspecting a ``torch.export`` archive (``.pt2``) before ``torch.export.load`` touches it.

``torch.export.load`` unpickles with the full unpickler (so runs arbitrary code) whatever an
archive asks it to: a weight or constant marked ``use_pickle`` in the weights/constants config,
constants stored as ``custom_obj_*``/``opaque_obj_*``, legacy ``<model>.pt`` weight files and the
pre-2.8 layout; it loads compiled native code from ``data/aotinductor/``; and it resolves any graph
node target named ``torch.*``/``_operator.*``/``math.*`` by attribute lookup. The layout torch
2.13's ``torch.export.save`` writes is::

    <root>/archive_format, archive_version, byteorder, .data/version, .data/serialization_id
    <root>/models/<model>.json                          the program (graph, signature)
    <root>/data/weights/<model>_weights_config.json     fqn -> {path_name, use_pickle, tensor_meta}
    <root>/data/weights/weight_<n>                      raw tensor bytes
    <root>/data/constants/<model>_constants_config.json
    <root>/data/constants/tensor_<n>                    raw tensor bytes
    <root>/data/sample_inputs/<model>.pt                torch.save of the example inputs
    <root>/extra/<name>                                 text

:func:`inspect_export_archive` accepts exactly that: any other entry, any pickled weight or
constant, any entry whose content is a pickle stream (or a ``torch.save`` zip holding one), and any
graph target outside :mod:`models.operator_allowlist` is refused, naming it. The one pickle torch
writes itself, the sample inputs, is read opcode by opcode (never executed) and accepted only when
the only callables it names are torch's tensor-rebuilding functions.
"""

from __future__ import annotations

import io
import json
import pickletools
import re
import zipfile
import zlib
from pathlib import Path
from typing import IO

from audits.errors import ModelLoadError, UnsafeModelError
from models.operator_allowlist import REFUSAL_FIX, export_target_refusal

_FIX = (
    "Save the program with torch.export.save(torch.export.export(model, (example,)), 'model.pt2') from plain tensors "
    "(no tensor subclasses, custom objects or AOTInductor packages), or save the state_dict as safetensors and name its class "
    "in the card's 'architecture'."
)
_MAX_JSON_BYTES = 64 << 20
_MAX_ENTRIES = 100_000
_FIXED_ENTRIES = frozenset({"archive_format", "archive_version", "byteorder", ".data/version", ".data/serialization_id"})
_ENTRY = re.compile(
    r"^(models/(?P<model>[A-Za-z0-9_]+)\.json"
    r"|data/weights/(?:[A-Za-z0-9_]+_weights_config\.json|weight_\d+)"
    r"|data/constants/(?:[A-Za-z0-9_]+_constants_config\.json|tensor_\d+)"
    r"|data/sample_inputs/[A-Za-z0-9_]+\.pt"
    r"|extra/[^/]+)$"
)
_PAYLOAD_NAME = {"weights": re.compile(r"^weight_\d+$"), "constants": re.compile(r"^tensor_\d+$")}
# The callables a torch.save of plain tensors names (torch._utils rebuilders, storages, OrderedDict).
_SAFE_GLOBALS = frozenset(
    {("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_parameter"), ("collections", "OrderedDict"), ("torch", "device"), ("torch", "Size")}
)
_SAFE_STORAGE = re.compile(r"^[A-Za-z]*Storage$")
_STRING_PUSH = frozenset({"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING", "STRING"})
_NO_STACK_EFFECT = frozenset({"MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT", "FRAME"})
_PICKLE_HEAD = re.compile(rb"^\x80[\x00-\x05]")


def _refuse(path: Path, what: str, fix: str = _FIX) -> UnsafeModelError:
    return UnsafeModelError(f"{path.name}: {what} torch.export.load would run code for it, so the archive is refused before loading.", fix=fix)


def _is_pickle(stream: IO[bytes], size: int) -> bool:
    """Whether ``stream`` (``size`` bytes) is a pickle, read opcode by opcode without executing it.

    A pickle is a run of valid opcodes ending in STOP that either opens with the PROTO opcode (what
    protocols 2-5 write) or ends exactly at the end of the entry (protocols 0-1). Raw tensor bytes
    start with a STOP byte one time in 256, so a bare STOP does not count.
    """
    count = 0
    proto = False
    try:
        for opcode, _arg, pos in pickletools.genops(stream):
            count += 1
            proto = proto or (count == 1 and opcode.name == "PROTO")
            if opcode.name == "STOP":
                return (proto and count > 1) or (count > 1 and pos == size - 1)
    except (ValueError, EOFError, UnicodeDecodeError, OverflowError):
        return False
    return False


def pickle_globals(data: bytes) -> list[tuple[str, str]]:
    """The ``(module, name)`` of every callable or class a pickle names, read opcode by opcode without executing it.

    Raises
    ------
    ValueError
        When the pickle is malformed, or names a callable in a way that cannot be read statically
        (``STACK_GLOBAL`` on computed strings, ``OBJ``, the extension registry).
    """
    names: list[tuple[str, str]] = []
    recent: list[tuple[str, object]] = []
    for opcode, arg, _pos in pickletools.genops(data):
        if opcode.name in ("GLOBAL", "INST"):
            module, _, name = str(arg).partition(" ")
            names.append((module, name))
        elif opcode.name == "STACK_GLOBAL":
            pushes = [r for r in recent if r[0] not in _NO_STACK_EFFECT][-2:]
            if len(pushes) < 2 or any(kind not in _STRING_PUSH for kind, _ in pushes):
                raise ValueError("it builds the name of a callable at run time")
            names.append((str(pushes[0][1]), str(pushes[1][1])))
        elif opcode.name in ("OBJ", "EXT1", "EXT2", "EXT4"):
            raise ValueError(f"it uses the {opcode.name} opcode")
        recent = [*recent[-7:], (opcode.name, arg)]
    return names


def _check_tensor_pickle(data: bytes) -> None:
    for module, name in pickle_globals(data):
        if (module, name) not in _SAFE_GLOBALS and not (module == "torch" and _SAFE_STORAGE.match(name)):
            raise ValueError(f"it names {module}.{name}")


def _check_sample_inputs(path: Path, entry: str, content: bytes) -> None:
    """The example inputs torch.export.save writes: a torch.save zip whose pickle only rebuilds tensors."""
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as inner:
            pickles = [n for n in inner.namelist() if n.endswith(".pkl")]
            if len(pickles) != 1 or not pickles[0].endswith("/data.pkl"):
                raise _refuse(path, f"its sample inputs {entry} hold {len(pickles)} pickles where torch.save writes one data.pkl.")
            _check_tensor_pickle(inner.read(pickles[0]))
    except zipfile.BadZipFile:
        raise _refuse(path, f"its sample inputs {entry} are a bare pickle, not what torch.export.save writes.") from None
    except ValueError as exc:
        raise _refuse(path, f"the pickle in its sample inputs {entry} is not plain tensors: {exc}.") from None


def _read_json(archive: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path, entry: str) -> object:
    with archive.open(info) as fh:
        raw = fh.read(_MAX_JSON_BYTES + 1)
    if len(raw) > _MAX_JSON_BYTES:
        raise ModelLoadError(f"{path.name}: {entry} is larger than {_MAX_JSON_BYTES >> 20} MB.", fix=_FIX)
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"{path.name}: {entry} is not valid JSON ({exc}).", fix=_FIX) from None


def _check_payload_config(config: object, kind: str, path: Path, entry: str) -> None:
    items = config.get("config") if isinstance(config, dict) else None
    if not isinstance(items, dict):
        raise ModelLoadError(f"{path.name}: {entry} has no 'config' mapping.", fix=_FIX)
    for fqn, meta in items.items():
        if not isinstance(meta, dict):
            raise ModelLoadError(f"{path.name}: {entry} describes {fqn!r} with {meta!r}.", fix=_FIX)
        where = f"data/{kind}/{meta.get('path_name')}"
        if meta.get("use_pickle"):
            raise _refuse(path, f"its {kind} config {entry} marks {fqn!r} ({where}) as pickled.")
        if not _PAYLOAD_NAME[kind].match(str(meta.get("path_name"))):
            raise _refuse(path, f"its {kind} config {entry} stores {fqn!r} as {where}, which is not a raw tensor file.")


def _check_program(program: object, path: Path, entry: str) -> None:
    """Every graph node target in the program JSON (subgraphs included) against the operator allowlist."""
    pending = [program]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            target = item.get("target")
            if isinstance(target, str) and "inputs" in item:
                refusal = export_target_refusal(target)
                if refusal is not None:
                    raise UnsafeModelError(
                        f"{path.name}: its program {entry} calls {refusal[0]}, which is refused: {refusal[1]}. Nothing of the model was loaded or run.",
                        fix=REFUSAL_FIX,
                    )
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)


def inspect_export_archive(path: Path) -> None:
    """Refuse a ``.pt2`` archive that ``torch.export.load`` could not load without running code from it.

    Parameters
    ----------
    path : Path
        The archive, as named by the card's ``weights``.

    Raises
    ------
    UnsafeModelError
        Naming the entry (or weight, or operator) that would run code.
    ModelLoadError
        When the file is not a ``torch.export.save`` archive at all.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            _inspect(archive, path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, NotImplementedError, RuntimeError, zlib.error) as exc:
        # Damaged, encrypted or oddly compressed entries: zipfile's own errors, not torch's.
        raise ModelLoadError(f"{path.name} is not a readable torch.export archive ({exc}).", fix=_FIX) from None


def _inspect(archive: zipfile.ZipFile, path: Path) -> None:
    infos = [info for info in archive.infolist() if not info.is_dir()]
    if not infos or len(infos) > _MAX_ENTRIES:
        raise ModelLoadError(f"{path.name} holds {len(infos)} entries; a torch.export archive holds between 1 and {_MAX_ENTRIES}.", fix=_FIX)
    names = [info.filename for info in infos]
    if len(names) != len(set(names)):
        duplicate = next(n for n in names if names.count(n) > 1)
        raise _refuse(path, f"it holds the entry {duplicate!r} twice (readers disagree on which copy counts).")
    root = names[0].split("/", 1)[0]
    entries: dict[str, zipfile.ZipInfo] = {}
    for info in infos:
        head, _, rest = info.filename.partition("/")
        if head != root or not rest:
            raise _refuse(path, f"its entry {info.filename!r} lies outside the archive's root folder {root}/.")
        if rest not in _FIXED_ENTRIES and not _ENTRY.match(rest):
            what = "compiled native code (AOTInductor)" if rest.startswith("data/aotinductor/") else "not part of what torch.export.save writes"
            raise _refuse(path, f"its entry {info.filename!r} is {what}.")
        entries[rest] = info
    models = [m["model"] for rest in entries if (m := _ENTRY.match(rest)) and m["model"]]
    if not models or "archive_format" not in entries:
        raise ModelLoadError(f"{path.name} holds no torch.export program (no models/<name>.json).", fix=_FIX)
    for model in models:
        for kind in ("weights", "constants"):
            entry = f"data/{kind}/{model}_{kind}_config.json"
            if entry in entries:
                _check_payload_config(_read_json(archive, entries[entry], path, entry), kind, path, entry)
        entry = f"models/{model}.json"
        _check_program(_read_json(archive, entries[entry], path, entry), path, entry)
    sample_inputs = {f"data/sample_inputs/{model}.pt" for model in models}
    for rest, info in entries.items():
        with archive.open(info) as fh:
            head = fh.read(4)
        if rest in sample_inputs:
            if info.file_size > _MAX_JSON_BYTES:
                raise ModelLoadError(f"{path.name}: {info.filename} is larger than {_MAX_JSON_BYTES >> 20} MB.", fix=_FIX)
            if info.file_size:
                _check_sample_inputs(path, info.filename, archive.read(info))
            continue
        if head == b"PK\x03\x04":
            raise _refuse(path, f"its entry {info.filename!r} is an archive inside the archive (torch.save writes pickles this way).")
        if _PICKLE_HEAD.match(head) or not rest.endswith(".json"):
            with archive.open(info) as fh:
                if _is_pickle(fh, info.file_size):
                    raise _refuse(path, f"its entry {info.filename!r} is a pickle stream.")
