"""Markdown-safe text: what the pages write around strings that came from data, files or errors."""

from __future__ import annotations


def escape(text: str) -> str:
    """Neutralize the Markdown in text that came from data or files (group names, error messages).

    Links, images, code, HTML-looking tags, LaTeX and tables are escaped; intraword
    underscores are left alone (Markdown does not italicize them), so field names read right.
    """
    for ch in "\\`*[]<>|$~":
        text = text.replace(ch, "\\" + ch)
    return text
