"""How well rooflens predicts real CPU latency: the learned predictor, validated leave-one-family-out (issue 14).

Protocol (as the latency-prediction literature does it, nn-Meter and LitePred):

1. **Collect** (per thread count). For every model of ``MODELS`` (32 models in 13 families: torchvision
   classifiers and BERT-style encoders built from configs) at batch 1 and 8, in a fresh process: the
   model is analysed, profiled operator by operator (``rooflens.calibration.sample_network``: the in-context
   samples) and timed plainly. Then ``--processes`` - 1 more fresh processes per model, in rounds
   ``--gap`` seconds apart, time it again: the measured latency of a case is the median of its processes'
   medians, and their scatter is the **noise floor** printed beside every figure, with the **ceiling**:
   the share a perfect predictor would reach against such a median. The generated networks
   (``rooflens.measurement.blocks.schedule``: ``--per-template`` random networks of every template, three
   times as many generic ones, at batch 1 and 8) are profiled the same way, pass k over them right after
   round k of the cases (so that the machine's drift reaches both alike), each in a fresh process forked
   from a clean server (``rooflens.measurement.fresh``, as ``hw calibrate`` does; through run J3 they were
   profiled one after another in a single process, which ran batch norms, concatenations and depthwise
   convolutions 5-50 % slower after 50-150 networks: docs/prediction.md). With ``--data FILE`` the
   collected data is kept; run again, it is topped up (more ``--processes``, ``--regenerate``).
2. **Evaluate**, leave one family out: for each family F, a predictor is trained
   (``rooflens.analysis.predictor.fit``) on the samples of the other families' models and of the
   generated networks that do not imitate F, and predicts F's models. Nothing is fitted on the models it
   is judged on. Beside it: the plain roofline and the analytic calibration (micro-benchmarks only,
   ``calibration="analytic"``), both on the micro-benchmarks measured at the same thread count.

Per model and overall: error, share within +-5/10/15/20 %, RMSPE, median and p90 absolute error, Spearman; per
operator kind and batch, the held-out models' operators' predicted over profiled seconds; and the **operator-sum
ceiling** (``operator_sum``): the shares a predictor that reproduced every profiled operator's label would reach.

    python bench/prediction_accuracy.py [--threads 1,2] [--processes 5] [--quick] [--hw FILE]
                                        [--data FILE]   # keep, top up (--regenerate) or reuse (--reuse) the data
                                        [--json-out FILE]

``--quick``: 12 models, 2 processes, 2 generated networks per template. A full run (5 processes) took
73 minutes on 2 vCPUs, its evaluation included (results: docs/prediction.md).

Labels: by default the samples' seconds are those of one profile. ``--profile-rounds N`` profiles the
models in the first N rounds of processes and ``--passes K`` profiles the generated networks in K passes
over all of them; ``--labels median`` then trains on each operator's median over its profiles
(``median:K``: over the first K; ``round:K``: the profile of round K alone), as ``hw calibrate`` does in
full mode. Run D (``--threads 1 --profile-rounds 5 --passes 3``) took 63 minutes of collection.

Subnormal floats: every timed case records how many its forward pass writes (``Measurement.subnormals``); cases
that write any are named, and a second summary row (``normal``) leaves them out (their latency depends on values).
As ``rooflens hw calibrate`` does, no predictor is trained on a network that writes any (a held-out case that
does is still predicted and judged).

``--scale-labels`` (an A/B of the evaluation): every training network's labels times its plain latency over its
profiled sum. ``--network-exponent`` (an A/B too): how the training samples weigh (``fit``'s
``network_exponent``; 0 weighs them by their seconds alone, as predictor version 5 did). Page faults: every
timed case records the minor page faults per forward of its processes. ``--keep-memory`` runs the whole collection with glibc keeping freed memory (``MALLOC_MMAP_THRESHOLD_`` and
``MALLOC_TRIM_THRESHOLD_`` at 10^9, set by starting again with them): forward passes stop faulting their
activations in again on every call (``bench/page_faults.py``), as with jemalloc or tcmalloc.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import random
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from rooflens.analysis.calibrated import Calibration, calibrate, predict
from rooflens.analysis.predictor import NETWORK_EXPONENT, Roof, Sample, fit, in_sequence, predict_sample
from rooflens.cli import memory_kept
from rooflens.hardware import load_file
from rooflens.measurement.blocks import schedule
from rooflens.measurement.fresh import FreshProcesses, available
from rooflens.measurement.microbench import benchmark
from rooflens.measurement.timer import allocator_settings
from rooflens.report.measure_render import KEEP_MEMORY_ENV, settings_text
from rooflens.types import Cost, OpRecord, TensorKind, TensorMeta

# (name, family): torchvision constructors, or "bert:<layers>x<hidden>" encoders from a BertConfig
MODELS: list[tuple[str, str]] = [
    ("resnet18", "resnet"), ("resnet34", "resnet"), ("resnet50", "resnet"), ("resnext50_32x4d", "resnet"),
    ("mobilenet_v2", "mobilenet"), ("mobilenet_v3_small", "mobilenet"), ("mobilenet_v3_large", "mobilenet"),
    ("mnasnet0_5", "mnasnet"), ("mnasnet1_0", "mnasnet"),
    ("efficientnet_b0", "efficientnet"), ("efficientnet_b1", "efficientnet"), ("efficientnet_b2", "efficientnet"),
    ("regnet_x_400mf", "regnet"), ("regnet_y_400mf", "regnet"), ("regnet_x_800mf", "regnet"), ("regnet_y_800mf", "regnet"),
    ("densenet121", "densenet"), ("densenet169", "densenet"),
    ("convnext_tiny", "convnext"),
    ("vit_b_32", "vit"), ("swin_t", "vit"),
    ("shufflenet_v2_x0_5", "shufflenet"), ("shufflenet_v2_x1_0", "shufflenet"), ("shufflenet_v2_x1_5", "shufflenet"),
    ("squeezenet1_0", "squeezenet"), ("squeezenet1_1", "squeezenet"),
    ("vgg11", "vgg"), ("alexnet", "vgg"),
    ("googlenet", "inception"),
    ("bert:4x256", "bert"), ("bert:4x512", "bert"), ("bert:6x768", "bert"),
]
QUICK_MODELS = ["resnet18", "resnet50", "mobilenet_v2", "mobilenet_v3_large", "efficientnet_b0", "regnet_y_400mf",
                "densenet121", "shufflenet_v2_x1_0", "squeezenet1_0", "googlenet", "alexnet", "bert:4x256"]
SEQUENCE = 128  # tokens per sequence of the encoders


def build(name: str, batch: int) -> tuple[torch.nn.Module, Any]:
    """The model (seeded random weights, eval mode) and its input at ``batch``."""
    torch.manual_seed(0)
    if name.startswith("bert:"):
        from transformers import BertConfig, BertModel

        layers, hidden = (int(v) for v in name[5:].split("x"))
        config = BertConfig(num_hidden_layers=layers, hidden_size=hidden, num_attention_heads=hidden // 64,
                            intermediate_size=4 * hidden, attn_implementation="sdpa")
        model = BertModel(config, add_pooling_layer=True).eval()
        return model, torch.randint(0, config.vocab_size, (batch, SEQUENCE))
    import torchvision

    kwargs: dict[str, Any] = {"weights": None}
    if name in ("googlenet", "inception_v3"):
        kwargs.update(aux_logits=False, init_weights=False)
    return torchvision.models.get_model(name, **kwargs).eval(), torch.randn(batch, 3, 224, 224)


# ---- collection (child processes) -------------------------------------------------------------------

def child(name: str, batches: list[int], threads: int, hw: str, profile: bool, budget: float) -> dict[str, Any]:
    """One fresh process: time ``name`` at each batch (and profile it: samples, roofline, analytic)."""
    from rooflens.calibration import sample_network
    from rooflens.measurement import measure

    torch.set_num_threads(threads)
    spec = load_file(hw)[0]
    cal = calibrate(spec)
    out: dict[str, Any] = {}
    for batch in batches:
        model, x = build(name, batch)
        m = measure(model, x, threads=threads, warmup=3, iters=5, min_seconds=budget, max_seconds=4 * budget)
        case: dict[str, Any] = {"median_s": m.median_seconds, "load": os.getloadavg()[0],
                                "faults": m.page_faults_per_call,
                                "subnormal": m.subnormals.subnormal if m.subnormals is not None else None}
        if profile:
            import rooflens

            report = rooflens.analyze(model, x, hardware=spec)  # one analysis: samples, roofline, analytic
            samples, network = sample_network(model, x, source=f"{name}/b{batch}", family=dict(MODELS)[name],
                                              threads=threads, report=report)
            case.update(samples=[s.as_row() for s in samples], network=network.as_row(),
                        records=[encode(r) for r in report.records],
                        roofline_s=report.roofline.total_seconds, analytic_s=predict(report, cal).total_seconds)
        out[str(batch)] = case
    return out


def run_child(name: str, batches: list[int], threads: int, hw: str, profile: bool, budget: float) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", name, "--batches", ",".join(map(str, batches)), "--threads",
           str(threads), "--hw", hw, "--budget", str(budget)] + (["--profile"] if profile else [])
    done = subprocess.run(cmd, check=False, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{name}: child failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def encode(r: OpRecord) -> list[Any]:
    """A compact row of an operator record (what the features are computed from), for the data file."""
    def tensors(ts: tuple[TensorMeta, ...]) -> list[Any]:
        return [[list(t.shape), t.dtype, t.itemsize, t.kind.value, t.bits, t.group] for t in ts]
    c = r.cost
    return [r.op, r.module, r.family, r.phase, r.via, tensors(r.inputs), tensors(r.outputs),
            [c.macs, c.flops, c.bytes_read, c.bytes_written]]


def decode(row: list[Any]) -> OpRecord:
    def tensors(ts: list[Any]) -> tuple[TensorMeta, ...]:
        return tuple(TensorMeta(tuple(t[0]), t[1], t[2], TensorKind(t[3]), t[4], t[5]) for t in ts)
    return OpRecord(op=row[0], module=row[1], inputs=tensors(row[5]), outputs=tensors(row[6]), cost=Cost(*row[7]),
                    family=row[2], phase=row[3], via=row[4])


def labels(entry: dict[str, Any], how: str) -> list[float]:
    """A network's measured seconds per operator record: of its first profile (``first``), of its profile in
    round ``round:K``, or the median over its profiles (``median``; ``median:K``: over the first K; of the
    rounds that timed the operator)."""
    rounds: list[list[float]] = entry.get("round_seconds") or [[row[4] for row in entry["samples"]]]
    if how == "first":
        return rounds[0]
    if how.startswith("round:"):
        return rounds[int(how[6:]) % len(rounds)]
    if how.startswith("median:"):
        rounds = rounds[: int(how[7:])]
    return [statistics.median(timed) if (timed := [v for v in op if v > 0]) else 0.0 for op in zip(*rounds, strict=True)]


def resampled(entry: dict[str, Any], how: str = "first", scale: bool = False) -> list[Sample]:
    """The samples of a network recomputed from its records (the features as this rooflens computes them),
    labelled with its measured seconds as ``how`` says (:func:`labels`); with ``scale``, times the network's
    plain latency over its profiled sum (:func:`plain_over_profiled`): the labels then add up to a plain pass."""
    seconds = labels(entry, how)
    factor = plain_over_profiled(entry, seconds) if scale else 1.0
    records = [decode(rec) for rec in entry["records"]]
    return [Sample.of(rec, factor * t, row[5], row[6], previous)
            for (rec, previous), row, t in zip(in_sequence(records), entry["samples"], seconds, strict=True)]


def plain_over_profiled(entry: dict[str, Any], seconds: list[float]) -> float:
    """A network's plain latency in the processes that profiled it over the sum of its labels: a model's
    median plain latency over its profiled rounds, a generated network's first pass's plain over profiled."""
    if "medians_s" in entry:  # a model: rounds 1..k were profiled, each with its plain timing
        profiled = len(entry.get("round_seconds") or [None])
        total = sum(t for t in seconds if t > 0)
        return statistics.median(entry["medians_s"][:profiled]) / total if total > 0 else 1.0
    network = entry["network"]  # [source, family, plain seconds, profiled seconds, records, calls]
    return float(network[2] / network[3]) if network[3] > 0 else 1.0


def collect(models: list[tuple[str, str]], threads: int, hw: str, processes: int, gap: float, per_template: int,
            budget: float, before: dict[str, Any] | None = None, regenerate: bool = False,
            profile_rounds: int = 1, passes: int = 1) -> dict[str, Any]:
    """The cases' rounds of processes and the generated networks at ``threads``; ``before``: what an earlier
    run collected, topped up here (the rounds a case lacks; the generated networks again if ``regenerate``).
    The first ``profile_rounds`` rounds profile the models (each profile's seconds per operator kept in
    ``round_seconds``); the generated networks are profiled in ``passes`` passes over all of them, pass k after
    round k of the cases, so that the machine's drift over the collection reaches both alike."""
    cases: dict[str, Any] = dict(before["cases"]) if before else {}
    sample_generated = before is None or regenerate
    generated: dict[str, dict[str, Any]] = {}
    with contextlib.ExitStack() as stack:
        fresh = (stack.enter_context(FreshProcesses(("torch", "rooflens.calibration")))
                 if sample_generated and available() else None)
        for r in range(max(processes, passes if sample_generated else 0)):
            due = [(name, family) for name, family in models
                   if r < processes and len(cases.get(f"{name}/b1", {}).get("medians_s", [])) <= r]
            if r and due:
                time.sleep(gap)
            for name, family in due:
                t0 = time.perf_counter()
                got = run_child(name, [1, 8], threads, hw, profile=(r < profile_rounds), budget=budget)
                for batch, case in got.items():
                    entry = cases.setdefault(f"{name}/b{batch}", {"model": name, "family": family, "batch": int(batch),
                                                                   "medians_s": []})
                    entry["medians_s"].append(case["median_s"])
                    entry.setdefault("loads", []).append(case["load"])
                    entry.setdefault("faults", []).append(case.get("faults"))
                    entry.setdefault("subnormal", []).append(case.get("subnormal"))
                    if "samples" in case:  # a profile: the first one's records, every one's seconds
                        rounds = entry.setdefault("round_seconds", [labels(entry, "first")] if "samples" in entry else [])
                        for k in ("samples", "network", "roofline_s", "analytic_s", "records"):
                            entry.setdefault(k, case[k])
                        rounds.append(aligned(entry, case))
                print(f"  [{threads} thr, round {r + 1}/{processes}] {name}: "
                      + ", ".join(f"b{b} {c['median_s'] * 1e3:.2f} ms" for b, c in got.items())
                      + f" ({time.perf_counter() - t0:.1f} s)", flush=True)
            if sample_generated and r < passes:
                generated_pass(generated, threads, per_template, r, passes, fresh)
    if before and not sample_generated:
        return {"cases": cases, "generated": before["generated"], "fresh_processes": before.get("fresh_processes", False)}
    return {"cases": cases, "generated": list(generated.values()), "fresh_processes": fresh is not None}


