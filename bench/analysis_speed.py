"""Wall time of rooflens.analyze() against its floor (one meta-device forward) and one real CPU forward.

Targets (issue 10, section 3; ratios within one run, not timed tests):
  * analysis <= 1.3x a meta-device forward of the same model under a no-op dispatch mode (every case);
  * resnet50 analysis <= 0.5x a real forward at the benchmark's thread count (2 by default);
  * the Mamba-style loop model (bench/loop_models.py) <= 2x its real forward.

Per case, two fresh subprocesses (so that imports, caches and peak RSS are each run's own):
  analyze  one warm-up analysis of a different tiny model (pays imports, the operator registry, the
           decomposition tables), then on a freshly built model with real weights (llama-7b: built on
           meta) ``analyze_first_s`` = the first ``rooflens.analyze(model, x)`` and ``analyze_s`` = the
           median of --repeat (5) further analyses of the same model;
  forward  ``meta_forward_s``: the same architecture built under ``with torch.device("meta")`` with meta
           inputs, ``torch.no_grad()`` and a no-op TorchDispatchMode, one warm-up then the median of
           --repeat forwards; ``forward_s``: real weights, no_grad, 2 warm-ups then the median of --repeat.
The no-op mode passes every operator through, except one thing a meta tensor cannot do: a value read
(``aten._local_scalar_dense``, e.g. BERT's ``attention_mask.all()``) is answered True / 1, the same
"masks are all ones" assumption rooflens makes on meta (value_checks="assume").

Prints the machine, a fixed-width table with pass/fail beside each target, then one JSON line.

    python bench/analysis_speed.py [--threads 2] [--repeat 5] [--cases resnet50,gru] [--quiet-check]
                                   [--wait-quiet SECONDS]

Numbers from a busy machine are meaningless (with 2 threads on 2 cores, one other busy process slows a
real forward 10-50x); --quiet-check prints the load first, and each row carries the share of the cores
other processes used while it ran.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

# case -> description of the model and its input
CASES = {
    "resnet50": "torchvision resnet50, 1x3x224x224",
    "mobilenet_v2": "torchvision mobilenet_v2, 1x3x224x224",
    "shufflenet_v2": "torchvision shufflenet_v2_x1_0, 1x3x224x224",
    "regnet_y_400mf": "torchvision regnet_y_400mf, 1x3x224x224",
    "vit_b_16": "torchvision vit_b_16, 1x3x224x224",
    "gru": "nn.GRU(64, 128, num_layers=2), seq 128 x batch 1 x 64",
    "mamba_loop": "bench/loop_models.py mamba_loop: 4 layers, d_model 64, 1x512 tokens, Python scan",
    "bert": "transformers BertModel (hidden 256, 4 layers, 4 heads, MLP 1024), ids 1x128 + attention_mask",
    "llama-7b": "bench/decoder.py llama_7b on meta, 1x2048 tokens (analysis only)",
}
META_ONLY = {"llama-7b"}
BERT = {"hidden_size": 256, "num_hidden_layers": 4, "num_attention_heads": 4, "intermediate_size": 1024}  # no real weights: no real forward

# Targets: (numerator, denominator, bound, cases it applies to; None = every case)
TARGETS = [
    ("analyze_s", "meta_forward_s", 1.3, None),
    ("analyze_s", "forward_s", 0.5, {"resnet50"}),
    ("analyze_s", "forward_s", 2.0, {"mamba_loop"}),
]


# ------------------------------------------------------------------------------------------------
# child side: runs in a fresh interpreter
# ------------------------------------------------------------------------------------------------
def _model(case: str) -> Any:
    """A fresh model for ``case`` on the current default device (``with torch.device("meta")``)."""
    import torch

    if case == "llama-7b":
        from decoder import llama_7b

        return llama_7b().eval()
    if case == "gru":
        return torch.nn.GRU(64, 128, num_layers=2).eval()
    if case == "mamba_loop":
        from loop_models import mamba_loop

        return mamba_loop().eval()
    if case == "bert":
        import transformers

        return transformers.BertModel(transformers.BertConfig(**BERT)).eval()
    import torchvision

    name = {"shufflenet_v2": "shufflenet_v2_x1_0"}.get(case, case)
    return torchvision.models.get_model(name, weights=None).eval()


def _inputs(case: str) -> Any:
    """The inputs for ``case`` on the current default device: a tensor (one positional argument) or a
    dict of keyword arguments."""
    import torch

    if case == "llama-7b":
        return torch.zeros(1, 2048, dtype=torch.long)
    if case == "gru":
        return torch.randn(128, 1, 64)
    if case == "mamba_loop":
        return torch.randint(0, 256, (1, 512))
    if case == "bert":
        return {"input_ids": torch.randint(0, 30522, (1, 128)), "attention_mask": torch.ones(1, 128, dtype=torch.long)}
    return torch.randn(1, 3, 224, 224)


def _call(model: Any, inputs: Any) -> Any:
    return model(**inputs) if isinstance(inputs, dict) else model(inputs)


def _median_time(fn: Any, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _child_analyze(case: str, repeat: int) -> dict[str, Any]:
    import torch

    t = time.perf_counter()
    import rooflens

    out: dict[str, Any] = {"import_s": time.perf_counter() - t}
    tiny = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
                               torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 4)).eval()
    t = time.perf_counter()
    rooflens.analyze(tiny, torch.randn(1, 3, 16, 16))  # warm-up on a different model
    out["warmup_s"] = time.perf_counter() - t
    if case in META_ONLY:
        with torch.device("meta"):
            model = _model(case)
    else:
        model = _model(case)
    x = _inputs(case)  # on the CPU, as a user would pass it (also to the meta-device llama)
    t = time.perf_counter()
    rooflens.analyze(model, x)
    out["analyze_first_s"] = time.perf_counter() - t
    reports = []
    out["analyze_s"] = _median_time(lambda: reports.append(rooflens.analyze(model, x)), repeat)
    report = reports[-1]
    out["ops"] = len(report.records)
    out["gmacs"] = report.total().macs / 1e9
    out["executed"] = report.executed
    out["unsupported"] = report.unsupported_ops()
    return out


def _child_forward(case: str, repeat: int) -> dict[str, Any]:
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    local_scalar = torch.ops.aten._local_scalar_dense.default

    class NoOp(TorchDispatchMode):
        def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            if func is local_scalar and args[0].is_meta:  # a value read: meta has no values (see module doc)
                return True if args[0].dtype == torch.bool else 1
            return func(*args, **(kwargs or {}))

    out: dict[str, Any] = {}
    try:
        with torch.device("meta"):
            model = _model(case)
    except NotImplementedError:  # the constructor reads a tensor's values (regnet's BlockParams)
        model = _model(case).to("meta")
        out["meta_build"] = "built on the CPU, then .to('meta')"
    with torch.device("meta"):
        x = _inputs(case)
    with torch.no_grad(), NoOp():
        _call(model, x)  # warm-up
        out["meta_forward_s"] = _median_time(lambda: _call(model, x), repeat)
    del model, x
    if case not in META_ONLY:
        model, x = _model(case), _inputs(case)
        with torch.no_grad():
            for _ in range(2):
                _call(model, x)
            out["forward_s"] = _median_time(lambda: _call(model, x), repeat)
    return out


def child(case: str, part: str, threads: int, repeat: int) -> None:
    import resource

    import torch

    sys.path.insert(0, str(ROOT / "bench"))
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    out = _child_analyze(case, repeat) if part == "analyze" else _child_forward(case, repeat)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))


# ------------------------------------------------------------------------------------------------
# parent side
# ------------------------------------------------------------------------------------------------
def machine_name() -> str:
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        m = re.search(r"^Model name:\s*(.+)$", text, re.MULTILINE)
        if m:
            return m.group(1).strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    try:
        m = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.MULTILINE)
        if m:
            return m.group(1).strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def busy_cpu_seconds() -> float | None:
    """CPU seconds all cores have spent busy since boot (/proc/stat: everything but idle and iowait)."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except (OSError, IndexError):
        return None
    ticks = [int(f) for f in fields[:8]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def others_share(seconds: float = 1.0) -> float | None:
    """Share of all cores (0..1) that other processes kept busy while this one slept ``seconds``."""
    before = busy_cpu_seconds()
    time.sleep(seconds)
    after = busy_cpu_seconds()
    return None if before is None or after is None else max(0.0, after - before) / (seconds * cores())


def load_check() -> dict[str, Any]:
    """Load averages, the share of the cores others used during 1 s of sleep (/proc/stat), Linux pressure
    stall information, and a 1-second pure-Python busy loop: ``busy_loop_cpu_share`` is the CPU time it got
    per second of wall time (about 1.0 with a free core; lower means it waited for a CPU)."""
    load = os.getloadavg()
    others = others_share()
    wall0, cpu0, n = time.perf_counter(), time.process_time(), 0
    while time.perf_counter() - wall0 < 1.0:
        for _ in range(10_000):
            n += 1
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return {"loadavg": [round(v, 2) for v in load],
            "others_cpu_share": None if others is None else round(others, 3),
            "busy_loop_cpu_share": round(cpu / wall, 3), "busy_loop_mit_per_s": round(n / wall / 1e6, 1),
            "pressure_avg10": pressure()}


def describe_load(check: dict[str, Any]) -> str:
    others = check["others_cpu_share"]
    return (f"loadavg {check['loadavg']}, others used {'n/a' if others is None else f'{others:.0%}'} of the "
            f"{cores()} cores during 1 s, busy loop got {check['busy_loop_cpu_share']:.0%} of a core "
            f"({check['busy_loop_mit_per_s']} M iterations/s), pressure avg10 % {check['pressure_avg10']}")


def pressure() -> dict[str, float]:
    """Linux pressure stall information, share of the last 10 s (%): ``cpu`` some task waited for a CPU,
    ``memory`` all tasks stalled on memory (reclaim, swapping). Empty where /proc/pressure is missing."""
    out = {}
    for resource, line in (("cpu", "some"), ("memory", "full")):
        try:
            text = Path(f"/proc/pressure/{resource}").read_text()
        except OSError:
            continue
        m = re.search(rf"^{line} avg10=([0-9.]+)", text, re.MULTILINE)
        if m:
            out[resource] = float(m.group(1))
    return out


def is_quiet(check: dict[str, Any]) -> bool:
    """Quiet: others used under 10% of the cores, the busy loop got a core, no CPU or memory stalls. (The
    load average lags by a minute; it is printed, not judged.) With 2 torch threads on 2 cores, one other
    busy process is enough to slow a real forward 10-50x: its threads wait for each other at every barrier."""
    psi = check["pressure_avg10"]
    others = check["others_cpu_share"]
    return not ((others is not None and others > 0.10) or check["busy_loop_cpu_share"] < 0.9
                or psi.get("cpu", 0) > 10 or psi.get("memory", 0) > 1)


def run_child(case: str, part: str, threads: int, repeat: int, timeout: float) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", case, part,
           "--threads", str(threads), "--repeat", str(repeat)]
    try:
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True, cwd=ROOT, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"{part}: timed out after {timeout:.0f} s"}
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        return {"error": f"{part}: " + (lines[-1] if lines else f"exit {proc.returncode}")}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def ratio(row: dict[str, Any], num: str, den: str) -> float | None:
    a, b = row.get(num), row.get(den)
    return a / b if a is not None and b else None


