"""The Report: an immutable result with fvcore-style queries; it renders itself (rich, text, JSON ...)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, overload

from rooflens.analysis.advice import Finding, Rule, advise
from rooflens.analysis.calibrated import Prediction
from rooflens.analysis.energy import EnergyEstimate, estimate_energy
from rooflens.analysis.predictor import CalibrationMethod, estimate
from rooflens.analysis.roofline import Roofline, Timing, roofline
from rooflens.errors import InputError
from rooflens.hardware.catalogue import get as get_hardware
from rooflens.hardware.spec import HardwareSpec, Precision
from rooflens.report.measured import Achieved, MeasurementLike, achieved
from rooflens.report.plot import plot_roofline
from rooflens.report.units import ByteUnit
from rooflens.types import ZERO, Convention, Cost, ModuleNode, OpRecord, ParamStats, TensorMeta

if TYPE_CHECKING:
    from rooflens.analysis.memory import MemoryReport
    from rooflens.report.html_report import SectionLike

SCHEMA_VERSION = 1

CONVENTION_TEXT = {
    Convention.FMA: "FLOPs = 2 x MACs + bias adds + other ops (fma)",
    Convention.EXACT: "FLOPs = n mults + (n-1) adds per n-term dot product, bias fills the -1 (exact)",
}


@dataclass(frozen=True)
class OperatorSummary:
    """All calls of one aten operator."""

    op: str
    calls: int
    cost: Cost
    supported: bool


@dataclass(frozen=True)
class Report:
    """What the model costs: per operator, per module and in total.

    Quantities are in base units (FLOPs, bytes). ``macs`` counts convolution and matrix-product
    multiply-accumulates only; ``flops`` counts everything under ``convention``.
    """

    model: str
    inputs: tuple[TensorMeta, ...]
    convention: Convention
    records: tuple[OpRecord, ...]
    modules: Mapping[str, ModuleNode]
    params: ParamStats
    uncalled_modules: tuple[str, ...] = ()
    diagnostics: tuple[str, ...] = ()
    executed: str = "fake"  # "fake": shapes only, nothing computed; "real": ran on real tensors
    device: str = "cpu"
    dtype: str | None = None  # the dtype the analysis was asked to run in, if any
    torch_version: str = ""
    precision: Precision = Precision.FP32  # compute precision: selects the device's peak
    weight_bits: int | None = None  # bits per element of floating-point parameters and buffers (None: dtype's)
    act_bits: int | None = None  # bits per element of the other floating-point tensors (None: dtype's)
    kv_bits: int | None = None  # bits per element of an input's key/value cache tensors (None: as activations)
    weight_group: int | None = None  # elements per 16-bit weight scale along a row (-1: per row; None: no scales)
    weight_scale_bytes: int = 0  # bytes of those scales, all parameters once
    hardware: HardwareSpec | None = None
    backward: bool = False  # the records include the backward pass (``phase == "backward"``)
    measurement: MeasurementLike | None = None  # timed real forward passes (analyze(..., measure=True))
    calibration: CalibrationMethod = CalibrationMethod.AUTO  # which calibrated estimate (see ``calibrated``)
    _cache: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "modules", MappingProxyType(dict(self.modules)))

    # ---- queries --------------------------------------------------------------------------------
    def total(self, phase: str | None = None) -> Cost:
        """The whole model: the sum over every operator record (or those of ``phase``: forward, backward)."""
        if phase not in (None, "forward", "backward"):
            raise InputError(f"phase must be 'forward', 'backward' or None, got {phase!r}")
        key = f"total:{phase}"
        if key not in self._cache:
            self._cache[key] = sum((r.cost for r in self.records if phase is None or r.phase == phase), ZERO)
        return self._cache[key]  # type: ignore[no-any-return]

    def by_module(self) -> Mapping[str, ModuleNode]:
        """Module path -> node with ``own`` and ``cumulative`` cost, params, calls, output shapes."""
        return self.modules

    def by_operator(self) -> dict[str, OperatorSummary]:
        """aten operator -> calls and summed cost, most FLOPs first."""
        acc: dict[str, list[Any]] = {}
        for r in self.records:
            slot = acc.setdefault(r.op, [0, ZERO, r.supported])
            slot[0] += 1
            slot[1] += r.cost
        out = [OperatorSummary(op, n, cost, ok) for op, (n, cost, ok) in acc.items()]
        out.sort(key=lambda s: (-s.cost.flops, -s.cost.bytes, s.op))
        return {s.op: s for s in out}

    def unsupported_ops(self) -> dict[str, int]:
        """Operators that had no formula and could not be decomposed -> number of calls.

        Their FLOPs are not counted (their bytes are); every renderer lists them.
        """
        counts: dict[str, int] = {}
        for r in self.records:
            if not r.supported:
                counts[r.op] = counts.get(r.op, 0) + 1
        return dict(sorted(counts.items()))

    @property
    def root(self) -> ModuleNode:
        return self.modules[""]

    @property
    def roofline(self) -> Roofline:
        """The roofline on ``hardware`` at ``precision``: per-operator and per-module times and bounds."""
        if self.hardware is None:
            raise InputError(
                "this report has no hardware: analyze(..., hardware='a4000') or report.with_hardware('a4000')"
            )
        if "roofline" not in self._cache:
            self._cache["roofline"] = roofline(self.records, self.modules, self.hardware, self.precision)
        return self._cache["roofline"]  # type: ignore[no-any-return]

    @property
    def calibrated(self) -> Prediction | None:
        """The calibrated latency estimate on ``hardware`` (per operator, per module, total), when the
        device was measured by ``rooflens hw bench`` / ``rooflens.measurement.benchmark()``; None for a
        datasheet device. Unlike the roofline time, an estimate of an eager run, not a bound.

        By ``calibration``: the learned predictor when the device carries one (``rooflens hw calibrate``,
        :mod:`rooflens.analysis.predictor`), else the analytic model of the micro-benchmarks
        (:mod:`rooflens.analysis.calibrated`); ``"analytic"`` or ``"learned"`` choose."""
        if self.hardware is None:
            return None
        if "calibrated" not in self._cache:
            self._cache["calibrated"] = estimate(self, self.calibration)
        return self._cache["calibrated"]  # type: ignore[no-any-return]

    @property
    def achieved(self) -> Achieved | None:
        """Counted FLOPs and bytes over the measured median: FLOP/s, bytes/s, utilisation of the device."""
        if self.measurement is None:
            return None
        return achieved(self.measurement, self)

    def advice(
        self,
        *,
        hardware: HardwareSpec | str | None = None,
        rules: Sequence[Rule | str] | None = None,
        min_share: float = 0.0,
        activation_bytes: int | None = None,
    ) -> list[Finding]:
        """Design advice with its evidence (:mod:`rooflens.analysis.advice`, docs/advice.md): ShuffleNetV2's
        G1-G4, channel alignment, memory-bound depthwise convolutions, fusion, RepVGG, batch, precision and
        memory fit, most saving first. ``hardware``: the device (default: the report's; without one, findings
        rank by bytes); ``rules``: a subset; ``min_share``: drop findings that save less of the model's time
        (or bytes); ``activation_bytes``: the activation peak (``rooflens.memory(...).peak_bytes``) for the
        memory-fit rule."""
        return advise(self, hardware=hardware, rules=rules, min_share=min_share, activation_bytes=activation_bytes)

    def energy(
        self, *, hardware: HardwareSpec | str | None = None, onchip: bool = False, samples: int | None = None
    ) -> EnergyEstimate:
        """Estimated joules per operator, module and in total at ``precision``, split compute / memory
        (:mod:`rooflens.analysis.energy`: Horowitz's 45 nm figures unless the device has its own).
        ``hardware``: another device's figures (default: the report's); ``onchip``: activations of operators
        that fit in the device's on-chip memory count as on-chip traffic; ``samples``: inferences per pass."""
        key = f"energy:{hardware!r}:{onchip}:{samples}"
        if key not in self._cache:
            spec = get_hardware(hardware) if hardware is not None else None
            self._cache[key] = estimate_energy(self, hardware=spec, onchip=onchip, samples=samples)
        return self._cache[key]  # type: ignore[no-any-return]

    def with_hardware(self, hardware: HardwareSpec | str) -> Report:
        """The same counts on another device (same precision and bit widths; nothing is re-analysed)."""
        return replace(self, hardware=get_hardware(hardware))

    @property
    def weight_bytes(self) -> int:
        """Bytes of the parameters at ``weight_bits`` with their quantization scales (at their own dtypes when
        it is not set)."""
        if self.weight_bits is None:
            return self.params.bytes
        return (self.params.total * self.weight_bits + 7) // 8 + self.weight_scale_bytes

    def plot_roofline(self, path: str | Path, **options: Any) -> Path:
        """Draw the roofline (PNG, SVG or PDF by the file's suffix); see :func:`rooflens.report.plot.plot_roofline`."""
        return plot_roofline(self, path, **options)

    # ---- serialisation --------------------------------------------------------------------------
    def to_dict(self, *, operators: bool = True) -> dict[str, Any]:
        total = self.total()
        roof = self.roofline if self.hardware is not None else None
        timings = roof.by_module() if roof is not None else {}
        cal = self.calibrated
        estimates = cal.by_module() if cal is not None else {}
        data: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "model": self.model,
            "convention": self.convention.value,
            "convention_text": CONVENTION_TEXT[self.convention],
            "executed": self.executed,
            "device": self.device,
            "dtype": self.dtype,
            "torch_version": self.torch_version,
            "inputs": [{"shape": list(t.shape), "dtype": t.dtype} for t in self.inputs],
            "precision": {"compute": self.precision.value, "weight_bits": self.weight_bits, "act_bits": self.act_bits,
                          "kv_bits": self.kv_bits,
                          **({"weight_group": self.weight_group, "weight_scale_bytes": self.weight_scale_bytes}
                             if self.weight_group is not None else {})},
            "total": {**total.as_dict(), "intensity": total.intensity},
            **(
                {"backward": True, "total_forward": self.total("forward").as_dict(),
                 "total_backward": self.total("backward").as_dict()}
                if self.backward else {}
            ),
            "params": {
                "total": self.params.total,
                "trainable": self.params.trainable,
                "non_trainable": self.params.non_trainable,
                "nonzero": self.params.nonzero,
                "bytes": self.params.bytes,
                "buffers": self.params.buffers,
                "buffer_bytes": self.params.buffer_bytes,
            },
            "modules": [_module_dict(n, timings.get(n.path), estimates.get(n.path)) for n in self.modules.values()],
            "operators_summary": [
                {"op": s.op, "calls": s.calls, "supported": s.supported, **s.cost.as_dict()}
                for s in self.by_operator().values()
            ],
            "unsupported_ops": self.unsupported_ops(),
            "uncalled_modules": list(self.uncalled_modules),
            "diagnostics": list(self.diagnostics),
        }
        if roof is not None:
            data["roofline"] = {
                **roof.as_dict(),
                "operators_summary": [
                    {"op": o.op, "calls": o.calls, **o.timing.as_dict()} for o in roof.by_operator(self.records)
                ],
            }
        if cal is not None:
            data["calibrated"] = cal.as_dict()
        if self.measurement is not None:
            data["measurement"] = self.measurement.as_dict(samples=False)
            data["achieved"] = self.achieved.as_dict() if self.achieved is not None else None
        if operators:
            data["operators"] = [r.as_dict() for r in self.records]
            if roof is not None:
                for item, t in zip(data["operators"], roof.ops, strict=True):
                    item["roofline"] = {"seconds": t.seconds, "bound": t.bound.value, "intensity": t.intensity}
            if cal is not None:
                for item, p in zip(data["operators"], cal.ops, strict=True):
                    item["calibrated"] = p.as_dict()
        return data

    def to_json(self, *, indent: int | None = 2, operators: bool = True) -> str:
        return json.dumps(self.to_dict(operators=operators), indent=indent)

    # ---- rendering (the logic lives in rooflens.report.terminal and .export) ----------------------
    def render(self, *, depth: int | None = None, byte_unit: ByteUnit | str = ByteUnit.SI, width: int = 140) -> str:
        """The module table with header and footer as plain text (no colour), ``width`` columns wide.

        ``depth``: show modules down to this depth (0: the model only); deeper ones are folded into
        their ancestors' cumulative numbers. ``byte_unit``: ``"si"`` (MB) or ``"binary"`` (MiB).
        """
        from rooflens.report.terminal import render_text

        return render_text(self, depth=depth, byte_unit=ByteUnit.parse(byte_unit), width=width)

    def __str__(self) -> str:
        return self.render()

    def __rich_console__(self, console: Any, options: Any) -> Any:
        from rooflens.report.terminal import renderables

        yield from renderables(self, width=options.max_width)

    def _repr_html_(self) -> str:
        """The HTML report inline (Jupyter): the page of :meth:`to_html` as one ``<div>`` with its style and script."""
        from rooflens.report.html_report import html_fragment

        return html_fragment(self)

    @overload
    def to_html(
        self, path: None = None, *, memory: MemoryReport | None = ..., devices: Sequence[Report] = ...,
        sections: Sequence[SectionLike] = ..., depth: int | None = ..., byte_unit: ByteUnit | str = ...,
        title: str | None = ...,
    ) -> str: ...

    @overload
    def to_html(
        self, path: str | Path, *, memory: MemoryReport | None = ..., devices: Sequence[Report] = ...,
        sections: Sequence[SectionLike] = ..., depth: int | None = ..., byte_unit: ByteUnit | str = ...,
        title: str | None = ...,
    ) -> Path: ...

    def to_html(
        self,
        path: str | Path | None = None,
        *,
        memory: MemoryReport | None = None,
        devices: Sequence[Report] = (),
        sections: Sequence[SectionLike] = (),
        depth: int | None = None,
        byte_unit: ByteUnit | str = ByteUnit.SI,
        title: str | None = None,
    ) -> str | Path:
        """The HTML report: one self-contained page (no network access: every style and script inline).

        Written to ``path`` (the path is returned), or returned as text when ``path`` is None. ``memory``:
        a MemoryReport of the same model (``rooflens.memory(...)``) for the memory timeline; ``devices``:
        Reports of this model on other devices (``report.with_hardware('t4')``) for the comparison and
        their rooflines; ``sections``: extra parts, each a ``rooflens.report.html_report.Section`` or a
        ``(title, rows)`` pair (rows: mappings, dataclasses or objects with ``as_dict()``); ``depth``: the
        module tree opens down to it. See docs/html_report.md.
        """
        from rooflens.report.html_report import html_page

        text = html_page(self, memory=memory, devices=devices, sections=sections, depth=depth,
                         byte_unit=ByteUnit.parse(byte_unit), title=title)
        if path is None:
            return text
        target = Path(path)
        if not target.parent.is_dir():
            raise InputError(f"cannot write {str(target)!r}: the folder {str(target.parent)!r} does not exist")
        try:
            target.write_text(text, encoding="utf-8", newline="\n")
        except OSError as e:
            raise InputError(f"cannot write {str(target)!r}: {e.strerror or e}") from None
        return target

    def to_csv(self, *, byte_unit: ByteUnit | str | None = None) -> str:
        """One row per module in base units (bytes), or MB/MiB columns with ``byte_unit``."""
        from rooflens.report.export import to_csv

        return to_csv(self, ByteUnit.parse(byte_unit) if byte_unit is not None else None)

    def to_markdown(self, *, depth: int | None = None, byte_unit: ByteUnit | str = ByteUnit.SI) -> str:
        from rooflens.report.export import to_markdown

        return to_markdown(self, depth, ByteUnit.parse(byte_unit))


def _module_dict(n: ModuleNode, timing: Timing | None, calibrated_seconds: float | None) -> dict[str, Any]:
    return {
        "path": n.path,
        "type": n.type_name,
        "depth": n.depth,
        "calls": n.calls,
        "params": n.params.total,
        "own_params": n.own_params,
        "output_shapes": [list(s) for s in n.output_shapes],
        "own": n.own.as_dict(),
        "cumulative": n.cumulative.as_dict(),
        **({"cumulative_backward": n.cumulative_backward.as_dict()} if n.cumulative_backward != ZERO else {}),
        **({"roofline": timing.as_dict()} if timing is not None else {}),
        **({"calibrated_seconds": calibrated_seconds} if calibrated_seconds is not None else {}),
    }
