"""Calibrated latency: the roofline corrected by what the micro-benchmarks measured on the device.

Per operator record::

    seconds = max(FLOPs / (peak x e_c), bytes / (bandwidth x e_m)) + overhead

``peak`` and ``bandwidth`` are the measured spec's (best GEMM FLOP/s at the precision, DRAM bandwidth);
``overhead`` is the framework's cost of running the operator in an eager model (below). The
efficiencies ``e_c`` (share of the peak) and ``e_m`` (achieved bytes/s over the DRAM bandwidth) depend
on the operator's **kind** and its **size**, and come from the device's micro-benchmarks
(:mod:`rooflens.measurement.microbench`). Each kind has one curve of measured points; a point of time
``t`` doing ``FLOPs`` and ``bytes`` gives ``e_c = FLOPs / (peak x (t - overhead))`` or
``e_m = bytes / (bandwidth x (t - overhead))``: what the work beyond the fixed cost of an operator
(``op_overhead_seconds``) reached.

An operator's kind follows from its formula family (``OpRecord.family``: the family of the registry entry
that counted it, ``"conv"``, ``"matmul"``, ...; a record without one takes its operator's entry's), and,
inside the memory-bound families that several curves were measured for, from its shapes and FLOPs: the
curve of the measured operator nearest to it.

=================  =============================================  ======================================
kind               operators (formula family)                     efficiency read off
=================  =============================================  ======================================
``gemm``           matmul, attention, rnn, linalg and fft         ``e_c``: square GEMMs at the op's
                   families, forward and backward, and any other  FLOPs; ``e_m``: matrix-vector products
                   operator with MACs (deform_conv2d)             (``gemv``) at its bytes
``conv3x3``,       conv family, forward and backward: dense       ``e_c``: the grid of convolutions of
``conv1x1``,       k x k, pointwise 1x1, depthwise, grouped       the sort, at the op's FLOPs and output
``dwconv3x3``,     (from the input and weight shapes)             pixels (N x H x W: how often each
``gconv3x3``                                                      weight is reused) and output/input
                                                                  channels; ``e_m``: ``add``
``maxpool``        pool family: pooling (max, average,            ``e_c``: max pool 3x3/2 at its FLOPs
                   adaptive), not resampling nor backwards
``batchnorm``,     norm family: at most 2 FLOPs per element       ``e_m``: the sweep of the measured
``layernorm``      (running statistics: a scale and a shift) /    operator at the op's bytes
                   more (statistics computed)                     (``e_c`` = 1)
``mean``           reduction family, output smaller than the
                   input (sums, means, norms, max ...)
``cat``            memory family (copies, concatenation,
                   padding, gathers, factories)
``gelu``,          transcendental family (exp, tanh, sigmoid,
``sigmoid``        SiLU, GELU ...) and softmax-like reductions
                   (softmax, log_softmax): 5 or more FLOPs per
                   element (GELU 5) / fewer (sigmoid 4)
``relu_``          any other operator (pointwise family,          ``e_m``: ``relu_`` at its bytes
                   resampling, pool backwards, unsupported
                   operators ...), in place (``aten.*_``)
``add``            ... with a fresh output                        ``e_m``: ``add``
=================  =============================================  ======================================

Along a one-dimensional curve, the point times are interpolated linearly in log(size)-log(time); sizes
below the smallest point take its time, sizes above the largest keep its rate. The curve is first made
monotonic from the large end (a point slower than a larger one takes the larger one's time: on a shared
machine noise only ever slows a measurement down). The convolution grids have three coordinates: the
efficiency is the inverse-distance-weighted (geometric) mean of the four nearest grid points in
(log FLOPs, log output pixels, log output/input channels). ``e_c`` is capped at 1; ``e_m`` is not:
tensors that stay in cache move faster than the DRAM bandwidth, so a calibrated time can be below the
roofline time of a memory-bound operator (the roofline is a bound for DRAM traffic, not for cache).

The overhead of an operator has up to four parts, all measured by the micro-benchmarks:

* the fixed cost of an eager operator alone (``op_overhead_seconds``, ``torch.add`` on 1-element
  tensors; the curves' point times include it, which is why it is taken off them above);
* what an operator costs in a sequence of operators beyond what it costs alone (``sequence_fp32``: chains
  of 1x1 convolution, batch norm and ReLU against the same operators alone, by activation bytes), read at
  the operator's output bytes;
* fresh memory (``alloc_fp32``: a new tensor against writing into an existing one, by bytes). Outputs
  above glibc's mmap threshold (at most 32 MB) come straight from the operating system and pay page
  faults; the GEMM, convolution and pooling curves were measured with smaller outputs, so these
  operators are charged for their output, and a convolution (oneDNN converts NCHW to its blocked layout
  and back) for its output twice and its input once more;
* the model's ``nn.Module`` calls, ``module_call_seconds`` each (a chain of modules against the same
  operators called as functions), from the report's call counts: a module's calls are charged to the
  first operator that runs in it (or in its nearest ancestor that runs operators), so that the
  operators' times still add up to the total.

Every constant comes from the device's micro-benchmarks; nothing is fitted to the models whose latency
``bench/prediction_accuracy.py`` measures. The functional form was chosen after looking at that
benchmark's per-operator errors (profiled): which operators get a curve of their own (max pooling, batch
norm and depthwise convolutions on a CPU run far below what their bytes suggest), the convolution grids'
coordinates, and the sequence, fresh-memory and module-call parts of the overhead.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from rooflens.analysis.counted import Counted
from rooflens.analysis.modules import lineage
from rooflens.errors import HardwareError
from rooflens.formulas import REGISTRY
from rooflens.hardware.spec import HardwareSpec, Precision
from rooflens.types import OpRecord, TensorMeta

# ---- operator kinds ---------------------------------------------------------------------------------
# An operator's kind follows from its formula family (``OpRecord.family``, the family of the operator's
# entry in the formula registry), never from lists of operator names: every operator a family counts gets
# the family's kind, including those added to the registry later. See the module docstring's table.

COMPUTE_FAMILIES = frozenset({"matmul", "attention", "rnn", "linalg", "fft"})  # compute-bound: the GEMM curve
CONV_FAMILY = "conv"
CONV_KINDS = ("conv3x3", "conv1x1", "dwconv3x3", "gconv3x3")
FLOPS_KEYED = frozenset({"maxpool"})  # kinds whose curve is read at the operator's FLOPs
# Inside the families that several curves were measured for, the curve of the measured operator whose FLOPs
# per output element are nearest (batch norm in evaluation 2, layer norm 8; sigmoid 4, GELU 5).
SCALE_SHIFT_FLOPS = 2  # a norm of at most this per element applies running statistics: the batchnorm curve
SIGMOID_FLOPS = 3  # a softmax-like reduction of at least this per element: the sigmoid curve
GELU_FLOPS = 5  # a transcendental operator (or softmax-like reduction) of at least this: the GELU curve


def record_family(record: OpRecord) -> str:
    """The formula family of ``record``: its own, or its operator's registry entry's for records without one."""
    if record.family:
        return record.family
    entry = REGISTRY.get(record.op)
    return entry.family if entry is not None else ""


def op_kind(record: OpRecord) -> str:
    """The kind of an operator record, from its formula family (see the module docstring).

    ``"gemm"``, a convolution sort (``"conv3x3"``, ``"conv1x1"``, ``"dwconv3x3"``, ``"gconv3x3"``),
    ``"maxpool"``, ``"batchnorm"``, ``"layernorm"``, ``"mean"``, ``"cat"``, ``"gelu"``, ``"sigmoid"``,
    ``"relu_"`` or ``"add"``.
    """
    family = record_family(record)
    if family == CONV_FAMILY:
        return _conv_kind(record)
    if family in COMPUTE_FAMILIES or record.cost.macs > 0:
        return "gemm"
    if family == "norm":
        return "batchnorm" if _flops_per_output(record) <= SCALE_SHIFT_FLOPS else "layernorm"
    if family == "memory":
        return "cat"
    if family == "pool" and record.phase != "backward" and not _grows(record):
        return "maxpool"  # pooling; resampling (a larger output) and the backwards are plain elementwise work
    if family == "reduction" and _shrinks(record):
        return "mean"
    per_element = _flops_per_output(record)
    if family == "transcendental":
        return "gelu" if per_element >= GELU_FLOPS else "sigmoid"
    if family == "reduction" and per_element >= SIGMOID_FLOPS:  # softmax, log_softmax: exp on every element
        return "gelu" if per_element >= GELU_FLOPS else "sigmoid"
    return "relu_" if record.op.endswith("_") else "add"  # aten's in-place operators end with "_"


def _flops_per_output(record: OpRecord) -> float:
    out = record.outputs[0].numel if record.outputs else 0
    return record.cost.flops / out if out else 0.0


def _shrinks(record: OpRecord) -> bool:
    """Whether the output is smaller than the first input (a reduction, not a softmax or a scan)."""
    return bool(record.inputs and record.outputs) and record.outputs[0].numel < record.inputs[0].numel


def _grows(record: OpRecord) -> bool:
    """Whether the output is larger than the first input (an upsampling, not a pooling)."""
    return bool(record.inputs and record.outputs) and record.outputs[0].numel > record.inputs[0].numel


def conv_operands(record: OpRecord) -> tuple[TensorMeta, TensorMeta, TensorMeta] | None:
    """(input, weight, output-shaped tensor) of a convolution record, forward or backward."""
    if record.phase == "backward" and len(record.inputs) >= 3:  # convolution_backward(grad_output, input, weight)
        return record.inputs[1], record.inputs[2], record.inputs[0]
    if len(record.inputs) >= 2 and record.outputs:
        return record.inputs[0], record.inputs[1], record.outputs[0]
    return None


def _conv_kind(record: OpRecord) -> str:
    operands = conv_operands(record)
    if operands is None:
        return "conv3x3"
    x, w = operands[0].shape, operands[1].shape
    if len(x) < 3 or len(w) < 3 or w[1] == 0:
        return "conv3x3"
    channels = x[1]
    groups = max(1, channels // w[1])
    if groups > 1 and groups == channels:
        return "dwconv3x3"
    if groups > 1:
        return "gconv3x3"
    if all(k == 1 for k in w[2:]):
        return "conv1x1"
    return "conv3x3"


def _channel_ratio(record: OpRecord) -> float:
    """Output over input channels of a convolution (1 when the shapes do not say)."""
    operands = conv_operands(record)
    if operands is None or len(operands[0].shape) < 2 or not operands[0].shape[1] or not operands[1].shape:
        return 1.0
    return operands[1].shape[0] / operands[0].shape[1]


def _output_pixels(record: OpRecord) -> float:
    """N x H x W of a convolution's output (elements per output channel)."""
    operands = conv_operands(record)
    if operands is None or len(operands[2].shape) < 2 or operands[2].shape[1] == 0:
        return 1.0
    out = operands[2]
    return max(1.0, out.numel / out.shape[1])


