"""Design advice (rooflens.analysis.advice): for every rule, a small model where it must fire, with the
numbers of the finding worked out by hand below (never recomputed with rooflens's own functions), and one
where it must not; then advice on all 80 torchvision classifiers.

Hand arithmetic uses the conventions of docs/architecture.md: a MAC is 2 FLOPs, a bias 1 FLOP per output,
each operator reads its inputs and writes its outputs at their width (fp32: 4 bytes). The RTX A4000:
fp32 peak 19.2e12 FLOP/s, fp16 76.7e12, bandwidth 448e9 B/s, so the fp32 ridge is 19.2e12 / 448e9 =
300 / 7 = 42.857 FLOP/B; an operator's roofline time is max(FLOPs / peak, bytes / bandwidth).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torchvision import models
from torchvision.models.regnet import BlockParams
from torchvision.models.resnet import BasicBlock

import rooflens
from rooflens.analysis.advice import RULES, SEVERITY_SHARES, Finding, Rule, Severity, advise
from rooflens.errors import InputError
from rooflens.hardware import HardwareSpec, Kind, custom

BW = 448e9  # A4000 bandwidth, B/s
FP32 = 19.2e12  # A4000 fp32 peak, FLOP/s
FP16 = 76.7e12  # A4000 fp16 peak
DOCS = Path(__file__).resolve().parents[1] / "docs" / "advice.md"


def _analyze(model: nn.Module, size: tuple[int, ...], **kwargs: Any) -> rooflens.Report:
    return rooflens.analyze(model.eval(), input_size=size, **kwargs)


def _on_meta(build: Any) -> nn.Module:
    with torch.device("meta"):
        model: nn.Module = build()
    return model


def _only(findings: list[Finding], rule: Rule) -> list[Finding]:
    return [f for f in findings if f.rule is rule]


def _one(report: rooflens.Report, rule: Rule, **kwargs: Any) -> Finding:
    (finding,) = advise(report, rules=[rule], **kwargs)
    return finding


def _none(report: rooflens.Report, rule: Rule, **kwargs: Any) -> None:
    assert advise(report, rules=[rule], **kwargs) == []


class Twice(nn.Sequential):
    """Two blocks of one type: what the block rules (G3, G4) take for the model's blocks."""

    def __init__(self, block: Any) -> None:
        super().__init__(block(), block())


# ---- G1 -------------------------------------------------------------------------------------------------

def test_g1_unequal_widths_fire_with_the_bound() -> None:
    report = _analyze(nn.Sequential(nn.Conv2d(16, 64, 1, bias=False)), (1, 16, 8, 8), hardware="a4000")
    f = _one(report, Rule.G1)
    # hw = 8 x 8 = 64 pixels, c1 = 16, c2 = 64, 4 bytes per element
    # MAC = 4 x 64 x (16 + 64) + 4 x 16 x 64 = 20,480 + 4,096 = 24,576 B (= the conv's counted bytes)
    # bound = 2 x 4 x 64 x sqrt(16 x 64) + 4 x 16 x 64 = 2 x 4 x 64 x 32 + 4,096 = 20,480 B; 24,576 / 20,480 = 1.2
    assert f.modules == ("0",)
    assert dict(f.evidence) == {"c_in": 16, "c_out": 64, "pixels": 64, "mac_bytes": 24_576, "bound_bytes": 20_480,
                                "ratio": pytest.approx(1.2)}
    assert f.estimate["bytes_saved"] == 4_096 and f.estimate["equal_width"] == 32
    # FLOPs 2 x 64 x 64 x 16 = 131,072: at 5.3 FLOP/B memory-bound, so the time saved is 4,096 B / 448e9
    assert f.estimate["seconds_saved"] == pytest.approx(4_096 / BW)
    # the whole model is this conv: the share is 4,096 / 24,576 of its time
    assert f.share == pytest.approx(1 / 6) and f.severity is Severity.HIGH
    assert f.doc == "docs/advice.md#g1-equal-channel-widths"
    assert "16->64" in f.message and "1.20x" in f.message


