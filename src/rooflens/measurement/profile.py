"""Per-operator profile: measured time of every analysed operator record and of every module.

How it works:

1. The model runs on real tensors under ``torch.profiler`` (CPU activity; CUDA activity too on a GPU),
   ``warmup`` untimed calls first, then one traced call that is thrown away (the profiler's warm-up step:
   its own start-up cost lands there), then ``iters`` profiled calls. Each call is wrapped in a ``rooflens::iter`` range,
   and, through torch's *global* module hooks (removed afterwards; the model is not touched), every
   module call in a ``rooflens::module::<path>`` range, so each profiled event knows its module.
2. The operator events of a call are its top-level operators: events named ``ns::op`` (``aten::addmm``)
   that no other operator event encloses; what they call (``aten::conv2d`` -> ``aten::convolution`` ->
   ``aten::mkldnn_convolution``) forms their subtree and belongs to them.
3. The events are aligned in order with ``report.records`` by a greedy scan. A record fits an event
   when both ran in the same module and the record's operator (``aten.convolution``), or the operator it
   was decomposed from (its ``via``), is the event or one of the operators in its subtree. An event may
   take several consecutive records (a composite such as ``aten::linear`` whose ``aten::addmm`` is the
   record, or a fused kernel that the analysis decomposed into parts); the subtrees they take must be
   disjoint. When the next record does not fit the next event, the scan looks ahead (32 events and 32
   records) and skips whichever side resynchronises sooner; what it skips is reported as unmatched.
4. An event's time goes to the records it took, in proportion to the time of the subtree each took
   (records that share one subtree -- parts of a decomposed operator -- share its time equally), so the
   whole event time is attributed. Times are averaged over the ``iters`` calls.

Per module, the measured time is the time of every top-level operator event that ran inside the module
(matched or not); its roofline time, FLOPs and bytes are the report's (cumulative) figures, so
``efficiency = roofline / measured`` compares like with like. Measured times include the profiler's
per-operator overhead (a few microseconds per event on the CPU), which weighs on small operators. On
CUDA, event times are GPU (kernel) times; on MPS the profiler sees only the CPU side (launches).
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import itertools
import os
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import torch
from torch.nn.modules import module as nn_module
from torch.utils._pytree import tree_leaves

from rooflens.analysis.modules import lineage
from rooflens.capture.engine import METADATA_OPS
from rooflens.errors import InputError, ModelError
from rooflens.measurement.timer import (
    Progress,
    check_model,
    intra_op_threads,
    measurement_device,
    measurement_dtype,
    prepared_model,
    real_inputs,
    synchronize,
    whole_number,
)
from rooflens.report.report import Report
from rooflens.types import OpRecord

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self from Python 3.11

ITER_MARK = "rooflens::iter"
MODULE_MARK = "rooflens::module::"
LOOKAHEAD = 32

_OP_EVENT = re.compile(r"^(\w+)::(\w+)$")
_NOT_OP_NAMESPACES = frozenset({"rooflens", "autograd", "profiler", "Optimizer", "enumerate", "cuda", "torch"})


# ---- results ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UnmatchedEvent:
    """Profiled operators that no record took, grouped by name (per call: averaged over the iterations)."""

    name: str  # rooflens spelling, e.g. "aten.flatten"
    count: float  # events per call
    seconds: float  # their time per call
    modules: tuple[str, ...]  # where they ran
    # True: views and operators that returned their input (flatten, select, dropout in eval ...): they
    # compute nothing and the analysis records none of them on purpose
    aliasing: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "count": self.count, "seconds": self.seconds, "modules": list(self.modules),
            "aliasing": self.aliasing,
        }


@dataclass(frozen=True)
class ModuleProfile:
    """One module, cumulative (itself and its submodules): measured against the roofline.

    ``measured_seconds``: every profiled operator that ran in the module; ``matched_seconds``: the part
    attributed to the report's records. ``roofline_seconds``/``flops``/``bytes``: the report's figures
    (``roofline_seconds`` is None when the report has no hardware).
    """

    path: str
    type_name: str
    measured_seconds: float
    matched_seconds: float
    roofline_seconds: float | None
    flops: int
    bytes: int
    records: int
    matched_records: int

    @property
    def depth(self) -> int:
        return 0 if not self.path else self.path.count(".") + 1

    @property
    def efficiency(self) -> float | None:
        """Roofline time / measured time (1: at the roofline; None without hardware or time)."""
        if self.roofline_seconds is None or self.measured_seconds <= 0:
            return None
        return self.roofline_seconds / self.measured_seconds

    @property
    def lost_seconds(self) -> float | None:
        """Measured minus roofline time: what the module loses against its roofline."""
        return None if self.roofline_seconds is None else self.measured_seconds - self.roofline_seconds

    @property
    def achieved_flops_per_s(self) -> float:
        return self.flops / self.measured_seconds if self.measured_seconds > 0 else 0.0

    @property
    def achieved_bytes_per_s(self) -> float:
        return self.bytes / self.measured_seconds if self.measured_seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "type": self.type_name,
            "depth": self.depth,
            "measured_seconds": self.measured_seconds,
            "matched_seconds": self.matched_seconds,
            "roofline_seconds": self.roofline_seconds,
            "efficiency": self.efficiency,
            "lost_seconds": self.lost_seconds,
            "flops": self.flops,
            "bytes": self.bytes,
            "achieved_flops_per_s": self.achieved_flops_per_s,
            "achieved_bytes_per_s": self.achieved_bytes_per_s,
            "records": self.records,
            "matched_records": self.matched_records,
        }


@dataclass(frozen=True)
class OperatorProfile:
    """Measured time per operator record and per module, averaged over ``iters`` profiled calls.

    ``record_seconds[i]`` belongs to ``report.records[i]`` (None: never matched); ``record_events[i]``
    names the profiled operator it was matched to. ``wall_seconds``: one profiled call end to end;
    ``profiled_seconds``: the sum of its top-level operator events (the rest is Python and profiler).
    """

    device: str
    iters: int
    threads: int | None
    wall_seconds: float
    profiled_seconds: float
    events_per_call: float  # top-level operator events per call
    matched_events_per_call: float  # those of them that took records (the rest are unmatched_events)
    record_seconds: tuple[float | None, ...]
    record_events: tuple[str | None, ...]
    unmatched_records: tuple[int, ...]
    unmatched_events: tuple[UnmatchedEvent, ...]
    modules: Mapping[str, ModuleProfile]
    has_roofline: bool
    notes: tuple[str, ...] = ()
    _records: tuple[OpRecord, ...] = field(default=(), repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "modules", MappingProxyType(dict(self.modules)))

    @property
    def matched_seconds(self) -> float:
        """Time attributed to records (at most ``profiled_seconds``)."""
        return sum(s for s in self.record_seconds if s is not None)

    @property
    def unmatched_seconds(self) -> float:
        return sum(e.seconds for e in self.unmatched_events)

    @property
    def matched_records(self) -> int:
        return sum(s is not None for s in self.record_seconds)

    @property
    def match_rate(self) -> float:
        """Share of the report's records that were matched to a profiled event."""
        return self.matched_records / len(self.record_seconds) if self.record_seconds else 1.0

    def by_lost_time(self, *, depth: int | None = None) -> list[ModuleProfile]:
        """Modules (down to ``depth``; None: all) by time lost against the roofline, most first.

        Without hardware in the report, by measured time. Cumulative: a parent includes its children.
        """
        mods = [m for m in self.modules.values() if depth is None or m.depth <= depth]
        return sorted(mods, key=lambda m: (-(m.lost_seconds if m.lost_seconds is not None else m.measured_seconds),
                                           m.path))

    def by_operator(self) -> list[dict[str, Any]]:
        """Matched records per operator: calls and measured seconds, most time first."""
        acc: dict[str, list[Any]] = {}
        for r, s in zip(self._records, self.record_seconds):
            if s is not None:
                slot = acc.setdefault(r.op, [0, 0.0])
                slot[0] += 1
                slot[1] += s
        rows = [{"op": op, "calls": n, "seconds": t} for op, (n, t) in acc.items()]
        rows.sort(key=lambda d: (-d["seconds"], d["op"]))
        return rows

    def as_dict(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "iters": self.iters,
            "threads": self.threads,
            "wall_seconds": self.wall_seconds,
            "profiled_seconds": self.profiled_seconds,
            "matched_seconds": self.matched_seconds,
            "unmatched_seconds": self.unmatched_seconds,
            "events_per_call": self.events_per_call,
            "matched_events_per_call": self.matched_events_per_call,
            "records": len(self.record_seconds),
            "matched_records": self.matched_records,
            "match_rate": self.match_rate,
            "record_seconds": list(self.record_seconds),
            "record_events": list(self.record_events),
            "unmatched_records": list(self.unmatched_records),
            "unmatched_events": [e.as_dict() for e in self.unmatched_events],
            "modules": [m.as_dict() for m in self.modules.values()],
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class ModuleRow:
    """One line of the per-module table (base units; None where there is no roofline)."""

    path: str
    type_name: str
    depth: int
    measured_seconds: float
    roofline_seconds: float | None
    efficiency: float | None
    achieved_flops_per_s: float
    lost_seconds: float | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "type": self.type_name,
            "depth": self.depth,
            "measured_seconds": self.measured_seconds,
            "roofline_seconds": self.roofline_seconds,
            "efficiency": self.efficiency,
            "achieved_flops_per_s": self.achieved_flops_per_s,
            "lost_seconds": self.lost_seconds,
        }


