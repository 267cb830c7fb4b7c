"""The learned latency predictor: features, tree ensembles and the estimate by hand.

The hand device: fp32 peak 100 GFLOP/s, bandwidth 10 GB/s, 2 us per eager operator; its micro-benchmark
curves only make it calibratable (the learned estimate does not read them).
"""

from __future__ import annotations

import math
import random
from dataclasses import replace

import pytest
from torch import nn

import rooflens
from rooflens.analysis.predictor import (
    FEATURES,
    KINDS,
    Ensemble,
    Line,
    Predictor,
    Roof,
    Sample,
    ensemble_of,
    estimate,
    features,
    fit,
    fit_line,
    fitted_roof,
    in_sequence,
    predict_sample,
    predictor_of,
    sample_weights,
)
from rooflens.errors import HardwareError, InputError
from rooflens.hardware import HardwareSpec, Kind, load_file

PEAK = 100e9
BW = 10e9
OVERHEAD = 2e-6

# Sequential(Linear(1024, 1024), ReLU(inplace=True)) on a 1024 x 1024 input (see test_calibrated.py):
LINEAR_ROOF = 2_148_532_224 / PEAK  # compute-bound: 21.48532224 ms (bytes 12,587,008 / 10e9 = 1.2587 ms)
RELU_ROOF = 8_388_608 / BW  # memory-bound: 838.8608 us (FLOPs 1,048,576 / 100e9 = 10.49 us)


def make_spec(predictor: Predictor | None = None) -> HardwareSpec:
    extra = {
        "op_overhead_seconds": OVERHEAD,
        "gemm_fp32": [[1e6, 0.0, 1e-4], [1e9, 0.0, 2e-2]],
        "relu__fp32": [[0.0, 1e3, 1e-5], [0.0, 1e8, 2e-2]],
        "add_fp32": [[0.0, 1e3, 1e-5], [0.0, 1e8, 2e-2]],
    }
    if predictor is not None:
        extra["predictor"] = predictor.as_dict()
    return HardwareSpec(id="hand-learned", name="Hand-built CPU (measured)", vendor="Test", kind=Kind.MEASURED,
                        peak_flops_per_s={"fp32": PEAK}, bandwidth_bytes_per_s=BW, source="the tests", extra=extra)


ROOF = Roof(PEAK, BW, OVERHEAD)  # the hand device's
BARE = Roof(PEAK, BW, 0.0)  # for synthetic samples: the reference time is bytes / 10 GB/s


def constant(ratio: float, roof: Roof = ROOF) -> Predictor:
    """A predictor without trees: every operator takes ``ratio`` x its reference time."""
    return Predictor({"all": Ensemble(math.log(ratio), 1.0, (), 0)}, roof, {"machine": "test"})


def two_layers() -> nn.Module:
    return nn.Sequential(nn.Linear(1024, 1024), nn.ReLU(inplace=True))


def test_learned_estimate_by_hand():
    spec = make_spec(constant(1.5))
    report = rooflens.analyze(two_layers(), input_size=(1024, 1024), hardware=spec)
    pred = report.calibrated
    assert pred is not None and pred.method == "learned"
    # linear: 1.5 x (21.48532224 ms + 2 us) = 32.23098336 ms
    # relu:   1.5 x (838.8608 us + 2 us) = 1,261.2912 us
    linear, relu = pred.ops
    assert linear.seconds == pytest.approx(32.23098336e-3)
    assert relu.seconds == pytest.approx(1261.2912e-6)
    assert pred.total_seconds == pytest.approx(33.49227456e-3)
    # the parts: 2 us of fixed overhead each, the rest is work on the operator's roofline side
    assert linear.bound == "compute" and relu.bound == "memory"
    assert linear.overhead_seconds == pytest.approx(2e-6)
    assert linear.compute_efficiency == pytest.approx(LINEAR_ROOF / (32.23098336e-3 - 2e-6))
    assert pred.by_module()[""] == pytest.approx(pred.total_seconds)


def test_learned_estimate_on_a_kinds_line():
    lined = replace(constant(1.5), lines={"relu_": Line(100e-6, 0.0, 0.1e-9)})
    linear, relu = rooflens.analyze(two_layers(), input_size=(1024, 1024), hardware=make_spec(lined)).calibrated.ops
    # relu: its line, 100 us + 0.1 ns x 8,388,608 bytes = 938.8608 us (above its roof reference, 840.8608 us),
    # times 1.5 = 1,408.2912 us; the linear layer has no line: 1.5 x (21.48532224 ms + 2 us) as before
    assert relu.seconds == pytest.approx(1408.2912e-6)
    assert linear.seconds == pytest.approx(32.23098336e-3)


