"""The ``rooflens`` command line.

    rooflens profile MODEL [-i 1,3,224,224 ...] [--dtype float16] [--convention fma|exact] [--meta | --no-meta]
                           [--precision fp16] [--weight-bits 8] [--act-bits 8] [--depth N] [--summary]
                           [-f table|json|csv|markdown|html] [-o FILE] [--bytes si|binary] [--width N]
    rooflens roofline MODEL --hw ID|FILE.toml|this[,...] | --peak 19.2T --bandwidth 448G [--calibrated]
                           [--plot FILE.png|svg|pdf] [... the options of profile but --summary]
    rooflens bench MODEL [--batch 1,8,32] [--device cpu] [--threads N] [--warmup 10] [--iters 50]
                         [--per-op] [--hw ID|FILE.toml|this] [... the options of profile but --meta, --summary]
    rooflens memory MODEL [--batch N] [--train [--optimizer adamw] [--mixed-precision] [--checkpoint PATH ...]]
                          [--precision fp16] [--weight-bits B] [--act-bits B] [-f table|json|markdown|html]
    rooflens hw list [--kind gpu] [--precision fp16] [--hw FILE.toml] [-f table|json|csv|markdown|html]
    rooflens hw show ID|FILE.toml|this[,...] [-f table|json|markdown|html|toml]
    rooflens hw bench [--quick] [--save FILE.toml] [-f table|json|markdown|html|toml]
    rooflens hw calibrate [--quick] [--save FILE.toml] [--threads N] [--device cpu|cuda] [--from FILE.toml]

One meaning per flag in every command: ``--precision`` is the compute precision (the device's peak, and
the width in memory of floating-point tensors), ``--hw`` names devices in one grammar (catalogue ids,
TOML files, ``this``), ``--batch`` takes comma-separated batch sizes, ``--format`` the same names. MODEL
is ``torchvision:NAME``, ``package.module:callable`` or ``path/to/file.py:callable``. Errors print one
line, ``rooflens: error: ...``, on standard error and exit with status 2. Models are built and run with
seeded random numbers: a real run (the fall-back for data-dependent models) gives the same output twice.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, NoReturn, TypeVar

import torch

from rooflens import __version__, measurement
from rooflens.analysis.advice import Rule
from rooflens.analysis.calibrated import calibrate
from rooflens.analysis.memory import memory
from rooflens.analysis.predictor import CalibrationMethod, predictor_of
from rooflens.api import analyze, analyze_onnx
from rooflens.errors import InputError, RooflensError, first_names
from rooflens.hardware import custom, devices, get, load_file
from rooflens.hardware.spec import HardwareSpec, Kind, Precision, parse_quantity
from rooflens.llm.run import DEFAULT_WEIGHT_GROUP
from rooflens.measurement.onnxrt import (
    LEVELS,
    PROVIDERS,
    measure_onnx,
    optimize_onnx,
    profile_onnx,
    profile_report,
    runtime_version,
)
from rooflens.measurement.timer import allocator_settings
from rooflens.report.advice_render import advice_document
from rooflens.report.compare import compare
from rooflens.report.document import (
    RENDERERS,
    Document,
    Gap,
    Grid,
    Heading,
    Note,
    print_document,
    report_document,
)
from rooflens.report.energy_render import energy_document
from rooflens.report.hardware_render import catalogue_document, devices_document
from rooflens.report.llm_render import llm_document, plot_sweep
from rooflens.report.measure_render import KEEP_MEMORY_ENV, bench_document, settings_text
from rooflens.report.memory_render import memory_document, with_summary
from rooflens.report.report import Report
from rooflens.report.roofline_render import comparison_document
from rooflens.report.terminal import DEFAULT_WIDTH
from rooflens.report.units import ByteUnit, joules_text
from rooflens.zoo import is_onnx, load_model

PROG = "rooflens"
DEFAULT_ORT_LEVEL = "all"  # ONNX Runtime's own default for a session
EXIT_OK, EXIT_INTERNAL, EXIT_ERROR = 0, 1, 2
SEED = 0  # torch's random numbers before a model is built and before it runs: real runs repeat exactly
THIS = "this"  # --hw this: this machine, measured now (quick micro-benchmarks)
PRECISIONS = tuple(p.value for p in Precision)
# The formats of each kind of output: subsets of rooflens.report.document.FORMATS, in its order.
TABLE_FORMATS = ("table", "json", "csv", "markdown", "html")
MEMORY_FORMATS = ("table", "json", "markdown", "html")
DEVICE_FORMATS = ("table", "json", "markdown", "html", "toml")
T = TypeVar("T")

_MODEL_HELP = (
    "the model: torchvision:NAME (e.g. torchvision:resnet50; no weights are downloaded), "
    "package.module:callable or path/to/file.py:callable (a class or function called with no arguments); "
    "profile and roofline also take path/to/model.onnx"
)


# ---- argument parsing -------------------------------------------------------------------------------


def input_size(text: str) -> tuple[int, ...]:
    """``'1,3,224,224'`` (or ``'1x3x224x224'``) -> ``(1, 3, 224, 224)``."""
    parts = [p.strip() for p in text.replace("x", ",").replace("X", ",").replace("×", ",").split(",")]
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a shape; write it as comma-separated sizes, e.g. 1,3,224,224"
        ) from None
    if not shape or any(d <= 0 for d in shape):
        raise argparse.ArgumentTypeError(f"{text!r}: sizes must be positive integers, e.g. 1,3,224,224")
    return shape


def batch_sizes(text: str) -> list[int]:
    """``--batch``: ``'1,8,32'`` -> ``[1, 8, 32]`` (one size is a list of one)."""
    try:
        sizes = [int(x) for x in text.replace(" ", "").split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give batch sizes as comma-separated positive integers, e.g. 8 or 1,8,32"
        ) from None
    if any(b <= 0 for b in sizes):
        raise argparse.ArgumentTypeError(f"{text!r}: batch sizes must be positive integers, e.g. 8 or 1,8,32")
    return sizes


def hardware_names(text: str) -> list[str]:
    """``--hw`` (and the DEVICE of `hw show`): ``'a4000,devices.toml,this'`` -> the names in order.

    A name is a catalogue id or alias, a TOML file of ``[[device]]`` tables, or ``this`` (this machine,
    measured now); :func:`hardware` loads them.
    """
    names = [n.strip() for n in text.split(",")]
    if not any(names):
        raise argparse.ArgumentTypeError(
            f"{text!r} names no device; give a catalogue id (see `rooflens hw list`), a TOML file or `this`, "
            "e.g. a4000 or a4000,t4"
        )
    if not all(names):
        raise argparse.ArgumentTypeError(f"{text!r} has an empty device name between commas; e.g. a4000,t4")
    return names


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} must be 0 or more")
    return value


def _positive(text: str) -> int:
    value = _non_negative(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def _bits(text: str) -> int:
    value = _non_negative(text)
    if not 1 <= value <= 64:
        raise argparse.ArgumentTypeError(f"{value} bits: give 1 to 64 (e.g. 8 for INT8, 4 for INT4)")
    return value


def _weight_group(text: str) -> int | None:
    if text.lower() in ("none", "row"):
        return None if text.lower() == "none" else -1
    value = _non_negative(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: give a group size >= 1 (e.g. 128), row or none")
    return value


def _width(text: str) -> int:
    value = _non_negative(text)
    if value < 40:
        raise argparse.ArgumentTypeError(f"width {value} is too narrow for the table (40 or more)")
    return value


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors in the same one-line form as rooflens's own (and where to read more)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_ERROR, f"{PROG}: error: {' '.join(message.split())} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="What a PyTorch model costs: parameters, MACs, FLOPs and bytes read/written, "
        "per operator, per module and in total (counted on fake tensors: nothing is computed).",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the Python traceback of an error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    _add_profile(sub)
    _add_roofline(sub)
    _add_bench(sub)
    _add_memory(sub)
    _add_compare(sub)
    _add_energy(sub)
    _add_advise(sub)
    _add_llm(sub)
    _add_hw(sub)
    return parser


# Parent parsers: each option is defined once, with one meaning, and shared by the commands that take it.

def _model_options(*, many: bool = False) -> argparse.ArgumentParser:
    """MODEL (``many``: one or more, as ``models``), its input shapes and dtype."""
    p = argparse.ArgumentParser(add_help=False)
    if many:
        p.add_argument("models", metavar="MODEL", nargs="+", help=_MODEL_HELP)
    else:
        p.add_argument("model", metavar="MODEL", help=_MODEL_HELP)
    p.add_argument(
        "--input-size", "-i", dest="input_size", type=input_size, action="append", metavar="1,3,224,224",
        help="shape of an input tensor; repeat it once per positional input (default: the model's usual input "
        "for torchvision models); bench and memory: --batch replaces the first dimension",
    )
    p.add_argument("--dtype", help="the model's floating-point parameters, buffers and inputs in this dtype "
                   "(float16, bfloat16 ...): analysed as if converted (the model is not changed); bench runs in it")
    return p


def _convention_option() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--convention", choices=("fma", "exact"), default="fma",
                   help="FLOP convention: fma (FLOPs = 2 x MACs + ...; default) or exact (n mults + n-1 adds)")
    return p


def _meta_option() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--meta", action=argparse.BooleanOptionalAction, default=None,
                   help="build the model on the meta device (fast, no memory; parameter values unknown); "
                   "default: meta for torchvision models whose forward does not need values")
    p.add_argument("--value-checks", choices=("assume", "error"), default="assume",
                   help="on the meta device, a yes/no read of a tensor (attention_mask.all(): any padding?): "
                   "assume it passes, listed in the diagnostics (default), or stop with an error")
    return p


def _precision_options() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--precision", "-p", choices=PRECISIONS, default=None,
                   help="compute precision: selects the device's peak and sets the width in memory of every "
                   "floating-point tensor (int8: 1 byte per element; default: the model's dtype, tensors as built)")
    p.add_argument("--weight-bits", type=_bits, default=None, metavar="BITS",
                   help="bits per element of floating-point weights and buffers in memory (e.g. 8 or 4)")
    p.add_argument("--act-bits", type=_bits, default=None, metavar="BITS",
                   help="bits per element of floating-point activations in memory (e.g. 8)")
    return p


def _depth_option() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--depth", "-d", type=_non_negative, default=None,
                   help="show modules down to this depth; deeper ones are folded into their ancestors "
                   "(default: every module)")
    return p


def _hw_option(what: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--hw", type=hardware_names, action="extend", metavar="ID|FILE.toml|this[,...]",
                   help=f"{what}: catalogue ids or aliases (see `rooflens hw list`), TOML files of [[device]] "
                   "tables, or `this` (this machine, measured now); comma-separated or repeated")
    return p


def _output_options(formats: Sequence[str]) -> argparse.ArgumentParser:
    """-f/-o/--width/--bytes/--debug; ``formats``: the names this command writes."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--format", "-f", choices=formats, default="table",
                   help=f"output format: {', '.join(formats)} (default: table)")
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of standard output")
    p.add_argument("--width", type=_width, default=None,
                   help="table width in characters, no colour (default: the terminal's, 140 when not a terminal)")
    p.add_argument("--bytes", choices=("si", "binary"), default=None,
                   help="byte units: si (MB = 1e6 bytes; default) or binary (MiB = 2^20 bytes); "
                   "csv gives plain bytes unless this is set")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return p


