"""Measured latency: time a callable or a model's forward pass on real tensors.

Rules every timing here follows:

* the first call is never timed (at least one warm-up call, whatever ``warmup`` says);
* CPU: ``time.perf_counter`` around each call; CUDA: a pair of CUDA events around each call, then
  ``synchronize`` (the sample is the GPU time between the events, launch gaps included);
  MPS: ``torch.mps.synchronize()`` before and after each call, ``perf_counter`` around it;
* ``iters`` is a minimum: with ``min_seconds`` timing goes on until the samples add up to that much;
  ``max_seconds`` caps the whole call (warm-up included), though at least one sample is always taken;
* on the CPU the process's minor page faults during the timed calls are counted (``getrusage``, outside
  the clock; None on a GPU and on Windows): a forward pass that faults on every call pays the kernel to
  map and zero its memory again (glibc handing large freed blocks back), docs/prediction.md.

The user's model is never changed: when it has to move to another device or dtype, a deep copy is
moved; otherwise the model runs as it is and its buffers (BatchNorm statistics in training mode ...)
are put back afterwards, the ``training`` flags too. Nothing is printed: progress goes to an optional
callback ``progress(phase, done, total)``.
"""

from __future__ import annotations

import contextlib
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils._pytree import tree_leaves, tree_map

from rooflens.capture.harness import forked_rng
from rooflens.capture.inputs import model_inputs, parse_dtype, parse_shapes
from rooflens.capture.isolate import Copier
from rooflens.errors import InputError, ModelError
from rooflens.measurement.subnormal import Subnormals, count_subnormals

# ``progress(phase, done, total)``: phase is "warmup" or "timing" (a sweep prefixes "batch 8: ");
# ``total`` may grow while timing runs on to ``min_seconds``.
Progress = Callable[[str, int, int], None]

SUPPORTED_DEVICES = ("cpu", "cuda", "mps")


def percentile(values: Sequence[float], q: int) -> float:
    """The ``q``-th percentile (``q`` a whole number from 0 to 100) of ``values`` (in any order, not empty).

    Linear interpolation between closest ranks: the value at rank ``(n - 1) * q / 100`` of the sorted
    values, what ``numpy.percentile`` and ``torch.quantile`` do by default (Hyndman and Fan's type 7).
    That is ``statistics.quantiles(method="inclusive")``, used here: numpy is not a dependency of rooflens.
    """
    if isinstance(q, bool) or not isinstance(q, int) or not 0 <= q <= 100:
        raise ValueError(f"percentile q={q!r}: give a whole number from 0 to 100")
    if not values:
        raise ValueError("percentile of no values")
    if q == 0:
        return min(values)
    if q == 100 or len(values) == 1:  # quantiles() needs two values before Python 3.13
        return max(values)
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


