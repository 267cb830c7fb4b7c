"""The ``rooflens`` command line.

    rooflens profile MODEL [--input-size 1,3,224,224 ...] [--dtype float16] [--convention fma|exact]
                           [--depth N] [--format table|json|csv|markdown] [-o FILE]
                           [--bytes si|binary] [--width N] [--meta | --no-meta]
    rooflens roofline MODEL --hw ID[,ID...] | --hw FILE.toml | --peak 19.2T --bandwidth 448G
                           [--precision fp16] [--weight-bits 8] [--act-bits 8] [--plot FILE.png|svg]
                           [... the options of profile]
    rooflens bench MODEL [--batch 1,8,32] [--device cpu] [--threads N] [--warmup 10] [--iters 50]
                         [--per-op] [--hw ID|FILE.toml|this] [--precision fp16] [--depth N] [-f ...]
    rooflens memory MODEL [--batch N] [--train --optimizer adamw] [--precision fp16|bf16|mixed]
                          [--checkpoint PATH ...] [--weight-bits B] [--act-bits B] [-f table|json]
    rooflens hw list [--kind gpu] [--precision fp16] [--format table|json|csv|markdown]
    rooflens hw show ID|FILE.toml [--format text|json|toml]

MODEL is ``torchvision:NAME``, ``package.module:callable`` or ``path/to/file.py:callable``. Errors
print one line, ``rooflens: error: ...``, on standard error and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from rooflens import __version__
from rooflens.errors import InputError, RooflensError
from rooflens.hardware.spec import HardwareSpec, Kind, Precision

if TYPE_CHECKING:
    from rooflens.report.report import Report

PROG = "rooflens"
EXIT_OK, EXIT_INTERNAL, EXIT_ERROR = 0, 1, 2
FORMATS = ("table", "json", "csv", "markdown")

_MODEL_HELP = (
    "the model: torchvision:NAME (e.g. torchvision:resnet50; no weights are downloaded), "
    "package.module:callable or path/to/file.py:callable (a class or function called with no arguments)"
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


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} must be 0 or more")
    return value


def _bits(text: str) -> int:
    value = _non_negative(text)
    if not 1 <= value <= 64:
        raise argparse.ArgumentTypeError(f"{value} bits: give 1 to 64 (e.g. 8 for INT8, 4 for INT4)")
    return value


def _width(text: str) -> int:
    value = _non_negative(text)
    if value < 40:
        raise argparse.ArgumentTypeError(f"width {value} is too narrow for the table (40 or more)")
    return value


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors in the same one-line form as rooflens's own."""

    def error(self, message: str) -> Any:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EXIT_ERROR, f"{PROG}: error: {message}\n")


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
    _add_hw(sub)
    return parser


def _add_model_options(p: argparse.ArgumentParser) -> None:
    """The model and how to run it: shared by profile and roofline."""
    p.add_argument("model", metavar="MODEL", help=_MODEL_HELP)
    p.add_argument(
        "--input-size", "-i", dest="input_size", type=input_size, action="append", metavar="1,3,224,224",
        help="shape of an input tensor; repeat it once per positional input "
        "(default: the model's usual input for torchvision models)",
    )
    p.add_argument("--dtype", help="analyse as if the model and inputs were in this dtype (float16, bfloat16 ...)")
    p.add_argument("--convention", choices=("fma", "exact"), default="fma",
                   help="FLOP convention: fma (FLOPs = 2 x MACs + ...; default) or exact (n mults + n-1 adds)")
    p.add_argument("--meta", action=argparse.BooleanOptionalAction, default=None,
                   help="build the model on the meta device (fast, no memory; parameter values unknown); "
                   "default: meta for torchvision models whose forward does not need values")


