"""Convolutions, 1-d to 3-d, grouped, depthwise, dilated, strided and transposed. A complex
convolution reaches dispatch as three real ones (torch applies Gauss's trick first), counted as they run;
one that reaches the convolution operators as complex counts 4 real MACs per complex MAC, as matrix
products do.

Derivation (weight layout ``(Cout, Cin/groups, *K)`` for a convolution, ``(Cin, Cout/groups, *K)`` for a
transposed one):

* convolution: every output element is a dot product over ``Cin/groups x prod(K)`` taps, so
  ``MACs = N x Cout x prod(out spatial) x (Cin/groups) x prod(K) = out.numel x weight[1] x prod(K)``.
  Stride, padding and dilation only change the output's spatial size, which we read off the output.
* transposed convolution: every *input* element is scattered into ``Cout/groups x prod(K)`` outputs,
  so ``MACs = N x Cin x prod(in spatial) x (Cout/groups) x prod(K) = in.numel x weight[1] x prod(K)``.
  (Counting it as a convolution over the zero-stuffed output over-counts by stride^d, the
  peers' mistake.)
* bias: one add per output element, no MAC.
* complex tensors: 4 real MACs per complex MAC (see :func:`~rooflens.formulas.registry.dot_cost`). torch's
  ``conv1d/2d/3d`` never send complex tensors to ``aten.convolution``: they split a complex convolution
  into three real ones (Gauss's trick, ``(a + bi)(c + di)`` from ``ac``, ``bd`` and ``(a + b)(c + d)``) and
  a few adds before dispatch, and those are counted as they run (3 real MACs per complex MAC).
"""

from __future__ import annotations

from collections.abc import Sequence
from math import prod

from rooflens.formulas.registry import OpCall, dot_cost, formula, is_complex
from rooflens.types import Convention, Cost


def conv_cost(
    in_shape: Sequence[int],
    weight_shape: Sequence[int],
    out_shape: Sequence[int],
    *,
    has_bias: bool,
    transposed: bool = False,
    convention: Convention = Convention.FMA,
    complex_dtype: bool = False,
) -> Cost:
    """Compute cost of one convolution from its shapes (shared by the torch and ONNX front-ends)."""
    taps = prod(weight_shape[1:])  # (Cin or Cout)/groups x prod(K)
    macs = prod(in_shape if transposed else out_shape) * taps
    outputs = prod(out_shape)
    return dot_cost(macs, outputs, outputs if has_bias else 0, convention, complex_dtype=complex_dtype)


@formula(
    "aten.convolution",
    "aten._convolution",
    "aten.convolution_overrideable",
    "aten.cudnn_convolution",
    "aten.mkldnn_convolution",
    "aten.miopen_convolution",
    "aten._slow_conv2d_forward",
    "aten.slow_conv3d_forward",
    "aten.slow_conv_dilated2d",
    "aten.slow_conv_dilated3d",
    "aten.thnn_conv2d",
)
def convolution(call: OpCall) -> Cost:
    """MACs = out.numel x Cin/groups x prod(K); FLOPs = 2 x MACs + 1 per output for a bias"""
    x, w = call.tensor("input") or call.tensor("self"), call.tensor("weight")
    assert x is not None and w is not None, call.op
    bias = call.args.get("bias")
    return conv_cost(
        x.shape,
        w.shape,
        call.out.shape,
        has_bias=bias is not None,
        transposed=bool(call.args.get("transposed", False)),
        convention=call.convention,
        complex_dtype=is_complex(call.out),
    )


@formula(
    "aten.cudnn_convolution_transpose",
    "aten.miopen_convolution_transpose",
    "aten.slow_conv_transpose2d",
    "aten.slow_conv_transpose3d",
)
def convolution_transpose(call: OpCall) -> Cost:
    """MACs = in.numel x Cout/groups x prod(K) (each input scattered over the kernel)"""
    x, w = call.tensor("self") or call.tensor("input"), call.tensor("weight")
    assert x is not None and w is not None, call.op
    return conv_cost(
        x.shape, w.shape, call.out.shape, has_bias=call.args.get("bias") is not None, transposed=True,
        convention=call.convention, complex_dtype=is_complex(call.out),
    )