def _add_profile(sub: Any) -> None:
    p = sub.add_parser(
        "profile",
        parents=[_model_options(), _convention_option(), _meta_option(), _precision_options(), _depth_option(),
                 _output_options(TABLE_FORMATS)],
        help="count parameters, MACs, FLOPs and memory traffic per module",
        description="Count parameters, MACs, FLOPs and bytes read/written per module and in total. "
        "MACs = conv + matmul multiply-accumulates; 1 MAC = 2 FLOPs.",
    )
    _add_optimized(p)
    p.add_argument("--summary", action="store_true",
                   help="add the torchsummary-style memory footer (input, forward/backward pass, params, total) "
                   "and the peak of the live-memory timeline (json: under \"memory_summary\"; not with csv)")
    p.set_defaults(func=cmd_profile)


def _add_roofline(sub: Any) -> None:
    p = sub.add_parser(
        "roofline",
        parents=[_model_options(), _convention_option(), _meta_option(), _precision_options(), _depth_option(),
                 _hw_option("the device(s), one row each when several"), _output_options(TABLE_FORMATS)],
        help="roofline time, bound and intensity per module on a device (or several)",
        description="Arithmetic intensity, bound (compute or memory) and roofline time "
        "max(FLOPs / peak, bytes / bandwidth) per operator, summed per module, on the devices of --hw. "
        "With several devices: one row per device. The roofline time is a lower bound for an eager run.",
    )
    p.add_argument("--peak", metavar="FLOP/S",
                   help="peak FLOP/s with an SI suffix (19.2T); alone with --bandwidth: an ad-hoc device; "
                   "with --hw: replaces the devices' peak at the precision")
    p.add_argument("--bandwidth", metavar="B/S",
                   help="memory bandwidth in bytes/s with an SI suffix (448G); with one --hw device: replaces "
                   "its bandwidth; with several: the bandwidth of those whose bandwidth is unpublished")
    p.add_argument("--calibrated", action="store_true",
                   help="require the calibrated latency estimate beside the roofline (devices measured by "
                   "`rooflens hw bench --save FILE`; it is shown for them anyway): an error for a datasheet device")
    p.add_argument("--calibration", choices=[m.value for m in CalibrationMethod], default="auto",
                   help="which calibrated estimate: the learned predictor of a device measured by `rooflens hw "
                   "calibrate`, the analytic model of its micro-benchmarks, or auto (default: learned when the "
                   "device carries one)")
    p.add_argument("--plot", metavar="FILE",
                   help="draw the roofline to FILE (.png, .svg or .pdf); with several devices one file each, "
                   "named FILE-<device>.png")
    p.add_argument("--plot-level", choices=("module", "operator"), default="module",
                   help="points of the plot: modules (the leaves, or those at --depth; default) or single operators")
    _add_optimized(p)
    p.set_defaults(func=cmd_roofline)


