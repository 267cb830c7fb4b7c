"""ONNX operators: what each ``op_type`` costs, counted by the formulas the torch front-end uses.

The ONNX front-end (:mod:`rooflens.capture.onnx_graph`) turns every node into an :class:`OnnxCall` (its
inputs and outputs by position, as :class:`~rooflens.types.TensorMeta` from shape inference, and its
attributes) and looks its operator up here. Nothing is counted twice over:

* convolutions, matrix products, attention and recurrent layers go through the shape-level helpers the
  torch formulas are written with (:func:`~rooflens.formulas.conv.conv_cost`,
  :func:`~rooflens.formulas.matmul.matmul_cost`, :func:`~rooflens.formulas.attention.attention_core_cost`,
  :func:`~rooflens.formulas.rnn.rnn_layer_cost`, :func:`~rooflens.formulas.registry.dot_cost`);
* every other operator is an *alias* of the aten operator of the same semantics: its formula and its
  bytes rule are the registry entry's, called on the ONNX tensors (``Relu`` is ``aten.relu``,
  ``LayerNormalization`` is ``aten.native_layer_norm``, ``Gather`` is ``aten.index_select`` with its
  gather bytes rule, ``GlobalAveragePool`` is ``aten.mean`` as torch computes a 1x1 adaptive average).
  An operator's family (``conv``, ``matmul``, ``norm`` ...) is the aten entry's.

So a model counted from its ONNX export and from its PyTorch module agree by construction wherever the
two graphs hold the same operators. Where they differ (a Transpose that torch makes as a view, batch
norm folded into the convolution by the exporter) docs/onnx.md says so.

Bytes: each operator reads its *data* inputs (those an entry lists in ``reads``: a ``Slice``'s
``starts``/``ends``, a ``Reshape``'s shape, a ``Resize``'s scales are arguments, as they are in torch, not
tensors it streams) and writes its outputs, at their widths (int8 tensors at 1 byte).

Quantized operators (no torch counterpart in the registry; their constants stated once here):

* ``QuantizeLinear``: ``saturate(round(x / scale) + zero_point)``: divide, round, add, and two
  compare-selects for the saturation (as ``clamp`` counts one per bound) = :data:`QUANTIZE_FLOPS` (5) per
  element. ``DequantizeLinear``: ``(x - zero_point) * scale`` = :data:`DEQUANTIZE_FLOPS` (2) per element.
  ``DynamicQuantizeLinear``: the tensor's min and max (2 per element, as ``aten.aminmax``) + quantize 5 = 7.
* ``QLinearConv``/``QLinearMatMul``: the integer MACs of the convolution/product (counted as MACs: 1
  int8 multiply-accumulate = 2 integer operations, "OPs" on the datasheets), the int32 bias add, and the
  requantisation of every output: ``acc x (x_scale w_scale / y_scale)``, round, ``+ y_zero_point``,
  saturate = 5 per output, as a QuantizeLinear. The zero points are folded into the accumulation by the
  kernels (row and column sums) and not counted. ``ConvInteger``/``MatMulInteger``: the integer MACs,
  int32 output, nothing else.
* ONNX Runtime's ``QLinearAdd``, ``QLinearMul``, ``QLinearSigmoid`` ... (what its QDQ fusion makes of the
  other operators): the float operator's FLOPs + 2 per input element (dequantize) + 5 per output
  element (quantize): what the kernel computes, though it reads and writes int8.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from math import prod
from typing import Any

from rooflens.formulas import REGISTRY
from rooflens.formulas.attention import attention_core_cost
from rooflens.formulas.conv import conv_cost
from rooflens.formulas.matmul import matmul_cost
from rooflens.formulas.quantized import DEQUANTIZE_FLOPS, MINMAX_FLOPS, QUANTIZE_FLOPS
from rooflens.formulas.registry import OpCall, dot_cost
from rooflens.formulas.registry import default_bytes as registry_default_bytes
from rooflens.formulas.rnn import GATES, rnn_layer_cost
from rooflens.types import ZERO, Convention, Cost, TensorMeta

ONNX_DOMAIN = ""  # ai.onnx, the default domain (also spelled "ai.onnx")
MS_DOMAIN = "com.microsoft"  # ONNX Runtime's contrib operators

SOFTCAP_FLOPS = 3  # per score: softcap x tanh(score / softcap): divide, tanh, multiply
ROTARY_FLOPS = 3  # per rotated element: x cos + rotate(x) sin: 2 multiplies, 1 add
PEEPHOLE_FLOPS = 6  # per hidden unit per step of an LSTM with peepholes: p x c added to 3 gates (mul + add)

# Operators that only reinterpret metadata (as torch's views): no FLOPs, no memory traffic, not recorded.
# A Dropout is the identity in inference (the mode ONNX models run in).
VIEW_OPS = frozenset({
    "Reshape", "Squeeze", "Unsqueeze", "Flatten", "Identity", "Shape", "Size", "Constant", "Dropout",
    "Optional", "OptionalGetElement", "OptionalHasElement",
})

# Operators that ONNX Runtime runs on int8 values directly when a DequantizeLinear feeds them and a
# QuantizeLinear takes their output (its QDQ transformer drops the pair): no (de)quantization arithmetic.
QDQ_PASS_THROUGH = frozenset({"MaxPool", "GlobalMaxPool", "ReduceMax", "ReduceMin", "ArgMax", "ArgMin", "Resize"})


@dataclass(frozen=True)
class OnnxCall:
    """One ONNX node as the formulas see it.

    ``inputs``/``outputs``: by position, None for an optional one left out; ``reads``: the distinct data
    inputs the node streams, in the entry's order (what the record lists and the bytes rule reads);
    ``attrs``: the attributes with their defaults where the formulas need them.
    """

    op_type: str
    domain: str
    inputs: tuple[TensorMeta | None, ...]
    outputs: tuple[TensorMeta | None, ...]
    attrs: Mapping[str, Any] = field(default_factory=dict)
    reads: tuple[TensorMeta, ...] = ()
    convention: Convention = Convention.FMA

    def input(self, i: int) -> TensorMeta | None:
        return self.inputs[i] if i < len(self.inputs) else None

    def need(self, i: int) -> TensorMeta:
        t = self.input(i)
        if t is None:
            raise ValueError(f"{self.op_type}: input {i} is missing")
        return t

    def has(self, i: int) -> bool:
        return self.input(i) is not None

    @property
    def written(self) -> tuple[TensorMeta, ...]:
        return tuple(t for t in self.outputs if t is not None)

    @property
    def out(self) -> TensorMeta:
        if not self.outputs or self.outputs[0] is None:
            raise ValueError(f"{self.op_type}: its first output is missing")
        return self.outputs[0]

    def attr(self, name: str, default: Any = None) -> Any:
        return self.attrs.get(name, default)


OnnxFormula = Callable[[OnnxCall], Cost]  # compute part of the cost: macs and flops
OnnxBytes = Callable[[OnnxCall], "tuple[int, int]"]


def default_bytes(call: OnnxCall) -> tuple[int, int]:
    """Every data input read once, every output written once."""
    return sum(t.nbytes for t in call.reads), sum(t.nbytes for t in call.written)


@dataclass(frozen=True)
class OnnxEntry:
    domain: str
    op_type: str
    formula: OnnxFormula
    family: str
    doc: str
    reads: tuple[int, ...] | None = None  # positions of the data inputs, in record order (None: every input)
    bytes: OnnxBytes = default_bytes

    @property
    def name(self) -> str:
        return op_name(self.domain, self.op_type)


ONNX_REGISTRY: dict[tuple[str, str], OnnxEntry] = {}


def op_name(domain: str, op_type: str) -> str:
    """The operator's name in records: ``onnx.Conv``, ``com.microsoft.Attention``."""
    return f"onnx.{op_type}" if domain in ("", "ai.onnx") else f"{domain}.{op_type}"


