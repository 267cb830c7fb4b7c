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

from rooflens.report.units import ByteUnit, count, nbytes, seconds_text, si, si3
from rooflens.types import Cost, ModuleNode, TensorKind

if TYPE_CHECKING:
    from rooflens.analysis.roofline import Timing
    from rooflens.hardware.spec import HardwareSpec
    from rooflens.measurement import Achieved, Measurement
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
    backward: Cost | None = None  # the backward pass's part of ``cost``, when it was analysed
    timing: Timing | None = None  # roofline times, when the report has hardware
    share_of_time: float | None = None  # of the model's roofline time
    ridge_point: float | None = None  # of the device, FLOP/B
    calibrated_seconds: float | None = None  # calibrated estimate, when the device was measured


def columns(report: Report) -> tuple[str, ...]:
    """The table's columns: the roofline ones when the report has hardware (with the calibrated estimate
    when the device was measured); backward FLOPs when analysed."""
    cols = ROOFLINE_COLUMNS if report.hardware is not None else COLUMNS
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
    """The module's name with its call count when it ran more than once (``'block ×2'``)."""
    return f"{row.name} ×{row.calls}" if row.calls > 1 else row.name


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
        ("Precision", precision_text(report)),
        *([("Pass", BACKWARD_TEXT)] if report.backward else []),
        *([("Hardware", hardware_text(report))] if report.hardware is not None else []),
        ("Units", units_text(byte_unit)),
    ]


BACKWARD_TEXT = (
    "forward + backward of loss = sum of the outputs (gradients of the parameters that require grad, counted "
    "from the backward operators); numbers are both passes together, Bwd FLOPs the backward's part"
)


def widths_text(weight_bits: int | None, act_bits: int | None) -> str:
    if weight_bits is None and act_bits is None:
        return "tensors at their dtype's width in memory"
    w = f"{weight_bits}-bit" if weight_bits is not None else "dtype-width"
    a = f"{act_bits}-bit" if act_bits is not None else "dtype-width"
    return f"floating-point weights {w}, activations {a} in memory (integer tensors at their own width)"


def precision_text(report: Report) -> str:
    return f"{report.precision.value} compute; {widths_text(report.weight_bits, report.act_bits)}"


def hardware_text(report: Report) -> str:
    roof = report.roofline
    hw = roof.hardware
    used = roof.used_precision.value
    return (
        f"{hw.name} ({hw.id}): {used} peak {si(roof.peak_flops_per_s, 'FLOP/s')} · "
        f"bandwidth {si(roof.bandwidth_bytes_per_s, 'B/s')} · ridge point {roof.ridge_point:.1f} FLOP/B"
    )


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
    if report.weight_bits is not None:
        size += f"; {nbytes(report.weight_bytes, byte_unit)} at {report.weight_bits}-bit weights"
    uncalled = list(report.uncalled_modules)
    uncalled_text = ", ".join(p or "<root>" for p in uncalled[:MAX_LISTED]) or "none"
    if len(uncalled) > MAX_LISTED:
        uncalled_text += f" and {len(uncalled) - MAX_LISTED} more"
    passes = []
    if report.backward:
        f, b = report.total("forward"), report.total("backward")
        ratio = f"{b.flops / f.flops:.2f}" if f.flops else "-"
        passes.append(("Passes", f"forward FLOPs {si(f.flops)} · backward FLOPs {si(b.flops)} ({ratio} x forward) · "
                       f"backward read {nbytes(b.bytes_read, byte_unit)} · written {nbytes(b.bytes_written, byte_unit)}"))
    return [
        (
            "Total",
            f"MACs {si(t.macs)} · FLOPs {si(t.flops)} · read {nbytes(t.bytes_read, byte_unit)} · "
            f"written {nbytes(t.bytes_written, byte_unit)} · intensity {t.intensity:.2f} FLOPs/byte",
        ),
        *passes,
        (
            "Parameters",
            f"{count(p.total)}{f' ({si(p.total)})' if p.total >= 1000 else ''} · trainable {count(p.trainable)} · "
            f"non-trainable {count(p.non_trainable)} · non-zero {nonzero}",
        ),
        ("Model size", size),
        *roofline_lines(report, byte_unit),
        *calibrated_lines(report),
        *measured_lines(report),
        ("Buffers", f"{count(p.buffers)} elements ({nbytes(p.buffer_bytes, byte_unit)})"),
        (UNSUPPORTED_LABEL, unsupported_text(report)),
        ("Uncalled modules", uncalled_text),
        ("Diagnostics", "; ".join(report.diagnostics) or "none"),
    ]


