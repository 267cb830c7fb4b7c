"""Energy: a first-order estimate of what one forward pass costs in joules, from the operation counts and
the memory traffic the records hold (docs/energy.md gives the model, the figures and their sources).

Per operator record::

    compute = (MAC FLOPs / 2) x E_mac(p) + other FLOPs x E_flop(p)
    memory  = DRAM bytes x E_dram + on-chip bytes x E_onchip

``E_mac`` is one multiply plus one add at the compute precision ``p``, ``E_flop`` one FLOP of any other
operator (elementwise, normalisation, pooling, softmax ...), ``E_dram`` / ``E_onchip`` the energy of moving
one byte to or from DRAM / on-chip SRAM. Modules and the model sum their operators (cumulative, over the
module tree, like the roofline's ``by_module``).

**MACs** cost ``E_mac`` each, whatever FLOP convention the report counts with (the hardware does the same
work): the compute energy is ``MACs x E_mac + max(0, FLOPs - 2 x MACs) x E_flop``, the other FLOPs being the
bias adds and whatever else the record counts beside its dot products (under ``exact`` a bias add fills a
dot product's missing add, so a biased convolution has no other FLOPs and the two conventions give the
same joules).

**Default figures**: Horowitz's 45 nm table (ISSCC 2014, :data:`HOROWITZ_45NM_PJ`). ``E_mac`` = multiply +
add; ``E_flop`` = the mean of the two, half a MAC (an elementwise FLOP is as often a multiply, a batch norm's
scale, as an add or a compare: ReLU, a residual add, max pooling), so with the default table every FLOP costs
the same and the compute energy is ``FLOPs x E_mac / 2``. Precisions the table has no figure for use the
nearest it has (:data:`PRECISION_FALLBACK`): bf16, fp8 and tf32 take the figures of the float of the same or
next larger width it has, int4 int8's, fp64 fp32's; each such choice is a note of the estimate.

**Bytes**: every byte a record reads or writes (``cost.bytes``, as the roofline counts them) is DRAM traffic
at ``E_dram`` (640 pJ per 32-bit DRAM access = 160 pJ/byte): an upper bound, since caches hold what the
operator before wrote and weights that are read again. With ``onchip=True`` and a device whose on-chip
memory size is known (``HardwareSpec.onchip_bytes``), an operator whose bytes fit in it reads and writes its
activations on chip (``E_onchip``, a 64-bit read of a 1 MB SRAM: 12.5 pJ/byte); its weights and buffers
still come from DRAM, and so do all the bytes of an operator that does not fit.

**Overrides**, per device, later layers replacing the figures they give (:func:`energy_table`): the
default table < ``rooflens/hardware/data/energy/energy.toml`` by device id < the ``[device.extra.energy]``
table of the device in a user's hardware file. A layer's keys (numbers in picojoules)::

    source = "where the figures come from"
    dram_pj_per_byte = 31.76
    onchip_pj_per_byte = 12.5
    pj_per_flop = { fp16 = 0.75 }      # per FLOP: a MAC costs two, another FLOP one
    pj_per_mac = { int8 = 0.23 }       # per MAC; another FLOP then costs half of it (both: each its own)

Estimates are of dynamic energy only: no static (leakage) power, no idle power of the rest of the machine,
no control overhead (instruction fetch, scheduling), which on a general-purpose processor costs more than
the arithmetic itself. They compare designs (which module spends the energy, and on what); a measured
figure (:mod:`rooflens.measurement.energy`) is the whole chip's.
"""

from __future__ import annotations

import difflib
import functools
import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

from rooflens.analysis.counted import Counted
from rooflens.analysis.modules import lineage
from rooflens.errors import HardwareError, InputError
from rooflens.hardware.spec import HardwareSpec, Precision
from rooflens.types import OpRecord, TensorKind, TensorMeta

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PICO = 1e-12  # joules per picojoule

# ---- the default table --------------------------------------------------------------------------------

HOROWITZ_SOURCE = (
    "M. Horowitz, \"Computing's energy problem (and what we can do about it)\", ISSCC 2014 (45 nm, 0.9 V), "
    "as reproduced in Han et al., NIPS 2015, Fig. 1 and Sze et al., Proc. IEEE 2017; see docs/energy.md"
)

