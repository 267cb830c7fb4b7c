"""Renderings of a small deterministic model: the rich table (golden files), JSON, CSV, Markdown, HTML.

The golden files in tests/golden/ follow the formulas: when a formula changes on purpose, rewrite them
with ``pytest tests/test_render.py --update-golden`` and review the diff.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import subprocess
import sys

import pytest
from _helpers import tiny_net

import rooflens
from rooflens.report.formats import UNSUPPORTED_LABEL, module_rows, tree_prefixes
from rooflens.report.terminal import fit_columns
from rooflens.report.units import ByteUnit
from rooflens.types import Cost, OpRecord, TensorMeta


@pytest.fixture(scope="module")
def report() -> rooflens.Report:
    return rooflens.analyze(tiny_net(), input_size=(1, 3, 32, 32), name="TinyNet")


def normalised(report: rooflens.Report) -> dict:
    """The JSON document without what changes from one machine or torch release to another."""
    data = json.loads(report.to_json(operators=False))
    data.pop("torch_version")
    return data


# ---- golden files -----------------------------------------------------------------------------------


def test_table_full_golden(report, golden):
    golden("tiny_table_full.txt", report.render(width=120))


def test_table_depth1_golden(report, golden):
    golden("tiny_table_depth1.txt", report.render(depth=1, width=100, byte_unit=ByteUnit.BINARY))


def test_json_golden(report, golden):
    golden("tiny_report.json", json.dumps(normalised(report), indent=2) + "\n")


def test_csv_golden(report, golden):
    golden("tiny_modules.csv", report.to_csv())


def test_markdown_golden(report, golden):
    golden("tiny_report.md", report.to_markdown())


# ---- the table --------------------------------------------------------------------------------------


def test_table_header_and_footer(report):
    text = report.render()
    assert "Model:      TinyNet" in text
    assert "1×3×32×32 float32" in text
    assert rooflens.report.report.CONVENTION_TEXT[report.convention] in text
    assert "MACs = conv + matmul multiply-accumulates; 1 MAC = 2 FLOPs" in text
    assert "Executed:   fake" in text and "Device:     cpu" in text
    assert "G = 1e9" in text or "1e3/1e6/1e9" in text
    assert "MB = 1e6 bytes" in text
    for label in ("Total:", "Parameters:", "Model size:", "Buffers:", "Uncalled modules: aux", "Diagnostics: none"):
        assert label in text
    assert "intensity" in text and "FLOPs/byte" in text
    assert f"trainable {report.params.trainable:,}" in text


def test_table_is_plain_text_at_the_width(report):
    for width in (100, 120, 160):
        text = report.render(width=width)
        assert "\x1b[" not in text
        assert max(len(line) for line in text.splitlines()) <= width


def test_table_columns_and_tree(report):
    text = report.render(width=140)
    header = next(line for line in text.splitlines() if line.startswith("Module"))
    assert header.split() == [
        "Module", "Type", "Params", "MACs", "FLOPs", "Read", "Written", "%MACs", "Output", "shape"
    ]
    assert "├─ block ×2" in text  # called twice
    assert "│  ├─ conv ×2" in text  # tree indentation under block
    assert "└─ aux" in text and "(not called)" in text
    assert "100.0%" in text  # the root's share of MACs


def test_depth_folds_into_ancestors(report):
    rows = {r.path: r for r in module_rows(report, depth=1)}
    assert "block" in rows and "block.conv" not in rows
    assert rows["block"].cost == report.by_module()["block"].cumulative
    assert rows[""].cost == report.total()
    only_root = module_rows(report, depth=0)
    assert [r.path for r in only_root] == [""]
    full = report.render(depth=None, width=140)
    folded = report.render(depth=1, width=140)
    assert "conv ×2" in full and "conv ×2" not in folded
    assert "folded into their ancestors" in folded


def test_tree_prefixes(report):
    prefixes = tree_prefixes(report.by_module(), report.by_module())
    assert prefixes[""] == ""
    assert prefixes["conv"] == "├─ "
    assert prefixes["aux"] == "└─ "
    assert prefixes["block.relu"] == "│  └─ "


def test_unsupported_line_always_present(report):
    assert f"{UNSUPPORTED_LABEL}: none" in report.render() or report.unsupported_ops()
    fake_op = OpRecord(
        op="aten.mystery", module="fc", inputs=(TensorMeta((1, 8), "float32", 4),),
        outputs=(TensorMeta((1, 8), "float32", 4),), cost=Cost(0, 0, 32, 32), supported=False,
    )
    with_unsupported = dataclasses.replace(report, records=report.records + (fake_op, fake_op))
    text = with_unsupported.render(width=200)
    assert "aten.mystery ×2" in text
    assert text.count(UNSUPPORTED_LABEL) == 1
    without = dataclasses.replace(report, records=tuple(r for r in report.records if r.supported))
    assert f"{UNSUPPORTED_LABEL}: none" in without.render(width=200)
    assert f"**{UNSUPPORTED_LABEL}**: none" in without.to_markdown()


def test_meta_parameters_have_unknown_nonzero():
    meta_report = rooflens.analyze(tiny_net(meta=True), input_size=(1, 3, 32, 32))
    assert meta_report.params.nonzero is None
    assert "non-zero unknown (meta)" in meta_report.render()


def test_binary_and_si_bytes(report):
    assert "MiB = 2^20 bytes" in report.render(byte_unit="binary")
    assert "KiB" in report.render(byte_unit="binary")
    assert " KB" in report.render(byte_unit="si")
    with pytest.raises(ValueError):
        report.render(byte_unit="bits")


def test_fit_columns_gives_way_type_then_shape():
    widest = {"Module": 20, "Type": 17, "Params": 8, "MACs": 8, "FLOPs": 8, "Read": 10, "Written": 10,
              "%MACs": 6, "Output shape": 14}
    gap = 3 * (len(widest) - 1)
    natural = sum(widest.values()) + gap
    assert fit_columns(widest, natural) == widest
    squeezed = fit_columns(widest, natural - 10)
    assert squeezed["Module"] == 20 and squeezed["Read"] == 10  # the tree and numbers are never cut
    assert squeezed["Type"] + squeezed["Output shape"] == 17 + 14 - 10
    narrow = fit_columns(widest, 100)
    assert "Output shape" not in narrow and "Module" in narrow and "%MACs" in narrow


def test_str_rich_and_html(report):
    assert str(report) == report.render()
    from rich.console import Console

    buf = io.StringIO()
    Console(file=buf, width=130, color_system=None).print(report)
    printed = buf.getvalue()
    assert "block ×2" in printed and UNSUPPORTED_LABEL in printed
    html = report._repr_html_()
    assert html.startswith("<div") and "<table>" in html and "block ×2" in html and "Uncalled modules" in html


def test_csv_is_base_units(report):
    rows = list(csv.DictReader(io.StringIO(report.to_csv())))
    assert [r["path"] for r in rows] == list(report.by_module())
    assert list(rows[0]) == ["path", "type", "depth", "calls", "params", "macs", "flops", "bytes_read",
                             "bytes_written", "share_of_macs", "output_shape"]
    root = rows[0]
    total = report.total()
    assert int(root["macs"]) == total.macs and int(root["bytes_read"]) == total.bytes_read
    block = next(r for r in rows if r["path"] == "block")
    assert block["calls"] == "2" and block["output_shape"] == "1x8x16x16"
    aux = next(r for r in rows if r["path"] == "aux")
    assert aux["calls"] == "0" and aux["output_shape"] == ""
    mib = list(csv.DictReader(io.StringIO(report.to_csv(byte_unit="binary"))))
    assert float(mib[0]["read_MiB"]) == pytest.approx(total.bytes_read / 2**20, rel=1e-4)


def test_markdown_depth(report):
    md = report.to_markdown(depth=1)
    assert "| Module | Type | Params | MACs | FLOPs | Read | Written | %MACs | Output shape |" in md
    assert "`block` ×2" in md and "`block.conv`" not in md


def test_import_does_not_load_rich():
    code = "import sys, rooflens; print('rich' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
