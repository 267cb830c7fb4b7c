"""Every backward formula, under both FLOP conventions, against a hand derivation written out beside it.

Conventions: fma counts a multiply-accumulate as 2 FLOPs; exact counts an n-term dot product as n
multiplies and n - 1 adds, i.e. 2 x MACs - (number of dot products). Work that is not a dot product
(scatters, divides, the softmax's recomputation) is the same under both.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from test_formulas_matmul import cost_of, make_call
from torch import nn

import rooflens
from rooflens.formulas import REGISTRY
from rooflens.types import Convention, Cost

from _helpers import Fn, tm

FMA, EXACT = Convention.FMA, Convention.EXACT


def call_of(op: str, given: dict[str, Any], outputs: tuple[Any, ...], convention: Convention) -> Any:
    """``make_call`` with the arguments this operator's schema has (variants differ in a few)."""
    names = {a.name for a in getattr(torch.ops.aten, op.removeprefix("aten.")).default._schema.arguments}
    return make_call(op, {k: v for k, v in given.items() if k in names}, outputs, convention=convention)


def backward_ops(report: rooflens.Report) -> list[tuple[str, Cost]]:
    return [(r.op, r.cost) for r in report.records if r.phase == "backward" and r.cost.flops]


# ---- every backward formula is covered here ---------------------------------------------------------

COVERED = {
    "aten.convolution_backward", "aten.convolution_backward_overrideable",
    "aten.max_pool2d_with_indices_backward", "aten.max_pool3d_with_indices_backward",
    "aten.adaptive_max_pool2d_backward", "aten.adaptive_max_pool3d_backward",
    "aten.upsample_nearest1d_backward", "aten.upsample_nearest2d_backward", "aten.upsample_nearest3d_backward",
    "aten._upsample_nearest_exact1d_backward", "aten._upsample_nearest_exact2d_backward",
    "aten._upsample_nearest_exact3d_backward", "aten.upsample_linear1d_backward",
    "aten.upsample_bilinear2d_backward", "aten._upsample_bilinear2d_aa_backward",
    "aten.upsample_trilinear3d_backward", "aten.upsample_bicubic2d_backward", "aten._upsample_bicubic2d_aa_backward",
    "aten.avg_pool2d_backward", "aten.avg_pool3d_backward",
    "aten._adaptive_avg_pool2d_backward", "aten._adaptive_avg_pool3d_backward",
    "aten._scaled_dot_product_flash_attention_for_cpu_backward", "aten._scaled_dot_product_flash_attention_backward",
    "aten._scaled_dot_product_efficient_attention_backward",
    "aten._scaled_dot_product_fused_attention_overrideable_backward",
    "aten._scaled_dot_product_cudnn_attention_backward", "aten._flash_attention_backward",
    "aten._efficient_attention_backward",
    "aten.mkldnn_rnn_layer_backward", "aten._cudnn_rnn_backward", "aten.miopen_rnn_backward",
}


def test_every_backward_formula_is_tested_here() -> None:
    registered = {e.op for e in REGISTRY if e.op.endswith("_backward") or e.op.endswith("_backward_overrideable")}
    assert registered == COVERED


def test_backward_operators_belong_to_their_forward_family() -> None:
    family = {e.op: e.family for e in REGISTRY}
    assert family["aten.convolution_backward"] == family["aten.convolution"] == "conv"
    assert family["aten.avg_pool2d_backward"] == family["aten.avg_pool2d"] == "pool"
    assert family["aten.upsample_bilinear2d_backward"] == "pool"
    assert family["aten._flash_attention_backward"] == family["aten._flash_attention_forward"] == "attention"
    assert family["aten.mkldnn_rnn_layer_backward"] == family["aten.mkldnn_rnn_layer"] == "rnn"


# ---- convolution ------------------------------------------------------------------------------------

# grad_output 1x4x5x5 (100), input 1x2x7x7 (98), weight 4x2x3x3 (72): the forward's m = 100 x 2*3*3 = 1,800 MACs
CONV_ARGS: dict[str, Any] = {"grad_output": tm(1, 4, 5, 5), "input": tm(1, 2, 7, 7), "weight": tm(4, 2, 3, 3),
                             "bias_sizes": [4], "stride": [1, 1], "padding": [0, 0], "dilation": [1, 1],
                             "transposed": False, "output_padding": [0, 0], "groups": 1}
