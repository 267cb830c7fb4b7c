"""What a user owns, by traversal: every object reachable from a model and its inputs, and whether any
FakeTensor is among them. Used by the isolation tests to compare before and after an analysis."""

from __future__ import annotations

import types
from typing import Any

import torch
from torch._subclasses.fake_tensor import FakeTensor

_ATOMS = (type(None), bool, int, float, complex, str, bytes, torch.dtype, torch.device, torch.Size)


def _children(obj: Any) -> list[tuple[str, Any]]:
    if isinstance(obj, dict):
        return [(f"[{k!r}]", v) for k, v in obj.items()]
    if isinstance(obj, (list, tuple)):
        return [(f"[{i}]", v) for i, v in enumerate(obj)]
    if isinstance(obj, (set, frozenset)):
        return [(f"{{{i}}}", v) for i, v in enumerate(sorted(obj, key=repr))]
    if isinstance(obj, torch.Tensor):
        return [(".grad", obj.grad)] if obj.is_leaf and obj.grad is not None else []
    if isinstance(obj, (types.FunctionType, types.BuiltinFunctionType, types.ModuleType, type)):
        return []
    if isinstance(obj, types.MethodType):
        return [(".__self__", obj.__self__)]
    if hasattr(obj, "__dict__"):
        return [(f".{k}", v) for k, v in vars(obj).items()]
    return []


def state(*roots: Any) -> dict[str, Any]:
    """path -> (type, id, value): tensors by identity, version, layout, flags and a copy of their values."""
    out: dict[str, Any] = {}
    seen: set[int] = set()
    todo: list[tuple[str, Any]] = [(f"root{i}", r) for i, r in enumerate(roots)]
    while todo:
        path, obj = todo.pop()
        if isinstance(obj, _ATOMS):
            out[path] = obj
            continue
        if id(obj) in seen:
            out[path] = ("seen", id(obj))
            continue
        seen.add(id(obj))
        if isinstance(obj, torch.Tensor):
            values = None if obj.device.type == "meta" or isinstance(obj, FakeTensor) else obj.detach().clone()
            out[path] = (type(obj), id(obj), obj._version, tuple(obj.shape), obj.dtype, obj.device,
                         obj.requires_grad, values)
        else:
            out[path] = (type(obj), id(obj))
        todo.extend((path + name, child) for name, child in _children(obj))
    return out


def assert_same_state(before: dict[str, Any], after: dict[str, Any]) -> None:
    assert before.keys() == after.keys(), (
        f"added: {sorted(after.keys() - before.keys())[:5]}, removed: {sorted(before.keys() - after.keys())[:5]}"
    )
    for path, old in before.items():
        new = after[path]
        if isinstance(old, tuple) and len(old) == 8:  # a tensor
            assert old[:7] == new[:7], f"{path} changed: {old[:7]} -> {new[:7]}"
            if old[7] is not None:
                assert torch.equal(old[7], new[7]), f"{path} changed its values"
        else:
            assert old == new, f"{path} changed: {old!r} -> {new!r}"


def fakes(*roots: Any) -> list[str]:
    """Paths of every FakeTensor reachable from ``roots``."""
    found = []
    seen: set[int] = set()
    todo: list[tuple[str, Any]] = [(f"root{i}", r) for i, r in enumerate(roots)]
    while todo:
        path, obj = todo.pop()
        if isinstance(obj, _ATOMS) or id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, FakeTensor):
            found.append(path)
        todo.extend((path + name, child) for name, child in _children(obj))
    return found
