"""Pooling (max, average, adaptive, fractional, 1-d to 3-d) and resampling (upsample, grid sample).
Pooling counts as a reduction over each window: K per output element for a window of K (max), and the
window's adds + 1 divide per output element for every average pool, windowed or adaptive, at every
output size (a 1x1 adaptive average reaches ``aten.mean``, counted the same way).

FLOPs, no MACs.

* Pooling is a reduction over a window, counted as the reduction family counts one: a window of ``K``
  elements is ``K`` operations (``K - 1`` compares or adds, the first one counted as the initialisation,
  as ``sum``/``amax`` count ``n`` per ``n`` elements), and an average adds 1 divide per output element
  (as ``mean`` does). So, per output element with ``K = prod(kernel_size)``:

  - max pool: ``K``;
  - average pool: ``K + 1`` (the window's adds + 1 divide).

  Windows that hang over the padding are counted as full windows (the kernels iterate the clipped
  window, so this slightly over-counts at the borders).
* Adaptive pools have windows of varying size: along a dimension of input size ``In`` and output size
  ``Out``, bin ``i`` spans ``floor(i*In/Out) .. ceil((i+1)*In/Out)``. The window sizes summed over the
  outputs are ``N*C x prod over the pooled dims of (sum over bins of the bin's size)``; adaptive max
  pool counts that, adaptive average pool that + 1 divide per output element. One rule for every
  output size: torch computes a 1x1 adaptive average (global average pooling) as ``aten.mean`` over the
  pooled dims, which the reduction family counts the same way (1 per input element + 1 divide per
  output element), and any other size as ``_adaptive_avg_pool2d``/``3d``.
* Interpolation, per output element (the per-row/column source indices and weights are computed once
  and not counted): nearest 0 (a gather: bytes only); linear ``(1-w)*a + w*b`` 2 multiplies + 1 add = 3;
  bilinear 4 taps = 4 multiplies + 3 adds = 7; trilinear 8 taps = 15; bicubic 16 taps = 16 + 15 = 31.
  The anti-aliased variants count the same per output element (their wider support when downsampling
  is not counted). ``grid_sampler`` counts the same by interpolation mode (the per-location grid
  unnormalisation is not counted).

Bytes: the default rule (input read once, output and any indices written).
"""

from __future__ import annotations

from collections.abc import Sequence
from math import prod

from rooflens.formulas.registry import Formula, OpCall, formula
from rooflens.types import Cost, TensorMeta


def _input(call: OpCall) -> TensorMeta:
    x = call.tensor("self") or call.tensor("input") or call.inputs[0]
    return x


def _kernel(call: OpCall, dims: int) -> int:
    k = call.args.get("kernel_size")
    if isinstance(k, int):
        k = [k]
    ks = [int(v) for v in (k or [1])]
    if len(ks) == 1:
        ks = ks * dims
    return prod(ks)


AVERAGE_DIVIDE = 1  # FLOPs per output element of an average pool besides its window's adds


def windowed(dims: int, *, average: bool) -> Formula:
    """K (max) or K + 1 (average) per output element, K the window of a ``dims``-d pool."""
    extra = AVERAGE_DIVIDE if average else 0
    window = " x ".join(("kd", "kh", "kw")[3 - dims:]) if dims > 1 else "kernel size"

    def fn(call: OpCall) -> Cost:
        return Cost(flops=(_kernel(call, dims) + extra) * call.out.numel)

    fn.__doc__ = (f"K + 1 per output element, K = {window} (the window's adds + 1 divide)" if average
                  else f"K per output element, K = {window} (K - 1 compares, counted as K)")
    fn.__qualname__ = fn.__name__ = f"{'avg' if average else 'max'}_pool{dims}d"
    return fn


formula("aten.max_pool1d", "aten.max_pool1d_with_indices")(windowed(1, average=False))
formula("aten.avg_pool1d")(windowed(1, average=True))
formula("aten.max_pool2d", "aten.max_pool2d_with_indices", "aten.fractional_max_pool2d")(windowed(2, average=False))
formula("aten.avg_pool2d")(windowed(2, average=True))
formula("aten.max_pool3d", "aten.max_pool3d_with_indices", "aten.fractional_max_pool3d")(windowed(3, average=False))
formula("aten.avg_pool3d")(windowed(3, average=True))


