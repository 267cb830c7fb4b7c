"""The hardware catalogue in words: one row per device (`rooflens hw list`) and every field of one device
(`rooflens hw show`, `rooflens hw bench`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rooflens.analysis.predictor import has_predictor, predictor_of
from rooflens.hardware.spec import HardwareSpec
from rooflens.report.document import Document, Gap, Grid, Labels, Note
from rooflens.report.markup import grid_csv
from rooflens.report.units import ByteUnit, bytes3, nbytes, rate, seconds_text, si, si3

HW_PEAKS = ("fp32", "fp16", "bf16", "int8")  # `hw show` has them all
HW_COLUMNS = ("ID", "Name", "Kind", "Memory", "Bandwidth", *(p.upper() for p in HW_PEAKS), "Ridge")
HW_NUMERIC = frozenset({"Memory", "Bandwidth", *(p.upper() for p in HW_PEAKS), "Ridge"})
HW_NOTE = ("Dense peaks in FLOP/s (OP/s for INT8), T = 1e12; bandwidth in B/s; Ridge = peak / bandwidth in FLOP/B "
           "at {precision} (or the precision the device falls back to); - = not available; "
           "`rooflens hw show ID` gives every precision and the sources")


def hardware_rows(
    specs: Sequence[HardwareSpec], precision: str = "fp32", byte_unit: ByteUnit = ByteUnit.SI
) -> list[list[str]]:
    """One row per device, :data:`HW_COLUMNS` in order."""
    rows = []
    for s in specs:
        peaks = {p.value: si3(v) for p, v in s.peak_flops_per_s.items()}
        if s.bandwidth_bytes_per_s is None:
            ridge, bandwidth = "-", "unpublished"
        else:
            used, _ = s.resolve(precision)
            ridge = f"{s.ridge_point(used):.1f}" + ("" if used.value == precision else f" ({used.value})")
            bandwidth = bytes3(s.bandwidth_bytes_per_s, byte_unit, "B/s")
        memory = bytes3(s.memory_bytes, byte_unit) if s.memory_bytes else "-"
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
        ("Bandwidth", rate(bw, byte_unit) if bw else "unpublished: give one with --bandwidth"),
    ]
    for p, v in s.peak_flops_per_s.items():
        ridge = f" · ridge point {v / bw:.1f} FLOP/B" if bw else ""
        lines.append((f"Peak {p.value}", f"{si(v, 'OP/s' if p.value.startswith('int') else 'FLOP/s')} (dense){ridge}"))
    lines.append(("Source", s.source))
    if s.notes:
        lines.append(("Notes", s.notes))
    curves = []
    for k, v in s.extra.items():
        if k == "predictor" and has_predictor(s):
            lines.append(("Learned predictor", predictor_of(s).describe()))
        elif isinstance(v, list) and v and all(isinstance(row, list) for row in v):
            curves.append(f"{k} ({len(v)})")  # a micro-benchmark curve (rooflens.measurement.benchmark)
        elif isinstance(v, float) and k.endswith("_seconds"):
            lines.append((k, seconds_text(v)))
        elif isinstance(v, float) and k.endswith("_bytes_per_s"):
            lines.append((k, rate(v, byte_unit)))
        else:
            lines.append((k, str(v)))
    if curves:
        lines.append(("Curves", "micro-benchmark points: " + ", ".join(curves)))
    return lines



def catalogue_document(
    specs: Sequence[HardwareSpec], precision: str = "fp32", byte_unit: ByteUnit | None = None
) -> Document:
    """A row per device (`rooflens hw list`); JSON: every field of every device, base units."""
    rows = hardware_rows(specs, precision, byte_unit or ByteUnit.SI)
    return Document(
        title="rooflens: hardware catalogue",
        blocks=(Grid(HW_COLUMNS, rows, HW_NUMERIC), Note(HW_NOTE.format(precision=precision))),
        data=lambda: [s.as_dict() for s in specs],
        csv=lambda: grid_csv(HW_COLUMNS, rows),
    )


def devices_document(specs: Sequence[HardwareSpec], byte_unit: ByteUnit | None = None) -> Document:
    """Every field of each device (`rooflens hw show`, `rooflens hw bench`); JSON (one device: an object,
    several: a list) and TOML (the catalogue's format) in base units."""
    blocks: list[Labels | Gap] = []
    for s in specs:
        blocks += [Gap(), Labels(hardware_lines(s, byte_unit or ByteUnit.SI))]

    def data() -> Any:
        return [s.as_dict() for s in specs] if len(specs) > 1 else specs[0].as_dict()

    return Document(
        title="rooflens: " + ", ".join(s.id for s in specs),
        blocks=blocks[1:],
        data=data,
        toml=lambda: "\n".join(s.to_toml() for s in specs),
    )
