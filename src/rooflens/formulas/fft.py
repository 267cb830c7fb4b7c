"""Fast Fourier transforms: the complex, real-to-complex and complex-to-real kernels that every
``torch.fft`` function, ``torch.stft`` and ``torch.istft`` reach. Counted with the FFTW/benchFFT convention
(https://www.fftw.org/speed/method.html): 5 N log2 N real FLOPs per complex transform of length N,
2.5 N log2 N per real-input or real-output one, the transforms along each transformed dimension
summed; normalisation 1 multiply per real number of the output; no MACs.

Convention: the FFTW/benchFFT "mflops" count (M. Frigo and S. G. Johnson, benchFFT,
https://www.fftw.org/speed/method.html), the standard published count for FFTs of any algorithm:

* a complex transform of length ``N``: ``5 N log2 N`` real FLOPs (the radix-2 Cooley-Tukey count);
* a transform of real input (r2c) or to real output (c2r) of length ``N``: half of that, ``2.5 N log2 N``.

For lengths that are not powers of two (mixed radix, Bluestein) the same formula is used: it is a scale,
not what a given library executes (benchFFT uses it so for every size). Only ``N = 1`` costs nothing.

A multi-dimensional transform runs one 1-d transform along each transformed dimension in turn, so its
count is the sum over the dimensions of (transforms along it) x (the cost of one): a tensor of ``numel``
elements holds ``numel / N_d`` transforms of length ``N_d`` along dimension ``d``, so a complex transform
costs ``5 numel log2 N_d`` per dimension (``5 numel log2(prod N_d)`` in total, FFTW's count for the whole
size). Real transforms (torch's ``dim`` list ends with the real dimension):

* ``_fft_r2c``: the real transforms along the last dimension (``2.5 numel_in log2 N``), then complex
  transforms along the other dimensions of the half spectrum (``N // 2 + 1`` along the last one) that
  they produced. A two-sided result (``onesided=False``, ``torch.fft.fft`` of a real tensor) is the same
  half spectrum completed by conjugate symmetry (a copy, no FLOPs).
* ``_fft_c2r``: complex transforms along the leading dimensions of the half spectrum it reads, then the
  real-output transforms along the last dimension (``2.5 numel_out log2 N``, ``N = last_dim_size``).

Normalisation (``normalization`` 1: ``1/sqrt(n)``, ``norm="ortho"``; 2: ``1/n``, ``norm="forward"`` on a
forward transform and the default ``norm="backward"`` on an inverse one): 1 real multiply per real number
of the output, i.e. 2 per complex output element (c2c, r2c) and 1 per real output element (c2r).

No MACs: an FFT's butterflies are not the dot products of a convolution or a matrix product, and
rooflens's MACs are the figure that compares with the published (conv + matmul) GMACs of models.

``torch.stft`` reaches dispatch as a padding, a strided view into frames, the window multiply (pointwise
family) and one ``_fft_r2c`` over the frames; ``torch.istft`` as ``_fft_c2r``, the window multiply and the
overlap-add (``unfold_backward``, decomposed into an accumulating index_put).

Bytes: the default rule.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from rooflens.formulas.registry import OpCall, formula
from rooflens.types import Cost, TensorMeta

COMPLEX_FLOPS = 5.0  # x N log2 N per complex transform of length N
REAL_FLOPS = 2.5  # x N log2 N per real-input or real-output transform of length N


def _self(call: OpCall) -> TensorMeta:
    x = call.tensor("self")
    if x is None:
        raise ValueError(f"{call.op}: argument 'self' is not a tensor")
    return x


def _dims(call: OpCall, ndim: int) -> list[int]:
    return [int(d) % ndim for d in (call.args.get("dim") or ())]


def _complex_passes(numel: int, shape: Sequence[int], dims: Sequence[int]) -> float:
    """Complex transforms along each of ``dims`` of a tensor of ``shape``: sum of 5 x numel x log2 N_d."""
    return sum(COMPLEX_FLOPS * numel * math.log2(shape[d]) for d in dims if shape[d] > 1)


def _real_pass(numel: int, n: int) -> float:
    """Real-input or real-output transforms of length ``n`` over ``numel`` real values: 2.5 x numel x log2 n."""
    return REAL_FLOPS * numel * math.log2(n) if n > 1 else 0.0


def _normalisation(call: OpCall, reals_per_element: int) -> int:
    return reals_per_element * call.out.numel if int(call.args.get("normalization") or 0) else 0


@formula("aten._fft_c2c")
def fft_c2c(call: OpCall) -> Cost:
    """5 N log2 N per complex transform of length N, summed over the dims; +2 per output with normalisation"""
    x = _self(call)
    flops = _complex_passes(x.numel, x.shape, _dims(call, len(x.shape)))
    return Cost(flops=round(flops) + _normalisation(call, 2))


@formula("aten._fft_r2c")
def fft_r2c(call: OpCall) -> Cost:
    """2.5 N log2 N per real transform along the last dim, then 5 N log2 N along the others (half spectrum)"""
    x = _self(call)
    dims = _dims(call, len(x.shape))
    if not dims:
        return Cost(flops=_normalisation(call, 2))
    last = dims[-1]
    n = x.shape[last]
    half = list(x.shape)
    half[last] = n // 2 + 1
    half_numel = math.prod(half)
    flops = _real_pass(x.numel, n) + _complex_passes(half_numel, half, dims[:-1])
    return Cost(flops=round(flops) + _normalisation(call, 2))


@formula("aten._fft_c2r")
def fft_c2r(call: OpCall) -> Cost:
    """5 N log2 N along the leading dims (half spectrum), then 2.5 N log2 N per real-output transform"""
    x = _self(call)
    dims = _dims(call, len(x.shape))
    if not dims:
        return Cost(flops=_normalisation(call, 1))
    n = int(call.args.get("last_dim_size") or call.out.shape[dims[-1]])
    flops = _complex_passes(x.numel, x.shape, dims[:-1]) + _real_pass(call.out.numel, n)
    return Cost(flops=round(flops) + _normalisation(call, 1))
