"""Capture: run the model under a ``TorchDispatchMode`` and turn every aten call into an ``OpRecord``.

The run happens on fake tensors (``FakeTensorMode``): shapes and dtypes propagate, nothing is computed
and no activation memory is allocated. Parameters and buffers are handed to the model through
``torch.func.functional_call`` as fresh fake tensors, so the user's tensors are never read, written or
replaced for longer than the call (functional_call restores them, also when the forward raises).
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch._subclasses.fake_tensor import (
    DataDependentOutputException,
    DynamicOutputShapeException,
    FakeTensor,
    FakeTensorMode,
)
from torch.func import functional_call
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map
from torch.utils.weak import WeakIdKeyDictionary

from rooflens.capture.modules import ModuleTracker
from rooflens.errors import ModelError
from rooflens.formulas import REGISTRY, OpCall
from rooflens.formulas.registry import op_name
from rooflens.types import Convention, Cost, OpRecord, TensorKind, TensorMeta, Widths

NATURAL_WIDTHS = Widths()  # every tensor at its dtype's width

# Operators that only create or reinterpret metadata: no FLOPs, no memory traffic, not recorded.
# (Every op whose schema marks it a view -- view, transpose, expand, slice, select, ... -- is skipped too.)
METADATA_OPS = frozenset(
    {
        "prim.device", "prim.layout", "aten.sym_size", "aten.sym_stride", "aten.sym_numel",
        "aten.sym_storage_offset", "aten.is_same_size", "aten._local_scalar_dense", "aten.item",
        "aten.empty", "aten.empty_strided", "aten.empty_like", "aten.new_empty", "aten.new_empty_strided",
        "aten._unsafe_view", "aten._reshape_alias", "aten.unsafe_split", "aten.unsafe_split_with_sizes",
        "aten.unsafe_chunk", "aten.lift_fresh", "aten.lift_fresh_copy", "aten.set_", "aten.resize_",
        "aten.as_strided_", "aten.transpose_", "aten.t_", "aten.squeeze_", "aten.unsqueeze_",
        "aten.detach_", "aten.record_stream", "aten._assert_async", "aten._assert_tensor_metadata",
        "aten._functional_assert_async", "aten._assert_scalar", "aten.is_nonzero", "aten.equal",
        "aten.dropout", "aten.feature_dropout", "aten.alpha_dropout", "aten._nested_tensor_from_mask_left_aligned",
    }
)

# What fake execution cannot do: the next step is a real run (real parameters) or a clear error (meta).
DATA_DEPENDENT = (DataDependentOutputException, DynamicOutputShapeException)


@dataclass
class Capture:
    records: list[OpRecord]
    calls: Counter[str]
    output_shapes: dict[str, tuple[tuple[int, ...], ...]]
    executed: str  # "fake" or "real"
    diagnostics: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Options:
    """How to count: the FLOP convention, the widths of tensors in memory, and whether to run backward."""

    convention: Convention = Convention.FMA
    widths: Widths = NATURAL_WIDTHS
    backward: bool = False


DEFAULT_OPTIONS = Options()


class CostMode(TorchDispatchMode):
    """Records every aten call with its cost; decomposes operators that have no formula."""

    def __init__(self, tracker: ModuleTracker, kinds: Mapping[int, TensorKind], options: Options) -> None:
        super().__init__()
        self.tracker = tracker
        self.kinds = kinds
        self.convention = options.convention
        self.widths = options.widths
        self.phase = "forward"  # "backward" once the gradients are being computed
        self.paused = False  # True: run operators without recording them (rooflens's own bookkeeping)
        self.records: list[OpRecord] = []
        self.failed_at: tuple[str, str] | None = None  # (operator, module) where the run broke
        self.diagnostics: list[str] = []
        self._via: list[str] = []
        self._view_kinds: WeakIdKeyDictionary = WeakIdKeyDictionary()  # views of parameters and buffers

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        name = op_name(func)
        if self.paused:
            return func(*args, **kwargs)
        if name in METADATA_OPS or getattr(func, "is_view", False):
            out = self._run(func, name, args, kwargs)
            self._inherit_kind(args, out)
            return out
        entry = REGISTRY.get(name)
        if entry is None:
            decomposed = self._decompose(func, name, args, kwargs)
            if decomposed is not NotImplemented:
                return decomposed
        out = self._run(func, name, args, kwargs)
        self.records.append(self._record(func, name, args, kwargs, out, entry))
        return out

    def _run(self, func: Any, name: str, args: Any, kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except Exception:
            if self.failed_at is None:
                self.failed_at = (name, self.tracker.current)
            raise

    def _decompose(self, func: Any, name: str, args: Any, kwargs: Any) -> Any:
        """Run ``func`` as its parts (torch's decomposition table, then its own composite kernel)."""
        candidates: list[Callable[..., Any]] = []
        table = _aten_decompositions()
        if func in table:
            candidates.append(table[func])
        if getattr(func, "_can_decompose", lambda: False)():
            candidates.append(func.decompose)
        for candidate in candidates:
            self._via.append(name)
            mark = len(self.records)
            try:
                with self:
                    result = candidate(*args, **kwargs)
            except Exception:
                del self.records[mark:]  # a failed decomposition leaves no partial records
                self.failed_at = None
                continue
            finally:
                self._via.pop()
            if result is not NotImplemented:
                return result
            del self.records[mark:]
        return NotImplemented

    def _inherit_kind(self, args: Any, out: Any) -> None:
        """A view of a parameter or buffer (``weight.t()``, ``bias.view(...)``) is still that parameter or buffer."""
        source = next((a for a in tree_flatten(args)[0] if isinstance(a, torch.Tensor)), None)
        kind = self._kind(source) if source is not None else TensorKind.ACTIVATION
        if kind is not TensorKind.ACTIVATION:
            for t in tree_flatten(out)[0]:
                if isinstance(t, torch.Tensor) and id(t) not in self.kinds:
                    self._view_kinds[t] = kind

    def _kind(self, t: torch.Tensor) -> TensorKind:
        return self.kinds.get(id(t)) or self._view_kinds.get(t, TensorKind.ACTIVATION)

    def _meta(self, t: torch.Tensor) -> TensorMeta:
        kind = self._kind(t)
        itemsize = t.element_size()
        bits = self.widths.bits_for(kind) if t.is_floating_point() else None
        return TensorMeta(
            shape=tuple(int(s) for s in t.shape),
            dtype=str(t.dtype).removeprefix("torch."),
            itemsize=itemsize,
            kind=kind,
            bits=bits if bits is not None and bits != 8 * itemsize else 0,
        )

    def _record(self, func: Any, name: str, args: Any, kwargs: Any, out: Any, entry: Any) -> OpRecord:
        raw = _bind(func, args, kwargs)
        outs = _out_arguments(func)  # `out=` destinations are written, not read
        seen: set[int] = set()
        inputs: list[TensorMeta] = []
        for leaf in tree_flatten([v for k, v in raw.items() if k not in outs] if raw else (args, kwargs))[0]:
            if isinstance(leaf, torch.Tensor) and id(leaf) not in seen:
                seen.add(id(leaf))
                inputs.append(self._meta(leaf))
        outputs = tuple(self._meta(t) for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor))
        call = OpCall(
            op=name,
            args=tree_map(lambda v: self._meta(v) if isinstance(v, torch.Tensor) else v, raw),
            inputs=tuple(inputs),
            outputs=outputs,
            convention=self.convention,
        )
        via = self._via[0] if self._via else ""
        if entry is not None:
            try:
                compute = entry.formula(call)
                read, written = entry.bytes(call)
                cost = Cost(compute.macs, compute.flops, read, written)
                return OpRecord(name, self.tracker.current, call.inputs, outputs, cost, via=via, phase=self.phase)
            except Exception as e:  # a formula bug must not cost the user the whole analysis
                shapes = ", ".join("x".join(map(str, t.shape)) or "scalar" for t in call.inputs)
                self.diagnostics.append(
                    f"the formula of {name} failed on inputs ({shapes}) in module "
                    f"{self.tracker.current or '<root>'!r}: {type(e).__name__}: {e}; counted as unsupported"
                )
        read, written = sum(t.nbytes for t in call.inputs), sum(t.nbytes for t in outputs)
        return OpRecord(name, self.tracker.current, call.inputs, outputs, Cost(0, 0, read, written),
                        supported=False, via=via, phase=self.phase)


