"""`rooflens hw calibrate`: generated networks, in-context samples, the trained device profile."""

from __future__ import annotations

import json
import platform
import sys

import pytest
import torch
from test_predictor import make_spec
from torch import nn

import rooflens
from rooflens import calibration
from rooflens.analysis.predictor import FEATURES, predictor_of
from rooflens.cli import main
from rooflens.errors import HardwareError, ModelError, first_names
from rooflens.hardware import load_file
from rooflens.measurement.blocks import GENERIC_SHARE, TEMPLATES, generate, schedule
from rooflens.measurement.fresh import available
from rooflens.measurement.timer import ALLOCATOR_VARIABLES, allocator_settings

from _state import assert_same_state, state


@pytest.mark.parametrize("template", sorted(TEMPLATES))
def test_every_template_builds_a_network_that_runs(template):
    g = generate(template, seed=3)
    again = generate(template, seed=3)
    assert g.template == template and g.imitates == TEMPLATES[template]
    assert [p.shape for p in g.model.parameters()] == [p.shape for p in again.model.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(g.model.parameters(), again.model.parameters()))
    assert not g.model.training
    with torch.inference_mode():
        out = g.model(torch.randn(g.input_size))
    assert out.shape[0] == g.input_size[0] and out.dim() == 2
    # every operator the network runs is counted (nothing unsupported): its samples are complete
    assert rooflens.analyze(g.model, input_size=g.input_size).unsupported_ops() == {}


def _layer_norm_inputs_contiguous(model: nn.Module, x: torch.Tensor) -> list[bool]:
    from torch.utils._python_dispatch import TorchDispatchMode

    seen: list[bool] = []

    class Watch(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func is torch.ops.aten.layer_norm.default:
                seen.append(args[0].is_contiguous())
            return func(*args, **(kwargs or {}))

    with torch.inference_mode(), Watch():
        model(x)
    return seen


def test_the_convnext_template_runs_channels_last_as_torchvision_convnext_does():
    torchvision = pytest.importorskip("torchvision")
    # torchvision's ConvNeXt: the stem's channel norm reads the stem convolution's NCHW output (permuted: not
    # contiguous) and writes channels-last, so every later layer norm reads a contiguous permuted tensor
    real = _layer_norm_inputs_contiguous(torchvision.models.convnext_tiny(weights=None).eval(), torch.randn(1, 3, 64, 64))
    assert real[0] is False and all(real[1:]) and len(real) == 1 + (3 + 3 + 9 + 3) + 3 + 1  # stem, blocks, stage norms, head
    for seed in range(3):  # a layer norm reading a non-contiguous tensor copies it first (2-3x the time)
        g = generate("convnext", seed=seed)
        seen = _layer_norm_inputs_contiguous(g.model, torch.randn(g.input_size))
        assert len(seen) > 2 and seen[0] is False and all(seen[1:]), (seed, seen)


def test_generating_and_calibrating_leave_the_random_state_alone(small_plan):
    torch.manual_seed(1234)
    before = torch.get_rng_state()
    generate("mbconv", seed=5)
    calibration.calibrate_device(spec=make_spec(), quick=True, threads=1)
    assert torch.equal(torch.get_rng_state(), before)


def test_generated_networks_vary_and_batch():
    sizes = {generate("mbconv", seed=s).input_size for s in range(8)}
    assert len(sizes) > 2  # resolutions are drawn
    assert generate("conv", seed=1, batch=4).input_size[0] == 4
    with pytest.raises(ValueError, match="unknown block template 'lstm'"):
        generate("lstm", seed=0)


def test_schedule_draws_the_generic_template_more_often_round_by_round():
    jobs = schedule(2)
    templates = list(TEMPLATES)  # 10 templates imitate a family, the generic "conv" none
    assert len(jobs) == 2 * (len(templates) - 1 + GENERIC_SHARE) and len(set(jobs)) == len(jobs)
    assert [seed for t, seed in jobs if t == "conv"] == list(range(2 * GENERIC_SHARE))
    assert [seed for t, seed in jobs if t == "mbconv"] == [0, 1]
    first_round = jobs[: len(jobs) // 2]
    assert {t for t, _ in first_round} == set(templates) and all(seed < GENERIC_SHARE for _, seed in first_round)


def test_generic_networks_hold_gated_depthwise_and_residual_blocks():
    # what every leave-one-family-out predictor trains on: squeeze-excitation gates (sigmoid and hard sigmoid),
    # depthwise convolutions of every kernel, residual adds
    ops, kernels = set(), set()
    for seed in range(12):
        g = generate("conv", seed=seed)
        for r in rooflens.analyze(g.model, input_size=g.input_size).records:
            ops.add(".".join(r.op.split(".")[:2]).rstrip("_"))
            w = r.inputs[1].shape if r.op.startswith("aten.convolution") and len(r.inputs) > 1 else ()
            if len(w) == 4 and w[1] == 1:
                kernels.add(w[2])
    assert {"aten.sigmoid", "aten.hardsigmoid", "aten.mul", "aten.add"} <= ops
    assert {3, 5, 7} <= kernels


def test_sample_network_times_every_operator_and_leaves_the_model_alone():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(inplace=True),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4)).eval()
    before = state(model)
    x = torch.randn(1, 3, 16, 16)
    samples, network = calibration.sample_network(model, x, source="tiny", iters=2)
    assert_same_state(before, state(model))
    assert [s.kind for s in samples] == ["conv3x3", "batchnorm", "relu_", "mean", "gemm"]
    assert all(s.seconds > 0 and len(s.x) == len(FEATURES) for s in samples)
    assert all(s.source == "tiny" for s in samples)
    records = rooflens.analyze(model, x).records
    assert [(s.flops, s.bytes) for s in samples] == [(r.cost.flops, r.cost.bytes) for r in records]
    assert network.records == 5 and network.module_calls == 6  # the six layers (the root call is the pass)
    assert network.seconds > 0 and network.profiled_seconds > 0


