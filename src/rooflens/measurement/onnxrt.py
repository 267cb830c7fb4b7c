"""ONNX Runtime: the graph it really runs, its latency, its time per node, and its int8 models.

Four entry points (and :func:`profile_report`, which lays a node profile on the analysis of the graph that
ran), for a model file (``.onnx``) and an execution provider (``"cpu"``; ``"cuda"`` where
ONNX Runtime has its CUDA provider, i.e. ``onnxruntime-gpu`` and a GPU):

* :func:`optimize_onnx`: ONNX Runtime optimises the graph for a provider at a level and saves it
  (``SessionOptions.optimized_model_filepath``); the saved file is the graph the runtime executes.
* :func:`measure_onnx`: latency of ``InferenceSession`` runs, with the statistics and the rules of
  :mod:`rooflens.measurement.timer` (one shared :func:`~rooflens.measurement.timer.timed_calls`).
* :func:`profile_onnx`: ONNX Runtime's own profiler, per node of the optimised graph.
* :func:`quantize_onnx`: int8 models with ``onnxruntime.quantization`` (dynamic; static with a
  calibration set of random inputs, QDQ or QOperator).

What ONNX Runtime (1.32, CPU provider) does at each optimisation level (``level=``), as seen on
Conv/BatchNormalization/Relu/Add graphs (tests/test_onnxrt.py checks the op types of the saved graphs):

* ``"disabled"``: nothing; ``Constant`` nodes are still turned into initializers when saved.
* ``"basic"``: graph-level rewrites that keep standard ONNX ops: constant folding, redundant node
  elimination (Identity, Dropout ...), Conv+BatchNormalization (and Conv+Mul/Add) folded into the Conv's
  weights and bias. Relu stays a separate node.
* ``"extended"``: adds fusions into ONNX Runtime's own ops (domain ``com.microsoft``): Conv+Relu (and
  other activations) -> ``FusedConv``, MatMul+Add -> ``Gemm``, GELU/LayerNorm/attention fusions for
  transformers (``FusedMatMul``, ``BiasGelu``, ``SkipLayerNormalization`` ...). A residual Conv+Add+Relu is
  *not* fused at this level on the CPU.
* ``"layout"`` (only where ONNX Runtime has ``ORT_ENABLE_LAYOUT``) and ``"all"`` (ONNX Runtime's default
  for a session): on the CPU, the NCHWc layout transformer on top of ``extended``: convolutions become
  ``Conv`` of domain ``com.microsoft.nchwc`` in a blocked channel layout (8 or 16 channels a block: AVX2
  or AVX-512), with the activation and a residual ``Add`` fused in (attribute ``activation``, a fourth
  "Sum" input), ``ReorderInput``/``ReorderOutput`` nodes where the layout changes, and nodes renamed
  (``..._nchwc``). Such a graph *is* saved on the CPU; ONNX Runtime warns (its log, silenced here) that
  it is specific to the machine's vector width and should only be run where it was optimised. The ONNX
  checker does not know those ops; ONNX Runtime loads and runs the file. Providers that compile
  subgraphs into their own engines (TensorRT, OpenVINO ...) cannot save them; the CUDA provider was not
  checked here (no GPU).

Sessions log errors only (``log_severity_level=3``, per session: ONNX Runtime's global logger is left
alone); nothing is printed. Random inputs come from a local ``numpy.random.Generator`` (seeded): the
global RNGs are never touched. onnx and onnxruntime are optional (``pip install rooflens[onnx]``) and
imported when a function needs them.
"""

from __future__ import annotations

import bisect
import json
import shutil
import statistics
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from rooflens.analysis.modules import lineage
from rooflens.capture.inputs import parse_shapes
from rooflens.capture.onnx_graph import path_from_name
from rooflens.errors import InputError, ModelError
from rooflens.measurement.profile import OperatorProfile, UnmatchedEvent, module_profiles
from rooflens.measurement.timer import Measurement, Progress, check_options, timed_calls, whole_number
from rooflens.report.report import Report

if TYPE_CHECKING:
    import numpy as np

LEVELS = ("disabled", "basic", "extended", "layout", "all")
PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}
_LEVEL_NAMES = {
    "disabled": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
    "layout": "ORT_ENABLE_LAYOUT", "all": "ORT_ENABLE_ALL",
}
# ONNX Runtime's tensor element types as numpy dtype names (bfloat16 and float8 have no numpy dtype)
_NUMPY_TYPES = {
    "float": "float32", "float16": "float16", "double": "float64", "int8": "int8", "int16": "int16",
    "int32": "int32", "int64": "int64", "uint8": "uint8", "uint16": "uint16", "uint32": "uint32",
    "uint64": "uint64", "bool": "bool",
}
_KERNEL_SUFFIX = "_kernel_time"
_NODE_SUFFIXES = (_KERNEL_SUFFIX, "_fence_before", "_fence_after")
_LARGE_MODEL_BYTES = 1 << 30  # above this, saved models keep their weights in an external data file