def lookup(domain: str, op_type: str) -> OnnxEntry | None:
    return ONNX_REGISTRY.get(("" if domain == "ai.onnx" else domain, op_type))


def _register(
    op_types: Iterable[str], formula: OnnxFormula, *, family: str, doc: str, domain: str = ONNX_DOMAIN,
    reads: tuple[int, ...] | None = None, bytes: OnnxBytes = default_bytes,
) -> None:
    for op in op_types:
        key = (domain, op)
        if key in ONNX_REGISTRY:
            raise ValueError(f"ONNX operator {op_name(domain, op)} already has a formula")
        ONNX_REGISTRY[key] = OnnxEntry(domain, op, formula, family, doc, reads, bytes)


def onnx_formula(
    *op_types: str, family: str, domain: str = ONNX_DOMAIN, reads: tuple[int, ...] | None = None,
    bytes: OnnxBytes = default_bytes, doc: str = "",
) -> Callable[[OnnxFormula], OnnxFormula]:
    """Decorator: ``fn`` counts the operators ``op_types`` of ``domain`` (one formula per operator)."""

    def decorate(fn: OnnxFormula) -> OnnxFormula:
        _register(op_types, fn, family=family, doc=doc or _first_line(fn.__doc__), domain=domain, reads=reads,
                  bytes=bytes)
        return fn

    return decorate


def _first_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[0].strip() if lines else ""


def entries() -> Iterator[OnnxEntry]:
    """Every registered operator, by family, then domain and name."""
    return iter(sorted(ONNX_REGISTRY.values(), key=lambda e: (e.family, e.domain, e.op_type)))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# ---- aliases of aten operators -----------------------------------------------------------------------

ArgsFn = Callable[[OnnxCall], "dict[str, Any]"]


def _plain_args(call: OnnxCall) -> dict[str, Any]:
    """``self``/``input`` and ``other`` for the first two inputs: what elementwise formulas read."""
    return {"self": call.input(0), "input": call.input(0), "other": call.input(1)}


def _aten_call(aten: str, call: OnnxCall, args: Mapping[str, Any],
               outputs: tuple[TensorMeta, ...] | None = None) -> OpCall:
    return OpCall(op=aten, args=args, inputs=call.reads, outputs=call.written if outputs is None else outputs,
                  convention=call.convention)


def aten_cost(aten: str, call: OnnxCall, args: Mapping[str, Any] | None = None,
              outputs: tuple[TensorMeta, ...] | None = None) -> Cost:
    """The compute cost the torch formula of ``aten`` gives for this call (its arguments as ``args``)."""
    entry = REGISTRY.get(aten)
    if entry is None:  # pragma: no cover - a typo in this module; tests check every alias
        raise KeyError(f"no torch formula for {aten}")
    return entry.formula(_aten_call(aten, call, _plain_args(call) if args is None else args, outputs))


def alias(
    op_types: str | tuple[str, ...], aten: str, *, args: ArgsFn | None = None, domain: str = ONNX_DOMAIN,
    reads: tuple[int, ...] | None = None,
) -> None:
    """Count ``op_types`` as the aten operator ``aten``: its formula, bytes rule and family."""
    entry = REGISTRY.get(aten)
    if entry is None:  # pragma: no cover - a typo in this module
        raise KeyError(f"no torch formula for {aten}")
    build = args or _plain_args

    def formula(call: OnnxCall) -> Cost:
        return entry.formula(_aten_call(aten, call, build(call)))

    def rule(call: OnnxCall) -> tuple[int, int]:
        return entry.bytes(_aten_call(aten, call, build(call)))

    rule.__doc__ = entry.bytes.__doc__
    names = (op_types,) if isinstance(op_types, str) else op_types
    _register(names, formula, family=entry.family, doc=f"as `{aten}`: {entry.doc}", domain=domain, reads=reads,
              bytes=default_bytes if entry.bytes is registry_default_bytes else rule)


# ---- elementwise and activations ---------------------------------------------------------------------

for _onnx, _aten in {
    "Add": "aten.add", "Sub": "aten.sub", "Mul": "aten.mul", "Div": "aten.div", "Pow": "aten.pow",
    "BitShift": "aten.bitwise_left_shift", "And": "aten.logical_and", "Or": "aten.logical_or",
    "Xor": "aten.logical_xor", "Not": "aten.logical_not", "BitwiseAnd": "aten.bitwise_and",
    "BitwiseOr": "aten.bitwise_or", "BitwiseXor": "aten.bitwise_xor", "BitwiseNot": "aten.bitwise_not",
    "Equal": "aten.eq", "Less": "aten.lt", "LessOrEqual": "aten.le", "Greater": "aten.gt",
    "GreaterOrEqual": "aten.ge", "Where": "aten.where", "IsNaN": "aten.isnan", "IsInf": "aten.isinf",
    "Neg": "aten.neg", "Abs": "aten.abs", "Sqrt": "aten.sqrt", "Reciprocal": "aten.reciprocal",
    "Sign": "aten.sign", "Floor": "aten.floor", "Ceil": "aten.ceil", "Round": "aten.round",
    "Relu": "aten.relu", "ThresholdedRelu": "aten.threshold", "LeakyRelu": "aten.leaky_relu",
    "PRelu": "aten.prelu", "HardSigmoid": "aten.hardsigmoid", "HardSwish": "aten.hardswish",
    "Elu": "aten.elu", "Selu": "aten.selu", "Celu": "aten.celu", "Exp": "aten.exp", "Log": "aten.log",
    "Sin": "aten.sin", "Cos": "aten.cos", "Tan": "aten.tan", "Asin": "aten.asin", "Acos": "aten.acos",
    "Atan": "aten.atan", "Sinh": "aten.sinh", "Cosh": "aten.cosh", "Asinh": "aten.asinh",
    "Acosh": "aten.acosh", "Atanh": "aten.atanh", "Erf": "aten.erf", "Tanh": "aten.tanh",
    "Sigmoid": "aten.sigmoid", "Softplus": "aten.softplus", "Mish": "aten.mish",
}.items():
    alias(_onnx, _aten)


@onnx_formula("Mod", family="pointwise")
def mod(call: OnnxCall) -> Cost:
    """as `aten.remainder` (`aten.fmod` with fmod=1): 1 per output element"""
    return aten_cost("aten.fmod" if call.attr("fmod", 0) else "aten.remainder", call)


@onnx_formula("Shrink", family="pointwise", reads=(0,))
def shrink(call: OnnxCall) -> Cost:
    """as `aten.softshrink` (3 per element); `aten.hardshrink` (2) when bias = 0"""
    return aten_cost("aten.softshrink" if call.attr("bias", 0.0) else "aten.hardshrink", call)


@onnx_formula("Softsign", family="pointwise")
def softsign(call: OnnxCall) -> Cost:
    """x / (1 + |x|): `aten.abs` + `aten.add` + `aten.div` = 3 per element"""
    return sum((aten_cost(op, call) for op in ("aten.abs", "aten.add", "aten.div")), Cost())


def _clip_args(call: OnnxCall) -> dict[str, Any]:
    # opset >= 11: min and max are optional inputs 1 and 2; before, attributes
    low = call.has(1) or "min" in call.attrs
    high = call.has(2) or "max" in call.attrs
    return {"self": call.input(0), "min": 0.0 if low else None, "max": 0.0 if high else None}


