"""Energy: the estimate (Horowitz's 45 nm table, per-device overrides) and measured energy (RAPL, NVML).

Every expected figure is worked out by hand in a comment, from the layer's shapes and the table's
picojoules (45 nm, Horowitz ISSCC 2014):

    fp32: multiply 3.7, add 0.9  -> MAC 4.6 pJ, other FLOP (mean of the two) 2.3 pJ
    fp16: multiply 1.1, add 0.4  -> MAC 1.5 pJ, other FLOP 0.75 pJ
    int8: multiply 0.2, add 0.03 -> MAC 0.23 pJ, other FLOP 0.115 pJ
    DRAM: 640 pJ per 32-bit access -> 160 pJ/byte; on chip (1 MB SRAM, 100 pJ per 64 bits) 12.5 pJ/byte
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest
import torch
from torch import nn

import rooflens
import rooflens.hardware as hw
from rooflens.analysis.energy import (
    HOROWITZ_45NM,
    device_figures,
    energy_table,
    estimate_energy,
)
from rooflens.errors import HardwareError, InputError
from rooflens.measurement.energy import (
    EnergyMeter,
    counter_delta_uj,
    measure_energy,
    measure_model_energy,
    probe_energy,
    rapl_zones,
)

from _helpers import tiny_net

PJ = 1e-12


# ---- the estimate, by hand ------------------------------------------------------------------------------


def small_conv(precision: str = "fp32", **options) -> rooflens.Report:
    # Conv2d(3 -> 4, 3x3), no padding, with bias, on 1x3x8x8: the output is 1x4x6x6
    torch.manual_seed(0)
    return rooflens.analyze(nn.Conv2d(3, 4, 3), input_size=(1, 3, 8, 8), precision=precision, **options)


def test_small_conv_fp32_by_hand():
    report = small_conv("fp32")
    t = report.total()
    # MACs = Cout x Hout x Wout x Cin x Kh x Kw = 4 x 6 x 6 x 3 x 3 x 3 = 3,888; bias adds 4 x 6 x 6 = 144
    # FLOPs (fma) = 2 x 3,888 + 144 = 7,920
    # bytes read: input 3x8x8 = 192 x 4 B = 768, weight 4x3x3x3 = 108 x 4 = 432, bias 4 x 4 = 16 -> 1,216
    # bytes written: 4x6x6 = 144 x 4 = 576; total 1,792
    assert (t.macs, t.flops, t.bytes_read, t.bytes_written) == (3_888, 7_920, 1_216, 576)
    e = estimate_energy(report)
    # compute: 3,888 MACs x 4.6 pJ = 17,884.8 pJ; 144 bias adds x 2.3 pJ = 331.2 pJ -> 18,216.0 pJ
    assert e.total.mac_joules == pytest.approx(17_884.8 * PJ)
    assert e.total.other_joules == pytest.approx(331.2 * PJ)
    assert e.total.compute_joules == pytest.approx(18_216.0 * PJ)
    # memory: 1,792 B x 160 pJ = 286,720 pJ, all of it DRAM
    assert e.total.dram_joules == pytest.approx(286_720 * PJ)
    assert e.total.onchip_joules == 0.0
    assert e.total.dram_bytes == 1_792
    # total 304,936 pJ; one sample (batch 1): joules per inference = total, inferences per joule = 1 / total
    assert e.joules == pytest.approx(304_936 * PJ)
    assert e.samples == 1
    assert e.joules_per_inference == pytest.approx(304_936 * PJ)
    assert e.inferences_per_joule == pytest.approx(1 / (304_936 * PJ))
    # memory share 286,720 / 304,936 = 0.94026: DRAM dominates even a 3x3 convolution this small
    assert e.total.memory_share == pytest.approx(0.94026, abs=1e-5)
    assert e.total.dominant == "memory"
    assert e.used_precision.value == "fp32" and e.notes == ()
    assert e.table is HOROWITZ_45NM
    assert "Horowitz" in e.table.source and "ISSCC 2014" in e.table.source


def test_small_conv_int8_by_hand():
    report = small_conv("int8")
    t = report.total()
    # the same counts; int8 sets every floating-point tensor to 1 byte per element:
    # read 192 + 108 + 4 = 304 B, written 144 B; total 448
    assert (t.macs, t.flops, t.bytes_read, t.bytes_written) == (3_888, 7_920, 304, 144)
    e = estimate_energy(report)
    # compute: 3,888 x 0.23 pJ = 894.24 pJ; 144 x 0.115 pJ = 16.56 pJ -> 910.8 pJ
    assert e.total.compute_joules == pytest.approx(910.8 * PJ)
    # memory: 448 B x 160 pJ = 71,680 pJ; total 72,590.8 pJ
    assert e.total.memory_joules == pytest.approx(71_680 * PJ)
    assert e.joules == pytest.approx(72_590.8 * PJ)
    # int8 costs 304,936 / 72,590.8 = 4.2 x less, almost all of it from a quarter of the bytes
    assert estimate_energy(small_conv("fp32")).joules / e.joules == pytest.approx(4.2008, abs=1e-4)
    assert e.used_precision.value == "int8"


def test_the_flop_convention_does_not_change_the_joules():
    # the hardware does the same work whatever the count's convention: a MAC is a multiply and an add
    # (4.6 pJ), 3,888 MACs = 17,884.8 pJ; under exact the bias adds fill the dot products' missing adds
    # (FLOPs 2 x 3,888 = 7,776, no other FLOPs); under fma they are 144 other FLOPs at 2.3 pJ = 331.2 pJ
    exact = estimate_energy(small_conv("fp32", convention="exact"))
    fma = estimate_energy(small_conv("fp32"))
    assert exact.total.mac_joules == fma.total.mac_joules == pytest.approx(17_884.8 * PJ)
    assert exact.total.other_joules == 0.0 and fma.total.other_joules == pytest.approx(331.2 * PJ)
    # without the bias: FLOPs = 7,776 - 144 = 7,632 under exact, still 3,888 MACs at 4.6 pJ
    torch.manual_seed(0)
    report = rooflens.analyze(nn.Conv2d(3, 4, 3, bias=False), input_size=(1, 3, 8, 8), convention="exact")
    assert report.total().flops == 7_632
    assert estimate_energy(report).total.compute_joules == pytest.approx(17_884.8 * PJ)


def test_linear_layer_by_hand():
    torch.manual_seed(0)
    report = rooflens.analyze(nn.Linear(16, 8), input_size=(2, 16))
    t = report.total()
    # addmm: MACs = 2 x 8 x 16 = 256, FLOPs = 2 x 256 + 16 bias adds = 528
    # bytes: input 2x16 = 32 x 4 = 128, weight 8x16 = 128 x 4 = 512, bias 8 x 4 = 32 -> 672 read; 2x8 x 4 = 64 written
    assert (t.macs, t.flops, t.bytes_read, t.bytes_written) == (256, 528, 672, 64)
    e = estimate_energy(report)
    # compute 256 x 4.6 + 16 x 2.3 = 1,177.6 + 36.8 = 1,214.4 pJ; memory 736 x 160 = 117,760 pJ; total 118,974.4 pJ
    assert e.total.compute_joules == pytest.approx(1_214.4 * PJ)
    assert e.total.memory_joules == pytest.approx(117_760 * PJ)
    # two samples in the batch: 59,487.2 pJ per inference
    assert e.samples == 2
    assert e.joules_per_inference == pytest.approx(59_487.2 * PJ)
    assert e.inferences_per_joule == pytest.approx(2 / (118_974.4 * PJ))
    assert estimate_energy(report, samples=1).joules_per_inference == pytest.approx(118_974.4 * PJ)
    with pytest.raises(InputError, match="samples"):
        estimate_energy(report, samples=0)


def test_dram_dominates_elementwise_and_small_layers_big_matmuls_compute():
    # the seed claim: moving a byte from DRAM (160 pJ) costs ~70 fp32 FLOPs (2.3 pJ each)
    model = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.ReLU())
    torch.manual_seed(0)
    e = estimate_energy(rooflens.analyze(model, input_size=(1, 16, 32, 32)))
    relu = e.by_module()["1"]
    # ReLU on 16x32x32 = 16,384 elements: 16,384 FLOPs x 2.3 = 37,683.2 pJ; bytes 2 x 65,536 x 160 = 20,971,520 pJ
    assert relu.compute_joules == pytest.approx(37_683.2 * PJ)
    assert relu.memory_joules == pytest.approx(20_971_520 * PJ)
    assert relu.memory_share == pytest.approx(20_971_520 / (20_971_520 + 37_683.2))  # 0.9982
    conv = e.by_module()["0"]
    # conv: MACs 16x32x32 x 16x3x3 = 2,359,296 x 4.6 = 10,852,761.6 pJ; bias 16,384 x 2.3 = 37,683.2 pJ
    # bytes: in 65,536 + weight 2,304 x 4 = 9,216 + bias 64 + out 65,536 = 140,352 x 160 = 22,456,320 pJ
    assert conv.compute_joules == pytest.approx(10_890_444.8 * PJ)
    assert conv.memory_joules == pytest.approx(22_456_320 * PJ)
    assert relu.dominant == conv.dominant == e.by_module()[""].dominant == "memory"

    # a 1024 x 512 by 512 x 512 matrix product reuses each byte enough for the arithmetic to dominate in fp32
    torch.manual_seed(0)
    big = rooflens.analyze(nn.Linear(512, 512), input_size=(1024, 512))
    fp32 = estimate_energy(big).total
    # MACs 1024 x 512 x 512 = 268,435,456 x 4.6 = 1,234,803,097.6 pJ; bias 524,288 x 2.3 = 1,205,862.4 pJ
    # bytes: in 2,097,152 + weight 1,048,576 + bias 2,048 + out 2,097,152 = 5,244,928 x 160 = 839,188,480 pJ
    assert fp32.compute_joules == pytest.approx(1_236_008_960 * PJ)
    assert fp32.memory_joules == pytest.approx(839_188_480 * PJ)
    assert fp32.dominant == "compute"
    # in int8 the arithmetic costs 20 x less and the bytes 4 x less: memory dominates again
    # compute 268,435,456 x 0.23 + 524,288 x 0.115 = 61,740,154.88 + 60,293.12 = 61,800,448 pJ
    # memory 5,244,928 / 4 = 1,311,232 B x 160 = 209,797,120 pJ
    int8 = estimate_energy(rooflens.analyze(nn.Linear(512, 512), input_size=(1024, 512), precision="int8")).total
    assert int8.compute_joules == pytest.approx(61_800_448 * PJ)
    assert int8.memory_joules == pytest.approx(209_797_120 * PJ)
    assert int8.dominant == "memory"


def test_module_energies_add_up_to_the_total():
    report = rooflens.analyze(tiny_net(), input_size=(2, 3, 16, 16), hardware="a4000")
    e = estimate_energy(report)
    assert len(e.ops) == len(report.records)
    assert e.by_module()[""] == e.total
    assert e.total.joules == pytest.approx(sum(op.joules for op in e.ops))
    for path, node in report.modules.items():
        own = sum(op.joules for r, op in zip(report.records, e.ops) if r.module == path)
        children = sum(e.by_module()[c].joules for c in node.children)
        assert e.by_module()[path].joules == pytest.approx(own + children), path
        assert e.by_module()[path].dominant in ("compute", "memory", "none")
    assert e.by_module()["aux"].joules == 0 and e.by_module()["aux"].dominant == "none"  # never called
    ops = e.by_operator(report.records)
    assert sum(o.calls for o in ops) == len(report.records)
    assert sum(o.energy.joules for o in ops) == pytest.approx(e.total.joules)
    assert [o.energy.joules for o in ops] == sorted((o.energy.joules for o in ops), reverse=True)
    data = json.loads(json.dumps(e.as_dict()))
    assert data["joules"] == pytest.approx(e.joules)
    assert data["samples"] == 2
    assert data["modules"][""]["dominant"] == e.total.dominant
    assert data["table"]["provenance"]["dram"].startswith("M. Horowitz")


def test_precision_without_figures_uses_the_nearest_and_says_so():
    e = estimate_energy(small_conv("bf16"))
    # bf16 takes the fp16 figures: 3,888 x 1.5 + 144 x 0.75 = 5,832 + 108 = 5,940 pJ
    # bytes at 2 per element: read 384 + 216 + 8 = 608, written 288 -> 896 x 160 = 143,360 pJ
    assert e.used_precision.value == "fp16"
    assert e.total.compute_joules == pytest.approx(5_940 * PJ)
    assert e.total.memory_joules == pytest.approx(143_360 * PJ)
    assert any("no bf16 figures" in n and "fp16" in n for n in e.notes)
    assert HOROWITZ_45NM.resolve("int4")[0].value == "int8"
    assert HOROWITZ_45NM.resolve("fp64")[0].value == "fp32"
    assert HOROWITZ_45NM.resolve("tf32")[0].value == "fp32"
    assert HOROWITZ_45NM.resolve("fp8")[0].value == "fp16"


def test_onchip_split_keeps_activations_of_operators_that_fit_on_chip():
    report = small_conv("fp32", hardware="a4000")  # 4 MB of L2
    e = estimate_energy(report, onchip=True)
    # the conv's 1,792 B fit in 4 MB: weight 432 + bias 16 = 448 B from DRAM x 160 = 71,680 pJ;
    # input 768 + output 576 = 1,344 B on chip x 12.5 = 16,800 pJ; compute as before 18,216 pJ -> 106,696 pJ
    assert (e.total.dram_bytes, e.total.onchip_bytes) == (448, 1_344)
    assert e.total.dram_joules == pytest.approx(71_680 * PJ)
    assert e.total.onchip_joules == pytest.approx(16_800 * PJ)
    assert e.joules == pytest.approx(106_696 * PJ)
    assert e.memory == "onchip" and e.onchip_capacity_bytes == 4_000_000
    # an operator larger than the on-chip memory: every byte from DRAM
    small = hw.HardwareSpec(id="tiny-cache", name="tiny cache", vendor="test", kind="custom",
                            peak_flops_per_s={"fp32": 1e12}, bandwidth_bytes_per_s=1e11, onchip_bytes=1_000,
                            source="test")
    assert estimate_energy(report, hardware=small, onchip=True).total.dram_bytes == 1_792
    # no on-chip size: all DRAM, and a note says why
    none = estimate_energy(small_conv("fp32"), onchip=True)
    assert none.memory == "dram" and none.total.dram_bytes == 1_792
    assert any("on-chip memory size" in n for n in none.notes)


# ---- overrides ----------------------------------------------------------------------------------------


DEVICE = """
[[device]]
id = "{id}"
name = "Energy test device"
vendor = "test"
kind = "custom"
bandwidth = "100 GB/s"
onchip = "{onchip}"
source = "a test"

