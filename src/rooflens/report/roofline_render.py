"""One model's roofline on several devices: a row per device (`rooflens roofline MODEL --hw t4,a4000`).

The roofline of a Report on its own device is in its footer (:mod:`rooflens.report.summary`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rooflens.report.document import Document, Grid, Heading, Interactive, Note
from rooflens.report.markup import records_csv
from rooflens.report.table import intensity_text
from rooflens.report.units import ByteUnit, bytes3, seconds_text, si3

if TYPE_CHECKING:
    from rooflens.report.report import Report

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


def comparison_rows(reports: Sequence[Report], byte_unit: ByteUnit = ByteUnit.SI) -> list[list[str]]:
    """:func:`comparison_columns` per device, as display strings."""
    calibrated = comparison_columns(reports) != COMPARE_COLUMNS
    rows = []
    for rec in comparison_records(reports):
        used = rec["used_precision"]
        precision = used if used == rec["precision"] else f"{used} (for {rec['precision']})"
        fit = {None: "?", True: "yes", False: "NO"}[rec["weights_fit"]]
        est = rec["calibrated_seconds"]
        rows.append([
            rec["device"], precision, si3(rec["peak_flops_per_s"]),
            bytes3(rec["bandwidth_bytes_per_s"], byte_unit, "B/s"),
            f"{rec['ridge_point']:.1f}", seconds_text(rec["roofline_seconds"]),
            *([seconds_text(est) if est is not None else "-"] if calibrated else []),
            f"{100 * rec['memory_bound_share']:.1f}%", intensity_text(rec["intensity"]),
            f"{100 * rec['share_of_peak']:.1f}%", fit,
        ])
    return rows



def comparison_document(reports: Sequence[Report], byte_unit: ByteUnit | None = None) -> Document:
    """One model on several devices: a row per device, the devices' notes; JSON and CSV in base units."""
    title = f"{reports[0].model}: roofline time per device (a lower bound for an eager run)"
    if comparison_columns(reports) != COMPARE_COLUMNS:
        title += "; calibrated: an estimate for the measured devices"
    rows = comparison_rows(reports, byte_unit or ByteUnit.SI)
    notes = [Note(f"{r.roofline.hardware.id}: {n}") for r in reports for n in r.roofline.notes]
    return Document(
        title=title,
        blocks=(Heading(title), Grid(comparison_columns(reports), rows, COMPARE_NUMERIC), *notes,
                Interactive(reports[0], devices=reports[1:])),
        data=lambda: {"model": reports[0].model, "precision": reports[0].precision.value,
                      "devices": comparison_records(reports)},
        csv=lambda: records_csv(comparison_records(reports)),
    )
