"""The command line: `rooflens profile` in each format, -o, and one-line errors with exit status 2."""

from __future__ import annotations

import argparse
import csv
import io
import json
import platform
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rooflens import __version__
from rooflens.cli import input_size, main

MODEL_FILE = textwrap.dedent(
    """
    import torch
    from torch import nn


    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1)
            self.relu = nn.ReLU()
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(8, 10)

        def forward(self, x):
            return self.fc(self.pool(self.relu(self.conv(x))).flatten(1))


    class Broken(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            raise RuntimeError("boom in forward")


    class DataDependent(nn.Module):  # the output's size depends on the values: analysed by a real run

        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)

        def forward(self, x):
            y = self.conv(x)
            return y[y > 0]


    def make_net():
        return Net()


    def not_a_module():
        return 42


    def raises():
        raise ValueError("bad config")


    instance = Net()
    """
)


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "mymodel.py"
    path.write_text(MODEL_FILE)
    return path


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rooflens: error: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]


# ---- formats ----------------------------------------------------------------------------------------


def test_profile_table(capsys, model_file):
    code, out, err = run(capsys, "profile", f"{model_file}:Net", "--input-size", "1,3,32,32", "--width", "120")
    assert code == 0, err
    assert "Model:      Net" in out and "1×3×32×32 float32" in out
    assert "├─ conv" in out and "└─ fc" in out
    assert "Unsupported operators (FLOPs not counted, bytes counted):" in out
    assert max(len(line) for line in out.splitlines()) <= 120
    assert "\x1b[" not in out


def test_profile_depth_and_bytes(capsys, model_file):
    code, out, _ = run(capsys, "profile", f"{model_file}:make_net", "-i", "1x3x32x32", "--depth", "0",
                       "--bytes", "binary")
    assert code == 0
    assert "├─" not in out and "MiB = 2^20 bytes" in out and "KiB" in out


def test_profile_json(capsys, model_file):
    code, out, _ = run(capsys, "profile", f"{model_file}:Net", "-i", "1,3,32,32", "--format", "json",
                       "--convention", "exact", "--dtype", "float16")
    assert code == 0
    data = json.loads(out)
    assert data["model"] == "Net" and data["convention"] == "exact" and data["dtype"] == "float16"
    assert data["inputs"] == [{"shape": [1, 3, 32, 32], "dtype": "float16"}]
    assert data["total"]["macs"] > 0


def test_profile_csv(capsys, model_file):
    code, out, _ = run(capsys, "profile", f"{model_file}:Net", "-i", "1,3,32,32", "--format", "csv")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["path"] for r in rows] == ["", "conv", "relu", "pool", "fc"]
    assert int(rows[1]["macs"]) == 8 * 32 * 32 * 3 * 3 * 3  # Cout*H*W*Cin*K*K


def test_profile_markdown(capsys, model_file):
    code, out, _ = run(capsys, "profile", f"{model_file}:Net", "-i", "1,3,32,32", "-f", "markdown")
    assert code == 0
    assert out.startswith("## rooflens: Net")
    assert "| Module | Type | Params |" in out and "`conv`" in out


def test_output_file(capsys, model_file, tmp_path):
    for fmt, name in (("table", "t.txt"), ("json", "r.json"), ("csv", "m.csv"), ("markdown", "r.md")):
        target = tmp_path / name
        code, out, err = run(capsys, "profile", f"{model_file}:Net", "-i", "1,3,32,32", "-f", fmt, "-o", str(target))
        assert code == 0, err
        assert out == "" and f"wrote {target}" in err
        assert target.read_text(encoding="utf-8").strip()
    json.loads((tmp_path / "r.json").read_text())


def test_module_instance_and_meta(capsys, model_file):
    code, out, _ = run(capsys, "profile", f"{model_file}:instance", "-i", "1,3,32,32", "--meta", "-f", "json")
    assert code == 0
    assert json.loads(out)["params"]["nonzero"] is None  # built on meta: values unknown


def test_version(capsys):
    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.strip() == f"rooflens {__version__}"


# ---- errors -----------------------------------------------------------------------------------------


def test_unknown_torchvision_model(capsys):
    code, _, err = run(capsys, "profile", "torchvision:resnet5")
    assert_one_line_error(code, err, "unknown torchvision model 'resnet5'", "did you mean resnet50",
                          "torchvision:NAME, package.module:callable or path/to/file.py:callable")


def test_not_a_spec(capsys):
    code, _, err = run(capsys, "profile", "resnet50")
    assert_one_line_error(code, err, "did you mean torchvision:resnet50?")