def _add_bench(sub: Any) -> None:
    p = sub.add_parser(
        "bench",
        parents=[_model_options(), _convention_option(), _precision_options(), _depth_option(),
                 _hw_option("the device of the roofline (one)"), _output_options(TABLE_FORMATS)],
        help="measure latency and throughput on real tensors (and per module against the roofline)",
        description="Time real forward passes (warm-up, then the median of --iters; never the first call): "
        "median, p90, p99, mean and std latency and throughput per batch size; achieved FLOP/s and bytes/s "
        "from the counted work; with --hw, the roofline time and the efficiency (roofline / measured). "
        "--per-op profiles every operator with torch.profiler and shows per module measured vs roofline "
        "(down to --depth).",
    )
    p.add_argument("--batch", "-b", type=batch_sizes, default=None, metavar="1,8,32",
                   help="batch sizes to measure, replacing the inputs' first dimension (default: the input's)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1 or mps")
    p.add_argument("--threads", type=_positive, default=None, help="torch's CPU threads during the run")
    p.add_argument("--warmup", type=_positive, default=10, help="untimed calls first (default 10)")
    p.add_argument("--iters", type=_positive, default=50, help="timed calls, at least (default 50)")
    p.add_argument("--max-seconds", type=float, default=None, help="cap on the timing of each batch size")
    p.add_argument("--per-op", action="store_true",
                   help="profile every operator (torch.profiler) and show per module measured vs roofline time")
    p.add_argument("--ort-level", choices=LEVELS, default=DEFAULT_ORT_LEVEL,
                   help=f"an .onnx MODEL: the graph ONNX Runtime optimises at this level for --device and runs "
                   f"(default {DEFAULT_ORT_LEVEL}); the analysis, the timing and --per-op are of that graph")
    p.add_argument("--no-energy", dest="energy", action="store_false",
                   help="do not measure energy (by default, where RAPL or NVML counters are readable, a further "
                   "2 s loop at the first batch size measures joules per inference beside the estimate)")
    _keep_memory_option(p, "measure in a process whose allocator keeps freed memory")
    p.set_defaults(func=cmd_bench)


def _keep_memory_option(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--keep-memory", action="store_true",
                   help=f"{what}: the command runs again in a new process with {settings_text(KEEP_MEMORY_ENV)} (glibc), so forward passes "
                   "stop faulting their memory in on every call (see the Faults column; docs/prediction.md)")


def _add_optimized(p: argparse.ArgumentParser) -> None:
    """--optimized, --ort-level and --provider: an .onnx MODEL as ONNX Runtime optimises it."""
    p.add_argument("--optimized", action="store_true",
                   help="an .onnx MODEL: analyse the graph ONNX Runtime runs (optimised at --ort-level for "
                   "--provider) and compare its totals with the file's")
    p.add_argument("--ort-level", choices=LEVELS, default=DEFAULT_ORT_LEVEL,
                   help=f"ONNX Runtime's graph optimisation level for --optimized (default {DEFAULT_ORT_LEVEL}: "
                   "its own default; extended keeps the graph portable, without the CPU's NCHWc layout)")
    p.add_argument("--provider", choices=tuple(PROVIDERS), default="cpu",
                   help="ONNX Runtime's execution provider the graph is optimised for (default cpu)")


def _add_memory(sub: Any) -> None:
    p = sub.add_parser(
        "memory",
        parents=[_model_options(), _meta_option(), _precision_options(), _output_options(MEMORY_FORMATS)],
        help="peak memory of inference or of a training step (live-tensor timeline on fake tensors)",
        description="Track every tensor of one forward pass (or training step) on fake tensors: the peak of "
        "live memory, the operator and module where it occurs, weights, #activations; with --train the saved "
        "activations, gradients, optimizer state and the peak of the step. Also the torchsummary figures.",
    )
    p.add_argument("--batch", "-b", type=batch_sizes, default=None, metavar="N",
                   help="batch size, replacing the inputs' first dimension (one size)")
    p.add_argument("--train", action="store_true", help="a training step: forward, backward and optimizer step")
    p.add_argument("--optimizer", choices=("sgd", "sgd-momentum", "adam", "adamw"), default=None,
                   help="optimizer of the training step (with --train; default: sgd)")
    p.add_argument("--mixed-precision", action="store_true",
                   help="mixed-precision training (with --train): weights, activations and gradients in 16 bits "
                   "(--dtype float16, the default, or bfloat16) with fp32 master weights and optimizer state")
    p.add_argument("--checkpoint", action="append", metavar="MODULE", default=[],
                   help="activation checkpointing on this module path (repeat it; with --train)")
    p.set_defaults(func=cmd_memory)


def _add_compare(sub: Any) -> None:
    p = sub.add_parser(
        "compare",
        parents=[_model_options(many=True), _convention_option(), _meta_option(), _precision_options(),
                 _hw_option("the devices, a table each"), _output_options(TABLE_FORMATS)],
        help="models side by side: counts, roofline time, peak memory, and ratios to the first model",
        description="One row per model (a table per device of --hw): parameters, MACs, bytes, intensity, weights, "
        "roofline time (and the calibrated estimate for measured devices), the peak memory of inference, and "
        "each figure's ratio to the first model; a note wherever a model with fewer MACs takes longer. A MODEL may "
        "be an .onnx file (no peak memory for it).",
    )
    p.add_argument("--no-memory", dest="memory", action="store_false",
                   help="leave out the peak memory (one more pass over each model)")
    p.set_defaults(func=cmd_compare)


def _add_energy(sub: Any) -> None:
    p = sub.add_parser(
        "energy",
        parents=[_model_options(), _convention_option(), _meta_option(), _precision_options(), _depth_option(),
                 _hw_option("the device whose energy figures apply (one; default: Horowitz's 45 nm table)"),
                 _output_options(TABLE_FORMATS)],
        help="estimated energy per module: compute vs memory (DRAM) joules",
        description="A first-order energy estimate: MACs x pJ/MAC + other FLOPs x pJ/FLOP + bytes x pJ/byte at the "
        "compute precision (Horowitz, ISSCC 2014, unless the device has its own figures; docs/energy.md), per "
        "module and per inference, split into compute and memory. Every operator's bytes count as DRAM traffic "
        "unless --onchip.",
    )
    p.add_argument("--onchip", action="store_true",
                   help="activations of operators that fit in the device's on-chip memory count as on-chip traffic "
                   "(needs a --hw device with an on-chip size)")
    p.set_defaults(func=cmd_energy)


