"""The roofline: per operator, compute time FLOPs / peak and memory time bytes / bandwidth; the larger
is its roofline time and names its bound. Modules and the model sum their operators' times.

The whole-model time is the sum over operators of ``max(FLOPs / peak, bytes / bandwidth)``: a lower
bound for an eager run, which also pays launch overhead, cache misses and kernels that do not reach the
peak, and gets no overlap between operators. An operator is compute-bound exactly when its intensity
(FLOPs / byte) is at or above the ridge point ``peak / bandwidth``.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from rooflens.analysis.modules import lineage
from rooflens.errors import HardwareError
from rooflens.hardware.spec import HardwareSpec, Precision
from rooflens.types import OpRecord


class Bound(str, enum.Enum):
    """What limits an operator on a device: its FLOPs (compute), its bytes (memory), or nothing (free)."""

    COMPUTE = "compute"
    MEMORY = "memory"
    NONE = "none"  # no FLOPs and no bytes: views and metadata operators


@dataclass(frozen=True)
class Timing:
    """Roofline times of one operator or of a group of operators (summed per operator).

    ``seconds`` is the roofline time (for a group, the sum of each operator's max of compute and memory
    time); ``memory_bound_seconds`` the part of it spent in memory-bound operators.
    """

    flops: int = 0
    bytes: int = 0
    compute_seconds: float = 0.0  # sum of FLOPs / peak
    memory_seconds: float = 0.0  # sum of bytes / bandwidth
    seconds: float = 0.0
    memory_bound_seconds: float = 0.0
    operators: int = 0

    def __add__(self, other: Timing) -> Timing:
        if not isinstance(other, Timing):
            return NotImplemented
        return Timing(
            self.flops + other.flops,
            self.bytes + other.bytes,
            self.compute_seconds + other.compute_seconds,
            self.memory_seconds + other.memory_seconds,
            self.seconds + other.seconds,
            self.memory_bound_seconds + other.memory_bound_seconds,
            self.operators + other.operators,
        )

    @property
    def intensity(self) -> float:
        """FLOPs per byte of the whole group (0 without traffic)."""
        return self.flops / self.bytes if self.bytes else 0.0

    @property
    def memory_bound_share(self) -> float:
        """Share of the roofline time spent in memory-bound operators (0 when there is no time)."""
        return self.memory_bound_seconds / self.seconds if self.seconds else 0.0

    @property
    def bound(self) -> Bound:
        """Compute when FLOPs / peak >= bytes / bandwidth, i.e. when the intensity is at or above the ridge
        point (for a group: of its summed FLOPs and bytes; ``memory_bound_share`` tells how much of its
        time is in memory-bound operators)."""
        if self.seconds == 0:
            return Bound.NONE
        return Bound.COMPUTE if self.compute_seconds >= self.memory_seconds else Bound.MEMORY

    @property
    def flops_per_s(self) -> float:
        """FLOPs / roofline time: the attainable FLOP/s for one operator, the effective rate of a group."""
        return self.flops / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "flops": self.flops,
            "bytes": self.bytes,
            "intensity": self.intensity,
            "compute_seconds": self.compute_seconds,
            "memory_seconds": self.memory_seconds,
            "seconds": self.seconds,
            "memory_bound_seconds": self.memory_bound_seconds,
            "memory_bound_share": self.memory_bound_share,
            "bound": self.bound.value,
            "flops_per_s": self.flops_per_s,
        }


ZERO_TIME = Timing()


def op_timing(flops: int, nbytes: int, peak_flops_per_s: float, bandwidth_bytes_per_s: float) -> Timing:
    """One operator: compute time, memory time, roofline time = the larger, bound = the side that is larger.

    Ties (intensity exactly at the ridge point) count as compute-bound.
    """
    compute = flops / peak_flops_per_s
    memory = nbytes / bandwidth_bytes_per_s
    seconds = max(compute, memory)
    return Timing(flops, nbytes, compute, memory, seconds, seconds if memory > compute else 0.0, 1)


@dataclass(frozen=True)
class OperatorTime:
    """All calls of one aten operator on the device."""

    op: str
    calls: int
    timing: Timing


@dataclass(frozen=True)
class Roofline:
    """A model's roofline on one device at one precision; see the module docstring for the rules."""

    hardware: HardwareSpec
    precision: Precision  # the precision asked for
    used_precision: Precision  # the precision whose peak was used (differs when the device lacks it)
    peak_flops_per_s: float
    bandwidth_bytes_per_s: float
    ops: tuple[Timing, ...]  # one per operator record, in the report's order
    modules: Mapping[str, Timing]  # cumulative per module path
    total: Timing
    notes: tuple[str, ...] = ()

    @property
    def ridge_point(self) -> float:
        """FLOPs per byte where the memory roof meets the compute roof."""
        return self.peak_flops_per_s / self.bandwidth_bytes_per_s

    @property
    def total_seconds(self) -> float:
        """Sum of the operators' roofline times: a lower bound for an eager run."""
        return self.total.seconds

    def attainable_flops_per_s(self, intensity: float) -> float:
        """``min(peak, bandwidth x intensity)``."""
        return min(self.peak_flops_per_s, self.bandwidth_bytes_per_s * intensity)

    def by_module(self) -> Mapping[str, Timing]:
        """Module path -> cumulative timing (the module and its submodules)."""
        return self.modules

    def bound_share(self) -> dict[str, float]:
        """Share of the roofline time in memory-bound and in compute-bound operators (sums to 1)."""
        t = self.total
        if not t.seconds:
            return {Bound.COMPUTE.value: 0.0, Bound.MEMORY.value: 0.0}
        return {Bound.COMPUTE.value: 1.0 - t.memory_bound_share, Bound.MEMORY.value: t.memory_bound_share}

    def by_operator(self, records: Sequence[OpRecord]) -> list[OperatorTime]:
        """aten operator -> calls and summed timing, most time first (``records``: the report's)."""
        acc: dict[str, list[Any]] = {}
        for r, t in zip(records, self.ops, strict=True):
            slot = acc.setdefault(r.op, [0, ZERO_TIME])
            slot[0] += 1
            slot[1] += t
        out = [OperatorTime(op, n, t) for op, (n, t) in acc.items()]
        out.sort(key=lambda o: (-o.timing.seconds, o.op))
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "hardware": self.hardware.as_dict(),
            "precision": self.precision.value,
            "used_precision": self.used_precision.value,
            "peak_flops_per_s": self.peak_flops_per_s,
            "bandwidth_bytes_per_s": self.bandwidth_bytes_per_s,
            "ridge_point": self.ridge_point,
            "total_seconds": self.total_seconds,
            "bound_share": self.bound_share(),
            "total": self.total.as_dict(),
            "notes": list(self.notes),
        }


