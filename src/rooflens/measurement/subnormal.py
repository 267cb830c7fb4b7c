"""Subnormal floats in a forward pass: where a model's latency depends on its values.

A float closer to zero than the smallest normal number (fp32: 1.18e-38) is *subnormal*. x86 CPUs compute
with subnormal operands or results through microcode assists, many times slower per instruction than
with normal numbers, unless flush-to-zero is on (``torch.set_flush_denormal(True)``). A
model that writes them runs slower than its FLOPs and bytes say, by an amount that depends on its values:
no roofline and no latency predictor over shapes can see it. torchvision's Swin Transformer masks its
shifted windows' attention with -100, whose softmax (about 3.7e-44) is subnormal; on one core of an Intel
Xeon (AVX-512) swin_t at batch 1 ran 127 ms, 100 ms with flush-to-zero, the attention-weighted sums of its
shifted blocks 14-56 times slower than those of its other blocks (docs/prediction.md).

:func:`count_subnormals` runs one forward pass and counts, per operator and module, the subnormal elements
of what the operators wrote (views and operators that only allocate or change metadata write nothing:
``empty`` returns whatever memory held). The count is advice: where it cannot be taken (an operator the
counting mode cannot run, such as a higher-order one) it is None and the measurement stands.
"""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from rooflens.capture.engine import METADATA_OPS
from rooflens.capture.modules import ModuleTracker

TOP = 5  # the operators listed, most subnormal elements first


@dataclass(frozen=True)
class SubnormalOutput:
    """The subnormal elements one operator of one module wrote in a forward pass (all its calls)."""

    module: str  # dotted path ("" for the model itself)
    op: str  # aten operator, e.g. "aten._softmax"
    subnormal: int
    elements: int  # floating-point elements it wrote in all

    def as_dict(self) -> dict[str, Any]:
        return {"module": self.module, "op": self.op, "subnormal": self.subnormal, "elements": self.elements}


@dataclass(frozen=True)
class Subnormals:
    """What one forward pass wrote: floating-point elements, how many were subnormal, and the operators that
    wrote the most (up to ``TOP``, most first)."""

    elements: int
    subnormal: int
    outputs: tuple[SubnormalOutput, ...] = ()

    @property
    def share(self) -> float:
        return self.subnormal / self.elements if self.elements else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"elements": self.elements, "subnormal": self.subnormal, "outputs": [o.as_dict() for o in self.outputs]}


class _Counting(TorchDispatchMode):
    def __init__(self, tracker: ModuleTracker) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.tracker = tracker
        self.elements: Counter[tuple[str, str]] = Counter()
        self.subnormal: Counter[tuple[str, str]] = Counter()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        name = str(func.overloadpacket)
        if func.is_view or name in METADATA_OPS:
            return out
        key = (self.tracker.current, name)
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.layout == torch.strided and t.is_floating_point() and t.numel():
                tiny = torch.finfo(t.dtype).tiny
                self.elements[key] += t.numel()
                self.subnormal[key] += int(torch.count_nonzero((t.abs() < tiny) & (t != 0)))
        return out


def count_subnormals(model: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Subnormals | None:
    """Run ``model(*args, **kwargs)`` once (the caller's copy of a model that has run, under its grad mode)
    and count the subnormal elements its operators wrote; None where the count could not be taken."""
    paths = {id(m): name for name, m in model.named_modules()}
    try:
        with warnings.catch_warnings(), ModuleTracker(paths) as tracker, _Counting(tracker) as counting:
            warnings.simplefilter("ignore")  # e.g. torch.compile's note on global module hooks
            model(*args, **kwargs)
    except Exception:  # noqa: BLE001 -- the model ran when timed: a failure here is the counting mode's
        return None
    top = sorted((n, key) for key, n in counting.subnormal.items() if n)[::-1][:TOP]
    return Subnormals(
        elements=sum(counting.elements.values()),
        subnormal=sum(counting.subnormal.values()),
        outputs=tuple(SubnormalOutput(module, op, n, counting.elements[(module, op)]) for n, (module, op) in top),
    )
