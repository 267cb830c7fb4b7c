"""Measurements in words: the per-batch table of `rooflens bench` and the per-module table of its
per-operator profile (the measured latency of a Report is in its footer, :mod:`rooflens.report.summary`).

The report layer sits below :mod:`rooflens.measurement` and never imports it: what is shown of a
measurement is read through the structural types of :mod:`rooflens.report.measured`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from rooflens.errors import InputError
from rooflens.report.document import Block, Document, Gap, Grid, Heading, Note
from rooflens.report.markup import grid_csv
from rooflens.report.measured import (
    Achieved,
    MeasurementLike,
    ProfileLike,
    ProfileRowLike,
    page_faults_per_call,
    subnormals_of,
)
from rooflens.report.table import share_text
from rooflens.report.units import ByteUnit, bytes3, seconds_text, si3

if TYPE_CHECKING:
    from rooflens.report.report import Report

BENCH_NUMERIC = frozenset({
    "Batch", "Median", "p90", "p99", "Mean", "Std", "Faults", "Samples/s", "FLOP/s", "Bytes/s", "Roofline", "Efficiency",
    "% peak", "Measured", "Lost", "Records", "Calibrated", "Error",
})
BENCH_NOTE = ("Latency per forward call (the first call is never timed); FLOP/s and Bytes/s: counted work / "
              "median; Efficiency = roofline time / measured; % peak = achieved FLOP/s / the device's peak; "
              "Calibrated (measured devices): the predicted latency, Error = (predicted - measured) / measured")
FAULTS_NOTE = "Faults: the process's minor page faults per timed call"
# glibc keeps freed memory with these (a process reads them when it starts): no page faults per forward
KEEP_MEMORY_ENV = {"MALLOC_MMAP_THRESHOLD_": "1000000000", "MALLOC_TRIM_THRESHOLD_": "1000000000"}
# a fault maps a page in and the kernel zeroes it: 1-4 µs each where bench/page_faults.py measured it (about
# 2 µs in the models that fault most). The note advises when even at 1 µs a fault they would be 5 % of the
# median: at 50,000 faults per second of median or more.
FAULTS_PER_SECOND = 50_000


def _measured(report: Report) -> tuple[MeasurementLike, Achieved]:
    m, a = report.measurement, report.achieved
    if m is None or a is None:
        raise InputError(f"the report of {report.model} has no measurement: analyze(..., measure=True)")
    return m, a


def bench_table(
    reports: Sequence[Report], byte_unit: ByteUnit = ByteUnit.SI
) -> tuple[tuple[str, ...], list[list[str]]]:
    """One row per measured report (a batch size each): latency statistics, throughput, achieved rates,
    roofline and efficiency, and the calibrated estimate and its error when the device was measured."""
    measured = [(*_measured(r), r.calibrated.total_seconds if r.calibrated is not None else None) for r in reports]
    roof = any(a.roofline_seconds is not None for _, a, _ in measured)
    faults = any(page_faults_per_call(m) is not None for m, _, _ in measured)
    headers: tuple[str, ...] = ("Batch", "Median", "p90", "p99", "Mean", "Std")
    headers += ("Faults",) if faults else ()
    headers += ("Samples/s", "FLOP/s", "Bytes/s")
    if roof:
        headers += ("Roofline", "Efficiency", "% peak")
    if any(est is not None for _, _, est in measured):
        headers += ("Calibrated", "Error")
    rows = []
    for m, a, est in measured:
        row = [str(m.batch_size), seconds_text(m.median_seconds), seconds_text(m.p90_seconds),
               seconds_text(m.p99_seconds), seconds_text(m.mean_seconds), seconds_text(m.std_seconds)]
        if faults:
            row.append("-" if (count := page_faults_per_call(m)) is None else f"{count:,.0f}")
        row += [f"{m.throughput_per_s:.1f}", si3(a.flops_per_s), bytes3(a.bytes_per_s, byte_unit, "B/s")]
        if roof:
            row += [seconds_text(a.roofline_seconds) if a.roofline_seconds is not None else "-",
                    share_text(a.efficiency), share_text(a.compute_utilisation)]
        if "Calibrated" in headers:
            row += ["-", "-"] if est is None else [
                seconds_text(est), f"{100 * (est - m.median_seconds) / m.median_seconds:+.1f}%"]
        rows.append(row)
    return headers, rows


def faults_note(measurements: Sequence[MeasurementLike]) -> str | None:
    """What the Faults column means, and the allocator advice where faulting costs time: when even at 1 µs a
    fault the faults of a call would be 5 % of its median, for the batch where they weigh most."""
    counted = [(faults, m) for m in measurements if (faults := page_faults_per_call(m)) is not None]
    if not counted:
        return None
    faults, m = max(counted, key=lambda c: c[0] / c[1].median_seconds if c[1].median_seconds > 0 else 0.0)
    if m.median_seconds <= 0 or faults < FAULTS_PER_SECOND * m.median_seconds:
        return FAULTS_NOTE
    return (f"{FAULTS_NOTE}. At batch {m.batch_size} the forward faults {faults:,.0f} times per call (at 1 µs a "
            f"fault, {100e-6 * faults / m.median_seconds:.0f} % of the median {seconds_text(m.median_seconds)}). "
            "Usually the allocator hands large freed blocks back to the kernel, which maps and zeroes them again "
            f"on the next call; to keep the memory, set {settings_text(KEEP_MEMORY_ENV)} (glibc) or preload jemalloc or tcmalloc, and "
            "measure again (docs/prediction.md#page-faults)")


def subnormal_note(measurements: Sequence[MeasurementLike]) -> str | None:
    """Where a forward pass wrote subnormal floats (``rooflens.measurement.subnormal``): how many at the batch
    with the most, the operators that wrote the most, and what to do; None where none were written."""
    found = [(s, m) for m in measurements if (s := subnormals_of(m)) is not None and s.subnormal > 0]
    if not found:
        return None
    s, m = max(found, key=lambda c: c[0].subnormal)
    where = "; ".join(f"{o.module or '<model>'} {o.op} {o.subnormal:,} ({_percent(o.subnormal / o.elements)} of what "
                      "it wrote)" for o in s.outputs[:3])
    return (f"Subnormal floats: at batch {m.batch_size} a forward pass wrote {s.subnormal:,} of its {s.elements:,} "
            f"floating-point values subnormal, most in {where}. x86 CPUs compute with subnormal numbers many times slower "
            "(swin_t's affected matrix products: 14-56 times): the latency depends on the values, which neither the roofline nor the calibrated "
            "estimate sees. torch.set_flush_denormal(True) flushes them to zero; measure again with it "
            "(docs/prediction.md#subnormal-floats)")


def _percent(share: float) -> str:
    """A share in percent: whole numbers from 1 %, two significant digits below."""
    return f"{100 * share:.0f} %" if share >= 0.01 else f"{100 * share:.2g} %"


def settings_text(allocator: Mapping[str, str]) -> str:
    """Allocator settings as ``NAME=value`` words (``allocator_settings``, :data:`KEEP_MEMORY_ENV`); none set:
    "the default allocator"."""
    return " ".join(f"{k}={v}" for k, v in allocator.items()) or "the default allocator"


def allocator_mismatch_note(report: Report, allocator: Mapping[str, str] | None) -> str | None:
    """A warning when the device's learned predictor was trained under other allocator settings than the
    measurement ran with (``rooflens hw calibrate`` records them): faulting moves latency by tens of percent."""
    cal = report.calibrated
    if allocator is None or cal is None or cal.method != "learned":
        return None
    trained = cal.calibration.hardware.extra.get("predictor", {}).get("provenance", {}).get("allocator")
    if not isinstance(trained, Mapping) or dict(trained) == dict(allocator):
        return None
    return (f"The learned predictor was trained with {settings_text(trained)}, this run measured with "
            f"{settings_text(allocator)}: where the forward faults (Faults) it runs slower than with the memory "
            "kept, and Calibrated and measured differ by that too (docs/prediction.md#page-faults)")


PROFILE_COLUMNS = ("Module", "Type", "Measured", "Roofline", "Efficiency", "FLOP/s", "Lost")


def profile_table(rows: Sequence[ProfileRowLike]) -> list[list[str]]:
    """Per module (``rooflens.measurement.module_rows``), :data:`PROFILE_COLUMNS` in order: measured,
    roofline, efficiency, achieved FLOP/s, time lost against the roofline."""
    return [[r.path or "<model>", r.type_name, seconds_text(r.measured_seconds),
             seconds_text(r.roofline_seconds) if r.roofline_seconds is not None else "-", share_text(r.efficiency),
             si3(r.achieved_flops_per_s), seconds_text(r.lost_seconds) if r.lost_seconds is not None else "-"]
            for r in rows]


def profile_note(profile: ProfileLike) -> str:
    views = [e for e in profile.unmatched_events if e.aliasing]
    other = [e for e in profile.unmatched_events if not e.aliasing]
    matched = 100 * profile.matched_seconds / profile.profiled_seconds if profile.profiled_seconds else 0
    text = (f"{profile.matched_records}/{len(profile.record_seconds)} analysed operators matched to profiled events; "
            f"{matched:.1f}% of the profiled time matched")
    if other:
        text += "; not matched: " + ", ".join(f"{e.name} x{e.count}" for e in other[:8])
    if views:
        text += f"; {len(views)} view operators (not analysed: they move no data)"
    return text


def bench_document(
    reports: Sequence[Report],
    *,
    device: str,
    threads: int | None = None,
    dtype: str | None = None,
    profile: ProfileLike | None = None,
    profile_rows: Sequence[ProfileRowLike] = (),
    byte_unit: ByteUnit | None = None,
    allocator: Mapping[str, str] | None = None,
) -> Document:
    """`rooflens bench`: a row per measured report (one per batch size, each with its ``measurement``) and,
    with a ``profile`` of the first, a row per module (``profile_rows``); JSON and CSV in base units.
    ``allocator``: the allocator settings the process ran with (``rooflens.measurement.timer.allocator_settings``),
    said when there are any."""
    first = reports[0]
    hw = first.hardware
    title = f"{first.model} on {device}" + (f" ({threads} thread{'' if threads == 1 else 's'})" if threads else "")
    if hw is not None:
        title += f"; roofline on {hw.name}"
    headers, rows = bench_table(reports, byte_unit or ByteUnit.SI)
    blocks: list[Block] = [Heading(title), Grid(headers, rows, BENCH_NUMERIC), Note(BENCH_NOTE)]
    measurements = [_measured(r)[0] for r in reports]
    for note in (faults_note(measurements), subnormal_note(measurements)):
        if note is not None:
            blocks.append(Note(note))
    if allocator:
        blocks.append(Note("Allocator: " + settings_text(allocator)))
    if (note := allocator_mismatch_note(first, allocator)) is not None:
        blocks.append(Note(note))
    if profile is not None:
        order = "most time lost against the roofline first" if hw is not None else "most time first"
        blocks += [Gap(), Heading(f"per module at batch {_measured(first)[0].batch_size}, {order}"),
                   Grid(PROFILE_COLUMNS, profile_table(profile_rows), BENCH_NUMERIC), Note(profile_note(profile))]

    def data() -> dict[str, Any]:
        out: dict[str, Any] = {
            "model": first.model, "device": device, "threads": threads, "dtype": dtype,
            "allocator": dict(allocator or {}),
            "hardware": hw.as_dict() if hw is not None else None,
            "batches": [{**m.as_dict(samples=False), "achieved": a.as_dict(),
                         "calibrated_seconds": r.calibrated.total_seconds if r.calibrated is not None else None}
                        for r in reports for m, a in [_measured(r)]],
        }
        if profile is not None:
            out["per_op"] = profile.as_dict()
        return out

    return Document(title=title, blocks=blocks, data=data, csv=lambda: grid_csv(headers, rows))
