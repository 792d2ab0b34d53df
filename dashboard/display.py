"""Drawing a figure or a table the same way on every page."""

from __future__ import annotations

import pandas as pd
import streamlit as st


def plot(fig, key: str) -> None:
    """A plotly figure at full width, without the plotly logo."""
    st.plotly_chart(fig, width="stretch", key=key, config={"displaylogo": False})


def show_table(frame: pd.DataFrame, *, key: str | None = None, height: int | None = None) -> None:
    """A table with readable numbers (floats rounded to 4 decimals), full width."""
    shown = frame.copy()
    for col in shown.columns:
        if pd.api.types.is_float_dtype(shown[col]):
            shown[col] = shown[col].round(4)
    kwargs = {"height": height} if height else {}
    st.dataframe(shown, hide_index=True, width="stretch", key=key, **kwargs)


def table_height(rows: int, cap: int = 420) -> int:
    """A table's height in pixels that shows ``rows`` rows without scrolling, up to ``cap``."""
    return min(38 + 35 * rows, cap)
