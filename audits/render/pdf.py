"""The audit report as a PDF: ReportLab (pure Python), figures from matplotlib, no browser.

Layout: a cover page (model, date, overall verdict, finding counts), a table of contents,
then the sections of ``audits.render.document.build_document``, each top-level section
on a new page; every page after the cover carries a running header (model name and
report id) and "page X of Y". Fonts are the DejaVu TrueType fonts that ship with
matplotlib, embedded, so any text (names, tokens) prints.
"""

from __future__ import annotations

import html
import io
import re
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from reportlab import rl_config
from reportlab.lib import colors
from reportlab.lib.enums import TA_CENTER
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.lib.utils import ImageReader
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen import canvas as rl_canvas
from reportlab.platypus import BaseDocTemplate, Flowable, Frame, NextPageTemplate, PageBreak, PageTemplate, Spacer
from reportlab.platypus import Paragraph as RLParagraph
from reportlab.platypus import Table as RLTable
from reportlab.platypus import TableStyle as RLTableStyle
from reportlab.platypus.tableofcontents import TableOfContents

from audits.render.blocks import Anchor, Document, Figure, KeyValues, Link, Paragraph, Section, Table
from audits.render.document import build_document
from audits.render.static import DPI, to_image

if TYPE_CHECKING:
    from audits.report import AuditReport

PAGE = A4
MARGIN = 18 * mm
FRAME_W = PAGE[0] - 2 * MARGIN
FRAME_H = PAGE[1] - 2 * MARGIN - 10 * mm
STATUS_COLORS = {"pass": "#d5f0dc", "warn": "#fcefc7", "fail": "#f7d4d0", "not evaluated": "#e5e7e9", "no policy": "#e5e7e9"}
VERDICT_COLORS = {"pass": "#1e8449", "warn": "#b9770e", "fail": "#c0392b", "not evaluated": "#626567", "no policy": "#626567"}
_FONT, _BOLD, _ITALIC = "DejaVuSans", "DejaVuSans-Bold", "DejaVuSans-Oblique"
HEAD_SIZE = 7.5  # table header font size


def _register_fonts() -> None:
    if _FONT in pdfmetrics.getRegisteredFontNames():
        return
    import matplotlib

    ttf = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    for name, file in (
        (_FONT, "DejaVuSans.ttf"),
        (_BOLD, "DejaVuSans-Bold.ttf"),
        (_ITALIC, "DejaVuSans-Oblique.ttf"),
        ("DejaVuSans-BoldOblique", "DejaVuSans-BoldOblique.ttf"),
    ):
        pdfmetrics.registerFont(TTFont(name, str(ttf / file)))
    pdfmetrics.registerFontFamily(_FONT, normal=_FONT, bold=_BOLD, italic=_ITALIC, boldItalic="DejaVuSans-BoldOblique")


def _styles() -> dict[str, ParagraphStyle]:
    base = ParagraphStyle("body", fontName=_FONT, fontSize=9, leading=12, spaceAfter=4)
    return {
        "body": base,
        "note": ParagraphStyle("note", parent=base, fontName=_ITALIC, textColor=colors.HexColor("#4d5656"), fontSize=8.5, leading=11),
        "warning": ParagraphStyle(
            "warning",
            parent=base,
            fontName=_BOLD,
            textColor=colors.HexColor("#9a6700"),
            backColor=colors.HexColor("#fff8e1"),
            borderPadding=4,
            spaceBefore=4,
            spaceAfter=8,
        ),
        "caption": ParagraphStyle("caption", parent=base, fontSize=7.5, leading=9.5, textColor=colors.HexColor("#4d5656")),
        "table_caption": ParagraphStyle(
            "table_caption", parent=base, fontName=_BOLD, fontSize=7.5, leading=9.5, textColor=colors.HexColor("#4d5656"), keepWithNext=1, spaceBefore=2
        ),
        "h1": ParagraphStyle(
            "h1", parent=base, keepWithNext=1, fontName=_BOLD, fontSize=16, leading=20, spaceBefore=0, spaceAfter=10, textColor=colors.HexColor("#1b2631")
        ),
        "h2": ParagraphStyle(
            "h2", parent=base, keepWithNext=1, fontName=_BOLD, fontSize=12, leading=15, spaceBefore=10, spaceAfter=6, textColor=colors.HexColor("#1b2631")
        ),
        "h3": ParagraphStyle("h3", parent=base, keepWithNext=1, fontName=_BOLD, fontSize=10, leading=13, spaceBefore=8, spaceAfter=4),
        "cell": ParagraphStyle("cell", parent=base, fontSize=7.5, leading=9, spaceAfter=0),
        "cell_small": ParagraphStyle("cell_small", parent=base, fontSize=6.8, leading=8.2, spaceAfter=0),
        "head": ParagraphStyle("head", parent=base, fontName=_BOLD, fontSize=HEAD_SIZE, leading=9, spaceAfter=0),
        "title": ParagraphStyle("title", parent=base, fontName=_BOLD, fontSize=26, leading=32, alignment=TA_CENTER, spaceAfter=6),
        "subtitle": ParagraphStyle("subtitle", parent=base, fontSize=14, leading=18, alignment=TA_CENTER, textColor=colors.HexColor("#34495e"), spaceAfter=20),
        "verdict": ParagraphStyle("verdict", parent=base, fontName=_BOLD, fontSize=22, leading=28, alignment=TA_CENTER, textColor=colors.white),
        "toc1": ParagraphStyle("toc1", parent=base, fontName=_BOLD, fontSize=10, leading=15, leftIndent=0),
        "toc2": ParagraphStyle("toc2", parent=base, fontSize=8.5, leading=11, leftIndent=16),
    }


