"""Calibrated latency: predictions on a hand-built measured spec follow the formula worked out by hand.

The device: fp32 peak 100 GFLOP/s, bandwidth 10 GB/s, a fixed 2 us per eager operator and 1 us per module
call. Its curves are written so that the test's operators land exactly on measured points, with the
efficiencies chosen here: every point's time is ``overhead + work / (roof x efficiency)``.
"""

from __future__ import annotations

import pytest
from torch import nn

import rooflens
from rooflens.analysis.calibrated import Curve, calibrate, op_kind, predict, predict_records, record_family
from rooflens.errors import HardwareError
from rooflens.hardware import HardwareSpec, Kind
from rooflens.types import Cost, OpRecord, TensorMeta

PEAK = 100e9  # FLOP/s
BW = 10e9  # B/s
OVERHEAD = 2e-6  # s per operator
MODULE_CALL = 1e-6  # s per module call

# the test model's operators (from rooflens.analyze, checked in test_records_are_as_expected):
LINEAR_FLOPS = 2_148_532_224  # addmm 1024x1024 @ 1024x1024 + bias: 2 * 1024^3 + 1024^2
LINEAR_BYTES = 12_587_008  # read 8,392,704 (input 4 MiB + weight 4 MiB + bias 4 KiB) + write 4,194,304
RELU_FLOPS = 1_048_576  # one per element
RELU_BYTES = 8_388_608  # in place: read 4 MiB + write 4 MiB
SMALL_FLOPS = 2 * 64**3 + 64**2  # Linear(64, 64) on 64 rows: 528,384
SMALL_BYTES = 4 * (64 * 64 * 3 + 64)  # input, weight, output 64x64 and the bias: 49,408


def point(work: float, roof: float, efficiency: float) -> float:
    """The measured time of a micro-benchmark point that reached ``efficiency`` of ``roof``."""
    return OVERHEAD + work / (roof * efficiency)


def make_spec(**extra_overrides) -> HardwareSpec:
    extra = {
        "op_overhead_seconds": OVERHEAD,
        "module_call_seconds": MODULE_CALL,
        # GEMMs: the small one reaches 25 % of the peak, the large one 80 %
        "gemm_fp32": [[SMALL_FLOPS, 0.0, point(SMALL_FLOPS, PEAK, 0.25)],
                      [LINEAR_FLOPS, 0.0, point(LINEAR_FLOPS, PEAK, 0.8)]],
        # weights streamed by matrix-vector products: 50 % of the bandwidth at any size
        "gemv_fp32": [[0.0, SMALL_BYTES, point(SMALL_BYTES, BW, 0.5)],
                      [0.0, LINEAR_BYTES, point(LINEAR_BYTES, BW, 0.5)]],
        # in-place elementwise: 25 % of the bandwidth
        "relu__fp32": [[0.0, 1e3, point(1e3, BW, 0.25)], [0.0, RELU_BYTES, point(RELU_BYTES, BW, 0.25)]],
        # out-of-place elementwise: the full bandwidth
        "add_fp32": [[0.0, 1e3, point(1e3, BW, 1.0)], [0.0, 1e9, point(1e9, BW, 1.0)]],
    }
    extra.update(extra_overrides)
    return HardwareSpec(
        id="hand-built", name="Hand-built CPU (2 threads, measured)", vendor="Test", kind=Kind.MEASURED,
        peak_flops_per_s={"fp32": PEAK}, bandwidth_bytes_per_s=BW, source="written by hand for the tests",
        extra=extra,
    )


@pytest.fixture(scope="module")
def report() -> rooflens.Report:
    model = nn.Sequential(nn.Linear(1024, 1024), nn.ReLU(inplace=True))
    return rooflens.analyze(model, input_size=(1024, 1024), hardware=make_spec())


def test_records_are_as_expected(report):
    linear, relu = report.records
    assert (linear.op, linear.module, linear.cost.flops, linear.cost.bytes) == ("aten.addmm", "0", LINEAR_FLOPS,
                                                                                 LINEAR_BYTES)
    assert (relu.op, relu.module, relu.cost.flops, relu.cost.bytes) == ("aten.relu_", "1", RELU_FLOPS, RELU_BYTES)
    assert [op_kind(r) for r in report.records] == ["gemm", "relu_"]