def _add_output_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--depth", "-d", type=_non_negative, default=None,
                   help="show modules down to this depth; deeper ones are folded into their ancestors "
                   "(table and markdown; default: every module)")
    p.add_argument("--format", "-f", choices=FORMATS, default="table", help="output format (default: table)")
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of standard output")
    p.add_argument("--bytes", choices=("si", "binary"), default=None,
                   help="byte units: si (MB = 1e6 bytes; default) or binary (MiB = 2^20 bytes); "
                   "csv gives plain bytes unless this is set")
    p.add_argument("--width", type=_width, default=None,
                   help="table width in characters (default: the terminal's, 140 when not a terminal)")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def _add_profile(sub: Any) -> None:
    p = sub.add_parser(
        "profile",
        help="count parameters, MACs, FLOPs and memory traffic per module",
        description="Count parameters, MACs, FLOPs and bytes read/written per module and in total. "
        "MACs = conv + matmul multiply-accumulates; 1 MAC = 2 FLOPs.",
    )
    _add_model_options(p)
    _add_output_options(p)
    p.add_argument("--summary", action="store_true",
                   help="add the torchsummary-style memory footer (input, forward/backward pass, params, total) "
                   "and the peak of the live-memory timeline")
    p.set_defaults(func=cmd_profile)


def _add_precision_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--precision", "-p", choices=[x.value for x in Precision], default=None,
                   help="compute precision: selects the device's peak and sets the width in memory of every "
                   "floating-point tensor (default: the model's dtype, tensors as built)")
    p.add_argument("--weight-bits", type=_bits, default=None, metavar="BITS",
                   help="bits per element of floating-point weights and buffers in memory (e.g. 8 or 4)")
    p.add_argument("--act-bits", type=_bits, default=None, metavar="BITS",
                   help="bits per element of floating-point activations in memory (e.g. 8)")


def _add_roofline(sub: Any) -> None:
    p = sub.add_parser(
        "roofline",
        help="roofline time, bound and intensity per module on a device (or several)",
        description="Arithmetic intensity, bound (compute or memory) and roofline time "
        "max(FLOPs / peak, bytes / bandwidth) per operator, summed per module, on the devices of --hw. "
        "With several devices: one row per device. The roofline time is a lower bound for an eager run.",
    )
    _add_model_options(p)
    p.add_argument("--hw", action="append", metavar="ID[,ID...]|FILE.toml",
                   help="device(s): catalogue ids (see `rooflens hw list`), comma-separated or repeated, "
                   "or a TOML file of [[device]] tables")
    p.add_argument("--peak", metavar="FLOP/S",
                   help="peak FLOP/s with an SI suffix (19.2T); alone with --bandwidth: an ad-hoc device; "
                   "with --hw: replaces the devices' peak at the precision")
    p.add_argument("--bandwidth", metavar="B/S",
                   help="memory bandwidth in bytes/s with an SI suffix (448G); with one --hw device: replaces "
                   "its bandwidth; with several: the bandwidth of those whose bandwidth is unpublished")
    _add_precision_options(p)
    p.add_argument("--calibrated", action="store_true",
                   help="require the calibrated latency estimate beside the roofline (devices measured by "
                   "`rooflens hw bench --save FILE`; it is shown for them anyway): an error for a datasheet device")
    p.add_argument("--plot", metavar="FILE",
                   help="draw the roofline to FILE (.png, .svg or .pdf); with several devices one file each, "
                   "named FILE-<device>.png")
    p.add_argument("--plot-level", choices=("module", "operator"), default="module",
                   help="points of the plot: modules (the leaves, or those at --depth; default) or single operators")
    _add_output_options(p)
    p.set_defaults(func=cmd_roofline)