def markup(text: str) -> str:
    """Plain text for a ReportLab paragraph: escaped, except the <b> tags that blocks may use."""
    out = html.escape(str(text), quote=False)
    return re.sub(r"&lt;(/?)b&gt;", r"<\1b>", out)


class _Heading(RLParagraph):
    """A heading that registers itself in the outline and the table of contents."""

    def __init__(self, text: str, style, level: int, key: str) -> None:
        super().__init__(f'<a name="{key}"/>{markup(text)}', style)
        self.toc = (level, text, key)


class _Doc(BaseDocTemplate):
    def afterFlowable(self, flowable) -> None:  # noqa: N802 (ReportLab's hook name)
        toc = getattr(flowable, "toc", None)
        if toc is None:
            return
        level, text, key = toc
        self.canv.bookmarkPage(key)
        self.canv.addOutlineEntry(text, key, level=level, closed=level > 0)
        if level <= 1:  # the contents list sections and their subsections; the outline has everything
            self.notify("TOCEntry", (level, text, self.page, key))


def _numbered_canvas(header: str):
    """A canvas class that defers page decoration until the page count is known."""

    class NumberedCanvas(rl_canvas.Canvas):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self._pages: list[dict] = []

        def showPage(self) -> None:  # noqa: N802
            self._pages.append(dict(self.__dict__))
            self._startPage()

        def save(self) -> None:
            total = len(self._pages)
            for state in self._pages:
                self.__dict__.update(state)
                if self._pageNumber > 1:
                    self._decorate(total)
                super().showPage()
            super().save()

        def _decorate(self, total: int) -> None:
            self.saveState()
            self.setFont(_FONT, 7.5)
            self.setFillColor(colors.HexColor("#566573"))
            top = PAGE[1] - MARGIN + 4 * mm
            self.drawString(MARGIN, top, header)
            self.drawRightString(PAGE[0] - MARGIN, top, "Model audit report")
            self.setStrokeColor(colors.HexColor("#aab7b8"))
            self.setLineWidth(0.5)
            self.line(MARGIN, top - 2 * mm, PAGE[0] - MARGIN, top - 2 * mm)
            self.drawCentredString(PAGE[0] / 2, MARGIN - 8 * mm, f"Page {self._pageNumber} of {total}")
            self.restoreState()

    return NumberedCanvas


# ---------------------------------------------------------------------------- blocks


_TARGETS: set[str] = set()  # link targets of the document being rendered (links elsewhere print as text)


def _cell(value, style) -> RLParagraph:
    if isinstance(value, Link):
        if value.anchor not in _TARGETS:
            return RLParagraph(markup(value.text), style)
        return RLParagraph(f'<a href="#{value.anchor}" color="#1f618d">{markup(value.text)}</a>', style)
    if isinstance(value, Anchor):
        return RLParagraph(f'<a name="{value.name}"/>{markup(value.text)}', style)
    return RLParagraph(markup(value), style)


def _text(cell) -> str:
    return str(cell.text if isinstance(cell, (Link, Anchor)) else cell)


