"""Operator formulas. Importing this package fills :data:`REGISTRY` with every family."""

# Each family registers its operators on import.
from rooflens.formulas import (  # noqa: F401
    attention,
    backward,
    conv,
    fft,
    linalg,
    matmul,
    memory,
    norm,
    pointwise,
    pool,
    quantized,
    reduction,
    rnn,
    transcendental,
    vision,
)
from rooflens.formulas.registry import REGISTRY, Entry, OpCall, default_bytes, dot_flops, formula

__all__ = ["REGISTRY", "Entry", "OpCall", "default_bytes", "dot_flops", "formula"]
