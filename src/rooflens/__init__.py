"""rooflens: what a neural network costs and why."""

from rooflens import hardware
from rooflens.analysis.advice import Finding, Rule, Severity
from rooflens.analysis.memory import MemoryReport, memory
from rooflens.api import analyze, analyze_onnx
from rooflens.errors import HardwareError, InputError, ModelError, RooflensError, SpecError
from rooflens.hardware import HardwareSpec, Precision
from rooflens.llm import LLMRun
from rooflens.llm import llm as llm  # the function; the package rooflens.llm is reached by its full name
from rooflens.measurement import Measurement, measure
from rooflens.params import count_parameters, model_size_bytes
from rooflens.report.compare import Comparison, compare
from rooflens.report.report import Report
from rooflens.types import Convention, Cost, ModuleNode, OpRecord, ParamStats, TensorMeta

__version__ = "0.1.0"

__all__ = [
    "Comparison",
    "Convention",
    "Cost",
    "Finding",
    "HardwareError",
    "HardwareSpec",
    "InputError",
    "LLMRun",
    "Measurement",
    "MemoryReport",
    "ModelError",
    "ModuleNode",
    "OpRecord",
    "ParamStats",
    "Precision",
    "Report",
    "RooflensError",
    "Rule",
    "Severity",
    "SpecError",
    "TensorMeta",
    "__version__",
    "analyze",
    "analyze_onnx",
    "compare",
    "count_parameters",
    "hardware",
    "llm",
    "measure",
    "memory",
    "model_size_bytes",
]