InputSizes = Sequence[int] | Sequence[Sequence[int]] | Mapping[str, Sequence[int]]


# ---- optional imports --------------------------------------------------------------------------------


def _ort() -> Any:  # onnxruntime ships no type information
    try:
        import onnxruntime
    except ImportError as e:
        raise InputError(
            f"ONNX Runtime is not installed ({e}); install the ONNX extra: pip install rooflens[onnx]"
        ) from None
    return onnxruntime


def _numpy() -> ModuleType:
    try:
        import numpy
    except ImportError as e:  # onnxruntime depends on numpy: only a broken installation lands here
        raise InputError(f"numpy is not installed ({e}); install the ONNX extra: pip install rooflens[onnx]") from None
    return numpy


def runtime_version() -> str:
    """``"onnxruntime <version>"``: the runtime that times and profiles (an InputError when not installed)."""
    return f"onnxruntime {_ort().__version__}"


# ---- results -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeTime:
    """One node of the graph ONNX Runtime ran, from its profiler's kernel events.

    ``name`` is the node's name in the (optimised) graph, the event name without its ``_kernel_time``
    suffix; ``op_type`` is the event's ``op_name`` (``FusedConv``, ``Conv`` for an NCHWc conv: the profiler
    does not give the domain); ``seconds`` the mean over the profiled runs of the node's kernel time in a
    run (0 in a run where it did not execute); ``calls`` the kernel events of the node in all profiled runs
    together (``runs`` of :class:`NodeProfile` for a node that runs once a run).
    """

    name: str
    op_type: str
    provider: str
    seconds: float
    calls: int

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "op_type": self.op_type, "provider": self.provider, "seconds": self.seconds,
                "calls": self.calls}


@dataclass(frozen=True)
class NodeProfile:
    """ONNX Runtime's profile of a model: per node in execution order, and per run.

    ``run_seconds``: mean over the profiled runs of the session's ``model_run`` event (the whole
    ``run()``: input checks, the executor, output handling); ``kernel_seconds``: mean over the runs of the
    sum of the kernel times in a run, at most ``run_seconds`` run by run with the sequential executor; the
    difference is the runtime's own time between kernels. Times include the profiler's per-node
    bookkeeping (memory and thread statistics: a few microseconds a node on a CPU).
    """

    nodes: tuple[NodeTime, ...]
    run_seconds: float
    kernel_seconds: float
    runs: int
    warmup: int
    provider: str
    threads: int | None  # ONNX Runtime's intra-op threads as asked (None: its default)
    runtime: str  # e.g. "onnxruntime 1.32.0"

    @property
    def overhead_seconds(self) -> float:
        """``run_seconds - kernel_seconds``: what a run spends outside the kernels."""
        return self.run_seconds - self.kernel_seconds

    def by_op_type(self) -> dict[str, float]:
        """Mean seconds per run summed by op type, slowest first."""
        out: dict[str, float] = {}
        for node in self.nodes:
            out[node.op_type] = out.get(node.op_type, 0.0) + node.seconds
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))

    def as_dict(self) -> dict[str, Any]:
        return {
            "runtime": self.runtime, "provider": self.provider, "threads": self.threads, "runs": self.runs,
            "warmup": self.warmup, "run_seconds": self.run_seconds, "kernel_seconds": self.kernel_seconds,
            "overhead_seconds": self.overhead_seconds, "nodes": [n.as_dict() for n in self.nodes],
        }


# ONNX Runtime kernels of the nodes the analysis records nothing for: they move no data (a Reshape's kernel
# hands its input buffer on, as torch's views do)
_VIEW_OPS = frozenset({"Reshape", "Squeeze", "Unsqueeze", "Flatten", "Identity", "Shape", "Size", "Dropout"})


