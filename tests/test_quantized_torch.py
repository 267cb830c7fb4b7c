"""torch's quantized models: dynamic (packed int8 Linear, LSTM, GRU) and static (eager-mode post-training
quantization with QuantStub/DeQuantStub, fused Conv+ReLU and Linear+ReLU, FloatFunctional add/cat), and a
quantized torchvision model. Every number is derived by hand in the comment beside it.

Conventions the numbers follow (formulas/quantized.py, the same constants as the ONNX front-end's): int8 MACs
by the float shape formulas; quantize 5 FLOPs per element (divide, round, add the zero point, saturate 2),
dequantize 2, a dynamic scale (min and max) 2; an int8 conv/linear adds 5 per output (requantize the int32
accumulator), a dynamic one 1 (scale it to fp32); bytes at the real widths (quint8/qint8 1 byte, fp32 4);
model size = int8 weights + fp32 biases + 16 bytes of scale (float64) and zero point (int64) per tensor or
per output channel.
"""

from __future__ import annotations

import warnings
from collections import Counter
from typing import Any

import pytest
import torch
from torch import nn

import rooflens
from rooflens.hardware.spec import Precision

from _state import assert_same_state, fakes, state

tq = torch.ao.quantization

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")


def _dynamic(model: nn.Module, dtype: torch.dtype = torch.qint8) -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return tq.quantize_dynamic(model, {nn.Linear, nn.LSTM, nn.GRU}, dtype=dtype)


def _static(model: nn.Module, shape: tuple[int, ...], fuse: list[list[str]] | None = None) -> nn.Module:
    """Eager-mode post-training quantization (x86 qconfig), calibrated on two random batches."""
    model.eval()
    if fuse:
        tq.fuse_modules(model, fuse, inplace=True)
    model.qconfig = tq.get_default_qconfig("x86")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = tq.prepare(model)
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for _ in range(2):
                prepared(torch.randn(shape, generator=gen))
        return tq.convert(prepared)


def _ops(report: Any) -> Counter[str]:
    return Counter(r.op for r in report.records)


def _packed_state(model: nn.Module) -> list[tuple[str, Any]]:
    """What every packed-parameter object of the model holds (int values, scales, zero points, biases)."""
    out: list[tuple[str, Any]] = []
    for path, module in model.named_modules():
        for name, value in vars(module).items():
            if isinstance(value, torch.ScriptObject) and "unpack" in value._method_names():
                w, b = value.unpack()
                scales = w.q_per_channel_scales() if w.qscheme() == torch.per_channel_affine else w.q_scale()
                out.append((f"{path}.{name}", (w.int_repr().clone(), scales, None if b is None else b.clone())))
    return out


def _assert_same_packed(before: list[tuple[str, Any]], after: list[tuple[str, Any]]) -> None:
    assert [p for p, _ in before] == [p for p, _ in after]
    for (path, (w0, s0, b0)), (_, (w1, s1, b1)) in zip(before, after, strict=True):
        assert torch.equal(w0, w1), path
        assert torch.equal(torch.as_tensor(s0), torch.as_tensor(s1)), path
        assert (b0 is None and b1 is None) or torch.equal(b0, b1), path


# ---- dynamic quantization ------------------------------------------------------------------------------


