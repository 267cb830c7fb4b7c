"""Small helpers shared by the formula tests."""

from __future__ import annotations

from typing import Any

from torch import nn

from rooflens.types import TensorMeta


class Fn(nn.Module):
    """Wraps a function of the inputs as a module so that ``analyze`` can run it."""

    def __init__(self, fn: Any) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, *args: Any) -> Any:
        return self.fn(*args)


def tm(*shape: int, dtype: str = "float32", itemsize: int = 4) -> TensorMeta:
    """A float32 (by default) TensorMeta of ``shape``, for formulas called on hand-built OpCalls."""
    return TensorMeta(tuple(shape), dtype, itemsize)
