"""Design advice: rules that read a report's operator records, its module tree and a device, and say with
numbers where the model spends memory traffic or time it need not. docs/advice.md derives every rule,
gives its formula and source, and explains each number a finding carries.

=============  ====================================================================  ===============
rule           fires on                                                              needs a device
=============  ====================================================================  ===============
``G1``         a 1x1 convolution whose memory access cost is above ShuffleNetV2's    no
               lower bound for its FLOPs (unequal input and output widths)
``G2``         a grouped convolution: the access cost its groups add at equal FLOPs  no
``G3``         a block whose time is mostly per-operator overhead (fragmentation)    yes
``G4``         a block whose time (or bytes) is mostly element-wise operators        no
``alignment``  a convolution or linear layer whose channels are not a multiple of    yes
               the device's alignment at the precision
``depthwise``  a depthwise or grouped convolution below the device's ridge point;    yes
               a full convolution and MobileDets' fused one as alternatives
``fusion``     convolution -> batch norm (-> activation) sequences a deployment      no
               folds into one operator
``repvgg``     parallel convolution branches (+ identity) summed: one convolution    no
               after RepVGG's re-parameterisation
``batch``      a memory-bound model: the batch at which it reaches the ridge point   yes
``precision``  the bytes and roofline time at a narrower precision                   no
``memory``     weights (+ the activation peak, if given) larger than the device's     yes
               memory
=============  ====================================================================  ===============

Each :class:`Finding` names its modules, the evidence (named numbers in base units: bytes, FLOPs, seconds,
ratios), an estimate of what the rule's change would save (``bytes_saved`` always, ``seconds_saved`` with a
device: the roofline time before minus after, on the report's precision), a severity derived from
``share`` (the saving over the model's time on the device, its calibrated total where the device was
measured, else its roofline total; without a device over the model's bytes), and a one-line message.
Savings of different rules overlap (folding a batch norm and fusing element-wise operators remove the same
bytes): they do not add up.
"""

from __future__ import annotations

import enum
import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from math import prod
from types import MappingProxyType
from typing import Any

from rooflens.analysis.calibrated import can_calibrate, predict
from rooflens.analysis.counted import Counted
from rooflens.analysis.modules import lineage
from rooflens.analysis.roofline import roofline
from rooflens.errors import InputError
from rooflens.formulas.conv import conv_cost
from rooflens.hardware.catalogue import get as get_hardware
from rooflens.hardware.spec import HardwareSpec, Precision
from rooflens.types import ModuleNode, OpRecord, TensorKind, TensorMeta


class Rule(str, enum.Enum):
    """A rule's stable id; ``doc`` is its section of docs/advice.md."""

    G1 = "G1"
    G2 = "G2"
    G3 = "G3"
    G4 = "G4"
    ALIGNMENT = "alignment"
    DEPTHWISE = "depthwise"
    FUSION = "fusion"
    REPVGG = "repvgg"
    BATCH = "batch"
    PRECISION = "precision"
    MEMORY = "memory"

    @property
    def doc(self) -> str:
        return f"docs/advice.md#{_ANCHORS[self]}"


_ANCHORS = {
    Rule.G1: "g1-equal-channel-widths", Rule.G2: "g2-group-convolutions", Rule.G3: "g3-fragmentation",
    Rule.G4: "g4-element-wise-operators", Rule.ALIGNMENT: "channel-alignment",
    Rule.DEPTHWISE: "memory-bound-depthwise-and-grouped-convolutions", Rule.FUSION: "conv-and-batch-norm-fusion",
    Rule.REPVGG: "repvgg-re-parameterisation", Rule.BATCH: "batch-to-the-ridge-point",
    Rule.PRECISION: "precision", Rule.MEMORY: "memory-fit",
}


class Severity(str, enum.Enum):
    """How much is at stake: from ``Finding.share`` (see :data:`SEVERITY_SHARES`)."""

    INFO = "info"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"

    @classmethod
    def of(cls, share: float) -> Severity:
        for severity, least in SEVERITY_SHARES:
            if share >= least:
                return severity
        return cls.INFO


# the least share of the model's time (or bytes) at stake for each severity
SEVERITY_SHARES = ((Severity.HIGH, 0.10), (Severity.MEDIUM, 0.02), (Severity.LOW, 0.005))


@dataclass(frozen=True)
class Finding:
    """One piece of advice. ``evidence`` and ``estimate`` hold named numbers in base units (bytes, FLOPs,
    seconds, ratios); ``estimate`` has ``bytes_saved`` and, with a device, ``seconds_saved``. ``share`` is
    the saving over the model's time on the device (over its bytes without a device); ``severity`` follows
    from it. ``doc`` points at the rule's derivation in docs/advice.md."""

    rule: Rule
    modules: tuple[str, ...]
    evidence: Mapping[str, float]
    estimate: Mapping[str, float]
    severity: Severity
    share: float
    message: str
    doc: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule.value, "modules": list(self.modules), "evidence": dict(self.evidence),
            "estimate": dict(self.estimate), "severity": self.severity.value, "share": self.share,
            "message": self.message, "doc": self.doc,
        }


# ---- what the rules read ----------------------------------------------------------------------------

ELEMENTWISE_FAMILIES = frozenset({"pointwise", "norm", "transcendental"})
_CONTAINERS = frozenset({"Sequential", "ModuleList", "ModuleDict"})