def measure_case(case: str, threads: int, repeat: int, timeout: float) -> dict[str, Any]:
    busy0, mine0, wall0 = busy_cpu_seconds(), children_cpu_seconds(), time.perf_counter()
    analysed = run_child(case, "analyze", threads, repeat, timeout)
    forward = run_child(case, "forward", threads, repeat, timeout)
    busy1, mine1, wall = busy_cpu_seconds(), children_cpu_seconds(), time.perf_counter() - wall0
    row: dict[str, Any] = {"case": case, "input": CASES[case]}
    # CPU time of other processes while this case ran, as a share of all cores: > 0.1 taints the row
    row["others_cpu_share"] = (None if busy0 is None or busy1 is None
                               else max(0.0, (busy1 - busy0) - (mine1 - mine0)) / (wall * cores()))
    for key in ("analyze_first_s", "analyze_s", "import_s", "warmup_s"):
        row[key] = analysed.get(key)
    row["meta_forward_s"] = forward.get("meta_forward_s")
    if "meta_build" in forward:
        row["meta_build"] = forward["meta_build"]
    row["forward_s"] = forward.get("forward_s")
    row["analyze_over_meta"] = ratio(row, "analyze_s", "meta_forward_s")
    row["analyze_over_forward"] = ratio(row, "analyze_s", "forward_s")
    row["first_over_meta"] = ratio(row, "analyze_first_s", "meta_forward_s")
    row["meta_over_forward"] = ratio(row, "meta_forward_s", "forward_s")
    row["ops"] = analysed.get("ops")
    row["gmacs"] = analysed.get("gmacs")
    row["executed"] = analysed.get("executed")
    row["unsupported"] = analysed.get("unsupported")
    row["analyze_peak_rss_mb"] = analysed.get("peak_rss_mb")
    row["targets"] = []
    for num, den, bound, cases in TARGETS:
        if cases is None or case in cases:
            value = ratio(row, num, den)
            row["targets"].append({"ratio": f"{num}/{den}", "bound": bound, "value": value,
                                   "pass": None if value is None else value <= bound})
    errors = [e for e in (analysed.get("error"), forward.get("error")) if e]
    if errors:
        row["errors"] = errors
    for key, value in row.items():
        if isinstance(value, float):
            row[key] = round(value, 4)
    for target in row["targets"]:
        if target["value"] is not None:
            target["value"] = round(target["value"], 3)
    return row


