"""The hardware catalogue: every built-in entry, the known traps, quantities, file validation, registry.

Expected figures are written out by hand from the datasheets (see src/rooflens/hardware/data/*.toml and
docs/hardware.md), never recomputed with the code under test.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator
from pathlib import Path

import pytest

import rooflens.hardware as hw
from rooflens.errors import HardwareError
from rooflens.hardware import HardwareSpec, Kind, Precision, parse_quantity


@pytest.fixture(autouse=True)
def clean_registry() -> Iterator[None]:
    """Every test starts and ends with only the built-in catalogue registered."""
    hw.reset()
    yield
    hw.reset()


def _write(tmp_path: Path, text: str, name: str = "devices.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


GOOD = """
[[device]]
id = "my-npu"
name = "My NPU"
vendor = "Acme"
kind = "npu"
memory = "4 GB"
bandwidth = "25.6 GB/s"
onchip = "2 MB"
source = "Acme NPU datasheet rev 3"
notes = "int8 only"

[device.peak]
int8 = "8 TOP/s"
"""


def _table(**fields: str) -> str:
    """A [[device]] table: the fields given (None-less), then a peak table."""
    peak = fields.pop("peak", 'fp32 = "19.2 TFLOP/s"')
    lines = ["[[device]]"] + [f"{k} = {v}" for k, v in fields.items()] + ["", "[device.peak]", peak, ""]
    return "\n".join(lines)


BASE = {
    "id": '"test-gpu"',
    "name": '"Test GPU"',
    "vendor": '"Test"',
    "kind": '"gpu"',
    "bandwidth": '"448 GB/s"',
    "source": '"a datasheet"',
}


def _variant(drop: tuple[str, ...] = (), **change: str) -> str:
    fields = {k: v for k, v in BASE.items() if k not in drop}
    fields.update(change)
    return _table(**fields)


# ---- every catalogue entry ----------------------------------------------------------------------

ALL = hw.devices()
GPUS = [s for s in ALL if s.kind is Kind.GPU]


def test_catalogue_size_and_kinds() -> None:
    assert len(ALL) >= 21
    kinds = {s.kind for s in ALL}
    assert {Kind.GPU, Kind.CPU, Kind.NPU, Kind.SOC} <= kinds


def test_required_ids_present() -> None:
    required = [
        "a4000", "t4", "v100-sxm2", "v100-pcie", "a10", "a100-40gb", "a100-80gb", "l4", "l40s", "h100-sxm",
        "h100-pcie", "h200", "rtx-3090", "rtx-4090", "a6000", "jetson-agx-orin", "jetson-orin-nano",
        "jetson-orin-nano-super", "rpi4", "rpi5", "xeon-8480", "epyc-9654", "apple-m2", "hi3519av100-nnie",
    ]
    ids = {s.id for s in ALL}
    assert set(required) <= ids, sorted(set(required) - ids)
    for alias, target in [("rtx-a4000", "a4000"), ("v100", "v100-sxm2"), ("a100", "a100-40gb"),
                          ("h100", "h100-sxm"), ("3090", "rtx-3090"), ("4090", "rtx-4090")]:
        assert hw.get(alias).id == target


def test_ids_unique_including_aliases() -> None:
    keys = [k for s in ALL for k in (s.id, *s.aliases)]
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    assert not duplicates
    for key in keys:
        assert key == key.lower() and " " not in key


@pytest.mark.parametrize("spec", ALL, ids=lambda s: s.id)
def test_entry_is_complete(spec: HardwareSpec) -> None:
    assert spec.source.strip(), "every entry names its source"
    assert spec.name and spec.vendor
    assert len(spec.peak_flops_per_s) >= 1
    assert spec.kind in set(Kind)
    assert all(isinstance(p, Precision) and v > 0 for p, v in spec.peak_flops_per_s.items())
    notes = spec.notes.lower()
    if spec.bandwidth_bytes_per_s is None:
        assert "unpublished" in notes or "not published" in notes, "a missing bandwidth must be explained"
    else:
        assert spec.bandwidth_bytes_per_s > 0


@pytest.mark.parametrize("spec", [s for s in ALL if s.bandwidth_bytes_per_s is not None], ids=lambda s: s.id)
def test_ridge_points_plausible(spec: HardwareSpec) -> None:
    # GPUs: every dense ridge point sits between ~10 (fp64/fp32 on HBM parts, e.g. A100-80GB 19.5/2039
    # = 9.6) and ~850 (fp8 on GDDR Ada parts, L40S 733/864 = 848); a sparse figure or a GB/TB slip
    # would push it out of 1..2000.
    # CPUs, SoCs and NPUs: the same upper bound; the lower bound is 0.5 because a small CPU's fp64
    # ridge is close to 1 (Raspberry Pi 4: 24 GFLOP/s / 12.8 GB/s = 1.9).
    lo, hi = (1.0, 2000.0) if spec.kind is Kind.GPU else (0.5, 2000.0)
    for p in spec.precisions:
        ridge = spec.ridge_point(p)
        assert lo <= ridge <= hi, f"{spec.id} {p.value}: ridge {ridge:.3g} FLOP/B"


@pytest.mark.parametrize("spec", GPUS, ids=lambda s: s.id)
def test_tensor_core_gpus_fp16_above_fp32(spec: HardwareSpec) -> None:
    # every GPU in the catalogue has tensor cores (Volta or later)
    fp32 = spec.peak_flops(Precision.FP32)
    half = [p for p in (Precision.FP16, Precision.BF16) if p in spec.peak_flops_per_s]
    assert half, f"{spec.id} has tensor cores but no fp16/bf16 peak"
    for p in half:
        assert spec.peak_flops(p) >= fp32


@pytest.mark.parametrize("spec", [s for s in GPUS if Precision.BF16 in s.peak_flops_per_s], ids=lambda s: s.id)
def test_sparse_halving_is_stated(spec: HardwareSpec) -> None:
    # every GPU with bf16 is Ampere or later, whose tensor figures NVIDIA prints with sparsity
    assert "sparse" in spec.notes.lower()


# ---- hand-written figures and traps -------------------------------------------------------------

T = 1e12
G = 1e9

# id: (fp32 FLOP/s, fp16-or-bf16 FLOP/s (which), int8 OP/s or None, bandwidth B/s), from the datasheets
EXPECTED = {
    "a4000": (19.2 * T, ("fp16", 76.7 * T), 153.4 * T, 448 * G),
    "t4": (8.1 * T, ("fp16", 65 * T), 130 * T, 320 * G),
    "v100-sxm2": (15.7 * T, ("fp16", 125 * T), 62.8 * T, 900 * G),
    "v100-pcie": (14 * T, ("fp16", 112 * T), 56 * T, 900 * G),
    "a10": (31.2 * T, ("bf16", 125 * T), 250 * T, 600 * G),
    "a100-40gb": (19.5 * T, ("bf16", 312 * T), 624 * T, 1555 * G),
    "a100-80gb": (19.5 * T, ("bf16", 312 * T), 624 * T, 2039 * G),
    "l4": (30.3 * T, ("bf16", 121 * T), 242.5 * T, 300 * G),
    "l40s": (91.6 * T, ("bf16", 362.05 * T), 733 * T, 864 * G),
    "h100-sxm": (67 * T, ("bf16", 989.5 * T), 1979 * T, 3350 * G),
    "h100-pcie": (51 * T, ("bf16", 756.5 * T), 1513 * T, 2000 * G),
    "h200": (67 * T, ("bf16", 989.5 * T), 1979 * T, 4800 * G),
    "rtx-3090": (35.6 * T, ("bf16", 71 * T), 284 * T, 936 * G),
    "rtx-4090": (82.6 * T, ("bf16", 165.2 * T), 660.6 * T, 1008 * G),
    "a6000": (38.7 * T, ("bf16", 154.8 * T), 309.7 * T, 768 * G),
    "jetson-agx-orin": (5.3 * T, ("fp16", 42.6 * T), 85.2 * T, 204.8 * G),
    "jetson-orin-nano": (1.28 * T, ("fp16", 10.24 * T), 20.48 * T, 68 * G),
    "jetson-orin-nano-super": (2.09 * T, ("fp16", 16.7 * T), 33.4 * T, 102 * G),
    "rpi4": (48 * G, None, None, 12.8 * G),
    "rpi5": (153.6 * G, ("fp16", 307.2 * G), 614.4 * G, 17.1 * G),
    "xeon-8480": (7.17 * T, ("bf16", 114.7 * T), 229.4 * T, 307.2 * G),
    "epyc-9654": (7.37 * T, ("bf16", 14.7 * T), 29.5 * T, 460.8 * G),
    "apple-m2": (3.6 * T, None, None, 100 * G),
}


@pytest.mark.parametrize("ident", sorted(EXPECTED))
def test_figures_match_datasheets(ident: str) -> None:
    fp32, half, int8, bandwidth = EXPECTED[ident]
    spec = hw.get(ident)
    assert spec.peak_flops("fp32") == pytest.approx(fp32, rel=1e-9)
    if half is not None:
        assert spec.peak_flops(half[0]) == pytest.approx(half[1], rel=1e-9)
    if int8 is not None:
        assert spec.peak_flops("int8") == pytest.approx(int8, rel=1e-9)
    assert spec.bandwidth_bytes_per_s == pytest.approx(bandwidth, rel=1e-9)


def test_h100_sxm_dense_not_sparse() -> None:
    h100 = hw.get("h100-sxm")
    # datasheet: BF16/FP16 1,979 TFLOPS*, TF32 989*, FP8/INT8 3,958* (* = with sparsity): halve them
    assert h100.peak_flops("bf16") == pytest.approx(989.5e12)
    assert h100.peak_flops("bf16") != pytest.approx(1979e12)
    assert h100.peak_flops("fp16") == pytest.approx(989.5e12)
    assert h100.peak_flops("tf32") == pytest.approx(494.5e12, rel=1e-3)  # 494.5 or 494.7
    assert h100.peak_flops("fp8") == pytest.approx(1979e12)
    assert h100.peak_flops("int8") == pytest.approx(1979e12)
    assert h100.bandwidth_bytes_per_s == pytest.approx(3350e9)


def test_l4_bandwidth_is_300_not_3350() -> None:
    l4 = hw.get("l4")
    assert l4.bandwidth_bytes_per_s == pytest.approx(300e9)
    assert l4.peak_flops("bf16") == pytest.approx(121e12)  # 242 TFLOPS* sparse / 2


def test_a4000_ridge() -> None:
    a4000 = hw.get("rtx-a4000")
    assert a4000.bandwidth_bytes_per_s == pytest.approx(448e9)
    assert a4000.peak_flops("fp32") == pytest.approx(19.2e12)
    # 19.2e12 FLOP/s / 448e9 B/s = 19200 / 448 = 42.857 FLOP/B
    assert a4000.ridge_point("fp32") == pytest.approx(42.857, abs=1e-3)
    assert a4000.memory_bytes == 16_000_000_000
    assert a4000.onchip_bytes == 4_000_000


def test_a100_80gb_bandwidth() -> None:
    assert hw.get("a100-80gb").bandwidth_bytes_per_s == pytest.approx(2039e9)
    assert hw.get("a100").bandwidth_bytes_per_s == pytest.approx(1555e9)  # the alias is the 40GB part


def test_geforce_fp16_is_fp32_accumulate_rate() -> None:
    # GeForce: the FP16-accumulate tensor rate is twice the FP32-accumulate one; the catalogue keeps the
    # FP32-accumulate rate (3090: 71 not 142; 4090: 165.2 not 330.3) and says so
    assert hw.get("3090").peak_flops("fp16") == pytest.approx(71e12)
    assert hw.get("4090").peak_flops("fp16") == pytest.approx(165.2e12)
    for ident in ("rtx-3090", "rtx-4090"):
        assert "fp32-accumulate" in hw.get(ident).notes.lower()


def test_precisions_devices_lack() -> None:
    t4 = hw.get("t4")
    assert Precision.BF16 not in t4.peak_flops_per_s and Precision.TF32 not in t4.peak_flops_per_s
    v100 = hw.get("v100")
    assert Precision.BF16 not in v100.peak_flops_per_s and Precision.TF32 not in v100.peak_flops_per_s
    for ident in ("l4", "l40s", "h100-sxm", "h100-pcie", "h200", "rtx-4090"):  # Ada and Hopper have fp8
        assert Precision.FP8 in hw.get(ident).peak_flops_per_s
    for ident in ("a100", "a4000", "a10", "rtx-3090", "a6000", "t4"):  # Ampere and Turing have none
        assert Precision.FP8 not in hw.get(ident).peak_flops_per_s


def test_t4_bf16_falls_back_to_fp32() -> None:
    used, note = hw.get("t4").resolve("bf16")
    assert used is Precision.FP32
    assert note is not None and "bf16" in note and "fp32" in note
    assert hw.get("t4").resolve("fp16") == (Precision.FP16, None)


def test_nnie_has_no_bandwidth() -> None:
    nnie = hw.get("hi3519av100-nnie")
    assert nnie.bandwidth_bytes_per_s is None
    assert dict(nnie.peak_flops_per_s) == {Precision.INT8: pytest.approx(1.7e12)}
    with pytest.raises(HardwareError, match="no memory bandwidth is published"):
        nnie.ridge_point("int8")
    used, note = nnie.resolve("fp32")
    assert used is Precision.INT8
    assert note is not None and "fp32" in note and "int8" in note
    # a bandwidth given by the user makes the ridge point available: 1.7e12 / 12.8e9 = 132.8 FLOP/B
    assert nnie.with_bandwidth(12.8e9).ridge_point("int8") == pytest.approx(132.81, abs=0.01)


def test_custom_device() -> None:
    spec = hw.custom(peak_flops_per_s="19.2T", bandwidth_bytes_per_s="448G")
    assert spec.kind is Kind.CUSTOM
    assert spec.ridge_point() == pytest.approx(42.857, abs=1e-3)  # 19200 / 448


# ---- quantities ---------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("text", "dimension", "expected"),
    [
        ("19.2T", "flops", 1.92e13),
        ("19.2 TFLOP/s", "flops", 1.92e13),
        ("19.2 TFLOPS", "flops", 1.92e13),
        ("153.4 TOP/s", "flops", 1.534e14),
        ("448G", "bandwidth", 4.48e11),
        ("448 GB/s", "bandwidth", 4.48e11),
        ("16 GiB", "bytes", 17179869184),
        ("16 GB", "bytes", 1.6e10),
        ("4 MB", "bytes", 4e6),
        (448e9, "bandwidth", 4.48e11),
    ],
)
def test_parse_quantity(text: str | float, dimension: str, expected: float) -> None:
    assert parse_quantity(text, dimension) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    ("text", "dimension", "message"),
    [
        ("448 TFLOP/s", "bandwidth", "is not bytes/s"),
        ("abc", "flops", "is not a quantity"),
        ("-1", "flops", "is not a quantity"),
        ("0", "flops", "positive"),
        ("16 GiB/s", "bandwidth", "binary prefix"),
        ("19.2 GB/s", "flops", "is not FLOP/s"),
        (True, "bytes", "expected a number"),
    ],
)
def test_parse_quantity_errors(text: object, dimension: str, message: str) -> None:
    with pytest.raises(HardwareError, match=message):
        parse_quantity(text, dimension, what="peak")


# ---- files --------------------------------------------------------------------------------------

def test_load_good_file(tmp_path: Path) -> None:
    (spec,) = hw.load_file(_write(tmp_path, GOOD))
    assert spec.id == "my-npu" and spec.kind is Kind.NPU
    assert spec.peak_flops("int8") == pytest.approx(8e12)
    assert spec.bandwidth_bytes_per_s == pytest.approx(25.6e9)
    assert spec.memory_bytes == 4_000_000_000 and spec.onchip_bytes == 2_000_000
    # loading does not register
    with pytest.raises(HardwareError, match="unknown hardware"):
        hw.get("my-npu")


def test_typo_key_suggests_the_right_one(tmp_path: Path) -> None:
    text = _variant(drop=("bandwidth",), bandwith='"448 GB/s"')
    with pytest.raises(HardwareError, match=r"unknown key 'bandwith' \(did you mean 'bandwidth'\?\)"):
        hw.load_file(_write(tmp_path, text))


def test_missing_source(tmp_path: Path) -> None:
    with pytest.raises(HardwareError, match="'test-gpu': missing source"):
        hw.load_file(_write(tmp_path, _variant(drop=("source",))))


def test_empty_source(tmp_path: Path) -> None:
    with pytest.raises(HardwareError, match="a source .* is required"):
        hw.load_file(_write(tmp_path, _variant(source='"  "')))


def test_missing_bandwidth_says_how_to_mark_unpublished(tmp_path: Path) -> None:
    with pytest.raises(HardwareError, match=r'missing bandwidth \(write bandwidth = "unpublished"'):
        hw.load_file(_write(tmp_path, _variant(drop=("bandwidth",))))


def test_unpublished_bandwidth_loads(tmp_path: Path) -> None:
    (spec,) = hw.load_file(_write(tmp_path, _variant(bandwidth='"unpublished"')))
    assert spec.bandwidth_bytes_per_s is None


def test_ridge_below_bounds(tmp_path: Path) -> None:
    # 19.2 GFLOP/s / 448 GB/s = 0.043 FLOP/B: a missing "T", caught by the ridge-point check
    text = _variant(peak='fp32 = "19.2 GFLOP/s"')
    with pytest.raises(HardwareError, match=r"fp32 ridge point = 0\.04286 FLOP/B is outside the plausible range"):
        hw.load_file(_write(tmp_path, text))


def test_bandwidth_unit_slip(tmp_path: Path) -> None:
    with pytest.raises(HardwareError, match="bandwidth = 4.48e\\+14 B/s is outside the plausible range"):
        hw.load_file(_write(tmp_path, _variant(bandwidth='"448 TB/s"')))


def test_bandwidth_with_flops_unit(tmp_path: Path) -> None:
    with pytest.raises(HardwareError, match="bandwidth: unit 'FLOP/s' in '448 TFLOP/s' is not bytes/s"):
        hw.load_file(_write(tmp_path, _variant(bandwidth='"448 TFLOP/s"')))


def test_duplicate_id_in_file(tmp_path: Path) -> None:
    text = _variant() + "\n" + _variant(name='"Another"')
    path = _write(tmp_path, text)
    with pytest.raises(HardwareError, match="duplicate hardware id 'test-gpu'"):
        hw.load_file(path)


def test_duplicate_alias_in_file(tmp_path: Path) -> None:
    text = _variant(aliases='["tg"]') + "\n" + _variant(id='"other-gpu"', aliases='["tg"]')
    with pytest.raises(HardwareError, match="duplicate hardware id 'tg'"):
        hw.load_file(_write(tmp_path, text))


def test_invalid_toml(tmp_path: Path) -> None:
    path = _write(tmp_path, '[[device]]\nid = "x\n')
    with pytest.raises(HardwareError, match="is not valid TOML"):
        hw.load_file(path)


@pytest.mark.parametrize("bad_id", ['"RTX 4090"', '"Rtx-4090"', '"rtx 4090"', '"-gpu"'])
def test_bad_id(tmp_path: Path, bad_id: str) -> None:
    with pytest.raises(HardwareError, match="use lower-case letters, digits"):
        hw.load_file(_write(tmp_path, _variant(id=bad_id)))


def test_bad_kind(tmp_path: Path) -> None:
    with pytest.raises(HardwareError, match="kind 'tpu' is not one of"):
        hw.load_file(_write(tmp_path, _variant(kind='"tpu"')))


def test_unknown_precision(tmp_path: Path) -> None:
    with pytest.raises(HardwareError, match="unknown precision 'fp12'"):
        hw.load_file(_write(tmp_path, _variant(peak='fp12 = "1 TFLOP/s"')))


def test_no_device_tables(tmp_path: Path) -> None:
    with pytest.raises(HardwareError, match="unexpected top-level key 'devices'"):
        hw.load_file(_write(tmp_path, '[[devices]]\nid = "x"\n'))
    with pytest.raises(HardwareError, match="has no \\[\\[device\\]\\] tables"):
        hw.load_file(_write(tmp_path, "", name="empty.toml"))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(HardwareError, match="cannot read hardware file"):
        hw.load_file(tmp_path / "nope.toml")


def test_error_names_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, _variant(drop=("source",)), name="mine.toml")
    with pytest.raises(HardwareError) as info:
        hw.load_file(path)
    assert str(path) in str(info.value)


def test_to_toml_round_trip(tmp_path: Path) -> None:
    specs = [s for s in ALL if s.bandwidth_bytes_per_s is not None]
    path = _write(tmp_path, "\n".join(s.to_toml() for s in specs), name="catalogue.toml")
    loaded = hw.load_file(path)
    assert [s.as_dict() for s in loaded] == [s.as_dict() for s in specs]


def test_to_toml_round_trip_unpublished_bandwidth(tmp_path: Path) -> None:
    nnie = hw.get("hi3519av100-nnie")
    (loaded,) = hw.load_file(_write(tmp_path, nnie.to_toml()))
    assert loaded.as_dict() == nnie.as_dict()


def test_to_toml_round_trip_of_extra_values(tmp_path: Path) -> None:
    # what a measured profile keeps in extra: curves of float rows, scalars, flags, text, dates, tables;
    # a short spec still writes a [[device]] table, so two of them make one valid file
    extra = {
        "gemm_fp32": [[65_536.0, 12_288.0, 1.0000000000000002e-06], [1e18, 0.1, 3.0e-300]],
        "load_average": (0.5, 1.25),  # a tuple comes back as a list
        "threads": 2, "quick": True, "torch": 'a "quoted"\nline', "date": dt.date(2025, 1, 31),
        "nested": {"a": [], "b": {"c": -0.0}},
    }
    tiny = HardwareSpec(id="t", name="T", vendor="V", kind="cpu", peak_flops_per_s={"fp32": 1e9},
                        bandwidth_bytes_per_s=1e9, source="s", extra=extra)
    assert tiny.extra["load_average"] == [0.5, 1.25]
    text = tiny.to_toml() + "\n" + _spec().to_toml()
    first, second = hw.load_file(_write(tmp_path, text))
    assert first.as_dict() == tiny.as_dict() and second.id == "my-npu"
    assert first.extra["gemm_fp32"][0][2] == 1.0000000000000002e-06  # floats survive exactly


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_extra_is_refused_not_written_as_text(value: float, tmp_path: Path) -> None:
    # the old writer stored nan as the string "nan"; a non-finite figure is now refused where it enters,
    # by construction or from a file, with the key that holds it
    with pytest.raises(HardwareError, match=r"extra.gemm_fp32\[1\]\[2\] is .*finite numbers only"):
        _spec(extra={"gemm_fp32": [[1.0, 2.0, 3.0], [1.0, 2.0, value]]})
    text = _variant() + f"\n[device.extra]\nop_overhead_seconds = {value}\n"
    with pytest.raises(HardwareError, match=r"devices.toml: .*extra.op_overhead_seconds is .*finite numbers only"):
        hw.load_file(_write(tmp_path, text))


def test_extra_values_a_file_cannot_hold_are_refused() -> None:
    with pytest.raises(HardwareError, match=r"extra.when is a NoneType; a hardware file holds"):
        _spec(extra={"when": None})
    with pytest.raises(HardwareError, match=r"extra.t: key 1 is not a string"):
        _spec(extra={"t": {1: 2.0}})


# ---- registry -----------------------------------------------------------------------------------

def _spec(ident: str = "my-npu", **kw: object) -> HardwareSpec:
    args: dict[str, object] = {
        "id": ident, "name": "My NPU", "vendor": "Acme", "kind": "npu", "peak_flops_per_s": {"int8": 8e12},
        "bandwidth_bytes_per_s": 25.6e9, "source": "Acme datasheet", "aliases": ("acme-npu",),
    }
    args.update(kw)
    return HardwareSpec(**args)  # type: ignore[arg-type]


def test_register_and_get() -> None:
    spec = hw.register(_spec())
    assert hw.get("my-npu") is spec
    assert hw.get("MY-NPU") is spec
    assert hw.get("  My-Npu ") is spec
    assert hw.get("acme-npu") is spec
    assert hw.get("ACME-NPU") is spec
    assert spec in hw.devices() and spec in hw.devices("npu")
    assert spec not in hw.devices("gpu")


def test_register_existing_id_needs_replace() -> None:
    hw.register(_spec())
    with pytest.raises(HardwareError, match="'my-npu' is already taken by My NPU; pass replace=True"):
        hw.register(_spec(name="My NPU v2"))
    new = hw.register(_spec(name="My NPU v2", aliases=("npu2",)), replace=True)
    assert hw.get("my-npu") is new
    assert hw.get("npu2") is new
    with pytest.raises(HardwareError, match="unknown hardware 'acme-npu'"):
        hw.get("acme-npu")  # the replaced entry's alias went with it


def test_register_cannot_take_builtin_id_or_alias() -> None:
    with pytest.raises(HardwareError, match="'h100' is already taken by NVIDIA H100 SXM"):
        hw.register(_spec(aliases=("h100",)))
    with pytest.raises(HardwareError, match="'t4' is already taken"):
        hw.register(_spec("t4"))
    replaced = hw.register(_spec("t4", name="My T4", aliases=()), replace=True)
    assert hw.get("t4") is replaced


def test_register_rejects_non_spec() -> None:
    with pytest.raises(HardwareError, match="expects a HardwareSpec"):
        hw.register({"id": "x"})  # type: ignore[arg-type]


def test_reset_forgets_registered_devices() -> None:
    hw.register(_spec())
    hw.reset()
    with pytest.raises(HardwareError, match="unknown hardware 'my-npu'"):
        hw.get("my-npu")
    assert hw.get("t4").name == "NVIDIA T4"


def test_unregister() -> None:
    hw.register(_spec())
    hw.unregister("acme-npu")
    with pytest.raises(HardwareError):
        hw.get("my-npu")


def test_unknown_id_suggests() -> None:
    with pytest.raises(HardwareError, match=r"unknown hardware 'h100-sxn'; did you mean 'h100-sxm'"):
        hw.get("h100-sxn")
    with pytest.raises(HardwareError, match="rooflens hw list"):
        hw.get("zzzzzz")


def test_get_passes_specs_through() -> None:
    spec = _spec()
    assert hw.get(spec) is spec


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("aliases", '"h1"', "aliases must be a list of strings"),
        ("aliases", '["Bad Alias+"]', "alias 'bad alias\\+' must differ"),
        ("aliases", '["my-gpu"]', "alias 'my-gpu' must differ from the id"),
        ("extra", '"not a table"', "extra must be a table"),
    ],
)
def test_bad_aliases_and_extra_are_rejected(tmp_path, field, value, message):
    path = tmp_path / "bad.toml"
    path.write_text(
        '[[device]]\nid = "my-gpu"\nname = "My GPU"\nvendor = "me"\nkind = "gpu"\nbandwidth = "448 GB/s"\n'
        f'source = "test"\n{field} = {value}\n[device.peak]\nfp32 = "19.2 TFLOP/s"\n'
    )
    with pytest.raises(HardwareError, match=message):
        hw.load_file(path)


def test_unknown_kind_in_query_is_a_hardware_error():
    with pytest.raises(HardwareError, match="kind 'tpu' is not one of"):
        hw.devices("tpu")


# ---- alignment ------------------------------------------------------------------------------------------
# Expected values written out from docs/hardware.md ("Alignment"): NVIDIA tensor cores want 16 bytes of
# elements per matrix dimension, AVX-512 one 64-byte register, NEON one 16-byte register, a TPU 128.

@pytest.mark.parametrize(
    ("ident", "expected"),
    [
        ("a4000", {"tf32": 4, "fp16": 8, "bf16": 8, "int8": 16}),
        ("t4", {"fp16": 8, "int8": 16, "int4": 32}),
        ("v100-sxm2", {"fp16": 8}),
        ("h100-sxm", {"fp64": 2, "tf32": 4, "fp16": 8, "bf16": 8, "fp8": 16, "int8": 16}),
        ("jetson-orin-nano", {"fp16": 8, "bf16": 8, "int8": 16}),
        ("xeon-8480", {"fp64": 8, "fp32": 16, "fp16": 32, "bf16": 32, "int8": 64}),
        ("epyc-9654", {"fp64": 8, "fp32": 16, "bf16": 32, "int8": 64}),
        ("rpi5", {"fp64": 2, "fp32": 4, "fp16": 8, "int8": 16}),
        ("tpu-v4", {"bf16": 128, "int8": 128}),
        ("apple-m2", {}),
    ],
)
def test_catalogue_alignment(ident: str, expected: dict[str, int]) -> None:
    assert {p.value: n for p, n in hw.get(ident).alignment.items()} == expected


@pytest.mark.parametrize("spec", [s for s in ALL if s.vendor == "NVIDIA"], ids=lambda s: s.id)
def test_nvidia_alignment_is_16_bytes_and_never_fp32(spec: HardwareSpec) -> None:
    assert Precision.FP32 not in spec.alignment, "fp32 runs on the CUDA cores"
    assert Precision.FP16 in spec.alignment
    for p, n in spec.alignment.items():
        assert n * p.bits == 128, (p, n)


def test_alignment_from_a_file_and_back(tmp_path: Path) -> None:
    (spec,) = hw.load_file(_write(tmp_path, GOOD + "\n[device.alignment]\nint8 = 16\n"))
    assert dict(spec.alignment) == {Precision.INT8: 16}
    assert spec.as_dict()["alignment"] == {"int8": 16}
    assert "[device.alignment]" in spec.to_toml()
    (again,) = hw.load_file(_write(tmp_path, spec.to_toml(), name="again.toml"))
    assert again.as_dict() == spec.as_dict() and dict(again.alignment) == {Precision.INT8: 16}
    # without one: no table written, no key in the dict
    (plain,) = hw.load_file(_write(tmp_path, GOOD, name="plain.toml"))
    assert dict(plain.alignment) == {} and "alignment" not in plain.as_dict()
    assert "alignment" not in plain.to_toml()


def test_alignment_in_code_is_parsed_and_read_only() -> None:
    spec = HardwareSpec(id="x", name="X", vendor="V", kind="gpu", peak_flops_per_s={"fp16": 1e13},
                        bandwidth_bytes_per_s=1e11, source="s", alignment={"float16": 8})
    assert dict(spec.alignment) == {Precision.FP16: 8}
    with pytest.raises(TypeError):
        spec.alignment[Precision.FP16] = 16  # type: ignore[index]


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("int8 = 0", r"alignment.int8 = 0 must be a whole number of elements, 1..1024"),
        ("int8 = 2048", r"alignment.int8 = 2048 must be a whole number"),
        ("int8 = 8.0", r"alignment.int8 = 8.0 must be a whole number"),
        ("int8 = \"16\"", r"alignment.int8 = '16' must be a whole number"),
        ("int8 = true", r"alignment.int8 = True must be a whole number"),
        ("fp16 = 8", r"alignment.fp16 is given but the device has no fp16 peak"),
        ("fp17 = 8", r"alignment: unknown precision 'fp17'"),
    ],
)
def test_bad_alignment_is_rejected(tmp_path: Path, table: str, message: str) -> None:
    with pytest.raises(HardwareError, match=message) as info:
        hw.load_file(_write(tmp_path, GOOD + f"\n[device.alignment]\n{table}\n"))
    assert "my-npu" in str(info.value)


def test_alignment_must_be_a_table(tmp_path: Path) -> None:
    text = GOOD.replace('notes = "int8 only"', 'notes = "int8 only"\nalignment = 16')
    with pytest.raises(HardwareError, match="alignment must be a table of precision = elements"):
        hw.load_file(_write(tmp_path, text))


def test_interconnect_is_one_direction_and_round_trips() -> None:
    from rooflens.hardware import get

    # datasheets give both directions together: NVLink 3 600 GB/s (A100), NVLink 4 900 GB/s (H100 SXM)
    assert get("a100-80gb").interconnect_bytes_per_s == 600e9 / 2
    assert get("h100-sxm").interconnect_bytes_per_s == 900e9 / 2
    assert get("rpi5").interconnect_bytes_per_s is None


def test_interconnect_in_a_hardware_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from rooflens.hardware import get, load_file

    path = tmp_path / "dev.toml"
    path.write_text(get("h100-sxm").to_toml())
    (spec,) = load_file(path)
    assert spec.interconnect_bytes_per_s == 450e9
