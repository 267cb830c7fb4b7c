"""Backward operators that torch does not decompose into counted parts: convolution, pooling,
resampling, attention and recurrent layers. (Activations, normalisations, softmax, embedding and
dropout backwards are decomposed by torch into pointwise and reduction operators, counted there.)

Each backward operator belongs to the formula family of its forward (``convolution_backward`` to
``conv``, the pooling and resampling backwards to ``pool``, ...), so the supported-operator table lists it
there. Every rule below holds under both FLOP conventions: the products are dot products counted by
:func:`~rooflens.formulas.registry.dot_flops` (``exact``: an n-term dot product is n multiplies and
n - 1 adds), the other work is per element.

Derivations, with the forward's MACs ``m``:

* ``convolution_backward``: the input gradient is a transposed convolution of the output gradient
  with the same weights (``m`` MACs); the weight gradient correlates the input with the output
  gradient (``m`` MACs); the bias gradient sums the output gradient over batch and space (1 add per
  output-gradient element). ``output_mask`` says which of the three are computed. So a Linear's or a
  Conv2d's backward is 2 x its forward's 2 x MACs FLOPs (without bias).
* pooling: max pooling scatters each output gradient to its arg-max (1 add per output-gradient element);
  average pooling divides each output gradient by its window size and adds it to the K window elements
  (K + 1 per output-gradient element, as the forward); adaptive average pooling likewise: 1 divide per
  output-gradient element and 1 add per element of its bin (the bin sizes summed, as the forward).
* resampling: each output gradient is scattered to the taps it was interpolated from: 1 add per tap and
  1 multiply per tap for the weighted ones (nearest 1, linear 4, bilinear 8, trilinear 16, bicubic 32
  per output-gradient element).
* attention (every fused kernel): with S = the number of scores and E/Ev the head dims, the backward
  recomputes Q·Kᵀ (S·E MACs) and computes dV = Pᵀ·dO (S·Ev), dP = dO·Vᵀ (S·Ev), dQ = dS·K (S·E) and
  dK = dSᵀ·Q (S·E): MACs = S·(3E + 2Ev), 2.5 x the forward's for E = Ev (FlashAttention's count);
  FLOPs = the five products + 8 per score (recomputed scale and softmax 6, dS = P·(dP - rowsum(dO·O)) 2)
  + 1 per score with an additive mask. The products' outputs are the S scores twice (QKᵀ, dP) and the
  three gradients, of the sizes of q, k and v (with grouped-query attention a key/value gradient sums
  over the heads of its group: one longer dot product per element). So fma: 2 x MACs; exact: 2 x MACs
  - (2S + |q| + |k| + |v|).
* recurrent layers (oneDNN, cuDNN): gradients with respect to the inputs and hidden state take the
  forward's MACs again, the weight gradients once more: 2 x the forward's MACs and FLOPs (gate
  derivatives counted like the forward's gate work); 1 x when only one kind of gradient is asked for.
"""

from __future__ import annotations

from math import prod

from rooflens.formulas.attention import (
    cudnn_attention_forward,
    efficient_attention_forward,
    flash_attention_forward,
    sdpa,
)
from rooflens.formulas.conv import conv_cost
from rooflens.formulas.pool import AVERAGE_DIVIDE, adaptive_pool_flops
from rooflens.formulas.registry import Formula, OpCall, dot_flops, formula
from rooflens.formulas.rnn import cudnn_rnn, mkldnn_layer_cost
from rooflens.types import Cost, TensorMeta


def _t(call: OpCall, name: str) -> TensorMeta:
    t = call.tensor(name)
    if t is None:
        raise ValueError(f"{call.op}: argument {name!r} is not a tensor")
    return t


@formula("aten.convolution_backward", "aten.convolution_backward_overrideable", family="conv")
def convolution_backward(call: OpCall) -> Cost:
    """grad input m MACs + grad weight m MACs (m = the forward's), as output_mask asks; grad bias 1 per grad-output element"""
    grad, x, w = _t(call, "grad_output"), _t(call, "input"), _t(call, "weight")
    mask = list(call.args.get("output_mask") or (True, True, True))
    transposed = bool(call.args.get("transposed", False))
    forward = conv_cost(x.shape, w.shape, grad.shape, has_bias=False, transposed=transposed, convention=call.convention)
    m = forward.macs
    macs = flops = 0
    if mask[0]:  # grad input: one dot product per input element
        macs += m
        flops += dot_flops(m, x.numel, 0, call.convention)
    if mask[1]:  # grad weight: one dot product per weight element
        macs += m
        flops += dot_flops(m, w.numel, 0, call.convention)
    if len(mask) > 2 and mask[2]:  # grad bias: sum of the output gradient per channel
        flops += grad.numel
    return Cost(macs=macs, flops=flops)


def _grad_output_times(per_element: int, doc: str) -> Formula:
    def fn(call: OpCall) -> Cost:
        return Cost(flops=per_element * _t(call, "grad_output").numel)

    fn.__doc__ = doc
    fn.__qualname__ = fn.__name__ = f"grad_output_times_{per_element}"
    return fn