def _batches(text: str) -> list[int]:
    try:
        sizes = [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give batch sizes as comma-separated integers, e.g. 1,8,32") from None
    if not sizes or any(b <= 0 for b in sizes):
        raise argparse.ArgumentTypeError(f"{text!r}: batch sizes must be positive integers, e.g. 1,8,32")
    return sizes


def _positive(text: str) -> int:
    value = _non_negative(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def _add_bench(sub: Any) -> None:
    p = sub.add_parser(
        "bench",
        help="measure latency and throughput on real tensors (and per module against the roofline)",
        description="Time real forward passes (warm-up, then the median of --iters; never the first call): "
        "median, p90, p99, mean and std latency and throughput per batch size; achieved FLOP/s and bytes/s "
        "from the counted work; with --hw, the roofline time and the efficiency (roofline / measured). "
        "--per-op profiles every operator with torch.profiler and shows per module measured vs roofline.",
    )
    p.add_argument("model", metavar="MODEL", help=_MODEL_HELP)
    p.add_argument("--input-size", "-i", dest="input_size", type=input_size, action="append", metavar="1,3,224,224",
                   help="shape of an input tensor (its first dimension is the batch, replaced by --batch)")
    p.add_argument("--batch", "-b", type=_batches, default=None, metavar="1,8,32",
                   help="batch sizes to measure (default: the input's)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1 or mps")
    p.add_argument("--threads", type=_positive, default=None, help="torch's CPU threads during the run")
    p.add_argument("--dtype", help="run the model and inputs in this dtype (float16, bfloat16 ...)")
    p.add_argument("--warmup", type=_positive, default=10, help="untimed calls first (default 10)")
    p.add_argument("--iters", type=_positive, default=50, help="timed calls, at least (default 50)")
    p.add_argument("--max-seconds", type=float, default=None, help="cap on the timing of each batch size")
    p.add_argument("--per-op", action="store_true",
                   help="profile every operator (torch.profiler) and show per module measured vs roofline time")
    p.add_argument("--hw", metavar="ID|FILE.toml|this",
                   help="the device for the roofline: a catalogue id, a TOML file, or `this` (measured now, quick)")
    p.add_argument("--precision", "-p", choices=[x.value for x in Precision], default=None,
                   help="compute precision of the roofline (default: the model's dtype)")
    p.add_argument("--depth", "-d", type=_non_negative, default=None, help="--per-op: modules down to this depth")
    p.add_argument("--format", "-f", choices=FORMATS, default="table", help="output format (default: table)")
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of standard output")
    p.add_argument("--width", type=_width, default=None, help="table width (default: the terminal's)")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_bench)


def _add_memory(sub: Any) -> None:
    p = sub.add_parser(
        "memory",
        help="peak memory of inference or of a training step (live-tensor timeline on fake tensors)",
        description="Track every tensor of one forward pass (or training step) on fake tensors: the peak of "
        "live memory, the operator and module where it occurs, weights, #activations; with --train the saved "
        "activations, gradients, optimizer state and the peak of the step. Also the torchsummary figures.",
    )
    _add_model_options(p)
    p.add_argument("--batch", "-b", type=_positive, default=None, help="batch size (replaces the input's first dimension)")
    p.add_argument("--train", action="store_true", help="a training step: forward, backward and optimizer step")
    p.add_argument("--optimizer", choices=("sgd", "sgd-momentum", "adam", "adamw"), default=None,
                   help="optimizer of the training step (default with --train: sgd)")
    p.add_argument("--precision", "-p", choices=("fp32", "fp16", "bf16", "mixed"), default=None,
                   help="fp16/bf16: the model and activations in that dtype; mixed: 16-bit weights and activations "
                   "with fp32 master weights (training)")
    p.add_argument("--checkpoint", action="append", metavar="MODULE", default=[],
                   help="activation checkpointing on this module path (repeat it); with --train")
    p.add_argument("--weight-bits", type=_bits, default=None, metavar="BITS", help="bits per weight element in memory")
    p.add_argument("--act-bits", type=_bits, default=None, metavar="BITS", help="bits per activation element in memory")
    p.add_argument("--format", "-f", choices=("table", "json"), default="table", help="output format (default: table)")
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of standard output")
    p.add_argument("--width", type=_width, default=None, help="width (default: the terminal's)")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_memory)


