"""Wall time and peak RSS of rooflens.analyze() against one real CPU forward.

Targets (issue 2): resnet50 analysed in under half the time of its real forward; a 7B-parameter
decoder (built on the meta device) at 2048 tokens in under 5 s and under 1 GB of RSS.
Each case runs in a fresh subprocess so that its peak RSS is its own. Prints a table and a JSON line.

    python bench/analysis_speed.py [--threads N]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from pathlib import Path

# case -> (model, batch, description); the analysis does not grow with batch size, a real forward does.
CASES = {
    "resnet50": ("resnet50", 1, "torchvision:resnet50 1x3x224x224"),
    "resnet50-b8": ("resnet50", 8, "torchvision:resnet50 8x3x224x224"),
    "vit_b_16": ("vit_b_16", 1, "torchvision:vit_b_16 1x3x224x224"),
    "llama-7b": ("llama-7b", 1, "bench/decoder.py llama_7b (meta) 1x2048 tokens"),
}

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, "bench")
import torch
torch.set_num_threads(int(sys.argv[3]))
import rooflens
case, what, batch = sys.argv[1], sys.argv[2], int(sys.argv[4])
if case == "llama-7b":
    from decoder import llama_7b
    with torch.device("meta"):
        model = llama_7b().eval()
    x = torch.zeros(1, 2048, dtype=torch.long)
else:
    import torchvision
    model = torchvision.models.get_model(case, weights=None).eval()
    x = torch.randn(batch, 3, 224, 224)
out = {"case": case, "what": what}
if what == "analyze":
    rooflens.analyze(model, x)  # warm-up: imports, registry, decomposition tables
    times = []
    for _ in range(3):
        t = time.perf_counter(); r = rooflens.analyze(model, x); times.append(time.perf_counter() - t)
    out["seconds"] = sorted(times)[1]  # the median of three
    out["gmacs"] = r.total().macs / 1e9; out["ops"] = len(r.records)
    out["unsupported"] = r.unsupported_ops()
else:
    with torch.no_grad():
        model(x)
        times = []
        for _ in range(3):
            t = time.perf_counter(); model(x); times.append(time.perf_counter() - t)
    out["seconds"] = sorted(times)[1]
out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
"""


def run(case: str, what: str, threads: int) -> dict:
    model, batch, _ = CASES[case]
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, model, what, str(threads), str(batch)],
        capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1], check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    rows = []
    for case in CASES:
        analysed = run(case, "analyze", args.threads)
        real = run(case, "forward", args.threads) if not case.startswith("llama") else None
        rows.append({
            "case": case,
            "input": CASES[case][2],
            "analyze_s": round(analysed["seconds"], 3),
            "analyze_peak_rss_mb": round(analysed["peak_rss_mb"], 1),
            "forward_s": round(real["seconds"], 3) if real else None,
            "ratio": round(analysed["seconds"] / real["seconds"], 3) if real else None,
            "gmacs": round(analysed["gmacs"], 3),
            "ops": analysed["ops"],
            "unsupported": analysed["unsupported"],
        })
    print(f"machine: {platform.machine()} {platform.processor() or ''}, threads={args.threads}, python "
          f"{platform.python_version()}")
    print(f"{'case':<12} {'analyze s':>10} {'peak RSS MB':>12} {'forward s':>10} {'ratio':>7} {'GMACs':>9} {'ops':>6}")
    for r in rows:
        fwd = f"{r['forward_s']:.3f}" if r["forward_s"] is not None else "n/a"
        ratio = f"{r['ratio']:.2f}" if r["ratio"] is not None else "n/a"
        print(f"{r['case']:<12} {r['analyze_s']:>10.3f} {r['analyze_peak_rss_mb']:>12.1f} {fwd:>10} {ratio:>7} "
              f"{r['gmacs']:>9.3f} {r['ops']:>6}")
    print(json.dumps({"bench": "analysis_speed", "threads": args.threads, "rows": rows}))


if __name__ == "__main__":
    main()
