"""Quantized operators: torch's ``quantized::`` kernels (int8 convolutions and matrix products, static and
dynamic, their fused ReLU forms, quantized add/mul/cat, hardswish, max pooling), the dynamically
quantized LSTM and GRU, and ``quantize_per_tensor``/``dequantize``. MACs are int8 multiply-accumulates,
counted with the float operators' shape formulas (``conv_cost``, ``linear_cost``, ``rnn_layer_cost``), so a
quantized model has the MACs of the float model it was converted from; integer operations count as FLOPs
(the "OPs" of the datasheets' int8 peaks), and each quantize or dequantize step adds its own.

Each operator is registered in the family of the float operator it stands for (``conv``, ``matmul``, ``rnn``,
``pointwise``, ``memory``, ``pool``), so the analyses that go by family (advice, the calibrated latency)
treat an int8 convolution as a convolution; this module's docstring is their common derivation.

The weights of the ``quantized::`` kernels arrive packed (``LinearPackedParamsBase``,
``Conv2dPackedParamsBase`` ..., ``CellParamsBase`` for the RNNs): the capture describes each such
argument as a :class:`Packed` (its weights and biases as parameter tensors: a qint8 weight at 1 byte per
element, an fp32 bias at 4), which the formulas read and the bytes include.

Derivation, per element (the same constants as the ONNX front-end's QuantizeLinear, DequantizeLinear and
QLinear operators, so that a model's torch and ONNX int8 reports agree):

* quantize ``q = saturate(round(x / scale) + zero_point)`` -> 5 (divide, round, add, two compare-selects
  for the saturation, as ``clamp`` counts one per bound); dequantize ``x = (q - zero_point) * scale`` -> 2;
  choosing a dynamic scale from the tensor's min and max -> 2 (a compare each, as ``aminmax`` counts).
* int8 convolution / linear (static): the float formula (2 x MACs + 1 per output for the bias) + 5 per
  output to requantize the int32 accumulator (multiply by ``scale_x x scale_w / scale_y``, round, add the
  output zero point, saturate); the zero points are folded into the accumulation by the kernels (row and
  column sums) and not counted; a fused ReLU +1. ``conv2d_add``: + dequantizing the added tensor (2) and
  the add (1).
* dynamic linear (fp32 in, fp32 out): 2 x MACs + bias + choosing the input's scale and quantizing it
  (2 + 5 = 7 per input element: fbgemm finds its min and max, then quantizes it while packing it) + 1 per
  output to scale the int32 accumulator to fp32 (``scale_x x scale_w``). Its bytes: the fp32 input read
  once (the convention: each input once; the second pass reads it from cache on the sizes linear layers
  have), the int8 weight and fp32 bias read, the fp32 output written -- no int8 copy of the input reaches
  memory (the kernel quantizes into its cache-sized packing buffer). fp16 dynamic linear: 2 x MACs + bias,
  its weight read at 2 bytes.
* quantized elementwise and activation kernels (``add``, ``mul``, ``cat``, ``hardswish`` ...): each
  quantized input element dequantized (2), the float operator's count, the output quantized (5):
  ``add`` 2 + 2 + 1 + 5 = 10 per output element, ``cat`` 7 per element (torch copies the integers when
  every input already has the output's scale and zero point: 0 then; counted as the general case),
  ``relu6`` 2 (a clamp on the integers, the scale kept). Quantized max pooling compares the integers:
  K per output element, as the float max pool.
* dynamic LSTM / GRU: per layer and direction the float RNN formula (``rnn_layer_cost``) + quantizing the
  step's input and hidden state (7 per element: min/max and quantize) + scaling the two int32 products to
  fp32 (1 per gate output each).

Bytes: the default rule at the tensors' real widths (quint8/qint8 activations and weights 1 byte per
element, fp32 biases 4, the packed weights read once per call). The weights' quantization scales and zero
points are not counted in the operators' traffic (one or two per output channel); they are in the model
size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rooflens.formulas.conv import conv_cost
from rooflens.formulas.matmul import linear_cost, matmul_cost
from rooflens.formulas.pool import windowed
from rooflens.formulas.registry import OpCall, default_bytes, formula
from rooflens.formulas.rnn import GATES, rnn_layer_cost
from rooflens.types import Cost, TensorMeta

QUANTIZE_FLOPS = 5  # saturate(round(x / scale) + zero_point): divide, round, add, 2 compare-selects
DEQUANTIZE_FLOPS = 2  # (q - zero_point) * scale
MINMAX_FLOPS = 2  # a dynamic scale from the tensor's min and max: a compare each
REQUANTIZE_FLOPS = 5  # int32 accumulator -> int8: x (scale_x scale_w / scale_y), round, + zero point, saturate
RESCALE_FLOPS = 1  # int32 accumulator -> fp32: x (scale_x scale_w) (zero points folded into the accumulation)
RELU_FLOPS = 1
HARDSWISH_FLOPS = 5  # the pointwise family's count: add, 2 compare-selects, multiply, divide


@dataclass(frozen=True)
class Packed:
    """A packed-parameter object of torch's quantized kernels as the capture describes it: its weights
    (``LinearPackedParamsBase``: one, ``(N, K)``; ``Conv2dPackedParamsBase``: one, torch's layout;
    ``CellParamsBase``: ``w_ih`` and ``w_hh``) and their biases, as parameter tensors."""

    kind: str  # the torch class, e.g. "LinearPackedParamsBase"
    weights: tuple[TensorMeta, ...]
    biases: tuple[TensorMeta, ...] = ()

    @property
    def tensors(self) -> tuple[TensorMeta, ...]:
        return self.weights + self.biases

    @property
    def weight(self) -> TensorMeta:
        if not self.weights:
            raise ValueError(f"the packed {self.kind} holds no weight")
        return self.weights[0]

    @property
    def has_bias(self) -> bool:
        return bool(self.biases)


def _packed(call: OpCall) -> Packed:
    """The (first) packed-parameter argument of a ``quantized::`` call."""
    for value in call.args.values():
        if isinstance(value, Packed):
            return value
    raise ValueError(f"{call.op}: no packed weight among its arguments")


def _activation(call: OpCall, *names: str) -> TensorMeta:
    return call.first_tensor(*names)


# ---- int8 matrix products ---------------------------------------------------------------------------


def _linear(call: OpCall) -> tuple[Cost, Packed]:
    x, packed = _activation(call, "X"), _packed(call)
    return linear_cost(x.shape, packed.weight.shape, has_bias=packed.has_bias, convention=call.convention), packed


@formula("quantized.linear", "quantized.linear_relu", family="matmul")
def linear(call: OpCall) -> Cost:
    """MACs = prod(x.shape[:-1]) x N x K (int8); FLOPs = 2 x MACs + bias + 5 per output (requantize) (+1 ReLU)"""
    base, _ = _linear(call)
    per = REQUANTIZE_FLOPS + (RELU_FLOPS if call.op.endswith("_relu") else 0)
    return Cost(base.macs, base.flops + per * call.out.numel)


@formula("quantized.linear_dynamic", "quantized.linear_relu_dynamic", family="matmul")
def linear_dynamic(call: OpCall) -> Cost:
    """MACs = M x N x K (int8); FLOPs = 2 x MACs + bias + 7 per input element (scale, quantize) + 1 per output

    fp32 input, dynamically quantized by the kernel (its min and max, then quantized: 2 + 5 per element), int8
    x int8 products accumulated in int32, scaled to the fp32 output (1 per output), bias added; +1 per
    output for the fused ReLU.
    """
    base, _ = _linear(call)
    x = _activation(call, "X")
    out = call.out.numel
    extra = (MINMAX_FLOPS + QUANTIZE_FLOPS) * x.numel + RESCALE_FLOPS * out
    extra += RELU_FLOPS * out if "relu" in call.op else 0
    return Cost(base.macs, base.flops + extra)


def _fp16_weight_bytes(call: OpCall) -> tuple[int, int]:
    """Default traffic, the packed weight read at 2 bytes per element (fp16; it unpacks as fp32)"""
    read, written = default_bytes(call)
    w = _packed(call).weight
    return read - w.nbytes + (w.nbytes if w.bits else w.numel * 2), written


@formula("quantized.linear_dynamic_fp16", "quantized.linear_relu_dynamic_fp16", bytes=_fp16_weight_bytes,
         family="matmul")
def linear_dynamic_fp16(call: OpCall) -> Cost:
    """MACs = M x N x K (fp16 weights, fp32 compute); FLOPs = 2 x MACs + bias (+1 per output for ReLU)"""
    base, _ = _linear(call)
    return Cost(base.macs, base.flops + (RELU_FLOPS * call.out.numel if "relu" in call.op else 0))


@formula("quantized.linear_with_input_q_dq_qweight_dq_output_fp32",
    "quantized.linear_with_input_q_dq_qweight_dq_relu_output_fp32",
    family="matmul",
)
def linear_q_dq(call: OpCall) -> Cost:
    """MACs = M x N x K (int8); FLOPs = 2 x MACs + bias + 5 per input element (quantize) + 1 per output (+1 ReLU)"""
    base, _ = _linear(call)
    x = _activation(call, "X")
    out = call.out.numel
    extra = QUANTIZE_FLOPS * x.numel + RESCALE_FLOPS * out + (RELU_FLOPS * out if "relu" in call.op else 0)
    return Cost(base.macs, base.flops + extra)


@formula("quantized.matmul", family="matmul")
def matmul(call: OpCall) -> Cost:
    """MACs = out.numel x K (int8, two activations); FLOPs = 2 x MACs + 5 per output (requantize)"""
    a = _activation(call, "qa")
    outputs, k = call.out.numel, a.shape[-1] if a.shape else 1
    base = matmul_cost(1, outputs, 1, k, has_bias=False, convention=call.convention)
    return Cost(base.macs, base.flops + REQUANTIZE_FLOPS * outputs)


# ---- int8 convolutions ------------------------------------------------------------------------------


def _conv(call: OpCall, *, transposed: bool = False) -> Cost:
    x, packed = _activation(call, "qx"), _packed(call)
    return conv_cost(x.shape, packed.weight.shape, call.out.shape, has_bias=packed.has_bias, transposed=transposed,
                     convention=call.convention)


@formula("quantized.conv1d", "quantized.conv2d", "quantized.conv3d",
    "quantized.conv1d_relu", "quantized.conv2d_relu", "quantized.conv3d_relu",
    family="conv",
)
def conv(call: OpCall) -> Cost:
    """MACs = out.numel x Cin/groups x prod(K) (int8); FLOPs = 2 x MACs + bias + 5 per output (requantize) (+1 ReLU)"""
    base = _conv(call)
    per = REQUANTIZE_FLOPS + (RELU_FLOPS if call.op.endswith("_relu") else 0)
    return Cost(base.macs, base.flops + per * call.out.numel)


@formula("quantized.conv_transpose1d", "quantized.conv_transpose2d", "quantized.conv_transpose3d", family="conv")
def conv_transpose(call: OpCall) -> Cost:
    """MACs = in.numel x Cout/groups x prod(K) (int8); FLOPs = 2 x MACs + bias + 5 per output (requantize)"""
    base = _conv(call, transposed=True)
    return Cost(base.macs, base.flops + REQUANTIZE_FLOPS * call.out.numel)


@formula("quantized.conv2d_add", "quantized.conv2d_add_relu", family="conv")
def conv_add(call: OpCall) -> Cost:
    """MACs as conv2d; FLOPs = conv2d's + 3 per output (dequantize the added tensor, add) (+1 ReLU)"""
    base = _conv(call)
    per = REQUANTIZE_FLOPS + DEQUANTIZE_FLOPS + 1 + (RELU_FLOPS if call.op.endswith("_relu") else 0)
    return Cost(base.macs, base.flops + per * call.out.numel)