alias("Clip", "aten.clamp", args=_clip_args, reads=(0,))


def _gelu_args(call: OnnxCall) -> dict[str, Any]:
    return {"self": call.input(0), "approximate": call.attr("approximate", "none")}


alias("Gelu", "aten.gelu", args=_gelu_args)
alias("Gelu", "aten.gelu", args=_gelu_args, domain=MS_DOMAIN)


@onnx_formula("BiasGelu", family="transcendental", domain=MS_DOMAIN)
def bias_gelu(call: OnnxCall) -> Cost:
    """`aten.add` (the bias) + exact `aten.gelu`: 1 + 5 per element"""
    return aten_cost("aten.add", call) + aten_cost("aten.gelu", call, {"approximate": "none"})


@onnx_formula("FastGelu", family="transcendental", domain=MS_DOMAIN)
def fast_gelu(call: OnnxCall) -> Cost:
    """`aten.gelu` approximate='tanh' (9 per element), + `aten.add` (1) with a bias"""
    cost = aten_cost("aten.gelu", call, {"approximate": "tanh"})
    return cost + aten_cost("aten.add", call) if call.has(1) else cost


@onnx_formula("QuickGelu", family="transcendental", domain=MS_DOMAIN)
def quick_gelu(call: OnnxCall) -> Cost:
    """x sigmoid(alpha x): `aten.mul` + `aten.sigmoid` + `aten.mul` = 1 + 4 + 1 per element"""
    return aten_cost("aten.mul", call).scaled(2) + aten_cost("aten.sigmoid", call)


@onnx_formula("BiasAdd", family="pointwise", domain=MS_DOMAIN)
def bias_add(call: OnnxCall) -> Cost:
    """X + bias + skip: 2 x `aten.add` = 2 per element"""
    return aten_cost("aten.add", call).scaled(2)


def _variadic(call: OnnxCall, aten: str, *, divide: bool = False) -> Cost:
    """n operands: n - 1 applications of a binary operator (+ a divide for Mean) per output element."""
    n = sum(t is not None for t in call.inputs)
    cost = aten_cost(aten, call).scaled(max(n - 1, 0))
    return cost + aten_cost("aten.div", call) if divide and n > 1 else cost


@onnx_formula("Max", "Min", family="pointwise")
def variadic_max_min(call: OnnxCall) -> Cost:
    """n operands: n - 1 x `aten.maximum` (1 per output element each)"""
    return _variadic(call, "aten.maximum")


@onnx_formula("Sum", family="pointwise")
def variadic_sum(call: OnnxCall) -> Cost:
    """n operands: n - 1 x `aten.add` (1 per output element each)"""
    return _variadic(call, "aten.add")


@onnx_formula("Mean", family="pointwise")
def variadic_mean(call: OnnxCall) -> Cost:
    """n operands: n - 1 x `aten.add` + 1 `aten.div` per output element"""
    return _variadic(call, "aten.add", divide=True)


# ---- data movement (memory family: 0 FLOPs, bytes) ----------------------------------------------------

alias("Concat", "aten.cat")
alias("Split", "aten.split_copy", reads=(0,))
alias("Slice", "aten.slice_copy", reads=(0,))
alias("Tile", "aten.repeat", reads=(0,))
alias("Expand", "aten.expand_copy", reads=(0,))
alias("Transpose", "aten.permute_copy")  # ONNX Runtime moves the data: a copy, not a view
alias(("Cast", "CastLike"), "aten._to_copy", reads=(0,))
alias("DepthToSpace", "aten.pixel_shuffle")
alias("SpaceToDepth", "aten.pixel_unshuffle")
alias("ReverseSequence", "aten.flip")
alias("Trilu", "aten.triu", reads=(0,))
alias("NonZero", "aten.nonzero")
alias("Col2Im", "aten.col2im", reads=(0,))


@onnx_formula("Pad", family="memory", reads=(0,))
def pad(call: OnnxCall) -> Cost:
    """as `aten.constant_pad_nd` (reflect: `aten.reflection_pad2d`, edge: `aten.replication_pad2d`): 0"""
    return aten_cost("aten.constant_pad_nd", call)


def _gather_args(call: OnnxCall) -> dict[str, Any]:
    return {"self": call.input(0), "index": call.input(1)}


alias("Gather", "aten.index_select", args=_gather_args)
alias("GatherElements", "aten.gather", args=_gather_args)
alias("GatherND", "aten.index", args=lambda call: {"self": call.input(0), "indices": [call.input(1)]})
alias("Compress", "aten.masked_select", args=lambda call: {"self": call.input(0), "mask": call.input(1)})


@onnx_formula("ScatterElements", "Scatter", "ScatterND", family="memory")
def scatter(call: OnnxCall) -> Cost:
    """as `aten.scatter` (0: a copy of data with the updates written in); reduction != none: 1 per update
    (as `aten.scatter_reduce`)"""
    reduction = _text(call.attr("reduction", "none"))
    return Cost(flops=call.need(2).numel) if reduction != "none" else Cost()


alias("ConstantOfShape", "aten.full", reads=())
alias("Range", "aten.arange", reads=())
alias("EyeLike", "aten.eye", reads=())
alias(("RandomNormal", "RandomUniform"), "aten.randn", reads=())
alias(("RandomNormalLike", "RandomUniformLike"), "aten.randn_like", reads=())
alias("Bernoulli", "aten.bernoulli")
alias("Multinomial", "aten.multinomial")
alias("Unique", "aten._unique2")


# ---- reductions, scans, softmax ----------------------------------------------------------------------

def _reduce_args(call: OnnxCall) -> dict[str, Any]:
    return {"self": call.input(0)}


for _onnx, _aten in {
    "ReduceSum": "aten.sum", "ReduceMax": "aten.amax", "ReduceMin": "aten.amin", "ReduceProd": "aten.prod",
    "ReduceMean": "aten.mean", "ArgMax": "aten.argmax", "ArgMin": "aten.argmin",
    "ReduceL1": "aten.linalg_vector_norm", "ReduceL2": "aten.linalg_vector_norm",
    "ReduceLogSumExp": "aten.logsumexp", "Hardmax": "aten.argmax",
}.items():
    alias(_onnx, _aten, args=_reduce_args, reads=(0,))  # opset 18: the axes are input 1, an argument


@onnx_formula("ReduceSumSquare", family="reduction", reads=(0,))
def reduce_sum_square(call: OnnxCall) -> Cost:
    """(x * x).sum(): `aten.mul` per input element + `aten.sum` (1 per input element)"""
    x = call.need(0)
    return aten_cost("aten.mul", call, outputs=(x,)) + aten_cost("aten.sum", call, {"self": x})


@onnx_formula("ReduceLogSum", family="reduction", reads=(0,))
def reduce_log_sum(call: OnnxCall) -> Cost:
    """log(x.sum()): `aten.sum` (1 per input element) + `aten.log` (1 per output element)"""
    return aten_cost("aten.sum", call, {"self": call.need(0)}) + aten_cost("aten.log", call)


def _axis_args(call: OnnxCall) -> dict[str, Any]:
    return {"self": call.input(0), "dim": call.attr("axis", -1)}


alias(("Softmax", "LogSoftmax"), "aten._softmax", args=_axis_args)
alias("CumSum", "aten.cumsum", args=lambda call: {"self": call.input(0)}, reads=(0,))


@onnx_formula("TopK", family="reduction", reads=(0,))
def topk(call: OnnxCall) -> Cost:
    """as `aten.topk`: n x max(1, ceil(log2 k)) compares per row of length n (k read off the output)"""
    axis = int(call.attr("axis", -1))
    k = call.out.shape[axis] if call.out.shape else 1
    return aten_cost("aten.topk", call, {"self": call.input(0), "dim": axis, "k": k})