@functools.cache
def _aten_decompositions() -> dict[Any, Callable[..., Any]]:
    """torch's decompositions into core aten operators (not into prims, which have no formulas)."""
    from torch._decomp import core_aten_decompositions

    return dict(core_aten_decompositions())


@functools.cache
def _out_arguments(func: Any) -> frozenset[str]:
    schema = getattr(func, "_schema", None)
    return frozenset(a.name for a in schema.arguments if a.is_out) if schema is not None else frozenset()


def _bind(func: Any, args: Any, kwargs: Any) -> dict[str, Any]:
    """Arguments by their schema names, defaults filled in."""
    bound: dict[str, Any] = {}
    schema = getattr(func, "_schema", None)
    if schema is None:
        return bound
    positional = iter(args)
    n_args = len(args)
    i = 0
    for arg in schema.arguments:
        if not arg.kwarg_only and i < n_args:
            value = next(positional)
            i += 1
        elif arg.name in kwargs:
            value = kwargs[arg.name]
        elif arg.has_default_value():
            value = arg.default_value
        else:
            value = None
        bound[arg.name] = value
    return bound


# ---- running the model ------------------------------------------------------------------------------


def _is_meta(t: torch.Tensor) -> bool:
    return t.device.type == "meta"


def analysis_device(model: torch.nn.Module, inputs: list[torch.Tensor]) -> torch.device:
    """Where the model would run: its first real parameter's device, else its inputs', else the CPU."""
    for t in [*model.parameters(), *model.buffers(), *inputs]:
        if not _is_meta(t):
            return t.device
    return torch.device("cpu")