TOP_OPERATORS = 5  # operators listed by share of the roofline time


def roofline_lines(report: Report, byte_unit: ByteUnit = ByteUnit.SI) -> list[tuple[str, str]]:
    """The roofline's totals, when the report has hardware: time, bound share, intensity, top operators."""
    if report.hardware is None:
        return []
    roof = report.roofline
    t = roof.total
    share = roof.bound_share()
    total = t.seconds or 1.0
    top = ", ".join(
        f"{o.op} {100 * o.timing.seconds / total:.1f}% ({o.timing.bound.value})"
        for o in roof.by_operator(report.records)[:TOP_OPERATORS] if o.timing.seconds
    )
    fits = ""
    if roof.hardware.memory_bytes is not None:
        verdict = "fit in" if report.weight_bytes <= roof.hardware.memory_bytes else "do NOT fit in"
        fits = f"; weights ({nbytes(report.weight_bytes, byte_unit)}) {verdict} its {nbytes(roof.hardware.memory_bytes, byte_unit)}"
    lines = [
        (
            "Roofline time",
            f"{seconds_text(t.seconds)}: the sum over operators of max(FLOPs/peak, bytes/bandwidth), a lower "
            "bound for an eager run (no launch overhead, every kernel at its roof)",
        ),
        (
            "Bound share",
            f"memory-bound {100 * share['memory']:.1f}% of the time, compute-bound {100 * share['compute']:.1f}%",
        ),
        (
            "Whole model",
            f"intensity {intensity_text(t.intensity)} FLOP/B = {t.intensity / roof.ridge_point:.2f} x ridge; "
            f"{si(t.flops_per_s, 'FLOP/s')} at roofline time = {100 * t.flops_per_s / roof.peak_flops_per_s:.1f}% "
            f"of peak{fits}",
        ),
        ("Most time", top or "none"),
    ]
    if roof.notes:
        lines.append(("Roofline notes", "; ".join(roof.notes)))
    return lines


def calibrated_lines(report: Report) -> list[tuple[str, str]]:
    """The calibrated estimate, when the device was measured: total, its parts, against the roofline."""
    cal = report.calibrated
    if cal is None:
        return []
    roof = report.roofline.total.seconds
    ratio = f" = {cal.total_seconds / roof:.2f} x the roofline time" if roof else ""
    kinds = ", ".join(f"{k} {100 * v / cal.total_seconds:.0f}%" for k, v in list(cal.by_kind().items())[:5])
    extra = cal.calibration.hardware.extra
    when = f" of {extra['date']}" if extra.get("date") else ""
    lines = [
        (
            "Calibrated time",
            f"{seconds_text(cal.total_seconds)}{ratio}: an estimate of an eager run, per operator max(FLOPs / "
            f"(peak x efficiency), bytes / (bandwidth x efficiency)) + overhead, from the device's micro-benchmarks{when}",
        ),
        (
            "Calibrated parts",
            f"compute {seconds_text(cal.compute_seconds)} · memory {seconds_text(cal.memory_seconds)} · "
            f"per-operator overhead {seconds_text(cal.overhead_seconds)} · by kind: {kinds or 'none'}",
        ),
    ]
    if cal.notes:
        lines.append(("Calibration notes", "; ".join(cal.notes)))
    return lines


def measurement_text(m: Measurement) -> str:
    threads = f", {m.threads} threads" if m.threads else ""
    return (
        f"median {seconds_text(m.median_seconds)} (p90 {seconds_text(m.p90_seconds)}, p99 "
        f"{seconds_text(m.p99_seconds)}, mean {seconds_text(m.mean_seconds)} ± {seconds_text(m.std_seconds)}) "
        f"over {m.iters} runs on {m.device}{threads} · {m.throughput_per_s:.1f} samples/s at batch {m.batch_size}"
    )


