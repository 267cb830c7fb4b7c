"""Micro-benchmarks of the machine rooflens runs on (``rooflens hw bench``): a measured HardwareSpec.

Every figure is the median of several timed repetitions after a warm-up (``time.perf_counter`` on the
CPU; CUDA events around the work on a GPU, then a synchronisation). Repetitions more than 25 % slower
than the fastest are left out of the median: on a machine shared with other work, a repetition during
which one of the intra-op threads was preempted stalls for milliseconds and says nothing about the
device (see :func:`robust_median`). On Linux, a point during which other processes (or, in a virtual
machine, the hypervisor) took CPU time is measured again (:class:`CpuWatch`). Full mode measures
everything twice and keeps the better pass.

What is measured:

* **GEMM** (``torch.mm`` of square n x n matrices) over a sweep of n, per dtype: fp32 always; fp64,
  bf16 and fp16 when the device runs them usefully (on a CPU a small GEMM of the dtype is timed first
  and the dtype is left out when it runs at under a tenth of fp32's rate: emulated). The dtype's
  **peak** is the best FLOP/s (2 n^3 / time) of the sweep.
* **Matrix-vector products** (``addmm`` of a 1 x n row by an n x n weight, a linear layer at batch 1):
  how fast weights stream from cache and from memory.
* **Convolutions** (fp32, batch 1, NCHW, stride 1, no bias) of four sorts: dense 3x3, pointwise 1x1,
  depthwise 3x3 and grouped 3x3 (16 channels per group), on a grid of channel counts x resolutions (1x1
  also with 4x more and 4x fewer output than input channels, as bottlenecks expand and reduce).
* **Operator families** that vision and transformer models run between their GEMMs, each over sizes from
  a few elements to far beyond the last-level cache: ``relu_`` (in place), ``add`` (a fresh output),
  batch norm (inference), layer norm, sigmoid, GELU, max pool 3x3/2, mean over H x W, and ``cat``.
* **Bandwidth**: copy (``dst.copy_(src)``, 2 x size bytes) and triad (``torch.add(b, c, alpha=s,
  out=a)``, 3 x size bytes), the largest working set at least 8 x the last-level cache and 256 MB; the
  device's bandwidth is the better of the two there.
* **Per-operator overhead**: ``torch.add`` on 1-element tensors, the framework's fixed cost of one eager
  operator (dispatch, output allocation, launch).
* **Eager sequences**: chains of 1x1 convolution, batch norm and in-place ReLU blocks, timed as
  functional calls and as an ``nn.Sequential``, against the same operators timed alone: what an operator
  costs inside a sequence beyond its cost alone (by activation size), and what an ``nn.Module`` call
  adds (``module_call_seconds``).
* **Fresh memory**: a new tensor written once against writing into an existing one, by size: outputs
  above the allocator's mmap threshold come from the operating system and pay page faults.

The result is a :class:`~rooflens.hardware.HardwareSpec` of kind ``measured``; the curves are kept in
``extra`` for :mod:`rooflens.analysis.calibrated`. A curve is a list of rows ``[flops, bytes, seconds]``
in increasing size: the work of one call and its median time (convolution rows add two columns: the
output pixels N x H x W and the ratio of output to input channels). Keys: ``gemm_<precision>``,
``gemv_fp32``, ``conv3x3_fp32``, ``conv1x1_fp32``, ``dwconv3x3_fp32``, ``gconv3x3_fp32``, ``relu__fp32``,
``add_fp32``, ``batchnorm_fp32``, ``layernorm_fp32``, ``sigmoid_fp32``, ``gelu_fp32``, ``maxpool_fp32``,
``mean_fp32``, ``cat_fp32``, ``copy_fp32``, ``triad_fp32``; ``alloc_fp32`` and ``sequence_fp32`` (their
seconds are extra seconds, by bytes); scalars ``op_overhead_seconds``, ``module_call_seconds``,
``bandwidth_copy_bytes_per_s``, ``bandwidth_triad_bytes_per_s``; and ``machine``, ``host``, ``torch``,
``date``, ``device``, ``threads``, ``quick``, ``llc_bytes``,
``load_average`` (1-minute load average before and after).
"""

from __future__ import annotations

import datetime as _dt
import functools
import math
import os
import platform
import re
import socket
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F