def _add_advise(sub: Any) -> None:
    p = sub.add_parser(
        "advise",
        parents=[_model_options(), _convention_option(), _meta_option(), _precision_options(),
                 _hw_option("the device the advice is for (one; without it, findings rank by bytes)"),
                 _output_options(TABLE_FORMATS)],
        help="design advice with evidence: ShuffleNetV2's G1-G4, alignment, depthwise, fusion, RepVGG, batch, precision",
        description="Rules applied to the counted model, each finding with the modules, the numbers it rests on "
        "and what the change would save (bytes, and roofline or calibrated time on the device), most saving "
        "first; derivations and sources in docs/advice.md.",
    )
    p.add_argument("--rules", type=lambda text: [r.strip() for r in text.split(",") if r.strip()],
                   metavar="G1,fusion,...", default=None,
                   help=f"only these rules ({', '.join(r.value for r in Rule)}; default: all)")
    p.add_argument("--top", type=_positive, default=20, help="show the first N findings (default 20)")
    p.add_argument("--min-share", type=float, default=0.0, metavar="FRACTION",
                   help="leave out findings that save less than this share of the model's time (e.g. 0.01)")
    p.add_argument("--memory", action="store_true",
                   help="also check that weights + the activation peak fit the device (one more pass over the model)")
    p.set_defaults(func=cmd_advise)


def _add_llm(sub: Any) -> None:
    p = sub.add_parser(
        "llm",
        parents=[_hw_option("the device (one)"), _depth_option(), _output_options(TABLE_FORMATS)],
        help="LLM inference: prefill and decode from the real transformers code, TTFT, TPOT, tokens/s, memory",
        description="Build a causal LM with transformers on the meta device (a config id such as llama-2-7b, a "
        "config.json, hf:org/name from the local cache, or package.module:callable), count the prefill of "
        "--batch x --prompt tokens and the decode steps of --gen tokens against a real KV cache of meta tensors, "
        "and time them on the device's roofline: time to first token, time per output token, tokens per second, "
        "weights and KV cache against the device's memory. See `rooflens llm --list` for the config table.",
    )
    p.add_argument("model", metavar="MODEL", nargs="?", help="a config id (see --list), path/to/config.json, "
                   "hf:org/name, or package.module:callable / file.py:callable returning the model")
    p.add_argument("--list", action="store_true", help="list the shipped configs and exit")
    p.add_argument("--prompt", type=_positive, default=512, help="prompt tokens per sequence (default 512)")
    p.add_argument("--gen", type=_positive, default=128, help="generated tokens per sequence (default 128)")
    p.add_argument("--batch", "-b", type=batch_sizes, default=[1], metavar="1,8,32", help="batch sizes (default 1)")
    p.add_argument("--precision", "-p", choices=("fp32", "fp16", "bf16", "int8"), default="fp16",
                   help="weights, activations and KV cache dtype, and the device's peak (default fp16); int8: W8A8, "
                   "matrix products at the int8 peak with 8-bit weights, activations and KV cache in fp16")
    p.add_argument("--weight-bits", type=_bits, default=None, metavar="BITS",
                   help="weights in memory at this many bits, compute at --precision (W8A16: 8, W4A16: 4)")
    p.add_argument("--weight-group", type=_weight_group, default=DEFAULT_WEIGHT_GROUP, metavar="N",
                   help=f"quantized weights: one 16-bit scale per N weights of a row, counted in the weight bytes "
                   f"(default {DEFAULT_WEIGHT_GROUP}; row: one per output channel; none: not counted)")
    p.add_argument("--kv-bits", type=_bits, default=None, metavar="BITS", help="the KV cache at this many bits")
    p.add_argument("--tp", type=_positive, default=1, metavar="N",
                   help="tensor parallelism over N devices (Megatron-style split; per-device figures and the "
                   "all-reduces over the device's interconnect)")
    p.add_argument("--all-logits", action="store_true",
                   help="the LM head on every prompt token in the prefill (default: the last, as generation does)")
    p.add_argument("--plot", metavar="FILE",
                   help="draw latency against throughput over the batch sizes to FILE (.png, .svg or .pdf), and the "
                   "rooflines of the first batch's prefill and decode step to FILE-prefill and FILE-decode")
    p.set_defaults(func=cmd_llm)


def _add_hw(sub: Any) -> None:
    hw = sub.add_parser("hw", help="the hardware catalogue", description="The hardware catalogue: dense peaks "
                        "per precision, memory bandwidth and size, ridge points and sources.")
    hw_sub = hw.add_subparsers(dest="hw_command", metavar="ACTION", parser_class=_Parser)
    hw_sub.required = True
    ls = hw_sub.add_parser("list", parents=[_hw_option("also list these devices"), _output_options(TABLE_FORMATS)],
                           help="list the devices", description="List the devices of the catalogue.")
    ls.add_argument("--kind", choices=[k.value for k in Kind], help="only devices of this kind")
    ls.add_argument("--precision", "-p", choices=PRECISIONS, default="fp32",
                    help="compute precision of the ridge-point column (default fp32)")
    ls.set_defaults(func=cmd_hw_list)
    show = hw_sub.add_parser("show", parents=[_output_options(DEVICE_FORMATS)], help="devices in full",
                             description="Every figure of a device, the ridge point per precision, the source "
                             "and how derived figures were derived; toml: the catalogue's format.")
    show.add_argument("device", metavar="ID|FILE.toml|this[,...]", type=hardware_names,
                      help="catalogue ids or aliases, TOML files, or `this` (this machine, measured now)")
    show.set_defaults(func=cmd_hw_show)
    bench = hw_sub.add_parser(
        "bench", parents=[_output_options(DEVICE_FORMATS)],
        help="measure this machine (peaks, bandwidth, overheads) as a device",
        description="Micro-benchmarks of this machine: peak FLOP/s per dtype from a GEMM sweep, memory bandwidth "
        "from copy and triad beyond the last-level cache, the framework's per-operator overhead, and the "
        "efficiency curves of convolutions and operator families that calibrated predictions read "
        "(`rooflens roofline MODEL --hw FILE --calibrated`). Run it on an otherwise idle machine.")
    bench.add_argument("--quick", action="store_true", help="fewer sizes and repetitions (under 30 s on 2 cores)")
    bench.add_argument("--save", metavar="FILE.toml", help="write the measured device to this TOML file")
    bench.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]")
    bench.add_argument("--threads", type=_positive, default=None, help="torch's CPU threads during the run")
    bench.add_argument("--dtypes", metavar="fp32,bf16,...", default=None,
                       help="GEMM dtypes to try (default fp32, fp64, bf16, fp16; fp32 always; emulated ones are "
                       "left out)")
    bench.set_defaults(func=cmd_hw_bench)
    cal = hw_sub.add_parser(
        "calibrate", parents=[_output_options(DEVICE_FORMATS)],
        help="measure this machine and train its learned latency predictor",
        description="Times operators where they really run -- inside forward passes of generated networks (and, "
        "in full mode, of torchvision models of every family, each profiled in three passes minutes apart and "
        "labelled with the median) -- and trains gradient-boosted trees per operator "
        "group on them, on top of the micro-benchmarks of `hw bench`. The saved device carries the predictor "
        "and where its samples came from; `--hw FILE` then gives every report the learned estimate "
        "(report.calibrated, the Calibrated column). Needs scikit-learn to train (pip install "
        "'rooflens[predict]'); run it on an otherwise idle machine. See docs/prediction.md.")
    cal.add_argument("--quick", action="store_true", help="quick micro-benchmarks and a few generated networks "
                     "(under a minute on 2 cores); default: the full run (under 15 minutes)")
    cal.add_argument("--save", metavar="FILE.toml", help="write the measured device with its predictor here")
    cal.add_argument("--threads", type=_positive, default=None, help="torch's CPU threads during the run (the "
                     "predictor is for this many)")
    cal.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]")
    cal.add_argument("--from", dest="from_file", metavar="FILE.toml",
                     help="reuse the micro-benchmarks of a device measured before on this machine (`hw bench --save`)")
    _keep_memory_option(cal, "calibrate in a process whose allocator keeps freed memory (for deployments that "
                        "run so, with these variables or jemalloc/tcmalloc)")
    cal.set_defaults(func=cmd_hw_calibrate)


