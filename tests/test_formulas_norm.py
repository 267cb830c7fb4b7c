"""Normalisation formulas: batch, layer, group, instance and RMS norm, training and evaluation.

Every expected number is derived by hand in the comment beside it. Image inputs are (2, 4, 8, 8):
512 float32 elements, 2048 bytes; sequence inputs (2, 4, 8): 64 elements, 256 bytes. Rules: statistics
computed from the data cost 8 per element with weight and bias (mean 1, variance 3, normalise 2,
affine 2), 6 without; batch norm with running statistics 2 per element; RMS norm 4 with a weight, 3
without.
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

IMG = (2, 4, 8, 8)  # 512 elements
SEQ = (2, 4, 8)  # 64 elements


def op_cost(report: rooflens.Report, op: str) -> Cost:
    ops = report.by_operator()
    assert op in ops, list(ops)
    assert ops[op].supported
    return ops[op].cost


def clean(report: rooflens.Report) -> None:
    assert report.unsupported_ops() == {}
    assert report.total().macs == 0
    assert all(not r.via for r in report.records)


# ---- batch norm -------------------------------------------------------------------------------------


def test_batch_norm_eval_folds_to_scale_and_shift() -> None:
    report = rooflens.analyze(nn.BatchNorm2d(4).eval(), input_size=IMG)
    clean(report)
    # 2 FLOPs x 512 = 1024
    # read: input 2048 + weight, bias, running_mean, running_var 4 x (4 x 4 B) = 64 -> 2112
    # written: output 2048 (the CPU kernel returns empty save_mean/save_invstd in evaluation)
    rec = [r for r in report.records if r.op == "aten.native_batch_norm"]
    assert len(rec) == 1 and [t.shape for t in rec[0].outputs] == [IMG, (0,), (0,)]
    assert op_cost(report, "aten.native_batch_norm") == Cost(0, 1024, 2112, 2048)


def test_batch_norm_training_computes_statistics() -> None:
    report = rooflens.analyze(nn.BatchNorm2d(4).train(), input_size=IMG)
    clean(report)
    # 8 x 512 = 4096; read 2112 as in eval; written: output 2048 + save_mean and save_invstd
    # 2 x (4 x 4 B) = 32 -> 2080
    assert op_cost(report, "aten.native_batch_norm") == Cost(0, 4096, 2112, 2080)
    # num_batches_tracked += 1: one add on a 0-dim int64 (8 B read, 8 B written)
    assert op_cost(report, "aten.add_") == Cost(0, 1, 8, 8)
    assert report.total().flops == 4097


def test_batch_norm_without_affine() -> None:
    report = rooflens.analyze(nn.BatchNorm2d(4, affine=False).train(), input_size=IMG)
    # 6 x 512 = 3072
    assert op_cost(report, "aten.native_batch_norm").flops == 3072
    report = rooflens.analyze(nn.BatchNorm2d(4, affine=False).eval(), input_size=IMG)
    # running statistics folded: 2 x 512 = 1024, with or without affine
    assert op_cost(report, "aten.native_batch_norm").flops == 1024


def test_batch_norm_without_running_stats_uses_batch_statistics_in_eval() -> None:
    report = rooflens.analyze(nn.BatchNorm2d(4, track_running_stats=False).eval(), input_size=IMG)
    # no running statistics: computed from the batch even in eval -> 8 x 512 = 4096
    assert op_cost(report, "aten.native_batch_norm").flops == 4096


@pytest.mark.parametrize(("module", "shape", "flops"), [
    (nn.BatchNorm1d(4), (2, 4, 8), 8 * 64),  # training: 8 x 64 elements
    (nn.BatchNorm3d(4), (2, 4, 4, 4, 4), 8 * 512),  # training: 8 x 512
])
def test_batch_norm_1d_3d(module: nn.Module, shape: tuple[int, ...], flops: int) -> None:
    report = rooflens.analyze(module.train(), input_size=shape)
    assert op_cost(report, "aten.native_batch_norm").flops == flops


BN_ARGS = (torch.randn(*IMG), torch.ones(4), torch.zeros(4), torch.zeros(4), torch.ones(4))


@pytest.mark.parametrize(("fn", "op", "flops"), [
    # what export / the compiler's pre-dispatch tracing produce, and the GPU kernels, called directly
    (lambda a, w, b, m, v: torch.ops.aten._native_batch_norm_legit_no_training(a, w, b, m, v, 0.1, 1e-5),
     "aten._native_batch_norm_legit_no_training", 2 * 512),
    (lambda a, w, b, m, v: torch.ops.aten._native_batch_norm_legit(a, w, b, m, v, True, 0.1, 1e-5),
     "aten._native_batch_norm_legit", 8 * 512),
    (lambda a, w, b, m, v: torch.ops.aten._native_batch_norm_legit(a, w, b, m, v, False, 0.1, 1e-5),
     "aten._native_batch_norm_legit", 2 * 512),
    (lambda a, w, b, m, v: torch.ops.aten._native_batch_norm_legit(a, None, None, True, 0.1, 1e-5),
     "aten._native_batch_norm_legit", 6 * 512),  # .no_stats overload, no affine
    (lambda a, w, b, m, v: torch.ops.aten._native_batch_norm_legit_functional(a, w, b, m, v, True, 0.1, 1e-5),
     "aten._native_batch_norm_legit_functional", 8 * 512),
    (lambda a, w, b, m, v: torch.ops.aten._batch_norm_with_update(a, w, b, m, v, 0.1, 1e-5),
     "aten._batch_norm_with_update", 8 * 512),
    (lambda a, w, b, m, v: torch.ops.aten._batch_norm_no_update(a, w, b, m, v, 0.1, 1e-5),
     "aten._batch_norm_no_update", 2 * 512),
    (lambda a, w, b, m, v: torch.ops.aten.cudnn_batch_norm(a, w, b, m, v, True, 0.1, 1e-5),
     "aten.cudnn_batch_norm", 8 * 512),
    (lambda a, w, b, m, v: torch.ops.aten.cudnn_batch_norm(a, w, b, m, v, False, 0.1, 1e-5),
     "aten.cudnn_batch_norm", 2 * 512),
    (lambda a, w, b, m, v: torch.ops.aten.native_batch_norm(a, w, None, m, v, True, 0.1, 1e-5),
     "aten.native_batch_norm", 7 * 512),  # weight without bias: mean 1, var 3, normalise 2, scale 1
])
def test_batch_norm_variants(fn: Any, op: str, flops: int) -> None:
    report = rooflens.analyze(Fn(fn), BN_ARGS)
    clean(report)
    assert op_cost(report, op).flops == flops


def test_batch_norm_with_and_no_update_by_schema() -> None:
    # torch's fake kernels reject these argument combinations: checked on the call directly
    x, c = TensorMeta(IMG, "float32", 4), TensorMeta((4,), "float32", 4)
    args = {"input": x, "weight": None, "bias": None, "running_mean": c, "running_var": c, "momentum": 0.1,
            "eps": 1e-5}
    call = OpCall("aten._batch_norm_with_update", args, (x, c), (x, c, c, c))
    assert REGISTRY.get("aten._batch_norm_with_update").formula(call).flops == 6 * 512  # no affine
    args = {**args, "weight": c, "bias": c, "running_mean": None, "running_var": None}
    call = OpCall("aten._batch_norm_no_update", args, (x, c), (x, c, c, c))
    assert REGISTRY.get("aten._batch_norm_no_update").formula(call).flops == 8 * 512  # no running stats


def test_miopen_batch_norm_by_schema() -> None:
    # no CPU kernel: the formula is checked on a call as the engine would build it
    x, c = TensorMeta(IMG, "float32", 4), TensorMeta((4,), "float32", 4)
    args = {"input": x, "weight": c, "bias": c, "running_mean": c, "running_var": c, "training": False,
            "exponential_average_factor": 0.1, "epsilon": 1e-5}
    call = OpCall("aten.miopen_batch_norm", args, (x, c), (x, c, c))
    assert REGISTRY.get("aten.miopen_batch_norm").formula(call).flops == 2 * 512
    call = OpCall("aten.miopen_batch_norm", {**args, "training": True}, (x, c), (x, c, c))
    assert REGISTRY.get("aten.miopen_batch_norm").formula(call).flops == 8 * 512


# ---- instance norm: batch norm on a (1, N*C, ...) view ----------------------------------------------


def test_instance_norm_reaches_batch_norm() -> None:
    report = rooflens.analyze(nn.InstanceNorm2d(4), input_size=IMG)
    clean(report)
    rec = [r for r in report.records if r.op == "aten.native_batch_norm"]
    # (2, 4, 8, 8) viewed as (1, 8, 8, 8): statistics per instance and channel, no affine -> 6 x 512
    assert rec[0].inputs[0].shape == (1, 8, 8, 8)
    assert report.total().flops == 3072


def test_instance_norm_affine_with_running_stats_in_eval() -> None:
    report = rooflens.analyze(nn.InstanceNorm2d(4, affine=True, track_running_stats=True).eval(), input_size=IMG)
    clean(report)
    # running statistics used: 2 x 512 = 1024 FLOPs; weight, bias and the two running statistics are
    # repeated per instance (4 repeats of a 4-element vector to 8: 0 FLOPs, 16 B read, 32 B written each)
    assert op_cost(report, "aten.native_batch_norm").flops == 1024
    assert op_cost(report, "aten.repeat") == Cost(0, 0, 4 * 16, 4 * 32)


# ---- layer norm, group norm -------------------------------------------------------------------------


def test_layer_norm() -> None:
    report = rooflens.analyze(nn.LayerNorm(8), input_size=SEQ)
    clean(report)
    # 8 x 64 = 512 FLOPs
    # read: input 256 + weight 32 + bias 32 = 320
    # written: output 256 + mean (2, 4, 1) 32 + rstd (2, 4, 1) 32 = 320
    assert op_cost(report, "aten.native_layer_norm") == Cost(0, 512, 320, 320)


@pytest.mark.parametrize(("module", "flops"), [
    (nn.LayerNorm(8, elementwise_affine=False), 6 * 64),
    (nn.LayerNorm(8, bias=False), 7 * 64),  # weight only
])
def test_layer_norm_without_affine(module: nn.Module, flops: int) -> None:
    assert op_cost(rooflens.analyze(module, input_size=SEQ), "aten.native_layer_norm").flops == flops


def test_group_norm() -> None:
    report = rooflens.analyze(nn.GroupNorm(2, 4), input_size=IMG)
    clean(report)
    # 8 x 512 = 4096; read 2048 + weight 16 + bias 16 = 2080; written 2048 + mean, rstd (2, 2) 2 x 16 = 2080
    assert op_cost(report, "aten.native_group_norm") == Cost(0, 4096, 2080, 2080)
    report = rooflens.analyze(nn.GroupNorm(2, 4, affine=False), input_size=IMG)
    assert op_cost(report, "aten.native_group_norm").flops == 6 * 512


def test_norms_same_in_training() -> None:
    for module, op, flops in [(nn.LayerNorm(8), "aten.native_layer_norm", 8 * 64),
                              (nn.GroupNorm(2, 4), "aten.native_group_norm", 8 * 512)]:
        shape = SEQ if isinstance(module, nn.LayerNorm) else IMG
        assert op_cost(rooflens.analyze(module.train(), input_size=shape), op).flops == flops


# ---- RMS norm ---------------------------------------------------------------------------------------


def test_rms_norm_on_cpu_is_counted_through_its_parts() -> None:
    report = rooflens.analyze(nn.RMSNorm(8), input_size=SEQ)
    clean(report)
    # x^2: 64; mean over the last dim: 64 + 8 divides = 72; + eps: 8; rsqrt: 8; x * rstd: 64; * weight: 64
    # -> 280 (the fused kernel's rule would give 4 x 64 = 256)
    assert report.total().flops == 64 + 72 + 8 + 8 + 64 + 64


def _rms_call(weight: bool) -> OpCall:
    x = TensorMeta(SEQ, "float32", 4)
    w = TensorMeta((8,), "float32", 4) if weight else None
    args = {"input": x, "normalized_shape": [8], "weight": w, "eps": 1e-6}
    return OpCall("aten._fused_rms_norm", args, tuple(t for t in (x, w) if t is not None),
                  (x, TensorMeta((2, 4, 1), "float32", 4)))


def test_fused_rms_norm_cuda_kernel() -> None:
    # nn.RMSNorm on CUDA reaches _fused_rms_norm (no CPU kernel: checked on the call directly)
    entry = REGISTRY.get("aten._fused_rms_norm")
    assert entry.formula(_rms_call(True)).flops == 4 * 64  # square, accumulate, normalise, weight
    assert entry.formula(_rms_call(False)).flops == 3 * 64


def test_weight_norm_interface() -> None:
    v, g = TensorMeta((16, 8), "float32", 4), TensorMeta((16, 1), "float32", 4)
    call = OpCall("aten._weight_norm_interface", {"v": v, "g": g, "dim": 0}, (v, g), (v, g))
    # 3 per element of v: 3 x 128 = 384
    assert REGISTRY.get("aten._weight_norm_interface").formula(call).flops == 384