def measured_lines(report: Report) -> list[tuple[str, str]]:
    """Measured latency and what it achieved, when the report was measured."""
    m, a = report.measurement, report.achieved
    if m is None or a is None:
        return []
    text = f"{si(a.flops_per_s, 'FLOP/s')} · {si(a.bytes_per_s, 'B/s')}"
    if a.efficiency is not None and a.compute_utilisation is not None and a.bandwidth_utilisation is not None:
        text += (f" · {100 * a.compute_utilisation:.1f}% of the peak, {100 * a.bandwidth_utilisation:.1f}% of the "
                 f"bandwidth · roofline / measured = {100 * a.efficiency:.1f}%")
    return [("Measured", measurement_text(m)), ("Achieved", text)]


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
            **({"backward_flops": row.backward.flops} if row.backward is not None else {}),
            "share_of_macs": round(row.share_of_macs, 6) if row.share_of_macs is not None else "",
            "output_shape": ";".join(shape_text(s, "x") for s in row.output_shapes),
        }
        if row.timing is not None:
            t = row.timing
            rec.update(
                intensity=round(t.intensity, 6),
                ridge_ratio=round(t.intensity / row.ridge_point, 6) if row.ridge_point else "",
                bound=t.bound.value,
                roofline_seconds=t.seconds,
                compute_seconds=t.compute_seconds,
                memory_seconds=t.memory_seconds,
                memory_bound_share=round(t.memory_bound_share, 6),
                share_of_time=round(row.share_of_time, 6) if row.share_of_time is not None else "",
            )
        if row.calibrated_seconds is not None:
            rec["calibrated_seconds"] = row.calibrated_seconds
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
    lines += ["", f"_{_md(table_note(depth, report.hardware is not None))}._", ""]
    cols = columns(report)
    lines.append("| " + " | ".join(cols) + " |")
    lines.append("| " + " | ".join("---:" if c in NUMERIC_COLUMNS else "---" for c in cols) + " |")
    for row in module_rows(report, depth):
        cells = row_cells(row, byte_unit, cols)
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
    cols = columns(report)
    head = "".join(
        f"<th style='text-align:{'right' if c in NUMERIC_COLUMNS else 'left'}'>{html.escape(c)}</th>" for c in cols
    )
    body = []
    for row in module_rows(report, depth):
        cells = row_cells(row, byte_unit, cols)
        tds = [f"<td style='text-align:left;font-family:monospace;white-space:pre'>"
               f"{html.escape(row.prefix + cells[0])}</td>"]
        for col, cell in zip(cols[1:], cells[1:], strict=True):
            align = "right" if col in NUMERIC_COLUMNS else "left"
            tds.append(f"<td style='text-align:{align}'>{html.escape(cell)}</td>")
        body.append("<tr>" + "".join(tds) + "</tr>")
    return (
        "<div class='rooflens-report'>"
        f"{_dl(header_lines(report, byte_unit))}"
        f"<p><em>{html.escape(table_note(depth, report.hardware is not None))}.</em></p>"
        f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
        f"{_dl(footer_lines(report, byte_unit))}"
        "</div>"
    )


# ---- hardware catalogue and device comparison ------------------------------------------------------

HW_PEAKS = ("fp32", "fp16", "bf16", "int8")  # `hw show` has them all
HW_COLUMNS = ("ID", "Name", "Kind", "Memory", "Bandwidth", *(p.upper() for p in HW_PEAKS), "Ridge")
HW_NUMERIC = frozenset({"Memory", "Bandwidth", *(p.upper() for p in HW_PEAKS), "Ridge"})
HW_NOTE = ("Dense peaks in FLOP/s (OP/s for INT8), T = 1e12; bandwidth in B/s; Ridge = peak / bandwidth in FLOP/B "
           "at {precision} (or the precision the device falls back to); - = not available; "
           "`rooflens hw show ID` gives every precision and the sources")