def test_missing_file(capsys, tmp_path):
    code, _, err = run(capsys, "profile", f"{tmp_path / 'nope.py'}:Net", "-i", "1,3,32,32")
    assert_one_line_error(code, err, "nope.py", "does not exist")


def test_missing_attribute(capsys, model_file):
    code, _, err = run(capsys, "profile", f"{model_file}:Nett", "-i", "1,3,32,32")
    assert_one_line_error(code, err, "no attribute 'Nett'", "did you mean 'Net'")


def test_callable_raises_or_returns_non_module(capsys, model_file):
    code, _, err = run(capsys, "profile", f"{model_file}:raises", "-i", "1,3,32,32")
    assert_one_line_error(code, err, "raises()", "ValueError", "bad config")
    code, _, err = run(capsys, "profile", f"{model_file}:not_a_module", "-i", "1,3,32,32")
    assert_one_line_error(code, err, "not_a_module()", "int", "not a torch.nn.Module")


def test_input_size_that_does_not_fit(capsys, model_file):
    code, _, err = run(capsys, "profile", f"{model_file}:Net", "-i", "1,4,32,32")
    assert_one_line_error(code, err, "'conv'", "Conv2d", "[1, 4, 32, 32]")


def test_forward_that_raises(capsys, model_file):
    code, _, err = run(capsys, "profile", f"{model_file}:Broken", "-i", "1,4")
    assert_one_line_error(code, err, "RuntimeError", "boom in forward")


def test_no_input_size_for_a_file_model(capsys, model_file):
    code, _, err = run(capsys, "profile", f"{model_file}:Net")
    assert_one_line_error(code, err, "--input-size")


def test_bad_options(capsys, model_file):
    code, _, err = run(capsys, "profile", f"{model_file}:Net", "-i", "1,3,a")
    assert_one_line_error(code, err, "argument --input-size/-i", "1,3,224,224", "rooflens profile --help")
    code, _, err = run(capsys, "profile", f"{model_file}:Net", "-i", "1,3,32,32", "--dtype", "float17")
    assert_one_line_error(code, err, "float17")
    code, _, err = run(capsys, "profile", f"{model_file}:Net", "-i", "1,3,32,32", "-o", "/nonexistent/dir/x.txt")
    assert_one_line_error(code, err, "cannot write")


def test_input_size_parsing():
    assert input_size("1,3,224,224") == (1, 3, 224, 224)
    assert input_size("1x3x224x224") == (1, 3, 224, 224)
    assert input_size(" 2, 128 ") == (2, 128)
    for bad in ("", "1,,3", "1,0,3", "-1,3", "a"):
        with pytest.raises(argparse.ArgumentTypeError):
            input_size(bad)


