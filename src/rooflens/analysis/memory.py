"""Memory footprint: the live-memory timeline of a forward pass (or a training step) and its peak.

The model runs once on fake tensors (``FakeTensorMode``; nothing is computed, no activation memory is
allocated) under a ``TorchDispatchMode`` of this module that follows the *storage* of every tensor:

- **Allocation**: an operator output whose storage is new allocates that storage's bytes, at the
  precision settings' widths (``weight_bits`` for parameters and buffers, ``act_bits`` for every other
  floating-point tensor; integer and boolean tensors keep their width). Views share their base's
  storage and in-place operators return an existing one, so neither adds memory.
- **Release**: a weak reference to the storage object calls back when its last reference goes: the
  last tensor (or view) on it, held by Python or by the autograd graph (saved tensors). Under CPython's
  reference counting this is deterministic, so the fake run and a run on real tensors give the same
  timeline (``gc`` is collected before and disabled during the run so that cycles do not delay a release).
- **Timeline**: one event per operator: what it allocated, what was released since the previous
  operator, and the live bytes after it. Releases happen between operators, so the peak is right after
  an operator: its outputs are live while its inputs still are.

Inputs count as live from the start (the caller holds them), the outputs until the end. Parameters and
buffers are reported apart (``weights_bytes``, ``buffers_bytes``), never in the timeline.

Training (``train=True``): forward in train mode, ``loss = sum of the floating-point outputs``,
``loss.backward()`` into gradients of the *fake* parameters, then (``optimizer=...``) a real
``torch.optim`` step on them, all tracked. The optimizer state is made before the tracked step (a
steady-state step, as from the second step on), so the step's timeline holds only its temporaries.
The step's peak is the timeline's peak plus weights, buffers, optimizer state and fp32 master weights.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from functools import partial
from typing import Any

import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.nn.modules import module as nn_module
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from rooflens.capture.engine import CostMode, Options
from rooflens.capture.harness import Session, isolated, run_model, run_op, unwrap
from rooflens.capture.hops import is_hop, run_hop
from rooflens.capture.inputs import InputSize, model_inputs, parse_bits, parse_dtype
from rooflens.capture.modules import ModuleTracker
from rooflens.errors import InputError, ModelError
from rooflens.formulas import REGISTRY
from rooflens.formulas.registry import op_name
from rooflens.hardware.spec import Precision
from rooflens.types import TensorKind, Widths

MB = 1_000_000
MIB = 1 << 20

OPTIMIZERS = ("sgd", "sgd-momentum", "adam", "adamw")
# fp32 state elements per parameter element: momentum buffer; Adam's first and second moments.
_STATE_PER_PARAM = {"sgd": 0, "sgd-momentum": 1, "adam": 2, "adamw": 2}

PHASES = ("forward", "backward", "recompute", "optimizer")


# ---- results ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MemoryEvent:
    """One operator of the run and the live memory right after it (bytes)."""

    index: int
    op: str  # aten overload packet, e.g. "aten.addmm"
    module: str  # dotted path of the innermost module it ran in ("" is the root)
    phase: str  # "forward", "backward", "recompute" (activation checkpointing) or "optimizer"
    allocated_bytes: int  # new storages this operator created
    freed_bytes: int  # storages released since the previous operator
    live_bytes: int  # inputs, activations, gradients and temporaries alive after the operator

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class MemorySummary:
    """The torchsummary footer, beside the peak of the live-memory timeline. All in bytes.

    torchsummary assumes 4 bytes per number whatever the dtype: input size = input elements x 4;
    forward/backward pass size = 2 (x2 for gradients) x the output elements of every module called
    (all but the root and the ``nn.Sequential`` and ``nn.ModuleList`` containers) x 4; params size =
    parameters x 4; estimated total = their sum. (torchsummary prints these divided by 1024**2 and calls
    them MB: they are MiB.) ``peak_bytes`` is the number that matters: the timeline's peak of live
    activation memory plus weights and buffers (plus gradients, optimizer state and master weights for a
    training step).
    """

    input_bytes: int
    forward_backward_bytes: int
    params_bytes: int
    estimated_total_bytes: int
    peak_bytes: int
    peak_at: str

    def mb(self, name: str) -> float:
        """A field in MB (1e6 bytes)."""
        return float(getattr(self, name)) / MB

    def mib(self, name: str) -> float:
        """A field in MiB (2**20 bytes): what torchsummary labels MB."""
        return float(getattr(self, name)) / MIB

    def lines(self) -> list[str]:
        rows = [
            ("Input size", self.input_bytes),
            ("Forward/backward pass size", self.forward_backward_bytes),
            ("Params size", self.params_bytes),
            ("Estimated total size", self.estimated_total_bytes),
            (f"Peak from the timeline, weights included (at {self.peak_at or '<root>'})", self.peak_bytes),
        ]
        width = max(len(name) for name, _ in rows)
        return [f"{name:<{width}}  {b / MB:10.2f} MB  {b / MIB:10.2f} MiB" for name, b in rows]

    def __str__(self) -> str:
        return "\n".join(self.lines())

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class MemoryReport:
    """Memory of one forward pass (or training step) of a model. Bytes throughout.

    ``peak_bytes`` is the peak over the timeline of live non-weight memory (inputs, activations, outputs;
    for a training step also gradients and temporaries), at operator ``peak_op`` in module ``peak_at``.
    ``weights_bytes``/``buffers_bytes``: parameters and buffers, each tensor once. ``activations_bytes``:
    every storage the forward's operators allocated (not views, not in-place results), summed;
    ``activation_elements`` their elements (#activations). ``total_peak_bytes``: the peak with the
    weights and buffers.

    Training (``train=True``): ``saved_activation_bytes`` = what is alive at the end of the forward
    besides the inputs and outputs (held by the autograd graph); ``gradient_bytes`` = the parameters'
    gradients; ``optimizer_state_bytes`` = the optimizer's state (SGD 0, momentum 1, Adam/AdamW 2 fp32
    numbers per parameter; a few step counters left out); ``master_weights_bytes`` = fp32 master copies
    under mixed precision; ``train_peak_bytes`` = weights + buffers + optimizer state + master weights +
    ``peak_bytes``; ``recompute_flops`` = FLOPs the checkpointed modules' recomputation runs.
    """

    model: str
    executed: str  # "fake" or "real"
    peak_bytes: int
    peak_at: str
    peak_op: str
    peak_index: int  # index of the peak event in ``timeline`` (-1: no operator ran)
    timeline: tuple[MemoryEvent, ...]
    weights_bytes: int
    buffers_bytes: int
    activations_bytes: int
    activation_elements: int
    inputs_bytes: int
    outputs_bytes: int
    weight_bits: int | None = None
    act_bits: int | None = None
    # torchsummary's inputs: elements of the inputs, of every called module's outputs, of the parameters
    input_elements: int = 0
    module_output_elements: int = 0
    parameter_elements: int = 0
    # training step (None for inference)
    train: bool = False
    optimizer: str | None = None
    mixed_precision: bool = False
    saved_activation_bytes: int | None = None
    gradient_bytes: int | None = None
    optimizer_state_bytes: int | None = None
    master_weights_bytes: int | None = None
    train_peak_bytes: int | None = None
    checkpointed: tuple[str, ...] = ()
    recompute_flops: int | None = None
    diagnostics: tuple[str, ...] = field(default_factory=tuple)

    @property
    def total_peak_bytes(self) -> int:
        """The whole footprint at the peak: for training ``train_peak_bytes``, else weights + buffers + peak."""
        if self.train_peak_bytes is not None:
            return self.train_peak_bytes
        return self.weights_bytes + self.buffers_bytes + self.peak_bytes

    def peak_event(self) -> MemoryEvent | None:
        return self.timeline[self.peak_index] if self.peak_index >= 0 else None

    def summary(self) -> MemorySummary:
        """torchsummary's figures (4 bytes a number) beside the peak of the timeline."""
        inp = 4 * self.input_elements
        fwd_bwd = 2 * 4 * self.module_output_elements
        params = 4 * self.parameter_elements
        return MemorySummary(
            input_bytes=inp,
            forward_backward_bytes=fwd_bwd,
            params_bytes=params,
            estimated_total_bytes=inp + fwd_bwd + params,
            peak_bytes=self.total_peak_bytes,
            peak_at=self.peak_at,
        )

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "timeline":
                value = [e.as_dict() for e in value]
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        out["total_peak_bytes"] = self.total_peak_bytes
        out["summary"] = self.summary().as_dict()
        return out