CONV_OUTS = (tm(1, 2, 7, 7), tm(4, 2, 3, 3), tm(4))


@pytest.mark.parametrize(("mask", "convention", "macs", "flops"), [
    # fma: grad input 1,800 MACs + grad weight 1,800 MACs -> 2 x 3,600 = 7,200; + bias grad 100 adds = 7,300
    ([True, True, True], FMA, 3_600, 7_300),
    # exact: grad input = 98 dot products over 1,800 MACs: 2*1,800 - 98 = 3,502;
    #        grad weight = 72 dot products: 2*1,800 - 72 = 3,528; bias 100 -> 7,130
    ([True, True, True], EXACT, 3_600, 7_130),
    # grad input only: fma 3,600; exact 3,502
    ([True, False, False], FMA, 1_800, 3_600),
    ([True, False, False], EXACT, 1_800, 3_502),
    # grad weight and bias (a first layer): fma 3,600 + 100; exact 3,528 + 100
    ([False, True, True], FMA, 1_800, 3_700),
    ([False, True, True], EXACT, 1_800, 3_628),
])
@pytest.mark.parametrize("op", ["aten.convolution_backward", "aten.convolution_backward_overrideable"])
def test_convolution_backward(op: str, mask: list[bool], convention: Convention, macs: int, flops: int) -> None:
    call = call_of(op, {**CONV_ARGS, "output_mask": mask}, CONV_OUTS, convention)
    assert (cost_of(call).macs, cost_of(call).flops) == (macs, flops)


@pytest.mark.parametrize(("convention", "flops"), [
    # Conv2d(3 -> 8, 3x3, bias) on 1x3x10x10, input without grad: output 1x8x8x8 = 512, m = 512 * 27 = 13,824.
    # fma: grad weight 2 * 13,824 = 27,648 + bias grad 512 = 28,160
    (FMA, 28_160),
    # exact: grad weight = 8*3*3*3 = 216 dot products: 27,648 - 216 = 27,432; + 512 = 27,944
    (EXACT, 27_944),
])
def test_convolution_backward_in_a_model(convention: Convention, flops: int) -> None:
    r = rooflens.analyze(nn.Conv2d(3, 8, 3), input_size=(1, 3, 10, 10), backward=True, convention=convention)
    assert [(o, c.macs, c.flops) for o, c in backward_ops(r)] == [("aten.convolution_backward", 13_824, flops)]


# ---- pooling and resampling: scatters, the same under both conventions -------------------------------

