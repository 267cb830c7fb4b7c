"""Parameter counts and model size. Each tensor is counted once: shared and tied weights once."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from rooflens.errors import InputError
from rooflens.types import ParamStats


def _unique(tensors: Iterable[torch.Tensor]) -> list[torch.Tensor]:
    seen: set[int] = set()
    out = []
    for t in tensors:
        if id(t) not in seen:
            seen.add(id(t))
            out.append(t)
    return out


def _has_values(t: torch.Tensor) -> bool:
    from torch._subclasses.fake_tensor import FakeTensor

    return t.device.type != "meta" and not isinstance(t, FakeTensor)


def _nonzero(t: torch.Tensor, cache: dict[int, int] | None = None) -> int:
    if cache is not None and id(t) in cache:
        return cache[id(t)]
    with torch.no_grad():
        n = int(torch.count_nonzero(t.detach()).item())
    if cache is not None:
        cache[id(t)] = n
    return n


def _check_module(model: object) -> torch.nn.Module:
    if not isinstance(model, torch.nn.Module):
        raise InputError(f"expected a torch.nn.Module, got {type(model).__name__}")
    return model


def count_parameters(model: torch.nn.Module, *, trainable_only: bool = False, nonzero_only: bool = False) -> int:
    """Number of parameter elements, each tensor once.

    ``trainable_only`` keeps parameters with ``requires_grad``; ``nonzero_only`` counts only non-zero
    elements (needs real values: a model on the meta device raises :class:`InputError`).
    """
    params = _unique(_check_module(model).parameters())
    if trainable_only:
        params = [p for p in params if p.requires_grad]
    if not nonzero_only:
        return sum(p.numel() for p in params)
    if not all(_has_values(p) for p in params):
        raise InputError("nonzero_only needs parameter values, but the model's parameters are on the meta device")
    return sum(_nonzero(p) for p in params)


def model_size_bytes(
    model: torch.nn.Module, *, bits: float | None = None, nonzero_only: bool = False, include_buffers: bool = False
) -> int:
    """Storage of the parameters in bytes, at ``bits`` per element or at each parameter's own dtype.

    ``bits=8`` gives the INT8 size, ``bits=4`` the 4-bit size (rounded up to whole bytes);
    ``nonzero_only`` counts only non-zero elements (a sparse model's payload, without index overhead);
    ``include_buffers`` adds the buffers (batch-norm statistics ...) at the same width.
    """
    if bits is not None and not (isinstance(bits, (int, float)) and bits > 0):
        raise InputError(f"bits must be a positive number, got {bits!r}")
    model = _check_module(model)
    tensors = _unique(model.parameters())
    if include_buffers:
        tensors += _unique(model.buffers())
    if nonzero_only and not all(_has_values(t) for t in tensors):
        raise InputError("nonzero_only needs parameter values, but the model's parameters are on the meta device")
    total_bits = 0.0
    for t in tensors:
        n = _nonzero(t) if nonzero_only else t.numel()
        total_bits += n * (bits if bits is not None else t.element_size() * 8)
    return math.ceil(total_bits / 8)


def param_stats(module: torch.nn.Module, *, nonzero_cache: dict[int, int] | None = None) -> ParamStats:
    """Counts for ``module`` and everything below it; ``nonzero`` is None when values are unknown."""
    params = _unique(module.parameters())
    buffers = _unique(module.buffers())
    known = all(_has_values(p) for p in params)
    return ParamStats(
        total=sum(p.numel() for p in params),
        trainable=sum(p.numel() for p in params if p.requires_grad),
        nonzero=sum(_nonzero(p, nonzero_cache) for p in params) if known else None,
        bytes=sum(p.numel() * p.element_size() for p in params),
        buffers=sum(b.numel() for b in buffers),
        buffer_bytes=sum(b.numel() * b.element_size() for b in buffers),
    )