# ---- normalisation -----------------------------------------------------------------------------------

def _norm_args(weight: int, bias: int | None) -> ArgsFn:
    def build(call: OnnxCall) -> dict[str, Any]:
        return {"input": call.input(0), "weight": call.input(weight),
                "bias": call.input(bias) if bias is not None else None}

    return build


alias("LayerNormalization", "aten.native_layer_norm", args=_norm_args(1, 2))
alias(("InstanceNormalization", "GroupNormalization"), "aten.native_group_norm", args=_norm_args(1, 2))
alias("GroupNorm", "aten.native_group_norm", args=_norm_args(1, 2), domain=MS_DOMAIN)
alias("RMSNormalization", "aten.rms_norm", args=_norm_args(1, None))
alias("SimplifiedLayerNormalization", "aten.rms_norm", args=_norm_args(1, None))  # ORT registers it here too
alias("SimplifiedLayerNormalization", "aten.rms_norm", args=_norm_args(1, None), domain=MS_DOMAIN)


@onnx_formula("BatchNormalization", family="norm")
def batch_norm(call: OnnxCall) -> Cost:
    """as `aten._native_batch_norm_legit_no_training` (2 per element); training_mode=1: `aten.native_batch_norm` (8)"""
    args = {"input": call.input(0), "weight": call.input(1), "bias": call.input(2),
            "running_mean": call.input(3), "running_var": call.input(4)}
    if call.attr("training_mode", 0):
        return aten_cost("aten.native_batch_norm", call, {**args, "training": True})
    return aten_cost("aten._native_batch_norm_legit_no_training", call, args)


def _skip_adds(call: OnnxCall, bias: int) -> Cost:
    """The residual add, and the bias add when the node has one (1 per element each)."""
    x = call.need(0)
    adds = 1 + call.has(bias)
    return aten_cost("aten.add", call, outputs=(x,)).scaled(adds)


@onnx_formula("SkipLayerNormalization", family="norm", domain=MS_DOMAIN)
def skip_layer_norm(call: OnnxCall) -> Cost:
    """input + skip (+ bias): 1 (+1) per element, then `aten.native_layer_norm` (8 with gamma and beta)"""
    norm = aten_cost("aten.native_layer_norm", call,
                     {"input": call.need(0), "weight": call.input(2), "bias": call.input(3)}, outputs=(call.out,))
    return _skip_adds(call, 4) + norm


@onnx_formula("SkipSimplifiedLayerNormalization", family="norm", domain=MS_DOMAIN)
def skip_simplified_layer_norm(call: OnnxCall) -> Cost:
    """input + skip (+ bias): 1 (+1) per element, then `aten.rms_norm` (4 with gamma)"""
    norm = aten_cost("aten.rms_norm", call, {"input": call.need(0), "weight": call.input(2)}, outputs=(call.out,))
    return _skip_adds(call, 3) + norm


@onnx_formula("LpNormalization", family="norm")
def lp_normalization(call: OnnxCall) -> Cost:
    """x / ||x||_p along axis: `aten.linalg_vector_norm` (2 per element + 1 per norm) + `aten.div` (1 per element)"""
    x = call.need(0)
    axis = int(call.attr("axis", -1)) % max(len(x.shape), 1)
    norms = TensorMeta(tuple(1 if i == axis else s for i, s in enumerate(x.shape)), x.dtype, x.itemsize)
    return aten_cost("aten.linalg_vector_norm", call, {"self": x}, outputs=(norms,)) + aten_cost("aten.div", call)


@onnx_formula("MeanVarianceNormalization", family="norm")
def mean_variance_normalization(call: OnnxCall) -> Cost:
    """as `aten.native_layer_norm` without affine: 6 per element"""
    return aten_cost("aten.native_layer_norm", call, {"input": call.input(0), "weight": None, "bias": None})


@onnx_formula("LRN", family="norm")
def lrn(call: OnnxCall) -> Cost:
    """as torch's local_response_norm: x^2 1, window sum size + 1, x alpha 1, + k 1, ^beta 1, divide 1 per element"""
    # torch.nn.functional.local_response_norm: mul (x^2), avg_pool over ``size`` channels (size + 1 per
    # element), mul by alpha, add k, pow beta, div: as those aten formulas count them
    size = int(call.attr("size", 1))
    return Cost(flops=(size + 1) * call.out.numel) + sum(
        (aten_cost(op, call) for op in ("aten.mul", "aten.mul", "aten.add", "aten.pow", "aten.div")), Cost()
    )


# ---- pooling and resampling --------------------------------------------------------------------------

def _pool_dims(call: OnnxCall) -> int:
    return max(len(call.need(0).shape) - 2, 1)


def _kernel_args(call: OnnxCall) -> dict[str, Any]:
    return {"self": call.input(0), "kernel_size": list(call.attr("kernel_shape", [1]))}


@onnx_formula("MaxPool", family="pool", reads=(0,))
def max_pool(call: OnnxCall) -> Cost:
    """as `aten.max_pool{1,2,3}d`: K per output element, K = prod(kernel_shape)"""
    return aten_cost(f"aten.max_pool{min(_pool_dims(call), 3)}d", call, _kernel_args(call), outputs=(call.out,))


@onnx_formula("AveragePool", family="pool", reads=(0,))
def average_pool(call: OnnxCall) -> Cost:
    """as `aten.avg_pool{1,2,3}d`: K + 1 per output element (the window's adds + 1 divide)"""
    return aten_cost(f"aten.avg_pool{min(_pool_dims(call), 3)}d", call, _kernel_args(call))


alias("GlobalAveragePool", "aten.mean", args=_reduce_args)  # torch's 1x1 adaptive average is aten.mean
alias("GlobalMaxPool", "aten.amax", args=_reduce_args)
alias("GlobalLpPool", "aten.linalg_vector_norm", args=_reduce_args)
alias("MaxUnpool", "aten.max_unpool2d", reads=(0, 1))
alias("MaxRoiPool", "torchvision.roi_pool", args=lambda call: {"input": call.input(0), "rois": call.input(1)})


alias("RoiAlign", "torchvision.roi_align", args=lambda call: {
    "input": call.input(0), "rois": call.input(1), "sampling_ratio": int(call.attr("sampling_ratio", 0)),
})


_UPSAMPLE = {
    ("nearest", 1): "aten.upsample_nearest1d", ("nearest", 2): "aten.upsample_nearest2d",
    ("nearest", 3): "aten.upsample_nearest3d", ("linear", 1): "aten.upsample_linear1d",
    ("linear", 2): "aten.upsample_bilinear2d", ("linear", 3): "aten.upsample_trilinear3d",
    ("cubic", 2): "aten.upsample_bicubic2d",
}


@onnx_formula("Resize", "Upsample", family="pool", reads=(0,))
def resize(call: OnnxCall) -> Cost:
    """as `aten.upsample_*` by mode and resized dimensions: nearest 0, linear 3/7/15 (1/2/3-d), cubic 31 (2-d)"""
    x, y = call.need(0), call.out
    resized = sum(a != b for a, b in zip(x.shape, y.shape, strict=False)) or max(len(x.shape) - 2, 1)
    mode = _text(call.attr("mode", "nearest"))
    mode = {"bilinear": "linear", "trilinear": "linear", "bicubic": "cubic"}.get(mode, mode)
    aten = _UPSAMPLE.get((mode, resized))
    if aten is None:
        raise ValueError(f"Resize mode {mode!r} over {resized} dimensions has no formula")
    return aten_cost(aten, call, {"self": x})


