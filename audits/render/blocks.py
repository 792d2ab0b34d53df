"""Document blocks (paragraphs, tables, figures, sections) and the number formatting every view shares.

A view or a document section returns a list of blocks; the PDF (``audits.render.pdf``) and the
HTML (``audits.render.html``) lay them out. Blocks hold already formatted text, never results.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd

from audits.findings import Finding
from audits.render.charts import Chart, is_empty, pretty

if TYPE_CHECKING:
    from audits.report import AuditReport

# ---------------------------------------------------------------------------- blocks


@dataclass(frozen=True)
class Paragraph:
    """A line or paragraph of text; ``kind`` picks its style."""

    text: str
    kind: Literal["body", "note", "warning", "caption"] = "body"


@dataclass(frozen=True)
class Link:
    """A table cell linking to a section anchor."""

    text: str
    anchor: str


@dataclass(frozen=True)
class Anchor:
    """A table cell that is a link target (a result without a section of its own)."""

    text: str
    name: str


@dataclass(frozen=True)
class Table:
    """Rows of already formatted cells (str, :class:`Link` or :class:`Anchor`).

    ``status_column`` names a column whose cells ('pass', 'warn', 'fail', 'not evaluated')
    are coloured; ``numeric`` columns are right-aligned.
    """

    columns: list[str]
    rows: list[list]
    caption: str = ""
    status_column: int | None = None
    numeric: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class KeyValues:
    """A two-column table of labelled values."""

    items: list[tuple[str, str]]
    caption: str = ""


@dataclass(frozen=True)
class Figure:
    """A chart description with its caption (drawn by the plotly or the static backend)."""

    chart: Chart
    caption: str = ""


Block = Paragraph | Table | KeyValues | Figure


@dataclass
class Section:
    """A titled part of the document: its blocks, then its subsections."""

    anchor: str
    title: str
    blocks: list = field(default_factory=list)
    children: list[Section] = field(default_factory=list)

    def walk(self) -> Iterator[Section]:
        """This section and every subsection, depth first."""
        yield self
        for child in self.children:
            yield from child.walk()


@dataclass
class Document:
    """The whole report as sections, with what the cover shows."""

    title: str
    model_name: str
    report_id: str
    created_at: str
    verdict: str
    counts: dict[str, int]
    cover: list[tuple[str, str]]
    sections: list[Section]

    def walk(self) -> Iterator[Section]:
        """Every section, depth first."""
        for s in self.sections:
            yield from s.walk()

    def figures(self) -> list[Figure]:
        """Every figure block, in reading order."""
        return [b for s in self.walk() for b in s.blocks if isinstance(b, Figure)]

    def anchors(self) -> set[str]:
        """Every link target: section anchors and anchor cells."""
        names = {s.anchor for s in self.walk()}
        for s in self.walk():
            for b in s.blocks:
                if isinstance(b, Table):
                    names |= {cell.name for row in b.rows for cell in row if isinstance(cell, Anchor)}
        return names


@dataclass(frozen=True)
class RenderContext:
    """What a view needs besides the result itself: the report it belongs to and the findings per section anchor."""

    report: AuditReport
    findings_by_section: dict[str, list[Finding]] = field(default_factory=dict)

    @classmethod
    def of(cls, report: AuditReport) -> RenderContext:
        """The context of ``report``: its findings grouped by the section they point to."""
        by_section: dict[str, list[Finding]] = {}
        for f in report.findings:
            by_section.setdefault(f.section, []).append(f)
        return cls(report=report, findings_by_section=by_section)

    @property
    def class_names(self) -> list[str]:
        """The model's class names."""
        return self.report.data_summary.class_names


# ---------------------------------------------------------------------------- formatting

MAX_TABLE_ROWS = 40


def num(v, digits: int = 3) -> str:
    """A number for a table: fixed decimals, integers as integers, '-' for missing."""
    if v is None:
        return "-"
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}"
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    if not math.isfinite(f):
        return "-"
    if f != 0 and (abs(f) >= 1e5 or abs(f) < 10 ** (-digits)):
        return f"{f:.{digits}g}"
    return f"{f:.{digits}f}"


def ci(v, lo, hi, digits: int = 3) -> str:
    """'0.123 [0.100, 0.150]' (or the value alone when the bounds are missing)."""
    if _missing(lo) or _missing(hi):
        return num(v, digits)
    return f"{num(v, digits)} [{num(lo, digits)}, {num(hi, digits)}]"


def pct(v, digits: int = 1) -> str:
    """A share as a percentage ('-' for missing)."""
    return "-" if _missing(v) else f"{float(v) * 100:.{digits}f}%"


def _missing(v) -> bool:
    try:
        return v is None or not math.isfinite(float(v))
    except (TypeError, ValueError):
        return True


def status_text(status: str) -> str:
    """'not_evaluated' -> 'not evaluated'."""
    return status.replace("_", " ")


def frame_table(
    frame: pd.DataFrame, *, columns: list[str] | None = None, caption: str = "", digits: int = 3, max_rows: int = MAX_TABLE_ROWS, rename: dict | None = None
) -> list:
    """A DataFrame as a Table block (numbers formatted, long frames cut with a note)."""
    frame = frame if columns is None else frame[[col for col in columns if col in frame]]
    rows = []
    for rec in frame.head(max_rows).itertuples(index=False):
        rows.append([num(v, digits) if not isinstance(v, str) else v for v in rec])
    numeric = [i for i, col in enumerate(frame.columns) if pd.api.types.is_numeric_dtype(frame[col])]
    blocks: list = [Table(columns=[(rename or {}).get(col, pretty(col)) for col in frame.columns], rows=rows, caption=caption, numeric=numeric)]
    if len(frame) > max_rows:
        blocks.append(Paragraph(f"First {max_rows} of {len(frame)} rows; report.json holds them all.", "note"))
    return blocks


def findings_table(findings: list[Finding], *, link: bool = True, caption: str = "") -> Table:
    """Findings as a table: status, check, measured value, threshold, interval, detail and evidence (a link to its section)."""
    rows = []
    for f in findings:
        op = ">=" if f.direction == "min" else "<="
        threshold = f"{op} {num(f.threshold)}" + (f" (warn {op} {num(f.warn_threshold)})" if f.warn_threshold is not None else "")
        interval = "-" if not f.interval else f"[{num(f.interval[0])}, {num(f.interval[1])}]"
        title = f.title + (f" ({f.subject})" if f.subject else "")
        evidence = Link(f.evidence or f.section, f.section) if link and f.section else (f.evidence or "-")
        rows.append([status_text(f.status), title, num(f.measured), threshold, interval, f.detail, evidence])
    return Table(["Status", "Check", "Measured", "Threshold", "Interval", "Detail", "Evidence"], rows, caption=caption, status_column=0, numeric=[2])


def figure(chart: Chart, caption: str = "", empty: str = "") -> list:
    """A figure block for ``chart``, or (when it has nothing to draw) the ``empty`` note, or nothing."""
    if is_empty(chart):
        return [Paragraph(empty, "note")] if empty else []
    return [Figure(chart, caption)]


def chunks(items: list, size: int) -> list[list]:
    """``items`` in balanced chunks of at most ``size`` (5 -> 3 + 2, not 4 + 1)."""
    if not items:
        return []
    n = -(-len(items) // size)
    even = -(-len(items) // n)
    return [items[i : i + even] for i in range(0, len(items), even)]
