"""The labelled lines that open and close every rendering of a Report: model, inputs, convention, units
(the header); totals, parameters, the roofline on the report's device, the calibrated estimate, the
measurement, what was not counted (the footer)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rooflens.errors import first_names
from rooflens.report.measured import page_faults_per_call, subnormals_of
from rooflens.report.report import CONVENTION_TEXT
from rooflens.report.table import intensity_text, shape_text
from rooflens.report.units import ByteUnit, count, nbytes, seconds_text, si
from rooflens.types import TensorKind

if TYPE_CHECKING:
    from rooflens.report.measured import MeasurementLike
    from rooflens.report.report import Report

MAC_TEXT = "MACs = conv + matmul multiply-accumulates; 1 MAC = 2 FLOPs"
UNSUPPORTED_LABEL = "Unsupported operators (FLOPs not counted, bytes counted)"
MAX_LISTED = 12  # uncalled modules listed by name in the footer


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


def group_text(group: int) -> str:
    return "row" if group < 0 else f"{group} weights"


def precision_text(report: Report) -> str:
    return f"{report.precision.value} compute; {widths_text(report.weight_bits, report.act_bits)}"



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
        if report.weight_group is not None:
            size += f" with a 16-bit scale per {group_text(report.weight_group)}"
    uncalled = list(report.uncalled_modules)
    uncalled_text = first_names([p or "<root>" for p in uncalled], MAX_LISTED) or "none"
    passes = []
    if report.backward:
        f, b = report.total("forward"), report.total("backward")
        ratio = f"{b.flops / f.flops:.2f}" if f.flops else "-"
        passes.append(("Passes", (f"forward FLOPs {si(f.flops)} · backward FLOPs {si(b.flops)} ({ratio} x forward) · "
                                  f"backward read {nbytes(b.bytes_read, byte_unit)} · "
                                  f"written {nbytes(b.bytes_written, byte_unit)}")))
    return [
        (
            "Total",
            (f"MACs {si(t.macs)} · FLOPs {si(t.flops)} · read {nbytes(t.bytes_read, byte_unit)} · "
             f"written {nbytes(t.bytes_written, byte_unit)} · intensity {t.intensity:.2f} FLOPs/byte"),
        ),
        *passes,
        (
            "Parameters",
            (f"{count(p.total)}{f' ({si(p.total)})' if p.total >= 1000 else ''} · trainable {count(p.trainable)} · "
             f"non-trainable {count(p.non_trainable)} · non-zero {nonzero}"),
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


# ---- the roofline, the calibrated estimate and the measurement ------------------------------------


def hardware_text(report: Report) -> str:
    roof = report.roofline
    hw = roof.hardware
    used = roof.used_precision.value
    return (
        f"{hw.name} ({hw.id}): {used} peak {si(roof.peak_flops_per_s, 'FLOP/s')} · "
        f"bandwidth {si(roof.bandwidth_bytes_per_s, 'B/s')} · ridge point {roof.ridge_point:.1f} FLOP/B"
    )


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
        weights, memory = nbytes(report.weight_bytes, byte_unit), nbytes(roof.hardware.memory_bytes, byte_unit)
        fits = f"; weights ({weights}) {verdict} its {memory}"
    lines = [
        (
            "Roofline time",
            (f"{seconds_text(t.seconds)}: the sum over operators of max(FLOPs/peak, bytes/bandwidth), a lower "
             "bound for an eager run (no launch overhead, every kernel at its roof)"),
        ),
        (
            "Bound share",
            f"memory-bound {100 * share['memory']:.1f}% of the time, compute-bound {100 * share['compute']:.1f}%",
        ),
        (
            "Whole model",
            (f"intensity {intensity_text(t.intensity)} FLOP/B = {t.intensity / roof.ridge_point:.2f} x ridge; "
             f"{si(t.flops_per_s, 'FLOP/s')} at roofline time = {100 * t.flops_per_s / roof.peak_flops_per_s:.1f}% "
             f"of peak{fits}"),
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
    if cal.method == "learned":
        made = extra.get("predictor", {}).get("provenance", {})
        how = (f"per operator the learned predictor's time (trees over shape features, at least the roofline), "
               f"trained on {made.get('samples', '?')} operators timed inside {made.get('networks', '?')} "
               f"networks{' on ' + str(made['date']) if made.get('date') else ''} (`rooflens hw calibrate`)")
    else:
        when = f" of {extra['date']}" if extra.get("date") else ""
        how = ("per operator max(FLOPs / (peak x efficiency), bytes / (bandwidth x efficiency)) + overhead, from "
               f"the device's micro-benchmarks{when}")
    lines = [
        ("Calibrated time", f"{seconds_text(cal.total_seconds)}{ratio}: an estimate of an eager run, {how}"),
        (
            "Calibrated parts",
            (f"compute {seconds_text(cal.compute_seconds)} · memory {seconds_text(cal.memory_seconds)} · "
             f"per-operator overhead {seconds_text(cal.overhead_seconds)} · by kind: {kinds or 'none'}"),
        ),
    ]
    if cal.notes:
        lines.append(("Calibration notes", "; ".join(cal.notes)))
    return lines


def measurement_text(m: MeasurementLike) -> str:
    threads = f", {m.threads} threads" if m.threads else ""
    per_call = page_faults_per_call(m)
    extra = "" if per_call is None else f" · {per_call:,.0f} page faults per call"
    if (sub := subnormals_of(m)) is not None and sub.subnormal:
        extra += f" · {sub.subnormal:,} subnormal floats written per call (slow on x86 CPUs: torch.set_flush_denormal)"
    return (
        f"median {seconds_text(m.median_seconds)} (p90 {seconds_text(m.p90_seconds)}, p99 "
        f"{seconds_text(m.p99_seconds)}, mean {seconds_text(m.mean_seconds)} ± {seconds_text(m.std_seconds)}) "
        f"over {m.iters} runs on {m.device}{threads} · {m.throughput_per_s:.1f} samples/s at batch {m.batch_size}"
        + extra
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