def hardware_rows(specs: Sequence[HardwareSpec], precision: str = "fp32", byte_unit: ByteUnit = ByteUnit.SI) -> list[list[str]]:
    """One row per device, :data:`HW_COLUMNS` in order."""
    rows = []
    for s in specs:
        peaks = {p.value: si3(v) for p, v in s.peak_flops_per_s.items()}
        if s.bandwidth_bytes_per_s is None:
            ridge, bandwidth = "-", "unpublished"
        else:
            used, _ = s.resolve(precision)
            ridge = f"{s.ridge_point(used):.1f}" + ("" if used.value == precision else f" ({used.value})")
            bandwidth = si3(s.bandwidth_bytes_per_s, "B/s")
        memory = (si3(s.memory_bytes, "B") if byte_unit is ByteUnit.SI else nbytes(s.memory_bytes, byte_unit, 0)) \
            if s.memory_bytes else "-"
        rows.append([
            s.id, s.name, s.kind.value, memory, bandwidth,
            *(peaks.get(p, "-") for p in HW_PEAKS), ridge,
        ])
    return rows


def hardware_lines(s: HardwareSpec, byte_unit: ByteUnit = ByteUnit.SI) -> list[tuple[str, str]]:
    """Every field of one device as ``(label, text)`` pairs; peaks with their ridge points."""
    bw = s.bandwidth_bytes_per_s
    lines = [
        ("ID", s.id + (f" (aliases: {', '.join(s.aliases)})" if s.aliases else "")),
        ("Name", s.name),
        ("Vendor", s.vendor),
        ("Kind", s.kind.value),
        ("Memory", nbytes(s.memory_bytes, byte_unit) if s.memory_bytes else "not given"),
        ("On-chip", nbytes(s.onchip_bytes, byte_unit) if s.onchip_bytes else "not given"),
        ("Bandwidth", si(bw, "B/s") if bw else "unpublished: give one with --bandwidth"),
    ]
    for p, v in s.peak_flops_per_s.items():
        ridge = f" · ridge point {v / bw:.1f} FLOP/B" if bw else ""
        lines.append((f"Peak {p.value}", f"{si(v, 'OP/s' if p.value.startswith('int') else 'FLOP/s')} (dense){ridge}"))
    lines.append(("Source", s.source))
    if s.notes:
        lines.append(("Notes", s.notes))
    curves = []
    for k, v in s.extra.items():
        if isinstance(v, list) and v and all(isinstance(row, list) for row in v):
            curves.append(f"{k} ({len(v)})")  # a micro-benchmark curve: rows of numbers, see microbench.py
        elif isinstance(v, float) and k.endswith("_seconds"):
            lines.append((k, seconds_text(v)))
        elif isinstance(v, float) and k.endswith("_bytes_per_s"):
            lines.append((k, si(v, "B/s")))
        else:
            lines.append((k, str(v)))
    if curves:
        lines.append(("Curves", "micro-benchmark points: " + ", ".join(curves)))
    return lines


COMPARE_COLUMNS = (
    "Device", "Precision", "Peak", "Bandwidth", "Ridge", "Roofline time", "Memory-bound", "FLOP/B", "% of peak",
    "Weights fit",
)
COMPARE_NUMERIC = frozenset({
    "Peak", "Bandwidth", "Ridge", "Roofline time", "Calibrated", "Memory-bound", "FLOP/B", "% of peak",
})


def comparison_columns(reports: Sequence[Report]) -> tuple[str, ...]:
    """:data:`COMPARE_COLUMNS`, with the calibrated estimate after the roofline time when a device was measured."""
    if all(r.calibrated is None for r in reports):
        return COMPARE_COLUMNS
    i = COMPARE_COLUMNS.index("Roofline time") + 1
    return (*COMPARE_COLUMNS[:i], "Calibrated", *COMPARE_COLUMNS[i:])


