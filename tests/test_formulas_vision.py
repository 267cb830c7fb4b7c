"""torchvision detection operators, by hand."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import rooflens

ops = pytest.importorskip("torchvision.ops")


class RoiAlign(nn.Module):
    def forward(self, x: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        return ops.roi_align(x, boxes, output_size=(7, 7), spatial_scale=0.25, sampling_ratio=2)


def test_roi_align():
    x = torch.randn(1, 16, 32, 32)
    boxes = torch.tensor([[0, 0.0, 0.0, 64.0, 64.0], [0, 8.0, 8.0, 100.0, 90.0], [0, 1.0, 2.0, 3.0, 4.0]])
    r = rooflens.analyze(RoiAlign(), (x, boxes))
    (rec,) = [rec for rec in r.records if rec.op == "torchvision.roi_align"]
    # output 3 x 16 x 7 x 7 = 2,352 elements; 2x2 samples of 8 FLOPs (bilinear 7 + average 1) each
    assert rec.cost.flops == 2_352 * 4 * 8 == 75_264
    assert rec.cost.macs == 0
    # reads: rois 3*5*4 = 60 B + min(16*32*32, 16 taps * 2352) = 16,384 elements * 4 B; writes 2352*4
    assert rec.cost.bytes_read == 60 + 16_384 * 4
    assert rec.cost.bytes_written == 9_408


class Nms(nn.Module):
    def forward(self, boxes: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        return ops.nms(boxes, scores, 0.5)


def test_nms_is_counted_after_real_fallback():
    torch.manual_seed(0)
    xy = torch.rand(100, 2) * 100
    boxes = torch.cat([xy, xy + 10], dim=1)
    r = rooflens.analyze(Nms(), (boxes, torch.rand(100)))
    assert r.executed == "real"  # the number of kept boxes depends on the values
    (rec,) = [rec for rec in r.records if rec.op == "torchvision.nms"]
    assert rec.cost.flops == 100 * 99 // 2 * 12 + 3 * 100  # 59,400 + 300 = 59,700
    assert r.unsupported_ops() == {}


def test_deform_conv2d():
    conv = ops.DeformConv2d(4, 8, 3, padding=1)
    x = torch.randn(1, 4, 6, 6)
    offset = torch.zeros(1, 2 * 9, 6, 6)
    r = rooflens.analyze(conv, (x, offset))
    (rec,) = [rec for rec in r.records if rec.op == "torchvision.deform_conv2d"]
    # MACs 8*6*6*4*9 = 10,368; FLOPs 2*MACs + bias 8*36 = 20,736 + 288
    # + bilinear samples 1*4*9*36 = 1,296 x 7 = 9,072
    assert rec.cost.macs == 10_368
    assert rec.cost.flops == 20_736 + 288 + 9_072