# ---- curves -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Curve:
    """Measured time against size (FLOPs or bytes) of one micro-benchmark, made monotonic.

    ``time(size)`` interpolates linearly in log-log between points, takes the first point's time below
    it and keeps the last point's rate above it.
    """

    name: str
    sizes: tuple[float, ...]
    seconds: tuple[float, ...]

    @classmethod
    def from_rows(cls, name: str, rows: Sequence[Sequence[float]], column: int) -> Curve:
        """``rows`` of ``[flops, bytes, seconds, ...]``; ``column`` 0 (FLOPs) or 1 (bytes) is the size."""
        points: dict[float, float] = {}
        for row in rows:
            size, t = float(row[column]), float(row[2])
            if size > 0 and t > 0 and math.isfinite(size) and math.isfinite(t):
                points[size] = min(t, points.get(size, math.inf))
        if not points:
            raise HardwareError(f"micro-benchmark curve {name!r} has no usable points")
        sizes = sorted(points)
        seconds = [points[s] for s in sizes]
        for i in range(len(seconds) - 2, -1, -1):  # monotonic: a smaller size never takes longer
            seconds[i] = min(seconds[i], seconds[i + 1])
        return cls(name, tuple(sizes), tuple(seconds))

    def time(self, size: float) -> float:
        xs, ts = self.sizes, self.seconds
        if size <= xs[0]:
            return ts[0]
        if size >= xs[-1]:
            return ts[-1] * size / xs[-1]
        i = bisect.bisect_right(xs, size)
        x0, x1, t0, t1 = xs[i - 1], xs[i], ts[i - 1], ts[i]
        f = (math.log(size) - math.log(x0)) / (math.log(x1) - math.log(x0))
        return math.exp(math.log(t0) + f * (math.log(t1) - math.log(t0)))