def _widths(columns: list[str], rows: list[list], font_size: float) -> list[float]:
    """Column widths from measured text: every column fits its longest word (numbers never
    wrap), and the room left goes to the columns whose text is longer than that."""
    pad = 7.0
    width = lambda text, font=_FONT: pdfmetrics.stringWidth(text, font, font_size if font == _FONT else HEAD_SIZE)  # noqa: E731
    minimum, desired = [], []
    for j, col in enumerate(columns):
        texts = [_text(r[j]) for r in rows if j < len(r)]
        words = [width(w) for t in texts for w in t.split()] + [width(w, _BOLD) for w in col.split()]
        minimum.append(min(max(words, default=10.0), 120.0) + pad)
        full = sorted(width(t) for t in texts)
        typical = full[int(0.9 * (len(full) - 1))] if full else 0.0
        desired.append(max(min(max(typical, width(col, _BOLD)), 320.0) + pad, minimum[-1]))
    if sum(desired) <= FRAME_W:
        return desired
    if sum(minimum) >= FRAME_W:
        return [FRAME_W * m / sum(minimum) for m in minimum]
    room = FRAME_W - sum(minimum)
    want = [d - m for d, m in zip(desired, minimum, strict=True)]
    return [m + room * w / (sum(want) or 1.0) for m, w in zip(minimum, want, strict=True)]


def _table(block: Table, st) -> list:
    small = len(block.columns) >= 6
    style = st["cell_small"] if small else st["cell"]
    widths = _widths(block.columns, block.rows, style.fontSize)
    fits = [w - 6.5 for w in widths]  # room inside the cell padding
    data = [[_plain_or_paragraph(c, fits[j], st["head"]) for j, c in enumerate(block.columns)]]
    for row in block.rows:
        cells = list(row) + [""] * (len(block.columns) - len(row))
        data.append([_plain_or_paragraph(v, fits[j], style) for j, v in enumerate(cells)])
    table = RLTable(data, colWidths=widths, repeatRows=1, hAlign="LEFT")
    commands = [
        ("FONT", (0, 0), (-1, 0), _BOLD, HEAD_SIZE, st["head"].leading),
        ("FONT", (0, 1), (-1, -1), _FONT, style.fontSize, style.leading),
        ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#eaeded")),
        ("LINEBELOW", (0, 0), (-1, 0), 0.8, colors.HexColor("#7f8c8d")),
        ("LINEBELOW", (0, 1), (-1, -1), 0.25, colors.HexColor("#d5d8dc")),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("LEFTPADDING", (0, 0), (-1, -1), 3),
        ("RIGHTPADDING", (0, 0), (-1, -1), 3),
        ("TOPPADDING", (0, 0), (-1, -1), 2),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 2),
    ]
    if block.status_column is not None:
        for i, row in enumerate(block.rows, start=1):
            color = STATUS_COLORS.get(str(row[block.status_column]).lower())
            if color:
                commands.append(("BACKGROUND", (block.status_column, i), (block.status_column, i), colors.HexColor(color)))
    table.setStyle(RLTableStyle(commands))
    out: list = []
    if block.caption:
        out.append(RLParagraph(markup(block.caption), st["table_caption"]))
    out += [table, Spacer(1, 8)]
    return out


def _plain_or_paragraph(value, room: float, style):
    """A plain string when the text fits on one line (far cheaper to lay out), else a wrapping paragraph."""
    if isinstance(value, (Link, Anchor)):
        return _cell(value, style)
    text = str(value)
    if "\n" not in text and pdfmetrics.stringWidth(text, style.fontName, style.fontSize) <= room:
        return text
    return RLParagraph(markup(text), style)


def _key_values(block: KeyValues, st) -> list:
    cell, bold = st["cell"], ParagraphStyle("cell_bold", parent=st["cell"], fontName=_BOLD)
    widths = [FRAME_W * 0.34, FRAME_W * 0.66]
    data = [[_plain_or_paragraph(k, widths[0] - 6.5, bold), _plain_or_paragraph(v, widths[1] - 6.5, cell)] for k, v in block.items]
    table = RLTable(data, colWidths=widths, hAlign="LEFT")
    table.setStyle(
        RLTableStyle(
            [
                ("FONT", (0, 0), (0, -1), _BOLD, cell.fontSize, cell.leading),
                ("FONT", (1, 0), (1, -1), _FONT, cell.fontSize, cell.leading),
                ("LINEBELOW", (0, 0), (-1, -1), 0.25, colors.HexColor("#d5d8dc")),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("TOPPADDING", (0, 0), (-1, -1), 2),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 2),
            ]
        )
    )
    out: list = [RLParagraph(markup(block.caption), st["table_caption"])] if block.caption else []
    return out + [table, Spacer(1, 8)]