from rooflens.capture.engine import run_capture
from rooflens.errors import HardwareError
from rooflens.hardware.spec import HardwareSpec, Kind, Precision
from rooflens.measurement.timer import clock, intra_op_threads, synchronize
from rooflens.types import ZERO

Progress = Callable[[str, float], None]
Rows = list[list[float]]

_DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16, "float16": torch.float16}
_DTYPE_ALIASES = {"fp32": "float32", "float": "float32", "fp64": "float64", "double": "float64",
                  "bf16": "bfloat16", "fp16": "float16", "half": "float16"}
_PRECISION = {"float32": Precision.FP32, "float64": Precision.FP64, "bfloat16": Precision.BF16,
              "float16": Precision.FP16}
_SHORT = {"float32": "fp32", "float64": "fp64", "bfloat16": "bf16", "float16": "fp16"}

CONV_SORTS = ("conv3x3", "conv1x1", "dwconv3x3", "gconv3x3")
FAMILIES = ("relu_", "add", "batchnorm", "layernorm", "sigmoid", "gelu", "maxpool", "mean", "cat")


@dataclass(frozen=True)
class _Plan:
    """Sizes and timing budget of one run."""

    gemm_sizes: tuple[int, ...]
    gemm_sizes_other: tuple[int, ...]  # for dtypes other than fp32
    gemv_sizes: tuple[int, ...]
    conv_channels: tuple[int, ...]
    conv_resolutions: tuple[int, ...]
    conv_max_flops: float  # grid points above this are left out (they take long and add nothing)
    family_resolutions: tuple[int, ...]  # operator families run on 1 x 64 x r x r
    chain_shapes: tuple[tuple[int, int], ...]  # (channels, resolution) of the conv-bn-relu chains
    alloc_sizes: tuple[int, ...]  # elements of the fresh tensors
    min_time: float  # seconds of timed repetitions per point (at least min_reps of them)
    min_reps: int
    max_reps: int
    stream_multiple: float  # largest copy/triad working set as a multiple of the LLC (and >= 256 MB)
    passes: int  # every measurement this many times, the best pass kept
    attempts: int  # a point measured while other processes took CPU time is measured again, this often at most


_FULL = _Plan(
    gemm_sizes=(16, 32, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048),
    gemm_sizes_other=(32, 64, 128, 256, 512, 1024, 2048),
    gemv_sizes=(256, 512, 1024, 2048, 4096, 8192, 12288),
    conv_channels=(16, 32, 64, 128, 256, 512, 1024),
    conv_resolutions=(7, 14, 28, 56, 112),
    conv_max_flops=4e9,
    family_resolutions=(1, 4, 14, 28, 56, 112, 224, 448),
    chain_shapes=((16, 4), (16, 14), (32, 28), (64, 56), (128, 56)),
    alloc_sizes=(1 << 16, 1 << 19, 1 << 21, 1 << 22, 1 << 23, 1 << 24, 1 << 25),
    min_time=0.08, min_reps=5, max_reps=200, stream_multiple=8.0, passes=2, attempts=3,
)
_QUICK = _Plan(
    gemm_sizes=(32, 64, 128, 256, 512, 1024),
    gemm_sizes_other=(64, 256, 1024),
    gemv_sizes=(512, 2048, 8192),
    conv_channels=(16, 64, 256, 1024),
    conv_resolutions=(7, 28, 112),
    conv_max_flops=1e9,
    family_resolutions=(1, 14, 56, 224, 448),
    chain_shapes=((16, 4), (32, 28), (64, 56)),
    alloc_sizes=(1 << 18, 1 << 22, 1 << 24),
    min_time=0.03, min_reps=3, max_reps=50, stream_multiple=8.0, passes=1, attempts=2,
)