@dataclass(frozen=True)
class Grid:
    """Measured convolutions of one sort: efficiency at (FLOPs, output pixels, output/input channels),
    interpolated by inverse distance weighting of log-efficiency over the ``neighbours`` nearest points
    in (log FLOPs, log pixels, log channel ratio)."""

    name: str
    points: tuple[tuple[float, float, float, float], ...]  # (log FLOPs, log pixels, log ratio, log efficiency)
    neighbours: int = 4

    @classmethod
    def from_rows(cls, name: str, rows: Sequence[Sequence[float]], peak: float, overhead: float) -> Grid:
        points = []
        for row in rows:
            flops, t = float(row[0]), float(row[2])
            pixels = float(row[3]) if len(row) > 3 else 1.0
            ratio = float(row[4]) if len(row) > 4 else 1.0
            if flops > 0 and t > 0 and pixels > 0 and ratio > 0:
                e = _efficiency(flops, peak, t, overhead)
                points.append((math.log(flops), math.log(pixels), math.log(ratio), math.log(e)))
        if not points:
            raise HardwareError(f"micro-benchmark grid {name!r} has no usable points")
        return cls(name, tuple(points))

    def efficiency(self, flops: float, pixels: float, ratio: float = 1.0) -> float:
        u, v, w = math.log(flops), math.log(max(pixels, 1.0)), math.log(ratio) if ratio > 0 else 0.0
        near = sorted(((u - pu) ** 2 + (v - pv) ** 2 + (w - pw) ** 2, pe) for pu, pv, pw, pe in self.points)
        near = near[: self.neighbours]
        if near[0][0] < 1e-12:
            return math.exp(near[0][1])
        weights = [1.0 / d2 for d2, _ in near]
        return math.exp(sum(wt * pe for wt, (_, pe) in zip(weights, near)) / sum(weights))


