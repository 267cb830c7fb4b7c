"""Learned latency: per-operator regressors trained on operators timed inside real forward passes.

The analytic calibration (:mod:`rooflens.analysis.calibrated`) predicts an operator from micro-benchmarks
of the operator alone; inside a model the same operator runs slower (its inputs come from the previous
operator, its weights are not hot in cache, the allocator and the framework work between operators), and
that error has the same sign for every model. This module predicts from **samples timed in context**:
every operator of many forward passes (real models, and networks generated from blocks of the shapes real
networks use), profiled on the device, each sample the operator's record (kind, shapes, FLOPs, bytes) and
its measured seconds. See :mod:`rooflens.calibration` for how the samples are taken.

Per operator::

    seconds = max(roofline, reference x exp(f_group(features)))
    reference = max(FLOPs / peak, bytes / bandwidth) + op_overhead          (convolutions, matrix products)
    reference = max(line_kind(FLOPs, bytes), roof reference above)           (elementwise kinds with a line)
    line_kind = seconds + seconds_per_flop x FLOPs + seconds_per_byte x bytes

``peak``, ``bandwidth`` and ``op_overhead`` are the device's measured figures (``rooflens hw bench``), the
peak and bandwidth raised to the fastest rates any timed operator reached (:class:`Roof`: a measured GEMM
peak can sit below what the convolution library reaches, and tensors in cache beat the DRAM bandwidth), so
that no sample runs faster than its roofline time. The elementwise kinds (normalisation, activations,
pooling, means, copies) run far from both: each has its own rates, so its reference is a **line** fitted
to its samples (:func:`fit_line`: least squared relative error, no term below zero). A line carries a
kind's cost per FLOP beyond the sampled shapes: a max pool took 1.5-6 ns a window element on one core of
the validation machine, and GoogLeNet's stride-1 pools (1.75 times the comparisons per byte of any sampled
pool), held out, were predicted at 0.61-0.78 of their time on the roof's reference and at 0.82-0.92 on
their line (docs/prediction.md).

``f_group`` is a gradient-boosted tree ensemble (scikit-learn's ``GradientBoostingRegressor``, squared
loss on the log ratio) of the operator's group: ``conv`` (dense convolutions), ``dwconv`` (depthwise and
grouped), ``gemm`` (matrix products, attention) and ``elementwise`` (everything else). Each sample weighs
its measured seconds over the square root of its network's seconds in the group's samples
(:func:`sample_weights`). A network's time is the sum of its operators', so within a network a relative
error on a 1 ms convolution matters a hundred times more than the same error on a 10 us activation; across
networks a small network's relative error counts as much as a large one's, yet by seconds alone VGG-11 at
batch 8 (1.07 s on one core) outweighed MobileNetV3-Small at batch 1 (5.8 ms) about 185 times in the pooled
fit, and the trees over-predicted the small depthwise networks of families they never saw (by the square
root: about 14 times; docs/prediction.md). Learning the log
ratio to a reference instead of the time itself keeps the prediction sensible outside the sampled sizes:
a tree ensemble's output is constant beyond its last split, so there the prediction follows the
reference at the last learned ratio.

The features (:func:`features`) are the operator's kind (:func:`rooflens.analysis.calibrated.op_kind`),
log2 of its FLOPs, bytes, input, output and weight bytes, its arithmetic intensity, and its shapes:
channels in and out, output pixels per image, kernel size, stride, groups and batch for convolutions;
M, N and K for matrix products; the channel alignment (the power of two, up to 64, that divides the
channels per group, or N and K), for the vectorised kernels' fast paths; and the kind of the operator
that ran before it in the network (:func:`in_sequence`): a batch norm reading what a large 1x1
convolution just wrote ran at 0.11-0.14 ns a byte, after a depthwise convolution at 0.04 (MobileNetV2,
one thread): the convolution's output is no longer in cache.

No model-level terms: a network's learned time is the sum of its operators'. The profiled samples carry
the profiler's own cost per event, and a plain forward pass carries the framework's work between
operators (module calls, Python); where this was validated, real models' plain passes ran 1.5-4 % above
their profiled sum (median), single models from 0.86 to 1.54 times it (page faults, docs/prediction.md).
Terms for them (seconds per operator record and per ``nn.Module`` call, fitted by least squares on the
sampled networks' plain latencies) made held-out real models no better: leave-one-family-out on four collections, the share
within ±10 % was 40 % with them and 44 % without, RMSPE 17.2 % against 16.5 % (docs/prediction.md).

The trained ensembles are stored as plain arrays (:meth:`Predictor.as_dict`) and evaluated here without
scikit-learn, which is needed only to train (:func:`fit`).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import astuple, dataclass, field, replace
from types import MappingProxyType
from typing import Any

from rooflens.analysis.calibrated import (
    CONV_KINDS,
    Calibration,
    OpPrediction,
    Prediction,
    calibrate,
    can_calibrate,
    conv_operands,
    op_kind,
    predict,
    prediction_of,
)
from rooflens.analysis.counted import Counted
from rooflens.errors import HardwareError, InputError
from rooflens.hardware.spec import HardwareSpec, Precision
from rooflens.types import OpRecord, TensorKind

FEATURE_VERSION = 5  # 2: the roof; 3: channel alignment; 4: no model-level terms; 5: previous kind, lines
KINDS = ("gemm", *CONV_KINDS, "maxpool", "batchnorm", "layernorm", "mean", "cat", "gelu", "sigmoid", "relu_", "add")
GROUPS = ("conv", "dwconv", "gemm", "elementwise")
FEATURES = (
    "kind", "log_flops", "log_bytes", "log_in_bytes", "log_out_bytes", "log_weight_bytes", "log_intensity",
    "log_c_in", "log_c_out", "log_pixels", "kernel", "stride", "log_groups", "log_batch", "log_m", "log_n", "log_k",
    "in_place", "log_align", "prev_kind",
)
MIN_SAMPLES = 30  # a group with fewer training samples falls back to the pooled ensemble of all groups


class CalibrationMethod(str, enum.Enum):
    """Which calibrated estimate a report on a measured device gives (``analyze(..., calibration=...)``)."""

    AUTO = "auto"  # learned when the device carries a predictor (`rooflens hw calibrate`), else analytic
    LEARNED = "learned"  # the learned predictor (an error for a device without one)
    ANALYTIC = "analytic"  # the micro-benchmark curves alone (rooflens.analysis.calibrated)

    @classmethod
    def parse(cls, value: CalibrationMethod | str) -> CalibrationMethod:
        try:
            return cls(value)
        except ValueError:
            raise InputError(f"calibration must be one of {', '.join(m.value for m in cls)}, got {value!r}") from None


def estimate(report: Counted, method: CalibrationMethod | str = CalibrationMethod.AUTO) -> Prediction | None:
    """The calibrated estimate of ``report`` on its hardware by ``method``; None when the device was not
    measured (a datasheet device) or, for ``"auto"``, cannot be calibrated."""
    spec, method = report.hardware, CalibrationMethod.parse(method)
    if spec is None or not can_calibrate(spec):
        if method is CalibrationMethod.LEARNED and spec is not None:
            calibrate(spec)  # raises, naming the device and what to run
        return None
    cal = calibrate(spec)
    if method is CalibrationMethod.ANALYTIC or (method is CalibrationMethod.AUTO and not has_predictor(spec)):
        return predict(report, cal)
    return predict_learned(report.records, report.modules, cal, predictor_of(spec), report.precision)


def has_predictor(spec: HardwareSpec) -> bool:
    """Whether ``spec`` carries a learned latency predictor (``rooflens hw calibrate``)."""
    return isinstance(spec.extra.get("predictor"), Mapping)


def predictor_of(spec: HardwareSpec) -> Predictor:
    """The learned predictor ``spec`` carries (parsed once per stored predictor)."""
    data = spec.extra.get("predictor")
    if not isinstance(data, Mapping):
        raise HardwareError(
            f"{spec.name} ({spec.id}) carries no learned latency predictor; train one on the machine with "
            "`rooflens hw calibrate --save FILE` and load it with --hw FILE, or use calibration='analytic'"
        )
    hit = _PARSED.get(id(data))
    if hit is None or hit[0] is not data:  # the stored table is kept alive with it: its id is not reused
        if len(_PARSED) >= 8:
            _PARSED.pop(next(iter(_PARSED)))
        hit = (data, Predictor.from_dict(data))
        _PARSED[id(data)] = hit
    return hit[1]


_PARSED: dict[int, tuple[Mapping[str, Any], Predictor]] = {}  # id of a device's stored table -> its predictor


def group_of(kind: str) -> str:
    """The predictor group of an operator kind (see the module docstring)."""
    if kind in ("conv3x3", "conv1x1"):
        return "conv"
    if kind in ("dwconv3x3", "gconv3x3"):
        return "dwconv"
    return "gemm" if kind == "gemm" else "elementwise"


def _log2(x: float) -> float:
    return math.log2(x + 1.0)


def _alignment(*sizes: float) -> float:
    """log2 of the largest power of two (up to 64) that divides every size: vectorised kernels have fast paths
    for channel counts that fill whole vector registers and blocks (held out, ResNet's 64-channel 3x3
    convolutions ran faster than a predictor trained on other channel counts expected; docs/prediction.md)."""
    out = 6
    for n in sizes:
        out = min(out, (int(n) & -int(n)).bit_length() - 1 if n >= 1 else 0)
    return float(out)


def features(record: OpRecord, previous: OpRecord | None = None) -> tuple[str, list[float]]:
    """(kind, feature vector in the order of ``FEATURES``) of an operator record; ``previous``: the record
    that ran before it in the network (None: the first)."""
    kind = op_kind(record)
    flops, nbytes = float(record.cost.flops), float(record.cost.bytes)
    first = record.inputs[0] if record.inputs else None
    in_bytes = float(first.nbytes) if first is not None and first.kind is TensorKind.ACTIVATION else 0.0
    out_bytes = float(sum(t.nbytes for t in record.outputs))
    c_in = c_out = pixels = kernel = stride = groups = batch = m = n = k = 0.0
    align = 0.0
    operands = conv_operands(record) if kind in CONV_KINDS else None
    if operands is not None and len(operands[0].shape) >= 3 and len(operands[1].shape) >= 3:
        x, w, y = operands[0].shape, operands[1].shape, operands[2].shape
        batch, c_in, c_out = float(x[0]), float(x[1]), float(w[0])
        pixels = float(math.prod(y[2:]))
        kernel = float(math.prod(w[2:]))
        stride = float(max(1, round((math.prod(x[2:]) / max(1, math.prod(y[2:]))) ** 0.5))) if y[2:] else 1.0
        groups = float(max(1, x[1] // max(1, w[1])))
        align = _alignment(w[1], w[0] / groups)  # channels per group, in and out
    elif kind == "gemm" and record.inputs and record.outputs and record.outputs[0].shape:
        out = record.outputs[0]
        n = float(out.shape[-1])
        m = float(out.numel) / n if n else 0.0
        k = float(record.cost.macs) / (m * n) if m and n else 0.0
        batch = float(out.shape[0]) if len(out.shape) > 1 else 1.0
        align = _alignment(n, k)
    elif record.outputs and record.outputs[0].shape:
        shape = record.outputs[0].shape
        batch = float(shape[0])
        c_out = float(shape[1]) if len(shape) > 1 else 0.0
        pixels = float(math.prod(shape[2:])) if len(shape) > 2 else 0.0
    intensity = flops / nbytes if nbytes else 0.0
    vector = [
        float(KINDS.index(kind)), _log2(flops), _log2(nbytes), _log2(in_bytes), _log2(out_bytes),
        _log2(float(record.weight_bytes_read)), _log2(intensity), _log2(c_in), _log2(c_out), _log2(pixels), kernel,
        stride, _log2(groups), _log2(batch), _log2(m), _log2(n), _log2(k), 1.0 if record.op.endswith("_") else 0.0,
        align, float(KINDS.index(op_kind(previous))) if previous is not None else -1.0,
    ]
    return kind, vector


def in_sequence(records: Sequence[OpRecord]) -> Iterator[tuple[OpRecord, OpRecord | None]]:
    """(record, the record before it) of a network's records in order: what :func:`features` takes."""
    return zip(records, [None, *records[:-1]], strict=True)


