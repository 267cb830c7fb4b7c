"""The hardware catalogue: the TOML files in ``rooflens/hardware/data`` plus what users register.

A file holds ``[[device]]`` tables::

    [[device]]
    id = "a4000"                      # lower case, unique; `aliases = ["rtx-a4000"]` optional
    name = "NVIDIA RTX A4000"
    vendor = "NVIDIA"
    kind = "gpu"                      # gpu, npu, soc, cpu, measured or custom
    memory = "16 GB"                  # optional; "16 GiB" or a number of bytes also work
    bandwidth = "448 GB/s"            # required: "unpublished" when the vendor does not publish it
    onchip = "4 MB"                   # optional: last-level cache / SRAM
    interconnect = "300 GB/s"         # optional: device-to-device link, one direction (NVLink, PCIe)
    source = "NVIDIA RTX A4000 datasheet"
    notes = "tensor figures: datasheet sparse value / 2"

    [device.peak]                     # dense FLOP/s (OP/s for integers), one per precision it has
    fp32 = "19.2 TFLOP/s"
    fp16 = "76.7 TFLOP/s"

    [device.efficiency]               # optional: what eager kernels reach (sources in notes/comments)
    matmul = 0.87                     # fraction of the peak large matrix products reach
    memory = 0.83                     # fraction of the bandwidth streaming kernels reach
    operator_seconds = 2e-5           # the framework's cost per operator launched

    [device.alignment]                # optional: elements per precision that channel sizes should be
    fp16 = 8                          # a multiple of (tensor cores, vector lanes); its source in a comment
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from rooflens.errors import HardwareError
from rooflens.hardware.spec import HardwareSpec, Kind, Precision, parse_quantity

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

UNPUBLISHED = "unpublished"
_KEYS = frozenset({"id", "name", "vendor", "kind", "aliases", "memory", "bandwidth", "onchip", "interconnect",
                   "source", "notes", "peak", "alignment", "efficiency", "extra"})
_REQUIRED = ("id", "name", "vendor", "kind", "bandwidth", "source", "peak")

_registry: dict[str, HardwareSpec] | None = None  # id -> spec, built-in entries first, then registered ones
_aliases: dict[str, str] = {}


def spec_from_table(table: Mapping[str, Any], *, where: str) -> HardwareSpec:
    """One ``[[device]]`` table -> a validated HardwareSpec; errors name ``where`` (the file) and the id."""
    ident = table.get("id", "?")
    here = f"{where}: device {ident!r}"
    unknown = sorted(set(table) - _KEYS)
    if unknown:
        hints = [f"{k!r}" + (f" (did you mean {m[0]!r}?)" if (m := difflib.get_close_matches(k, _KEYS, 1)) else "")
                 for k in unknown]
        raise HardwareError(f"{here}: unknown key {', '.join(hints)}")
    missing = [k for k in _REQUIRED if k not in table]
    if missing:
        hint = " (write bandwidth = \"unpublished\" when the vendor does not publish it)" if "bandwidth" in missing else ""
        raise HardwareError(f"{here}: missing {', '.join(missing)}{hint}")
    peak = table["peak"]
    if not isinstance(peak, Mapping):
        raise HardwareError(f"{here}: peak must be a table, e.g. [device.peak] fp32 = \"19.2 TFLOP/s\"")
    bandwidth = table["bandwidth"]
    try:
        return HardwareSpec(
            id=str(ident),
            name=str(table["name"]),
            vendor=str(table["vendor"]),
            kind=table["kind"],
            peak_flops_per_s={k: parse_quantity(v, "flops", what=f"{here}: peak.{k}") for k, v in peak.items()},
            bandwidth_bytes_per_s=None if bandwidth == UNPUBLISHED
            else parse_quantity(bandwidth, "bandwidth", what=f"{here}: bandwidth"),
            memory_bytes=_bytes(table.get("memory"), f"{here}: memory"),
            onchip_bytes=_bytes(table.get("onchip"), f"{here}: onchip"),
            interconnect_bytes_per_s=None if table.get("interconnect") is None
            else parse_quantity(table["interconnect"], "bandwidth", what=f"{here}: interconnect"),
            source=str(table["source"]),
            notes=str(table.get("notes", "")),
            aliases=table.get("aliases", ()),
            alignment=table.get("alignment", {}),
            efficiency=table.get("efficiency", {}),
            extra=table.get("extra", {}),
        )
    except HardwareError as e:
        message = str(e)
        raise HardwareError(message if message.startswith(where) else f"{where}: {message}") from None


def _bytes(value: Any, what: str) -> int | None:
    return None if value is None else round(parse_quantity(value, "bytes", what=what))


def load_file(path: str | Path) -> list[HardwareSpec]:
    """Every device in a TOML file (not registered; see :func:`register`)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise HardwareError(f"cannot read hardware file {str(p)!r}: {e.strerror or e}") from None
    return _parse(text, str(p))