def _add_hw(sub: Any) -> None:
    hw = sub.add_parser("hw", help="the hardware catalogue", description="The hardware catalogue: dense peaks "
                        "per precision, memory bandwidth and size, ridge points and sources.")
    hw_sub = hw.add_subparsers(dest="hw_command", metavar="ACTION", parser_class=_Parser)
    hw_sub.required = True
    ls = hw_sub.add_parser("list", help="list the devices", description="List the devices of the catalogue.")
    ls.add_argument("--kind", choices=[k.value for k in Kind], help="only devices of this kind")
    ls.add_argument("--precision", "-p", choices=[x.value for x in Precision], default="fp32",
                    help="precision of the ridge-point column (default fp32)")
    ls.add_argument("--hw", action="append", metavar="FILE.toml", help="also list the devices of this file")
    ls.add_argument("--format", "-f", choices=FORMATS, default="table", help="output format (default: table)")
    ls.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of standard output")
    ls.add_argument("--width", type=_width, default=None, help="table width (default: the terminal's)")
    ls.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    ls.set_defaults(func=cmd_hw_list)
    show = hw_sub.add_parser("show", help="one device in full", description="One device: every figure, "
                             "the ridge point per precision, the source and how derived figures were derived.")
    show.add_argument("device", metavar="ID|FILE.toml", help="a catalogue id or alias, or a TOML file")
    show.add_argument("--format", "-f", choices=("text", "json", "toml"), default="text",
                      help="text (default), json (base units) or toml (the catalogue's format)")
    show.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of standard output")
    show.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    show.set_defaults(func=cmd_hw_show)
    bench = hw_sub.add_parser(
        "bench", help="measure this machine (peaks, bandwidth, overheads) as a device",
        description="Micro-benchmarks of this machine: peak FLOP/s per dtype from a GEMM sweep, memory bandwidth "
        "from copy and triad beyond the last-level cache, the framework's per-operator overhead, and the "
        "efficiency curves of convolutions and operator families that calibrated predictions read "
        "(`rooflens roofline MODEL --hw FILE --calibrated`). Run it on an otherwise idle machine.")
    bench.add_argument("--quick", action="store_true", help="fewer sizes and repetitions (under 30 s on 2 cores)")
    bench.add_argument("--save", metavar="FILE.toml", help="write the measured device to this TOML file")
    bench.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]")
    bench.add_argument("--threads", type=_positive, default=None, help="torch's CPU threads during the run")
    bench.add_argument("--dtypes", metavar="fp32,bf16,...", default=None,
                       help="GEMM dtypes to try (default fp32, fp64, bf16, fp16; fp32 always; emulated ones are left out)")
    bench.add_argument("--format", "-f", choices=("text", "json", "toml"), default="text",
                       help="text (default), json (base units) or toml (the catalogue's format)")
    bench.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of standard output")
    bench.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    bench.set_defaults(func=cmd_hw_bench)


# ---- commands ---------------------------------------------------------------------------------------


def _analyze(args: argparse.Namespace, **options: Any) -> Report:
    """Load MODEL and analyse it with the command's options."""
    from rooflens.api import analyze
    from rooflens.zoo import load_model

    model, example, name = load_model(args.model, meta=args.meta)
    if args.input_size:
        source: dict[str, Any] = {"input_size": [list(s) for s in args.input_size]}
    elif example is not None:
        source = example.as_kwargs()
    else:
        raise InputError(
            f"rooflens does not know what {args.model} takes; give its input shape with --input-size, "
            "e.g. --input-size 1,3,224,224 (once per positional input)"
        )
    return analyze(model, dtype=args.dtype, convention=args.convention, name=name, **source, **options)