@onnx_formula("GridSample", family="pool", reads=(0, 1))
def grid_sample(call: OnnxCall) -> Cost:
    """as `aten.grid_sampler_2d/3d`: per output element bilinear 7 (trilinear 15), nearest 0, bicubic 31"""
    mode = {"bilinear": 0, "linear": 0, "nearest": 1, "bicubic": 2, "cubic": 2}.get(
        _text(call.attr("mode", "bilinear")), 0)
    aten = "aten.grid_sampler_3d" if len(call.need(0).shape) == 5 else "aten.grid_sampler_2d"
    return aten_cost(aten, call, {"input": call.input(0), "grid": call.input(1), "interpolation_mode": mode})


# ---- convolutions -------------------------------------------------------------------------------------

def _conv(call: OnnxCall, x: int, w: int, bias: int | None, *, transposed: bool = False) -> Cost:
    has_bias = bias is not None and call.has(bias)
    return conv_cost(call.need(x).shape, call.need(w).shape, call.out.shape, has_bias=has_bias,
                     transposed=transposed, convention=call.convention)


@onnx_formula("Conv", family="conv")
def conv(call: OnnxCall) -> Cost:
    """conv_cost: MACs = out.numel x Cin/groups x prod(K); FLOPs = 2 x MACs + 1 per output for a bias"""
    return _conv(call, 0, 1, 2)


@onnx_formula("ConvTranspose", family="conv")
def conv_transpose(call: OnnxCall) -> Cost:
    """conv_cost transposed: MACs = in.numel x Cout/groups x prod(K); + 1 per output for a bias"""
    return _conv(call, 0, 1, 2, transposed=True)


@onnx_formula("ConvInteger", family="conv", reads=(0, 1, 2, 3))
def conv_integer(call: OnnxCall) -> Cost:
    """conv_cost on int8: MACs = out.numel x Cin/groups x prod(K) (int32 accumulation); 2 x MACs"""
    return _conv(call, 0, 1, None)


@onnx_formula("QLinearConv", family="conv", reads=(0, 3, 8, 1, 2, 4, 5, 6, 7))
def qlinear_conv(call: OnnxCall) -> Cost:
    """conv_cost on int8 (+1 per output for the int32 bias) + 5 per output to requantize"""
    return _conv(call, 0, 3, 8) + Cost(flops=QUANTIZE_FLOPS * call.out.numel)


_ACTIVATIONS = {  # FusedConv's activation attribute -> the aten operator it applies
    "Relu": "aten.relu", "Tanh": "aten.tanh", "Sigmoid": "aten.sigmoid", "LeakyRelu": "aten.leaky_relu",
    "Clip": "aten.clamp", "HardSigmoid": "aten.hardsigmoid",
}


@onnx_formula("FusedConv", family="conv", domain=MS_DOMAIN)
def fused_conv(call: OnnxCall) -> Cost:
    """Conv + the fused activation per output (as its aten operator; Clip: 2 bounds) + 1 per output for Z (the sum)"""
    cost = _conv(call, 0, 1, 2) + _fused_activation(call, "FusedConv")
    if call.has(3):
        cost += aten_cost("aten.add", call)
    return cost


onnx_formula("NhwcConv", family="conv", domain=MS_DOMAIN)(conv)  # out.numel x prod(W[1:]): layout-free


# ---- ONNX Runtime's NCHWc layout (domain com.microsoft.nchwc) ------------------------------------------
#
# At the "layout"/"all" levels on the CPU, ONNX Runtime's NCHWc transformer rewrites convolutions and pools
# to run on channel blocks of b = 8 or 16 (the vector width). Its graph declares the blocked tensors 4-d,
# [N, C_b, H, W] with C_b = C rounded up to a multiple of b (their memory is [N, C_b / b, H, W, b]: the same
# elements), the weights (C_b_out, C_b_in / group, kh, kw) with zero rows and columns for the padded
# channels, and the biases (C_b_out,). Each operator is counted on those tensors as the kernel runs it:
# MACs and FLOPs include the padded channels, bytes are the blocked tensors' real sizes. A model whose
# channel counts are multiples of b counts the same MACs as before the rewrite; docs/onnx.md ("NCHWc").

NCHWC_DOMAIN = "com.microsoft.nchwc"


@onnx_formula("Conv", family="conv", domain=NCHWC_DOMAIN)
def nchwc_conv(call: OnnxCall) -> Cost:
    """as FusedConv on the blocked tensors (padded channels included): conv_cost + the fused activation + 1 per output for Sum"""
    return fused_conv(call)


_register(("MaxPool",), max_pool, family="pool", domain=NCHWC_DOMAIN, reads=(0,), doc=_first_line(max_pool.__doc__))
_register(("AveragePool",), average_pool, family="pool", domain=NCHWC_DOMAIN, reads=(0,),
          doc=_first_line(average_pool.__doc__))
_register(("Upsample",), resize, family="pool", domain=NCHWC_DOMAIN, reads=(0,),
          doc="as `onnx.Upsample` (nearest, integer scales): 0")
alias("GlobalAveragePool", "aten.mean", args=_reduce_args, domain=NCHWC_DOMAIN)
alias("GlobalMaxPool", "aten.amax", args=_reduce_args, domain=NCHWC_DOMAIN)
# NCHW (or NHWC) <-> NCHWc blocks: a copy that moves every element (and zero-fills or drops the padded channels)
alias(("ReorderInput", "ReorderOutput"), "aten.permute_copy", domain=NCHWC_DOMAIN)


# ---- matrix products ---------------------------------------------------------------------------------

def _product(call: OnnxCall, a: TensorMeta, k: int, bias: bool) -> Cost:
    """out.numel K-term dot products (+ a bias add on every output)."""
    outputs = call.out.numel
    return dot_cost(outputs * k, outputs, outputs if bias else 0, call.convention)


def _k(a: TensorMeta, *, transposed: bool = False) -> int:
    if not a.shape:
        return 1
    if len(a.shape) == 1:
        return a.shape[0]
    return a.shape[-2] if transposed else a.shape[-1]


@onnx_formula("MatMul", family="matmul")
def matmul(call: OnnxCall) -> Cost:
    """MACs = out.numel x K (batched and broadcast (..., M, K) @ (..., K, N)); FLOPs = 2 x MACs (fma)"""
    return _product(call, call.need(0), _k(call.need(0)), False)


@onnx_formula("MatMulInteger", family="matmul", reads=(0, 1, 2, 3))
def matmul_integer(call: OnnxCall) -> Cost:
    """int8 MACs = out.numel x K (int32 output); FLOPs = 2 x MACs"""
    return _product(call, call.need(0), _k(call.need(0)), False)


@onnx_formula("QLinearMatMul", family="matmul", reads=(0, 3, 1, 2, 4, 5, 6, 7))
def qlinear_matmul(call: OnnxCall) -> Cost:
    """int8 MACs = out.numel x K; FLOPs = 2 x MACs + 5 per output to requantize"""
    return _product(call, call.need(0), _k(call.need(0)), False) + Cost(flops=QUANTIZE_FLOPS * call.out.numel)


def _gemm(call: OnnxCall, a_at: int, c_at: int) -> Cost:
    a = call.need(a_at)
    k = a.shape[0] if call.attr("transA", 0) else a.shape[-1]
    m, n = call.out.shape[-2], call.out.shape[-1]  # Y is (M, N)
    return matmul_cost(1, m, n, k, has_bias=call.has(c_at), convention=call.convention)


