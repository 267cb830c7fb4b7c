"""The energy estimate of a Report as a document (`rooflens energy MODEL`): per module, compute vs memory."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rooflens.report.document import Document, Gap, Grid, Heading, Labels, Note
from rooflens.report.markup import records_csv
from rooflens.report.table import module_rows
from rooflens.report.units import ByteUnit, bytes3, joules_text, si3

if TYPE_CHECKING:
    from rooflens.analysis.energy import Energy, EnergyEstimate
    from rooflens.report.report import Report

COLUMNS = ("Module", "Type", "Energy", "Compute", "Memory", "DRAM bytes", "On-chip bytes", "Memory share", "Dominant")
NUMERIC = frozenset({"Energy", "Compute", "Memory", "DRAM bytes", "On-chip bytes", "Memory share"})


def _cells(energy: Energy, unit: ByteUnit, columns: tuple[str, ...]) -> list[str]:
    cells = {
        "Energy": joules_text(energy.joules), "Compute": joules_text(energy.compute_joules),
        "Memory": joules_text(energy.memory_joules), "DRAM bytes": bytes3(energy.dram_bytes, unit),
        "On-chip bytes": bytes3(energy.onchip_bytes, unit),
        "Memory share": f"{100 * energy.memory_share:.1f}%" if energy.joules else "-",
        "Dominant": energy.dominant if energy.joules else "-",
    }
    return [cells[c] for c in columns[2:]]


def energy_document(
    report: Report, estimate: EnergyEstimate, depth: int | None = None, byte_unit: ByteUnit | None = None
) -> Document:
    """Header (table and source, precision, joules per inference), one row per module down to ``depth``, notes."""
    unit = byte_unit or ByteUnit.SI
    total = estimate.total
    title = f"{report.model}: estimated energy at {estimate.precision.value}"
    where = "every operator's inputs and outputs from DRAM (an upper bound)" if estimate.memory == "dram" else (
        f"activations of operators that fit in {bytes3(estimate.onchip_capacity_bytes or 0, unit)} on chip")
    labels = [
        ("Energy table", f"{estimate.table.name} ({estimate.table.source})"),
        ("Precision", estimate.used_precision.value + ("" if estimate.used_precision is estimate.precision
                                                        else f" figures (for {estimate.precision.value})")),
        ("Memory traffic", where),
        ("Per inference", f"{joules_text(estimate.joules_per_inference)} ({estimate.samples} per pass); "
                          f"{si3(estimate.inferences_per_joule)} inferences per joule" if total.joules else "0 J"),
        ("Compute / memory", f"{joules_text(total.compute_joules)} / {joules_text(total.memory_joules)} "
                             f"({100 * total.memory_share:.1f}% memory)" if total.joules else "-"),
    ]
    modules = estimate.by_module()
    columns = COLUMNS if estimate.memory == "onchip" else tuple(c for c in COLUMNS if c != "On-chip bytes")
    rows, records = [], []
    for row in module_rows(report, depth):
        energy = modules[row.path]
        rows.append([row.prefix + row.name, row.type_name, *_cells(energy, unit, columns)])
        records.append({"module": row.path, "type": row.type_name, **energy.as_dict()})
    blocks: list[Any] = [Heading(title), Labels(labels), Gap(), Grid(columns, rows, NUMERIC)]
    blocks += [Note(n) for n in estimate.notes]
    return Document(
        title=title,
        blocks=tuple(blocks),
        data=lambda: {"model": report.model, **estimate.as_dict()},
        csv=lambda: records_csv(records),
    )
