"""The audit report as one self-contained HTML file: interactive plotly figures, plotly.js inlined, no network.

The sections are those of the PDF (``audits.render.document.build_document``); figures are
drawn by ``audits.render.plotly_backend`` from the same chart descriptions. The page
references nothing outside itself: no CDN, no fonts, no images by URL.
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import TYPE_CHECKING

from audits.render.blocks import Anchor, Document, Figure, KeyValues, Link, Paragraph, Section, Table
from audits.render.document import build_document
from audits.render.plotly_backend import to_plotly_dict

if TYPE_CHECKING:
    from audits.diff import ReportDiff
    from audits.report import AuditReport

_CSS = """
:root { --fg: #1b2631; --muted: #566573; --line: #d5d8dc; --pass: #d5f0dc; --warn: #fcefc7; --fail: #f7d4d0; --na: #e5e7e9; }
* { box-sizing: border-box; }
body { font-family: -apple-system, "Segoe UI", Roboto, "DejaVu Sans", Arial, sans-serif; color: var(--fg); margin: 0; line-height: 1.45; font-size: 14px; }
header.top { position: sticky; top: 0; background: #fff; border-bottom: 1px solid var(--line); padding: 6px 24px; font-size: 12px; color: var(--muted); z-index: 10; }
main { max-width: 1100px; margin: 0 auto; padding: 16px 24px 60px; }
h1 { font-size: 24px; margin: 40px 0 12px; border-bottom: 2px solid var(--fg); padding-bottom: 4px; }
h2 { font-size: 18px; margin: 28px 0 8px; }
h3 { font-size: 15px; margin: 20px 0 6px; }
table { border-collapse: collapse; margin: 4px 0 16px; font-size: 12.5px; max-width: 100%; }
th { background: #eaeded; text-align: left; border-bottom: 2px solid #7f8c8d; }
th, td { padding: 3px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.caption { font-size: 12px; color: var(--muted); margin: 2px 0 6px; }
.table-caption { font-weight: 600; font-size: 12.5px; margin-top: 10px; }
.note { font-style: italic; color: var(--muted); }
.warning { background: #fff8e1; color: #7a5200; font-weight: 600; padding: 6px 10px; border-left: 4px solid #f0b429; }
.status-pass { background: var(--pass); } .status-warn { background: var(--warn); } .status-fail { background: var(--fail); } .status-not-evaluated { background: var(--na); }
.kv th { background: none; border-bottom: 1px solid var(--line); width: 32%; font-weight: 600; }
.cover { text-align: center; padding: 30px 0 10px; }
.verdict { display: inline-block; font-size: 28px; font-weight: 700; color: #fff; padding: 12px 40px; border-radius: 6px; margin: 8px 0 14px; }
.verdict.pass { background: #1e8449; } .verdict.warn { background: #b9770e; } .verdict.fail { background: #c0392b; } .verdict.not-evaluated, .verdict.no-policy { background: #626567; }
.counts span { display: inline-block; min-width: 110px; padding: 8px 10px; margin: 0 3px; border-radius: 4px; }
nav.toc ol { padding-left: 20px; } nav.toc > ol > li { font-weight: 600; } nav.toc li li { font-weight: normal; }
.figure { margin: 8px 0 18px; }
a { color: #1f618d; }
"""


def esc(text) -> str:
    """Escaped text, keeping the <b> tags blocks may use."""
    out = html.escape(str(text), quote=True)
    return re.sub(r"&lt;(/?)b&gt;", r"<\1b>", out)


def _status_class(text: str) -> str:
    return "status-" + str(text).lower().replace(" ", "-").replace("_", "-")


def _cell(value) -> str:
    if isinstance(value, Link):
        return f'<a href="#{esc(value.anchor)}">{esc(value.text)}</a>'
    if isinstance(value, Anchor):
        return f'<span id="{esc(value.name)}">{esc(value.text)}</span>'
    return esc(value)


def _table(block: Table) -> str:
    head = "".join(f"<th>{esc(c)}</th>" for c in block.columns)
    rows = []
    for row in block.rows:
        cells = []
        for j, v in enumerate(row):
            classes = []
            if j in block.numeric:
                classes.append("num")
            if block.status_column == j:
                classes.append(_status_class(v))
            cls = f' class="{" ".join(classes)}"' if classes else ""
            cells.append(f"<td{cls}>{_cell(v)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    caption = f'<div class="table-caption">{esc(block.caption)}</div>' if block.caption else ""
    return f"{caption}<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _key_values(block: KeyValues) -> str:
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in block.items)
    caption = f'<div class="table-caption">{esc(block.caption)}</div>' if block.caption else ""
    return f'{caption}<table class="kv"><tbody>{rows}</tbody></table>'


class _FigureCounter:
    def __init__(self) -> None:
        self.n = 0

    def next_id(self) -> str:
        self.n += 1
        return f"figure-{self.n}"


def _figure(block: Figure, counter: _FigureCounter) -> str:
    import plotly.io as pio

    # The dict straight to HTML: building and validating a go.Figure per chart took most of the page's time.
    fig = to_plotly_dict(block.chart)
    div = pio.to_html(fig, full_html=False, include_plotlyjs=False, div_id=counter.next_id(), config={"displaylogo": False, "responsive": True}, validate=False)
    caption = f'<div class="caption">{esc(block.caption)}</div>' if block.caption else ""
    return f'<div class="figure">{div}{caption}</div>'


def _blocks(blocks: list, counter: _FigureCounter) -> str:
    out = []
    for b in blocks:
        if isinstance(b, Paragraph):
            out.append(f'<p class="{b.kind}">{esc(b.text)}</p>')
        elif isinstance(b, Table):
            out.append(_table(b) if b.rows else f'<p class="note">{esc(b.caption)}: no rows.</p>')
        elif isinstance(b, KeyValues):
            out.append(_key_values(b))
        elif isinstance(b, Figure):
            out.append(_figure(b, counter))
    return "\n".join(out)


def _section(section: Section, number: str, level: int, counter: _FigureCounter) -> str:
    tag = f"h{min(level + 1, 4)}"
    title = section.title if section.title.startswith("Appendix") else f"{number} {section.title}"
    body = _blocks(section.blocks, counter)
    if not body and not section.children:
        body = '<p class="note">Nothing to show in this section.</p>'
    children = "\n".join(_section(child, f"{number}.{i}", level + 1, counter) for i, child in enumerate(section.children, start=1))
    return f'<section id="{esc(section.anchor)}"><{tag}>{esc(title)}</{tag}>\n{body}\n{children}</section>'


def _toc(doc: Document) -> str:
    items = []
    for i, s in enumerate(doc.sections, start=1):
        title = s.title if s.title.startswith("Appendix") else f"{i} {s.title}"
        sub = "".join(f'<li><a href="#{esc(c.anchor)}">{i}.{j} {esc(c.title)}</a></li>' for j, c in enumerate(s.children, start=1))
        items.append(f'<li><a href="#{esc(s.anchor)}">{esc(title)}</a>' + (f"<ol>{sub}</ol>" if sub else "") + "</li>")
    return f'<nav class="toc"><h1>Contents</h1><ol style="list-style: none; padding-left: 0">{"".join(items)}</ol></nav>'


def _cover(doc: Document) -> str:
    verdict = doc.verdict.replace("_", " ")
    counts = "".join(
        f'<span class="{_status_class(s)}"><b>{doc.counts.get(s, 0)}</b><br>{s.replace("_", " ")}</span>' for s in ("fail", "warn", "pass", "not_evaluated")
    )
    kv = _key_values(KeyValues(doc.cover))
    return (
        f'<div class="cover"><h1 style="border: none">{esc(doc.title)}</h1><div style="font-size: 20px">{esc(doc.model_name)}</div>'
        f'<p>Overall verdict against the policy</p><div class="verdict {_status_class(verdict)[7:]}">{esc(verdict.upper())}</div>'
        f'<div class="counts">{counts}</div></div><div style="max-width: 760px; margin: 20px auto">{kv}</div>'
    )


def _page(title: str, header: str, body: str) -> str:
    import plotly.offline

    plotly_js = plotly.offline.get_plotlyjs()
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{_CSS}</style>"
        f'<script type="text/javascript">{plotly_js}</script></head>\n'
        f'<body><header class="top">{esc(header)}</header><main>\n{body}\n</main></body></html>\n'
    )


def render_html(report: AuditReport, *, document: Document | None = None, diff: ReportDiff | None = None) -> str:
    """The report as one self-contained HTML page (optionally with a diff section against an older report)."""
    doc = document or build_document(report)
    counter = _FigureCounter()
    parts = [_cover(doc), _toc(doc)]
    if diff is not None:
        parts.append(diff_section(diff))
    parts += [_section(s, str(i), 0, counter) for i, s in enumerate(doc.sections, start=1)]
    header = f"{doc.model_name} | report {doc.report_id} | {doc.created_at}"
    return _page(f"Model audit report: {doc.model_name}", header, "\n".join(parts))


def diff_section(diff: ReportDiff) -> str:
    """The differences between two reports as an HTML section (anchor ``diff``)."""
    from audits.diff import diff_tables

    blocks = diff_tables(diff)
    return f'<section id="diff"><h1>Changes since report {esc(diff.old_id)}</h1>\n{_blocks(blocks, _FigureCounter())}</section>'


def render_diff_html(diff: ReportDiff) -> str:
    """A standalone page with the diff section."""
    return _page(f"Audit diff {diff.old_id} -> {diff.new_id}", f"{diff.model_name} | {diff.old_id} -> {diff.new_id}", diff_section(diff))


def write_html(report: AuditReport, path: str | Path) -> Path:
    """Render and write atomically (a temporary file, then a rename)."""
    from audits.report import write_atomic

    return write_atomic(Path(path), render_html(report).encode())
