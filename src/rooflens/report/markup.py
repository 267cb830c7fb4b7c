"""Strings as markup: text and code for Markdown, grids of strings as CSV, Markdown and HTML tables.

The pieces every renderer shares; nothing here knows what a Report is.
"""

from __future__ import annotations

import csv
import html
import io
import re
from collections.abc import Iterable, Sequence
from typing import Any


def visible_text(text: str) -> str:
    """``text`` on one line: line breaks and tabs (legal in module names) written as ``\\n``, ``\\r``, ``\\t``."""
    return text.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")


# ---- Markdown ---------------------------------------------------------------------------------------


def md_text(text: str) -> str:
    """Text for a Markdown table cell or list item: backslashes and pipes escaped, on one line."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\r\n", " ").replace("\n", " ").replace("\r", " ")


def md_code(text: str) -> str:
    """``text`` as a Markdown code span that holds in a table cell: pipes escaped (GitHub's tables split on
    the others, even inside code), line breaks shown as ``\\n``, fenced by more backticks than it holds."""
    text = visible_text(text).replace("|", "\\|")
    fence = "`" * (max((len(run) for run in re.findall("`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def grid_markdown(headers: Sequence[str], rows: Iterable[Sequence[str]], numeric: frozenset[str] = frozenset()) -> str:
    """A Markdown (GitHub) table; ``numeric`` columns right-aligned."""
    lines = ["| " + " | ".join(md_text(h) for h in headers) + " |",
             "| " + " | ".join("---:" if h in numeric else "---" for h in headers) + " |"]
    lines += ["| " + " | ".join(md_text(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


# ---- HTML -------------------------------------------------------------------------------------------


def html_labels(pairs: Iterable[tuple[str, str]]) -> str:
    """``(label, text)`` pairs as a two-column table."""
    items = "".join(
        f"<tr><th style='text-align:left'>{html.escape(k)}</th><td style='text-align:left'>{html.escape(v)}</td></tr>"
        for k, v in pairs
    )
    return f"<table>{items}</table>"


_TREE_CELL = "font-family:monospace;white-space:pre"  # the module column: the tree's glyphs line up


def html_grid(
    headers: Sequence[str], rows: Iterable[Sequence[str]], numeric: frozenset[str] = frozenset(), *, tree: bool = False
) -> str:
    """A table of strings: numeric columns right-aligned; ``tree``: the first column in monospace, spaces kept."""
    def cell(tag: str, col: str, text: str, first: bool) -> str:
        style = f"text-align:{'right' if col in numeric else 'left'}" + (f";{_TREE_CELL}" if tree and first else "")
        return f"<{tag} style='{style}'>{html.escape(text)}</{tag}>"

    head = "".join(cell("th", c, c, False) for c in headers)
    body = "".join(
        "<tr>" + "".join(cell("td", c, text, i == 0) for i, (c, text) in enumerate(zip(headers, row, strict=True)))
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


# ---- CSV --------------------------------------------------------------------------------------------


def grid_csv(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(headers)
    writer.writerows(rows)
    return buf.getvalue()


def records_csv(records: Sequence[dict[str, Any]]) -> str:
    """Dicts of the same keys as CSV rows under those keys: lists joined by "; ", None as an empty cell."""
    def cell(value: Any) -> Any:
        if isinstance(value, list):
            return "; ".join(map(str, value))
        return "" if value is None else value

    return grid_csv(list(records[0]) if records else [], ([cell(v) for v in r.values()] for r in records))
