"""The one capture harness: run a model once, isolated, on fake tensors (or on real copies if it must).

Every analysis that runs the model (cost counting, the memory timeline and its training step, the
recompute of checkpointing) is a *body* handed to :func:`run_model`. The harness owns what they share:

- **Isolation.** The body gets a :class:`Session`: a structural copy of the module tree and of the
  inputs (:class:`~rooflens.capture.isolate.Copier`) whose tensors are fake (or real copies), a module
  tracker that answers only to that copy in this thread, and the kind (parameter, buffer, activation)
  of each tensor. The user's modules, tensors, inputs and containers are never handed to the model.
- **Global state.** The run happens outside any dispatch mode the caller has entered (their
  ``FakeTensorMode``), outside ``torch.inference_mode`` (the counts must not depend on it), a real run
  under a seeded fork of the RNG (its random inputs and dropout do not move the caller's generators), with torch's
  fake-tensor error log and two known library warnings silenced for this thread only, and with room
  on the Python stack for deeply nested models.
- **Fall-back.** When fake execution cannot go on (an operator's output depends on tensor values, or a
  custom operator has no fake kernel), the run is repeated on real copies of the tensors (CPU or the
  model's device), with a diagnostic; a model on the meta device gets a clear error instead.
- **Errors.** An exception the model raises becomes a :class:`~rooflens.errors.ModelError` that names
  the module path (and operator) where it happened.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar, cast

import torch
from torch._subclasses.fake_tensor import (
    DataDependentOutputException,
    DynamicOutputShapeException,
    FakeTensor,
    FakeTensorMode,
    UnsupportedOperatorException,
)
from torch.nn.parameter import is_lazy
from torch.utils._python_dispatch import _disable_current_modes
from torch.utils._pytree import tree_leaves

from rooflens.capture.isolate import Copier
from rooflens.capture.modules import ModuleTracker
from rooflens.capture.quantized import QUANTIZING_OPS, packed_arguments, real_run_reason
from rooflens.errors import InputError, ModelError
from rooflens.types import TensorKind

T = TypeVar("T")

# What fake execution cannot do: the next step is a real run (real parameters) or a clear error (meta).
FAKE_CANNOT = (DataDependentOutputException, DynamicOutputShapeException, UnsupportedOperatorException)

VALUE_CHECKS = ("assume", "error")
_WRAPPERS = (torch.nn.DataParallel, torch.nn.parallel.DistributedDataParallel)


@dataclass
class Session:
    """What a body runs: the copied model, its inputs, and where the run is."""

    root: torch.nn.Module
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    kinds: dict[int, TensorKind]  # id(tensor of the copy) -> parameter / buffer (others: activations)
    tracker: ModuleTracker
    executed: str  # "fake" or "real"
    fake_mode: FakeTensorMode | None
    device: torch.device
    diagnostics: list[str] = field(default_factory=list)
    alive: list[Any] = field(default_factory=list)  # copies that only weak references in the copy point at

    def tensors(self, kind: TensorKind) -> list[torch.Tensor]:
        """The distinct parameters (or buffers) of the copy."""
        source = self.root.parameters() if kind is TensorKind.PARAMETER else self.root.buffers()
        unique = {id(t): t for t in source if self.kinds.get(id(t)) is kind}
        return list(unique.values())

    def input_tensors(self) -> list[torch.Tensor]:
        return [t for t in tree_leaves((self.args, self.kwargs)) if isinstance(t, torch.Tensor)]


def unwrap(model: torch.nn.Module) -> tuple[torch.nn.Module, str | None]:
    """The module a ``DataParallel``/``DistributedDataParallel`` wrapper holds, with a note that says so."""
    if isinstance(model, _WRAPPERS):
        inner = model.module
        return inner, (
            f"{type(model).__name__} wraps a {type(inner).__name__}: analysed the wrapped module once "
            "(as one replica runs it, on the whole batch)"
        )
    return model, None


def is_meta(t: torch.Tensor) -> bool:
    return t.device.type == "meta"


def _on_meta(model: torch.nn.Module) -> bool:
    """Some parameter or buffer is on the meta device: the model cannot be run for real."""
    return any(is_meta(t) for t in [*model.parameters(), *model.buffers()])


def analysis_device(model: torch.nn.Module, inputs: list[torch.Tensor]) -> torch.device:
    """Where the model would run: its first real parameter's device, else its inputs', else the CPU."""
    for t in [*model.parameters(), *model.buffers(), *inputs]:
        if not is_meta(t) and not isinstance(t, FakeTensor):
            return t.device
    return torch.device("cpu")


def _target_dtype(t: torch.Tensor, dtype: torch.dtype | None) -> torch.dtype:
    return dtype if dtype is not None and t.is_floating_point() else t.dtype


def run_model(
    model: torch.nn.Module,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    body: Callable[[Session], T],
    *,
    dtype: torch.dtype | None = None,
    track_backward: bool = False,
    real: bool = False,
    value_checks: str = "assume",
) -> tuple[T, Session]:
    """Run ``body`` on a fake copy of ``model`` and the inputs; on real copies when fake execution cannot.

    ``dtype`` makes floating-point parameters, buffers and inputs that dtype in the copy.
    ``track_backward`` lets the module tracker attribute backward operators too. ``real``: run on real
    copies straight away (to check the fake run against a real one). ``value_checks``: what a model on the
    meta device gets when it reads a yes/no value that fake tensors do not have (``mask.all()``,
    ``bool(padding_mask.any())``): ``"assume"`` (the check passes, as with masks of all ones and no padding;
    each assumption is a diagnostic) or ``"error"``. A model with real weights is run for real instead.
    Returns the body's result and the session it ran in (its ``diagnostics`` hold the fall-back note).
    """
    _check_initialised(model)
    if value_checks not in VALUE_CHECKS:
        raise InputError(f"value_checks={value_checks!r}; choose one of {', '.join(map(repr, VALUE_CHECKS))}")
    assume = value_checks == "assume" and _on_meta(model)
    leaves = [t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
    with isolated():
        device = analysis_device(model, leaves)
        if real:
            return _attempt(model, args, kwargs, body, dtype, device, track_backward, real=True)
        quantized = real_run_reason(model, leaves)  # fake tensors cannot be quantized: real copies straight away
        if quantized is not None:
            result, session = _attempt(model, args, kwargs, body, dtype, device, track_backward, real=True)
            session.diagnostics.insert(0, f"{quantized}, which fake tensors cannot represent (the meta device has no "
                                          f"quantized kernels): the model was run on real tensors (copies of its own) "
                                          f"on the {device.type.upper()} instead")
            return result, session
        try:
            return _attempt(model, args, kwargs, body, dtype, device, track_backward, real=False, assume=assume)
        except _NeedsRealRun as need:
            note = need.fallback_note(model, device)
        result, session = _attempt(model, args, kwargs, body, dtype, device, track_backward, real=True)
        session.diagnostics.insert(0, note)
        return result, session


def run_op(tracker: ModuleTracker, func: Any, name: str, args: Any, kwargs: Any) -> Any:
    """``func(*args, **kwargs)`` for a dispatch mode; a failure is noted in the tracker. A custom (non-aten)
    operator that fails on fake tensors (no fake kernel, or a broken one) makes the harness run it for real.
    A value check on a fake boolean tensor passes when the run assumes so (``value_checks="assume"``)."""
    if name == "aten._local_scalar_dense" and tracker.assume_checks:
        t = args[0] if args else None
        if isinstance(t, FakeTensor) and t.dtype == torch.bool:
            _assume(tracker, t)
            return True
    if name in QUANTIZING_OPS and any(isinstance(t, FakeTensor) for t in tree_leaves((args, kwargs))):
        tracker.fail(name)  # torch's fake kernel answers with a float32 tensor: the model must run for real
        raise UnsupportedOperatorException(func)
    try:
        if packed_arguments(func):
            return _uncached(func, args, kwargs)
        return func(*args, **kwargs)
    except Exception as e:
        tracker.fail(name)
        namespace = getattr(func, "namespace", "aten")
        custom = namespace not in ("aten", "prims", "prim") and isinstance(e, (RuntimeError, NotImplementedError))
        if custom and any(isinstance(t, FakeTensor) for t in tree_leaves((args, kwargs))):
            raise UnsupportedOperatorException(func) from e
        raise


def _uncached(func: Any, args: Any, kwargs: Any) -> Any:
    """``func`` with a script-object argument (a quantized kernel's packed weights), past the fake mode's
    dispatch cache: that cache is global, would keep the user's object in its key, and compares keys with
    ``==``, which script objects refuse (the second call of the same layer would fail)."""
    fake_mode = torch._C._get_dispatch_mode(torch._C._TorchDispatchModeKey.FAKE)
    if not isinstance(fake_mode, FakeTensorMode):
        return func(*args, **kwargs)
    cached = fake_mode.cache_enabled  # (torch's disable_fake_tensor_cache, which older torch lacks)
    fake_mode.cache_enabled = False
    try:
        return func(*args, **kwargs)
    finally:
        fake_mode.cache_enabled = cached


def _assume(tracker: ModuleTracker, t: torch.Tensor) -> None:
    note = (
        f"assumed that a value check in module {tracker.current or '<root>'!r} passes (a yes/no read of a "
        f"bool tensor of shape {tuple(t.shape)}, e.g. mask.all(): masks all ones, no padding), because the model "
        "on the meta device has no values; value_checks='error' makes this an error"
    )
    if note not in tracker.assumptions:
        tracker.assumptions.append(note)


def _check_initialised(model: torch.nn.Module) -> None:
    for kind, named in (("parameter", model.named_parameters()), ("buffer", model.named_buffers())):
        for name, t in named:
            if is_lazy(t):
                owner = model.get_submodule(name.rpartition(".")[0])
                raise InputError(
                    f"{kind} {name!r} of {type(owner).__name__} is not initialised yet (a lazy module infers its "
                    "shapes from its first input): run the model once on a real input, then analyse it"
                )


def _attempt(
    model: torch.nn.Module,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    body: Callable[[Session], T],
    dtype: torch.dtype | None,
    device: torch.device,
    track_backward: bool,
    *,
    real: bool,
    assume: bool = False,
) -> tuple[T, Session]:
    with contextlib.ExitStack() as stack:
        if real:  # the copy's random inputs and the run's dropout draw from a seeded fork
            stack.enter_context(forked_rng())
        fake_mode = None if real else FakeTensorMode(allow_non_fake_inputs=True)
        copier = Copier(_real_maker(dtype, device) if real else _fake_maker(fake_mode, dtype, device))
        with torch.no_grad():
            root = copier.module_tree(model)
            new_args, new_kwargs = copier.value(args), copier.value(kwargs)
        tracker = ModuleTracker(copier.paths, copier.names, backward=track_backward)
        tracker.assume_checks = assume
        dense = _without_nested_tensors(root, copier.paths)
        session = Session(
            root, tuple(new_args), dict(new_kwargs), copier.kinds, tracker, "real" if real else "fake", fake_mode,
            device, alive=copier.alive,
        )
        del copier  # its memo holds the user's objects; nothing of theirs stays reachable from the run
        if fake_mode is not None:
            stack.enter_context(fake_mode)
        stack.enter_context(tracker)
        try:
            result = body(session)
        except ModelError:
            raise
        except FAKE_CANNOT as e:
            op, module = tracker.where(e)
            raise _NeedsRealRun(op or "an operator", module, e) from e
        except Exception as e:
            raise ModelError(_error_text(model, tracker, e)) from e
        session.diagnostics.extend(tracker.assumptions)
        session.diagnostics.extend(
            f"nn.TransformerEncoder {path or '<root>'!r}: its nested-tensor fast path, which skips the positions "
            "src_key_padding_mask pads, is counted as the dense path on padded tensors (an upper bound)"
            for path in sorted(dense)
        )
        return result, session


def _without_nested_tensors(root: torch.nn.Module, paths: dict[int, str]) -> set[str]:
    """Turn off ``nn.TransformerEncoder``'s nested-tensor fast path in the copy (nested tensors have no
    shapes to count); returns the paths of those that had it on and then got a padding mask (filled in
    by a hook on the copy as the run goes)."""
    dense: set[str] = set()
    for module in root.modules():
        if isinstance(module, torch.nn.TransformerEncoder) and getattr(module, "use_nested_tensor", False):
            module.use_nested_tensor = False
            path = paths.get(id(module), "")

            def padded(_: Any, args: Any, kwargs: Any, path: str = path) -> None:
                if kwargs.get("src_key_padding_mask") is not None or len(args) > 2 and args[2] is not None:
                    dense.add(path)

            module.register_forward_pre_hook(padded, with_kwargs=True)
    return dense


def _error_text(model: torch.nn.Module, tracker: ModuleTracker, e: BaseException) -> str:
    op, module = tracker.where(e)
    part = tracker.phase
    if module:
        where = f"in module {module!r} ({_type_name(model, module)})"
        if part != "forward":
            where += f" during the {part}"
    else:
        where = f"in the model's {part}"
    during = f" while running {op}" if op else ""
    return f"the model raised {type(e).__name__} {where}{during}: {e}"


def _type_name(model: torch.nn.Module, path: str) -> str:
    try:
        return type(model.get_submodule(path)).__name__
    except AttributeError:
        return "?"


class _NeedsRealRun(Exception):
    def __init__(self, op: str, module: str, cause: BaseException) -> None:
        super().__init__(op)
        self.op, self.module, self.cause = op, module, cause

    def fallback_note(self, model: torch.nn.Module, device: torch.device) -> str:
        """The diagnostic of a fall-back to a real run; raises ModelError when the model is on meta."""
        module = self.module or "<root>"
        if self.op in QUANTIZING_OPS:
            why = "makes a quantized tensor, which fake tensors cannot represent"
            fix = "run the model with real weights"
        elif isinstance(self.cause, UnsupportedOperatorException):
            why = "has no fake (meta) kernel"
            fix = "register one with torch.library.register_fake, or build the model with real weights"
        else:
            why = "has an output that depends on tensor values"
            fix = "build the model with real weights (on the CPU) so that rooflens can fall back to a real run"
        if _on_meta(model):
            raise ModelError(
                f"{self.op} (in module {module!r}) {why}, which a model on the meta device cannot run; {fix}"
            ) from self.cause
        return (f"fake execution stopped at {self.op} in module {module!r}, which {why}; "
                f"the model was run on real tensors (copies of its own) on the {device.type.upper()} instead")


# ---- making the copy's tensors ------------------------------------------------------------------------


def _fake_maker(
    fake_mode: FakeTensorMode | None, dtype: torch.dtype | None, device: torch.device
) -> Callable[[torch.Tensor], torch.Tensor]:
    def fake(t: torch.Tensor) -> torch.Tensor:
        # A fake tensor wraps a meta tensor of the same layout; built directly, this is several times
        # cheaper than dispatching torch.empty_strided through the fake mode (it matters for big models).
        if t.layout != torch.strided or t.is_nested:  # sparse and nested tensors: torch's own conversion
            assert fake_mode is not None
            return fake_mode.from_tensor(t)
        meta = torch.empty_strided(t.shape, t.stride(), dtype=_target_dtype(t, dtype), device="meta")
        out = FakeTensor(fake_mode, meta, device if is_meta(t) or isinstance(t, FakeTensor) else t.device)
        return _grad_like(t, out)

    return fake


def _grad_like(t: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``out`` requiring grad as ``t`` does; a non-leaf stays a non-leaf (in-place operators on it are allowed)."""
    if not (t.requires_grad and out.is_floating_point()):
        return out
    out.requires_grad_(True)
    if t.is_leaf:
        return out
    with torch.enable_grad():
        return out.clone()