# ---- the tracking mode ------------------------------------------------------------------------------


@dataclass
class _Storage:
    nbytes: int
    elements: int
    role: str  # "weight", "buffer", "input", "activation", "optimizer", "master"
    live: bool  # counted in the timeline's live bytes
    ref: Any = None  # weakref.ref to the storage, with the release callback


class _MemoryMode(TorchDispatchMode):
    """Follows the storage of every operator output: allocation, and release when its last reference goes.
    Higher-order operators run through :func:`rooflens.capture.hops.run_hop`; of a ``torch.cond`` whose
    predicate is unknown, both branches' temporaries are followed (an upper bound)."""

    supports_higher_order_operators = True

    def __init__(self, tracker: ModuleTracker, widths: Widths) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.tracker = tracker
        self.widths = widths
        self.storages: dict[int, _Storage] = {}  # id(storage) -> what it is
        self.live = 0
        self.freed = 0  # released since the last event
        self.events: list[MemoryEvent] = []
        self.paused = False
        self.closed = False
        self.forward_bytes = 0
        self.forward_elements = 0
        self.on_op: Callable[[Any, str, Any, Any, Any], None] | None = None  # recompute FLOPs counter
        self.diagnostics: list[str] = []

    # -- registration
    def _bytes(self, t: torch.Tensor, nbytes: int, kind: TensorKind) -> tuple[int, int]:
        itemsize = t.element_size()
        elements = nbytes // itemsize if itemsize else 0
        bits = self.widths.bits_for(kind) if t.is_floating_point() else None
        if bits is None:
            return nbytes, elements
        return (elements * bits + 7) // 8, elements

    def _storage(self, t: torch.Tensor) -> Any:
        try:
            return t.untyped_storage()
        except (RuntimeError, NotImplementedError, TypeError) as e:  # sparse, nested, opaque subclasses
            msg = f"a {type(t).__name__} of shape {tuple(t.shape)} has no storage to follow ({e}); not counted"
            if msg not in self.diagnostics:
                self.diagnostics.append(msg)
            return None

    def register(self, t: torch.Tensor, role: str, *, live: bool) -> _Storage | None:
        """Track ``t``'s storage (once); returns its record, or None when it was already tracked."""
        st = self._storage(t)
        if st is None:
            return None
        key = id(st)
        known = self.storages.get(key)
        if known is not None and known.ref is not None and known.ref() is st:
            return None
        kind = {"weight": TensorKind.PARAMETER, "buffer": TensorKind.BUFFER, "master": TensorKind.PARAMETER}.get(
            role, TensorKind.ACTIVATION
        )
        nbytes, elements = self._bytes(t, st.nbytes(), kind)
        if role == "master":  # fp32 whatever the precision settings
            nbytes = st.nbytes()
        info = _Storage(nbytes, elements, role, live)
        info.ref = weakref.ref(st, partial(self._release, key))
        self.storages[key] = info
        if live:
            self.live += nbytes
        return info

    def _release(self, key: int, ref: Any) -> None:
        info = self.storages.get(key)
        if info is None or info.ref is not ref:
            return
        del self.storages[key]
        if info.live and not self.closed:
            self.live -= info.nbytes
            self.freed += info.nbytes

    def bytes_of(self, tensors: Iterable[torch.Tensor], roles: Sequence[str] | None = None) -> int:
        """Bytes of the distinct tracked storages of ``tensors``."""
        seen: set[int] = set()
        total = 0
        for t in tensors:
            st = self._storage(t)
            if st is None or id(st) in seen:
                continue
            seen.add(id(st))
            info = self.storages.get(id(st))
            if info is not None and (roles is None or info.role in roles):
                total += info.nbytes
        return total

    def close(self) -> None:
        """Stop following: later releases change nothing, and no callback keeps running."""
        self.closed = True
        self.storages.clear()

    # -- dispatch
    # -- what capture.hops needs
    def mark(self) -> int:
        return len(self.events)

    def cost_between(self, start: int, end: int) -> tuple[int, int]:
        return 0, sum(e.allocated_bytes for e in self.events[start:end])

    def drop(self, start: int, end: int) -> None:
        """Nothing: memory that was allocated stays in the timeline."""

    def note(self, text: str) -> None:
        if text not in self.diagnostics:
            self.diagnostics.append(text)

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if is_hop(func) and not self.paused:
            out = run_hop(self, func, args, kwargs)
            if out is not NotImplemented:
                return out
        out = run_op(self.tracker, func, op_name(func), args, kwargs)
        if self.paused:
            return out
        tensors = [t for t in tree_leaves(out) if isinstance(t, torch.Tensor)]
        if not tensors:  # metadata queries (prim.device, aten.sym_size ...): no memory, no event
            return out
        name = op_name(func)
        allocated = 0
        for t in tensors:
            info = self.register(t, "activation", live=True)
            if info is not None:
                allocated += info.nbytes
                if self.tracker.phase == "forward":
                    self.forward_bytes += info.nbytes
                    self.forward_elements += info.elements
        if self.on_op is not None and self.tracker.phase == "recompute":
            self.on_op(func, name, args, kwargs, out)
        self.events.append(MemoryEvent(
            len(self.events), name, self.tracker.current, self.tracker.phase, allocated, self.freed, self.live
        ))
        self.freed = 0
        return out