@pytest.mark.parametrize(("op", "given", "flops"), [
    # max pooling: each output gradient added to its arg-max: 1 per output-gradient element, (1, 2, 4, 4) = 32
    ("aten.max_pool2d_with_indices_backward", {"grad_output": tm(1, 2, 4, 4), "self": tm(1, 2, 8, 8)}, 32),
    ("aten.max_pool3d_with_indices_backward", {"grad_output": tm(1, 1, 2, 2, 2), "self": tm(1, 1, 4, 4, 4)}, 8),
    ("aten.adaptive_max_pool2d_backward", {"grad_output": tm(1, 2, 3, 3), "self": tm(1, 2, 8, 8)}, 18),
    ("aten.adaptive_max_pool3d_backward", {"grad_output": tm(1, 1, 3, 3, 3), "self": tm(1, 1, 4, 4, 4)}, 27),
    # nearest: 1 add per output-gradient element, (1, 2, 8) = 16 / (1, 2, 8, 8) = 128 / (1, 1, 4, 4, 4) = 64
    ("aten.upsample_nearest1d_backward", {"grad_output": tm(1, 2, 8)}, 16),
    ("aten.upsample_nearest2d_backward", {"grad_output": tm(1, 2, 8, 8)}, 128),
    ("aten.upsample_nearest3d_backward", {"grad_output": tm(1, 1, 4, 4, 4)}, 64),
    ("aten._upsample_nearest_exact1d_backward", {"grad_output": tm(1, 2, 8)}, 16),
    ("aten._upsample_nearest_exact2d_backward", {"grad_output": tm(1, 2, 8, 8)}, 128),
    ("aten._upsample_nearest_exact3d_backward", {"grad_output": tm(1, 1, 4, 4, 4)}, 64),
    # weighted taps, a multiply and an add each: linear 2 taps 4 x 16 = 64; bilinear 4 taps 8 x 128 = 1,024;
    # trilinear 8 taps 16 x 64 = 1,024; bicubic 16 taps 32 x 128 = 4,096
    ("aten.upsample_linear1d_backward", {"grad_output": tm(1, 2, 8)}, 64),
    ("aten.upsample_bilinear2d_backward", {"grad_output": tm(1, 2, 8, 8)}, 1_024),
    ("aten._upsample_bilinear2d_aa_backward", {"grad_output": tm(1, 2, 8, 8)}, 1_024),
    ("aten.upsample_trilinear3d_backward", {"grad_output": tm(1, 1, 4, 4, 4)}, 1_024),
    ("aten.upsample_bicubic2d_backward", {"grad_output": tm(1, 2, 8, 8)}, 4_096),
    ("aten._upsample_bicubic2d_aa_backward", {"grad_output": tm(1, 2, 8, 8)}, 4_096),
    # average pooling: per output gradient 1 divide by the window size, then K adds into the window:
    # 2x2: 32 x (1 + 4) = 160; 3-d kernel 2 (2x2x2): (1, 1, 2, 2, 2) = 8 x (1 + 8) = 72
    ("aten.avg_pool2d_backward", {"grad_output": tm(1, 2, 4, 4), "self": tm(1, 2, 8, 8), "kernel_size": [2, 2]}, 160),
    ("aten.avg_pool3d_backward", {"grad_output": tm(1, 1, 2, 2, 2), "self": tm(1, 1, 4, 4, 4), "kernel_size": [2]},
     72),
    # adaptive average: 1 divide per output gradient + 1 add per element of its bin (bin i of In -> Out spans
    # floor(i*In/Out) .. ceil((i+1)*In/Out)): 8 -> 3 bins [0,3) [2,6) [5,8) = 3 + 4 + 3 = 10; 8 -> 5 bins
    # [0,2) [1,4) [3,5) [4,7) [6,8) = 12; N*C = 8: adds 8 * 10 * 12 = 960 + divides (2, 4, 3, 5) = 120 -> 1,080;
    # 3-d 4 -> 2: bins of 2, 8 outputs x (8 adds + 1 divide) = 72
    ("aten._adaptive_avg_pool2d_backward", {"grad_output": tm(2, 4, 3, 5), "self": tm(2, 4, 8, 8)}, 1_080),
    ("aten._adaptive_avg_pool3d_backward", {"grad_output": tm(1, 1, 2, 2, 2), "self": tm(1, 1, 4, 4, 4)}, 72),
])
@pytest.mark.parametrize("convention", [FMA, EXACT])
def test_pool_and_resample_backward(op: str, given: dict[str, Any], flops: int, convention: Convention) -> None:
    given = dict(given)
    if op.startswith(("aten.max_pool", "aten.adaptive_max")):
        given["indices"] = tm(*given["grad_output"].shape, dtype="int64", itemsize=8)
    call = call_of(op, given, (tm(1),), convention)
    assert (cost_of(call).macs, cost_of(call).flops) == (0, flops)


@pytest.mark.parametrize(("fn", "op", "flops"), [
    # on (1, 2, 8, 8) that requires grad:
    # max pool 2: grad_output (1, 2, 4, 4) = 32 scattered adds
    (lambda t: F.max_pool2d(t, 2), "aten.max_pool2d_with_indices_backward", 32),
    # avg pool 2: 32 x (1 divide + 4 adds) = 160
    (lambda t: F.avg_pool2d(t, 2), "aten.avg_pool2d_backward", 160),
    # adaptive avg 8x8 to 3x3: 18 divides + bins 8 -> 3 of 3 + 4 + 3 = 10 per dim: 2 x 10 x 10 = 200 adds -> 218
    (lambda t: F.adaptive_avg_pool2d(t, 3), "aten._adaptive_avg_pool2d_backward", 218),
    # bilinear x2: grad_output (1, 2, 16, 16) = 512 x 8 = 4,096
    (lambda t: F.interpolate(t, scale_factor=2, mode="bilinear"), "aten.upsample_bilinear2d_backward", 4_096),
])
def test_pool_backward_in_a_model(fn: Any, op: str, flops: int) -> None:
    x = torch.randn(1, 2, 8, 8, requires_grad=True)
    for convention in (FMA, EXACT):
        r = rooflens.analyze(Fn(fn), (x,), backward=True, convention=convention)
        assert [(o, c.flops) for o, c in backward_ops(r)] == [(op, flops)]


