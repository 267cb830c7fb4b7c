"""What the analyses read of a report: a structural type, because the report layer sits above this one.

``rooflens.report.Report`` satisfies it; :func:`~rooflens.analysis.calibrated.predict`,
:func:`~rooflens.analysis.energy.estimate_energy` and :func:`~rooflens.analysis.advice.advise` take it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from rooflens.hardware.spec import HardwareSpec, Precision
from rooflens.types import Convention, ModuleNode, OpRecord, TensorMeta


class Counted(Protocol):
    """A counted model: its operator records, module tree, inputs, conventions and device."""

    @property
    def records(self) -> Sequence[OpRecord]: ...

    @property
    def modules(self) -> Mapping[str, ModuleNode]: ...

    @property
    def inputs(self) -> Sequence[TensorMeta]: ...

    @property
    def precision(self) -> Precision: ...

    @property
    def convention(self) -> Convention: ...

    @property
    def hardware(self) -> HardwareSpec | None: ...

    @property
    def weight_bytes(self) -> int: ...