# ---- models, devices and output ----------------------------------------------------------------------


def _seeded(run: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``run(*args, **kwargs)`` after seeding torch's random numbers, so that the weights a model is built
    with and the inputs of a real run (the fall-back for data-dependent models) are the same every time."""
    torch.manual_seed(SEED)
    return run(*args, **kwargs)


def _model(args: argparse.Namespace, *, meta: bool | None, batch: int | None = None) -> tuple[Any, dict[str, Any], str]:
    """MODEL, built with seeded weights, and its inputs as keyword arguments of analyze/memory
    (``input_size=`` or ``inputs=``); ``batch`` replaces the first dimension of every input shape."""
    model, example, name = _seeded(load_model, args.model, meta=meta)
    if args.input_size:
        shapes = [list(s) for s in args.input_size]
    elif example is not None and example.input_size is not None:
        shapes = [list(s) for s in example.input_size]
    elif example is not None:
        if batch is not None:
            raise InputError(f"--batch needs --input-size for {args.model} (it takes {example.description})")
        return model, example.as_kwargs(), name
    else:
        raise InputError(
            f"rooflens does not know what {args.model} takes; give its input shape with --input-size, "
            "e.g. --input-size 1,3,224,224 (once per positional input)"
        )
    if batch is not None:
        shapes = [[batch, *s[1:]] for s in shapes]
    return model, {"input_size": shapes}, name


def _analyse(args: argparse.Namespace, model: Any, source: dict[str, Any], name: str, **options: Any) -> Report:
    """analyze() with the command's dtype, convention and precision options (seeded: see :func:`_seeded`)."""
    return _seeded(analyze, model, dtype=args.dtype, convention=args.convention, precision=args.precision,
                   weight_bits=args.weight_bits, act_bits=args.act_bits, name=name,
                   value_checks=getattr(args, "value_checks", "assume"), **source, **options)


def _onnx_report(args: argparse.Namespace, path: str | None = None, sizes: list[list[int]] | None = None,
                 **options: Any) -> Report:
    """analyze_onnx() of MODEL, an .onnx file (or ``path``, a graph made from it), with the command's input
    sizes (or ``sizes``), convention and precision."""
    if args.dtype:
        raise InputError("--dtype does not apply to an ONNX model: its dtypes are in the file; --precision, "
                         "--weight-bits and --act-bits set the widths in memory")
    if getattr(args, "meta", False):
        raise InputError("--meta builds a torch model on the meta device; an ONNX file is analysed from its graph")
    if sizes is None and args.input_size:
        sizes = [list(s) for s in args.input_size]
    return analyze_onnx(path or args.model, input_size=sizes, convention=args.convention, precision=args.precision,
                        weight_bits=args.weight_bits, act_bits=args.act_bits, **options)


def _torch_only(args: argparse.Namespace) -> None:
    if args.optimized:
        raise InputError(f"--optimized is for an .onnx MODEL (the graph ONNX Runtime runs); {args.model} is a torch "
                         "model: export it with torch.onnx.export first")


def _onnx_document(args: argparse.Namespace, report: Report, **options: Any) -> Document:
    """The report of an .onnx MODEL; with --optimized, the report of the graph ONNX Runtime runs and both
    graphs' totals side by side (ratios to the file as exported)."""
    if not args.optimized:
        return report_document(report, args.depth, _byte_unit(args))
    with tempfile.TemporaryDirectory(prefix="rooflens-") as folder:
        path = optimize_onnx(args.model, level=args.ort_level, provider=args.provider,
                             output=os.path.join(folder, "optimized.onnx"))
        optimized = _onnx_report(args, str(path), name=f"{report.model} (ONNX Runtime {args.ort_level}, "
                                 f"{args.provider})", **options)
    unit = _byte_unit(args)
    doc = report_document(optimized, args.depth, unit)
    both = compare([replace(report, model=f"{report.model} (as exported)"), optimized])
    side = both.document(unit)
    heading = Heading("The file as exported and the graph ONNX Runtime runs (ratios to the file)")
    data = doc.data
    return replace(doc, blocks=(*doc.blocks, Gap(), heading, *side.blocks[1:]),
                   data=lambda: {**data(), "as_exported": report.to_dict(operators=False),
                                 "comparison": both.as_dict()})


def hardware(names: Sequence[str], *, device: str = "cpu", threads: int | None = None) -> list[HardwareSpec]:
    """The devices of :func:`hardware_names`: catalogue entries, every device of each TOML file, and for
    ``this`` this machine measured now (quick micro-benchmarks of ``device``)."""
    specs: list[HardwareSpec] = []
    for name in names:
        if name == THIS:
            specs.append(_measure_machine(device=device, quick=True, threads=threads))
        elif name.endswith(".toml") or os.sep in name or os.path.isfile(name):
            specs += load_file(name)
        else:
            specs.append(get(name))
    return specs


def _byte_unit(args: argparse.Namespace) -> ByteUnit | None:
    return ByteUnit(args.bytes) if args.bytes else None


def _write(doc: Document, args: argparse.Namespace) -> None:
    """The document in the chosen format: to a terminal with colour, else to standard output or -o FILE."""
    if args.format == "table" and _to_terminal(args):
        print_document(doc)
    else:
        _emit(RENDERERS[args.format](doc, args.width or DEFAULT_WIDTH), args.output)


def _to_terminal(args: argparse.Namespace) -> bool:
    return args.output is None and args.width is None and sys.stdout.isatty()


# ---- commands ---------------------------------------------------------------------------------------


def cmd_profile(args: argparse.Namespace) -> Document:
    if args.summary and args.format == "csv":
        raise InputError("--summary adds torchsummary's figures, which have no place in the CSV of modules; "
                         "use --format table, json, markdown or html")
    if is_onnx(args.model):
        if args.summary:
            raise InputError("--summary needs the memory timeline of a torch model; it has none for an ONNX file")
        return _onnx_document(args, _onnx_report(args))
    _torch_only(args)
    model, source, name = _model(args, meta=args.meta)
    report = _analyse(args, model, source, name)
    doc = report_document(report, args.depth, _byte_unit(args))
    if args.summary:
        mem = _seeded(memory, model, dtype=args.dtype, weight_bits=report.weight_bits, act_bits=report.act_bits,
                      name=name, value_checks=args.value_checks, **source)
        doc = with_summary(doc, mem.summary())
    return doc


def cmd_memory(args: argparse.Namespace) -> Document:
    if not args.train:
        for flag, given in (("--optimizer", args.optimizer), ("--mixed-precision", args.mixed_precision),
                            ("--checkpoint", args.checkpoint)):
            if given:
                raise InputError(f"{flag} applies to a training step: add --train")
    if args.batch is not None and len(args.batch) > 1:
        raise InputError(f"memory analyses one batch size; --batch names {len(args.batch)} "
                         f"({','.join(map(str, args.batch))}): run it once per size")
    model, source, name = _model(args, meta=args.meta, batch=args.batch[0] if args.batch else None)
    mem = _seeded(memory, model, dtype=args.dtype, train=args.train,
                  optimizer=args.optimizer or ("sgd" if args.train else None), mixed_precision=args.mixed_precision,
                  checkpoint=tuple(args.checkpoint), precision=args.precision, weight_bits=args.weight_bits,
                  act_bits=args.act_bits, name=name, value_checks=args.value_checks, **source)
    return memory_document(mem, _byte_unit(args))


def _roofline_devices(args: argparse.Namespace) -> list[HardwareSpec]:
    """The devices of --hw, with --peak/--bandwidth applied; or the ad-hoc one of --peak and --bandwidth."""
    peak = parse_quantity(args.peak, "flops", what="--peak") if args.peak else None
    bw = parse_quantity(args.bandwidth, "bandwidth", what="--bandwidth") if args.bandwidth else None
    if not args.hw:
        if peak and bw:
            return [custom(peak_flops_per_s=peak, bandwidth_bytes_per_s=bw,
                           precision=args.precision or "fp32", name=f"--peak {args.peak} --bandwidth {args.bandwidth}")]
        raise InputError("say which device: --hw a4000 (see `rooflens hw list`), --hw devices.toml, --hw this, "
                         "or --peak 19.2T --bandwidth 448G")
    specs = hardware(args.hw)
    if bw:  # one device: replaces its bandwidth; several: fills in those without one
        specs = [s.with_bandwidth(bw) if len(specs) == 1 or s.bandwidth_bytes_per_s is None else s for s in specs]
    if peak:
        precision = Precision.parse(args.precision or "fp32")
        specs = [replace(s, peak_flops_per_s={**s.peak_flops_per_s, precision: peak},
                         notes=f"{s.notes}; {precision.value} peak {args.peak} given by the user".lstrip("; "))
                 for s in specs]
    for s in specs:
        if s.bandwidth_bytes_per_s is None:
            raise InputError(s.missing_bandwidth_text())
    return specs


def cmd_roofline(args: argparse.Namespace) -> Document:
    specs = _roofline_devices(args)
    method = CalibrationMethod.parse(args.calibration)
    if args.calibrated or method is not CalibrationMethod.AUTO:
        for s in specs:
            calibrate(s)  # raises, naming the device, when it has no micro-benchmark curves
            if method is CalibrationMethod.LEARNED:
                predictor_of(s)  # raises, naming the device, when it carries no learned predictor
    if is_onnx(args.model) and args.optimized:
        if len(specs) > 1 or args.plot:
            raise InputError("--optimized compares the file with the graph ONNX Runtime runs on one device, "
                             "without --plot")
        return _onnx_document(args, _onnx_report(args, hardware=specs[0]), hardware=specs[0])
    if is_onnx(args.model):
        report = _onnx_report(args, hardware=specs[0])
    else:
        _torch_only(args)
        model, source, name = _model(args, meta=args.meta)
        report = _analyse(args, model, source, name, hardware=specs[0])
    report = replace(report, calibration=method)
    reports = [report] + [report.with_hardware(s) for s in specs[1:]]
    if args.plot:
        for r in reports:
            target = args.plot if len(reports) == 1 else _suffixed(args.plot, r.roofline.hardware.id)
            depth = args.depth if args.plot_level == "module" else None
            path = r.plot_roofline(target, level=args.plot_level, depth=depth)
            print(f"{PROG}: wrote {path}", file=sys.stderr)
    if len(reports) == 1:
        return report_document(report, args.depth, _byte_unit(args))
    return comparison_document(reports, _byte_unit(args))


def cmd_compare(args: argparse.Namespace) -> Document:
    specs = hardware(args.hw) if args.hw else []
    for spec in specs:
        if spec.bandwidth_bytes_per_s is None:
            raise InputError(spec.missing_bandwidth_text())
    reports: list[Report] = []
    peaks: list[int | None] = []
    for name in args.models:
        one = argparse.Namespace(**{**vars(args), "model": name})
        if is_onnx(name):  # an ONNX file (an fp32 export beside its int8 quantization ...): no memory timeline
            reports.append(_onnx_report(one))
            peaks.append(None)
            continue
        model, source, label = _model(one, meta=args.meta)
        reports.append(_analyse(one, model, source, label))
        if args.memory:
            mem = _seeded(memory, model, dtype=args.dtype, weight_bits=reports[-1].weight_bits,
                          act_bits=reports[-1].act_bits, name=label, value_checks=args.value_checks, **source)
            peaks.append(mem.total_peak_bytes)
    table = compare(reports, hardware=specs, memory_peaks_bytes=peaks if args.memory else None)
    return table.document(_byte_unit(args))


def cmd_energy(args: argparse.Namespace) -> Document:
    specs = hardware(args.hw) if args.hw else []
    if len(specs) > 1:
        raise InputError(f"energy uses one device's figures; --hw names {len(specs)}: {', '.join(s.id for s in specs)}")
    model, source, name = _model(args, meta=args.meta)
    report = _analyse(args, model, source, name)
    estimate = report.energy(hardware=specs[0] if specs else None, onchip=args.onchip)
    return energy_document(report, estimate, args.depth, _byte_unit(args))


def cmd_advise(args: argparse.Namespace) -> Document:
    specs = hardware(args.hw) if args.hw else []
    if len(specs) > 1:
        raise InputError(f"advise is for one device; --hw names {len(specs)}: {', '.join(s.id for s in specs)}")
    model, source, name = _model(args, meta=args.meta)
    report = _analyse(args, model, source, name, hardware=specs[0] if specs else None)
    peak = None
    if args.memory:
        peak = _seeded(memory, model, dtype=args.dtype, weight_bits=report.weight_bits, act_bits=report.act_bits,
                       name=name, value_checks=args.value_checks, **source).peak_bytes
    findings = report.advice(rules=args.rules, min_share=args.min_share, activation_bytes=peak)
    return advice_document(report, findings[: args.top], _byte_unit(args), total=len(findings))


def cmd_llm(args: argparse.Namespace) -> Document:
    from rooflens.llm.configs import CONFIGS
    from rooflens.llm.run import llm

    if args.list:
        rows = [[e.id, ", ".join(e.aliases[:1]), e.source] for e in CONFIGS.values()]
        return Document(title="LLM configs", blocks=(Grid(("Id", "Alias", "Source"), rows, frozenset()),),
                        data=lambda: {"configs": [{"id": r[0], "alias": r[1], "source": r[2]} for r in rows]},
                        csv=None)
    if not args.model:
        raise InputError("say which model: rooflens llm llama-2-7b --hw a100-80gb (see rooflens llm --list)")
    specs = hardware(args.hw) if args.hw else []
    if len(specs) != 1:
        raise InputError("say which device, one: --hw a100-80gb (see `rooflens hw list`)")
    source: Any = args.model
    if ":" in source and not source.startswith("hf:"):
        source, _, _ = load_model(source, meta=True)
    runs = [llm(source, hardware=specs[0], prompt=args.prompt, gen=args.gen, batch=b, precision=args.precision,
                weight_bits=args.weight_bits, kv_bits=args.kv_bits, weight_group=args.weight_group,
                all_logits=args.all_logits,
                name=args.model.rpartition(":")[2], tp=args.tp) for b in args.batch]
    if args.plot:
        written = [plot_sweep(runs, args.plot),
                   runs[0].prefill.plot_roofline(_suffixed(args.plot, "prefill")),
                   runs[0].decode_first.plot_roofline(_suffixed(args.plot, "decode"))]
        for path in written:
            print(f"{PROG}: wrote {path}", file=sys.stderr)
    return llm_document(runs, _byte_unit(args), depth=args.depth)


def _suffixed(path: str, device: str) -> str:
    root, ext = os.path.splitext(path)
    return f"{root}-{device}{ext}"


class _ProgressBar:
    """A rich progress bar on standard error, shown only once a job has run for a second (and on a terminal)."""

    def __init__(self, title: str) -> None:
        import time

        self._title = title
        self._start = time.perf_counter()
        self._clock = time.perf_counter
        self._bar: Any = None
        self._task: Any = None
        self._enabled = sys.stderr.isatty()

    def __call__(self, phase: str, done: int, total: int) -> None:
        if not self._enabled:
            return
        if self._bar is None:
            if self._clock() - self._start < 1.0:
                return
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), transient=True, console=_stderr_console())
            self._bar.start()
            self._task = self._bar.add_task(self._title, total=total)
        self._bar.update(self._task, description=f"{self._title}: {phase}", completed=done, total=total)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