def benchmark(
    *,
    device: str = "cpu",
    quick: bool = False,
    threads: int | None = None,
    dtypes: Sequence[str] | None = None,
    progress: Progress | None = None,
) -> HardwareSpec:
    """Measure this machine's ``device`` and return it as a HardwareSpec of kind ``measured``.

    ``quick``: fewer sizes and repetitions, one pass (under 30 s on a 2-core machine); the full run takes
    a few minutes. ``threads``: run with this many intra-op threads (restored afterwards; default: as
    torch is set). ``dtypes``: the GEMM dtypes to try (``"float32"``, ``"float64"``, ``"bfloat16"``,
    ``"float16"``, or fp32/fp64/bf16/fp16; default all four; fp32 is always measured).
    ``progress(stage, fraction)`` is called as the stages go by (fraction of the run, 0..1); nothing is
    printed.
    """
    dev = torch.device(device)
    if dev.type not in ("cpu", "cuda"):
        raise HardwareError(f"benchmark(device={device!r}): only 'cpu' and 'cuda' are supported")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise HardwareError("benchmark(device='cuda'): CUDA is not available in this torch build or on this machine")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise HardwareError(f"benchmark(threads={threads!r}): give a positive whole number of threads")
    plan = _QUICK if quick else _FULL
    wanted = _parse_dtypes(dtypes)
    report = _Reporter(progress, plan.passes * (len(wanted) + 7) + 1)
    timer = _Timer(dev, plan)
    llc = _llc_bytes() if dev.type == "cpu" else _gpu_l2_bytes(dev)
    load_before = _load_average()
    with intra_op_threads(threads), torch.no_grad():
        nthreads = torch.get_num_threads()
        curves: dict[str, Rows] = {}
        scalars: dict[str, float] = {}
        for _ in range(plan.passes):  # a point's time is its better pass: other work only slows a pass down
            found_scalars, found = _one_pass(timer, dev, plan, wanted, llc, report)
            for key, value in found_scalars.items():
                scalars[key] = min(value, scalars.get(key, math.inf))
            for key, rows in found.items():
                old = curves.get(key)
                curves[key] = rows if old is None else [a if a[2] <= b[2] else b for a, b in zip(old, rows)]
        report.stage("done", done=True)
    load = [load_before, _load_average()]

    peaks = {_PRECISION[name]: max(f / t for f, _, t in curves[f"gemm_{_SHORT[name]}"])
             for name in wanted if f"gemm_{_SHORT[name]}" in curves}
    # bandwidth: the largest working set, far beyond the last-level cache
    bw_copy = curves["copy_fp32"][-1][1] / curves["copy_fp32"][-1][2]
    bw_triad = curves["triad_fp32"][-1][1] / curves["triad_fp32"][-1][2]
    overhead = scalars["op_overhead_seconds"]
    today = _dt.date.today().isoformat()
    machine = machine_name(dev)
    host = _hostname()
    extra: dict[str, Any] = {
        "machine": machine,
        "host": host,
        "torch": torch.__version__,
        "date": today,
        "device": dev.type,
        "threads": nthreads,
        "quick": quick,
        "llc_bytes": int(llc or 0),
        "load_average": load,
        "op_overhead_seconds": overhead,
        "module_call_seconds": scalars["module_call_seconds"],
        "bandwidth_copy_bytes_per_s": bw_copy,
        "bandwidth_triad_bytes_per_s": bw_triad,
        **curves,
    }
    units = (f"{nthreads} thread" + ("s" if nthreads != 1 else "")) if dev.type == "cpu" else "GPU"
    return HardwareSpec(
        id=_spec_id(host),
        name=f"{machine} ({units}, measured)",
        vendor=_vendor(dev),
        kind=Kind.MEASURED,
        peak_flops_per_s=peaks,
        bandwidth_bytes_per_s=max(bw_copy, bw_triad),
        memory_bytes=_memory_bytes(dev),
        onchip_bytes=int(llc) if llc and 1e3 <= llc <= 1e11 else None,
        source=f"measured by rooflens hw bench on {today} with torch {torch.__version__}",
        notes=(f"peaks: best torch.mm FLOP/s over square sizes {plan.gemm_sizes[0]}..{plan.gemm_sizes[-1]}; "
               f"bandwidth: better of copy ({bw_copy / 1e9:.1f} GB/s) and triad ({bw_triad / 1e9:.1f} GB/s) "
               f"beyond the last-level cache; per-operator overhead {overhead * 1e6:.2f} us"
               + ("; quick mode" if quick else "") + _busy_note(load, nthreads, dev)),
        extra=extra,
    )