# ---- tree ensembles ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Tree:
    """One regression tree as arrays: node i splits on ``feature[i] <= threshold[i]`` (left) or is a
    leaf (``left[i] == -1``) of ``value[i]``."""

    feature: tuple[int, ...]
    threshold: tuple[float, ...]
    left: tuple[int, ...]
    right: tuple[int, ...]
    value: tuple[float, ...]

    def __call__(self, x: Sequence[float]) -> float:
        i = 0
        while self.left[i] != -1:
            i = self.left[i] if x[self.feature[i]] <= self.threshold[i] else self.right[i]
        return self.value[i]


@dataclass(frozen=True)
class Ensemble:
    """A gradient-boosted ensemble: ``init + rate x sum(tree(x))``."""

    init: float
    rate: float
    trees: tuple[Tree, ...]
    samples: int  # training samples it was fitted on

    def __call__(self, x: Sequence[float]) -> float:
        return self.init + self.rate * sum(t(x) for t in self.trees)

    def as_dict(self) -> dict[str, Any]:
        return {"init": self.init, "rate": self.rate, "samples": self.samples,
                "trees": [[list(t.feature), list(t.threshold), list(t.left), list(t.right), list(t.value)]
                          for t in self.trees]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Ensemble:
        try:
            trees = tuple(Tree(tuple(int(v) for v in f), tuple(float(v) for v in th), tuple(int(v) for v in lf),
                               tuple(int(v) for v in rt), tuple(float(v) for v in va))
                          for f, th, lf, rt, va in data["trees"])
            return cls(float(data["init"]), float(data["rate"]), trees, int(data.get("samples", 0)))
        except (KeyError, TypeError, ValueError) as e:
            raise HardwareError(f"a stored latency predictor is malformed ({type(e).__name__}: {e})") from e


@dataclass(frozen=True)
class Roof:
    """The roofline a predictor learns its correction to: fp32 peak, bandwidth, fixed seconds per operator.

    :func:`fit` raises the device's measured peak and bandwidth to the fastest rate a timed operator
    reached (a measured GEMM peak can sit below what a convolution library reaches; tensors that stay in
    cache move faster than the DRAM bandwidth), so that no sample runs faster than its roofline time.
    """

    peak_flops_per_s: float
    bandwidth_bytes_per_s: float
    overhead_seconds: float

    @classmethod
    def of(cls, calibration: Calibration) -> Roof:
        """The roof of a measured device: its fp32 peak (or best), bandwidth and per-operator overhead."""
        peaks = calibration.peak_flops_per_s
        return cls(peaks.get(Precision.FP32) or max(peaks.values()), calibration.bandwidth_bytes_per_s,
                   calibration.op_overhead_seconds)

    def roofline(self, flops: float, nbytes: float) -> float:
        return max(flops / self.peak_flops_per_s, nbytes / self.bandwidth_bytes_per_s)

    def reference(self, flops: float, nbytes: float) -> float:
        return self.roofline(flops, nbytes) + self.overhead_seconds


@dataclass(frozen=True)
class Line:
    """An operator kind's learned reference: ``seconds + seconds_per_flop x FLOPs + seconds_per_byte x bytes``
    (:func:`fit_line`), for the kinds that run far from the device's peak and bandwidth (see the module docstring)."""

    seconds: float
    seconds_per_flop: float
    seconds_per_byte: float

    def __call__(self, flops: float, nbytes: float) -> float:
        return self.seconds + self.seconds_per_flop * flops + self.seconds_per_byte * nbytes


@dataclass(frozen=True)
class Predictor:
    """Trained ensembles per group (``"all"``: pooled, for groups with few samples), the roof and the lines
    per kind (:class:`Line`) they correct, and where the samples came from (machine, torch, threads, date,
    models ...)."""

    ensembles: Mapping[str, Ensemble]
    roof: Roof
    provenance: Mapping[str, Any] = field(default_factory=dict)
    lines: Mapping[str, Line] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("ensembles", "provenance", "lines"):
            object.__setattr__(self, name, MappingProxyType(dict(getattr(self, name))))

    def reference(self, kind: str, flops: float, nbytes: float, *, roof: Roof | None = None) -> float:
        """What the ensembles correct: the roof's reference (on the predictor's roof, or ``roof``), or where the
        kind has a line, the line when it is above that."""
        base = (roof or self.roof).reference(flops, nbytes)
        line = self.lines.get(kind)
        return max(line(flops, nbytes), base) if line else base

    def log_ratio(self, kind: str, x: Sequence[float]) -> float:
        ensemble = self.ensembles.get(group_of(kind)) or self.ensembles["all"]
        return ensemble(x)

    def describe(self) -> str:
        """One line: what the predictor was trained on, where and when."""
        made = self.provenance
        groups = ", ".join(f"{g} ({e.samples})" for g, e in self.ensembles.items() if g != "all")
        return (f"{made.get('samples', '?')} operators timed in {made.get('networks', '?')} networks on "
                f"{made.get('machine', '?')} ({made.get('threads', '?')} threads, torch {made.get('torch', '?')}, "
                f"{made.get('date', '?')}, {made.get('mode', '?')} mode); trees per group: {groups or 'pooled only'}"
                + (f"; lines for {', '.join(self.lines)}" if self.lines else ""))

    def as_dict(self) -> dict[str, Any]:
        return {
            "feature_version": FEATURE_VERSION,
            "features": list(FEATURES),
            "roof": {"peak_flops_per_s": self.roof.peak_flops_per_s,
                     "bandwidth_bytes_per_s": self.roof.bandwidth_bytes_per_s,
                     "overhead_seconds": self.roof.overhead_seconds},
            "provenance": dict(self.provenance),
            "lines": {k: [v.seconds, v.seconds_per_flop, v.seconds_per_byte] for k, v in self.lines.items()},
            "ensembles": {g: e.as_dict() for g, e in self.ensembles.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Predictor:
        if data.get("feature_version") != FEATURE_VERSION:
            raise HardwareError(
                f"the stored latency predictor has feature version {data.get('feature_version')!r}, this rooflens "
                f"reads version {FEATURE_VERSION}: measure the device again with `rooflens hw calibrate --save FILE`"
            )
        ensembles = {str(g): Ensemble.from_dict(e) for g, e in dict(data.get("ensembles", {})).items()}
        if "all" not in ensembles:
            raise HardwareError("a stored latency predictor has no pooled ('all') ensemble")
        try:
            roof = Roof(**{k: float(v) for k, v in dict(data["roof"]).items()})
            lines = {str(k): Line(*(float(c) for c in v)) for k, v in dict(data.get("lines", {})).items()}
            if any(not (math.isfinite(c) and c >= 0) for line in lines.values() for c in astuple(line)):
                raise ValueError("a line's terms must be finite and not negative")
        except (KeyError, TypeError, ValueError) as e:
            raise HardwareError(f"a stored latency predictor has no usable roof or lines ({type(e).__name__}: {e})") from e
        return cls(ensembles, roof, dict(data.get("provenance", {})), lines)


# ---- samples and training ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Sample:
    """One operator timed in context: its kind, features, FLOPs and bytes, and the measured seconds (0: an
    operator record of the network that the profile did not time)."""

    kind: str
    x: tuple[float, ...]
    flops: float
    bytes: float
    seconds: float
    source: str = ""  # the network it ran in
    family: str = ""  # the family of that network ("" for generated networks that imitate none)

    @classmethod
    def of(cls, record: OpRecord, seconds: float, source: str = "", family: str = "",
           previous: OpRecord | None = None) -> Sample:
        """The sample of one operator record timed at ``seconds`` (``previous``: the record before it)."""
        kind, x = features(record, previous)
        return cls(kind, tuple(x), float(record.cost.flops), float(record.cost.bytes), seconds, source, family)

    def as_row(self) -> list[Any]:
        return [self.kind, list(self.x), self.flops, self.bytes, self.seconds, self.source, self.family]


@dataclass(frozen=True)
class Network:
    """One sampled network's whole-pass figures: its plain measured seconds, the sum of its operators'
    profiled seconds, its operator records and module calls (stored with the samples, so that how a network's
    time composes from its operators' can be checked on the data)."""

    source: str
    family: str
    seconds: float
    profiled_seconds: float
    records: int
    module_calls: int
    page_faults_per_call: float | None = None  # of the plain pass (None: not counted); not in the row
    subnormal: int | None = None  # subnormal floats its plain pass wrote (None: not counted); not in the row

    def as_row(self) -> list[Any]:
        return [self.source, self.family, self.seconds, self.profiled_seconds, self.records, self.module_calls]


NETWORK_EXPONENT = 0.5  # samples weigh seconds / (their network's seconds) ** this (sample_weights)
RELIABLE_SECONDS = 50e-6  # samples at least this long set the roof (the profiler's own cost is a few us)


def fitted_roof(roof: Roof, samples: Sequence[Sample]) -> Roof:
    """``roof`` raised to the fastest FLOP/s and bytes/s of the samples timed at ``RELIABLE_SECONDS`` or more."""
    timed = [s for s in samples if s.seconds >= RELIABLE_SECONDS]
    peak = max([roof.peak_flops_per_s, *(s.flops / s.seconds for s in timed)])
    bandwidth = max([roof.bandwidth_bytes_per_s, *(s.bytes / s.seconds for s in timed)])
    return Roof(peak, bandwidth, roof.overhead_seconds)


def fit(samples: Sequence[Sample], *, roof: Roof, provenance: Mapping[str, Any] | None = None, trees: int = 300,
        depth: int = 4, rate: float = 0.05, seed: int = 0, network_exponent: float = NETWORK_EXPONENT) -> Predictor:
    """Train the per-group ensembles on ``samples``; ``roof``: the device's measured one (:meth:`Roof.of`),
    raised to what the samples reached (:func:`fitted_roof`); ``network_exponent``: how the samples weigh
    (:func:`sample_weights`). Needs scikit-learn: ``pip install 'rooflens[predict]'``."""
    try:
        from sklearn.ensemble import GradientBoostingRegressor
    except ImportError as e:
        raise HardwareError(
            "training a latency predictor needs scikit-learn: pip install 'rooflens[predict]' (or scikit-learn)"
        ) from e
    usable = [s for s in samples if s.seconds > 0]
    if len(usable) < MIN_SAMPLES:
        raise HardwareError(f"a latency predictor needs at least {MIN_SAMPLES} timed operators, got {len(usable)}")
    roof = fitted_roof(roof, usable)
    lines = {}
    for kind in KINDS:
        rows = [s for s in usable if s.kind == kind]
        if group_of(kind) == "elementwise" and len(rows) >= MIN_SAMPLES:
            lines[kind] = fit_line(rows)
    base = Predictor({}, roof, lines=lines)

    def train(rows: Sequence[Sample]) -> Ensemble:
        model = GradientBoostingRegressor(n_estimators=trees, max_depth=depth, learning_rate=rate, subsample=0.8,
                                          min_samples_leaf=3, random_state=seed)
        model.fit([list(s.x) for s in rows],
                  [math.log(s.seconds / base.reference(s.kind, s.flops, s.bytes)) for s in rows],
                  sample_weight=sample_weights(rows, network_exponent))
        return ensemble_of(model, len(rows))

    ensembles = {"all": train(usable)}
    for group in GROUPS:
        rows = [s for s in usable if group_of(s.kind) == group]
        if len(rows) >= MIN_SAMPLES:
            ensembles[group] = train(rows)
    return Predictor(ensembles, roof, {**(provenance or {}), "network_exponent": network_exponent}, lines)


def sample_weights(samples: Sequence[Sample], exponent: float = NETWORK_EXPONENT) -> list[float]:
    """Each sample's weight in a fit, scaled to a mean of 1: its seconds over the seconds of its network's
    samples (those of ``samples`` with its ``source``; samples without one count as one network) to the
    power ``exponent``. At 0 a sample weighs its seconds; at 1 every network weighs the same; at 0.5 a
    network weighs the square root of its seconds. Untimed samples (0 seconds) weigh 0."""
    totals: dict[str, float] = {}
    for s in samples:
        totals[s.source] = totals.get(s.source, 0.0) + s.seconds
    weights = [s.seconds / totals[s.source] ** exponent if s.seconds > 0 else 0.0 for s in samples]
    mean = math.fsum(weights) / len(weights) if weights else 0.0
    return [w / mean for w in weights] if mean > 0 else weights


def fit_line(samples: Sequence[Sample]) -> Line:
    """The :class:`Line` through timed samples with the least squared relative error, its three terms not
    negative (non-negative least squares; scipy comes with scikit-learn)."""
    from scipy.optimize import nnls

    rows = [(1.0 / s.seconds, s.flops / s.seconds, s.bytes / s.seconds) for s in samples if s.seconds > 0]
    scale = [math.sqrt(math.fsum(r[j] ** 2 for r in rows)) or 1.0 for j in range(3)]  # columns of one size
    solution, _ = nnls([[r[j] / scale[j] for j in range(3)] for r in rows], [1.0] * len(rows))
    return Line(*(float(c) / scale[j] for j, c in enumerate(solution)))


def ensemble_of(model: Any, samples: int = 0) -> Ensemble:
    """The :class:`Ensemble` of a fitted scikit-learn ``GradientBoostingRegressor`` (squared error)."""
    trees = []
    for (estimator,) in model.estimators_:
        t = estimator.tree_
        trees.append(Tree(tuple(int(v) for v in t.feature), tuple(float(v) for v in t.threshold),
                          tuple(int(v) for v in t.children_left), tuple(int(v) for v in t.children_right),
                          tuple(float(v) for v in t.value[:, 0, 0])))
    return Ensemble(float(model.init_.constant_[0][0]), float(model.learning_rate), tuple(trees), samples)


def predict_sample(predictor: Predictor, sample: Sample) -> float:
    """Predicted seconds of one sampled operator."""
    return op_seconds(predictor, sample.kind, sample.x, sample.flops, sample.bytes)


def op_seconds(predictor: Predictor, kind: str, x: Sequence[float], flops: float, nbytes: float,
               roof: Roof | None = None) -> float:
    """``max(roofline, reference x exp(f(x)))``: one operator's learned time (on the predictor's roof, or
    ``roof``)."""
    roof = roof or predictor.roof
    reference = predictor.reference(kind, flops, nbytes, roof=roof)
    return max(reference * math.exp(predictor.log_ratio(kind, x)), roof.roofline(flops, nbytes))


# ---- prediction -------------------------------------------------------------------------------------

def predict_learned(
    records: Sequence[OpRecord],
    module_paths: Iterable[str],
    calibration: Calibration,
    predictor: Predictor,
    precision: Precision | str = Precision.FP32,
) -> Prediction:
    """The learned latency of ``records`` (a :class:`Prediction` like the analytic one): per operator the
    ensemble's time, split into the fixed overhead (at most the device's ``op_overhead_seconds``) and the
    work, which is the compute or the memory part by the operator's roofline bound.

    The samples ran in fp32; at another precision the predictor's peak is scaled by the device's ratio of
    that precision's peak to fp32's."""
    used, note = calibration.hardware.resolve(precision)
    notes = [note] if note else []
    roof = predictor.roof
    fp32 = calibration.peak_flops_per_s.get(Precision.FP32)
    if used is not Precision.FP32 and fp32:
        roof = replace(roof, peak_flops_per_s=roof.peak_flops_per_s * calibration.peak_flops_per_s[used] / fp32)
    ops: list[OpPrediction] = []
    for r, previous in in_sequence(records):
        kind, x = features(r, previous)
        flops, nbytes = float(r.cost.flops), float(r.cost.bytes)
        t = op_seconds(predictor, kind, x, flops, nbytes, roof)
        compute, memory = flops / roof.peak_flops_per_s, nbytes / roof.bandwidth_bytes_per_s
        overhead = min(max(t - max(compute, memory), 0.0), roof.overhead_seconds)
        work = t - overhead
        if compute >= memory:
            e_c = compute / work if work > 0 else 1.0
            ops.append(OpPrediction(kind, work, memory, overhead, e_c, 1.0))
        else:
            e_m = memory / work if work > 0 else 1.0
            ops.append(OpPrediction(kind, compute, work, overhead, 1.0, e_m))
    return prediction_of(calibration, records, ops, module_paths, notes, "learned")