def test_dynamic_linear_counts_its_packed_int8_weight() -> None:
    q = _dynamic(nn.Sequential(nn.Linear(64, 32)))
    report = rooflens.analyze(q, torch.randn(4, 64))
    assert report.executed == "fake"  # fp32 in and out: the dynamic kernel has a meta kernel
    assert report.unsupported_ops() == {}
    assert report.uncalled_modules == ()  # the weight holder (LinearPackedParams) is never called itself
    # parameters: the int8 weight 64 x 32 = 2048 + the fp32 bias 32 = 2080, none trainable
    assert report.params.total == 2080
    assert report.params.trainable == 0
    # model size: 2048 int8 x 1 + 32 fp32 x 4 = 128 + per-tensor scale (float64, 8) and zero point (int64, 8)
    # = 2048 + 128 + 16 = 2192 bytes
    assert report.params.bytes == 2192
    assert rooflens.count_parameters(q) == 2080
    assert rooflens.model_size_bytes(q) == 2192
    assert rooflens.model_size_bytes(q, bits=8) == 2080  # 2080 elements at 1 byte, no scales
    total = report.total()
    # MACs = batch 4 x in 64 x out 32 = 8192 (int8 x int8 -> int32)
    assert total.macs == 4 * 64 * 32 == 8192
    # FLOPs = 2 x 8192 = 16384 + bias 4 x 32 = 128 + the input's dynamic quantization: min/max 2 + quantize 5
    # per input element, 7 x 256 = 1792 + scaling the int32 outputs to fp32 1 x 128 = 128 -> 18432
    assert total.flops == 16384 + 128 + 1792 + 128 == 18432
    # read: x 4 x 64 fp32 = 1024 + weight 2048 int8 = 2048 + bias 32 fp32 = 128 -> 3200; written: y 4 x 32 fp32 = 512
    assert total.bytes_read == 1024 + 2048 + 128 == 3200
    assert total.bytes_written == 512
    (record,) = report.records
    assert record.op == "quantized.linear_dynamic" and record.family == "matmul"  # as the float product's
    assert record.weight_bytes_read == 2048 + 128
    assert report.precision is Precision.INT8
    node = report.by_module()["0"]
    assert node.type_name == "DynamicQuantizedLinear"
    assert node.cumulative.macs == 8192 and node.params.total == 2080


def test_a_dynamic_layer_called_twice_and_analysed_twice_stays_fake() -> None:
    # torch's fake-tensor cache compares keys with ==, which the packed-weight script objects refuse: a second
    # call of the same layer (in one forward, or in a second analysis) must not fail over to a real run
    layer = _dynamic(nn.Sequential(nn.Linear(64, 64)))[0]

    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layer = layer

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.layer(self.layer(x))

    for _ in range(2):
        report = rooflens.analyze(Twice(), torch.randn(4, 64))
        assert (report.executed, report.diagnostics) == ("fake", ())
        assert report.total().macs == 2 * 4 * 64 * 64  # two calls of 4 x 64 x 64 = 16384 each
        assert report.params.total == 64 * 64 + 64  # the layer's packed weights, once


def test_dynamic_quantization_in_fp16_reads_the_weight_at_two_bytes() -> None:
    q = _dynamic(nn.Sequential(nn.Linear(64, 32)), dtype=torch.float16)
    report = rooflens.analyze(q, torch.randn(4, 64))
    assert report.unsupported_ops() == {}
    assert report.params.total == 2080
    # size: 2048 fp16 x 2 = 4096 + 32 fp32 x 4 = 128 -> 4224 (no scales)
    assert report.params.bytes == 4224
    # MACs 4 x 64 x 32 = 8192; FLOPs 2 x 8192 + bias 128 = 16512 (fp32 compute on fp16 weights)
    assert (report.total().macs, report.total().flops) == (8192, 16512)
    # read: x 1024 + weight 2048 x 2 = 4096 + bias 128 -> 5248
    assert report.total().bytes_read == 5248
    assert report.precision is Precision.FP32  # fp16 weights, fp32 arithmetic: not an int8 model
    # weight_bits rescales the fp16 weight like any other: at 8 bits x 1024 + weight 2048 + bias 32 -> 3104
    assert rooflens.analyze(q, torch.randn(4, 64), weight_bits=8).total().bytes_read == 1024 + 2048 + 32


