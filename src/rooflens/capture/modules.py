"""Module attribution through torch's *global* module hooks; the user's modules are never touched.

Like ``torch.utils.module_tracker``: a global forward pre-hook pushes the module's dotted path and a
global forward hook (``always_call=True``, so it runs even when the forward raises) pops it. Both
hooks are removed when the tracker exits, whatever happened inside.
"""

from __future__ import annotations

from collections import Counter
from types import TracebackType
from typing import Any

import torch
from torch.nn.modules import module as nn_module
from torch.utils._pytree import tree_leaves


class ModuleTracker:
    def __init__(self, root: torch.nn.Module) -> None:
        # remove_duplicate=True: a module reused under several names is attributed to its first name.
        self.paths: dict[int, str] = {id(m): name for name, m in root.named_modules()}
        self.stack: list[tuple[int, str]] = []
        self.calls: Counter[str] = Counter()
        self.output_shapes: dict[str, tuple[tuple[int, ...], ...]] = {}
        self._handles: list[Any] = []

    @property
    def current(self) -> str:
        return self.stack[-1][1] if self.stack else ""

    def _pre(self, module: torch.nn.Module, args: Any) -> None:
        path = self.paths.get(id(module))
        if path is not None:
            self.stack.append((id(module), path))
            self.calls[path] += 1

    def _post(self, module: torch.nn.Module, args: Any, output: Any) -> None:
        if self.stack and self.stack[-1][0] == id(module):
            _, path = self.stack.pop()
            shapes = tuple(tuple(t.shape) for t in tree_leaves(output) if isinstance(t, torch.Tensor))
            if shapes:
                self.output_shapes[path] = shapes

    def __enter__(self) -> ModuleTracker:
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
