"""What a timed run achieved against the counted work, and the shapes of measurements the report reads.

The report layer sits below :mod:`rooflens.measurement` (which times models and profiles operators) and
never imports it. A Report holds a measurement and the renderers show one through the structural types
below (:class:`MeasurementLike`, :class:`ProfileLike`, :class:`ProfileRowLike`): any object with these
attributes will do, and ``rooflens.measurement``'s records have them. :class:`Achieved` is derived
from a Report and a measured median alone, so it is computed here, where the Report can use it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, cast

from rooflens.errors import InputError

if TYPE_CHECKING:
    from rooflens.report.report import Report


class MeasurementLike(Protocol):
    """Timed forward passes at one batch size (``rooflens.measurement.Measurement``)."""

    @property
    def batch_size(self) -> int: ...
    @property
    def device(self) -> str: ...
    @property
    def threads(self) -> int | None: ...
    @property
    def iters(self) -> int: ...
    @property
    def median_seconds(self) -> float: ...
    @property
    def mean_seconds(self) -> float: ...
    @property
    def std_seconds(self) -> float: ...
    @property
    def p90_seconds(self) -> float: ...
    @property
    def p99_seconds(self) -> float: ...
    @property
    def throughput_per_s(self) -> float: ...
    def as_dict(self, *, samples: bool = True) -> dict[str, Any]: ...


class UnmatchedEventLike(Protocol):
    """Profiled operators that no analysed record took (``rooflens.measurement.UnmatchedEvent``)."""

    @property
    def name(self) -> str: ...
    @property
    def count(self) -> float: ...
    @property
    def aliasing(self) -> bool: ...


class ProfileLike(Protocol):
    """A per-operator profile matched to a report's records (``rooflens.measurement.OperatorProfile``)."""

    @property
    def record_seconds(self) -> Sequence[float | None]: ...
    @property
    def unmatched_events(self) -> Sequence[UnmatchedEventLike]: ...
    @property
    def matched_records(self) -> int: ...
    @property
    def matched_seconds(self) -> float: ...
    @property
    def profiled_seconds(self) -> float: ...
    def as_dict(self) -> dict[str, Any]: ...


class ProfileRowLike(Protocol):
    """One module of a per-operator profile (``rooflens.measurement.ModuleRow``)."""

    @property
    def path(self) -> str: ...
    @property
    def type_name(self) -> str: ...
    @property
    def measured_seconds(self) -> float: ...
    @property
    def roofline_seconds(self) -> float | None: ...
    @property
    def efficiency(self) -> float | None: ...
    @property
    def achieved_flops_per_s(self) -> float: ...
    @property
    def lost_seconds(self) -> float | None: ...


@dataclass(frozen=True)
class Achieved:
    """Counted work over measured time: achieved FLOP/s and bandwidth, and how much of the peak that is.

    ``flops`` and ``bytes`` are the report's totals (for the batch it was analysed with), ``seconds``
    the measured median. With hardware in the report: ``compute_utilisation`` = achieved FLOP/s / peak,
    ``bandwidth_utilisation`` = achieved bytes/s / bandwidth, ``efficiency`` = roofline time / measured.
    """

    seconds: float
    flops: int
    bytes: int
    flops_per_s: float
    bytes_per_s: float
    peak_flops_per_s: float | None = None
    bandwidth_bytes_per_s: float | None = None
    roofline_seconds: float | None = None

    @property
    def compute_utilisation(self) -> float | None:
        return self.flops_per_s / self.peak_flops_per_s if self.peak_flops_per_s else None

    @property
    def bandwidth_utilisation(self) -> float | None:
        return self.bytes_per_s / self.bandwidth_bytes_per_s if self.bandwidth_bytes_per_s else None

    @property
    def efficiency(self) -> float | None:
        if self.roofline_seconds is None or self.seconds <= 0:
            return None
        return self.roofline_seconds / self.seconds

    def as_dict(self) -> dict[str, Any]:
        return {
            "seconds": self.seconds,
            "flops": self.flops,
            "bytes": self.bytes,
            "flops_per_s": self.flops_per_s,
            "bytes_per_s": self.bytes_per_s,
            "peak_flops_per_s": self.peak_flops_per_s,
            "bandwidth_bytes_per_s": self.bandwidth_bytes_per_s,
            "compute_utilisation": self.compute_utilisation,
            "bandwidth_utilisation": self.bandwidth_utilisation,
            "roofline_seconds": self.roofline_seconds,
            "efficiency": self.efficiency,
        }


class SubnormalOutputLike(Protocol):
    """What the report reads of one operator's subnormal output (``rooflens.measurement.subnormal``)."""

    @property
    def module(self) -> str: ...
    @property
    def op(self) -> str: ...
    @property
    def subnormal(self) -> int: ...
    @property
    def elements(self) -> int: ...


class SubnormalsLike(Protocol):
    """What the report reads of the subnormal floats a forward pass wrote."""

    @property
    def elements(self) -> int: ...
    @property
    def subnormal(self) -> int: ...
    @property
    def outputs(self) -> Sequence[SubnormalOutputLike]: ...


def subnormals_of(m: MeasurementLike) -> SubnormalsLike | None:
    """A measurement's count of subnormal floats, None where it has none (not checked, or an object without
    the attribute: it is not part of :class:`MeasurementLike`)."""
    value = getattr(m, "subnormals", None)
    return cast("SubnormalsLike", value) if isinstance(getattr(value, "subnormal", None), int) else None


def page_faults_per_call(m: MeasurementLike) -> float | None:
    """A measurement's minor page faults per timed call, None where it has none (not counted, or an object
    without the attribute: it is not part of :class:`MeasurementLike`)."""
    value = getattr(m, "page_faults_per_call", None)
    return float(value) if isinstance(value, (int, float)) else None


def achieved(measurement: MeasurementLike, report: Report) -> Achieved:
    """The report's FLOPs and bytes over the measured median; utilisation when the report has hardware.

    The report must have been analysed at the measured batch size (its first input's first dimension).
    """
    if report.inputs and report.inputs[0].shape:
        analysed = report.inputs[0].shape[0]
        if analysed != measurement.batch_size:
            raise InputError(
                f"the report was analysed at batch size {analysed} but the measurement ran batch size "
                f"{measurement.batch_size}; analyse and measure the same input"
            )
    total = report.total()
    seconds = measurement.median_seconds
    peak = bandwidth = roof = None
    if report.hardware is not None:
        roofline = report.roofline
        peak, bandwidth, roof = roofline.peak_flops_per_s, roofline.bandwidth_bytes_per_s, roofline.total_seconds
    return Achieved(
        seconds=seconds,
        flops=total.flops,
        bytes=total.bytes,
        flops_per_s=total.flops / seconds if seconds > 0 else 0.0,
        bytes_per_s=total.bytes / seconds if seconds > 0 else 0.0,
        peak_flops_per_s=peak,
        bandwidth_bytes_per_s=bandwidth,
        roofline_seconds=roof,
    )