def aligned(entry: dict[str, Any], case: dict[str, Any]) -> list[float]:
    """The seconds per operator record of one more profile of ``entry``'s network (the same records)."""
    if case["records"] != entry["records"]:
        raise RuntimeError(f"{entry.get('model', entry.get('name'))}: the profiles analysed different records")
    return [row[4] for row in case["samples"]]


def generated_pass(generated: dict[str, dict[str, Any]], threads: int, per_template: int, p: int, passes: int,
                   fresh: FreshProcesses | None) -> None:
    """Pass ``p`` over the generated networks (``blocks.schedule``) at batch 1 and 8, into ``generated`` (each
    pass's seconds per operator in ``round_seconds``): every network in a fresh process forked from a clean
    server (``rooflens.measurement.fresh``, as ``rooflens hw calibrate`` does) where this platform can fork."""
    # by its module's name, not __main__'s: a fresh process imports what it runs
    from prediction_accuracy import generated_case as job

    for batch in (1, 8):
        for template, seed in schedule(per_template):
            args = (template, 1000 * threads + seed, batch, threads)
            try:
                case = fresh(job, *args) if fresh is not None else job(*args)
            except Exception as e:  # noqa: BLE001 -- a network the generator got wrong costs its samples
                print(f"  [{threads} thr] {template} seed {seed} batch {batch} left out: {type(e).__name__}: {e}")
                continue
            if p and case["name"] not in generated:
                continue  # left out in the first pass
            entry = generated.setdefault(case["name"], case)
            entry.setdefault("round_seconds", []).append(aligned(entry, case))
            if entry is not case:  # any pass that wrote subnormal floats counts (as hw calibrate drops it)
                entry["subnormal"].append(case["subnormal"][0])
        print(f"  [{threads} thr] pass {p + 1}/{passes}: generated networks up to batch {batch}: {len(generated)}",
              flush=True)


