"""Rendering as a pipeline of small pure functions: Report -> rows and labelled lines -> text.

Every renderer (the rich table in :mod:`rooflens.report.terminal`, CSV, Markdown, HTML) is built from
the same pieces, so they all show the same numbers, header and footer:

- :func:`module_rows`: the module tree cut at a depth, in definition order, with tree prefixes;
  deeper modules are folded into their ancestors (whose numbers are cumulative anyway).
- :func:`row_cells`: one row as display strings, :data:`COLUMNS` in order.
- :func:`header_lines` / :func:`footer_lines`: labelled lines (model, inputs, convention, units /
  totals, parameters, size, unsupported operators, uncalled modules, diagnostics).
- :func:`to_csv`, :func:`to_markdown`, :func:`to_html`: whole documents.

Nothing here imports rich or torch.
"""

from __future__ import annotations

import csv
import html
import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rooflens.report.units import ByteUnit, count, nbytes, si
from rooflens.types import Cost, ModuleNode, TensorKind

if TYPE_CHECKING:
    from rooflens.report.report import Report

COLUMNS = ("Module", "Type", "Params", "MACs", "FLOPs", "Read", "Written", "%MACs", "Output shape")
NUMERIC_COLUMNS = frozenset({"Params", "MACs", "FLOPs", "Read", "Written", "%MACs"})
CSV_COLUMNS = (
    "path", "type", "depth", "calls", "params", "macs", "flops", "bytes_read", "bytes_written",
    "share_of_macs", "output_shape",
)
MAC_TEXT = "MACs = conv + matmul multiply-accumulates; 1 MAC = 2 FLOPs"
UNSUPPORTED_LABEL = "Unsupported operators (FLOPs not counted, bytes counted)"
MAX_SHAPES = 3  # output shapes shown per module in tables (detection heads return dozens)
MAX_LISTED = 12  # uncalled modules listed by name in the footer


@dataclass(frozen=True)
class ModuleRow:
    """One visible module: what every table renderer shows about it."""

    path: str
    name: str  # the root is shown under the model's name
    prefix: str  # tree glyphs drawn before the name ("│  ├─ ")
    type_name: str
    depth: int
    calls: int
    ran: bool  # False: neither the module nor anything below it was called
    params: int
    cost: Cost
    share_of_macs: float | None  # of the model's total MACs; None when the model has none
    output_shapes: tuple[tuple[int, ...], ...]


# ---- rows -------------------------------------------------------------------------------------------


def ran_modules(modules: Mapping[str, ModuleNode]) -> set[str]:
    """Paths of the modules that were called or have a descendant that was."""
    ran: set[str] = set()
    for path in reversed(list(modules)):  # children come after their parents
        node = modules[path]
        if node.calls > 0 or any(c in ran for c in node.children):
            ran.add(path)
    return ran


def visible_paths(modules: Mapping[str, ModuleNode], depth: int | None) -> list[str]:
    """Module paths down to ``depth`` (None: all), in definition order."""
    if depth is not None and depth < 0:
        raise ValueError(f"depth must be >= 0, got {depth}")
    return [p for p, n in modules.items() if depth is None or n.depth <= depth]


def tree_prefixes(modules: Mapping[str, ModuleNode], visible: Iterable[str]) -> dict[str, str]:
    """``path -> glyphs`` drawing the tree of the visible modules (the root gets none)."""
    shown = set(visible)
    out: dict[str, str] = {}

    def walk(path: str, lead: str) -> None:
        kids = [c for c in modules[path].children if c in shown]
        for i, child in enumerate(kids):
            last = i == len(kids) - 1
            out[child] = lead + ("└─ " if last else "├─ ")
            walk(child, lead + ("   " if last else "│  "))

    if "" in modules:
        out[""] = ""
        walk("", "")
    for path in shown:  # a tree without a root node (not built by rooflens): flat
        out.setdefault(path, "")
    return out


