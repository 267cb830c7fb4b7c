"""The roofline: precision-aware bytes, intensity, bound and time per operator, module and model.

Every expected figure is worked out by hand in a comment from the shapes and the device's datasheet
numbers (RTX A4000: 19.2 TFLOP/s fp32, 76.7 TFLOP/s fp16 tensor, 153.4 TOP/s int8, 448 GB/s).
"""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import rooflens
import rooflens.hardware as hw
from rooflens.analysis.roofline import Bound, op_timing
from rooflens.errors import HardwareError, InputError

from _helpers import tiny_net

A4000_FP32 = 19.2e12
A4000_INT8 = 153.4e12
A4000_BW = 448e9


@pytest.fixture(scope="module")
def conv_report() -> rooflens.Report:
    # Conv2d(3 -> 10, 5x5), no padding, with bias, on 1x3x224x224 fp32: the output is 1x10x220x220.
    torch.manual_seed(0)
    return rooflens.analyze(nn.Conv2d(3, 10, 5), input_size=(1, 3, 224, 224), hardware="a4000")


def test_conv_bytes_by_hand(conv_report):
    t = conv_report.total()
    # read: input 3*224*224 = 150,528 elements * 4 B = 602,112; weight 10*3*5*5 = 750 * 4 = 3,000; bias 10 * 4 = 40
    assert t.bytes_read == 602_112 + 3_000 + 40 == 605_152
    # written: 10*220*220 = 484,000 elements * 4 B
    assert t.bytes_written == 1_936_000
    # MACs 10*220*220 * 3*5*5 = 36,300,000; FLOPs (fma) = 2 * MACs + 484,000 bias adds = 73,084,000
    assert t.macs == 36_300_000
    assert t.flops == 73_084_000


def test_conv_intensity_bound_and_time_on_a4000(conv_report):
    roof = conv_report.roofline
    # ridge point = 19.2e12 / 448e9 = 42.857 FLOP/B
    assert roof.ridge_point == pytest.approx(42.857, abs=1e-3)
    # intensity = 73,084,000 FLOPs / (605,152 + 1,936,000 = 2,541,152 B) = 28.760 FLOP/B: below the ridge
    assert roof.total.intensity == pytest.approx(28.760, abs=1e-3)
    # compute time 73,084,000 / 19.2e12 = 3.8065 us; memory time 2,541,152 / 448e9 = 5.6722 us
    assert roof.total.compute_seconds == pytest.approx(3.8065e-6, rel=1e-4)
    assert roof.total.memory_seconds == pytest.approx(5.6722e-6, rel=1e-4)
    # the larger is the roofline time, and it names the bound: memory
    assert roof.total_seconds == pytest.approx(5.6722e-6, rel=1e-4)
    assert roof.total.bound is Bound.MEMORY
    assert roof.bound_share() == {"compute": 0.0, "memory": 1.0}
    # attainable = min(peak, 448e9 * 28.760) = 12.88 TFLOP/s = FLOPs / roofline time
    assert roof.attainable_flops_per_s(roof.total.intensity) == pytest.approx(12.885e12, rel=1e-3)
    assert roof.total.flops_per_s == pytest.approx(12.885e12, rel=1e-3)


def test_int8_divides_activation_and_weight_bytes_by_four():
    # INT8 deployment of the fp32-built conv: 1 byte per element instead of 4
    r = rooflens.analyze(nn.Conv2d(3, 10, 5), input_size=(1, 3, 224, 224), hardware="a4000", precision="int8")
    t = r.total()
    assert t.bytes_read == 605_152 // 4 == 151_288  # 150,528 + 750 + 10 elements, 1 byte each
    assert t.bytes_written == 1_936_000 // 4 == 484_000
    assert t.flops == 73_084_000  # the work does not change
    roof = r.roofline
    assert roof.used_precision.value == "int8"
    assert roof.peak_flops_per_s == A4000_INT8
    # intensity 73,084,000 / 635,288 = 115.04 FLOP/B, ridge 153.4e12 / 448e9 = 342.4: still memory-bound
    assert roof.total.intensity == pytest.approx(115.04, abs=0.01)
    assert roof.total.bound is Bound.MEMORY
    assert roof.total_seconds == pytest.approx(635_288 / A4000_BW)