# ---- helpers that run around the model --------------------------------------------------------------


class _OutputCounter:
    """torchsummary's forward/backward figure: output elements of every module called, except the root and
    the ``nn.Sequential``/``nn.ModuleList`` containers (torchsummary hooks no others), each call counted."""

    def __init__(self, root: torch.nn.Module, mode: _MemoryMode) -> None:
        self.ids = {
            id(m)
            for m in root.modules()
            if m is not root and not isinstance(m, (torch.nn.Sequential, torch.nn.ModuleList))
        }
        self.mode = mode
        self.elements = 0
        self._handle: Any = None

    def _hook(self, module: torch.nn.Module, args: Any, output: Any) -> None:
        if id(module) in self.ids and self.mode.tracker.phase == "forward":
            self.elements += sum(t.numel() for t in tree_leaves(output) if isinstance(t, torch.Tensor))

    def __enter__(self) -> _OutputCounter:  # noqa: PYI034
        self._handle = nn_module.register_module_forward_hook(self._hook)
        return self

    def __exit__(self, *exc: object) -> None:
        self._handle.remove()


class _Checkpointer:
    """Activation checkpointing of chosen modules, through global hooks (the user's modules are untouched).

    The forward pre-hook enters torch's own non-reentrant checkpoint (``torch.utils.checkpoint``'s
    generator, what ``checkpoint(fn, use_reentrant=False)`` runs) and the forward hook leaves it: tensors
    the module saves for backward are dropped and recomputed, by calling the module again on the same
    positional inputs, when the backward needs them. A module inside a checkpointed one is not
    checkpointed again; a module called with keyword arguments gets them back only positionally.
    """

    def __init__(self, session: Session, paths: Sequence[str], mode: _MemoryMode) -> None:
        self.targets = {i: p for i, p in session.tracker.paths.items() if p in set(paths)}
        self.mode = mode
        self.open: list[tuple[int, Any]] = []  # (module id, generator)
        self.recomputing = 0
        self._handles: list[Any] = []

    def _pre(self, module: torch.nn.Module, args: Any) -> None:
        if id(module) not in self.targets or self.open or self.recomputing or not torch.is_grad_enabled():
            return
        from torch.utils import checkpoint as cp

        tracker = self.mode.tracker

        def recompute(*_: Any, **__: Any) -> None:
            previous = tracker.phase
            tracker.phase = "recompute"
            self.recomputing += 1
            try:
                module(*args)
            finally:
                self.recomputing -= 1
                tracker.phase = previous

        gen = cp._checkpoint_without_reentrant_generator(recompute, preserve_rng_state=False)
        next(gen)
        self.open.append((id(module), gen))

    def _post(self, module: torch.nn.Module, args: Any, output: Any) -> None:
        if self.open and self.open[-1][0] == id(module) and not self.recomputing:
            _, gen = self.open.pop()
            with contextlib.suppress(StopIteration):
                next(gen)

    def __enter__(self) -> _Checkpointer:  # noqa: PYI034
        self._handles = [
            nn_module.register_module_forward_pre_hook(self._pre),
            nn_module.register_module_forward_hook(self._post, always_call=True),
        ]
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        for _, gen in reversed(self.open):  # a forward that raised inside a checkpointed module
            gen.close()
        self.open.clear()


