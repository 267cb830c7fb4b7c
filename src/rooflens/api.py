"""Public entry points."""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from rooflens.analysis.modules import build_tree, uncalled
from rooflens.analysis.predictor import CalibrationMethod
from rooflens.capture.engine import Options, run_capture
from rooflens.capture.harness import analysis_device, isolated, unwrap
from rooflens.capture.inputs import InputSize, model_inputs, parse_bits, parse_dtype
from rooflens.capture.onnx_graph import EXECUTED as ONNX_EXECUTED
from rooflens.capture.onnx_graph import capture_onnx
from rooflens.capture.quantized import computes_in_int8
from rooflens.errors import HardwareError, InputError
from rooflens.hardware.catalogue import get as get_hardware
from rooflens.hardware.spec import HardwareSpec, Precision
from rooflens.measurement import measure as measure_latency
from rooflens.report.report import Report
from rooflens.types import SCALE_BITS, Convention, TensorKind, TensorMeta, Widths, scales_of


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
    kv_bits: int | None = None,
    weight_group: int | None = None,
    backward: bool = False,
    measure: bool = False,
    value_checks: str = "assume",
    calibration: CalibrationMethod | str = CalibrationMethod.AUTO,
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
    ``kv_bits``: bits per element of the key/value cache an input carries (a ``transformers`` cache object;
    its tensors are recorded with kind ``cache``; default: as activations).
    ``weight_group``: quantized weights carry scales: one 16-bit scale per ``weight_group`` elements along
    each row of every floating-point parameter of two or more dimensions (128: GPTQ's and AWQ's usual
    groups; -1: one per row, per output channel), counted in the weight bytes each operator reads and in
    ``report.weight_bytes``; needs ``weight_bits`` (or an integer ``precision``).
    ``backward``: also count the backward pass of ``loss = sum of the outputs`` (gradients for the
    parameters that require grad), from the real backward operators; records carry ``phase``.
    ``measure``: also time real forward passes on the model's device (10 warm-up calls, the median of
    50; see :func:`rooflens.measure` for more control) and report them beside the counts and the
    roofline (``report.measurement``, ``report.achieved``). Needs real weights.
    ``value_checks``: a model on the meta device has no values; when its code asks a yes/no question of a
    tensor (``attention_mask.all()``: is there padding?), ``"assume"`` (default) answers yes -- masks all
    ones, no padding -- and lists each assumption in ``report.diagnostics``; ``"error"`` raises instead.
    A model with real weights is run on real copies of its tensors when fake execution needs a value.
    ``calibration``: the latency estimate ``report.calibrated`` gives on a measured device: ``"auto"``
    (default: the learned predictor when the device carries one, from ``rooflens hw calibrate``, else the
    analytic model of its micro-benchmarks), ``"learned"`` or ``"analytic"``; see docs/prediction.md.

    The forward runs on fake tensors under ``torch.no_grad()`` (with grad when ``backward``): nothing is
    computed and the model, its parameters (and their ``.grad``), buffers, hooks and ``training`` flag
    are left exactly as they were.
    """
    if not isinstance(model, torch.nn.Module):
        raise InputError(f"analyze() expects a torch.nn.Module, got {type(model).__name__}")
    method = CalibrationMethod.parse(calibration)
    with isolated():
        report = _analyze(model, inputs, input_size=input_size, dtype=dtype, input_dtype=input_dtype,
                          convention=convention, name=name, hardware=hardware, precision=precision,
                          weight_bits=weight_bits, act_bits=act_bits, kv_bits=kv_bits, weight_group=weight_group,
                          backward=backward, measure=measure, value_checks=value_checks)
    return replace(report, calibration=method) if method is not CalibrationMethod.AUTO else report


def _analyze(
    model: torch.nn.Module,
    inputs: Any,
    *,
    input_size: InputSize | None,
    dtype: torch.dtype | str | None,
    input_dtype: torch.dtype | str | None,
    convention: Convention | str,
    name: str | None,
    hardware: HardwareSpec | str | None,
    precision: Precision | str | None,
    weight_bits: int | None,
    act_bits: int | None,
    kv_bits: int | None,
    weight_group: int | None,
    backward: bool,
    measure: bool,
    value_checks: str,
) -> Report:
    wrapper = type(model).__name__
    model, unwrapped = unwrap(model)
    conv = _convention(convention)
    dt = parse_dtype(dtype, "dtype")
    spec = _hardware(hardware)
    compute = Precision.parse(precision) if precision is not None else _model_precision(model, dt)
    default_bits = compute.bits if precision is not None else None
    widths = Widths(
        parse_bits(weight_bits, "weight_bits") or default_bits, parse_bits(act_bits, "act_bits") or default_bits,
        parse_bits(kv_bits, "kv_bits"), _weight_group(weight_group),
    )
    if widths.weight_group is not None and (widths.weight_bits is None or widths.weight_bits > 8):
        raise InputError(f"weight_group={weight_group}: scales belong to quantized weights (8 bits or fewer); give "
                         f"weight_bits too (e.g. weight_bits=4, weight_group=128), not {widths.weight_bits}")
    in_dtype = parse_dtype(input_dtype, "input_dtype", floating=False) or dt or torch.float32
    args, kwargs = model_inputs(inputs, input_size, in_dtype)
    options = Options(convention=conv, widths=widths, backward=bool(backward))
    capture = run_capture(model, args, kwargs, options=options, dtype=dt, value_checks=value_checks)
    nodes = build_tree(model, capture.records, capture.calls, capture.output_shapes)
    leaves = [t for t in torch.utils._pytree.tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
    measurement = None
    if measure:
        real_inputs = None if input_size is not None else (args if not kwargs else kwargs)
        measurement = measure_latency(
            model, real_inputs, input_size=input_size, device=_device(model, leaves), dtype=dt,
        )
    return Report(
        model=name or wrapper,
        inputs=tuple(_meta(t, dt) for t in leaves),
        convention=conv,
        records=tuple(capture.records),
        modules=nodes,
        params=nodes[""].params,
        uncalled_modules=tuple(uncalled(nodes)),
        diagnostics=tuple([unwrapped] if unwrapped else []) + tuple(capture.diagnostics),
        executed=capture.executed,
        device=_device(model, leaves),
        dtype=str(dt).removeprefix("torch.") if dt is not None else None,
        torch_version=torch.__version__,
        precision=compute,
        weight_bits=widths.weight_bits,
        act_bits=widths.act_bits,
        kv_bits=widths.cache_bits,
        weight_group=widths.weight_group,
        weight_scale_bytes=_scale_bytes(model, widths),
        hardware=spec,
        backward=bool(backward),
        measurement=measurement,
    )


def _weight_group(value: int | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not (value == -1 or value >= 1):
        raise InputError(f"weight_group={value!r} must be a whole number of elements >= 1 (e.g. 128), or -1 for "
                         "one scale per row")
    return value


def _scale_bytes(model: torch.nn.Module, widths: Widths) -> int:
    """Bytes of the quantization scales of the model's parameters (each tensor once)."""
    if widths.weight_group is None:
        return 0
    total = 0
    for p in model.parameters():
        shape = tuple(p.shape)
        if p.is_floating_point():
            total += scales_of(p.numel(), widths.group_for(TensorKind.PARAMETER, shape)) * SCALE_BITS // 8
    return total


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
    """The precision of ``dtype``, else int8 for a model whose quantized modules compute in int8 (torch's
    static or dynamic int8 quantization), else of the first floating-point parameter or buffer, else fp32."""
    if dtype is not None:
        found = Precision.from_dtype(str(dtype))
        if found is not None:
            return found
    if computes_in_int8(model):
        return Precision.INT8
    for t in itertools.chain(model.parameters(), model.buffers()):
        if t.is_floating_point():
            return Precision.from_dtype(str(t.dtype)) or Precision.FP32
    return Precision.FP32


