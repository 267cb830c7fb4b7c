"""Measured energy: joules over a block of code from the counters the machine exposes.

* **CPU** (``device="cpu"``): Linux RAPL through the powercap interface,
  ``/sys/class/powercap/intel-rapl:*/energy_uj`` (Intel, and AMD Zen with the same driver): the ``package-N``
  zones (the whole socket: cores, caches, memory controller) and the ``dram`` zones where the CPU has them.
  ``core``/``uncore`` zones are parts of a package and ``psys`` (the platform) contains it, so they are not
  added; ``intel-rapl-mmio`` zones repeat a package's counter through another interface and are skipped too.
  A counter wraps at its zone's ``max_energy_range_uj``; one wrap between two readings is undone (more than
  one is not detectable: at 200 W a typical 262 kJ range takes over 20 minutes to wrap).
* **NVIDIA GPU** (``device="cuda[:n]"``): NVML's ``nvmlDeviceGetTotalEnergyConsumption`` (millijoules since
  the driver loaded; Volta and newer) through ``pynvml`` (``pip install nvidia-ml-py``), for the whole board.

Where a counter cannot be read (no RAPL, counters readable by root only, no NVML bindings, a GPU that does
not report energy, Apple GPUs) the reading has ``joules=None`` and a ``reason`` that says what to do.

What a counter measures is the whole package or board: every process on it and its idle power, not only
the model. :func:`measure_energy` can measure the idle power first (``idle_seconds``) and report the
energy above it, the figure to set beside the estimate of :mod:`rooflens.analysis.energy`. The counters
update every millisecond (RAPL) to every ~100 ms (NVML on some boards): measure for a second or more.
Nothing is printed.
"""

from __future__ import annotations

import contextlib
import importlib
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Any

import torch

from rooflens.errors import InputError, ModelError
from rooflens.measurement.timer import (
    batch_size_of,
    check_model,
    intra_op_threads,
    measurement_device,
    measurement_dtype,
    prepared_model,
    real_inputs,
    synchronize,
    whole_number,
)

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self from Python 3.11

POWERCAP_ROOT = Path("/sys/class/powercap")

RAPL_NOTE = ("RAPL counts the whole CPU package (every process on it, and its idle power) and the DRAM: "
             "measure the idle power (idle_seconds) to see the model's share")
NVML_NOTE = "NVML counts the whole GPU board, its idle power included"


# ---- readings ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class EnergyReading:
    """Joules spent during one block of code, by counter domain; ``joules`` None (with ``reason``) when the
    machine's counters could not be read."""

    joules: float | None
    seconds: float
    counter: str  # "rapl", "nvml", or "" when none was readable
    domains: Mapping[str, float]  # joules per domain ("package-0", "dram-0", "gpu-0")
    reason: str | None = None
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "domains", MappingProxyType(dict(self.domains)))

    @property
    def available(self) -> bool:
        return self.joules is not None

    @property
    def watts(self) -> float | None:
        """Mean power over the block."""
        if self.joules is None or self.seconds <= 0:
            return None
        return self.joules / self.seconds

    def as_dict(self) -> dict[str, Any]:
        return {"joules": self.joules, "seconds": self.seconds, "watts": self.watts, "counter": self.counter,
                "domains": dict(self.domains), "reason": self.reason, "notes": list(self.notes)}


def unavailable(reason: str, counter: str = "") -> EnergyReading:
    """A reading that has no joules, and says why."""
    return EnergyReading(None, 0.0, counter, {}, reason)


# ---- RAPL ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RaplZone:
    """One powercap zone whose counter is added: a CPU package or its DRAM."""

    label: str  # "package-0", "dram-0" (the DRAM of package 0)
    path: Path  # the zone's folder (holds energy_uj, max_energy_range_uj, name)
    max_energy_range_uj: int


