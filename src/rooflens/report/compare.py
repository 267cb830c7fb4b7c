"""Models side by side: one row per model and device, with each figure's ratio to the first model.

``rooflens.compare([r1, r2, r3], hardware=["t4", "rpi5"])`` and ``rooflens compare A B C --hw t4,rpi5``.
The point of the table is the one FLOPs alone hide: a model with fewer MACs is not always the faster one
on a device (depthwise convolutions and element-wise operators move many bytes per FLOP). Each time
column is what is known for that row: the roofline time always, the calibrated estimate for a measured
device, the measured latency when the report holds a measurement; the ratios use the best of them
(measured, else calibrated, else roofline) and say which. Every such inversion is written out as a note.
Energy is the estimate per inference (:mod:`rooflens.analysis.energy`, the device's figures where it has them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from rooflens.errors import InputError
from rooflens.hardware.spec import HardwareSpec, Kind
from rooflens.report.document import Document, Gap, Grid, Heading, Note
from rooflens.report.markup import records_csv
from rooflens.report.report import Report
from rooflens.report.table import intensity_text
from rooflens.report.units import ByteUnit, bytes3, joules_text, seconds_text, si3


@dataclass(frozen=True)
class ComparisonRow:
    """One model on one device (``device`` None: no device; counts only). Base units; None: not known."""

    model: str
    device: str | None
    params: int
    macs: int
    flops: int
    bytes: int
    intensity: float
    weight_bytes: int
    roofline_seconds: float | None
    calibrated_seconds: float | None
    measured_seconds: float | None
    memory_peak_bytes: int | None
    energy_joules: float | None  # estimated, per inference, with the device's figures (report.energy())

    @property
    def seconds(self) -> tuple[float | None, str]:
        """The best time known for the row and its kind: measured, else calibrated, else roofline."""
        for value, kind in ((self.measured_seconds, "measured"), (self.calibrated_seconds, "calibrated"),
                            (self.roofline_seconds, "roofline")):
            if value is not None:
                return value, kind
        return None, ""


@dataclass(frozen=True)
class Comparison:
    """Rows grouped by device, the first model of each group the reference of its ratios."""

    rows: tuple[ComparisonRow, ...]

    def groups(self) -> list[list[ComparisonRow]]:
        """The rows of each device, in the order the devices were given."""
        out: dict[str | None, list[ComparisonRow]] = {}
        for row in self.rows:
            out.setdefault(row.device, []).append(row)
        return list(out.values())

    def ratios(self, row: ComparisonRow) -> dict[str, float | None]:
        """``row``'s MACs, bytes, best time and energy divided by the first model's on the same device."""
        first = next(r for r in self.rows if r.device == row.device)
        time, kind = row.seconds
        first_time, first_kind = first.seconds
        return {
            "macs": _ratio(row.macs, first.macs),
            "bytes": _ratio(row.bytes, first.bytes),
            "seconds": _ratio(time, first_time) if kind == first_kind else None,
            "energy": _ratio(row.energy_joules, first.energy_joules),
        }

    def inversions(self) -> list[str]:
        """A sentence for each pair where the model with fewer MACs takes longer on the same device."""
        notes = []
        for group in self.groups():
            for a in group:
                for b in group:
                    (ta, kind), (tb, kind_b) = a.seconds, b.seconds
                    if ta is None or tb is None or kind != kind_b or not (a.macs < b.macs and ta > tb):
                        continue
                    notes.append(
                        f"{a.model} has {a.macs / b.macs:.2f}x the MACs of {b.model} but takes {ta / tb:.2f}x its "
                        f"{kind} time on {a.device} ({seconds_text(ta)} vs {seconds_text(tb)}): it moves "
                        f"{_times(a.bytes, b.bytes)} the bytes at {intensity_text(a.intensity)} FLOP/byte"
                    )
        return notes

    def as_dict(self) -> dict[str, Any]:
        return {"rows": [{**asdict(r), "ratios": self.ratios(r)} for r in self.rows], "notes": self.inversions()}

    def document(self, byte_unit: ByteUnit | None = None) -> Document:
        """A table per device (or one, without devices), the inversions as notes; JSON and CSV in base units."""
        unit = byte_unit or ByteUnit.SI
        title = "Models compared (ratios: to the first model on the same device)"
        blocks: list[Any] = [Heading(title)]
        for group in self.groups():
            columns = _columns(group)
            if group[0].device is not None:
                kinds = sorted({r.seconds[1] for r in group})
                blocks.append(Note(f"on {group[0].device}; x time: ratio of {' / '.join(kinds)} times"))
            blocks.append(Grid(columns, [_cells(self, r, columns, unit) for r in group], NUMERIC))
            blocks.append(Gap())
        blocks += [Note(n) for n in self.inversions()]
        flat = [asdict(r) | {f"{k}_ratio": v for k, v in self.ratios(r).items()} for r in self.rows]
        return Document(title=title, blocks=tuple(blocks), data=self.as_dict, csv=lambda: records_csv(flat))

    def render(self, *, width: int = 140, byte_unit: ByteUnit | str = ByteUnit.SI) -> str:
        from rooflens.report.document import RENDERERS

        return RENDERERS["table"](self.document(ByteUnit.parse(byte_unit)), width)

    def __str__(self) -> str:
        return self.render()

    def _repr_html_(self) -> str:
        from rooflens.report.document import RENDERERS

        return RENDERERS["html"](self.document(), 140)


NUMERIC = frozenset({"Params", "MACs", "Bytes", "FLOP/B", "Weights", "Roofline", "Calibrated", "Measured",
                     "Peak mem", "Energy", "x MACs", "x bytes", "x time", "x energy"})
_OPTIONAL = {  # column -> the row field that must be known in some row of the group for it to be shown
    "Roofline": "roofline_seconds", "Calibrated": "calibrated_seconds", "Measured": "measured_seconds",
    "Peak mem": "memory_peak_bytes", "Energy": "energy_joules", "x time": "roofline_seconds",
    "x energy": "energy_joules",
}
_COLUMNS = ("Model", "Params", "MACs", "Bytes", "FLOP/B", "Weights", "Roofline", "Calibrated", "Measured",
            "Peak mem", "Energy", "x MACs", "x bytes", "x time", "x energy")


def _columns(group: Sequence[ComparisonRow]) -> tuple[str, ...]:
    return tuple(c for c in _COLUMNS if c not in _OPTIONAL or any(getattr(r, _OPTIONAL[c]) is not None for r in group))


def _cells(comparison: Comparison, row: ComparisonRow, columns: Sequence[str], unit: ByteUnit) -> list[str]:
    ratios = comparison.ratios(row)

    def opt(value: float | None, text: Any) -> str:
        return "-" if value is None else str(text(value))

    cells = {
        "Model": row.model, "Params": si3(row.params), "MACs": si3(row.macs), "Bytes": bytes3(row.bytes, unit),
        "FLOP/B": intensity_text(row.intensity), "Weights": bytes3(row.weight_bytes, unit),
        "Roofline": opt(row.roofline_seconds, seconds_text), "Calibrated": opt(row.calibrated_seconds, seconds_text),
        "Measured": opt(row.measured_seconds, seconds_text),
        "Peak mem": opt(row.memory_peak_bytes, lambda v: bytes3(v, unit)),
        "Energy": opt(row.energy_joules, joules_text),
        "x MACs": opt(ratios["macs"], _x), "x bytes": opt(ratios["bytes"], _x),
        "x time": opt(ratios["seconds"], _x),
        "x energy": opt(ratios["energy"], _x),
    }
    return [cells[c] for c in columns]


def _x(value: float) -> str:
    return f"{value:.2f}x"


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def _times(a: int, b: int) -> str:
    return f"{a / b:.2f}x" if b else "-"


def compare(
    reports: Sequence[Report],
    *,
    hardware: Sequence[HardwareSpec | str] | None = None,
    memory_peaks_bytes: Sequence[int | None] | None = None,
) -> Comparison:
    """``reports`` side by side, on each device of ``hardware`` (default: each report's own device, if any).

    ``memory_peaks_bytes``: the peak memory of each model (``rooflens.memory(...).total_peak_bytes``), in
    the order of ``reports``, when the caller has it.
    """
    if not reports:
        raise InputError("compare needs at least one report")
    for r in reports:
        if not isinstance(r, Report):
            raise InputError(f"compare takes Reports (rooflens.analyze(...)), got {type(r).__name__}")
    peaks = list(memory_peaks_bytes) if memory_peaks_bytes is not None else [None] * len(reports)
    if len(peaks) != len(reports):
        raise InputError(f"memory_peaks_bytes has {len(peaks)} values for {len(reports)} reports")
    names = _unique_names([r.model for r in reports])
    rows = []
    devices: Sequence[HardwareSpec | str | None] = list(hardware) if hardware else [None]
    for device in devices:
        for report, name, peak in zip(reports, names, peaks, strict=True):
            target = report.with_hardware(device) if device is not None else report
            rows.append(_row(target, name, peak))
    return Comparison(tuple(rows))


def _row(report: Report, name: str, peak: int | None) -> ComparisonRow:
    total = report.total()
    hw = report.hardware
    roof = report.roofline.total.seconds if hw is not None and hw.bandwidth_bytes_per_s is not None else None
    calibrated = report.calibrated.total_seconds if roof is not None and report.calibrated is not None else None
    # a measurement belongs to the machine it ran on: shown without a device or on this machine's own entry
    here = hw is None or hw.kind is Kind.MEASURED
    measured = report.measurement.median_seconds if report.measurement is not None and here else None
    return ComparisonRow(
        model=name, device=hw.id if hw is not None else None, params=report.params.total, macs=total.macs,
        flops=total.flops, bytes=total.bytes, intensity=total.intensity, weight_bytes=report.weight_bytes,
        roofline_seconds=roof, calibrated_seconds=calibrated, measured_seconds=measured, memory_peak_bytes=peak,
        energy_joules=report.energy().joules_per_inference,
    )


def _unique_names(names: Sequence[str]) -> list[str]:
    """The models' names, numbered where two are the same (``resnet50 #2``)."""
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if names.count(n) == 1 else f"{n} #{seen[n]}")
    return out
