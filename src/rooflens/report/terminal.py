"""The terminal rendering: a rich table of the module tree between a header and a footer.

``renderables(report)`` gives rich objects (``rich.print(report)`` uses them through
``Report.__rich_console__``); ``render_text(report, width=...)`` gives plain text at a fixed width
without colour, for files and golden tests. The blocks of :mod:`rooflens.report.document` are drawn
with the helpers here too (:func:`label_grid`, :func:`grid_table`, :func:`text_line`). rich is imported
inside the functions only, so that ``import rooflens`` stays light.
"""

from __future__ import annotations

from io import StringIO
from typing import TYPE_CHECKING, Any

from rooflens.report.summary import UNSUPPORTED_LABEL, footer_lines, header_lines
from rooflens.report.table import COLUMNS, NUMERIC_COLUMNS, ModuleRow, columns, module_rows, row_cells, table_note
from rooflens.report.units import ByteUnit

if TYPE_CHECKING:
    from rooflens.report.report import Report

DEFAULT_WIDTH = 140


# Footer lines with long labels are printed as "Label: text" lines rather than in the aligned grid.
_LINE_LABELS = frozenset({UNSUPPORTED_LABEL, "Uncalled modules", "Diagnostics", "Roofline notes", "Calibration notes"})


def label_grid(pairs: list[tuple[str, str]]) -> Any:
    """A two-column grid: bold labels, values that wrap under themselves."""
    from rich.table import Table

    grid = Table.grid(padding=(0, 1))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    for label, text in pairs:
        grid.add_row(f"{label}:", text)
    return grid


def _label_line(label: str, text: str) -> Any:
    """``Label: text`` on its own line(s); highlighted when there is something to report."""
    from rich.text import Text

    line = Text()
    line.append(f"{label}: ", style="bold")
    line.append(text, style="yellow" if text != "none" else "")
    return line


def _footer(pairs: list[tuple[str, str]]) -> list[Any]:
    grid = [(k, v) for k, v in pairs if k not in _LINE_LABELS]
    return [label_grid(grid), *(_label_line(k, v) for k, v in pairs if k in _LINE_LABELS)]


_GAP = 3  # characters between two columns (padding on each side and the box's blank separator)
_SQUEEZABLE = ("Type", "Output shape")  # columns that give way, in the order they are dropped (last first)
_MIN_SQUEEZED = 6


def fit_columns(widest: dict[str, int], width: int) -> dict[str, int]:
    """Column widths for a table of at most ``width`` characters.

    Module and the numbers keep their widest cell; Type and Output shape share what is left (cut
    with "…"), and are dropped when they would be narrower than a few characters: Output shape first.
    """
    fixed = {c: w for c, w in widest.items() if c not in _SQUEEZABLE}
    squeezable = [c for c in _SQUEEZABLE if c in widest]
    while True:
        cols = len(fixed) + len(squeezable)
        room = width - sum(fixed.values()) - _GAP * (cols - 1)
        want = sum(widest[c] for c in squeezable)
        if room >= want:
            return {c: widest[c] for c in widest if c in fixed or c in squeezable}
        if squeezable and room >= _MIN_SQUEEZED * len(squeezable):
            out = dict(fixed)
            left = room
            for i, c in enumerate(squeezable):  # shares in proportion to their widest cells; the last gets the rest
                if i == len(squeezable) - 1:
                    out[c] = min(widest[c], left)
                else:
                    share = room * widest[c] // want
                    out[c] = max(_MIN_SQUEEZED, min(widest[c], share, left - _MIN_SQUEEZED * (len(squeezable) - 1 - i)))
                left -= out[c]
            return {c: out[c] for c in widest if c in out}
        if not squeezable:
            return fixed  # narrower than the numbers: rich crops what does not fit
        squeezable.pop()