# ---- attention --------------------------------------------------------------------------------------
# q, k, v (B=2, H=4, L=S=16, E=Ev=8): S = 2*4*16*16 = 2,048 scores; |q| = |k| = |v| = 2*4*16*8 = 1,024.
# The five products and their MACs: recompute QK^T 2,048 x 8; dV = P^T dO 1,024 outputs x 16 terms;
# dP = dO V^T 2,048 x 8; dQ = dS K 1,024 x 16; dK = dS^T Q 1,024 x 16:
#   MACs = 2*16,384 + 3*16,384 = 81,920 (= S (3E + 2Ev) = 2,048 * 40)
# fma:   2 * 81,920 = 163,840; + 8 per score (scale 1, softmax 5, dS 2) = 16,384 -> 180,224; masked + 2,048
# exact: QK^T 2,048 * (2*8 - 1) = 30,720; dP 30,720; dV, dQ, dK 1,024 * (2*16 - 1) = 31,744 each
#        -> 61,440 + 95,232 = 156,672; + 16,384 -> 173,056; masked + 2,048 -> 175,104
ATT_MACS = 81_920
ATT = {FMA: (180_224, 182_272), EXACT: (173_056, 175_104)}  # (unmasked, masked)
BHLE = (2, 4, 16, 8)
BLHE = (2, 16, 4, 8)


@pytest.mark.parametrize(("op", "layout", "mask"), [
    ("aten._scaled_dot_product_flash_attention_for_cpu_backward", BHLE, None),
    ("aten._scaled_dot_product_flash_attention_for_cpu_backward", BHLE, "attn_mask"),
    ("aten._scaled_dot_product_flash_attention_backward", BHLE, None),
    ("aten._scaled_dot_product_efficient_attention_backward", BHLE, "attn_bias"),
    ("aten._scaled_dot_product_fused_attention_overrideable_backward", BHLE, "attn_bias"),
    ("aten._scaled_dot_product_cudnn_attention_backward", BHLE, None),
    ("aten._scaled_dot_product_cudnn_attention_backward", BHLE, "attn_bias"),
    ("aten._flash_attention_backward", BLHE, None),
    ("aten._efficient_attention_backward", BLHE, None),
    ("aten._efficient_attention_backward", BLHE, "bias"),
])
@pytest.mark.parametrize("convention", [FMA, EXACT])
def test_attention_backward(op: str, layout: tuple[int, ...], mask: str | None, convention: Convention) -> None:
    given: dict[str, Any] = {"query": tm(*layout), "key": tm(*layout), "value": tm(*layout)}
    if mask is not None:
        given[mask] = tm(16, 16)
    if op == "aten._efficient_attention_backward":
        given.update(max_seqlen_q=16, max_seqlen_k=16)
    if op in ("aten._flash_attention_backward", "aten._scaled_dot_product_cudnn_attention_backward"):
        given.update(max_q=16, max_k=16)
    call = make_call(op, given, (tm(*layout), tm(*layout), tm(*layout)), convention=convention)
    unmasked, masked = ATT[convention]
    assert (cost_of(call).macs, cost_of(call).flops) == (ATT_MACS, masked if mask else unmasked)


@pytest.mark.parametrize(("convention", "flops"), [
    # grouped-query attention: q (1, 4, 16, 8), k, v (1, 2, 16, 8): S = 4*16*16 = 1,024 scores, MACs 1,024 * 40
    # = 40,960. fma: 81,920 + 8 * 1,024 = 90,112.
    (FMA, 90_112),
    # exact: QK^T and dP 1,024 * 15 = 15,360 each; dQ 512 outputs x 16 terms = 512 * 31 = 15,872;
    # dK and dV 256 outputs each (1*2*16*8), summed over the 2 query heads of the group: 32 terms, 256 * 63
    # = 16,128 each -> 30,720 + 15,872 + 32,256 = 78,848; + 8,192 -> 87,040
    (EXACT, 87_040),
])
def test_attention_backward_grouped_query(convention: Convention, flops: int) -> None:
    call = make_call("aten._scaled_dot_product_flash_attention_for_cpu_backward",
                     {"query": tm(1, 4, 16, 8), "key": tm(1, 2, 16, 8), "value": tm(1, 2, 16, 8)},
                     (tm(1, 4, 16, 8), tm(1, 2, 16, 8), tm(1, 2, 16, 8)), convention=convention)
    assert (cost_of(call).macs, cost_of(call).flops) == (40_960, flops)