def module_rows(report: Report, depth: int | None = None) -> list[ModuleRow]:
    """The module tree cut at ``depth`` (0: the model only; None: every module)."""
    modules = report.by_module()
    visible = visible_paths(modules, depth)
    prefixes = tree_prefixes(modules, visible)
    ran = ran_modules(modules)
    total_macs = report.total().macs
    rows = []
    for path in visible:
        node = modules[path]
        rows.append(
            ModuleRow(
                path=path,
                name=node.name or report.model,
                prefix=prefixes.get(path, ""),
                type_name=node.type_name,
                depth=node.depth,
                calls=node.calls,
                ran=path in ran,
                params=node.params.total,
                cost=node.cumulative,
                share_of_macs=node.cumulative.macs / total_macs if total_macs else None,
                output_shapes=node.output_shapes,
            )
        )
    return rows


# ---- cells ------------------------------------------------------------------------------------------


def shape_text(shape: Sequence[int], sep: str = "×") -> str:
    """``(1, 64, 112, 112) -> '1×64×112×112'``; a scalar is ``'scalar'``."""
    return sep.join(str(d) for d in shape) if len(shape) else "scalar"


def shapes_text(shapes: Sequence[Sequence[int]], sep: str = "×", limit: int | None = MAX_SHAPES) -> str:
    """Several outputs joined by commas, the first ``limit`` of them and how many more."""
    shown = list(shapes) if limit is None else list(shapes)[:limit]
    text = ", ".join(shape_text(s, sep) for s in shown)
    if limit is not None and len(shapes) > limit:
        text += f", … (+{len(shapes) - limit})"
    return text


def share_text(share: float | None) -> str:
    if share is None:
        return "-"
    return f"{100 * share:.1f}%"


def name_text(row: ModuleRow) -> str:
    """The module's name with its call count when it ran more than once (``'block ×2'``)."""
    return f"{row.name} ×{row.calls}" if row.calls > 1 else row.name


def row_cells(row: ModuleRow, byte_unit: ByteUnit = ByteUnit.SI) -> list[str]:
    """:data:`COLUMNS` of one row as display strings (without the tree prefix)."""
    if not row.ran:
        return [name_text(row), row.type_name, si(row.params), "-", "-", "-", "-", "-", "(not called)"]
    c = row.cost
    return [
        name_text(row),
        row.type_name,
        si(row.params),
        si(c.macs),
        si(c.flops),
        nbytes(c.bytes_read, byte_unit),
        nbytes(c.bytes_written, byte_unit),
        share_text(row.share_of_macs),
        shapes_text(row.output_shapes),
    ]


# ---- header and footer ------------------------------------------------------------------------------


def inputs_text(report: Report) -> str:
    if not report.inputs:
        return "none (no tensor arguments)"
    return ", ".join(f"{shape_text(t.shape)} {t.dtype}" for t in report.inputs)


def parameter_dtypes(report: Report) -> list[str]:
    """Dtypes the parameters had in the analysed run, as the operators saw them."""
    seen: dict[str, None] = {}
    for r in report.records:
        for t in r.inputs:
            if t.kind is TensorKind.PARAMETER:
                seen.setdefault(t.dtype, None)
    return list(seen)


def executed_text(report: Report) -> str:
    if report.executed == "fake":
        return "fake (fake tensors: shapes only, nothing computed)"
    if report.executed == "real":
        return "real (the forward ran on real tensors)"
    return report.executed


def dtype_text(report: Report) -> str:
    if report.dtype:
        return f"{report.dtype} (floating-point parameters, buffers and inputs analysed at this dtype)"
    dtypes = parameter_dtypes(report)
    return f"as built ({'/'.join(dtypes)} parameters)" if dtypes else "as built"