def test_g1_equal_widths_and_small_excess_do_not_fire() -> None:
    _none(_analyze(nn.Sequential(nn.Conv2d(32, 32, 1)), (1, 32, 8, 8)), Rule.G1)
    # 16 -> 32: (16 + 32) / (2 x sqrt(512)) = 1.0607, under the 10 % default
    _none(_analyze(nn.Sequential(nn.Conv2d(16, 32, 1)), (1, 16, 8, 8)), Rule.G1)
    # a 3x3 conv is not G1's subject
    _none(_analyze(nn.Sequential(nn.Conv2d(16, 64, 3, padding=1)), (1, 16, 8, 8)), Rule.G1)


# ---- G2 -------------------------------------------------------------------------------------------------

def test_g2_groups_add_output_traffic() -> None:
    report = _analyze(nn.Sequential(nn.Conv2d(16, 32, 3, padding=1, groups=4, bias=False)), (1, 16, 8, 8))
    f = _one(report, Rule.G2)
    # bytes: input 16 x 64 x 4 = 4,096, weight 32 x 4 x 9 x 4 = 4,608, output 32 x 64 x 4 = 8,192: 16,896
    # a dense conv of the same input and FLOPs has 32 / 4 = 8 outputs: 4,096 + 4,608 + 8 x 64 x 4 = 10,752
    # added by the groups: 4 x 64 x 32 x (1 - 1/4) = 6,144
    assert dict(f.evidence) == {"groups": 4, "c_in": 16, "c_out": 32, "pixels": 64, "mac_bytes": 16_896,
                                "dense_bytes": 10_752}
    assert f.estimate == {"bytes_saved": 6_144}
    assert f.share == pytest.approx(6_144 / 16_896)


def test_g2_dense_and_depthwise_convs_do_not_fire() -> None:
    _none(_analyze(nn.Sequential(nn.Conv2d(16, 32, 3, padding=1)), (1, 16, 8, 8)), Rule.G2)
    _none(_analyze(nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, groups=16)), (1, 16, 8, 8)), Rule.G2)


# ---- G3 -------------------------------------------------------------------------------------------------

class Small(nn.Module):
    """Three element-wise operators on a tiny tensor: x * 2, + 1, relu."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x * 2 + 1)


def test_g3_fragmented_blocks_with_the_assumed_overhead() -> None:
    report = _analyze(Twice(Small), (1, 256), hardware="a4000")
    findings = advise(report, rules=[Rule.G3])
    assert [f.modules for f in findings] == [("0",), ("1",)]
    f = findings[0]
    # each operator reads 1,024 B and writes 1,024 B: 2,048 / 448e9 s of roofline time; 3 per block
    # overhead: 3 x 5 us (the assumption) = 15 us; block: 15 us + 3 x 2,048 / 448e9
    block = 15e-6 + 3 * 2_048 / BW
    assert f.evidence["operators"] == 3 and f.evidence["measured"] == 0
    assert f.evidence["overhead_seconds"] == pytest.approx(15e-6)
    assert f.evidence["block_seconds"] == pytest.approx(block)
    assert f.evidence["overhead_share"] == pytest.approx(15e-6 / block)
    # one fused operator keeps one overhead: 2 x 5 us saved
    assert f.estimate == {"bytes_saved": 0, "seconds_saved": pytest.approx(10e-6), "operators_after": 1}
    # the model's time under the same assumption: 6 operators' roofline + 6 x 5 us
    assert f.share == pytest.approx(10e-6 / (6 * 2_048 / BW + 30e-6))
    assert "assumed 5 us each" in f.message


PEAK, BAND, OVERHEAD = 100e9, 10e9, 2e-6  # the measured device below


def _measured() -> HardwareSpec:
    """A measured device (as test_calibrated.py builds one): fp32 100 GFLOP/s, 10 GB/s, 2 us per operator,
    no module-call cost; element-wise operators of 8,192 bytes (the test's) reach the full bandwidth."""
    def point(work: float, roof: float, efficiency: float) -> float:
        return OVERHEAD + work / (roof * efficiency)

    extra = {
        "op_overhead_seconds": OVERHEAD, "module_call_seconds": 0.0,
        "gemm_fp32": [[1e6, 0.0, point(1e6, PEAK, 1.0)], [1e9, 0.0, point(1e9, PEAK, 1.0)]],
        "relu__fp32": [[0.0, 8_192, point(8_192, BAND, 1.0)]],
        "add_fp32": [[0.0, 8_192, point(8_192, BAND, 1.0)]],
    }
    return HardwareSpec(id="measured-test", name="Measured test device", vendor="Test", kind=Kind.MEASURED,
                        peak_flops_per_s={"fp32": PEAK}, bandwidth_bytes_per_s=BAND, source="the test", extra=extra)


def test_g3_reads_the_measured_overhead_where_the_device_was_measured() -> None:
    report = _analyze(Twice(Small), (1, 1024), hardware=_measured())
    f = advise(report, rules=[Rule.G3])[0]
    # each operator: 8,192 B at the full 10 GB/s = 0.8192 us (its 1,024 FLOPs take 0.01 us) + 2 us overhead
    op = 8_192 / BAND + OVERHEAD
    assert f.evidence["measured"] == 1
    assert f.evidence["overhead_seconds"] == pytest.approx(3 * OVERHEAD)
    assert f.evidence["block_seconds"] == pytest.approx(3 * op)
    assert f.evidence["overhead_share"] == pytest.approx(6e-6 / (3 * op))  # 0.709
    assert f.estimate["seconds_saved"] == pytest.approx(4e-6)
    assert f.share == pytest.approx(4e-6 / (6 * op))  # the calibrated total: 6 operators
    assert "measured" in f.message


class Heavy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4096, 4096)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.fc(x))


