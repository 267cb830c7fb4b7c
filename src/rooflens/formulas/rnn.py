"""Recurrent layers: LSTM, GRU and Elman RNN (tanh/ReLU), whole-sequence kernels and fused cells.

What reaches dispatch depends on the device: on the CPU, ``nn.LSTM`` reaches ``mkldnn_rnn_layer`` once
per layer and direction (torch's own ``FlopCounterMode`` counts it as 0), while ``nn.GRU``, ``nn.RNN``,
LSTMs with ``proj_size`` and every ``nn.*Cell`` are decomposed by torch into ``addmm``/``mm`` and
pointwise operators, which their own families count. On CUDA, ``_cudnn_rnn`` runs all layers and
directions in one call (``miopen_rnn`` on ROCm), and the cells reach ``mm`` plus
``_thnn_fused_lstm_cell``/``_thnn_fused_gru_cell``.

Derivation, per time step, per layer and direction, batch B, input width I, hidden H, G gate blocks
(G = 4 LSTM, 3 GRU, 1 RNN), recurrent width Hr (= H, or P with an LSTM projection of size P):

* MACs = B·I·G·H (input-to-hidden) + B·Hr·G·H (hidden-to-hidden) [+ B·H·P for the projection];
  a whole sequence is T steps, so with ``rows`` = T·B (the packed total for packed sequences):
  MACs = rows·(I + Hr)·G·H.
* FLOPs = the two products as two dot products, each with its bias (``dot_flops``: 2 x MACs + 1 add per
  gate output per bias under fma, 2 x MACs exact) + the gate elementwise work, per hidden unit:

  - LSTM, 22: combine the ih and hh halves of the 4 gates 4 (adds), sigmoid on i, f, o 3 x 4 = 12,
    tanh on g 1, c' = f·c + i·g 3 (2 mul, 1 add), h' = o·tanh(c') 2 (tanh 1, mul 1);
  - GRU, 16: r = sigmoid(gi_r + gh_r) 5 (add 1, sigmoid 4), z likewise 5,
    n = tanh(gi_n + r·gh_n) 3 (mul, add, tanh), h' = n + z·(h - n) 3 (sub, mul, add);
  - RNN, 2: combine 1 + tanh or ReLU 1.

  (sigmoid 4 and tanh 1 FLOPs per element, mul/add/sub 1: the pointwise family's counts, so that the
  decomposed CPU path and the fused kernels agree.)
"""

from __future__ import annotations

from math import prod
from typing import Any

from rooflens.formulas.registry import OpCall, default_bytes, dot_flops, formula
from rooflens.types import Convention, Cost, TensorMeta

# cuDNN / MIOpen / oneDNN mode enum as torch passes it (``mode`` argument).
MODES = {0: "RNN_RELU", 1: "RNN_TANH", 2: "LSTM", 3: "GRU"}
GATES = {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1}
# Elementwise FLOPs per hidden unit per step (derivation in the module docstring).
ELEMENTWISE = {"LSTM": 22, "GRU": 16, "RNN_TANH": 2, "RNN_RELU": 2}


def rnn_layer_cost(
    rows: int,
    input_size: int,
    hidden_size: int,
    mode: str,
    *,
    recurrent_size: int | None = None,
    proj_size: int = 0,
    ih_bias: bool = True,
    hh_bias: bool = True,
    convention: Convention = Convention.FMA,
) -> Cost:
    """One layer and direction over ``rows`` = steps x batch input vectors (shared with ONNX LSTM/GRU/RNN).

    ``recurrent_size``: width of the hidden state fed back (``proj_size`` or ``hidden_size`` by default).
    """
    g = GATES[mode]
    hr = recurrent_size if recurrent_size is not None else (proj_size or hidden_size)
    gate_out = rows * g * hidden_size
    macs_ih = rows * input_size * g * hidden_size
    macs_hh = rows * hr * g * hidden_size
    flops = dot_flops(macs_ih, gate_out, gate_out if ih_bias else 0, convention)
    flops += dot_flops(macs_hh, gate_out, gate_out if hh_bias else 0, convention)
    flops += ELEMENTWISE[mode] * rows * hidden_size
    macs = macs_ih + macs_hh
    if proj_size:
        macs_hr = rows * hidden_size * proj_size
        macs += macs_hr
        flops += dot_flops(macs_hr, rows * proj_size, 0, convention)
    return Cost(macs=macs, flops=flops)


