"""Operator formulas. Importing this package fills :data:`REGISTRY` with every family."""

from rooflens.formulas.registry import REGISTRY, Entry, OpCall, default_bytes, dot_flops, formula

# Each family registers its operators on import.
from rooflens.formulas import (  # noqa: E402,F401
    attention,
    backward,
    conv,
    matmul,
    memory,
    norm,
    pointwise,
    pool,
    reduction,
    rnn,
    vision,
)

__all__ = ["REGISTRY", "Entry", "OpCall", "default_bytes", "dot_flops", "formula"]
