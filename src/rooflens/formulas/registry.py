"""The formula registry: one entry per aten operator packet, filled by a decorator.

A formula receives a normalised :class:`OpCall` (arguments bound to the operator schema's names, every
tensor replaced by its :class:`TensorMeta`) and returns the compute part of a :class:`Cost`
(``macs`` and ``flops``). Memory traffic is filled in by the entry's ``bytes`` rule: by default each
distinct input tensor is read once and each output written once, at its dtype's width.

No torch import here: keys are operator names such as ``"aten.convolution"`` so that the ONNX
front-end can share the formulas.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from rooflens.types import Convention, Cost, TensorMeta

Formula = Callable[["OpCall"], Cost]
BytesRule = Callable[["OpCall"], "tuple[int, int]"]


@dataclass(frozen=True)
class OpCall:
    """A normalised operator call as formulas see it."""

    op: str
    args: Mapping[str, Any]  # schema argument name -> value; tensors are TensorMeta
    inputs: tuple[TensorMeta, ...]  # distinct tensor inputs, in argument order
    outputs: tuple[TensorMeta, ...]  # tensor outputs, flattened
    convention: Convention = Convention.FMA

    def tensor(self, name: str) -> TensorMeta | None:
        value = self.args.get(name)
        return value if isinstance(value, TensorMeta) else None

    def first_tensor(self, *names: str) -> TensorMeta:
        """The first of the arguments ``names`` that is a tensor; ValueError when none is."""
        for name in names:
            t = self.tensor(name)
            if t is not None:
                return t
        raise ValueError(f"{self.op}: none of the arguments {names} is a tensor")

    @property
    def out(self) -> TensorMeta:
        return self.outputs[0]


def default_bytes(call: OpCall) -> tuple[int, int]:
    """Read every distinct input once, write every output once."""
    return sum(t.nbytes for t in call.inputs), sum(t.nbytes for t in call.outputs)


def output_only_bytes(call: OpCall) -> tuple[int, int]:
    """Factories (zeros, arange, full ...): nothing read, the output written."""
    return 0, sum(t.nbytes for t in call.outputs)


@dataclass(frozen=True)
class Entry:
    op: str
    formula: Formula
    bytes: BytesRule = default_bytes
    family: str = ""  # the formula family, e.g. "conv" (by default the module the formula lives in)
    doc: str = ""  # one line: the FLOPs rule, for the supported-operator table


@dataclass
class Registry:
    entries: dict[str, Entry] = field(default_factory=dict)

    def register(
        self,
        *ops: Any,
        bytes: BytesRule = default_bytes,
        doc: str = "",
        family: str = "",
    ) -> Callable[[Formula], Formula]:
        """Decorator: register ``fn`` as the formula of each operator in ``ops``.

        ``ops`` are operator packets (``torch.ops.aten.add``) or their names (``"aten.add"``).
        Registering an operator twice is an error: one operator, one formula.
        ``family``: the formula family the operators belong to (what the supported-operator table groups
        by and what an operator record carries); by default the name of the module ``fn`` lives in. The
        backward operators give the family of their forward (``convolution_backward``: ``"conv"``).
        """

        def decorate(fn: Formula) -> Formula:
            fam = family or fn.__module__.rsplit(".", 1)[-1]
            line = doc or _first_line(fn.__doc__)
            for op in ops:
                name = op_name(op)
                if name in self.entries:
                    raise ValueError(f"operator {name} already has a formula ({self.entries[name].formula.__qualname__})")
                self.entries[name] = Entry(name, fn, bytes, fam, line)
            return fn

        return decorate

    def get(self, op: Any) -> Entry | None:
        return self.entries.get(op_name(op))

    def __contains__(self, op: Any) -> bool:
        return op_name(op) in self.entries

    def __iter__(self) -> Iterator[Entry]:
        return iter(sorted(self.entries.values(), key=lambda e: (e.family, e.op)))

    def __len__(self) -> int:
        return len(self.entries)


def _first_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[0].strip() if lines else ""


def op_name(op: Any) -> str:
    """``aten.convolution`` for the packet, an overload (``aten.convolution.default``) or the name."""
    packet = getattr(op, "overloadpacket", op)
    return str(packet)


REGISTRY = Registry()
formula = REGISTRY.register


# ---- helpers shared by the formula families ---------------------------------------------------------


def is_complex(t: TensorMeta) -> bool:
    """Whether ``t`` holds complex numbers (complex32/64/128)."""
    return t.dtype.startswith("complex")


def dot_cost(macs: int, outputs: int, bias_adds: int, convention: Convention, *, complex_dtype: bool = False) -> Cost:
    """MACs and FLOPs of ``outputs`` dot products totalling ``macs`` multiply-accumulates, plus bias adds.

    Real numbers: ``Cost(macs, dot_flops(macs, outputs, bias_adds))``. Complex numbers
    (``complex_dtype``): a complex multiply-accumulate ``acc + (a + bi)(c + di)`` is 4 real multiplies
    (ac, bd, ad, bc) and 4 real adds (ac - bd, ad + bc, and the two accumulations), i.e. 4 real MACs;
    a complex output is 2 real outputs and a complex bias add 2 real adds. So MACs are counted x 4 and
    the FLOPs follow from the real rule: fma 8 per complex MAC (+ 2 per bias add); exact an n-term complex
    dot product is 4n multiplies and 4n - 2 adds = 8n - 2 (+ 2 with a bias: 8n).
    """
    if complex_dtype:
        macs, outputs, bias_adds = 4 * macs, 2 * outputs, 2 * bias_adds
    return Cost(macs=macs, flops=dot_flops(macs, outputs, bias_adds, convention))


def dot_flops(macs: int, outputs: int, bias_adds: int, convention: Convention) -> int:
    """FLOPs of ``outputs`` dot products totalling ``macs`` multiply-accumulates, plus bias adds.

    fma:   2 x MACs + bias adds.
    exact: each n-term dot product is n multiplies and n - 1 adds, so 2 x MACs - outputs; a bias add
           fills the missing add, so with a bias on every output the result is exactly 2 x MACs.
    """
    if convention is Convention.EXACT:
        return 2 * macs - outputs + bias_adds
    return 2 * macs + bias_adds
