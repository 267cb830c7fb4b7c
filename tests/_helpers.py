"""Small helpers shared by the formula tests."""

from __future__ import annotations

from typing import Any

import torch
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


class Block(nn.Module):
    """conv-bn-relu with a residual add; the model calls the same instance twice."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)) + x)


class TinyNet(nn.Module):
    """Conv2d-BatchNorm2d-ReLU-MaxPool, a block used twice, AdaptiveAvgPool-Flatten-Linear; aux is never called."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.block = Block(8)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(8, 10)
        self.aux = nn.Linear(8, 2)  # an unused head: listed as not called

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.relu(self.bn(self.conv(x))))
        x = self.block(self.block(x))
        return self.fc(self.flatten(self.avgpool(x)))


def tiny_net(meta: bool = False) -> TinyNet:
    torch.manual_seed(0)
    if meta:
        with torch.device("meta"):
            return TinyNet().eval()
    return TinyNet().eval()
