"""Measurement on real tensors: the timer's statistics, leaving the model alone, per-operator matching."""

from __future__ import annotations

import dataclasses
import json
import math
import mmap
import sys
import time
from typing import Any

import pytest
import torch
from torch import nn
from torch.nn.modules import module as nn_module

import rooflens
from rooflens.errors import InputError
from rooflens.measurement import (
    Measurement,
    OperatorProfile,
    achieved,
    measure,
    module_rows,
    percentile,
    profile_operators,
    sweep,
    time_callable,
)
from rooflens.measurement import profile as prof_mod
from rooflens.measurement.timer import timed_calls
from rooflens.report.document import RENDERERS
from rooflens.report.measure_render import FAULTS_NOTE, allocator_mismatch_note, bench_document, faults_note
from rooflens.types import ZERO, OpRecord

SLEEP = 0.002


class Small(nn.Module):
    """Conv2d - BatchNorm - ReLU - Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn(self.conv(x)))
        return self.fc(x.mean((2, 3)))


class Attention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.mha = nn.MultiheadAttention(16, 2, batch_first=True)
        self.norm = nn.LayerNorm(16)
        self.head = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.mha(x, x, x)
        return self.head(self.norm(x + y)).mean(1)


class Recurrent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(6, 8, batch_first=True)
        self.fc = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)
        return self.fc(out[:, -1])


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _assert_untouched(model: nn.Module, before: dict[str, torch.Tensor], flags: list[bool]) -> None:
    after = model.state_dict()
    assert list(after) == list(before)
    for k, v in before.items():
        assert after[k].dtype == v.dtype and after[k].device == v.device, k
        assert torch.equal(after[k], v), k
    assert [m.training for m in model.modules()] == flags
    for m in model.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks
        assert not m._backward_hooks and not getattr(m, "_backward_pre_hooks", {})


# ---- the timer ------------------------------------------------------------------------------------


def test_timer_on_a_known_sleep() -> None:
    samples = time_callable(lambda: time.sleep(SLEEP), warmup=1, iters=6)
    m = Measurement(samples, batch_size=4, device="cpu", dtype=None, threads=None, warmup=1)
    assert m.iters == 6
    assert m.median_seconds >= SLEEP
    assert m.median_seconds < SLEEP + 0.05  # generous: the machine is shared
    assert m.min_seconds >= SLEEP
    assert m.p99_seconds >= m.p90_seconds >= m.median_seconds >= m.min_seconds
    assert m.std_seconds >= 0
    assert m.throughput_per_s == pytest.approx(4 / m.median_seconds)


def test_first_call_is_never_timed() -> None:
    calls = []

    def fn() -> None:
        time.sleep(0.3 if not calls else 0.0)
        calls.append(1)

    samples = time_callable(fn, warmup=0, iters=3)  # warmup=0 still makes one untimed call
    assert len(calls) == 4 and len(samples) == 3
    assert max(samples) < 0.2


def test_min_seconds_extends_and_max_seconds_caps() -> None:
    samples = time_callable(lambda: time.sleep(0.001), warmup=1, iters=2, min_seconds=0.03)
    assert sum(samples) >= 0.03 and len(samples) > 2
    begun = time.perf_counter()
    capped = time_callable(lambda: time.sleep(0.01), warmup=1, iters=10_000, max_seconds=0.15)
    assert 1 <= len(capped) < 100
    assert time.perf_counter() - begun < 2


def test_progress_callback() -> None:
    seen: list[tuple[str, int, int]] = []
    time_callable(lambda: None, warmup=2, iters=3, progress=lambda *a: seen.append(a))
    assert seen[:2] == [("warmup", 1, 2), ("warmup", 2, 2)]
    assert seen[2:] == [("timing", 1, 3), ("timing", 2, 3), ("timing", 3, 3)]


def test_statistics_by_hand() -> None:
    ms = (0.005, 0.001, 0.004, 0.002, 0.003)
    m = Measurement(ms, batch_size=8, device="cpu", dtype="float32", threads=2, warmup=3)
    assert m.median_seconds == pytest.approx(0.003)
    assert m.mean_seconds == pytest.approx(0.003)
    assert m.std_seconds == pytest.approx(math.sqrt(2.5) * 1e-3)  # sample std (n - 1)
    assert m.p90_seconds == pytest.approx(0.0046)  # linear: rank 0.9 * 4 = 3.6
    assert m.p99_seconds == pytest.approx(0.00496)
    t = torch.tensor(ms, dtype=torch.float64)
    assert m.p90_seconds == pytest.approx(torch.quantile(t, 0.9).item())
    assert m.throughput_per_s == pytest.approx(8 / 0.003)
    d = m.as_dict()
    assert d["iters"] == 5 and d["throughput_per_s"] == pytest.approx(8 / 0.003)
    assert d["samples_seconds"] == list(ms)
    assert percentile([1.0], 99) == 1.0
    # statistics.quantiles(method="inclusive") is numpy's/torch's "linear": the ends are min and max, the
    # values need no sorting, and q is a whole number of percent
    assert percentile([3.0, 1.0, 2.0], 0) == 1.0 and percentile([3.0, 1.0, 2.0], 100) == 3.0
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0 and percentile([1.0, 2.0], 25) == pytest.approx(1.25)
    for bad in (101, -1, 50.5, True):
        with pytest.raises(ValueError, match="whole number from 0 to 100"):
            percentile([1.0, 2.0], bad)
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)
    with pytest.raises(InputError):
        Measurement((), batch_size=1, device="cpu", dtype=None, threads=None, warmup=1)


# ---- measuring a model ----------------------------------------------------------------------------


def test_measure_leaves_the_model_unchanged() -> None:
    torch.manual_seed(0)
    model = Small().train()  # training mode: a forward would update BatchNorm's running statistics
    model.fc.eval()
    before, flags = _snapshot(model), [m.training for m in model.modules()]
    threads = torch.get_num_threads()
    m = measure(model, torch.rand(3, 3, 8, 8), threads=1, warmup=1, iters=4)
    _assert_untouched(model, before, flags)
    assert torch.get_num_threads() == threads
    assert (m.batch_size, m.iters, m.warmup, m.threads, m.device, m.dtype) == (3, 4, 1, 1, "cpu", "float32")


def test_measure_in_another_dtype_runs_a_copy() -> None:
    model = Small().eval()
    before, flags = _snapshot(model), [m.training for m in model.modules()]
    m = measure(model, input_size=(2, 3, 8, 8), dtype="float64", warmup=1, iters=2)
    _assert_untouched(model, before, flags)
    assert m.dtype == "float64" and m.batch_size == 2


def test_measure_restores_threads_and_model_when_forward_raises() -> None:
    class Broken(Small):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.bn(self.conv(x))
            raise RuntimeError("boom")

    model = Broken().train()
    before, flags = _snapshot(model), [m.training for m in model.modules()]
    threads = torch.get_num_threads()
    with pytest.raises(RuntimeError, match="boom"):
        measure(model, torch.rand(2, 3, 8, 8), threads=1, warmup=1, iters=1)
    _assert_untouched(model, before, flags)
    assert torch.get_num_threads() == threads


def test_meta_model_is_refused() -> None:
    with torch.device("meta"):
        model = Small()
    with pytest.raises(InputError, match="real weights"):
        measure(model, input_size=(1, 3, 8, 8))
    with pytest.raises(InputError, match="real weights"):
        profile_operators(model, None, rooflens.analyze(model, input_size=(1, 3, 8, 8)), input_size=(1, 3, 8, 8))


def test_bad_options() -> None:
    model = Small()
    for kwargs in ({"iters": 0}, {"warmup": -1}, {"threads": 0}, {"device": "tpu"}, {"dtype": "int8"}):
        with pytest.raises(InputError):
            measure(model, input_size=(1, 3, 8, 8), **kwargs)  # type: ignore[arg-type]
    with pytest.raises(InputError):
        measure(model)


def test_sweep_throughput_against_batch_size() -> None:
    model = Small().eval()
    seen: list[str] = []
    out = sweep(model, batch_sizes=[1, 4], input_size_per_sample=(3, 8, 8), warmup=1, iters=3,
                progress=lambda phase, done, total: seen.append(phase))
    assert [m.batch_size for m in out] == [1, 4]
    for m in out:
        assert m.iters == 3
        assert m.throughput_per_s == pytest.approx(m.batch_size / m.median_seconds)
    assert "batch 4: timing" in seen


def test_achieved_flops_and_bandwidth() -> None:
    model = Small().eval()
    x = torch.rand(2, 3, 8, 8)
    m = Measurement((0.001, 0.002, 0.003), batch_size=2, device="cpu", dtype="float32", threads=1, warmup=1)
    report = rooflens.analyze(model, x, hardware="xeon-8480")
    a = achieved(m, report)
    total = report.total()
    assert a.flops_per_s == pytest.approx(total.flops / 0.002)
    assert a.bytes_per_s == pytest.approx(total.bytes / 0.002)
    assert a.compute_utilisation == pytest.approx(a.flops_per_s / report.roofline.peak_flops_per_s)
    assert a.bandwidth_utilisation == pytest.approx(a.bytes_per_s / report.roofline.bandwidth_bytes_per_s)
    assert a.efficiency == pytest.approx(report.roofline.total_seconds / 0.002)
    no_hw = achieved(m, rooflens.analyze(model, x))
    assert no_hw.compute_utilisation is None and no_hw.efficiency is None
    with pytest.raises(InputError, match="batch size"):
        achieved(m, rooflens.analyze(model, input_size=(4, 3, 8, 8)))



@pytest.mark.skipif(sys.platform == "win32", reason="getrusage counts page faults on POSIX systems only")
def test_timed_calls_count_the_page_faults_of_the_timed_calls() -> None:
    pages = 256  # a fresh anonymous mapping touched once per page: 256 minor faults per call, none in a no-op
    size = pages * mmap.PAGESIZE

    def fault() -> None:
        with mmap.mmap(-1, size) as region:
            for offset in range(0, size, mmap.PAGESIZE):
                region[offset] = 1

    faulting = timed_calls(fault, warmup=20, iters=5)
    assert faulting.page_faults is not None and len(faulting.samples_seconds) == 5
    # the warm-up's faults are not counted: with them it would be (20 + 5) x 256 / 5 = 1,280 per call
    assert pages <= faulting.page_faults_per_call < 2 * pages
    quiet = timed_calls(lambda: None, warmup=1, iters=5)
    assert quiet.page_faults_per_call is not None and quiet.page_faults_per_call < pages / 4


def _bench_report(model: nn.Module, batch: int, samples: tuple[float, ...], faults: float | None) -> rooflens.Report:
    m = Measurement(samples, batch_size=batch, device="cpu", dtype="float32", threads=1, warmup=1,
                    page_faults_per_call=faults)
    return dataclasses.replace(rooflens.analyze(model, input_size=(batch, 3, 8, 8), hardware="xeon-8480"),
                               measurement=m)


def test_bench_table_golden_with_page_faults(golden) -> None:
    torch.manual_seed(0)
    model = Small().eval()
    reports = [_bench_report(model, 1, (0.001, 0.002, 0.003), 12.0),
               _bench_report(model, 4, (0.004, 0.005, 0.006), None),  # not counted: "-"
               _bench_report(model, 8, (0.010, 0.012, 0.014), 9_000.0)]
    doc = bench_document(reports, device="cpu", threads=1, dtype="float32")
    golden("bench_faults.txt", RENDERERS["table"](doc, 140))
    data = doc.data()
    assert [b["page_faults_per_call"] for b in data["batches"]] == [12.0, None, 9_000.0]


def test_faults_note_fires_at_five_percent_of_the_median_at_one_microsecond_a_fault() -> None:
    def m(faults: float | None) -> Measurement:
        return Measurement((0.1,), batch_size=1, device="cpu", dtype=None, threads=1, warmup=1,
                           page_faults_per_call=faults)

    assert faults_note([m(None)]) is None  # not counted: no column, no note
    assert faults_note([m(4_999.0)]) == FAULTS_NOTE  # 4,999 x 1 us = 4.999 ms < 5 % of 100 ms
    note = faults_note([m(4_999.0), m(5_000.0)])  # 5,000 x 1 us = 5 ms = 5 % of 100 ms
    assert note is not None and "faults 5,000 times per call" in note and "5 % of the median 100" in note
    assert "MALLOC_MMAP_THRESHOLD_=1000000000 MALLOC_TRIM_THRESHOLD_=1000000000" in note and "jemalloc" in note

    class Plain:  # a measurement-like object without the attribute (MeasurementLike does not require it)
        batch_size, median_seconds = 1, 0.1

    assert faults_note([Plain()]) is None  # type: ignore[list-item]
    zero = Measurement((0.0,), batch_size=1, device="cpu", dtype=None, threads=1, warmup=1, page_faults_per_call=9.0)
    assert faults_note([zero]) == FAULTS_NOTE  # a zero median (a clock too coarse): no share to speak of



def test_allocator_mismatch_note_when_the_predictor_was_trained_under_other_settings() -> None:
    from types import SimpleNamespace

    def report(method: str, provenance: dict[str, object]) -> Any:
        hardware = SimpleNamespace(extra={"predictor": {"provenance": provenance}})
        return SimpleNamespace(calibrated=SimpleNamespace(method=method, calibration=SimpleNamespace(hardware=hardware)))

    kept = {"MALLOC_MMAP_THRESHOLD_": "1000000000", "MALLOC_TRIM_THRESHOLD_": "1000000000"}
    note = allocator_mismatch_note(report("learned", {"allocator": kept}), {})
    assert note is not None and "trained with MALLOC_MMAP_THRESHOLD_=1000000000" in note
    assert "measured with the default allocator" in note
    assert allocator_mismatch_note(report("learned", {"allocator": kept}), dict(kept)) is None  # the same
    assert allocator_mismatch_note(report("learned", {}), {}) is None  # an older device file: not recorded
    assert allocator_mismatch_note(report("analytic", {"allocator": kept}), {}) is None  # no predictor
    assert allocator_mismatch_note(report("learned", {"allocator": kept}), None) is None  # not said

# ---- per-operator profile -------------------------------------------------------------------------


def _check_accounting(p: OperatorProfile) -> None:
    """Every top-level event took records or is listed as unmatched; times add up."""
    unmatched = sum(e.count for e in p.unmatched_events)
    assert p.matched_events_per_call + unmatched == pytest.approx(p.events_per_call)
    assert p.matched_seconds + p.unmatched_seconds == pytest.approx(p.profiled_seconds, rel=1e-6)
    assert p.matched_seconds <= p.profiled_seconds * (1 + 1e-9)
    assert p.profiled_seconds <= p.wall_seconds * (1 + 1e-9)
    assert p.modules[""].measured_seconds == pytest.approx(p.profiled_seconds)


def test_profile_matches_every_operator_of_a_small_model() -> None:
    torch.manual_seed(0)
    model = Small().eval()
    x = torch.rand(2, 3, 8, 8)
    report = rooflens.analyze(model, x, hardware="xeon-8480")
    before, flags = _snapshot(model), [m.training for m in model.modules()]
    hooks = (dict(nn_module._global_forward_hooks), dict(nn_module._global_forward_pre_hooks))
    p = profile_operators(model, x, report, warmup=1, iters=3)
    _assert_untouched(model, before, flags)
    assert (dict(nn_module._global_forward_hooks), dict(nn_module._global_forward_pre_hooks)) == hooks

    assert p.iters == 3
    assert p.match_rate == 1.0 and p.unmatched_records == ()
    assert all(e.aliasing for e in p.unmatched_events)
    _check_accounting(p)
    by_op = {r.op: (r.module, ev) for r, ev in zip(report.records, p.record_events)}
    assert by_op["aten.convolution"] == ("conv", "aten.conv2d")
    assert by_op["aten.native_batch_norm"] == ("bn", "aten.batch_norm")
    assert by_op["aten.addmm"] == ("fc", "aten.linear")
    for path in ("conv", "bn", "relu", "fc"):
        mod = p.modules[path]
        assert mod.measured_seconds > 0 and mod.matched_records == mod.records == 1
        assert mod.roofline_seconds == pytest.approx(report.roofline.by_module()[path].seconds)
        assert mod.efficiency == pytest.approx(mod.roofline_seconds / mod.measured_seconds)
        assert mod.lost_seconds == pytest.approx(mod.measured_seconds - mod.roofline_seconds)
        assert mod.achieved_flops_per_s == pytest.approx(report.modules[path].cumulative.flops / mod.measured_seconds)
    leaves = sum(p.modules[q].measured_seconds for q in ("conv", "bn", "relu", "fc"))
    assert leaves <= p.modules[""].measured_seconds * (1 + 1e-9)

    rows = module_rows(p)
    lost = [r.lost_seconds for r in rows]
    assert lost == sorted(lost, reverse=True)
    assert {r.path for r in rows} == {"", "conv", "bn", "relu", "fc"}
    assert [r.path for r in module_rows(p, depth=0)] == [""]
    assert [r.path for r in module_rows(p, sort="tree")] == ["", "conv", "bn", "relu", "fc"]
    assert p.by_lost_time()[0].path == ""
    data = p.as_dict()
    assert data["match_rate"] == 1.0 and len(data["record_seconds"]) == len(report.records)


@pytest.mark.parametrize(
    "make, x",
    [
        (lambda: Attention().train(), torch.rand(2, 5, 16)),  # the Python path: linear, bmm, softmax ...
        (lambda: Attention().eval(), torch.rand(2, 5, 16)),  # the fused fast path
        (lambda: Recurrent().eval(), torch.rand(2, 4, 6)),
    ],
    ids=["mha-train", "mha-eval", "lstm"],
)
def test_profile_matches_attention_and_lstm(make, x) -> None:
    torch.manual_seed(0)
    model = make()
    report = rooflens.analyze(model, x)
    p = profile_operators(model, x, report, warmup=1, iters=2)
    _check_accounting(p)
    assert p.match_rate == 1.0, [(report.records[i].op, report.records[i].module) for i in p.unmatched_records]
    assert all(e.aliasing for e in p.unmatched_events), p.unmatched_events
    assert p.modules["mha" if "mha" in p.modules else "lstm"].measured_seconds > 0
    assert p.modules[""].roofline_seconds is None and p.modules[""].efficiency is None
    rows = module_rows(p)
    measured = [r.measured_seconds for r in rows]
    assert measured == sorted(measured, reverse=True)  # without hardware: by measured time


def test_profile_needs_the_same_input_shapes() -> None:
    model = Small().eval()
    report = rooflens.analyze(model, input_size=(1, 3, 8, 8))
    with pytest.raises(InputError, match="input shapes"):
        profile_operators(model, torch.rand(2, 3, 8, 8), report, iters=1)


# ---- the alignment on hand-built events -------------------------------------------------------------


def _event(module: str, *names: str, seconds: float = 1.0) -> prof_mod._Event:
    """A top-level event whose subtree is a chain ``names[0] -> names[1] -> ...``."""
    n = len(names)
    return prof_mod._Event(module, list(names), [seconds] * n, [i - 1 for i in range(n)], [n] * n)


def _record(op: str, module: str, via: str = "") -> OpRecord:
    return OpRecord(op, module, (), (), ZERO, via=via)


def test_alignment_skips_extra_events_and_records() -> None:
    events = [
        _event("a", "aten.conv2d", "aten.convolution"),
        _event("a", "aten.flatten", "aten.view"),  # not analysed: a view
        _event("b", "aten.relu_", "aten.clamp_min_"),
        _event("c", "aten.linear", "aten.addmm"),
        _event("c", "aten.gelu"),
    ]
    records = [
        _record("aten.convolution", "a"),
        _record("aten.relu_", "b"),
        _record("aten.mystery", "b"),  # the analysis saw an operator the run did not
        _record("aten.addmm", "c"),
        _record("aten.mul", "c", via="aten.gelu"),  # gelu decomposed into parts
        _record("aten.erf", "c", via="aten.gelu"),
    ]
    claims = prof_mod._align(events, records)
    assert [[rec for rec, _ in c] for c in claims] == [[0], [], [1], [3], [4, 5]]
    split = prof_mod._split(events[4], claims[4])
    assert split == {4: 0.5, 5: 0.5}


def test_alignment_in_place_variants_and_consecutive_calls() -> None:
    two_linears = [_event("m", "aten.linear", "aten.addmm"), _event("m", "aten.linear", "aten.addmm")]
    records = [_record("aten.addmm", "m"), _record("aten.addmm", "m")]
    assert [[r for r, _ in c] for c in prof_mod._align(two_linears, records)] == [[0], [1]]
    add_in_place = [_event("m", "aten.add_")]
    assert prof_mod._align(add_in_place, [_record("aten.add", "m")]) == [[(0, 0)]]
    # a record in another module never matches
    assert prof_mod._align([_event("m", "aten.add")], [_record("aten.add", "n")]) == [[]]


def test_analyze_with_measure_reports_both():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 8))
    report = rooflens.analyze(model, input_size=(4, 64), hardware="a4000", measure=True)
    m, a = report.measurement, report.achieved
    assert m is not None and a is not None
    assert m.batch_size == 4 and m.iters >= 50
    # achieved = counted work / measured median
    assert a.flops_per_s == pytest.approx(report.total().flops / m.median_seconds)
    assert a.efficiency == pytest.approx(report.roofline.total_seconds / m.median_seconds)
    data = json.loads(report.to_json(operators=False))
    assert data["measurement"]["median_seconds"] == m.median_seconds
    assert "Measured:" in report.render() and "Achieved:" in report.render()


def test_analyze_measure_needs_real_weights():
    with torch.device("meta"):
        model = nn.Linear(4, 4)
    with pytest.raises(rooflens.InputError, match="real weights"):
        rooflens.analyze(model, input_size=(1, 4), measure=True)
