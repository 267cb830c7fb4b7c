"""The module table: the module tree cut at a depth, one row per visible module, and its cells as text.

- :func:`module_rows`: the module tree cut at a depth, in definition order, with tree prefixes;
  deeper modules are folded into their ancestors (whose numbers are cumulative anyway).
- :func:`row_cells`: one row as display strings, :func:`columns` in order.

Every renderer of a :class:`~rooflens.report.report.Report` (the rich table in
:mod:`rooflens.report.terminal`, CSV, Markdown and HTML in :mod:`rooflens.report.export`) is built from
these rows, so they all show the same numbers. Nothing here imports rich or torch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rooflens.report.markup import visible_text
from rooflens.report.units import ByteUnit, nbytes, seconds_text, si
from rooflens.types import Cost, ModuleNode

if TYPE_CHECKING:
    from rooflens.analysis.roofline import Timing
    from rooflens.report.report import Report

COLUMNS = ("Module", "Type", "Params", "MACs", "FLOPs", "Read", "Written", "%MACs", "Output shape")
# With hardware: intensity, its ratio to the device's ridge point, the bound and the roofline time.
ROOFLINE_COLUMNS = (
    "Module", "Type", "Params", "FLOPs", "Read", "Written", "FLOP/B", "I/Ridge", "Bound", "Mem%", "Time",
    "%Time", "Output shape",
)
NUMERIC_COLUMNS = frozenset({
    "Params", "MACs", "FLOPs", "Bwd FLOPs", "Read", "Written", "%MACs", "FLOP/B", "I/Ridge", "Mem%", "Time", "%Time",
    "Calibrated",
})
MAX_SHAPES = 3  # output shapes shown per module in tables (detection heads return dozens)


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
    backward: Cost | None = None  # the backward pass's part of ``cost``, when it was analysed
    timing: Timing | None = None  # roofline times, when the report has hardware
    share_of_time: float | None = None  # of the model's roofline time
    ridge_point: float | None = None  # of the device, FLOP/B
    calibrated_seconds: float | None = None  # calibrated estimate, when the device was measured


def columns(report: Report) -> tuple[str, ...]:
    """The table's columns: the roofline ones when the report has hardware (with the calibrated estimate
    when the device was measured); backward FLOPs when analysed."""
    cols: tuple[str, ...] = ROOFLINE_COLUMNS if report.hardware is not None else COLUMNS
    if report.calibrated is not None:
        i = cols.index("%Time") + 1
        cols = (*cols[:i], "Calibrated", *cols[i:])
    if report.backward:
        i = cols.index("FLOPs") + 1
        cols = (*cols[:i], "Bwd FLOPs", *cols[i:])
    return cols


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
    roof = report.roofline if report.hardware is not None else None
    estimates = report.calibrated.by_module() if report.calibrated is not None else {}
    rows = []
    for path in visible:
        node = modules[path]
        timing = roof.by_module().get(path) if roof is not None else None
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
                backward=node.cumulative_backward if report.backward else None,
                timing=timing,
                share_of_time=timing.seconds / roof.total_seconds if timing and roof and roof.total_seconds else None,
                ridge_point=roof.ridge_point if roof is not None else None,
                calibrated_seconds=estimates.get(path),
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
    """The module's name (on one line) with its call count when it ran more than once (``'block ×2'``)."""
    name = visible_text(row.name)
    return f"{name} ×{row.calls}" if row.calls > 1 else name


def intensity_text(value: float) -> str:
    """FLOPs per byte with three significant digits (``0.249``, ``28.8``, ``1170``)."""
    if value == 0:
        return "0"
    if value >= 100:
        return f"{value:.0f}"
    return f"{value:.3g}"


def row_cells(row: ModuleRow, byte_unit: ByteUnit = ByteUnit.SI, cols: Sequence[str] = COLUMNS) -> list[str]:
    """The columns ``cols`` of one row as display strings (without the tree prefix)."""
    c = row.cost
    t = row.timing
    cells = {
        "Module": name_text(row),
        "Type": row.type_name,
        "Params": si(row.params),
        "MACs": si(c.macs),
        "FLOPs": si(c.flops),
        "Bwd FLOPs": si(row.backward.flops) if row.backward is not None else "-",
        "Read": nbytes(c.bytes_read, byte_unit),
        "Written": nbytes(c.bytes_written, byte_unit),
        "%MACs": share_text(row.share_of_macs),
        "Output shape": shapes_text(row.output_shapes),
        "FLOP/B": intensity_text(c.intensity),
        "I/Ridge": f"{c.intensity / row.ridge_point:.2f}" if row.ridge_point else "-",
        "Bound": t.bound.value if t is not None and t.seconds else "-",
        "Mem%": share_text(t.memory_bound_share) if t is not None and t.seconds else "-",
        "Time": seconds_text(t.seconds) if t is not None else "-",
        "%Time": share_text(row.share_of_time),
        "Calibrated": seconds_text(row.calibrated_seconds) if row.calibrated_seconds is not None else "-",
    }
    if not row.ran:
        cells = {k: (v if k in ("Module", "Type", "Params") else "-") for k, v in cells.items()}
        cells["Output shape"] = "(not called)"
    return [cells[col] for col in cols]


# ---- notes ------------------------------------------------------------------------------------------

ROOFLINE_NOTE = (
    "FLOP/B: arithmetic intensity; I/Ridge: intensity / ridge point (1 or more: compute-bound); Mem%: share of "
    "the time in memory-bound operators; Time: roofline time, the sum of max(FLOPs/peak, bytes/bandwidth) per operator"
)


def table_note(depth: int | None, roofline: bool = False) -> str:
    note = "Numbers are cumulative: a module's include its submodules'; ×N: called N times"
    if depth is not None:
        note += f"; modules deeper than depth {depth} are folded into their ancestors"
    if roofline:
        note += ". " + ROOFLINE_NOTE
    return note

