"""JSON round trip for result dataclasses holding numpy arrays and pandas frames.

Dataclasses are tagged with their registered type name; arrays and frames with a marker
key. NaN becomes JSON ``null`` (standard JSON has no NaN) and comes back as NaN in
float arrays.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from audits.errors import ReportError

T = TypeVar("T")
_TYPES: dict[str, type] = {}


def serializable(cls: type[T]) -> type[T]:
    """Register a dataclass so ``from_jsonable`` can rebuild it from its ``__type__`` tag."""
    name = cls.__name__
    if name in _TYPES and _TYPES[name] is not cls:
        raise TypeError(f"two serializable classes named {name}")
    _TYPES[name] = cls
    return cls


def _clean_float(v: float) -> float | None:
    return None if (isinstance(v, float) and not math.isfinite(v)) else v


def _nested(a: np.ndarray) -> Any:
    if a.dtype.kind == "f":
        return [_nested(r) for r in a] if a.ndim > 1 else [_clean_float(float(v)) for v in a]
    return a.tolist()


def to_jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out = {"__type__": type(obj).__name__}
        for f in dataclasses.fields(obj):
            out[f.name] = to_jsonable(getattr(obj, f.name))
        return out
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind not in "biuf":
            return {"__ndarray__": to_jsonable(obj.tolist()), "dtype": "object", "shape": list(obj.shape)}
        flat = obj.reshape(-1) if obj.ndim else obj.reshape(1)
        return {"__ndarray__": _nested(flat), "dtype": str(obj.dtype), "shape": list(obj.shape)}
    if isinstance(obj, pd.DataFrame):
        split = obj.to_dict(orient="split")
        return {"__dataframe__": {k: to_jsonable(v) for k, v in split.items()}, "dtypes": [str(t) for t in obj.dtypes]}
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    if isinstance(obj, float):
        return _clean_float(obj)
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    raise TypeError(f"cannot serialize {type(obj).__name__}")


def from_jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        if "__ndarray__" in obj:
            dtype = obj["dtype"]
            if dtype == "object":
                return np.array(from_jsonable(obj["__ndarray__"]), dtype=object).reshape(obj["shape"])
            flat = obj["__ndarray__"]
            if np.dtype(dtype).kind == "f":
                flat = [np.nan if v is None else v for v in flat]
            return np.array(flat, dtype=dtype).reshape(obj["shape"])
        if "__dataframe__" in obj:
            split = {k: from_jsonable(v) for k, v in obj["__dataframe__"].items()}
            frame = pd.DataFrame(split["data"], index=split["index"], columns=split["columns"])
            for col, dtype in zip(frame.columns, obj.get("dtypes", []), strict=False):
                if dtype.startswith(("float", "int", "bool")):
                    frame[col] = frame[col].astype("float64" if dtype.startswith("float") else dtype)
            return frame
        if "__type__" in obj:
            name = obj["__type__"]
            cls = _TYPES.get(name)
            if cls is None:
                raise ReportError(f"Unknown result type {name!r} in the report.", fix="Open it with the version of the tool that wrote it, or upgrade.")
            names = {f.name for f in dataclasses.fields(cls)}
            kwargs = {k: from_jsonable(v) for k, v in obj.items() if k != "__type__" and k in names}
            return cls(**kwargs)
        return {k: from_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [from_jsonable(v) for v in obj]
    return obj