def test_large_gemm_by_hand(report):
    p = predict(report, calibrate(make_spec())).ops[0]
    # compute: 2,148,532,224 FLOPs / (100e9 x 0.8) = 26.8566528 ms
    assert p.compute_efficiency == pytest.approx(0.8)
    assert p.compute_seconds == pytest.approx(26.8566528e-3)
    # memory: 12,587,008 B / (10e9 x 0.5) = 2.5174016 ms: less, so the GEMM is compute-bound
    assert p.memory_efficiency == pytest.approx(0.5)
    assert p.memory_seconds == pytest.approx(2.5174016e-3)
    # overhead: 2 us for the operator + 1 us each for the calls of the root module and of the Linear
    # (both charged to the first operator that runs in them: this one)
    assert p.overhead_seconds == pytest.approx(4e-6)
    # 26.8566528 ms + 0.004 ms
    assert p.seconds == pytest.approx(26.8606528e-3)
    assert p.bound == "compute"


def test_inplace_elementwise_by_hand(report):
    p = predict(report, calibrate(make_spec())).ops[1]
    # memory: 8,388,608 B / (10e9 x 0.25) = 3.3554432 ms; compute 1,048,576 / 100e9 = 10.48576 us (e_c = 1)
    assert p.memory_efficiency == pytest.approx(0.25)
    assert p.memory_seconds == pytest.approx(3.3554432e-3)
    assert p.compute_seconds == pytest.approx(10.48576e-6)
    # overhead: 2 us + 1 us for the ReLU module's call
    assert p.seconds == pytest.approx(3.3554432e-3 + 3e-6)
    assert p.bound == "memory"


def test_total_is_the_sum_of_the_operators_and_modules_add_up(report):
    pred = predict(report, make_spec())  # a spec is calibrated on the way
    assert len(pred.ops) == len(report.records)
    # 26.8606528 ms + 3.3584432 ms = 30.219096 ms
    assert pred.total_seconds == pytest.approx(30.219096e-3)
    assert pred.total_seconds == pytest.approx(sum(p.seconds for p in pred.ops))
    # the parts: compute of the GEMM, memory of the ReLU, and the 7 us of overhead
    assert pred.compute_seconds == pytest.approx(26.8566528e-3)
    assert pred.memory_seconds == pytest.approx(3.3554432e-3)
    assert pred.overhead_seconds == pytest.approx(7e-6)
    assert pred.compute_seconds + pred.memory_seconds + pred.overhead_seconds == pytest.approx(pred.total_seconds)
    # per module: each child its operator, the root (and ancestor of both) the total
    assert pred.by_module()["0"] == pytest.approx(pred.ops[0].seconds)
    assert pred.by_module()["1"] == pytest.approx(pred.ops[1].seconds)
    assert pred.by_module()[""] == pytest.approx(pred.total_seconds)
    assert pred.by_kind() == pytest.approx({"gemm": pred.ops[0].seconds, "relu_": pred.ops[1].seconds})


def test_prediction_is_never_below_the_roofline_when_curves_stay_under_the_roofs(report):
    # every curve of the hand-built spec runs at or below the peak and the bandwidth
    pred = predict(report, calibrate(make_spec()))
    for p, t in zip(pred.ops, report.roofline.ops, strict=True):
        assert p.seconds >= t.seconds
    assert pred.total_seconds >= report.roofline.total_seconds


def test_cache_resident_operators_can_beat_the_dram_roofline():
    # a measured CPU moves tensors that stay in cache faster than its DRAM bandwidth: an in-place op at
    # 4x the bandwidth (e_m = 4) takes 8,388,608 / (10e9 x 4) = 0.2097152 ms + 3 us, below its roofline
    # time of 8,388,608 / 10e9 = 0.8388608 ms. The calibrated time is an estimate, not a bound.
    spec = make_spec(relu__fp32=[[0.0, RELU_BYTES, point(RELU_BYTES, BW, 4.0)]])
    r = rooflens.analyze(nn.Sequential(nn.Linear(1024, 1024), nn.ReLU(inplace=True)), input_size=(1024, 1024),
                         hardware=spec)
    p = predict(r, calibrate(spec)).ops[1]
    assert p.memory_efficiency == pytest.approx(4.0)
    assert p.seconds == pytest.approx(0.2097152e-3 + 3e-6)
    assert p.seconds < r.roofline.ops[1].seconds


def test_a_small_gemm_reaches_a_smaller_share_of_the_peak():
    r = rooflens.analyze(nn.Linear(64, 64), input_size=(64, 64), hardware=make_spec())
    (p,) = predict(r, calibrate(make_spec())).ops
    assert r.records[0].cost.flops == SMALL_FLOPS
    # on the curve's first point: 25 % of the peak, 528,384 / (100e9 x 0.25) = 21.13536 us
    assert p.compute_efficiency == pytest.approx(0.25)
    assert p.compute_seconds == pytest.approx(21.13536e-6)
    # overhead 2 us + the Linear's call 1 us (it is the root module here, called once)
    assert p.seconds == pytest.approx(21.13536e-6 + 3e-6)


