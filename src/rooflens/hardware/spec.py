"""What a device can do: dense peak FLOP/s per precision, memory bandwidth and size, and where the
figures come from. Base units inside (FLOP/s, bytes/s, bytes); quantities with SI suffixes are parsed
here (``"19.2T"``, ``"448 GB/s"``, ``"16 GiB"``) and nowhere else.
"""

from __future__ import annotations

import datetime
import enum
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import tomli_w

from rooflens.errors import HardwareError


class Precision(str, enum.Enum):
    """A compute precision: selects the device's peak and the default width of tensors in memory."""

    FP64 = "fp64"
    FP32 = "fp32"
    TF32 = "tf32"  # fp32 storage, tensor-core math with a 10-bit mantissa
    FP16 = "fp16"
    BF16 = "bf16"
    FP8 = "fp8"
    INT8 = "int8"
    INT4 = "int4"

    @property
    def bits(self) -> int:
        """Bits per element in memory at this precision."""
        return _BITS[self]

    @classmethod
    def parse(cls, value: Precision | str) -> Precision:
        if isinstance(value, Precision):
            return value
        text = str(value).strip().lower().removeprefix("torch.")
        text = _DTYPE_NAMES.get(text, text)
        try:
            return cls(text)
        except ValueError:
            choices = ", ".join(p.value for p in cls)
            raise HardwareError(f"unknown precision {value!r}; choose one of {choices}") from None

    @classmethod
    def from_dtype(cls, dtype: str) -> Precision | None:
        """``"float16" -> FP16``; None for dtypes with no precision of their own (bool, int64 ...)."""
        name = _DTYPE_NAMES.get(dtype.removeprefix("torch."))
        return cls(name) if name else None


_BITS = {
    Precision.FP64: 64, Precision.FP32: 32, Precision.TF32: 32, Precision.FP16: 16, Precision.BF16: 16,
    Precision.FP8: 8, Precision.INT8: 8, Precision.INT4: 4,
}
_DTYPE_NAMES = {
    "float64": "fp64", "double": "fp64", "float32": "fp32", "float": "fp32", "float16": "fp16", "half": "fp16",
    "bfloat16": "bf16", "float8_e4m3fn": "fp8", "float8_e5m2": "fp8", "float8_e4m3fnuz": "fp8",
    "float8_e5m2fnuz": "fp8", "int8": "int8", "qint8": "int8", "quint8": "int8", "quint4x2": "int4",
}

# When a device has no peak at the requested precision, the first of these it has is used instead: a
# precision without its own units runs on the next wider ones (bf16 on a T4 runs as fp32 math).
_FALLBACK = {
    Precision.FP64: (Precision.FP32,),
    Precision.FP32: (),
    Precision.TF32: (Precision.FP32,),
    Precision.FP16: (Precision.FP32,),
    Precision.BF16: (Precision.FP32,),
    Precision.FP8: (Precision.FP16, Precision.BF16, Precision.FP32),
    Precision.INT8: (Precision.FP16, Precision.FP32),
    Precision.INT4: (Precision.INT8, Precision.FP16, Precision.FP32),
}


class Kind(str, enum.Enum):
    """What sort of device an entry describes."""

    GPU = "gpu"
    NPU = "npu"
    SOC = "soc"  # a system on a chip (Jetson, Apple M): the entry says which of its units it describes
    CPU = "cpu"
    MEASURED = "measured"  # measured on the machine by ``rooflens hw bench``
    CUSTOM = "custom"  # an ad-hoc device from --peak and --bandwidth

    @classmethod
    def parse(cls, value: Kind | str, where: str = "hardware") -> Kind:
        try:
            return cls(value)
        except ValueError:
            raise HardwareError(f"{where}: kind {value!r} is not one of {', '.join(k.value for k in cls)}") from None


# ---- quantities -------------------------------------------------------------------------------------