@pytest.fixture
def small_plan(monkeypatch):
    """A calibration of two templates, two small networks each: seconds, not minutes (in this process, where
    the patched generator runs)."""
    pytest.importorskip("sklearn")

    def tiny(template, *, seed, batch=1):
        g = generate(template, seed=seed, batch=batch)
        torch.manual_seed(seed)
        width = 8 + 8 * seed
        model = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
                              nn.Conv2d(width, width, 3, padding=1, groups=width), nn.BatchNorm2d(width),
                              nn.Hardswish(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 10)).eval()
        return type(g)(g.name, template, g.imitates, model, (batch, 3, 16 + 8 * seed, 16 + 8 * seed))

    monkeypatch.setattr(calibration, "generate", tiny)
    monkeypatch.setattr(calibration, "schedule", lambda n: [(t, seed) for seed in range(n) for t in ("conv", "mbconv")])
    monkeypatch.setattr(calibration, "QUICK", calibration.Plan(per_template=4, batches=(1,), models=(), iters=2,
                                                              budget_seconds=60.0, fresh_processes=False))


def test_calibrate_device_trains_a_predictor_reports_use(small_plan, monkeypatch):
    for name in ALLOCATOR_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MALLOC_ARENA_MAX", "2")
    seen = []
    spec = calibration.calibrate_device(spec=make_spec(), quick=True, threads=1,
                                        progress=lambda stage, share: seen.append((stage, share)))
    predictor = predictor_of(spec)
    made = predictor.provenance
    assert made["threads"] == 1 and made["mode"] == "quick" and made["networks"] == 8
    assert made["samples"] == 8 * 8  # 8 records each (Flatten is a view: no record)
    assert made["torch"] == torch.__version__ and made["machine"]
    # whole passes against their profiled operators' sum: measured, so only its sense is fixed (the profiler
    # adds microseconds per operator, the framework's work between operators adds to the plain pass)
    assert 0.2 < made["plain_over_profiled"] < 5.0
    # the plain passes' minor page faults (counted wherever getrusage is) and the allocator's settings as set
    faults = made.get("page_faults_per_call")
    assert sys.platform == "win32" or (faults is not None and 0 <= faults["median"] <= faults["max"])
    assert made["allocator"] == {"MALLOC_ARENA_MAX": "2"}
    assert "dropped_subnormal" not in made  # no network wrote subnormal floats
    # 40 elementwise samples get their own trees; 8 dense and 8 depthwise convolutions (under 30) the pooled ones
    assert set(predictor.ensembles) == {"all", "elementwise"}
    assert seen[-1] == ("training", 1.0) and any(stage.startswith("sampling conv-0-b1") for stage, _ in seen)
    report = rooflens.analyze(nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU()), input_size=(1, 3, 32, 32), hardware=spec)
    # learned, and never under the roofline (tiny operators can sit on it)
    assert report.calibrated.method == "learned" and report.calibrated.total_seconds >= report.roofline.total_seconds