@onnx_formula("Gemm", family="matmul")
def gemm(call: OnnxCall) -> Cost:
    """matmul_cost: MACs = M x N x K (transA/transB read off); FLOPs = 2 x MACs + 1 per output for C"""
    return _gemm(call, 0, 2)


@onnx_formula("FusedMatMul", family="matmul", domain=MS_DOMAIN)
def fused_matmul(call: OnnxCall) -> Cost:
    """MatMul with transA/transB (MACs = out.numel x K) + 1 per output for alpha != 1"""
    a = call.need(0)
    cost = _product(call, a, _k(a, transposed=bool(call.attr("transA", 0))), False)
    return cost + Cost(flops=call.out.numel) if float(call.attr("alpha", 1.0)) != 1.0 else cost


@onnx_formula("MatMulIntegerToFloat", family="matmul", domain=MS_DOMAIN)
def matmul_integer_to_float(call: OnnxCall) -> Cost:
    """int8 MACs = out.numel x K + 1 per output for the scale (+1 for a bias)"""
    cost = _product(call, call.need(0), _k(call.need(0)), call.has(6))
    return cost + Cost(flops=call.out.numel)


@onnx_formula("DynamicQuantizeMatMul", family="matmul", domain=MS_DOMAIN)
def dynamic_quantize_matmul(call: OnnxCall) -> Cost:
    """quantize A (7 per element) + int8 MACs = out.numel x K + 1 per output for the scale (+1 for a bias)"""
    a = call.need(0)
    cost = _product(call, a, _k(a), call.has(4))
    return cost + Cost(flops=(MINMAX_FLOPS + QUANTIZE_FLOPS) * a.numel + call.out.numel)


@onnx_formula("MatMulNBits", family="matmul", domain=MS_DOMAIN)
def matmul_nbits(call: OnnxCall) -> Cost:
    """MACs = rows x N x K (4-bit weights dequantised on the fly: +1 per output, as aten._weight_int4pack_mm)"""
    a = call.need(0)
    k = int(call.attr("K", a.shape[-1] if a.shape else 1))
    cost = _product(call, a, k, call.has(5))
    return cost + Cost(flops=call.out.numel)


@onnx_formula("GemmFastGelu", family="matmul", domain=MS_DOMAIN)
def gemm_fast_gelu(call: OnnxCall) -> Cost:
    """MatMul (+ bias) + `aten.gelu` approximate='tanh' (9 per output)"""
    cost = _product(call, call.need(0), _k(call.need(0)), call.has(2))
    return cost + aten_cost("aten.gelu", call, {"approximate": "tanh"})


@onnx_formula("FusedGemm", family="matmul", domain=MS_DOMAIN)
def fused_gemm(call: OnnxCall) -> Cost:
    """Gemm + the fused activation per output (as its aten operator)"""
    return gemm(call) + _fused_activation(call, "FusedGemm")


def _fused_activation(call: OnnxCall, op: str) -> Cost:
    """The FLOPs of a fused node's ``activation`` attribute on its output, as its aten operator counts them."""
    activation = _text(call.attr("activation", ""))
    if not activation:
        return ZERO
    aten = _ACTIVATIONS.get(activation)
    if aten is None:
        raise ValueError(f"{op} activation {activation!r} has no formula")
    return aten_cost(aten, call, {"self": call.out, "min": 0.0, "max": 0.0})


@onnx_formula("QGemm", family="matmul", domain=MS_DOMAIN, reads=(0, 3, 6, 1, 2, 4, 5, 7, 8))
def qgemm(call: OnnxCall) -> Cost:
    """int8 Gemm MACs (+1 per output for C) + 5 per output to requantize (1 to scale a float output)"""
    return _gemm(call, 0, 6) + Cost(flops=(QUANTIZE_FLOPS if call.has(7) else 1) * call.out.numel)


_EINSUM_TERM = re.compile(r"^[A-Za-z.]*$")


def _einsum_terms(equation: str, shapes: list[tuple[int, ...]]) -> tuple[list[str], str, dict[str, int]]:
    """Each operand's letters (an ellipsis expanded to upper-case-free private letters), the output's,
    and every letter's size."""
    eq = equation.replace(" ", "")
    lhs, _, rhs = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(shapes) or not all(_EINSUM_TERM.match(t) for t in terms + [rhs]):
        raise ValueError(f"einsum equation {equation!r} does not fit {len(shapes)} operands")
    ell_rank = max((len(s) - len(t.replace("...", "")) for t, s in zip(terms, shapes, strict=True)
                    if "..." in t), default=0)
    ell = "".join(chr(0x100 + i) for i in range(ell_rank))  # private letters for the ellipsis dims

    def expand(term: str, rank: int | None) -> str:
        if "..." not in term:
            return term
        n = (rank - len(term.replace("...", ""))) if rank is not None else ell_rank
        return term.replace("...", ell[ell_rank - n:])

    letters = [expand(t, len(s)) for t, s in zip(terms, shapes, strict=True)]
    sizes: dict[str, int] = {}
    for term, shape in zip(letters, shapes, strict=True):
        if len(term) != len(shape):
            raise ValueError(f"einsum term {term!r} does not fit shape {shape}")
        for c, s in zip(term, shape, strict=True):
            sizes[c] = max(sizes.get(c, 1), int(s))
    if "->" in eq:
        out = expand(rhs, None)
    else:  # implicit output: the ellipsis, then the letters used once, in alphabetical order
        counts = "".join(letters)
        out = ell + "".join(sorted(c for c in set(counts) if counts.count(c) == 1 and c not in ell))
    return letters, out, sizes


@onnx_formula("Einsum", family="matmul")
def einsum(call: OnnxCall) -> Cost:
    """pairwise, left to right: MACs = prod(sizes of both operands' letters) per contraction; else 1 per output

    Without a letter to contract (an outer or elementwise product) 1 FLOP per output element; letters an
    operand alone has and nothing after needs are summed first (1 per element, as aten.sum).
    """
    shapes = [t.shape for t in call.inputs if t is not None]
    terms, out, sizes = _einsum_terms(_text(call.attr("equation", "")), shapes)
    macs = flops = 0

    def numel(term: str) -> int:
        return prod(sizes[c] for c in term)

    def summed_out(term: str, keep: set[str]) -> str:
        nonlocal flops
        if set(term) - keep:
            flops += numel(term)  # aten.sum: 1 per element of the operand
            return "".join(dict.fromkeys(c for c in term if c in keep))
        return term

    current = terms[0]
    for i, other in enumerate(terms[1:], start=1):
        later = set(out).union(*terms[i + 1:])
        current = summed_out(current, later | set(other))
        other = summed_out(other, later | set(current))
        result = "".join(dict.fromkeys(c for c in current + other if c in later))
        if (set(current) & set(other)) - later:  # a contraction: every output a dot product
            step = dot_cost(prod(sizes[c] for c in set(current) | set(other)), numel(result), 0, call.convention)
            macs, flops = macs + step.macs, flops + step.flops
        else:  # an elementwise or outer product
            flops += numel(result)
        current = result
    summed_out(current, set(out))  # a single operand reduced (a transpose or a diagonal costs nothing)
    return Cost(macs=macs, flops=flops)


# ---- attention ----------------------------------------------------------------------------------------

def _heads(shape: tuple[int, ...], heads: int) -> int:
    """Head size of a (B, H, S, E) tensor, or of a (B, S, H x E) one with ``heads`` heads."""
    if len(shape) == 4:
        return shape[-1]
    if not heads:
        raise ValueError("a 3-d attention input needs its number of heads")
    return shape[-1] // heads