def test_console_script(model_file):
    script = Path(sys.executable).with_name("rooflens")
    if not script.exists():
        pytest.skip("the rooflens console script is not installed (pip install -e .)")
    done = subprocess.run([str(script), "profile", f"{model_file}:Net", "-i", "1,4,32,32"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith("rooflens: error: ") and done.stderr.count("\n") == 1


# ---- roofline and hw ----------------------------------------------------------------------------------


def test_roofline_one_device(capsys, model_file):
    code, out, err = run(capsys, "roofline", f"{model_file}:Net", "-i", "1,3,32,32", "--hw", "a4000")
    assert code == 0, err
    assert "Hardware:   NVIDIA RTX A4000 (a4000): fp32 peak 19.20 TFLOP/s" in out
    assert "ridge point 42.9 FLOP/B" in out
    assert "Roofline time:" in out and "Bound share:" in out and "I/Ridge" in out


def test_roofline_json_and_precision(capsys, model_file):
    code, out, err = run(capsys, "roofline", f"{model_file}:Net", "-i", "1,3,32,32", "--hw", "a4000",
                         "--precision", "int8", "-f", "json")
    assert code == 0, err
    data = json.loads(out)
    assert data["precision"] == {"compute": "int8", "weight_bits": 8, "act_bits": 8, "kv_bits": None}
    assert data["roofline"]["peak_flops_per_s"] == 153.4e12
    # int8: the conv reads its 1x3x32x32 input at 1 byte per element
    conv = next(op for op in data["operators"] if op["op"] == "aten.convolution")
    assert conv["inputs"][0]["bits"] == 8
    assert conv["bytes_read"] == 3 * 32 * 32 + 8 * 3 * 3 * 3 + 8  # input + weight + bias, 1 byte each


def test_roofline_bits_flags(capsys, model_file):
    code, out, err = run(capsys, "roofline", f"{model_file}:Net", "-i", "1,3,32,32", "--peak", "19.2T",
                         "--bandwidth", "448G", "--weight-bits", "4", "--act-bits", "16", "-f", "json")
    assert code == 0, err
    data = json.loads(out)
    assert data["precision"] == {"compute": "fp32", "weight_bits": 4, "act_bits": 16, "kv_bits": None}
    assert data["roofline"]["ridge_point"] == pytest.approx(42.857, abs=1e-3)
    assert data["roofline"]["hardware"]["kind"] == "custom"


def test_roofline_comparison(capsys, model_file):
    code, out, err = run(capsys, "roofline", f"{model_file}:Net", "-i", "1,3,32,32", "--hw", "t4,a4000",
                         "--hw", "h100", "--precision", "bf16")
    assert code == 0, err
    lines = out.splitlines()
    assert "Roofline time" in out and "Weights fit" in out
    assert any(line.startswith("t4 ") and "fp32 (for bf16)" in line for line in lines)
    assert any(line.startswith("h100-sxm ") and "990 T" in line for line in lines)
    assert "t4: NVIDIA T4 has no bf16 peak; the fp32 peak is used instead" in out
    code, out, _ = run(capsys, "roofline", f"{model_file}:Net", "-i", "1,3,32,32", "--hw", "t4,a4000", "-f", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["device"] for r in rows] == ["t4", "a4000"]
    assert float(rows[1]["ridge_point"]) == pytest.approx(42.857, abs=1e-3)


def test_roofline_hardware_file_and_plot(capsys, model_file, tmp_path):
    hw_file = tmp_path / "npu.toml"
    hw_file.write_text(
        '[[device]]\nid = "my-npu"\nname = "My NPU"\nvendor = "me"\nkind = "npu"\nbandwidth = "25.6 GB/s"\n'
        'source = "my measurements"\n[device.peak]\nint8 = "4 TOP/s"\n'
    )
    plot = tmp_path / "rl.svg"
    code, out, err = run(capsys, "roofline", f"{model_file}:Net", "-i", "1,3,32,32", "--hw", str(hw_file),
                         "--precision", "int8", "--plot", str(plot))
    assert code == 0, err
    assert "My NPU (my-npu): int8 peak 4.00 TFLOP/s" in out
    assert f"wrote {plot}" in err and plot.stat().st_size > 0


def test_roofline_errors(capsys, model_file):
    base = ("roofline", f"{model_file}:Net", "-i", "1,3,32,32")
    assert_one_line_error(*run(capsys, *base)[::2], "say which device")
    assert_one_line_error(*run(capsys, *base, "--hw", "a4001")[::2], "unknown hardware 'a4001'", "did you mean")
    assert_one_line_error(*run(capsys, *base, "--hw", "hi3519av100-nnie")[::2], "no memory bandwidth is published")
    assert_one_line_error(*run(capsys, *base, "--peak", "19.2T", "--bandwidth", "448 TFLOP/s")[::2],
                          "--bandwidth", "is not bytes/s")
    assert_one_line_error(*run(capsys, *base, "--hw", "missing.toml")[::2], "cannot read hardware file")
    code, _, err = run(capsys, *base, "--hw", "a4000", "--weight-bits", "0")
    assert code == 2 and "give 1 to 64" in err


def test_hw_list_and_show(capsys, tmp_path):
    code, out, err = run(capsys, "hw", "list", "--width", "200")
    assert code == 0, err
    first = [line.split()[0] for line in out.splitlines()[2:] if line and not line.startswith(" ")]
    for device in ("a4000", "t4", "l4", "h100-sxm", "jetson-orin-nano", "rpi5", "hi3519av100-nnie"):
        assert device in first
    l4 = next(line for line in out.splitlines() if line.startswith("l4 "))
    assert "300 GB/s" in l4
    code, out, _ = run(capsys, "hw", "list", "--kind", "cpu", "-f", "json")
    assert {d["kind"] for d in json.loads(out)} == {"cpu"}
    code, out, _ = run(capsys, "hw", "show", "h100")
    assert code == 0 and "Peak bf16: 989.50 TFLOP/s (dense)" in out and "Source:" in out
    code, out, _ = run(capsys, "hw", "show", "a4000", "-f", "toml")
    saved = tmp_path / "a4000.toml"
    saved.write_text(out)
    code, out, _ = run(capsys, "hw", "show", str(saved), "-f", "json")
    assert code == 0 and json.loads(out)["bandwidth_bytes_per_s"] == 448e9
    assert_one_line_error(*run(capsys, "hw", "show", "nope")[::2], "unknown hardware 'nope'")


# ---- bench ---------------------------------------------------------------------------------------------


def test_bench_batches_json(capsys, model_file):
    code, out, err = run(capsys, "bench", f"{model_file}:Net", "-i", "1,3,16,16", "--batch", "1,2", "--iters", "3",
                         "--warmup", "1", "--threads", "1", "--hw", "a4000", "-f", "json")
    assert code == 0, err
    data = json.loads(out)
    assert [b["batch_size"] for b in data["batches"]] == [1, 2]
    for b in data["batches"]:
        assert b["iters"] >= 3 and b["median_seconds"] > 0
        assert b["throughput_per_s"] == pytest.approx(b["batch_size"] / b["median_seconds"])
        assert b["achieved"]["roofline_seconds"] > 0
        assert b["achieved"]["efficiency"] == pytest.approx(b["achieved"]["roofline_seconds"] / b["median_seconds"])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="--keep-memory sets glibc's variables")
def test_bench_keep_memory_measures_in_a_process_started_with_glibc_keeping_memory(capfd, model_file, monkeypatch):
    from rooflens.measurement.timer import ALLOCATOR_VARIABLES

    for name in ALLOCATOR_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    code = main(["bench", f"{model_file}:Net", "-i", "1,3,16,16", "--iters", "3", "--warmup", "1", "--threads", "1",
                 "--keep-memory", "--no-energy", "-f", "json"])
    out, err = capfd.readouterr()  # the child process writes to the same file descriptors
    assert code == 0, err
    data = json.loads(out)
    assert data["allocator"] == {"MALLOC_MMAP_THRESHOLD_": "1000000000", "MALLOC_TRIM_THRESHOLD_": "1000000000"}
    assert data["batches"][0]["page_faults_per_call"] >= 0
    code = main(["bench", f"{model_file}:Net", "-i", "1,3,16,16", "--iters", "3", "--warmup", "1", "--no-energy",
                 "-f", "json"])
    out, err = capfd.readouterr()
    assert code == 0, err
    assert json.loads(out)["allocator"] == {}  # as this process runs (the test removed the variables)


def test_bench_per_op_table(capsys, model_file):
    code, out, err = run(capsys, "bench", f"{model_file}:Net", "-i", "1,3,16,16", "--iters", "2", "--warmup", "1",
                         "--threads", "1", "--per-op", "--hw", "a4000", "--width", "160")
    assert code == 0, err
    assert "Median" in out and "Samples/s" in out and "Efficiency" in out
    assert "per module at batch 1" in out and "conv" in out
    assert "analysed operators matched to profiled events" in out
    assert "USDT" not in err and "profiler_start" not in out


def test_bench_on_a_measured_device_shows_the_calibrated_prediction(capsys, model_file, tmp_path):
    from test_calibrated import make_spec

    hw_file = tmp_path / "measured.toml"
    hw_file.write_text(make_spec().to_toml(), encoding="utf-8")
    base = ("bench", f"{model_file}:Net", "-i", "1,3,16,16", "--iters", "3", "--warmup", "1", "--threads", "1",
            "--hw", str(hw_file))
    code, out, err = run(capsys, *base, "-f", "json")
    assert code == 0, err
    (batch,) = json.loads(out)["batches"]
    assert batch["calibrated_seconds"] > batch["achieved"]["roofline_seconds"] > 0
    code, out, err = run(capsys, *base, "--width", "200")
    assert code == 0, err
    header = next(line for line in out.splitlines() if line.startswith("Batch"))
    assert header.split()[-2:] == ["Calibrated", "Error"]
    row = next(line for line in out.splitlines() if line.lstrip().startswith("1 "))
    assert re.search(r"[+-]\d+\.\d%$", row.rstrip()), row


def test_bench_errors(capsys, model_file):
    assert_one_line_error(*run(capsys, "bench", f"{model_file}:Net")[::2], "give its input shape with --input-size")
    code, _, err = run(capsys, "bench", f"{model_file}:Net", "-i", "1,3,8,8", "--batch", "0")
    assert code == 2 and "positive" in err


# ---- memory --------------------------------------------------------------------------------------------


def test_memory_inference_and_training(capsys, model_file):
    code, out, err = run(capsys, "memory", f"{model_file}:Net", "-i", "1,3,32,32")
    assert code == 0, err
    # peak at relu: input 3*32*32*4 = 12,288 + conv output 8*32*32*4 = 32,768 + relu output 32,768 = 77,824 B
    assert "Peak:        77.82 KB of live tensors at relu (aten.relu)" in out
    assert "Forward/backward pass size" in out and "MiB" in out
    code, out, err = run(capsys, "memory", f"{model_file}:Net", "-i", "1,3,32,32", "--batch", "4", "--train",
                         "--optimizer", "adam", "-f", "json")
    assert code == 0, err
    data = json.loads(out)
    params = 8 * 3 * 3 * 3 + 8 + 8 * 10 + 10  # conv 224 + fc 90 = 314
    assert data["optimizer_state_bytes"] == 2 * params * 4  # Adam: two fp32 numbers per parameter
    assert data["gradient_bytes"] == params * 4
    assert data["inputs_bytes"] == 4 * 3 * 32 * 32 * 4  # batch 4


def test_memory_errors_and_profile_summary(capsys, model_file):
    assert_one_line_error(*run(capsys, "memory", f"{model_file}:Net", "-i", "1,3,8,8", "--checkpoint", "conv")[::2],
                          "add --train")
    code, out, err = run(capsys, "profile", f"{model_file}:Net", "-i", "1,3,32,32", "--summary", "--width", "120")
    assert code == 0, err
    assert "Estimated total size" in out and "Peak from the timeline" in out


# ---- hw bench and calibrated predictions -------------------------------------------------------------


@pytest.fixture
def fake_benchmark(monkeypatch):
    """`rooflens hw bench` without the minute of measuring: benchmark() returns the hand-built device of
    test_calibrated and records how it was called (the real run is tested in test_microbench)."""
    from test_calibrated import make_spec

    from rooflens import measurement

    calls = []

    def fake(**options):
        calls.append(options)
        options["progress"]("gemm fp32", 0.5)
        return make_spec()

    monkeypatch.setattr(measurement, "benchmark", fake)
    return calls


def test_hw_bench_saves_a_device_that_roofline_calibrated_reads(capsys, model_file, tmp_path, fake_benchmark):
    saved = tmp_path / "this.toml"
    code, out, err = run(capsys, "hw", "bench", "--quick", "--threads", "1", "--dtypes", "fp32,bf16",
                         "--save", str(saved))
    assert code == 0, err
    assert fake_benchmark[0]["quick"] is True and fake_benchmark[0]["threads"] == 1
    assert fake_benchmark[0]["dtypes"] == ["fp32", "bf16"] and fake_benchmark[0]["device"] == "cpu"
    assert "Kind:" in out and "measured" in out and "Peak fp32:" in out and "100.00 GFLOP/s" in out
    assert "op_overhead_seconds:" in out and "2.00 µs" in out
    assert "micro-benchmark points: gemm_fp32 (2), gemv_fp32 (2), relu__fp32 (2), add_fp32 (2)" in out
    assert f"wrote {saved}" in err

    code, out, err = run(capsys, "roofline", f"{model_file}:Net", "-i", "1,3,32,32", "--hw", str(saved),
                         "--calibrated", "--width", "200")
    assert code == 0, err
    assert "Roofline time:" in out and "Calibrated time:" in out and "Calibrated parts:" in out
    header = next(line for line in out.splitlines() if line.startswith("Module"))
    assert "Time" in header and "Calibrated" in header

    code, out, err = run(capsys, "roofline", f"{model_file}:Net", "-i", "1,3,32,32", "--hw", str(saved),
                         "--calibrated", "-f", "json")
    data = json.loads(out)
    assert data["calibrated"]["total_seconds"] > data["roofline"]["total"]["seconds"] > 0
    # with a datasheet device beside it: one row each, the calibrated column filled where it can be
    code, out, err = run(capsys, "roofline", f"{model_file}:Net", "-i", "1,3,32,32", "--hw", f"{saved},a4000",
                         "--width", "200")
    assert code == 0, err
    assert "Calibrated" in out
    row = next(line for line in out.splitlines() if line.startswith("a4000 "))
    assert re.search(r"s +- +[\d.]+%", row), row  # roofline time, no calibrated time, memory-bound share


def test_hw_bench_formats(capsys, fake_benchmark):
    code, out, err = run(capsys, "hw", "bench", "-f", "json")
    assert code == 0, err
    data = json.loads(out)
    assert data["kind"] == "measured" and data["peak_flops_per_s"] == {"fp32": 100e9}
    code, out, err = run(capsys, "hw", "bench", "-f", "toml")
    assert code == 0 and out.startswith("[[device]]") and 'kind = "measured"' in out
    code, out, err = run(capsys, "hw", "bench", "-f", "markdown")
    assert code == 0 and "- **Kind**: measured" in out and "rooflens roofline MODEL --hw FILE.toml" in out


def test_calibrated_needs_a_measured_device(capsys, model_file):
    code, _, err = run(capsys, "roofline", f"{model_file}:Net", "-i", "1,3,32,32", "--hw", "a4000", "--calibrated")
    assert_one_line_error(code, err, "NVIDIA RTX A4000 (a4000) has no micro-benchmark curves", "rooflens hw bench")
    code, _, err = run(capsys, "hw", "bench", "--threads", "0")
    assert code == 2 and "--threads" in err


# ---- one meaning per flag ------------------------------------------------------------------------------

NET_PARAMS = 8 * 3 * 3 * 3 + 8 + 8 * 10 + 10  # Net: conv 224 + fc 90 = 314


def test_a_real_run_gives_the_same_json_twice(capsys, model_file):
    """The fall-back for a data-dependent model runs on random weights and inputs: seeded, so the counts
    (how many outputs are > 0) and everything else repeat byte for byte."""
    for argv in (("profile", "-f", "json"), ("memory", "-f", "json"), ("roofline", "--hw", "a4000", "-f", "json")):
        outputs = []
        for _ in range(2):
            code, out, err = run(capsys, argv[0], f"{model_file}:DataDependent", "-i", "1,3,8,8", *argv[1:])
            assert code == 0, err
            outputs.append(out)
        assert outputs[0] == outputs[1], argv
    data = json.loads(outputs[0])
    assert data["executed"] == "real"
    (shape,) = data["modules"][0]["output_shapes"]
    assert len(shape) == 1 and 0 < shape[0] < 4 * 8 * 8  # the values > 0 of the 1x4x8x8 conv output


def test_json_with_summary_is_pure_json(capsys, model_file):
    code, out, err = run(capsys, "profile", f"{model_file}:Net", "-i", "1,3,32,32", "-f", "json", "--summary")
    assert code == 0, err
    data = json.loads(out)  # nothing after the document
    summary = data["memory_summary"]
    assert summary["input_bytes"] == 3 * 32 * 32 * 4  # torchsummary: 4 bytes a number
    assert summary["params_bytes"] == NET_PARAMS * 4
    assert data["total"]["macs"] > 0
    code, out, err = run(capsys, "profile", f"{model_file}:Net", "-i", "1,3,32,32", "-f", "markdown", "--summary")
    assert code == 0 and "Estimated total size" in out and out.startswith("## rooflens: Net")
    assert_one_line_error(*run(capsys, "profile", f"{model_file}:Net", "-i", "1,3,32,32", "-f", "csv",
                               "--summary")[::2], "--summary", "CSV")


def test_memory_options_that_do_not_apply_are_errors(capsys, model_file):
    base = ("memory", f"{model_file}:Net", "-i", "1,3,8,8")
    code, _, err = run(capsys, *base, "--convention", "exact")
    assert_one_line_error(code, err, "unrecognized arguments: --convention exact")
    for extra in (("--optimizer", "adam"), ("--mixed-precision",), ("--checkpoint", "conv")):
        assert_one_line_error(*run(capsys, *base, *extra)[::2], f"{extra[0]} applies to a training step: add --train")
    assert_one_line_error(*run(capsys, *base, "--precision", "mixed")[::2], "invalid choice: 'mixed'")


def test_precision_is_the_compute_precision_in_every_command(capsys, model_file):
    base = (f"{model_file}:Net", "-i", "1,3,32,32", "-f", "json")
    code, out, err = run(capsys, "memory", *base)
    assert code == 0, err
    assert json.loads(out)["weights_bytes"] == NET_PARAMS * 4
    code, out, err = run(capsys, "memory", *base, "--precision", "fp16")
    assert code == 0, err
    assert json.loads(out)["weights_bytes"] == NET_PARAMS * 2  # 16 bits in memory
    code, out, err = run(capsys, "memory", *base, "--precision", "int8", "--weight-bits", "4")
    data = json.loads(out)
    assert data["weights_bytes"] == NET_PARAMS // 2 and data["inputs_bytes"] == 3 * 32 * 32  # 4-bit weights, 8-bit rest
    code, out, err = run(capsys, "profile", *base, "--precision", "int8")
    assert code == 0, err
    assert json.loads(out)["precision"] == {"compute": "int8", "weight_bits": 8, "act_bits": 8, "kv_bits": None}


def test_mixed_precision_training(capsys, model_file):
    code, out, err = run(capsys, "memory", f"{model_file}:Net", "-i", "1,3,32,32", "--train", "--optimizer", "adam",
                         "--mixed-precision", "-f", "json")
    assert code == 0, err
    data = json.loads(out)
    assert data["mixed_precision"] is True
    assert data["master_weights_bytes"] == NET_PARAMS * 4  # fp32 copies of the 16-bit weights
    assert data["optimizer_state_bytes"] == 2 * NET_PARAMS * 4  # Adam, in fp32
    assert data["weights_bytes"] == NET_PARAMS * 2


def test_batch_is_the_same_option_everywhere(capsys, model_file):
    bench_code, _, bench_err = run(capsys, "bench", f"{model_file}:Net", "-i", "1,3,8,8", "--batch", "0")
    memory_code, _, memory_err = run(capsys, "memory", f"{model_file}:Net", "-i", "1,3,8,8", "--batch", "0")
    assert bench_code == memory_code == 2
    assert bench_err.split("(see")[0] == memory_err.split("(see")[0]  # one parser, one message
    assert "batch sizes must be positive integers" in bench_err
    code, out, err = run(capsys, "memory", f"{model_file}:Net", "-i", "1,3,8,8", "--batch", "3", "-f", "json")
    assert code == 0, err
    assert json.loads(out)["inputs_bytes"] == 3 * 3 * 8 * 8 * 4
    assert_one_line_error(*run(capsys, "memory", f"{model_file}:Net", "-i", "1,3,8,8", "--batch", "1,2")[::2],
                          "one batch size")


@pytest.mark.parametrize("command", [
    ("roofline", "MODEL", "-i", "1,3,8,8"), ("bench", "MODEL", "-i", "1,3,8,8"), ("hw", "list"),
])
@pytest.mark.parametrize("value", ["", " ", "a4000,,t4", ","])
def test_empty_hw_is_a_one_line_error(capsys, model_file, command, value):
    argv = [f"{model_file}:Net" if a == "MODEL" else a for a in command]
    code, _, err = run(capsys, *argv, "--hw", value)
    assert_one_line_error(code, err, "argument --hw", repr(value))


def test_hw_has_one_grammar(capsys, model_file, tmp_path, fake_benchmark):
    hw_file = tmp_path / "npu.toml"
    hw_file.write_text(
        '[[device]]\nid = "my-npu"\nname = "My NPU"\nvendor = "me"\nkind = "npu"\nbandwidth = "25.6 GB/s"\n'
        'source = "my measurements"\n[device.peak]\nint8 = "4 TOP/s"\n'
    )
    names = f"a4000,{hw_file},this"
    code, out, err = run(capsys, "roofline", f"{model_file}:Net", "-i", "1,3,32,32", "--hw", names, "-f", "json")
    assert code == 0, err
    assert [d["device"] for d in json.loads(out)["devices"]] == ["a4000", "my-npu", make_spec_id()]
    assert fake_benchmark[-1]["quick"] is True  # `this`: measured now, quickly
    code, out, err = run(capsys, "hw", "show", names, "-f", "json")
    assert code == 0, err
    assert [d["id"] for d in json.loads(out)] == ["a4000", "my-npu", make_spec_id()]
    code, out, err = run(capsys, "hw", "list", "--hw", names, "--kind", "gpu", "-f", "csv")
    ids = [r["ID"] for r in csv.DictReader(io.StringIO(out))]
    assert ids.count("a4000") == 1 and "my-npu" not in ids  # listed once; the NPU is not a GPU
    assert_one_line_error(*run(capsys, "bench", f"{model_file}:Net", "-i", "1,3,8,8", "--hw", "a4000,t4")[::2],
                          "one device", "a4000, t4")


def make_spec_id() -> str:
    from test_calibrated import make_spec

    return make_spec().id


COMMANDS = {  # a command of each kind of output, and the formats it has
    "profile": ("profile", "MODEL", "-i", "1,3,16,16"),
    "roofline": ("roofline", "MODEL", "-i", "1,3,16,16", "--hw", "a4000"),
    "devices": ("roofline", "MODEL", "-i", "1,3,16,16", "--hw", "a4000,t4"),
    "compare": ("compare", "MODEL", "MODEL", "-i", "1,3,16,16", "--hw", "a4000,t4"),
    "energy": ("energy", "MODEL", "-i", "1,3,16,16"),
    "advise": ("advise", "MODEL", "-i", "1,3,16,16", "--hw", "a4000"),
    "memory": ("memory", "MODEL", "-i", "1,3,16,16"),
    "bench": ("bench", "MODEL", "-i", "1,3,8,8", "--iters", "1", "--warmup", "1", "--threads", "1", "--hw", "a4000"),
    "hw list": ("hw", "list", "--kind", "cpu"),
    "hw show": ("hw", "show", "a4000,t4"),
}


def test_format_names_are_the_same_everywhere():
    from rooflens.cli import build_parser
    from rooflens.report.document import FORMATS

    def formats(parser):  # (command, its --format choices) of every (sub-)command
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    yield from formats(sub)
            elif "--format" in action.option_strings:
                yield parser.prog.removeprefix("rooflens "), tuple(action.choices)

    found = dict(formats(build_parser()))
    assert set(found) == {"profile", "roofline", "compare", "energy", "advise", "llm", "bench", "memory", "hw list",
                          "hw show", "hw bench", "hw calibrate"}
    for command, names in found.items():
        assert names == tuple(f for f in FORMATS if f in names), command  # FORMATS' names, in its order
        assert names[:2] == ("table", "json") and "markdown" in names and "html" in names, command


@pytest.mark.parametrize("kind", list(COMMANDS))
def test_every_format_of_every_command(capsys, model_file, kind):
    argv = [f"{model_file}:Net" if a == "MODEL" else a for a in COMMANDS[kind]]
    for fmt in ("table", "json", "csv", "markdown", "html", "toml"):
        code, out, err = run(capsys, *argv, "-f", fmt, "--width", "150")
        if code == 2:
            assert "invalid choice" in err and fmt in ("csv", "toml"), (kind, fmt, err)
            continue
        assert code == 0 and err == "", (kind, fmt, err)
        if fmt == "json":
            json.loads(out)
        elif fmt == "csv":
            rows = list(csv.reader(io.StringIO(out)))
            assert len(rows) >= 2 and len({len(r) for r in rows}) == 1, out
        elif fmt == "toml":
            import tomllib

            assert tomllib.loads(out)["device"]
        elif fmt == "html":
            assert out.startswith("<!DOCTYPE html>") and out.endswith("</html>\n")
        elif fmt == "markdown":
            assert out.lstrip().startswith(("## ", "- **", "|")) and "\x1b[" not in out
        else:
            assert max(len(line) for line in out.splitlines()) <= 150 and "\x1b[" not in out


def test_bytes_is_honoured_where_it_is_accepted(capsys, model_file):
    code, out, _ = run(capsys, "memory", f"{model_file}:Net", "-i", "1,3,32,32", "--bytes", "binary")
    assert code == 0 and f"{3 * 32 * 32 * 4 / 1024:.2f} KiB" in out  # the input: 12,288 B
    code, out, _ = run(capsys, "hw", "list", "--bytes", "binary", "--width", "200")
    a4000 = next(line for line in out.splitlines() if line.startswith("a4000 "))
    assert f"{16e9 / 2**30:.1f} GiB" in a4000 and f"{448e9 / 2**30:.0f} GiB/s" in a4000
    code, out, _ = run(capsys, "hw", "show", "a4000", "--bytes", "binary")
    assert f"Bandwidth: {448e9 / 2**30:.2f} GiB/s" in out


CHECKS_FILE = """
import torch
from torch import nn

class Checks(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        if (x > -1e30).all():  # a yes/no read of the values, as a padding check is
            return self.fc(x)
        return x

def build():
    return Checks()
"""


def test_value_checks_on_meta(capsys, tmp_path):
    path = tmp_path / "checks.py"
    path.write_text(CHECKS_FILE)
    code, out, _ = run(capsys, "profile", f"{path}:build", "-i", "2,4", "--meta", "-f", "json")
    assert code == 0
    report = json.loads(out)
    assert report["total"]["macs"] == 2 * 4 * 4  # the check passed: fc ran (32 MACs)
    assert any("assumed that a value check" in d for d in report["diagnostics"])
    code, _, err = run(capsys, "profile", f"{path}:build", "-i", "2,4", "--meta", "--value-checks", "error")
    assert_one_line_error(code, err, "aten._local_scalar_dense", "meta device")