def _s(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.4f}" if v < 10 else f"{v:.2f}"


def _r(v: float | None, bound: float | None = None) -> str:
    if v is None:
        return "n/a"
    text = f"{v:.2f}" if v < 100 else f"{v:.0f}"
    if bound is not None:
        text += f" {'ok' if v <= bound else 'FAIL'}<={bound:g}"
    return text


def print_table(rows: list[dict[str, Any]]) -> None:
    head = (f"{'case':<15} {'ops':>6} {'GMACs':>9} {'exec':>4} {'first s':>8} {'analyze s':>9} {'meta fwd s':>10} "
            f"{'fwd s':>7} {'an/meta':>14} {'an/fwd':>14} {'first/meta':>10} {'meta/fwd':>8} {'RSS MB':>7} {'others':>6}")
    print(head)
    print("-" * len(head))
    for r in rows:
        bound_fwd = next((t["bound"] for t in r["targets"] if t["ratio"] == "analyze_s/forward_s"), None)
        gmacs = "n/a" if r["gmacs"] is None else f"{r['gmacs']:.3f}" if r["gmacs"] < 1000 else f"{r['gmacs']:.0f}"
        rss = "n/a" if r["analyze_peak_rss_mb"] is None else f"{r['analyze_peak_rss_mb']:.0f}"
        others = "n/a" if r["others_cpu_share"] is None else f"{r['others_cpu_share']:.0%}"
        print(f"{r['case']:<15} {r['ops'] if r['ops'] is not None else 'n/a':>6} {gmacs:>9} "
              f"{r['executed'] or 'n/a':>4} {_s(r['analyze_first_s']):>8} {_s(r['analyze_s']):>9} "
              f"{_s(r['meta_forward_s']):>10} {_s(r['forward_s']):>7} {_r(r['analyze_over_meta'], 1.3):>14} "
              f"{_r(r['analyze_over_forward'], bound_fwd):>14} {_r(r['first_over_meta']):>10} "
              f"{_r(r['meta_over_forward']):>8} {rss:>7} {others:>6}")
        for e in r.get("errors", []):
            print(f"{'':<15} error: {e}")
    results = [t["pass"] for r in rows for t in r["targets"] if t["pass"] is not None]
    print(f"targets met: {sum(results)} of {len(results)} "
          "(an/meta <= 1.3 every case; an/fwd <= 0.5 resnet50, <= 2 mamba_loop)")
    print("others: share of all cores that other processes used while the case ran (over 10%: the row is "
          "not meaningful, real forwards with several threads worst)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch threads in each run (default 2)")
    parser.add_argument("--repeat", type=int, default=5, help="timed repetitions per measurement (default 5)")
    parser.add_argument("--cases", default=",".join(CASES),
                        help=f"comma-separated subset of: {', '.join(CASES)}")
    parser.add_argument("--quiet-check", action="store_true",
                        help="first measure and print the machine's load (load average, /proc/stat, 1 s busy loop)")
    parser.add_argument("--wait-quiet", type=float, default=0, metavar="SECONDS",
                        help="with the load check, wait up to SECONDS for a quiet machine before starting")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per subprocess (default 1800)")
    parser.add_argument("--child", nargs=2, metavar=("CASE", "PART"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.threads, args.repeat)
        return
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(CASES)}")
    torch_version = subprocess.run([sys.executable, "-c", "import torch; print(torch.__version__)"],
                                   capture_output=True, text=True, check=True).stdout.strip()
    machine = f"{machine_name()}, {cores()} cores"
    print(f"machine: {machine}; threads={args.threads}; torch {torch_version}; python {platform.python_version()}")
    load: dict[str, Any] | None = None
    if args.quiet_check or args.wait_quiet:
        deadline = time.monotonic() + args.wait_quiet
        load = load_check()
        while not is_quiet(load) and time.monotonic() < deadline:
            print(f"waiting for a quiet machine: {describe_load(load)}", flush=True)
            time.sleep(min(20.0, max(0.0, deadline - time.monotonic())))
            load = load_check()
        verdict = "quiet" if is_quiet(load) else "BUSY: other work is running, the numbers are not meaningful"
        print(f"load before: {describe_load(load)}: {verdict}", flush=True)
    rows = [measure_case(case, args.threads, args.repeat, args.timeout) for case in cases]
    if load is not None:
        load["loadavg_after"] = [round(v, 2) for v in os.getloadavg()]
        print(f"load after: loadavg {load['loadavg_after']} (includes this benchmark's own runs)")
    print_table(rows)
    print(json.dumps({"bench": "analysis_speed", "machine": machine, "threads": args.threads,
                      "torch": torch_version, "repeat": args.repeat, "load": load, "rows": rows}))


if __name__ == "__main__":
    main()