def _write_report(report: Report, args: argparse.Namespace) -> None:
    """The report in the chosen format to standard output (a terminal gets colour) or to -o FILE."""
    from rooflens.report.units import ByteUnit

    byte_unit = ByteUnit(args.bytes) if args.bytes else None
    if args.format == "table":
        if _to_terminal(args):
            from rooflens.report.terminal import print_report

            print_report(report, depth=args.depth, byte_unit=byte_unit or ByteUnit.SI)
            return
        text = report.render(depth=args.depth, byte_unit=byte_unit or ByteUnit.SI, width=args.width or 140)
    elif args.format == "json":
        text = report.to_json() + "\n"
    elif args.format == "csv":
        text = report.to_csv(byte_unit=byte_unit)
    else:
        text = report.to_markdown(depth=args.depth, byte_unit=byte_unit or ByteUnit.SI)
    _emit(text, args.output)


def _to_terminal(args: argparse.Namespace) -> bool:
    return args.output is None and getattr(args, "width", None) is None and sys.stdout.isatty()


def _model_and_inputs(args: argparse.Namespace, batch: int | None = None) -> tuple[Any, dict[str, Any], str]:
    """The model of MODEL and its inputs as keyword arguments (``input_size=`` or ``inputs=``)."""
    from rooflens.zoo import load_model

    model, example, name = load_model(args.model, meta=args.meta)
    if args.input_size:
        shapes = [list(s) for s in args.input_size]
    elif example is not None and example.input_size is not None:
        shapes = [list(s) for s in example.input_size]
    elif example is not None:
        if batch is not None:
            raise InputError(f"--batch needs --input-size for {args.model}")
        return model, example.as_kwargs(), name
    else:
        raise InputError(
            f"rooflens does not know what {args.model} takes; give its input shape with --input-size, "
            "e.g. --input-size 1,3,224,224 (once per positional input)"
        )
    if batch is not None:
        shapes = [[batch, *s[1:]] for s in shapes]
    return model, {"input_size": shapes}, name


def cmd_profile(args: argparse.Namespace) -> int:
    report = _analyze(args)
    _write_report(report, args)
    if args.summary:
        from rooflens.analysis.memory import memory

        model, source, _ = _model_and_inputs(args)
        mem = memory(model, dtype=args.dtype, **source)
        text = "\nMemory (torchsummary's figures, 4 bytes a number; the timeline's peak at the analysed widths):\n"
        _emit(text + str(mem.summary()) + "\n", args.output, append=True)
    return EXIT_OK


def cmd_memory(args: argparse.Namespace) -> int:
    from rooflens.analysis.memory import memory
    from rooflens.report import formats

    if args.checkpoint and not args.train:
        raise InputError("--checkpoint applies to a training step: add --train")
    if args.precision == "mixed" and not args.train:
        raise InputError("--precision mixed (fp32 master weights) applies to a training step: add --train")
    model, source, name = _model_and_inputs(args, args.batch)
    dtype = {"fp16": "float16", "bf16": "bfloat16", "mixed": "float16"}.get(args.precision or "", args.dtype)
    mem = memory(model, dtype=dtype, train=args.train, optimizer=(args.optimizer or "sgd") if args.train else None,
                 mixed_precision=args.precision == "mixed", checkpoint=tuple(args.checkpoint),
                 weight_bits=args.weight_bits, act_bits=args.act_bits, name=name, **source)
    if args.format == "json":
        data = mem.as_dict()
        _emit(json.dumps(data, indent=2) + "\n", args.output)
        return EXIT_OK
    from rooflens.report.terminal import label_grid

    _emit_items([label_grid(formats.memory_lines(mem)), "", *mem.summary().lines(), "", formats.MEMORY_NOTE], args)
    return EXIT_OK