def profile_report(report: Report, nodes: NodeProfile) -> OperatorProfile:
    """ONNX Runtime's node times laid on ``report``'s records, node by node, as the torch per-operator profile
    lays torch's events (:class:`~rooflens.measurement.profile.OperatorProfile`): ``report`` must analyse the
    graph ONNX Runtime ran (:func:`optimize_onnx` at the profile's level), whose node names the records carry
    (``OpRecord.node``). A node's time goes to its records (shared equally when it has several); nodes with
    no record are unmatched events (view kernels flagged as such); records whose node did not run (or ran
    under another name) are unmatched records. A module's measured time is its nodes' kernel time."""
    by_node: dict[str, list[int]] = {}
    for i, r in enumerate(report.records):
        if r.node:
            by_node.setdefault(r.node, []).append(i)
    n = len(report.records)
    seconds: list[float | None] = [None] * n
    events: list[str | None] = [None] * n
    module_time: dict[str, float] = {}
    unmatched: list[UnmatchedEvent] = []
    ran = [node for node in nodes.nodes if node.calls]
    runs = max(1, nodes.runs)
    for node in ran:
        claims = by_node.get(node.name, [])
        module = report.records[claims[0]].module if claims else path_from_name(node.name)
        module = module if module in report.modules else ""
        for path in lineage(module):
            module_time[path] = module_time.get(path, 0.0) + node.seconds
        if not claims:
            unmatched.append(UnmatchedEvent(f"onnx.{node.op_type}", node.calls / runs, node.seconds, (module,),
                                            node.op_type in _VIEW_OPS))
        for i in claims:
            seconds[i] = (seconds[i] or 0.0) + node.seconds / len(claims)
            events[i] = node.name
    record_seconds = tuple(seconds)
    return OperatorProfile(
        device=nodes.provider.removesuffix("ExecutionProvider").lower(),
        iters=nodes.runs,
        threads=nodes.threads,
        wall_seconds=nodes.run_seconds,
        profiled_seconds=nodes.kernel_seconds,
        events_per_call=float(len(ran)),
        matched_events_per_call=float(sum(1 for node in ran if node.name in by_node)),
        record_seconds=record_seconds,
        record_events=tuple(events),
        unmatched_records=tuple(i for i, s in enumerate(record_seconds) if s is None),
        unmatched_events=tuple(sorted(unmatched, key=lambda e: (-e.seconds, e.name))),
        modules=module_profiles(report, record_seconds, module_time),
        has_roofline=report.hardware is not None,
        notes=(f"{nodes.runtime} profiler: kernel time of each node, mean of {nodes.runs} runs",),
        _records=report.records,
    )


# ---- optimising --------------------------------------------------------------------------------------


def optimize_onnx(
    path: str | Path, *, level: str = "all", provider: str = "cpu", output: str | Path | None = None
) -> Path:
    """Let ONNX Runtime optimise ``path`` for ``provider`` at ``level`` and save the result; its path.

    ``level``: ``"disabled"``, ``"basic"``, ``"extended"``, ``"layout"`` or ``"all"`` (what each does on the
    CPU: the module docstring). ``output``: where to save (its folder must exist; never the input file);
    by default a new temporary folder (``rooflens-ort-*``) holds ``<stem>.<level>.<provider>.onnx``, and
    the caller removes it (``shutil.rmtree(result.parent)``) when done. Models with external data (over
    2 GB) are saved with their weights in ``<output name>.data`` beside the output.
    A ``"layout"``/``"all"`` graph optimised on one machine may not run on another (NCHWc blocks follow the
    CPU's vector width); a CUDA-optimised graph contains nodes assigned to the CUDA provider.
    """
    src = _model_file(path)
    level, provider = _level_name(level), _provider_name(provider)
    config = {}
    external = _uses_external_data(src)
    folder: Path | None = None
    if output is None:
        folder = Path(tempfile.mkdtemp(prefix="rooflens-ort-"))
        out = folder / f"{src.stem}.{level}.{provider}.onnx"
    else:
        out = _output_file(output, src)
    if external:
        config["session.optimized_model_external_initializers_file_name"] = f"{out.name}.data"
        config["session.optimized_model_external_initializers_min_size_in_bytes"] = "1024"
    try:
        _session(src, provider=provider, level=level, threads=None, optimized=out, config=config)
        if not out.is_file():
            raise ModelError(f"ONNX Runtime did not save the optimised model of {src} to {out}")
    except BaseException:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
        raise
    return out


# ---- measuring ---------------------------------------------------------------------------------------