def _stderr_console() -> Any:
    from rich.console import Console

    return Console(file=sys.stderr)


def _measure_machine(**options: Any) -> HardwareSpec:
    """rooflens.measurement.benchmark with a progress bar on standard error."""
    bar = _ProgressBar("measuring this machine")
    try:
        return measurement.benchmark(progress=lambda stage, fraction: bar(stage, round(100 * fraction), 100), **options)
    finally:
        bar.close()


def cmd_bench(args: argparse.Namespace) -> Document:
    specs = hardware(args.hw, device=args.device, threads=args.threads) if args.hw else []
    if len(specs) > 1:
        raise InputError(f"bench compares with one device's roofline; --hw names {len(specs)}: "
                         f"{', '.join(s.id for s in specs)}")
    hw = specs[0] if specs else None
    if is_onnx(args.model):
        return _bench_onnx(args, hw)
    model, source, name = _model(args, meta=False)
    if "input_size" not in source:
        raise InputError(f"bench times inputs of a given shape: give the input shape of {args.model} with "
                         "--input-size (the first dimension is the batch)")
    per_sample = [tuple(s[1:]) for s in source["input_size"]]
    batches = args.batch or [source["input_size"][0][0]]
    bar = _ProgressBar(f"timing {name}")
    try:
        measurements = _seeded(measurement.sweep, model, batch_sizes=batches, input_size_per_sample=per_sample,
                               device=args.device, dtype=args.dtype, threads=args.threads, warmup=args.warmup,
                               iters=args.iters, max_seconds=args.max_seconds, progress=bar)
    finally:
        bar.close()
    reports = [replace(_analyse(args, model, {"input_size": [(b, *s) for s in per_sample]}, name, hardware=hw),
                       measurement=m) for b, m in zip(batches, measurements, strict=True)]
    profile, rows = None, []
    if args.per_op:
        bar = _ProgressBar(f"profiling {name}")
        try:
            profile = _seeded(measurement.profile_operators, model, None, reports[0],
                              input_size=[(batches[0], *s) for s in per_sample], device=args.device, dtype=args.dtype,
                              threads=args.threads, progress=bar)
        finally:
            bar.close()
        rows = measurement.module_rows(profile, depth=args.depth)
    doc = bench_document(reports, device=args.device, threads=args.threads, dtype=args.dtype, profile=profile,
                         profile_rows=rows, byte_unit=_byte_unit(args), allocator=allocator_settings())
    return _with_energy(doc, args, model, reports[0], [(batches[0], *s) for s in per_sample]) if args.energy else doc


