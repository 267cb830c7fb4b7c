"""Isolation: the model and the inputs an analysis runs on are structural copies of the user's.

:class:`Copier` rebuilds the module tree and the inputs with every tensor replaced by one it makes (a
fake tensor, or a real copy for the real-run fall-back), and everything mutable around them copied:
each module's ``__dict__`` (so attributes a forward stores land on the copy), the parameter, buffer,
sub-module and hook dictionaries, containers (lists, dicts, sets, tuples), and objects that hold
tensors (``transformers`` caches, dataclasses, any object with a ``__dict__``), also in the inputs.
Bound methods of copied objects are re-bound to the copies, and functions with a closure (a hook that
appends to a list) get the same code over converted cells. Nothing is installed on, read from beyond
attributes, or written to the user's objects; immutable values, code, classes, module globals and
objects that cannot be copied are shared.

A module reached under several names (``a.shared`` and ``b.shared``) gets one copy per name, all on
the same tensors, so that each call is credited to the path it was called through.

Besides isolation this is the set-up cost of every analysis: it visits each module once and each
attribute value once (a memo keeps shared values shared), with no per-operator cost.
"""

from __future__ import annotations

import collections
import copy
import enum
import types
from collections.abc import Callable
from typing import Any

import torch

from rooflens.types import TensorKind

# Values that are never copied: immutable, or not state of the user's (code, types, torch enums).
# _ATOMS is the fast path for the commonest; _COPYABLE the containers whose .copy() keeps their type.
_SHARED_TYPES: tuple[type, ...] = (
    type(None), bool, int, float, complex, str, bytes, range, slice, type, enum.Enum,
    types.BuiltinFunctionType, types.ModuleType, types.CodeType, property,
    torch.dtype, torch.device, torch.Size, torch.layout, torch.memory_format,
)
_ATOMS = frozenset({type(None), bool, int, float, str})
_COPYABLE = frozenset({dict, list, set, collections.OrderedDict, collections.defaultdict})


