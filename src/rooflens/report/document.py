"""Documents made of neutral blocks, and one renderer per output format.

What a command shows is a :class:`Document`: a sequence of blocks (a heading, labelled lines, a grid of
strings, a note, preformatted lines, a whole Report), the JSON data behind it (base units) and, where the
output has one, its CSV table or TOML text. Each block writes itself as rich renderables (the ``table``
format: plain text at a width, or colour on a terminal), Markdown and HTML; :data:`RENDERERS` maps every
format name to the function that writes a whole document in it.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rooflens.errors import InputError
from rooflens.report.export import to_markdown
from rooflens.report.html_report import grid_html, memory_fragment, page, report_body
from rooflens.report.markup import grid_markdown, html_labels, md_text
from rooflens.report.terminal import (
    DEFAULT_WIDTH,
    grid_table,
    label_grid,
    plain_text,
    print_items,
    renderables,
    terminal_console,
    text_line,
)
from rooflens.report.units import ByteUnit

if TYPE_CHECKING:
    from rooflens.analysis.memory import MemoryReport
    from rooflens.report.report import Report

@dataclass(frozen=True)
class Heading:
    """The title of what follows."""

    text: str

    def rich(self, width: int | None) -> list[Any]:
        return [text_line(self.text, style="bold")]

    def markdown(self) -> str:
        return f"## {md_text(self.text)}\n"

    def html(self) -> str:
        return f"<h2>{html.escape(self.text)}</h2>"


@dataclass(frozen=True)
class Labels:
    """``(label, text)`` pairs: an aligned grid of labels and the text beside them."""

    pairs: Sequence[tuple[str, str]]

    def rich(self, width: int | None) -> list[Any]:
        return [label_grid(list(self.pairs))]

    def markdown(self) -> str:
        return "".join(f"- **{md_text(label)}**: {md_text(text)}\n" for label, text in self.pairs)

    def html(self) -> str:
        return html_labels(self.pairs)


@dataclass(frozen=True)
class Grid:
    """A table of strings under ``headers``; the ``numeric`` columns are right-aligned."""

    headers: Sequence[str]
    rows: Sequence[Sequence[str]]
    numeric: frozenset[str] = frozenset()

    def rich(self, width: int | None) -> list[Any]:
        return [grid_table(tuple(self.headers), [list(r) for r in self.rows], self.numeric)]

    def markdown(self) -> str:
        return grid_markdown(self.headers, self.rows, self.numeric)

    def html(self) -> str:
        return grid_html(self.headers, self.rows, self.numeric)


@dataclass(frozen=True)
class Note:
    """A sentence or paragraph (wrapped to the width in the table format)."""

    text: str

    def rich(self, width: int | None) -> list[Any]:
        return [text_line(self.text)]

    def markdown(self) -> str:
        return md_text(self.text) + "\n"

    def html(self) -> str:
        return f"<p>{html.escape(self.text)}</p>"


@dataclass(frozen=True)
class Pre:
    """Lines whose columns line up: never wrapped, fixed-width everywhere."""

    lines: Sequence[str]

    def rich(self, width: int | None) -> list[Any]:
        return [text_line(line, wrap=False) for line in self.lines]

    def markdown(self) -> str:
        return "```\n" + "".join(f"{line}\n" for line in self.lines) + "```\n"

    def html(self) -> str:
        return "<pre>" + html.escape("\n".join(self.lines)) + "</pre>"


@dataclass(frozen=True)
class Gap:
    """An empty line in the table format (Markdown and HTML separate blocks on their own)."""

    def rich(self, width: int | None) -> list[Any]:
        return [text_line("")]

    def markdown(self) -> str:
        return ""

    def html(self) -> str:
        return ""


@dataclass(frozen=True)
class ReportView:
    """A whole Report: header, module table (down to ``depth``) and footer."""

    report: Report
    depth: int | None = None
    byte_unit: ByteUnit = ByteUnit.SI

    def rich(self, width: int | None) -> list[Any]:
        return renderables(self.report, depth=self.depth, byte_unit=self.byte_unit, width=width)

    def markdown(self) -> str:
        return to_markdown(self.report, self.depth, self.byte_unit)

    def html(self) -> str:
        return report_body(self.report, depth=self.depth, byte_unit=self.byte_unit)


@dataclass(frozen=True)
class Interactive:
    """HTML only (the other formats show nothing of it): the interactive report of ``report``, with its
    rooflines on ``devices`` (other Reports of the model) and the timeline of ``memory``."""

    report: Report
    devices: Sequence[Report] = ()
    memory: MemoryReport | None = None
    depth: int | None = None
    byte_unit: ByteUnit = ByteUnit.SI

    def rich(self, width: int | None) -> list[Any]:
        return []

    def markdown(self) -> str:
        return ""

    def html(self) -> str:
        return report_body(self.report, memory=self.memory, devices=self.devices, depth=self.depth,
                           byte_unit=self.byte_unit)


@dataclass(frozen=True)
class MemoryTimeline:
    """HTML only: the chart of a MemoryReport's live memory, operator by operator."""

    memory: MemoryReport
    byte_unit: ByteUnit = ByteUnit.SI

    def rich(self, width: int | None) -> list[Any]:
        return []

    def markdown(self) -> str:
        return ""

    def html(self) -> str:
        return memory_fragment(self.memory, self.byte_unit)


