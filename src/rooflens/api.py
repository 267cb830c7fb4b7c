"""Public entry points."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from rooflens.analysis.modules import build_tree, uncalled
from rooflens.capture.engine import Options, run_capture
from rooflens.errors import HardwareError, InputError
from rooflens.hardware.catalogue import get as get_hardware
from rooflens.hardware.spec import HardwareSpec, Precision
from rooflens.report.report import Report
from rooflens.types import Convention, TensorMeta, Widths

InputSize = Sequence[int] | Sequence[Sequence[int]]


def analyze(
    model: torch.nn.Module,
    inputs: Any = None,
    *,
    input_size: InputSize | None = None,
    dtype: torch.dtype | str | None = None,
    input_dtype: torch.dtype | str | None = None,
    convention: Convention | str = Convention.FMA,
    name: str | None = None,
    hardware: HardwareSpec | str | None = None,
    precision: Precision | str | None = None,
    weight_bits: int | None = None,
    act_bits: int | None = None,
    backward: bool = False,
    measure: bool = False,
) -> Report:
    """Count what one forward pass of ``model`` costs, per operator, per module and in total.

    ``inputs``: a tensor, a tuple/list of positional arguments or a dict of keyword arguments. A tuple or
    list is always the argument list: a model that takes a list (torchvision's detectors) gets
    ``inputs=([image],)``.
    Or ``input_size``: one shape ``(1, 3, 224, 224)`` or a list of shapes, one per positional argument.
    ``dtype``: analyse as if parameters, buffers and inputs that are floating point had this dtype (the
    model is not changed). ``input_dtype``: dtype of tensors made from ``input_size`` (default: ``dtype``
    or float32). ``convention``: ``"fma"`` (default) or ``"exact"``; see the README.

    ``hardware``: a catalogue id (``"a4000"``, see ``rooflens hw list``) or a
    :class:`~rooflens.hardware.HardwareSpec`; the report then has a ``roofline``.
    ``precision``: the compute precision (fp32, tf32, fp16, bf16, fp8, int8, int4) whose peak the
    roofline uses; given, it also sets the width in memory of every floating-point tensor (int8: 1 byte
    per element). Default: the precision of ``dtype`` or of the model's parameters, widths as built.
    ``weight_bits`` / ``act_bits``: bits per element in memory of floating-point parameters and buffers /
    of the other floating-point tensors, overriding ``precision`` (e.g. 4-bit weights, 16-bit activations).
    ``backward``: also count the backward pass of ``loss = sum of the outputs`` (gradients for the
    parameters that require grad), from the real backward operators; records carry ``phase``.
    ``measure``: also time real forward passes on the model's device (10 warm-up calls, the median of
    50; see :func:`rooflens.measure` for more control) and report them beside the counts and the
    roofline (``report.measurement``, ``report.achieved``). Needs real weights.

    The forward runs on fake tensors under ``torch.no_grad()`` (with grad when ``backward``): nothing is
    computed and the model, its parameters (and their ``.grad``), buffers, hooks and ``training`` flag
    are left exactly as they were.
    """
    if not isinstance(model, torch.nn.Module):
        raise InputError(f"analyze() expects a torch.nn.Module, got {type(model).__name__}")
    conv = _convention(convention)
    dt = _dtype(dtype, "dtype")
    spec = _hardware(hardware)
    compute = Precision.parse(precision) if precision is not None else _model_precision(model, dt)
    default_bits = compute.bits if precision is not None else None
    widths = Widths(
        _bits(weight_bits, "weight_bits") or default_bits, _bits(act_bits, "act_bits") or default_bits
    )
    args, kwargs = _inputs(inputs, input_size, _dtype(input_dtype, "input_dtype") or dt or torch.float32)
    options = Options(convention=conv, widths=widths, backward=bool(backward))
    capture = run_capture(model, args, kwargs, options=options, dtype=dt)
    nodes = build_tree(model, capture.records, capture.calls, capture.output_shapes)
    leaves = [t for t in torch.utils._pytree.tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
    measurement = None
    if measure:
        from rooflens.measurement import measure as measure_latency

        real_inputs = None if input_size is not None else (args if not kwargs else kwargs)
        measurement = measure_latency(
            model, real_inputs, input_size=input_size, device=_device(model, leaves), dtype=dt,
        )
    return Report(
        model=name or type(model).__name__,
        inputs=tuple(_meta(t, dt) for t in leaves),
        convention=conv,
        records=tuple(capture.records),
        modules=nodes,
        params=nodes[""].params,
        uncalled_modules=tuple(uncalled(nodes)),
        diagnostics=tuple(capture.diagnostics),
        executed=capture.executed,
        device=_device(model, leaves),
        dtype=str(dt).removeprefix("torch.") if dt is not None else None,
        torch_version=torch.__version__,
        precision=compute,
        weight_bits=widths.weight_bits,
        act_bits=widths.act_bits,
        hardware=spec,
        backward=bool(backward),
        measurement=measurement,
    )


def _hardware(hardware: HardwareSpec | str | None) -> HardwareSpec | None:
    if hardware is None:
        return None
    if not isinstance(hardware, (str, HardwareSpec)):
        raise InputError(f"hardware must be a catalogue id or a HardwareSpec, got {type(hardware).__name__}")
    spec = get_hardware(hardware)
    if spec.bandwidth_bytes_per_s is None:
        raise HardwareError(spec.missing_bandwidth_text())
    return spec


def _model_precision(model: torch.nn.Module, dtype: torch.dtype | None) -> Precision:
    """The precision of ``dtype``, else of the first floating-point parameter or buffer, else fp32."""
    if dtype is not None:
        found = Precision.from_dtype(str(dtype))
        if found is not None:
            return found
    for t in itertools.chain(model.parameters(), model.buffers()):
        if t.is_floating_point():
            return Precision.from_dtype(str(t.dtype)) or Precision.FP32
    return Precision.FP32


def _bits(value: int | None, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 64:
        raise InputError(f"{what}={value!r} must be a whole number of bits from 1 to 64 (e.g. 8 for INT8)")
    return value


def _device(model: torch.nn.Module, leaves: list[torch.Tensor]) -> str:
    from rooflens.capture.engine import analysis_device

    return str(analysis_device(model, leaves))


def _meta(t: torch.Tensor, dtype: torch.dtype | None) -> TensorMeta:
    dt = dtype if dtype is not None and t.is_floating_point() else t.dtype
    return TensorMeta(tuple(t.shape), str(dt).removeprefix("torch."), torch.empty((), dtype=dt).element_size())


def _convention(value: Convention | str) -> Convention:
    try:
        return Convention(value)
    except ValueError:
        choices = ", ".join(repr(c.value) for c in Convention)
        raise InputError(f"unknown convention {value!r}; choose one of {choices}") from None


def _dtype(value: torch.dtype | str | None, what: str) -> torch.dtype | None:
    if value is None or isinstance(value, torch.dtype):
        return value
    dt = getattr(torch, str(value).removeprefix("torch."), None)
    if not isinstance(dt, torch.dtype):
        raise InputError(f"{what}={value!r} is not a torch dtype (try 'float32', 'float16' or 'bfloat16')")
    return dt


def _inputs(inputs: Any, input_size: InputSize | None, dtype: torch.dtype) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Positional and keyword arguments; shapes become meta tensors (the engine makes them fake or real)."""
    if (inputs is None) == (input_size is None):
        raise InputError("give exactly one of inputs=... (tensors) or input_size=(1, 3, 224, 224)")
    if input_size is not None:
        shapes = _shapes(input_size)
        return tuple(torch.empty(s, dtype=dtype, device="meta") for s in shapes), {}
    if isinstance(inputs, torch.Tensor):
        return (inputs,), {}
    if isinstance(inputs, Mapping):
        return (), dict(inputs)
    if isinstance(inputs, (tuple, list)):
        return tuple(inputs), {}
    raise InputError(f"inputs must be a tensor, a tuple/list of tensors or a dict, got {type(inputs).__name__}")


def _shapes(input_size: InputSize) -> list[tuple[int, ...]]:
    sizes = list(input_size)
    if not sizes:
        raise InputError("input_size is empty; give a shape such as (1, 3, 224, 224)")
    nested = [s for s in sizes if isinstance(s, (tuple, list, torch.Size))]
    if nested and len(nested) != len(sizes):
        raise InputError(f"input_size {input_size!r} mixes shapes and numbers")
    shapes = [tuple(s) for s in sizes] if nested else [tuple(sizes)]
    for shape in shapes:
        if not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape):
            raise InputError(f"input_size {shape!r} must be positive integers, e.g. (1, 3, 224, 224)")
    return shapes  # type: ignore[return-value]
