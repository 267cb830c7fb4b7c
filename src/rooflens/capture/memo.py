"""A memo of operator outputs on fake tensors: what an operator returned once, it returns again.

An aten operator's output metadata (shape, strides, dtype, device) is a function of its inputs'
metadata and its other arguments. ``FakeTensorMode`` knows that too and caches, but its cache hit
still costs 50-165 us a call on this project's 2-core machine (measured: ``relu`` 48, ``t`` 63, ``mm``
72, ``convolution`` 165; it hashes and validates the arguments in Python and rebuilds each output through
its own bookkeeping), and some operators it does not cache at all (``native_batch_norm``: 264 us a call,
``empty.memory_format``: 77 us; resnet50 spends 40 % of its fake forward in batch norms). A loop model
that calls the same dozen operators 512 times over pays that on every step. This memo keys a call on
exactly what the output can depend on and, on a hit, builds the outputs directly (a meta tensor of the
recorded layout, wrapped as a fake tensor; in-place and ``out=`` results are the argument itself):
12-20 us for key and outputs (measured for the same three).

What is rebuilt how: new tensors from their recorded layout (shape, strides, dtype, device); in-place and
``out=`` results are the argument itself; views (and lists of views: ``split``, ``unbind``) as
``as_strided`` views of the argument they were taken from, at their recorded sizes, strides and storage
offsets, so they share its storage as the fake mode's views do.

What is never memoised (each goes through the fake mode as before): in-place view changes, operators
whose output shape depends on values (``nonzero``, ``unique``, ``.item()``), calls with a real tensor, a
fake tensor of another mode, a fake tensor that carries a constant (fake tensors propagate small
constants, which later value reads may need), a symbolic size or a non-strided tensor, calls that change
an argument's layout (``resize_``, ``set_``, ``out=`` resizing), new results that alias an input without
saying so or start at a storage offset, and views that change the dtype or carry a conjugate or negative
bit. A call is only memoised after it succeeded through the fake mode, so every error the fake mode raises
is still raised. The key holds the default dtype but no other process-wide setting: changing a backend
flag that alters the layouts torch picks (on a CUDA fake device) while analyses run is not covered.
The memo holds at most ``_LIMIT`` calls; when full it starts again empty (a long-lived process keeps its
speed).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import torch
from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode, in_kernel_invocation_manager
from torch.multiprocessing.reductions import StorageWeakRef

# Scalars an operator's output metadata may depend on; their type is part of the key (1, 1.0 and True differ)
_PLAIN = (int, float, bool, str, type(None), torch.dtype, torch.device, torch.layout, torch.memory_format)
_SKIP_TAGS = frozenset({torch.Tag.inplace_view, torch.Tag.dynamic_output_shape, torch.Tag.data_dependent_output})
_LIMIT = 50_000  # entries, process-wide (a few hundred bytes each); when full, the memo starts again

_Strided = tuple[torch.Size, tuple[int, ...], int]  # shape, strides, storage offset


class _New(NamedTuple):
    """A new tensor of this layout."""

    shape: torch.Size
    stride: tuple[int, ...]
    dtype: torch.dtype
    device: torch.device


class _View(NamedTuple):
    """Views of argument ``arg`` (one, or a list of them for ``split``/``unbind``) with these layouts."""

    arg: int
    layouts: tuple[_Strided, ...]
    many: bool


_Output = int | _New | _View  # int: the argument of that index itself (in-place, out=)
_OUTPUTS: dict[tuple[Any, ...], tuple[_Output, ...]] = {}


@functools.cache
def _returns(func: Any) -> tuple[tuple[str, int], ...] | None:
    """Per return of ``func``: ("new", -1), ("same", i) for the argument it writes and returns, ("view", i)
    or ("views", i) for a view or a list of views of argument i; ``None`` when the call must not be memoised."""
    schema = getattr(func, "_schema", None)
    if schema is None or _SKIP_TAGS & set(getattr(func, "tags", ())):
        return None
    out: list[tuple[str, int]] = []
    for ret in schema.returns:
        kind = str(ret.type)
        if kind == "List[Tensor]" and getattr(func, "is_view", False) and len(schema.returns) == 1:
            out.append(("views", 0))  # split, unbind, chunk: views of self
            continue
        if kind != "Tensor":
            return None
        if ret.alias_info is None:
            out.append(("new", -1))
            continue
        alias = ret.alias_info.before_set
        index = next((i for i, a in enumerate(schema.arguments) if a.alias_info and a.alias_info.before_set == alias), None)
        if index is None:
            return None
        out.append(("same" if ret.alias_info.is_write else "view", index))
    return tuple(out) if out else None


def _part(value: Any, parts: list[Any], fake_mode: FakeTensorMode) -> bool:
    """Append what ``value`` contributes to a key; False when the call cannot be memoised."""
    if isinstance(value, FakeTensor):
        if value.fake_mode is not fake_mode or value.constant is not None:
            return False
        parts.append((value.shape, value.stride(), value.storage_offset(), value.dtype, value.fake_device))
    elif isinstance(value, (torch.Tensor, torch.SymInt, torch.SymFloat, torch.SymBool)):
        return False
    elif isinstance(value, (list, tuple)):
        parts.append(len(value))
        return all(_part(v, parts, fake_mode) for v in value)
    elif isinstance(value, _PLAIN):
        parts.append((type(value), value))
    else:
        return False
    return True


def key(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], fake_mode: FakeTensorMode) -> tuple[Any, ...] | None:
    """What the outputs of ``func(*args, **kwargs)`` can depend on; ``None`` when the call is not memoised."""
    if _returns(func) is None:
        return None
    parts: list[Any] = [func, torch.get_default_dtype(), len(args)]
    try:
        if not all(_part(a, parts, fake_mode) for a in args):
            return None
        for name, value in kwargs.items():
            parts.append(name)
            if not _part(value, parts, fake_mode):
                return None
        k = tuple(parts)
        hash(k)
    except (RuntimeError, TypeError):  # stride() of a sparse or nested fake tensor; an unhashable value
        return None
    return k


def lookup(k: tuple[Any, ...], func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], fake_mode: FakeTensorMode) -> Any:
    """The outputs of a memoised call, built anew; ``None`` when the call has not been seen."""
    outputs = _OUTPUTS.get(k)
    if outputs is None:
        return None
    outs: list[Any] = []
    for output in outputs:
        if isinstance(output, int):
            outs.append(_argument(func, output, args, kwargs))
        elif isinstance(output, _New):
            with torch._C._DisableTorchDispatch():  # the fake mode is active below the caller's dispatch mode
                meta = torch.empty_strided(output.shape, output.stride, dtype=output.dtype, device="meta")
                outs.append(FakeTensor(fake_mode, meta, output.device))
        else:
            base = _argument(func, output.arg, args, kwargs)
            with in_kernel_invocation_manager(fake_mode):  # base's own storage, seen as the meta tensor it wraps
                metas = [torch.as_strided(base, *layout) for layout in output.layouts]
            views = [FakeTensor(fake_mode, m, base.fake_device) for m in metas]
            outs.append(views if output.many else views[0])
    return outs[0] if len(outs) == 1 else tuple(outs)


def store(
    k: tuple[Any, ...], func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any, fake_mode: FakeTensorMode
) -> None:
    """Remember the outputs of a call that went through the fake mode, if they can be rebuilt from layouts."""
    if k in _OUTPUTS:
        return
    if len(_OUTPUTS) >= _LIMIT:
        _OUTPUTS.clear()  # another thread's lookup meanwhile misses and goes through the fake mode
    if key(func, args, kwargs, fake_mode) != k:  # the call changed an argument's layout (resize_, set_, out=)
        return
    returns = _returns(func)
    assert returns is not None
    results = out if isinstance(out, tuple) else (out,)
    if len(results) != len(returns):
        return
    storages = {StorageWeakRef(t.untyped_storage()) for t in _leaves((args, kwargs))}
    outputs: list[_Output] = []
    for (how, index), result in zip(returns, results, strict=True):
        output = _output(how, index, result, func, args, kwargs, storages)
        if output is None:
            return
        outputs.append(output)
    _OUTPUTS[k] = tuple(outputs)


def _output(
    how: str, index: int, result: Any, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
    storages: set[StorageWeakRef],
) -> _Output | None:
    """How to rebuild one result; None when it cannot be rebuilt from its layout."""
    if how == "same":
        return index if result is _argument(func, index, args, kwargs) else None
    many = how == "views"
    results = result if many and isinstance(result, list) else [result]
    if not all(_plain_fake(r) for r in results):
        return None
    if how == "new":
        storage = StorageWeakRef(result.untyped_storage())
        if storage in storages or result.storage_offset() != 0:  # aliases an input or another result
            return None
        storages.add(storage)
        return _New(result.shape, result.stride(), result.dtype, result.fake_device)
    base = _argument(func, index, args, kwargs)
    if not isinstance(base, FakeTensor) or any(
        r.dtype != base.dtype or r.fake_device != base.fake_device
        or StorageWeakRef(r.untyped_storage()) != StorageWeakRef(base.untyped_storage())
        for r in results
    ):
        return None
    return _View(index, tuple((r.shape, r.stride(), r.storage_offset()) for r in results), many)


def _plain_fake(t: Any) -> bool:
    """A strided fake tensor with no constant and no conjugate or negative bit."""
    return isinstance(t, FakeTensor) and t.constant is None and not (t.is_conj() or t.is_neg())


def _argument(func: Any, index: int, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if index < len(args):
        return args[index]
    return kwargs.get(func._schema.arguments[index].name)


def _leaves(tree: Any) -> list[torch.Tensor]:
    if isinstance(tree, torch.Tensor):
        return [tree]
    if isinstance(tree, (list, tuple)):
        return [t for item in tree for t in _leaves(item)]
    if isinstance(tree, dict):
        return [t for item in tree.values() for t in _leaves(item)]
    return []