def measure_onnx(
    path: str | Path,
    *,
    input_size: InputSizes | None = None,
    feeds: Mapping[str, Any] | None = None,
    provider: str = "cpu",
    level: str = "all",
    warmup: int = 10,
    iters: int = 50,
    min_seconds: float | None = None,
    max_seconds: float | None = None,
    threads: int | None = None,
    progress: Progress | None = None,
) -> Measurement:
    """Time ONNX Runtime runs of the model in ``path``: a :class:`~rooflens.measurement.timer.Measurement`.

    Inputs: ``feeds`` (input name -> array, of the input's dtype), or ``input_size``: the shapes of random
    inputs, one per graph input in order (or a mapping input name -> shape), binding the symbolic
    dimensions (``batch``, ``N`` ...); neither when every input has a fixed shape. Random inputs are
    uniform in [0, 1) for floating-point inputs and zeros for integer and boolean ones (token ids, masks).
    ``level``: the session's graph optimisation level (``"all"``, ONNX Runtime's default; ``"disabled"`` to
    run an already optimised file as it is). ``threads``: the session's intra-op threads (None: ONNX
    Runtime's default, one per physical core).

    The timing rules are :func:`~rooflens.measurement.timer.time_callable`'s (at least one untimed run,
    ``iters`` a minimum, ``min_seconds``/``max_seconds``), one sample per ``run_with_iobinding`` with the
    inputs bound once beforehand (on the GPU for CUDA): a run returns when its outputs are ready (ONNX
    Runtime synchronises the provider at its end), so the wall clock (``perf_counter``) times it. The
    Measurement records the device, the run's floating-point input dtype (``dtype``; None without one),
    ``threads`` as asked, ``runtime`` (``"onnxruntime 1.32.0"``) and ``provider``.
    """
    check_options(warmup, iters, min_seconds, max_seconds)
    session = _session(_model_file(path), provider=provider, level=level, threads=threads)
    arrays = _feeds(session, input_size, feeds)
    run = _runner(session, arrays, provider)
    try:
        timed = timed_calls(run, warmup=warmup, iters=iters, min_seconds=min_seconds, max_seconds=max_seconds,
                            device="cpu", progress=progress)
    except (InputError, ModelError):
        raise
    except Exception as e:
        raise ModelError(f"ONNX Runtime raised {type(e).__name__} while running {path}: {e}") from e
    return Measurement(
        samples_seconds=timed.samples_seconds,
        batch_size=_batch_size(arrays),
        device="cuda:0" if provider == "cuda" else "cpu",
        dtype=next((str(a.dtype) for a in arrays.values() if a.dtype.kind == "f"), None),
        threads=threads,
        warmup=max(1, warmup),
        runtime=runtime_version(),
        provider=PROVIDERS[provider],
        page_faults_per_call=timed.page_faults_per_call if provider == "cpu" else None,
    )


# ---- profiling ---------------------------------------------------------------------------------------


def profile_onnx(
    path: str | Path,
    *,
    input_size: InputSizes | None = None,
    feeds: Mapping[str, Any] | None = None,
    provider: str = "cpu",
    level: str = "all",
    runs: int = 20,
    warmup: int = 5,
    threads: int | None = None,
) -> NodeProfile:
    """Per-node times of the model in ``path`` from ONNX Runtime's profiler (``SessionOptions.enable_profiling``).

    Inputs, ``provider``, ``level`` and ``threads`` as for :func:`measure_onnx`. The session runs
    ``warmup`` times, then ``runs`` times; the profiler's trace (Chrome trace JSON, written in a temporary
    folder and removed) is read back: each ``run()`` is a ``"model_run"`` event (category ``Session``);
    each executed node a ``"<node name>_kernel_time"`` event (category ``Node``, ``args.op_name``,
    ``args.provider``); older versions add ``_fence_before``/``_fence_after`` events, which are not kernel
    time and are skipped. Node events are assigned to the run whose interval holds them; the warm-up runs'
    events are dropped. The node names are those of the graph after optimisation at ``level``: the names
    in :func:`optimize_onnx`'s output at the same level and provider.

    With the CUDA provider a node's ``_kernel_time`` is the host's time to launch its kernels (they run
    asynchronously); the GPU kernels' own events (category ``Kernel``) come only from ONNX Runtime builds
    with CUDA profiling and are not read here: on a GPU, trust ``run_seconds`` and read node times as a
    launch profile. (Not checked on a GPU yet.)
    """
    runs = whole_number(runs, "runs", minimum=1)
    warmup = whole_number(warmup, "warmup", minimum=0)
    src = _model_file(path)
    with tempfile.TemporaryDirectory(prefix="rooflens-ort-profile-") as tmp:
        session = _session(src, provider=provider, level=level, threads=threads, profile=Path(tmp) / "profile")
        try:
            arrays = _feeds(session, input_size, feeds)
            run = _runner(session, arrays, provider)
            try:
                for _ in range(warmup + runs):
                    run()
            except Exception as e:
                raise ModelError(f"ONNX Runtime raised {type(e).__name__} while running {path}: {e}") from e
        finally:
            trace_file = session.end_profiling()  # ends the trace even when a run failed (then removed)
        trace = Path(trace_file)
        if not trace.is_file():  # ONNX Runtime names the file after the prefix; look for it there
            trace = next(Path(tmp).glob("*.json"), trace)
        try:
            events = json.loads(trace.read_text())
        except (OSError, ValueError) as e:
            raise ModelError(f"ONNX Runtime's profile {trace} cannot be read: {type(e).__name__}: {e}") from e
    return parse_profile(events, warmup=warmup, provider=PROVIDERS[provider], threads=threads,
                         runtime=runtime_version())