def _device(model: torch.nn.Module, leaves: list[torch.Tensor]) -> str:
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


def analyze_onnx(
    path: str | os.PathLike[str] | Any,
    *,
    input_size: InputSize | Mapping[str, Sequence[int]] | None = None,
    hardware: HardwareSpec | str | None = None,
    precision: Precision | str | None = None,
    weight_bits: int | None = None,
    act_bits: int | None = None,
    convention: Convention | str = Convention.FMA,
    name: str | None = None,
) -> Report:
    """Count what one inference of an ONNX model costs, per node, per module and in total: the same
    :class:`~rooflens.report.report.Report` :func:`analyze` gives for a torch model.

    ``path``: an ``.onnx`` file (its external data beside it) or an ``onnx.ModelProto``.
    ``input_size``: one shape ``(1, 3, 224, 224)`` or a list of shapes, for the graph's inputs in order, or
    shapes by input name (``{"input_ids": (1, 128)}``, as :func:`rooflens.measurement.onnxrt.measure_onnx`
    takes them). They bind the inputs' symbolic dimensions; an input whose dimension stays symbolic is an
    error that names it. Without it, the shapes the file declares.
    ``hardware``, ``precision``, ``weight_bits``, ``act_bits``, ``convention``: as for :func:`analyze`;
    the default precision is int8 for a quantized graph (QLinearConv, MatMulInteger, QDQ units), else the
    dtype of the first floating-point initializer. ``name``: the model's name in the report (default: the
    file's name without ``.onnx``).

    Nothing runs: shapes come from ONNX shape inference. Conventions and the choices the ONNX graph asks
    for (QDQ units, Transpose, constants as parameters): docs/onnx.md. Needs ``pip install rooflens[onnx]``.
    """
    named, positional = (dict(input_size), None) if isinstance(input_size, Mapping) else (None, input_size)
    conv = _convention(convention)
    spec = _hardware(hardware)
    explicit = Precision.parse(precision) if precision is not None else None
    default_bits = explicit.bits if explicit is not None else None
    widths = Widths(parse_bits(weight_bits, "weight_bits") or default_bits,
                    parse_bits(act_bits, "act_bits") or default_bits)
    capture = capture_onnx(path, input_sizes=_onnx_sizes(positional), named_inputs=named, convention=conv,
                           widths=widths)
    if explicit is not None:
        compute = explicit
    elif capture.quantized:
        compute = Precision.INT8
    else:
        compute = (Precision.from_dtype(capture.float_dtype) if capture.float_dtype else None) or Precision.FP32
    nodes = capture.modules
    if name is None:
        name = Path(path).name.removesuffix(".onnx") if isinstance(path, (str, os.PathLike)) else capture.name
    return Report(
        model=name or "onnx model",
        inputs=capture.inputs,
        convention=conv,
        records=tuple(capture.records),
        modules=nodes,
        params=capture.params,
        diagnostics=tuple(capture.diagnostics),
        executed=ONNX_EXECUTED,
        device="none (an ONNX graph: nothing ran)",
        precision=compute,
        weight_bits=widths.weight_bits,
        act_bits=widths.act_bits,
        hardware=spec,
    )


def _onnx_sizes(input_size: InputSize | None) -> list[Sequence[int]] | None:
    """``(1, 3, 224, 224)`` -> one shape; ``[(1, 3), (1, 5)]`` -> two."""
    if input_size is None:
        return None
    if isinstance(input_size, (str, bytes)) or not isinstance(input_size, Sequence):
        raise InputError(f"input_size must be a shape such as (1, 3, 224, 224) or a list of shapes, got "
                         f"{input_size!r}")
    if all(isinstance(d, int) for d in input_size):
        return [input_size]  # type: ignore[list-item]
    return list(input_size)  # type: ignore[arg-type]
