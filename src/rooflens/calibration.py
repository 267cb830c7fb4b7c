"""``rooflens hw calibrate``: time operators in context on this machine and train the learned latency model.

Steps (:func:`calibrate_device`):

1. The device's micro-benchmarks (:func:`rooflens.measurement.benchmark`): peak, bandwidth and per-operator
   overhead, the roofline reference the predictor learns a correction to (and the analytic calibration,
   kept as the baseline ``calibration="analytic"``).
2. **In-context samples** (:func:`sample_network`): networks generated from the blocks real networks use
   (:mod:`rooflens.measurement.blocks`; quick mode: a few per template at batch 1, full mode: more, at
   batch 1 and 8) and, in full mode, real torchvision models of every family, each analysed, profiled
   operator by operator (:func:`rooflens.measurement.profile_operators`) and timed plainly. Every matched
   operator record with its measured seconds is a :class:`~rooflens.analysis.predictor.Sample`; every
   network's plain latency against the sum of its profiled operators, a
   :class:`~rooflens.analysis.predictor.Network`. In full mode every network is profiled in three passes
   over all of them, minutes apart, and a sample's seconds are the median of its passes' (this machine's
   speed drifts by 10-30 % from minute to minute; labels from one moment teach the predictor that moment).
   On the CPU every network runs in a fresh process (:class:`rooflens.measurement.fresh.FreshProcesses`,
   on Linux; ``Plan.fresh_processes``): after 50-150 other networks, one process ran batch norms
   10-26 %, concatenations 16-50 % and depthwise convolutions 5-16 % slower than at its start, while a
   model in deployment runs in its own process.
3. :func:`rooflens.analysis.predictor.fit`: gradient-boosted trees per operator group (a network's learned
   time is the sum of its operators'). The result is stored in the measured device's ``extra["predictor"]``
   with the samples' provenance (machine, torch, threads, date, networks, and ``plain_over_profiled``: the
   median ratio of the sampled networks' plain latency to their profiled sum, how well that sum holds
   here), so ``rooflens hw calibrate --save FILE`` writes a device file that ``--hw FILE`` loads, and every
   report on it gets the learned estimate as ``report.calibrated``.

A network whose plain pass writes subnormal floats (``Measurement.subnormals``: operators on them can run
tens of times slower, at a speed the values set, not the shapes) is left out of the training and named in the
provenance (``dropped_subnormal``).

The provenance also records the allocator settings (``allocator``) and the plain passes' page faults per call
(``page_faults_per_call``): a process whose allocator hands freed memory back faults its activations in
again on every call, and its samples carry that cost. ``rooflens hw calibrate --keep-memory`` runs in a
process started with glibc keeping freed memory; this function runs in the caller's process as it is.
"""

from __future__ import annotations

import datetime as _dt
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch

from rooflens.analysis.calibrated import calibrate, can_calibrate
from rooflens.analysis.predictor import MIN_SAMPLES, Network, Predictor, Roof, Sample, fit, in_sequence
from rooflens.api import analyze
from rooflens.errors import HardwareError, ModelError
from rooflens.hardware.spec import HardwareSpec
from rooflens.measurement import benchmark, measure, profile_operators
from rooflens.measurement.blocks import generate, schedule
from rooflens.measurement.fresh import FreshProcesses, available
from rooflens.measurement.microbench import machine_name
from rooflens.measurement.timer import allocator_settings
from rooflens.report.report import Report

Progress = Callable[[str, float], None]

# real models profiled in full mode (torchvision constructor, family), batch 1
FULL_MODELS: tuple[tuple[str, str], ...] = (
    ("resnet18", "resnet"), ("resnet50", "resnet"), ("mobilenet_v2", "mobilenet"),
    ("mobilenet_v3_large", "mobilenet"), ("efficientnet_b0", "efficientnet"), ("regnet_y_400mf", "regnet"),
    ("densenet121", "densenet"), ("convnext_tiny", "convnext"), ("vit_b_32", "vit"), ("shufflenet_v2_x1_0", "shufflenet"),
    ("squeezenet1_0", "squeezenet"), ("googlenet", "inception"), ("mnasnet1_0", "mnasnet"), ("vgg11", "vgg"),
)


@dataclass(frozen=True)
class Plan:
    """How many generated networks per template and batch, and which real models."""

    per_template: int
    batches: tuple[int, ...]
    models: tuple[tuple[str, str], ...]
    iters: int  # profiled calls per network
    budget_seconds: float  # stop generating networks after this long (the models still run; all passes)
    passes: int = 1  # profiles of every network, pass after pass over all of them (the samples: their median)
    fresh_processes: bool = True  # every network in a fresh process (rooflens.measurement.fresh), where it can fork


