"""The roofline plot: files in each format, both levels, the errors, no global matplotlib state, reproducible SVG."""

from __future__ import annotations

import dataclasses
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import torch
from torch import nn

import rooflens
from rooflens.errors import InputError
from rooflens.hardware import custom

pytest.importorskip("matplotlib")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class Tiny(nn.Module):
    """conv + relu + linear with a flatten (a view: no FLOPs, no bytes) in the model's own forward."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(8 * 8 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.relu(self.conv(x)), 1))


class Residual(nn.Module):
    """A module with children that also runs an operator itself (the residual add) and a cat without FLOPs."""

    def __init__(self) -> None:
        super().__init__()
        self.block = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x) + x
        return torch.cat([y, x], dim=1)


HW = custom(peak_flops_per_s="19.2T", bandwidth_bytes_per_s="448G", name="RTX A4000")


@pytest.fixture(scope="module")
def report() -> rooflens.Report:
    return rooflens.analyze(Tiny(), input_size=(1, 3, 8, 8), hardware=HW)


def test_png(report, tmp_path: Path) -> None:
    out = report.plot_roofline(tmp_path / "roof.png")
    assert out == tmp_path / "roof.png"
    data = out.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 10_000


def test_svg_parses_and_names_the_ridge(report, tmp_path: Path) -> None:
    out = report.plot_roofline(str(tmp_path / "roof.svg"))
    assert isinstance(out, Path)
    root = ET.parse(out).getroot()
    assert root.tag.endswith("svg")
    text = out.read_text(encoding="utf-8")
    # glyphs are paths, but matplotlib keeps each text as a comment
    assert "ridge 42.9 FLOP/B" in text
    assert "fp32 peak 19.2 TFLOP/s" in text and "448 GB/s" in text
    assert "whole model" in text
    assert "Tiny on RTX A4000, fp32" in text


def test_pdf(report, tmp_path: Path) -> None:
    out = report.plot_roofline(tmp_path / "roof.PDF")
    assert out.read_bytes().startswith(b"%PDF")


def test_operator_level_and_options(report, tmp_path: Path) -> None:
    out = report.plot_roofline(tmp_path / "ops.svg", level="operator", annotate=1, title="my title", dpi=72)
    text = out.read_text(encoding="utf-8")
    assert "my title" in text
    assert "addmm · fc" in text  # the operator with the most time is labelled
    assert "relu · relu" not in text and "convolution · conv" not in text  # one label asked for
    assert "operators; marker area" in text


def test_module_level_own_operators_and_footnote(tmp_path: Path) -> None:
    r = rooflens.analyze(Residual(), input_size=(1, 4, 8, 8), hardware=HW)
    text = r.plot_roofline(tmp_path / "m.svg", annotate=10).read_text(encoding="utf-8")
    assert "block.0" in text and "block.1" in text
    assert "Residual (own)" in text  # the add the root runs itself is a point of its own
    ops = r.plot_roofline(tmp_path / "o.svg", level="operator").read_text(encoding="utf-8")
    assert "1 memory-only operator (" in ops and "not drawn: no FLOPs" in ops  # the cat
    deep = r.plot_roofline(tmp_path / "d.svg", depth=1, annotate=10).read_text(encoding="utf-8")
    assert "<!-- block -->" in deep and "block.0" not in deep  # folded into "block"
    assert "modules to depth 1" in deep


def test_bad_suffix(report, tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"'\.jpg'.*\.png, \.svg, \.pdf"):
        report.plot_roofline(tmp_path / "roof.jpg")
    with pytest.raises(InputError, match="no suffix"):
        report.plot_roofline(tmp_path / "roof")
    assert not list(tmp_path.iterdir())


def test_bad_options(report, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="level"):
        report.plot_roofline(tmp_path / "a.png", level="layer")
    with pytest.raises(InputError, match="depth"):
        report.plot_roofline(tmp_path / "a.png", depth=-1)
    with pytest.raises(InputError, match="folder"):
        report.plot_roofline(tmp_path / "missing" / "a.png")


def test_no_hardware(tmp_path: Path) -> None:
    r = rooflens.analyze(Tiny(), input_size=(1, 3, 8, 8))
    with pytest.raises(InputError, match="no hardware"):
        r.plot_roofline(tmp_path / "roof.png")
    assert not (tmp_path / "roof.png").exists()


def test_without_matplotlib(report, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    with pytest.raises(InputError, match=r"pip install 'rooflens\[plot\]'"):
        report.plot_roofline(tmp_path / "roof.png")


def test_leaves_matplotlib_state_alone(report, tmp_path: Path) -> None:
    import matplotlib

    pyplot_before = "matplotlib.pyplot" in sys.modules
    backend = matplotlib.get_backend(auto_select=False)  # without resolving (which imports pyplot)
    keys = ["svg.hashsalt", "svg.fonttype", "pdf.fonttype", "font.size", "axes.grid", "figure.figsize",
            "axes.unicode_minus", "savefig.dpi"]
    rc = matplotlib.rcParams.copy()
    for suffix in ("png", "svg", "pdf"):
        report.plot_roofline(tmp_path / f"roof.{suffix}")
    assert matplotlib.get_backend(auto_select=False) == backend
    after = matplotlib.rcParams.copy()
    assert {k: after[k] for k in keys} == {k: rc[k] for k in keys}
    assert {k: after[k] for k in after if k != "backend"} == {k: rc[k] for k in rc if k != "backend"}
    if not pyplot_before:
        assert "matplotlib.pyplot" not in sys.modules
    else:
        assert sys.modules["matplotlib.pyplot"].get_fignums() == []


def test_svg_is_reproducible(report, tmp_path: Path) -> None:
    a = report.plot_roofline(tmp_path / "a.svg").read_bytes()
    b = report.plot_roofline(tmp_path / "b.svg").read_bytes()
    assert a == b
    assert b"<dc:date>" not in a


def test_footnote_names_uncounted_operators(report, tmp_path: Path) -> None:
    # pretend the relu had no formula: no FLOPs counted, its bytes still are
    records = tuple(
        dataclasses.replace(r, supported=False, cost=dataclasses.replace(r.cost, flops=0)) if r.op == "aten.relu" else r
        for r in report.records
    )
    text = dataclasses.replace(report, records=records).plot_roofline(tmp_path / "u.svg", level="operator")
    svg = text.read_text(encoding="utf-8")
    assert "1 operator (" in svg and "not drawn: FLOPs not counted (no formula)" in svg
    assert "The FLOPs of aten.relu are not counted" in svg  # the roofline's note


@pytest.mark.parametrize("depth", [None, 0, 1, 2])
def test_module_points_split_the_whole_time(depth) -> None:
    from rooflens.report.plot import _module_points

    r = rooflens.analyze(Residual(), input_size=(1, 4, 8, 8), hardware=HW)
    points = _module_points(r, r.roofline, depth)
    assert sum(p.timing.seconds for p in points) == pytest.approx(r.roofline.total.seconds)
    assert sum(p.timing.flops for p in points) == r.roofline.total.flops