@dataclass(frozen=True)
class Measurement:
    """Timed forward passes of one model at one batch size (seconds per call, in the order taken).

    Percentiles interpolate linearly between closest ranks (numpy's default method); ``std_seconds``
    is the sample standard deviation (n - 1; 0 for one sample). ``throughput_per_s`` is samples per
    second at the median latency: ``batch_size / median_seconds``.
    """

    samples_seconds: tuple[float, ...]
    batch_size: int
    device: str
    dtype: str | None  # the floating-point dtype the model ran in (None: it has no floating parameters)
    threads: int | None  # intra-op CPU threads during the run (torch's; ONNX Runtime's, None: its default)
    warmup: int  # untimed calls made first (at least 1)
    # what ran the model when it was not PyTorch eager (both None then, and left out of as_dict):
    runtime: str | None = None  # e.g. "onnxruntime 1.32.0"
    provider: str | None = None  # e.g. "CPUExecutionProvider"
    # minor page faults of the process per timed call, on average (None: not counted on this platform)
    page_faults_per_call: float | None = None
    # the subnormal floats one more forward pass wrote (rooflens.measurement.subnormal; None: not checked,
    # as on GPUs, which compute with them at full speed)
    subnormals: Subnormals | None = None

    def __post_init__(self) -> None:
        if not self.samples_seconds:
            raise InputError("a Measurement needs at least one sample")

    @property
    def iters(self) -> int:
        return len(self.samples_seconds)

    @property
    def median_seconds(self) -> float:
        return statistics.median(self.samples_seconds)

    @property
    def mean_seconds(self) -> float:
        return statistics.fmean(self.samples_seconds)

    @property
    def std_seconds(self) -> float:
        return statistics.stdev(self.samples_seconds) if len(self.samples_seconds) > 1 else 0.0

    @property
    def min_seconds(self) -> float:
        return min(self.samples_seconds)

    @property
    def max_seconds(self) -> float:
        return max(self.samples_seconds)

    @property
    def p90_seconds(self) -> float:
        return percentile(self.samples_seconds, 90)

    @property
    def p99_seconds(self) -> float:
        return percentile(self.samples_seconds, 99)

    @property
    def throughput_per_s(self) -> float:
        """Samples per second at the median latency."""
        return self.batch_size / self.median_seconds if self.median_seconds > 0 else math.inf

    def as_dict(self, *, samples: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {
            "batch_size": self.batch_size,
            "device": self.device,
            "dtype": self.dtype,
            "threads": self.threads,
            "warmup": self.warmup,
            "iters": self.iters,
            "median_seconds": self.median_seconds,
            "mean_seconds": self.mean_seconds,
            "std_seconds": self.std_seconds,
            "min_seconds": self.min_seconds,
            "max_seconds": self.max_seconds,
            "p90_seconds": self.p90_seconds,
            "p99_seconds": self.p99_seconds,
            "throughput_per_s": self.throughput_per_s,
            "percentile_method": "linear",
            "page_faults_per_call": self.page_faults_per_call,
            "subnormals": self.subnormals.as_dict() if self.subnormals is not None else None,
        }
        if self.runtime is not None:
            data["runtime"] = self.runtime
        if self.provider is not None:
            data["provider"] = self.provider
        if samples:
            data["samples_seconds"] = list(self.samples_seconds)
        return data


# ---- timing a callable -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Timed:
    """What :func:`timed_calls` took: seconds per timed call, and the process's minor page faults during the
    timed calls (None where the platform does not count them)."""

    samples_seconds: tuple[float, ...]
    page_faults: int | None

    @property
    def page_faults_per_call(self) -> float | None:
        return None if self.page_faults is None else self.page_faults / len(self.samples_seconds)


def time_callable(
    fn: Callable[[], Any],
    *,
    warmup: int,
    iters: int,
    min_seconds: float | None = None,
    max_seconds: float | None = None,
    device: str | torch.device = "cpu",
    progress: Progress | None = None,
) -> tuple[float, ...]:
    """Seconds per call of ``fn()``, one sample per call, after ``max(warmup, 1)`` untimed calls.

    At least ``iters`` samples; with ``min_seconds``, more until the samples sum to ``min_seconds``;
    ``max_seconds`` stops both warm-up and timing once this much wall time has passed since the call
    began (one warm-up call and one sample are always made). ``device`` picks the clock (see the
    module docstring). :func:`timed_calls` also counts page faults.
    """
    return timed_calls(fn, warmup=warmup, iters=iters, min_seconds=min_seconds, max_seconds=max_seconds,
                       device=device, progress=progress).samples_seconds


def timed_calls(
    fn: Callable[[], Any],
    *,
    warmup: int,
    iters: int,
    min_seconds: float | None = None,
    max_seconds: float | None = None,
    device: str | torch.device = "cpu",
    progress: Progress | None = None,
) -> Timed:
    """:func:`time_callable`'s samples and the minor page faults of the timed calls (not of the warm-up)."""
    warmup = whole_number(warmup, "warmup", minimum=0)
    iters = whole_number(iters, "iters", minimum=1)
    min_seconds = _seconds(min_seconds, "min_seconds")
    max_seconds = _seconds(max_seconds, "max_seconds")
    kind = measurement_device(device).type
    report = progress or (lambda phase, done, total: None)
    begun = time.perf_counter()

    def out_of_time() -> bool:
        return max_seconds is not None and time.perf_counter() - begun >= max_seconds

    warmup_calls = max(1, warmup)
    for k in range(warmup_calls):
        fn()
        report("warmup", k + 1, warmup_calls)
        if out_of_time():
            break
    synchronize(kind)

    one = clock(kind)
    samples: list[float] = []
    total = 0.0
    counting = kind == "cpu" and sys.platform != "win32"  # host faults against a GPU's clock would mislead
    faults = 0
    while True:
        before = minor_page_faults() if counting else 0
        sample = one(fn)
        if counting:
            faults += minor_page_faults() - before
        samples.append(sample)
        total += sample
        target = iters
        if min_seconds is not None and total < min_seconds:
            target = max(iters, math.ceil(min_seconds * len(samples) / total) if total > 0 else len(samples) + 1)
        report("timing", len(samples), max(target, len(samples)))
        if len(samples) >= iters and (min_seconds is None or total >= min_seconds):
            break
        if out_of_time():
            break
    return Timed(tuple(samples), faults if counting else None)


# what decides whether the allocator hands freed memory back: glibc's variables and tunables, jemalloc's
# options, a preloaded allocator
ALLOCATOR_VARIABLES = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_ARENA_MAX",
                       "GLIBC_TUNABLES", "MALLOC_CONF", "LD_PRELOAD")