@contextlib.contextmanager
def _no_gc() -> Any:
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _make_optimizer(name: str, params: list[torch.Tensor]) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(params, lr=1e-3)
    if name == "sgd-momentum":
        return torch.optim.SGD(params, lr=1e-3, momentum=0.9)
    if name == "adam":
        return torch.optim.Adam(params, lr=1e-3)
    return torch.optim.AdamW(params, lr=1e-3)


# ---- the run ----------------------------------------------------------------------------------------


@dataclass
class _Config:
    widths: Widths
    dtype: torch.dtype | None
    train: bool
    optimizer: str | None
    mixed_precision: bool
    checkpoint: tuple[str, ...]


def _analyse(
    model: torch.nn.Module,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    config: _Config,
    *,
    name: str | None = None,
    real: bool = False,
    value_checks: str = "assume",
) -> MemoryReport:
    wrapper = type(model).__name__
    model, unwrapped = unwrap(model)
    param_elements = sum(t.numel() for t in {id(p): p for p in model.parameters()}.values())

    def body(session: Session) -> MemoryReport:
        return _run(session, config, name=name or wrapper, param_elements=param_elements)

    report, session = run_model(model, args, kwargs, body, dtype=config.dtype, track_backward=config.train, real=real,
                                 value_checks=value_checks)
    notes = [unwrapped] if unwrapped else []
    return dataclasses.replace(report, diagnostics=(*notes, *session.diagnostics, *report.diagnostics))