def test_g3_blocks_of_large_operators_and_no_device_do_not_fire() -> None:
    # 2 x 4096^3 FLOPs = 137 GFLOP: 7.2 ms at the fp32 peak against 2 x 5 us of overhead
    report = _analyze(_on_meta(lambda: Twice(Heavy)), (4096, 4096), hardware="a4000")
    _none(report, Rule.G3)
    _none(_analyze(Twice(Small), (1, 256)), Rule.G3)  # overhead is time: no device, no G3


# ---- G4 -------------------------------------------------------------------------------------------------

class Residual(nn.Module):
    """relu(conv1x1(x)) + x."""

    def __init__(self, channels: int = 8, kernel: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel, padding=kernel // 2)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(x)) + x


def test_g4_elementwise_share_of_a_block() -> None:
    report = _analyze(Twice(Residual), (1, 8, 16, 16), hardware="a4000")
    f = advise(report, rules=[Rule.G4])[0]
    # conv: input 8 x 256 x 4 = 8,192, weight 64 x 4 = 256, bias 32, output 8,192: 16,672 B; FLOPs 2 x 64 x 256
    #   + 2,048 = 34,816: 2.1 FLOP/B, memory-bound. ReLU: 8,192 + 8,192 = 16,384 B. add: 2 x 8,192 + 8,192 =
    #   24,576 B. All memory-bound, so the time share is the bytes share: 40,960 / 57,632
    assert f.modules == ("0",)
    assert f.evidence["operators"] == 2 and f.evidence["elementwise_bytes"] == 40_960
    assert f.evidence["elementwise_share"] == pytest.approx(40_960 / 57_632)
    assert f.evidence["elementwise_seconds"] == pytest.approx(40_960 / BW)
    assert f.evidence["block_seconds"] == pytest.approx(57_632 / BW)
    # fused, their bytes go; their 2,048 + 2,048 FLOPs stay: 40,960 / 448e9 - 4,096 / 19.2e12
    assert f.estimate == {"bytes_saved": 40_960, "seconds_saved": pytest.approx(40_960 / BW - 4_096 / FP32)}
    # without a device: the same share, of bytes
    g = advise(_analyze(Twice(Residual), (1, 8, 16, 16)), rules=[Rule.G4])[0]
    assert g.evidence["elementwise_share"] == pytest.approx(40_960 / 57_632)
    assert g.evidence["block_bytes"] == 57_632 and "seconds_saved" not in g.estimate
    assert g.share == pytest.approx(40_960 / (2 * 57_632))


def test_g4_compute_heavy_blocks_do_not_fire() -> None:
    # conv 3x3 256 -> 256 on 14 x 14: 2 x 256 x 256 x 9 x 196 + 50,176 = 231,261,184 FLOPs, 12.0 us at the
    # peak; ReLU 401,408 B = 0.90 us: 7 % of the block's time. Bytes: 401,408 of 3,163,136 = 13 %
    model = _on_meta(lambda: Twice(lambda: Residual(256, 3)))
    _none(_analyze(model, (1, 256, 14, 14), hardware="a4000"), Rule.G4)
    _none(_analyze(model, (1, 256, 14, 14)), Rule.G4)


# ---- channel alignment ------------------------------------------------------------------------------------

def test_alignment_pads_a_linear_layer() -> None:
    report = _analyze(nn.Sequential(nn.Linear(100, 200)), (4, 100), hardware="a4000", precision="fp16")
    f = _one(report, Rule.ALIGNMENT)
    # A4000 fp16: multiples of 8. K = 100 -> 104, N = 200 stays. MACs 4 x 100 x 200 = 80,000 -> 4 x 104 x 200
    # = 83,200: 6,400 FLOPs more. Bytes at 2 per element: input 800 -> x 104/100: +32; weight 40,000: +1,600
    assert dict(f.evidence) == {"in_channels": 100, "out_channels": 200, "alignment": 8, "padded_in_channels": 104,
                                "padded_out_channels": 200}
    assert f.estimate["extra_flops"] == 6_400
    assert f.estimate["extra_bytes"] == pytest.approx(1_632)
    # counted bytes: bias 400 + input 800 + weight 40,000 + output 1,600 = 42,800, memory-bound
    # (160,800 FLOPs / 76.7e12 = 2.1 ns); padded 44,432 B
    assert f.estimate["padded_seconds"] == pytest.approx(44_432 / BW)
    assert f.estimate["seconds_saved"] == pytest.approx(1_632 / BW)
    assert "not multiples of 8" in f.message


def test_alignment_needs_an_unaligned_size_and_the_devices_alignment() -> None:
    _none(_analyze(nn.Sequential(nn.Linear(128, 256)), (4, 128), hardware="a4000", precision="fp16"),
          Rule.ALIGNMENT)
    # fp32 runs on the CUDA cores: the A4000 has no fp32 alignment
    _none(_analyze(nn.Sequential(nn.Linear(100, 200)), (4, 100), hardware="a4000"), Rule.ALIGNMENT)
    _none(_analyze(nn.Sequential(nn.Linear(100, 200)), (4, 100)), Rule.ALIGNMENT)


def test_alignment_of_a_conv_on_avx512() -> None:
    report = _analyze(nn.Sequential(nn.Conv2d(3, 24, 3, bias=False)), (1, 3, 10, 10), hardware="xeon-8480")
    f = _one(report, Rule.ALIGNMENT)
    # fp32 on AVX-512: 16 lanes. 3 -> 16, 24 -> 32; output 8 x 8. MACs 24 x 64 x 27 = 41,472 -> x 16 x 32 /
    # (3 x 24) = 294,912: (294,912 - 41,472) x 2 = 506,880 FLOPs more
    assert (f.evidence["padded_in_channels"], f.evidence["padded_out_channels"]) == (16, 32)
    assert f.estimate["extra_flops"] == 506_880
    # bytes: input 3 x 100 x 4 = 1,200 x (16/3 - 1) = 5,200; weight 24 x 27 x 4 = 2,592 x (512/72 - 1) = 15,840;
    # output 24 x 64 x 4 = 6,144 x (32/24 - 1) = 2,048
    assert f.estimate["extra_bytes"] == pytest.approx(5_200 + 15_840 + 2_048)


# ---- depthwise ---------------------------------------------------------------------------------------------

def _inverted_bottleneck() -> nn.Module:
    return nn.Sequential(nn.Conv2d(8, 32, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
                         nn.Conv2d(32, 32, 3, padding=1, groups=32, bias=False))


def test_depthwise_below_the_ridge_with_full_and_fused_alternatives() -> None:
    report = _analyze(_inverted_bottleneck(), (1, 8, 16, 16), hardware="a4000")
    f = _one(report, Rule.DEPTHWISE)
    # depthwise: MACs 32 x 256 x 9 = 73,728, FLOPs 147,456; bytes 32,768 in + 32 x 9 x 4 = 1,152 weight +
    # 32,768 out = 66,688: 2.211 FLOP/B < 42.857
    assert f.modules == ("0", "3")
    assert f.evidence["groups"] == 32 and f.evidence["intensity"] == pytest.approx(147_456 / 66_688)
    assert f.evidence["ridge"] == pytest.approx(300 / 7)
    assert f.evidence["seconds"] == pytest.approx(66_688 / BW)
    # a full 3x3 conv: 32 x the MACs (4,718,592 FLOPs) and weights (66,688 + 31 x 1,152 = 102,400 B):
    # compute-bound, 4,718,592 / 19.2e12
    assert f.estimate["full_seconds"] == pytest.approx(4_718_592 / FP32)
    # replaced by the fused conv: expansion 1x1 (8,192 + 1,024 + 32,768 = 41,984 B), its batch norm (read 32,768
    # + 4 x 32 x 4 = 33,280, write 32,768: 66,048 B), ReLU (65,536 B), the depthwise (66,688 B): 240,256 B,
    # all memory-bound
    assert f.estimate["replaced_seconds"] == pytest.approx(240_256 / BW)
    # fused 3x3 conv 8 -> 32: 8,192 in + 32 x 8 x 9 x 4 = 9,216 weight + 32,768 out = 50,176 B; 2 x 32 x 256 x
    # 8 x 9 = 1,179,648 FLOPs: 23.5 FLOP/B, memory-bound
    assert f.estimate["fused_seconds"] == pytest.approx(50_176 / BW)
    assert f.estimate["seconds_saved"] == pytest.approx((240_256 - 50_176) / BW)
    assert f.estimate["bytes_saved"] == 240_256 - 50_176


def test_depthwise_above_the_ridge_or_dense_does_not_fire() -> None:
    ridge_one = custom(peak_flops_per_s=1e12, bandwidth_bytes_per_s=1e12)  # 2.2 FLOP/B is compute-bound there
    _none(_analyze(_inverted_bottleneck(), (1, 8, 16, 16), hardware=ridge_one), Rule.DEPTHWISE)
    _none(_analyze(nn.Sequential(nn.Conv2d(32, 32, 3, padding=1)), (1, 32, 16, 16), hardware="a4000"),
          Rule.DEPTHWISE)


# ---- conv + batch norm fusion ------------------------------------------------------------------------------

def test_fusion_folds_batch_norm_and_activation() -> None:
    model = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
    f = _one(_analyze(model, (1, 8, 16, 16), hardware="a4000"), Rule.FUSION)
    # batch norm: read 16,384 + 4 x 16 x 4 = 16,640, write 16,384: 33,024 B; ReLU 2 x 16,384 = 32,768 B;
    # the folded conv reads a bias: 16 x 4 = 64 B
    assert f.modules == ("0", "1", "2")
    assert dict(f.evidence) == {"sequences": 1, "with_activation": 1, "batch_norm_bytes": 33_024,
                                "activation_bytes": 32_768, "bias_bytes_added": 64}
    # conv: 8,192 + 4,608 + 16,384 = 29,184 B, 589,824 FLOPs: memory-bound before and after (29,248 B,
    # 598,016 FLOPs); the batch norm and ReLU are memory-bound: saved (33,024 + 32,768 - 64) / 448e9
    assert f.estimate == {"bytes_saved": 65_728, "seconds_saved": pytest.approx(65_728 / BW), "operators_removed": 2}
    assert f.share == pytest.approx(65_728 / (29_184 + 33_024 + 32_768))


def test_fusion_needs_the_batch_norm_right_after_the_conv() -> None:
    model = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.BatchNorm2d(16))
    _none(_analyze(model, (1, 8, 16, 16)), Rule.FUSION)


# ---- RepVGG ------------------------------------------------------------------------------------------------

class RepBlock(nn.Module):
    """RepVGG's training-time block: 3x3 conv + BN, 1x1 conv + BN, identity BN, summed, ReLU."""

    def __init__(self, c: int = 8) -> None:
        super().__init__()
        self.dense = nn.Sequential(nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c))
        self.one = nn.Sequential(nn.Conv2d(c, c, 1, bias=False), nn.BatchNorm2d(c))
        self.identity = nn.BatchNorm2d(c)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.dense(x) + self.one(x) + self.identity(x))