def units_text(byte_unit: ByteUnit) -> str:
    byte = "MB = 1e6 bytes (SI)" if byte_unit is ByteUnit.SI else "MiB = 2^20 bytes (binary)"
    return f"K/M/G/T = 1e3/1e6/1e9/1e12 (SI) for counts; bytes in {byte}"


def header_lines(report: Report, byte_unit: ByteUnit = ByteUnit.SI) -> list[tuple[str, str]]:
    """``(label, text)`` pairs that open every rendering."""
    from rooflens.report.report import CONVENTION_TEXT

    return [
        ("Model", report.model),
        ("Inputs", inputs_text(report)),
        ("Convention", f"{CONVENTION_TEXT[report.convention]}; {MAC_TEXT}"),
        ("Executed", executed_text(report)),
        ("Device", report.device),
        ("Dtype", dtype_text(report)),
        ("Units", units_text(byte_unit)),
    ]


def table_note(depth: int | None) -> str:
    note = "Numbers are cumulative: a module's include its submodules'; ×N: called N times"
    if depth is not None:
        note += f"; modules deeper than depth {depth} are folded into their ancestors"
    return note


def unsupported_text(report: Report) -> str:
    ops = report.unsupported_ops()
    return ", ".join(f"{op} ×{n}" for op, n in ops.items()) if ops else "none"


def _itemsize(dtype: str) -> int | None:
    try:
        import torch
    except ImportError:  # pragma: no cover
        return None
    dt = getattr(torch, dtype, None)
    return dt.itemsize if isinstance(dt, torch.dtype) else None


def footer_lines(report: Report, byte_unit: ByteUnit = ByteUnit.SI) -> list[tuple[str, str]]:
    """``(label, text)`` pairs that close every rendering: totals, parameters, what was not counted."""
    t = report.total()
    p = report.params
    nonzero = count(p.nonzero) if p.nonzero is not None else "unknown (meta)"
    size = f"{nbytes(p.bytes, byte_unit)} (parameters at their own dtype)"
    if report.dtype and (itemsize := _itemsize(report.dtype)) is not None:
        size += f"; {nbytes(p.total * itemsize, byte_unit)} at {report.dtype}"
    uncalled = list(report.uncalled_modules)
    uncalled_text = ", ".join(p or "<root>" for p in uncalled[:MAX_LISTED]) or "none"
    if len(uncalled) > MAX_LISTED:
        uncalled_text += f" and {len(uncalled) - MAX_LISTED} more"
    return [
        (
            "Total",
            f"MACs {si(t.macs)} · FLOPs {si(t.flops)} · read {nbytes(t.bytes_read, byte_unit)} · "
            f"written {nbytes(t.bytes_written, byte_unit)} · intensity {t.intensity:.2f} FLOPs/byte",
        ),
        (
            "Parameters",
            f"{count(p.total)}{f' ({si(p.total)})' if p.total >= 1000 else ''} · trainable {count(p.trainable)} · "
            f"non-trainable {count(p.non_trainable)} · non-zero {nonzero}",
        ),
        ("Model size", size),
        ("Buffers", f"{count(p.buffers)} elements ({nbytes(p.buffer_bytes, byte_unit)})"),
        (UNSUPPORTED_LABEL, unsupported_text(report)),
        ("Uncalled modules", uncalled_text),
        ("Diagnostics", "; ".join(report.diagnostics) or "none"),
    ]


# ---- CSV --------------------------------------------------------------------------------------------