def comparison_records(reports: Sequence[Report]) -> list[dict[str, Any]]:
    """One dict per device (base units): the model's roofline time, bound share and intensity on it."""
    out = []
    for r in reports:
        roof = r.roofline
        hw = roof.hardware
        t = roof.total
        out.append({
            "device": hw.id,
            "name": hw.name,
            "precision": roof.precision.value,
            "used_precision": roof.used_precision.value,
            "peak_flops_per_s": roof.peak_flops_per_s,
            "bandwidth_bytes_per_s": roof.bandwidth_bytes_per_s,
            "ridge_point": roof.ridge_point,
            "roofline_seconds": t.seconds,
            "calibrated_seconds": r.calibrated.total_seconds if r.calibrated is not None else None,
            "memory_bound_share": t.memory_bound_share,
            "intensity": t.intensity,
            "share_of_peak": t.flops_per_s / roof.peak_flops_per_s,
            "weight_bytes": r.weight_bytes,
            "memory_bytes": hw.memory_bytes,
            "weights_fit": None if hw.memory_bytes is None else r.weight_bytes <= hw.memory_bytes,
            "notes": list(roof.notes),
        })
    return out


def comparison_rows(reports: Sequence[Report]) -> list[list[str]]:
    """:func:`comparison_columns` per device, as display strings."""
    calibrated = comparison_columns(reports) != COMPARE_COLUMNS
    rows = []
    for rec in comparison_records(reports):
        used = rec["used_precision"]
        precision = used if used == rec["precision"] else f"{used} (for {rec['precision']})"
        fit = {None: "?", True: "yes", False: "NO"}[rec["weights_fit"]]
        est = rec["calibrated_seconds"]
        rows.append([
            rec["device"], precision, si3(rec["peak_flops_per_s"]), si3(rec["bandwidth_bytes_per_s"], "B/s"),
            f"{rec['ridge_point']:.1f}", seconds_text(rec["roofline_seconds"]),
            *([seconds_text(est) if est is not None else "-"] if calibrated else []),
            f"{100 * rec['memory_bound_share']:.1f}%", intensity_text(rec["intensity"]),
            f"{100 * rec['share_of_peak']:.1f}%", fit,
        ])
    return rows


