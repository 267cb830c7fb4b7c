"""torchvision's detection operators: roi_align, roi_pool (and position-sensitive forms), nms, deform_conv2d.

They reach dispatch as ``torchvision.*`` operators; detection models usually need a real run (their
box counts depend on values), and then these formulas see the real shapes.
"""

from __future__ import annotations

from math import prod

from rooflens.formulas.conv import conv_cost
from rooflens.formulas.registry import OpCall, formula
from rooflens.types import Cost

BILINEAR_FLOPS = 7  # 4 multiplies + 3 adds per bilinear sample (weights computed once per sample point)
IOU_FLOPS = 12  # per box pair: 4 max/min for the intersection, 2 sub, 2 clamp, 1 mul, 1 add + 1 sub, 1 div
DEFAULT_SAMPLES = 2  # sampling_ratio <= 0 is adaptive (value-dependent); torchvision's detectors use 2


def _samples(call: OpCall) -> int:
    ratio = int(call.args.get("sampling_ratio") or 0)
    return ratio if ratio > 0 else DEFAULT_SAMPLES


def _roi_bytes(call: OpCall) -> tuple[int, int]:
    """Read the rois and the sampled pixels (at most the whole feature map), write the outputs."""
    x, rois = call.tensor("input"), call.tensor("rois")
    assert x is not None and rois is not None
    taps = 4 * _samples(call) ** 2 if "sampling_ratio" in call.args else 1
    sampled = x.bytes_of(min(x.numel, taps * call.out.numel))
    return rois.nbytes + sampled, sum(t.nbytes for t in call.outputs)


@formula("torchvision.roi_align", "torchvision.ps_roi_align", bytes=_roi_bytes)
def roi_align(call: OpCall) -> Cost:
    """(7 + 1) x samples^2 FLOPs per output element (bilinear sample, then average); samples 2x2 when adaptive"""
    return Cost(flops=(BILINEAR_FLOPS + 1) * _samples(call) ** 2 * call.out.numel)


@formula("torchvision.roi_pool", "torchvision.ps_roi_pool", bytes=_roi_bytes)
def roi_pool(call: OpCall) -> Cost:
    """1 compare per pooled input element (the bins tile each roi; counted as one per output element)"""
    return Cost(flops=call.out.numel)


@formula("torchvision.nms")
def nms(call: OpCall) -> Cost:
    """IoU of every box pair, N(N-1)/2 x 12 FLOPs (an upper bound: suppressed boxes are skipped), + 3 per box for areas"""
    boxes = call.tensor("dets")
    assert boxes is not None
    n = boxes.shape[0]
    return Cost(flops=n * (n - 1) // 2 * IOU_FLOPS + 3 * n)


@formula("torchvision.deform_conv2d")
def deform_conv2d(call: OpCall) -> Cost:
    """conv MACs (out.numel x Cin/groups x K^2) + 7 FLOPs per bilinear sample (+1 per sample for the mask)"""
    x, w = call.tensor("input"), call.tensor("weight")
    assert x is not None and w is not None
    bias = call.tensor("bias")
    base = conv_cost(x.shape, w.shape, call.out.shape, has_bias=bias is not None and bias.numel > 0,
                     convention=call.convention)
    n, cin = x.shape[0], x.shape[1]
    samples = n * cin * prod(w.shape[2:]) * prod(call.out.shape[2:])  # each input channel at each tap
    per_sample = BILINEAR_FLOPS + (1 if call.args.get("use_mask") else 0)
    return Cost(macs=base.macs, flops=base.flops + per_sample * samples)