# ---- quantized elementwise, concatenation, activations, pooling -------------------------------------


def _requantized(inputs: int, op_flops: int, doc: str) -> Any:
    """A quantized kernel on ``inputs`` quantized operands: dequantize each, the float op, quantize the output."""
    per = inputs * DEQUANTIZE_FLOPS + op_flops + QUANTIZE_FLOPS

    def fn(call: OpCall) -> Cost:
        return Cost(flops=per * call.out.numel)

    fn.__doc__ = f"{per} per output element ({doc})"
    fn.__qualname__ = fn.__name__ = f"requantized_{per}"
    return fn


_REQUANTIZED = (  # (operators, inputs dequantized, FLOPs of the operation itself per element, derivation)
    (("quantized.add", "quantized.mul", "quantized.add_out"), 2, 1,
     "dequantize both inputs 2 x 2, the add or multiply 1, quantize 5"),
    (("quantized.add_relu", "quantized.mul_relu"), 2, 2,
     "dequantize both inputs 2 x 2, the add or multiply and the ReLU 2, quantize 5"),
    (("quantized.add_scalar", "quantized.mul_scalar"), 1, 1, "dequantize 2, add or multiply the scalar 1, quantize 5"),
    (("quantized.add_scalar_relu", "quantized.mul_scalar_relu"), 1, 2,
     "dequantize 2, add or multiply the scalar and the ReLU 2, quantize 5"),
    (("quantized.hardswish",), 1, HARDSWISH_FLOPS, "dequantize 2, hardswish 5, quantize 5"),
    (("quantized.leaky_relu",), 1, 2, "dequantize 2, leaky ReLU 2, quantize 5"),
)
for _names, _inputs, _work, _doc in _REQUANTIZED:
    formula(*_names, family="pointwise")(_requantized(_inputs, _work, _doc))