def test_sizes_between_points_interpolate_in_log_log_and_outside_keep_the_ends():
    # t = 1 ms at 1e6, 100 ms at 1e9: log-linear halfway (size 10^7.5) is 10 ms
    curve = Curve.from_rows("c", [[1e6, 0, 1e-3], [1e9, 0, 100e-3]], 0)
    assert curve.time(10**7.5) == pytest.approx(10e-3)
    assert curve.time(1e3) == pytest.approx(1e-3)  # below: the first point's time
    assert curve.time(2e9) == pytest.approx(200e-3)  # above: the last point's rate
    # a point slower than a larger one (noise on a busy machine) takes the larger one's time
    noisy = Curve.from_rows("n", [[1e6, 0, 5e-3], [1e7, 0, 2e-3], [1e8, 0, 20e-3]], 0)
    assert noisy.seconds == (2e-3, 2e-3, 20e-3)


def test_convolutions_read_their_sorts_grid():
    # one grid point per sort at exactly the test conv's FLOPs, output pixels and channel ratio:
    # Conv2d(16 -> 64, 1x1) on 1x16x28x28: 1,605,632 FLOPs, 784 output pixels, 4x the channels
    flops = 2 * 16 * 64 * 28 * 28
    conv_rows = [[flops, 0.0, point(flops, PEAK, 0.1), 784.0, 4.0]]
    spec = make_spec(conv1x1_fp32=conv_rows, conv3x3_fp32=[[flops, 0.0, point(flops, PEAK, 0.5), 784.0, 1.0]])
    model = nn.Conv2d(16, 64, 1, bias=False)
    r = rooflens.analyze(model, input_size=(1, 16, 28, 28), hardware=spec)
    (p,) = predict(r, calibrate(spec)).ops
    assert p.kind == "conv1x1"
    # 1,605,632 / (100e9 x 0.1) = 160.5632 us, + 2 us + the module's call 1 us
    assert p.compute_efficiency == pytest.approx(0.1)
    assert p.seconds == pytest.approx(160.5632e-6 + 3e-6)


def test_conv_kinds_follow_the_weight_shape():
    def kind(model: nn.Module, shape: tuple[int, ...]) -> str:
        return op_kind(rooflens.analyze(model, input_size=shape).records[0])

    assert kind(nn.Conv2d(8, 8, 3), (1, 8, 8, 8)) == "conv3x3"
    assert kind(nn.Conv2d(8, 8, 7), (1, 8, 16, 16)) == "conv3x3"  # any k x k > 1
    assert kind(nn.Conv2d(8, 16, 1), (1, 8, 8, 8)) == "conv1x1"
    assert kind(nn.Conv2d(8, 8, 3, groups=8), (1, 8, 8, 8)) == "dwconv3x3"
    assert kind(nn.Conv2d(8, 8, 3, groups=2), (1, 8, 8, 8)) == "gconv3x3"


def test_a_catalogue_device_cannot_be_calibrated():
    with pytest.raises(HardwareError, match="rooflens hw bench"):
        calibrate(rooflens.hardware.get("a4000"))


def test_the_report_names_the_roofline_bound_and_the_calibrated_estimate_apart(report):
    # the two operators above: 26.8606528 ms + (3.3554432 ms + 3 us) = 30.2190960 ms
    cal = report.calibrated
    assert cal is not None and cal.total_seconds == pytest.approx(30.219096e-3)
    assert report.calibrated is cal  # computed once
    # the roofline keeps its own figure: 2,148,532,224 / 100e9 = 21.48532224 ms for the GEMM (compute-bound);
    # ReLU max(8,388,608 / 10e9, 1,048,576 / 100e9) = 0.8388608 ms
    assert report.roofline.total.seconds == pytest.approx(21.48532224e-3 + 0.8388608e-3)
    text = report.render(width=200)
    assert "Calibrated time:  30.2 ms = 1.35 x the roofline time" in text  # 30.219 / 22.324 = 1.354
    header = next(line for line in text.splitlines() if line.startswith("Module"))
    assert header.index("%Time") < header.index("Calibrated") < header.index("Output shape")
    data = report.to_dict()
    assert data["calibrated"]["total_seconds"] == pytest.approx(30.219096e-3)
    assert data["calibrated"]["calibration"]["hardware"] == "hand-built"
    modules = {m["path"]: m for m in data["modules"]}
    assert modules["0"]["calibrated_seconds"] == pytest.approx(26.8606528e-3)
    assert modules["1"]["calibrated_seconds"] == pytest.approx(3.3584432e-3)
    assert [op["calibrated"]["bound"] for op in data["operators"]] == ["compute", "memory"]
    assert "calibrated_seconds" in report.to_csv().splitlines()[0]