def test_weight_and_activation_bits_apart():
    # 4-bit weights, 16-bit activations: input 150,528 * 2 = 301,056; weight 750 * 4 / 8 = 375; bias 10 * 4 / 8 = 5
    r = rooflens.analyze(nn.Conv2d(3, 10, 5), input_size=(1, 3, 224, 224), weight_bits=4, act_bits=16)
    assert r.total().bytes_read == 301_056 + 375 + 5
    assert r.total().bytes_written == 484_000 * 2
    assert (r.weight_bits, r.act_bits) == (4, 16)
    # model size at 4 bits: 760 parameters * 4 / 8 = 380 bytes
    assert r.weight_bytes == 380
    # an odd count of 4-bit elements rounds up to whole bytes: Linear(3, 1) has 3 weights -> 2 bytes, 1 bias -> 1 byte
    lin = rooflens.analyze(nn.Linear(3, 1), input_size=(1, 3), weight_bits=4)
    assert lin.total().bytes_read == 3 * 4 + 2 + 1


def test_group_wise_scales_in_the_weight_bytes():
    # Linear(256, 64) at 4 bits in groups of 128: weight 64 x 256 / 2 = 8,192 bytes + 64 rows x 2 groups x 2 bytes
    # = 256 bytes of scales; bias 64 / 2 = 32 (one-dimensional: no scales); input 256 x 4 = 1,024
    lin = rooflens.analyze(nn.Linear(256, 64), input_size=(1, 256), weight_bits=4, weight_group=128)
    assert lin.total().bytes_read == 1_024 + 8_192 + 256 + 32
    assert lin.weight_bytes == 8_192 + 256 + 32 and lin.weight_scale_bytes == 256
    # one scale per row (-1): 64 x 2 = 128 bytes; the transposed view the product reads has rows of 64, the
    # weight's rows are what carry the scales
    per_row = rooflens.analyze(nn.Linear(256, 64), input_size=(1, 256), weight_bits=4, weight_group=-1)
    assert per_row.total().bytes_read == 1_024 + 8_192 + 128 + 32
    # an embedding reads the rows it gathers with their scales: 10 rows x 256 / 2 = 1,280 + 10 x 2 x 2 = 40,
    # indices 10 x 8 = 80; the model size has every row's: 1000 x 256 / 2 + 1000 x 2 x 2 = 132,000
    emb = rooflens.analyze(nn.Embedding(1000, 256), torch.zeros(1, 10, dtype=torch.long), weight_bits=4,
                           weight_group=128)
    assert emb.total().bytes_read == 1_280 + 40 + 80 and emb.weight_bytes == 132_000
    assert emb.to_dict()["precision"]["weight_group"] == 128
    # a convolution's row is what an output channel reduces over: Conv2d(64, 32, 4) has rows of 64 x 4 x 4 =
    # 1,024 weights, 8 groups of 128: 32 x 8 scales x 2 bytes = 512; weights 32 x 1,024 / 2 = 16,384
    conv = rooflens.analyze(nn.Conv2d(64, 32, 4, bias=False), input_size=(1, 64, 8, 8), weight_bits=4,
                            weight_group=128)
    assert conv.weight_bytes == 16_384 + 512 and conv.weight_scale_bytes == 512
    with pytest.raises(InputError, match="give weight_bits too"):
        rooflens.analyze(nn.Linear(4, 4), input_size=(1, 4), weight_group=128)
    with pytest.raises(InputError, match="8 bits or fewer"):  # 16-bit weights are not quantized
        rooflens.analyze(nn.Linear(4, 4), input_size=(1, 4), precision="fp16", weight_group=128)
    with pytest.raises(InputError, match="weight_group=0 must be"):
        rooflens.analyze(nn.Linear(4, 4), input_size=(1, 4), weight_bits=4, weight_group=0)


def test_integer_tensors_keep_their_width():
    # Embedding(100, 16) on 1x8 int64 indices at int8: indices stay 8 bytes each, gathered rows 1 byte per element
    r = rooflens.analyze(nn.Embedding(100, 16), inputs=torch.zeros(1, 8, dtype=torch.long), precision="int8")
    # read: indices 8 * 8 = 64 + gathered rows 8 * 16 = 128 elements * 1 B; written: 128 * 1 B
    assert r.total().bytes_read == 64 + 128
    assert r.total().bytes_written == 128


def _conv_on_56(conv: nn.Module) -> rooflens.Report:
    return rooflens.analyze(conv, input_size=(1, 256, 56, 56), hardware="a4000")