def _one_pass(timer: _Timer, dev: torch.device, plan: _Plan, wanted: Sequence[str], llc: int | None,
              report: _Reporter) -> tuple[dict[str, float], dict[str, Rows]]:
    """Every measurement once: (scalars, curves)."""
    report.stage("overhead")
    one_a = torch.ones(1, device=dev)
    one_b = torch.ones(1, device=dev)
    scalars = {"op_overhead_seconds": timer.time(functools.partial(torch.add, one_a, one_b), tiny=True)}
    curves: dict[str, Rows] = {}
    for name in wanted:
        report.stage(f"gemm {_SHORT[name]}")
        curve = _gemm_curve(timer, dev, _DTYPES[name], plan.gemm_sizes if name == "float32" else plan.gemm_sizes_other,
                            reference=curves.get("gemm_fp32"))
        if curve is not None:  # None: emulated, far slower than fp32
            curves[f"gemm_{_SHORT[name]}"] = curve
    report.stage("gemv")
    curves["gemv_fp32"] = _gemv_curve(timer, dev, plan.gemv_sizes)
    report.stage("convolution")
    for sort in CONV_SORTS:
        curves[f"{sort}_fp32"] = _conv_curve(timer, dev, plan, sort)
    report.stage("operators")
    for family in FAMILIES:
        curves[f"{family}_fp32"] = _family_curve(timer, dev, plan.family_resolutions, family)
    report.stage("bandwidth")
    curves["copy_fp32"], curves["triad_fp32"] = _stream(timer, dev, llc, plan)
    report.stage("sequence")
    curves["alloc_fp32"] = _alloc_curve(timer, dev, plan.alloc_sizes)
    curves["sequence_fp32"], scalars["module_call_seconds"] = _sequence_overheads(timer, dev, plan.chain_shapes)
    return scalars, curves


# ---- timing -----------------------------------------------------------------------------------------

class _Timer:
    """Median seconds per call of ``fn``: warm-up, then samples of ``inner`` calls each (so that one
    sample lasts long enough to time), until ``min_time`` and ``min_reps`` are reached."""

    def __init__(self, device: torch.device, plan: _Plan) -> None:
        self.kind = device.type
        self.cuda = device.type == "cuda"
        self.plan = plan
        self._one = clock(device.type)  # the clock of rooflens.measure: perf_counter, or CUDA events

    def _sync(self) -> None:
        synchronize(self.kind)

    def _sample(self, fn: Callable[[], Any], inner: int) -> float:
        def calls() -> None:
            for _ in range(inner):
                fn()

        return self._one(calls) / inner

    def time(self, fn: Callable[[], Any], *, tiny: bool = False, reps: int | None = None) -> float:
        plan = self.plan
        fn()  # warm-up: first-call costs (kernel selection, weight layouts, allocator)
        self._sync()
        first = self._sample(fn, 1)
        target = 2e-3 if tiny else 2e-4  # seconds per sample
        inner = max(1, min(10_000, int(target / max(first, 1e-7))))
        for _ in range(2 if first < 0.05 else 0):  # a little more warm-up for short calls
            self._sample(fn, inner)
        budget = plan.min_time * (2 if tiny else 1)
        min_reps = reps if reps is not None else plan.min_reps + (4 if tiny else 0)
        best = math.inf
        for _ in range(plan.attempts):  # again while other processes took CPU time during the samples
            watch = CpuWatch()
            samples: list[float] = []
            started = time.perf_counter()
            while len(samples) < min_reps or (time.perf_counter() - started < budget and len(samples) < plan.max_reps):
                samples.append(self._sample(fn, inner))
            best = min(best, robust_median(samples))
            if self.cuda or not watch.disturbed():
                break
        return best


class CpuWatch:
    """Whether other processes (or the hypervisor: steal time) took CPU time since it was made.

    Linux only (``/proc/stat``, in clock ticks of 10 ms); elsewhere it never reports a disturbance.
    Used to measure again what was measured while the machine was busy.
    """

    def __init__(self) -> None:
        self._start = _cpu_seconds()
        self._wall = time.perf_counter()

    def other_seconds(self) -> float | None:
        """CPU seconds used by everything but this process since the watch was made (None: unknown)."""
        end = _cpu_seconds()
        if self._start is None or end is None:
            return None
        return max(0.0, (end[0] - self._start[0]) - (end[1] - self._start[1]))

    def disturbed(self, share: float = 0.2) -> bool:
        """True when others took more than ``share`` of one CPU over the interval (and at least 2 ticks)."""
        other = self.other_seconds()
        if other is None:
            return False
        return other > max(0.02, share * (time.perf_counter() - self._wall))


