"""fp32 against int8 with ONNX Runtime on this CPU: torchvision models exported to ONNX, quantized three ways.

Per model (torchvision, ``weights=None``: random weights, no download), in a temporary folder:
  fp32       ``torch.onnx.export(dynamo=False)``, opset 17, batch dimension symbolic ("N");
  int8 qdq   ``quantize_onnx(mode="static", format="qdq")``: QuantizeLinear/DequantizeLinear pairs, which
             ONNX Runtime fuses into QLinearConv/QGemm ... when it loads the model;
  int8 qop   ``quantize_onnx(mode="static", format="qoperator")``: QLinearConv, QLinearAdd ... written out;
  int8 dyn   ``quantize_onnx(mode="dynamic")``: int8 weights, activations quantized at run time
             (DynamicQuantizeLinear + ConvInteger/MatMulInteger); meant for transformers and RNNs, shown
             here to say what it does to a CNN.
Static calibration: MinMax over --calibration-batches random batches (uint8 activations, int8 weights,
per-channel): the scales are not representative of real data, so the "rel. err" column (relative L2
error of the logits against fp32 on one random input) says nothing about accuracy; the int8 graphs and
their speed are what a real calibration gives.

Every variant is timed with ``rooflens.measurement.onnxrt.measure_onnx`` (session at ONNX Runtime's
default level "all", --threads intra-op threads, --warmup untimed runs, then at least --iters runs and
--min-seconds of samples); the variants of a model are timed in turn, --rounds times, and each keeps its
best round's median (a round on a machine shared with other work can only be slowed down). Prints the
machine, a table (model, variant, median ms, p90 ms, speed-up against fp32 at the median, file MB,
rel. err), then one JSON line.

    python bench/onnx_int8.py [--models resnet18,mobilenet_v2] [--batch 1] [--threads 2] [--iters 50]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
import torchvision

from rooflens import analyze_onnx
from rooflens.measurement.onnxrt import measure_onnx, quantize_onnx

VARIANTS = ("fp32", "int8 qdq", "int8 qop", "int8 dyn")


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown CPU"
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def export(name: str, folder: Path) -> Path:
    torch.manual_seed(0)  # weights=None: random weights, the same ones every run
    model = getattr(torchvision.models, name)(weights=None).eval()
    path = folder / f"{name}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(model, (torch.randn(1, 3, 224, 224),), str(path), dynamo=False, opset_version=17,
                          input_names=["x"], output_names=["logits"], dynamic_axes={"x": {0: "N"}, "logits": {0: "N"}})
    return path


def logits(path: Path, x: Any) -> Any:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="resnet18,mobilenet_v2")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--iters", type=int, default=50)
    parser.add_argument("--min-seconds", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--calibration-batches", type=int, default=8)
    parser.add_argument("--roof", default="epyc-9654",
                        help="catalogue device whose roofline gives the speed-up the counts predict (default: the "
                        "server part of this VM's CPU family, fp32 7.37 TFLOP/s, int8 29.5 TOP/s, 460.8 GB/s)")
    args = parser.parse_args()

    size = (args.batch, 3, 224, 224)
    machine = {
        "cpu": cpu_name(), "logical_cpus": os.cpu_count(), "platform": platform.platform(),
        "python": platform.python_version(), "onnxruntime": ort.__version__, "torch": torch.__version__,
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
    print(f"machine: {machine['cpu']}, {machine['logical_cpus']} logical CPUs, {machine['platform']}")
    print(f"onnxruntime {ort.__version__} (CPUExecutionProvider), torch {torch.__version__}, "
          f"{args.threads} intra-op threads, input {size}, load average {machine['load_average']}")
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="rooflens-onnx-int8-") as tmp:
        folder = Path(tmp)
        for name in args.models.split(","):
            fp32 = export(name, folder)
            paths = {
                "fp32": fp32,
                "int8 qdq": quantize_onnx(fp32, output=folder / f"{name}.qdq.onnx", mode="static", format="qdq",
                                          input_size=(1, 3, 224, 224),
                                          calibration_batches=args.calibration_batches),
                "int8 qop": quantize_onnx(fp32, output=folder / f"{name}.qop.onnx", mode="static",
                                          format="qoperator", input_size=(1, 3, 224, 224),
                                          calibration_batches=args.calibration_batches),
                "int8 dyn": quantize_onnx(fp32, output=folder / f"{name}.dyn.onnx", mode="dynamic"),
            }
            x = np.random.default_rng(0).random(size, dtype=np.float32)
            reference = logits(fp32, x)
            best: dict[str, Any] = {}
            for _ in range(args.rounds):
                for variant, path in paths.items():
                    m = measure_onnx(path, input_size=size, threads=args.threads, warmup=args.warmup,
                                     iters=args.iters, min_seconds=args.min_seconds)
                    if variant not in best or m.median_seconds < best[variant].median_seconds:
                        best[variant] = m
            roofs = {v: analyze_onnx(path, input_size=size, hardware=args.roof) for v, path in paths.items()}
            for variant, path in paths.items():
                m = best[variant]
                report = roofs[variant]
                out = logits(path, x)
                rows.append({
                    "model": name, "variant": variant,
                    "median_ms": m.median_seconds * 1e3, "p90_ms": m.p90_seconds * 1e3,
                    "speedup": best["fp32"].median_seconds / m.median_seconds,
                    "file_mb": path.stat().st_size / 1e6,
                    "rel_err": float(np.linalg.norm(out - reference) / np.linalg.norm(reference)),
                    "iters": m.iters, "precision": report.precision.value, "macs": report.total().macs,
                    "weight_mb": report.weight_bytes / 1e6, "bytes_mb": report.total().bytes / 1e6,
                    "roofline_ms": report.roofline.total.seconds * 1e3,
                    "roofline_speedup": roofs["fp32"].roofline.total.seconds / report.roofline.total.seconds,
                })

    load_after = os.getloadavg() if hasattr(os, "getloadavg") else None
    print(f"load average at the end {load_after} (on {os.cpu_count()} CPUs: above ~0.5 others shared the cores)")
    print(f"roofline: rooflens.analyze_onnx of each file on {args.roof} (its int8 peak for the int8 graphs)")
    header = (f"{'model':<14}{'variant':<10}{'median ms':>10}{'p90 ms':>9}{'speed-up':>10}{'file MB':>9}"
              f"{'rel. err':>10}{'GMACs':>8}{'weights MB':>11}{'bytes MB':>10}{'roof speed-up':>14}")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['model']:<14}{r['variant']:<10}{r['median_ms']:>10.2f}{r['p90_ms']:>9.2f}{r['speedup']:>9.2f}x"
              f"{r['file_mb']:>9.2f}{r['rel_err']:>10.3f}{r['macs'] / 1e9:>8.3f}{r['weight_mb']:>11.2f}"
              f"{r['bytes_mb']:>10.2f}{r['roofline_speedup']:>13.2f}x")
    print(json.dumps({"bench": "onnx_int8", "machine": machine, "threads": args.threads, "input_size": size,
                      "rounds": args.rounds, "load_average_after": load_after, "rows": rows}, separators=(",", ":")))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