@formula("quantized.cat", "quantized.cat_out", family="memory")
def cat(call: OpCall) -> Cost:
    """7 per output element (each input element dequantized 2 and quantized to the output's scale 5)"""
    return Cost(flops=(DEQUANTIZE_FLOPS + QUANTIZE_FLOPS) * call.out.numel)


@formula("quantized.cat_relu", family="memory")
def cat_relu(call: OpCall) -> Cost:
    """8 per output element (dequantize 2, ReLU 1, quantize 5)"""
    return Cost(flops=(DEQUANTIZE_FLOPS + RELU_FLOPS + QUANTIZE_FLOPS) * call.out.numel)


@formula("quantized.relu6", family="pointwise")
def relu6(call: OpCall) -> Cost:
    """2 per element (two compare-selects on the integers; the scale is kept)"""
    return Cost(flops=2 * call.out.numel)


formula("aten.quantized_max_pool1d", "quantized.max_pool1d")(windowed(1, average=False))
formula("aten.quantized_max_pool2d", "quantized.max_pool2d")(windowed(2, average=False))
formula("aten.quantized_max_pool3d")(windowed(3, average=False))


# ---- quantize, dequantize ---------------------------------------------------------------------------


@formula("aten.quantize_per_tensor", "aten.quantize_per_channel", family="pointwise")
def quantize(call: OpCall) -> Cost:
    """5 per element (x / scale, round, + zero point, saturate: 2 compare-selects)"""
    return Cost(flops=QUANTIZE_FLOPS * sum(t.numel for t in call.outputs))


