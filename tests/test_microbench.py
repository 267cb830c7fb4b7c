"""Micro-benchmarks (``rooflens hw bench``): quick mode gives a measured HardwareSpec with plausible
figures for a CPU, keeps its curves, and its TOML round-trips through the catalogue loader.

The bounds are wide on purpose: any CPU from a laptop core to a big server socket falls inside them,
and a shared CI machine that is slowed down by other work still does; a unit slip (FLOP/s read as
GFLOP/s, bytes as bits, seconds as microseconds) does not.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
import torch
from torch import nn

import rooflens
import rooflens.hardware as hw
from rooflens.errors import HardwareError
from rooflens.hardware import HardwareSpec, Kind, Precision
from rooflens.measurement.microbench import benchmark, robust_median


@pytest.fixture(scope="module")
def measured() -> tuple[HardwareSpec, list[tuple[str, float]], int]:
    before = torch.get_num_threads()
    stages: list[tuple[str, float]] = []
    spec = benchmark(quick=True, dtypes=["float32"], threads=1, progress=lambda s, f: stages.append((s, f)))
    return spec, stages, before


def test_quick_mode_gives_a_measured_spec(measured):
    spec, _, _ = measured
    assert spec.kind is Kind.MEASURED
    assert spec.id.startswith("measured-") and re.fullmatch(r"[a-z0-9][a-z0-9._-]*", spec.id)
    assert spec.name.endswith("(1 thread, measured)")
    assert spec.extra["torch"] == torch.__version__
    assert spec.extra["date"] == dt.date.today().isoformat()
    assert spec.extra["threads"] == 1
    assert spec.extra["quick"] is True
    assert torch.__version__ in spec.source and spec.extra["date"] in spec.source


def test_quick_mode_numbers_are_plausible_for_a_cpu(measured):
    spec, _, _ = measured
    assert list(spec.peak_flops_per_s) == [Precision.FP32]  # only the dtype asked for
    assert 1e9 <= spec.peak_flops(Precision.FP32) <= 10e12  # 1 GFLOP/s .. 10 TFLOP/s
    assert 1e9 <= spec.bandwidth_bytes_per_s <= 500e9  # 1 .. 500 GB/s
    assert 100e-9 <= spec.extra["op_overhead_seconds"] <= 1e-3  # 100 ns .. 1 ms per eager op
    assert 0 <= spec.extra["module_call_seconds"] <= 1e-3
    assert spec.memory_bytes is None or spec.memory_bytes >= 64 * 2**20
    # the peak is the best point of the GEMM curve; rows are [flops, bytes, seconds], sizes increasing
    gemm = spec.extra["gemm_fp32"]
    assert max(f / t for f, _, t in gemm) == spec.peak_flops(Precision.FP32)
    assert [row[0] for row in gemm] == sorted(row[0] for row in gemm)
    # points are counted as rooflens counts operators: the smallest quick GEMM, 32 x 32 @ 32 x 32, does
    # 2 x 32^3 = 65,536 FLOPs and moves 3 x 32^2 x 4 = 12,288 bytes; add on 1 x 64 x 1 x 1 tensors does 64
    # FLOPs and moves 3 x 64 x 4 = 768 bytes; a 1x1 convolution of 16 to 4 channels on 1 pixel does
    # 2 x 16 x 4 = 128 FLOPs and moves (16 + 4 + 16 x 4) x 4 = 336 bytes
    assert gemm[0][:2] == [65_536.0, 12_288.0]
    assert spec.extra["add_fp32"][0][:2] == [64.0, 768.0]
    assert spec.extra["conv1x1_fp32"][0][:2] == [128.0, 336.0]
    for key in ("conv3x3_fp32", "conv1x1_fp32", "dwconv3x3_fp32", "gconv3x3_fp32"):
        rows = spec.extra[key]  # [flops, bytes, seconds, output pixels, out/in channels]
        assert rows and all(len(r) == 5 and min(r) > 0 for r in rows), key
    assert {r[4] for r in spec.extra["conv1x1_fp32"]} == {0.25, 1.0, 4.0}
    for key in ("gemv_fp32", "relu__fp32", "add_fp32", "batchnorm_fp32", "layernorm_fp32", "sigmoid_fp32",
                "gelu_fp32", "maxpool_fp32", "mean_fp32", "cat_fp32", "copy_fp32", "triad_fp32"):
        rows = spec.extra[key]
        assert rows and all(len(r) == 3 and r[1] > 0 and r[2] > 0 for r in rows), key
        assert [r[1] for r in rows] == sorted(r[1] for r in rows), key
    for key in ("alloc_fp32", "sequence_fp32"):  # extra seconds: 0 where there is none
        rows = spec.extra[key]
        assert rows and all(len(r) == 3 and r[1] > 0 and 0 <= r[2] < 1 for r in rows), key
    # the bandwidth is the better of copy and triad at the largest working set
    assert spec.bandwidth_bytes_per_s == max(spec.extra["bandwidth_copy_bytes_per_s"],
                                            spec.extra["bandwidth_triad_bytes_per_s"])


def test_progress_is_reported_and_threads_restored(measured):
    _, stages, before = measured
    assert torch.get_num_threads() == before
    assert stages[0] == ("overhead", 0.0) and stages[-1] == ("done", 1.0)
    fractions = [f for _, f in stages]
    assert fractions == sorted(fractions) and all(0.0 <= f <= 1.0 for f in fractions)
    assert {"gemm fp32", "gemv", "convolution", "operators", "bandwidth", "sequence"} <= {s for s, _ in stages}


def test_saved_toml_round_trips(measured, tmp_path: Path):
    spec, _, _ = measured
    path = tmp_path / "measured.toml"
    path.write_text(spec.to_toml(), encoding="utf-8")
    (loaded,) = hw.load_file(path)
    assert loaded.as_dict() == spec.as_dict()
    assert loaded.extra["gemm_fp32"] == spec.extra["gemm_fp32"]  # floats survive exactly
    # and it is usable anywhere a catalogue device is
    try:
        hw.register(loaded)
        assert hw.get(spec.id) is loaded
    finally:
        hw.reset()


def test_the_measured_spec_calibrates_end_to_end(measured):
    # the quick micro-benchmark of this machine gives a usable calibration: a report on it carries a
    # calibrated estimate whose operators add up to its total
    spec, _, _ = measured
    r = rooflens.analyze(nn.Sequential(nn.Conv2d(3, 16, 3), nn.BatchNorm2d(16).eval(), nn.ReLU(inplace=True)),
                         input_size=(1, 3, 32, 32), hardware=spec)
    pred = r.calibrated
    assert pred is not None and pred.total_seconds > 0
    assert all(p.seconds > 0 for p in pred.ops)
    assert pred.total_seconds == pytest.approx(sum(p.seconds for p in pred.ops))
    assert [p.kind for p in pred.ops] == ["conv3x3", "batchnorm", "relu_"]


def test_robust_median_ignores_stalled_repetitions():
    # three clean repetitions around 1.0 ms and two preempted ones at 9 ms: the plain median would be 1.02
    # with one stall, but with three of five stalled it would be 9; the robust one keeps the clean ones
    assert robust_median([1.00e-3, 9.0e-3, 1.02e-3, 9.1e-3, 1.04e-3]) == pytest.approx(1.02e-3)
    assert robust_median([1.0e-3, 9.0e-3, 9.0e-3, 9.1e-3, 1.1e-3]) == pytest.approx(1.05e-3)
    assert robust_median([2.0, 2.0, 2.0]) == 2.0


def test_bad_arguments_are_clear():
    with pytest.raises(HardwareError, match="threads"):
        benchmark(threads=0)
    with pytest.raises(HardwareError, match="unknown dtype 'float7'"):
        benchmark(dtypes=["float7"])
    with pytest.raises(HardwareError, match="only 'cpu' and 'cuda'"):
        benchmark(device="mps" if not torch.backends.mps.is_available() else "xla")