def test_learned_estimate_never_below_the_roofline():
    spec = make_spec(constant(0.1))
    pred = rooflens.analyze(two_layers(), input_size=(1024, 1024), hardware=spec).calibrated
    assert pred is not None
    # 0.1 x (21.48532224 ms + 2 us) is below the roofline: the roofline time
    assert pred.ops[0].seconds == pytest.approx(LINEAR_ROOF)
    assert pred.ops[1].seconds == pytest.approx(RELU_ROOF)


def test_calibration_option_chooses_the_estimate():
    spec = make_spec(constant(1.5))
    learned = rooflens.analyze(two_layers(), input_size=(1024, 1024), hardware=spec)
    analytic = rooflens.analyze(two_layers(), input_size=(1024, 1024), hardware=spec, calibration="analytic")
    assert learned.calibrated.method == "learned"
    assert analytic.calibrated.method == "analytic"
    assert analytic.calibrated.total_seconds != pytest.approx(learned.calibrated.total_seconds)
    # a device without a predictor: auto is the analytic estimate, learned is an error that says what to run
    plain = make_spec()
    assert rooflens.analyze(two_layers(), input_size=(1024, 1024), hardware=plain).calibrated.method == "analytic"
    report = rooflens.analyze(two_layers(), input_size=(1024, 1024), hardware=plain, calibration="learned")
    with pytest.raises(HardwareError, match="hw calibrate"):
        _ = report.calibrated
    # a datasheet device has no calibrated estimate by any method; a bad method is named
    assert rooflens.analyze(two_layers(), input_size=(1024, 1024), hardware="a4000",
                            calibration="analytic").calibrated is None
    with pytest.raises(InputError, match="calibration must be one of auto, learned, analytic"):
        rooflens.analyze(two_layers(), input_size=(1024, 1024), calibration="magic")
    assert estimate(learned, "analytic").total_seconds == pytest.approx(analytic.calibrated.total_seconds)


def test_features_of_a_convolution():
    conv = nn.Conv2d(16, 32, 3, stride=2, padding=1, groups=2, bias=False)
    (record,) = rooflens.analyze(conv, input_size=(4, 16, 32, 32)).records
    kind, x = features(record)
    f = dict(zip(FEATURES, x, strict=True))
    assert kind == "gconv3x3"
    # channels 16 -> 32, output 16 x 16 pixels, kernel 3 x 3, stride 2, groups 16 / (weight's 8 inputs) = 2, batch 4
    assert f["log_c_in"] == pytest.approx(math.log2(17))
    assert f["log_c_out"] == pytest.approx(math.log2(33))
    assert f["log_pixels"] == pytest.approx(math.log2(257))
    assert (f["kernel"], f["stride"]) == (9, 2)
    assert f["log_groups"] == pytest.approx(math.log2(3))
    assert f["log_batch"] == pytest.approx(math.log2(5))
    # MACs: 4 x 32 x 16 x 16 x (8 x 9) = 2,359,296; FLOPs twice that
    assert f["log_flops"] == pytest.approx(math.log2(2 * 2_359_296 + 1))
    # per group 8 channels in, 16 out: both divisible by 8 = 2^3 (not by 16)
    assert f["log_align"] == 3


@pytest.mark.parametrize(("c_in", "c_out", "groups", "align"), [(64, 128, 1, 6), (256, 512, 1, 6), (72, 144, 1, 3),
                                                                (3, 64, 1, 0), (96, 96, 96, 0), (120, 40, 1, 3)])
def test_channel_alignment_is_the_power_of_two_dividing_channels_per_group(c_in, c_out, groups, align):
    # 64 = 2^6 (the cap), 72 = 8 x 9, 3 and a depthwise conv's 1 channel per group: 2^0, 120 = 8 x 15, 40 = 8 x 5
    conv = nn.Conv2d(c_in, c_out, 3, groups=groups)
    (record,) = rooflens.analyze(conv, input_size=(1, c_in, 8, 8)).records
    assert dict(zip(FEATURES, features(record)[1], strict=True))["log_align"] == align


