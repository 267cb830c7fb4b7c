"""The noise floor of latency measurement on this machine (issue 14, "noise first").

For torchvision models of different families at batch 1, on 1 and 2 intra-op threads, times each model in
N separate fresh processes (``python -m rooflens.measurement.noise``), in rounds spaced by a gap, and
prints per case: the median of the per-process medians, the spread across processes (max/min - 1), their
coefficient of variation, the p90 half-width (a prediction within it cannot be told from a perfect one),
the largest within-process spread of block medians, and how many processes were disturbed by other work
on the machine (CpuWatch: others took > 20 % of one CPU meanwhile; such a process is retried once).
Then one JSON line with everything.

    python bench/latency_noise.py [--quick] [--processes 5] [--gap 20] [--threads 1,2] [--models a,b]
                                  [--min-seconds 3] [--retries 1] [--json-out FILE]

Defaults take about 15-25 minutes on a 2-vCPU machine; --quick about 3 minutes. Measure on an otherwise
idle machine: the script waits (up to --wait-max seconds) for the 1-minute load average to fall below
--max-load before it starts, and prints the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from rooflens.measurement.noise import NoiseCase, NoiseFloor, load_average, noise_floor

MODELS = [
    "resnet18", "mobilenet_v2", "efficientnet_b0", "regnet_y_400mf", "densenet121", "squeezenet1_0",
    "convnext_tiny", "vit_b_32",
]
QUICK_MODELS = ["resnet18", "mobilenet_v2", "efficientnet_b0", "squeezenet1_0"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="4 models, 3 processes, 5 s gap, 1 s timing (~3 min)")
    p.add_argument("--models", help="comma-separated torchvision names")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--processes", type=int)
    p.add_argument("--gap", type=float, help="seconds between rounds (default 20; --quick 5)")
    p.add_argument("--min-seconds", type=float, help="timed seconds per process (default 3; --quick 1)")
    p.add_argument("--retries", type=int, default=1)
    p.add_argument("--max-load", type=float, default=0.7)
    p.add_argument("--wait-max", type=float, default=600.0)
    p.add_argument("--json-out", help="also write the JSON to this file")
    args = p.parse_args()

    models = args.models.split(",") if args.models else (QUICK_MODELS if args.quick else MODELS)
    threads = [int(t) for t in args.threads.split(",")]
    processes = args.processes or (3 if args.quick else 5)
    gap = args.gap if args.gap is not None else (5.0 if args.quick else 20.0)
    min_seconds = args.min_seconds or (1.0 if args.quick else 3.0)

    waited = 0.0
    while (load := load_average()) is not None and load > args.max_load and waited < args.wait_max:
        print(f"load average {load:.2f} > {args.max_load}: waiting for a quiet machine", file=sys.stderr)
        time.sleep(30)
        waited += 30
    load_start = load_average()
    cases = [NoiseCase(model=f"torchvision:{m}", input_size=((1, 3, 224, 224),), threads=t)
             for m in models for t in threads]
    began = time.time()

    def progress(done: int, total: int, what: str) -> None:
        print(f"[{done}/{total}] {what} ({time.time() - began:.0f} s)", file=sys.stderr, flush=True)

    floors = noise_floor(cases=cases, processes=processes, gap_seconds=gap, min_seconds=min_seconds,
                         iters=10 if args.quick else 20, retries=args.retries, progress=progress)
    load_end = load_average()
    elapsed = time.time() - began

    machine = floors[0].machine
    print(f"machine: {machine['cpu']}, {machine['cpus']} CPUs; torch {machine['torch']}; {machine['date']}")
    print(f"{processes} processes per case, rounds {gap:g} s apart, >= {min_seconds:g} s timed per process; "
          f"load average {load_start} before, {load_end} after; {elapsed / 60:.1f} min")
    print(f"{'model':<18} {'thr':>3} {'median ms':>10} {'spread %':>9} {'CV %':>6} {'p90 hw %':>9} "
          f"{'within %':>9} {'disturbed':>9}")
    for f in floors:
        print(_row(f))
    for t in threads:
        of = [f for f in floors if f.case.threads == t]
        print(f"threads {t}: largest spread {max(f.spread for f in of):.1%}, median CV "
              f"{sorted(f.cv for f in of)[len(of) // 2]:.1%}, largest p90 half-width {max(f.half_width for f in of):.1%}")
    data = {"bench": "latency_noise", "processes": processes, "gap_seconds": gap, "min_seconds": min_seconds,
            "load_start": load_start, "load_end": load_end, "elapsed_seconds": elapsed, "machine": machine,
            "floors": [f.as_dict() for f in floors]}
    line = json.dumps(data)
    print(line)
    if args.json_out:
        Path(args.json_out).write_text(line + "\n")
    return 0


def _row(f: NoiseFloor) -> str:
    name = f.case.model.removeprefix("torchvision:")
    disturbed = f"{f.disturbed_count}/{len(f.runs)}" + (f" (+{f.retried} retried)" if f.retried else "")
    return (f"{name:<18} {f.case.threads:>3} {f.median_seconds * 1e3:>10.2f} {f.spread * 100:>9.1f} "
            f"{f.cv * 100:>6.1f} {f.half_width * 100:>9.1f} {f.within_spread * 100:>9.1f} {disturbed:>9}")


if __name__ == "__main__":
    raise SystemExit(main())
