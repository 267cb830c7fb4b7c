"""Elementwise, activation, softmax and reduction formulas.

Every expected number is derived by hand in the comment beside it; the input is x of shape (2, 4, 8):
64 float32 elements, 256 bytes, unless a test says otherwise. None of these operators has MACs.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

import rooflens
from rooflens.formulas import REGISTRY
from rooflens.formulas.registry import OpCall
from rooflens.types import Cost, TensorMeta

from _helpers import Fn


def x() -> torch.Tensor:
    return torch.randn(2, 4, 8)


def op_cost(report: rooflens.Report, op: str) -> Cost:
    """Summed cost of ``op``; checks that it was recorded, supported and not reached by decomposition."""
    ops = report.by_operator()
    assert op in ops, list(ops)
    assert ops[op].supported
    assert all(not r.via for r in report.records if r.op == op)
    return ops[op].cost


def clean(report: rooflens.Report) -> None:
    assert report.unsupported_ops() == {}
    assert report.total().macs == 0


# ---- binary, ternary and unary arithmetic -----------------------------------------------------------


def test_broadcast_add_counts_output_elements_and_reads_each_input_once() -> None:
    a, b = torch.randn(2, 3, 4), torch.randn(4)
    report = rooflens.analyze(Fn(lambda p, q: p + q), (a, b))
    clean(report)
    # output (2, 3, 4) = 24 elements, 1 add each
    # read: a 24 x 4 B = 96 + b 4 x 4 B = 16 -> 112; written: 24 x 4 B = 96
    assert op_cost(report, "aten.add") == Cost(macs=0, flops=24, bytes_read=112, bytes_written=96)


@pytest.mark.parametrize(
    ("fn", "op"),
    [
        (lambda t: t - t * 2, "aten.sub"),
        (lambda t: 2 - t, "aten.rsub"),
        (lambda t: t / 3, "aten.div"),
        (lambda t: t ** 2, "aten.pow"),
        (lambda t: torch.maximum(t, t), "aten.maximum"),
        (lambda t: torch.max(t, t), "aten.maximum"),  # torch.max(a, b) is the elementwise maximum
        (lambda t: torch.minimum(t, t), "aten.minimum"),
        (lambda t: t % 2, "aten.remainder"),
        (lambda t: torch.fmod(t, 2), "aten.fmod"),
        (lambda t: torch.atan2(t, t), "aten.atan2"),
        (lambda t: t > 0, "aten.gt"),
        (lambda t: t == 1, "aten.eq"),
        (lambda t: torch.logical_and(t, t), "aten.logical_and"),
        (lambda t: torch.where(t > 0, t, t), "aten.where"),
        (lambda t: t.clone().add_(1), "aten.add_"),
        (lambda t: t.clone().mul_(t), "aten.mul_"),
        (lambda t: t.exp(), "aten.exp"),
        (lambda t: t.log1p(), "aten.log1p"),
        (lambda t: t.rsqrt(), "aten.rsqrt"),
        (lambda t: torch.erf(t), "aten.erf"),
        (lambda t: t.reciprocal(), "aten.reciprocal"),
        (lambda t: t.floor(), "aten.floor"),
        (lambda t: t.square(), "aten.pow"),  # square is x ** 2 at dispatch
        (lambda t: t.abs(), "aten.abs"),
        (lambda t: t.clamp_min(0), "aten.clamp_min"),
        (lambda t: t.clamp(min=0), "aten.clamp"),
        (lambda t: t.clone().clamp_max_(1), "aten.clamp_max_"),
    ],
)
def test_one_flop_per_output_element(fn: Any, op: str) -> None:
    report = rooflens.analyze(Fn(fn), x())
    clean(report)
    # 64 output elements x 1 FLOP; every operator in these lambdas is elementwise and 1 FLOP per element
    assert op_cost(report, op).flops == 64 * report.by_operator()[op].calls


def test_comparison_writes_one_byte_per_bool() -> None:
    report = rooflens.analyze(Fn(lambda t: t > 0), x())
    # 64 compares; read 64 x 4 B = 256, written 64 bools x 1 B = 64
    assert op_cost(report, "aten.gt") == Cost(0, 64, 256, 64)


def test_inplace_reads_and_writes_self() -> None:
    report = rooflens.analyze(Fn(lambda t: t.relu_()), x())
    # relu_: 64 x 1 FLOP; reads self 256 B and writes it back 256 B
    assert op_cost(report, "aten.relu_") == Cost(0, 64, 256, 256)


def test_clamp_counts_one_flop_per_bound() -> None:
    report = rooflens.analyze(Fn(lambda t: t.clamp(-1, 1)), x())
    # min and max given: 2 compare-selects x 64 elements = 128
    assert op_cost(report, "aten.clamp").flops == 128
    report = rooflens.analyze(Fn(lambda t: t.clamp(max=1)), x())
    # max only: 1 x 64 = 64
    assert op_cost(report, "aten.clamp").flops == 64


@pytest.mark.parametrize(
    ("fn", "op", "flops"),
    [
        (lambda t: torch.addcmul(t, t, t), "aten.addcmul", 2 * 64),  # mul + add per element
        (lambda t: torch.addcdiv(t, t, t, value=0.5), "aten.addcdiv", 2 * 64),  # div + add (value folded)
        (lambda t: torch.lerp(t, t, 0.5), "aten.lerp", 3 * 64),  # sub, mul, add per element
    ],
)
def test_ternary(fn: Any, op: str, flops: int) -> None:
    report = rooflens.analyze(Fn(fn), x())
    clean(report)
    assert op_cost(report, op).flops == flops


# ---- activations ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("module", "op", "per_element"),
    [
        (nn.ReLU(), "aten.relu", 1),
        (nn.ReLU(inplace=True), "aten.relu_", 1),
        (nn.ReLU6(), "aten.hardtanh", 2),  # relu6 = hardtanh(0, 6): two compare-selects
        (nn.Hardtanh(), "aten.hardtanh", 2),
        (nn.LeakyReLU(), "aten.leaky_relu", 2),  # multiply + compare-select
        (nn.PReLU(), "aten._prelu_kernel", 2),
        (nn.Threshold(0.1, 0.0), "aten.threshold", 1),
        (nn.GELU(), "aten.gelu", 5),  # 0.5 x (1 + erf(x / sqrt2)): mul, erf, add, mul, mul
        (nn.GELU("tanh"), "aten.gelu", 9),
        (nn.SiLU(), "aten.silu", 5),  # x * sigmoid(x): sigmoid 4 + mul
        (nn.SiLU(inplace=True), "aten.silu_", 5),
        (nn.Sigmoid(), "aten.sigmoid", 4),  # neg, exp, add, div
        (nn.Tanh(), "aten.tanh", 1),
        (nn.Hardswish(), "aten.hardswish", 5),
        (nn.Hardsigmoid(), "aten.hardsigmoid", 4),
        (nn.ELU(), "aten.elu", 4),
        (nn.CELU(), "aten.celu", 4),
        (nn.SELU(), "aten.elu", 4),  # selu is elu with scales
        (nn.Softplus(), "aten.softplus", 3),
        (nn.Mish(), "aten.mish", 5),
        (nn.LogSigmoid(), "aten.log_sigmoid_forward", 4),
    ],
)
def test_activation_per_element(module: nn.Module, op: str, per_element: int) -> None:
    report = rooflens.analyze(module, x())
    clean(report)
    # one call on 64 elements
    assert [r.op for r in report.records] == [op]
    assert report.total().flops == per_element * 64


def test_gelu_bytes() -> None:
    report = rooflens.analyze(nn.GELU(), x())
    # 5 x 64 = 320 FLOPs; read 64 x 4 B = 256; written 256
    assert report.total() == Cost(0, 320, 256, 256)


def test_glu_counts_per_output_element() -> None:
    report = rooflens.analyze(nn.GLU(), x())
    # (2, 4, 8) split in halves along -1 -> output (2, 4, 4) = 32 elements x (sigmoid 4 + mul 1) = 160
    # read 256 B, written 32 x 4 B = 128
    assert op_cost(report, "aten.glu") == Cost(0, 160, 256, 128)


def test_dropout_eval_is_free_and_training_on_cpu_is_mask_scale_apply() -> None:
    report = rooflens.analyze(nn.Dropout(0.5).eval(), x())
    assert report.records == ()  # identity in evaluation: no operator at all
    report = rooflens.analyze(nn.Dropout(0.5).train(), x())
    clean(report)
    ops = report.by_operator()
    # CPU: mask = empty_like(x).bernoulli_(0.5) -> 64 FLOPs (1 per generated element), reads nothing,
    # writes 64 x 4 B = 256; mask.div_(0.5) -> 64; x * mask -> 64. Total 192.
    assert ops["aten.bernoulli_"].cost == Cost(0, 64, 0, 256)
    assert ops["aten.div_"].cost.flops == 64
    assert ops["aten.mul"].cost.flops == 64
    assert report.total().flops == 192


def test_native_dropout_counts_compare_and_scale() -> None:
    # the CUDA path of nn.Dropout: native_dropout(x, p, train)
    report = rooflens.analyze(Fn(lambda t: torch.ops.aten.native_dropout(t, 0.5, True)), x())
    # 2 x 64 = 128 FLOPs; read 256 B; written: output 256 B + bool mask 64 x 1 B = 320
    assert op_cost(report, "aten.native_dropout") == Cost(0, 128, 256, 320)
    report = rooflens.analyze(Fn(lambda t: torch.ops.aten.native_dropout(t, 0.5, False)), x())
    assert op_cost(report, "aten.native_dropout").flops == 0


# ---- softmax and reductions -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fn", "op", "flops"),
    [
        (lambda t: t.softmax(-1), "aten._softmax", 5 * 64),  # max, sub, exp, sum, div per element
        (lambda t: t.log_softmax(-1), "aten._log_softmax", 5 * 64),
        (lambda t: t.sum(), "aten.sum", 64),  # 1 per input element
        (lambda t: t.mean(-1), "aten.mean", 64 + 8),  # 64 adds + 8 divides (output (2, 4))
        (lambda t: t.amax(1), "aten.amax", 64),
        (lambda t: t.max(-1), "aten.max", 64),
        (lambda t: t.argmax(-1), "aten.argmax", 64),
        (lambda t: t.prod(-1), "aten.prod", 64),
        (lambda t: (t > 0).any(), "aten.any", 64),
        (lambda t: t.var(-1), "aten.var", 3 * 64 + 8),  # 3 per input + 1 divide per output (8)
        (lambda t: t.std(-1), "aten.std", 3 * 64 + 2 * 8),  # + divide and sqrt per output
        (lambda t: t.logsumexp(-1), "aten.logsumexp", 4 * 64 + 2 * 8),  # max, sub, exp, add; log, add max
        (lambda t: torch.linalg.vector_norm(t, dim=-1), "aten.linalg_vector_norm", 2 * 64 + 8),
        (lambda t: t.cumsum(-1), "aten.cumsum", 64),
        # rows of n = 8: 8 rows x 8 x ceil(log2 8) = 3 -> 192 compares
        (lambda t: t.sort(-1), "aten.sort", 8 * 8 * 3),
        # top 3 of each row of 8: 8 rows x 8 x ceil(log2 3) = 2 -> 128
        (lambda t: t.topk(3, -1), "aten.topk", 8 * 8 * 2),
    ],
)
def test_softmax_and_reductions(fn: Any, op: str, flops: int) -> None:
    report = rooflens.analyze(Fn(fn), x())
    clean(report)
    assert op_cost(report, op).flops == flops


def test_mean_bytes_read_input_write_output() -> None:
    report = rooflens.analyze(Fn(lambda t: t.mean(-1)), x())
    # read 64 x 4 B = 256; written (2, 4) = 8 x 4 B = 32
    assert op_cost(report, "aten.mean") == Cost(0, 72, 256, 32)


# ---- registry ---------------------------------------------------------------------------------------


def test_in_place_and_scalar_overloads_share_the_rule() -> None:
    for op in ("aten.add", "aten.add_", "aten.rsub", "aten.mul_", "aten.relu_", "aten.hardswish_"):
        entry = REGISTRY.get(op)
        assert entry is not None and entry.family == "pointwise", op
    # the operators that evaluate a transcendental function are a family of their own, in-place forms too
    for op in ("aten.exp", "aten.tanh_", "aten.sigmoid", "aten.sigmoid_", "aten.silu_", "aten.gelu_", "aten.glu"):
        entry = REGISTRY.get(op)
        assert entry is not None and entry.family == "transcendental", op


def test_native_dropout_formula_without_train_flag() -> None:
    out = TensorMeta((10,), "float32", 4)
    call = OpCall("aten.native_dropout", {"input": out, "p": 0.1, "train": None}, (out,), (out, out))
    # train=None means training: 2 x 10
    assert REGISTRY.get("aten.native_dropout").formula(call).flops == 20
