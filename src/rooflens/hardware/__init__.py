"""Hardware: what a device can do (dense peaks per precision, bandwidth, memory) and the catalogue.

    rooflens.hardware.get("h100-sxm").peak_flops("bf16")      # 989.5e12
    rooflens.hardware.register(HardwareSpec(...))            # then analyze(..., hardware="my-npu")
    rooflens.hardware.load_file("devices.toml")             # [[device]] tables, see catalogue.py

Data only: this package imports nothing of rooflens but :mod:`rooflens.errors`. Measuring the machine
rooflens runs on is :func:`rooflens.measurement.benchmark` (``rooflens hw bench``); the figures and
their sources are in docs/hardware.md.
"""

from rooflens.hardware.catalogue import custom, devices, get, load_file, register, reset, unregister
from rooflens.hardware.spec import HardwareSpec, Kind, Precision, parse_quantity

__all__ = [
    "HardwareSpec", "Kind", "Precision", "custom", "devices", "get", "load_file", "parse_quantity", "register",
    "reset", "unregister",
]