def module_table(
    rows: list[ModuleRow],
    byte_unit: ByteUnit = ByteUnit.SI,
    *,
    width: int | None = None,
    title: str | None = None,
    cols: tuple[str, ...] = COLUMNS,
) -> Any:
    """The module tree as a rich Table, one line per visible module.

    Numbers and the tree are never cut: their columns are as wide as their widest cell. With a
    ``width``, the Type and Output shape columns give way (cut with "…", then dropped) to fit it.
    """
    from rich import box
    from rich.table import Table
    from rich.text import Text

    cells = [row_cells(row, byte_unit, cols) for row in rows]
    widest = {col: max([len(col), *(len(c[i]) for c in cells)]) for i, col in enumerate(cols)}
    widest["Module"] = max([len("Module"), *(len(row.prefix + c[0]) for row, c in zip(rows, cells, strict=True))])
    widths = fit_columns(widest, width) if width is not None else widest

    table = Table(box=box.SIMPLE_HEAD, title=title, title_justify="left", pad_edge=False, show_edge=False)
    shown = [i for i, col in enumerate(cols) if col in widths]
    for i in shown:
        col = cols[i]
        table.add_column(col, justify="right" if col in NUMERIC_COLUMNS else "left", no_wrap=True,
                         overflow="ellipsis", width=widths[col])
    for row, row_text in zip(rows, cells, strict=True):
        name = Text()
        name.append(row.prefix, style="dim")
        name.append(row_text[0], style="bold" if row.depth == 0 else "")
        values: list[Any] = [name, *row_text[1:]]
        table.add_row(*(values[i] for i in shown), style="" if row.ran else "dim")
    return table


def renderables(
    report: Report, *, depth: int | None = None, byte_unit: ByteUnit = ByteUnit.SI, width: int | None = None
) -> list[Any]:
    """Header, table and footer as rich renderables (in this order); ``width``: the console's."""
    from rich.text import Text

    return [
        label_grid(header_lines(report, byte_unit)),
        Text(""),
        module_table(module_rows(report, depth), byte_unit, width=width, cols=columns(report)),
        Text(table_note(depth, report.hardware is not None) + ".", style="italic dim"),
        Text(""),
        *_footer(footer_lines(report, byte_unit)),
    ]


def render_text(
    report: Report, *, depth: int | None = None, byte_unit: ByteUnit = ByteUnit.SI, width: int = DEFAULT_WIDTH
) -> str:
    """Plain text at a fixed ``width``, no colour and no terminal codes (for files and golden tests)."""
    return plain_text(renderables(report, depth=depth, byte_unit=byte_unit, width=width), width=width)


def terminal_console(file: Any = None) -> Any:
    """A rich console for a terminal (``file``: default standard output): colour, its width, text as given."""
    from rich.console import Console

    return Console(file=file, highlight=False, emoji=False, markup=False)


def plain_text(items: list[Any], *, width: int = DEFAULT_WIDTH) -> str:
    """rich renderables as plain text ``width`` columns wide: no colour, trailing spaces stripped."""
    from rich.console import Console

    buf = StringIO()
    console = Console(
        file=buf, width=width, color_system=None, force_terminal=False, force_jupyter=False,
        no_color=True, highlight=False, emoji=False, markup=False, legacy_windows=False, soft_wrap=False,
    )
    for item in items:
        console.print(item)
    return "\n".join(line.rstrip() for line in buf.getvalue().splitlines()) + "\n"


def print_items(items: list[Any], *, console: Any = None) -> None:
    """rich renderables to the terminal (``console``: default :func:`terminal_console`), with colour."""
    out = console or terminal_console()
    for item in items:
        out.print(item)


def text_line(text: str, *, style: str = "", wrap: bool = True) -> Any:
    """A line of text (wrapped at the width unless ``wrap`` is False: then cut)."""
    from rich.text import Text

    return Text(text, style=style, no_wrap=not wrap, overflow="fold" if wrap else "crop")


def grid_table(
    headers: tuple[str, ...], rows: list[list[str]], numeric: frozenset[str] = frozenset(), *, title: str | None = None
) -> Any:
    """A plain rich table of strings (hardware lists, device comparisons): numbers right-aligned, never cut."""
    from rich import box
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD, title=title, title_justify="left", pad_edge=False, show_edge=False)
    for i, h in enumerate(headers):  # the first column (an id) and numbers are never cut
        table.add_column(h, justify="right" if h in numeric else "left", no_wrap=h in numeric or i == 0)
    for row in rows:
        table.add_row(*row)
    return table
