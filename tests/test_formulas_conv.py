"""Convolutions by hand: 1-d/2-d/3-d, groups, depthwise, dilation, stride, padding, transposed."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from test_formulas_matmul import cost_of, make_call
from torch import nn

import rooflens
from rooflens.types import Convention

from _helpers import Fn, tm


def conv_record(module: nn.Module, shape: tuple[int, ...], **kw):
    r = rooflens.analyze(module, input_size=shape, **kw)
    (rec,) = [rec for rec in r.records if rec.op == "aten.convolution"]
    return rec


def test_conv2d_basic_with_bias():
    # 3 -> 10 channels, 5x5, 224x224, no padding: out 220x220
    rec = conv_record(nn.Conv2d(3, 10, 5), (1, 3, 224, 224))
    macs = 10 * 220 * 220 * 3 * 25  # 36,300,000
    assert rec.cost.macs == macs == 36_300_000
    assert rec.cost.flops == 2 * macs + 10 * 220 * 220  # bias: one add per output -> 73,084,000
    # bytes: input 3*224*224*4 = 602,112 + weight 10*3*25*4 = 3,000 + bias 40; output 10*220*220*4
    assert rec.cost.bytes_read == 605_152
    assert rec.cost.bytes_written == 1_936_000


def test_conv2d_exact_convention():
    # exact: (2*Cin*K^2 - 1) per output without bias, 2*Cin*K^2 with bias
    outputs = 10 * 220 * 220  # 484,000
    no_bias = conv_record(nn.Conv2d(3, 10, 5, bias=False), (1, 3, 224, 224), convention="exact")
    assert no_bias.cost.flops == (2 * 3 * 25 - 1) * outputs == 72_116_000
    with_bias = conv_record(nn.Conv2d(3, 10, 5), (1, 3, 224, 224), convention="exact")
    assert with_bias.cost.flops == 2 * 3 * 25 * outputs == 72_600_000
    fma = conv_record(nn.Conv2d(3, 10, 5, bias=False), (1, 3, 224, 224))
    assert fma.cost.flops == 2 * 3 * 25 * outputs


@pytest.mark.parametrize(
    ("module", "shape", "macs"),
    [
        # stride 2, padding 1, 3x3, 16 -> 32 on 2x16x32x32: out 16x16, batch 2
        (nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False), (2, 16, 32, 32), 2 * 32 * 16 * 16 * 16 * 9),
        # groups 4: 16 -> 32, each output sees 16/4 = 4 input channels; out 30x30
        (nn.Conv2d(16, 32, 3, groups=4, bias=False), (1, 16, 32, 32), 32 * 30 * 30 * 4 * 9),
        # depthwise 3x3, padding 1: each output sees 1 channel -> 32*32*32*9 = 294,912
        (nn.Conv2d(32, 32, 3, padding=1, groups=32, bias=False), (1, 32, 32, 32), 294_912),
        # dilation 2, 3x3 (effective 5x5), no padding: out 28x28
        (nn.Conv2d(8, 8, 3, dilation=2, bias=False), (1, 8, 32, 32), 8 * 28 * 28 * 8 * 9),
        # 1-d: 4 -> 6, k 5, length 100, padding 2: out 100 -> 6*100*4*5 = 12,000
        (nn.Conv1d(4, 6, 5, padding=2, bias=False), (1, 4, 100), 12_000),
        # 3-d: 3 -> 8, k 3, 8x16x16, no padding: out 6x14x14 -> 8*6*14*14*3*27 = 762,048
        (nn.Conv3d(3, 8, 3, bias=False), (1, 3, 8, 16, 16), 762_048),
        # asymmetric kernel 1x7, padding (0, 3): out 20x20 -> 12*20*20*6*7
        (nn.Conv2d(6, 12, (1, 7), padding=(0, 3), bias=False), (1, 6, 20, 20), 12 * 20 * 20 * 6 * 7),
    ],
)
def test_conv_macs(module: nn.Module, shape: tuple[int, ...], macs: int) -> None:
    rec = conv_record(module, shape)
    assert rec.cost.macs == macs
    assert rec.cost.flops == 2 * macs


def test_conv_transposed_counts_inputs_not_zero_stuffed_outputs():
    # ConvTranspose2d(16, 8, 4, stride 2, padding 1) on 8x8 -> 16x16.
    # Each input element is scattered over Cout x K^2 outputs: 16*8*8 inputs x 8 x 16 = 131,072 MACs.
    # (Counting it as a conv over the 16x16 output: 8*16*16*16*16 = 524,288, stride^2 = 4 times too many.)
    rec = conv_record(nn.ConvTranspose2d(16, 8, 4, stride=2, padding=1, bias=False), (1, 16, 8, 8))
    assert rec.outputs[0].shape == (1, 8, 16, 16)
    assert rec.cost.macs == 16 * 8 * 8 * 8 * 16 == 131_072


def test_conv_transposed_output_padding_groups_and_bias():
    # ConvTranspose2d(8, 12, 3, stride 2, output_padding 1, groups 2): 5x5 -> (5-1)*2 + 3 + 1 = 12x12
    # MACs = Cin*Hin*Win x (Cout/groups) x K^2 = 8*5*5 x 6 x 9 = 10,800; bias adds 12*12*12 = 1,728
    rec = conv_record(nn.ConvTranspose2d(8, 12, 3, stride=2, output_padding=1, groups=2), (1, 8, 5, 5))
    assert rec.outputs[0].shape == (1, 12, 12, 12)
    assert rec.cost.macs == 10_800
    assert rec.cost.flops == 2 * 10_800 + 1_728


def test_conv_transposed_1d_and_3d():
    # 1-d: 4 -> 2, k 3, stride 2 on length 10: MACs = 4*10 x 2 x 3 = 240
    assert conv_record(nn.ConvTranspose1d(4, 2, 3, stride=2, bias=False), (1, 4, 10)).cost.macs == 240
    # 3-d: 2 -> 4, k 2, stride 2 on 3x3x3: MACs = 2*27 x 4 x 8 = 1,728
    assert conv_record(nn.ConvTranspose3d(2, 4, 2, stride=2, bias=False), (1, 2, 3, 3, 3)).cost.macs == 1_728


def test_fp16_halves_bytes():
    rec32 = conv_record(nn.Conv2d(3, 10, 5), (1, 3, 224, 224))
    rec16 = conv_record(nn.Conv2d(3, 10, 5), (1, 3, 224, 224), dtype="float16")
    assert rec16.cost.bytes_read * 2 == rec32.cost.bytes_read
    assert rec16.cost.bytes_written * 2 == rec32.cost.bytes_written


def test_complex_conv2d_runs_as_three_real_convolutions():
    # torch splits a complex convolution into 3 real ones before dispatch (Gauss's trick: ac, bd and
    # (a + b)(c + d)): input (1, 2, 5, 5), weight (3, 2, 3, 3) -> output (1, 3, 3, 3) = 27 elements x 2*3*3
    # = 486 MACs each; 3 x 486 = 1,458 real MACs for the 486 complex MACs
    x, w = torch.randn(1, 2, 5, 5, dtype=torch.complex64), torch.randn(3, 2, 3, 3, dtype=torch.complex64)
    r = rooflens.analyze(Fn(F.conv2d), (x, w))
    convs = [rec.cost.macs for rec in r.records if rec.op == "aten.convolution"]
    assert convs == [486, 486, 486]
    assert r.total().macs == 1_458


def test_complex_convolution_formula():
    # aten.convolution reached with complex tensors (other front-ends): 4 real MACs per complex MAC:
    # 486 complex -> 1,944 real MACs; fma 3,888; exact 27 complex outputs = 54 real ones: 3,888 - 54 = 3,834
    c64 = {"dtype": "complex64", "itemsize": 8}
    given = {"input": tm(1, 2, 5, 5, **c64), "weight": tm(3, 2, 3, 3, **c64), "bias": None, "stride": [1, 1],
             "padding": [0, 0], "dilation": [1, 1], "transposed": False, "output_padding": [0, 0], "groups": 1}
    for convention, flops in ((Convention.FMA, 3_888), (Convention.EXACT, 3_834)):
        call = make_call("aten.convolution", given, (tm(1, 3, 3, 3, **c64),), convention=convention)
        assert (cost_of(call).macs, cost_of(call).flops) == (1_944, flops)
