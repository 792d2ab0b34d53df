"""A model's history: its runs with verdicts and key measurements, one row per run (CLI and dashboard)."""

from __future__ import annotations

import pandas as pd

from audits.store.database import Store

# Measurements shown when none are asked for: the first whole-model ones a run reports.
DEFAULT_KEYS = 4


def key_measurements(frame: pd.DataFrame, limit: int = DEFAULT_KEYS) -> list[str]:
    """The measurement keys a history shows by default: whole-model measurements (no subject), first seen first."""
    whole = frame[frame["subject"] == ""]
    return list(dict.fromkeys(whole["key"]))[:limit]


def history(store: Store, model: str, *, measures: list[str] | None = None, limit: int | None = None) -> pd.DataFrame:
    """The runs of ``model``, newest first: run id, start, plan, status, verdict, seed, weights, and one column per measurement key.

    ``measures`` names measurement keys (``accuracy``, ``tpr_difference/sex``) or names
    (every subject of it); default: :func:`key_measurements`.
    """
    runs = store.runs(model=model, limit=limit)
    columns = ["run_id", "started_at", "plan", "status", "verdict", "seed", "weights"]
    table = pd.DataFrame(
        [(r.run_id, r.started_at, r.plan or "", r.status, r.verdict, r.seed, (r.weights_sha256 or "")[:12]) for r in runs],
        columns=columns,
    )
    if table.empty:
        return table
    frame = store.measurements(model)
    frame = frame[frame["run_id"].isin(set(table["run_id"]))]
    if measures:
        keys = [k for k in dict.fromkeys(frame["key"]) if k in measures or k.split("/", 1)[0] in measures]
    else:
        keys = key_measurements(frame)
    if keys:
        wide = frame[frame["key"].isin(keys)].pivot_table(index="run_id", columns="key", values="value", aggfunc="first", sort=False)
        table = table.join(wide.reindex(columns=keys), on="run_id")
    return table


def history_text(table: pd.DataFrame, model: str) -> str:
    """The history as a fixed-width table for the terminal."""
    if table.empty:
        return f"No runs of {model} in the store."
    shown = table.copy()
    shown["started_at"] = [t.strftime("%Y-%m-%d %H:%M:%S") for t in shown["started_at"]]
    shown["seed"] = ["-" if pd.isna(s) else str(int(s)) for s in shown["seed"]]
    for col in shown.columns[7:]:
        shown[col] = ["-" if pd.isna(v) else f"{v:.4g}" for v in shown[col]]
    return f"{len(shown)} run(s) of {model}, newest first\n" + shown.to_string(index=False)
