"""A model's history: its runs with verdicts and key measurements, one row per run (CLI and dashboard).

The rows are built without pandas (``audits history`` starts fast); :func:`history` wraps
them in a DataFrame for the dashboard.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from audits.store.database import Store

if TYPE_CHECKING:
    import pandas as pd

# Measurements shown when none are asked for: the first whole-model ones a model's runs stored.
DEFAULT_KEYS = 4
COLUMNS = ("run_id", "started_at", "plan", "status", "verdict", "seed", "weights")


def _key(name: str, subject: str) -> str:
    return f"{name}/{subject}" if subject else name


def history_rows(store: Store, model: str, *, measures: list[str] | None = None, limit: int | None = None) -> tuple[list[str], list[list]]:
    """Column names and rows (newest run first): the run columns, then one per measurement key.

    ``measures`` names measurement keys (``accuracy``, ``tpr_difference/sex``) or names
    (every subject of it); default: the first :data:`DEFAULT_KEYS` whole-model measurements.
    """
    runs = store.runs(model=model, limit=limit)
    pairs = store.measurement_keys(model) if runs else []
    if measures:
        chosen = [(n, s) for n, s in pairs if _key(n, s) in measures or n in measures]
    else:
        chosen = [(n, s) for n, s in pairs if not s][:DEFAULT_KEYS]
    values = store.measurement_values(model, sorted({n for n, _ in chosen})) if chosen else {}
    rows = [
        [r.run_id, r.started_at, r.plan or "", r.status, r.verdict, r.seed, (r.weights_sha256 or "")[:12]] + [values.get((r.run_id, n, s)) for n, s in chosen]
        for r in runs
    ]
    return [*COLUMNS, *(_key(n, s) for n, s in chosen)], rows


def history(store: Store, model: str, *, measures: list[str] | None = None, limit: int | None = None) -> pd.DataFrame:
    """:func:`history_rows` as a DataFrame (``started_at`` as UTC datetimes)."""
    import pandas as pd

    columns, rows = history_rows(store, model, measures=measures, limit=limit)
    frame = pd.DataFrame(rows, columns=columns)
    frame["started_at"] = pd.to_datetime(frame["started_at"], utc=True)
    for col in columns[len(COLUMNS) :]:
        frame[col] = frame[col].astype("float64")
    return frame


def history_text(columns: list[str], rows: list[list], model: str) -> str:
    """The history as a fixed-width table for the terminal."""
    if not rows:
        return f"No runs of {model} in the store."
    cells = [list(columns)]
    for row in rows:
        run_id, started, plan, status, verdict, seed, weights, *numbers = row
        cells.append(
            [run_id, started.strftime("%Y-%m-%d %H:%M:%S"), plan or "-", status, verdict, "-" if seed is None else str(seed), weights or "-"]
            + ["-" if v is None else f"{v:.4g}" for v in numbers]
        )
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return f"{len(rows)} run(s) of {model}, newest first\n" + "\n".join(lines)