Block = Heading | Labels | Grid | Note | Pre | Gap | ReportView | Interactive | MemoryTimeline


@dataclass(frozen=True)
class Document:
    """What one command shows: ``blocks`` for table, Markdown and HTML; ``data()`` for JSON (base units);
    ``csv()`` and ``toml()`` where the output has such a form."""

    title: str
    blocks: Sequence[Block]
    data: Callable[[], Any]
    csv: Callable[[], str] | None = None
    toml: Callable[[], str] | None = None

    def formats(self) -> tuple[str, ...]:
        """The names of :data:`RENDERERS` this document can be written in."""
        return tuple(f for f in RENDERERS if (f != "csv" or self.csv) and (f != "toml" or self.toml))


def report_document(report: Report, depth: int | None = None, byte_unit: ByteUnit | None = None) -> Document:
    """One Report: its table (or Markdown, HTML) with header and footer, its JSON, its CSV of modules.

    ``byte_unit``: MB or MiB in every format; CSV gives plain bytes when it is None (the others MB).
    """
    return Document(
        title=f"rooflens: {report.model}",
        blocks=(ReportView(report, depth, byte_unit or ByteUnit.SI),),
        data=report.to_dict,
        csv=lambda: report.to_csv(byte_unit=byte_unit),
    )


def rich_items(doc: Document, width: int | None = None) -> list[Any]:
    """The document as rich renderables (``width``: the console's, for the tables that give way to it)."""
    return [item for block in doc.blocks for item in block.rich(width)]


def print_document(doc: Document, file: Any = None) -> None:
    """The ``table`` format on a terminal (``file``: default standard output): colour, tables at its width."""
    console = terminal_console(file)
    print_items(rich_items(doc, console.width), console=console)


def render_table(doc: Document, width: int = DEFAULT_WIDTH) -> str:
    """Plain text ``width`` columns wide: no colour, no terminal codes."""
    return plain_text(rich_items(doc, width), width=width)


def render_json(doc: Document, width: int = DEFAULT_WIDTH) -> str:
    return json.dumps(doc.data(), indent=2) + "\n"


def render_csv(doc: Document, width: int = DEFAULT_WIDTH) -> str:
    if doc.csv is None:
        raise InputError(f"this output ({doc.title}) has no CSV form; choose one of {', '.join(doc.formats())}")
    return doc.csv()


def render_markdown(doc: Document, width: int = DEFAULT_WIDTH) -> str:
    return "\n".join(text for text in (block.markdown() for block in doc.blocks) if text)


def render_html(doc: Document, width: int = DEFAULT_WIDTH) -> str:
    """A self-contained HTML page (styles and scripts inline): the page of ``Report.to_html``."""
    blocks = doc.blocks[1:] if doc.blocks and doc.blocks[0] == Heading(doc.title) else doc.blocks  # the <h1>
    return page(doc.title, "\n".join(text for text in (block.html() for block in blocks) if text))


def render_toml(doc: Document, width: int = DEFAULT_WIDTH) -> str:
    if doc.toml is None:
        raise InputError(f"this output ({doc.title}) has no TOML form; choose one of {', '.join(doc.formats())}")
    return doc.toml()


Renderer = Callable[[Document, int], str]

# Every output format by name, in the order the command line lists them.
RENDERERS: dict[str, Renderer] = {
    "table": render_table,
    "json": render_json,
    "csv": render_csv,
    "markdown": render_markdown,
    "html": render_html,
    "toml": render_toml,
}
FORMATS = tuple(RENDERERS)
