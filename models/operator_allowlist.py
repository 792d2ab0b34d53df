"""Which operators a whole-model file (TorchScript or ``torch.export``) may call.

A whole-model file carries its own program. Before any of it runs, every operator it names is
checked here: only operators registered in torch's own ``aten`` and ``prim`` namespaces are
allowed (custom namespaces are code from elsewhere), and within them the operators that reach
outside the tensor world are refused: files (``aten::from_file``, ``aten::save``), storage
sharing and swapping (``*share*``, ``aten::set_``), threads and remote calls (``prim::fork``,
``aten::wait``, ``*rpc*``), Python callbacks (``prim::PythonOp``) and output (``prim::Print``).
"""

from __future__ import annotations

import re
from functools import lru_cache

ALLOWED_NAMESPACES = ("aten", "prim")

# Graph nodes the TorchScript compiler emits for control flow and objects: they have no schema in
# the operator registry but run no operator of their own.
_STRUCTURAL = frozenset(
    f"prim::{name}"
    for name in (
        "Constant If Loop GetAttr SetAttr ListConstruct ListUnpack TupleConstruct TupleUnpack TupleIndex DictConstruct CreateObject Enter Exit "
        "CallFunction CallMethod unchecked_cast isinstance Uninitialized RaiseException NumToTensor ModuleContainerIndex EnumName EnumValue "
        "tolist unchecked_unwrap_optional Return Param"
    ).split()
)

# Exact names refused with the reason the message gives.
_REFUSED = {
    "aten::from_file": "maps a file on the server into a tensor (and writes it with shared=True)",
    "aten::save": "writes a file",
    "aten::set_": "points a tensor at another storage",
    "aten::set_data": "swaps a tensor's storage",
    "aten::record_stream": "hands a tensor's memory to another stream",
    "aten::wait": "waits on a thread or remote call",
    "aten::_print": "writes to the server's output",
    "prim::Print": "writes to the server's output",
    "prim::PythonOp": "calls back into Python",
    "prim::IgnoredPythonOp": "calls back into Python",
    "prim::fork": "starts a thread",
    "prim::TimePoint": "reads the clock for profiling",
    "prim::AddStatValue": "writes profiling statistics",
    "prim::profile": "profiling hook",
    "prim::profile_ivalue": "profiling hook",
}
# Name patterns refused whatever the exact operator (files, storage sharing, threads, remote calls).
_REFUSED_PATTERNS = (
    (re.compile(r"file|mmap|(^|_)save|(^|_)load"), "reads or writes files"),
    (re.compile(r"share"), "shares memory with other processes"),
    (re.compile(r"rpc|fork|awaitable"), "starts threads, processes or remote calls"),
    (re.compile(r"_cufft_set|set_num_threads|set_flush"), "changes process-wide settings"),
)

REFUSAL_FIX = (
    "Audit only models that compute with tensor operators: remove the file, storage-sharing, thread, "
    "remote-call or Python-callback operator from the model's code, re-export it with torch.jit.script / "
    "torch.jit.trace or torch.export, or save its state_dict as safetensors with its class named in the card's 'architecture'."
)


@lru_cache(maxsize=1)
def _registered() -> frozenset[str]:
    import torch

    return frozenset(schema.name for schema in torch._C._jit_get_all_schemas())


def operator_refusal(name: str) -> str | None:
    """Why the operator ``name`` (``namespace::op``, overload dropped) is refused; None when it is allowed.

    Parameters
    ----------
    name : str
        A qualified operator name such as ``aten::conv2d`` or ``prim::If``.

    Returns
    -------
    str or None
        A short reason for the refusal message, or None for an allowed operator.
    """
    namespace, _, op = name.partition("::")
    if namespace not in ALLOWED_NAMESPACES or not op:
        return f"its namespace {namespace!r} is not torch's own (custom operators are code from outside the model file)"
    if name in _REFUSED:
        return _REFUSED[name]
    for pattern, reason in _REFUSED_PATTERNS:
        if pattern.search(op):
            return reason
    if name not in _STRUCTURAL and name not in _registered():
        return "it is not an operator registered in this torch"
    return None


# torch.export graphs call aten operators as ``torch.ops.aten.<op>.<overload>`` and a few Python
# functions on symbolic sizes; the deserializer resolves any other ``torch.*`` / ``_operator.*`` /
# ``math.*`` name by attribute lookup, so everything outside this list is refused.
_EXPORT_PYTHON_TARGETS = frozenset(
    [f"_operator.{op}" for op in "getitem add sub mul truediv floordiv mod neg pos pow eq ne lt le gt ge and_ or_ lshift rshift".split()]
    + [f"math.{op}" for op in ("trunc", "floor", "ceil", "sqrt")]
    + [f"torch.{op}" for op in ("sym_int", "sym_float", "sym_max", "sym_min", "sym_ite", "sym_not", "_sym_sqrt")]
)
_EXPORT_OP = re.compile(r"^torch\.ops\.(?P<ns>[A-Za-z0-9_]+)\.(?P<op>[A-Za-z0-9_]+)(\.[A-Za-z0-9_]+)?$")


def export_target_refusal(target: str) -> tuple[str, str] | None:
    """Check one ``torch.export`` graph node target (as serialized in the archive's program JSON).

    Returns
    -------
    tuple of (str, str) or None
        ``(operator name, reason)`` when refused, None when allowed.
    """
    if target in _EXPORT_PYTHON_TARGETS:
        return None
    match = _EXPORT_OP.match(target)
    if match is None:
        return target, "it is not a torch operator (torch.export resolves such names to arbitrary Python functions)"
    name = f"{match['ns']}::{match['op']}"
    if match["ns"] != "aten":
        return name, f"its namespace {match['ns']!r} is not aten (custom operators are code from outside the model file)"
    reason = operator_refusal(name)
    return (name, reason) if reason else None