def _efficiency(work: float, rate: float, seconds: float, overhead: float) -> float:
    """``work / (rate x (seconds - overhead))``, with the excess time kept at >= 1 % of ``seconds``."""
    return work / (rate * max(seconds - overhead, 0.01 * seconds))


# ---- calibration ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Calibration:
    """The fitted latency model of one measured device (see the module docstring)."""

    hardware: HardwareSpec
    peak_flops_per_s: Mapping[Precision, float]
    bandwidth_bytes_per_s: float
    op_overhead_seconds: float
    module_call_seconds: float
    curves: Mapping[str, Curve]  # "gemm_fp32", "gemv", "maxpool" (FLOPs-keyed); "add", "batchnorm" ... (bytes)
    grids: Mapping[str, Grid]  # convolution sorts
    sequence: Curve | None = None  # extra seconds per operator in a sequence, by activation bytes
    alloc: Curve | None = None  # extra seconds of a fresh output, by its bytes

    def sequence_seconds(self, nbytes: float) -> float:
        """What an operator whose output has ``nbytes`` costs in a sequence beyond what it costs alone."""
        return _linear_time(self.sequence, nbytes, extend=False)

    def alloc_seconds(self, nbytes: float) -> float:
        """What a fresh output of ``nbytes`` costs beyond writing into memory that is already there."""
        return _linear_time(self.alloc, nbytes)

    def compute_efficiency(self, curve: Curve, flops: float, peak: float) -> float:
        """Share of ``peak`` reached by an operator of ``flops`` on a FLOPs-keyed ``curve`` (capped at 1)."""
        if flops <= 0:
            return 1.0
        return min(1.0, _efficiency(flops, peak, curve.time(flops), self.op_overhead_seconds))

    def memory_efficiency(self, curve: Curve, nbytes: float) -> float:
        """Bytes/s reached by an operator moving ``nbytes`` on a bytes-keyed ``curve``, over the bandwidth."""
        if nbytes <= 0:
            return 1.0
        return _efficiency(nbytes, self.bandwidth_bytes_per_s, curve.time(nbytes), self.op_overhead_seconds)

    def as_dict(self) -> dict[str, Any]:
        return {
            "hardware": self.hardware.id,
            "peak_flops_per_s": {p.value: v for p, v in self.peak_flops_per_s.items()},
            "bandwidth_bytes_per_s": self.bandwidth_bytes_per_s,
            "op_overhead_seconds": self.op_overhead_seconds,
            "module_call_seconds": self.module_call_seconds,
            "curves": sorted(self.curves),
            "grids": sorted(self.grids),
        }


