"""Subnormal floats a forward pass writes: counted per operator and module, in measurements and their notes."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

import rooflens
from rooflens.measurement import Measurement, measure
from rooflens.measurement.subnormal import SubnormalOutput, Subnormals, count_subnormals
from rooflens.report.document import RENDERERS
from rooflens.report.measure_render import bench_document, subnormal_note


class Masked(nn.Module):
    """Softmax over rows [0, -100] (as Swin's masked attention): exp(-100) / (1 + exp(-100)) = 3.7e-44, subnormal."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask = torch.tensor([0.0, -100.0])
        return torch.softmax(x * 0 + mask, dim=-1)


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attn = Masked()
        self.fc = nn.Linear(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.attn(x))


def test_count_subnormals_by_operator_and_module() -> None:
    torch.manual_seed(0)
    with torch.inference_mode():
        found = count_subnormals(Net(), (torch.randn(4, 2),), {})
    assert found is not None
    # softmax of 4 rows [0, -100]: 4 subnormal of its 8 outputs; the others wrote normal values (or zeros)
    (softmax,) = found.outputs  # aten.softmax or, decomposed, aten._softmax
    assert (softmax.module, softmax.op.rsplit(".")[-1].lstrip("_"), softmax.subnormal, softmax.elements) == (
        "attn", "softmax", 4, 8)
    assert found.subnormal == 4
    # written: mul, add, softmax and the linear layer's addmm, 8 each (the mask constant's lift_fresh and
    # detach_ only make it: not counted)
    assert found.elements == 8 + 8 + 8 + 8
    assert found.share == pytest.approx(4 / 32)


class Garbage(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.empty(100_000).copy_(torch.zeros(100_000)) + x.sum()  # empty holds old memory: not counted


class Branching(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cond(x.sum() > 0, lambda t: t * 1e-39, lambda t: t, (x,))  # a higher-order operator


def test_allocations_are_not_writes_and_a_count_that_cannot_be_taken_is_none() -> None:
    with torch.inference_mode():
        found = count_subnormals(Garbage(), (torch.ones(3),), {})
        assert found is not None and found.subnormal == 0 and "aten.empty" not in {o.op for o in found.outputs}
    m = measure(Branching(), input_size=(4,), warmup=1, iters=2)  # measured; the count is None, not an error
    assert m.iters == 2 and m.subnormals is None


def test_measure_counts_subnormals_on_the_cpu() -> None:
    m = measure(Net(), input_size=(4, 2), warmup=1, iters=3)
    assert m.subnormals is not None and m.subnormals.subnormal == 4
    assert {k: v for k, v in m.as_dict()["subnormals"]["outputs"][0].items() if k != "op"} == {
        "module": "attn", "subnormal": 4, "elements": 8}
    plain = measure(nn.Linear(8, 8), input_size=(2, 8), warmup=1, iters=3)
    assert plain.subnormals is not None and plain.subnormals.subnormal == 0


def test_flush_to_zero_leaves_none() -> None:
    if not torch.set_flush_denormal(True):
        pytest.skip("this CPU has no flush-to-zero mode")
    try:
        with torch.inference_mode():
            found = count_subnormals(Net(), (torch.randn(4, 2),), {})
            assert found is not None and found.subnormal == 0
    finally:
        torch.set_flush_denormal(False)


def _measured(subnormals: Subnormals | None, batch: int = 1) -> Measurement:
    return Measurement((0.1, 0.1, 0.1), batch_size=batch, device="cpu", dtype="float32", threads=1, warmup=1,
                       subnormals=subnormals)


def test_subnormal_note() -> None:
    assert subnormal_note([_measured(None), _measured(Subnormals(1000, 0))]) is None  # none checked, none written
    many = Subnormals(3_000_000, 256_318, (SubnormalOutput("features.5.1.attn", "aten._softmax", 230_000, 921_984),
                                           SubnormalOutput("", "aten.mul", 26_318, 1_000_000)))
    note = subnormal_note([_measured(Subnormals(1000, 5)), _measured(many, batch=8)])
    assert note is not None
    # the batch with the most: 256,318 of 3,000,000; 230,000 / 921,984 = 25 % of the softmax's output
    assert "at batch 8 a forward pass wrote 256,318 of its 3,000,000 floating-point values subnormal" in note
    # 26,318 / 1,000,000 = 2.6 %: whole percents from 1 %
    assert "features.5.1.attn aten._softmax 230,000 (25 % of what it wrote); <model> aten.mul 26,318 (3 %" in note
    every = subnormal_note([_measured(Subnormals(10, 6, (SubnormalOutput("m", "aten.mul", 6, 6),)))])
    small = subnormal_note([_measured(Subnormals(10, 6, (SubnormalOutput("m", "aten.mul", 6, 1_000_000),)))])
    assert every is not None and "aten.mul 6 (100 % of what it wrote)" in every  # not "1e+02 %"
    assert small is not None and "aten.mul 6 (0.0006 % of what it wrote)" in small
    assert "torch.set_flush_denormal(True)" in note


def test_bench_golden_with_subnormals(golden) -> None:
    model = nn.Sequential(nn.Linear(2, 2))
    found = Subnormals(32, 4, (SubnormalOutput("attn", "aten._softmax", 4, 8),))
    report = dataclasses.replace(rooflens.analyze(model, input_size=(4, 2)), measurement=_measured(found, batch=4))
    doc = bench_document([report], device="cpu", threads=1, dtype="float32")
    golden("bench_subnormal.txt", RENDERERS["table"](doc, 140))
    assert doc.data()["batches"][0]["subnormals"]["subnormal"] == 4


class Sparse(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x * 1e-39).to_sparse()  # subnormal values, but in a sparse tensor: not counted, and no error


def test_only_strided_outputs_are_counted() -> None:
    m = measure(Sparse(), input_size=(2, 3), warmup=1, iters=2)
    # the mul's 6 strided outputs are subnormal (1e-39 x a normal number of order 1, below 1.18e-38)
    assert m.subnormals is not None and m.subnormals.outputs[0].op == "aten.mul"
    assert m.subnormals.subnormal == 6
