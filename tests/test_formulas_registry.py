"""The registry's formula families: one per entry, given by the decorator (by default the formula's module)."""

from __future__ import annotations

import pytest

from rooflens.formulas import REGISTRY
from rooflens.formulas.registry import OpCall, Registry
from rooflens.types import Cost

FAMILIES = {
    "attention", "conv", "fft", "linalg", "matmul", "memory", "norm", "pointwise", "pool", "reduction", "rnn",
    "transcendental", "vision",
}


def _zero(call: OpCall) -> Cost:
    """0"""
    return Cost()


def test_every_entry_has_a_family_of_the_formulas_package() -> None:
    assert {e.family for e in REGISTRY} == FAMILIES


def test_the_family_is_the_module_unless_the_decorator_names_one() -> None:
    registry = Registry()
    registry.register("aten.a")(_zero)
    registry.register("aten.b", family="conv")(_zero)
    # _zero lives in this module: its default family is the module's name
    assert registry.entries["aten.a"].family == "test_formulas_registry"
    assert registry.entries["aten.b"].family == "conv"
    with pytest.raises(ValueError, match="already has a formula"):
        registry.register("aten.b", family="matmul")(_zero)


@pytest.mark.parametrize(("op", "family"), [
    # the operators the calibrated model's old name lists had drifted from
    ("aten._int_mm", "matmul"), ("aten._scaled_mm", "matmul"), ("aten._flash_attention_forward", "attention"),
    ("aten.convolution_backward", "conv"),
    # the families this issue added
    ("aten._fft_r2c", "fft"), ("aten.linalg_cholesky_ex", "linalg"), ("aten.sigmoid", "transcendental"),
    ("aten.hardsigmoid", "pointwise"), ("aten.linalg_cross", "pointwise"), ("aten.lu_unpack", "memory"),
])
def test_families_of_operators(op: str, family: str) -> None:
    entry = REGISTRY.get(op)
    assert entry is not None and entry.family == family