class _Tiny(nn.Module):
    """Scales its input into the subnormal range (every nonzero output below 1e2 in magnitude: all here)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 1e-40


def test_calibration_leaves_out_networks_that_write_subnormal_floats(small_plan, monkeypatch, capsys, tmp_path):
    tiny = calibration.generate

    def some_subnormal(template, *, seed, batch=1):
        g = tiny(template, seed=seed, batch=batch)
        if (template, seed) == ("mbconv", 1):
            g = type(g)(g.name, template, g.imitates, nn.Sequential(g.model, _Tiny()), g.input_size)
        return g

    monkeypatch.setattr(calibration, "generate", some_subnormal)
    monkeypatch.setattr(calibration, "QUICK", calibration.Plan(per_template=4, batches=(1,), models=(), iters=2,
                                                              budget_seconds=60.0, passes=2, fresh_processes=False))
    calls = []
    sample = calibration.sample_network
    monkeypatch.setattr(calibration, "sample_network", lambda *a, **k: calls.append(k["source"]) or sample(*a, **k))
    measured, saved = tmp_path / "bench.toml", tmp_path / "calibrated.toml"
    measured.write_text(make_spec().to_toml(), encoding="utf-8")
    code = main(["hw", "calibrate", "--quick", "--threads", "1", "--from", str(measured), "--save", str(saved),
                 "--width", "200"])
    out, err = capsys.readouterr()
    assert code == 0, err
    made = predictor_of(load_file(saved)[0]).provenance
    # 8 networks sampled, mbconv-1-b1 wrote subnormals: 7 trained on, 8 timed records each, and in the second
    # pass it is not profiled again
    assert calls.count("mbconv-1-b1") == 1 and calls.count("mbconv-0-b1") == 2 and len(calls) == 15
    assert made["dropped_subnormal"] == ["mbconv-1-b1"]
    assert made["networks"] == 7 and made["samples"] == 7 * 8
    assert "left out, for writing subnormal floats (a speed the values set): mbconv-1-b1" in " ".join(out.split())


def test_messages_name_the_first_few_and_count_the_rest():
    # what the calibration note does with the networks it leaves out (the first five named)
    names = [f"conv-{i}-b1" for i in range(8)]
    assert first_names(names, 5) == "conv-0-b1, conv-1-b1, conv-2-b1, conv-3-b1, conv-4-b1 and 3 more"
    assert first_names(names[:5], 5) == "conv-0-b1, conv-1-b1, conv-2-b1, conv-3-b1, conv-4-b1"
    assert first_names(["a", "b", "c"], 1, "; ") == "a and 2 more" and first_names([], 3) == ""


def test_calibration_that_drops_too_many_networks_says_why(small_plan, monkeypatch):
    tiny = calibration.generate

    def all_subnormal(template, *, seed, batch=1):
        g = tiny(template, seed=seed, batch=batch)
        return type(g)(g.name, template, g.imitates, nn.Sequential(g.model, _Tiny()), g.input_size)

    monkeypatch.setattr(calibration, "generate", all_subnormal)
    with pytest.raises(HardwareError, match=r"conv-0-b1, conv-1-b1, .* wrote subnormal floats .*set_flush_denormal"):
        calibration.calibrate_device(spec=make_spec(), quick=True, threads=1)


def test_allocator_settings_name_what_is_set_and_the_preloaded_libraries_by_file(monkeypatch):
    for name in ALLOCATOR_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert allocator_settings() == {}
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=1000000000")
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "")  # empty: not set
    monkeypatch.setenv("LD_PRELOAD", "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2:/opt/libfoo.so")
    assert allocator_settings() == {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=1000000000",
                                    "LD_PRELOAD": "libjemalloc.so.2 libfoo.so"}


def test_median_samples_take_each_operators_median_over_the_passes_that_timed_it():
    from rooflens.analysis.predictor import Sample

    def network(*seconds):
        return [Sample("conv", (1.0,), 2e6, 1e5, s, "net") for s in seconds]

    # operator 0: median(3, 1, 2) = 2 us; operator 1: untimed in pass 2, median(4, 6) = 5 us; operator 2: never timed
    passes = [network(3e-6, 4e-6, 0.0), network(1e-6, 0.0, 0.0), network(2e-6, 6e-6, 0.0)]
    assert [s.seconds for s in calibration.median_samples(passes)] == pytest.approx([2e-6, 5e-6, 0.0])
    assert calibration.median_samples(passes)[0].flops == 2e6  # the record's features are kept
    with pytest.raises(ValueError):  # the passes profiled different records
        calibration.median_samples([network(1e-6), network(1e-6, 2e-6)])


def test_calibrating_in_passes_profiles_every_network_each_pass(small_plan, monkeypatch):
    monkeypatch.setattr(calibration, "QUICK", calibration.Plan(per_template=2, batches=(1,), models=(), iters=2,
                                                              budget_seconds=60.0, passes=2, fresh_processes=False))
    calls = []
    sample = calibration.sample_network
    monkeypatch.setattr(calibration, "sample_network", lambda *a, **k: calls.append(k["source"]) or sample(*a, **k))
    seen = []
    spec = calibration.calibrate_device(spec=make_spec(), quick=True, threads=1,
                                        progress=lambda stage, share: seen.append((stage, share)))
    made = predictor_of(spec).provenance
    # 2 templates x 2 seeds = 4 networks, each profiled once per pass, pass after pass over all of them
    assert calls == ["conv-0-b1", "mbconv-0-b1", "conv-1-b1", "mbconv-1-b1"] * 2
    assert made["networks"] == 4 and made["passes"] == 2 and made["samples"] == 4 * 8
    assert ("sampling conv-0-b1 (pass 2/2)", 5 / 8) in seen


@pytest.mark.skipif(not available(), reason="fresh processes fork: Linux only")
def test_a_plan_with_fresh_processes_samples_every_network_outside_this_process(monkeypatch):
    pytest.importorskip("sklearn")
    # as `hw calibrate` samples: each network is built and sampled in a fresh child of a clean server, so nothing
    # patched here runs (this process's heap never sees the networks); the budget stops after a few
    monkeypatch.setattr(calibration, "QUICK", calibration.Plan(per_template=1, batches=(1,), models=(), iters=1,
                                                              budget_seconds=8.0, fresh_processes=True))

    def not_here(*args, **kwargs):
        raise AssertionError("sampled in the calling process")

    monkeypatch.setattr(calibration, "sample_network", not_here)
    torch.manual_seed(7)
    before = torch.get_rng_state()
    spec = calibration.calibrate_device(spec=make_spec(), quick=True, threads=1)
    made = predictor_of(spec).provenance
    assert made["fresh_processes"] is True and made["threads"] == 1
    assert made["networks"] >= 1 and made["samples"] >= 30
    assert torch.equal(torch.get_rng_state(), before)


@pytest.mark.skipif(not available(), reason="fresh processes fork: Linux only")
def test_a_network_failing_in_its_fresh_process_is_named(monkeypatch):
    monkeypatch.setattr(calibration, "QUICK", calibration.Plan(per_template=1, batches=(1,), models=(), iters=1,
                                                              budget_seconds=60.0, fresh_processes=True))
    monkeypatch.setattr(calibration, "schedule", lambda n: [("lstm", 0)])  # the jobs are made here, built there
    with pytest.raises(ModelError, match=r"sampling lstm-0-b1: sample_job failed in a fresh process: "
                                         r"ValueError: unknown block template 'lstm'"):
        calibration.calibrate_device(spec=make_spec(), quick=True, threads=1)


def test_a_job_builds_its_network_as_the_in_process_loop_did(monkeypatch):
    seen = {}

    def sample(module, x, **kwargs):
        seen.update(kwargs, shape=tuple(x.shape), params=[p.shape for p in module.parameters()])
        return [], None

    monkeypatch.setattr(calibration, "sample_network", sample)
    job = calibration.Job("mbconv-3-b8", template="mbconv", seed=3, batch=8)
    calibration.sample_job(job, threads=2, iters=4, device="cpu")
    g = generate("mbconv", seed=3, batch=8)
    assert seen["shape"] == g.input_size and seen["params"] == [p.shape for p in g.model.parameters()]
    assert {k: seen[k] for k in ("source", "family", "threads", "iters", "device")} == {
        "source": "mbconv-3-b8", "family": "", "threads": 2, "iters": 4, "device": "cpu"}


def test_hw_calibrate_command_saves_a_device_roofline_reads(capsys, small_plan, tmp_path):
    measured = tmp_path / "bench.toml"
    measured.write_text(make_spec().to_toml(), encoding="utf-8")
    saved = tmp_path / "calibrated.toml"
    code = main(["hw", "calibrate", "--quick", "--threads", "1", "--from", str(measured), "--save", str(saved),
                 "--width", "200"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "Learned predictor:" in out and "64 operators timed in 8 networks" in out
    assert f"Use it: rooflens roofline MODEL --hw {saved}" in " ".join(out.split())  # the note wraps
    (loaded,) = load_file(saved)
    assert predictor_of(loaded).provenance["networks"] == 8

    model = tmp_path / "net.py"
    model.write_text("from torch import nn\n\ndef Net():\n    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())\n")
    methods = {}
    for method in ("auto", "learned", "analytic"):
        code = main(["roofline", f"{model}:Net", "-i", "1,3,32,32", "--hw", str(saved), "--calibration", method,
                     "-f", "json"])
        out, err = capsys.readouterr()
        assert code == 0, err
        methods[method] = json.loads(out)["calibrated"]
    assert [methods[m]["method"] for m in ("auto", "learned", "analytic")] == ["learned", "learned", "analytic"]
    code = main(["roofline", f"{model}:Net", "-i", "1,3,32,32", "--hw", str(saved), "--width", "400"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "learned predictor's time" in out and "trained on 64 operators timed inside 8 networks" in out
    assert methods["auto"]["total_seconds"] == methods["learned"]["total_seconds"]

    code = main(["roofline", f"{model}:Net", "-i", "1,3,32,32", "--hw", str(measured), "--calibration", "learned"])
    out, err = capsys.readouterr()
    assert code == 2 and "carries no learned latency predictor" in err and "hw calibrate" in err


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="--keep-memory sets glibc's variables")
def test_hw_calibrate_keep_memory_restarts_unless_the_process_already_keeps_it(monkeypatch):
    from rooflens import cli

    restarted: list[list[str]] = []
    monkeypatch.setattr(cli, "_run_keeping_memory", lambda argv: restarted.append(argv) or 0)
    for name in ALLOCATOR_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert main(["hw", "calibrate", "--quick", "--threads", "1", "--keep-memory"]) == 0
    # the same command, in a new process (started with the variables)
    assert restarted == [["hw", "calibrate", "--quick", "--threads", "1", "--keep-memory"]]
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "1000000000")
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "1000000000")
    assert cli.memory_kept()  # started so: it runs here, no restart


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (CI runs on the CPU only)")
def test_calibrate_device_on_cuda(small_plan):
    spec = calibration.calibrate_device(quick=True, device="cuda")
    predictor = predictor_of(spec)
    assert predictor.provenance["device"] == "cuda" and spec.kind.value == "measured"
    report = rooflens.analyze(nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU()), input_size=(8, 3, 64, 64), hardware=spec)
    assert report.calibrated.method == "learned" and report.calibrated.total_seconds >= report.roofline.total_seconds