def test_depthwise_is_memory_bound_and_pointwise_compute_bound_on_a4000():
    # Same 1x256x56x56 fp32 feature map (3,211,264 bytes in and out); ridge 42.86 FLOP/B.
    # Depthwise 3x3: each input element feeds only the 9 taps of its own channel.
    #   FLOPs 2 * 256*56*56*9 = 14,450,688; bytes 3,211,264 in + 256*9*4 = 9,216 weights + 3,211,264 out = 6,431,744
    #   intensity 2.247 FLOP/B, 19x below the ridge: memory-bound; it moves as many bytes as the 1x1 conv
    #   for 1/28 of the work.
    # 1x1 256 -> 256: each input element feeds all 256 output channels.
    #   FLOPs 2 * 256*256*56*56 = 411,041,792; bytes 3,211,264 + 256*256*4 = 262,144 + 3,211,264 = 6,684,672
    #   intensity 61.49 FLOP/B (about Cout / 4 for a large map), above the ridge: compute-bound.
    dw = _conv_on_56(nn.Conv2d(256, 256, 3, padding=1, groups=256, bias=False)).roofline
    pw = _conv_on_56(nn.Conv2d(256, 256, 1, bias=False)).roofline
    assert (dw.total.flops, dw.total.bytes) == (14_450_688, 6_431_744)
    assert dw.total.intensity == pytest.approx(2.2468, abs=1e-4)
    assert dw.total.bound is Bound.MEMORY
    assert dw.total_seconds == pytest.approx(6_431_744 / A4000_BW)  # 14.36 us
    assert (pw.total.flops, pw.total.bytes) == (411_041_792, 6_684_672)
    assert pw.total.intensity == pytest.approx(61.490, abs=1e-3)
    assert pw.total.bound is Bound.COMPUTE
    assert pw.total_seconds == pytest.approx(411_041_792 / A4000_FP32)  # 21.41 us
    # 28x the FLOPs, but only 1.49x the time: the depthwise conv wastes the compute roof
    assert pw.total_seconds / dw.total_seconds == pytest.approx(1.491, abs=1e-3)


@pytest.fixture(scope="module")
def tiny_report() -> rooflens.Report:
    return rooflens.analyze(tiny_net(), input_size=(1, 3, 32, 32), name="TinyNet", hardware="a4000")


def test_sum_of_operator_times_is_the_total(tiny_report):
    roof = tiny_report.roofline
    assert len(roof.ops) == len(tiny_report.records)
    assert sum(t.seconds for t in roof.ops) == pytest.approx(roof.total_seconds, rel=1e-12)
    assert roof.by_module()[""].seconds == pytest.approx(roof.total_seconds, rel=1e-12)
    # a module's time is its own operators' plus its children's
    modules = tiny_report.by_module()
    for path, node in modules.items():
        own = sum(t.seconds for r, t in zip(tiny_report.records, roof.ops, strict=True) if r.module == path)
        children = sum(roof.by_module()[c].seconds for c in node.children)
        assert roof.by_module()[path].seconds == pytest.approx(own + children, rel=1e-12, abs=1e-18)
    share = roof.bound_share()
    assert share["compute"] + share["memory"] == pytest.approx(1.0)


def test_bound_is_consistent_with_the_ridge_point(tiny_report):
    roof = tiny_report.roofline
    for t in roof.ops:
        if t.seconds == 0:
            assert t.bound is Bound.NONE
        elif t.flops == 0:
            assert t.bound is Bound.MEMORY
        else:
            assert (t.bound is Bound.COMPUTE) == (t.intensity >= roof.ridge_point)
        assert t.seconds == max(t.flops / A4000_FP32, t.bytes / A4000_BW)


def test_op_timing_at_the_ridge_counts_as_compute():
    # 42.857... FLOP/B exactly: FLOPs / peak == bytes / bandwidth
    t = op_timing(19_200, 448, 19.2e12, 448e9)
    assert t.compute_seconds == t.memory_seconds == pytest.approx(1e-9)
    assert t.bound is Bound.COMPUTE


def test_catalogue_queries_from_the_api():
    assert hw.get("h100-sxm").peak_flops("bf16") == 989.5e12  # dense; 1,979 is with sparsity
    r = rooflens.analyze(nn.Linear(4096, 4096), input_size=(8, 4096), hardware="a100-80gb", precision="bf16")
    assert r.roofline.peak_flops_per_s == 312e12
    assert r.roofline.bandwidth_bytes_per_s == 2039e9
    # bf16 sets every floating-point tensor to 2 bytes: weight 4096*4096*2 = 33,554,432 + bias 8,192 + input 65,536
    assert r.total().bytes_read == 33_554_432 + 8_192 + 65_536


def test_missing_precision_falls_back_and_says_so():
    r = rooflens.analyze(nn.Linear(64, 64), input_size=(1, 64), hardware="t4", precision="bf16")
    roof = r.roofline
    assert roof.precision.value == "bf16"
    assert roof.used_precision.value == "fp32"
    assert roof.peak_flops_per_s == 8.1e12
    assert any("no bf16 peak" in n and "fp32" in n for n in roof.notes)
    assert "no bf16 peak" in r.render()


