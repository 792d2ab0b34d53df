"""Figures of a model's history in the store (plotly): the verdict timeline and one trend per measurement with its interval.

Inputs are what :mod:`audits.store` returns (run records, the measurements frame); nothing
here computes a measurement, it only draws stored ones.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import plotly.graph_objects as go

from audits.store.records import RunRecord

# One colour per verdict (and for runs that crashed), the order the timeline's axis shows them in.
VERDICT_COLOURS = {"pass": "#1e8449", "warn": "#d68910", "fail": "#c0392b", "not_evaluated": "#7f8c8d", "crashed": "#424949"}


def _layout(fig: go.Figure, title: str, height: int) -> go.Figure:
    fig.update_layout(
        title=dict(text=title, x=0.0, xanchor="left", font=dict(size=14)),
        height=height,
        margin=dict(l=10, r=10, t=50, b=10),
        font=dict(size=12),
        template="plotly_white",
        legend=dict(orientation="h", y=-0.2),
    )
    return fig


def verdict_timeline_figure(runs: Sequence[RunRecord], model: str) -> go.Figure:
    """Each run of ``model`` as a point at its start time, on the row of its verdict (crashed runs on their own row)."""
    fig = go.Figure()
    rows = [("crashed" if r.status == "crashed" else r.verdict, r) for r in runs]
    for verdict, colour in VERDICT_COLOURS.items():
        chosen = [r for v, r in rows if v == verdict]
        if not chosen:
            continue
        fig.add_trace(
            go.Scatter(
                x=[r.started_at for r in chosen],
                y=[verdict] * len(chosen),
                mode="markers",
                name=verdict,
                marker=dict(color=colour, size=11, symbol="x" if verdict == "crashed" else "circle"),
                customdata=[[r.run_id, r.plan or "-", r.user] for r in chosen],
                hovertemplate="run %{customdata[0]}<br>%{x|%Y-%m-%d %H:%M:%S}<br>plan %{customdata[1]} · %{customdata[2]}<extra>%{y}</extra>",
            )
        )
    fig.update_yaxes(title_text="verdict", categoryorder="array", categoryarray=list(VERDICT_COLOURS))
    fig.update_xaxes(title_text="run start (UTC)")
    return _layout(fig, f"Verdicts of {model} over time ({len(rows)} runs)", 260)


def trend_figure(frame: pd.DataFrame, key: str) -> go.Figure:
    """One measurement (``key``: name or name/subject) across runs: its value and, where stored, its interval as a band.

    ``frame`` is :meth:`audits.store.Store.measurements` (any number of keys; ``key``'s rows are drawn).
    """
    rows = frame[frame["key"] == key].sort_values("started_at")
    fig = go.Figure()
    banded = rows.dropna(subset=["interval_lo", "interval_hi"])
    if not banded.empty:
        fig.add_trace(go.Scatter(x=banded["started_at"], y=banded["interval_hi"], mode="lines", line=dict(width=0), showlegend=False, hoverinfo="skip"))
        fig.add_trace(
            go.Scatter(
                x=banded["started_at"],
                y=banded["interval_lo"],
                mode="lines",
                line=dict(width=0),
                fill="tonexty",
                fillcolor="rgba(36,113,163,0.18)",
                name="confidence interval",
                hoverinfo="skip",
            )
        )
    fig.add_trace(
        go.Scatter(
            x=rows["started_at"],
            y=rows["value"],
            mode="lines+markers",
            name=key,
            line=dict(color="#2471a3"),
            marker=dict(color=[VERDICT_COLOURS.get(v, "#7f8c8d") for v in rows["verdict"]], size=8),
            customdata=rows[["run_id", "verdict"]].to_numpy(),
            hovertemplate="run %{customdata[0]} (%{customdata[1]})<br>%{x|%Y-%m-%d %H:%M:%S}<br>%{y:.4g}<extra></extra>",
        )
    )
    direction = rows["direction"].iloc[0] if len(rows) else "neutral"
    better = {"higher_is_better": " (higher is better)", "lower_is_better": " (lower is better)"}.get(direction, "")
    fig.update_yaxes(title_text=key)
    fig.update_xaxes(title_text="run start (UTC)")
    return _layout(fig, f"{key}{better} across {len(rows)} run(s)", 300)
