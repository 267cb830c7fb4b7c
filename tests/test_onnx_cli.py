"""The ONNX commands: `profile/roofline model.onnx --optimized` (the file against the graph ONNX Runtime runs)
and `bench model.onnx [--per-op]` (ONNX Runtime's timing and profiler laid on the analysed nodes). The
counts of single operators are derived by hand in tests/test_onnx_frontend.py; here the bytes a fusion
saves are, and the timing's plumbing is checked (times themselves are the machine's)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from test_calibrated import make_spec
from torch import nn

import rooflens
from rooflens.cli import main

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


class ConvBnRelu(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.relu = nn.ReLU()
        self.head = nn.Linear(8 * 8 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.relu(self.bn(self.conv(x))), 1))


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("onnx") / "convbn.onnx"
    torch.manual_seed(0)
    torch.onnx.export(ConvBnRelu().eval(), (torch.randn(1, 3, 8, 8),), str(path), dynamo=False,
                      input_names=["x"], dynamic_axes={"x": {0: "batch"}})
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_optimized_graph_beside_the_file(capsys: pytest.CaptureFixture[str], model_file: Path) -> None:
    code, out, err = run(capsys, "profile", str(model_file), "-i", "1,3,8,8", "--optimized", "--ort-level",
                         "extended", "-f", "json")
    assert code == 0, err
    data = json.loads(out)
    exported, optimized = (row for row in data["comparison"]["rows"])
    # the exporter folds the BatchNorm into the conv: Conv + Relu + Flatten (free) + Gemm. ONNX Runtime's
    # extended level fuses Conv + Relu: the Relu's read and write of the conv's output disappear.
    # conv: 8 x 8 x 8 outputs x 27 = 13,824 MACs; Gemm 512 x 10 = 5,120 MACs; both graphs alike
    assert exported["macs"] == optimized["macs"] == 13_824 + 5_120
    # the Relu moved 8 x 8 x 8 fp32 in and out: 2 x 2,048 bytes
    assert exported["bytes"] - optimized["bytes"] == 2 * 2_048
    assert data["as_exported"]["total"]["macs"] == 13_824 + 5_120
    code, out, err = run(capsys, "roofline", str(model_file), "-i", "1,3,8,8", "--optimized", "--ort-level",
                         "extended", "--hw", "a4000", "-f", "json")
    assert code == 0, err
    rows = json.loads(out)["comparison"]["rows"]
    assert all(r["device"] == "a4000" and r["roofline_seconds"] > 0 for r in rows)


def test_optimized_table_golden(capsys: pytest.CaptureFixture[str], model_file: Path,
                                golden: Callable[[str, str], None]) -> None:
    code, out, err = run(capsys, "profile", str(model_file), "-i", "1,3,8,8", "--optimized", "--ort-level",
                         "extended", "--width", "150")
    assert code == 0, err
    golden("onnx_optimized.txt", out.replace(str(model_file), "convbn.onnx"))


def test_bench_onnx_per_node(capsys: pytest.CaptureFixture[str], model_file: Path) -> None:
    code, out, err = run(capsys, "bench", str(model_file), "-i", "2,3,8,8", "--batch", "1,2", "--per-op",
                         "--ort-level", "extended", "--iters", "5", "--warmup", "2", "--hw", "a4000",
                         "--no-energy", "-f", "json")
    assert code == 0, err
    data = json.loads(out)
    one, two = data["batches"]
    assert (one["batch_size"], two["batch_size"]) == (1, 2)
    assert one["runtime"].startswith("onnxruntime ") and one["provider"] == "CPUExecutionProvider"
    assert 0 < one["median_seconds"] <= one["p90_seconds"]
    profile = data["per_op"]
    # the optimised graph's nodes that compute: FusedConv and Gemm, each one analysed record, each timed
    assert profile["matched_records"] == profile["records"] == 2
    assert profile["record_events"] == ["/conv/Conv", "/head/Gemm"]
    assert all(s > 0 for s in profile["record_seconds"])
    # a module's measured time is its nodes' kernel time: the model's is all of them, the Flatten's included
    model = next(m for m in profile["modules"] if m["path"] == "")
    assert model["measured_seconds"] == pytest.approx(profile["profiled_seconds"])


def test_onnx_command_errors(capsys: pytest.CaptureFixture[str], model_file: Path) -> None:
    code, _, err = run(capsys, "bench", str(model_file), "--device", "mps", "-i", "1,3,8,8")
    assert code == 2 and "ONNX Runtime runs here on cpu or cuda" in err
    code, _, err = run(capsys, "bench", str(model_file), "--batch", "1,2")
    assert code == 2 and "give the input shapes with --input-size" in err
    code, _, err = run(capsys, "profile", "torchvision:resnet18", "--optimized")
    assert code == 2 and "--optimized is for an .onnx MODEL" in err


def test_calibrated_prediction_of_an_onnx_report_equals_the_torch_one(tmp_path: Path) -> None:
    # no BatchNorm: the torch model and its export then run the same operators (conv, ReLU, matrix product)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(512, 10)).eval()
    path = tmp_path / "plain.onnx"
    torch.onnx.export(model, (torch.randn(1, 3, 8, 8),), str(path), dynamo=False)
    spec = make_spec()  # tests/test_calibrated.py's hand-built measured CPU
    onnx_report = rooflens.analyze_onnx(path, hardware=spec)
    torch_report = rooflens.analyze(model, input_size=(1, 3, 8, 8), hardware=spec)
    assert onnx_report.calibrated is not None and torch_report.calibrated is not None
    assert set(onnx_report.calibrated.by_kind()) == set(torch_report.calibrated.by_kind()) == {"conv3x3", "add", "gemm"}
    # the same operators predicted alike; torch's Flatten is a module call (1 us on that device) with only a view
    # in it, charged to the first operator of the model; the export has no node for it
    ours, theirs = ([p.seconds for p in r.calibrated.ops] for r in (onnx_report, torch_report))
    assert ours[1:] == pytest.approx(theirs[1:], rel=1e-12) and theirs[0] - ours[0] == pytest.approx(1e-6)
    assert torch_report.calibrated.total_seconds - onnx_report.calibrated.total_seconds == pytest.approx(1e-6)


def test_compare_an_export_with_its_int8_quantization(capsys: pytest.CaptureFixture[str], model_file: Path,
                                                      tmp_path: Path) -> None:
    from rooflens.measurement.onnxrt import quantize_onnx

    int8 = quantize_onnx(model_file, output=tmp_path / "int8.onnx", mode="static", input_size=(1, 3, 8, 8),
                         calibration_batches=2)
    code, out, err = run(capsys, "compare", str(model_file), str(int8), "-i", "1,3,8,8", "--hw", "epyc-9654",
                         "-f", "json")
    assert code == 0, err
    fp32, q = json.loads(out)["rows"]
    assert fp32["macs"] == q["macs"] == 13_824 + 5_120  # the same products, in int8
    # weights: conv 8 x 27 + Linear 10 x 512 = 5,336 weights at 4 bytes and at 1 byte, the 18 biases 32-bit in
    # both (int32 in the int8 graph); on top in int8 its scales and zero points: per output channel of the
    # weights 18 x (4 + 1) = 90 bytes, of the biases 18 x 4 = 72, and a 5-byte pair per quantized activation
    assert fp32["weight_bytes"] == 5_354 * 4
    assert 5_336 + 18 * 4 + 90 + 72 < q["weight_bytes"] <= 5_336 + 18 * 4 + 90 + 72 + 20 * 5
    assert q["memory_peak_bytes"] is None
