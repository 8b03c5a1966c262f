"""A report :class:`~analysis.document.Document` as a PDF: A4 pages with margins, flowing text,
tables that continue across pages with their header repeated, and every figure with its caption
under it (ReportLab's Platypus does the layout).

Text is set in DejaVu Sans, the font matplotlib ships and draws the figures with, so ±, –, ·, √
and Greek letters print in the tables as they do in the figures.
"""

from __future__ import annotations

import functools
from pathlib import Path
from xml.sax.saxutils import escape

import matplotlib
import pandas as pd
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.platypus import (
    Image,
    KeepTogether,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    TableStyle,
)
from reportlab.platypus import Table as PdfTable

from analysis.document import Columns, Document, Figure, Heading, Table, Text, label
from analysis.plots import DPI
from analysis.tables import header_frame

PAGE = A4
MARGIN = 18 * mm
FONT, BOLD = "DejaVuSans", "DejaVuSans-Bold"
CELL_PADDING = 3
FONT_SIZES = (7.5, 6.8, 6.2)
"""Table font sizes tried in turn until no word of a cell has to be broken."""
MAX_FIGURE_HEIGHT = 0.78  # of the frame: room for the caption on the same page
KEY_FIGURE_HEIGHT = 0.36  # the summary's figure: the summary fits the first page


@functools.cache
def _fonts() -> None:
    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    pdfmetrics.registerFont(TTFont(FONT, str(folder / "DejaVuSans.ttf")))
    pdfmetrics.registerFont(TTFont(BOLD, str(folder / "DejaVuSans-Bold.ttf")))
    pdfmetrics.registerFontFamily(FONT, normal=FONT, bold=BOLD, italic=FONT, boldItalic=BOLD)


@functools.cache
def _styles() -> dict[str, ParagraphStyle]:
    _fonts()
    base = ParagraphStyle("body", fontName=FONT, fontSize=9, leading=12, spaceAfter=5)
    return {
        "body": base,
        "note": ParagraphStyle("note", parent=base, textColor=colors.HexColor("#8a5a00")),
        "h1": ParagraphStyle("h1", parent=base, fontName=BOLD, fontSize=17, leading=21,
                             spaceAfter=8),
        "h2": ParagraphStyle("h2", parent=base, fontName=BOLD, fontSize=13, leading=16,
                             spaceBefore=10, spaceAfter=6, keepWithNext=1),
        "h3": ParagraphStyle("h3", parent=base, fontName=BOLD, fontSize=10.5, leading=13,
                             spaceBefore=6, spaceAfter=4, keepWithNext=1),
        "caption": ParagraphStyle("caption", parent=base, fontSize=8.5, leading=11,
                                  spaceBefore=3, spaceAfter=10),
        "table caption": ParagraphStyle("table caption", parent=base, fontName=BOLD,
                                        fontSize=8.5, leading=11, spaceBefore=4, spaceAfter=3,
                                        keepWithNext=1),
        "cell": ParagraphStyle("cell", parent=base, fontSize=7.5, leading=9.2, spaceAfter=0),
        "head": ParagraphStyle("head", parent=base, fontName=BOLD, fontSize=7.5, leading=9.2,
                               spaceAfter=0, alignment=1),
    }  # fmt: skip


def write_pdf(document: Document, path: Path) -> Path:
    """Write ``document`` to ``path`` as an A4 PDF; return the path."""
    styles = _styles()
    pdf = SimpleDocTemplate(
        str(path),
        pagesize=PAGE,
        leftMargin=MARGIN,
        rightMargin=MARGIN,
        topMargin=MARGIN,
        bottomMargin=MARGIN,
        title=document.title,
        author="clsweep",
    )
    story = _story(document, styles, pdf.width, pdf.height)

    def footer(canvas, doc) -> None:
        canvas.saveState()
        canvas.setFont(FONT, 7.5)
        canvas.drawRightString(PAGE[0] - MARGIN, MARGIN / 2, f"{document.title} · page {doc.page}")
        canvas.restoreState()

    pdf.build(story, onFirstPage=footer, onLaterPages=footer)
    return path


def _story(document: Document, styles, width: float, height: float) -> list:
    """The flowables of ``document``; a heading is held until what it heads, and kept on one
    page with its start (never alone at a page's foot): a table's caption and the table."""
    story, headings = [], []
    for block in document.blocks:
        flowables = _flowables(block, styles, width, height)
        if isinstance(block, Heading):
            headings += flowables
            continue
        if headings:
            lead = _lead(flowables)
            flowables = [KeepTogether([*headings, *flowables[:lead]]), *flowables[lead:]]
            headings = []
        story += flowables
    return story + headings


def _lead(flowables: list) -> int:
    """How many of ``flowables`` open the block: those kept with the next, and that next one."""
    n = 0
    while n < len(flowables) - 1 and flowables[n].getKeepWithNext():
        n += 1
    return n + 1


def _flowables(block, styles, width: float, height: float) -> list:
    if isinstance(block, Heading):
        return [Paragraph(escape(block.text), styles[f"h{block.level}"])]
    if isinstance(block, Text):
        return [Paragraph(escape(block.text), styles["note" if block.note else "body"])]
    if isinstance(block, Table):
        caption = Paragraph(escape(label(block)), styles["table caption"])
        return [caption, _table(block, styles, width), Spacer(1, 6)]
    if isinstance(block, Columns):
        inner = (*block.left, *block.right)
        return [f for b in inner for f in _flowables(b, styles, width, height)]
    if isinstance(block, Figure):
        share = KEY_FIGURE_HEIGHT if block.key else MAX_FIGURE_HEIGHT
        image = _image(block.png, width, height * share)
        return [KeepTogether([image, Paragraph(escape(label(block)), styles["caption"])])]
    raise TypeError(f"unknown report block {block!r}")


