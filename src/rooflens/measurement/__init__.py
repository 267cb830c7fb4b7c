"""Measurement on real tensors: latency and throughput (:func:`measure`, :func:`sweep`), achieved FLOP/s
and bandwidth against the report (:func:`achieved`, from :mod:`rooflens.report.measured`), a per-operator profile matched to the analysed
operator records (:func:`profile_operators`), energy from the machine's counters (RAPL, NVML:
:func:`measure_model_energy`), and micro-benchmarks of the machine (:func:`benchmark`,
``rooflens hw bench``) that give a measured :class:`~rooflens.hardware.HardwareSpec`."""

from rooflens.measurement.energy import (
    EnergyMeasurement,
    EnergyMeter,
    EnergyReading,
    measure_energy,
    measure_model_energy,
    probe_energy,
)
from rooflens.measurement.microbench import benchmark
from rooflens.measurement.profile import (
    ModuleProfile,
    ModuleRow,
    OperatorProfile,
    UnmatchedEvent,
    module_rows,
    profile_operators,
)
from rooflens.measurement.timer import Measurement, measure, percentile, sweep, time_callable
from rooflens.report.measured import Achieved, achieved  # derived from a Report: computed in the report layer

__all__ = [
    "Achieved", "EnergyMeasurement", "EnergyMeter", "EnergyReading", "Measurement", "ModuleProfile", "ModuleRow",
    "OperatorProfile", "UnmatchedEvent", "achieved", "benchmark", "measure", "measure_energy", "measure_model_energy",
    "module_rows", "percentile", "probe_energy", "profile_operators", "sweep", "time_callable",
]