def allocator_settings() -> dict[str, str]:
    """This process's allocator settings from :data:`ALLOCATOR_VARIABLES`, those that are set (``LD_PRELOAD``:
    the preloaded libraries' file names, without their directories); empty: the platform's defaults."""
    found = {k: os.environ[k] for k in ALLOCATOR_VARIABLES if os.environ.get(k)}
    if "LD_PRELOAD" in found:
        found["LD_PRELOAD"] = " ".join(os.path.basename(lib) for lib in found["LD_PRELOAD"].replace(":", " ").split())
    return found


def minor_page_faults() -> int:
    """The minor page faults of this process so far, all its threads (``getrusage``; POSIX only)."""
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_minflt)


def clock(kind: str) -> Callable[[Callable[[], Any]], float]:
    """The clock of a device kind (``"cpu"``, ``"cuda"``, ``"mps"``): ``clock(kind)(fn)`` calls ``fn()`` once and
    returns its seconds, as the module docstring describes (CUDA events on a GPU, ``perf_counter`` otherwise)."""
    if kind == "cuda":

        def cuda(fn: Callable[[], Any]) -> float:
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            return float(start.elapsed_time(end)) / 1e3  # milliseconds -> seconds

        return cuda
    if kind == "mps":

        def mps(fn: Callable[[], Any]) -> float:
            torch.mps.synchronize()
            t0 = time.perf_counter()
            fn()
            torch.mps.synchronize()
            return time.perf_counter() - t0

        return mps

    def cpu(fn: Callable[[], Any]) -> float:
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    return cpu


def synchronize(kind: str) -> None:
    """Wait for the work queued on a device kind (nothing to wait for on the CPU)."""
    if kind == "cuda":
        torch.cuda.synchronize()
    elif kind == "mps":
        torch.mps.synchronize()


# ---- measuring a model -----------------------------------------------------------------------------


def measure(
    model: torch.nn.Module,
    inputs: Any = None,
    *,
    input_size: Sequence[int] | Sequence[Sequence[int]] | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | str | None = None,
    threads: int | None = None,
    warmup: int = 10,
    iters: int = 50,
    min_seconds: float | None = None,
    max_seconds: float | None = None,
    progress: Progress | None = None,
) -> Measurement:
    """Time ``model``'s forward pass on real tensors: median, p90, p99, mean, std and throughput.

    ``inputs`` as for :func:`rooflens.analyze` (a tensor, a tuple/list of positional arguments, a dict of
    keyword arguments), or ``input_size``: shape(s) of random inputs. ``device``: "cpu", "cuda[:n]" or
    "mps"; ``dtype``: run floating-point parameters, buffers and inputs in this dtype; ``threads``:
    torch's intra-op threads for the duration (restored afterwards). The batch size is the first
    dimension of the first input tensor. Runs under ``torch.inference_mode()`` in the model's own
    training mode; the model itself is left unchanged (see the module docstring). On the CPU one more
    forward pass, untimed and outside ``max_seconds``, counts the subnormal floats it writes
    (``Measurement.subnormals``).
    """
    dev = measurement_device(device)
    dt = measurement_dtype(dtype)
    check_options(warmup, iters, min_seconds, max_seconds)
    check_model(model)
    with intra_op_threads(threads), prepared_model(model, dev, dt) as runnable:
        args, kwargs = real_inputs(inputs, input_size, dev, dt)
        return _measure_prepared(runnable, args, kwargs, dev, dt, warmup, iters, min_seconds, max_seconds, progress)