QUICK = Plan(per_template=2, batches=(1,), models=(), iters=3, budget_seconds=30.0)
FULL = Plan(per_template=8, batches=(1, 8), models=FULL_MODELS, iters=5, budget_seconds=450.0, passes=3)


@dataclass(frozen=True)
class Job:
    """One network to sample: a generated one (``template``, ``seed``, ``batch``) or a torchvision ``model``."""

    source: str
    family: str = ""
    template: str = ""
    seed: int = 0
    batch: int = 1
    model: str = ""


def sample_job(job: Job, threads: int, iters: int, device: str) -> tuple[list[Sample], Network]:
    """Build ``job``'s network and sample it (:func:`sample_network`): what a fresh process runs."""
    with torch.random.fork_rng(devices=[]):  # the seeds and the input drawn here leave the random state alone
        if job.model:
            module, size = _torchvision_model(job.model)
        else:
            g = generate(job.template, seed=job.seed, batch=job.batch)
            module, size = g.model, g.input_size
        x = torch.randn(size)
    return sample_network(module, x, source=job.source, family=job.family, threads=threads, iters=iters, device=device)


def sample_network(
    model: torch.nn.Module,
    inputs: Any,
    *,
    source: str,
    family: str = "",
    threads: int | None = None,
    iters: int = 5,
    device: str = "cpu",
    report: Report | None = None,
) -> tuple[list[Sample], Network]:
    """Profile one network on ``device`` and time it plainly: its timed operators as samples (an operator
    the profile could not match has ``seconds`` 0), and the whole network.

    ``inputs``: a tensor or a tuple of tensors (as :func:`rooflens.analyze` takes them); the model and its
    inputs are copied to ``device`` for the run (the model is left as it is). ``report``: the model's
    analysis at these inputs when the caller has it already (otherwise it is analysed here).
    """
    report = report if report is not None else analyze(model, inputs)
    profile = profile_operators(model, inputs, report, device=device, threads=threads, warmup=2, iters=iters)
    plain = measure(model, inputs, device=device, threads=threads, warmup=2, iters=10, min_seconds=0.3,
                    max_seconds=3.0)
    samples = [Sample.of(record, seconds or 0.0, source, family, previous)
               for (record, previous), seconds in zip(in_sequence(report.records), profile.record_seconds, strict=True)]
    calls = sum(node.calls for path, node in report.modules.items() if path)
    subnormal = plain.subnormals.subnormal if plain.subnormals is not None else None
    network = Network(source, family, plain.median_seconds, profile.matched_seconds, len(report.records), calls,
                      plain.page_faults_per_call, subnormal)
    return samples, network