def _bench_onnx(args: argparse.Namespace, hw: HardwareSpec | None) -> Document:
    """`rooflens bench model.onnx`: ONNX Runtime optimises the graph at --ort-level for --device's provider;
    that graph is timed (rooflens.measurement.onnxrt.measure_onnx) and analysed at each batch size, and with
    --per-op profiled by ONNX Runtime's profiler, node by node against the analysed records."""
    if args.dtype:
        raise InputError("--dtype does not apply to an ONNX model: its dtypes are in the file")
    provider = args.device.split(":")[0]
    if provider not in PROVIDERS:
        raise InputError(f"--device {args.device}: ONNX Runtime runs here on {' or '.join(PROVIDERS)}")
    sizes = [list(s) for s in args.input_size] if args.input_size else None
    if args.batch and sizes is None:
        raise InputError("--batch replaces the inputs' first dimension: give the input shapes with --input-size")
    batches = args.batch or [sizes[0][0] if sizes else None]
    timing = {"provider": provider, "threads": args.threads}
    with tempfile.TemporaryDirectory(prefix="rooflens-") as folder:
        graph = str(optimize_onnx(args.model, level=args.ort_level, provider=provider,
                                  output=os.path.join(folder, "graph.onnx")))
        name = f"{os.path.basename(args.model).removesuffix('.onnx')} (ONNX Runtime {args.ort_level})"
        reports = []
        for b in batches:
            shapes = [[b, *s[1:]] for s in sizes] if sizes and b is not None else sizes
            bar = _ProgressBar(f"timing {name}" + (f", batch {b}" if len(batches) > 1 else ""))
            try:
                m = measure_onnx(graph, input_size=shapes, level="disabled", warmup=args.warmup, iters=args.iters,
                                 max_seconds=args.max_seconds, progress=bar, **timing)
            finally:
                bar.close()
            report = _onnx_report(args, graph, shapes, hardware=hw, name=name)
            reports.append(replace(report, measurement=m))
        profile, rows = None, []
        if args.per_op:
            first = [[batches[0], *s[1:]] for s in sizes] if sizes and batches[0] is not None else sizes
            nodes = profile_onnx(graph, input_size=first, level="disabled", **timing)
            profile = profile_report(reports[0], nodes)
            rows = measurement.module_rows(profile, depth=args.depth)
    doc = bench_document(reports, device=f"{args.device}, {runtime_version()}", threads=args.threads,
                         profile=profile, profile_rows=rows, byte_unit=_byte_unit(args), allocator=allocator_settings())
    if args.energy:
        doc = replace(doc, blocks=(*doc.blocks, Gap(), Note("Energy not measured: rooflens measures the energy of "
                                                            "torch models only (the estimate: rooflens energy)")))
    return doc


