"""The report as a list of blocks (headings, text, tables, figures), rendered twice.

:mod:`analysis.report` decides what the report says, once; :mod:`analysis.render_html` and
:mod:`analysis.render_pdf` only lay it out. So the HTML and the PDF carry the same content by
construction: the same protocol, the same tables, the same figures with the same numbered
captions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd


@dataclass
class Heading:
    text: str
    level: int = 2  # 1: the title, 2: a section, 3: a part of a section


@dataclass
class Text:
    """A paragraph of plain text (no markup); ``note`` marks a figure left out and why."""

    text: str
    note: bool = False


@dataclass
class Table:
    """A table of text cells (one or two header levels), its number and its caption (above)."""

    frame: pd.DataFrame
    caption: str
    number: int = 0
    key_value: bool = False  # a two-column item/value list: no header row, items in bold


@dataclass
class Figure:
    """A figure saved as PNG, its number, title and caption (below it). ``key``: the summary's
    figure, drawn smaller so that the summary fits the first screen and the first page."""

    png: Path
    title: str
    caption: str
    number: int = 0
    key: bool = False


@dataclass
class Columns:
    """Blocks side by side where the page is wide enough (the HTML's summary), one after the
    other where it is not (the PDF): ``left`` first."""

    left: list[Heading | Text | Table | Figure]
    right: list[Heading | Text | Table | Figure]


Block = Heading | Text | Table | Figure | Columns


@dataclass
class Document:
    """The blocks in reading order; tables and figures are numbered as they are added."""

    title: str
    blocks: list[Block] = field(default_factory=list)

    def add(self, block: Block) -> Block:
        tables, figures = len(self.tables), len(self.figures)
        for inner in flat([block]):
            if isinstance(inner, Table):
                tables += 1
                inner.number = tables
            elif isinstance(inner, Figure):
                figures += 1
                inner.number = figures
        self.blocks.append(block)
        return block

    @property
    def figures(self) -> list[Figure]:
        return [b for b in flat(self.blocks) if isinstance(b, Figure)]

    @property
    def tables(self) -> list[Table]:
        return [b for b in flat(self.blocks) if isinstance(b, Table)]


def flat(blocks: list[Block]) -> list[Heading | Text | Table | Figure]:
    """The blocks in reading order, those of :class:`Columns` in place (left, then right)."""
    out: list[Heading | Text | Table | Figure] = []
    for block in blocks:
        out += [*block.left, *block.right] if isinstance(block, Columns) else [block]
    return out


def label(block: Table | Figure) -> str:
    """'Table 3. <caption>' or 'Figure 2. <title>. <caption>': a block's numbered caption."""
    if isinstance(block, Table):
        return f"Table {block.number}. {block.caption}"
    return f"Figure {block.number}. {block.title}. {block.caption}"
