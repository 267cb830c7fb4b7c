"""The noise floor of a model's latency on this machine: how repeatable a measurement is.

A latency prediction cannot be judged more precisely than the latency it is compared with. This module
times the same model in several separate, fresh Python processes, spaced by a gap (seconds to minutes),
and reports how far their medians scatter: across processes (a new process gets other allocations, other
page placement, another thread pinning, a machine in another state) and within one process (the medians
of consecutive blocks of calls).

Each process (``python -m rooflens.measurement.noise ...``, one JSON line on stdout) builds the model
with seeded weights, times its forward pass with :func:`rooflens.measurement.timer.measure` (the median
of many calls after a warm-up) and watches the CPU time the rest of the machine took meanwhile
(:class:`rooflens.measurement.microbench.CpuWatch`): a process during which others took more than
``busy_share`` of one CPU is flagged ``disturbed`` and, with ``retries``, timed again after the gap.

Several cases (model x input x threads) are measured in rounds: round ``r`` runs process ``r`` of every
case, then waits ``gap_seconds``; so two processes of one case lie a whole round plus the gap apart.

Model specs: ``torchvision:NAME`` (built with ``weights=None``) or ``package.module:callable`` (called
without arguments). These follow :mod:`rooflens.zoo`'s spelling, but measurement sits below the zoo in
the layers, so the few lines that build a model in the child process are here.

The statistics (all on the per-process medians ``m_i``, ``M`` their median):

* ``spread``: ``max(m) / min(m) - 1``;
* ``cv``: the coefficient of variation, sample standard deviation (n - 1) over the mean;
* ``half_width``: the ``q``-th percentile (default 90) of ``|m_i / M - 1|``: a prediction within this
  of the measured median cannot be told from a perfect one;
* ``within_spread``: per process, ``max / min - 1`` of the medians of consecutive blocks of its samples;
  the floor reports the largest over its processes.

Nothing is printed by the library; progress goes to an optional callback ``progress(done, total, what)``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import importlib
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from rooflens.errors import InputError, ModelError
from rooflens.measurement.microbench import CpuWatch, machine_name
from rooflens.measurement.timer import measure, percentile, whole_number

NoiseProgress = Callable[[int, int, str], None]

ENTRY_MODULE = "rooflens.measurement.noise"
BUSY_SHARE = 0.2  # others may take up to this share of one CPU during a measurement (CpuWatch's default)


# ---- statistics ---------------------------------------------------------------------------------------


def spread(values: Sequence[float]) -> float:
    """``max / min - 1`` of positive values (0 for one value)."""
    _positive(values)
    return max(values) / min(values) - 1.0


def coefficient_of_variation(values: Sequence[float]) -> float:
    """Sample standard deviation (n - 1) over the mean; 0 for one value."""
    _positive(values)
    if len(values) < 2:
        return 0.0
    return statistics.stdev(values) / statistics.fmean(values)


def half_width(values: Sequence[float], *, q: int = 90) -> float:
    """The ``q``-th percentile of ``|v / median - 1|``: the band around the median that ``q`` % of the
    values fall in (linear interpolation, :func:`rooflens.measurement.timer.percentile`)."""
    _positive(values)
    center = statistics.median(values)
    return percentile([abs(v / center - 1.0) for v in values], q)


def block_medians(samples: Sequence[float], *, blocks: int) -> tuple[float, ...]:
    """Medians of ``blocks`` consecutive blocks of ``samples`` (in the order taken); the first
    ``len % blocks`` blocks get one sample more. Fewer blocks when there are fewer samples."""
    blocks = whole_number(blocks, "blocks", minimum=1)
    if not samples:
        raise InputError("block_medians of no samples")
    k = min(blocks, len(samples))
    size, extra = divmod(len(samples), k)
    out: list[float] = []
    start = 0
    for i in range(k):
        end = start + size + (1 if i < extra else 0)
        out.append(statistics.median(samples[start:end]))
        start = end
    return tuple(out)


def is_disturbed(other_cpu_seconds: float | None, wall_seconds: float, *, share: float = BUSY_SHARE) -> bool:
    """Whether the rest of the machine took more than ``share`` of one CPU over ``wall_seconds`` (and at
    least two 10 ms clock ticks): :meth:`CpuWatch.disturbed`'s rule on a reading. None (unknown): False."""
    if other_cpu_seconds is None:
        return False
    return other_cpu_seconds > max(0.02, share * wall_seconds)