def _with_energy(doc: Document, args: argparse.Namespace, model: Any, report: Report, sizes: list[Any]) -> Document:
    """The bench document with the measured energy of the first batch size beside the estimate (or why not)."""
    measured = _seeded(measurement.measure_model_energy, model, input_size=sizes, device=args.device,
                       dtype=args.dtype, threads=args.threads)
    estimate = report.energy()
    if measured.joules_per_inference is None:
        text = f"Energy not measured: {measured.reason}"
    else:
        text = (f"Energy at batch {sizes[0][0]}: measured {joules_text(measured.joules_per_inference)} per inference "
                f"({measured.reading.counter}: {', '.join(measured.reading.domains)}), estimated "
                f"{joules_text(estimate.joules_per_inference)} ({estimate.table.name}, every byte from DRAM)")
    data = doc.data
    return replace(doc, blocks=(*doc.blocks, Gap(), Note(text)), data=lambda: {
        **data(), "energy": {"measured": measured.as_dict(), "estimated": estimate.as_dict(modules=False)}})


def cmd_hw_list(args: argparse.Namespace) -> Document:
    specs = devices(args.kind)
    listed = {s.id for s in specs}
    for s in hardware(args.hw or ()):
        if (args.kind is None or s.kind.value == args.kind) and s.id not in listed:
            specs.append(s)
            listed.add(s.id)
    return catalogue_document(specs, args.precision, _byte_unit(args))


def cmd_hw_show(args: argparse.Namespace) -> Document:
    return devices_document(hardware(args.device), _byte_unit(args))


def cmd_hw_bench(args: argparse.Namespace) -> Document:
    dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()] if args.dtypes else None
    spec = _measure_machine(device=args.device, quick=args.quick, threads=args.threads, dtypes=dtypes)
    if args.save:
        _emit(spec.to_toml(), args.save)
    doc = devices_document([spec], _byte_unit(args))
    use = args.save or "FILE.toml (--save)"
    return replace(doc, blocks=(*doc.blocks, Gap(), Note(f"Use it: rooflens roofline MODEL --hw {use} --calibrated")))


def cmd_hw_calibrate(args: argparse.Namespace) -> Document:
    from rooflens.calibration import calibrate_device

    base = None
    if args.from_file:
        found = load_file(args.from_file)
        if len(found) != 1:
            raise InputError(f"--from needs one measured device; {args.from_file} has {len(found)}")
        base = found[0]
    bar = _ProgressBar("calibrating this machine")
    try:
        spec = calibrate_device(spec=base, quick=args.quick, threads=args.threads, device=args.device,
                                progress=lambda stage, fraction: bar(stage, round(100 * fraction), 100))
    finally:
        bar.close()
    if args.save:
        _emit(spec.to_toml(), args.save)
    doc = devices_document([spec], _byte_unit(args))
    made = predictor_of(spec).provenance
    use = args.save or "FILE.toml (--save)"
    allocator = settings_text(made.get("allocator", {}))
    faults = made.get("page_faults_per_call")
    faulted = (f"; the plain passes page-faulted {faults['median']:,.0f} times per call (median; most "
               f"{faults['max']:,.0f})" if faults else "")
    dropped = made.get("dropped_subnormal")
    left_out = (f"; left out, for writing subnormal floats (a speed the values set): {first_names(dropped, 5)}"
                if dropped else "")
    return replace(doc, blocks=(*doc.blocks, Gap(), Note(
        f"Learned latency predictor: {made.get('samples')} operators timed in {made.get('networks')} networks "
        f"({made.get('mode')} mode, {made.get('threads')} threads, {made.get('seconds')} s, with {allocator}"
        f"{faulted}{left_out}). Use it: rooflens roofline MODEL --hw {use}")))


def _emit(text: str, output: str | None) -> None:
    if output is None or output == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    try:
        with open(output, "w", encoding="utf-8", newline="") as f:
            f.write(text)
    except OSError as e:
        raise InputError(f"cannot write {output!r}: {e.strerror or e}") from None
    print(f"{PROG}: wrote {output}", file=sys.stderr)


# ---- entry point ------------------------------------------------------------------------------------


def _one_line(message: object) -> str:
    return " ".join(str(message).split())


def memory_kept() -> bool:
    """Whether this process was started with glibc keeping freed memory (:data:`KEEP_MEMORY_ENV`)."""
    return all(os.environ.get(k) == v for k, v in KEEP_MEMORY_ENV.items())


def _run_keeping_memory(argv: list[str]) -> int:
    """``--keep-memory``: the same command in a new process started with :data:`KEEP_MEMORY_ENV` (glibc reads
    the variables when a process starts); its exit status."""
    if platform.libc_ver()[0] != "glibc":
        raise InputError("--keep-memory sets glibc's allocator variables, and this Python does not run on glibc: "
                         "preload jemalloc or tcmalloc instead, or measure as it is")
    sys.stdout.flush()
    child = [sys.executable, "-c", "import sys; from rooflens.cli import main; sys.exit(main())", *argv]
    return subprocess.run(child, env={**os.environ, **KEEP_MEMORY_ENV}, check=False).returncode


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 2 error, 1 unexpected failure)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version and usage errors
        return int(e.code) if isinstance(e.code, int) else EXIT_ERROR
    command: Callable[[argparse.Namespace], Document] = args.func
    debug = args.debug or bool(os.environ.get("ROOFLENS_DEBUG"))
    try:
        if getattr(args, "keep_memory", False) and not memory_kept():
            return _run_keeping_memory(sys.argv[1:] if argv is None else list(argv))
        _write(command(args), args)
        return EXIT_OK
    except RooflensError as e:
        if debug:
            raise
        print(f"{PROG}: error: {_one_line(e)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `rooflens profile ... | head`: the reader left; say nothing more
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except Exception as e:  # a bug in rooflens: still one line, with the way to see more
        if debug:
            raise
        print(
            f"{PROG}: error: unexpected {type(e).__name__}: {_one_line(e)} "
            "(this is a bug in rooflens; rerun with --debug for the traceback)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