[device.peak]
fp32 = "10 TFLOP/s"
{extra}
"""


def device(tmp_path: Path, extra: str = "", ident: str = "energy-test", onchip: str = "1 MB") -> hw.HardwareSpec:
    path = tmp_path / f"{ident}.toml"
    path.write_text(DEVICE.format(id=ident, extra=extra, onchip=onchip), encoding="utf-8")
    (spec,) = hw.load_file(path)
    return spec


def test_user_hardware_file_extra_energy_overrides_the_default(tmp_path):
    spec = device(tmp_path, """
[device.extra.energy]
source = "my measurements"
dram_pj_per_byte = 20
pj_per_flop = { fp32 = 1.0 }
""")
    e = estimate_energy(small_conv("fp32", hardware=spec))
    # 1 pJ per FLOP, a MAC two: 3,888 x 2.0 + 144 x 1.0 = 7,920 pJ; memory 1,792 x 20 = 35,840 pJ; total 43,760 pJ
    assert e.total.compute_joules == pytest.approx(7_920 * PJ)
    assert e.total.memory_joules == pytest.approx(35_840 * PJ)
    assert e.joules == pytest.approx(43_760 * PJ)
    assert e.table.provenance["fp32"] == "my measurements" == e.table.provenance["dram"]
    assert e.table.provenance["int8"].startswith("M. Horowitz")  # figures the file does not give stay
    assert e.table.onchip_pj_per_byte == 12.5


def test_pj_per_mac_alone_prices_another_flop_at_half_a_mac(tmp_path):
    spec = device(tmp_path, """
