"""Minor page faults per forward and what they cost (issue 14: the composition and noise they explain).

glibc serves large allocations with ``mmap`` and gives freed blocks back to the kernel, so a forward pass
whose activations are large faults its memory in again (the kernel zeroes every page) on every call. For
each model and batch, in ``--processes`` fresh processes each: the forward's latency (median of the
calls after ``--warmup``) and its minor page faults (``getrusage``), once with the default allocator
settings and once with ``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` raised to 10^9 (nothing
is handed back, nothing faulted again). Prints a table, then one JSON line.

    python bench/page_faults.py [--models mobilenet_v2:8,efficientnet_b0:1,...] [--threads 1]
                                [--processes 2] [--calls 15] [--warmup 3]

Linux with glibc only (elsewhere the variables do nothing and the fault counts may be 0). About 2.5 minutes
on 2 vCPUs with the defaults. Results: docs/prediction.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from rooflens.measurement.timer import minor_page_faults
from rooflens.report.measure_render import KEEP_MEMORY_ENV

DEFAULT_MODELS = "mobilenet_v2:8,efficientnet_b0:1,regnet_y_400mf:1,resnet50:8,resnet18:1"


def child(name: str, batch: int, threads: int, calls: int, warmup: int) -> dict[str, Any]:
    """One fresh process: per call, its seconds and its minor page faults."""
    import torch
    import torchvision

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None).eval()
    x = torch.randn(batch, 3, 224, 224)
    seconds, faults = [], []
    with torch.inference_mode():
        for _ in range(calls):
            f0 = minor_page_faults()
            t0 = time.perf_counter()
            model(x)
            seconds.append(time.perf_counter() - t0)
            faults.append(minor_page_faults() - f0)
    return {"median_s": statistics.median(seconds[warmup:]), "faults": statistics.median(faults[warmup:])}


def run(name: str, batch: int, args: argparse.Namespace, env: dict[str, str]) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", f"{name}:{batch}", "--threads", str(args.threads),
           "--calls", str(args.calls), "--warmup", str(args.warmup)]
    done = subprocess.run(cmd, check=False, capture_output=True, text=True, env={**os.environ, **env})
    if done.returncode != 0:
        raise RuntimeError(f"{name} at batch {batch}: child failed:\n{done.stderr[-2000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=DEFAULT_MODELS, help="comma-separated torchvision name:batch")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--processes", type=int, default=2, help="fresh processes per model and setting")
    ap.add_argument("--calls", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        name, batch = args.child.split(":")
        print(json.dumps(child(name, int(batch), args.threads, args.calls, args.warmup)))
        return 0
    rows = []
    print(f"{'model':<18} {'b':>2} {'faults/fwd':>11} {'latency ms':>17} {'no release: faults':>19} {'latency ms':>17}")
    for item in args.models.split(","):
        name, batch = item.split(":")
        default = [run(name, int(batch), args, {}) for _ in range(args.processes)]
        kept = [run(name, int(batch), args, KEEP_MEMORY_ENV) for _ in range(args.processes)]
        row = {"model": name, "batch": int(batch), "default": default, "no_release": kept}
        rows.append(row)

        def span(v: list[dict[str, Any]], key: str, scale: float) -> str:
            lo, hi = min(c[key] for c in v) * scale, max(c[key] for c in v) * scale
            return f"{lo:.0f}-{hi:.0f}" if round(lo) != round(hi) else f"{lo:.0f}"

        print(f"{name:<18} {batch:>2} {span(default, 'faults', 1):>11} {span(default, 'median_s', 1e3):>17} "
              f"{span(kept, 'faults', 1):>19} {span(kept, 'median_s', 1e3):>17}", flush=True)
    print(f"machine: {platform.node()}, {platform.processor() or platform.machine()}, {args.threads} thread(s), "
          f"{args.processes} processes per setting, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(json.dumps({"threads": args.threads, "rows": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