def rnn_stack_cost(
    rows: int,
    input_size: int,
    hidden_size: int,
    mode: str,
    *,
    num_layers: int = 1,
    bidirectional: bool = False,
    proj_size: int = 0,
    has_biases: bool = True,
    convention: Convention = Convention.FMA,
) -> Cost:
    """All layers and directions: layer 0 reads the input, layer l > 0 reads D x (P or H) features."""
    directions = 2 if bidirectional else 1
    total = Cost()
    width = input_size
    for _ in range(num_layers):
        layer = rnn_layer_cost(rows, width, hidden_size, mode, proj_size=proj_size, ih_bias=has_biases,
                               hh_bias=has_biases, convention=convention)
        total += layer.scaled(directions)
        width = directions * (proj_size or hidden_size)
    return total


def _t(call: OpCall, name: str) -> TensorMeta:
    t = call.tensor(name)
    if t is None:
        raise ValueError(f"{call.op}: argument {name!r} is not a tensor")
    return t


def _mode(value: Any) -> str:
    mode = MODES.get(int(value))
    if mode is None:
        raise ValueError(f"unknown RNN mode {value!r}")
    return mode


def _rows(x: TensorMeta) -> int:
    """Input vectors: T x B for (T, B, I) or (B, T, I), the packed total for (sum(batch_sizes), I)."""
    return prod(x.shape[:-1]) if len(x.shape) > 1 else 1


def _fused_rnn_bytes(call: OpCall) -> tuple[int, int]:
    """Default traffic, but the weights once: ``weight_buf`` is the flat buffer the weight list views."""
    read, written = default_bytes(call)
    buf = call.tensor("weight_buf")
    if buf is not None and call.args.get("weight"):
        read -= buf.nbytes
    return read, written


@formula("aten._cudnn_rnn", "aten.miopen_rnn", bytes=_fused_rnn_bytes)
def cudnn_rnn(call: OpCall) -> Cost:
    """MACs = T·B·(I + H)·G·H per layer and direction (G = 4 LSTM, 3 GRU, 1 RNN); FLOPs 2 x MACs + biases + gates

    All layers and directions in one call: input (T, B, I), (B, T, I) or packed (sum(batch_sizes), I);
    layer 0 reads I features, later layers D x H (D x P with an LSTM projection ``proj_size`` P, which
    adds T·B·H·P MACs per layer and direction). Gate elementwise FLOPs per hidden unit per step:
    LSTM 22, GRU 16, RNN 2 (see the module docstring).
    """
    x = _t(call, "input")
    weights = call.args.get("weight") or ()
    stride = int(call.args.get("weight_stride0") or 0)
    proj = int(call.args.get("proj_size") or 0)
    # weight_stride0 tensors per layer-direction: w_ih, w_hh[, b_ih, b_hh][, w_hr].
    has_biases = stride in (4, 5) if weights else True
    return rnn_stack_cost(
        _rows(x),
        x.shape[-1],
        int(call.args["hidden_size"]),
        _mode(call.args["mode"]),
        num_layers=int(call.args.get("num_layers") or 1),
        bidirectional=bool(call.args.get("bidirectional")),
        proj_size=proj,
        has_biases=has_biases,
        convention=call.convention,
    )


@formula("aten.mkldnn_rnn_layer")
def mkldnn_rnn_layer(call: OpCall) -> Cost:
    """MACs = T·B·(I + H)·G·H (one layer, one direction); FLOPs 2 x MACs + 2 bias adds per gate output + gates

    oneDNN's CPU LSTM, one call per layer and direction: input (T, B, I), weight0 = w_ih (G·H, I),
    weight1 = w_hh (G·H, H), weight2/weight3 the biases (when ``has_biases``). LSTM gate elementwise
    work 22 FLOPs per hidden unit per step (see the module docstring).
    """
    return mkldnn_layer_cost(call, w_hh="weight1")


