"""Measurement on real tensors: latency and throughput (:func:`measure`, :func:`sweep`), achieved FLOP/s
and bandwidth against the report (:func:`achieved`), and a per-operator profile matched to the analysed
operator records (:func:`profile_operators`)."""

from rooflens.measurement.profile import (
    ModuleProfile,
    ModuleRow,
    OperatorProfile,
    UnmatchedEvent,
    module_rows,
    profile_operators,
)
from rooflens.measurement.timer import Achieved, Measurement, achieved, measure, percentile, sweep, time_callable

__all__ = [
    "Achieved", "Measurement", "ModuleProfile", "ModuleRow", "OperatorProfile", "UnmatchedEvent", "achieved",
    "measure", "module_rows", "percentile", "profile_operators", "sweep", "time_callable",
]
