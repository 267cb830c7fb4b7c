"""Memory-only operators: supported, 0 FLOPs (unless stated), bytes by their rule.

Every expected number is derived by hand in the comment beside it (float32 = 4 B, int64 = 8 B).
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import rooflens
from rooflens.types import Cost

from _helpers import Fn


def op_cost(report: rooflens.Report, op: str) -> Cost:
    assert report.unsupported_ops() == {}
    ops = report.by_operator()
    assert op in ops, list(ops)
    assert ops[op].supported
    return ops[op].cost


IDX = torch.tensor([1, 5, 7, 9, 11])  # 5 int64 indices = 40 B


# ---- gathers: read the indices and the gathered rows, never the whole table ------------------------


def test_embedding_reads_only_the_gathered_rows() -> None:
    report = rooflens.analyze(nn.Embedding(1000, 64), torch.zeros(1, 10, dtype=torch.long))
    # read: indices 10 x 8 B = 80 + gathered rows 10 x 64 x 4 B = 2560 -> 2640 (not the 256000 B table)
    # written: output (1, 10, 64) 640 x 4 B = 2560
    assert op_cost(report, "aten.embedding") == Cost(0, 0, 10 * 8 + 10 * 64 * 4, 10 * 64 * 4)
    assert report.total() == Cost(0, 0, 2640, 2560)


def test_embedding_bag_sums_gathered_rows() -> None:
    report = rooflens.analyze(nn.EmbeddingBag(1000, 64, mode="sum"), torch.zeros(2, 10, dtype=torch.long))
    bag = [r for r in report.records if r.op == "aten._embedding_bag"]
    assert len(bag) == 1 and bag[0].outputs[0].shape == (2, 64)
    # 20 gathered rows x 64 = 1280 FLOPs (one add per gathered element)
    # read: indices 20 x 8 B = 160 + offsets (made by arange) 2 x 8 B = 16 + rows 1280 x 4 B = 5120 -> 5296
    assert bag[0].cost.flops == 1280
    assert bag[0].cost.bytes_read == 5296
    # output (2, 64) = 512 B is among what is written (with the kernel's bookkeeping outputs)
    assert bag[0].cost.bytes_written >= 512
    # the offsets: arange(0, 20, 10) -> 2 int64, a factory: reads nothing, writes 16 B
    assert op_cost(report, "aten.arange") == Cost(0, 0, 0, 16)


def test_embedding_bag_mean_adds_the_divides() -> None:
    report = rooflens.analyze(nn.EmbeddingBag(1000, 64, mode="mean"), torch.zeros(2, 10, dtype=torch.long))
    # 1280 adds + (2, 64) = 128 divides
    assert op_cost(report, "aten._embedding_bag").flops == 1408


def test_gather_index_select_index() -> None:
    table = torch.randn(100, 16)  # 6400 B, never read whole
    report = rooflens.analyze(Fn(lambda t, i: t.index_select(0, i)), (table, IDX))
    # read: 40 B of indices + 5 x 16 x 4 B = 320 gathered -> 360; written 320
    assert op_cost(report, "aten.index_select") == Cost(0, 0, 360, 320)
    report = rooflens.analyze(Fn(lambda t, i: t[i]), (table, IDX))
    assert op_cost(report, "aten.index") == Cost(0, 0, 360, 320)
    idx = torch.zeros(100, 2, dtype=torch.long)  # 200 int64 = 1600 B
    report = rooflens.analyze(Fn(lambda t, i: torch.gather(t, 1, i)), (table, idx))
    # read 1600 + 200 x 4 B = 800 -> 2400; written 800
    assert op_cost(report, "aten.gather") == Cost(0, 0, 2400, 800)


# ---- scatters ---------------------------------------------------------------------------------------


def _setitem(t: torch.Tensor, i: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    t = t.clone()
    t[i] = v
    return t


def _accumulate(t: torch.Tensor, i: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return t.clone().index_put_((i,), v, accumulate=True)


def test_index_put_inplace_writes_only_the_addressed_rows() -> None:
    args = (torch.randn(100, 16), IDX, torch.randn(5, 16))
    report = rooflens.analyze(Fn(_setitem), args)
    # read: indices 40 + values 5 x 16 x 4 B = 320 -> 360; written: the 5 addressed rows = 320
    assert op_cost(report, "aten.index_put_") == Cost(0, 0, 360, 320)
    report = rooflens.analyze(Fn(_accumulate), args)
    # accumulate: 80 adds; the addressed rows are read too: 360 + 320 = 680; written 320
    assert op_cost(report, "aten.index_put_") == Cost(0, 80, 680, 320)


def test_scatter_add_inplace() -> None:
    fn = Fn(lambda t, i, s: t.clone().scatter_add_(1, i, s))
    report = rooflens.analyze(fn, (torch.randn(4, 8), torch.zeros(4, 2, dtype=torch.long), torch.randn(4, 2)))
    # 8 index entries: 8 adds; read: index 8 x 8 B = 64 + src 8 x 4 B = 32 + the 8 destinations 32 -> 128
    # written: 8 x 4 B = 32
    assert op_cost(report, "aten.scatter_add_") == Cost(0, 8, 128, 32)


def test_masked_fill_functional_is_a_copy() -> None:
    args = (torch.randn(4, 8), torch.ones(4, 8, dtype=torch.bool))
    report = rooflens.analyze(Fn(lambda t, m: t.masked_fill(m, 0.0)), args)
    # read: 32 x 4 B + 32 bools x 1 B = 160; written 128
    assert op_cost(report, "aten.masked_fill") == Cost(0, 0, 160, 128)


# ---- copies, factories, overwrites ------------------------------------------------------------------


def test_cat_reads_every_input_and_writes_the_result() -> None:
    report = rooflens.analyze(Fn(lambda a, b: torch.cat([a, b])), (torch.randn(2, 3), torch.randn(4, 3)))
    # read 6 x 4 + 12 x 4 = 72 B; written (6, 3) 72 B
    assert op_cost(report, "aten.cat") == Cost(0, 0, 72, 72)


@pytest.mark.parametrize(("fn", "op", "read", "written"), [
    # x (1, 2, 4, 4): 32 elements = 128 B
    (lambda t: F.pad(t, (1, 1, 1, 1)), "aten.constant_pad_nd", 128, 2 * 36 * 4),  # out (1, 2, 6, 6)
    (lambda t: F.pad(t, (1, 1, 1, 1), mode="reflect"), "aten.reflection_pad2d", 128, 2 * 36 * 4),
    (lambda t: F.pad(t, (1, 1, 1, 1), mode="replicate"), "aten.replication_pad2d", 128, 2 * 36 * 4),
    (lambda t: t.repeat(1, 2, 1, 1), "aten.repeat", 128, 256),
    (lambda t: t.flip(-1), "aten.flip", 128, 128),
    (lambda t: t.roll(1, -1), "aten.roll", 128, 128),
    (lambda t: t.transpose(2, 3).contiguous(), "aten.clone", 128, 128),
    (lambda t: t.to(torch.float16), "aten._to_copy", 128, 64),  # 32 halves = 64 B
    (lambda t: torch.stack([t, t]), "aten.stack", 128, 256),  # the same tensor twice: read once
    (lambda t: t.tril(), "aten.tril", 128, 128),
    (lambda t: F.pixel_shuffle(t.repeat(1, 2, 1, 1), 2), "aten.pixel_shuffle", 256, 256),
])
def test_copy_like(fn: Any, op: str, read: int, written: int) -> None:
    report = rooflens.analyze(Fn(fn), input_size=(1, 2, 4, 4))
    assert op_cost(report, op) == Cost(0, 0, read, written)


@pytest.mark.parametrize(("fn", "op", "written"), [
    (lambda t: t + torch.zeros(4, 8), "aten.zeros", 128),
    (lambda t: t + torch.ones(4, 8), "aten.ones", 128),
    (lambda t: t + torch.full((4, 8), 2.0), "aten.full", 128),
    (lambda t: t + torch.zeros_like(t), "aten.zeros_like", 128),  # t only lends its shape
    (lambda t: t + t.new_ones(4, 8), "aten.new_ones", 128),
    (lambda t: t + torch.arange(8.0), "aten.arange", 32),
    (lambda t: t + torch.eye(8)[:4], "aten.eye", 256),  # (8, 8) float32
])
def test_factories_read_nothing(fn: Any, op: str, written: int) -> None:
    report = rooflens.analyze(Fn(fn), input_size=(4, 8))
    assert op_cost(report, op) == Cost(0, 0, 0, written)


def test_overwrites_do_not_read_the_destination() -> None:
    report = rooflens.analyze(Fn(lambda t: t.clone().zero_()), input_size=(4, 8))
    # zero_: writes 32 x 4 B = 128, reads nothing
    assert op_cost(report, "aten.zero_") == Cost(0, 0, 0, 128)
    report = rooflens.analyze(Fn(lambda t: t.clone().fill_(3.0)), input_size=(4, 8))
    assert op_cost(report, "aten.fill_") == Cost(0, 0, 0, 128)
    report = rooflens.analyze(Fn(lambda t, s: t.clone().copy_(s)), (torch.randn(4, 8), torch.randn(8)))
    # copy_ of a broadcast (8,) source: reads the source 32 B, writes the destination 128 B
    assert op_cost(report, "aten.copy_") == Cost(0, 0, 32, 128)


def test_random_numbers_cost_one_flop_each() -> None:
    report = rooflens.analyze(Fn(lambda t: t + torch.rand(4, 8)), input_size=(4, 8))
    # rand: 32 generated values, 1 FLOP each; reads nothing; writes 128 B
    assert op_cost(report, "aten.rand") == Cost(0, 32, 0, 128)
    report = rooflens.analyze(Fn(lambda t: torch.bernoulli(t)), input_size=(4, 8))
    # bernoulli(p): p is read (128 B), 32 draws, output 128 B
    assert op_cost(report, "aten.bernoulli") == Cost(0, 32, 128, 128)


def test_nonzero_falls_back_to_a_real_run_and_is_supported() -> None:
    report = rooflens.analyze(Fn(lambda t: t.nonzero()), torch.tensor([0.0, 1.0, 0.0, 2.0]))
    assert report.executed == "real"
    # read 4 x 4 B = 16; output (2, 1) int64 = 16 B
    assert op_cost(report, "aten.nonzero") == Cost(0, 0, 16, 16)


def test_common_memory_ops_are_all_supported() -> None:
    def many(t: torch.Tensor) -> Any:
        i = torch.tensor([0, 1])
        return (
            torch.cat([t, t]), t.clone(), t.float(), t.flip(0), t.roll(1, 0), t.repeat(2, 1), t.tile(2),
            F.pad(t, (1, 1)), F.pad(t[None], (1, 1), mode="reflect"), F.pad(t[None], (1, 1), mode="replicate"),
            F.pad(t[None], (1, 1), mode="circular"), t.tril(), t.triu(), t.index_select(0, i), t[i], t[:, i],
            torch.gather(t, 1, torch.zeros(4, 2, dtype=torch.long)), t.masked_fill(t > 0, 0),
            torch.scatter(t, 1, torch.zeros(4, 1, dtype=torch.long), 1.0), t.index_copy(0, i, t[:2]),
            torch.zeros(3), torch.ones(3), torch.full((3,), 1.0), torch.zeros_like(t), torch.ones_like(t),
            torch.full_like(t, 2), t.new_zeros(3), t.new_full((3,), 2.0), torch.arange(3), torch.linspace(0, 1, 5),
            torch.eye(3), torch.rand(3), torch.randn(3), torch.rand_like(t), t.clone().uniform_(),
            t.clone().normal_(), t.expand(2, 4, 8).contiguous(), F.one_hot(torch.tensor([0, 2]), 4),
            t.unsqueeze(0).repeat_interleave(2, dim=0), t.clone().index_fill_(0, i, 1.0),
        )

    report = rooflens.analyze(Fn(many), input_size=(4, 8))
    assert report.unsupported_ops() == {}
    assert all(not r.via for r in report.records), {r.via for r in report.records}
