"""Capture: run the model under a ``TorchDispatchMode`` and turn every aten call into an ``OpRecord``.

The run happens on fake tensors (``FakeTensorMode``): shapes and dtypes propagate, nothing is computed
and no activation memory is allocated. It is one body of the capture harness
(:func:`rooflens.capture.harness.run_model`): the model that runs is a structural copy of the user's,
so nothing of the user's is read beyond its attributes, written or replaced.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from rooflens.capture import memo
from rooflens.capture.harness import Session, run_model, run_op
from rooflens.capture.hops import hop_name, is_hop, run_hop
from rooflens.capture.modules import ModuleTracker
from rooflens.capture.quantized import describe, packed_arguments, packed_inputs
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
        "aten._linalg_check_errors",
    }
)


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
    """Records every aten call with its cost; decomposes operators that have no formula; runs higher-order
    operators so that what they call is recorded (:mod:`rooflens.capture.hops`). On fake tensors, a call
    seen before is answered from :mod:`rooflens.capture.memo` and its record's cost from this run's memo."""

    supports_higher_order_operators = True

    def __init__(
        self,
        tracker: ModuleTracker,
        kinds: Mapping[int, TensorKind],
        options: Options,
        fake_mode: FakeTensorMode | None = None,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.fake_mode = fake_mode
        self.tracker = tracker
        self.kinds = kinds
        self.convention = options.convention
        self.widths = options.widths
        self.paused = False  # True: run operators without recording them (rooflens's own bookkeeping)
        self.records: list[OpRecord] = []
        self.diagnostics: list[str] = []
        self._via: list[str] = []
        # views of parameters and buffers, by id; the views are kept alive so that their ids stay theirs
        self._view_kinds: dict[int, TensorKind] = {}
        self._views: list[torch.Tensor] = []
        # (memo key, kinds of the tensor arguments) -> a record of that call (its module, via and phase aside)
        self._costs: dict[tuple[Any, ...], OpRecord] = {}

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        name = op_name(func)
        if self.paused:
            return func(*args, **kwargs)
        if is_hop(func):
            out = run_hop(self, func, args, kwargs)
            if out is not NotImplemented:
                return out
            name = hop_name(func)
        if name in METADATA_OPS or getattr(func, "is_view", False):
            out, _ = self._run(func, name, args, kwargs)
            self._inherit_kind(args, out)
            return out
        entry = REGISTRY.get(name)
        if entry is None:
            decomposed = self._decompose(func, name, args, kwargs)
            if decomposed is not NotImplemented:
                return decomposed
        out, key = self._run(func, name, args, kwargs)
        self.records.append(self._record(func, name, args, kwargs, out, entry, key))
        return out

    def _run(self, func: Any, name: str, args: Any, kwargs: Any) -> tuple[Any, tuple[Any, ...] | None]:
        """The operator's outputs (from the memo when this call was seen before) and the memo key (None: not memoised)."""
        key = memo.key(func, args, kwargs, self.fake_mode) if self.fake_mode is not None else None
        if key is not None:
            out = memo.lookup(key, func, args, kwargs, self.fake_mode)  # type: ignore[arg-type]
            if out is not None:
                return out, key
        out = run_op(self.tracker, func, name, args, kwargs)
        if key is not None:
            memo.store(key, func, args, kwargs, out, self.fake_mode)  # type: ignore[arg-type]
        return out, key

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
            except Exception:  # noqa: BLE001 - a decomposition that fails is skipped; the op is then unsupported
                del self.records[mark:]  # a failed decomposition leaves no partial records
                self.tracker.failed_at = None
                continue
            finally:
                self._via.pop()
            if result is not NotImplemented:
                return result
            del self.records[mark:]
        return NotImplemented

    # -- what capture.hops needs: positions in the records, their cost, dropping a span, a note
    def mark(self) -> int:
        return len(self.records)

    def cost_between(self, start: int, end: int) -> tuple[int, int]:
        span = self.records[start:end]
        return sum(r.cost.flops for r in span), sum(r.cost.bytes for r in span)

    def drop(self, start: int, end: int) -> None:
        del self.records[start:end]

    def note(self, text: str) -> None:
        if text not in self.diagnostics:
            self.diagnostics.append(text)

    def _inherit_kind(self, args: Any, out: Any) -> None:
        """A view of a parameter or buffer (``weight.t()``, ``bias.view(...)``) is still that parameter or buffer."""
        source = next(_tensors(args), None)
        kind = self._kind(source) if source is not None else TensorKind.ACTIVATION
        if kind is not TensorKind.ACTIVATION:
            for t in _tensors(out):
                if isinstance(t, torch.Tensor) and id(t) not in self.kinds:
                    self._view_kinds[id(t)] = kind
                    self._views.append(t)

    def _kind(self, t: torch.Tensor) -> TensorKind:
        i = id(t)
        return self.kinds.get(i) or self._view_kinds.get(i, TensorKind.ACTIVATION)

    def _meta(self, t: torch.Tensor) -> TensorMeta:
        kind = self._kind(t)
        name, itemsize, floating = _dtype_facts(t.dtype)
        bits = self.widths.bits_for(kind) if floating else None
        return TensorMeta(
            shape=tuple(t.shape),
            dtype=name,
            itemsize=itemsize,
            kind=kind,
            bits=bits if bits is not None and bits != 8 * itemsize else 0,
            group=self.widths.group_for(kind, tuple((t if t._base is None else t._base).shape)) if floating else 0,
        )

    def _record(
        self, func: Any, name: str, args: Any, kwargs: Any, out: Any, entry: Any, key: tuple[Any, ...] | None = None
    ) -> OpRecord:
        via = self._via[0] if self._via else ""
        module, phase = self.tracker.current, self.tracker.phase
        seen = (key, self._signature(args, kwargs)) if key is not None else None
        known = self._costs.get(seen) if seen is not None else None
        if known is not None:
            return OpRecord(name, module, known.inputs, known.outputs, known.cost, known.supported, via, phase, known.family)
        record = self._measure(func, name, args, kwargs, out, entry, module, via, phase)
        if seen is not None and (record.supported or entry is None):  # a formula that failed is not remembered
            self._costs[seen] = record
        return record

    def _signature(self, args: Any, kwargs: Any) -> tuple[tuple[TensorKind, int], ...]:
        """What a record depends on beyond the memo key: each tensor argument's kind, and which arguments are the
        same tensor (``x * x`` reads one tensor, ``x * y`` two of the same layout)."""
        first: dict[int, int] = {}
        return tuple((self._kind(t), first.setdefault(id(t), i)) for i, t in enumerate(_tensors((args, kwargs))))

    def _measure(
        self, func: Any, name: str, args: Any, kwargs: Any, out: Any, entry: Any, module: str, via: str, phase: str
    ) -> OpRecord:
        raw = _bind(func, args, kwargs)
        outs = _out_arguments(func)  # `out=` destinations are written, not read
        metas: dict[int, TensorMeta] = {}  # one TensorMeta per tensor of this call

        def meta(v: Any) -> Any:
            if not isinstance(v, torch.Tensor):
                return v
            known = metas.get(id(v))
            if known is None:
                known = metas[id(v)] = self._meta(v)
            return known

        packed = packed_arguments(func)  # quantized kernels' packed weights: described as parameter tensors
        if packed:
            raw = {k: describe(v, self.widths) if k in packed else v for k, v in raw.items()}
        args_meta = {k: _map_tensors(meta, v) for k, v in raw.items()}
        read = [v for k, v in raw.items() if k not in outs] if raw else [args, kwargs]
        inputs = tuple({id(t): meta(t) for t in _tensors(read)}.values())
        if packed:
            inputs += tuple(t for k in packed for t in packed_inputs(raw.get(k)))
        outputs = tuple(meta(t) for t in _tensors(out))
        call = OpCall(op=name, args=args_meta, inputs=inputs, outputs=outputs, convention=self.convention)
        if entry is not None:
            try:
                compute = entry.formula(call)
                read, written = entry.bytes(call)
                cost = Cost(compute.macs, compute.flops, read, written)
                return OpRecord(name, module, inputs, outputs, cost, via=via, phase=phase, family=entry.family)
            except Exception as e:  # noqa: BLE001 - a formula bug must not cost the user the whole analysis
                shapes = ", ".join("x".join(map(str, t.shape)) or "scalar" for t in inputs)
                self.diagnostics.append(
                    f"the formula of {name} failed on inputs ({shapes}) in module "
                    f"{module or '<root>'!r}: {type(e).__name__}: {e}; counted as unsupported"
                )
        read, written = sum(t.nbytes for t in inputs), sum(t.nbytes for t in outputs)
        return OpRecord(name, module, inputs, outputs, Cost(0, 0, read, written), supported=False, via=via, phase=phase)