def grid_csv(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(headers)
    writer.writerows(rows)
    return buf.getvalue()


def grid_markdown(headers: Sequence[str], rows: Iterable[Sequence[str]], numeric: frozenset[str] = frozenset()) -> str:
    lines = ["| " + " | ".join(headers) + " |",
             "| " + " | ".join("---:" if h in numeric else "---" for h in headers) + " |"]
    lines += ["| " + " | ".join(_md(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


# ---- measurement ------------------------------------------------------------------------------------

BENCH_NUMERIC = frozenset({
    "Batch", "Median", "p90", "p99", "Mean", "Std", "Samples/s", "FLOP/s", "Bytes/s", "Roofline", "Efficiency",
    "% peak", "Measured", "Lost", "Records", "Calibrated", "Error",
})
BENCH_NOTE = ("Latency per forward call (the first call is never timed); FLOP/s and Bytes/s: counted work / "
              "median; Efficiency = roofline time / measured; % peak = achieved FLOP/s / the device's peak; "
              "Calibrated (measured devices): the predicted latency, Error = (predicted - measured) / measured")


def bench_table(
    measurements: Sequence[Measurement], achieved: Sequence[Achieved], calibrated: Sequence[float | None] = (),
) -> tuple[tuple[str, ...], list[list[str]]]:
    """One row per batch size: latency statistics, throughput, achieved rates, roofline and efficiency, and
    the calibrated estimate (seconds per batch size, when the device was measured) and its error."""
    roof = any(a.roofline_seconds is not None for a in achieved)
    estimates = list(calibrated) or [None] * len(measurements)
    headers = ("Batch", "Median", "p90", "p99", "Mean", "Std", "Samples/s", "FLOP/s", "Bytes/s")
    if roof:
        headers += ("Roofline", "Efficiency", "% peak")
    if any(e is not None for e in estimates):
        headers += ("Calibrated", "Error")
    rows = []
    for m, a, est in zip(measurements, achieved, estimates, strict=True):
        row = [str(m.batch_size), seconds_text(m.median_seconds), seconds_text(m.p90_seconds),
               seconds_text(m.p99_seconds), seconds_text(m.mean_seconds), seconds_text(m.std_seconds),
               f"{m.throughput_per_s:.1f}", si3(a.flops_per_s), si3(a.bytes_per_s, "B/s")]
        if roof:
            row += [seconds_text(a.roofline_seconds) if a.roofline_seconds is not None else "-",
                    share_text(a.efficiency), share_text(a.compute_utilisation)]
        if "Calibrated" in headers:
            row += ["-", "-"] if est is None else [
                seconds_text(est), f"{100 * (est - m.median_seconds) / m.median_seconds:+.1f}%"]
        rows.append(row)
    return headers, rows


def profile_table(rows: Sequence[Any]) -> tuple[tuple[str, ...], list[list[str]]]:
    """Per module (``rooflens.measurement.module_rows``): measured, roofline, efficiency, achieved FLOP/s, lost."""
    headers = ("Module", "Type", "Measured", "Roofline", "Efficiency", "FLOP/s", "Lost")
    out = [[r.path or "<model>", r.type_name, seconds_text(r.measured_seconds),
            seconds_text(r.roofline_seconds) if r.roofline_seconds is not None else "-", share_text(r.efficiency),
            si3(r.achieved_flops_per_s), seconds_text(r.lost_seconds) if r.lost_seconds is not None else "-"]
           for r in rows]
    return headers, out


def profile_note(profile: Any) -> str:
    views = [e for e in profile.unmatched_events if e.aliasing]
    other = [e for e in profile.unmatched_events if not e.aliasing]
    text = (f"{profile.matched_records}/{len(profile.record_seconds)} analysed operators matched to profiled events; "
            f"{100 * profile.matched_seconds / profile.profiled_seconds if profile.profiled_seconds else 0:.1f}% of the "
            "profiled time matched")
    if other:
        text += "; not matched: " + ", ".join(f"{e.name} x{e.count}" for e in other[:8])
    if views:
        text += f"; {len(views)} view operators (not analysed: they move no data)"
    return text


# ---- memory -----------------------------------------------------------------------------------------

MEMORY_NOTE = (
    "Peak: live inputs, activations and outputs at the worst moment of the timeline (views and in-place "
    "results add nothing; a tensor is freed when its last reference goes), weights not included; allocator "
    "rounding and kernels' internal workspace are not modelled. torchsummary's figures assume 4 bytes a "
    "number and a copy of every module output for its gradient."
)


def memory_lines(mem: Any, byte_unit: ByteUnit = ByteUnit.SI) -> list[tuple[str, str]]:
    """``(label, text)`` pairs of a MemoryReport: the peak and where, the parts, the training step."""
    b = lambda n: nbytes(n, byte_unit)  # noqa: E731
    lines = [
        ("Model", mem.model),
        ("Peak", f"{b(mem.peak_bytes)} of live tensors at {mem.peak_at or '<root>'} ({mem.peak_op}); "
                 f"{b(mem.total_peak_bytes)} with {'weights, gradients and optimizer state' if mem.train else 'weights and buffers'}"),
        ("Weights", f"{b(mem.weights_bytes)} · buffers {b(mem.buffers_bytes)}"),
        ("Activations", f"{b(mem.activations_bytes)} allocated in all · {count(mem.activation_elements)} elements "
                        f"(#activations) · inputs {b(mem.inputs_bytes)} · outputs {b(mem.outputs_bytes)}"),
    ]
    if mem.train:
        lines += [
            ("Training step", f"optimizer {mem.optimizer}{' (mixed precision, fp32 master weights)' if mem.mixed_precision else ''}: "
                              f"saved activations {b(mem.saved_activation_bytes or 0)} · gradients {b(mem.gradient_bytes or 0)} · "
                              f"optimizer state {b(mem.optimizer_state_bytes or 0)} · master weights {b(mem.master_weights_bytes or 0)}"),
        ]
        if mem.checkpointed:
            lines.append(("Checkpointed", f"{', '.join(mem.checkpointed)}: recompute {si(mem.recompute_flops or 0)} FLOPs"))
    if mem.diagnostics:
        lines.append(("Diagnostics", "; ".join(mem.diagnostics)))
    return lines