_PREFIX = {"": 1.0, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
           "Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40, "Pi": 2.0**50}
_UNITS = {  # unit text (lower case) -> the dimension it measures
    "flop/s": "flops", "flops": "flops", "op/s": "flops", "ops": "flops",
    "b/s": "bandwidth", "bytes/s": "bandwidth", "bps": "bandwidth",
    "b": "bytes", "byte": "bytes", "bytes": "bytes",
}
_DIMENSION_TEXT = {"flops": "FLOP/s (e.g. '19.2 TFLOP/s')", "bandwidth": "bytes/s (e.g. '448 GB/s')",
                   "bytes": "bytes (e.g. '16 GB' or '16 GiB')"}
_QUANTITY = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*(Ki|Mi|Gi|Ti|Pi|[kKMGTPE]?)\s*([A-Za-z/]*)\s*$")


def parse_quantity(value: Any, dimension: str, *, what: str = "value") -> float:
    """``"19.2T"`` / ``"19.2 TFLOP/s"`` -> ``1.92e13``; a number is taken in base units.

    ``dimension`` is ``"flops"``, ``"bandwidth"`` or ``"bytes"``; a unit of another dimension (a
    bandwidth written as ``"448 TFLOP/s"``) is an error that names ``what``.
    """
    if isinstance(value, bool):
        raise HardwareError(f"{what}: expected a number of {_DIMENSION_TEXT[dimension]}, got {value!r}")
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        m = _QUANTITY.match(value)
        if not m:
            raise HardwareError(f"{what}: {value!r} is not a quantity; write it as {_DIMENSION_TEXT[dimension]}")
        digits, prefix, unit = m.groups()
        if unit and _UNITS.get(unit.lower()) != dimension:
            raise HardwareError(f"{what}: unit {unit!r} in {value!r} is not {_DIMENSION_TEXT[dimension]}")
        if prefix.endswith("i") and dimension != "bytes":
            raise HardwareError(f"{what}: binary prefix {prefix!r} in {value!r}; use SI prefixes (G = 1e9) here")
        number = float(digits) * _PREFIX[prefix]
    else:
        raise HardwareError(f"{what}: expected a number of {_DIMENSION_TEXT[dimension]}, got {type(value).__name__}")
    if not math.isfinite(number) or number <= 0:
        raise HardwareError(f"{what}: {value!r} must be a positive, finite quantity")
    return number


# ---- bounds -----------------------------------------------------------------------------------------

# Plausible ranges, wide enough for a microcontroller-class NPU and a whole accelerator; a figure outside
# them is almost always a unit slip (GB/s typed as TB/s, a sparse figure, a missing prefix).
PEAK_BOUNDS = (1e9, 2e16)  # 1 GFLOP/s .. 20 PFLOP/s dense
BANDWIDTH_BOUNDS = (1e9, 2e13)  # 1 GB/s .. 20 TB/s
MEMORY_BOUNDS = (1e6, 1e14)  # 1 MB .. 100 TB
ONCHIP_BOUNDS = (1e3, 1e11)  # 1 KB .. 100 GB (wafer-scale SRAM)
RIDGE_BOUNDS = (0.1, 5000.0)  # FLOP/byte
_ID = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


def _check(value: float, bounds: tuple[float, float], what: str, unit: str) -> None:
    lo, hi = bounds
    if not lo <= value <= hi:
        raise HardwareError(f"{what} = {value:.4g} {unit} is outside the plausible range {lo:.0e}..{hi:.0e} {unit}")


@dataclass(frozen=True)
class HardwareSpec:
    """One device. Peaks are dense (no structured sparsity), in FLOP/s (OP/s for integer precisions).

    ``bandwidth_bytes_per_s`` is None when the vendor does not publish it; the roofline then needs one
    from the user. ``source`` names the datasheet or whitepaper; ``notes`` says how derived figures
    were derived ("datasheet sparse value / 2"). ``alignment``: per precision, the multiple of elements
    the device's matrix or vector units want channel and feature sizes to be (8 at fp16 on NVIDIA tensor
    cores, 16 fp32 lanes of AVX-512); only for precisions the device has a peak for.
    ``interconnect_bytes_per_s``: the device-to-device link, bytes/s in one direction per device (NVLink,
    PCIe), what a ring all-reduce across devices runs at; None when not given. ``efficiency``: what eager
    kernels reach in practice, from published measurements (their sources in ``notes``): ``matmul`` and
    ``memory``, the fractions of the peak and of the bandwidth that large matrix products and streaming
    kernels achieve, and ``operator_seconds``, the framework's cost per operator launched.
    """

    id: str
    name: str
    vendor: str
    kind: Kind
    peak_flops_per_s: Mapping[Precision, float]
    bandwidth_bytes_per_s: float | None
    memory_bytes: int | None = None
    onchip_bytes: int | None = None
    interconnect_bytes_per_s: float | None = None
    source: str = ""
    notes: str = ""
    aliases: tuple[str, ...] = ()
    alignment: Mapping[Precision, int] = field(default_factory=dict)  # elements, per precision
    efficiency: Mapping[str, float] = field(default_factory=dict)  # matmul, memory (fractions), operator_seconds
    # free-form (measured: torch version, date, curves): what a hardware file holds (see _file_value)
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not _ID.match(self.id):
            raise HardwareError(
                f"hardware id {self.id!r}: use lower-case letters, digits, '-', '.' and '_' (e.g. 'rtx-4090')"
            )
        where = f"hardware {self.id!r}"
        object.__setattr__(self, "kind", Kind.parse(self.kind, where))
        if not self.name or not self.vendor:
            raise HardwareError(f"{where}: name and vendor are required")
        if not self.source or not self.source.strip():
            raise HardwareError(f"{where}: a source (datasheet, whitepaper or measurement) is required")
        peaks: dict[Precision, float] = {}
        for key, value in dict(self.peak_flops_per_s).items():
            p = Precision.parse(key)
            v = float(value)
            _check(v, PEAK_BOUNDS, f"{where}: {p.value} peak", "FLOP/s")
            peaks[p] = v
        if not peaks:
            raise HardwareError(f"{where}: give at least one dense peak, e.g. fp32 = '19.2 TFLOP/s'")
        object.__setattr__(self, "peak_flops_per_s", MappingProxyType(dict(sorted(peaks.items(), key=_order))))
        if self.bandwidth_bytes_per_s is not None:
            _check(float(self.bandwidth_bytes_per_s), BANDWIDTH_BOUNDS, f"{where}: bandwidth", "B/s")
            for p, v in peaks.items():
                _check(v / self.bandwidth_bytes_per_s, RIDGE_BOUNDS, f"{where}: {p.value} ridge point", "FLOP/B")
        if self.memory_bytes is not None:
            _check(float(self.memory_bytes), MEMORY_BOUNDS, f"{where}: memory", "B")
        if self.onchip_bytes is not None:
            _check(float(self.onchip_bytes), ONCHIP_BOUNDS, f"{where}: on-chip memory", "B")
        if self.interconnect_bytes_per_s is not None:
            _check(float(self.interconnect_bytes_per_s), BANDWIDTH_BOUNDS, f"{where}: interconnect", "B/s")
        object.__setattr__(self, "alignment", _alignment(self.alignment, peaks, where))
        object.__setattr__(self, "efficiency", _efficiency(self.efficiency, where))
        if isinstance(self.aliases, str) or not all(isinstance(a, str) for a in self.aliases):
            raise HardwareError(f"{where}: aliases must be a list of strings, e.g. aliases = [\"rtx-a4000\"]")
        aliases = tuple(a.lower() for a in self.aliases)
        for alias in aliases:
            if not _ID.match(alias) or alias == self.id:
                raise HardwareError(f"{where}: alias {alias!r} must differ from the id and use lower-case letters, "
                                    "digits, '-', '.' and '_'")
        object.__setattr__(self, "aliases", aliases)
        if not isinstance(self.extra, Mapping):
            raise HardwareError(f"{where}: extra must be a table of key = value pairs")
        object.__setattr__(self, "extra", MappingProxyType(_file_value(self.extra, f"{where}: extra")))

    # ---- queries --------------------------------------------------------------------------------
    @property
    def precisions(self) -> tuple[Precision, ...]:
        return tuple(self.peak_flops_per_s)

    def resolve(self, precision: Precision | str) -> tuple[Precision, str | None]:
        """The precision whose peak applies, and a note when it is not the one asked for."""
        asked = Precision.parse(precision)
        if asked in self.peak_flops_per_s:
            return asked, None
        for p in _FALLBACK[asked]:
            if p in self.peak_flops_per_s:
                return p, f"{self.name} has no {asked.value} peak; the {p.value} peak is used instead"
        p = self.precisions[0]
        return p, (f"{self.name} has no {asked.value} peak and none to fall back on; "
                   f"its {p.value} peak is used instead (it computes only {', '.join(q.value for q in self.precisions)})")

    def peak_flops(self, precision: Precision | str = Precision.FP32) -> float:
        """Dense peak FLOP/s at ``precision``; an error naming the precisions the device has otherwise."""
        p = Precision.parse(precision)
        if p not in self.peak_flops_per_s:
            have = ", ".join(q.value for q in self.precisions)
            raise HardwareError(f"{self.name} ({self.id}) has no {p.value} peak; it has {have}")
        return self.peak_flops_per_s[p]

    def ridge_point(self, precision: Precision | str = Precision.FP32) -> float:
        """FLOPs per byte at which the compute and memory roofs meet: peak / bandwidth."""
        if self.bandwidth_bytes_per_s is None:
            raise HardwareError(self.missing_bandwidth_text())
        return self.peak_flops(precision) / self.bandwidth_bytes_per_s

    def missing_bandwidth_text(self) -> str:
        return (f"{self.name} ({self.id}): no memory bandwidth is published for it; give one with "
                f"--bandwidth (e.g. --bandwidth 12.8G) or bandwidth='12.8 GB/s' in a hardware file")

    def with_bandwidth(self, bandwidth_bytes_per_s: float) -> HardwareSpec:
        """A copy with the user's bandwidth (for devices whose bandwidth is not published)."""
        from dataclasses import replace

        note = f"bandwidth {bandwidth_bytes_per_s / 1e9:g} GB/s given by the user"
        return replace(self, bandwidth_bytes_per_s=bandwidth_bytes_per_s,
                       notes=f"{self.notes}; {note}" if self.notes else note)

    # ---- serialisation --------------------------------------------------------------------------
    def as_dict(self) -> dict[str, Any]:
        """Base units, JSON-ready."""
        return {
            "id": self.id,
            "name": self.name,
            "vendor": self.vendor,
            "kind": self.kind.value,
            "peak_flops_per_s": {p.value: v for p, v in self.peak_flops_per_s.items()},
            "bandwidth_bytes_per_s": self.bandwidth_bytes_per_s,
            "memory_bytes": self.memory_bytes,
            "onchip_bytes": self.onchip_bytes,
            **({"interconnect_bytes_per_s": self.interconnect_bytes_per_s}
               if self.interconnect_bytes_per_s is not None else {}),
            "source": self.source,
            "notes": self.notes,
            "aliases": list(self.aliases),
            **({"alignment": {p.value: n for p, n in self.alignment.items()}} if self.alignment else {}),
            **({"efficiency": dict(self.efficiency)} if self.efficiency else {}),
            **({"extra": dict(self.extra)} if self.extra else {}),
        }

    def to_toml(self) -> str:
        """One ``[[device]]`` table in the catalogue's format (base units), loadable with ``--hw FILE``.

        Tables of several devices concatenate into one file. Every value round-trips exactly: floats are
        written in their shortest exact form, and ``extra`` holds nothing a TOML file cannot (see
        ``__post_init__``: non-finite numbers are refused when the spec is made, not written as strings).
        """
        head: dict[str, Any] = {"id": self.id, "name": self.name, "vendor": self.vendor, "kind": self.kind.value}
        if self.aliases:
            head["aliases"] = list(self.aliases)
        bandwidth = "unpublished" if self.bandwidth_bytes_per_s is None else self.bandwidth_bytes_per_s
        for key, value in (("memory", self.memory_bytes), ("bandwidth", bandwidth), ("onchip", self.onchip_bytes),
                           ("interconnect", self.interconnect_bytes_per_s)):
            if value is not None:
                head[key] = value
        head["source"] = self.source
        if self.notes:
            head["notes"] = self.notes
        tables: dict[str, Any] = {"peak": {p.value: v for p, v in self.peak_flops_per_s.items()}}
        if self.alignment:
            tables["alignment"] = {p.value: n for p, n in self.alignment.items()}
        if self.efficiency:
            tables["efficiency"] = dict(self.efficiency)
        if self.extra:
            tables["extra"] = dict(self.extra)
        # "[[device]]" written here: tomli_w would inline a short device table as ``device = [{...}]``,
        # and two of those in one file are a duplicate key
        return f"[[device]]\n{tomli_w.dumps(head)}\n{tomli_w.dumps({'device': tables})}"


def _order(item: tuple[Precision, Any]) -> int:
    return list(Precision).index(item[0])


ALIGNMENT_BOUNDS = (1, 1024)  # elements: 2 (fp64 tensor cores) .. 128 (a TPU's MXU); 1024 is a typo


def _alignment(value: Any, peaks: Mapping[Precision, float], where: str) -> Mapping[Precision, int]:
    """``{"fp16": 8}`` -> ``{Precision.FP16: 8}``, checked: whole numbers of elements, for precisions with a peak."""
    if not isinstance(value, Mapping):
        raise HardwareError(f"{where}: alignment must be a table of precision = elements, e.g. fp16 = 8")
    out: dict[Precision, int] = {}
    lo, hi = ALIGNMENT_BOUNDS
    for key, n in value.items():
        try:
            p = Precision.parse(key)
        except HardwareError as e:
            raise HardwareError(f"{where}: alignment: {e}") from None
        if isinstance(n, bool) or not isinstance(n, int) or not lo <= n <= hi:
            raise HardwareError(f"{where}: alignment.{p.value} = {n!r} must be a whole number of elements, {lo}..{hi}")
        if p not in peaks:
            raise HardwareError(f"{where}: alignment.{p.value} is given but the device has no {p.value} peak")
        out[p] = n
    return MappingProxyType(dict(sorted(out.items(), key=_order)))


EFFICIENCY_KEYS = {"matmul": (0.01, 1.0), "memory": (0.01, 1.0), "operator_seconds": (0.0, 1e-3)}


def _efficiency(value: Any, where: str) -> Mapping[str, float]:
    """``{"matmul": 0.87, "memory": 0.83, "operator_seconds": 5e-6}``, checked: known keys, plausible values."""
    if not isinstance(value, Mapping):
        raise HardwareError(f"{where}: efficiency must be a table, e.g. matmul = 0.87, memory = 0.83")
    out: dict[str, float] = {}
    for key, number in value.items():
        bounds = EFFICIENCY_KEYS.get(key)
        if bounds is None:
            raise HardwareError(f"{where}: efficiency.{key} is not one of {', '.join(EFFICIENCY_KEYS)}")
        if isinstance(number, bool) or not isinstance(number, (int, float)) or not bounds[0] <= number <= bounds[1]:
            raise HardwareError(f"{where}: efficiency.{key} = {number!r} must be a number in {bounds[0]}..{bounds[1]}")
        out[key] = float(number)
    return MappingProxyType(out)


def _file_value(value: Any, where: str) -> Any:
    """``value`` as a hardware file holds it: strings, booleans, integers, finite floats, dates and times,
    lists and tables of these (tuples become lists, mappings dicts); a HardwareError naming the key otherwise.

    Non-finite floats are refused rather than stored: TOML could write ``nan``, but a NaN or infinite figure
    in a device description is a failed measurement or a typo, and every later estimate would inherit it.
    """
    if isinstance(value, (bool, int, str, datetime.date, datetime.time)):  # datetime.datetime is a date
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise HardwareError(f"{where} is {value}: a hardware file holds finite numbers only "
                                "(a non-finite figure is a failed measurement: measure again, or leave the key out)")
        return value
    if isinstance(value, (list, tuple)):
        return [_file_value(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        table: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise HardwareError(f"{where}: key {key!r} is not a string")
            table[key] = _file_value(item, f"{where}.{key}")
        return table
    raise HardwareError(f"{where} is a {type(value).__name__}; a hardware file holds strings, booleans, numbers, "
                        "dates, and lists and tables of these")