def generated_case(template: str, seed: int, batch: int, threads: int) -> dict[str, Any]:
    """One generated network profiled (in the process that calls this): its samples, records and plain pass."""
    import rooflens
    from rooflens.calibration import sample_network
    from rooflens.measurement.blocks import generate

    torch.set_num_threads(threads)  # in a fresh process: its own setting
    g = generate(template, seed=seed, batch=batch)
    x = torch.randn(g.input_size)
    report = rooflens.analyze(g.model, x)
    samples, network = sample_network(g.model, x, source=g.name, threads=threads, iters=3, report=report)
    return {"name": g.name, "imitates": list(g.imitates), "samples": [s.as_row() for s in samples],
            "network": network.as_row(), "records": [encode(r) for r in report.records], "subnormal": [network.subnormal]}


# ---- evaluation -------------------------------------------------------------------------------------

def spearman(a: list[float], b: list[float]) -> float:
    """Spearman's rank correlation (average ranks for ties)."""
    def ranks(v: list[float]) -> list[float]:
        order = sorted(range(len(v)), key=lambda i: v[i])
        r = [0.0] * len(v)
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and v[order[j + 1]] == v[order[i]]:
                j += 1
            for k in range(i, j + 1):
                r[order[k]] = (i + j) / 2 + 1
            i = j + 1
        return r

    ra, rb = ranks(a), ranks(b)
    ma, mb = statistics.fmean(ra), statistics.fmean(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    var = math.sqrt(sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb))
    return cov / var if var else float("nan")