[device.extra.energy]
pj_per_mac = { int8 = 0.5 }
""")
    e = estimate_energy(small_conv("int8", hardware=spec))
    # 3,888 x 0.5 + 144 x 0.25 = 1,944 + 36 = 1,980 pJ; the source defaults to the hardware file's
    assert e.total.compute_joules == pytest.approx(1_980 * PJ)
    assert "energy-test" in e.table.provenance["int8"]


def test_data_file_figures_by_device_id():
    figures = device_figures()
    assert set(figures) >= {"v100-sxm2", "a100-40gb"}
    for ident, f in figures.items():
        hw.get(ident)  # every entry names a catalogue device
        assert f.source
    e = estimate_energy(small_conv("fp32", hardware="v100-sxm2"))
    # HBM2 3.97 pJ/bit x 8 = 31.76 pJ/byte: 1,792 x 31.76 = 56,913.92 pJ; compute the default 18,216 pJ
    assert e.total.memory_joules == pytest.approx(56_913.92 * PJ)
    assert e.total.compute_joules == pytest.approx(18_216 * PJ)
    assert "HBM2" in e.table.provenance["dram"]
    assert any("HBM2" in n for n in e.table.notes)


def test_hardware_file_wins_over_the_data_file(tmp_path):
    spec = device(tmp_path, "[device.extra.energy]\nsource = \"mine\"\ndram_pj_per_byte = 10\n", ident="v100-sxm2")
    # both layers apply to id v100-sxm2; the hardware file's comes last: 1,792 x 10 = 17,920 pJ
    assert estimate_energy(small_conv("fp32", hardware=spec)).total.memory_joules == pytest.approx(17_920 * PJ)
    assert energy_table(spec).name == "Horowitz 45 nm + energy.toml[v100-sxm2] + v100-sxm2 extra.energy"


def test_energy_file_and_override_errors(tmp_path):
    good = tmp_path / "energy.toml"
    good.write_text('[[energy]]\nid = "x"\nsource = "s"\npj_per_flop = { bf16 = 0.5 }\n', encoding="utf-8")
    (figures,) = device_figures(good).values()
    assert figures.arithmetic[rooflens.Precision.BF16].mac_pj == 1.0
    cases = {
        '[[energy]]\nid = "x"\nsource = "s"\ndram_pj_per_bytes = 1\n': "did you mean 'dram_pj_per_byte'",
        '[[energy]]\nid = "x"\ndram_pj_per_byte = 1\n': "source",
        '[[energy]]\nsource = "s"\n': "no id",
        '[[energy]]\nid = "x"\nsource = "s"\ndram_pj_per_byte = -1\n': "positive",
        '[[energy]]\nid = "x"\nsource = "s"\npj_per_flop = { fp12 = 1 }\n': "unknown precision",
        '[[energy]]\nid = "x"\nsource = "s"\n[[energy]]\nid = "x"\nsource = "t"\n': "duplicate",
        '[[device]]\nid = "x"\n': "unexpected top-level key",
    }
    for text, message in cases.items():
        good.write_text(text, encoding="utf-8")
        with pytest.raises(HardwareError, match=message):
            device_figures(good)
    spec = device(tmp_path, "[device.extra]\nenergy = 3\n")
    with pytest.raises(HardwareError, match="extra.energy must be a table"):
        energy_table(spec)


# ---- measured energy: RAPL ----------------------------------------------------------------------------

MAX_RANGE = 262_143_328_850


def fake_powercap(root: Path) -> Path:
    """A powercap tree as Linux lays it out on a one-socket Intel machine with a DRAM domain."""
    zones = {
        "intel-rapl:0": ("package-0", 1_000_000, MAX_RANGE),
        "intel-rapl:0:0": ("core", 400_000, MAX_RANGE),  # inside the package: not added
        "intel-rapl:0:2": ("dram", 500_000, 65_712_999_613),
        "intel-rapl:1": ("psys", 9_000_000, MAX_RANGE),  # the platform, contains the package: not added
        "intel-rapl-mmio:0": ("package-0", 1_000_000, MAX_RANGE),  # the same package through MMIO: skipped
    }
    for folder, (name, energy, max_range) in zones.items():
        zone = root / folder
        zone.mkdir(parents=True)
        (zone / "name").write_text(f"{name}\n")
        (zone / "energy_uj").write_text(f"{energy}\n")
        (zone / "max_energy_range_uj").write_text(f"{max_range}\n")
    return root


def set_counter(root: Path, zone: str, value: int) -> None:
    (root / zone / "energy_uj").write_text(f"{value}\n")


def test_rapl_zones_are_packages_and_dram(tmp_path):
    zones, reason = rapl_zones(fake_powercap(tmp_path))
    assert reason is None
    assert [(z.label, z.max_energy_range_uj) for z in zones] == [("package-0", MAX_RANGE), ("dram-0", 65_712_999_613)]


def test_counter_delta_undoes_one_wrap():
    assert counter_delta_uj(100, 350, 1_000) == 250
    # wrapped: from 900 up to the range 1,000 is 100, then 0 to 50 is 50 more
    assert counter_delta_uj(900, 50, 1_000) == 150
    assert counter_delta_uj(900, 50, 0) == -850  # unknown range: taken as no wrap


def test_rapl_meter_reads_a_fake_sysfs_tree_with_a_wrap(tmp_path):
    root = fake_powercap(tmp_path)
    set_counter(root, "intel-rapl:0:2", 65_712_999_613 - 250_000)  # the DRAM counter is about to wrap
    with EnergyMeter("cpu", rapl_root=root) as meter:
        set_counter(root, "intel-rapl:0", 4_000_000)  # +3,000,000 uJ = 3 J
        set_counter(root, "intel-rapl:0:0", 9_999_999)  # core: not added
        set_counter(root, "intel-rapl:0:2", 250_000)  # wrapped: 250,000 to the range + 250,000 = 0.5 J
    reading = meter.reading
    assert reading.available and reading.counter == "rapl"
    assert dict(reading.domains) == {"package-0": pytest.approx(3.0), "dram-0": pytest.approx(0.5)}
    assert reading.joules == pytest.approx(3.5)
    assert reading.seconds > 0 and reading.watts == pytest.approx(3.5 / reading.seconds)
    assert any("whole CPU package" in n for n in reading.notes)
    assert json.loads(json.dumps(reading.as_dict()))["joules"] == pytest.approx(3.5)


def test_rapl_not_present_says_so(tmp_path):
    reason = probe_energy("cpu", rapl_root=tmp_path / "missing")
    assert reason is not None and "no RAPL energy counters" in reason and "intel-rapl" in reason
    with EnergyMeter("cpu", rapl_root=tmp_path / "missing") as meter:
        pass
    assert meter.reading.joules is None and meter.reading.watts is None
    assert meter.reading.reason == reason


def test_rapl_permission_denied_says_what_to_do(tmp_path, monkeypatch):
    root = fake_powercap(tmp_path)
    read_text = Path.read_text

    def root_only(self: Path, *args, **kwargs) -> str:
        if self.name == "energy_uj":
            raise PermissionError(13, "Permission denied", str(self))
        return read_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", root_only)
    reason = probe_energy("cpu", rapl_root=root)
    assert reason is not None
    assert "permission denied" in reason and "root" in reason and "chmod" in reason


def test_the_reading_exists_only_after_the_block(tmp_path):
    meter = EnergyMeter("cpu", rapl_root=fake_powercap(tmp_path))
    with pytest.raises(InputError, match="block has ended"):
        meter.reading  # noqa: B018


def test_measure_energy_counts_joules_per_call(tmp_path):
    root = fake_powercap(tmp_path)
    counter = [1_000_000]

    def work() -> None:  # each call spends 2 J of package energy
        counter[0] += 2_000_000
        set_counter(root, "intel-rapl:0", counter[0])

    m = measure_energy(work, warmup=2, min_calls=5, min_seconds=0, batch_size=4, rapl_root=root)
    # 2 warm-up calls before the meter starts, then 5 measured: 10 J over 5 calls of 4 inferences each
    assert m.available and m.calls == 5
    assert m.reading.joules == pytest.approx(10.0)
    assert m.joules_per_call == pytest.approx(2.0)
    assert m.joules_per_inference == pytest.approx(0.5)
    assert m.inferences_per_joule == pytest.approx(2.0)
    assert m.idle is None and m.dynamic_joules_per_inference is None
    assert json.loads(json.dumps(m.as_dict()))["joules_per_inference"] == pytest.approx(0.5)


def test_measure_energy_subtracts_idle_power(tmp_path):
    root = fake_powercap(tmp_path)
    m = measure_energy(lambda: None, min_calls=3, min_seconds=0, idle_seconds=0.01, rapl_root=root)
    # the counters never move: 0 W idle, 0 J per call
    assert m.idle is not None and m.idle_watts == 0.0
    assert m.dynamic_joules_per_inference == 0.0


def test_measure_energy_does_not_run_without_a_counter(tmp_path):
    calls = []
    m = measure_energy(lambda: calls.append(1), rapl_root=tmp_path / "missing")
    assert calls == [] and m.calls == 0
    assert not m.available and m.joules_per_inference is None and m.inferences_per_joule is None
    assert m.reason is not None and "no RAPL" in m.reason


def test_measure_model_energy_on_a_fake_tree(tmp_path):
    root = fake_powercap(tmp_path)
    model = nn.Linear(8, 4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    m = measure_model_energy(model, input_size=(3, 8), warmup=1, min_calls=3, min_seconds=0, rapl_root=root)
    assert m.available and m.calls >= 3 and m.batch_size == 3
    assert m.joules_per_inference == 0.0  # the fake counters do not move
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    missing = measure_model_energy(model, input_size=(3, 8), rapl_root=tmp_path / "missing")
    assert not missing.available and "no RAPL" in (missing.reason or "")


# ---- measured energy: NVML ----------------------------------------------------------------------------


class NVMLError(Exception):
    pass


def fake_pynvml(energy_mj: list[int], *, supported: bool = True) -> types.ModuleType:
    module = types.ModuleType("pynvml")
    state = {"init": 0}

    def total_energy(handle: object) -> int:
        if not supported:
            raise NVMLError("Not Supported")
        return energy_mj[0]

    module.NVMLError = NVMLError  # type: ignore[attr-defined]
    module.nvmlInit = lambda: state.__setitem__("init", state["init"] + 1)  # type: ignore[attr-defined]
    module.nvmlShutdown = lambda: state.__setitem__("init", state["init"] - 1)  # type: ignore[attr-defined]
    module.nvmlDeviceGetHandleByIndex = lambda index: ("gpu", index)  # type: ignore[attr-defined]
    module.nvmlDeviceGetHandleByUUID = lambda uuid: ("gpu", uuid)  # type: ignore[attr-defined]
    module.nvmlDeviceGetTotalEnergyConsumption = total_energy  # type: ignore[attr-defined]
    module.state = state  # type: ignore[attr-defined]
    return module


def test_nvml_meter_reads_millijoules(monkeypatch):
    energy = [5_000]
    module = fake_pynvml(energy)
    monkeypatch.setitem(sys.modules, "pynvml", module)
    with EnergyMeter("cuda:0") as meter:
        energy[0] += 12_345  # mJ
    assert meter.reading.counter == "nvml"
    assert meter.reading.joules == pytest.approx(12.345)
    assert dict(meter.reading.domains) == {"gpu-0": pytest.approx(12.345)}
    assert module.state["init"] == 0  # shut down again


def test_nvml_not_available_says_what_to_do(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml raises ImportError
    reason = probe_energy("cuda")
    assert reason is not None and "nvidia-ml-py" in reason
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml([0], supported=False))
    reason = probe_energy("cuda:1")
    assert reason is not None and "GPU 1" in reason and "Volta" in reason


def test_other_devices_have_no_counter():
    reason = probe_energy("mps")
    assert reason is not None and "Apple" in reason
    with pytest.raises(InputError, match="not a device"):
        EnergyMeter("gpu-please")
