"""One self-contained HTML page: inline CSS, figures as base64 PNG, no scripts, no network.

A page is a title, a few facts, and a list of :class:`Section` s; a section holds figures,
HTML tables and notes, or says plainly why it is empty (``missing``). Sections can nest
(a sweep's per-run sections sit inside a collapsible ``<details>``).
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from noisescope.io import atomic_write


@dataclass
class Figure:
    """A PNG figure (raw bytes) and its caption."""

    png: bytes
    caption: str = ""


@dataclass
class Section:
    """One report section.

    Attributes:
        key: stable anchor id (``dynamics``, ``separation``, ...).
        title: heading.
        blurb: one sentence saying what the section shows.
        figures / tables (HTML strings) / notes (plain text paragraphs).
        missing: when not empty, the reason the section has no content (shown instead).
        children: nested sections (rendered inside a collapsible block).
        open: whether a collapsible block starts expanded.
    """

    key: str
    title: str
    blurb: str = ""
    figures: list[Figure] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    missing: str = ""
    children: list[Section] = field(default_factory=list)
    open: bool = True


CSS = """
body{font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:0;background:#f6f7f9;color:#1d232a}
main{max-width:1240px;margin:0 auto;padding:24px 32px 64px}
h1{font-size:26px;margin:8px 0 4px}h2{font-size:20px;margin:0 0 6px}h3{font-size:17px;margin:0 0 6px}
.facts{color:#55606b;font-size:13px;margin-bottom:16px}
nav{background:#fff;border:1px solid #dde2e8;border-radius:8px;padding:10px 16px;margin-bottom:18px;font-size:14px}
nav a{margin-right:14px;color:#1f5fbf;text-decoration:none;white-space:nowrap}
section{background:#fff;border:1px solid #dde2e8;border-radius:8px;padding:16px 20px;margin:14px 0}
section section{border-color:#eef1f4;margin:10px 0}
.blurb{color:#55606b;font-size:14px;margin:0 0 10px}
figure{margin:10px 0}figure img{max-width:100%;height:auto;border:1px solid #eef1f4}
figcaption{font-size:12px;color:#55606b}
table.data{border-collapse:collapse;font-size:13px;margin:8px 0}
table.data th,table.data td{border:1px solid #dde2e8;padding:3px 8px;text-align:right}
table.data th{background:#f0f3f6}table.data td:first-child,table.data th:first-child{text-align:left}
.missing{background:#fff6e5;border-left:4px solid #e0a100;padding:8px 12px;font-size:14px}
.note{font-size:14px}
details>summary{cursor:pointer;font-weight:600;font-size:16px;margin:6px 0}
pre{background:#f0f3f6;padding:8px;font-size:12px;overflow-x:auto}
table.claims td{text-align:left;vertical-align:top}table.claims td.rule{color:#55606b;font-size:12px;max-width:420px}
.st-supported{color:#1a7f37;font-weight:600}.st-not-supported{color:#c62828;font-weight:600}
.st-inconclusive{color:#b26a00;font-weight:600}.st-not-measured{color:#8a94a0}
"""


def png_of(fig) -> bytes:
    """A matplotlib figure as PNG bytes (the figure is closed)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def table_html(df: pd.DataFrame, floatfmt: str = "{:.3f}", index: bool = False,
               formats: dict[str, str] | None = None) -> str:
    """A DataFrame as an HTML table with the page's style (floats formatted, NaN as '-');
    ``formats`` maps column names to their own format (e.g. ``{"d_mean": "{:.1f}"}``)."""
    def fmt(spec: str):
        def f(v: object) -> str:
            if isinstance(v, float):
                return "-" if v != v else spec.format(v)
            return str(v)
        return f

    formats = formats or {}
    return df.to_html(index=index, classes="data", border=0, na_rep="-",
                      formatters={c: fmt(formats.get(c, floatfmt)) for c in df.columns}, escape=True)


def _render(sec: Section, depth: int = 2) -> str:
    h = f"h{min(depth, 4)}"
    parts = [f'<section id="{html.escape(sec.key)}"><{h}>{html.escape(sec.title)}</{h}>']
    if sec.blurb:
        parts.append(f'<p class="blurb">{html.escape(sec.blurb)}</p>')
    if sec.missing:
        parts.append(f'<p class="missing">Not available: {html.escape(sec.missing)}</p>')
    for note in sec.notes:
        parts.append(f'<p class="note">{html.escape(note)}</p>')
    parts.extend(sec.tables)
    for f in sec.figures:
        data = base64.b64encode(f.png).decode("ascii")
        parts.append(f'<figure><img alt="{html.escape(f.caption)}" src="data:image/png;base64,{data}">'
                     f'<figcaption>{html.escape(f.caption)}</figcaption></figure>')
    for child in sec.children:
        if child.children:
            attr = " open" if child.open else ""
            parts.append(f'<details{attr}><summary>{html.escape(child.title)}</summary>'
                         f'{_render(child, depth + 1)}</details>')
        else:
            parts.append(_render(child, depth + 1))
    parts.append("</section>")
    return "\n".join(parts)


def render_page(title: str, facts: list[str], sections: list[Section]) -> str:
    """The whole HTML document as a string."""
    from noisescope.version import __version__

    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    nav = " ".join(f'<a href="#{html.escape(s.key)}">{html.escape(s.title)}</a>' for s in sections)
    body = "\n".join(_render(s) for s in sections)
    facts_html = " &middot; ".join(html.escape(f) for f in [*facts, f"noisescope {__version__}", now])
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head>\n<body><main>"
            f"<h1>{html.escape(title)}</h1><div class=\"facts\">{facts_html}</div>"
            f"<nav>{nav}</nav>\n{body}\n</main></body></html>\n")


def write_page(path: str | Path, title: str, facts: list[str], sections: list[Section]) -> Path:
    """Render and write atomically; returns the path."""
    text = render_page(title, facts, sections)
    path = Path(path)
    atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))
    return path
