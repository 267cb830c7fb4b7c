"""Renderings of a small deterministic model: the rich table (golden files), JSON, CSV, Markdown, HTML;
documents of neutral blocks in every format; and the report layer's place below measurement and api.

The golden files in tests/golden/ follow the formulas: when a formula changes on purpose, rewrite them
with ``pytest tests/test_render.py --update-golden`` and review the diff.
"""

from __future__ import annotations

import ast
import csv
import dataclasses
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from torch import nn

import rooflens
from rooflens.report.document import (
    FORMATS,
    RENDERERS,
    Document,
    Gap,
    Grid,
    Heading,
    Labels,
    Note,
    Pre,
    render_html,
    render_json,
    render_markdown,
    render_table,
)
from rooflens.report.summary import UNSUPPORTED_LABEL
from rooflens.report.table import module_rows, tree_prefixes
from rooflens.report.terminal import fit_columns
from rooflens.report.units import ByteUnit, bytes3, rate
from rooflens.types import Cost, OpRecord, TensorMeta

from _helpers import tiny_net


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


# ---- module names that are not plain identifiers ------------------------------------------------------


class OddNames(nn.Module):
    """Submodule names torch accepts but Markdown tables do not: a pipe, a line break, a backtick."""

    NAMES = ("a|b", "x\ny", "t`ick")

    def __init__(self) -> None:
        super().__init__()
        self.add_module("a|b", nn.Linear(4, 4))
        self.add_module("x\ny", nn.ReLU())
        self.add_module("t`ick", nn.Identity())

    def forward(self, x):
        for name in self.NAMES:
            x = getattr(self, name)(x)
        return x


def table_rows(markdown: str) -> list[str]:
    return [line for line in markdown.splitlines() if line.startswith("|")]


def cells(row: str) -> list[str]:
    """The cells of a GitHub table row: split on the pipes that are not escaped."""
    return [c.strip() for c in re.split(r"(?<!\\)\|", row)[1:-1]]


def test_markdown_escapes_module_names_golden(golden):
    report = rooflens.analyze(OddNames(), input_size=(2, 4), name="Odd|net")
    md = report.to_markdown()
    golden("odd_names.md", md)
    rows = table_rows(md)
    assert len(rows) == 2 + 1 + len(OddNames.NAMES)  # header, rule, the root and one row per module
    assert [len(cells(r)) for r in rows] == [9] * len(rows)  # no name adds or splits a column
    shown = []
    for row in rows[3:]:
        code = re.fullmatch(r"(`+) ?(.*?) ?\1", cells(row)[0])
        assert code, row
        shown.append(code.group(2).replace("\\|", "|").replace("\\n", "\n"))
    assert shown == list(OddNames.NAMES)  # the names, read back from the code spans
    assert "**Odd\\|net**" in rows[2]
    text = report.render(width=120)  # the table keeps one line per module too
    assert "├─ x\\ny" in text and "├─ a|b" in text


# ---- documents of neutral blocks ------------------------------------------------------------------------


@pytest.fixture
def document() -> Document:
    return Document(
        title="rooflens: a <test> & more",
        blocks=(
            Heading("Devices | and pipes"),
            Labels([("Model", "Net"), ("Peak", "1.00 KB at relu")]),
            Grid(("Name", "Value"), [("a|b", "1.5"), ("<c>", "22")], frozenset({"Value"})),
            Note("A note."),
            Gap(),
            Pre(["col   1", "col  22"]),
        ),
        data=lambda: {"answer": 42},
        csv=lambda: "name,value\n",
    )


def test_document_goldens(document, golden):
    golden("document.txt", render_table(document, 60))
    golden("document.md", render_markdown(document))
    golden("document.html", render_html(document))


def test_document_formats(document):
    assert FORMATS == tuple(RENDERERS) == ("table", "json", "csv", "markdown", "html", "toml")
    assert document.formats() == ("table", "json", "csv", "markdown", "html")  # no TOML given
    assert json.loads(render_json(document)) == {"answer": 42}
    with pytest.raises(rooflens.errors.InputError, match="has no TOML form"):
        RENDERERS["toml"](document, 80)
    md = render_markdown(document)
    assert "| a\\|b | 1.5 |" in md and "## Devices \\| and pipes" in md
    page = render_html(document)
    assert page.startswith("<!DOCTYPE html>") and page.endswith("</html>\n")
    assert "&lt;c&gt;" in page and "<c>" not in page and "a &lt;test&gt; &amp; more" in page
    text = render_table(document, 60)
    assert max(map(len, text.splitlines())) <= 60 and "\x1b[" not in text


def test_report_document_is_the_report_renderers(report):
    doc = rooflens.report.document.report_document(report, depth=1, byte_unit=ByteUnit.BINARY)
    assert render_table(doc, 100) == report.render(depth=1, width=100, byte_unit="binary")
    assert render_markdown(doc) == report.to_markdown(depth=1, byte_unit="binary")
    assert json.loads(render_json(doc)) == json.loads(report.to_json())
    assert RENDERERS["csv"](doc, 80) == report.to_csv(byte_unit="binary")


def test_byte_units_of_sizes_and_rates():
    assert bytes3(4.48e11, ByteUnit.SI, "B/s") == "448 GB/s"
    assert bytes3(4.48e11, ByteUnit.BINARY, "B/s") == f"{4.48e11 / 2**30:.0f} GiB/s" == "417 GiB/s"
    assert bytes3(16e9, ByteUnit.BINARY) == f"{16e9 / 2**30:.1f} GiB" == "14.9 GiB"
    assert rate(4.48e11) == "448.00 GB/s" and rate(4.48e11, ByteUnit.BINARY) == f"{4.48e11 / 2**30:.2f} GiB/s"


# ---- layers ------------------------------------------------------------------------------------------

REPORT_DIR = Path(rooflens.__file__).parent / "report"
# The layers below report (and report itself): what a module of rooflens.report may import.
BELOW_REPORT = {"types", "errors", "hardware", "formulas", "capture", "analysis", "params", "report"}


def rooflens_imports(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` of every import of rooflens in a file: at the top, in functions, for type checking."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" for a in node.names] if node.module == "rooflens" else [node.module]
            found += [(node.lineno, n) for n in names]
    return [(line, name) for line, name in found if name.split(".")[0] == "rooflens"]


def test_the_report_layer_imports_nothing_above_it():
    files = sorted(REPORT_DIR.glob("*.py"))
    assert {f.name for f in files} >= {"report.py", "table.py", "export.py", "document.py", "measured.py"}
    above = [
        f"{f.name}:{line} imports {name}"
        for f in files for line, name in rooflens_imports(f)
        if len(name.split(".")) < 2 or name.split(".")[1] not in BELOW_REPORT
    ]
    assert above == []
