"""Model inputs as the front-ends accept them: tensors, argument lists, keyword dicts or shapes; dtypes and bit widths.

Shapes become meta tensors: the capture harness makes them fake (or random real ones for a real run).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from rooflens.errors import InputError

InputSize = Sequence[int] | Sequence[Sequence[int]]


def parse_bits(value: int | None, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 64:
        raise InputError(f"{what}={value!r} must be a whole number of bits from 1 to 64 (e.g. 8 for INT8)")
    return value


_QUANTIZED = (torch.quint8, torch.qint8, torch.qint32, torch.quint4x2, torch.quint2x4)


def parse_dtype(value: torch.dtype | str | None, what: str, *, floating: bool = True) -> torch.dtype | None:
    """A torch dtype from a dtype or its name. ``floating``: the dtype the model's floating-point tensors are
    analysed in (``dtype=``), which must be a real floating-point type; else any dtype a tensor can be
    made in (``input_dtype=``: token ids are int64)."""
    if value is None:
        return None
    dt = value if isinstance(value, torch.dtype) else getattr(torch, str(value).removeprefix("torch."), None)
    if not isinstance(dt, torch.dtype):
        raise InputError(f"{what}={value!r} is not a torch dtype (try 'float32', 'float16' or 'bfloat16')")
    name = str(dt).removeprefix("torch.")
    if dt in _QUANTIZED:
        raise InputError(
            f"{what}={name} is a quantized dtype, which tensors cannot simply be cast to; analyse the quantized model "
            "itself, or give the width in memory with weight_bits=8 / act_bits=8 (precision='int8')"
        )
    if floating and (dt.is_complex or not dt.is_floating_point):
        raise InputError(
            f"{what}={name} is not a real floating-point dtype: it sets the dtype of the model's floating-point "
            "tensors (float32, float16, bfloat16, float64, float8_e4m3fn); inputs of another dtype (token ids, "
            "masks) keep theirs, and input_dtype= sets the dtype of inputs made from input_size"
        )
    return dt


def model_inputs(inputs: Any, input_size: InputSize | None, dtype: torch.dtype) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Positional and keyword arguments; shapes become meta tensors (the engine makes them fake or real)."""
    if (inputs is None) == (input_size is None):
        raise InputError("give exactly one of inputs=... (tensors) or input_size=(1, 3, 224, 224)")
    if input_size is not None:
        shapes = parse_shapes(input_size)
        return tuple(torch.empty(s, dtype=dtype, device="meta") for s in shapes), {}
    if isinstance(inputs, torch.Tensor):
        return (inputs,), {}
    if isinstance(inputs, Mapping):
        return (), dict(inputs)
    if isinstance(inputs, (tuple, list)):
        return tuple(inputs), {}
    raise InputError(f"inputs must be a tensor, a tuple/list of tensors or a dict, got {type(inputs).__name__}")


def parse_shapes(input_size: InputSize) -> list[tuple[int, ...]]:
    sizes = list(input_size)
    if not sizes:
        raise InputError("input_size is empty; give a shape such as (1, 3, 224, 224)")
    nested = [s for s in sizes if isinstance(s, (tuple, list, torch.Size))]
    if nested and len(nested) != len(sizes):
        raise InputError(f"input_size {input_size!r} mixes shapes and numbers")
    shapes: list[tuple[Any, ...]] = [tuple(s) for s in sizes] if nested else [tuple(sizes)]  # type: ignore[arg-type]
    for shape in shapes:
        if not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape):
            raise InputError(f"input_size {shape!r} must be positive integers, e.g. (1, 3, 224, 224)")
        if math.prod(shape) >= _MAX_ELEMENTS:
            raise InputError(
                f"input_size {shape!r} has {math.prod(shape):.3g} elements, more than a tensor can address "
                f"(2**63 bytes); check the shape"
            )
    return shapes


_MAX_ELEMENTS = 2**63 // 16  # bytes a tensor can address, at the widest element (complex128)
