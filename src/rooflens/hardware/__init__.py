"""Hardware: what a device can do (dense peaks per precision, bandwidth, memory) and the catalogue.

    rooflens.hardware.get("h100-sxm").peak_flops("bf16")      # 989.5e12
    rooflens.hardware.register(HardwareSpec(...))            # then analyze(..., hardware="my-npu")
    rooflens.hardware.load_file("devices.toml")             # [[device]] tables, see catalogue.py
    rooflens.hardware.benchmark(device="cpu")               # this machine, measured (microbench.py)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rooflens.hardware.catalogue import custom, devices, get, load_file, register, reset, unregister
from rooflens.hardware.spec import HardwareSpec, Kind, Precision, parse_quantity

if TYPE_CHECKING:
    from rooflens.hardware.microbench import benchmark

__all__ = [
    "HardwareSpec", "Kind", "Precision", "benchmark", "custom", "devices", "get", "load_file", "parse_quantity",
    "register", "reset", "unregister",
]


def __getattr__(name: str) -> Any:  # the micro-benchmarks import torch.nn.functional: only when asked for
    if name == "benchmark":
        from rooflens.hardware.microbench import benchmark

        return benchmark
    raise AttributeError(f"module 'rooflens.hardware' has no attribute {name!r}")