def _real_maker(dtype: torch.dtype | None, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    def real(t: torch.Tensor) -> torch.Tensor:
        target = _target_dtype(t, dtype)
        if is_meta(t):  # an input given as a shape: reproducible random values (the RNG is forked)
            values = torch.rand(t.shape, dtype=target) if target.is_floating_point else torch.zeros(t.shape, dtype=target)
            return values.to(device)
        return _grad_like(t, t.detach().to(target, copy=True))  # never the user's memory

    return real


# ---- global state around a run ------------------------------------------------------------------------

_QUIET_LOGGERS = ("torch._subclasses.fake_tensor",)
_QUIET_WARNINGS: tuple[tuple[str, type[Warning], str], ...] = (
    # torchvision's fake nms warns about a deprecated torch helper on every call; not the user's concern
    ("", FutureWarning, r"torchvision\._meta_registrations"),
    (".*torch.utils.checkpoint.*", UserWarning, ""),
)
_STACK_ROOM = 20_000  # Python frames: a module nested 1,000 deep takes about 10 per level


class _ThreadQuiet(logging.Filter):
    """Drops records from the threads that are running an analysis; other threads log as before."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: set[int] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        return record.thread not in self.threads


class _Globals:
    """Process-wide settings an analysis needs, entered by the first analysing thread and left by the
    last, so that concurrent analyses neither race nor leave anything behind."""

    lock: ClassVar[threading.Lock] = threading.Lock()
    users: ClassVar[int] = 0
    quiet: ClassVar[_ThreadQuiet] = _ThreadQuiet()
    filters: ClassVar[list[Any]] = []
    recursion_limit: ClassVar[int] = 0
    flex_eager: ClassVar[bool] = False

    @classmethod
    def enter(cls) -> None:
        flex = _flex_module()  # imported before anything changes: nothing to undo if it fails
        with cls.lock:
            cls.quiet.threads.add(threading.get_ident())
            cls.users += 1
            if cls.users > 1:
                return
            for name in _QUIET_LOGGERS:
                logging.getLogger(name).addFilter(cls.quiet)
            before = list(warnings.filters)
            for message, category, module in _QUIET_WARNINGS:
                warnings.filterwarnings("ignore", message=message, category=category, module=module)
            cls.filters = [f for f in warnings.filters if f not in before]
            cls.recursion_limit = sys.getrecursionlimit()
            sys.setrecursionlimit(max(cls.recursion_limit, _STACK_ROOM))
            # flex_attention outside torch.compile compiles itself, which no dispatch mode survives; its eager
            # switch calls the operator directly (same results; another thread's eager calls skip compiling
            # for as long as an analysis runs)
            cls.flex_eager = flex._FLEX_ATTENTION_DISABLE_COMPILE_DEBUG
            flex._FLEX_ATTENTION_DISABLE_COMPILE_DEBUG = True

    @classmethod
    def leave(cls) -> None:
        with cls.lock:
            cls.quiet.threads.discard(threading.get_ident())
            cls.users -= 1
            if cls.users > 0:
                return
            for name in _QUIET_LOGGERS:
                logging.getLogger(name).removeFilter(cls.quiet)
            for f in cls.filters:  # ours only: filters the user added meanwhile stay
                with contextlib.suppress(ValueError):
                    cast("list[Any]", warnings.filters).remove(f)
            mutated = getattr(warnings, "_filters_mutated", None)
            if mutated is not None:
                mutated()
            cls.filters = []
            if sys.getrecursionlimit() == max(cls.recursion_limit, _STACK_ROOM):
                sys.setrecursionlimit(cls.recursion_limit)
            _flex_module()._FLEX_ATTENTION_DISABLE_COMPILE_DEBUG = cls.flex_eager


def _flex_module() -> Any:
    import torch.nn.attention.flex_attention as flex  # a large module: imported on the first analysis

    return flex


@contextlib.contextmanager
def isolated() -> Iterator[None]:
    """Outside the caller's dispatch modes and inference mode, quiet for this thread."""
    _Globals.enter()
    try:
        with _disable_current_modes(), torch.inference_mode(False):  # the caller's FakeTensorMode, dispatch modes
            yield
    finally:
        _Globals.leave()


_RNG_LOCK = threading.RLock()


@contextlib.contextmanager
def forked_rng() -> Iterator[None]:
    """Real computation that draws random numbers (a real run's inputs made from shapes, dropout) under a
    fork of the generators, seeded: reproducible, and the caller's generators end as they began.

    The generators are process-wide, so forks are taken one thread at a time (a lock); a thread that draws
    random numbers while a fork is open draws from the fork's stream.
    """
    cuda = [torch.cuda.current_device()] if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    with _RNG_LOCK, torch.random.fork_rng(devices=cuda):
        torch.default_generator.manual_seed(0)  # the CPU generator only: CUDA's are forked as they are
        yield