_NEEDED_CURVES = ("gemm_fp32", "relu__fp32", "add_fp32")
_BYTES_CURVES = ("gemv", "relu_", "add", "batchnorm", "layernorm", "sigmoid", "gelu", "mean", "cat")


def calibrate(spec: HardwareSpec) -> Calibration:
    """The latency model of a device measured by ``rooflens hw bench`` (its curves are in ``spec.extra``)."""
    extra = spec.extra
    if spec.bandwidth_bytes_per_s is None:
        raise HardwareError(spec.missing_bandwidth_text())
    missing = [k for k in _NEEDED_CURVES if not extra.get(k)]
    if missing:
        raise HardwareError(
            f"{spec.name} ({spec.id}) has no micro-benchmark curves ({', '.join(missing)} missing); a calibrated "
            "prediction needs a device measured on the machine: `rooflens hw bench --save FILE`, or "
            "rooflens.measurement.benchmark()"
        )
    overhead = float(extra.get("op_overhead_seconds", 0.0))
    curves: dict[str, Curve] = {}
    for p in spec.peak_flops_per_s:
        if extra.get(f"gemm_{p.value}"):
            curves[f"gemm_{p.value}"] = Curve.from_rows(f"gemm_{p.value}", extra[f"gemm_{p.value}"], 0)
    for name in _BYTES_CURVES:
        if extra.get(f"{name}_fp32"):
            curves[name] = Curve.from_rows(f"{name}_fp32", extra[f"{name}_fp32"], 1)
    for name in FLOPS_KEYED:
        if extra.get(f"{name}_fp32"):
            curves[name] = Curve.from_rows(f"{name}_fp32", extra[f"{name}_fp32"], 0)
    fp32_peak = spec.peak_flops_per_s.get(Precision.FP32) or max(spec.peak_flops_per_s.values())
    grids = {sort: Grid.from_rows(f"{sort}_fp32", extra[f"{sort}_fp32"], fp32_peak, overhead)
             for sort in CONV_KINDS if extra.get(f"{sort}_fp32")}
    sequence = _zero_floor_curve("sequence_fp32", extra.get("sequence_fp32"))
    alloc = _zero_floor_curve("alloc_fp32", extra.get("alloc_fp32"))
    return Calibration(
        hardware=spec,
        peak_flops_per_s=spec.peak_flops_per_s,
        bandwidth_bytes_per_s=float(spec.bandwidth_bytes_per_s),
        op_overhead_seconds=overhead,
        module_call_seconds=float(extra.get("module_call_seconds", 0.0)),
        curves=MappingProxyType(curves),
        grids=MappingProxyType(grids),
        sequence=sequence,
        alloc=alloc,
    )


def can_calibrate(spec: HardwareSpec) -> bool:
    """Whether ``spec`` carries the micro-benchmark curves a calibrated prediction needs."""
    return spec.bandwidth_bytes_per_s is not None and all(spec.extra.get(k) for k in _NEEDED_CURVES)


def _zero_floor_curve(name: str, rows: Any) -> Curve | None:
    """A bytes-keyed curve of extra seconds that may be 0 (Curve needs positive times: 0 -> 1 ns)."""
    if not rows:
        return None
    return Curve.from_rows(name, [[r[0], r[1], max(float(r[2]), 1e-9)] for r in rows], 1)


def _linear_time(curve: Curve | None, size: float, *, extend: bool = True) -> float:
    """``curve`` at ``size``, interpolated linearly in size (the extra times may be ~0); the first point's
    time below it; above it, the last point's rate (``extend``) or time."""
    if curve is None or size <= 0:
        return 0.0
    xs, ts = curve.sizes, curve.seconds
    if size >= xs[-1]:
        return ts[-1] * size / xs[-1] if extend else ts[-1]
    if size <= xs[0]:
        return ts[0]
    i = bisect.bisect_right(xs, size)
    f = (size - xs[i - 1]) / (xs[i] - xs[i - 1])
    return ts[i - 1] + f * (ts[i] - ts[i - 1])