def _state(model: torch.nn.Module) -> tuple[dict[str, torch.Tensor], dict[int, TensorKind]]:
    """Every parameter and buffer by every name it has (tied weights appear under each of their names)."""
    state: dict[str, torch.Tensor] = {}
    kinds: dict[int, TensorKind] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        state[name] = p
        kinds[id(p)] = TensorKind.PARAMETER
    for name, b in model.named_buffers(remove_duplicate=False):
        state[name] = b
        kinds.setdefault(id(b), TensorKind.BUFFER)
    return state, kinds


def _convert(
    tree: Any, make: Callable[[torch.Tensor], torch.Tensor], memo: dict[int, torch.Tensor]
) -> Any:
    def one(t: Any) -> Any:
        if not isinstance(t, torch.Tensor):
            return t
        if id(t) not in memo:
            memo[id(t)] = make(t)
        return memo[id(t)]

    return tree_map(one, tree)


def _target_dtype(t: torch.Tensor, dtype: torch.dtype | None) -> torch.dtype:
    return dtype if dtype is not None and t.is_floating_point() else t.dtype


def run_capture(
    model: torch.nn.Module,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    options: Options = DEFAULT_OPTIONS,
    dtype: torch.dtype | None = None,
) -> Capture:
    """Analyse one forward call ``model(*args, **kwargs)`` on fake tensors (or real ones if it must)."""
    state, kinds = _state(model)
    leaves = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
    device = analysis_device(model, leaves)
    try:
        return _fake_run(model, state, kinds, args, kwargs, options, dtype, device)
    except _NeedsRealRun as need:
        note = need.fallback_note(state, device)
        capture = _real_run(model, state, kinds, args, kwargs, options, dtype, device)
        capture.diagnostics.insert(0, note)
        return capture


class _NeedsRealRun(Exception):
    def __init__(self, op: str, module: str, cause: BaseException) -> None:
        super().__init__(op)
        self.op, self.module, self.cause = op, module, cause

    def fallback_note(self, state: dict[str, torch.Tensor], device: torch.device) -> str:
        """The diagnostic of a fall-back to a real run; raises ModelError when the model is on meta."""
        module = self.module or "<root>"
        if any(_is_meta(t) for t in state.values()):
            raise ModelError(
                f"{self.op} (in module {module!r}) depends on tensor values, which a model on the meta device does "
                "not have; build the model with real weights (on the CPU) so that rooflens can fall back to a real run"
            ) from self.cause
        return (f"fake execution stopped at {self.op} in module {module!r}, whose output depends on tensor values; "
                f"the model was run on real tensors on the {device.type.upper()} instead")