def parse_profile(
    events: Sequence[Mapping[str, Any]], *, warmup: int, provider: str, threads: int | None, runtime: str
) -> NodeProfile:
    """A :class:`NodeProfile` from ONNX Runtime's profiler events (the trace file's JSON list), dropping the
    first ``warmup`` runs (see :func:`profile_onnx`)."""
    model_runs = sorted(
        ((float(e["ts"]), float(e["ts"]) + float(e["dur"])) for e in events
         if e.get("cat") == "Session" and e.get("name") == "model_run"),
    )
    if len(model_runs) <= warmup:
        raise ModelError(f"ONNX Runtime's profile has {len(model_runs)} model_run events, expected more than "
                         f"the {warmup} warm-up runs")
    kept = model_runs[warmup:]
    starts = [start for start, _ in kept]
    per_run: list[dict[str, float]] = [{} for _ in kept]
    calls: dict[str, int] = {}
    info: dict[str, tuple[str, str]] = {}
    order: list[str] = []
    for e in sorted((e for e in events if e.get("cat") == "Node"), key=lambda e: float(e["ts"])):
        name = str(e.get("name", ""))
        if not name.endswith(_KERNEL_SUFFIX):
            continue  # fences (before/after a kernel) are not kernel time
        ts = float(e["ts"])
        k = bisect.bisect_right(starts, ts) - 1
        if k < 0 or ts > kept[k][1]:
            continue  # a warm-up run's node (or one outside any run)
        node = name.removesuffix(_KERNEL_SUFFIX)
        args = e.get("args") or {}
        if node not in info:
            info[node] = (str(args.get("op_name", "")), str(args.get("provider", "")))
            order.append(node)
        per_run[k][node] = per_run[k].get(node, 0.0) + float(e["dur"]) / 1e6
        calls[node] = calls.get(node, 0) + 1
    nodes = tuple(
        NodeTime(name=n, op_type=info[n][0], provider=info[n][1],
                 seconds=statistics.fmean(r.get(n, 0.0) for r in per_run), calls=calls[n])
        for n in order
    )
    return NodeProfile(
        nodes=nodes,
        run_seconds=statistics.fmean((end - start) / 1e6 for start, end in kept),
        kernel_seconds=statistics.fmean(sum(r.values()) for r in per_run),
        runs=len(kept),
        warmup=warmup,
        provider=provider,
        threads=threads,
        runtime=runtime,
    )


def node_name(event_name: str) -> str:
    """The node name of a profiler event name: ``"/layer1/layer1.0/conv1/Conv_kernel_time"`` ->
    ``"/layer1/layer1.0/conv1/Conv"`` (also without ``_fence_before``/``_fence_after``)."""
    for suffix in _NODE_SUFFIXES:
        if event_name.endswith(suffix):
            return event_name.removesuffix(suffix)
    return event_name


# ---- quantizing --------------------------------------------------------------------------------------


