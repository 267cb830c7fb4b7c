"""torch's quantized modules as the capture sees them: their packed weights, and which models must run for real.

Quantized modules (``torch.ao.nn.quantized``, its ``dynamic`` and ``intrinsic`` relatives) keep their int8
weights and fp32 biases inside *packed-parameter* script objects (``LinearPackedParamsBase``,
``Conv2dPackedParamsBase``, ``Conv3dPackedParamsBase``, ``EmbeddingPackedParamsBase``, and the RNN's
``CellParamsBase``), not in parameters: an operator such as ``quantized::linear_dynamic`` receives the
object, and the module tree lists no parameter. Two things follow:

* **Weights.** :func:`packed_tensors` unpacks the objects a module holds (read only: ``unpack()`` and
  ``__getstate__`` copy nothing into the object) into real tensors, detached, for parameter counts and
  model size; :func:`describe` turns the object an operator receives into a :class:`~rooflens.formulas.quantized.Packed`
  of tensor descriptions (parameters: a qint8 weight at 1 byte per element, its fp32 bias), which the
  formulas read and the operator's bytes include.
* **Real runs.** Fake tensors cannot be quantized: the meta device has no quantized backend, and torch's
  fake kernels of ``quantize_per_tensor`` answer with a float32 tensor. A model that computes on quantized
  tensors (statically quantized modules, ``QuantStub``/``Quantize``, a quantized input) is therefore run on
  real copies of its tensors straight away (:func:`real_run_reason`); quantized kernels are CPU kernels
  that run in milliseconds on the small models that are quantized this way. A dynamically quantized model
  (fp32 activations in and out, weights packed) runs on fake tensors like any other: its operators have
  meta kernels that read only the packed weight's shape.

The packed objects themselves are shared, not copied, between the user's model and the copy an analysis
runs: torch's quantized kernels only read them.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import torch

from rooflens.formulas.quantized import Packed
from rooflens.types import TensorKind, TensorMeta, Widths

_QUANTIZED_PACKAGES = ("torch.ao.nn.quantized", "torch.ao.nn.intrinsic.quantized")
_HOLDERS = frozenset({"LinearPackedParams", "EmbeddingPackedParams", "PackedParameter"})  # hold, never compute
QUANTIZED_DTYPES = frozenset({torch.quint8, torch.qint8, torch.qint32, torch.quint4x2, torch.quint2x4})
INT8_DTYPES = frozenset({torch.quint8, torch.qint8})
# Operators whose result is a quantized tensor: on fake tensors torch answers with float32 (wrong dtype, wrong
# bytes), so the capture runs the model on real tensors instead.
QUANTIZING_OPS = frozenset({
    "aten.quantize_per_tensor", "aten.quantize_per_channel", "aten.quantize_per_tensor_dynamic",
    "aten._empty_affine_quantized", "aten._empty_per_channel_affine_quantized",
    "aten._make_per_tensor_quantized_tensor", "aten._make_per_channel_quantized_tensor",
})


_CLASSES: dict[type, tuple[bool, bool]] = {}  # class -> (quantized, static quantized): one look-up per module


def _class_kind(cls: type) -> tuple[bool, bool]:
    known = _CLASSES.get(cls)
    if known is None:
        quantized = cls.__module__.startswith(_QUANTIZED_PACKAGES)
        # reference modules (torch.ao.nn.quantized.reference) compute in float: not int8 modules
        static = quantized and not any(p in cls.__module__ for p in (".dynamic", ".reference")) and (
            cls.__name__ not in _HOLDERS
        )
        known = _CLASSES[cls] = (quantized, static)
    return known


def is_quantized_class(cls: type) -> bool:
    """A class of torch's quantized modules (static, dynamic or fused), or one of their weight holders."""
    return _class_kind(cls)[0]


def _static_class(cls: type) -> bool:
    """A quantized module that computes on quantized tensors (not a dynamic one, not a weight holder)."""
    return _class_kind(cls)[1]


def module_type_name(module: torch.nn.Module) -> str:
    """The name torch prints for a module: ``QuantizedConv2d``, ``DynamicQuantizedLinear`` for quantized
    modules (whose classes are named like the float ones), the class name for the others."""
    cls = type(module)
    if is_quantized_class(cls):
        try:
            return str(module._get_name())
        except Exception:  # noqa: BLE001 - a name is not worth an error
            return cls.__name__
    return cls.__name__


def is_weight_holder(type_name: str) -> bool:
    """A module that only holds packed weights for its parent (``LinearPackedParams``): never called itself."""
    return type_name in _HOLDERS


def real_run_reason(model: torch.nn.Module, inputs: list[torch.Tensor]) -> str | None:
    """Why the model must run on real tensors (it computes on quantized tensors), or None. One pass over the
    modules and their own parameter and buffer dictionaries (no path strings unless one is found)."""
    for t in inputs:
        if t.is_quantized:
            return f"an input is a quantized tensor ({str(t.dtype).removeprefix('torch.')})"
    for module in model.modules():
        if _static_class(type(module)) or any(
            t is not None and t.is_quantized for t in (*module._parameters.values(), *module._buffers.values())
        ):
            return _where(model, module)
    return None


def _where(model: torch.nn.Module, found: torch.nn.Module) -> str:
    path = next((p for p, m in model.named_modules() if m is found), "")
    if _static_class(type(found)):
        return f"module {path or '<root>'!r} ({module_type_name(found)}) computes on quantized tensors"
    return f"module {path or '<root>'!r} ({module_type_name(found)}) holds a quantized tensor"