def _fake_run(
    model: torch.nn.Module,
    state: dict[str, torch.Tensor],
    kinds: dict[int, TensorKind],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    options: Options,
    dtype: torch.dtype | None,
    device: torch.device,
) -> Capture:
    fake_mode = FakeTensorMode(allow_non_fake_inputs=True)
    memo: dict[int, torch.Tensor] = {}

    def fake(t: torch.Tensor) -> torch.Tensor:
        # A fake tensor wraps a meta tensor of the same layout; built directly, this is several times
        # cheaper than dispatching torch.empty_strided through the fake mode (it matters for big models).
        meta = torch.empty_strided(t.shape, t.stride(), dtype=_target_dtype(t, dtype), device="meta")
        out = FakeTensor(fake_mode, meta, device if _is_meta(t) else t.device)
        return out.requires_grad_(t.requires_grad) if t.requires_grad and out.is_floating_point() else out

    fake_state = _convert(state, fake, memo)
    fake_args, fake_kwargs = _convert((args, kwargs), fake, memo)
    fake_kinds = {id(memo[i]): k for i, k in kinds.items() if i in memo}
    return _execute(model, fake_state, fake_kinds, fake_args, fake_kwargs, options, fake_mode, "fake")


def _real_run(
    model: torch.nn.Module,
    state: dict[str, torch.Tensor],
    kinds: dict[int, TensorKind],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    options: Options,
    dtype: torch.dtype | None,
    device: torch.device,
) -> Capture:
    memo: dict[int, torch.Tensor] = {}

    def real(t: torch.Tensor) -> torch.Tensor:
        target = _target_dtype(t, dtype)
        if _is_meta(t):  # an input given as a shape: random values
            if target.is_floating_point:
                return torch.rand(t.shape, dtype=target, device=device)
            return torch.zeros(t.shape, dtype=target, device=device)
        if kinds.get(id(t)) is TensorKind.PARAMETER:  # a new leaf on the same memory: gradients never reach the user's
            return t.detach().to(target).requires_grad_(t.requires_grad and target.is_floating_point)
        return t.to(target, copy=True)  # buffers and inputs: in-place updates must not reach the user's

    with torch.no_grad():
        real_state = _convert(state, real, memo)
        real_args, real_kwargs = _convert((args, kwargs), real, memo)
    real_kinds = {id(memo[i]): k for i, k in kinds.items() if i in memo}
    return _execute(model, real_state, real_kinds, real_args, real_kwargs, options, None, "real")


def _execute(
    model: torch.nn.Module,
    state: dict[str, torch.Tensor],
    kinds: dict[int, TensorKind],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    options: Options,
    fake_mode: FakeTensorMode | None,
    executed: str,
) -> Capture:
    tracker = ModuleTracker(model, backward=options.backward)
    mode = CostMode(tracker, kinds, options)
    with contextlib.ExitStack() as stack:
        stack.enter_context(torch.enable_grad() if options.backward else torch.no_grad())
        stack.enter_context(warnings.catch_warnings())
        # torchvision's fake nms warns about a deprecated torch helper on every call; not the user's concern
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"torchvision\._meta_registrations")
        if fake_mode is not None:
            stack.enter_context(fake_mode)
        stack.enter_context(tracker)
        stack.enter_context(mode)
        try:
            out = functional_call(model, state, args, kwargs, tie_weights=True, strict=False)
            if options.backward:
                _backward(out, mode, tracker)
        except DATA_DEPENDENT as e:
            op, module = mode.failed_at or ("an operator", tracker.current)
            raise _NeedsRealRun(op, module, e) from e
        except Exception as e:
            op, module = mode.failed_at or ("", tracker.current)
            where = f"in module {module!r} ({_type_name(model, module)})" if module else "in the model's forward"
            during = f" while running {op}" if op else ""
            raise ModelError(f"the model raised {type(e).__name__} {where}{during}: {e}") from e
    return Capture(mode.records, tracker.calls, tracker.output_shapes, executed, mode.diagnostics)


def _backward(out: Any, mode: CostMode, tracker: ModuleTracker) -> None:
    """The backward of ``loss = sum of every floating-point output``: gradients of the output are ones."""
    roots = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor) and t.requires_grad]
    if not roots:
        raise ModelError(
            "backward=True, but no output of the model requires grad: no parameter that requires grad reached it"
        )
    mode.paused = True
    grads = [torch.ones_like(t) for t in roots]
    mode.paused = False
    mode.phase = "backward"
    tracker.start_backward()
    torch.autograd.backward(roots, grads)


def _type_name(model: torch.nn.Module, path: str) -> str:
    try:
        return type(model.get_submodule(path)).__name__
    except AttributeError:
        return "?"