#: Horowitz's 45 nm figures, picojoules per operation or access (docs/energy.md lists them with their sources).
HOROWITZ_45NM_PJ: Mapping[str, float] = MappingProxyType({
    "fp32_mul": 3.7, "fp32_add": 0.9,
    "fp16_mul": 1.1, "fp16_add": 0.4,
    "int32_mul": 3.1, "int32_add": 0.1,
    "int8_mul": 0.2, "int8_add": 0.03,
    "sram_8kb_read_64bit": 10.0, "sram_32kb_read_64bit": 20.0, "sram_1mb_read_64bit": 100.0,
    "dram_access_32bit": 640.0,  # 1.3-2.6 nJ per 64-bit access in the talk's memory slide
})

#: Where a precision without figures of its own takes them from, in order (the first the table has).
PRECISION_FALLBACK: Mapping[Precision, tuple[Precision, ...]] = MappingProxyType({
    Precision.FP64: (Precision.FP32,),
    Precision.FP32: (),
    Precision.TF32: (Precision.FP32,),
    Precision.FP16: (Precision.FP32,),
    Precision.BF16: (Precision.FP16, Precision.FP32),
    Precision.FP8: (Precision.FP16, Precision.FP32),
    Precision.INT8: (Precision.FP16, Precision.FP32),
    Precision.INT4: (Precision.INT8, Precision.FP16, Precision.FP32),
})

# Why each fallback is a fair stand-in, and in which direction it errs.
_FALLBACK_WHY = {
    Precision.FP64: "fp64 units cost more: a lower bound",
    Precision.TF32: "tf32 multiplies 11-bit significands like fp16 but accumulates in fp32: an upper bound",
    Precision.BF16: "the same width; a bf16 multiplier (8-bit significand) is smaller than fp16's (11): an upper bound",
    Precision.FP8: "an fp8 multiplier is smaller, and its products accumulate at 16 or 32 bits: an upper bound",
    Precision.INT4: "a 4-bit multiplier is smaller: an upper bound",
}


@dataclass(frozen=True)
class Arithmetic:
    """Energy of the arithmetic at one precision, in picojoules."""

    mac_pj: float  # one multiply-accumulate: one multiply and one add
    flop_pj: float  # one FLOP of any other operator

    def as_dict(self) -> dict[str, float]:
        return {"pj_per_mac": self.mac_pj, "pj_per_flop": self.flop_pj}


def _horowitz_arithmetic(kind: str) -> Arithmetic:
    mul, add = HOROWITZ_45NM_PJ[f"{kind}_mul"], HOROWITZ_45NM_PJ[f"{kind}_add"]
    return Arithmetic(mac_pj=mul + add, flop_pj=(mul + add) / 2)


@dataclass(frozen=True)
class EnergyTable:
    """Picojoules per MAC and per FLOP for each precision it has, and per byte of DRAM and on-chip traffic.

    ``provenance`` says where each figure comes from: keys are precision names (``"fp32"``), ``"dram"`` and
    ``"onchip"``; values the source.
    """

    name: str
    arithmetic: Mapping[Precision, Arithmetic]
    dram_pj_per_byte: float
    onchip_pj_per_byte: float
    provenance: Mapping[str, str]
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "arithmetic", MappingProxyType(dict(self.arithmetic)))
        object.__setattr__(self, "provenance", MappingProxyType(dict(self.provenance)))

    @property
    def source(self) -> str:
        """Every source the figures come from, once each, in the order the figures are listed."""
        return "; ".join(dict.fromkeys(self.provenance.values()))

    def resolve(self, precision: Precision | str) -> tuple[Precision, str | None]:
        """The precision whose figures apply, and a note when it is not the one asked for."""
        asked = Precision.parse(precision)
        if asked in self.arithmetic:
            return asked, None
        for p in PRECISION_FALLBACK[asked]:
            if p in self.arithmetic:
                why = _FALLBACK_WHY.get(asked, "the nearest precision the table has")
                return p, f"the energy table has no {asked.value} figures: its {p.value} figures are used ({why})"
        p = next(iter(self.arithmetic))
        return p, f"the energy table has no {asked.value} figures and none to fall back on: its {p.value} figures are used"

    def with_figures(self, figures: EnergyFigures) -> EnergyTable:
        """This table with the figures ``figures`` gives replacing its own (the others are kept)."""
        arithmetic = dict(self.arithmetic)
        provenance = dict(self.provenance)
        for p, a in figures.arithmetic.items():
            arithmetic[p] = a
            provenance[p.value] = figures.source
        dram, onchip = self.dram_pj_per_byte, self.onchip_pj_per_byte
        if figures.dram_pj_per_byte is not None:
            dram = figures.dram_pj_per_byte
            provenance["dram"] = figures.source
        if figures.onchip_pj_per_byte is not None:
            onchip = figures.onchip_pj_per_byte
            provenance["onchip"] = figures.source
        notes = (*self.notes, figures.notes) if figures.notes else self.notes
        order = [p.value for p in Precision] + ["dram", "onchip"]
        provenance = {k: provenance[k] for k in order if k in provenance}
        return EnergyTable(f"{self.name} + {figures.name}", arithmetic, dram, onchip, provenance, notes)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "arithmetic": {p.value: a.as_dict() for p, a in self.arithmetic.items()},
            "dram_pj_per_byte": self.dram_pj_per_byte,
            "onchip_pj_per_byte": self.onchip_pj_per_byte,
            "provenance": dict(self.provenance),
            "notes": list(self.notes),
        }


