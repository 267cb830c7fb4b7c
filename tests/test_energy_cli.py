"""`rooflens energy`, Report.energy() and the energy note of `rooflens bench`: numbers by hand, a golden table."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

import rooflens
from rooflens.cli import main
from rooflens.report.document import RENDERERS
from rooflens.report.energy_render import energy_document

MLP_FILE = """
import torch.nn as nn

def mlp():
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
"""

# nn.Sequential(Linear(8, 16), ReLU(), Linear(16, 4)) on (2, 8), fp32, Horowitz 45 nm, every byte from DRAM:
#   0: addmm(bias 16, x 2x8, W^T 8x16) -> 2x16: MACs 2*8*16 = 256; FLOPs 2*256 + 32 bias adds = 544
#      bytes read 64 + 64 + 512 = 640, written 128 -> 768 B
#   1: relu 2x16: FLOPs 32; bytes 128 + 128 = 256 B
#   2: addmm(bias 4, 2x16, W^T 16x4) -> 2x4: MACs 2*16*4 = 128; FLOPs 256 + 8 = 264
#      bytes read 16 + 128 + 256 = 400, written 32 -> 432 B
# MACs 384 -> 768 FLOPs at 4.6/2 = 2.3 pJ each = 1,766.4 pJ; other FLOPs 32 + 32 + 8 = 72 x 2.3 = 165.6 pJ
# bytes 768 + 256 + 432 = 1,456 x 160 pJ = 232,960 pJ; total 234,892 pJ for 2 samples -> 117,446 pJ each
TOTAL_PJ = 1_766.4 + 165.6 + 232_960


@pytest.fixture(scope="module")
def report() -> rooflens.Report:
    torch.manual_seed(0)
    return rooflens.analyze(nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4)), torch.randn(2, 8), name="mlp")


def test_report_energy_by_hand(report: rooflens.Report) -> None:
    estimate = report.energy()
    assert estimate.joules == pytest.approx(TOTAL_PJ * 1e-12)
    assert estimate.samples == 2 and estimate.joules_per_inference == pytest.approx(TOTAL_PJ / 2 * 1e-12)
    assert estimate.total.compute_joules == pytest.approx((1_766.4 + 165.6) * 1e-12)
    assert estimate.by_module()["1"].joules == pytest.approx((32 * 2.3 + 256 * 160) * 1e-12)
    assert report.energy() is estimate  # cached


def test_energy_table_golden(report: rooflens.Report, golden: Callable[[str, str], None]) -> None:
    golden("energy_mlp.txt", RENDERERS["table"](energy_document(report, report.energy()), 120))


def test_cli_energy_json_and_int8(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "mlp.py"
    path.write_text(MLP_FILE)
    assert main(["energy", f"{path}:mlp", "-i", "2,8", "-f", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["model"] == "mlp" and data["joules"] == pytest.approx(TOTAL_PJ * 1e-12)
    assert data["modules"]["0"]["dram_bytes"] == 768
    # int8: 1 byte per element in memory; MAC = 0.2 + 0.03 = 0.23 pJ, another FLOP 0.115 pJ, 160 pJ/byte
    #   bytes 1,456 / 4 = 364 -> 58,240 pJ; MACs 384 x 0.23 = 88.32 pJ; other 72 x 0.115 = 8.28 pJ
    assert main(["energy", f"{path}:mlp", "-i", "2,8", "-f", "json", "--precision", "int8"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["joules"] == pytest.approx((58_240 + 88.32 + 8.28) * 1e-12)


def test_cli_energy_takes_one_device(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["energy", "torchvision:resnet18", "--hw", "a4000,t4"]) == 2
    assert "energy uses one device's figures; --hw names 2" in capsys.readouterr().err


def test_bench_says_why_energy_was_not_measured(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "mlp.py"
    path.write_text(MLP_FILE)
    args = ["bench", f"{path}:mlp", "-i", "2,8", "--iters", "2", "--warmup", "1", "--threads", "1", "-f", "json"]
    assert main(args) == 0
    energy = json.loads(capsys.readouterr().out)["energy"]
    assert energy["estimated"]["joules_per_inference"] == pytest.approx(TOTAL_PJ / 2 * 1e-12)
    measured = energy["measured"]
    assert measured["available"] or measured["reason"]  # on this VM: no RAPL zones, and the note says so
    assert main([*args[:-2], "--no-energy"]) == 0
    assert "Energy" not in capsys.readouterr().out
