"""Module attribution through torch's *global* module hooks; the user's modules are never touched.

Like ``torch.utils.module_tracker``: a global forward pre-hook pushes the module's dotted path and a
global forward hook (``always_call=True``, so it runs even when the forward raises) pops it. Both
hooks are removed when the tracker exits, whatever happened inside. The hooks are global, so they see
every module call of every thread: the tracker answers only to the modules of its own run (the
analysis's copy of the model, by identity) called from the thread that runs it, and ignores the rest
(a serving thread calling the user's model, other analyses).

The tracker is also where the run is: ``current`` (the innermost module), ``phase`` (forward,
backward ...), and where it broke (``failed_at``: the operator and module of the first failure, and
the innermost module a Python exception left).

For the backward pass (``backward=True``), the forward hooks also put gradient hooks on the tensors
rooflens made (never on the user's modules): the gradient of a module's output arriving means its
backward starts, the gradient of its inputs means it is done. The innermost module whose backward has
started and not finished is the current one.
"""

from __future__ import annotations

import sys
import threading
from collections import Counter
from types import TracebackType
from typing import Any

import torch
from torch.autograd.graph import register_multi_grad_hook
from torch.nn.modules import module as nn_module
from torch.utils._pytree import tree_leaves
from typing_extensions import Self


class ModuleTracker:
    def __init__(
        self, paths: dict[int, str], names: dict[tuple[int, int], str] | None = None, *, backward: bool = False
    ) -> None:
        self.paths = paths  # id(module) -> its first dotted path, of the modules of this run only
        self.names = names or {}  # (id(parent), id(child)) -> the child's name under that parent
        self.thread = threading.get_ident()
        self.phase = "forward"
        self.failed_at: tuple[str, str] | None = None  # (operator, module) where an operator raised
        self.raised_in: tuple[BaseException, str] | None = None  # an exception and the innermost module it left
        self.assume_checks = False  # value checks on fake tensors pass (see capture.harness.run_model)
        self.assumptions: list[str] = []
        self.stack: list[tuple[int, str]] = []
        self.calls: Counter[str] = Counter()
        self.output_shapes: dict[str, tuple[tuple[int, ...], ...]] = {}
        self._handles: list[Any] = []
        self._track_backward = backward
        self._in_backward = False
        self._backward_open: list[str] = []  # modules whose backward has started and not finished

    @property
    def current(self) -> str:
        if self._in_backward:  # the innermost open module; among equally deep ones the latest
            if not self._backward_open:
                return ""
            return max(reversed(self._backward_open), key=lambda p: p.count(".") + bool(p))
        return self.stack[-1][1] if self.stack else ""

    def start_backward(self, phase: str = "backward") -> None:
        self._in_backward = True
        self.phase = phase

    def fail(self, op: str) -> None:
        """An operator raised: remember the first one, and the module it ran in."""
        if self.failed_at is None:
            self.failed_at = (op, self.current)

    def where(self, exc: BaseException) -> tuple[str, str]:
        """The operator (or "") and the module in which ``exc`` was raised."""
        if self.failed_at is not None:
            return self.failed_at
        if self.raised_in is not None and self.raised_in[0] is exc:
            return "", self.raised_in[1]
        return "", self.current

    def _grad_hook(self, tensors: Any, path: str, *, enter: bool) -> None:
        """On the first gradient of ``tensors``: open (outputs) or close (inputs) the module's backward."""
        grads = [t for t in tree_leaves(tensors) if isinstance(t, torch.Tensor) and t.requires_grad]
        if not grads or not torch.is_grad_enabled():
            return

        def fn(*_: Any) -> None:
            if enter:
                self._backward_open.append(path)
            elif path in self._backward_open:
                del self._backward_open[len(self._backward_open) - 1 - self._backward_open[::-1].index(path)]

        self._handles.append(register_multi_grad_hook(grads, fn, mode="any"))

    def _pre(self, module: torch.nn.Module, args: Any) -> None:
        path = self.paths.get(id(module))
        if path is not None and threading.get_ident() == self.thread:
            if self.stack:  # called by a parent that holds it: the path it was called through
                parent, parent_path = self.stack[-1]
                name = self.names.get((parent, id(module)))
                if name is not None:
                    path = f"{parent_path}.{name}" if parent_path else name
            self.stack.append((id(module), path))
            self.calls[path] += 1
            if self._track_backward:
                self._grad_hook(args, path, enter=False)

    def _post(self, module: torch.nn.Module, args: Any, output: Any) -> None:
        if self.stack and self.stack[-1][0] == id(module) and threading.get_ident() == self.thread:
            _, path = self.stack.pop()
            exc = sys.exc_info()[1]  # always_call: the hook runs inside the except of a forward that raised
            if exc is not None and self.raised_in is None:
                self.raised_in = (exc, path)
            shapes = tuple(tuple(t.shape) for t in tree_leaves(output) if isinstance(t, torch.Tensor))
            if shapes:
                self.output_shapes[path] = shapes
            if self._track_backward:
                self._grad_hook(output, path, enter=True)

    def __enter__(self) -> Self:
        self._handles = [
            nn_module.register_module_forward_pre_hook(self._pre),
            nn_module.register_module_forward_hook(self._post, always_call=True),
        ]
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self.stack.clear()