def _cpu_seconds() -> tuple[float, float] | None:
    """(CPU seconds busy on the whole machine, CPU seconds of this process), or None off Linux."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = f.readline().split()
        ticks = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, AttributeError):
        return None
    if not fields or fields[0] != "cpu" or len(fields) < 8:
        return None
    values = [int(v) for v in fields[1:9]]
    busy = sum(values) - values[3] - values[4]  # all but idle and iowait (steal counts: another VM ran)
    own = os.times()
    return busy / ticks, own.user + own.system


def robust_median(samples: Sequence[float], tolerance: float = 1.25) -> float:
    """The median of the samples within ``tolerance`` x the fastest one.

    On a machine shared with other work, a sample in which a thread of the parallel region was preempted
    takes milliseconds longer (the region waits for it); when such samples are the majority the plain
    median reports the other work, not the device. On a quiet machine this is the plain median.
    """
    fastest = min(samples)
    return statistics.median([s for s in samples if s <= tolerance * fastest])


class _Reporter:
    def __init__(self, progress: Progress | None, stages: int) -> None:
        self.progress = progress
        self.stages = stages
        self.done = 0

    def stage(self, name: str, done: bool = False) -> None:
        if self.progress is not None:
            self.progress(name, 1.0 if done else min(1.0, self.done / self.stages))
        self.done += 1


# ---- the measurements -------------------------------------------------------------------------------

class _Call(torch.nn.Module):
    def __init__(self, fn: Callable[..., Any]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, *args: torch.Tensor) -> Any:
        return self.fn(*args)


def _point(timer: _Timer, fn: Callable[..., Any], *args: torch.Tensor, tiny: bool = False,
           reps: int | None = None) -> list[float]:
    """``[flops, bytes, seconds]`` of ``fn(*args)``: FLOPs and bytes as rooflens counts them (one capture
    run on fake copies of the arguments, a few milliseconds; the arguments are not touched), seconds as
    ``timer`` measures them."""
    cost = sum((r.cost for r in run_capture(_Call(fn), args, {}).records), ZERO)
    return [float(cost.flops), float(cost.bytes), timer.time(functools.partial(fn, *args), tiny=tiny, reps=reps)]


def _parse_dtypes(dtypes: Sequence[str] | None) -> list[str]:
    if dtypes is None:
        asked = ["float32", "float64", "bfloat16", "float16"]
    else:
        if isinstance(dtypes, str):
            dtypes = [dtypes]
        asked = []
        for d in dtypes:
            name = str(d).strip().lower().removeprefix("torch.")
            name = _DTYPE_ALIASES.get(name, name)
            if name not in _DTYPES:
                raise HardwareError(f"benchmark(dtypes=...): unknown dtype {d!r}; choose from "
                                    f"{', '.join(_DTYPES)}")
            asked.append(name)
    return ["float32"] + [d for d in dict.fromkeys(asked) if d != "float32"]


def _gemm_curve(timer: _Timer, dev: torch.device, dtype: torch.dtype, sizes: Sequence[int],
                reference: Rows | None) -> Rows | None:
    """[flops, bytes, seconds] per square size; None when the dtype is emulated (far slower than fp32)."""
    curve: Rows = []
    if reference is not None and dev.type == "cpu":
        # probe a small GEMM first: an emulated bf16/fp16 runs at a few % of fp32's rate, and a sweep up
        # to large sizes would take minutes
        n = 128
        a = torch.randn(n, n, device=dev).to(dtype)
        b = torch.randn(n, n, device=dev).to(dtype)
        t = timer.time(functools.partial(torch.mm, a, b))
        ref = min(reference, key=lambda row: abs(math.log(row[0] / (2 * n**3))))
        if (2 * n**3 / t) < 0.1 * (ref[0] / ref[2]):
            return None
    for n in sizes:
        a = torch.randn(n, n, device=dev).to(dtype)
        b = torch.randn(n, n, device=dev).to(dtype)
        out = torch.empty(n, n, device=dev, dtype=dtype)
        curve.append(_point(timer, functools.partial(torch.mm, out=out), a, b))
    return curve


def _gemv_curve(timer: _Timer, dev: torch.device, sizes: Sequence[int]) -> Rows:
    """[flops, bytes, seconds] of ``addmm(bias, x, w.t())`` with x 1 x n, w n x n: a linear layer at batch 1."""
    curve: Rows = []
    for n in sizes:
        w = torch.randn(n, n, device=dev)
        x = torch.randn(1, n, device=dev)
        bias = torch.randn(n, device=dev)
        curve.append(_point(timer, torch.addmm, bias, x, w.t()))
    return curve


def _conv_grid(plan: _Plan, sort: str) -> list[tuple[int, int, int]]:
    """(in channels, out channels, resolution) of the grid of one convolution sort."""
    resolutions = ((1,) if sort == "conv1x1" else ()) + plan.conv_resolutions  # 1x1: squeeze-excite convs
    ratios = (1.0, 4.0, 0.25) if sort == "conv1x1" else (1.0,)  # 1x1: bottleneck expansions and reductions
    grid = []
    for c in plan.conv_channels:
        for ratio in ratios:
            c_out = int(c * ratio)
            if c_out < 4:
                continue
            for r in resolutions:
                k, groups = _conv_shape(sort, c)
                flops = 2 * (c // groups) * k * k * c_out * r * r
                if flops <= plan.conv_max_flops and max(c, c_out) * r * r <= 2**20:
                    grid.append((c, c_out, r))
    return grid


def _conv_shape(sort: str, channels: int) -> tuple[int, int]:
    """(kernel size, groups) of a convolution sort with ``channels`` in."""
    if sort == "conv1x1":
        return 1, 1
    if sort == "dwconv3x3":
        return 3, channels
    if sort == "gconv3x3":
        return 3, max(1, channels // 16)
    return 3, 1


def _conv_curve(timer: _Timer, dev: torch.device, plan: _Plan, sort: str) -> Rows:
    """[flops, bytes, seconds, output pixels, out/in channels] of batch-1 fp32 convolutions on the grid."""
    curve: Rows = []
    for c, c_out, r in _conv_grid(plan, sort):
        k, groups = _conv_shape(sort, c)
        w = torch.randn(c_out, c // groups, k, k, device=dev)
        x = torch.randn(1, c, r, r, device=dev)
        conv = functools.partial(F.conv2d, stride=1, padding=k // 2, groups=groups)
        curve.append([*_point(timer, conv, x, w), float(r * r), c_out / c])
    curve.sort(key=lambda row: (row[0], row[3], row[4]))
    return curve


def _family_curve(timer: _Timer, dev: torch.device, resolutions: Sequence[int], family: str) -> Rows:
    """[flops, bytes, seconds] of one operator family on 1 x 64 x r x r fp32 tensors.

    FLOPs and bytes are counted by rooflens's formulas, so that an operator record of the same family and
    size reads off the same point.
    """
    curve: Rows = []
    for r in resolutions:
        case = _family_case(family, torch.randn(1, 64, r, r, device=dev))
        if case is not None:
            fn, args = case
            curve.append(_point(timer, fn, *args, tiny=64 * r * r <= 1024))
    return curve


def _family_case(family: str, x: torch.Tensor) -> tuple[Callable[..., Any], tuple[torch.Tensor, ...]] | None:
    """(operator, its tensor arguments) of ``family`` on ``x`` (1 x 64 x r x r); None where it does not apply."""
    dev = x.device
    if family == "relu_":
        return torch.relu_, (x,)
    if family == "add":
        return torch.add, (x, torch.randn_like(x))
    if family == "batchnorm":
        return functools.partial(_batch_norm, stats=_BatchNormStats.fresh(64, dev)), (x,)
    if family == "layernorm":  # over rows of 256 (a transformer's or a ConvNeXt's channels)
        rows = x.reshape(-1, 256) if x.numel() >= 256 else x.reshape(1, -1)
        d = rows.shape[-1]
        return functools.partial(F.layer_norm, normalized_shape=(d,), weight=torch.ones(d, device=dev),
                                 bias=torch.zeros(d, device=dev)), (rows,)
    if family == "sigmoid":
        return torch.sigmoid, (x,)
    if family == "gelu":
        return F.gelu, (x,)
    if family == "maxpool":  # 3x3, stride 2, padding 1 (the ResNet stem's)
        if x.shape[-1] < 2:
            return None
        return functools.partial(F.max_pool2d, kernel_size=3, stride=2, padding=1), (x,)
    if family == "mean":  # global average pool
        return functools.partial(torch.mean, dim=(2, 3), keepdim=True), (x,)
    if family == "cat":
        return _cat_channels, (x[:, :32].contiguous(), x[:, 32:].contiguous())
    raise AssertionError(f"unknown operator family {family!r}")


def _cat_channels(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.cat((a, b), 1)


def _alloc_curve(timer: _Timer, dev: torch.device, sizes: Sequence[int]) -> Rows:
    """[0, bytes, seconds]: what a fresh fp32 tensor of that size costs beyond filling one that exists.

    A fresh tensor is allocated, written by the intra-op threads and freed, as an operator's output is;
    large ones come straight from the operating system (page faults on first touch, unmapping on free),
    which can cost more than the writing itself.
    """
    curve: Rows = []
    for n in sizes:
        buf = torch.empty(n, device=dev)
        reuse = timer.time(functools.partial(buf.fill_, 1.0))
        fresh = timer.time(functools.partial(_fresh_filled, n, dev))
        curve.append([0.0, float(4 * n), max(0.0, fresh - reuse)])
    return curve


def _sequence_overheads(timer: _Timer, dev: torch.device, shapes: Sequence[tuple[int, int]]) -> tuple[Rows, float]:
    """What an operator costs inside a sequence of eager operators beyond what it costs alone.

    For each (channels c, resolution r): a chain of 12 blocks of 1x1 convolution, batch norm and in-place
    ReLU on 1 x c x r x r fp32 activations is timed as functional calls and as an ``nn.Sequential`` of
    modules, and the same three operators are timed alone. Returns the rows ``[0, activation bytes,
    extra seconds per operator]`` (functional chain minus the operators alone, per operator: cache and
    allocator effects of a real sequence) and the extra seconds per module call (module chain minus
    functional chain, per module, on the smallest activations: ``nn.Module.__call__`` and the modules'
    Python ``forward``).
    """
    rows: Rows = []
    module_costs: list[float] = []
    blocks = 12
    for c, r in shapes:
        x = torch.randn(1, c, r, r, device=dev)
        weights = [torch.randn(c, c, 1, 1, device=dev) / math.sqrt(c) for _ in range(blocks)]
        stats = _BatchNormStats.fresh(c, dev)
        alone = (timer.time(functools.partial(F.conv2d, x, weights[0]))
                 + timer.time(functools.partial(_batch_norm, x, stats))
                 + timer.time(functools.partial(torch.relu_, x.clone())))
        chain = timer.time(functools.partial(_functional_chain, x, weights, stats))
        layers: list[torch.nn.Module] = []
        for w in weights:
            conv = torch.nn.Conv2d(c, c, 1, bias=False).to(dev)
            conv.weight.data.copy_(w)
            layers += [conv, torch.nn.BatchNorm2d(c).to(dev), torch.nn.ReLU(inplace=True)]
        sequential = torch.nn.Sequential(*layers).eval()
        modules = timer.time(functools.partial(sequential, x))
        rows.append([0.0, float(4 * c * r * r), max(0.0, (chain / blocks - alone) / 3)])
        module_costs.append((modules - chain) / (3 * blocks + 1))
    # the module cost from the smallest activations, where the operators' own times add the least noise
    return rows, max(0.0, module_costs[0])


def _functional_chain(x: torch.Tensor, weights: Sequence[torch.Tensor], stats: _BatchNormStats) -> torch.Tensor:
    for w in weights:
        x = torch.relu_(_batch_norm(F.conv2d(x, w), stats))
    return x


class _BatchNormStats(NamedTuple):
    """Running statistics and affine parameters of an inference batch norm over ``channels``."""

    mean: torch.Tensor
    var: torch.Tensor
    weight: torch.Tensor
    bias: torch.Tensor

    @classmethod
    def fresh(cls, channels: int, dev: torch.device) -> _BatchNormStats:
        return cls(torch.zeros(channels, device=dev), torch.ones(channels, device=dev),
                   torch.ones(channels, device=dev), torch.zeros(channels, device=dev))


def _batch_norm(x: torch.Tensor, stats: _BatchNormStats) -> torch.Tensor:
    """Batch norm in inference (running statistics), as an ``nn.BatchNorm2d`` in eval mode runs it."""
    return F.batch_norm(x, stats.mean, stats.var, stats.weight, stats.bias, training=False, momentum=0.1, eps=1e-5)


def _fresh_filled(n: int, dev: torch.device) -> torch.Tensor:
    return torch.empty(n, device=dev).fill_(1.0)


def _stream(timer: _Timer, dev: torch.device, llc: int | None, plan: _Plan) -> tuple[Rows, Rows]:
    """Copy and triad curves, the last points with working sets >= stream_multiple x LLC and 256 MB."""
    target = max(256e6, plan.stream_multiple * (llc or 32e6))
    available = _available_bytes(dev)
    if available:
        target = min(target, available / 4)
    n_big = int(target / 3 / 4)  # triad: three fp32 arrays
    sizes = sorted({max(1 << 16, n_big // 16), max(1 << 18, n_big // 4), n_big})
    copy_curve: Rows = []
    triad_curve: Rows = []
    for n in sizes:
        a = torch.empty(n, device=dev).fill_(1.0)
        b = torch.empty(n, device=dev).fill_(2.0)
        c = torch.empty(n, device=dev).fill_(3.0)
        reps = 3 if n == n_big else None
        copy_curve.append(_point(timer, torch.Tensor.copy_, b, a, reps=reps))
        triad_curve.append(_point(timer, functools.partial(torch.add, alpha=3.0, out=a), b, c, reps=reps))
        del a, b, c  # before the next, larger arrays
    return copy_curve, triad_curve


# ---- the machine ------------------------------------------------------------------------------------

def _llc_bytes() -> int | None:
    """Size of the largest cache of cpu0 from sysfs (Linux), else None."""
    best = 0
    for index in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            text = (index / "size").read_text().strip()
        except OSError:
            continue
        m = re.match(r"^(\d+)\s*([KMG]?)", text)
        if m:
            best = max(best, int(m.group(1)) * {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}[m.group(2)])
    return best or None


def _gpu_l2_bytes(dev: torch.device) -> int | None:
    props = torch.cuda.get_device_properties(dev)
    return int(getattr(props, "L2_cache_size", 0)) or None


def _available_bytes(dev: torch.device) -> int | None:
    if dev.type == "cuda":
        free, _ = torch.cuda.mem_get_info(dev)
        return int(free)
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _memory_bytes(dev: torch.device) -> int | None:
    if dev.type == "cuda":
        return int(torch.cuda.get_device_properties(dev).total_memory)
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        return int(total) if total > 0 else None
    except (ValueError, OSError, AttributeError):
        return None


def _cpuinfo() -> dict[str, str]:
    info: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key and key not in info:
                info[key] = value.strip()
    except OSError:
        pass
    return info


def machine_name(dev: torch.device) -> str:
    """The name of the device (the GPU's, or the CPU's model name), as a measured spec records it."""
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    info = _cpuinfo()
    name = info.get("model name") or platform.processor() or platform.machine() or "unknown CPU"
    return re.sub(r"\s+", " ", name).strip()


def _vendor(dev: torch.device) -> str:
    if dev.type == "cuda":
        return "AMD" if getattr(torch.version, "hip", None) else "NVIDIA"
    vendor_id = _cpuinfo().get("vendor_id", "")
    known = {"GenuineIntel": "Intel", "AuthenticAMD": "AMD", "HygonGenuine": "Hygon"}
    if vendor_id in known:
        return known[vendor_id]
    name = machine_name(dev)
    for word in ("Intel", "AMD", "Apple", "Ampere", "Qualcomm", "ARM"):
        if word.lower() in name.lower():
            return word
    return vendor_id or platform.machine() or "unknown"


def _load_average() -> float:
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return 0.0


def _busy_note(load: list[float], threads: int, dev: torch.device) -> str:
    cpus = os.cpu_count() or 1
    busy = max(load) - (threads if dev.type == "cpu" else 1)  # our own threads count in the load average
    if busy <= 0.5 or busy < 0.25 * cpus:
        return ""
    return (f"; the machine was busy while measuring (load average {max(load):.1f} on {cpus} CPUs): "
            "the figures may be low, measure again when it is idle")


def _hostname() -> str:
    return (socket.gethostname() or platform.node() or "localhost").split(".")[0]


def _spec_id(host: str) -> str:
    text = re.sub(r"[^a-z0-9._-]+", "-", host.lower()).strip("-._") or "localhost"
    return f"measured-{text}"