def _seq(shape: tuple[int, ...]) -> int:
    return shape[-2] if len(shape) == 4 else shape[1]


@onnx_formula("Attention", family="attention")
def attention(call: OnnxCall) -> Cost:
    """sdpa: MACs = B·Hq·L·S·(E + Ev); FLOPs = the two products + 6 per score (+1 with attn_mask, +3 softcap)

    Q (B, Hq, L, E) or (B, L, Hq·E), K/V (B, Hkv, S, E) or (B, S, Hkv·E) (opset 23); S includes
    past_key's length; a causal mask is counted dense (as the torch formulas do).
    """
    q, k, v = call.need(0), call.need(1), call.need(2)
    hq = q.shape[1] if len(q.shape) == 4 else int(call.attr("q_num_heads", 0))
    hkv = k.shape[1] if len(k.shape) == 4 else int(call.attr("kv_num_heads", 0))
    e, ev = _heads(q.shape, hq), _heads(v.shape, hkv)
    past = call.input(4)
    s_len = _seq(k.shape) + (past.shape[-2] if past is not None else 0)
    batch, l_len = q.shape[0], _seq(q.shape)
    scores = batch * hq * l_len * s_len
    cost = attention_core_cost(scores, batch * hq * l_len, e, ev, has_mask=call.has(3), convention=call.convention)
    return cost + Cost(flops=SOFTCAP_FLOPS * scores) if float(call.attr("softcap", 0.0)) else cost