def calibrate_device(
    *,
    spec: HardwareSpec | None = None,
    quick: bool = False,
    threads: int | None = None,
    device: str = "cpu",
    progress: Progress | None = None,
) -> HardwareSpec:
    """Measure this machine's ``device`` ("cpu" or "cuda[:N]") and train its learned latency model (see the
    module docstring); ``threads``: torch's CPU threads during the run (the predictor is for this many).

    ``spec``: a device measured before (``rooflens hw bench``) to reuse its micro-benchmarks; otherwise they
    run first. Returns the measured device with ``extra["predictor"]``.
    """
    tell = progress or (lambda stage, share: None)
    plan = QUICK if quick else FULL
    started = time.perf_counter()
    if spec is None or not can_calibrate(spec):
        tell("micro-benchmarks", 0.0)
        spec = benchmark(device=device, quick=quick, threads=threads)
    cal = calibrate(spec)
    jobs = [Job(f"{template}-{seed}-b{batch}", template=template, seed=seed, batch=batch)
            for template, seed in schedule(plan.per_template)  # round by round: the budget cuts every template evenly
            for batch in plan.batches]
    if plan.models:
        _torchvision()  # says what to install before anything runs
    models = [Job(name, family, model=name) for name, family in plan.models]
    threads = threads or torch.get_num_threads()  # what every network runs with, in this process or a fresh one
    preload = ("torch", "rooflens.calibration", *(("torchvision",) if plan.models else ()))
    # the heap's reason for them is the CPU's (a GPU run would pay a CUDA context per network instead)
    on_cpu = torch.device(device).type == "cpu"
    fresh = FreshProcesses(preload) if plan.fresh_processes and on_cpu and available() else None
    if fresh is not None:
        fresh(len, ())  # the server's imports (seconds) before the sampling budget's clock starts
    profiles: dict[str, list[list[Sample]]] = {}  # per network, its samples of every pass
    written_subnormal: set[str] = set()  # networks whose plain pass wrote subnormal floats
    networks: list[Network] = []
    total = plan.passes * (len(jobs) + len(models))
    done = 0
    sampled_started = time.perf_counter()
    try:
        for p in range(plan.passes):
            for i, job in enumerate([*jobs, *models]):
                done += 1
                if p == 0 and i < len(jobs) and time.perf_counter() - sampled_started > plan.budget_seconds / plan.passes:
                    continue  # the first pass decides which generated networks fit in the budget
                if p and (job.source not in profiles or job.source in written_subnormal):
                    continue  # left out in the first pass, or already known to be left out of training
                tell(f"sampling {job.source}" + (f" (pass {p + 1}/{plan.passes})" if plan.passes > 1 else ""), done / total)
                args = (job, threads, plan.iters, device)
                try:
                    s, n = fresh(sample_job, *args) if fresh is not None else sample_job(*args)
                except ModelError as e:
                    raise ModelError(f"sampling {job.source}: {e}") from e
                profiles.setdefault(job.source, []).append(s)
                networks.append(n)
                if n.subnormal:  # it runs at a speed its values set, not its shapes: not learned from
                    written_subnormal.add(job.source)
    finally:
        if fresh is not None:
            fresh.close()
    dropped = sorted(written_subnormal)
    networks = [n for n in networks if n.source not in dropped]
    samples = [s for source, passes in profiles.items() if source not in dropped for s in median_samples(passes)]
    tell("training", 1.0)
    timed = sum(s.seconds > 0 for s in samples)
    ratios = [n.seconds / n.profiled_seconds for n in networks if n.profiled_seconds > 0]
    provenance = {
        "machine": machine_name(torch.device(device)), "device": device, "torch": torch.__version__, "python": platform.python_version(),
        "threads": threads, "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "mode": "quick" if quick else "full", "samples": timed,
        "networks": len(profiles) - len(dropped), "passes": plan.passes, "fresh_processes": fresh is not None,
        "models": [m for m, _ in plan.models], "seconds": round(time.perf_counter() - started, 1),
    }
    if ratios:  # how a whole pass composes from its operators here (the learned time is their sum; 1: exactly)
        provenance["plain_over_profiled"] = round(statistics.median(ratios), 3)
    faults = [n.page_faults_per_call for n in networks if n.page_faults_per_call is not None]
    if faults:  # the plain passes' page faults (a faulting process's labels carry the cost of its faults)
        provenance["page_faults_per_call"] = {"median": round(statistics.median(faults), 1), "max": max(faults)}
    provenance["allocator"] = allocator_settings()
    if dropped:
        provenance["dropped_subnormal"] = dropped
        if timed < MIN_SAMPLES:
            raise HardwareError(
                f"too few networks left to train on: {', '.join(dropped)} wrote subnormal floats (their speed is set "
                "by their values) and were left out; calibrate with flush-to-zero on (torch.set_flush_denormal(True))")
    predictor = fit(samples, roof=Roof.of(cal), provenance=provenance)
    return with_predictor(spec, predictor)


def median_samples(passes: Sequence[Sequence[Sample]]) -> list[Sample]:
    """One network's samples from its profiles in several passes (the same records in the same order): each
    operator's seconds the median of the passes that timed it (0 where none did)."""
    out = []
    for same in zip(*passes, strict=True):
        timed = [s.seconds for s in same if s.seconds > 0]
        out.append(replace(same[0], seconds=statistics.median(timed) if timed else 0.0))
    return out


def with_predictor(spec: HardwareSpec, predictor: Predictor) -> HardwareSpec:
    """``spec`` carrying ``predictor`` in ``extra["predictor"]`` (what ``--hw FILE`` loads)."""
    return replace(spec, extra={**spec.extra, "predictor": predictor.as_dict()})


def _torchvision() -> Any:
    try:
        import torchvision
    except ImportError as e:
        raise HardwareError("a full calibration profiles torchvision models: pip install 'rooflens[vision]'") from e
    return torchvision


def _torchvision_model(name: str) -> tuple[torch.nn.Module, tuple[int, ...]]:
    torch.manual_seed(0)
    kwargs: dict[str, Any] = {"weights": None}
    if name == "googlenet":
        kwargs["aux_logits"] = False
        kwargs["init_weights"] = False
    return _torchvision().models.get_model(name, **kwargs).eval(), (1, 3, 224, 224)