def _parse(text: str, where: str) -> list[HardwareSpec]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise HardwareError(f"{where} is not valid TOML: {e}") from None
    tables = data.get("device")
    extra = sorted(set(data) - {"device"})
    if extra:
        raise HardwareError(f"{where}: unexpected top-level key {', '.join(map(repr, extra))}; devices go in [[device]] tables")
    if not isinstance(tables, list) or not tables:
        raise HardwareError(f"{where} has no [[device]] tables")
    specs = [spec_from_table(t, where=where) for t in tables]
    _check_unique(specs, where)
    return specs


def _check_unique(specs: Iterable[HardwareSpec], where: str) -> None:
    seen: dict[str, str] = {}
    for s in specs:
        for key in (s.id, *s.aliases):
            if key in seen:
                raise HardwareError(f"{where}: duplicate hardware id {key!r} ({seen[key]} and {s.id})")
            seen[key] = s.id


def _builtin() -> list[HardwareSpec]:
    specs: list[HardwareSpec] = []
    data = resources.files("rooflens.hardware") / "data"
    for item in sorted(data.iterdir(), key=lambda f: f.name):
        if item.name.endswith(".toml"):
            specs += _parse(item.read_text(encoding="utf-8"), f"rooflens/hardware/data/{item.name}")
    _check_unique(specs, "the built-in catalogue")
    return specs


def _table() -> dict[str, HardwareSpec]:
    global _registry
    if _registry is None:
        specs = _builtin()
        _registry = {s.id: s for s in specs}
        _aliases.clear()
        _aliases.update({a: s.id for s in specs for a in s.aliases})
    return _registry


def devices(kind: Kind | str | None = None) -> list[HardwareSpec]:
    """Every known device (built-in and registered), in catalogue order; optionally of one kind."""
    want = Kind.parse(kind, "devices()") if kind is not None else None
    order = list(Kind)  # GPUs first, then NPUs, SoCs, CPUs, then measured and custom ones
    specs = [s for s in _table().values() if want is None or s.kind is want]
    return sorted(specs, key=lambda s: order.index(s.kind))


def get(name: str | HardwareSpec) -> HardwareSpec:
    """The device with this id or alias (case-insensitive); a clear error with suggestions otherwise."""
    if isinstance(name, HardwareSpec):
        return name
    table = _table()
    key = str(name).strip().lower()
    key = _aliases.get(key, key)
    if key in table:
        return table[key]
    close = difflib.get_close_matches(key, [*table, *_aliases], n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
    raise HardwareError(
        f"unknown hardware {name!r}{hint} (`rooflens hw list` shows the catalogue; "
        "a TOML file path or --peak/--bandwidth describe another device)"
    )


def register(spec: HardwareSpec, *, replace: bool = False) -> HardwareSpec:
    """Add a device so that :func:`get` and ``--hw`` find it by id; an existing id needs ``replace=True``."""
    if not isinstance(spec, HardwareSpec):
        raise HardwareError(f"register() expects a HardwareSpec, got {type(spec).__name__}")
    table = _table()
    for key in (spec.id, *spec.aliases):
        owner = key if key in table else _aliases.get(key)
        if owner is not None and not (replace and owner == spec.id):
            raise HardwareError(
                f"hardware id {key!r} is already taken by {table[owner].name}; pass replace=True to replace it"
            )
    old = table.get(spec.id)
    if old is not None:
        for alias in old.aliases:
            _aliases.pop(alias, None)
    table[spec.id] = spec
    _aliases.update({a: spec.id for a in spec.aliases})
    return spec


def unregister(name: str) -> None:
    """Remove a device registered with :func:`register` (built-in entries come back on the next reset)."""
    spec = get(name)
    table = _table()
    del table[spec.id]
    for alias in spec.aliases:
        _aliases.pop(alias, None)


def reset() -> None:
    """Forget registered devices: the next query reloads the built-in catalogue."""
    global _registry
    _registry = None
    _aliases.clear()


def custom(
    *,
    peak_flops_per_s: float | str,
    bandwidth_bytes_per_s: float | str,
    precision: str = "fp32",
    name: str = "custom device",
    memory_bytes: float | str | None = None,
) -> HardwareSpec:
    """An ad-hoc device from a peak and a bandwidth (``"19.2T"``, ``"448G"`` or numbers in base units)."""
    peak = parse_quantity(peak_flops_per_s, "flops", what="peak")
    bandwidth = parse_quantity(bandwidth_bytes_per_s, "bandwidth", what="bandwidth")
    return HardwareSpec(
        id="custom",
        name=name,
        vendor="user",
        kind=Kind.CUSTOM,
        peak_flops_per_s={Precision.parse(precision): peak},
        bandwidth_bytes_per_s=bandwidth,
        memory_bytes=None if memory_bytes is None else round(parse_quantity(memory_bytes, "bytes", what="memory")),
        source="given by the user (--peak/--bandwidth)",
    )