@formula("aten.quantize_per_tensor_dynamic", family="pointwise")
def quantize_dynamic(call: OpCall) -> Cost:
    """7 per element (min and max for the scale 2, quantize 5)"""
    return Cost(flops=(MINMAX_FLOPS + QUANTIZE_FLOPS) * call.out.numel)


@formula("aten.dequantize", family="pointwise")
def dequantize(call: OpCall) -> Cost:
    """2 per element ((q - zero point) x scale)"""
    return Cost(flops=DEQUANTIZE_FLOPS * sum(t.numel for t in call.outputs))


def _no_bytes(call: OpCall) -> tuple[int, int]:
    """Nothing: a quantizer's scale or zero point, read from the tensor's metadata"""
    return 0, 0


@formula(
    "aten.q_scale", "aten.q_zero_point", "aten.q_per_channel_axis", "aten.qscheme",
    "aten.q_per_channel_scales", "aten.q_per_channel_zero_points", bytes=_no_bytes, family="memory",
)
def quantizer_metadata(call: OpCall) -> Cost:
    """0 (metadata of the quantizer)"""
    return Cost()


# ---- dynamically quantized LSTM and GRU ------------------------------------------------------------


def _quantized_rnn(call: OpCall, mode: str) -> Cost:
    x = call.first_tensor("input", "data")
    cells = call.args.get("params") or ()
    if not all(isinstance(c, Packed) for c in cells):
        raise ValueError(f"{call.op}: its params are not packed cell parameters (the legacy tensor-list form)")
    rows = 1
    for d in x.shape[:-1]:
        rows *= d
    dynamic = "float16" not in str(call.args.get("dtype") or "")
    total = Cost()
    g = GATES[mode]
    for cell in cells:
        w_ih, w_hh = cell.weights[0], cell.weights[1]
        hidden = w_hh.shape[1]
        width = w_ih.shape[1]
        has_bias = len(cell.biases) >= 2
        layer = rnn_layer_cost(rows, width, w_ih.shape[0] // g, mode, recurrent_size=hidden,
                               ih_bias=has_bias, hh_bias=has_bias, convention=call.convention)
        if dynamic:  # the step's input and hidden state quantized, the two int32 products scaled to fp32
            layer += Cost(flops=(MINMAX_FLOPS + QUANTIZE_FLOPS) * rows * (width + hidden)
                          + RESCALE_FLOPS * 2 * rows * w_ih.shape[0])
        total += layer
    return total


@formula("aten.quantized_lstm", family="rnn")
def quantized_lstm(call: OpCall) -> Cost:
    """per layer and direction: T·B·(I + H)·4H MACs (int8); FLOPs = the LSTM's + 7 per quantized element + 1 per gate output per product"""
    return _quantized_rnn(call, "LSTM")


@formula("aten.quantized_gru", family="rnn")
def quantized_gru(call: OpCall) -> Cost:
    """per layer and direction: T·B·(I + H)·3H MACs (int8); FLOPs = the GRU's + 7 per quantized element + 1 per gate output per product"""
    return _quantized_rnn(call, "GRU")

