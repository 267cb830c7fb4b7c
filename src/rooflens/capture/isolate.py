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

A module reached under several names (``a.shared`` and ``b.shared``) is one copy, as it is one object
(identity checks in a forward hold); :attr:`Copier.names` gives its name under each parent, so that the
module tracker credits each call to the path it was called through.

Besides isolation this is the set-up cost of every analysis: it visits each module once and each
attribute value once (a memo keeps shared values shared), with no per-operator cost.
"""

from __future__ import annotations

import collections
import copy
import enum
import functools
import types
import weakref
from collections.abc import Callable
from typing import Any

import torch

from rooflens.types import TensorKind

# Values that are never copied: immutable, or not state of the user's (code, types, torch enums).
# _ATOMS is the fast path for the commonest; _COPYABLE the containers whose .copy() keeps their type.
_SHARED_TYPES: tuple[type, ...] = (
    type(None), bool, int, float, complex, str, bytes, range, slice, type, enum.Enum,
    types.ModuleType, types.CodeType, property,
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
        self.paths: dict[int, str] = {}  # id(copied module) -> its first dotted path
        self.names: dict[tuple[int, int], str] = {}  # (id(parent copy), id(child copy)) -> the child's name
        self._originals: list[Any] = []  # keeps originals alive for the memo's ids
        self.alive: list[Any] = []  # copies only weak references point at: the run must keep them
        self._in_cache = 0  # > 0 while the attributes of a key/value cache object are converted

    # -- tensors
    def tensor(self, t: torch.Tensor, kind: TensorKind = TensorKind.ACTIVATION) -> torch.Tensor:
        if kind is TensorKind.ACTIVATION and self._in_cache and t.is_floating_point():
            kind = TensorKind.CACHE  # keys and values; a cache's integer bookkeeping (its length) is not KV
        known = self.memo.get(id(t))
        if known is None:
            original_base = t._base
            base = self.memo.get(id(original_base)) if original_base is not None else None
            if original_base is not None and base is not None and kind is TensorKind.ACTIVATION:
                # a view of a parameter or buffer kept as a plain attribute (``self.w_t = weight.t()``): a view
                # of its copy, with its kind
                offset = t.storage_offset() - original_base.storage_offset()
                known = base.as_strided(t.shape, t.stride(), offset)
                kind = self.kinds.get(id(base), kind)
            else:
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
        """A copy of ``root`` and everything under it, each module once (a module reached under two names is
        one copy, as it is one object; :attr:`names` tells the name under each parent)."""
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
        self._remember(module, root)
        todo = [(module, root, path)]
        while todo:
            original, new, where = todo.pop()
            self.paths[id(new)] = where
            pairs.append((original, new))
            state = original.__dict__.copy()  # a snapshot: another thread may be running this module
            children: dict[str, Any] = {}
            for name, child in dict(state.get("_modules", {})).items():
                if child is None:
                    children[name] = None
                    continue
                known = self.memo.get(id(child))
                if known is None:
                    known = object.__new__(type(child))
                    self._remember(child, known)
                    todo.append((child, known, f"{where}.{name}" if where else name))
                children[name] = known
                self.names[(id(new), id(known))] = name
            new.__dict__["_parameters"] = {
                n: None if p is None else self.tensor(p, TensorKind.PARAMETER)
                for n, p in dict(state.get("_parameters", {})).items()
            }
            new.__dict__["_buffers"] = {
                n: None if b is None else self.tensor(b, TensorKind.BUFFER)
                for n, b in dict(state.get("_buffers", {})).items()
            }
            new.__dict__["_modules"] = children
        return root

    def _attributes(self, module: torch.nn.Module, new: torch.nn.Module) -> None:
        for key, value in module.__dict__.copy().items():
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
        if isinstance(value, (types.BuiltinMethodType, types.MethodWrapperType)):  # ``sink.append``: the copy's
            owner = getattr(value, "__self__", None)
            new_owner = self.value(owner) if owner is not None and not isinstance(owner, types.ModuleType) else owner
            return value if new_owner is owner else getattr(new_owner, value.__name__)
        if isinstance(value, functools.partial):
            return self._partial(value)
        if isinstance(value, weakref.ref):
            # a weak reference to a module (``self._parent``) points at its copy, kept alive by ``alive``
            target = value()
            if not isinstance(target, torch.nn.Module):
                return value
            copied = self.value(target)
            self.alive.append(copied)
            return weakref.ref(copied)
        if isinstance(value, tuple):
            items = [self.value(v) for v in value]
            if all(a is b for a, b in zip(items, value)):
                return value
            new_tuple = type(value)(*items) if hasattr(value, "_fields") else type(value)(items)
            self._remember(value, new_tuple)
            return new_tuple
        if isinstance(value, (list, dict, set)):
            return self._container(value)
        if type(value).__module__ in ("builtins", "weakref"):
            return value  # other built-ins: frozensets of names, weak containers ...
        if not hasattr(value, "__dict__") and not _slots(type(value)):
            return value
        return self._object(value)

    def _function(self, fn: types.FunctionType) -> types.FunctionType:
        """A function with state (a closure, or mutable defaults: a hook appending to a list, a lambda over a
        module): the same code over converted cells and defaults. Globals stay shared."""
        if not fn.__closure__ and not fn.__defaults__ and not fn.__kwdefaults__:
            return fn
        cells = []
        for cell in fn.__closure__ or ():
            try:
                contents = cell.cell_contents
            except ValueError:  # an empty cell (a name not yet bound)
                cells.append(cell)
                continue
            converted = self.value(contents)
            cells.append(cell if converted is contents else types.CellType(converted))
        defaults = self.value(fn.__defaults__) if fn.__defaults__ else fn.__defaults__
        kwdefaults = self.value(fn.__kwdefaults__) if fn.__kwdefaults__ else fn.__kwdefaults__
        changed = any(a is not b for a, b in zip(cells, fn.__closure__ or ()))
        if not changed and defaults is fn.__defaults__ and _same_items(kwdefaults, fn.__kwdefaults__):
            return fn
        new_fn = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__, defaults, tuple(cells) or None)
        new_fn.__kwdefaults__ = kwdefaults
        new_fn.__dict__.update(fn.__dict__)
        self._remember(fn, new_fn)
        return new_fn

    def _partial(self, value: functools.partial[Any]) -> Any:
        fn, args, keywords = self.value(value.func), self.value(value.args), self.value(value.keywords)
        if fn is value.func and args is value.args and _same_items(keywords, value.keywords):
            return value
        new = functools.partial(fn, *args, **keywords)
        self._remember(value, new)
        return new

    def _container(self, value: list[Any] | dict[Any, Any] | set[Any]) -> Any:
        try:
            # .copy() of the built-ins and of OrderedDict/defaultdict keeps the type and its settings; the copy
            # is also the snapshot iterated below (another thread may be changing the original)
            new: Any = value.copy() if type(value) in _COPYABLE else copy.copy(value)
        except Exception:  # noqa: BLE001 - a container subclass that refuses to be copied is shared
            return value
        if not value:
            return new
        self._remember(value, new)
        if isinstance(new, dict):
            items = list(new.items())
            new.clear()
            for k, v in items:  # keys too: a dict keyed by modules or tensors gets their copies
                new[self.value(k) if isinstance(k, (torch.nn.Module, torch.Tensor)) else k] = self.value(v)
        elif isinstance(new, list):
            new[:] = [self.value(v) for v in list(new)]
        else:
            items = list(new)
            new.clear()
            new.update(self.value(v) for v in items)
        return new

    def _object(self, value: Any) -> Any:
        """An object with a ``__dict__`` or ``__slots__``: a shallow copy whose attributes are converted in turn."""
        try:
            new = copy.copy(value)
        except Exception:  # noqa: BLE001 - objects that cannot be copied (locks, handles ...) are shared
            return value
        if new is value:
            return value
        self._remember(value, new)
        attributes = dict(vars(value)) if hasattr(value, "__dict__") else {}
        for name in _slots(type(value)):
            if hasattr(value, name):
                attributes[name] = getattr(value, name)
        cache = is_kv_cache(value)
        self._in_cache += cache
        try:
            for key, item in attributes.items():
                converted = self.value(item)
                if converted is not item:
                    try:
                        object.__setattr__(new, key, converted)
                    except (AttributeError, TypeError):  # frozen dataclasses of exotic kinds
                        vars(new)[key] = converted
        finally:
            self._in_cache -= cache
        return new


def is_kv_cache(value: Any) -> bool:
    """A ``transformers`` key/value cache or one of its layers (classes of ``transformers.cache_utils``):
    the tensors it holds are the KV cache (:attr:`TensorKind.CACHE`)."""
    return any(klass.__module__.startswith("transformers.cache_utils") for klass in type(value).__mro__)


def _same_items(new: dict[str, Any] | None, old: dict[str, Any] | None) -> bool:
    """Whether a converted dict holds the very objects of the original (compared by identity: tensors
    have no truth value)."""
    if new is None or old is None:
        return new is old
    return new.keys() == old.keys() and all(new[k] is old[k] for k in old)


def _slots(cls: type) -> tuple[str, ...]:
    """The slot names of ``cls`` and its bases (without ``__dict__``/``__weakref__``)."""
    names: list[str] = []
    for klass in cls.__mro__:
        slots = klass.__dict__.get("__slots__", ())
        for name in (slots,) if isinstance(slots, str) else slots:
            if name not in ("__dict__", "__weakref__") and name not in names:
                names.append(name)
    return tuple(names)