def rapl_zones(root: str | Path = POWERCAP_ROOT) -> tuple[tuple[RaplZone, ...], str | None]:
    """The package and DRAM zones under ``root`` (the powercap folder), and why there are none when so.

    Reads only the zones' names and ranges (readable by every user); the counters themselves may still be
    root-only (:func:`read_rapl_uj` says so).
    """
    base = Path(root)
    zones: list[RaplZone] = []
    try:
        folders = sorted(p for p in base.glob("intel-rapl:*") if p.is_dir())
    except OSError as e:  # pragma: no cover - a powercap folder that cannot be listed
        return (), f"cannot list {base}: {e.strerror or e}"
    if not folders:
        return (), (f"no RAPL energy counters: {base} has no intel-rapl zones. RAPL needs Linux, an Intel or "
                    "AMD (Zen) CPU and the powercap driver (sudo modprobe intel_rapl_msr); virtual machines and "
                    "many containers do not expose it")
    for folder in folders:
        try:
            name = (folder / "name").read_text(encoding="utf-8").strip()
        except OSError:
            continue
        parts = folder.name.split(":")  # intel-rapl:0 (package 0), intel-rapl:0:2 (a subzone of package 0)
        socket = parts[1] if len(parts) > 1 else "0"
        if name.startswith("package") and len(parts) == 2:
            label = name
        elif name == "dram":
            label = f"dram-{socket}"
        else:
            continue  # core, uncore (inside a package), psys (contains the packages)
        try:
            max_range = int((folder / "max_energy_range_uj").read_text(encoding="utf-8").strip())
        except (OSError, ValueError):
            max_range = 0
        zones.append(RaplZone(label, folder, max_range))
    if not zones:
        return (), f"no RAPL package zone under {base} (found {', '.join(f.name for f in folders)})"
    return tuple(zones), None


def read_rapl_uj(zones: Sequence[RaplZone]) -> tuple[dict[str, int], str | None]:
    """Each zone's counter in microjoules, or ({}, why) when one cannot be read."""
    values: dict[str, int] = {}
    for zone in zones:
        path = zone.path / "energy_uj"
        try:
            values[zone.label] = int(path.read_text(encoding="utf-8").strip())
        except PermissionError:
            return {}, (f"cannot read {path}: permission denied. The RAPL counters are readable by root only "
                        "(since the 2020 fix for CVE-2020-8694, PLATYPUS): run as root, or allow reading until "
                        "the next reboot with `sudo chmod a+r /sys/class/powercap/intel-rapl:*/energy_uj` "
                        "(this reopens the side channel the restriction closes: only on a machine you trust)")
        except (OSError, ValueError) as e:
            return {}, f"cannot read {path}: {getattr(e, 'strerror', None) or e}"
    return values, None


def counter_delta_uj(before: int, after: int, max_energy_range_uj: int) -> int:
    """Microjoules between two readings of a counter that wraps to 0 after ``max_energy_range_uj``
    (one wrap at most; an unknown range, 0, is taken as no wrap)."""
    if after >= before or max_energy_range_uj <= 0:
        return after - before
    return after + max_energy_range_uj - before


# ---- NVML ---------------------------------------------------------------------------------------------------

class _Nvml:
    """The energy counter of one GPU through pynvml (opened by :meth:`open`, closed by :meth:`close`)."""

    def __init__(self, module: Any, handle: Any, label: str) -> None:
        self.module, self.handle, self.label = module, handle, label

    @classmethod
    def open(cls, index: int) -> tuple[_Nvml | None, str | None]:
        try:
            nvml = importlib.import_module("pynvml")
        except ImportError:
            return None, ("NVML is not available: its Python bindings are not installed "
                          "(pip install nvidia-ml-py, which provides the pynvml module)")
        try:
            nvml.nvmlInit()
        except Exception as e:  # noqa: BLE001 - pynvml raises its own NVMLError subclasses, reported as they are
            return None, f"NVML could not start ({e}): is the NVIDIA driver installed and loaded?"
        try:
            handle = _nvml_handle(nvml, index)
            nvml.nvmlDeviceGetTotalEnergyConsumption(handle)
        except Exception as e:  # noqa: BLE001 - NVMLError_NotSupported, _InvalidArgument ...: reported as they are
            _shutdown(nvml)
            return None, (f"GPU {index} does not report its energy through NVML ({e}): "
                          "nvmlDeviceGetTotalEnergyConsumption needs a Volta or newer GPU, and not a MIG instance")
        return cls(nvml, handle, f"gpu-{index}"), None

    def read_mj(self) -> int:
        return int(self.module.nvmlDeviceGetTotalEnergyConsumption(self.handle))

    def close(self) -> None:
        _shutdown(self.module)