def _tensors(tree: Any) -> Iterator[torch.Tensor]:
    """The tensors in nested lists, tuples and dicts, in order: what operator arguments and results hold
    (a plain walk, several times cheaper than torch's general pytree for these few shapes)."""
    if isinstance(tree, torch.Tensor):
        yield tree
    elif isinstance(tree, (list, tuple)):
        for item in tree:
            yield from _tensors(item)
    elif isinstance(tree, dict):
        for item in tree.values():
            yield from _tensors(item)


def _map_tensors(fn: Callable[[torch.Tensor], Any], tree: Any) -> Any:
    if isinstance(tree, torch.Tensor):
        return fn(tree)
    if isinstance(tree, (list, tuple)) and any(isinstance(t, (torch.Tensor, list, tuple)) for t in tree):
        return type(tree)(_map_tensors(fn, t) for t in tree) if type(tree) in (list, tuple) else tree
    return tree


@functools.cache
def _dtype_facts(dtype: torch.dtype) -> tuple[str, int, bool]:
    """(name without "torch.", bytes per element, floating point) of a dtype."""
    return str(dtype).removeprefix("torch."), dtype.itemsize, dtype.is_floating_point


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
    """Arguments by their schema names, defaults filled in; ``arg0``, ``arg1`` ... and the keywords for an
    operator without a schema (higher-order operators).

    torch.fx's ``normalize_function`` does the same through ``inspect.Signature.bind``: 31 us a call
    against 9 us here (aten.convolution, this 2-core machine), paid once per recorded operator.
    """
    bound: dict[str, Any] = {}
    schema = getattr(func, "_schema", None)
    if schema is None:
        return {**{f"arg{i}": a for i, a in enumerate(args)}, **kwargs}
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


def run_capture(
    model: torch.nn.Module,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    options: Options = DEFAULT_OPTIONS,
    dtype: torch.dtype | None = None,
    value_checks: str = "assume",
) -> Capture:
    """Count one forward call ``model(*args, **kwargs)`` (and its backward) on fake tensors, or real ones if it must."""

    def count(session: Session) -> CostMode:
        mode = CostMode(session.tracker, session.kinds, options, session.fake_mode)
        with torch.enable_grad() if options.backward else torch.no_grad(), mode:
            out = session.root(*session.args, **session.kwargs)
            if options.backward:
                _backward(out, mode, session.tracker)
        return mode

    mode, session = run_model(
        model, args, kwargs, count, dtype=dtype, track_backward=options.backward, value_checks=value_checks
    )
    tracker = session.tracker
    return Capture(mode.records, tracker.calls, tracker.output_shapes, session.executed,
                   [*session.diagnostics, *mode.diagnostics])


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
    tracker.start_backward()
    torch.autograd.backward(roots, grads)