def computes_in_int8(model: torch.nn.Module) -> bool:
    """Whether the model's quantized modules compute in int8 (a qint8/quint8 packed weight, or a static
    quantized module); fp16 dynamic quantization (fp16 weights, fp32 compute) does not."""
    for module in model.modules():
        if not is_quantized_class(type(module)):
            continue
        if _static_class(type(module)):
            return True
        if any(t.dtype in INT8_DTYPES for t in packed_tensors(module)):
            return True
    return False


# ---- packed weights ------------------------------------------------------------------------------------


def packed_objects(module: torch.nn.Module) -> Iterator[torch.ScriptObject]:
    """The packed-parameter objects a quantized module holds as attributes (its own, not its children's)."""
    if not is_quantized_class(type(module)):
        return
    for value in module.__dict__.values():
        if isinstance(value, torch.ScriptObject):
            yield value


def unpack(obj: Any) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(weights, biases) a packed-parameter object holds, as real tensors (``([], [])`` for an unknown one)."""
    with torch._C._DisableTorchDispatch():  # the object's own tensors, not those of a mode around the call
        names = set(obj._method_names()) if hasattr(obj, "_method_names") else set()
        if "unpack" in names:  # Linear / Conv / Embedding packed params: weight or (weight, bias)
            out = obj.unpack()
            parts = list(out) if isinstance(out, (tuple, list)) else [out]
            weight, bias = (parts + [None, None])[:2]
            return [weight] if weight is not None else [], [bias] if isinstance(bias, torch.Tensor) else []
        if "__getstate__" in names:  # CellParamsBase: (kind, tensors, doubles, longs, packed objects)
            state = obj.__getstate__()
            fields = state[0] if isinstance(state, tuple) and state and isinstance(state[0], tuple) else state
            if isinstance(fields, tuple) and len(fields) == 5:
                tensors, packed = list(fields[1]), list(fields[4])
                weights = [w for p in packed for w in unpack(p)[0]]
                weights += [t for t in tensors if isinstance(t, torch.Tensor) and t.dim() > 1]
                biases = [t for t in tensors if isinstance(t, torch.Tensor) and t.dim() <= 1]
                return weights, biases
    return [], []


def packed_tensors(module: torch.nn.Module) -> list[torch.Tensor]:
    """The weights and biases a quantized module holds packed, as detached real tensors (not trainable:
    quantized kernels have no backward). fp16 packed weights (``quantize_dynamic(dtype=float16)``), which
    unpack as float32, are given as float16, their width in the packed form."""
    out: list[torch.Tensor] = []
    half = getattr(module, "dtype", None) == torch.float16
    for obj in packed_objects(module):
        weights, biases = unpack(obj)
        for w in weights:
            w = w.detach()
            out.append(w.to(torch.float16) if half and w.is_floating_point() else w)
        out.extend(b.detach() for b in biases)
    return out


def qparams_bytes(t: torch.Tensor) -> int:
    """Bytes of a quantized tensor's scales and zero points, at the widths torch holds them in: one float64
    scale and one int64 zero point per tensor (per-tensor affine), or per channel (per-channel affine: the
    ``q_per_channel_scales``/``q_per_channel_zero_points`` tensors); 0 for a tensor that is not quantized."""
    if not t.is_quantized:
        return 0
    if t.qscheme() in (torch.per_tensor_affine, torch.per_tensor_symmetric):
        return 8 + 8
    scales, zero_points = t.q_per_channel_scales(), t.q_per_channel_zero_points()
    return scales.numel() * scales.element_size() + zero_points.numel() * zero_points.element_size()


@functools.cache
def packed_arguments(func: Any) -> tuple[str, ...]:
    """Names of the arguments of ``func`` that take packed-parameter objects (or lists of them)."""
    schema = getattr(func, "_schema", None)
    if schema is None:
        return ()
    return tuple(a.name for a in schema.arguments if "__torch__.torch.classes." in str(a.type))


def describe(value: Any, widths: Widths) -> Any:
    """A packed-parameter object (or a list of them) as :class:`Packed` descriptions; anything else as it is."""
    if isinstance(value, (list, tuple)):
        return [describe(v, widths) for v in value]
    if not isinstance(value, torch.ScriptObject):
        return value
    weights, biases = unpack(value)
    return Packed(
        kind=value._type().qualified_name().rsplit(".", 1)[-1],
        weights=tuple(_meta(w, widths) for w in weights),
        biases=tuple(_meta(b, widths) for b in biases),
    )


def _meta(t: torch.Tensor, widths: Widths) -> TensorMeta:
    name = str(t.dtype).removeprefix("torch.")
    bits = widths.bits_for(TensorKind.PARAMETER) if t.is_floating_point() else None
    itemsize = t.element_size()
    return TensorMeta(tuple(t.shape), name, itemsize, TensorKind.PARAMETER,
                      bits if bits is not None and bits != 8 * itemsize else 0)


def packed_inputs(value: Any) -> Iterator[TensorMeta]:
    """The tensor descriptions in a described argument (a :class:`Packed` or a list of them)."""
    if isinstance(value, Packed):
        yield from value.tensors
    elif isinstance(value, list):
        for v in value:
            yield from packed_inputs(v)
