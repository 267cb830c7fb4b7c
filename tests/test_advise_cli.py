"""`rooflens advise` and Report.advice(): the CLI over the rules of rooflens.analysis.advice (whose numbers
tests/test_advice.py derives by hand), its options, and a golden table."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
import torch
from torch import nn

import rooflens
from rooflens.cli import main
from rooflens.report.advice_render import advice_document
from rooflens.report.document import RENDERERS


def _conv_bn_relu() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())


@pytest.fixture(scope="module")
def report() -> rooflens.Report:
    torch.manual_seed(0)
    return rooflens.analyze(_conv_bn_relu().eval(), torch.randn(1, 3, 16, 16), name="cbr", hardware="a4000")


def test_report_advice_is_the_rules_findings(report: rooflens.Report) -> None:
    findings = report.advice()
    assert findings and all(isinstance(f, rooflens.Finding) for f in findings)
    assert [f.share for f in findings] == sorted((f.share for f in findings), reverse=True)
    fusion = report.advice(rules=["fusion"])
    assert [f.rule for f in fusion] == [rooflens.Rule.FUSION]
    # conv -> batch norm -> ReLU on 1x8x16x16 fp32: folding removes the batch norm's and the ReLU's traffic,
    # each reads and writes 8*16*16*4 = 8,192 bytes (plus the batch norm's 4 vectors of 8: 128 bytes), and the
    # folded conv gains a bias of 8 floats to read (32 bytes): 16,512 + 16,384 - 32 = 32,864
    assert fusion[0].estimate["bytes_saved"] == 2 * 8_192 + 128 + 2 * 8_192 - 32
    assert report.advice(min_share=1.0) == []  # no finding saves the whole time


def test_advice_table_golden(report: rooflens.Report, golden: Callable[[str, str], None]) -> None:
    golden("advice_cbr.txt", RENDERERS["table"](advice_document(report, report.advice()), 140))


def test_cli_advise_json_top_and_rules(capsys: pytest.CaptureFixture[str]) -> None:
    base = ["advise", "torchvision:mobilenet_v2", "--hw", "a4000", "-f", "json"]
    assert main([*base, "--top", "3"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["hardware"] == "a4000" and len(data["findings"]) == 3
    assert main([*base, "--rules", "G1,depthwise"]) == 0
    rules = {f["rule"] for f in json.loads(capsys.readouterr().out)["findings"]}
    assert rules and rules <= {"G1", "depthwise"}


def test_cli_advise_errors_name_the_problem(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["advise", "torchvision:resnet18", "--rules", "G9"]) == 2
    assert "unknown rule 'G9'" in capsys.readouterr().err
    assert main(["advise", "torchvision:resnet18", "--hw", "a4000,t4"]) == 2
    assert "advise is for one device" in capsys.readouterr().err


def test_bad_options_are_named(report: rooflens.Report, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(rooflens.InputError, match="min_share='x' must be a fraction"):
        report.advice(min_share="x")  # type: ignore[arg-type]
    with pytest.raises(rooflens.InputError, match="byte_unit='xx'"):
        report.to_html(byte_unit="xx")
    with pytest.raises(rooflens.InputError, match="cannot write"):
        report.to_html(tmp_path / "missing" / "page.html")
    with pytest.raises(rooflens.InputError, match="compare takes Reports"):
        rooflens.compare([1])  # type: ignore[list-item]