def test_repvgg_block_becomes_one_conv() -> None:
    findings = advise(_analyze(Twice(RepBlock), (1, 8, 16, 16)), rules=[Rule.REPVGG])
    assert [f.modules for f in findings] == [("0",), ("1",)]
    f = findings[0]
    # before (the activation stays): 3x3 conv 294,912 FLOPs, 10,496 + 8,192 B; 1x1 conv 32,768 FLOPs,
    # 8,448 + 8,192 B; three batch norms 4,096 FLOPs and 8,320 + 8,192 B each; two adds 2,048 FLOPs and
    # 24,576 B each: FLOPs 294,912 + 32,768 + 12,288 + 4,096 = 344,064; bytes 18,688 + 16,640 + 49,536 +
    # 49,152 = 134,016
    # after: one 3x3 conv with bias: 2 x 8 x 9 x 256 x 8 + 2,048 = 296,960 FLOPs; 8,192 in + 8 x 8 x 9 x 4
    # = 2,304 weight + 32 bias + 8,192 out = 18,720 B
    assert dict(f.evidence) == {"branches": 3, "convs": 2, "identity": 1, "kernel": 3, "operators": 7,
                                "flops_before": 344_064, "bytes_before": 134_016, "flops_after": 296_960,
                                "bytes_after": 18_720}
    assert f.estimate == {"bytes_saved": 115_296, "flops_saved": 47_104, "operators_after": 1}


