"""Backward pass: FLOPs and bytes counted from the real backward operators, per module, by hand."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import rooflens
from rooflens.formulas.backward import convolution_backward
from rooflens.formulas.registry import OpCall

from _helpers import tm


def _backward_of(report: rooflens.Report, path: str) -> rooflens.Cost:
    return report.by_module()[path].cumulative_backward


def test_linear_backward_is_twice_the_forward():
    # Linear(256 -> 128), no bias, batch 32, input that requires grad.
    # forward: MACs 32*256*128 = 1,048,576; FLOPs 2 x MACs = 2,097,152
    # backward: grad input (32x128 @ 128x256) 1,048,576 MACs + grad weight (128x32 @ 32x256) 1,048,576 MACs
    #           = 2,097,152 MACs, 4,194,304 FLOPs = 2 x the forward's FLOPs
    x = torch.randn(32, 256, requires_grad=True)
    r = rooflens.analyze(nn.Linear(256, 128, bias=False), x, backward=True)
    assert r.total("forward").macs == 1_048_576
    assert r.total("forward").flops == 2_097_152
    assert r.total("backward").macs == 2_097_152
    assert r.total("backward").flops == 4_194_304 == 2 * r.total("forward").flops
    assert r.total().flops == 2_097_152 + 4_194_304
    assert not x.grad  # the user's input got no gradient


def test_conv2d_backward_is_twice_the_forward():
    # Conv2d(16 -> 32, 3x3, padding 1), no bias, on 2x16x28x28 that requires grad: output 2x32x28x28.
    # forward MACs = 2*32*28*28 * 16*3*3 = 7,225,344; FLOPs 14,450,688
    # backward: grad input (a transposed conv) 7,225,344 MACs + grad weight 7,225,344 MACs = 28,901,376 FLOPs
    x = torch.randn(2, 16, 28, 28, requires_grad=True)
    r = rooflens.analyze(nn.Conv2d(16, 32, 3, padding=1, bias=False), x, backward=True)
    assert r.total("forward").macs == 7_225_344
    assert r.total("backward").macs == 2 * 7_225_344
    assert r.total("backward").flops == 28_901_376 == 2 * r.total("forward").flops
    ops = [rec.op for rec in r.records if rec.phase == "backward"]
    assert ops == ["aten.convolution_backward"]


def test_first_layer_computes_no_input_gradient():
    # An input that does not require grad: only the weight gradient (1 x the forward MACs) + bias grad sum.
    # Conv2d(3 -> 8, 3x3) on 1x3x10x10: output 1x8x8x8 = 512 elements; MACs 512 * 27 = 13,824
    r = rooflens.analyze(nn.Conv2d(3, 8, 3), input_size=(1, 3, 10, 10), backward=True)
    back = r.total("backward")
    assert back.macs == 13_824
    assert back.flops == 2 * 13_824 + 512  # + the bias gradient: a sum over the 512 output-gradient elements


def test_convolution_backward_formula_by_hand():
    # grad_output 1x4x5x5, input 1x2x7x7, weight 4x2x3x3: m = 100 * 18 = 1,800 MACs each
    call = OpCall(
        "aten.convolution_backward",
        {"grad_output": tm(1, 4, 5, 5), "input": tm(1, 2, 7, 7), "weight": tm(4, 2, 3, 3), "transposed": False,
         "output_mask": [True, True, True]},
        (tm(1, 4, 5, 5), tm(1, 2, 7, 7), tm(4, 2, 3, 3)),
        (tm(1, 2, 7, 7), tm(4, 2, 3, 3), tm(4)),
    )
    cost = convolution_backward(call)
    assert cost.macs == 3_600
    assert cost.flops == 2 * 3_600 + 100  # + bias gradient over the 100 output-gradient elements


def test_backward_is_attributed_to_modules():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    r = rooflens.analyze(m, input_size=(4, 64), backward=True)
    # layer 2 (32 -> 10, input requires grad): grad input 4*10*32 = 1,280 MACs + grad weight 1,280 MACs,
    #   FLOPs 2 * 2,560 + bias gradient 4*10 = 40 -> 5,160
    assert _backward_of(r, "2").macs == 2_560
    assert _backward_of(r, "2").flops == 5_160
    # layer 0 (64 -> 32, input does not require grad): grad weight 4*32*64 = 8,192 MACs; bias sum 128
    assert _backward_of(r, "0").macs == 8_192
    assert _backward_of(r, "0").flops == 2 * 8_192 + 128
    # ReLU backward: threshold_backward decomposed into a compare and a select, 1 FLOP each per element
    assert _backward_of(r, "1").flops == 2 * 4 * 32
    # the modules' backward adds up to the model's
    assert sum(_backward_of(r, p).flops for p in ("0", "1", "2")) == r.total("backward").flops
    assert r.by_module()["0"].cumulative.flops == r.by_module()["0"].own.flops


def test_backward_leaves_the_model_as_it_was():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))
    before = {k: v.clone() for k, v in m.state_dict().items()}
    x = torch.randn(2, 3, 8, 8)
    out_before = m.eval()(x)
    m.train()
    r = rooflens.analyze(m, x, backward=True)
    assert r.backward and r.total("backward").flops > 0
    assert all(p.grad is None for p in m.parameters())
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())
    assert m.training
    assert not any(mod._forward_hooks or mod._forward_pre_hooks or mod._backward_hooks for mod in m.modules())
    assert torch.equal(m.eval()(x), out_before)


def test_backward_without_trainable_parameters_is_a_clear_error():
    m = nn.Linear(4, 4).requires_grad_(False)
    with pytest.raises(rooflens.ModelError, match="no output of the model requires grad"):
        rooflens.analyze(m, input_size=(1, 4), backward=True)


def test_phase_argument_is_checked():
    r = rooflens.analyze(nn.Linear(4, 4), input_size=(1, 4))
    with pytest.raises(rooflens.InputError, match="phase must be"):
        r.total("sideways")
    assert r.total("backward") == rooflens.Cost()
    assert not r.backward