def _devices(args: argparse.Namespace) -> list[HardwareSpec]:
    """The devices of --hw (ids and files), with --peak/--bandwidth applied; or the ad-hoc one."""
    from dataclasses import replace

    from rooflens.hardware import custom, get, load_file
    from rooflens.hardware.spec import parse_quantity

    peak = parse_quantity(args.peak, "flops", what="--peak") if args.peak else None
    bw = parse_quantity(args.bandwidth, "bandwidth", what="--bandwidth") if args.bandwidth else None
    if not args.hw:
        if peak and bw:
            return [custom(peak_flops_per_s=peak, bandwidth_bytes_per_s=bw,
                           precision=args.precision or "fp32", name=f"--peak {args.peak} --bandwidth {args.bandwidth}")]
        raise InputError("say which device: --hw a4000 (see `rooflens hw list`), --hw devices.toml, "
                         "or --peak 19.2T --bandwidth 448G")
    specs: list[HardwareSpec] = []
    for item in args.hw:
        for name in filter(None, (x.strip() for x in item.split(","))):
            is_file = name.endswith(".toml") or os.sep in name or os.path.isfile(name)
            specs += load_file(name) if is_file else [get(name)]
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


def cmd_roofline(args: argparse.Namespace) -> int:
    specs = _devices(args)
    if args.calibrated:
        from rooflens.analysis.calibrated import calibrate

        for s in specs:
            calibrate(s)  # raises, naming the device, when it has no micro-benchmark curves
    report = _analyze(args, hardware=specs[0], precision=args.precision, weight_bits=args.weight_bits,
                      act_bits=args.act_bits)
    reports = [report] + [report.with_hardware(s) for s in specs[1:]]
    if args.plot:
        for r in reports:
            target = args.plot if len(reports) == 1 else _suffixed(args.plot, r.roofline.hardware.id)
            path = r.plot_roofline(target, level=args.plot_level, depth=args.depth if args.plot_level == "module" else None)
            print(f"{PROG}: wrote {path}", file=sys.stderr)
    if len(reports) == 1:
        _write_report(report, args)
    else:
        _write_comparison(reports, args)
    return EXIT_OK


def _suffixed(path: str, device: str) -> str:
    root, ext = os.path.splitext(path)
    return f"{root}-{device}{ext}"


def _write_comparison(reports: list[Report], args: argparse.Namespace) -> None:
    from rooflens.report import formats

    rows = formats.comparison_rows(reports)
    columns = formats.comparison_columns(reports)
    if args.format == "json":
        data = {"model": reports[0].model, "precision": reports[0].precision.value,
                "devices": formats.comparison_records(reports)}
        _emit(json.dumps(data, indent=2) + "\n", args.output)
        return
    if args.format == "csv":
        records = formats.comparison_records(reports)
        _emit(formats.grid_csv(list(records[0]), [[_csv_value(v) for v in r.values()] for r in records]), args.output)
        return
    title = f"{reports[0].model}: roofline time per device (a lower bound for an eager run)"
    if columns != formats.COMPARE_COLUMNS:
        title += "; calibrated: an estimate for the measured devices"
    notes = [f"{r.roofline.hardware.id}: {n}" for r in reports for n in r.roofline.notes]
    if args.format == "markdown":
        text = f"## {title}\n\n" + formats.grid_markdown(columns, rows, formats.COMPARE_NUMERIC)
        text += "".join(f"\n- {n}" for n in notes) + ("\n" if notes else "")
        _emit(text, args.output)
        return
    _emit_items([_table(columns, rows, formats.COMPARE_NUMERIC, title), *notes], args)


def _csv_value(value: Any) -> Any:
    if isinstance(value, list):
        return "; ".join(map(str, value))
    return "" if value is None else value


def _table(headers: tuple[str, ...], rows: list[list[str]], numeric: frozenset[str], title: str | None) -> Any:
    from rooflens.report.terminal import grid_table

    return grid_table(headers, rows, numeric, title=title)


def _emit_items(items: list[Any], args: argparse.Namespace) -> None:
    """rich renderables: with colour on a terminal, else plain text at --width (140)."""
    from rooflens.report.terminal import plain_text, print_items

    if _to_terminal(args):
        print_items(items)
    else:
        _emit(plain_text(items, width=getattr(args, "width", None) or 140), args.output)


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