def _run(session: Session, config: _Config, *, name: str, param_elements: int) -> MemoryReport:
    """The tracked forward (and training step) of one session of the harness."""
    tracker = session.tracker
    mode = _MemoryMode(tracker, config.widths)
    counter = _OutputCounter(session.root, mode)
    if config.train:
        session.root.train()  # the copy's flags: the user's modules keep theirs

    # Parameters and buffers apart; inputs live from the start.
    params = session.tensors(TensorKind.PARAMETER)
    buffers = session.tensors(TensorKind.BUFFER)
    for t in params:
        mode.register(t, "weight", live=False)
    for t in buffers:
        mode.register(t, "buffer", live=False)
    weights_bytes = mode.bytes_of(params, ("weight",))
    buffers_bytes = mode.bytes_of(buffers, ("buffer",))
    input_leaves = session.input_tensors()
    for t in input_leaves:
        mode.register(t, "input", live=True)
    inputs_bytes = mode.bytes_of(input_leaves, ("input",))

    trainable = [p for p in params if p.requires_grad]
    result: dict[str, Any] = {}
    opt = None
    masters: list[torch.Tensor] = []
    if config.train and config.optimizer is not None:
        opt, masters = _prepare_optimizer(config, trainable, mode, session.fake_mode)
    recompute = _RecomputeCounter(tracker, session.kinds) if config.checkpoint else None
    if recompute is not None:
        mode.on_op = recompute

    def step() -> None:
        out = session.root(*session.args, **session.kwargs)
        outs = [t for t in tree_leaves(out) if isinstance(t, torch.Tensor)]
        result["outputs_bytes"] = mode.bytes_of(outs, ("activation",))
        result["forward_live"] = mode.live
        if not config.train:
            return
        roots = [t for t in outs if t.requires_grad and t.is_floating_point()]
        if not roots:
            raise ModelError(
                "train=True, but no output of the model requires grad: no parameter that requires grad reached it"
            )
        tracker.start_backward()
        loss = roots[0].sum()
        for t in roots[1:]:
            loss = loss + t.sum()
        loss.backward()
        del loss, roots
        result["gradient_bytes"] = mode.bytes_of([p.grad for p in trainable if p.grad is not None])
        del out, outs
        if opt is not None:
            tracker.phase = "optimizer"
            with torch.no_grad():
                _optimizer_step(opt, trainable, masters)

    with contextlib.ExitStack() as stack:
        stack.enter_context(torch.enable_grad() if config.train else torch.no_grad())
        stack.enter_context(counter)
        if config.checkpoint:
            stack.enter_context(_Checkpointer(session, config.checkpoint, mode))
        stack.enter_context(_no_gc())
        stack.callback(mode.close)
        stack.enter_context(mode)
        step()
        optimizer_state_bytes = _state_bytes(config, trainable) if opt is not None else None
        master_bytes = mode.bytes_of(masters, ("master",)) if masters else (0 if config.train else None)

    events = tuple(mode.events)
    peak_index = max(range(len(events)), key=lambda i: (events[i].live_bytes, -i)) if events else -1
    peak = events[peak_index] if events else None
    peak_bytes = peak.live_bytes if peak is not None else inputs_bytes
    train_fields: dict[str, Any] = {}
    if config.train:
        opt_bytes = optimizer_state_bytes or 0
        train_fields = {
            "saved_activation_bytes": result["forward_live"] - inputs_bytes - result["outputs_bytes"],
            "gradient_bytes": result.get("gradient_bytes", 0),
            "optimizer_state_bytes": opt_bytes,
            "master_weights_bytes": master_bytes or 0,
            "train_peak_bytes": weights_bytes + buffers_bytes + opt_bytes + (master_bytes or 0) + peak_bytes,
            "recompute_flops": recompute.flops if recompute is not None else 0,
        }
    return MemoryReport(
        model=name,
        executed=session.executed,
        peak_bytes=peak_bytes,
        peak_at=peak.module if peak is not None else "",
        peak_op=peak.op if peak is not None else "",
        peak_index=peak_index,
        timeline=events,
        weights_bytes=weights_bytes,
        buffers_bytes=buffers_bytes,
        activations_bytes=mode.forward_bytes,
        activation_elements=mode.forward_elements,
        inputs_bytes=inputs_bytes,
        outputs_bytes=result.get("outputs_bytes", 0),
        weight_bits=config.widths.weight_bits,
        act_bits=config.widths.act_bits,
        input_elements=sum(t.numel() for t in input_leaves),
        module_output_elements=counter.elements,
        parameter_elements=param_elements,
        train=config.train,
        optimizer=config.optimizer,
        mixed_precision=config.mixed_precision,
        checkpointed=config.checkpoint,
        diagnostics=tuple(mode.diagnostics),
        **train_fields,
    )