def test_a_datasheet_device_gets_no_calibrated_estimate(report):
    r = report.with_hardware("a4000")
    assert r.calibrated is None
    assert "Calibrated" not in r.render(width=200) and "calibrated" not in r.to_dict()


# ---- kinds from the formula family ------------------------------------------------------------------


def rec(op: str, family: str, inputs: list[tuple[int, ...]], outputs: list[tuple[int, ...]], *, flops: int = 0,
        macs: int = 0, phase: str = "forward") -> OpRecord:
    """An operator record as the engine makes it, with the family of the formula that counted it."""
    def meta(shape: tuple[int, ...]) -> TensorMeta:
        return TensorMeta(shape, "float32", 4)

    return OpRecord(op, "", tuple(meta(s) for s in inputs), tuple(meta(s) for s in outputs), Cost(macs, flops),
                    phase=phase, family=family)


IMG = (1, 16, 14, 14)  # 3,136 elements


@pytest.mark.parametrize(("record", "kind"), [
    # the operators the old name lists missed: every operator of the matmul and attention families is a GEMM
    (rec("aten._int_mm", "matmul", [(64, 64), (64, 64)], [(64, 64)], macs=262_144, flops=524_288), "gemm"),
    (rec("aten._scaled_mm", "matmul", [(64, 64), (64, 64)], [(64, 64)], macs=262_144, flops=528_384), "gemm"),
    (rec("aten._flash_attention_forward", "attention", [(1, 16, 4, 8)] * 3, [(1, 16, 4, 8)], macs=16_384,
         flops=38_912), "gemm"),
    # the family decides, not the name: an operator the registry gains later
    (rec("aten.some_future_gemm", "matmul", [(8, 8), (8, 8)], [(8, 8)], macs=512, flops=1_024), "gemm"),
    # recurrent layers, linear algebra and FFTs: compute-bound, the GEMM curve
    (rec("aten.mkldnn_rnn_layer", "rnn", [(5, 2, 3)], [(5, 2, 4)], macs=1_120, flops=3_440), "gemm"),
    (rec("aten.linalg_cholesky_ex", "linalg", [(5, 5)], [(5, 5), ()], flops=55), "gemm"),
    (rec("aten._fft_c2c", "fft", [(64,)], [(64,)], flops=1_920), "gemm"),
    # convolution_backward(grad_output, input, weight): the sort from the input and weight, as the forward's
    (rec("aten.convolution_backward", "conv", [IMG, IMG, (16, 1, 3, 3)], [IMG, (16, 1, 3, 3)], macs=56_448,
         flops=112_896, phase="backward"), "dwconv3x3"),
    (rec("aten.convolution_backward", "conv", [(1, 32, 14, 14), IMG, (32, 16, 1, 1)], [IMG, (32, 16, 1, 1)],
         macs=200_704, flops=401_408, phase="backward"), "conv1x1"),
    (rec("aten.convolution", "conv", [IMG, (16, 16, 3, 3)], [IMG], macs=451_584, flops=903_168), "conv3x3"),
    # norms: 2 FLOPs per element (running statistics: a scale and a shift) batch norm, more layer norm
    (rec("aten._native_batch_norm_legit_no_training", "norm", [IMG], [IMG], flops=2 * 3_136), "batchnorm"),
    (rec("aten.native_batch_norm", "norm", [IMG], [IMG], flops=8 * 3_136), "layernorm"),
    (rec("aten.native_layer_norm", "norm", [(4, 256)], [(4, 256)], flops=8 * 1_024), "layernorm"),
    # data movement
    (rec("aten.cat", "memory", [IMG, IMG], [(1, 32, 14, 14)]), "cat"),
    (rec("aten.constant_pad_nd", "memory", [IMG], [(1, 16, 16, 16)]), "cat"),
    # pooling (an output no larger than the input) at its FLOPs, stride 1 too; resampling to a larger output
    # and the pool backwards are plain elementwise work
    (rec("aten.max_pool2d_with_indices", "pool", [IMG], [(1, 16, 7, 7)] * 2, flops=9 * 784), "maxpool"),
    (rec("aten.avg_pool2d", "pool", [IMG], [IMG], flops=10 * 3_136), "maxpool"),  # 3x3, stride 1, padding 1
    (rec("aten._adaptive_avg_pool2d", "pool", [IMG], [(1, 16, 7, 7)], flops=5 * 784), "maxpool"),
    (rec("aten.upsample_bilinear2d", "pool", [IMG], [(1, 16, 28, 28)], flops=7 * 12_544), "add"),
    (rec("aten.upsample_bilinear2d_backward", "pool", [(1, 16, 28, 28)], [IMG], flops=8 * 12_544,
         phase="backward"), "add"),
    (rec("aten.max_pool2d_with_indices_backward", "pool", [(1, 16, 7, 7), IMG], [IMG], flops=784,
         phase="backward"), "add"),
    # reductions to a smaller output: the mean curve; softmax (same size, 5 per element): GELU's
    (rec("aten.mean", "reduction", [IMG], [(1, 16, 1, 1)], flops=3_136 + 16), "mean"),
    (rec("aten.amax", "reduction", [IMG], [(1, 16)], flops=3_136), "mean"),
    (rec("aten._softmax", "reduction", [(4, 256)], [(4, 256)], flops=5 * 1_024), "gelu"),
    # transcendental functions: 5 or more FLOPs per element (GELU 5, SiLU 5) the GELU curve, fewer the sigmoid
    (rec("aten.sigmoid", "transcendental", [IMG], [IMG], flops=4 * 3_136), "sigmoid"),
    (rec("aten.tanh", "transcendental", [IMG], [IMG], flops=3_136), "sigmoid"),
    (rec("aten.gelu", "transcendental", [IMG], [IMG], flops=5 * 3_136), "gelu"),
    (rec("aten.silu_", "transcendental", [IMG], [IMG], flops=5 * 3_136), "gelu"),
    # the pointwise family (no transcendental function): in place relu_, else add, whatever its FLOPs
    (rec("aten.add", "pointwise", [IMG, IMG], [IMG], flops=3_136), "add"),
    (rec("aten.relu_", "pointwise", [IMG], [IMG], flops=3_136), "relu_"),
    (rec("aten.hardswish_", "pointwise", [IMG], [IMG], flops=5 * 3_136), "relu_"),
    (rec("aten.hardsigmoid", "pointwise", [IMG], [IMG], flops=4 * 3_136), "add"),
    # an unsupported operator (no formula, no family): bytes only, an elementwise op
    (rec("aten.unknown_op", "", [IMG], [IMG]), "add"),
])
def test_kinds_follow_the_formula_family(record: OpRecord, kind: str) -> None:
    assert op_kind(record) == kind


