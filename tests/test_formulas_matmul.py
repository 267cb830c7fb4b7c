"""Matrix-product formulas. Every expected number is derived by hand in the comment beside it."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import rooflens
from rooflens.formulas import REGISTRY
from rooflens.formulas.registry import OpCall
from rooflens.types import Convention, TensorMeta

from _helpers import Fn, tm


def make_call(op: str, given: dict[str, Any], outputs: tuple[TensorMeta, ...], *,
              overload: str = "default", convention: Convention = Convention.FMA) -> OpCall:
    """An OpCall as the engine builds it: every schema argument by name, defaults filled in."""
    schema = getattr(getattr(torch.ops.aten, op.removeprefix("aten.")), overload)._schema
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


def only(report: rooflens.Report, op: str) -> rooflens.Cost:
    """The summed cost of ``op``, which must be the model's only MAC-carrying operator."""
    ops = report.by_operator()
    assert op in ops, list(ops)
    assert ops[op].supported
    assert report.total().macs == ops[op].cost.macs
    return ops[op].cost


# ---- mm / addmm under both conventions -------------------------------------------------------------


def test_mm_both_conventions() -> None:
    a, b = torch.randn(6, 4), torch.randn(4, 5)
    fma = only(rooflens.analyze(Fn(torch.mm), (a, b)), "aten.mm")
    # M=6, N=5, K=4: MACs = 6*5*4 = 120; fma FLOPs = 2*120 = 240
    assert (fma.macs, fma.flops) == (120, 240)
    exact = only(rooflens.analyze(Fn(torch.mm), (a, b), convention="exact"), "aten.mm")
    # exact, no bias: (2K - 1) * M * N = 7 * 30 = 210
    assert (exact.macs, exact.flops) == (120, 210)


def test_linear_reaches_addmm_both_conventions() -> None:
    lin = nn.Linear(8, 4)
    x = torch.randn(2, 8)
    fma = only(rooflens.analyze(lin, x), "aten.addmm")
    # M=2, K=8, N=4: MACs = 2*4*8 = 64; fma = 2*64 + 8 bias adds (2*4 outputs) = 136
    assert (fma.macs, fma.flops) == (64, 136)
    exact = only(rooflens.analyze(lin, x, convention="exact"), "aten.addmm")
    # exact with bias: 2K * M * N = 16 * 8 = 128
    assert (exact.macs, exact.flops) == (64, 128)


def test_linear_bytes_default_rule() -> None:
    cost = only(rooflens.analyze(nn.Linear(8, 4), torch.randn(2, 8)), "aten.addmm")
    # read: x 2*8*4 B = 64, weight 4*8*4 = 128, bias 4*4 = 16 -> 208; written: 2*4*4 = 32
    assert (cost.bytes_read, cost.bytes_written) == (208, 32)


def test_linear_without_bias_exact() -> None:
    report = rooflens.analyze(nn.Linear(8, 4, bias=False), torch.randn(2, 8), convention="exact")
    # M=2, K=8, N=4: MACs = 64; exact without bias: (2*8 - 1) * 2 * 4 = 120
    assert (report.total().macs, report.total().flops) == (64, 120)


def test_linear_on_3d_input_folds_rows() -> None:
    cost = only(rooflens.analyze(nn.Linear(8, 4), torch.randn(2, 3, 8)), "aten.addmm")
    # rows M = 2*3 = 6: MACs = 6*4*8 = 192; fma = 2*192 + 6*4 = 408
    assert (cost.macs, cost.flops) == (192, 408)


# ---- composites: matmul with broadcasting, einsum ---------------------------------------------------


def test_matmul_3d_at_2d() -> None:
    report = rooflens.analyze(Fn(torch.matmul), (torch.randn(2, 3, 4), torch.randn(4, 5)))
    cost = only(report, "aten.mm")  # the 2*3 leading rows are folded into M
    # M = 2*3 = 6, K = 4, N = 5: MACs = 6*5*4 = 120
    assert cost.macs == 120


def test_matmul_4d_at_4d_broadcast() -> None:
    report = rooflens.analyze(Fn(torch.matmul), (torch.randn(2, 3, 4, 5), torch.randn(1, 3, 5, 6)))
    cost = only(report, "aten.bmm")
    # batch (2,3) x (1,3) broadcasts to 2*3 = 6; M=4, K=5, N=6: MACs = 6*4*6*5 = 720; fma 1440
    assert (cost.macs, cost.flops) == (720, 1440)