def sweep(
    model: torch.nn.Module,
    *,
    batch_sizes: Sequence[int],
    input_size_per_sample: Sequence[int] | Sequence[Sequence[int]],
    device: str | torch.device = "cpu",
    dtype: torch.dtype | str | None = None,
    threads: int | None = None,
    warmup: int = 10,
    iters: int = 50,
    min_seconds: float | None = None,
    max_seconds: float | None = None,
    progress: Progress | None = None,
) -> list[Measurement]:
    """Throughput against batch size: one :class:`Measurement` per entry of ``batch_sizes``.

    ``input_size_per_sample``: the shape of one sample without the batch dimension, e.g. ``(3, 224, 224)``,
    or a list of such shapes, one per positional input; each batch size ``b`` runs inputs of shape
    ``(b, *shape)``. ``max_seconds`` caps each batch size. The model is prepared (copied/moved) once.
    """
    sizes = [whole_number(b, "batch size", minimum=1) for b in batch_sizes]
    if not sizes:
        raise InputError("batch_sizes is empty; give e.g. [1, 8, 32]")
    per_sample = _per_sample_shapes(input_size_per_sample)
    dev = measurement_device(device)
    dt = measurement_dtype(dtype)
    check_options(warmup, iters, min_seconds, max_seconds)
    check_model(model)
    out: list[Measurement] = []
    with intra_op_threads(threads), prepared_model(model, dev, dt) as runnable:
        for b in sizes:
            phase_progress = None
            if progress is not None:

                def phase_progress(phase: str, done: int, total: int, b: int = b, tell: Progress = progress) -> None:
                    tell(f"batch {b}: {phase}", done, total)

            args, kwargs = real_inputs(None, [(b, *s) for s in per_sample], dev, dt)
            out.append(
                _measure_prepared(
                    runnable, args, kwargs, dev, dt, warmup, iters, min_seconds, max_seconds, phase_progress
                )
            )
    return out


def _measure_prepared(
    model: torch.nn.Module,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    dev: torch.device,
    dt: torch.dtype | None,
    warmup: int,
    iters: int,
    min_seconds: float | None,
    max_seconds: float | None,
    progress: Progress | None,
) -> Measurement:
    def forward() -> Any:
        return model(*args, **kwargs)

    try:
        with torch.inference_mode():
            timed = timed_calls(
                forward, warmup=warmup, iters=iters, min_seconds=min_seconds, max_seconds=max_seconds,
                device=dev, progress=progress,
            )
            subnormals = count_subnormals(model, args, kwargs) if dev.type == "cpu" else None
    except (InputError, ModelError):
        raise
    except Exception as e:
        raise ModelError(f"the model raised {type(e).__name__} while being measured: {e}") from e
    return Measurement(
        samples_seconds=timed.samples_seconds,
        batch_size=batch_size_of(args, kwargs),
        device=str(dev),
        dtype=_run_dtype(model, dt),
        threads=torch.get_num_threads(),
        warmup=max(1, warmup),
        page_faults_per_call=timed.page_faults_per_call,
        subnormals=subnormals,
    )


def batch_size_of(args: Any, kwargs: Any = None) -> int:
    """The first dimension of the first input tensor (1 when there is none or it is a scalar)."""
    for leaf in tree_leaves((args, kwargs or {})):
        if isinstance(leaf, torch.Tensor):
            return int(leaf.shape[0]) if leaf.dim() > 0 else 1
    return 1


# ---- shared helpers (also used by the per-operator profile and the micro-benchmarks) ------------------


def check_model(model: Any) -> None:
    """An InputError unless ``model`` is an ``nn.Module`` with real (not meta) parameters and buffers."""
    if not isinstance(model, torch.nn.Module):
        raise InputError(f"expected a torch.nn.Module, got {type(model).__name__}")
    for name, t in [*model.named_parameters(), *model.named_buffers()]:
        if t.device.type == "meta":
            raise InputError(
                f"the model is on the meta device ({name!r} has no values); measurement needs real weights: "
                "build the model on the CPU (rooflens.zoo.load_model(spec, meta=False), or without "
                "device='meta') and measure that"
            )