def quantize_onnx(
    path: str | Path,
    *,
    output: str | Path,
    mode: str = "dynamic",
    format: str | None = None,
    calibration_batches: int = 8,
    input_size: InputSizes | None = None,
    per_channel: bool | None = None,
    activation_type: str = "uint8",
    reduce_range: bool = False,
    op_types: Sequence[str] | None = None,
    preprocess: bool = True,
    seed: int = 0,
) -> Path:
    """An int8 model of ``path`` made by ``onnxruntime.quantization``, saved to ``output``; ``output``.

    ``mode="dynamic"`` (``quantize_dynamic``): int8 weights (``weight_type`` int8); activations quantized
    at run time by ``DynamicQuantizeLinear`` feeding ``MatMulInteger``/``ConvInteger`` (QOperator nodes; no
    ``format`` but ``"qoperator"``, no calibration). ``mode="static"`` (``quantize_static``): activations too,
    with scales from MinMax calibration over ``calibration_batches`` batches of random inputs
    (``input_size`` as for :func:`measure_onnx`, drawn from ``numpy.random.default_rng(seed)``);
    ``format="qdq"`` (default: QuantizeLinear/DequantizeLinear pairs around float ops, fused by ONNX
    Runtime into int8 kernels at load) or ``"qoperator"`` (``QLinearConv``, ``QLinearMatMul`` ...).

    The calibration data are random, not real samples: the scales say nothing about the int8 model's
    accuracy, but the int8 graph and its speed are those a real calibration gives (same nodes, same
    kernels). ``activation_type``: ``"uint8"`` (default; u8 activations x s8 weights, ONNX Runtime's fast
    path on x86) or ``"int8"``; ``reduce_range``: 7-bit weights, which ONNX Runtime advises on x86 CPUs
    without VNNI to avoid saturation. ``per_channel`` (None: True for static, False for dynamic, ONNX
    Runtime's default) quantizes weights per output channel. ``op_types``: the op types to quantize
    (default: all ONNX Runtime can). ``preprocess``: run ONNX Runtime's pre-processing first
    (``quant_pre_process``: symbolic shape inference, basic graph optimisation, ONNX shape inference), as
    it recommends; a failure there is a ModelError (try ``preprocess=False``).
    """
    ort = _ort()
    src = _model_file(path)
    out = _output_file(output, src)
    if mode not in ("dynamic", "static"):
        raise InputError(f"mode={mode!r}: use 'dynamic' or 'static'")
    if format is not None and format not in ("qdq", "qoperator"):
        raise InputError(f"format={format!r}: use 'qdq' or 'qoperator'")
    if mode == "dynamic" and format == "qdq":
        raise InputError("format='qdq' is for static quantization; dynamic quantization writes QOperator nodes "
                         "(DynamicQuantizeLinear + MatMulInteger/ConvInteger)")
    if activation_type not in ("uint8", "int8"):
        raise InputError(f"activation_type={activation_type!r}: use 'uint8' or 'int8'")
    calibration_batches = whole_number(calibration_batches, "calibration_batches", minimum=1)
    if mode == "dynamic" and input_size is not None:
        raise InputError("input_size is for static quantization's calibration; dynamic quantization needs none")
    if per_channel is None:
        per_channel = mode == "static"
    from onnxruntime import quantization as q

    large = _uses_external_data(src)
    types = list(op_types) if op_types is not None else None
    with tempfile.TemporaryDirectory(prefix="rooflens-ort-quant-") as tmp:
        model = src
        if preprocess:
            model = Path(tmp) / f"{src.stem}.pre.onnx"
            try:
                q.quant_pre_process(str(src), str(model), save_as_external_data=large,
                                    all_tensors_to_one_file=True)
            except Exception as e:
                raise ModelError(f"ONNX Runtime's quantization pre-processing (quant_pre_process) failed on {src}: "
                                 f"{type(e).__name__}: {e}; try preprocess=False") from e
        try:
            if mode == "dynamic":
                q.quantize_dynamic(str(model), str(out), op_types_to_quantize=types, per_channel=per_channel,
                                   reduce_range=reduce_range, weight_type=q.QuantType.QInt8,
                                   use_external_data_format=large)
            else:
                reader = _calibration_reader(q.CalibrationDataReader, model, input_size, calibration_batches, seed)
                q.quantize_static(
                    str(model), str(out), reader,
                    quant_format=q.QuantFormat.QOperator if format == "qoperator" else q.QuantFormat.QDQ,
                    op_types_to_quantize=types, per_channel=per_channel, reduce_range=reduce_range,
                    activation_type=q.QuantType.QUInt8 if activation_type == "uint8" else q.QuantType.QInt8,
                    weight_type=q.QuantType.QInt8, calibrate_method=q.CalibrationMethod.MinMax,
                    use_external_data_format=large,
                )
        except (InputError, ModelError):
            raise
        except Exception as e:
            raise ModelError(f"onnxruntime {ort.__version__} could not quantize {src} ({mode}): "
                             f"{type(e).__name__}: {e}") from e
    if not out.is_file():
        raise ModelError(f"onnxruntime.quantization did not write {out}")
    return out


def _calibration_reader(base: type, model: Path, input_size: InputSizes | None, batches: int, seed: int) -> Any:
    """A CalibrationDataReader over ``batches`` random feeds for ``model`` (checked before calibration)."""
    session = _session(model, provider="cpu", level="disabled", threads=None)
    rng = _numpy().random.default_rng(seed)
    first = _feeds(session, input_size, None, rng)  # binds and checks the shapes now: errors name the input
    data = [first, *(_feeds(session, input_size, None, rng) for _ in range(batches - 1))]
    del session

    class Reader(base):  # type: ignore[misc]
        def __init__(self) -> None:
            self._it: Iterator[dict[str, Any]] = iter(data)

        def get_next(self) -> dict[str, Any] | None:
            return next(self._it, None)

        def rewind(self) -> None:
            self._it = iter(data)

    return Reader()


# ---- sessions ----------------------------------------------------------------------------------------


def _level_name(level: str) -> str:
    if level not in LEVELS:
        raise InputError(f"level={level!r}: use one of {', '.join(LEVELS)}")
    return level


def _provider_name(provider: str) -> str:
    if provider not in PROVIDERS:
        raise InputError(f"provider={provider!r}: use one of {', '.join(PROVIDERS)}")
    return provider