def test_einsum_batched() -> None:
    report = rooflens.analyze(
        Fn(lambda a, b: torch.einsum("bij,bjk->bik", a, b)), (torch.randn(2, 3, 4), torch.randn(2, 4, 5))
    )
    # B=2, M=3, K=4, N=5: MACs = 2*3*5*4 = 120
    assert only(report, "aten.bmm").macs == 120


def test_einsum_attention_scores() -> None:
    q, k = torch.randn(2, 4, 16, 8), torch.randn(2, 4, 12, 8)
    report = rooflens.analyze(Fn(lambda a, b: torch.einsum("bhld,bhsd->bhls", a, b)), (q, k))
    # batch 2*4 = 8, L=16, S=12, d=8: MACs = 8*16*12*8 = 12288
    assert report.total().macs == 12288


# ---- the other products, run on the CPU -------------------------------------------------------------


def test_bmm_and_baddbmm() -> None:
    a, b, c = torch.randn(2, 3, 4), torch.randn(2, 4, 5), torch.randn(2, 3, 5)
    cost = only(rooflens.analyze(Fn(torch.bmm), (a, b)), "aten.bmm")
    # B=2, M=3, K=4, N=5: MACs = 120; fma 240
    assert (cost.macs, cost.flops) == (120, 240)
    cost = only(rooflens.analyze(Fn(torch.baddbmm), (c, a, b)), "aten.baddbmm")
    # MACs 120; fma = 240 + 2*3*5 = 30 input adds -> 270
    assert (cost.macs, cost.flops) == (120, 270)
    cost = only(rooflens.analyze(Fn(torch.baddbmm), (c, a, b), convention="exact"), "aten.baddbmm")
    # exact with the add: 2K * outputs = 8 * 30 = 240
    assert cost.flops == 240


def test_addbmm_sums_the_batch() -> None:
    args = (torch.randn(3, 5), torch.randn(2, 3, 4), torch.randn(2, 4, 5))
    cost = only(rooflens.analyze(Fn(torch.addbmm), args), "aten.addbmm")
    # each of the 3*5 = 15 outputs is a B*K = 2*4 = 8-term dot product: MACs = 15*8 = 120;
    # fma = 2*120 + 15 input adds = 255
    assert (cost.macs, cost.flops) == (120, 255)
    exact = only(rooflens.analyze(Fn(torch.addbmm), args, convention="exact"), "aten.addbmm")
    # exact: 2 * 8 * 15 = 240
    assert exact.flops == 240


def test_mv_addmv_dot_vdot() -> None:
    m, v4, v3 = torch.randn(3, 4), torch.randn(4), torch.randn(3)
    cost = only(rooflens.analyze(Fn(torch.mv), (m, v4)), "aten.mv")
    # M=3, K=4: MACs 12; fma 24
    assert (cost.macs, cost.flops) == (12, 24)
    cost = only(rooflens.analyze(Fn(torch.mv), (m, v4), convention="exact"), "aten.mv")
    # exact: (2*4 - 1) * 3 = 21
    assert cost.flops == 21
    cost = only(rooflens.analyze(Fn(torch.addmv), (v3, m, v4)), "aten.addmv")
    # MACs 12; fma 24 + 3 input adds = 27
    assert (cost.macs, cost.flops) == (12, 27)
    for fn, op in ((torch.dot, "aten.dot"), (torch.vdot, "aten.vdot")):
        cost = only(rooflens.analyze(Fn(fn), (v4, torch.randn(4))), op)
        # K=4: MACs 4, fma 8
        assert (cost.macs, cost.flops) == (4, 8)
        cost = only(rooflens.analyze(Fn(fn), (v4, torch.randn(4)), convention="exact"), op)
        # exact: 4 mults + 3 adds = 7
        assert cost.flops == 7