def test_features_name_the_operator_before():
    model = nn.Sequential(nn.Conv2d(8, 32, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU(inplace=True)).eval()
    records = rooflens.analyze(model, input_size=(1, 8, 16, 16)).records
    previous = [dict(zip(FEATURES, features(r, p)[1], strict=True))["prev_kind"] for r, p in in_sequence(records)]
    # the convolution comes first (none before it: -1); the batch norm reads the 1x1 convolution's output
    assert previous == [-1.0, KINDS.index("conv1x1"), KINDS.index("batchnorm")]


def test_features_of_a_matrix_product():
    (record,) = rooflens.analyze(nn.Linear(64, 48), input_size=(8, 10, 64)).records
    kind, x = features(record)
    f = dict(zip(FEATURES, x, strict=True))
    # (80 x 64) @ (64 x 48): M = 8 x 10 = 80 rows, N = 48, K = 64
    assert kind == "gemm"
    assert (f["log_m"], f["log_n"], f["log_k"]) == pytest.approx((math.log2(81), math.log2(49), math.log2(65)))
    assert f["log_align"] == 4  # N = 48 = 16 x 3, K = 64: both divisible by 16


def test_ensemble_evaluates_as_scikit_learn_predicts():
    sklearn = pytest.importorskip("sklearn.ensemble")
    rng = random.Random(0)
    xs = [[rng.uniform(0, 10) for _ in range(5)] for _ in range(300)]
    ys = [math.sin(x[0]) + 0.3 * x[1] - 0.1 * x[2] * x[3] for x in xs]
    model = sklearn.GradientBoostingRegressor(n_estimators=40, max_depth=3, learning_rate=0.1, random_state=0)
    model.fit(xs, ys)
    ensemble = ensemble_of(model, len(xs))
    probe = [[rng.uniform(-1, 11) for _ in range(5)] for _ in range(50)]
    assert [ensemble(p) for p in probe] == pytest.approx(list(model.predict(probe)), abs=1e-9)
    again = Ensemble.from_dict(ensemble.as_dict())
    assert [again(p) for p in probe] == pytest.approx([ensemble(p) for p in probe], abs=0)


def sample(kind: str, reference: float, ratio: float, source: str = "net", x: tuple[float, ...] | None = None) -> Sample:
    """A memory-bound sample whose reference time on BARE is ``reference``, timed at ``ratio`` x that."""
    x = x if x is not None else tuple(float(i % 7) for i in range(len(FEATURES)))
    return Sample(kind, x, 0.0, reference * BW, ratio * reference, source)


def test_fit_learns_each_groups_ratio():
    pytest.importorskip("sklearn")
    rng = random.Random(1)
    rows = []
    for i in range(200):  # convolutions take 1.5 x their reference in context, elementwise operators 3 x
        x = tuple(rng.uniform(0, 20) for _ in FEATURES)
        rows.append(sample("conv3x3", 1e-4 * (1 + i % 5), 1.5, x=(1.0, *x[1:])))
        rows.append(sample("add", 1e-5 * (1 + i % 3), 3.0, x=(13.0, *x[1:])))
    predictor = fit(rows, roof=BARE, provenance={"machine": "test"})
    assert predictor.roof == BARE  # no sample ran faster than it
    assert set(predictor.ensembles) == {"all", "conv", "elementwise"}  # gemm and dwconv: too few samples
    probe_conv, probe_add = sample("conv3x3", 2e-4, 1.0, x=(1.0,) * 18), sample("add", 4e-5, 1.0, x=(13.0,) * 18)
    assert predict_sample(predictor, probe_conv) == pytest.approx(1.5 * 2e-4, rel=0.01)
    assert predict_sample(predictor, probe_add) == pytest.approx(3.0 * 4e-5, rel=0.01)
    assert predictor.provenance["machine"] == "test"


def test_networks_weigh_the_square_root_of_their_seconds():
    pytest.importorskip("sklearn")
    # one operator shape timed in two networks: 15 x 400 us in "big" (4 x the 100 us reference), 15 x 100 us in
    # "small" (1 x). Weights: 400 us / sqrt(6 ms) against 100 us / sqrt(1.5 ms), 2 : 1, so the learned log
    # ratio is (2 ln 4 + 1 ln 1) / 3 and the prediction 4 ** (2/3) x 100 us = 252 us (by seconds alone,
    # 4 : 1, it would be 4 ** 0.8 x 100 us = 303 us; every network alike, 4 ** 0.5 x 100 us = 200 us); within
    # 3 %: the trees fit 80 % subsamples, which move the learned mean a little
    x = (1.0,) * len(FEATURES)
    rows = [sample("conv3x3", 1e-4, 4.0, "big", x)] * 15 + [sample("conv3x3", 1e-4, 1.0, "small", x)] * 15
    assert sample_weights(rows)[0] / sample_weights(rows)[-1] == pytest.approx(2.0)
    assert sample_weights([]) == [] and sample_weights([replace(rows[0], seconds=0.0)]) == [0.0]  # nothing timed
    probe = sample("conv3x3", 1e-4, 1.0, x=x)
    predictor = fit(rows, roof=BARE)
    assert predict_sample(predictor, probe) == pytest.approx(4 ** (2 / 3) * 1e-4, rel=0.03)
    assert predictor.provenance["network_exponent"] == 0.5  # the device file says how its trees were weighed
    assert predict_sample(fit(rows, roof=BARE, network_exponent=0.0), probe) == pytest.approx(4 ** 0.8 * 1e-4, rel=0.03)
    assert predict_sample(fit(rows, roof=BARE, network_exponent=1.0), probe) == pytest.approx(2e-4, rel=0.03)


def test_line_through_samples_by_hand():
    pytest.importorskip("scipy")
    # seconds = 3 us + 0.5 ns per FLOP + 0.1 ns per byte, exactly, at FLOPs and bytes that vary independently
    rows = [Sample("maxpool", (0.0,), f, b, 3e-6 + 0.5e-9 * f + 0.1e-9 * b)
            for f in (1e4, 1e5, 1e6) for b in (4e4, 4e5, 4e6)]
    line = fit_line(rows)
    assert (line.seconds, line.seconds_per_flop, line.seconds_per_byte) == pytest.approx((3e-6, 0.5e-9, 0.1e-9))
    # no term below zero: times that fall with the bytes give a line flat in the bytes, not a negative slope
    falling = [Sample("add", (0.0,), 0.0, b, 1e-5 - 1e-12 * b) for b in (1e5, 1e6, 5e6)]
    assert fit_line(falling).seconds_per_byte == 0.0


def test_a_kind_with_a_line_scales_with_its_work_beyond_the_samples():
    pytest.importorskip("sklearn")
    # max pools sampled at 2 bytes per comparison, 1 ns per comparison; predicted at 8 comparisons per byte
    # (a stride-1 window reads each input 9 times): 1e6 comparisons x 1 ns = 1 ms (on the roof alone the
    # ratio learned at 2 bytes per FLOP stays, 0.5 ns per byte: 0.0625 ms)
    rows = [Sample("maxpool", (float(i),), f, 2 * f, 1e-9 * f) for i, f in enumerate(range(100_000, 1_100_000, 20_000))]
    predictor = fit(rows, roof=BARE)
    assert set(predictor.lines) == {"maxpool"}
    probe = Sample("maxpool", (0.0,), 1e6, 1.25e5, 0.0)
    assert predict_sample(predictor, probe) == pytest.approx(1e-3, rel=0.02)


def test_fit_needs_enough_samples():
    with pytest.raises(HardwareError, match="at least 30 timed operators"):
        fit([sample("add", 1e-5, 2.0)] * 5, roof=BARE)


def test_roof_is_raised_to_what_the_samples_reached():
    roof = Roof(1e9, 1e9, 1e-6)
    fast = Sample("conv3x3", (0.0,) * 18, 4e9, 1e6, 0.1, "net")  # 4e9 FLOPs in 0.1 s: 40 GFLOP/s
    cached = Sample("add", (0.0,) * 18, 0.0, 3e6, 1e-4, "net")  # 3 MB in 100 us: 30 GB/s (from cache)
    too_short = Sample("add", (0.0,) * 18, 0.0, 1e6, 1e-6, "net")  # 1 TB/s, but 1 us: not trusted
    raised = fitted_roof(roof, [fast, cached, too_short])
    assert raised == Roof(40e9, 30e9, 1e-6)
    # the bound: no sample below its roofline time on the raised roof
    assert raised.roofline(fast.flops, fast.bytes) == pytest.approx(0.1)
    assert raised.reference(cached.flops, cached.bytes) == pytest.approx(1e-4 + 1e-6)


def test_predictor_travels_in_the_device_file(tmp_path):
    spec = make_spec(constant(1.5))
    path = tmp_path / "this.toml"
    path.write_text(spec.to_toml(), encoding="utf-8")
    (loaded,) = load_file(path)
    assert predictor_of(loaded).roof == ROOF
    assert predictor_of(loaded).provenance["machine"] == "test"
    lined = replace(constant(1.5), lines={"relu_": Line(1e-6, 2e-12, 3e-10)})
    assert Predictor.from_dict(lined.as_dict()).lines == {"relu_": Line(1e-6, 2e-12, 3e-10)}
    for bad in ([math.nan, 0.0, 0.0], [1e-6, -1e-12, 0.0]):  # a NaN or negative term would poison every estimate
        with pytest.raises(HardwareError, match="no usable roof or lines"):
            Predictor.from_dict({**lined.as_dict(), "lines": {"relu_": bad}})
    a = rooflens.analyze(two_layers(), input_size=(1024, 1024), hardware=loaded).calibrated
    b = rooflens.analyze(two_layers(), input_size=(1024, 1024), hardware=spec).calibrated
    assert a.total_seconds == pytest.approx(b.total_seconds)
    stale = make_spec()
    stale = replace(stale, extra={**stale.extra, "predictor": {**spec.extra["predictor"], "feature_version": 0}})
    with pytest.raises(HardwareError, match="feature version 0"):
        predictor_of(stale)


def test_report_json_names_the_method():
    spec = make_spec(constant(1.5))
    data = rooflens.analyze(two_layers(), input_size=(1024, 1024), hardware=spec).to_dict()
    assert data["calibrated"]["method"] == "learned"


def test_estimate_of_a_report_without_hardware_is_none():
    assert estimate(rooflens.analyze(two_layers(), input_size=(2, 1024))) is None