class _Picture(Flowable):
    """A figure's PNG that takes its place in every layout pass but is drawn only in the final one.

    Embedding an image (decode, compress) is the slowest step of a pass; the first pass
    only collects page numbers for the contents. The PNG is fetched when the first pass
    first lays the figure out (see ``_png``), so the layout of the pages before it runs while
    it is still being drawn elsewhere.
    """

    final = False

    def __init__(self, block: Figure) -> None:
        super().__init__()
        self.block = block
        self.png = b""
        self.hAlign = "LEFT"

    def wrap(self, avail_width, avail_height):
        if not self.png:
            self.png = _png(self.block)
            w, h = ImageReader(io.BytesIO(self.png)).getSize()
            self.width = min(FRAME_W, w * 72 / DPI)
            self.height = h * self.width / w
            if self.height > FRAME_H - 30:
                self.height = FRAME_H - 30
                self.width = w * self.height / h
        return self.width, self.height

    def draw(self) -> None:
        if _Picture.final:
            self.canv.drawImage(ImageReader(io.BytesIO(self.png)), 0, 0, self.width, self.height)


_PNGS: dict[int, bytes] = {}  # figure block id -> PNG, drawn once per render and reused by every pass
_GIVEN: list[Mapping[int, bytes | None]] = []  # the caller's drawings (render_pdf's pngs), read figure by figure
# The render state above (_TARGETS, _PNGS, _GIVEN, _Picture.final) is per process: renders in
# threads (the dashboard's) take turns.
_RENDER_LOCK = threading.RLock()


def _png(block: Figure) -> bytes:
    """The figure's PNG: drawn once per render; a given drawing still in progress is waited for here."""
    png = _PNGS.get(id(block))
    if png is None:
        png = next((given.get(id(block)) for given in _GIVEN), None) or to_image(block.chart)
        _PNGS[id(block)] = png
    return png


def _figure(block: Figure, st) -> list:
    # No KeepTogether: ReportLab will not keep a heading with a container, only with a plain flowable.
    picture = _Picture(block)
    if not block.caption:
        return [picture, Spacer(1, 8)]
    picture.keepWithNext = 1
    return [picture, RLParagraph(markup(block.caption), st["caption"]), Spacer(1, 8)]


def _blocks(blocks: list, st) -> list:
    out: list = []
    for b in blocks:
        if isinstance(b, Paragraph):
            out.append(RLParagraph(markup(b.text), st[b.kind]))
        elif isinstance(b, Table):
            out += _table(b, st) if b.rows else [RLParagraph(f"{markup(b.caption)}: no rows.", st["note"])]
        elif isinstance(b, KeyValues):
            out += _key_values(b, st)
        elif isinstance(b, Figure):
            out += _figure(b, st)
    return out


def _section(section: Section, number: str, level: int, st) -> list:
    style = st["h1"] if level == 0 else st["h2"] if level == 1 else st["h3"]
    title = section.title if section.title.startswith("Appendix") else f"{number} {section.title}"
    story: list = [_Heading(title, style, min(level, 2), section.anchor)]
    body = _blocks(section.blocks, st)
    if not body and not section.children:
        body = [RLParagraph("Nothing to show in this section.", st["note"])]
    story += body
    for i, child in enumerate(section.children, start=1):
        story += _section(child, f"{number}.{i}", level + 1, st)
    return story


def _cover(doc: Document, st) -> list:
    verdict = doc.verdict.replace("_", " ")
    badge = RLTable([[RLParagraph(verdict.upper(), st["verdict"])]], colWidths=[FRAME_W * 0.5], rowHeights=[20 * mm])
    badge.setStyle(
        RLTableStyle([("BACKGROUND", (0, 0), (-1, -1), colors.HexColor(VERDICT_COLORS.get(verdict, "#626567"))), ("VALIGN", (0, 0), (-1, -1), "MIDDLE")])
    )
    counts = doc.counts
    count_row = [
        [
            RLParagraph(
                f"<b>{counts.get(s, 0)}</b><br/>{s.replace('_', ' ')}", ParagraphStyle("c", parent=st["body"], alignment=TA_CENTER, fontSize=11, leading=15)
            )
            for s in ("fail", "warn", "pass", "not_evaluated")
        ]
    ]
    count_table = RLTable(count_row, colWidths=[FRAME_W * 0.18] * 4)
    count_table.setStyle(
        RLTableStyle(
            [("BACKGROUND", (i, 0), (i, 0), colors.HexColor(STATUS_COLORS[s])) for i, s in enumerate(("fail", "warn", "pass", "not evaluated"))]
            + [("BOX", (0, 0), (-1, -1), 0.5, colors.white), ("INNERGRID", (0, 0), (-1, -1), 2, colors.white)]
        )
    )
    story: list = [
        Spacer(1, 35 * mm),
        RLParagraph(markup(doc.title), st["title"]),
        RLParagraph(markup(doc.model_name), st["subtitle"]),
        Spacer(1, 6 * mm),
        RLParagraph("Overall verdict against the policy", ParagraphStyle("vlabel", parent=st["body"], alignment=TA_CENTER)),
        badge,
        Spacer(1, 6 * mm),
        count_table,
        Spacer(1, 14 * mm),
    ]
    story += _key_values(KeyValues(doc.cover), st)
    story.append(
        RLParagraph(
            "This report records what was tested, how, on which data, with which result and against which threshold. "
            "Its JSON twin (report.json) holds every number shown here; the provenance section lists what is needed to reproduce it.",
            st["note"],
        )
    )
    return story