def test_in_place_variants() -> None:
    args = (torch.randn(6, 5), torch.randn(6, 4), torch.randn(4, 5))
    cost = only(rooflens.analyze(Fn(lambda c, a, b: c.addmm_(a, b)), args), "aten.addmm_")
    # M=6, K=4, N=5: MACs 120; fma 240 + 30 input adds = 270
    assert (cost.macs, cost.flops) == (120, 270)
    args = (torch.randn(2, 3, 5), torch.randn(2, 3, 4), torch.randn(2, 4, 5))
    cost = only(rooflens.analyze(Fn(lambda c, a, b: c.baddbmm_(a, b)), args), "aten.baddbmm_")
    # B=2, M=3, K=4, N=5: MACs 120; fma 240 + 30 = 270
    assert (cost.macs, cost.flops) == (120, 270)


def test_addr_outer_product() -> None:
    args = (torch.randn(3, 4), torch.randn(3), torch.randn(4))
    cost = only(rooflens.analyze(Fn(torch.addr), args), "aten.addr")
    # 3*4 = 12 outputs, one multiply each: MACs 12; fma = 2*12 + 12 input adds = 36
    assert (cost.macs, cost.flops) == (12, 36)
    exact = only(rooflens.analyze(Fn(torch.addr), args, convention="exact"), "aten.addr")
    # exact: 1 mult + 1 add per output = 24
    assert exact.flops == 24


def test_addmm_activation_relu_and_gelu() -> None:
    bias, a, b = torch.randn(16), torch.randn(4, 8), torch.randn(8, 16)
    relu = only(rooflens.analyze(Fn(lambda *t: torch.ops.aten._addmm_activation(*t)), (bias, a, b)),
                "aten._addmm_activation")
    # M=4, K=8, N=16: MACs = 512; fma = 1024 + 64 bias adds + 64 ReLU = 1152
    assert (relu.macs, relu.flops) == (512, 1152)
    gelu = only(rooflens.analyze(Fn(lambda *t: torch.ops.aten._addmm_activation(*t, use_gelu=True)),
                                 (bias, a, b)), "aten._addmm_activation")
    # fma = 1024 + 64 + 5 * 64 (exact GELU) = 1408
    assert (gelu.macs, gelu.flops) == (512, 1408)


def test_int_mm() -> None:
    a = torch.randint(-3, 3, (32, 64), dtype=torch.int8)
    b = torch.randint(-3, 3, (64, 32), dtype=torch.int8)
    cost = only(rooflens.analyze(Fn(torch._int_mm), (a, b)), "aten._int_mm")
    # M=32, K=64, N=32: MACs = 32*32*64 = 65536; 2x = 131072 integer ops
    assert (cost.macs, cost.flops) == (65536, 131072)
    # read 2 * 32*64 int8 = 4096 B; written 32*32 int32 = 4096 B
    assert (cost.bytes_read, cost.bytes_written) == (4096, 4096)


def test_grouped_mm_3d() -> None:
    a = torch.randn(2, 8, 16, dtype=torch.bfloat16)
    b = torch.randn(2, 16, 8, dtype=torch.bfloat16)
    cost = only(rooflens.analyze(Fn(lambda x, y: torch._grouped_mm(x, y)), (a, b)), "aten._grouped_mm")
    # G=2, M=8, K=16, N=8: MACs = 2*8*8*16 = 2048
    assert cost.macs == 2048


def test_bilinear_trilinear() -> None:
    report = rooflens.analyze(nn.Bilinear(3, 4, 5), (torch.randn(2, 3), torch.randn(2, 4)))
    ops = report.by_operator()
    # B=2, O=5, I1=3, I2=4: MACs = 2*5*3*4 = 120; fma 240
    assert ops["aten._trilinear"].supported
    assert (ops["aten._trilinear"].cost.macs, ops["aten._trilinear"].cost.flops) == (120, 240)


# ---- variants that need a GPU or special tensors: hand-built calls --------------------------------