def csv_records(report: Report, byte_unit: ByteUnit | None = None) -> list[dict[str, Any]]:
    """One dict per module (every module), base units; with ``byte_unit`` bytes become MB or MiB."""
    out = []
    for row in module_rows(report):
        rec: dict[str, Any] = {
            "path": row.path,
            "type": row.type_name,
            "depth": row.depth,
            "calls": row.calls,
            "params": row.params,
            "macs": row.cost.macs,
            "flops": row.cost.flops,
            "bytes_read": row.cost.bytes_read,
            "bytes_written": row.cost.bytes_written,
            "share_of_macs": round(row.share_of_macs, 6) if row.share_of_macs is not None else "",
            "output_shape": ";".join(shape_text(s, "x") for s in row.output_shapes),
        }
        if byte_unit is not None:
            scale, suffix = (1e6, "MB") if byte_unit is ByteUnit.SI else (2**20, "MiB")
            rec = {
                (f"{k.removeprefix('bytes_')}_{suffix}" if k.startswith("bytes_") else k): (
                    round(v / scale, 6) if k.startswith("bytes_") else v
                )
                for k, v in rec.items()
            }
        out.append(rec)
    return out


def to_csv(report: Report, byte_unit: ByteUnit | None = None) -> str:
    """One row per module: path, type, depth, calls, params, macs, flops, bytes read/written, share, shape."""
    records = csv_records(report, byte_unit)
    fields = list(records[0]) if records else list(CSV_COLUMNS)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    return buf.getvalue()


# ---- Markdown ---------------------------------------------------------------------------------------


def _md(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def markdown_name(row: ModuleRow) -> str:
    """The dotted path in Markdown (leading spaces do not survive); the root by the model's name."""
    name = f"`{row.path}`" if row.path else f"**{_md(row.name)}**"
    return f"{name} ×{row.calls}" if row.calls > 1 else name


def to_markdown(report: Report, depth: int | None = None, byte_unit: ByteUnit = ByteUnit.SI) -> str:
    lines = [f"## rooflens: {_md(report.model)}", ""]
    lines += [f"- **{label}**: {_md(text)}" for label, text in header_lines(report, byte_unit)[1:]]
    lines += ["", f"_{_md(table_note(depth))}._", ""]
    lines.append("| " + " | ".join(COLUMNS) + " |")
    lines.append("| " + " | ".join("---:" if c in NUMERIC_COLUMNS else "---" for c in COLUMNS) + " |")
    for row in module_rows(report, depth):
        cells = row_cells(row, byte_unit)
        cells[0] = markdown_name(row)
        lines.append("| " + " | ".join([cells[0]] + [_md(c) for c in cells[1:]]) + " |")
    lines.append("")
    lines += [f"- **{label}**: {_md(text)}" for label, text in footer_lines(report, byte_unit)]
    return "\n".join(lines) + "\n"


# ---- HTML -------------------------------------------------------------------------------------------


def _dl(pairs: Iterable[tuple[str, str]]) -> str:
    items = "".join(
        f"<tr><th style='text-align:left'>{html.escape(k)}</th><td style='text-align:left'>{html.escape(v)}</td></tr>"
        for k, v in pairs
    )
    return f"<table>{items}</table>"


def to_html(report: Report, depth: int | None = None, byte_unit: ByteUnit = ByteUnit.SI) -> str:
    """A simple, self-contained HTML fragment (for Jupyter's ``_repr_html_``)."""
    head = "".join(
        f"<th style='text-align:{'right' if c in NUMERIC_COLUMNS else 'left'}'>{html.escape(c)}</th>" for c in COLUMNS
    )
    body = []
    for row in module_rows(report, depth):
        cells = row_cells(row, byte_unit)
        tds = [f"<td style='text-align:left;font-family:monospace;white-space:pre'>"
               f"{html.escape(row.prefix + cells[0])}</td>"]
        for col, cell in zip(COLUMNS[1:], cells[1:], strict=True):
            align = "right" if col in NUMERIC_COLUMNS else "left"
            tds.append(f"<td style='text-align:{align}'>{html.escape(cell)}</td>")
        body.append("<tr>" + "".join(tds) + "</tr>")
    return (
        "<div class='rooflens-report'>"
        f"{_dl(header_lines(report, byte_unit))}"
        f"<p><em>{html.escape(table_note(depth))}.</em></p>"
        f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
        f"{_dl(footer_lines(report, byte_unit))}"
        "</div>"
    )