def _nvml_handle(nvml: Any, index: int) -> Any:
    """The NVML handle of CUDA device ``index``: by its UUID when torch knows it (CUDA_VISIBLE_DEVICES renumbers
    CUDA devices, NVML does not), else by the index."""
    uuid = None
    if torch.cuda.is_available():
        with contextlib.suppress(Exception):  # an old torch without .uuid: the index is used
            uuid = str(torch.cuda.get_device_properties(index).uuid)
    if uuid:
        with contextlib.suppress(Exception):  # a UUID NVML does not know: the index is used
            return nvml.nvmlDeviceGetHandleByUUID(uuid if uuid.startswith(("GPU-", "MIG-")) else f"GPU-{uuid}")
    return nvml.nvmlDeviceGetHandleByIndex(index)


def _shutdown(nvml: Any) -> None:
    with contextlib.suppress(Exception):  # nothing to do about a failed shutdown
        nvml.nvmlShutdown()


# ---- the meter ------------------------------------------------------------------------------------------------

class EnergyMeter:
    """Joules spent while a block runs, on ``device``'s counter::

        with EnergyMeter("cpu") as meter:
            run()
        meter.reading.joules        # None, with meter.reading.reason, where the counters cannot be read

    ``device``: ``"cpu"`` (RAPL under ``rapl_root``) or ``"cuda[:n]"`` (NVML). The meter does not wait for
    queued GPU work: synchronize before the block ends (:func:`measure_energy` does).
    """

    def __init__(self, device: str | torch.device = "cpu", *, rapl_root: str | Path = POWERCAP_ROOT) -> None:
        try:
            dev = torch.device(device)
        except (RuntimeError, TypeError):
            raise InputError(f"device={device!r} is not a device; use 'cpu' or 'cuda[:n]'") from None
        self.device = dev
        self.rapl_root = Path(rapl_root)
        self._reading: EnergyReading | None = None
        self._reason: str | None = None
        self._zones: tuple[RaplZone, ...] = ()
        self._start_uj: dict[str, int] = {}
        self._nvml: _Nvml | None = None
        self._start_mj = 0
        self._t0 = 0.0

    def __enter__(self) -> Self:
        self._reading = None
        self._reason = None
        if self.device.type == "cpu":
            self._zones, self._reason = rapl_zones(self.rapl_root)
            if self._reason is None:
                self._start_uj, self._reason = read_rapl_uj(self._zones)
        elif self.device.type == "cuda":
            index = self.device.index
            if index is None:
                index = torch.cuda.current_device() if torch.cuda.is_available() else 0
            self._nvml, self._reason = _Nvml.open(index)
            if self._nvml is not None:
                self._start_mj = self._nvml.read_mj()
        elif self.device.type == "mps":
            self._reason = ("no energy counter of Apple GPUs is readable from Python (powermetrics needs root "
                            "and reports power, not energy)")
        else:
            self._reason = f"no energy counter is known for {self.device.type} devices"
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        seconds = time.perf_counter() - self._t0
        if self._reason is not None:
            counter = "rapl" if self.device.type == "cpu" else "nvml" if self.device.type == "cuda" else ""
            self._reading = EnergyReading(None, seconds, counter, {}, self._reason)
        elif self._nvml is not None:
            try:
                end_mj = self._nvml.read_mj()
            finally:
                self._nvml.close()
                nvml, self._nvml = self._nvml, None
            joules = (end_mj - self._start_mj) / 1e3
            self._reading = EnergyReading(joules, seconds, "nvml", {nvml.label: joules}, notes=(NVML_NOTE,))
        else:
            end, reason = read_rapl_uj(self._zones)
            if reason is not None:
                self._reading = EnergyReading(None, seconds, "rapl", {}, reason)
                return
            domains = {z.label: counter_delta_uj(self._start_uj[z.label], end[z.label], z.max_energy_range_uj) / 1e6
                       for z in self._zones}
            self._reading = EnergyReading(sum(domains.values()), seconds, "rapl", domains, notes=(RAPL_NOTE,))

    @property
    def reading(self) -> EnergyReading:
        """The block's reading (after the ``with`` block has ended)."""
        if self._reading is None:
            raise InputError("the energy reading is known once the `with EnergyMeter(...)` block has ended")
        return self._reading


