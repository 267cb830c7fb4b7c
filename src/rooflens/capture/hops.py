"""Higher-order operators (``torch.cond``, ``torch.while_loop``, ``invoke_subgraph``, ``flex_attention`` ...).

A higher-order operator takes functions as arguments. A dispatch mode that declares it supports them
gets each call; :func:`run_hop` runs it so that the operators *inside* reach the mode like any other:

- ``cond(pred, true_fn, false_fn, operands)``: with a known predicate (a Python bool, or a real tensor in
  a real run) the branch taken runs. With an unknown one (a fake tensor), both branches run and the
  mode keeps the costlier (the upper bound, as ``torch.utils.flop_counter`` counts it); a diagnostic
  says so.
- ``while_loop(cond_fn, body_fn, carried, additional)``: the loop runs in Python, its body counted once
  per iteration. The number of iterations needs the predicate's value: on fake tensors that is a value
  the run does not have (the harness falls back to a real run, or says why it cannot).
- ``invoke_subgraph``, ``wrap``, ``auto_functionalized`` and other wrappers of one function: the function
  runs inline.
- Operators with a formula of their own (``flex_attention``): run by the next mode (fake or real
  kernel) and recorded once, as one operator, under ``higher_order.<name>``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import torch
from torch._ops import HigherOrderOperator
from torch._subclasses.fake_tensor import DataDependentOutputException, FakeTensor

from rooflens.capture.modules import ModuleTracker

# Higher-order operators that call one function on the remaining arguments: (index of the function, of
# the first operand). The operators inside are what is counted.
_INLINE: dict[str, tuple[int, int]] = {"invoke_subgraph": (0, 2), "wrap": (0, 1), "strict_mode": (0, 1)}


class HopMode(Protocol):
    """What :func:`run_hop` needs of a dispatch mode: to be entered again, and its records as a list."""

    tracker: ModuleTracker

    def __enter__(self) -> Any: ...

    def __exit__(self, exc_type: object, exc_value: object, traceback: object, /) -> Any: ...

    def mark(self) -> int:
        """A position in the mode's records."""
        ...

    def cost_between(self, start: int, end: int) -> tuple[int, int]:
        """(FLOPs, bytes) recorded between two positions."""
        ...

    def drop(self, start: int, end: int) -> None:
        """Forget what was recorded between two positions."""
        ...

    def note(self, text: str) -> None: ...


def is_hop(func: Any) -> bool:
    return isinstance(func, HigherOrderOperator)


def hop_name(func: HigherOrderOperator) -> str:
    return f"higher_order.{func.name()}"


def known_bool(pred: Any) -> bool | None:
    """The value of a predicate, or None when it is a fake (value-less) tensor."""
    if isinstance(pred, bool):
        return pred
    if isinstance(pred, torch.Tensor):
        if isinstance(pred, FakeTensor) or pred.device.type == "meta":
            return None
        return bool(pred.item())
    return bool(pred)


def run_hop(mode: HopMode, func: HigherOrderOperator, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Run ``func`` so that the operators inside reach ``mode``; NotImplemented for one that has a formula."""
    name = func.name()
    try:
        if name == "cond":
            return _cond(mode, *args)
        if name == "while_loop":
            return _while_loop(mode, func, *args)
        if name in _INLINE:
            fn_at, operands_at = _INLINE[name]
            with mode:
                return args[fn_at](*args[operands_at:], **kwargs)
    except Exception:
        mode.tracker.fail(hop_name(func))  # the innermost failure is kept: an operator inside wins
        raise
    return NotImplemented


def _cond(mode: HopMode, pred: Any, true_fn: Callable[..., Any], false_fn: Callable[..., Any], operands: Any) -> Any:
    value = known_bool(pred)
    if value is not None:
        with mode:
            return (true_fn if value else false_fn)(*operands)
    start = mode.mark()
    with mode:
        true_out = true_fn(*operands)
    middle = mode.mark()
    with mode:
        false_out = false_fn(*operands)
    end = mode.mark()
    true_cost, false_cost = mode.cost_between(start, middle), mode.cost_between(middle, end)
    keep_true = true_cost >= false_cost
    if keep_true:
        mode.drop(middle, end)
    else:
        mode.drop(start, middle)
    mode.note(
        "torch.cond with a predicate whose value the fake run does not have: both branches were traced and the "
        f"costlier (the {'true' if keep_true else 'false'} branch) is counted (an upper bound)"
    )
    return true_out if keep_true else false_out


def _while_loop(
    mode: HopMode,
    func: HigherOrderOperator,
    cond_fn: Callable[..., Any],
    body_fn: Callable[..., Any],
    carried: tuple[Any, ...],
    additional: tuple[Any, ...] = (),
) -> Any:
    state = tuple(carried)
    while True:
        with mode:
            pred = cond_fn(*state, *additional)
        value = known_bool(pred)
        if value is None:
            raise DataDependentOutputException(func)  # type: ignore[arg-type]
        if not value:
            return state
        with mode:
            out = body_fn(*state, *additional)
        state = tuple(out) if isinstance(out, (tuple, list)) else (out,)