#: The default: Horowitz's 45 nm table. DRAM: 640 pJ per 32-bit access = 160 pJ/byte; on chip: a 64-bit read
#: of a 1 MB SRAM, 100 pJ = 12.5 pJ/byte.
HOROWITZ_45NM = EnergyTable(
    name="Horowitz 45 nm",
    arithmetic={
        Precision.FP32: _horowitz_arithmetic("fp32"),
        Precision.FP16: _horowitz_arithmetic("fp16"),
        Precision.INT8: _horowitz_arithmetic("int8"),
    },
    dram_pj_per_byte=HOROWITZ_45NM_PJ["dram_access_32bit"] / 4,
    onchip_pj_per_byte=HOROWITZ_45NM_PJ["sram_1mb_read_64bit"] / 8,
    provenance={"fp32": HOROWITZ_SOURCE, "fp16": HOROWITZ_SOURCE, "int8": HOROWITZ_SOURCE,
                "dram": HOROWITZ_SOURCE, "onchip": HOROWITZ_SOURCE},
)


# ---- overrides ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class EnergyFigures:
    """Some figures of one device (a layer over the default table); None / absent: not given."""

    name: str  # what the layer is, e.g. "energy.toml[v100-sxm2]"
    source: str
    arithmetic: Mapping[Precision, Arithmetic] = field(default_factory=dict)
    dram_pj_per_byte: float | None = None
    onchip_pj_per_byte: float | None = None
    notes: str = ""


_KEYS = ("source", "notes", "dram_pj_per_byte", "onchip_pj_per_byte", "pj_per_flop", "pj_per_mac")


def parse_figures(table: Mapping[str, Any], *, name: str, where: str, default_source: str = "") -> EnergyFigures:
    """One table of energy figures (see the module docstring for its keys) -> :class:`EnergyFigures`.

    ``where`` names the file and table in errors; ``default_source`` is used when the table gives none (a
    HardwareError asks for one when both are empty).
    """
    if not isinstance(table, Mapping):
        raise HardwareError(f"{where} must be a table of energy figures (keys: {', '.join(_KEYS)})")
    unknown = sorted(str(k) for k in table if k not in _KEYS)
    if unknown:
        hints = [f"{k!r}" + (f" (did you mean {m[0]!r}?)" if (m := difflib.get_close_matches(k, _KEYS, 1)) else "")
                 for k in unknown]
        raise HardwareError(f"{where}: unknown key {', '.join(hints)}; the keys are {', '.join(_KEYS)}")
    source = table.get("source", default_source)
    if not isinstance(source, str) or not source.strip():
        raise HardwareError(f"{where}: give the figures' source, e.g. source = \"vendor whitepaper, table 3\"")
    notes = table.get("notes", "")
    if not isinstance(notes, str):
        raise HardwareError(f"{where}: notes must be a string")
    per_flop = _per_precision(table.get("pj_per_flop", {}), f"{where}: pj_per_flop")
    per_mac = _per_precision(table.get("pj_per_mac", {}), f"{where}: pj_per_mac")
    arithmetic: dict[Precision, Arithmetic] = {}
    for p in Precision:
        if p in per_mac or p in per_flop:
            mac = per_mac.get(p, 2 * per_flop.get(p, 0.0))
            arithmetic[p] = Arithmetic(mac_pj=mac, flop_pj=per_flop.get(p, mac / 2))
    dram = table.get("dram_pj_per_byte")
    onchip = table.get("onchip_pj_per_byte")
    return EnergyFigures(
        name=name,
        source=source.strip(),
        arithmetic=MappingProxyType(arithmetic),
        dram_pj_per_byte=None if dram is None else _picojoules(dram, f"{where}: dram_pj_per_byte"),
        onchip_pj_per_byte=None if onchip is None else _picojoules(onchip, f"{where}: onchip_pj_per_byte"),
        notes=notes.strip(),
    )