class _RecomputeCounter:
    """FLOPs of the operators run again by activation checkpointing, by rooflens's formulas."""

    def __init__(self, tracker: ModuleTracker, kinds: Mapping[int, TensorKind]) -> None:
        self._cost = CostMode(tracker, kinds, Options())
        self.flops = 0

    def __call__(self, func: Any, name: str, args: Any, kwargs: Any, out: Any) -> None:
        entry = REGISTRY.get(name)
        if entry is not None:
            self.flops += self._cost._record(func, name, args, kwargs, out, entry).cost.flops


def _prepare_optimizer(
    config: _Config, trainable: list[torch.Tensor], mode: _MemoryMode, fake_mode: FakeTensorMode | None
) -> tuple[torch.optim.Optimizer, list[torch.Tensor]]:
    """The optimizer over the (fake) parameters, its state made beforehand (a steady-state step)."""
    assert config.optimizer is not None
    masters: list[torch.Tensor] = []
    with torch.no_grad(), fake_mode if fake_mode is not None else contextlib.nullcontext():
        if config.mixed_precision:
            masters = [p.detach().float().requires_grad_(True) for p in trainable]
            for m in masters:
                mode.register(m, "master", live=False)
        targets = masters or trainable
        opt = _make_optimizer(config.optimizer, targets)
        for t in targets:
            t.grad = torch.zeros_like(t)
        opt.step()  # makes the state; its values do not matter
        for t in targets:
            t.grad = None
    for st in opt.state.values():
        for v in st.values():
            if isinstance(v, torch.Tensor):
                mode.register(v, "optimizer", live=False)
    return opt, masters


def _optimizer_step(opt: torch.optim.Optimizer, trainable: list[torch.Tensor], masters: list[torch.Tensor]) -> None:
    if masters:  # mixed precision: fp32 gradients for the fp32 master weights, then copy back
        for m, p in zip(masters, trainable):
            m.grad = p.grad.float() if p.grad is not None else None
    opt.step()
    if masters:
        for m, p in zip(masters, trainable):
            m.grad = None
            p.copy_(m)


def _state_bytes(config: _Config, trainable: list[torch.Tensor]) -> int:
    """Optimizer state: per parameter element 0 (SGD), 1 (momentum) or 2 (Adam's moments) numbers, each
    fp32 under mixed precision, else of the parameter's own dtype (torch makes them with ``zeros_like``).
    Adam's step counters (one scalar per parameter tensor) are left out."""
    per = _STATE_PER_PARAM[config.optimizer or "sgd"]
    return sum(per * p.numel() * (4 if config.mixed_precision else p.element_size()) for p in trainable)


# ---- public entry point -----------------------------------------------------------------------------