def test_unpublished_bandwidth_must_be_given():
    nnie = hw.get("hi3519av100-nnie")
    with pytest.raises(HardwareError, match="no memory bandwidth is published"):
        rooflens.analyze(nn.Linear(64, 64), input_size=(1, 64), hardware=nnie)
    r = rooflens.analyze(nn.Linear(64, 64), input_size=(1, 64), hardware=nnie.with_bandwidth(10e9), precision="int8")
    assert r.roofline.peak_flops_per_s == 1.7e12
    assert r.roofline.ridge_point == pytest.approx(170.0)  # 1.7e12 / 10e9


def test_roofline_needs_hardware_and_with_hardware_reuses_the_counts():
    r = rooflens.analyze(nn.Linear(64, 64), input_size=(1, 64))
    with pytest.raises(InputError, match="no hardware"):
        _ = r.roofline
    on_l4 = r.with_hardware("l4")
    assert r.hardware is None
    assert on_l4.records is r.records
    assert on_l4.roofline.bandwidth_bytes_per_s == 300e9  # not 3,350 as some tables have it


def test_bad_precision_and_bits_are_clear_errors():
    m = nn.Linear(4, 4)
    with pytest.raises(HardwareError, match="unknown precision 'fp12'"):
        rooflens.analyze(m, input_size=(1, 4), precision="fp12")
    with pytest.raises(InputError, match="weight_bits=0 must be a whole number of bits"):
        rooflens.analyze(m, input_size=(1, 4), weight_bits=0)
    with pytest.raises(HardwareError, match="did you mean 'a4000'"):
        rooflens.analyze(m, input_size=(1, 4), hardware="a4001")


def test_default_precision_follows_the_model_dtype():
    assert rooflens.analyze(nn.Linear(4, 4), input_size=(1, 4)).precision.value == "fp32"
    half = rooflens.analyze(nn.Linear(4, 4), input_size=(1, 4), dtype=torch.float16)
    assert half.precision.value == "fp16"
    assert half.weight_bits is None  # the dtype already sets the width
    with torch.device("meta"):
        bf = nn.Linear(4, 4).to(torch.bfloat16)
    assert rooflens.analyze(bf, input_size=(1, 4), input_dtype=torch.bfloat16).precision.value == "bf16"


def test_json_carries_the_roofline(tiny_report):
    data = json.loads(tiny_report.to_json())
    roof = data["roofline"]
    assert roof["hardware"]["id"] == "a4000"
    assert roof["ridge_point"] == pytest.approx(42.857, abs=1e-3)
    assert sum(op["roofline"]["seconds"] for op in data["operators"]) == pytest.approx(roof["total_seconds"])
    root = next(m for m in data["modules"] if m["path"] == "")
    assert root["roofline"]["seconds"] == pytest.approx(roof["total_seconds"])
    assert set(roof["bound_share"]) == {"compute", "memory"}
    assert roof["operators_summary"][0]["seconds"] >= roof["operators_summary"][-1]["seconds"]


def test_csv_carries_the_roofline(tiny_report):
    import csv
    import io

    rows = list(csv.DictReader(io.StringIO(tiny_report.to_csv())))
    root = rows[0]
    assert float(root["roofline_seconds"]) == pytest.approx(tiny_report.roofline.total_seconds)
    assert root["bound"] in {"compute", "memory"}
    assert float(root["share_of_time"]) == 1.0




def test_roofline_table_golden(tiny_report, golden):
    golden("tiny_roofline_a4000.txt", tiny_report.render(width=150))


def test_roofline_markdown_golden(tiny_report, golden):
    golden("tiny_roofline_a4000.md", tiny_report.to_markdown(depth=1))


def test_roofline_json_golden(tiny_report, golden):
    data = json.loads(tiny_report.to_json(operators=False))
    data.pop("torch_version")
    golden("tiny_roofline_a4000.json", json.dumps(data, indent=2) + "\n")


def test_hardware_text_golden(golden):
    from rooflens.report.hardware_render import hardware_lines
    from rooflens.report.terminal import label_grid, plain_text

    golden("hw_show_a4000.txt", plain_text([label_grid(hardware_lines(hw.get("a4000")))], width=120))


def test_comparison_golden(tiny_report, golden):
    from rooflens.report.roofline_render import COMPARE_COLUMNS, COMPARE_NUMERIC, comparison_rows
    from rooflens.report.terminal import grid_table, plain_text

    reports = [tiny_report.with_hardware(d) for d in ("a4000", "t4", "h100-sxm", "jetson-orin-nano")]
    golden("tiny_compare.txt", plain_text([grid_table(COMPARE_COLUMNS, comparison_rows(reports), COMPARE_NUMERIC)]))
