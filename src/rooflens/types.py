"""Plain data records shared by every part of rooflens.

Nothing here imports torch: records are built by the capture front-ends and read by the analysis and
the renderers. All quantities are in base units (FLOPs, bytes); conversion happens only when rendering.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, fields
from typing import Any


class Convention(str, enum.Enum):
    """How FLOPs are derived from multiply-accumulates (see README, "Conventions").

    ``fma``: FLOPs = 2 x MACs + bias adds + the other operators' FLOPs (what FMA hardware executes).
    ``exact``: an n-term dot product is n multiplies and n - 1 adds; a bias add fills the missing add.
    """

    FMA = "fma"
    EXACT = "exact"


class TensorKind(str, enum.Enum):
    """What a tensor seen by an operator is: a model parameter, a buffer, a key/value cache an input carries
    (a ``transformers`` cache object's tensors), or an activation."""

    PARAMETER = "parameter"
    BUFFER = "buffer"
    CACHE = "cache"
    ACTIVATION = "activation"


@dataclass(frozen=True)
class Cost:
    """An immutable, addable cost record.

    ``macs`` counts multiply-accumulates of convolutions and matrix products only (the figure that
    compares with torchvision's published GFLOPS); ``flops`` counts every floating-point operation
    under the chosen convention; ``bytes_read``/``bytes_written`` are memory traffic.
    """

    macs: int = 0
    flops: int = 0
    bytes_read: int = 0
    bytes_written: int = 0

    def __add__(self, other: Cost) -> Cost:
        if not isinstance(other, Cost):
            return NotImplemented
        return Cost(
            self.macs + other.macs,
            self.flops + other.flops,
            self.bytes_read + other.bytes_read,
            self.bytes_written + other.bytes_written,
        )

    def __radd__(self, other: Any) -> Cost:
        if other == 0:  # lets sum() start from 0
            return self
        return NotImplemented

    def scaled(self, factor: int) -> Cost:
        return Cost(*(getattr(self, f.name) * factor for f in fields(self)))

    @property
    def bytes(self) -> int:
        """Total memory traffic: bytes read plus bytes written."""
        return self.bytes_read + self.bytes_written

    @property
    def intensity(self) -> float:
        """Arithmetic intensity in FLOPs per byte (0 when there is no traffic)."""
        return self.flops / self.bytes if self.bytes else 0.0

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


ZERO = Cost()


@dataclass(frozen=True)
class Widths:
    """Bits per element in memory of floating-point tensors, by role; None keeps each dtype's own width.

    ``weight_bits`` applies to parameters and buffers, ``cache_bits`` to key/value cache tensors (``act_bits``
    when it is None), ``act_bits`` to every other floating-point tensor (inputs, activations, outputs).
    Integer and boolean tensors (indices, masks) keep their width.
    """

    weight_bits: int | None = None
    act_bits: int | None = None
    cache_bits: int | None = None
    weight_group: int | None = None  # quantization scales: see group_for

    def bits_for(self, kind: TensorKind) -> int | None:
        if kind is TensorKind.CACHE:
            return self.cache_bits if self.cache_bits is not None else self.act_bits
        return self.act_bits if kind is TensorKind.ACTIVATION else self.weight_bits

    def group_for(self, kind: TensorKind, shape: tuple[int, ...]) -> int:
        """Elements of a row that share one 16-bit quantization scale, for a parameter of two or more
        dimensions (``shape``: the parameter's own, not a view's) when ``weight_group`` is set; 0 (no scales)
        for anything else. A row is what one output channel reduces over: ``shape[1:]`` (a linear layer's
        inputs, a convolution's input channels x kernel); -1: the whole row, one scale per output channel; a
        group never spans two rows."""
        row = 1
        for d in shape[1:]:
            row *= d
        if self.weight_group is None or kind is not TensorKind.PARAMETER or len(shape) < 2 or not row:
            return 0
        return row if self.weight_group < 0 else min(self.weight_group, row)


SCALE_BITS = 16  # one fp16 scale per group of quantized weights (GPTQ / AWQ / bitsandbytes store fp16 scales)


def scales_of(elements: int, group: int) -> int:
    """Scales that ``elements`` elements of a quantized weight carry when each ``group`` of them shares one
    (exact for whole rows when the group divides the row, as 128 divides the widths of LLMs; rounded up)."""
    return -(-elements // group) if group else 0


@dataclass(frozen=True)
class TensorMeta:
    """Shape, dtype and role of one tensor an operator read or wrote."""

    shape: tuple[int, ...]
    dtype: str  # e.g. "float32", as torch names it without the "torch." prefix
    itemsize: int  # bytes per element of the dtype
    kind: TensorKind = TensorKind.ACTIVATION
    bits: int = 0  # bits per element in memory when the precision settings change it (0: the dtype's)
    group: int = 0  # quantized weights: elements of a row sharing one 16-bit scale (0: no scales)

    @property
    def storage_bits(self) -> int:
        return self.bits or 8 * self.itemsize

    def bytes_of(self, elements: int) -> int:
        """Bytes that ``elements`` elements of this tensor take in memory (packed sub-byte widths round up),
        with their quantization scales when it has them."""
        return (elements * self.storage_bits + 7) // 8 + scales_of(elements, self.group) * SCALE_BITS // 8

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n

    @property
    def nbytes(self) -> int:
        return self.bytes_of(self.numel)


@dataclass(frozen=True)
class OpRecord:
    """One operator call: what ran, where in the module tree, on what, and what it cost."""

    op: str  # aten overload packet, e.g. "aten.convolution"
    module: str  # dotted path of the innermost module it ran in ("" is the root)
    inputs: tuple[TensorMeta, ...]
    outputs: tuple[TensorMeta, ...]
    cost: Cost
    supported: bool = True  # False: no formula; only bytes are counted
    via: str = ""  # the operator this one was decomposed from, if any
    phase: str = "forward"  # "backward" for the operators of the backward pass
    family: str = ""  # the formula family of the operator ("conv", "matmul", ...); "" without a formula
    node: str = ""  # the ONNX node's name (ONNX front-end; matches ONNX Runtime's profiler events)

    @property
    def weight_bytes_read(self) -> int:
        """The part of its read bytes that are parameters and buffers: up to the size of those operands (an
        embedding reads only the rows it looks up)."""
        weights = sum(t.nbytes for t in self.inputs if t.kind in (TensorKind.PARAMETER, TensorKind.BUFFER))
        return min(self.cost.bytes_read, weights)

    def as_dict(self) -> dict[str, Any]:
        return {
            "op": self.op,
            "module": self.module,
            "inputs": [_tensor_dict(t) for t in self.inputs],
            "outputs": [_tensor_dict(t) for t in self.outputs],
            **self.cost.as_dict(),
            "supported": self.supported,
            "via": self.via,
            "phase": self.phase,
            "family": self.family,
            **({"node": self.node} if self.node else {}),
        }


def _tensor_dict(t: TensorMeta) -> dict[str, Any]:
    out: dict[str, Any] = {"shape": list(t.shape), "dtype": t.dtype, "kind": t.kind.value}
    if t.bits:
        out["bits"] = t.bits
    if t.group:
        out["group"] = t.group
    return out


@dataclass(frozen=True)
class ParamStats:
    """Parameter counts; each tensor counted once (shared and tied weights once)."""

    total: int = 0
    trainable: int = 0
    nonzero: int | None = None  # None when the values are unknown (meta or fake parameters)
    bytes: int = 0  # at the parameters' own dtypes
    buffers: int = 0  # buffer elements, counted apart
    buffer_bytes: int = 0

    @property
    def non_trainable(self) -> int:
        return self.total - self.trainable


@dataclass
class ModuleNode:
    """One module of the tree with its own and cumulative cost (cumulative includes children)."""

    path: str  # "" for the root
    type_name: str
    own: Cost = ZERO
    cumulative: Cost = ZERO  # forward and backward together when the backward was analysed
    cumulative_backward: Cost = ZERO  # the backward's part of ``cumulative``
    params: ParamStats = field(default_factory=ParamStats)  # recursive: this module and below
    own_params: int = 0  # parameters held directly by this module
    calls: int = 0
    output_shapes: tuple[tuple[int, ...], ...] = ()
    children: list[str] = field(default_factory=list)

    @property
    def depth(self) -> int:
        return 0 if not self.path else self.path.count(".") + 1

    @property
    def name(self) -> str:
        return self.path.rsplit(".", 1)[-1] if self.path else ""