class Copier:
    """Copies module trees and input structures, with every tensor made by ``make`` (once per tensor)."""

    def __init__(self, make: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self._make = make
        self.memo: dict[int, Any] = {}  # id(original) -> its copy
        self.kinds: dict[int, TensorKind] = {}  # id(copied tensor) -> parameter, buffer or activation
        self.paths: dict[int, str] = {}  # id(copied module) -> the dotted path it was copied under
        self._originals: list[Any] = []  # keeps originals alive for the memo's ids

    # -- tensors
    def tensor(self, t: torch.Tensor, kind: TensorKind = TensorKind.ACTIVATION) -> torch.Tensor:
        known = self.memo.get(id(t))
        if known is None:
            known = self._make(t)
            self._remember(t, known)
        if kind is not TensorKind.ACTIVATION:
            # a tensor that is a parameter anywhere is a parameter; a buffer stays one unless it is
            self.kinds[id(known)] = TensorKind.PARAMETER if kind is TensorKind.PARAMETER else self.kinds.get(
                id(known), kind
            )
        return known

    def _remember(self, original: Any, new: Any) -> None:
        self.memo[id(original)] = new
        self._originals.append(original)

    # -- modules
    def module_tree(self, root: torch.nn.Module) -> torch.nn.Module:
        """A copy of ``root`` and everything under it; one copy per path of a module reached twice."""
        pairs: list[tuple[torch.nn.Module, torch.nn.Module]] = []
        new_root = self._structure(root, "", pairs)
        for module, new in pairs:  # once every module of the tree has its copy, the other attributes
            self._attributes(module, new)
        return new_root

    def _structure(
        self, module: torch.nn.Module, path: str, pairs: list[tuple[torch.nn.Module, torch.nn.Module]]
    ) -> torch.nn.Module:
        """The copy of ``module`` with its parameters, buffers and sub-modules (iterative: any depth)."""
        root = object.__new__(type(module))
        todo = [(module, root, path)]
        while todo:
            original, new, where = todo.pop()
            if id(original) not in self.memo:  # attributes that hold a module get its first copy
                self._remember(original, new)
            self.paths[id(new)] = where
            pairs.append((original, new))
            state = original.__dict__
            children: dict[str, Any] = {}
            for name, child in state.get("_modules", {}).items():
                if child is None:
                    children[name] = None
                    continue
                children[name] = object.__new__(type(child))
                todo.append((child, children[name], f"{where}.{name}" if where else name))
            new.__dict__["_parameters"] = {
                n: None if p is None else self.tensor(p, TensorKind.PARAMETER)
                for n, p in state.get("_parameters", {}).items()
            }
            new.__dict__["_buffers"] = {
                n: None if b is None else self.tensor(b, TensorKind.BUFFER) for n, b in state.get("_buffers", {}).items()
            }
            new.__dict__["_modules"] = children
        return root

    def _attributes(self, module: torch.nn.Module, new: torch.nn.Module) -> None:
        for key, value in module.__dict__.items():
            if key not in ("_parameters", "_buffers", "_modules"):
                new.__dict__[key] = self.value(value)

    def outside(self, module: torch.nn.Module) -> torch.nn.Module:
        """A module reached only through a plain attribute or an input: copied, with no path."""
        pairs: list[tuple[torch.nn.Module, torch.nn.Module]] = []
        new = self._structure(module, "", pairs)
        for original, copied in pairs:
            self.paths.pop(id(copied), None)
            self._attributes(original, copied)
        return new

    # -- everything else
    def value(self, value: Any) -> Any:
        """``value`` with tensors made, modules mapped to their copies and mutable structure copied."""
        kind = type(value)
        if kind in _ATOMS:  # most attribute values: flags, sizes, names
            return value
        if kind in _COPYABLE and not value:  # the empty hook dictionaries every module has
            new = value.copy()
            self._remember(value, new)
            return new
        if isinstance(value, _SHARED_TYPES):
            return value
        known = self.memo.get(id(value))
        if known is not None:
            return known
        if isinstance(value, torch.Tensor):
            return self.tensor(value)
        if isinstance(value, torch.nn.Module):
            return self.outside(value)
        if isinstance(value, types.FunctionType):
            return self._function(value)
        if isinstance(value, types.MethodType):
            owner = self.value(value.__self__)
            return value if owner is value.__self__ else types.MethodType(value.__func__, owner)
        if isinstance(value, tuple):
            items = [self.value(v) for v in value]
            if all(a is b for a, b in zip(items, value)):
                return value
            new_tuple = type(value)(*items) if hasattr(value, "_fields") else type(value)(items)
            self._remember(value, new_tuple)
            return new_tuple
        if isinstance(value, (list, dict, set)):
            return self._container(value)
        if type(value).__module__ in ("builtins", "weakref") or not hasattr(value, "__dict__"):
            return value  # other built-ins (frozenset of names, weak references ...), slotted objects
        return self._object(value)

    def _function(self, fn: types.FunctionType) -> types.FunctionType:
        """A function whose closure holds state (a hook appending to a list, a lambda over a module): the same
        code over converted cells. Globals stay shared."""
        if not fn.__closure__:
            return fn
        cells = []
        for cell in fn.__closure__:
            try:
                contents = cell.cell_contents
            except ValueError:  # an empty cell (a name not yet bound)
                cells.append(cell)
                continue
            cells.append(types.CellType(self.value(contents)))
        if all(new.cell_contents is old.cell_contents for new, old in zip(cells, fn.__closure__) if new is not old):
            return fn
        new_fn = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__, fn.__defaults__, tuple(cells))
        new_fn.__kwdefaults__ = fn.__kwdefaults__
        new_fn.__dict__.update(fn.__dict__)
        self._remember(fn, new_fn)
        return new_fn

    def _container(self, value: list[Any] | dict[Any, Any] | set[Any]) -> Any:
        try:
            # .copy() of the built-ins and of OrderedDict/defaultdict keeps the type and its settings
            new: Any = value.copy() if type(value) in _COPYABLE else copy.copy(value)
        except Exception:  # noqa: BLE001 - a container subclass that refuses to be copied is shared
            return value
        if not value:
            return new
        self._remember(value, new)
        if isinstance(value, dict):
            for k, v in value.items():
                converted = self.value(v)
                if converted is not v:
                    new[k] = converted
        elif isinstance(value, list):
            new[:] = [self.value(v) for v in value]
        else:
            new.clear()
            new.update(self.value(v) for v in value)
        return new

    def _object(self, value: Any) -> Any:
        """An object with a ``__dict__``: a shallow copy whose attributes are converted in turn."""
        try:
            new = copy.copy(value)
        except Exception:  # noqa: BLE001 - objects that cannot be copied (locks, handles ...) are shared
            return value
        if new is value or not hasattr(new, "__dict__"):
            return value
        self._remember(value, new)
        for key, item in list(vars(value).items()):
            converted = self.value(item)
            if converted is not item:
                try:
                    object.__setattr__(new, key, converted)
                except (AttributeError, TypeError):  # frozen dataclasses of exotic kinds
                    vars(new)[key] = converted
        return new