def bin_sum(in_size: int, out_size: int) -> int:
    """Sum of the adaptive-pool bin sizes along one dimension (bin i: floor(i*In/Out) .. ceil((i+1)*In/Out))."""
    total = 0
    for i in range(out_size):
        start = (i * in_size) // out_size
        end = -((-(i + 1) * in_size) // out_size)
        total += end - start
    return total


def adaptive_pool_flops(in_shape: Sequence[int], out_shape: Sequence[int], dims: int) -> int:
    """Exact adaptive-pool FLOPs: leading elements x prod over pooled dims of the bin-size sums."""
    lead = prod(out_shape[: len(out_shape) - dims])
    return lead * prod(bin_sum(int(i), int(o)) for i, o in zip(in_shape[-dims:], out_shape[-dims:], strict=True))


def _adaptive(dims: int, *, average: bool) -> Formula:
    """The bin sizes summed over the outputs (max), + 1 divide per output element (average)."""
    extra = AVERAGE_DIVIDE if average else 0
    over = ", ".join(("D", "H", "W")[3 - dims:])

    def fn(call: OpCall) -> Cost:
        return Cost(flops=adaptive_pool_flops(_input(call).shape, call.out.shape, dims) + extra * call.out.numel)

    sums = f"prod over {over} of sum_i |bin_i|" if dims > 1 else "sum_i |bin_i|"
    bins = f"N*C x {sums} (bin i = floor(i*In/Out) .. ceil((i+1)*In/Out))"
    fn.__doc__ = f"{bins} + 1 divide per output element" if average else bins
    fn.__qualname__ = fn.__name__ = f"adaptive_{'avg' if average else 'max'}_pool{dims}d"
    return fn


formula("aten.adaptive_max_pool1d")(_adaptive(1, average=False))
formula("aten.adaptive_avg_pool1d")(_adaptive(1, average=True))
formula("aten.adaptive_max_pool2d")(_adaptive(2, average=False))
formula("aten.adaptive_avg_pool2d", "aten._adaptive_avg_pool2d")(_adaptive(2, average=True))
formula("aten.adaptive_max_pool3d")(_adaptive(3, average=False))
formula("aten.adaptive_avg_pool3d", "aten._adaptive_avg_pool3d")(_adaptive(3, average=True))


@formula("aten.max_unpool2d", "aten.max_unpool3d")
def max_unpool(call: OpCall) -> Cost:
    """0 (a scatter of the pooled values: bytes only)"""
    return Cost()


# ---- resampling -------------------------------------------------------------------------------------


def _interpolation(flops: int, doc: str) -> Formula:
    def fn(call: OpCall) -> Cost:
        return Cost(flops=flops * call.out.numel)

    fn.__doc__ = doc
    fn.__qualname__ = fn.__name__ = f"interpolation_{flops}"
    return fn


formula(
    "aten.upsample_nearest1d", "aten.upsample_nearest2d", "aten.upsample_nearest3d",
    "aten._upsample_nearest_exact1d", "aten._upsample_nearest_exact2d", "aten._upsample_nearest_exact3d",
)(_interpolation(0, "0 (nearest: a gather, bytes only)"))
formula("aten.upsample_linear1d")(_interpolation(3, "3 per output element (2 taps: 2 mul + 1 add)"))
formula("aten.upsample_bilinear2d", "aten._upsample_bilinear2d_aa")(
    _interpolation(7, "7 per output element (4 taps: 4 mul + 3 add)")
)
formula("aten.upsample_trilinear3d")(_interpolation(15, "15 per output element (8 taps: 8 mul + 7 add)"))
formula("aten.upsample_bicubic2d", "aten._upsample_bicubic2d_aa")(
    _interpolation(31, "31 per output element (16 taps: 16 mul + 15 add)")
)

# interpolation_mode: 0 bilinear (trilinear in 3-d), 1 nearest, 2 bicubic (2-d only).
_GRID_2D = {0: 7, 1: 0, 2: 31}
_GRID_3D = {0: 15, 1: 0}


@formula("aten.grid_sampler_2d", "aten._grid_sampler_2d_cpu_fallback", "aten.grid_sampler", "aten.cudnn_grid_sampler")
def grid_sampler_2d(call: OpCall) -> Cost:
    """per output element: bilinear 7, nearest 0, bicubic 31 (as upsampling)"""
    # cudnn_grid_sampler has no mode argument: it is bilinear. grid_sampler (the composite) is 2-d
    # for a 4-d input and 3-d for a 5-d one.
    mode = int(call.args.get("interpolation_mode", 0) or 0)
    table = _GRID_3D if len(_input(call).shape) == 5 else _GRID_2D
    return Cost(flops=table.get(mode, 0) * call.out.numel)


@formula("aten.grid_sampler_3d")
def grid_sampler_3d(call: OpCall) -> Cost:
    """per output element: trilinear 15, nearest 0"""
    mode = int(call.args.get("interpolation_mode", 0) or 0)
    return Cost(flops=_GRID_3D.get(mode, 0) * call.out.numel)