def roofline(
    records: Sequence[OpRecord],
    module_paths: Iterable[str],
    hardware: HardwareSpec,
    precision: Precision | str,
) -> Roofline:
    """The roofline of operator ``records`` on ``hardware`` at ``precision`` (bytes as the records have them)."""
    asked = Precision.parse(precision)
    used, note = hardware.resolve(asked)
    if hardware.bandwidth_bytes_per_s is None:
        raise HardwareError(hardware.missing_bandwidth_text())
    peak = hardware.peak_flops_per_s[used]
    bandwidth = hardware.bandwidth_bytes_per_s
    ops = tuple(op_timing(r.cost.flops, r.cost.bytes, peak, bandwidth) for r in records)

    modules: dict[str, Timing] = {p: ZERO_TIME for p in module_paths}
    for r, t in zip(records, ops, strict=True):
        for path in lineage(r.module):
            modules[path] = modules.get(path, ZERO_TIME) + t
    total = sum(ops, ZERO_TIME)

    notes = [note] if note else []
    unsupported = sorted({r.op for r in records if not r.supported})
    if unsupported:
        notes.append(
            f"the FLOPs of {', '.join(unsupported)} are not counted, so their compute time is missing "
            "(their memory time is counted)"
        )
    return Roofline(
        hardware=hardware,
        precision=asked,
        used_precision=used,
        peak_flops_per_s=peak,
        bandwidth_bytes_per_s=bandwidth,
        ops=ops,
        modules=MappingProxyType(modules),
        total=total,
        notes=tuple(notes),
    )