def _model_file(path: str | Path) -> Path:
    if not isinstance(path, (str, Path)):
        raise InputError(f"expected the path of an ONNX file, got {type(path).__name__}")
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such file")
    return p


def _output_file(output: str | Path, src: Path) -> Path:
    out = Path(output)
    if out.exists() and out.resolve() == src.resolve():
        raise InputError(f"output={str(output)!r} is the input model itself; give another path")
    if not out.parent.is_dir():
        raise InputError(f"output={str(output)!r}: folder {out.parent} does not exist")
    return out


def _uses_external_data(path: Path) -> bool:
    """Whether the model keeps weights in external files (then saved models must too: protobuf's 2 GB)."""
    if path.stat().st_size > _LARGE_MODEL_BYTES:
        return True
    try:
        import onnx
    except ImportError:
        return False
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:
        raise InputError(f"{path}: not an ONNX model ({type(e).__name__}: {e})") from e
    return any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)


def _session(
    path: Path,
    *,
    provider: str,
    level: str,
    threads: int | None,
    optimized: Path | None = None,
    profile: Path | None = None,
    config: Mapping[str, str] | None = None,
) -> Any:
    """An ``InferenceSession`` of ``path`` for ``provider`` at ``level`` (errors: InputError, ModelError)."""
    ort = _ort()
    name = PROVIDERS[_provider_name(provider)]
    level = _level_name(level)
    if threads is not None:
        whole_number(threads, "threads", minimum=1)
    available = ort.get_available_providers()
    if name not in available:
        raise InputError(
            f"provider={provider!r}: this ONNX Runtime ({ort.__version__}) has no {name} (it has "
            f"{', '.join(available)}); for CUDA install onnxruntime-gpu on a machine with an NVIDIA GPU"
        )
    opt_level = getattr(ort.GraphOptimizationLevel, _LEVEL_NAMES[level], None)
    if opt_level is None:
        raise InputError(f"level={level!r}: ONNX Runtime {ort.__version__} has no {_LEVEL_NAMES[level]}")
    options = ort.SessionOptions()
    options.graph_optimization_level = opt_level
    options.log_severity_level = 3  # errors only: no warnings on stderr (see the module docstring)
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads or 0  # 0: ONNX Runtime's default
    if optimized is not None:
        options.optimized_model_filepath = str(optimized)
    if profile is not None:
        options.enable_profiling = True
        options.profile_file_prefix = str(profile)
    for key, value in (config or {}).items():
        options.add_session_config_entry(key, value)
    providers = [name] if name == "CPUExecutionProvider" else [name, "CPUExecutionProvider"]
    try:
        session = ort.InferenceSession(str(path), options, providers=providers)
    except Exception as e:
        if type(e).__name__ in ("InvalidProtobuf", "InvalidGraph", "NoModel", "DecodeError"):
            raise InputError(f"{path}: not an ONNX model ({type(e).__name__}: {e})") from None
        raise ModelError(f"ONNX Runtime {ort.__version__} cannot load {path}: {type(e).__name__}: {e}") from e
    if name not in session.get_providers():
        raise InputError(f"provider={provider!r}: ONNX Runtime could not start {name} here (the session fell "
                         f"back to {', '.join(session.get_providers())}); check the CUDA and cuDNN libraries")
    return session


def _runner(session: Any, arrays: Mapping[str, np.ndarray], provider: str) -> Callable[[], None]:
    """One run of ``session`` on ``arrays`` bound once (on the GPU for CUDA); outputs on the run's device."""
    ort = _ort()
    binding = session.io_binding()
    device = "cuda" if provider == "cuda" else "cpu"
    for name, array in arrays.items():
        if device == "cpu":
            binding.bind_cpu_input(name, array)
        else:
            binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(array, device, 0))
    for out in session.get_outputs():
        binding.bind_output(out.name, device, 0)

    def run() -> None:
        session.run_with_iobinding(binding)

    return run


def _batch_size(arrays: Mapping[str, np.ndarray]) -> int:
    for array in arrays.values():
        return int(array.shape[0]) if array.ndim > 0 else 1
    return 1


# ---- inputs ------------------------------------------------------------------------------------------