# ---- prediction -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class OpPrediction:
    """The calibrated time of one operator record and its parts."""

    kind: str  # see op_kind()
    compute_seconds: float  # FLOPs / (peak x compute_efficiency)
    memory_seconds: float  # bytes / (bandwidth x memory_efficiency)
    overhead_seconds: float  # per-operator overhead (+ module calls charged to this operator)
    compute_efficiency: float
    memory_efficiency: float

    @property
    def seconds(self) -> float:
        return max(self.compute_seconds, self.memory_seconds) + self.overhead_seconds

    @property
    def bound(self) -> str:
        """``"compute"``, ``"memory"`` or ``"overhead"``: the largest of the three parts."""
        work = max(self.compute_seconds, self.memory_seconds)
        if self.overhead_seconds >= work:
            return "overhead"
        return "compute" if self.compute_seconds >= self.memory_seconds else "memory"

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "seconds": self.seconds, "compute_seconds": self.compute_seconds,
            "memory_seconds": self.memory_seconds, "overhead_seconds": self.overhead_seconds,
            "compute_efficiency": self.compute_efficiency, "memory_efficiency": self.memory_efficiency,
            "bound": self.bound,
        }


@dataclass(frozen=True)
class Prediction:
    """Calibrated times of a report's operators (aligned with ``report.records``), modules and total.

    ``compute_seconds`` / ``memory_seconds`` sum, over the operators, the larger of their compute and
    memory parts when it is the compute / the memory part; ``overhead_seconds`` sums the overheads. The
    three add up to ``total_seconds``, the sum of the operators' times.
    """

    calibration: Calibration
    ops: tuple[OpPrediction, ...]
    modules: Mapping[str, float]  # module path -> seconds of it and its submodules
    total_seconds: float
    compute_seconds: float
    memory_seconds: float
    overhead_seconds: float
    notes: tuple[str, ...] = ()
    method: str = "analytic"  # "analytic" (micro-benchmark curves) or "learned" (rooflens.analysis.predictor)

    def by_module(self) -> Mapping[str, float]:
        """Module path -> calibrated seconds of the module and its submodules."""
        return self.modules

    def by_kind(self) -> dict[str, float]:
        """Operator kind -> summed seconds, most first."""
        out: dict[str, float] = {}
        for p in self.ops:
            out[p.kind] = out.get(p.kind, 0.0) + p.seconds
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))

    def as_dict(self) -> dict[str, Any]:
        return {
            "calibration": self.calibration.as_dict(),
            "method": self.method,
            "total_seconds": self.total_seconds,
            "compute_seconds": self.compute_seconds,
            "memory_seconds": self.memory_seconds,
            "overhead_seconds": self.overhead_seconds,
            "by_kind": self.by_kind(),
            "notes": list(self.notes),
        }


def predict(report: Counted, calibration: Calibration | HardwareSpec) -> Prediction:
    """Calibrated time of ``report``'s operators on the calibration's device (see the module docstring).

    ``calibration``: a :class:`Calibration`, or a measured HardwareSpec to calibrate first.
    """
    cal = calibration if isinstance(calibration, Calibration) else calibrate(calibration)
    calls = {path: node.calls for path, node in report.modules.items()}
    return predict_records(report.records, report.modules, cal, report.precision, module_calls=calls)


