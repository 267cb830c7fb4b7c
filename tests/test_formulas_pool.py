"""Pooling and resampling formulas. Every expected number is derived by hand in the comment beside it.

Rules: max pool K = prod(kernel) per output element, average pool K + 1 (the window's adds + 1 divide);
adaptive pools the exact sum of the bin sizes (bin i of a dim spans floor(i*In/Out) .. ceil((i+1)*In/Out)),
+ 1 divide per output element for the average ones, at every output size (1x1 reaches aten.mean: the same
count); interpolation per output element: nearest 0, linear 3, bilinear 7, trilinear 15, bicubic 31.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import rooflens
from rooflens.formulas.pool import adaptive_pool_flops, bin_sum
from rooflens.types import Cost

from _helpers import Fn


def only(report: rooflens.Report) -> tuple[str, Cost]:
    """The single operator a module ran, and its cost."""
    assert report.unsupported_ops() == {}
    assert report.total().macs == 0
    assert len(report.records) == 1, [r.op for r in report.records]
    rec = report.records[0]
    assert rec.supported and not rec.via
    return rec.op, rec.cost


# ---- max / average pooling --------------------------------------------------------------------------


def test_max_pool2d_flops_and_bytes() -> None:
    report = rooflens.analyze(nn.MaxPool2d(3, 2, 1), input_size=(1, 2, 8, 8))
    op, cost = only(report)
    assert op == "aten.max_pool2d_with_indices"
    # output (1, 2, 4, 4) = 32 elements x K = 3 x 3 = 9 -> 288
    # read 2 x 64 x 4 B = 512; written: values 32 x 4 B = 128 + int64 indices 32 x 8 B = 256 -> 384
    assert cost == Cost(0, 288, 512, 384)


@pytest.mark.parametrize(("module", "shape", "op", "flops"), [
    (nn.AvgPool2d(2), (1, 2, 8, 8), "aten.avg_pool2d", 32 * (4 + 1)),  # out (1, 2, 4, 4) = 32 x (2x2 adds + 1 div)
    (nn.MaxPool2d(2), (1, 2, 8, 8), "aten.max_pool2d_with_indices", 32 * 4),
    (nn.MaxPool2d((2, 4)), (1, 2, 8, 8), "aten.max_pool2d_with_indices", 16 * 8),  # out (1, 2, 4, 2) x 2x4
    (nn.MaxPool3d(2), (1, 2, 4, 4, 4), "aten.max_pool3d_with_indices", 16 * 8),  # out (1, 2, 2, 2, 2) x 2x2x2
    (nn.AvgPool3d(2), (1, 2, 4, 4, 4), "aten.avg_pool3d", 16 * (8 + 1)),  # 16 x (2x2x2 adds + 1 divide) = 144
    # 1-d pools run as 2-d pools on (N, C, 1, L) with kernel (1, 2): out (2, 4, 1, 4) = 32 x 2
    (nn.MaxPool1d(2), (2, 4, 8), "aten.max_pool2d_with_indices", 32 * 2),
    (nn.AvgPool1d(2), (2, 4, 8), "aten.avg_pool2d", 32 * (2 + 1)),  # 32 x (2 adds + 1 divide) = 96
])
def test_window_pools(module: nn.Module, shape: tuple[int, ...], op: str, flops: int) -> None:
    got, cost = only(rooflens.analyze(module, input_size=shape))
    assert got == op
    assert cost.flops == flops


# ---- adaptive pooling -------------------------------------------------------------------------------


def test_bin_sum_by_hand() -> None:
    # In 8 -> Out 3: bins [0, 3) [2, 6) [5, 8): 3 + 4 + 3 = 10 (overlapping bins)
    assert bin_sum(8, 3) == 10
    # In 8 -> Out 5: [0, 2) [1, 4) [3, 5) [4, 7) [6, 8): 2 + 3 + 2 + 3 + 2 = 12
    assert bin_sum(8, 5) == 12
    # In 8 -> Out 4: four bins of 2: 8 (divisible: the bins tile the input)
    assert bin_sum(8, 4) == 8
    # In 7 -> Out 1: one bin of 7
    assert bin_sum(7, 1) == 7
    # (2, 4, 8, 8) -> (2, 4, 3, 5): N*C 8 x 10 x 12 = 960
    assert adaptive_pool_flops((2, 4, 8, 8), (2, 4, 3, 5), 2) == 960


@pytest.mark.parametrize(("module", "shape", "op", "flops"), [
    # H 8 -> 3: 10, W 8 -> 5: 12; N*C = 8 -> window adds 8 x 10 x 12 = 960, + 1 divide per output:
    # (2, 4, 3, 5) = 120 -> 1,080
    (nn.AdaptiveAvgPool2d((3, 5)), (2, 4, 8, 8), "aten._adaptive_avg_pool2d", 960 + 120),
    # 8 -> 3 along both: 8 x 10 x 10 = 800
    (nn.AdaptiveMaxPool2d(3), (2, 4, 8, 8), "aten.adaptive_max_pool2d", 800),
    # 1-d runs as 2-d on (2, 4, 1, 8): 8 x (1 -> 1: 1) x (8 -> 3: 10) = 80 adds; + 8 x 3 = 24 divides -> 104
    (nn.AdaptiveAvgPool1d(3), (2, 4, 8), "aten._adaptive_avg_pool2d", 80 + 24),
    (nn.AdaptiveMaxPool1d(3), (2, 4, 8), "aten.adaptive_max_pool2d", 80),
    # 4 -> 3: bins [0, 2) [1, 3) [2, 4) = 6 per dim; 8 x 6^3 = 1728 adds; + (2, 4, 3, 3, 3) = 216 divides -> 1944
    (nn.AdaptiveAvgPool3d(3), (2, 4, 4, 4, 4), "aten._adaptive_avg_pool3d", 1728 + 216),
    (nn.AdaptiveMaxPool3d(3), (2, 4, 4, 4, 4), "aten.adaptive_max_pool3d", 1728),
])
def test_adaptive_pools(module: nn.Module, shape: tuple[int, ...], op: str, flops: int) -> None:
    got, cost = only(rooflens.analyze(module, input_size=shape))
    assert got == op
    assert cost.flops == flops


def test_global_average_pool_is_a_mean() -> None:
    got, cost = only(rooflens.analyze(nn.AdaptiveAvgPool2d(1), input_size=(2, 4, 8, 8)))
    # torch computes a 1x1 adaptive average as mean over (H, W): 512 adds + 8 divides = 520
    assert got == "aten.mean"
    # read 512 x 4 B = 2048; written (2, 4, 1, 1) 8 x 4 B = 32
    assert cost == Cost(0, 520, 2048, 32)


@pytest.mark.parametrize(("module", "shape", "op", "flops"), [
    # the same rule at every output size: window adds + 1 divide per output element.
    # 2x2 out of 8x8, N*C = 8: each output a 4x4 window, 16 adds + 1 divide; 32 outputs -> 32 x 17 = 544
    (nn.AdaptiveAvgPool2d(2), (2, 4, 8, 8), "aten._adaptive_avg_pool2d", 32 * 17),
    (nn.AvgPool2d(4), (2, 4, 8, 8), "aten.avg_pool2d", 32 * 17),  # the same windows as a windowed pool
    # 1x1: torch runs a mean over (H, W): 8 outputs x (64 adds + 1 divide) = 520
    (nn.AdaptiveAvgPool2d(1), (2, 4, 8, 8), "aten.mean", 8 * 65),
    # 1-d and 3-d at 1: means too. (2, 4, 8) -> 8 outputs x (8 + 1) = 72; (2, 4, 4, 4, 4) -> 8 x (64 + 1) = 520
    (nn.AdaptiveAvgPool1d(1), (2, 4, 8), "aten.mean", 8 * 9),
    (nn.AdaptiveAvgPool3d(1), (2, 4, 4, 4, 4), "aten.mean", 8 * 65),
    # (1, 2, 2) out of 4x4x4: windows 4x2x2 = 16, 32 outputs -> 32 x 17 = 544
    (nn.AdaptiveAvgPool3d((1, 2, 2)), (2, 4, 4, 4, 4), "aten._adaptive_avg_pool3d", 32 * 17),
])
def test_adaptive_average_is_one_rule_at_every_output_size(
    module: nn.Module, shape: tuple[int, ...], op: str, flops: int
) -> None:
    got, cost = only(rooflens.analyze(module, input_size=shape))
    assert got == op
    assert cost.flops == flops


def test_adaptive_pool_bytes() -> None:
    _, cost = only(rooflens.analyze(nn.AdaptiveAvgPool2d((3, 5)), input_size=(2, 4, 8, 8)))
    # read 512 x 4 B = 2048; written (2, 4, 3, 5) = 120 x 4 B = 480
    assert (cost.bytes_read, cost.bytes_written) == (2048, 480)


# ---- resampling -------------------------------------------------------------------------------------


def test_upsample_nearest_is_bytes_only() -> None:
    op, cost = only(rooflens.analyze(nn.Upsample(scale_factor=2), input_size=(1, 2, 4, 4)))
    assert op == "aten.upsample_nearest2d"
    # 0 FLOPs; read 32 x 4 B = 128; written (1, 2, 8, 8) 128 x 4 B = 512
    assert cost == Cost(0, 0, 128, 512)


@pytest.mark.parametrize(("fn", "shape", "op", "flops"), [
    # (1, 2, 4, 4) -> (1, 2, 8, 8) = 128 outputs
    (lambda t: F.interpolate(t, scale_factor=2, mode="nearest-exact"), (1, 2, 4, 4),
     "aten._upsample_nearest_exact2d", 0),
    (lambda t: F.interpolate(t, scale_factor=2, mode="bilinear"), (1, 2, 4, 4), "aten.upsample_bilinear2d", 128 * 7),
    (lambda t: F.interpolate(t, scale_factor=2, mode="bilinear", align_corners=True), (1, 2, 4, 4),
     "aten.upsample_bilinear2d", 128 * 7),
    (lambda t: F.interpolate(t, scale_factor=2, mode="bicubic"), (1, 2, 4, 4), "aten.upsample_bicubic2d", 128 * 31),
    # (1, 2, 8, 8) -> (1, 2, 4, 4) = 32 outputs, anti-aliased: counted as the plain interpolation
    (lambda t: F.interpolate(t, size=(4, 4), mode="bilinear", antialias=True), (1, 2, 8, 8),
     "aten._upsample_bilinear2d_aa", 32 * 7),
    (lambda t: F.interpolate(t, size=(4, 4), mode="bicubic", antialias=True), (1, 2, 8, 8),
     "aten._upsample_bicubic2d_aa", 32 * 31),
    # (1, 2, 4) -> (1, 2, 8) = 16 outputs x 3
    (lambda t: F.interpolate(t, scale_factor=2, mode="linear"), (1, 2, 4), "aten.upsample_linear1d", 16 * 3),
    (lambda t: F.interpolate(t, scale_factor=2, mode="nearest"), (1, 2, 4), "aten.upsample_nearest1d", 0),
    # (1, 1, 2, 2, 2) -> (1, 1, 4, 4, 4) = 64 outputs x 15
    (lambda t: F.interpolate(t, scale_factor=2, mode="trilinear"), (1, 1, 2, 2, 2),
     "aten.upsample_trilinear3d", 64 * 15),
    (lambda t: F.interpolate(t, scale_factor=2, mode="nearest"), (1, 1, 2, 2, 2), "aten.upsample_nearest3d", 0),
])
def test_interpolation(fn: Any, shape: tuple[int, ...], op: str, flops: int) -> None:
    got, cost = only(rooflens.analyze(Fn(fn), input_size=shape))
    assert got == op
    assert cost.flops == flops


@pytest.mark.parametrize(("mode", "per_output"), [("bilinear", 7), ("nearest", 0), ("bicubic", 31)])
def test_grid_sample(mode: str, per_output: int) -> None:
    fn = Fn(lambda t, g: F.grid_sample(t, g, mode=mode, align_corners=False))
    report = rooflens.analyze(fn, (torch.randn(1, 2, 4, 4), torch.zeros(1, 5, 5, 2)))
    op, cost = only(report)
    assert op == "aten.grid_sampler_2d"
    # output (1, 2, 5, 5) = 50 elements
    # read: input 32 x 4 B = 128 + grid 50 x 4 B = 200 -> 328; written 50 x 4 B = 200
    assert cost == Cost(0, 50 * per_output, 328, 200)


def test_grid_sample_3d() -> None:
    fn = Fn(lambda t, g: F.grid_sample(t, g, align_corners=False))
    op, cost = only(rooflens.analyze(fn, (torch.randn(1, 2, 4, 4, 4), torch.zeros(1, 3, 3, 3, 3))))
    assert op == "aten.grid_sampler_3d"
    # output (1, 2, 3, 3, 3) = 54 x trilinear 15 = 810
    assert cost.flops == 810


def test_lp_pool_and_area_interpolation_decompose_into_supported_ops() -> None:
    for module, shape in [(nn.LPPool2d(2, 2), (1, 2, 8, 8)),
                          (Fn(lambda t: F.interpolate(t, size=(3, 3), mode="area")), (1, 2, 8, 8))]:
        assert rooflens.analyze(module, input_size=shape).unsupported_ops() == {}