def test_scaled_mm_fp8() -> None:
    fp8: dict[str, Any] = {"dtype": "float8_e4m3fn", "itemsize": 1}
    call = make_call(
        "aten._scaled_mm",
        {"self": tm(16, 32, **fp8), "mat2": tm(32, 8, **fp8), "scale_a": tm(), "scale_b": tm()},
        (tm(16, 8, dtype="bfloat16", itemsize=2),),
    )
    cost = cost_of(call)
    # M=16, K=32, N=8: MACs = 4096; fma = 8192 + 128 scalings (one per output) = 8320
    assert (cost.macs, cost.flops) == (4096, 8320)
    with_bias = make_call(
        "aten._scaled_mm",
        {"self": tm(16, 32, **fp8), "mat2": tm(32, 8, **fp8), "scale_a": tm(), "scale_b": tm(),
         "bias": tm(8, dtype="bfloat16", itemsize=2)},
        (tm(16, 8, dtype="bfloat16", itemsize=2),),
    )
    # + 128 bias adds = 8448
    assert cost_of(with_bias).flops == 8448


def test_grouped_mm_2d_operands() -> None:
    # MoE: 10 tokens (10, K=16) routed over 4 experts' weights (4, 16, 8): out (10, 8)
    call = make_call("aten._grouped_mm", {"self": tm(10, 16), "mat2": tm(4, 16, 8), "offs": tm(4)},
                     (tm(10, 8),))
    # 10*8 outputs, 16 terms each: MACs = 1280
    assert cost_of(call).macs == 1280
    # 2-d x 2-d: groups split K=20 of (8, 20) @ (20, 6) into 3 outputs (3, 8, 6)
    call = make_call("aten._grouped_mm", {"self": tm(8, 20), "mat2": tm(20, 6), "offs": tm(3)}, (tm(3, 8, 6),))
    # M*N*K_total = 8*6*20 = 960
    assert cost_of(call).macs == 960


def test_weight_only_int8_mm() -> None:
    call = make_call(
        "aten._weight_int8pack_mm",
        {"self": tm(4, 32), "mat2": tm(16, 32, dtype="int8", itemsize=1), "scales": tm(16)},
        (tm(4, 16),),
    )
    cost = cost_of(call)
    # M=4, K=32, N=16: MACs = 2048; fma = 4096 + 64 dequantising scalings = 4160
    assert (cost.macs, cost.flops) == (2048, 4160)


@pytest.mark.parametrize("op", ["aten.linear", "aten.mkldnn_linear"])
def test_linear_ops(op: str) -> None:
    x = "input" if op == "aten.linear" else "self"
    call = make_call(op, {x: tm(2, 3, 8), "weight": tm(4, 8), "bias": tm(4)}, (tm(2, 3, 4),))
    cost = cost_of(call)
    # rows 2*3 = 6, K=8, N=4: MACs = 192; fma = 384 + 24 bias adds = 408
    assert (cost.macs, cost.flops) == (192, 408)
    exact = cost_of(make_call(op, {x: tm(2, 3, 8), "weight": tm(4, 8)}, (tm(2, 3, 4),),
                              convention=Convention.EXACT))
    # exact, no bias: (2*8 - 1) * 24 = 360
    assert exact.flops == 360


def test_registry_entries_documented() -> None:
    for op in ("aten.mm", "aten.addmm", "aten.bmm", "aten.baddbmm", "aten.addbmm", "aten.mv", "aten.addmv",
               "aten.dot", "aten.vdot", "aten.addr", "aten._addmm_activation", "aten._int_mm", "aten._scaled_mm",
               "aten.linear", "aten.mkldnn_linear", "aten._grouped_mm", "aten._trilinear"):
        entry = REGISTRY.get(op)
        assert entry is not None, op
        assert entry.family == "matmul" and entry.doc, op