@onnx_formula("Attention", family="attention", domain=MS_DOMAIN)
def ms_attention(call: OnnxCall) -> Cost:
    """QKV projection (B·S·In·(Dq + Dk + Dv) MACs, + bias) + attention over B·H·S·(P + S) scores

    input (B, S, In), weights (In, Dq + Dk + Dv) (``qkv_hidden_sizes``, else three equal parts), past
    (2, B, H, P, E); a mask_index or attention_bias adds 1 per score; unidirectional counted dense.
    """
    x, w = call.need(0), call.need(1)
    heads = int(call.attr("num_heads", 1))
    total = w.shape[-1]
    dq, _, dv = (list(call.attr("qkv_hidden_sizes", [])) or [total // 3] * 3)[:3]
    batch, s_len = x.shape[0], x.shape[1]
    rows = batch * s_len
    cost = matmul_cost(1, rows, total, x.shape[-1], has_bias=call.has(2), convention=call.convention)
    past = call.input(4)
    kv_len = s_len + (past.shape[3] if past is not None and len(past.shape) == 5 else 0)
    scores = batch * heads * s_len * kv_len
    return cost + attention_core_cost(scores, batch * heads * s_len, dq // heads, dv // heads,
                                      has_mask=call.has(3) or call.has(5), convention=call.convention)


@onnx_formula("MultiHeadAttention", family="attention", domain=MS_DOMAIN)
def multi_head_attention(call: OnnxCall) -> Cost:
    """attention over B·H·L·S scores (MACs B·H·L·S·(E + Ev)) + 1 per Q/K/V element for a bias

    query (B, L, D) or packed QKV (B, L, H, 3, E); key (B, S, D), (B, H, S, E) or packed KV
    (B, S, H, 2, E); S includes the past (present_key's length when known); a key_padding_mask or an
    attention_bias adds 1 per score.
    """
    q = call.need(0)
    heads = int(call.attr("num_heads", 1))
    batch, l_len = q.shape[0], q.shape[1]
    key, value = call.input(1), call.input(2)
    if len(q.shape) == 5:  # packed QKV
        e = ev = q.shape[-1]
        s_new = l_len
    else:
        e = q.shape[-1] // heads
        if key is None:
            s_new, ev = l_len, e
        elif len(key.shape) == 5:  # packed KV
            s_new, ev = key.shape[1], key.shape[-1]
        else:
            s_new = _seq(key.shape)
            ev = _heads(value.shape, heads) if value is not None else e
    present = call.outputs[1] if len(call.outputs) > 1 else None
    past = call.input(6)
    if present is not None and len(present.shape) == 4:
        s_len = present.shape[2]
    else:
        s_len = s_new + (past.shape[2] if past is not None and key is not None and len(key.shape) == 3 else 0)
    scores = batch * heads * l_len * s_len
    cost = attention_core_cost(scores, batch * heads * l_len, e, ev, has_mask=call.has(4) or call.has(5),
                               convention=call.convention)
    if call.has(3):
        cost += Cost(flops=batch * heads * (l_len * e + s_new * (e + ev)))
    return cost


@onnx_formula("GroupQueryAttention", family="attention", domain=MS_DOMAIN)
def group_query_attention(call: OnnxCall) -> Cost:
    """attention of H query heads over S_total keys (present_key's length: the cache buffer, an upper bound)

    MACs B·H·L·S·2E; FLOPs the two products + 6 per score (+1 with attention_bias, +3 with softcap), + 3
    per rotated element of Q and K with do_rotary.
    """
    q = call.need(0)
    heads, kv_heads = int(call.attr("num_heads", 1)), int(call.attr("kv_num_heads", 1))
    batch, l_len = q.shape[0], q.shape[1]
    packed = call.input(1) is None
    e = q.shape[-1] // (heads + 2 * kv_heads) if packed else q.shape[-1] // heads
    present = call.outputs[1] if len(call.outputs) > 1 else None
    past = call.input(3)
    if present is not None and len(present.shape) == 4:
        s_len = present.shape[2]
    elif past is not None and len(past.shape) == 4:
        s_len = past.shape[2]
    else:
        s_len = l_len
    scores = batch * heads * l_len * s_len
    cost = attention_core_cost(scores, batch * heads * l_len, e, e, has_mask=call.has(10),
                               convention=call.convention)
    if float(call.attr("softcap", 0.0)):
        cost += Cost(flops=SOFTCAP_FLOPS * scores)
    if call.attr("do_rotary", 0):
        cost += Cost(flops=ROTARY_FLOPS * batch * l_len * (heads + kv_heads) * e)
    return cost


def _rotary(call: OnnxCall) -> Cost:
    """3 per rotated element (x cos + rotate(x) sin); with rotary_embedding_dim < the head size, that fraction"""
    x = call.need(0)
    rotated = call.out.numel
    dim = int(call.attr("rotary_embedding_dim", 0))
    heads = int(call.attr("num_heads", 0))
    head = x.shape[-1] if len(x.shape) == 4 else (x.shape[-1] // heads if heads else 0)
    if dim and head:
        rotated = rotated * min(dim, head) // head
    return Cost(flops=ROTARY_FLOPS * rotated)


# input, cos_cache, sin_cache (opset 23); input, position_ids, cos_cache, sin_cache (com.microsoft)
onnx_formula("RotaryEmbedding", family="attention", reads=(0, 1, 2))(_rotary)
onnx_formula("RotaryEmbedding", family="attention", domain=MS_DOMAIN, reads=(0, 2, 3))(_rotary)


# ---- recurrent layers ---------------------------------------------------------------------------------

def _rnn(call: OnnxCall, mode: str) -> Cost:
    x, w = call.need(0), call.need(1)
    directions = w.shape[0]
    hidden = int(call.attr("hidden_size", 0)) or w.shape[1] // GATES[mode]
    rows = prod(x.shape[:2])  # T x B, whatever the layout
    bias = call.has(3)
    layer = rnn_layer_cost(rows, x.shape[-1], hidden, mode, ih_bias=bias, hh_bias=bias, convention=call.convention)
    if mode == "LSTM" and call.has(7):
        layer += Cost(flops=PEEPHOLE_FLOPS * rows * hidden)
    return layer.scaled(directions)


_RNN_READS = (0, 1, 2, 3, 5, 6, 7)  # sequence_lens (4) is an argument


@onnx_formula("LSTM", family="rnn", reads=_RNN_READS)
def lstm(call: OnnxCall) -> Cost:
    """rnn_layer_cost per direction: MACs = T·B·(I + H)·4H; FLOPs 2 x MACs + biases + 22 per hidden unit (+6 peepholes)"""
    return _rnn(call, "LSTM")


@onnx_formula("GRU", family="rnn", reads=_RNN_READS)
def gru(call: OnnxCall) -> Cost:
    """rnn_layer_cost per direction: MACs = T·B·(I + H)·3H; FLOPs 2 x MACs + biases + 16 per hidden unit"""
    return _rnn(call, "GRU")


@onnx_formula("RNN", family="rnn", reads=_RNN_READS)
def rnn(call: OnnxCall) -> Cost:
    """rnn_layer_cost per direction: MACs = T·B·(I + H)·H; FLOPs 2 x MACs + biases + 2 per hidden unit"""
    activations = [_text(a) for a in call.attr("activations", [])] or ["Tanh"]
    return _rnn(call, "RNN_RELU" if activations[0] == "Relu" else "RNN_TANH")


# ---- quantization -------------------------------------------------------------------------------------

@onnx_formula("QuantizeLinear", family="pointwise")
def quantize_linear(call: OnnxCall) -> Cost:
    """5 per element (divide by the scale, round, add the zero point, saturate: 2 compare-selects)"""
    return Cost(flops=QUANTIZE_FLOPS * call.out.numel)


@onnx_formula("DequantizeLinear", family="pointwise")
def dequantize_linear(call: OnnxCall) -> Cost:
    """2 per element (subtract the zero point, multiply by the scale)"""
    return Cost(flops=DEQUANTIZE_FLOPS * call.out.numel)


_register(("QuantizeLinear",), quantize_linear, family="pointwise", doc=_first_line(quantize_linear.__doc__),
          domain=MS_DOMAIN)
_register(("DequantizeLinear",), dequantize_linear, family="pointwise", doc=_first_line(dequantize_linear.__doc__),
          domain=MS_DOMAIN)


@onnx_formula("DynamicQuantizeLinear", family="pointwise")
def dynamic_quantize_linear(call: OnnxCall) -> Cost:
    """7 per element (min and max 2, quantize 5); the scale and zero point once"""
    return Cost(flops=(MINMAX_FLOPS + QUANTIZE_FLOPS) * call.need(0).numel)


def _qlinear(op_types: tuple[str, ...], base: str, data: tuple[int, ...], scales: tuple[int, ...],
             family: str) -> None:
    """Register ONNX Runtime's ``QLinear<Op>`` (com.microsoft) from the float operator ``base``'s formula:
    its FLOPs on the inputs at positions ``data`` + 2 per element of each (dequantize) + 5 per output
    element (quantize). ``scales``: the positions of the scales and zero points (read too)."""
    entry = ONNX_REGISTRY[(ONNX_DOMAIN, base)]

    def fn(call: OnnxCall) -> Cost:
        view = OnnxCall(base, ONNX_DOMAIN, tuple(call.input(i) for i in data), call.outputs, call.attrs,
                        call.reads, call.convention)
        dequantized = sum(t.numel for t in view.inputs if t is not None)
        return entry.formula(view) + Cost(flops=DEQUANTIZE_FLOPS * dequantized + QUANTIZE_FLOPS * call.out.numel)

    _register(op_types, fn, family=family, domain=MS_DOMAIN, reads=data + scales,
              doc=f"{base}'s FLOPs + 2 per input element (dequantize) + 5 per output element (quantize)")


_qlinear(("QLinearAdd", "QLinearMul"), "Add", (0, 3), (1, 2, 4, 5, 6, 7), "pointwise")
_qlinear(("QLinearSigmoid",), "Sigmoid", (0,), (1, 2, 3, 4), "transcendental")
_qlinear(("QLinearLeakyRelu",), "LeakyRelu", (0,), (1, 2, 3, 4), "pointwise")
_qlinear(("QLinearGlobalAveragePool",), "GlobalAveragePool", (0,), (1, 2, 3, 4), "reduction")
_qlinear(("QLinearAveragePool",), "AveragePool", (0,), (1, 2, 3, 4), "pool")
_qlinear(("QLinearSoftmax",), "Softmax", (0,), (1, 2, 3, 4), "reduction")


@onnx_formula("QLinearConcat", family="memory", domain=MS_DOMAIN)
def qlinear_concat(call: OnnxCall) -> Cost:
    """as `aten.cat` (0) + 2 per input element and 5 per output element (requantized to the output's scale)"""
    # inputs: y_scale, y_zero_point, then (x, x_scale, x_zero_point) per operand
    data = [call.input(i) for i in range(2, len(call.inputs), 3)]
    return Cost(flops=DEQUANTIZE_FLOPS * sum(t.numel for t in data if t is not None)
                + QUANTIZE_FLOPS * call.out.numel)


_MATMUL_FAMILIES = frozenset({"conv", "matmul", "attention", "rnn"})


def qdq_unit_cost(entry: OnnxEntry, call: OnnxCall, dequantized: Iterable[TensorMeta]) -> Cost:
    """The compute cost of a QDQ node unit (DequantizeLinear -> op -> QuantizeLinear) as ONNX Runtime runs
    it fused: products on int8 values (MACs) + 5 per output to requantize; operators that select or move
    values (max pool, Resize, data movement) work on int8 values with nothing added; any other operator
    its float FLOPs + 2 per dequantized input element + 5 per output element (the QLinear* kernels)."""
    cost = entry.formula(call)
    outputs = sum(t.numel for t in call.written)
    if entry.family in _MATMUL_FAMILIES:
        return cost + Cost(flops=QUANTIZE_FLOPS * outputs)
    if entry.family == "memory" or entry.op_type in QDQ_PASS_THROUGH:
        return cost
    return cost + Cost(flops=DEQUANTIZE_FLOPS * sum(t.numel for t in dequantized) + QUANTIZE_FLOPS * outputs)


# ---- the operator table of docs/onnx.md ---------------------------------------------------------------

REGENERATE = 'python -c "from rooflens.formulas.onnx_ops import markdown_table; print(markdown_table())"'
TABLE_START = f"<!-- generated: {REGENERATE} -- do not edit by hand -->"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def markdown_table() -> str:
    """Every ONNX operator with a formula, by family: operators, FLOPs rule, data inputs, bytes rule."""
    families: dict[str, dict[tuple[str, str, str], list[str]]] = {}
    for entry in entries():
        reads = "all" if entry.reads is None else (", ".join(map(str, entry.reads)) or "none")
        rule = "default" if entry.bytes is default_bytes else _first_line(entry.bytes.__doc__) or "default"
        key = (entry.doc, reads, rule)
        families.setdefault(entry.family, {}).setdefault(key, []).append(f"`{entry.name}`")
    lines = [TABLE_START, "", f"{len(ONNX_REGISTRY)} operators. Views (not recorded, no cost): "
             + ", ".join(f"`{op}`" for op in sorted(VIEW_OPS)) + ".", ""]
    for family, rows in sorted(families.items()):
        lines += [f"### {family}", "", "| Operator(s) | FLOPs rule | Data inputs | Bytes rule |", "|---|---|---|---|"]
        for (doc, reads, rule), names in rows.items():
            lines.append(f"| {', '.join(names)} | {_cell(doc)} | {reads} | {_cell(rule.rstrip('.'))} |")
        lines.append("")
    return "\n".join(lines)