def _per_precision(value: Any, where: str) -> dict[Precision, float]:
    if not isinstance(value, Mapping):
        raise HardwareError(f"{where} must be a table of precision = picojoules, e.g. {{ fp16 = 0.75 }}")
    out: dict[Precision, float] = {}
    for key, number in value.items():
        try:
            p = Precision.parse(key)
        except HardwareError as e:
            raise HardwareError(f"{where}: {e}") from None
        out[p] = _picojoules(number, f"{where}.{key}")
    return out


def _picojoules(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise HardwareError(f"{where} = {value!r}: give a number of picojoules")
    number = float(value)
    if not math.isfinite(number) or number <= 0 or number > 1e6:
        raise HardwareError(f"{where} = {value!r}: picojoules must be positive and at most 1e6 (1 uJ)")
    return number


DATA_FILE = "energy/energy.toml"  # under rooflens/hardware/data: a folder of its own, apart from the catalogue's files


def device_figures(path: str | Path | None = None) -> Mapping[str, EnergyFigures]:
    """Device id -> its figures, from ``path`` or (None) the built-in ``rooflens/hardware/data/energy/energy.toml``.

    The file holds ``[[energy]]`` tables, each with the catalogue ``id`` of a device, a ``source`` and the
    keys of the module docstring.
    """
    if path is None:
        return _builtin_figures()
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise HardwareError(f"cannot read energy file {str(p)!r}: {e.strerror or e}") from None
    return _parse_figures_file(text, str(p))


@functools.lru_cache(maxsize=1)
def _builtin_figures() -> Mapping[str, EnergyFigures]:
    item = resources.files("rooflens.hardware") / "data" / "energy" / "energy.toml"
    return _parse_figures_file(item.read_text(encoding="utf-8"), f"rooflens/hardware/data/{DATA_FILE}")


def _parse_figures_file(text: str, where: str) -> Mapping[str, EnergyFigures]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise HardwareError(f"{where} is not valid TOML: {e}") from None
    extra = sorted(set(data) - {"energy"})
    if extra:
        raise HardwareError(f"{where}: unexpected top-level key {', '.join(map(repr, extra))}; "
                            "figures go in [[energy]] tables")
    tables = data.get("energy", [])
    if not isinstance(tables, list):
        raise HardwareError(f"{where}: energy must be an array of tables ([[energy]])")
    out: dict[str, EnergyFigures] = {}
    for i, table in enumerate(tables):
        ident = table.get("id") if isinstance(table, Mapping) else None
        if not isinstance(ident, str) or not ident:
            raise HardwareError(f"{where}: [[energy]] table {i + 1} has no id (the catalogue id of its device)")
        if ident in out:
            raise HardwareError(f"{where}: duplicate energy figures for {ident!r}")
        figures = {k: v for k, v in table.items() if k != "id"}
        out[ident] = parse_figures(figures, name=f"energy.toml[{ident}]", where=f"{where}: energy {ident!r}")
    return MappingProxyType(out)


def energy_table(
    hardware: HardwareSpec | None = None,
    *,
    base: EnergyTable = HOROWITZ_45NM,
    figures: Mapping[str, EnergyFigures] | None = None,
) -> EnergyTable:
    """The table for ``hardware``: ``base`` (Horowitz's 45 nm table), then the device's figures in
    ``figures`` (default: the built-in energy.toml) by its id, then its hardware file's ``extra.energy``;
    each layer replaces only the figures it gives. No device: ``base``."""
    table = base
    if hardware is None:
        return table
    known = device_figures() if figures is None else figures
    if hardware.id in known:
        table = table.with_figures(known[hardware.id])
    own = hardware.extra.get("energy")
    if own is not None:
        table = table.with_figures(parse_figures(
            own, name=f"{hardware.id} extra.energy", where=f"hardware {hardware.id!r}: extra.energy",
            default_source=f"the hardware file of {hardware.id!r} ([device.extra.energy]; source: {hardware.source})",
        ))
    return table


# ---- the estimate -------------------------------------------------------------------------------------

COMPUTE = "compute"
MEMORY = "memory"
NONE = "none"


@dataclass(frozen=True)
class Energy:
    """Joules of one operator or of a group of operators (summed), split by what spends them."""

    mac_joules: float = 0.0  # multiply-accumulates of convolutions and matrix products
    other_joules: float = 0.0  # every other FLOP
    dram_joules: float = 0.0
    onchip_joules: float = 0.0
    dram_bytes: int = 0
    onchip_bytes: int = 0
    operators: int = 0

    def __add__(self, other: Energy) -> Energy:
        if not isinstance(other, Energy):
            return NotImplemented
        return Energy(
            self.mac_joules + other.mac_joules,
            self.other_joules + other.other_joules,
            self.dram_joules + other.dram_joules,
            self.onchip_joules + other.onchip_joules,
            self.dram_bytes + other.dram_bytes,
            self.onchip_bytes + other.onchip_bytes,
            self.operators + other.operators,
        )

    @property
    def compute_joules(self) -> float:
        return self.mac_joules + self.other_joules

    @property
    def memory_joules(self) -> float:
        return self.dram_joules + self.onchip_joules

    @property
    def joules(self) -> float:
        return self.compute_joules + self.memory_joules

    @property
    def memory_share(self) -> float:
        """Share of the joules spent moving bytes (0 when there are none)."""
        return self.memory_joules / self.joules if self.joules else 0.0

    @property
    def dominant(self) -> str:
        """``"memory"`` when moving bytes costs more than the arithmetic, ``"compute"`` otherwise, ``"none"``
        without energy (views and metadata operators)."""
        if not self.joules:
            return NONE
        return MEMORY if self.memory_joules > self.compute_joules else COMPUTE

    def as_dict(self) -> dict[str, Any]:
        return {
            "joules": self.joules,
            "compute_joules": self.compute_joules,
            "mac_joules": self.mac_joules,
            "other_joules": self.other_joules,
            "memory_joules": self.memory_joules,
            "dram_joules": self.dram_joules,
            "onchip_joules": self.onchip_joules,
            "dram_bytes": self.dram_bytes,
            "onchip_bytes": self.onchip_bytes,
            "memory_share": self.memory_share,
            "dominant": self.dominant,
            "operators": self.operators,
        }


ZERO_ENERGY = Energy()


@dataclass(frozen=True)
class OperatorEnergy:
    """All calls of one aten operator."""

    op: str
    calls: int
    energy: Energy


@dataclass(frozen=True)
class EnergyEstimate:
    """The estimated energy of a report's operators (aligned with ``report.records``), modules and total.

    ``samples``: inferences in one forward pass (the batch size); ``joules_per_inference`` divides by it.
    """

    table: EnergyTable
    precision: Precision  # the compute precision asked for
    used_precision: Precision  # the precision whose figures were used
    memory: str  # "dram": every byte from DRAM; "onchip": activations of operators that fit stay on chip
    onchip_capacity_bytes: int | None
    ops: tuple[Energy, ...]
    modules: Mapping[str, Energy]  # cumulative per module path
    total: Energy
    samples: int = 1
    notes: tuple[str, ...] = ()

    @property
    def joules(self) -> float:
        """Joules of the whole forward pass (all ``samples``)."""
        return self.total.joules

    @property
    def joules_per_inference(self) -> float:
        return self.total.joules / self.samples

    @property
    def inferences_per_joule(self) -> float:
        return self.samples / self.total.joules if self.total.joules else math.inf

    def by_module(self) -> Mapping[str, Energy]:
        """Module path -> energy of the module and its submodules."""
        return self.modules

    def by_operator(self, records: Sequence[OpRecord]) -> list[OperatorEnergy]:
        """aten operator -> calls and summed energy, most joules first (``records``: the report's)."""
        acc: dict[str, tuple[int, Energy]] = {}
        for r, e in zip(records, self.ops, strict=True):
            calls, energy = acc.get(r.op, (0, ZERO_ENERGY))
            acc[r.op] = (calls + 1, energy + e)
        out = [OperatorEnergy(op, n, e) for op, (n, e) in acc.items()]
        out.sort(key=lambda o: (-o.energy.joules, o.op))
        return out

    def as_dict(self, *, modules: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {
            "table": self.table.as_dict(),
            "precision": self.precision.value,
            "used_precision": self.used_precision.value,
            "memory": self.memory,
            "onchip_capacity_bytes": self.onchip_capacity_bytes,
            "samples": self.samples,
            "joules": self.joules,
            "joules_per_inference": self.joules_per_inference,
            "inferences_per_joule": self.inferences_per_joule if self.total.joules else None,
            "total": self.total.as_dict(),
            "notes": list(self.notes),
        }
        if modules:
            data["modules"] = {path: e.as_dict() for path, e in self.modules.items()}
        return data


def estimate_energy(
    report: Counted,
    *,
    hardware: HardwareSpec | None = None,
    table: EnergyTable | None = None,
    onchip: bool = False,
    samples: int | None = None,
) -> EnergyEstimate:
    """The energy of ``report``'s operators at its compute precision (see the module docstring).

    ``hardware``: the device whose figures apply (default: the report's; none: the default table);
    ``table``: use this table instead of resolving one for the device. ``onchip``: activations of
    operators that fit in the device's on-chip memory are on-chip traffic (needs ``onchip_bytes``).
    ``samples``: inferences per forward pass (default: the first dimension of the first input).
    """
    spec = hardware if hardware is not None else report.hardware
    chosen = table if table is not None else energy_table(spec)
    n = _samples(report.inputs) if samples is None else samples
    capacity: int | None = None
    notes: list[str] = []
    if onchip:
        if spec is not None and spec.onchip_bytes:
            capacity = spec.onchip_bytes
        else:
            what = spec.name if spec is not None else "no device was given, so"
            notes.append(f"{what} has no on-chip memory size: every byte is counted as DRAM traffic")
    return energy_of_records(report.records, report.modules, report.precision, table=chosen,
                             onchip_capacity_bytes=capacity, samples=n, notes=notes)


def energy_of_records(
    records: Sequence[OpRecord],
    module_paths: Iterable[str],
    precision: Precision | str,
    *,
    table: EnergyTable = HOROWITZ_45NM,
    onchip_capacity_bytes: int | None = None,
    samples: int = 1,
    notes: Sequence[str] = (),
) -> EnergyEstimate:
    """:func:`estimate_energy` on bare records: ``onchip_capacity_bytes`` None counts every byte as DRAM traffic."""
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise InputError(f"samples={samples!r} must be a whole number >= 1 (inferences per forward pass)")
    asked = Precision.parse(precision)
    used, note = table.resolve(asked)
    arithmetic = table.arithmetic[used]
    ops = tuple(_op_energy(r, arithmetic, table, onchip_capacity_bytes) for r in records)

    modules: dict[str, Energy] = {p: ZERO_ENERGY for p in module_paths}
    for r, e in zip(records, ops, strict=True):
        for path in lineage(r.module):
            modules[path] = modules.get(path, ZERO_ENERGY) + e
    total = sum(ops, ZERO_ENERGY)

    all_notes = [*notes, *([note] if note else [])]
    unsupported = sorted({r.op for r in records if not r.supported})
    if unsupported:
        all_notes.append(f"the FLOPs of {', '.join(unsupported)} are not counted, so their compute energy is "
                         "missing (their bytes are counted)")
    if any(r.phase == "backward" for r in records):
        all_notes.append("the records include the backward pass: the joules are those of a training step "
                         "(forward and backward), not of an inference")
    return EnergyEstimate(
        table=table,
        precision=asked,
        used_precision=used,
        memory="onchip" if onchip_capacity_bytes is not None else "dram",
        onchip_capacity_bytes=onchip_capacity_bytes,
        ops=ops,
        modules=MappingProxyType(modules),
        total=total,
        samples=samples,
        notes=tuple(all_notes),
    )


def _op_energy(record: OpRecord, arithmetic: Arithmetic, table: EnergyTable, capacity: int | None) -> Energy:
    cost = record.cost
    other_flops = max(0, cost.flops - 2 * cost.macs)  # the MACs' own FLOPs are 2 a MAC under fma, fewer under exact
    nbytes = cost.bytes
    if capacity is not None and 0 < nbytes <= capacity:
        # the operator fits on chip: its activations stay there, its weights and buffers come from DRAM
        weights = sum(t.nbytes for t in record.inputs if t.kind is not TensorKind.ACTIVATION)
        dram = min(weights, cost.bytes_read)
        onchip = nbytes - dram
    else:
        dram, onchip = nbytes, 0
    return Energy(
        mac_joules=cost.macs * arithmetic.mac_pj * PICO,
        other_joules=other_flops * arithmetic.flop_pj * PICO,
        dram_joules=dram * table.dram_pj_per_byte * PICO,
        onchip_joules=onchip * table.onchip_pj_per_byte * PICO,
        dram_bytes=dram,
        onchip_bytes=onchip,
        operators=1,
    )


def _samples(inputs: Sequence[TensorMeta]) -> int:
    """The batch size: the first dimension of the first input (1 without inputs or for a scalar)."""
    for t in inputs:
        return max(1, t.shape[0]) if t.shape else 1
    return 1