def probe_energy(device: str | torch.device = "cpu", *, rapl_root: str | Path = POWERCAP_ROOT) -> str | None:
    """None when ``device``'s energy counter can be read; otherwise why not (and what to do)."""
    with EnergyMeter(device, rapl_root=rapl_root) as meter:
        pass
    return meter.reading.reason


# ---- measuring a callable or a model --------------------------------------------------------------------------

@dataclass(frozen=True)
class EnergyMeasurement:
    """Energy of ``calls`` calls of a forward pass that handles ``batch_size`` inferences each.

    ``idle``: the same counter over ``idle_seconds`` of doing nothing, measured first (None when not asked);
    the ``dynamic_*`` figures subtract that idle power.
    """

    reading: EnergyReading
    calls: int
    batch_size: int = 1
    idle: EnergyReading | None = None

    @property
    def available(self) -> bool:
        return self.reading.joules is not None and self.calls > 0

    @property
    def reason(self) -> str | None:
        return self.reading.reason

    @property
    def joules_per_call(self) -> float | None:
        if self.reading.joules is None or self.calls <= 0:
            return None
        return self.reading.joules / self.calls

    @property
    def joules_per_inference(self) -> float | None:
        per_call = self.joules_per_call
        return None if per_call is None else per_call / self.batch_size

    @property
    def inferences_per_joule(self) -> float | None:
        per = self.joules_per_inference
        return None if per is None else (1 / per if per > 0 else math.inf)

    @property
    def idle_watts(self) -> float | None:
        return None if self.idle is None else self.idle.watts

    @property
    def dynamic_joules_per_inference(self) -> float | None:
        """Joules per inference above the idle power (None without an idle reading)."""
        idle = self.idle_watts
        if idle is None or self.reading.joules is None or self.calls <= 0:
            return None
        return (self.reading.joules - idle * self.reading.seconds) / self.calls / self.batch_size

    def as_dict(self) -> dict[str, Any]:
        return {
            "available": self.available,
            "reason": self.reason,
            "calls": self.calls,
            "batch_size": self.batch_size,
            "joules_per_call": self.joules_per_call,
            "joules_per_inference": self.joules_per_inference,
            "inferences_per_joule": self.inferences_per_joule,
            "idle_watts": self.idle_watts,
            "dynamic_joules_per_inference": self.dynamic_joules_per_inference,
            "reading": self.reading.as_dict(),
            "idle": None if self.idle is None else self.idle.as_dict(),
        }