class _Cdist(nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.cdist(a, b)


class _Pdist(nn.Module):
    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return F.pdist(a)


def test_pairwise_distances():
    r = rooflens.analyze(_Cdist(), (torch.randn(2, 5, 8), torch.randn(2, 7, 8)))
    # 2*5*7 = 70 distances over 8 coordinates, 3 FLOPs each: 1,680; no MACs
    assert r.unsupported_ops() == {}
    assert (r.total().macs, r.total().flops) == (0, 1_680)
    r = rooflens.analyze(_Pdist(), (torch.randn(6, 4),))
    # 6*5/2 = 15 pairs x 4 coordinates x 3 = 180
    assert r.unsupported_ops() == {}
    assert r.total().flops == 180


def test_out_argument_is_written_not_read():
    class Out(nn.Module):
        def forward(self, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
            return torch.mm(a, b, out=c)

    r = rooflens.analyze(Out(), (torch.randn(2, 3), torch.randn(3, 4), torch.empty(2, 4)))
    # reads a (6 floats) and b (12 floats): 72 bytes; writes c (8 floats): 32 bytes
    assert (r.total().bytes_read, r.total().bytes_written) == (72, 32)


# ---- complex products -------------------------------------------------------------------------------
# A complex multiply-accumulate acc + (a + bi)(c + di) is 4 real multiplies (ac, bd, ad, bc) and 4 real adds
# (ac - bd, ad + bc, and the 2 accumulations): 4 real MACs. An n-term complex dot product, exact: 4n
# multiplies + (2n for the products + 2(n - 1) to accumulate) = 4n - 2 adds = 8n - 2; a complex bias add
# is 2 real adds.

C64 = torch.complex64


@pytest.mark.parametrize(("fn", "args", "op", "macs", "fma", "exact"), [
    # (3, 4) @ (4, 5): 15 outputs x 4 complex MACs = 60 complex = 240 real MACs; fma 480;
    # exact 15 x (8*4 - 2) = 15 x 30 = 450
    (torch.mm, (torch.randn(3, 4, dtype=C64), torch.randn(4, 5, dtype=C64)), "aten.mm", 240, 480, 450),
    # complex128 the same
    (torch.mm, (torch.randn(3, 4, dtype=torch.complex128), torch.randn(4, 5, dtype=torch.complex128)),
     "aten.mm", 240, 480, 450),
    # addmm: + a complex bias add per output, 2 real adds: fma 480 + 30 = 510; exact 15 x 8*4 = 480
    (torch.addmm, (torch.randn(5, dtype=C64), torch.randn(3, 4, dtype=C64), torch.randn(4, 5, dtype=C64)),
     "aten.addmm", 240, 510, 480),
    # batched (2, 3, 4) @ (2, 4, 5): 2 x 60 complex = 480 real MACs; fma 960; exact 30 outputs x 30 = 900
    (torch.matmul, (torch.randn(2, 3, 4, dtype=C64), torch.randn(2, 4, 5, dtype=C64)), "aten.bmm", 480, 960, 900),
    # vdot of 8: 8 complex = 32 real MACs; fma 64; exact 8*8 - 2 = 62
    (torch.vdot, (torch.randn(8, dtype=C64), torch.randn(8, dtype=C64)), "aten.vdot", 32, 64, 62),
    # mv (3, 4) @ (4,): 12 complex = 48 real MACs; fma 96; exact 3 x 30 = 90
    (torch.mv, (torch.randn(3, 4, dtype=C64), torch.randn(4, dtype=C64)), "aten.mv", 48, 96, 90),
    # addr: 12 outputs, each 1 complex product + the complex add of self: MACs 4 x 12 = 48;
    # fma 96 + 24 = 120; exact per output 4 mul + 2 add + 2 add = 8 -> 96
    (torch.addr, (torch.randn(3, 4, dtype=C64), torch.randn(3, dtype=C64), torch.randn(4, dtype=C64)),
     "aten.addr", 48, 120, 96),
])
def test_complex_products(fn: Any, args: tuple[torch.Tensor, ...], op: str, macs: int, fma: int, exact: int) -> None:
    for convention, flops in (("fma", fma), ("exact", exact)):
        cost = only(rooflens.analyze(Fn(fn), args, convention=convention), op)
        assert (cost.macs, cost.flops) == (macs, flops)


def test_complex_linear() -> None:
    # nn.Linear(4, 5) in complex64 on (3, 4): addmm, as test_complex_products: 240 MACs, fma 510
    lin = nn.Linear(4, 5, dtype=C64)
    cost = only(rooflens.analyze(lin, torch.randn(3, 4, dtype=C64)), "aten.addmm")
    assert (cost.macs, cost.flops) == (240, 510)
    # aten.linear called directly (rare paths): the same
    call = make_call("aten.linear", {"input": tm(3, 4, dtype="complex64", itemsize=8),
                                     "weight": tm(5, 4, dtype="complex64", itemsize=8),
                                     "bias": tm(5, dtype="complex64", itemsize=8)},
                     (tm(3, 5, dtype="complex64", itemsize=8),))
    assert (cost_of(call).macs, cost_of(call).flops) == (240, 510)
