"""rooflens.compare and `rooflens compare`: models side by side, ratios to the first, and the note where a
model with fewer MACs takes longer. Numbers derived by hand below."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
import torch
from torch import nn

import rooflens
from rooflens.cli import main
from rooflens.hardware import custom

from _helpers import Fn

# A: Linear(256 -> 256, no bias) on (1, 256): one aten.mm
#    MACs = 256 * 256 = 65,536; FLOPs = 2 * 65,536 = 131,072
#    bytes = input 256*4 + weight 65,536*4 + output 256*4 = 1,024 + 262,144 + 1,024 = 264,192
# B: x * 2 on (1, 131072): one aten.mul, no MACs; FLOPs 131,072
#    bytes = 131,072*4 read + 131,072*4 written = 1,048,576
# Device: 1 TFLOP/s, 1 GB/s. Roofline time = max(FLOPs / 1e12, bytes / 1e9):
#    A: max(1.31e-7, 2.64192e-4) = 264.192 us; B: max(1.31e-7, 1.048576e-3) = 1.048576 ms
#    B / A = 1,048,576 / 264,192 = 3.9690... (bytes ratio the same)
# Energy (Horowitz 45 nm, fp32: MAC = 3.7 pJ mult + 0.9 pJ add = 4.6 pJ, another FLOP half that = 2.3 pJ, DRAM
# 640 pJ per 32-bit access = 160 pJ/byte; every byte from DRAM):
#    A: 65,536 MACs x 4.6 + 264,192 B x 160 = 301,465.6 + 42,270,720 = 42,572,185.6 pJ
#    B: 131,072 FLOPs x 2.3 + 1,048,576 B x 160 = 301,465.6 + 167,772,160 = 168,073,625.6 pJ
DEVICE = custom(peak_flops_per_s=1e12, bandwidth_bytes_per_s=1e9, name="slow memory")


@pytest.fixture(scope="module")
def reports() -> tuple[rooflens.Report, rooflens.Report]:
    a = rooflens.analyze(nn.Linear(256, 256, bias=False), torch.randn(1, 256), name="linear")
    b = rooflens.analyze(Fn(lambda x: x * 2), torch.randn(1, 131072), name="scale")
    return a, b


def test_counts_times_and_ratios_by_hand(reports: tuple[rooflens.Report, rooflens.Report]) -> None:
    table = rooflens.compare(list(reports), hardware=[DEVICE])
    a, b = table.rows
    assert (a.model, a.device, a.params, a.macs, a.flops, a.bytes) == ("linear", "custom", 65_536, 65_536, 131_072, 264_192)
    assert (b.macs, b.flops, b.bytes) == (0, 131_072, 1_048_576)
    assert a.roofline_seconds == pytest.approx(264.192e-6)
    assert b.roofline_seconds == pytest.approx(1.048576e-3)
    assert table.ratios(a) == {"macs": 1.0, "bytes": 1.0, "seconds": 1.0, "energy": 1.0}
    assert a.energy_joules == pytest.approx(42_572_185.6e-12)
    assert b.energy_joules == pytest.approx(168_073_625.6e-12)
    ratios = table.ratios(b)
    assert ratios["macs"] == 0.0
    assert ratios["bytes"] == pytest.approx(1_048_576 / 264_192)
    assert ratios["seconds"] == pytest.approx(3.96899, rel=1e-5)
    assert ratios["energy"] == pytest.approx(168_073_625.6 / 42_572_185.6)


def test_the_model_with_fewer_macs_that_is_slower_is_named(reports: tuple[rooflens.Report, rooflens.Report]) -> None:
    notes = rooflens.compare(list(reports), hardware=[DEVICE]).inversions()
    assert notes == [
        ("scale has 0.00x the MACs of linear but takes 3.97x its roofline time on custom (1.05 ms vs 264 µs): "
        "it moves 3.97x the bytes at 0.125 FLOP/byte")
    ]
    # 131,072 FLOPs / 1,048,576 bytes = 0.125 FLOP/byte


def test_without_a_device_only_counts(reports: tuple[rooflens.Report, rooflens.Report]) -> None:
    table = rooflens.compare(list(reports))
    assert [r.device for r in table.rows] == [None, None]
    assert all(r.roofline_seconds is None for r in table.rows)
    assert table.inversions() == []
    assert table.ratios(table.rows[1])["seconds"] is None


def test_one_table_per_device_and_same_names_numbered(reports: tuple[rooflens.Report, rooflens.Report]) -> None:
    a, _ = reports
    table = rooflens.compare([a, a], hardware=["t4", "a4000"])
    assert [(r.model, r.device) for r in table.rows] == [
        ("linear #1", "t4"), ("linear #2", "t4"), ("linear #1", "a4000"), ("linear #2", "a4000")]
    assert len(table.groups()) == 2


def test_bad_input_is_named(reports: tuple[rooflens.Report, rooflens.Report]) -> None:
    with pytest.raises(rooflens.InputError, match="at least one report"):
        rooflens.compare([])
    with pytest.raises(rooflens.InputError, match="memory_peaks_bytes has 1 values for 2 reports"):
        rooflens.compare(list(reports), memory_peaks_bytes=[1])


def test_table_golden(reports: tuple[rooflens.Report, rooflens.Report], golden: Callable[[str, str], None]) -> None:
    table = rooflens.compare(list(reports), hardware=[DEVICE], memory_peaks_bytes=[2_000, 3_000_000])
    golden("compare_custom.txt", table.render(width=130))


def test_cli_compare_json(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["compare", "torchvision:resnet18", "torchvision:mobilenet_v2", "--hw", "t4", "--format", "json",
            "--input-size", "1,3,64,64"]
    assert main(args) == 0
    data = json.loads(capsys.readouterr().out)
    first, second = data["rows"]
    assert (first["model"], second["model"]) == ("resnet18", "mobilenet_v2")
    assert first["ratios"]["macs"] == 1.0
    assert second["macs"] < first["macs"] and second["memory_peak_bytes"] > 0
    assert second["ratios"]["macs"] == pytest.approx(second["macs"] / first["macs"])


def test_cli_compare_needs_a_bandwidth(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", "torchvision:resnet18", "--hw", "nonexistent-device"]) == 2
    assert "nonexistent-device" in capsys.readouterr().err