def quantile(v: list[float], q: float) -> float:
    s = sorted(v)
    if not s:
        return float("nan")
    pos = q * (len(s) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def within(absolute: list[float]) -> dict[str, float]:
    """The shares of absolute relative errors within 5, 10, 15 and 20 %."""
    return {f"within_{k}pct": sum(a <= k / 100 for a in absolute) / len(absolute) for k in (5, 10, 15, 20)}


def stats(measured: list[float], predicted: list[float]) -> dict[str, float]:
    errors = [p / m - 1 for m, p in zip(measured, predicted)]
    absolute = [abs(e) for e in errors]
    out = within(absolute)
    out.update(rmspe=math.sqrt(statistics.fmean(e * e for e in errors)), median_abs=quantile(absolute, 0.5),
               p90_abs=quantile(absolute, 0.9), mean=statistics.fmean(errors), spearman=spearman(measured, predicted),
               n=len(errors))
    return out


def noise(cases: dict[str, Any], draws: int = 20000) -> dict[str, float]:
    """How repeatable a case's latency is across fresh processes: each process against the median of the
    case's other processes (p90 of the absolute deviation: the half-width one process is within 90 % of
    the time; the shares within +-10 and +-15 %), the median CV, and the CV of a median of that many
    processes (CV / sqrt(processes)).

    And the **ceiling**: the share of cases a perfect predictor (one that knew each case's true latency)
    would have within +-k % of a median of that many processes, each process off by one of the measured
    deviations (pooled over all cases, drawn with replacement). The true deviations are not observable:
    against the median of the others they come out too wide (that median is noisy too: ``ceiling_low``),
    against the median of all too narrow (the median process counts as exact: ``ceiling_high``)."""
    apart, around = [], []  # each process against the median of the others, of all
    cvs = []
    for c in cases.values():
        m = c["medians_s"]
        if len(m) < 2:
            continue
        apart += [v / statistics.median(m[:i] + m[i + 1:]) - 1 for i, v in enumerate(m)]
        around += [v / statistics.median(m) - 1 for v in m]
        cvs.append(statistics.stdev(m) / statistics.fmean(m))
    if not cvs:
        return {}
    processes = max(len(c["medians_s"]) for c in cases.values())
    out = {"processes": processes, "p90_half_width": quantile([abs(d) for d in apart], 0.9),
           **{f"single_within_{k}pct": sum(abs(d) <= k / 100 for d in apart) / len(apart) for k in (10, 15)},
           "median_cv": statistics.median(cvs), "median_cv_of_median": statistics.median(cvs) / math.sqrt(processes)}
    for bound, deviations in (("low", apart), ("high", around)):
        rng = random.Random(0)
        misses = [abs(1 / statistics.median(1 + rng.choice(deviations) for _ in range(processes)) - 1)
                  for _ in range(draws)]
        out.update({f"ceiling_{bound}_within_{k}pct": sum(e <= k / 100 for e in misses) / draws for k in (5, 10, 15, 20)})
    return out


def operator_sum(cases: dict[str, Any], how: str, scale: bool = False) -> dict[str, float]:
    """The **operator-sum ceiling**: how close each case's profiled operators, labelled as the predictor is
    trained (``how``, ``scale``) and summed, come to its measured latency (the median of its processes). A
    learned time is a sum of operators' times, so a predictor that reproduced every label exactly would reach
    these shares; the sum misses by the profile's own errors: the profiler's cost, the work between operators,
    the profiled processes' speed against the others'."""
    ratios = []
    for c in cases.values():
        if "samples" in c:
            seconds = labels(c, how)
            factor = plain_over_profiled(c, seconds) if scale else 1.0
            ratios.append(factor * math.fsum(seconds) / statistics.median(c["medians_s"]))
    if not ratios:
        return {}
    return {**within([abs(r - 1) for r in ratios]), "median_ratio": statistics.median(ratios),
            "p10_ratio": quantile(ratios, 0.1), "p90_ratio": quantile(ratios, 0.9)}


def evaluate(data: dict[str, Any], cal: Calibration, how: str = "first", scale: bool = False,
             exponent: float = NETWORK_EXPONENT) -> dict[str, Any]:
    cases, generated = data["cases"], data["generated"]
    for entry in [*cases.values(), *generated]:
        entry["resampled"] = resampled(entry, how, scale)
    families = sorted({c["family"] for c in cases.values()})
    uncounted = sum("subnormal" not in g for g in generated)
    if uncounted:
        print(f"note: {uncounted} generated networks were collected without a subnormal count (older data): "
              "they are trained on unchecked")
    rows = []
    by_kind: dict[str, list[float]] = {}
    for family in families:
        train_s: list[Sample] = []  # as a calibration trains: not on networks that write subnormal floats
        for c in cases.values():
            if c["family"] != family and not subnormal_count(c):
                train_s += c["resampled"]
        for g in generated:
            if family not in g["imitates"] and not subnormal_count(g):
                train_s += g["resampled"]
        predictor = fit(train_s, roof=Roof.of(cal), network_exponent=exponent)
        for key, c in cases.items():
            if c["family"] != family:
                continue
            samples = c["resampled"]
            predicted = [predict_sample(predictor, s) for s in samples]
            for sample, seconds in zip(samples, predicted, strict=True):  # per kind: held-out predicted, labelled
                if sample.seconds > 0:
                    both = by_kind.setdefault(f"{sample.kind}/b{c['batch']}", [0.0, 0.0])
                    both[0] += seconds
                    both[1] += sample.seconds
            rows.append({"case": key, "model": c["model"], "family": family, "batch": c["batch"],
                         "measured_s": statistics.median(c["medians_s"]),
                         "learned_s": math.fsum(predicted),
                         "analytic_s": c["analytic_s"], "roofline_s": c["roofline_s"],
                         "processes": len(c["medians_s"]), "faults": _median_faults(c),
                         "subnormal": subnormal_count(c)})
    summary = {}
    normal = [r for r in rows if not r["subnormal"]]  # value-dependent latency: a second figure without them
    sets = [("all", rows)] + [(f"batch {b}", [r for r in rows if r["batch"] == b]) for b in (1, 8)]
    for label, subset in sets + ([("normal", normal)] if 0 < len(normal) < len(rows) else []):
        for method in ("learned", "analytic", "roofline"):
            summary[f"{label}/{method}"] = stats([r["measured_s"] for r in subset], [r[f"{method}_s"] for r in subset])
    return {"rows": rows, "summary": summary, "noise": noise(cases), "operator_sum": operator_sum(cases, how, scale),
            "labels": how, "scaled": scale,
            "by_kind": {k: {"predicted_s": p, "labelled_s": t} for k, (p, t) in sorted(by_kind.items())}}


def subnormal_count(entry: dict[str, Any]) -> int | None:
    """The most subnormal floats a case's (or generated network's) forward wrote in any of its processes
    (None: not counted)."""
    return max((n for n in entry.get("subnormal", []) if n is not None), default=None)


def _median_faults(case: dict[str, Any]) -> float | None:
    """The case's minor page faults per forward, median over its processes (None: not recorded)."""
    counted = [f for f in case.get("faults", []) if f is not None]
    return statistics.median(counted) if counted else None


def render(threads: int, result: dict[str, Any]) -> None:
    print(f"\n== {threads} thread(s): leave-one-family-out ==")
    print(f"{'model':<22} {'family':<12} {'b':>2} {'measured ms':>11} {'learned':>9} {'err':>7} "
          f"{'analytic':>9} {'err':>7} {'roofline':>9} {'err':>7}")
    for r in result["rows"]:
        m = r["measured_s"]
        print(f"{r['model']:<22} {r['family']:<12} {r['batch']:>2} {m * 1e3:>11.2f} "
              + " ".join(f"{r[k] * 1e3:>9.2f} {100 * (r[k] / m - 1):>+6.1f}%" for k in ("learned_s", "analytic_s", "roofline_s")))
    print("per operator kind, the held-out models' operators: predicted / profiled seconds (profiled ms)")
    print("  " + "; ".join(f"{k} {v['predicted_s'] / v['labelled_s']:.2f} ({1e3 * v['labelled_s']:.0f})"
                           for k, v in result["by_kind"].items() if v["labelled_s"] > 1e-3))
    subnormal = [f"{r['case']} ({r['subnormal']:,})" for r in result["rows"] if r.get("subnormal")]
    if subnormal:
        print("cases whose forward writes subnormal floats (latency that depends on the values; 'normal': the "
              "others): " + ", ".join(subnormal))
    faulted = sorted((r["faults"], r["case"]) for r in result["rows"] if r.get("faults") is not None)
    if faulted:
        print(f"minor page faults per forward (median of a case's processes): median "
              f"{statistics.median(f for f, _ in faulted):.0f}, "
              f"{sum(f > 100 for f, _ in faulted)} of {len(faulted)} cases above 100, most {faulted[-1][0]:.0f} "
              f"({faulted[-1][1]})")
    n = result["noise"]
    if n:
        print(f"noise floor: {n['processes']} processes per case; one process against the median of the others: "
              f"p90 half-width {100 * n['p90_half_width']:.1f} %, within +-10 % {100 * n['single_within_10pct']:.0f} %, "
              f"+-15 % {100 * n['single_within_15pct']:.0f} %; median CV {100 * n['median_cv']:.1f} % "
              f"(of the median of {n['processes']}: about {100 * n['median_cv_of_median']:.1f} %)")
        print(f"ceiling (a perfect predictor against the median of {n['processes']} processes): " + ", ".join(
            f"{100 * n[f'ceiling_low_within_{k}pct']:.0f}-{100 * n[f'ceiling_high_within_{k}pct']:.0f} % within "
            f"+-{k} %" for k in (5, 10, 15, 20)))
    o = result.get("operator_sum")
    if o:
        print(f"operator-sum ceiling (each case's profiled operators, labelled as trained ({result['labels']}"
              f"{', scaled' if result['scaled'] else ''}), summed, "
              "against the median of its processes): " + ", ".join(f"{100 * o[f'within_{k}pct']:.0f} % within +-{k} %"
                                                                   for k in (5, 10, 15, 20))
              + f"; sum over measured: median {o['median_ratio']:.2f}, p10-p90 {o['p10_ratio']:.2f}-{o['p90_ratio']:.2f}")
    print(f"{'set':<9} {'method':<9} {'n':>3} {'<=5%':>5} {'<=10%':>6} {'<=15%':>6} {'<=20%':>6} {'RMSPE':>6} "
          f"{'med|e|':>7} {'p90|e|':>7} {'mean':>7} {'spearman':>8}")
    for key, s in result["summary"].items():
        label, method = key.split("/")
        print(f"{label:<9} {method:<9} {s['n']:>3} " + " ".join(
            f"{100 * s[k]:>{w}.0f}%" for k, w in (("within_5pct", 4), ("within_10pct", 5), ("within_15pct", 5),
                                                  ("within_20pct", 5)))
              + f" {100 * s['rmspe']:>5.1f}% {100 * s['median_abs']:>6.1f}% {100 * s['p90_abs']:>6.1f}% "
              f"{100 * s['mean']:>+6.1f}% {s['spearman']:>8.3f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    ap.add_argument("--models", help="comma-separated model names (of MODELS)")
    ap.add_argument("--processes", type=int, default=None, help="fresh processes per model (default 5; quick 2)")
    ap.add_argument("--gap", type=float, default=10.0, help="seconds between rounds of processes")
    ap.add_argument("--per-template", type=int, default=None, help="generated networks per template and batch")
    ap.add_argument("--budget", type=float, default=1.0, help="seconds of timed forwards per case and process")
    ap.add_argument("--hw", help="a measured device TOML (default: micro-benchmarks now)")
    ap.add_argument("--data", help="JSON file of the collected data: written after each thread count (an existing "
                    "file is topped up: the rounds of processes its cases lack); with --reuse, only read")
    ap.add_argument("--regenerate", action="store_true",
                    help="with an existing --data file: sample the generated networks again (templates changed)")
    ap.add_argument("--reuse", action="store_true", help="evaluate the data of --data without measuring")
    ap.add_argument("--profile-rounds", type=int, default=1,
                    help="profile the models in this many of the rounds of processes (default 1: the first)")
    ap.add_argument("--passes", type=int, default=1, help="passes of profiles over the generated networks")
    ap.add_argument("--labels", default="first", help="the samples' seconds: of the first profile (first), of "
                    "round:K, or the median over the profiles (median)")
    ap.add_argument("--keep-memory", action="store_true", help="run with glibc keeping freed memory "
                    f"({settings_text(KEEP_MEMORY_ENV)}): no page faults per forward")
    ap.add_argument("--scale-labels", action="store_true", help="scale each training network's labels to its "
                    "plain latency (times plain / profiled sum, measured in the profiling processes)")
    ap.add_argument("--network-exponent", type=float, default=NETWORK_EXPONENT, help="samples weigh their seconds "
                    f"over their network's to this power (default {NETWORK_EXPONENT}; 0: by seconds alone, version 5)")
    ap.add_argument("--json-out", help="write the full result here")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--batches", default="1,8", help=argparse.SUPPRESS)
    ap.add_argument("--profile", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.keep_memory and not memory_kept():
        # glibc reads the variables when the process starts: start again with them (the children inherit them)
        argv = sys.argv[1:] if argv is None else argv
        os.execve(sys.executable, [sys.executable, __file__, *argv], {**os.environ, **KEEP_MEMORY_ENV})
    warnings.filterwarnings("ignore")
    thread_counts = [int(t) for t in args.threads.split(",")]
    if args.child:
        print(json.dumps(child(args.child, [int(b) for b in args.batches.split(",")], thread_counts[0], args.hw,
                               args.profile, args.budget)))
        return 0
    started = time.perf_counter()
    if args.reuse:
        data = json.loads(Path(args.data).read_text())
    else:
        names = args.models.split(",") if args.models else (QUICK_MODELS if args.quick else [m for m, _ in MODELS])
        models = [(m, f) for m, f in MODELS if m in names]
        processes = args.processes or (2 if args.quick else 5)
        per_template = args.per_template if args.per_template is not None else (2 if args.quick else 4)
        data = { "host": platform.node(), "torch": torch.__version__,
                "python": platform.python_version(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                "load_before": os.getloadavg()[0], "by_threads": {},
                "allocator": allocator_settings()}
        if args.data and Path(args.data).exists():  # resume and top up what was collected before
            data = json.loads(Path(args.data).read_text())
            if data.get("allocator", {}) != allocator_settings():
                raise SystemExit(f"{args.data} was collected with the allocator settings {data.get('allocator', {})}, "
                                 f"this run has {allocator_settings()}: topping it up would mix them")
        for threads in thread_counts:
            before = data["by_threads"].get(str(threads))
            hw = args.hw
            if before is not None:  # the micro-benchmarks the collected data was judged against
                hw = f"/tmp/rooflens-prediction-hw-{threads}-before.toml"
                Path(hw).write_text(data["hw"][str(threads)], encoding="utf-8")
                print(f"{threads} thread(s): collected before, in {args.data}: topping up to {processes} processes"
                      + (", generated networks again" if args.regenerate else ""), flush=True)
            elif hw is None:  # the micro-benchmarks at this thread count: the peak and the analytic calibration
                hw = f"/tmp/rooflens-prediction-hw-{threads}.toml"
                Path(hw).write_text(benchmark(quick=args.quick, threads=threads).to_toml(), encoding="utf-8")
            data.setdefault("hw", {})[str(threads)] = Path(hw).read_text(encoding="utf-8")
            data["machine"] = load_file(hw)[0].name
            t0 = time.perf_counter()
            collected = collect(models, threads, hw, processes, args.gap, per_template, args.budget, before,
                                args.regenerate, args.profile_rounds, args.passes)
            collected["seconds"] = (before or {}).get("seconds", 0.0) + time.perf_counter() - t0
            collected["dates"] = [*(before or {}).get("dates", [data["date"]] if before else []),
                                  time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())]
            data["by_threads"][str(threads)] = collected
            data["load_after"] = os.getloadavg()[0]
            if args.data:  # after every thread count: a later failure keeps what was measured
                Path(args.data).write_text(json.dumps(data), encoding="utf-8")
    result: dict[str, Any] = {k: v for k, v in data.items() if k != "by_threads"}
    result["by_threads"] = {}
    for threads, collected in data["by_threads"].items():
        hw_file = Path(f"/tmp/rooflens-prediction-hw-{threads}-reused.toml")
        hw_file.write_text(data["hw"][threads], encoding="utf-8")
        evaluated = evaluate(collected, calibrate(load_file(hw_file)[0]), args.labels, args.scale_labels,
                             args.network_exponent)
        render(int(threads), evaluated)
        result["by_threads"][threads] = evaluated
    print(f"\nallocator: {settings_text(data.get('allocator', {}))}")
    print(f"machine: {data['machine']} ({data['host']}), torch {data['torch']}, {data['date']}; load average "
          f"before {data['load_before']:.2f}, after {data.get('load_after', float('nan')):.2f}; "
          f"{time.perf_counter() - started:.0f} s")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result), encoding="utf-8")
    print(json.dumps({"summary": {t: r["summary"] for t, r in result["by_threads"].items()},
                      "noise": {t: r["noise"] for t, r in result["by_threads"].items()},
                      "operator_sum": {t: r["operator_sum"] for t, r in result["by_threads"].items()}}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
