"""Row filters over an evaluation table: ``age >= 60 and sex = Female and predicted != true``.

A filter is clauses joined by ``and``; each clause is ``column op value`` with ``op`` one of
``= == != > >= < <=`` or ``contains`` (text, case-insensitive), and ``value`` a number, a word,
a quoted string or another column's name. It is parsed here, never evaluated as code, and runs
vectorized over the columns (a million rows in milliseconds). A clause that cannot be read gets
one error naming it and the fix.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from audits.errors import AuditError

_CLAUSE = re.compile(r"^\s*(?P<col>`[^`]+`|[^\s=!<>]+)\s*(?P<op>==|!=|>=|<=|=|>|<|\bcontains\b)\s*(?P<val>.+?)\s*$", re.IGNORECASE)
_SPLIT = re.compile(r"\s+and\s+|\s*&\s*", re.IGNORECASE)


def _column(frame: pd.DataFrame, name: str, clause: str) -> pd.Series:
    name = name.strip("`")
    if name not in frame.columns:
        raise AuditError(f"The filter clause {clause!r} names no column {name!r}.", fix=f"Use one of: {', '.join(map(str, frame.columns))}.")
    return frame[name]


def _decoded(column: pd.Series) -> pd.Series:
    """A categorical column as its (string) values, via the category table (fast on a million rows)."""
    if not isinstance(column.dtype, pd.CategoricalDtype):
        return column
    labels = np.asarray(column.cat.categories.astype(str), dtype=object)
    return pd.Series(labels[column.cat.codes.to_numpy()], index=column.index)


def _value(frame: pd.DataFrame, raw: str):
    text = raw.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    if text.strip("`") in frame.columns:
        return frame[text.strip("`")]
    try:
        return float(text)
    except ValueError:
        return text


def filter_rows(frame: pd.DataFrame, expression: str) -> np.ndarray:
    """Positions of the rows of ``frame`` matching ``expression`` (all rows when it is blank)."""
    mask = np.ones(len(frame), dtype=bool)
    if not expression or not expression.strip():
        return np.arange(len(frame))
    for clause in _SPLIT.split(expression.strip()):
        m = _CLAUSE.match(clause)
        if m is None:
            raise AuditError(
                f"The filter clause {clause!r} is not 'column operator value'.",
                fix="Write clauses like: age >= 60 and sex = Female and predicted != true (operators: = != > >= < <= contains).",
            )
        column = _column(frame, m["col"], clause)
        op, value = m["op"].lower(), _value(frame, m["val"])
        if op == "contains":
            mask &= column.astype(str).str.contains(str(value), case=False, regex=False).to_numpy()
            continue
        if isinstance(column.dtype, pd.CategoricalDtype) and op in ("=", "==", "!=") and not isinstance(value, pd.Series):
            wanted = str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)
            categories = [str(c) for c in column.cat.categories]
            hit = column.cat.codes.to_numpy() == (categories.index(wanted) if wanted in categories else -2)
            mask &= hit if op != "!=" else ~hit
            continue
        if (
            isinstance(column.dtype, pd.CategoricalDtype)
            and isinstance(value, pd.Series)
            and isinstance(value.dtype, pd.CategoricalDtype)
            and op in ("=", "==", "!=")
        ):
            lookup = pd.Index(column.cat.categories.astype(str)).get_indexer(value.cat.categories.astype(str))  # right's codes in left's table
            codes = value.cat.codes.to_numpy()
            hit = column.cat.codes.to_numpy() == np.where(codes >= 0, lookup[codes], -2)
            mask &= hit if op != "!=" else ~hit
            continue
        column = _decoded(column)
        if isinstance(value, pd.Series):
            value = _decoded(value)
        numeric = pd.api.types.is_numeric_dtype(column)
        if isinstance(value, str) and numeric:
            raise AuditError(f"The filter clause {clause!r} compares the numeric column {m['col']!r} with the text {value!r}.", fix="Compare it with a number.")
        left = column.to_numpy() if numeric or column.dtype == object else column.astype(str).to_numpy()
        right = value.to_numpy() if isinstance(value, pd.Series) else value
        if not numeric and not isinstance(value, pd.Series):
            right = str(value) if not isinstance(value, float) or not value.is_integer() else str(int(value))
            if op in (">", ">=", "<", "<="):
                raise AuditError(f"The filter clause {clause!r} orders the text column {m['col']!r}.", fix="Use = or != (or contains) on text columns.")
        mask &= {"=": np.equal, "==": np.equal, "!=": np.not_equal, ">": np.greater, ">=": np.greater_equal, "<": np.less, "<=": np.less_equal}[op](left, right)
    return np.flatnonzero(mask)