def test_repvgg_residual_block_with_a_nonlinearity_inside_does_not_fire() -> None:
    # ResNet's BasicBlock: conv, BN, ReLU, conv, BN, add, ReLU: the ReLU between the convs is not linear
    _none(_analyze(nn.Sequential(BasicBlock(8, 8), BasicBlock(8, 8)), (1, 8, 16, 16)), Rule.REPVGG)
    # parallel branches concatenated, not summed (an Inception-style block)
    class Concat(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Conv2d(8, 8, 3, padding=1), nn.Conv2d(8, 8, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.cat([self.a(x), self.b(x)], 1)

    _none(_analyze(Concat(), (1, 8, 16, 16)), Rule.REPVGG)


# ---- batch to the ridge point ----------------------------------------------------------------------------

def test_batch_needed_to_reach_the_ridge() -> None:
    f = _one(_analyze(nn.Sequential(nn.Linear(1024, 1024)), (1, 1024), hardware="a4000"), Rule.BATCH)
    # F = 2 x 1024^2 + 1024 = 2,098,176 FLOPs; weight traffic W = (1024^2 + 1024) x 4 = 4,198,400 B;
    # activations A = (1024 + 1024) x 4 = 8,192 B; R = 300/7.
    # m = R W / (F - R A) = 300 x 4,198,400 / (7 x 2,098,176 - 300 x 8,192) = 1,259,520,000 / 12,229,632
    #   = 102.99: batch 103
    assert f.evidence["weight_bytes"] == 4_198_400 and f.evidence["activation_bytes"] == 8_192
    assert f.evidence["intensity"] == pytest.approx(2_098_176 / 4_206_592)
    assert f.estimate["batch_needed"] == 103
    # now: 4,206,592 B / 448e9 per sample; at 103: max(103 x 2,098,176 / 19.2e12, (4,198,400 + 103 x 8,192)
    # / 448e9) = 216,112,128 / 19.2e12 (compute, just), over 103 samples
    now, then = 4_206_592 / BW, 216_112_128 / FP32 / 103
    assert f.estimate["seconds_per_sample"] == pytest.approx(now)
    assert f.estimate["seconds_per_sample_at_batch"] == pytest.approx(then)
    assert f.estimate["seconds_saved"] == pytest.approx(now - then)


def test_batch_unreachable_and_compute_bound() -> None:
    # ReLU alone: 1 FLOP per 8 bytes at any batch, below the ridge: memory-bound for good, no weights to share
    f = _one(_analyze(nn.Sequential(nn.ReLU()), (1, 1024), hardware="a4000"), Rule.BATCH)
    assert "batch_needed" not in f.estimate and f.evidence["activation_intensity"] == pytest.approx(1 / 8)
    assert f.estimate["seconds_saved"] == 0 and f.severity is Severity.INFO
    # Linear(1024, 1024) at batch 4096: 4096 x 2,098,176 / (4,198,400 + 4096 x 8,192) = 227 FLOP/B
    _none(_analyze(nn.Sequential(nn.Linear(1024, 1024)), (4096, 1024), hardware="a4000"), Rule.BATCH)
    _none(_analyze(nn.Sequential(nn.Linear(1024, 1024)), (1, 1024)), Rule.BATCH)


# ---- precision -------------------------------------------------------------------------------------------

def test_precision_change_bytes_and_time() -> None:
    report = _analyze(nn.Sequential(nn.Linear(1024, 1024)), (1, 1024), hardware="a4000")
    fp16, int8 = sorted(advise(report, rules=[Rule.PRECISION]), key=lambda f: -f.evidence["target_bits"])
    # fp32 bytes: 4,198,400 + 8,192 = 4,206,592; at fp16 half (2,103,296), at int8 a quarter (1,051,648).
    # Both memory-bound (2,098,176 FLOPs / 76.7e12 = 27 ns; / 153.4e12 = 14 ns). bf16 has fp16's width
    # and peak on the A4000: left out
    assert fp16.evidence["target_bits"] == 16 and int8.evidence["target_bits"] == 8
    assert fp16.estimate["bytes"] == 2_103_296 and fp16.estimate["bytes_saved"] == 2_103_296
    assert fp16.estimate["seconds"] == pytest.approx(2_103_296 / BW)
    assert fp16.estimate["seconds_saved"] == pytest.approx(2_103_296 / BW)
    assert int8.estimate["bytes"] == 1_051_648
    assert int8.estimate["seconds_saved"] == pytest.approx((4_206_592 - 1_051_648) / BW)
    assert int8.share == pytest.approx(0.75) and "quantization" in int8.message
    # without a device: bytes only, fp16 and int8
    bare = advise(_analyze(nn.Sequential(nn.Linear(1024, 1024)), (1, 1024)), rules=[Rule.PRECISION])
    assert sorted(f.estimate["bytes"] for f in bare) == [1_051_648, 2_103_296]


def test_precision_needs_a_narrower_precision_the_device_has() -> None:
    # the Apple M2 GPU entry lists fp32 only
    _none(_analyze(nn.Sequential(nn.Linear(64, 64)), (1, 64), hardware="apple-m2"), Rule.PRECISION)
    # already int8 on the A4000: nothing narrower in the candidates it has a peak for
    _none(_analyze(nn.Sequential(nn.Linear(64, 64)), (1, 64), hardware="a4000", precision="int8"), Rule.PRECISION)


# ---- memory fit ------------------------------------------------------------------------------------------

def test_weights_larger_than_the_device_memory() -> None:
    report = _analyze(_on_meta(lambda: nn.Sequential(nn.Linear(100_000, 100_000))), (1, 100_000), hardware="a4000")
    f = _one(report, Rule.MEMORY)
    # (1e10 weights + 1e5 bias) x 4 B = 40,000,400,000 B against 16e9
    assert f.evidence["weight_bytes"] == 40_000_400_000 and f.evidence["memory_bytes"] == 16_000_000_000
    assert f.estimate["bytes_over"] == 24_000_400_000 and f.estimate["weight_bytes_at_int8"] == 10_000_100_000
    assert f.share == pytest.approx(2.500025) and f.severity is Severity.HIGH
    assert "activation peak not given" in f.message


def test_memory_fit_counts_the_activation_peak_when_given() -> None:
    report = _analyze(nn.Sequential(nn.Linear(64, 64)), (1, 64), hardware="a4000")
    _none(report, Rule.MEMORY)
    # weights 64 x 64 x 4 + 64 x 4 = 16,640 B + a 16e9 B activation peak: over by 16,640
    f = _one(report, Rule.MEMORY, activation_bytes=16_000_000_000)
    assert f.estimate["bytes_over"] == 16_640
    _none(_analyze(nn.Sequential(nn.Linear(64, 64)), (1, 64)), Rule.MEMORY)


# ---- the list --------------------------------------------------------------------------------------------

def test_findings_are_sorted_by_share_and_filtered() -> None:
    report = _analyze(_inverted_bottleneck(), (1, 8, 16, 16), hardware="a4000")
    findings = advise(report)
    assert {f.rule for f in findings} >= {Rule.G1, Rule.DEPTHWISE, Rule.FUSION, Rule.PRECISION}
    assert [f.share for f in findings] == sorted((f.share for f in findings), reverse=True)
    kept = advise(report, min_share=0.05)
    assert kept == [f for f in findings if f.share >= 0.05]
    with pytest.raises(InputError, match="unknown rule 'G5'"):
        advise(report, rules=["G5"])


@pytest.mark.parametrize(("share", "severity"), [(0.5, Severity.HIGH), (0.1, Severity.HIGH),
                                                 (0.0999, Severity.MEDIUM), (0.02, Severity.MEDIUM),
                                                 (0.005, Severity.LOW), (0.0049, Severity.INFO), (0.0, Severity.INFO)])
def test_severity_from_share(share: float, severity: Severity) -> None:
    assert Severity.of(share) is severity
    assert SEVERITY_SHARES[0] == (Severity.HIGH, 0.10)


def test_every_rule_has_a_function_and_a_section_in_the_docs() -> None:
    assert set(RULES) == set(Rule)
    text = DOCS.read_text(encoding="utf-8")
    headings = {_slug(line.lstrip("#").strip()) for line in text.splitlines() if line.startswith("## ")}
    for rule in Rule:
        assert rule.doc.split("#")[1] in headings, rule


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    kept = "".join(ch for ch in heading.lower() if ch.isalnum() or ch in " -")
    return kept.replace(" ", "-")


def test_finding_is_immutable_and_serialises() -> None:
    f = _one(_analyze(nn.Sequential(nn.Conv2d(16, 64, 1, bias=False)), (1, 16, 8, 8)), Rule.G1)
    with pytest.raises(AttributeError):
        f.share = 0.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        f.evidence["ratio"] = 2.0  # type: ignore[index]
    d = f.as_dict()
    assert d["rule"] == "G1" and d["severity"] == "high" and d["evidence"]["bound_bytes"] == 20_480


# ---- all 80 torchvision classifiers -----------------------------------------------------------------------
# Building and analysing each takes about 0.7 s on meta on the 2-core machine (see test_consistency.py); the
# advice itself a few milliseconds, so each model is advised on a GPU, a CPU and without a device.

CLASSIFIERS = models.list_models(module=models)
IMAGE_SIZE = {"inception_v3": 299}


def _build_on_meta(name: str, monkeypatch: pytest.MonkeyPatch) -> nn.Module:
    original = BlockParams.from_init_params.__func__  # RegNet computes its widths with tensors: on the CPU

    def widths_on_cpu(cls: type[BlockParams], *args: Any, **kwargs: Any) -> BlockParams:
        with torch.device("cpu"):
            return original(cls, *args, **kwargs)

    monkeypatch.setattr(BlockParams, "from_init_params", classmethod(widths_on_cpu))
    with torch.device("meta"):
        model: nn.Module = models.get_model(name, weights=None).eval()
    return model


def test_all_80_classifiers_are_listed() -> None:
    assert len(CLASSIFIERS) == 80


@pytest.mark.filterwarnings("ignore:The default weight initialization:FutureWarning")  # googlenet, inception_v3
@pytest.mark.parametrize("name", CLASSIFIERS)
def test_advice_on_every_torchvision_classifier(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    size = IMAGE_SIZE.get(name, 224)
    report = rooflens.analyze(_build_on_meta(name, monkeypatch), input_size=(1, 3, size, size))
    for hardware in ("a4000", "xeon-8480", None):
        findings = advise(report, hardware=hardware)
        assert findings, (name, hardware)
        assert [f.share for f in findings] == sorted((f.share for f in findings), reverse=True)
        for f in findings:
            assert f.severity is Severity.of(f.share) and f.doc == f.rule.doc
            assert all(p in report.modules for p in f.modules), (name, f.rule, f.modules)
            numbers = [*f.evidence.values(), *f.estimate.values()]
            assert all(math.isfinite(v) for v in numbers), (name, f.rule, f.evidence, f.estimate)
            assert f.estimate["bytes_saved"] >= 0 or f.rule in (Rule.G1, Rule.REPVGG), (name, f)
            assert (hardware is None) != ("seconds_saved" in f.estimate) or f.rule is Rule.MEMORY, (name, f.rule)
            assert f.message and "\n" not in f.message