def mkldnn_layer_cost(call: OpCall, *, w_hh: str) -> Cost:
    """The forward cost of one oneDNN layer; ``w_hh`` names the hidden-to-hidden weight's argument
    (``weight1`` in ``mkldnn_rnn_layer``, ``weight2`` in ``mkldnn_rnn_layer_backward``, whose weights are
    numbered from 1)."""
    x, hh = _t(call, "input"), _t(call, w_hh)
    has_biases = bool(call.args.get("has_biases", True))
    return rnn_layer_cost(
        _rows(x),
        x.shape[-1],
        int(call.args["hidden_size"]),
        _mode(call.args["mode"]),
        recurrent_size=hh.shape[-1],
        ih_bias=has_biases,
        hh_bias=has_biases,
        convention=call.convention,
    )


def _cell(call: OpCall, mode: str) -> Cost:
    x, w_ih, w_hh = _t(call, "input"), _t(call, "w_ih"), _t(call, "w_hh")
    hidden = w_ih.shape[0] // GATES[mode]
    return rnn_layer_cost(
        _rows(x),
        x.shape[-1],
        hidden,
        mode,
        recurrent_size=w_hh.shape[-1],
        ih_bias=call.args.get("b_ih") is not None,
        hh_bias=call.args.get("b_hh") is not None,
        convention=call.convention,
    )


@formula("aten.lstm_cell")
def lstm_cell(call: OpCall) -> Cost:
    """MACs = B·(I + H)·4H; FLOPs = 2 x MACs + 1 per gate output per bias + 22 per hidden unit

    Composite in torch (it reaches dispatch as ``addmm`` and pointwise ops); registered for front-ends
    that see the cell itself.
    """
    return _cell(call, "LSTM")


@formula("aten.gru_cell")
def gru_cell(call: OpCall) -> Cost:
    """MACs = B·(I + H)·3H; FLOPs = 2 x MACs + 1 per gate output per bias + 16 per hidden unit"""
    return _cell(call, "GRU")


@formula("aten.rnn_tanh_cell", "aten.rnn_relu_cell")
def rnn_cell(call: OpCall) -> Cost:
    """MACs = B·(I + H)·H; FLOPs = 2 x MACs + 1 per output per bias + 2 per hidden unit"""
    return _cell(call, "RNN_RELU" if call.op.endswith("relu_cell") else "RNN_TANH")


@formula("aten._thnn_fused_lstm_cell")
def thnn_fused_lstm_cell(call: OpCall) -> Cost:
    """no MACs (the gate GEMMs are separate mm calls); FLOPs = 1 per gate output per bias + 22 per hidden unit

    ``_thnn_fused_lstm_cell(input_gates (B, 4H), hidden_gates (B, 4H), cx (B, H), input_bias?,
    hidden_bias?)``: adds the biases, combines the two halves and applies the LSTM gate arithmetic.
    """
    gates = _t(call, "input_gates").numel
    hidden = _t(call, "cx").numel
    biases = sum(call.args.get(n) is not None for n in ("input_bias", "hidden_bias"))
    return Cost(flops=biases * gates + ELEMENTWISE["LSTM"] * hidden)


@formula("aten._thnn_fused_gru_cell")
def thnn_fused_gru_cell(call: OpCall) -> Cost:
    """no MACs (the gate GEMMs are separate mm calls); FLOPs = 1 per gate output per bias + 16 per hidden unit

    ``_thnn_fused_gru_cell(input_gates (B, 3H), hidden_gates (B, 3H), hx (B, H), input_bias?,
    hidden_bias?)``.
    """
    gates = _t(call, "input_gates").numel
    hidden = _t(call, "hx").numel
    biases = sum(call.args.get(n) is not None for n in ("input_bias", "hidden_bias"))
    return Cost(flops=biases * gates + ELEMENTWISE["GRU"] * hidden)
