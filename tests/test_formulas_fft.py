"""FFT formulas. Every expected number is derived by hand in the comment beside it.

Convention (FFTW/benchFFT, https://www.fftw.org/speed/method.html): a complex transform of length N is
5 N log2 N real FLOPs, a real-input or real-output one 2.5 N log2 N; a multi-dimensional transform sums
(transforms along a dim) x (cost of one) over the dims; normalisation 1 multiply per real output number.
No MACs.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from test_formulas_matmul import cost_of, make_call

import rooflens
from rooflens.types import Cost

from _helpers import Fn, tm

C64 = {"dtype": "complex64", "itemsize": 8}


def records(fn: Any, *args: torch.Tensor) -> list[tuple[str, int, int]]:
    report = rooflens.analyze(Fn(fn), args)
    assert report.unsupported_ops() == {}
    return [(r.op, r.cost.macs, r.cost.flops) for r in report.records]


@pytest.mark.parametrize(("fn", "make", "expected"), [
    # fft of a real length-64 signal: one real-input transform, 2.5 * 64 * log2(64) = 2.5 * 64 * 6 = 960
    (torch.fft.fft, lambda: torch.randn(64), [("aten._fft_r2c", 0, 960)]),
    # complex, norm="ortho": 5 * 64 * 6 = 1,920 + 1/sqrt(64) on 64 complex outputs, 2 multiplies each = 128
    (lambda t: torch.fft.fft(t, norm="ortho"), lambda: torch.randn(64, dtype=torch.complex64),
     [("aten._fft_c2c", 0, 2_048)]),
    # ifft (default norm "backward": 1/n on the inverse): 1,920 + 128 = 2,048
    (torch.fft.ifft, lambda: torch.randn(64, dtype=torch.complex64), [("aten._fft_c2c", 0, 2_048)]),
    # rfft, norm="forward" (1/n): 960 + 2 x 33 complex outputs = 1,026
    (lambda t: torch.fft.rfft(t, norm="forward"), lambda: torch.randn(64), [("aten._fft_r2c", 0, 1_026)]),
    # irfft of 33 bins -> 64 reals: 2.5 * 64 * 6 = 960 + 1/n on 64 real outputs = 1,024
    (torch.fft.irfft, lambda: torch.randn(33, dtype=torch.complex64), [("aten._fft_c2r", 0, 1_024)]),
    # a batch of 3 complex transforms of 64: 3 * 1,920 = 5,760
    (torch.fft.fft, lambda: torch.randn(3, 64, dtype=torch.complex64), [("aten._fft_c2c", 0, 5_760)]),
    # fft2 of a real (2, 8, 16): made complex (a copy), then dims 1 and 2: 256 elements,
    # 5 * 256 * (log2 8 + log2 16) = 5 * 256 * 7 = 8,960
    (torch.fft.fft2, lambda: torch.randn(2, 8, 16), [("aten._to_copy", 0, 0), ("aten._fft_c2c", 0, 8_960)]),
    # rfft2 of (2, 8, 16): real transforms along the last dim 2.5 * 256 * 4 = 2,560, then complex along dim 1
    # over the half spectrum (2, 8, 9) = 144 elements: 5 * 144 * 3 = 2,160 -> 4,720
    (torch.fft.rfft2, lambda: torch.randn(2, 8, 16), [("aten._fft_r2c", 0, 4_720)]),
    # irfftn of (2, 8, 9) -> (2, 8, 16), all dims: complex along dims 0 (N=2) and 1 (N=8) over 144 elements
    # 5 * 144 * (1 + 3) = 2,880; real-output along the last (N=16) 2.5 * 256 * 4 = 2,560; 1/n on 256 reals
    # -> 5,696
    (torch.fft.irfftn, lambda: torch.randn(2, 8, 9, dtype=torch.complex64), [("aten._fft_c2r", 0, 5_696)]),
])
def test_torch_fft_functions(fn: Any, make: Any, expected: list[tuple[str, int, int]]) -> None:
    assert records(fn, make()) == expected


def test_length_that_is_not_a_power_of_two() -> None:
    # fft(x, n=100) pads to 100 (a copy) and transforms: 2.5 * 100 * log2(100) = 250 * 6.6439 = 1,660.96 -> 1,661
    assert records(lambda t: torch.fft.fft(t, n=100), torch.randn(64)) == [
        ("aten.constant_pad_nd", 0, 0), ("aten._fft_r2c", 0, 1_661)
    ]


def test_stft_reaches_a_real_fft_over_the_frames() -> None:
    # 400 samples, n_fft 64, hop 16, centred: reflection padding to 464, 1 + (464 - 64) / 16 = 26 frames;
    # the Hann window multiplies 26 * 64 = 1,664 samples; one r2c along the frames' last dim:
    # 2.5 * 1,664 * log2(64) = 2.5 * 1,664 * 6 = 24,960
    got = records(lambda x, w: torch.stft(x, n_fft=64, hop_length=16, window=w, return_complex=True),
                  torch.randn(400), torch.hann_window(64))
    assert got == [("aten.reflection_pad1d", 0, 0), ("aten.mul", 0, 1_664), ("aten._fft_r2c", 0, 24_960)]


def test_istft_reaches_a_complex_to_real_fft() -> None:
    # 33 bins x 10 frames -> 10 frames of 64 reals: 2.5 * 640 * 6 = 9,600 + 1/n on 640 reals = 10,240
    # (istft checks the window envelope's values, so the analysis runs on real tensors)
    report = rooflens.analyze(Fn(lambda x, w: torch.istft(x, n_fft=64, hop_length=16, window=w)),
                              (torch.randn(33, 10, dtype=torch.complex64), torch.hann_window(64)))
    ffts = [(r.op, r.cost.flops) for r in report.records if "fft" in r.op]
    assert ffts == [("aten._fft_c2r", 10_240)]


@pytest.mark.parametrize(("op", "given", "out", "flops"), [
    # c2c over dims 0 and 2 of (4, 3, 8) = 96 elements: 5 * 96 * (log2 4 + log2 8) = 5 * 96 * 5 = 2,400
    ("aten._fft_c2c", {"self": tm(4, 3, 8, **C64), "dim": [0, 2], "normalization": 0, "forward": True},
     tm(4, 3, 8, **C64), 2_400),
    # negative dims are the same dims: -1 of (4, 3, 8) is 2: 5 * 96 * 3 = 1,440
    ("aten._fft_c2c", {"self": tm(4, 3, 8, **C64), "dim": [-1], "normalization": 0, "forward": True},
     tm(4, 3, 8, **C64), 1_440),
    # a length-1 dimension costs nothing: log2 1 = 0
    ("aten._fft_c2c", {"self": tm(5, 1, **C64), "dim": [1], "normalization": 0, "forward": True},
     tm(5, 1, **C64), 0),
    # two-sided r2c (torch.fft.fft of a real tensor) costs what the one-sided does; normalisation 1/sqrt(n)
    # on the 16 complex outputs: 2.5 * 16 * 4 = 160 + 32 = 192
    ("aten._fft_r2c", {"self": tm(16), "dim": [0], "normalization": 1, "onesided": False}, tm(16, **C64), 192),
    # c2r of (4, 5) -> (4, 8) along both dims: complex along dim 0 over the 20 inputs 5 * 20 * 2 = 200;
    # real-output along dim 1 (N = last_dim_size 8) 2.5 * 32 * 3 = 240 -> 440
    ("aten._fft_c2r", {"self": tm(4, 5, **C64), "dim": [0, 1], "normalization": 0, "last_dim_size": 8},
     tm(4, 8), 440),
])
def test_fft_formulas_by_hand(op: str, given: dict[str, Any], out: Any, flops: int) -> None:
    assert cost_of(make_call(op, given, (out,))) == Cost(0, flops)


def test_fft_bytes_are_the_default_rule() -> None:
    report = rooflens.analyze(Fn(torch.fft.fft), (torch.randn(64, dtype=torch.complex64),))
    # read 64 complex64 = 512 B, write 512 B
    assert (report.records[0].cost.bytes_read, report.records[0].cost.bytes_written) == (512, 512)
