"""The JSON Schema of report.json, generated from the serializable result types.

``python -m audits.schema`` writes ``schemas/audit_report.schema.json`` (``--check`` only
compares). The schema follows ``audits.serialization``: every dataclass is an object
tagged ``__type__``, numpy arrays are ``{"__ndarray__", "dtype", "shape"}``, DataFrames
``{"__dataframe__": {"index", "columns", "data"}, "dtypes"}``, NaN is ``null``. A field
typed with a base class (``robustness: list[ProbeResult]``) accepts any registered
subclass. Regenerate it whenever a result type changes; a test checks it is current.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import types
import typing
from pathlib import Path

import numpy as np
import pandas as pd

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "audit_report.schema.json"
_NDARRAY = {
    "type": "object",
    "description": "A numpy array: values nested row-major in a flat list (NaN as null), its dtype and shape.",
    "properties": {"__ndarray__": {"type": "array"}, "dtype": {"type": "string"}, "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}}},
    "required": ["__ndarray__", "dtype", "shape"],
    "additionalProperties": False,
}
_DATAFRAME = {
    "type": "object",
    "description": "A pandas DataFrame in 'split' orientation (NaN as null) and its column dtypes.",
    "properties": {
        "__dataframe__": {
            "type": "object",
            "properties": {"index": {"type": "array"}, "columns": {"type": "array"}, "data": {"type": "array", "items": {"type": "array"}}},
            "required": ["index", "columns", "data"],
        },
        "dtypes": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["__dataframe__"],
    "additionalProperties": False,
}


def _registered() -> dict[str, type]:
    """Every serializable type (importing the probe packages and the report registers them all)."""
    import audits.gallery  # noqa: F401
    import audits.policy  # noqa: F401
    import audits.report  # noqa: F401
    from audits.probes import registered_probes
    from audits.serialization import _TYPES

    registered_probes()
    # Only the project's own types: what else a process happens to have imported (a test's
    # fixtures, say) must not change the schema.
    return {name: cls for name, cls in _TYPES.items() if cls.__module__.split(".")[0] in ("audits", "models")}


def _hints(cls: type) -> dict[str, object]:
    try:
        return typing.get_type_hints(cls)
    except Exception:  # a name only imported for type checking: resolve field by field
        module = sys.modules[cls.__module__].__dict__
        out = {}
        for f in dataclasses.fields(cls):
            try:
                out[f.name] = eval(f.type, module) if isinstance(f.type, str) else f.type  # noqa: S307 (annotations of our own classes)
            except Exception:
                out[f.name] = typing.Any
        return out


def _schema_of(tp, types_: dict[str, type]) -> dict:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is type(None):
        return {"type": "null"}
    if origin in (typing.Union, types.UnionType):
        options = [_schema_of(a, types_) for a in args]
        return {"anyOf": options}
    if origin in (list, tuple) or tp in (list, tuple):
        return {"type": "array", "items": _schema_of(args[0], types_)} if args else {"type": "array"}
    if origin is dict or tp is dict:
        return {"type": "object"}
    if tp is str:
        return {"type": "string"}
    if tp is bool:
        return {"type": "boolean"}
    if tp is int:
        return {"type": "integer"}
    if tp is float:
        return {"type": ["number", "null"]}  # NaN and infinities are written as null
    if tp is np.ndarray:
        return {"$ref": "#/$defs/ndarray"}
    if tp is pd.DataFrame:
        return {"$ref": "#/$defs/dataframe"}
    if isinstance(tp, type) and dataclasses.is_dataclass(tp) and tp.__name__ in types_:
        family = sorted(name for name, cls in types_.items() if issubclass(cls, tp))
        refs = [{"$ref": f"#/$defs/{name}"} for name in family]
        return refs[0] if len(refs) == 1 else {"anyOf": refs}
    return {}


def _definition(cls: type, types_: dict[str, type]) -> dict:
    hints = _hints(cls)
    props: dict[str, dict] = {"__type__": {"const": cls.__name__}}
    required = ["__type__"]
    for f in dataclasses.fields(cls):
        props[f.name] = _schema_of(hints.get(f.name, typing.Any), types_)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            required.append(f.name)
    doc = " ".join((cls.__doc__ or "").split("\n\n")[0].split())
    out = {"type": "object", "properties": props, "required": required, "additionalProperties": False}
    return {"description": doc, **out} if doc else out


def generate_schema() -> dict:
    """The JSON Schema of the current report format."""
    from audits.report import SCHEMA_VERSION

    types_ = _registered()
    defs = {name: _definition(cls, types_) for name, cls in sorted(types_.items())}
    defs["AuditReport"]["properties"]["schema_version"] = {"type": "string", "pattern": rf"^{SCHEMA_VERSION.split('.')[0]}\.[0-9]+$"}
    defs["ndarray"] = _NDARRAY
    defs["dataframe"] = _DATAFRAME
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"audits/audit_report/{SCHEMA_VERSION}",
        "title": "AuditReport",
        "description": f"report.json written by 'audits run', schema version {SCHEMA_VERSION}. Generated by 'python -m audits.schema'; do not edit.",
        "x-schema-version": SCHEMA_VERSION,
        "$ref": "#/$defs/AuditReport",
        "$defs": defs,
    }


def schema_text() -> str:
    return json.dumps(generate_schema(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m audits.schema", description="Write (or check) the JSON Schema of report.json.")
    parser.add_argument("--out", default=str(SCHEMA_PATH), help=f"where to write it (default {SCHEMA_PATH})")
    parser.add_argument("--check", action="store_true", help="exit 1 if the file differs from the generated schema")
    args = parser.parse_args(argv)
    text, path = schema_text(), Path(args.out)
    if args.check:
        current = path.read_text() if path.is_file() else ""
        print(f"{path} is {'up to date' if current == text else 'out of date: run python -m audits.schema'}")
        return 0 if current == text else 1
    from audits.report import write_atomic

    write_atomic(path, text.encode())
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
