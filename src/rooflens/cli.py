"""The ``rooflens`` command line.

    rooflens profile MODEL [--input-size 1,3,224,224 ...] [--dtype float16] [--convention fma|exact]
                           [--depth N] [--format table|json|csv|markdown] [-o FILE]
                           [--bytes si|binary] [--width N] [--meta | --no-meta]

MODEL is ``torchvision:NAME``, ``package.module:callable`` or ``path/to/file.py:callable``. Errors
print one line, ``rooflens: error: ...``, on standard error and exit with status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from rooflens import __version__
from rooflens.errors import InputError, RooflensError

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
    return parser


def _add_profile(sub: Any) -> None:
    p = sub.add_parser(
        "profile",
        help="count parameters, MACs, FLOPs and memory traffic per module",
        description="Count parameters, MACs, FLOPs and bytes read/written per module and in total. "
        "MACs = conv + matmul multiply-accumulates; 1 MAC = 2 FLOPs.",
    )
    p.add_argument("model", metavar="MODEL", help=_MODEL_HELP)
    p.add_argument(
        "--input-size", "-i", dest="input_size", type=input_size, action="append", metavar="1,3,224,224",
        help="shape of an input tensor; repeat it once per positional input "
        "(default: the model's usual input for torchvision models)",
    )
    p.add_argument("--dtype", help="analyse as if the model and inputs were in this dtype (float16, bfloat16 ...)")
    p.add_argument("--convention", choices=("fma", "exact"), default="fma",
                   help="FLOP convention: fma (FLOPs = 2 x MACs + ...; default) or exact (n mults + n-1 adds)")
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
    p.add_argument("--meta", action=argparse.BooleanOptionalAction, default=None,
                   help="build the model on the meta device (fast, no memory; parameter values unknown); "
                   "default: meta for torchvision models whose forward does not need values")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_profile)


# ---- commands ---------------------------------------------------------------------------------------


def cmd_profile(args: argparse.Namespace) -> int:
    from rooflens.api import analyze
    from rooflens.report.units import ByteUnit
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
    report = analyze(model, dtype=args.dtype, convention=args.convention, name=name, **source)

    byte_unit = ByteUnit(args.bytes) if args.bytes else None
    if args.format == "table":
        if args.output is None and args.width is None and sys.stdout.isatty():
            from rooflens.report.terminal import print_report

            print_report(report, depth=args.depth, byte_unit=byte_unit or ByteUnit.SI)
            return EXIT_OK
        text = report.render(depth=args.depth, byte_unit=byte_unit or ByteUnit.SI, width=args.width or 140)
    elif args.format == "json":
        text = report.to_json() + "\n"
    elif args.format == "csv":
        text = report.to_csv(byte_unit=byte_unit)
    else:
        text = report.to_markdown(depth=args.depth, byte_unit=byte_unit or ByteUnit.SI)
    _emit(text, args.output)
    return EXIT_OK


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
