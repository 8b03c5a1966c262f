"""A report :class:`~analysis.document.Document` as one self-contained HTML page.

Every figure is embedded as a base64 PNG; there are no scripts and no external links, so the page
opens offline (copied off a cluster, attached to an e-mail). Tables come from pandas' Styler.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

from analysis.document import Columns, Document, Figure, Heading, Table, Text, label
from analysis.tables import header_frame

STYLE = """
body { font-family: "DejaVu Sans", Helvetica, Arial, sans-serif; max-width: 1100px;
       margin: 2em auto; padding: 0 1.5em; line-height: 1.4; color: #111; }
h1 { font-size: 1.7em; } h2 { font-size: 1.35em; margin-top: 1.8em;
     border-bottom: 1px solid #ccc; } h3 { font-size: 1.1em; margin-top: 1.4em; }
table { border-collapse: collapse; margin: 0.4em 0 1.2em; font-size: 0.88em; }
caption { caption-side: top; text-align: left; font-weight: bold; padding-bottom: 0.3em; }
th, td { border: 1px solid #bbb; padding: 0.25em 0.55em; text-align: left;
         vertical-align: top; }
thead th { background: #eee; text-align: center; }
table.kv th { background: #f4f4f4; white-space: nowrap; }
table.kv td { word-break: break-word; }
figure { margin: 1.2em 0 2em; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 0.92em; margin-top: 0.4em; }
.note { color: #8a5a00; }
.columns { display: flex; flex-wrap: wrap; gap: 0 1.8em; align-items: flex-start; }
.columns > div { flex: 1 1 420px; min-width: 0; }
.columns figure { margin: 0.4em 0 1em; }
figure.key img { max-height: 430px; }
.columns p { margin: 0.3em 0 0.6em; }
"""


def write_html(document: Document, path: Path) -> Path:
    """Write ``document`` to ``path`` as one HTML file; return the path."""
    body = "\n".join(_block(block) for block in document.blocks)
    path.write_text(
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(document.title)}</title><style>{STYLE}</style></head>\n"
        f"<body>\n{body}\n</body></html>\n"
    )
    return path


def _block(block) -> str:
    if isinstance(block, Heading):
        return f"<h{block.level}>{html.escape(block.text)}</h{block.level}>"
    if isinstance(block, Text):
        css = ' class="note"' if block.note else ""
        return f"<p{css}>{html.escape(block.text)}</p>"
    if isinstance(block, Table):
        return _table(block)
    if isinstance(block, Figure):
        return _figure(block)
    if isinstance(block, Columns):
        sides = ("\n".join(_block(b) for b in side) for side in (block.left, block.right))
        return '<div class="columns">' + "".join(f"<div>{side}</div>" for side in sides) + "</div>"
    raise TypeError(f"unknown report block {block!r}")


def _table(table: Table) -> str:
    caption = html.escape(label(table))
    if table.key_value:
        rows = "".join(
            f"<tr><th scope=row>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
            for k, v in table.frame.itertuples(index=False)
        )
        return f'<table class="kv"><caption>{caption}</caption><tbody>{rows}</tbody></table>'
    styler = header_frame(table.frame).style.hide(axis="index").set_caption(caption)
    styler = styler.format(escape="html").format_index(escape="html", axis=1)
    return styler.to_html(exclude_styles=True)


def _figure(figure: Figure) -> str:
    png = base64.b64encode(figure.png.read_bytes()).decode("ascii")
    css = ' class="key"' if figure.key else ""
    return (
        f'<figure{css}><img alt="{html.escape(figure.title)}" src="data:image/png;base64,{png}">'
        f"<figcaption>{html.escape(label(figure))}</figcaption></figure>"
    )