@pytest.mark.parametrize("convention", [FMA, EXACT])
def test_attention_backward_in_a_model(convention: Convention) -> None:
    q, k, v = (torch.randn(*BHLE, requires_grad=True) for _ in range(3))
    r = rooflens.analyze(Fn(F.scaled_dot_product_attention), (q, k, v), backward=True, convention=convention)
    ((op, cost),) = backward_ops(r)
    assert op == "aten._scaled_dot_product_flash_attention_for_cpu_backward"
    assert (cost.macs, cost.flops) == (ATT_MACS, ATT[convention][0])


# ---- recurrent layers -------------------------------------------------------------------------------
# One LSTM layer, I = 3, H = 4, T = 5, B = 2 (rows = 10), biases: gate outputs 10 * 4*4 = 160.
# forward MACs: ih 10*3*16 = 480 + hh 10*4*16 = 640 = 1,120.
# fma FLOPs: (2*480 + 160) + (2*640 + 160) + 22 per hidden unit * 10*4 = 1,120 + 1,440 + 880 = 3,440
# exact FLOPs: (2*480 - 160 + 160) + (2*640 - 160 + 160) + 880 = 960 + 1,280 + 880 = 3,120
# backward = 2 x the forward: MACs 2,240; fma 6,880; exact 6,240.
LSTM_BACKWARD = {FMA: 6_880, EXACT: 6_240}


@pytest.mark.parametrize("convention", [FMA, EXACT])
def test_mkldnn_rnn_layer_backward(convention: Convention) -> None:
    # weights numbered from 1 in the backward: weight1 = w_ih (16, 3), weight2 = w_hh (16, 4)
    call = make_call("aten.mkldnn_rnn_layer_backward",
                     {"input": tm(5, 2, 3), "weight1": tm(16, 3), "weight2": tm(16, 4), "weight3": tm(16),
                      "weight4": tm(16), "mode": 2, "hidden_size": 4, "num_layers": 1, "has_biases": True},
                     (tm(5, 2, 3),), convention=convention)
    assert (cost_of(call).macs, cost_of(call).flops) == (2_240, LSTM_BACKWARD[convention])


@pytest.mark.parametrize("convention", [FMA, EXACT])
def test_lstm_backward_in_a_model(convention: Convention) -> None:
    torch.manual_seed(0)
    x = torch.randn(5, 2, 3, requires_grad=True)
    r = rooflens.analyze(nn.LSTM(3, 4), x, backward=True, convention=convention)
    assert [(o, c.macs, c.flops) for o, c in backward_ops(r)] == [
        ("aten.mkldnn_rnn_layer_backward", 2_240, LSTM_BACKWARD[convention])
    ]


@pytest.mark.parametrize(("mask", "factor"), [
    # grad input (and hidden states) and grad weights: 2 x the forward
    ([True, True, True, True], 2),
    # weights only (a first layer fed by data): 1 x; inputs only (frozen weights): 1 x
    ([False, False, False, True], 1),
    ([True, True, True, False], 1),
])
@pytest.mark.parametrize("op", ["aten._cudnn_rnn_backward", "aten.miopen_rnn_backward"])
@pytest.mark.parametrize("convention", [FMA, EXACT])
def test_cudnn_rnn_backward(op: str, mask: list[bool], factor: int, convention: Convention) -> None:
    # the same LSTM layer as above: weight list w_ih, w_hh, b_ih, b_hh (weight_stride0 = 4)
    weights = [tm(16, 3), tm(16, 4), tm(16), tm(16)]
    given: dict[str, Any] = {"input": tm(5, 2, 3), "weight": weights, "weight_stride0": 4, "mode": 2,
                             "hidden_size": 4, "num_layers": 1, "bidirectional": False, "output_mask": mask}
    call = call_of(op, given, (tm(5, 2, 3),), convention)
    forward = {FMA: 3_440, EXACT: 3_120}[convention]
    assert (cost_of(call).macs, cost_of(call).flops) == (factor * 1_120, factor * forward)