@dataclass(frozen=True)
class _Conv:
    """A forward convolution record read as ShuffleNetV2 reads a layer (transposed ones are left out)."""

    record: OpRecord
    x: TensorMeta
    w: TensorMeta
    y: TensorMeta
    groups: int
    has_bias: bool

    @property
    def c_in(self) -> int:
        return self.x.shape[1]

    @property
    def c_out(self) -> int:
        return self.y.shape[1]

    @property
    def kernel(self) -> tuple[int, ...]:
        return self.w.shape[2:]

    @property
    def pixels(self) -> int:
        """Output elements per channel: N x H x W."""
        return self.y.numel // self.c_out if self.c_out else 0

    @property
    def pointwise(self) -> bool:
        return self.groups == 1 and all(k == 1 for k in self.kernel)

    @property
    def depthwise(self) -> bool:
        return self.groups > 1 and self.groups == self.c_in


def _conv(r: OpRecord) -> _Conv | None:
    if r.family != "conv" or r.phase != "forward" or len(r.inputs) < 2 or not r.outputs:
        return None
    x, w, y = r.inputs[0], r.inputs[1], r.outputs[0]
    rank = len(x.shape)
    if rank < 3 or len(w.shape) != rank or len(y.shape) != rank or not w.shape[1] or not y.shape[1]:
        return None
    if x.shape[1] % w.shape[1] or y.shape[1] != w.shape[0] or any(o > i for o, i in zip(y.shape[2:], x.shape[2:])):
        return None  # a transposed convolution (or shapes this reading does not know)
    return _Conv(r, x, w, y, x.shape[1] // w.shape[1], len(r.inputs) > 2)


def _elem_bytes(t: TensorMeta) -> float:
    return t.storage_bits / 8


def _activation_inputs(r: OpRecord) -> list[TensorMeta]:
    return [t for t in r.inputs if t.kind is TensorKind.ACTIVATION]


def _is_kernel(r: OpRecord) -> bool:
    """An operator that does work (views and metadata operators cost nothing)."""
    return bool(r.cost.flops or r.cost.bytes)


def _is_batch_norm(r: OpRecord) -> bool:
    return r.family == "norm" and "batch_norm" in r.op


def _is_activation(r: OpRecord, shape: tuple[int, ...]) -> bool:
    """A one-tensor element-wise operator on ``shape`` (ReLU, ReLU6, SiLU ...): what a fused epilogue applies."""
    return (r.family in ("pointwise", "transcendental") and len(r.inputs) == 1 and bool(r.outputs)
            and r.inputs[0].shape == shape == r.outputs[0].shape)


def _is_sum(r: OpRecord, shape: tuple[int, ...]) -> bool:
    acts = _activation_inputs(r)
    return r.op in ("aten.add", "aten.add_") and len(acts) == 2 and all(t.shape == shape for t in acts)


@dataclass(frozen=True)
class _Device:
    spec: HardwareSpec
    precision: Precision  # the one whose peak is used
    peak: float
    bandwidth: float
    roofline_seconds: tuple[float, ...]  # per record
    seconds: tuple[float, ...]  # per record: calibrated where the device was measured, else the roofline's
    overheads: tuple[float, ...] | None  # per record, calibrated
    total_seconds: float

    @property
    def ridge(self) -> float:
        return self.peak / self.bandwidth

    def time(self, flops: float, nbytes: float, peak: float | None = None) -> float:
        """Roofline time of one operator of ``flops`` and ``nbytes`` (``op_timing``'s, for fractional bytes)."""
        return max(flops / (peak or self.peak), nbytes / self.bandwidth)


@dataclass(frozen=True)
class Options:
    """The rules' thresholds and assumptions (the keyword arguments of :func:`advise`)."""

    min_excess: float = 0.10  # G1, G2: access cost at least this share above the bound / dense conv
    op_overhead_seconds: float = 5e-6  # G3 on a device that was not measured: assumed cost per operator
    overhead_share: float = 0.5  # G3: overhead's share of a block's time
    elementwise_share: float = 0.3  # G4: element-wise share of a block's time (bytes without a device)
    activation_bytes: int | None = None  # memory: the activation peak, when known


@dataclass(frozen=True)
class _Context:
    counted: Counted
    records: Sequence[OpRecord]
    convs: Mapping[int, _Conv]
    subtree: Mapping[str, tuple[int, ...]]  # module path -> forward kernel records made in it or below
    blocks: tuple[str, ...]
    device: _Device | None
    total_bytes: int
    options: Options

    def finding(self, rule: Rule, modules: Sequence[str], evidence: Mapping[str, float],
                estimate: Mapping[str, float], message: str, *, share: float | None = None) -> Finding:
        if share is None:
            saving = estimate.get("seconds_saved", 0.0) if self.device else estimate.get("bytes_saved", 0.0)
            total = self.device.total_seconds if self.device else self.total_bytes
            share = saving / total if total else 0.0
        share = max(share, 0.0)
        return Finding(rule, tuple(modules), MappingProxyType(dict(evidence)), MappingProxyType(dict(estimate)),
                       Severity.of(share), share, message, rule.doc)

    def saved(self, bytes_saved: float, before: float, after: float) -> dict[str, float]:
        """``bytes_saved`` and, with a device, ``seconds_saved = before - after`` (roofline seconds)."""
        out = {"bytes_saved": bytes_saved}
        if self.device is not None:
            out["seconds_saved"] = before - after
        return out

    def saving_text(self, estimate: Mapping[str, float]) -> str:
        text = f"saves {_bytes(estimate['bytes_saved'])}"
        if self.device is not None:
            text += f" and {_seconds(estimate['seconds_saved'])} on {self.device.spec.id}"
        return text

    def time(self, indices: Sequence[int]) -> float:
        """Summed roofline time of records (0 without a device)."""
        dev = self.device
        return sum(dev.roofline_seconds[i] for i in indices) if dev else 0.0


def _context(counted: Counted, hardware: HardwareSpec | str | None, options: Options) -> _Context:
    records = counted.records
    spec = get_hardware(hardware) if hardware is not None else counted.hardware
    device = None
    if spec is not None:
        roof = roofline(records, counted.modules, spec, counted.precision)
        pred = predict(counted, spec) if can_calibrate(spec) else None
        own = tuple(t.seconds for t in roof.ops)
        device = _Device(spec, roof.used_precision, roof.peak_flops_per_s, roof.bandwidth_bytes_per_s, own,
                         tuple(p.seconds for p in pred.ops) if pred else own,
                         tuple(p.overhead_seconds for p in pred.ops) if pred else None,
                         pred.total_seconds if pred else roof.total_seconds)
    convs = {i: c for i, r in enumerate(records) if (c := _conv(r)) is not None}
    subtree: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        if r.phase == "forward" and _is_kernel(r):
            for path in lineage(r.module):
                subtree.setdefault(path, []).append(i)
    frozen = {p: tuple(v) for p, v in subtree.items()}
    return _Context(counted, records, convs, frozen, _blocks(counted.modules, frozen), device,
                    sum(r.cost.bytes for r in records), options)


def _blocks(modules: Mapping[str, ModuleNode], subtree: Mapping[str, tuple[int, ...]]) -> tuple[str, ...]:
    """The model's blocks: the outermost modules that run at least two operators, are not plain containers
    (Sequential, ModuleList, ModuleDict), and whose type repeats among their siblings (ResNet's BasicBlock,
    MobileNetV2's InvertedResidual, ViT's EncoderBlock). The model itself when there are none."""
    out: list[str] = []

    def visit(path: str) -> None:
        node = modules[path]
        types = Counter(modules[c].type_name for c in node.children if c in modules)
        for child in node.children:
            if child not in modules:
                continue
            m = modules[child]
            if m.type_name not in _CONTAINERS and types[m.type_name] > 1 and len(subtree.get(child, ())) >= 2:
                out.append(child)
            else:
                visit(child)

    if "" in modules:
        visit("")
    if not out and len(subtree.get("", ())) >= 2:
        out.append("")
    return tuple(out)


# ---- the rules ----------------------------------------------------------------------------------------

def g1_channel_widths(ctx: _Context) -> list[Finding]:
    """G1: a 1x1 convolution's memory access cost against its lower bound at the same FLOPs.

    In bytes, with ``a`` and ``b`` bytes per activation and weight element, ``hw`` = N x H x W:
    ``MAC = a·hw·(c1 + c2) + b·c1·c2 >= 2·a·hw·sqrt(c1·c2) + b·c1·c2``, equal at c1 = c2; the excess is
    ``a·hw·(sqrt(c1) - sqrt(c2))^2``.
    """
    out = []
    for i, c in ctx.convs.items():
        if not c.pointwise or c.x.shape[2:] != c.y.shape[2:]:
            continue
        a, b, hw, c1, c2 = _elem_bytes(c.x), _elem_bytes(c.w), c.pixels, c.c_in, c.c_out
        mac = a * hw * (c1 + c2) + b * c1 * c2
        bound = 2 * a * hw * math.sqrt(c1 * c2) + b * c1 * c2
        if mac < (1 + ctx.options.min_excess) * bound:
            continue
        r, excess = c.record, mac - bound
        estimate = {**ctx.saved(excess, ctx.time([i]),
                                _time(ctx, r.cost.flops, r.cost.bytes - excess)), "equal_width": math.sqrt(c1 * c2)}
        evidence = {"c_in": c1, "c_out": c2, "pixels": hw, "mac_bytes": mac, "bound_bytes": bound,
                    "ratio": mac / bound}
        out.append(ctx.finding(Rule.G1, [r.module], evidence, estimate,
                               f"1x1 conv {c1}->{c2} channels moves {_bytes(mac)}, {mac / bound:.2f}x the "
                               f"{_bytes(bound)} of equal widths ({math.sqrt(c1 * c2):.0f}) at the same FLOPs; "
                               + ctx.saving_text(estimate)))
    return out


def g2_group_convolutions(ctx: _Context) -> list[Finding]:
    """G2: what a grouped (not depthwise) convolution's groups add to its access cost at equal FLOPs.

    A dense convolution with the same input and FLOPs has c2/g outputs: the groups add
    ``a·hw·c2·(1 - 1/g)`` bytes of output.
    """
    out = []
    for i, c in ctx.convs.items():
        if c.groups <= 1 or c.depthwise:
            continue
        r = c.record
        added = _elem_bytes(c.y) * c.pixels * c.c_out * (1 - 1 / c.groups)
        if added < ctx.options.min_excess * r.cost.bytes:
            continue
        estimate = ctx.saved(added, ctx.time([i]), _time(ctx, r.cost.flops, r.cost.bytes - added))
        evidence = {"groups": c.groups, "c_in": c.c_in, "c_out": c.c_out, "pixels": c.pixels,
                    "mac_bytes": r.cost.bytes, "dense_bytes": r.cost.bytes - added}
        out.append(ctx.finding(Rule.G2, [r.module], evidence, estimate,
                               f"grouped conv (g={c.groups}, {c.c_in}->{c.c_out}) moves {_bytes(r.cost.bytes)}; "
                               f"a dense conv of the same input and FLOPs ({c.c_out // c.groups} outputs) moves "
                               f"{_bytes(r.cost.bytes - added)}: the groups add {_bytes(added)}"))
    return out


def g3_fragmentation(ctx: _Context) -> list[Finding]:
    """G3: the share of a block's time that per-operator overhead takes, and what running the block as one
    operator would save (all but one operator's overhead)."""
    dev = ctx.device
    if dev is None:
        return []
    out = []
    o = ctx.options
    # the model's time under the same assumption: the roofline plus the assumed overhead of every operator
    measured = dev.overheads is not None
    model = dev.total_seconds + (0.0 if measured else o.op_overhead_seconds * sum(map(_is_kernel, ctx.records)))
    for block in ctx.blocks:
        idx = ctx.subtree.get(block, ())
        n = len(idx)
        if dev.overheads is not None:  # measured
            overhead = sum(dev.overheads[i] for i in idx)
            block_seconds = sum(dev.seconds[i] for i in idx)
        else:
            overhead = n * o.op_overhead_seconds
            block_seconds = ctx.time(idx) + overhead
        share = overhead / block_seconds if block_seconds else 0.0
        if n < 2 or share < o.overhead_share:
            continue
        saved = overhead * (n - 1) / n
        source = "measured" if measured else f"assumed {_seconds(o.op_overhead_seconds)} each, not measured"
        evidence = {"operators": n, "block_seconds": block_seconds, "overhead_seconds": overhead,
                    "overhead_share": share, "measured": float(measured), "model_seconds": model}
        estimate = {"bytes_saved": 0.0, "seconds_saved": saved, "operators_after": 1}
        out.append(ctx.finding(Rule.G3, [block], evidence, estimate,
                               f"{_name(block)} runs {n} operators; their overhead ({source}) is "
                               f"{_seconds(overhead)}, {share:.0%} of its {_seconds(block_seconds)}; as one fused "
                               f"operator it saves {_seconds(saved)}", share=saved / model if model else 0.0))
    return out


def g4_elementwise(ctx: _Context) -> list[Finding]:
    """G4: element-wise operators' (activations, adds, normalisations) share of a block's time on the device
    (calibrated where measured, else roofline), or of its bytes without one. Fused into their neighbours
    they would move none of their bytes: that is the saving's upper bound."""
    dev = ctx.device
    out = []
    for block in ctx.blocks:
        idx = ctx.subtree.get(block, ())
        ew = [i for i in idx if ctx.records[i].family in ELEMENTWISE_FAMILIES]
        if not ew:
            continue
        ew_bytes = sum(ctx.records[i].cost.bytes for i in ew)
        if dev is not None:
            part, whole = sum(dev.seconds[i] for i in ew), sum(dev.seconds[i] for i in idx)
        else:
            part, whole = ew_bytes, sum(ctx.records[i].cost.bytes for i in idx)
        share = part / whole if whole else 0.0
        if share < ctx.options.elementwise_share:
            continue
        compute = sum(ctx.records[i].cost.flops for i in ew) / dev.peak if dev else 0.0
        estimate = ctx.saved(ew_bytes, ctx.time(ew), compute)
        evidence = {"operators": len(ew), "elementwise_bytes": ew_bytes, "elementwise_share": share,
                    **({"elementwise_seconds": part, "block_seconds": whole} if dev else {"block_bytes": whole})}
        what = "time" if dev else "bytes"
        out.append(ctx.finding(Rule.G4, [block], evidence, estimate,
                               f"{_name(block)}: {len(ew)} element-wise operators take {share:.0%} of its {what} "
                               f"({_bytes(ew_bytes)}); fused into their neighbours it " + ctx.saving_text(estimate)))
    return out


def channel_alignment(ctx: _Context) -> list[Finding]:
    """Channel alignment: convolution (dense) and linear layers whose input or output channels are not a
    multiple of the device's alignment at the precision. The units compute on padded tiles: the padded
    sizes, the FLOPs and bytes of the padding, and its roofline time."""
    dev = ctx.device
    m = dev.spec.alignment.get(dev.precision) if dev else None
    if dev is None or not m:
        return []
    out = []
    for i, r in enumerate(ctx.records):
        dims = _gemm_operands(ctx, i)
        if dims is None:
            continue
        x, w, k, n, rest = dims
        kp, np_ = _ceil_to(k, m), _ceil_to(n, m)
        if (kp, np_) == (k, n):
            continue
        extra_flops = 2 * (r.cost.macs * kp * np_ // (k * n) - r.cost.macs)
        extra_bytes = (x.nbytes * (kp / k - 1) + w.nbytes * (kp * np_ / (k * n) - 1)
                       + sum(t.nbytes for t in rest) * (np_ / n - 1))
        padded = dev.time(r.cost.flops + extra_flops, r.cost.bytes + extra_bytes)
        evidence = {"in_channels": k, "out_channels": n, "alignment": m, "padded_in_channels": kp,
                    "padded_out_channels": np_}
        estimate = {"extra_flops": extra_flops, "extra_bytes": extra_bytes, "padded_seconds": padded,
                    "bytes_saved": extra_bytes, "seconds_saved": padded - dev.roofline_seconds[i]}
        out.append(ctx.finding(Rule.ALIGNMENT, [r.module], evidence, estimate,
                               f"{k}->{n} channels are not multiples of {m} ({dev.precision.value} on "
                               f"{dev.spec.id}); padded to {kp}->{np_}: {_si(extra_flops, 'FLOP')} and "
                               f"{_bytes(extra_bytes)} more, {_seconds(padded - dev.roofline_seconds[i])} of roofline time"))
    return out


def depthwise_memory_bound(ctx: _Context) -> list[Finding]:
    """Depthwise and grouped convolutions below the device's ridge point, with two alternatives: a full
    convolution of the same shape (g x the MACs and weights), and for a depthwise one fed by a 1x1 expansion,
    MobileDets' fused convolution (one full k x k convolution from the expansion's input)."""
    dev = ctx.device
    if dev is None:
        return []
    out = []
    for i, c in ctx.convs.items():
        r = c.record
        if c.groups <= 1 or r.cost.intensity >= dev.ridge:
            continue
        now = dev.roofline_seconds[i]
        full = dev.time(r.cost.flops + 2 * r.cost.macs * (c.groups - 1), r.cost.bytes + c.w.nbytes * (c.groups - 1))
        evidence = {"groups": c.groups, "intensity": r.cost.intensity, "ridge": dev.ridge, "seconds": now}
        estimate = {"full_seconds": full}
        saved, saved_bytes, modules = now - full, 0.0, [r.module]
        j = _expansion(ctx, i, c)
        if j is not None:
            e = ctx.convs[j]
            k = prod(c.kernel)
            fused_bytes = e.x.nbytes + c.c_out * e.c_in * k * _elem_bytes(c.w) + c.y.nbytes
            fused = dev.time(2 * c.y.numel * e.c_in * k, fused_bytes)
            chain = range(j, i + 1)
            before, before_bytes = ctx.time(chain), sum(ctx.records[q].cost.bytes for q in chain)
            estimate |= {"fused_seconds": fused, "replaced_seconds": before}
            saved_bytes = before_bytes - fused_bytes
            modules = [e.record.module, r.module]
            saved = max(saved, before - fused)
        estimate |= {"bytes_saved": max(saved_bytes, 0.0), "seconds_saved": max(saved, 0.0)}
        kind = "depthwise" if c.depthwise else f"grouped (g={c.groups})"
        fused_text = (f"; fused with its 1x1 expansion (MobileDets) {_seconds(estimate['fused_seconds'])} against "
                      f"{_seconds(estimate['replaced_seconds'])}" if j is not None else "")
        out.append(ctx.finding(Rule.DEPTHWISE, modules, evidence, estimate,
                               f"{kind} conv at {r.cost.intensity:.3g} FLOP/B, below the ridge {dev.ridge:.3g} of "
                               f"{dev.spec.id}: memory-bound, {_seconds(now)}; a full conv takes "
                               f"{_seconds(full)}{fused_text}"))
    return out


def conv_bn_fusion(ctx: _Context) -> list[Finding]:
    """Convolution -> batch norm (-> activation) sequences: folding the batch norm into the convolution's
    weights and bias and applying the activation in its epilogue removes their reads and writes; the
    convolution gains a bias if it had none (c_out elements read, one add per output)."""
    n = len(ctx.records)
    seqs: list[tuple[int, ...]] = []
    for i, c in ctx.convs.items():
        if i + 1 < n and _is_batch_norm(ctx.records[i + 1]) and ctx.records[i + 1].inputs[0].shape == c.y.shape:
            with_act = i + 2 < n and _is_activation(ctx.records[i + 2], c.y.shape)
            seqs.append(tuple(range(i, i + (3 if with_act else 2))))
    if not seqs:
        return []
    bn_bytes = act_bytes = bias_bytes = 0.0
    before = after = 0.0
    for seq in seqs:
        c, bn = ctx.convs[seq[0]], ctx.records[seq[1]]
        act = ctx.records[seq[2]] if len(seq) == 3 else None
        bias = 0.0 if c.has_bias else c.c_out * _elem_bytes(c.w)
        bn_bytes += bn.cost.bytes
        act_bytes += act.cost.bytes if act else 0
        bias_bytes += bias
        before += ctx.time(seq)
        flops = c.record.cost.flops + (0 if c.has_bias else c.y.numel) + (act.cost.flops if act else 0)
        after += _time(ctx, flops, c.record.cost.bytes + bias)
    saved_bytes = bn_bytes + act_bytes - bias_bytes
    estimate = {**ctx.saved(saved_bytes, before, after), "operators_removed": sum(len(s) - 1 for s in seqs)}
    evidence = {"sequences": len(seqs), "with_activation": sum(len(s) == 3 for s in seqs),
                "batch_norm_bytes": bn_bytes, "activation_bytes": act_bytes, "bias_bytes_added": bias_bytes}
    modules = [ctx.records[i].module for s in seqs for i in s]
    return [ctx.finding(Rule.FUSION, list(dict.fromkeys(modules)), evidence, estimate,
                        f"{len(seqs)} conv -> batch norm (-> activation) sequences a deployment folds into their "
                        f"convs: {_bytes(bn_bytes)} of batch norm and {_bytes(act_bytes)} of activation traffic; "
                        "folding " + ctx.saving_text(estimate))]


def repvgg_branches(ctx: _Context) -> list[Finding]:
    """Multi-branch blocks (parallel convolutions of one input, each with an optional batch norm, and an
    optional identity branch, summed): linear, so one convolution with the largest kernel and a bias computes
    them at inference (RepVGG). FLOPs and bytes before and after (the activation after the sum is unchanged)."""
    claimed: set[int] = set()
    out = []
    for path in sorted(ctx.subtree, key=lambda p: -p.count(".") - bool(p)):
        idx = ctx.subtree[path]
        if len(idx) < 3 or claimed.intersection(idx):
            continue
        branches = _branches(ctx, idx)
        if branches is None:
            continue
        claimed.update(idx)
        parts, convs, identities = branches
        x, y, groups = convs[0].x, convs[0].y, convs[0].groups
        kernel = tuple(max(ks) for ks in zip(*(c.kernel for c in convs)))
        weight = (y.shape[1], x.shape[1] // groups, *kernel)
        flops = conv_cost(x.shape, weight, y.shape, has_bias=True, convention=ctx.counted.convention).flops
        nbytes = x.nbytes + (prod(weight) + y.shape[1]) * _elem_bytes(convs[0].w) + y.nbytes
        before_flops = sum(ctx.records[i].cost.flops for i in parts)
        before_bytes = sum(ctx.records[i].cost.bytes for i in parts)
        estimate = {**ctx.saved(before_bytes - nbytes, ctx.time(parts), _time(ctx, flops, nbytes)),
                    "flops_saved": before_flops - flops, "operators_after": 1}
        evidence = {"branches": len(convs) + identities, "convs": len(convs), "identity": identities,
                    "kernel": max(kernel), "operators": len(parts), "flops_before": before_flops,
                    "bytes_before": before_bytes, "flops_after": flops, "bytes_after": nbytes}
        size = "x".join(map(str, kernel))
        out.append(ctx.finding(Rule.REPVGG, [path], evidence, estimate,
                               f"{_name(path)}: {len(convs) + identities} parallel branches summed ({len(parts)} "
                               f"operators, {_si(before_flops, 'FLOP')}, {_bytes(before_bytes)}) re-parameterise into "
                               f"one {size} conv ({_si(flops, 'FLOP')}, {_bytes(nbytes)}): "
                               + ctx.saving_text(estimate)))
    return out


def batch_to_ridge(ctx: _Context) -> list[Finding]:
    """The batch at which a memory-bound model's intensity reaches the ridge point R. At m times the batch,
    FLOPs are m·F and bytes W + m·A (parameter and buffer traffic W does not grow): ``m = R·W / (F - R·A)``,
    unreachable when F <= R·A. The per-sample roofline time there (at an unbounded batch when unreachable)."""
    dev = ctx.device
    if dev is None:
        return []
    records = ctx.records
    flops = [r.cost.flops for r in records]
    weights = [r.weight_bytes_read for r in records]
    acts = [r.cost.bytes - w for r, w in zip(records, weights)]
    f, w, a = sum(flops), sum(weights), sum(acts)
    r_ = dev.ridge
    if not f or f >= r_ * (w + a):
        return []
    batch = _batch(ctx.counted.inputs)
    now = sum(dev.roofline_seconds) / batch
    reachable = f > r_ * a
    evidence = {"batch": batch, "intensity": f / (w + a), "ridge": r_, "flops": f, "weight_bytes": w,
                "activation_bytes": a}
    if reachable:
        needed = math.ceil(batch * r_ * w / (f - r_ * a))
        m = needed / batch
        then = sum(dev.time(m * fi, wi + m * ai) for fi, wi, ai in zip(flops, weights, acts)) / needed
        estimate: dict[str, float] = {"batch_needed": needed}
        text = f"reaches the ridge {r_:.3g} FLOP/B at batch {needed}: {_seconds(then)} per sample"
    else:
        then = sum(dev.time(fi, ai) for fi, ai in zip(flops, acts)) / batch
        evidence["activation_intensity"] = f / a
        estimate = {}
        text = (f"stays memory-bound at any batch (activation intensity {f / a:.3g} < ridge {r_:.3g}); weights "
                f"read once for a large batch: {_seconds(then)} per sample")
    estimate |= {"seconds_per_sample": now, "seconds_per_sample_at_batch": then, "bytes_saved": 0.0,
                 "seconds_saved": (now - then) * batch}
    return [ctx.finding(Rule.BATCH, [""], evidence, estimate,
                        f"at batch {batch} the model runs at {f / (w + a):.3g} FLOP/B on {dev.spec.id} "
                        f"({_seconds(now)} per sample); it {text}")]


_CANDIDATES = (Precision.FP16, Precision.BF16, Precision.INT8, Precision.FP8)


def precision_change(ctx: _Context) -> list[Finding]:
    """Narrower precisions than the report's: floating-point tensors at the new width (integer ones keep
    theirs), the bytes that saves, and the roofline time at the precision's own peak. Only precisions the
    device has a peak for; one per width and peak (bf16 is left out where it equals fp16). Accuracy is not
    estimated: int8 and fp8 need quantization."""
    dev = ctx.device
    current = max((t.storage_bits for r in ctx.records for t in (*r.inputs, *r.outputs) if _is_float(t)), default=0)
    seen: set[tuple[int, float]] = set()
    out = []
    for p in _CANDIDATES:
        peak = dev.spec.peak_flops_per_s.get(p) if dev else 0.0
        if p.bits >= current or peak is None or (p.bits, peak) in seen:
            continue
        seen.add((p.bits, peak))
        new = [_bytes_at(r, p.bits) for r in ctx.records]
        now_total, new_total = ctx.total_bytes, sum(new)
        before = sum(dev.roofline_seconds) if dev else 0.0
        after = sum(dev.time(r.cost.flops, b, peak) for r, b in zip(ctx.records, new)) if dev else 0.0
        estimate = {**ctx.saved(now_total - new_total, before, after), "bytes": new_total,
                    **({"seconds": after} if dev else {})}
        evidence = {"bits": current, "target_bits": p.bits, "bytes": now_total,
                    **({"seconds": before, "peak_flops_per_s": peak} if dev else {})}
        note = "; needs quantization, accuracy not estimated" if p in (Precision.INT8, Precision.FP8) else ""
        out.append(ctx.finding(Rule.PRECISION, [""], evidence, estimate,
                               f"at {p.value} the model moves {_bytes(new_total)} instead of {_bytes(now_total)}"
                               + (f" and takes {_seconds(after)} instead of {_seconds(before)} on {dev.spec.id}"
                                  if dev else "") + note))
    return out


def memory_fit(ctx: _Context) -> list[Finding]:
    """Weights (parameters and buffers, + the activation peak when given) larger than the device's memory."""
    dev = ctx.device
    if dev is None or dev.spec.memory_bytes is None:
        return []
    root = ctx.counted.modules.get("")
    buffers = root.params.buffer_bytes if root else 0
    activation = ctx.options.activation_bytes or 0
    need = ctx.counted.weight_bytes + buffers + activation
    memory = dev.spec.memory_bytes
    if need <= memory:
        return []
    int8 = (root.params.total if root else 0) + buffers
    evidence = {"weight_bytes": ctx.counted.weight_bytes, "buffer_bytes": buffers, "activation_bytes": activation,
                "memory_bytes": memory}
    estimate = {"bytes_over": need - memory, "bytes_saved": need - memory, "weight_bytes_at_int8": int8}
    peak = "" if ctx.options.activation_bytes is not None else " (activation peak not given)"
    return [ctx.finding(Rule.MEMORY, [""], evidence, estimate,
                        f"weights{' and activations' if activation else ''} take {_bytes(need)}{peak}, "
                        f"{need / memory:.2f}x the {_bytes(memory)} of {dev.spec.id}; at int8 the weights "
                        f"take {_bytes(int8)}", share=need / memory)]


RULES: Mapping[Rule, Callable[[_Context], list[Finding]]] = MappingProxyType({
    Rule.G1: g1_channel_widths, Rule.G2: g2_group_convolutions, Rule.G3: g3_fragmentation,
    Rule.G4: g4_elementwise, Rule.ALIGNMENT: channel_alignment, Rule.DEPTHWISE: depthwise_memory_bound,
    Rule.FUSION: conv_bn_fusion, Rule.REPVGG: repvgg_branches, Rule.BATCH: batch_to_ridge,
    Rule.PRECISION: precision_change, Rule.MEMORY: memory_fit,
})


def advise(
    counted: Counted,
    *,
    hardware: HardwareSpec | str | None = None,
    rules: Sequence[Rule | str] | None = None,
    min_share: float = 0.0,
    min_excess: float = Options.min_excess,
    op_overhead_seconds: float = Options.op_overhead_seconds,
    overhead_share: float = Options.overhead_share,
    elementwise_share: float = Options.elementwise_share,
    activation_bytes: int | None = None,
) -> list[Finding]:
    """Every finding of ``rules`` (all by default) on ``counted`` (a Report), most saving first.

    ``hardware``: the device (default: the report's); without one, the rules that need time are skipped and
    findings rank by bytes. ``min_share``: leave out findings whose share is below it. The thresholds and
    assumptions are those of :class:`Options` (docs/advice.md gives each).
    """
    if isinstance(min_share, bool) or not isinstance(min_share, (int, float)) or not 0 <= min_share <= 1:
        raise InputError(f"min_share={min_share!r} must be a fraction of the model's time (or bytes), 0 to 1")
    options = Options(min_excess, op_overhead_seconds, overhead_share, elementwise_share, activation_bytes)
    ctx = _context(counted, hardware, options)
    chosen = [_rule(r) for r in rules] if rules is not None else list(Rule)
    order = list(Rule)
    found = [f for rule in chosen for f in RULES[rule](ctx) if f.share >= min_share]
    return sorted(found, key=lambda f: (-f.share, order.index(f.rule), f.modules))


# ---- helpers ----------------------------------------------------------------------------------------

def _rule(value: Rule | str) -> Rule:
    try:
        return Rule(value)
    except ValueError:
        raise InputError(f"unknown rule {value!r}; choose from {', '.join(r.value for r in Rule)}") from None


def _time(ctx: _Context, flops: float, nbytes: float) -> float:
    return ctx.device.time(flops, nbytes) if ctx.device else 0.0


def _gemm_operands(ctx: _Context, i: int) -> tuple[TensorMeta, TensorMeta, int, int, list[TensorMeta]] | None:
    """(input, weight, in channels K, out channels N, the tensors sized by N) of a dense convolution or of a
    matrix product with a parameter operand (a linear layer); None for other records."""
    c = ctx.convs.get(i)
    if c is not None:
        return (c.x, c.w, c.c_in, c.c_out, [c.y, *c.record.inputs[2:]]) if c.groups == 1 else None
    r = ctx.records[i]
    if r.family != "matmul" or r.phase != "forward" or not r.outputs or not r.cost.macs:
        return None
    acts = [t for t in r.inputs if t.kind is TensorKind.ACTIVATION and len(t.shape) >= 2]
    params = [t for t in r.inputs if t.kind is TensorKind.PARAMETER and len(t.shape) == 2]
    if len(acts) != 1 or len(params) != 1:
        return None
    x, w, y = acts[0], params[0], r.outputs[0]
    bias = [t for t in r.inputs if t.kind is TensorKind.PARAMETER and len(t.shape) == 1]
    return x, w, x.shape[-1], y.shape[-1], [y, *bias]


def _expansion(ctx: _Context, i: int, dw: _Conv) -> int | None:
    """The 1x1 expansion convolution feeding depthwise convolution ``i`` through one-input element-wise
    operators (its batch norm and activation), if there is one."""
    if not dw.depthwise:
        return None
    j = i - 1
    while j >= 0:
        c = ctx.convs.get(j)
        if c is not None:
            return j if c.pointwise and c.y.shape == dw.x.shape else None
        r = ctx.records[j]
        if r.family not in ELEMENTWISE_FAMILIES or len(_activation_inputs(r)) != 1:
            return None
        j -= 1
    return None


def _branches(ctx: _Context, idx: Sequence[int]) -> tuple[list[int], list[_Conv], int] | None:
    """(the records of the branches and their sum, the branch convolutions, identity branches) when the
    records ``idx`` are parallel convolutions of one input (each optionally batch-normed), optional identity
    branches, their sum, and optionally an activation after it; None otherwise."""
    records = ctx.records
    parts = list(idx)
    while parts and records[parts[-1]].family in ("pointwise", "transcendental") and len(records[parts[-1]].inputs) == 1:
        parts.pop()
    convs = [ctx.convs[i] for i in parts if i in ctx.convs]
    if not convs:
        return None
    x, y = convs[0].x.shape, convs[0].y.shape
    if any(c.x.shape != x or c.y.shape != y or c.groups != convs[0].groups or any(k % 2 == 0 for k in c.kernel)
           for c in convs):
        return None
    identities = sums = 0
    for n, i in enumerate(parts):
        r = records[i]
        if i in ctx.convs:
            continue
        if _is_sum(r, y):
            sums += 1
        elif _is_batch_norm(r) and r.inputs[0].shape == y and n > 0 and parts[n - 1] in ctx.convs:
            continue  # a branch's batch norm
        elif _is_batch_norm(r) and r.inputs[0].shape == x == y:
            identities += 1
        else:
            return None
    branches = len(convs) + identities
    plain_identity = sums - (branches - 1)  # an identity branch without a batch norm adds one more sum
    if branches + plain_identity < 2 or plain_identity not in (0, 1) or (plain_identity and x != y):
        return None
    return parts, convs, identities + plain_identity


def _batch(inputs: Sequence[TensorMeta]) -> int:
    return inputs[0].shape[0] if inputs and inputs[0].shape and inputs[0].shape[0] > 0 else 1


def _is_float(t: TensorMeta) -> bool:
    return t.dtype.startswith(("float", "bfloat", "half", "double"))


def _bytes_at(r: OpRecord, bits: int) -> float:
    """The record's bytes with its floating-point tensors at ``bits`` (none made wider; scaled by its tensors' bits)."""
    tensors = (*r.inputs, *r.outputs)
    old = sum(t.numel * t.storage_bits for t in tensors)
    new = sum(t.numel * (min(bits, t.storage_bits) if _is_float(t) else t.storage_bits) for t in tensors)
    return r.cost.bytes * new / old if old else float(r.cost.bytes)


def _ceil_to(n: int, m: int) -> int:
    return -(-n // m) * m


def _name(path: str) -> str:
    return path or "the model"


def _si(value: float, unit: str) -> str:
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}"


def _bytes(n: float) -> str:
    return _si(n, "B")


def _seconds(s: float) -> str:
    for factor, unit in ((1.0, "s"), (1e-3, "ms"), (1e-6, "us")):
        if abs(s) >= factor:
            return f"{s / factor:.3g} {unit}"
    return f"{s / 1e-9:.3g} ns"