def _positive(values: Sequence[float]) -> None:
    if not values:
        raise InputError("no values")
    if any(not (v > 0 and math.isfinite(v)) for v in values):
        raise InputError(f"values must be positive and finite: {list(values)!r}")


# ---- records --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NoiseCase:
    """What is timed: a model spec, its input shape(s) and torch's intra-op threads."""

    model: str
    input_size: tuple[tuple[int, ...], ...]
    threads: int = 1

    @property
    def label(self) -> str:
        shapes = " ".join("x".join(str(d) for d in s) for s in self.input_size)
        return f"{self.model} {shapes} t{self.threads}"


@dataclass(frozen=True)
class ProcessRun:
    """One process's measurement of a case."""

    median_seconds: float
    block_medians_seconds: tuple[float, ...]
    iters: int
    wall_seconds: float  # of the timed measurement (warm-up included)
    other_cpu_seconds: float | None  # CPU time the rest of the machine took meanwhile (None: unknown)
    disturbed: bool
    load_before: float | None  # 1-minute load average as the process began timing
    started_at: float  # Unix time the measurement began
    attempt: int = 1  # 1, or more when earlier attempts were disturbed and retried

    @property
    def within_spread(self) -> float:
        return spread(self.block_medians_seconds)

    @property
    def other_cpu_share(self) -> float | None:
        """Others' CPU time over the wall time, in CPUs (0.25: a quarter of one CPU)."""
        if self.other_cpu_seconds is None or self.wall_seconds <= 0:
            return None
        return self.other_cpu_seconds / self.wall_seconds

    def as_dict(self) -> dict[str, Any]:
        return {
            "median_seconds": self.median_seconds,
            "block_medians_seconds": list(self.block_medians_seconds),
            "within_spread": self.within_spread,
            "iters": self.iters,
            "wall_seconds": self.wall_seconds,
            "other_cpu_seconds": self.other_cpu_seconds,
            "disturbed": self.disturbed,
            "load_before": self.load_before,
            "started_at": self.started_at,
            "attempt": self.attempt,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProcessRun:
        other = data.get("other_cpu_seconds")
        load = data.get("load_before")
        return cls(
            median_seconds=float(data["median_seconds"]),
            block_medians_seconds=tuple(float(v) for v in data["block_medians_seconds"]),
            iters=int(data["iters"]),
            wall_seconds=float(data["wall_seconds"]),
            other_cpu_seconds=None if other is None else float(other),
            disturbed=bool(data["disturbed"]),
            load_before=None if load is None else float(load),
            started_at=float(data["started_at"]),
            attempt=int(data.get("attempt", 1)),
        )


@dataclass(frozen=True)
class NoiseFloor:
    """A case timed in several processes: the spread of their medians is the measurement's noise floor.

    ``runs`` holds the process kept for each slot (the last attempt); ``retried`` counts the disturbed
    attempts that were timed again. The statistics use every kept run, disturbed or not (see
    ``disturbed_count``): a floor measured on a busy machine says so rather than hiding it.
    """

    case: NoiseCase
    runs: tuple[ProcessRun, ...]
    gap_seconds: float
    q: int = 90
    retried: int = 0
    machine: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.runs:
            raise InputError("a NoiseFloor needs at least one process run")

    @property
    def medians_seconds(self) -> tuple[float, ...]:
        return tuple(r.median_seconds for r in self.runs)

    @property
    def median_seconds(self) -> float:
        """The median of the per-process medians."""
        return statistics.median(self.medians_seconds)

    @property
    def spread(self) -> float:
        return spread(self.medians_seconds)

    @property
    def cv(self) -> float:
        return coefficient_of_variation(self.medians_seconds)

    @property
    def half_width(self) -> float:
        return half_width(self.medians_seconds, q=self.q)

    @property
    def within_spread(self) -> float:
        """The largest within-process spread of block medians."""
        return max(r.within_spread for r in self.runs)

    @property
    def disturbed_count(self) -> int:
        return sum(r.disturbed for r in self.runs)

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.case.model,
            "input_size": [list(s) for s in self.case.input_size],
            "threads": self.case.threads,
            "processes": len(self.runs),
            "gap_seconds": self.gap_seconds,
            "median_seconds": self.median_seconds,
            "medians_seconds": list(self.medians_seconds),
            "spread": self.spread,
            "cv": self.cv,
            "half_width": self.half_width,
            "half_width_percentile": self.q,
            "within_spread": self.within_spread,
            "disturbed": self.disturbed_count,
            "retried": self.retried,
            "machine": dict(self.machine),
            "runs": [r.as_dict() for r in self.runs],
        }