def _bench_device(args: argparse.Namespace) -> HardwareSpec | None:
    """--hw for bench: an id, a TOML file (its first device) or `this` (a quick measurement of this machine)."""
    if not args.hw:
        return None
    if args.hw == "this":
        return _measure_machine(device=args.device, quick=True, threads=args.threads)
    from rooflens.hardware import get, load_file

    is_file = args.hw.endswith(".toml") or os.path.isfile(args.hw)
    return load_file(args.hw)[0] if is_file else get(args.hw)


def _measure_machine(**options: Any) -> HardwareSpec:
    """rooflens.hardware.benchmark with a progress bar on standard error."""
    from rooflens.hardware.microbench import benchmark

    bar = _ProgressBar("measuring this machine")
    try:
        return benchmark(progress=lambda stage, fraction: bar(stage, round(100 * fraction), 100), **options)
    finally:
        bar.close()


def cmd_bench(args: argparse.Namespace) -> int:
    from rooflens.api import analyze
    from rooflens.measurement import achieved, module_rows, profile_operators, sweep
    from rooflens.report import formats
    from rooflens.zoo import load_model

    model, example, name = load_model(args.model, meta=False)
    shapes = [tuple(s) for s in args.input_size] if args.input_size else (example.input_size if example else None)
    if not shapes:
        raise InputError(f"rooflens does not know what {args.model} takes; give its input shape with --input-size "
                         "(the first dimension is the batch)")
    per_sample = [s[1:] for s in shapes]
    batches = args.batch or [shapes[0][0]]
    hw = _bench_device(args)
    bar = _ProgressBar(f"timing {name}")
    try:
        measurements = sweep(model, batch_sizes=batches, input_size_per_sample=per_sample, device=args.device,
                             dtype=args.dtype, threads=args.threads, warmup=args.warmup, iters=args.iters,
                             max_seconds=args.max_seconds, progress=bar)
    finally:
        bar.close()
    reports = [analyze(model, input_size=[(b, *s) for s in per_sample], dtype=args.dtype, name=name, hardware=hw,
                       precision=args.precision) for b in batches]
    rows = [(m, achieved(m, r)) for m, r in zip(measurements, reports, strict=True)]
    estimates = [r.calibrated.total_seconds if r.calibrated is not None else None for r in reports]
    profile = None
    if args.per_op:
        bar = _ProgressBar(f"profiling {name}")
        try:
            profile = profile_operators(model, None, reports[0], input_size=[(batches[0], *s) for s in per_sample],
                                        device=args.device, dtype=args.dtype, threads=args.threads, progress=bar)
        finally:
            bar.close()
    if args.format == "json":
        data: dict[str, Any] = {
            "model": name, "device": args.device, "threads": args.threads, "dtype": args.dtype,
            "hardware": hw.as_dict() if hw else None,
            "batches": [{**m.as_dict(samples=False), "achieved": a.as_dict(), "calibrated_seconds": est}
                        for (m, a), est in zip(rows, estimates, strict=True)],
        }
        if profile is not None:
            data["per_op"] = profile.as_dict()
        _emit(json.dumps(data, indent=2) + "\n", args.output)
        return EXIT_OK
    headers, table = formats.bench_table([m for m, _ in rows], [a for _, a in rows], estimates)
    prof_rows = module_rows(profile, depth=args.depth) if profile is not None else []
    if args.format == "csv":
        _emit(formats.grid_csv(headers, table), args.output)
        return EXIT_OK
    title = f"{name} on {args.device}" + (f" ({args.threads} threads)" if args.threads else "")
    if hw is not None:
        title += f"; roofline on {hw.name}"
    if args.format == "markdown":
        text = f"## {title}\n\n" + formats.grid_markdown(headers, table, formats.BENCH_NUMERIC)
        if profile is not None:
            ph, pt = formats.profile_table(prof_rows)
            text += "\n" + formats.grid_markdown(ph, pt, formats.BENCH_NUMERIC)
        _emit(text, args.output)
        return EXIT_OK
    items: list[Any] = [_table(headers, table, formats.BENCH_NUMERIC, title), formats.BENCH_NOTE]
    if profile is not None:
        ph, pt = formats.profile_table(prof_rows)
        order = "most time lost against the roofline first" if hw is not None else "most time first"
        items += ["", _table(ph, pt, formats.BENCH_NUMERIC, f"per module at batch {batches[0]}, {order}"),
                  formats.profile_note(profile)]
    _emit_items(items, args)
    return EXIT_OK