def memory(
    model: torch.nn.Module,
    inputs: Any = None,
    *,
    input_size: InputSize | None = None,
    dtype: torch.dtype | str | None = None,
    input_dtype: torch.dtype | str | None = None,
    train: bool = False,
    optimizer: str | None = None,
    mixed_precision: bool = False,
    checkpoint: Sequence[str] = (),
    precision: Precision | str | None = None,
    weight_bits: int | None = None,
    act_bits: int | None = None,
    name: str | None = None,
    value_checks: str = "assume",
) -> MemoryReport:
    """The memory of one forward pass of ``model`` (or of a training step): timeline, peak and where.

    ``inputs``/``input_size``/``dtype``/``input_dtype`` as for :func:`rooflens.analyze`.
    ``precision``: as for :func:`rooflens.analyze`, the width in memory of every floating-point tensor
    (``"int8"``: 1 byte per element); ``weight_bits``/``act_bits``: bits per element in memory of
    floating-point parameters and buffers / of the other floating-point tensors, overriding ``precision``
    (default: each dtype's width).
    ``train``: a training step: forward in train mode, backward of ``loss = sum of the outputs`` and,
    with ``optimizer`` (``"sgd"``, ``"sgd-momentum"``, ``"adam"``, ``"adamw"``), the optimizer's step.
    ``mixed_precision``: weights, activations and gradients in 16 bits (``dtype``, float16 by default),
    with fp32 master weights and fp32 optimizer state.
    ``checkpoint``: module paths whose activations are recomputed in the backward instead of saved.
    ``value_checks``: as for :func:`rooflens.analyze` (yes/no reads of tensors on a meta model).

    The model runs on fake tensors: nothing is computed, and the model, its parameters (and their
    ``.grad``), buffers, hooks and ``training`` flags are left as they were.
    """
    if not isinstance(model, torch.nn.Module):
        raise InputError(f"memory() expects a torch.nn.Module, got {type(model).__name__}")
    bits = Precision.parse(precision).bits if precision is not None else None
    config = _config(
        model, dtype=parse_dtype(dtype, "dtype"), train=train, optimizer=optimizer, mixed_precision=mixed_precision,
        checkpoint=checkpoint, weight_bits=parse_bits(weight_bits, "weight_bits") or bits,
        act_bits=parse_bits(act_bits, "act_bits") or bits,
    )
    in_dtype = parse_dtype(input_dtype, "input_dtype", floating=False) or config.dtype or torch.float32
    args, kwargs = model_inputs(inputs, input_size, in_dtype)
    with isolated():
        return _analyse(model, args, kwargs, config, name=name, value_checks=value_checks)


def _config(
    model: torch.nn.Module,
    *,
    dtype: torch.dtype | None,
    train: bool,
    optimizer: str | None,
    mixed_precision: bool,
    checkpoint: Sequence[str],
    weight_bits: int | None,
    act_bits: int | None,
) -> _Config:
    if optimizer is not None:
        optimizer = str(optimizer).lower()
        if optimizer not in OPTIMIZERS:
            raise InputError(f"unknown optimizer {optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
        if not train:
            raise InputError(f"optimizer={optimizer!r} needs train=True (an optimizer only runs in a training step)")
    if mixed_precision:
        if not train:
            raise InputError("mixed_precision=True needs train=True (fp32 master weights belong to a training step)")
        dtype = dtype or torch.float16
        if dtype not in (torch.float16, torch.bfloat16):
            raise InputError(f"mixed_precision=True computes in float16 or bfloat16, not dtype={dtype}")
    if isinstance(checkpoint, str):
        checkpoint = (checkpoint,)
    paths = tuple(dict.fromkeys(checkpoint))
    if paths:
        if not train:
            raise InputError("checkpoint=... needs train=True (checkpointing changes what the backward keeps)")
        known = {p for p, _ in model.named_modules()}
        missing = [p for p in paths if p not in known]
        if missing:
            raise InputError(
                f"checkpoint names {', '.join(map(repr, missing))}, not a module of {type(model).__name__}; "
                "give dotted paths such as 'layer1' or 'layer1.0' (see model.named_modules())"
            )
        if "" in paths:
            raise InputError("checkpoint='' (the whole model) saves nothing to recompute from; name submodules")
    return _Config(Widths(weight_bits, act_bits), dtype, bool(train), optimizer, bool(mixed_precision), paths)