def predict_records(
    records: Sequence[OpRecord],
    module_paths: Iterable[str],
    calibration: Calibration,
    precision: Precision | str = Precision.FP32,
    *,
    module_calls: Mapping[str, int] | None = None,
) -> Prediction:
    """:func:`predict` on bare records; ``module_calls``: module path -> calls (for the module-call overhead)."""
    cal = calibration
    used, note = cal.hardware.resolve(precision)
    peak = cal.peak_flops_per_s[used]
    gemm = cal.curves.get(f"gemm_{used.value}") or cal.curves["gemm_fp32"]
    notes = [note] if note else []
    extra_overhead = _module_overheads(records, module_calls or {}, cal.module_call_seconds)
    fp32_peak = cal.peak_flops_per_s.get(Precision.FP32, peak)

    ops: list[OpPrediction] = []
    for i, r in enumerate(records):
        kind = op_kind(r)
        flops, nbytes = float(r.cost.flops), float(r.cost.bytes)
        e_c, e_m = 1.0, 1.0
        op_peak = peak
        if kind == "gemm":
            e_c = cal.compute_efficiency(gemm, flops, peak)
            e_m = cal.memory_efficiency(cal.curves.get("gemv") or cal.curves["add"], nbytes)
        elif kind in CONV_KINDS:
            grid = cal.grids.get(kind) or cal.grids.get("conv3x3")
            if grid is not None and flops > 0:
                op_peak = fp32_peak  # the grids are measured in fp32
                e_c = min(1.0, grid.efficiency(flops, _output_pixels(r), _channel_ratio(r)))
            elif flops > 0:
                e_c = cal.compute_efficiency(gemm, flops, peak)
            e_m = cal.memory_efficiency(cal.curves["add"], nbytes)
        elif kind in FLOPS_KEYED:
            curve = cal.curves.get(kind)
            if curve is not None:
                op_peak = fp32_peak
                e_c = cal.compute_efficiency(curve, flops, op_peak)
            e_m = cal.memory_efficiency(cal.curves["add"], nbytes)
        else:
            e_m = cal.memory_efficiency(cal.curves.get(kind) or cal.curves["add"], nbytes)
        compute = flops / (op_peak * e_c) if flops else 0.0
        memory = nbytes / (cal.bandwidth_bytes_per_s * e_m) if nbytes else 0.0
        out_bytes = float(sum(t.nbytes for t in r.outputs))
        overhead = cal.op_overhead_seconds + cal.sequence_seconds(out_bytes) + extra_overhead.get(i, 0.0)
        if kind in CONV_KINDS:  # oneDNN: a blocked-layout copy of the input, a blocked result, the output
            operands = conv_operands(r)
            in_bytes = float(operands[0].nbytes) if operands is not None else 0.0
            overhead += cal.alloc_seconds(in_bytes) + 2 * cal.alloc_seconds(out_bytes)
        elif kind in FLOPS_KEYED or kind == "gemm":
            overhead += cal.alloc_seconds(out_bytes)  # their curves were measured with small outputs
        ops.append(OpPrediction(kind, compute, memory, overhead, e_c, e_m))

    return prediction_of(cal, records, ops, module_paths, notes, "analytic")


def prediction_of(calibration: Calibration, records: Sequence[OpRecord], ops: Sequence[OpPrediction],
                  module_paths: Iterable[str], notes: Sequence[str], method: str) -> Prediction:
    """The :class:`Prediction` of per-operator predictions ``ops`` (aligned with ``records``): summed per
    module (cumulative) and into the compute, memory and overhead parts."""
    modules: dict[str, float] = {p: 0.0 for p in module_paths}
    for r, p in zip(records, ops, strict=True):
        for path in lineage(r.module):
            modules[path] = modules.get(path, 0.0) + p.seconds
    compute_part = sum(p.compute_seconds for p in ops if p.compute_seconds >= p.memory_seconds)
    memory_part = sum(p.memory_seconds for p in ops if p.memory_seconds > p.compute_seconds)
    overhead_part = sum(p.overhead_seconds for p in ops)
    return Prediction(calibration, tuple(ops), MappingProxyType(modules), sum(p.seconds for p in ops), compute_part,
                      memory_part, overhead_part, tuple(notes), method)


def _module_overheads(records: Sequence[OpRecord], calls: Mapping[str, int], seconds: float) -> dict[int, float]:
    """Record index -> module-call overhead charged to it: each module's calls go to the first record run
    inside it, or inside its nearest ancestor that runs records."""
    if seconds <= 0 or not calls or not records:
        return {}
    first: dict[str, int] = {}
    for i, r in enumerate(records):
        for path in lineage(r.module):
            first.setdefault(path, i)
    out: dict[int, float] = {}
    for path, n in calls.items():
        if n <= 0:
            continue
        i = next((first[p] for p in lineage(path) if p in first), 0)
        out[i] = out.get(i, 0.0) + n * seconds
    return out