def cmd_hw_list(args: argparse.Namespace) -> int:
    from rooflens.hardware import devices, load_file
    from rooflens.report import formats

    specs = devices(args.kind)
    for path in args.hw or ():
        specs += [s for s in load_file(path) if args.kind is None or s.kind.value == args.kind]
    if args.format == "json":
        _emit(json.dumps([s.as_dict() for s in specs], indent=2) + "\n", args.output)
        return EXIT_OK
    rows = formats.hardware_rows(specs, args.precision)
    if args.format == "csv":
        _emit(formats.grid_csv(formats.HW_COLUMNS, rows), args.output)
    elif args.format == "markdown":
        _emit(formats.grid_markdown(formats.HW_COLUMNS, rows, formats.HW_NUMERIC), args.output)
    else:
        note = formats.HW_NOTE.format(precision=args.precision)
        _emit_items([_table(formats.HW_COLUMNS, rows, formats.HW_NUMERIC, None), note], args)
    return EXIT_OK


def cmd_hw_show(args: argparse.Namespace) -> int:
    from rooflens.hardware import get, load_file
    from rooflens.report import formats

    name = args.device
    specs = load_file(name) if name.endswith(".toml") or os.path.isfile(name) else [get(name)]
    if args.format == "json":
        data: Any = [s.as_dict() for s in specs] if len(specs) > 1 else specs[0].as_dict()
        _emit(json.dumps(data, indent=2) + "\n", args.output)
    elif args.format == "toml":
        _emit("\n".join(s.to_toml() for s in specs), args.output)
    else:
        from rooflens.report.terminal import label_grid

        items: list[Any] = []
        for s in specs:
            items += [label_grid(formats.hardware_lines(s)), ""]
        _emit_items(items[:-1], args)
    return EXIT_OK


def cmd_hw_bench(args: argparse.Namespace) -> int:
    from rooflens.report import formats

    dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()] if args.dtypes else None
    spec = _measure_machine(device=args.device, quick=args.quick, threads=args.threads, dtypes=dtypes)
    if args.save:
        _emit(spec.to_toml(), args.save)
    if args.format == "json":
        _emit(json.dumps(spec.as_dict(), indent=2) + "\n", args.output)
    elif args.format == "toml":
        _emit(spec.to_toml(), args.output)
    else:
        from rooflens.report.terminal import label_grid

        use = args.save or "FILE.toml (--save)"
        _emit_items([label_grid(formats.hardware_lines(spec)), "",
                     f"Use it: rooflens roofline MODEL --hw {use} --calibrated"], args)
    return EXIT_OK


def _emit(text: str, output: str | None, *, append: bool = False) -> None:
    if output is None or output == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    try:
        with open(output, "a" if append else "w", encoding="utf-8", newline="") as f:
            f.write(text)
    except OSError as e:
        raise InputError(f"cannot write {output!r}: {e.strerror or e}") from None
    print(f"{PROG}: wrote {output}", file=sys.stderr)


# ---- entry point ------------------------------------------------------------------------------------


def _one_line(message: object) -> str:
    return " ".join(str(message).split())


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 2 error, 1 unexpected failure)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version and usage errors
        return int(e.code) if isinstance(e.code, int) else EXIT_ERROR
    func: Callable[[argparse.Namespace], int] = args.func
    debug = args.debug or bool(os.environ.get("ROOFLENS_DEBUG"))
    try:
        return func(args)
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
