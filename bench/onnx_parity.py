"""The ONNX front-end against the torch one: every torchvision classifier, exported, gives the same MACs.

Per model (``torchvision.models.list_models(module=torchvision.models)``, ``weights=None``: random
weights, nothing downloaded): build it in eval mode, count it with ``rooflens.analyze`` (fake tensors),
export it with ``torch.onnx.export`` (the TorchScript exporter by default, ``--exporter dynamo`` for
torch.export's, ``both`` for both) into a temporary folder, count the file with ``rooflens.analyze_onnx``
and compare: MACs (the parity the ONNX front-end promises: within 0.1 %), and beside them FLOPs and
parameters, which differ for reasons of the graph (batch norm folded into the convolutions by the
exporters: no batch-norm FLOPs, a bias add per output instead, the batch-norm parameters gone; the
attention's scaling written as two multiplies; see docs/onnx.md).

Input sizes: --size (default 224) for every model, except the ones whose architecture fixes it (ViT 224,
Swin and MaxViT 224, Inception v3 299, AlexNet and VGG 224: the TorchScript exporter needs their 6x6 and
7x7 adaptive pools to divide the feature map). The file of a model is deleted as soon as it is counted; a model
whose file would not fit in the free disk space (with a 1 GB margin) is skipped and listed.

Prints a fixed-width table (model, exporter, torch MACs, ONNX MACs, diff %, FLOPs of both, parameters of
both, unsupported ONNX operators, seconds) and then one JSON line with every row and the summary.

    python bench/onnx_parity.py [--models resnet18,vit_b_16] [--size 224] [--exporter legacy|dynamo|both]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch
import torchvision

import rooflens

TOLERANCE = 1e-3  # 0.1 %
FIXED_SIZE = {"inception_v3": 299, "alexnet": 224}  # AlexNet: its 6x6 adaptive pool must divide the map
FIXED_PREFIXES = {"vit_": 224, "swin": 224, "maxvit": 224, "vgg": 224}  # VGG: its 7x7 adaptive pool, as AlexNet's
MARGIN_BYTES = 1 << 30


def input_side(name: str, size: int) -> int:
    if name in FIXED_SIZE:
        return FIXED_SIZE[name]
    for prefix, side in FIXED_PREFIXES.items():
        if name.startswith(prefix):
            return side
    return size


def export(model: torch.nn.Module, x: torch.Tensor, path: Path, exporter: str) -> None:
    sink = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), str(path), dynamo=exporter == "dynamo")


def compare(name: str, size: int, exporter: str) -> dict[str, Any]:
    start = time.perf_counter()
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None).eval()
    side = input_side(name, size)
    shape = (1, 3, side, side)
    params = sum(p.numel() for p in model.parameters())
    row: dict[str, Any] = {"model": name, "exporter": exporter, "input": list(shape)}
    free = shutil.disk_usage(tempfile.gettempdir()).free
    if 4 * params * 1.1 > free - MARGIN_BYTES:
        return {**row, "skipped": f"the file (~{4 * params / 1e9:.1f} GB) does not fit in the free disk space"}
    torch_report = rooflens.analyze(model, input_size=shape)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"{name}.onnx"
        try:
            export(model, torch.randn(shape), path, exporter)
        except Exception as e:  # noqa: BLE001 - an exporter's failure is a row of the table
            return {**row, "skipped": f"export failed: {type(e).__name__}: {' '.join(str(e).split())[:160]}"}
        onnx_report = rooflens.analyze_onnx(path, input_size=shape)
    t, o = torch_report.total(), onnx_report.total()
    diff = (o.macs - t.macs) / t.macs if t.macs else 0.0
    return {
        **row,
        "torch_macs": t.macs, "onnx_macs": o.macs, "diff": diff, "ok": abs(diff) <= TOLERANCE,
        "torch_flops": t.flops, "onnx_flops": o.flops,
        "torch_params": torch_report.params.total, "onnx_params": onnx_report.params.total,
        "unsupported": onnx_report.unsupported_ops(), "seconds": round(time.perf_counter() - start, 2),
    }


def table(rows: list[dict[str, Any]]) -> str:
    head = (f"{'model':<22} {'exp':<6} {'input':>5} {'torch MACs':>15} {'ONNX MACs':>15} {'diff %':>8} "
            f"{'torch GFLOPs':>12} {'ONNX GFLOPs':>11} {'torch params':>13} {'ONNX params':>12} {'s':>6}  unsupported")
    lines = [head, "-" * len(head)]
    for r in rows:
        if "skipped" in r:
            lines.append(f"{r['model']:<22} {r['exporter']:<6} {r['input'][-1]:>5} skipped: {r['skipped']}")
            continue
        unsupported = ", ".join(f"{k} x{v}" for k, v in r["unsupported"].items()) or "-"
        lines.append(
            f"{r['model']:<22} {r['exporter']:<6} {r['input'][-1]:>5} {r['torch_macs']:>15,} {r['onnx_macs']:>15,} "
            f"{100 * r['diff']:>8.4f} {r['torch_flops'] / 1e9:>12.3f} {r['onnx_flops'] / 1e9:>11.3f} "
            f"{r['torch_params']:>13,} {r['onnx_params']:>12,} {r['seconds']:>6.1f}  {unsupported}"
            + ("" if r["ok"] else "   <-- over 0.1 %")
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", help="comma-separated names (default: every torchvision classifier)")
    parser.add_argument("--size", type=int, default=224, help="input height and width (default 224)")
    parser.add_argument("--exporter", choices=("legacy", "dynamo", "both"), default="legacy")
    args = parser.parse_args(argv)
    names = args.models.split(",") if args.models else torchvision.models.list_models(module=torchvision.models)
    exporters = ("legacy", "dynamo") if args.exporter == "both" else (args.exporter,)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    rows = []
    for name in names:
        for exporter in exporters:
            row = compare(name, args.size, exporter)
            rows.append(row)
            print(table([row]).splitlines()[-1], file=sys.stderr, flush=True)
    counted = [r for r in rows if "skipped" not in r]
    summary = {
        "models": len(rows), "counted": len(counted), "within_0.1%": sum(r["ok"] for r in counted),
        "max_abs_diff": max((abs(r["diff"]) for r in counted), default=0.0),
        "skipped": [f"{r['model']} ({r['exporter']}): {r['skipped']}" for r in rows if "skipped" in r],
        "torch": torch.__version__, "torchvision": torchvision.__version__,
    }
    print(table(rows))
    print(f"\n{summary['within_0.1%']} of {summary['counted']} counted models within 0.1 % "
          f"(largest |diff| {100 * summary['max_abs_diff']:.4f} %); skipped: {len(summary['skipped'])}")
    print(json.dumps({"rows": rows, "summary": summary}))
    return 0 if summary["within_0.1%"] == summary["counted"] else 1


if __name__ == "__main__":
    sys.exit(main())