formula(
    "aten.max_pool2d_with_indices_backward", "aten.max_pool3d_with_indices_backward",
    "aten.adaptive_max_pool2d_backward", "aten.adaptive_max_pool3d_backward",
    "aten.upsample_nearest1d_backward", "aten.upsample_nearest2d_backward", "aten.upsample_nearest3d_backward",
    "aten._upsample_nearest_exact1d_backward", "aten._upsample_nearest_exact2d_backward",
    "aten._upsample_nearest_exact3d_backward", family="pool",
)(_grad_output_times(1, "1 per output-gradient element (scattered to its source: 1 add)"))
formula("aten.upsample_linear1d_backward", family="pool")(
    _grad_output_times(4, "4 per output-gradient element (2 taps, mul + add)")
)
formula("aten.upsample_bilinear2d_backward", "aten._upsample_bilinear2d_aa_backward", family="pool")(
    _grad_output_times(8, "8 per output-gradient element (4 taps, mul + add)")
)
formula("aten.upsample_trilinear3d_backward", family="pool")(
    _grad_output_times(16, "16 per output-gradient element (8 taps, mul + add)")
)
formula("aten.upsample_bicubic2d_backward", "aten._upsample_bicubic2d_aa_backward", family="pool")(
    _grad_output_times(32, "32 per output-gradient element (16 taps, mul + add)")
)


@formula("aten.avg_pool2d_backward", "aten.avg_pool3d_backward", family="pool")
def avg_pool_backward(call: OpCall) -> Cost:
    """K + 1 per output-gradient element (1 divide, then K adds into its window), K = kernel size"""
    k = call.args.get("kernel_size") or [1]
    ks = [int(v) for v in ([k] if isinstance(k, int) else k)]
    dims = 2 if call.op == "aten.avg_pool2d_backward" else 3
    window = prod(ks * dims if len(ks) == 1 else ks)
    return Cost(flops=(window + AVERAGE_DIVIDE) * _t(call, "grad_output").numel)


@formula("aten._adaptive_avg_pool2d_backward", "aten._adaptive_avg_pool3d_backward", family="pool")
def adaptive_avg_pool_backward(call: OpCall) -> Cost:
    """1 divide per output-gradient element + 1 add per element of its bin (the forward's count)"""
    grad = _t(call, "grad_output")
    dims = 2 if call.op == "aten._adaptive_avg_pool2d_backward" else 3
    adds = adaptive_pool_flops(_t(call, "self").shape, grad.shape, dims)
    return Cost(flops=adds + AVERAGE_DIVIDE * grad.numel)


# ---- attention --------------------------------------------------------------------------------------

ATTENTION_BACKWARD_PER_SCORE = 8  # recomputed scale 1 + softmax 5, dS = P * (dP - D): 2


def _attention_backward(forward: Formula, mask_args: tuple[str, ...]) -> Formula:
    def fn(call: OpCall) -> Cost:
        q, k, v = _t(call, "query"), _t(call, "key"), _t(call, "value")
        e, ev = q.shape[-1], v.shape[-1]
        scores = forward(call).macs // (e + ev)  # the forward's MACs are S·(E + Ev) in every layout
        macs = scores * (3 * e + 2 * ev)
        outputs = 2 * scores + q.numel + k.numel + v.numel  # QKᵀ and dP (scores each), dQ, dK, dV
        per_score = ATTENTION_BACKWARD_PER_SCORE + (1 if any(call.args.get(a) is not None for a in mask_args) else 0)
        return Cost(macs=macs, flops=dot_flops(macs, outputs, 0, call.convention) + per_score * scores)

    fn.__doc__ = ("MACs = S·(3E + 2Ev) (recompute QKᵀ, dV, dP, dQ, dK); FLOPs the five products + 8 per score "
                  "(+1 masked)")
    fn.__qualname__ = fn.__name__ = f"{forward.__name__}_backward"
    return fn


formula(
    "aten._scaled_dot_product_flash_attention_for_cpu_backward",
    "aten._scaled_dot_product_flash_attention_backward",
    "aten._scaled_dot_product_efficient_attention_backward",
    "aten._scaled_dot_product_fused_attention_overrideable_backward",
    family="attention",
)(_attention_backward(sdpa, ("attn_mask", "attn_bias")))
formula("aten._scaled_dot_product_cudnn_attention_backward", family="attention")(
    _attention_backward(cudnn_attention_forward, ("attn_bias",))
)
formula("aten._flash_attention_backward", family="attention")(_attention_backward(flash_attention_forward, ()))
formula("aten._efficient_attention_backward", family="attention")(
    _attention_backward(efficient_attention_forward, ("bias",))
)


# ---- recurrent layers -------------------------------------------------------------------------------


@formula("aten.mkldnn_rnn_layer_backward", family="rnn")
def mkldnn_rnn_layer_backward(call: OpCall) -> Cost:
    """2 x the forward layer's MACs and FLOPs (input/hidden gradients + weight gradients)

    Its weights are numbered from 1: weight1 = w_ih, weight2 = w_hh (the forward's weight0, weight1).
    """
    return mkldnn_layer_cost(call, w_hh="weight2").scaled(2)


@formula("aten._cudnn_rnn_backward", "aten.miopen_rnn_backward", family="rnn")
def cudnn_rnn_backward(call: OpCall) -> Cost:
    """2 x the forward's MACs and FLOPs (1 x when output_mask asks for input or weight gradients only)"""
    mask = list(call.args.get("output_mask") or (True, True, True, True))
    kinds = int(any(mask[:3])) + int(bool(mask[3]) if len(mask) > 3 else True)
    return cudnn_rnn(call).scaled(kinds)