def _image(png: Path, width: float, max_height: float) -> Image:
    image = Image(str(png), mask=None)  # figures are opaque: no soft mask for the alpha channel
    natural = 72 / DPI  # never larger than drawn (a small figure stays small: two share a page)
    scale = min(natural, width / image.imageWidth, max_height / image.imageHeight)
    image.drawWidth, image.drawHeight = image.imageWidth * scale, image.imageHeight * scale
    return image


def _table(table: Table, styles, width: float) -> PdfTable:
    """A table that fits the frame's width: text columns wrap, header rows repeat on new pages."""
    if table.key_value:
        header: list[list[str]] = []
        body = [[str(k), str(v)] for k, v in table.frame.itertuples(index=False)]
    else:
        header, body = _header_and_body(header_frame(table.frame))
    rows = header + body
    for size in FONT_SIZES:  # the largest size at which no word has to be broken
        widths, fits = _column_widths(rows, len(header), width, size)
        if table.key_value:  # the items are short: on one line, the values take the rest
            items = max(pdfmetrics.stringWidth(k, BOLD, size) for k, _ in rows) + 2 * CELL_PADDING
            items = min(items + 2, 0.35 * width)
            widths = [items, width - items]
        if fits:
            break
    head = styles["head"].clone("head", fontSize=size, leading=size * 1.23)
    cell = styles["cell"].clone("cell", fontSize=size, leading=size * 1.23)
    key = head.clone("key", alignment=0)

    def style(r: int, c: int) -> ParagraphStyle:
        if r < len(header):
            return head
        return key if table.key_value and c == 0 else cell

    cells = [
        [Paragraph(escape(text), style(r, c)) for c, text in enumerate(row)]
        for r, row in enumerate(rows)
    ]
    grid = PdfTable(cells, colWidths=widths, repeatRows=len(header), hAlign="LEFT")
    commands = [
        ("GRID", (0, 0), (-1, -1), 0.4, colors.HexColor("#aaaaaa")),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("LEFTPADDING", (0, 0), (-1, -1), CELL_PADDING),
        ("RIGHTPADDING", (0, 0), (-1, -1), CELL_PADDING),
        ("TOPPADDING", (0, 0), (-1, -1), 1.5),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 2),
    ]
    if header:
        commands.append(("BACKGROUND", (0, 0), (-1, len(header) - 1), colors.HexColor("#eeeeee")))
        commands += _spans(header)
    if table.key_value:
        commands.append(("BACKGROUND", (0, 0), (0, -1), colors.HexColor("#f4f4f4")))
    grid.setStyle(TableStyle(commands))
    return grid


def _header_and_body(frame: pd.DataFrame) -> tuple[list[list[str]], list[list[str]]]:
    if isinstance(frame.columns, pd.MultiIndex):
        levels = frame.columns.nlevels
        header = [[str(c[level]) for c in frame.columns] for level in range(levels)]
    else:
        header = [[str(c) for c in frame.columns]]
    body = [[str(v) for v in row] for row in frame.itertuples(index=False)]
    return header, body


def _spans(header: list[list[str]]) -> list[tuple]:
    """Merge runs of equal labels in the upper header rows (the benchmark over its scenarios)."""
    commands = []
    for r, row in enumerate(header[:-1]):
        start = 0
        for c in range(1, len(row) + 1):
            if c == len(row) or row[c] != row[start]:
                if c - 1 > start:
                    commands.append(("SPAN", (start, r), (c - 1, r)))
                start = c
    return commands


def _column_widths(
    rows: list[list[str]], n_header: int, total: float, size: float
) -> tuple[list[float], bool]:
    """Column widths that fit ``total``: every column at least as wide as its longest word (so
    no number or name is broken), the remaining width shared in proportion to how much more each
    column's longest line needs. Also says whether the words fit at all at this font size (if
    not, the columns with the longest words give way: every column is as wide as its longest
    word up to a common cap that fills ``total``, so only words longer than the cap break and
    short names and numbers stay whole)."""
    pad = 2 * CELL_PADDING + 2

    def width(text: str, r: int) -> float:
        return pdfmetrics.stringWidth(text, BOLD if r < n_header else FONT, size) + pad

    columns = range(len(rows[0]))
    natural = [max(width(row[c], r) for r, row in enumerate(rows)) for c in columns]
    if sum(natural) <= total:
        return natural, True
    words = [
        max(width(word, r) for r, row in enumerate(rows) for word in row[c].split() or [""])
        for c in columns
    ]
    if sum(words) > total:
        return _capped(words, total), False
    extra = total - sum(words)
    wanted = [n - w for n, w in zip(natural, words, strict=True)]
    return [w + extra * d / sum(wanted) for w, d in zip(words, wanted, strict=True)], True


def _capped(wanted: list[float], total: float) -> list[float]:
    """min(w, cap) for each of ``wanted``, with the cap at which they sum to ``total`` (the
    widest give way first, by the same amount)."""
    left, n = total, len(wanted)
    for i, w in enumerate(sorted(wanted)):
        if w * (n - i) > left:
            cap = left / (n - i)
            return [min(x, cap) for x in wanted]
        left -= w
    return list(wanted)
