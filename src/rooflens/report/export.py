"""A whole Report as CSV (one row per module) and Markdown (HTML: :mod:`rooflens.report.html_report`)."""

from __future__ import annotations

import csv
import io
from typing import TYPE_CHECKING, Any

from rooflens.report.markup import md_code, md_text
from rooflens.report.summary import footer_lines, header_lines
from rooflens.report.table import NUMERIC_COLUMNS, ModuleRow, columns, module_rows, row_cells, shape_text, table_note
from rooflens.report.units import ByteUnit

if TYPE_CHECKING:
    from rooflens.report.report import Report

CSV_COLUMNS = (
    "path", "type", "depth", "calls", "params", "macs", "flops", "bytes_read", "bytes_written",
    "share_of_macs", "output_shape",
)


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


def markdown_name(row: ModuleRow) -> str:
    """The dotted path in Markdown (leading spaces do not survive); the root by the model's name."""
    name = md_code(row.path) if row.path else f"**{md_text(row.name)}**"
    return f"{name} ×{row.calls}" if row.calls > 1 else name


def to_markdown(report: Report, depth: int | None = None, byte_unit: ByteUnit = ByteUnit.SI) -> str:
    lines = [f"## rooflens: {md_text(report.model)}", ""]
    lines += [f"- **{label}**: {md_text(text)}" for label, text in header_lines(report, byte_unit)[1:]]
    lines += ["", f"_{md_text(table_note(depth, report.hardware is not None))}._", ""]
    cols = columns(report)
    lines.append("| " + " | ".join(cols) + " |")
    lines.append("| " + " | ".join("---:" if c in NUMERIC_COLUMNS else "---" for c in cols) + " |")
    for row in module_rows(report, depth):
        cells = row_cells(row, byte_unit, cols)
        cells[0] = markdown_name(row)
        lines.append("| " + " | ".join([cells[0]] + [md_text(c) for c in cells[1:]]) + " |")
    lines.append("")
    lines += [f"- **{label}**: {md_text(text)}" for label, text in footer_lines(report, byte_unit)]
    return "\n".join(lines) + "\n"