def module_rows(profile: OperatorProfile, depth: int | None = None, *, sort: str = "lost") -> list[ModuleRow]:
    """Rows for the per-module table: modules down to ``depth`` (None: all), cumulative.

    ``sort="lost"``: most time lost against the roofline first (by measured time without hardware);
    ``sort="tree"``: the module tree's order. Modules in which nothing ran are left out.
    """
    if sort == "lost":
        mods = profile.by_lost_time(depth=depth)
    elif sort == "tree":
        mods = [m for m in profile.modules.values() if depth is None or m.depth <= depth]
    else:
        raise InputError(f"sort={sort!r}: choose 'lost' or 'tree'")
    return [
        ModuleRow(m.path, m.type_name, m.depth, m.measured_seconds, m.roofline_seconds, m.efficiency,
                  m.achieved_flops_per_s, m.lost_seconds)
        for m in mods
        if m.measured_seconds > 0 or m.records
    ]


# ---- profiling -------------------------------------------------------------------------------------


def profile_operators(
    model: torch.nn.Module,
    inputs: Any,
    report: Report,
    *,
    input_size: Sequence[int] | Sequence[Sequence[int]] | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | str | None = None,
    threads: int | None = None,
    warmup: int = 3,
    iters: int = 10,
    progress: Progress | None = None,
) -> OperatorProfile:
    """Profile ``model`` on real tensors and match the profiled operators to ``report``'s records.

    ``report``: ``rooflens.analyze`` of the same model and input shapes (with ``hardware=`` for the
    roofline comparison). ``inputs``/``input_size``, ``device``, ``dtype``, ``threads``: as for
    :func:`rooflens.measurement.measure`. See the module docstring for the matching rules.
    """
    if not isinstance(report, Report):
        raise InputError(f"profile_operators() needs the model's Report (rooflens.analyze), got {type(report).__name__}")
    dev = measurement_device(device)
    dt = measurement_dtype(dtype)
    warmup = whole_number(warmup, "warmup", minimum=0)
    iters = whole_number(iters, "iters", minimum=1)
    check_model(model)
    tell = progress or (lambda phase, done, total: None)
    kind = dev.type
    with intra_op_threads(threads), prepared_model(model, dev, dt) as runnable:
        args, kwargs = real_inputs(inputs, input_size, dev, dt)
        _check_shapes(report, args, kwargs)
        activities = [torch.profiler.ProfilerActivity.CPU]
        if kind == "cuda":
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        try:
            with torch.inference_mode():
                for k in range(max(1, warmup)):
                    runnable(*args, **kwargs)
                    tell("warmup", k + 1, max(1, warmup))
                synchronize(kind)
                # the profiler's first step traces but is thrown away: its start-up cost lands there
                schedule = torch.profiler.schedule(wait=0, warmup=1, active=iters, repeat=1)
                with (
                    _ModuleRanges(runnable),
                    _native_stderr_silenced(),  # kineto writes start/stop lines to fd 2 from C++
                    torch.profiler.profile(activities=activities, schedule=schedule) as prof,
                ):
                    for k in range(iters + 1):
                        with torch.profiler.record_function(ITER_MARK):
                            runnable(*args, **kwargs)
                            synchronize(kind)
                        prof.step()
                        tell("profiling", k + 1, iters + 1)
        except (InputError, ModelError):
            raise
        except Exception as e:
            raise ModelError(f"the model raised {type(e).__name__} while being profiled: {e}") from e
        used_threads = torch.get_num_threads()
    tell("matching", 0, 1)
    calls = _calls(prof.events(), kind)
    result = _build(report, calls, str(dev), used_threads, kind)
    tell("matching", 1, 1)
    return result


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Send the process's file descriptor 2 to /dev/null for the duration (Python's sys.stderr is flushed first)."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no real fd 2 (embedded interpreters, some notebooks)
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _check_shapes(report: Report, args: Any, kwargs: Any) -> None:
    shapes = [tuple(t.shape) for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
    analysed = [tuple(t.shape) for t in report.inputs]
    if analysed and shapes != analysed:
        raise InputError(
            f"the report was analysed with input shapes {analysed} but the profile would run {shapes}; "
            "analyse and profile the same inputs"
        )


class _ModuleRanges:
    """A profiler range ``rooflens::module::<path>`` around every module call, through global hooks.

    Paths are those of ``named_modules()`` (a module used under several names: its first name), as in
    the analysis. The hooks are global (the model's own hook dictionaries stay empty) and removed on exit.
    """

    def __init__(self, root: torch.nn.Module) -> None:
        self.paths = {id(m): name for name, m in root.named_modules()}
        self.stack: list[tuple[int, Any]] = []
        self.handles: list[Any] = []

    def _pre(self, module: torch.nn.Module, args: Any) -> None:
        path = self.paths.get(id(module))
        if path is not None:
            rf = torch.profiler.record_function(MODULE_MARK + path)
            rf.__enter__()
            self.stack.append((id(module), rf))

    def _post(self, module: torch.nn.Module, args: Any, output: Any) -> None:
        if self.stack and self.stack[-1][0] == id(module):
            _, rf = self.stack.pop()
            rf.__exit__(None, None, None)

    def __enter__(self) -> Self:
        self.handles = [
            nn_module.register_module_forward_pre_hook(self._pre),
            nn_module.register_module_forward_hook(self._post, always_call=True),
        ]
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles = []
        while self.stack:  # only if a forward hook was skipped: close the ranges left open
            _, rf = self.stack.pop()
            with contextlib.suppress(Exception):
                rf.__exit__(None, None, None)


# ---- events ----------------------------------------------------------------------------------------


@functools.cache
def _op_name(event_name: str) -> str | None:
    """``aten::addmm`` -> ``aten.addmm``; None for what is not an operator (ranges, runtime calls)."""
    m = _OP_EVENT.match(event_name)
    if m is None:
        return None
    ns, op = m.groups()
    if ns == "aten":
        return f"aten.{op}"
    if ns in _NOT_OP_NAMESPACES:
        return None
    try:
        packet = getattr(getattr(torch.ops, ns), op)
    except (AttributeError, RuntimeError):
        return None
    return f"{ns}.{op}" if isinstance(packet, torch._ops.OpOverloadPacket) else None


@functools.cache
def _computes_nothing(name: str, *, leaf: bool) -> bool:
    """A view or metadata operator; for a leaf event also a composite op that called nothing (returned
    its input, like ``aten::dropout`` in eval mode or ``aten::contiguous`` on a contiguous tensor)."""
    if name in METADATA_OPS:
        return True
    ns, _, op = name.partition(".")
    try:
        packet = getattr(getattr(torch.ops, ns), op)
        overloads = [getattr(packet, o) for o in packet.overloads()]
    except (AttributeError, RuntimeError):
        return False
    if any(o.is_view for o in overloads):
        return True
    return leaf and any(
        torch._C._dispatch_has_kernel_for_dispatch_key(o.name(), "CompositeImplicitAutograd") for o in overloads
    )


@dataclass
class _Event:
    """A top-level operator event: its subtree of operators in preorder (index 0 is the event itself)."""

    module: str
    names: list[str]  # per node
    seconds: list[float]  # per node, inclusive of its subtree
    parent: list[int]  # per node (-1 for the event itself)
    end: list[int]  # per node: its subtree is nodes[i:end[i]]

    @property
    def name(self) -> str:
        return self.names[0]

    @property
    def total(self) -> float:
        return self.seconds[0]

    @functools.cached_property
    def canon(self) -> list[str]:
        return [_canonical(n) for n in self.names]

    @functools.cached_property
    def canon_set(self) -> frozenset[str]:
        return frozenset(self.canon)

    @functools.cached_property
    def positions(self) -> dict[str, list[int]]:
        """Canonical operator name -> its nodes, in preorder."""
        out: dict[str, list[int]] = {}
        for i, n in enumerate(self.canon):
            out.setdefault(n, []).append(i)
        return out

    @property
    def aliasing(self) -> bool:
        """Nothing but views: a view or metadata operator, or a composite whose operators all are."""
        if len(self.names) == 1:
            return _computes_nothing(self.names[0], leaf=True)
        return all(_computes_nothing(n, leaf=False) for n in self.names[1:])

    def signature(self) -> tuple[Any, ...]:
        return (self.module, tuple(self.names))


@dataclass
class _Call:
    wall: float
    events: list[_Event]


def _seconds_of(ev: Any, kind: str) -> float:
    if kind == "cuda":
        us: Any = getattr(ev, "device_time_total", None)
        if us is None:
            us = getattr(ev, "cuda_time_total", 0.0)
        return float(us) * 1e-6
    return float(ev.cpu_time_total) * 1e-6


def _calls(events: Any, kind: str) -> list[_Call]:
    """The profiled calls (without the discarded one), each with its top-level operator events."""
    calls: list[_Call] = []
    for ev in events:
        if ev.name != ITER_MARK:  # (inside the profiler's ProfilerStep#n range)
            continue
        tops: list[_Event] = []
        _collect(ev, "", tops, kind)
        calls.append(_Call(float(ev.cpu_time_total) * 1e-6, tops))
    return calls


def _collect(ev: Any, module: str, out: list[_Event], kind: str) -> None:
    """Walk the ranges below ``ev``; every operator event not below another operator is top-level."""
    for child in ev.cpu_children:
        name = child.name
        if name.startswith(MODULE_MARK):
            _collect(child, name[len(MODULE_MARK):], out, kind)
            continue
        op = _op_name(name)
        if op is None:
            _collect(child, module, out, kind)
            continue
        event = _Event(module, [], [], [], [])
        _subtree(child, -1, event, kind)
        out.append(event)


def _subtree(ev: Any, parent: int, event: _Event, kind: str) -> None:
    op = _op_name(ev.name)
    me = parent
    if op is not None:
        me = len(event.names)
        event.names.append(op)
        event.seconds.append(_seconds_of(ev, kind))
        event.parent.append(parent)
        event.end.append(me + 1)
    for child in ev.cpu_children:
        _subtree(child, me, event, kind)
    if op is not None:
        event.end[me] = len(event.names)


# ---- alignment -------------------------------------------------------------------------------------

Claim = tuple[int, int]  # (record index, node index in the event)


def _canonical(name: str) -> str:
    """In-place and out-of-place variants match: ``aten.add_`` -> ``aten.add`` (the analysis runs on fake
    tensors, for which composite kernels such as ``aten::linear`` call ``add`` where eager calls ``add_``)."""
    return name[:-1] if name.endswith("_") and not name.endswith("__") else name


def _fits(event: _Event, record: OpRecord) -> bool:
    return record.module == event.module and (
        _canonical(record.op) in event.canon_set or (bool(record.via) and _canonical(record.via) in event.canon_set)
    )


def _consume(event: _Event, records: Sequence[OpRecord], start: int) -> list[Claim]:
    """The records from ``start`` on that ``event`` takes, each with the node (subtree) it takes.

    A record takes the first free node of its operator (in-place or not) after the node the previous
    record took, else the first free one anywhere; a node taken blocks its subtree and its ancestors.
    """
    blocked = bytearray(len(event.names))
    positions = event.positions
    claims: list[Claim] = []
    group: tuple[str, str, int] | None = None  # (via, first op, node) of a decomposed operator's parts
    cursor = 0

    def find(name: str) -> int | None:
        nodes = positions.get(_canonical(name))
        if not nodes:
            return None
        k = bisect.bisect_left(nodes, cursor)
        for i in itertools.chain(itertools.islice(nodes, k, None), itertools.islice(nodes, 0, k)):
            if not blocked[i]:
                return i
        return None

    def block(i: int) -> None:
        for j in range(i, event.end[i]):
            blocked[j] = 1
        p = event.parent[i]
        while p >= 0:
            blocked[p] = 1
            p = event.parent[p]

    j = start
    while j < len(records):
        r = records[j]
        if r.module != event.module:
            break
        node = find(r.op)
        if node is not None:
            group = None
            block(node)
        elif r.via and group is not None and group[0] == r.via and r.op != group[1]:
            node = group[2]  # the next part of the same decomposed call
        elif r.via:
            node = find(r.via)
            if node is not None:
                group = (r.via, r.op, node)
                block(node)
        if node is None:
            break
        cursor = node
        claims.append((j, node))
        j += 1
    return claims


def _align(events: Sequence[_Event], records: Sequence[OpRecord]) -> list[list[Claim]]:
    """Per event, the records it takes (empty: unmatched). Greedy, in order, with a look-ahead."""
    out: list[list[Claim]] = [[] for _ in events]
    n, m = len(records), len(events)
    i = 0
    for k, event in enumerate(events):
        if i >= n:
            break
        claims = _consume(event, records, i)
        if not claims:
            ahead_r = next((j for j in range(i + 1, min(n, i + LOOKAHEAD)) if _fits(event, records[j])), None)
            ahead_e = next((q for q in range(k + 1, min(m, k + LOOKAHEAD)) if _fits(events[q], records[i])), None)
            if ahead_r is not None and (ahead_e is None or ahead_r - i < ahead_e - k):
                claims = _consume(event, records, ahead_r)  # records i .. ahead_r - 1 stay unmatched
        if claims:
            out[k] = claims
            i = claims[-1][0] + 1
    return out


def _split(event: _Event, claims: list[Claim]) -> dict[int, float]:
    """The event's time over the records it took, in proportion to the subtrees they took."""
    sharing: dict[int, int] = {}
    for _, node in claims:
        sharing[node] = sharing.get(node, 0) + 1
    taken = sum(event.seconds[node] for node in sharing)
    out: dict[int, float] = {}
    for rec, node in claims:
        if taken > 0:
            out[rec] = event.total * event.seconds[node] / taken / sharing[node]
        else:
            out[rec] = event.total / len(claims)
    return out


def _build(report: Report, calls: list[_Call], device: str, threads: int, kind: str) -> OperatorProfile:
    records = report.records
    n = len(records)
    sums = [0.0] * n
    hits = [0] * n
    names: list[str | None] = [None] * n
    module_time: dict[str, float] = {}
    unmatched: dict[tuple[str, bool], list[Any]] = {}
    cache: dict[tuple[Any, ...], list[list[Claim]]] = {}
    wall = profiled = events_total = matched_events = 0.0
    for call in calls:
        signature = tuple(e.signature() for e in call.events)
        if signature not in cache:
            cache[signature] = _align(call.events, records)
        alignment = cache[signature]
        wall += call.wall
        events_total += len(call.events)
        for event, claims in zip(call.events, alignment):
            profiled += event.total
            for path in lineage(event.module):
                module_time[path] = module_time.get(path, 0.0) + event.total
            if not claims:
                slot = unmatched.setdefault((event.name, event.aliasing), [0, 0.0, set()])
                slot[0] += 1
                slot[1] += event.total
                slot[2].add(event.module)
                continue
            matched_events += 1
            for rec, seconds in _split(event, claims).items():
                sums[rec] += seconds
                hits[rec] += 1
                names[rec] = event.name
    iters = max(1, len(calls))
    record_seconds = tuple(sums[i] / hits[i] if hits[i] else None for i in range(n))
    unmatched_events = tuple(
        sorted(
            (
                UnmatchedEvent(name, c / iters, s / iters, tuple(sorted(mods)), aliasing)
                for (name, aliasing), (c, s, mods) in unmatched.items()
            ),
            key=lambda e: (-e.seconds, e.name),
        )
    )
    modules = module_profiles(report, record_seconds, {p: t / iters for p, t in module_time.items()})
    notes = []
    if kind == "mps":
        notes.append("on MPS the profiler sees only the CPU side of each operator (launches), not the GPU time")
    return OperatorProfile(
        device=device,
        iters=len(calls),
        threads=threads,
        wall_seconds=wall / iters,
        profiled_seconds=profiled / iters,
        events_per_call=events_total / iters,
        matched_events_per_call=matched_events / iters,
        record_seconds=record_seconds,
        record_events=tuple(names),
        unmatched_records=tuple(i for i, s in enumerate(record_seconds) if s is None),
        unmatched_events=unmatched_events,
        modules=modules,
        has_roofline=report.hardware is not None,
        notes=tuple(notes),
        _records=records,
    )


def module_profiles(
    report: Report, record_seconds: tuple[float | None, ...], measured: dict[str, float]
) -> dict[str, ModuleProfile]:
    matched: dict[str, float] = {}
    counts: dict[str, list[int]] = {}
    for r, s in zip(report.records, record_seconds):
        for path in lineage(r.module):
            slot = counts.setdefault(path, [0, 0])
            slot[0] += 1
            if s is not None:
                slot[1] += 1
                matched[path] = matched.get(path, 0.0) + s
    roof = report.roofline.by_module() if report.hardware is not None else None
    out: dict[str, ModuleProfile] = {}
    for path, node in report.modules.items():
        total, hit = counts.get(path, (0, 0))
        out[path] = ModuleProfile(
            path=path,
            type_name=node.type_name,
            measured_seconds=measured.get(path, 0.0),
            matched_seconds=matched.get(path, 0.0),
            roofline_seconds=roof[path].seconds if roof is not None and path in roof else None,
            flops=node.cumulative.flops,
            bytes=node.cumulative.bytes,
            records=total,
            matched_records=hit,
        )
    return out
