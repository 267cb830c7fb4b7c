"""Unit formatting for renderers. Everything inside rooflens is in base units; only renderers convert."""

from __future__ import annotations

import enum

from rooflens.errors import InputError

_SI: list[tuple[float, str]] = [(1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")]
_BINARY: list[tuple[float, str]] = [(2**50, "Pi"), (2**40, "Ti"), (2**30, "Gi"), (2**20, "Mi"), (2**10, "Ki")]


class ByteUnit(str, enum.Enum):
    """Decimal (MB = 1e6 bytes) or binary (MiB = 2**20 bytes) prefixes for byte counts."""

    SI = "si"
    BINARY = "binary"

    @classmethod
    def parse(cls, value: ByteUnit | str) -> ByteUnit:
        try:
            return cls(value)
        except ValueError:
            raise InputError(f"byte_unit={value!r}; choose 'si' (MB = 1e6 bytes) or 'binary' (MiB)") from None


def si(value: float, unit: str = "", digits: int = 2) -> str:
    """``4089184256 -> '4.09 G'`` (with ``unit``: ``'4.09 GFLOPs'``). Small values are printed as they are."""
    for scale, prefix in _SI:
        if abs(value) >= scale:
            return f"{value / scale:.{digits}f} {prefix}{unit}"
    if float(value).is_integer():
        return f"{int(value)} {unit}".rstrip()
    return f"{value:.{digits}f} {unit}".rstrip()


def si3(value: float, unit: str = "") -> str:
    """Three significant digits and an SI prefix: ``1.92e13 -> '19.2 T'``, ``4.48e11, 'B/s' -> '448 GB/s'``."""
    return _three(value, _SI, unit)


def bytes3(value: float, byte_unit: ByteUnit = ByteUnit.SI, unit: str = "B") -> str:
    """Bytes (``unit="B/s"``: bytes per second) with three significant digits: ``4.48e11 -> '448 GB'``
    (SI) or ``'417 GiB'`` (binary)."""
    return _three(value, _SI if byte_unit is ByteUnit.SI else _BINARY, unit)


def _three(value: float, prefixes: list[tuple[float, str]], unit: str) -> str:
    for scale, prefix in [*prefixes, (1.0, "")]:
        if abs(value) >= scale or scale == 1.0:
            scaled = value / scale
            decimals = max(0, 2 - len(str(int(abs(scaled)))) + 1)
            return f"{scaled:.{decimals}f} {prefix}{unit}".rstrip()
    raise AssertionError("unreachable")


def nbytes(value: float, unit: ByteUnit = ByteUnit.SI, digits: int = 2) -> str:
    """``25557032 * 4 -> '102.23 MB'`` (SI) or ``'97.49 MiB'`` (binary)."""
    if unit is ByteUnit.SI:
        return si(value, "B", digits)
    for scale, prefix in _BINARY:
        if abs(value) >= scale:
            return f"{value / scale:.{digits}f} {prefix}B"
    return f"{int(value)} B"


def rate(value: float, byte_unit: ByteUnit = ByteUnit.SI, digits: int = 2) -> str:
    """Bytes per second: ``4.48e11 -> '448.00 GB/s'`` (SI) or ``'417.23 GiB/s'`` (binary)."""
    return nbytes(value, byte_unit, digits) + "/s"


def count(value: int) -> str:
    """Exact integers with thousands separators: ``25557032 -> '25,557,032'``."""
    return f"{value:,}"


_TIME = [(1.0, "s"), (1e-3, "ms"), (1e-6, "µs"), (1e-9, "ns")]
_JOULES = [(1e3, "kJ"), (1.0, "J"), (1e-3, "mJ"), (1e-6, "µJ"), (1e-9, "nJ"), (1e-12, "pJ")]


def seconds_text(value: float, digits: int = 3) -> str:
    """``0.001234 -> '1.23 ms'``: three significant digits in s, ms, µs or ns."""
    return _scaled(value, _TIME, digits, "s")


def joules_text(value: float, digits: int = 3) -> str:
    """``0.0875 -> '87.5 mJ'``: three significant digits in kJ, J, mJ, µJ, nJ or pJ."""
    return _scaled(value, _JOULES, digits, "J")


def _scaled(value: float, units: list[tuple[float, str]], digits: int, base: str) -> str:
    """``value`` in the first of ``units`` (largest first) it reaches, else the last; zero in ``base``."""
    if value == 0:
        return f"0 {base}"
    for scale, unit in units:
        if abs(value) >= scale or unit == units[-1][1]:
            scaled = value / scale
            decimals = max(0, digits - 1 - (len(str(int(abs(scaled)))) - 1))
            return f"{scaled:.{decimals}f} {unit}"
    raise AssertionError("unreachable")