def test_a_record_without_a_family_takes_its_registry_entrys() -> None:
    # records made before families were recorded: the family of the operator's formula
    mm = rec("aten.mm", "", [(64, 64), (64, 64)], [(64, 64)], macs=262_144, flops=524_288)
    assert record_family(mm) == "matmul" and op_kind(mm) == "gemm"
    conv_back = rec("aten.convolution_backward", "", [IMG, IMG, (16, 16, 3, 3)], [IMG, (16, 16, 3, 3)],
                    macs=903_168, flops=1_806_336, phase="backward")
    assert record_family(conv_back) == "conv" and op_kind(conv_back) == "conv3x3"


def test_an_int_mm_record_reads_the_gemm_curve() -> None:
    # _int_mm with the small GEMM's FLOPs (528,384) lands on the GEMM curve's first point, 25 % of the peak:
    # 528,384 / (100e9 x 0.25) = 21.13536 us (an "add" kind would have taken e_c = 1: 5.28 us)
    r = rec("aten._int_mm", "matmul", [(64, 64), (64, 64)], [(64, 64)], macs=262_144, flops=SMALL_FLOPS)
    pred = predict_records([r], [""], calibrate(make_spec()))
    (p,) = pred.ops
    assert p.kind == "gemm"
    assert p.compute_efficiency == pytest.approx(0.25)
    assert p.compute_seconds == pytest.approx(21.13536e-6)


def test_the_family_is_part_of_the_record_dict() -> None:
    r = rec("aten.mm", "matmul", [(2, 2), (2, 2)], [(2, 2)], macs=8, flops=16)
    assert r.as_dict()["family"] == "matmul"
    assert OpRecord("aten.mm", "", (), (), Cost()).family == ""
