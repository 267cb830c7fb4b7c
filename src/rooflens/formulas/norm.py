"""Normalisation: batch, layer, group, instance and RMS norm, in training and in evaluation.

FLOPs per element of the input, no MACs. The derivation, for an element ``x`` of a group (a channel
for batch norm, a row for layer norm, a group for group norm) with statistics computed from the data:

* mean: accumulate ``x`` -> 1
* variance: ``x - mean``, square, accumulate -> 3
* normalise: ``(x - mean) * rstd`` -> 2 (the per-group ``rstd = 1/sqrt(var + eps)`` is not counted)
* affine: ``* weight`` -> 1, ``+ bias`` -> 1

so 8 per element with weight and bias, 6 without (7 with only one of them).

Batch norm in evaluation (running statistics) folds mean, rstd, weight and bias into one per-channel
scale and shift: ``x * a + b`` -> 2 per element, with or without affine.

RMS norm: ``x * rsqrt(mean(x^2) + eps) * weight`` -> square 1, accumulate 1, normalise 1, weight 1:
4 per element with a weight, 3 without.

Which operators torch reaches (the dispatch-mode view): on the CPU ``nn.BatchNorm*`` and
``nn.InstanceNorm*`` (batch norm over a ``(1, N*C, ...)`` view) reach ``native_batch_norm`` with
``training`` telling whether the statistics are computed; ``nn.LayerNorm`` reaches ``native_layer_norm``,
``nn.GroupNorm`` ``native_group_norm``; ``nn.RMSNorm`` is split into pow/mean/add/rsqrt/mul on the CPU
and reaches ``_fused_rms_norm`` on CUDA. ``cudnn_batch_norm``/``miopen_batch_norm`` are the GPU kernels;
``_native_batch_norm_legit*`` and ``_batch_norm_with_update``/``_batch_norm_no_update`` are what
export and the compiler's pre-dispatch tracing produce. The composites (``batch_norm``,
``instance_norm``, ``layer_norm``, ``group_norm``, ``rms_norm``) are listed so that the table answers
for them.

Bytes: the default rule -- input, weight, bias and running statistics read; output (and the saved
mean/rstd when the kernel returns them) written. The in-place update of the running statistics in
training (2 x C elements) is not counted.
"""

from __future__ import annotations

from rooflens.formulas.registry import OpCall, formula
from rooflens.types import Cost


def _affine(call: OpCall) -> int:
    """FLOPs per element for the affine step: 1 for a weight, 1 for a bias."""
    return (call.tensor("weight") is not None) + (call.tensor("bias") is not None)


def _input(call: OpCall) -> int:
    x = call.tensor("input") or call.tensor("self") or call.inputs[0]
    return x.numel


def _with_stats(call: OpCall) -> Cost:
    # mean 1 + variance 3 + normalise 2 + affine (0-2)
    return Cost(flops=(6 + _affine(call)) * _input(call))


def _folded(call: OpCall) -> Cost:
    # running statistics and affine folded into one per-channel scale and shift
    return Cost(flops=2 * _input(call))


@formula(
    "aten.native_batch_norm",
    "aten._native_batch_norm_legit",
    "aten._native_batch_norm_legit_functional",
    "aten.cudnn_batch_norm",
    "aten.miopen_batch_norm",
    "aten.batch_norm",
)
def batch_norm(call: OpCall) -> Cost:
    """training (batch statistics): 8 per element with weight and bias, 6 without; eval: 2 per element"""
    # Statistics are computed when training, or when there are no running statistics to use
    # (``_native_batch_norm_legit.no_stats`` has no running statistics at all).
    stats = bool(call.args.get("training")) or call.tensor("running_mean") is None
    return _with_stats(call) if stats else _folded(call)


@formula("aten._native_batch_norm_legit_no_training")
def batch_norm_eval(call: OpCall) -> Cost:
    """2 per element (running statistics and affine folded into a scale and a shift)"""
    return _folded(call)


@formula("aten._batch_norm_with_update", "aten._batch_norm_with_update_functional")
def batch_norm_with_update(call: OpCall) -> Cost:
    """8 per element with weight and bias, 6 without (batch statistics; running statistics updated)"""
    return _with_stats(call)


@formula("aten._batch_norm_no_update")
def batch_norm_no_update(call: OpCall) -> Cost:
    """2 per element with running statistics; 8 / 6 (with / without affine) without them"""
    return _folded(call) if call.tensor("running_mean") is not None else _with_stats(call)


@formula("aten.instance_norm")
def instance_norm(call: OpCall) -> Cost:
    """use_input_stats: 8 per element with weight and bias, 6 without; else 2 per element"""
    return _with_stats(call) if call.args.get("use_input_stats", True) else _folded(call)


@formula(
    "aten.native_layer_norm",
    "aten.layer_norm",
    "aten.native_group_norm",
    "aten.group_norm",
)
def layer_group_norm(call: OpCall) -> Cost:
    """8 per element with weight and bias, 6 without (mean 1, variance 3, normalise 2, affine 2)"""
    return _with_stats(call)


@formula("aten._fused_rms_norm", "aten.rms_norm")
def rms_norm(call: OpCall) -> Cost:
    """4 per element with a weight, 3 without (square, accumulate, normalise, weight)"""
    weight = call.tensor("weight") is not None
    return Cost(flops=(3 + weight) * _input(call))


@formula("aten._weight_norm_interface")
def weight_norm(call: OpCall) -> Cost:
    """3 per element of v (norm: square + accumulate; scale by g / norm: 1)"""
    # w = v * (g / ||v||), the norm taken over every dim but ``dim``: 2 per element of v for the norm,
    # 1 per element for the scaling (the per-slice sqrt and g / norm are not counted).
    v = call.tensor("v") or call.inputs[0]
    return Cost(flops=3 * v.numel)