def render_pdf(report: AuditReport, *, document: Document | None = None, pngs: Mapping[int, bytes | None] | None = None) -> bytes:
    """The report as PDF bytes.

    ``document`` (from ``build_document(report)``) and ``pngs`` (its figures, e.g. drawn in
    parallel by ``audits.render.export``) may be passed in when they exist already. ``pngs``
    is read one figure at a time, in document order, as the first layout pass reaches it
    (``pngs.get(id(block))``; ``None`` draws that figure here), so a mapping whose ``get``
    waits for a drawing still in progress lets the layout run alongside the drawing.
    Thread-safe: concurrent calls take turns.
    """
    with _RENDER_LOCK:
        return _render_pdf(report, document, pngs)


def _render_pdf(report: AuditReport, document: Document | None, pngs: Mapping[int, bytes | None] | None) -> bytes:
    _register_fonts()
    st = _styles()
    doc_model = document or build_document(report)
    _TARGETS.clear()
    _TARGETS.update(doc_model.anchors())
    buf = io.BytesIO()
    header = f"{doc_model.model_name} | report {doc_model.report_id} | {doc_model.created_at}"
    doc = _Doc(
        buf, pagesize=PAGE, leftMargin=MARGIN, rightMargin=MARGIN, topMargin=MARGIN + 4 * mm, bottomMargin=MARGIN,
        title=f"Model audit report: {doc_model.model_name}", author="audits", subject=f"report {doc_model.report_id}", creator="audits",
    )  # fmt: skip
    frame = Frame(MARGIN, MARGIN, FRAME_W, PAGE[1] - 2 * MARGIN - 4 * mm, id="body")
    doc.addPageTemplates([PageTemplate("cover", [frame]), PageTemplate("body", [frame])])
    toc = TableOfContents(levelStyles=[st["toc1"], st["toc2"]], dotsMinLevel=0)

    def story() -> list:  # fresh flowables for every pass (ReportLab consumes them)
        out: list = _cover(doc_model, st)
        out += [NextPageTemplate("body"), PageBreak(), RLParagraph("Contents", st["h1"]), toc]
        for i, section in enumerate(doc_model.sections, start=1):
            out.append(PageBreak())
            out += _section(section, str(i), 0, st)
        return out

    rl_config.useA85 = 0  # binary streams: the pure-Python ASCII85 encoder is slow and bloats the file
    # Pass 1 lays out without drawing images and collects the contents' page numbers; the
    # final pass draws everything (another one only if the contents moved pages).
    _PNGS.clear()
    _GIVEN[:] = [pngs] if pngs is not None else []
    _Picture.final = False
    doc._indexingFlowables = [toc]  # what multiBuild would set up: the contents listen for TOCEntry
    try:
        toc.beforeBuild()
        doc.build(story())
        toc.afterBuild()
        _Picture.final = True
        for _ in range(3):
            buf.seek(0)
            buf.truncate()
            toc.beforeBuild()
            doc.build(story(), canvasmaker=_numbered_canvas(header))
            toc.afterBuild()
            if toc.isSatisfied():
                break
    finally:
        _Picture.final = False
        _PNGS.clear()
        _GIVEN.clear()
    return buf.getvalue()


def write_pdf(report: AuditReport, path: str | Path) -> Path:
    """Render and write atomically (a temporary file, then a rename)."""
    from audits.report import write_atomic

    return write_atomic(Path(path), render_pdf(report))
