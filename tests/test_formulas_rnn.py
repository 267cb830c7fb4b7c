"""Recurrent-layer formulas. Every expected number is derived by hand in the comment beside it.

Per time step, layer and direction: MACs = B*(I + Hr)*G*H (G = 4 LSTM, 3 GRU, 1 RNN);
FLOPs (fma) = 2*MACs + 2 bias adds per gate output + gate elementwise work per hidden unit
(LSTM 22, GRU 16, RNN 2).
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

import rooflens
from rooflens.formulas import REGISTRY
from rooflens.formulas.registry import OpCall
from rooflens.types import Convention, TensorMeta

from _helpers import tm

# Operators of other families that the CPU recurrent layers also reach (h0/c0 zeros, stacking h_n).
OTHER_FAMILIES = ("aten.full", "aten.cat")

# nn.LSTM(128, 256, num_layers=2) over T=50 steps, B=1:
# layer 1: 50*128*1024 + 50*256*1024 = 6,553,600 + 13,107,200 = 19,660,800
# layer 2: 50*256*1024 + 50*256*1024 = 13,107,200 + 13,107,200 = 26,214,400
LSTM_MACS = 45_875_200
# FLOPs (fma) per layer: 2*MACs + 2 bias adds * 50*1024 gate outputs (102,400) + 22 * 50*256 (281,600)
# layer 1: 39,321,600 + 102,400 + 281,600 = 39,705,600; layer 2: 52,428,800 + 384,000 = 52,812,800
LSTM_FLOPS = 92_518_400

# nn.GRU(128, 256, num_layers=2) over T=50, B=1:
# layer 1: 50*128*768 + 50*256*768 = 4,915,200 + 9,830,400 = 14,745,600
# layer 2: 50*256*768 * 2 = 19,660,800
GRU_MACS = 34_406_400
# FLOPs (fma) per layer: 2*MACs + 2 * 50*768 (76,800) bias adds + 16 * 50*256 (204,800)
# layer 1: 29,491,200 + 281,600 = 29,772,800; layer 2: 39,321,600 + 281,600 = 39,603,200
GRU_FLOPS = 69_376_000

# nn.RNN(128, 256, num_layers=2) over T=10, B=1 (derivation in test_rnn_tanh)
RNN_MACS, RNN_FLOPS = 2_293_760, 4_608_000


def make_call(op: str, given: dict[str, Any], outputs: tuple[TensorMeta, ...] = (), *,
              convention: Convention = Convention.FMA) -> OpCall:
    """An OpCall as the engine builds it: every schema argument by name, defaults filled in."""
    schema = getattr(torch.ops.aten, op.removeprefix("aten.")).default._schema
    names = {a.name for a in schema.arguments}
    assert set(given) <= names, f"not in the schema of {op}: {set(given) - names}"
    args = {
        a.name: given[a.name] if a.name in given else (a.default_value if a.has_default_value() else None)
        for a in schema.arguments
    }
    inputs = []
    for v in args.values():
        for t in v if isinstance(v, (list, tuple)) else (v,):
            if isinstance(t, TensorMeta):
                inputs.append(t)
    return OpCall(op, args, tuple(inputs), outputs, convention)


def cost_of(call: OpCall) -> rooflens.Cost:
    entry = REGISTRY.get(call.op)
    assert entry is not None, call.op
    return entry.formula(call)


def assert_fully_supported(report: rooflens.Report) -> None:
    """Nothing of this family unsupported; nothing at all once the memory family covers full/cat."""
    unsupported = report.unsupported_ops()
    assert set(unsupported) <= set(OTHER_FAMILIES), unsupported
    pending = [op for op in OTHER_FAMILIES if op not in REGISTRY]
    if pending:
        pytest.skip(f"{pending} have no formula yet (memory family)")
    assert unsupported == {}


def own_flops(report: rooflens.Report) -> int:
    """FLOPs of everything but the zeros/stack bookkeeping of other families."""
    return sum(r.cost.flops for r in report.records if r.op not in OTHER_FAMILIES)


# ---- nn.LSTM on the CPU: aten.mkldnn_rnn_layer ------------------------------------------------------


def test_lstm_two_layers() -> None:
    report = rooflens.analyze(nn.LSTM(128, 256, num_layers=2, batch_first=True), torch.randn(1, 50, 128))
    ops = report.by_operator()
    assert ops["aten.mkldnn_rnn_layer"].calls == 2  # once per layer and direction
    assert ops["aten.mkldnn_rnn_layer"].supported
    assert report.total().macs == LSTM_MACS
    assert ops["aten.mkldnn_rnn_layer"].cost.flops == LSTM_FLOPS
    assert_fully_supported(report)


def test_lstm_exact_convention() -> None:
    report = rooflens.analyze(nn.LSTM(128, 256, num_layers=2, batch_first=True), torch.randn(1, 50, 128),
                              convention="exact")
    # exact: each of the two products' bias fills its dot product's missing add, so 2*MACs
    # + 22 * 50*256 per layer: 91,750,400 + 2*281,600 = 92,313,600
    assert report.by_operator()["aten.mkldnn_rnn_layer"].cost.flops == 92_313_600


def test_lstm_bidirectional() -> None:
    one = rooflens.analyze(nn.LSTM(128, 256, batch_first=True), torch.randn(1, 50, 128))
    # 1 layer: 19,660,800 (layer 1 above)
    assert one.total().macs == 19_660_800
    bi = rooflens.analyze(nn.LSTM(128, 256, batch_first=True, bidirectional=True), torch.randn(1, 50, 128))
    # both directions: 2 * 19,660,800 = 39,321,600
    assert bi.total().macs == 39_321_600
    assert bi.by_operator()["aten.mkldnn_rnn_layer"].calls == 2
    two = rooflens.analyze(nn.LSTM(128, 256, num_layers=2, batch_first=True, bidirectional=True),
                           torch.randn(1, 50, 128))
    # layer 1: 2 * 19,660,800 = 39,321,600; layer 2 reads 2*256 = 512 features:
    # 2 * (50*512*1024 + 50*256*1024) = 2 * 39,321,600 = 78,643,200 -> 117,964,800
    assert two.total().macs == 117_964_800
    assert two.by_operator()["aten.mkldnn_rnn_layer"].calls == 4


def test_lstm_batch_four() -> None:
    report = rooflens.analyze(nn.LSTM(128, 256, num_layers=2, batch_first=True), torch.randn(4, 50, 128))
    # 4 * 45,875,200 = 183,500,800
    assert report.total().macs == 183_500_800


@pytest.mark.filterwarnings("ignore:LSTM with projections")
def test_lstm_with_projection_decomposed() -> None:
    # oneDNN has no projections: torch decomposes into addmm/mm and pointwise ops
    report = rooflens.analyze(nn.LSTM(128, 256, proj_size=64), torch.randn(50, 1, 128))
    # per step: x 128*1024 + h 64*1024 + projection 256*64 = 131,072 + 65,536 + 16,384 = 212,992;
    # 50 steps: 10,649,600
    assert report.total().macs == 10_649_600


# ---- nn.GRU and nn.RNN on the CPU: decomposed into addmm + pointwise --------------------------------


def test_gru_two_layers_fully_counted() -> None:
    report = rooflens.analyze(nn.GRU(128, 256, num_layers=2, batch_first=True), torch.randn(1, 50, 128))
    ops = report.by_operator()
    assert ops["aten.addmm"].supported
    assert report.total().macs == GRU_MACS
    for op in ("aten.sigmoid_", "aten.tanh_", "aten.add_", "aten.mul_", "aten.sub"):
        assert op in ops and ops[op].supported, op
    # the pointwise family's counts (sigmoid 4, tanh 1, add/mul/sub 1) give the fused formula's 16 per unit
    assert own_flops(report) == GRU_FLOPS
    assert_fully_supported(report)


def test_gru_bidirectional_and_batch() -> None:
    # T=5 steps keeps the decomposed runs short
    one = rooflens.analyze(nn.GRU(128, 256, batch_first=True), torch.randn(1, 5, 128))
    # 1 layer: 5*(128 + 256)*768 = 1,474,560
    assert one.total().macs == 1_474_560
    bi = rooflens.analyze(nn.GRU(128, 256, batch_first=True, bidirectional=True), torch.randn(1, 5, 128))
    # both directions: 2 * 1,474,560 = 2,949,120
    assert bi.total().macs == 2_949_120
    four = rooflens.analyze(nn.GRU(128, 256, num_layers=2, batch_first=True), torch.randn(4, 5, 128))
    # B=1: 1,474,560 + 5*(256 + 256)*768 (1,966,080) = 3,440,640; B=4: 4 * 3,440,640 = 13,762,560
    assert four.total().macs == 13_762_560


def test_rnn_tanh() -> None:
    report = rooflens.analyze(nn.RNN(128, 256, num_layers=2, batch_first=True), torch.randn(1, 10, 128))
    # T=10: layer 1: 10*(128 + 256)*256 = 983,040; layer 2: 10*(256 + 256)*256 = 1,310,720 -> 2,293,760
    assert report.total().macs == RNN_MACS
    # FLOPs: 2*MACs (4,587,520) + per layer 2 bias adds * 10*256 (5,120)
    # + (combine 1 + tanh 1) * 10*256 (5,120) -> 4,587,520 + 2*10,240 = 4,608,000
    assert own_flops(report) == RNN_FLOPS
    assert_fully_supported(report)


def test_cells() -> None:
    report = rooflens.analyze(nn.LSTMCell(128, 256), torch.randn(4, 128))
    # B=4: MACs = 4*(128 + 256)*1024 = 1,572,864;
    # FLOPs = 3,145,728 + 2 * 4*1024 bias adds (8,192) + 22 * 4*256 (22,528) = 3,176,448
    assert (report.total().macs, own_flops(report)) == (1_572_864, 3_176_448)
    report = rooflens.analyze(nn.GRUCell(128, 256), torch.randn(4, 128))
    # MACs = 4*384*768 = 1,179,648; FLOPs = 2,359,296 + 2*3,072 + 16*1,024 = 2,381,824
    assert (report.total().macs, own_flops(report)) == (1_179_648, 2_381_824)


def test_cell_formulas_match_the_decomposition() -> None:
    call = make_call("aten.lstm_cell", {"input": tm(4, 128), "hx": [tm(4, 256), tm(4, 256)],
                                        "w_ih": tm(1024, 128), "w_hh": tm(1024, 256), "b_ih": tm(1024),
                                        "b_hh": tm(1024)}, (tm(4, 256), tm(4, 256)))
    # same as test_cells: 1,572,864 MACs, 3,176,448 FLOPs
    assert (cost_of(call).macs, cost_of(call).flops) == (1_572_864, 3_176_448)
    call = make_call("aten.gru_cell", {"input": tm(4, 128), "hx": tm(4, 256), "w_ih": tm(768, 128),
                                       "w_hh": tm(768, 256), "b_ih": tm(768), "b_hh": tm(768)}, (tm(4, 256),))
    assert (cost_of(call).macs, cost_of(call).flops) == (1_179_648, 2_381_824)
    call = make_call("aten.rnn_relu_cell", {"input": tm(4, 128), "hx": tm(4, 256), "w_ih": tm(256, 128),
                                            "w_hh": tm(256, 256)}, (tm(4, 256),))
    # no biases: MACs 4*384*256 = 393,216; FLOPs 786,432 + 2 * 1,024 (combine, ReLU) = 788,480
    assert (cost_of(call).macs, cost_of(call).flops) == (393_216, 788_480)


# ---- CUDA / ROCm kernels, by hand-built calls ---------------------------------------------------------


def lstm_weights(layers: int, directions: int, i: int, h: int, g: int, proj: int = 0) -> list[TensorMeta]:
    out: list[TensorMeta] = []
    width = i
    hr = proj or h
    for _ in range(layers):
        for _ in range(directions):
            out += [tm(g * h, width), tm(g * h, hr), tm(g * h), tm(g * h)]
            if proj:
                out.append(tm(proj, h))
        width = directions * hr
    return out


def cudnn_call(mode: int, g: int, *, x: TensorMeta, layers: int, bidirectional: bool = False, proj: int = 0,
               batch_sizes: list[int] | None = None, weight_buf: TensorMeta | None = None) -> OpCall:
    d = 2 if bidirectional else 1
    weights = lstm_weights(layers, d, x.shape[-1], 256, g, proj)
    return make_call(
        "aten._cudnn_rnn",
        {"input": x, "weight": weights, "weight_stride0": 5 if proj else 4, "weight_buf": weight_buf,
         "hx": tm(layers * d, 1, proj or 256), "cx": tm(layers * d, 1, 256) if g == 4 else None, "mode": mode,
         "hidden_size": 256, "proj_size": proj, "num_layers": layers, "batch_first": False, "dropout": 0.0,
         "train": False, "bidirectional": bidirectional, "batch_sizes": batch_sizes or [], "dropout_state": None},
        (tm(*x.shape[:-1], d * (proj or 256)),),
    )


def test_cudnn_lstm_matches_cpu() -> None:
    call = cudnn_call(2, 4, x=tm(50, 1, 128), layers=2)
    # the same numbers as the CPU's two mkldnn_rnn_layer calls
    assert (cost_of(call).macs, cost_of(call).flops) == (LSTM_MACS, LSTM_FLOPS)


def test_cudnn_gru_matches_cpu_decomposition() -> None:
    call = cudnn_call(3, 3, x=tm(50, 1, 128), layers=2)
    assert (cost_of(call).macs, cost_of(call).flops) == (GRU_MACS, GRU_FLOPS)


def test_cudnn_rnn_tanh_and_relu() -> None:
    for mode in (0, 1):  # RNN_RELU, RNN_TANH
        call = cudnn_call(mode, 1, x=tm(10, 1, 128), layers=2)
        # as test_rnn_tanh: 2,293,760 MACs, 4,608,000 FLOPs
        assert (cost_of(call).macs, cost_of(call).flops) == (RNN_MACS, RNN_FLOPS)


def test_cudnn_lstm_projection() -> None:
    call = cudnn_call(2, 4, x=tm(50, 1, 128), layers=1, proj=64)
    # as test_lstm_with_projection_decomposed: 10,649,600 MACs
    assert cost_of(call).macs == 10_649_600


def test_cudnn_packed_bidirectional_gru() -> None:
    call = cudnn_call(3, 3, x=tm(120, 128), layers=1, bidirectional=True, batch_sizes=[4, 4, 3])
    # 120 packed input vectors, 2 directions: 2 * 120*(128 + 256)*768 = 2 * 35,389,440 = 70,778,880
    assert cost_of(call).macs == 70_778_880


def test_cudnn_weights_read_once() -> None:
    x = tm(50, 1, 128)
    loose = cudnn_call(2, 4, x=x, layers=1)
    # weights: 1024*128 + 1024*256 + 2*1024 = 395,264 floats; flat buffer of the same size
    flat = cudnn_call(2, 4, x=x, layers=1, weight_buf=tm(395_264))
    rule = REGISTRY.get("aten._cudnn_rnn").bytes
    # the flat buffer is what the weight list views: not read a second time
    assert rule(flat) == rule(loose)


def test_miopen_rnn() -> None:
    call = make_call(
        "aten.miopen_rnn",
        {"input": tm(50, 1, 128), "weight": lstm_weights(2, 1, 128, 256, 4), "weight_stride0": 4,
         "hx": tm(2, 1, 256), "cx": tm(2, 1, 256), "mode": 2, "hidden_size": 256, "num_layers": 2,
         "batch_first": False, "dropout": 0.0, "train": False, "bidirectional": False, "batch_sizes": [],
         "dropout_state": None},
        (tm(50, 1, 256),),
    )
    assert (cost_of(call).macs, cost_of(call).flops) == (LSTM_MACS, LSTM_FLOPS)


def test_thnn_fused_cells() -> None:
    call = make_call("aten._thnn_fused_lstm_cell", {"input_gates": tm(4, 1024), "hidden_gates": tm(4, 1024),
                                                    "cx": tm(4, 256), "input_bias": tm(1024),
                                                    "hidden_bias": tm(1024)})
    # no MACs (separate mm calls); 2 bias adds * 4,096 gate outputs + 22 * 4*256 = 8,192 + 22,528 = 30,720
    assert (cost_of(call).macs, cost_of(call).flops) == (0, 30_720)
    call = make_call("aten._thnn_fused_gru_cell", {"input_gates": tm(4, 768), "hidden_gates": tm(4, 768),
                                                   "hx": tm(4, 256), "input_bias": tm(768), "hidden_bias": tm(768)})
    # 2 * 3,072 + 16 * 1,024 = 6,144 + 16,384 = 22,528
    assert (cost_of(call).macs, cost_of(call).flops) == (0, 22_528)


def test_registry_entries_documented() -> None:
    for op in ("aten.mkldnn_rnn_layer", "aten._cudnn_rnn", "aten.miopen_rnn", "aten._thnn_fused_lstm_cell",
               "aten._thnn_fused_gru_cell", "aten.lstm_cell", "aten.gru_cell", "aten.rnn_tanh_cell",
               "aten.rnn_relu_cell"):
        entry = REGISTRY.get(op)
        assert entry is not None, op
        assert entry.family == "rnn" and entry.doc, op