def measurement_device(device: str | torch.device) -> torch.device:
    """``device`` as a torch device that measurement supports and this machine has (CUDA with its index)."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise InputError(f"device={device!r} is not a device; use 'cpu', 'cuda' or 'mps'") from None
    if dev.type not in SUPPORTED_DEVICES:
        raise InputError(f"device={device!r}: measurement supports {', '.join(SUPPORTED_DEVICES)}")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"device={device!r}: CUDA is not available on this machine")
        if dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
    if dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise InputError(f"device={device!r}: MPS is not available on this machine")
    return dev


def measurement_dtype(value: torch.dtype | str | None) -> torch.dtype | None:
    """A floating-point torch dtype from a dtype or its name (``"bfloat16"``, ``"torch.float16"``); None stays None."""
    dt = parse_dtype(value, "dtype")
    if dt is not None and not dt.is_floating_point:
        raise InputError(f"dtype={value!r} is not a floating-point dtype; measurement runs the model in one "
                         "(try 'float32', 'float16' or 'bfloat16')")
    return dt


def check_options(warmup: Any, iters: Any, min_seconds: Any, max_seconds: Any) -> None:
    """An InputError naming the first timing option that is not valid."""
    whole_number(warmup, "warmup", minimum=0)
    whole_number(iters, "iters", minimum=1)
    _seconds(min_seconds, "min_seconds")
    _seconds(max_seconds, "max_seconds")


def whole_number(value: Any, what: str, *, minimum: int) -> int:
    """``value`` when it is an int (not a bool) of at least ``minimum``; an InputError naming ``what`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InputError(f"{what}={value!r} must be a whole number >= {minimum}")
    return value


def _seconds(value: Any, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or math.isinf(value):
        raise InputError(f"{what}={value!r} must be a positive number of seconds")
    return float(value)


@contextlib.contextmanager
def intra_op_threads(threads: int | None) -> Iterator[None]:
    """Run the block with ``threads`` intra-op CPU threads (None: as they are), restored afterwards."""
    if threads is None:
        yield
        return
    threads = whole_number(threads, "threads", minimum=1)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _state_tensors(model: torch.nn.Module) -> list[torch.Tensor]:
    return [*model.parameters(), *model.buffers()]


@contextlib.contextmanager
def prepared_model(model: torch.nn.Module, dev: torch.device, dt: torch.dtype | None) -> Iterator[torch.nn.Module]:
    """The model to run, under a forked RNG: a structural copy (:class:`rooflens.capture.isolate.Copier`) on
    ``dev`` in ``dt``.

    Parameters already on ``dev`` in ``dt`` are shared (a forward reads them; nothing doubles the weights),
    all else is the copy's own: buffers (a forward in training mode updates BatchNorm's), tensors a forward
    caches on a module, containers, ``training`` flags. The user's model ends exactly as it began, whatever
    its forward stores; moving to another device or dtype copies what has to move.
    """

    def make(t: torch.Tensor) -> torch.Tensor:
        target = dt if dt is not None and t.is_floating_point() else t.dtype
        if isinstance(t, torch.nn.Parameter):
            if t.device == dev and t.dtype == target:
                return t
            return torch.nn.Parameter(t.detach().to(device=dev, dtype=target, copy=True), t.requires_grad)
        return t.detach().to(device=dev, dtype=target, copy=True)

    try:
        with torch.no_grad():
            runnable = Copier(make).module_tree(model)
    except (RuntimeError, NotImplementedError) as e:  # a tensor that cannot be copied or moved
        raise InputError(
            f"the model cannot be prepared on {dev} / {dt} for measurement ({type(e).__name__}: {e}); "
            "move it yourself and measure it there"
        ) from e
    with forked_rng():  # random inputs and dropout draw from a seeded fork: the caller's generator is left alone
        yield runnable


def real_inputs(
    inputs: Any, input_size: Any, dev: torch.device, dt: torch.dtype | None
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Real tensors on ``dev`` (floating ones in ``dt`` when given); shapes become random tensors.

    ``inputs``/``input_size`` follow the rules of :func:`rooflens.analyze` (one parser for both).
    """
    args, kwargs = model_inputs(inputs, input_size, dt or torch.float32)

    def real(t: Any) -> Any:
        if not isinstance(t, torch.Tensor):
            return t
        if t.device.type == "meta":
            if input_size is None:
                raise InputError("an input tensor is on the meta device; measurement needs real input values")
            if t.is_floating_point():
                return torch.rand(t.shape, dtype=t.dtype, device=dev)
            return torch.zeros(t.shape, dtype=t.dtype, device=dev)
        target = dt if dt is not None and t.is_floating_point() else t.dtype
        return t.to(device=dev, dtype=target)

    return tree_map(real, args), tree_map(real, kwargs)


def _per_sample_shapes(size: Any) -> list[tuple[int, ...]]:
    """One shape per positional input, without the batch dimension (the rules of ``input_size``)."""
    try:
        return parse_shapes(size)
    except InputError as e:
        raise InputError(f"input_size_per_sample={size!r}, the shape of one sample without the batch dimension "
                         f"(e.g. (3, 224, 224)): {e}") from None


def _run_dtype(model: torch.nn.Module, dt: torch.dtype | None) -> str | None:
    if dt is not None:
        return str(dt).removeprefix("torch.")
    for t in _state_tensors(model):
        if t.is_floating_point():
            return str(t.dtype).removeprefix("torch.")
    return None