class Watch(Protocol):
    """What a process's measurement reads to tell a busy machine (:class:`CpuWatch` is one)."""

    def other_seconds(self) -> float | None: ...


def machine_facts() -> dict[str, Any]:
    """The machine and software a floor was measured on."""
    return {
        "cpu": machine_name(torch.device("cpu")),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def load_average() -> float | None:
    """The 1-minute load average (None where the system has none)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


# ---- one process ------------------------------------------------------------------------------------------


def build_model(spec: str, *, seed: int = 0) -> torch.nn.Module:
    """The model a spec names, built after ``torch.manual_seed(seed)`` in a forked RNG (the caller's is left as it
    was), in eval mode (see the module docstring)."""
    if not isinstance(spec, str) or ":" not in spec:
        raise InputError(f"model spec {spec!r}: spell it torchvision:NAME or package.module:callable")
    target, _, attr = spec.strip().rpartition(":")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _build(target, attr, spec)


def _build(target: str, attr: str, spec: str) -> torch.nn.Module:
    try:
        if target == "torchvision":
            from torchvision import models

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                model = models.get_model(attr, weights=None)
        else:
            obj: Any = importlib.import_module(target)
            for part in attr.split("."):
                obj = getattr(obj, part)
            model = obj() if not isinstance(obj, torch.nn.Module) else obj
    except (ImportError, AttributeError, ValueError) as e:
        raise InputError(f"model spec {spec!r}: {type(e).__name__}: {e}") from e
    if not isinstance(model, torch.nn.Module):
        raise InputError(f"model spec {spec!r} gave a {type(model).__name__}, not an nn.Module")
    return model.eval()


def measure_once(
    *,
    model: torch.nn.Module,
    input_size: Sequence[Sequence[int]],
    threads: int = 1,
    warmup: int = 5,
    iters: int = 20,
    min_seconds: float = 3.0,
    blocks: int = 5,
    busy_share: float = BUSY_SHARE,
    watch: Callable[[], Watch] = CpuWatch,
) -> ProcessRun:
    """Time ``model`` here (the median of at least ``iters`` calls and ``min_seconds``), split its samples
    into ``blocks`` for the within-process spread, and flag it ``disturbed`` from ``watch``'s reading."""
    whole_number(threads, "threads", minimum=1)
    load = load_average()
    started = time.time()
    w = watch()
    t0 = time.perf_counter()
    m = measure(model, input_size=[list(s) for s in input_size], threads=threads, warmup=warmup, iters=iters,
                min_seconds=min_seconds)
    wall = time.perf_counter() - t0
    other = w.other_seconds()
    return ProcessRun(
        median_seconds=m.median_seconds,
        block_medians_seconds=block_medians(m.samples_seconds, blocks=blocks),
        iters=m.iters,
        wall_seconds=wall,
        other_cpu_seconds=other,
        disturbed=is_disturbed(other, wall, share=busy_share),
        load_before=load,
        started_at=started,
    )


def child_command(
    case: NoiseCase,
    *,
    python: str = sys.executable,
    warmup: int = 5,
    iters: int = 20,
    min_seconds: float = 3.0,
    blocks: int = 5,
    busy_share: float = BUSY_SHARE,
    seed: int = 0,
) -> list[str]:
    """The command line of a fresh process that measures ``case`` once and prints one JSON line."""
    return [
        python, "-m", ENTRY_MODULE,
        "--model", case.model,
        "--input-size", ";".join(",".join(str(d) for d in s) for s in case.input_size),
        "--threads", str(case.threads),
        "--warmup", str(warmup), "--iters", str(iters), "--min-seconds", repr(float(min_seconds)),
        "--blocks", str(blocks), "--busy-share", repr(float(busy_share)), "--seed", str(seed),
    ]


def run_child(command: Sequence[str], *, timeout: float | None = None) -> ProcessRun:
    """Run one child process and read its JSON line (a ModelError with its stderr when it fails)."""
    env = dict(os.environ)
    src = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    try:
        done = subprocess.run(list(command), capture_output=True, text=True, timeout=timeout, env=env, check=False)
    except subprocess.TimeoutExpired as e:
        raise ModelError(f"the measuring process ran past {timeout} s: {' '.join(command)}") from e
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    if done.returncode != 0 or not lines:
        raise ModelError(f"the measuring process failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}")
    return ProcessRun.from_dict(json.loads(lines[-1]))


# ---- many processes -----------------------------------------------------------------------------------------


def noise_floor(
    *,
    cases: Sequence[NoiseCase],
    processes: int = 5,
    gap_seconds: float = 20.0,
    warmup: int = 5,
    iters: int = 20,
    min_seconds: float = 3.0,
    blocks: int = 5,
    busy_share: float = BUSY_SHARE,
    retries: int = 1,
    q: int = 90,
    seed: int = 0,
    python: str = sys.executable,
    timeout: float | None = 600.0,
    progress: NoiseProgress | None = None,
    runner: Callable[[Sequence[str]], ProcessRun] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[NoiseFloor, ...]:
    """Each case timed in ``processes`` fresh processes, in rounds separated by ``gap_seconds``.

    A disturbed process is timed again after the gap, up to ``retries`` times (the last attempt is kept).
    ``runner`` (tests) replaces running a child command; ``sleep`` replaces waiting.
    """
    if not cases:
        raise InputError("noise_floor needs at least one case")
    processes = whole_number(processes, "processes", minimum=1)
    retries = whole_number(retries, "retries", minimum=0)
    if not (gap_seconds >= 0 and math.isfinite(gap_seconds)):
        raise InputError(f"gap_seconds={gap_seconds!r} must be >= 0")
    run = runner or (lambda command: run_child(command, timeout=timeout))
    tell = progress or (lambda done, total, what: None)
    kept: list[list[ProcessRun]] = [[] for _ in cases]
    retried = [0 for _ in cases]
    total = processes * len(cases)
    done = 0
    for r in range(processes):
        if r > 0 and gap_seconds > 0:
            sleep(gap_seconds)
        for i, case in enumerate(cases):
            command = child_command(case, python=python, warmup=warmup, iters=iters, min_seconds=min_seconds,
                                    blocks=blocks, busy_share=busy_share, seed=seed)
            attempt = 1
            result = run(command)
            while result.disturbed and attempt <= retries:
                retried[i] += 1
                if gap_seconds > 0:
                    sleep(gap_seconds)
                attempt += 1
                result = run(command)
            kept[i].append(dataclasses.replace(result, attempt=attempt))
            done += 1
            tell(done, total, f"{case.label}: process {r + 1}/{processes}")
    facts = machine_facts()
    return tuple(
        NoiseFloor(case=case, runs=tuple(runs), gap_seconds=float(gap_seconds), q=q, retried=n, machine=facts)
        for case, runs, n in zip(cases, kept, retried, strict=True)
    )


# ---- the child entry point ----------------------------------------------------------------------------------


def _parse_input_size(text: str) -> tuple[tuple[int, ...], ...]:
    try:
        shapes = tuple(tuple(int(d) for d in part.split(",") if d.strip()) for part in text.split(";") if part.strip())
    except ValueError:
        raise InputError(f"--input-size {text!r}: give e.g. 1,3,224,224 (several inputs: 1,3;1,5)") from None
    if not shapes or any(not s for s in shapes):
        raise InputError(f"--input-size {text!r}: give e.g. 1,3,224,224")
    return shapes


def main(argv: Sequence[str] | None = None) -> int:
    """Measure one model once in this process and print one JSON line (:class:`ProcessRun` as a dict)."""
    p = argparse.ArgumentParser(prog=f"python -m {ENTRY_MODULE}", description=main.__doc__)
    p.add_argument("--model", required=True, help="torchvision:NAME or package.module:callable")
    p.add_argument("--input-size", required=True, help="e.g. 1,3,224,224 (several inputs separated by ;)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--min-seconds", type=float, default=3.0)
    p.add_argument("--blocks", type=int, default=5)
    p.add_argument("--busy-share", type=float, default=BUSY_SHARE)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    model = build_model(args.model, seed=args.seed)
    result = measure_once(model=model, input_size=_parse_input_size(args.input_size), threads=args.threads,
                          warmup=args.warmup, iters=args.iters, min_seconds=args.min_seconds, blocks=args.blocks,
                          busy_share=args.busy_share)
    sys.stdout.write(json.dumps(result.as_dict()) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