def _feeds(
    session: Any, input_size: InputSizes | None, feeds: Mapping[str, Any] | None, rng: Any = None
) -> dict[str, np.ndarray]:
    """Arrays for every input of ``session``: ``feeds`` checked, or random ones of the bound shapes."""
    np = _numpy()
    inputs = session.get_inputs()
    names = [i.name for i in inputs]
    if feeds is not None and input_size is not None:
        raise InputError("give feeds=... (arrays) or input_size=... (shapes of random inputs), not both")
    if feeds is not None:
        if not isinstance(feeds, Mapping):
            raise InputError(f"feeds must be a mapping input name -> array, got {type(feeds).__name__}")
        unknown = [k for k in feeds if k not in names]
        missing = [n for n in names if n not in feeds]
        if unknown or missing:
            raise InputError(f"feeds: the model's inputs are {names}"
                             + (f"; unknown {unknown}" if unknown else "") + (f"; missing {missing}" if missing else ""))
        out = {}
        for i in inputs:
            want = _numpy_dtype(i)
            array = np.ascontiguousarray(feeds[i.name])
            if array.dtype != np.dtype(want):
                raise InputError(f"feeds[{i.name!r}] is {array.dtype}; the model's input {i.name!r} is {want}")
            _bind(i, tuple(int(d) for d in array.shape), {}, "feeds")
            out[i.name] = array
        return out
    shapes = _input_shapes(inputs, input_size)
    rng = rng if rng is not None else np.random.default_rng(0)
    out = {}
    for i, shape in zip(inputs, shapes):
        dtype = np.dtype(_numpy_dtype(i))
        if dtype.kind == "f":
            out[i.name] = rng.random(shape, dtype=np.float64).astype(dtype)
        else:
            out[i.name] = np.zeros(shape, dtype=dtype)
    return out


def _numpy_dtype(arg: Any) -> str:
    kind = str(arg.type)
    element = kind.removeprefix("tensor(").removesuffix(")") if kind.startswith("tensor(") else None
    if element is None or element not in _NUMPY_TYPES:
        raise InputError(f"input {arg.name!r} is of type {kind}, which rooflens cannot make random inputs of "
                         f"(nor check); supported: tensors of {', '.join(_NUMPY_TYPES)}")
    return _NUMPY_TYPES[element]


def _input_shapes(inputs: Sequence[Any], input_size: InputSizes | None) -> list[tuple[int, ...]]:
    """One concrete shape per input: the graph's, its symbolic dimensions bound by ``input_size``."""
    names = [i.name for i in inputs]
    given: list[tuple[int, ...] | None]
    if input_size is None:
        given = [None] * len(inputs)
    elif isinstance(input_size, Mapping):
        unknown = [k for k in input_size if k not in names]
        if unknown:
            raise InputError(f"input_size names {unknown}; the model's inputs are {names}")
        given = [tuple(parse_shapes(input_size[n])[0]) if n in input_size else None for n in names]
    else:
        shapes = parse_shapes(input_size)
        if len(shapes) != len(inputs):
            raise InputError(f"input_size gives {len(shapes)} shape(s); the model has {len(inputs)} input(s) "
                             f"{names} (give one shape each, in that order, or a mapping name -> shape)")
        given = list(shapes)
    symbols: dict[str, tuple[int, str]] = {}
    out = []
    for i, shape in zip(inputs, given):
        if shape is None:
            fixed = []
            for k, d in enumerate(i.shape):
                if not (isinstance(d, int) and d >= 0):
                    raise InputError(
                        f"input {i.name!r} {_shape_text(i.shape)}: dimension {k} ({d!r}) is symbolic; give its size "
                        f"with input_size=... (e.g. {_example(i.shape)}) or pass feeds"
                    )
                fixed.append(d)
            out.append(tuple(fixed))
        else:
            out.append(_bind(i, shape, symbols, "input_size"))
    return out


def _bind(arg: Any, shape: tuple[int, ...], symbols: dict[str, tuple[int, str]], what: str) -> tuple[int, ...]:
    """``shape`` checked against the input's graph shape: same rank, fixed dimensions equal, each symbolic
    name one size across inputs (``symbols``: name -> (size, input))."""
    graph = list(arg.shape)
    if len(shape) != len(graph):
        raise InputError(f"{what} gives input {arg.name!r} the shape {shape}; it has {len(graph)} dimensions "
                         f"{_shape_text(graph)}")
    for k, (d, size) in enumerate(zip(graph, shape)):
        if isinstance(d, int) and d >= 0:
            if d != size:
                raise InputError(f"{what} gives input {arg.name!r} size {size} in dimension {k}; the model fixes it "
                                 f"at {d} {_shape_text(graph)}")
        elif isinstance(d, str) and d:
            bound = symbols.setdefault(d, (size, arg.name))
            if bound[0] != size:
                raise InputError(f"{what}: dimension {d!r} is {bound[0]} in input {bound[1]!r} and {size} in input "
                                 f"{arg.name!r}; a symbolic dimension has one size")
    return shape


def _shape_text(shape: Sequence[Any]) -> str:
    return "[" + ", ".join(str(d) if isinstance(d, int) else repr(d) for d in shape) + "]"


def _example(shape: Sequence[Any]) -> str:
    return "(" + ", ".join(str(d) if isinstance(d, int) and d >= 0 else "1" for d in shape) + ")"