def measure_energy(
    fn: Callable[[], Any],
    *,
    device: str | torch.device = "cpu",
    warmup: int = 1,
    min_calls: int = 1,
    min_seconds: float = 1.0,
    max_seconds: float | None = None,
    idle_seconds: float = 0.0,
    batch_size: int = 1,
    rapl_root: str | Path = POWERCAP_ROOT,
) -> EnergyMeasurement:
    """Joules per call of ``fn()`` on ``device``'s counter: ``warmup`` calls, then calls (each followed by a
    device synchronize, as the timed loop of :func:`rooflens.measure` does) until at least ``min_calls`` and
    ``min_seconds``; ``max_seconds`` stops the loop early (one call is always made). ``idle_seconds``: first
    measure the idle power for this long. ``batch_size``: inferences per call.

    When the counter cannot be read, ``fn`` is not called and the result says why (``reason``).
    """
    whole_number(warmup, "warmup", minimum=0)
    whole_number(min_calls, "min_calls", minimum=1)
    whole_number(batch_size, "batch_size", minimum=1)
    for value, what in ((min_seconds, "min_seconds"), (idle_seconds, "idle_seconds")):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
            raise InputError(f"{what}={value!r} must be a number of seconds >= 0")
    if max_seconds is not None and (isinstance(max_seconds, bool) or not isinstance(max_seconds, (int, float))
                                    or not 0 < max_seconds < math.inf):
        raise InputError(f"max_seconds={max_seconds!r} must be a positive number of seconds")
    dev = torch.device(device)
    reason = probe_energy(dev, rapl_root=rapl_root)
    if reason is not None:
        return EnergyMeasurement(unavailable(reason, "rapl" if dev.type == "cpu" else "nvml"), 0, batch_size)
    for _ in range(warmup):
        fn()
    synchronize(dev.type)
    idle = None
    if idle_seconds > 0:
        with EnergyMeter(dev, rapl_root=rapl_root) as idle_meter:
            time.sleep(idle_seconds)
        idle = idle_meter.reading
    calls = 0
    with EnergyMeter(dev, rapl_root=rapl_root) as meter:
        begun = time.perf_counter()
        while True:
            fn()
            synchronize(dev.type)
            calls += 1
            elapsed = time.perf_counter() - begun
            if calls >= min_calls and elapsed >= min_seconds:
                break
            if max_seconds is not None and elapsed >= max_seconds:
                break
    return EnergyMeasurement(meter.reading, calls, batch_size, idle)


def measure_model_energy(
    model: torch.nn.Module,
    inputs: Any = None,
    *,
    input_size: Sequence[int] | Sequence[Sequence[int]] | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | str | None = None,
    threads: int | None = None,
    warmup: int = 10,
    min_calls: int = 10,
    min_seconds: float = 2.0,
    max_seconds: float | None = None,
    idle_seconds: float = 0.0,
    rapl_root: str | Path = POWERCAP_ROOT,
) -> EnergyMeasurement:
    """Joules per inference of ``model``'s forward pass on real tensors, measured by the device's counter.

    ``inputs``/``input_size``/``device``/``dtype``/``threads`` as for :func:`rooflens.measure` (the model is
    left unchanged: a prepared copy runs, under ``torch.inference_mode()``); the loop as for
    :func:`measure_energy`. An inference is one sample: the batch size is the first dimension of the first
    input. Where the counter cannot be read, nothing runs and the result says why.
    """
    dev = measurement_device(device)
    dt = measurement_dtype(dtype)
    check_model(model)
    reason = probe_energy(dev, rapl_root=rapl_root)
    if reason is not None:
        return EnergyMeasurement(unavailable(reason, "rapl" if dev.type == "cpu" else "nvml"), 0)
    with intra_op_threads(threads), prepared_model(model, dev, dt) as runnable:
        args, kwargs = real_inputs(inputs, input_size, dev, dt)

        def forward() -> Any:
            return runnable(*args, **kwargs)

        try:
            with torch.inference_mode():
                return measure_energy(
                    forward, device=dev, warmup=warmup, min_calls=min_calls, min_seconds=min_seconds,
                    max_seconds=max_seconds, idle_seconds=idle_seconds, batch_size=batch_size_of(args, kwargs),
                    rapl_root=rapl_root,
                )
        except (InputError, ModelError):
            raise
        except Exception as e:
            raise ModelError(f"the model raised {type(e).__name__} while its energy was measured: {e}") from e