@pytest.mark.parametrize(
    ("cls", "gates", "elementwise"), [(nn.LSTM, 4, 22), (nn.GRU, 3, 16)], ids=["lstm", "gru"]
)
def test_dynamic_lstm_and_gru(cls: type[nn.Module], gates: int, elementwise: int) -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = cls(16, 32, batch_first=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.rnn(x)[0]

    torch.manual_seed(0)
    float_model = Net().eval()
    q = _dynamic(Net().eval())
    x = torch.randn(3, 5, 16)  # B 3, T 5, I 16; H 32
    report = rooflens.analyze(q, x)
    assert report.executed == "fake"
    assert report.unsupported_ops() == {}
    rows, h, i = 3 * 5, 32, 16
    g = gates * h  # gate outputs per step: LSTM 128, GRU 96
    # MACs = T·B·(I + H)·G·H = 15 x 48 x 128 = 92160 (LSTM), 15 x 48 x 96 = 69120 (GRU)
    macs = rows * (i + h) * g
    assert report.total().macs == macs == {4: 92160, 3: 69120}[gates]
    assert report.total().macs == rooflens.analyze(float_model, x).total().macs  # the float model's MACs
    # parameters: w_ih G·H x I + w_hh G·H x H + two biases G·H: LSTM 2048 + 4096 + 256 = 6400, GRU 4800
    assert report.params.total == g * i + g * h + 2 * g == {4: 6400, 3: 4800}[gates]
    # FLOPs: the float RNN's (2 x MACs + 1 per gate output per bias x 2 + elementwise per hidden unit)
    # + quantizing the step's input and hidden state (7 per element: 15 x 48 x 7 = 5040)
    # + scaling the two int32 products to fp32 (1 per gate output each: 2 x 15 x G·H)
    flops = 2 * macs + 2 * rows * g + elementwise * rows * h + 7 * rows * (i + h) + 2 * rows * g
    assert report.total().flops == flops
    # read: x 15 x 16 fp32 = 960 + the zero initial state (one (1, 3, 32) tensor, h0 and c0 alike) 384
    # + int8 weights G·H x (16 + 32) + fp32 biases 2 x G·H x 4
    assert report.total().bytes_read == 960 + 384 + g * (i + h) + 2 * g * 4
    assert report.precision is Precision.INT8


# ---- static quantization -------------------------------------------------------------------------------


class QuantConv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.quant = tq.QuantStub()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.dequant = tq.DeQuantStub()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dequant(self.conv(self.quant(x)))


def test_static_conv_counts_int8_macs_and_bytes_at_one_byte() -> None:
    q = _static(QuantConv(), (2, 3, 16, 16))
    report = rooflens.analyze(q, torch.randn(2, 3, 16, 16))
    assert report.executed == "real"  # quantized tensors have no fake form
    assert "computes on quantized tensors" in report.diagnostics[0]
    assert report.unsupported_ops() == {}
    assert _ops(report) == {"aten.quantize_per_tensor": 1, "quantized.conv2d": 1, "aten.dequantize": 1}
    by_op = {r.op: r.cost for r in report.records}
    conv = by_op["quantized.conv2d"]
    # MACs = N 2 x Cout 8 x H 16 x W 16 x Cin 3 x 3 x 3 = 110592
    assert conv.macs == 2 * 8 * 16 * 16 * 3 * 3 * 3 == 110592
    # FLOPs = 2 x 110592 + bias 4096 + requantize 5 x 4096 = 245760 (4096 = 2 x 8 x 16 x 16 outputs)
    assert conv.flops == 221184 + 4096 + 20480 == 245760
    # read: x 1536 quint8 + weight 8 x 3 x 3 x 3 = 216 qint8 + bias 8 fp32 = 32 -> 1784; written 4096 quint8
    assert (conv.bytes_read, conv.bytes_written) == (1536 + 216 + 32, 4096)
    # quantize: reads 1536 fp32 = 6144, writes 1536 quint8, 5 FLOPs each = 7680
    assert by_op["aten.quantize_per_tensor"] == rooflens.Cost(0, 7680, 6144, 1536)
    # dequantize: reads 4096 quint8, writes 4096 fp32 = 16384, 2 FLOPs each = 8192
    assert by_op["aten.dequantize"] == rooflens.Cost(0, 8192, 4096, 16384)
    # parameters: 216 + 8 = 224; size 216 x 1 + 8 x 4 + per-channel scale and zero point 8 x (8 + 8) = 376
    assert report.params.total == 224
    assert report.params.bytes == 216 + 32 + 128 == 376
    # buffers: QuantStub's scale (1 fp32) and zero point (1 int64): 2 elements, 12 bytes
    assert (report.params.buffers, report.params.buffer_bytes) == (2, 12)
    assert report.precision is Precision.INT8
    assert report.by_module()["conv"].type_name == "QuantizedConv2d"


class Mixed(nn.Module):
    """Conv+ReLU, a 1x1 conv, FloatFunctional add and cat, Linear+ReLU, Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.quant = tq.QuantStub()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(4, 4, 1)
        self.skip = torch.ao.nn.quantized.FloatFunctional()
        self.join = torch.ao.nn.quantized.FloatFunctional()
        self.fc1 = nn.Linear(512, 16)
        self.relu2 = nn.ReLU()
        self.fc2 = nn.Linear(16, 4)
        self.dequant = tq.DeQuantStub()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu1(self.conv1(self.quant(x)))
        z = self.skip.add(y, self.conv2(y))
        w = self.join.cat([y, z], dim=1).flatten(1)
        return self.dequant(self.fc2(self.relu2(self.fc1(w))))


def test_static_fused_modules_add_and_cat() -> None:
    x = torch.randn(1, 3, 8, 8)
    float_model = Mixed().eval()
    float_report = rooflens.analyze(float_model, x)
    q = _static(Mixed(), (2, 3, 8, 8), fuse=[["conv1", "relu1"], ["fc1", "relu2"]])
    report = rooflens.analyze(q, x)
    assert report.unsupported_ops() == {}
    assert _ops(report) >= Counter({
        "quantized.conv2d_relu": 1, "quantized.conv2d": 1, "quantized.add": 1, "quantized.cat": 1,
        "quantized.linear_relu": 1, "quantized.linear": 1, "aten.quantize_per_tensor": 1, "aten.dequantize": 1,
    })
    # MACs: conv1 4 x 8 x 8 x 27 = 6912; conv2 4 x 64 x 4 = 1024; fc1 512 x 16 = 8192; fc2 16 x 4 = 64 -> 16192
    assert report.total().macs == 6912 + 1024 + 8192 + 64 == 16192
    assert report.total().macs == float_report.total().macs  # the float model's (ReLU and add have no MACs)
    # parameters: conv1 108 + 4, conv2 16 + 4, fc1 8192 + 16, fc2 64 + 4 = 8408 (the float model's too)
    assert report.params.total == 112 + 20 + 8208 + 68 == 8408 == float_report.params.total
    by_op = {r.op: r.cost for r in report.records}
    # add: 256 outputs x (dequantize 2 x 2 + add 1 + quantize 5 = 10) = 2560; read 2 x 256 quint8, write 256
    assert by_op["quantized.add"] == rooflens.Cost(0, 2560, 512, 256)
    # cat: 512 outputs x (dequantize 2 + quantize 5) = 3584; read 256 + 256, write 512 (1 byte each)
    assert by_op["quantized.cat"] == rooflens.Cost(0, 3584, 512, 512)
    # linear_relu: 2 x 8192 + bias 16 + (requantize 5 + ReLU 1) x 16 = 16496; read 512 + 8192 + 64, write 16
    assert by_op["quantized.linear_relu"] == rooflens.Cost(8192, 16384 + 16 + 96, 512 + 8192 + 64, 16)


def test_a_functional_quantize_on_fake_tensors_runs_the_model_for_real() -> None:
    class Functional(nn.Module):  # no quantized module: only the operator tells
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.quantize_per_tensor(x, 0.1, 0, torch.quint8).dequantize()

    report = rooflens.analyze(Functional(), torch.randn(4, 8))
    assert report.executed == "real"
    assert "quantized tensor" in report.diagnostics[0]
    by_op = {r.op: r.cost for r in report.records}
    # quantize 32 elements (5 each): read 128 fp32 bytes, write 32 quint8 bytes (not the float32 fake torch
    # answers with)
    assert by_op["aten.quantize_per_tensor"] == rooflens.Cost(0, 160, 128, 32)
    assert by_op["aten.dequantize"] == rooflens.Cost(0, 64, 32, 128)


def test_a_quantized_input_runs_for_real() -> None:
    conv = torch.ao.nn.quantized.Conv2d(3, 4, 1)
    qx = torch.quantize_per_tensor(torch.randn(1, 3, 4, 4), 0.05, 64, torch.quint8)
    report = rooflens.analyze(conv, qx)
    assert report.executed == "real"
    # MACs 4 x 16 x 3 = 192; read 48 + 12 + 16 (bias 4 fp32), write 64
    assert (report.total().macs, report.total().bytes_read, report.total().bytes_written) == (192, 76, 64)


# ---- a quantized torchvision model ---------------------------------------------------------------------


def _quantized_torchvision(name: str, size: int) -> tuple[nn.Module, nn.Module, nn.Module]:
    """(float, fused float, int8) versions of torchvision's quantizable ``name`` (no weights downloaded)."""
    qm = pytest.importorskip("torchvision.models.quantization")
    torch.manual_seed(0)
    model = getattr(qm, name)(weights=None, quantize=False).eval()
    float_model = getattr(qm, name)(weights=None, quantize=False).eval()
    model.fuse_model(is_qat=False)
    fused = getattr(qm, name)(weights=None, quantize=False).eval()
    fused.fuse_model(is_qat=False)
    return float_model, fused, _static(model, (1, 3, size, size))


def test_quantized_resnet18_has_the_float_models_macs_and_a_quarter_of_its_size() -> None:
    float_model, fused, q = _quantized_torchvision("resnet18", 224)
    x = torch.randn(1, 3, 224, 224)
    float_report, report = rooflens.analyze(float_model, x), rooflens.analyze(q, x)
    assert report.unsupported_ops() == {}
    assert report.executed == "real"
    # same model, same MACs: torchvision's published 1.81 GFLOPS (conv + linear MACs) for both
    assert report.total().macs == float_report.total().macs
    assert round(report.total().macs / 1e9, 2) == 1.81
    # parameters: the float model's 11,689,512 (torchvision's published count) less the batch norms folded into
    # the convs: each BN's weight and bias (2C) become the conv's bias (C), C summed over the 20 BNs:
    # bn1 64 + layer1 4 x 64 + layer2 (4 + 1 downsample) x 128 + layer3 5 x 256 + layer4 5 x 512 = 4800
    assert float_report.params.total == 11_689_512
    assert report.params.total == 11_689_512 - 4800 == 11_684_712
    assert report.params.total == sum(p.numel() for p in fused.parameters())  # torch's own count of the folded model
    # size: weights 11,684,712 - biases (4800 conv + 1000 fc = 5800) = 11,678,912 int8 bytes + 5800 fp32 biases
    # x 4 = 23,200 + per-channel scale and zero point 16 bytes x 5800 output channels = 92,800 -> 11,794,912
    assert report.params.bytes == 11_678_912 + 23_200 + 92_800 == 11_794_912
    # about a quarter of the folded float model's 11,684,712 x 4 = 46,738,848 bytes: 0.2524
    assert 0.25 < report.params.bytes / (4 * 11_684_712) < 0.255
    assert report.precision is Precision.INT8
    assert "int8" in str(report)


def test_quantized_mobilenet_v2_has_the_float_models_macs() -> None:
    float_model, fused, q = _quantized_torchvision("mobilenet_v2", 64)
    x = torch.randn(1, 3, 64, 64)
    report = rooflens.analyze(q, x)
    assert report.unsupported_ops() == {}
    assert report.total().macs == rooflens.analyze(float_model, x).total().macs
    assert report.params.total == sum(p.numel() for p in fused.parameters())
    assert _ops(report)["quantized.add"] == 10  # the 10 inverted residuals with a skip connection


# ---- roofline, isolation -------------------------------------------------------------------------------


def test_the_roofline_of_an_int8_model_uses_the_int8_peak() -> None:
    q = _dynamic(nn.Sequential(nn.Linear(64, 32)))
    report = rooflens.analyze(q, torch.randn(4, 64), hardware="a4000")
    assert report.roofline is not None
    assert report.roofline.used_precision is Precision.INT8
    assert report.roofline.peak_flops_per_s == 153.4e12  # the A4000's int8 tensor peak (catalogue)


@pytest.mark.parametrize("kind", ["dynamic", "static"])
def test_analysis_leaves_a_quantized_model_as_it_was(kind: str) -> None:
    torch.manual_seed(0)
    if kind == "dynamic":
        model, x = _dynamic(nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 8))), torch.randn(4, 64)
    else:
        model, x = _static(QuantConv(), (2, 3, 16, 16)), torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        expected = model(x)
    before, packed, rng = state(model, x), _packed_state(model), torch.get_rng_state()
    report = rooflens.analyze(model, x)
    assert report.total().macs > 0
    assert_same_state(before, state(model, x))
    _assert_same_packed(packed, _packed_state(model))
    assert torch.equal(rng, torch.get_rng_state())
    assert fakes(model, x) == []
    with torch.no_grad():
        assert torch.equal(model(x), expected)  # still computes exactly as before
