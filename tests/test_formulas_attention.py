"""Attention formulas. Every expected number is derived by hand in the comment beside it.

Shapes used throughout unless stated: q, k, v (B=2, H=4, L=S=16, E=Ev=8), so
scores = B*H*L*S = 2*4*16*16 = 2048; QK^T MACs = 2048*8 = 16384; PV MACs = 16384; MACs = 32768;
fma FLOPs = 2*32768 + (1 scale + 5 softmax) * 2048 = 65536 + 12288 = 77824; + 2048 with a mask = 79872.
"""

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

CPU_SDPA = "aten._scaled_dot_product_flash_attention_for_cpu"
MACS, FLOPS, FLOPS_MASKED = 32768, 77824, 79872


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
    inputs = tuple(v for v in args.values() if isinstance(v, TensorMeta))
    return OpCall(op, args, inputs, outputs, convention)


def cost_of(call: OpCall) -> rooflens.Cost:
    entry = REGISTRY.get(call.op)
    assert entry is not None, call.op
    return entry.formula(call)


def qkv(b: int = 2, h: int = 4, l: int = 16, s: int = 16, e: int = 8, ev: int = 8) -> tuple[torch.Tensor, ...]:
    return torch.randn(b, h, l, e), torch.randn(b, h, s, e), torch.randn(b, h, s, ev)


# ---- F.scaled_dot_product_attention on the CPU ------------------------------------------------------


def test_sdpa_no_mask() -> None:
    report = rooflens.analyze(Fn(F.scaled_dot_product_attention), qkv())
    ops = report.by_operator()
    assert list(ops) == [CPU_SDPA] and ops[CPU_SDPA].calls == 1
    assert (report.total().macs, report.total().flops) == (MACS, FLOPS)


def test_sdpa_exact_convention() -> None:
    report = rooflens.analyze(Fn(F.scaled_dot_product_attention), qkv(), convention="exact")
    # QK^T: 2*16384 - 2048 outputs = 30720; PV: 2*16384 - (2*4*16*8 = 1024 outputs) = 31744;
    # + 6 * 2048 = 12288 -> 74752
    assert report.total().flops == 74752


def test_sdpa_additive_mask() -> None:
    mask = torch.randn(16, 16)
    report = rooflens.analyze(Fn(lambda q, k, v, m: F.scaled_dot_product_attention(q, k, v, attn_mask=m)),
                              (*qkv(), mask))
    cost = report.by_operator()[CPU_SDPA].cost
    # + 1 mask add per score: 77824 + 2048 = 79872
    assert (cost.macs, cost.flops) == (MACS, FLOPS_MASKED)


def test_sdpa_causal_counted_dense() -> None:
    report = rooflens.analyze(Fn(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True)), qkv())
    cost = report.by_operator()[CPU_SDPA].cost
    # causal: every score counted (dense), no explicit mask tensor -> same as unmasked
    assert (cost.macs, cost.flops) == (MACS, FLOPS)


def test_sdpa_cross_attention_different_value_width() -> None:
    # Ev != E: the CPU's fused kernel declines and torch runs the math path (bmm, softmax): same MACs
    report = rooflens.analyze(Fn(F.scaled_dot_product_attention), qkv(b=1, h=2, l=4, s=6, e=8, ev=10))
    # scores 1*2*4*6 = 48; QK^T 48*8 = 384; PV 48*10 = 480; MACs 864
    assert report.total().macs == 864
    call = make_call(CPU_SDPA, {"query": tm(1, 2, 4, 8), "key": tm(1, 2, 6, 8), "value": tm(1, 2, 6, 10)},
                     (tm(1, 2, 4, 10), tm(1, 2, 4)))
    # fma: 2*864 + 6*48 = 1728 + 288 = 2016
    assert (cost_of(call).macs, cost_of(call).flops) == (864, 2016)


def test_sdpa_grouped_query_attention() -> None:
    q, k, v = torch.randn(1, 8, 4, 16), torch.randn(1, 2, 6, 16), torch.randn(1, 2, 6, 16)
    report = rooflens.analyze(
        Fn(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, enable_gqa=True)), (q, k, v))
    # per query head: scores 1*8*4*6 = 192; MACs = 192*16 * 2 = 6144
    assert report.total().macs == 6144


# ---- nn.MultiheadAttention ----------------------------------------------------------------------


class SelfAttention(nn.Module):
    def __init__(self, mha: nn.MultiheadAttention, need_weights: bool = True) -> None:
        super().__init__()
        self.mha, self.need_weights = mha, need_weights

    def forward(self, x: torch.Tensor) -> Any:
        return self.mha(x, x, x, need_weights=self.need_weights)


# D=512, H=8, L=S=128, B=1:
# in-projection  128*512*1536      = 100,663,296
# QK^T + PV      2 * 128*128*512   =  16,777,216
# out-projection 128*512*512       =  33,554,432
MHA_MACS = 150_994_944


def test_multihead_attention_eval_fast_path() -> None:
    model = SelfAttention(nn.MultiheadAttention(512, 8, batch_first=True)).eval()
    x = torch.randn(1, 128, 512)
    with torch.no_grad():
        report = rooflens.analyze(model, x)
    assert [r.op for r in report.records] == ["aten._native_multi_head_attention"]
    assert report.unsupported_ops() == {}
    # FLOPs (fma):
    # in-proj  2*100,663,296 + 128*1536 bias adds (196,608)                 = 201,523,200
    # attention scores 8*128*128 = 131,072: 2*16,777,216 + 6*131,072        =  34,340,864
    # out-proj 2*33,554,432 + 128*512 bias adds (65,536)                    =  67,174,400
    # head-averaged weights (need_weights): 1 per score                     =     131,072
    # total                                                                  = 303,169,536
    assert (report.total().macs, report.total().flops) == (MHA_MACS, 303_169_536)


def test_multihead_attention_without_weights() -> None:
    model = SelfAttention(nn.MultiheadAttention(512, 8, batch_first=True), need_weights=False).eval()
    with torch.no_grad():
        report = rooflens.analyze(model, torch.randn(1, 128, 512))
    # as above without the 131,072 FLOPs of averaging the weights: 303,038,464
    assert (report.total().macs, report.total().flops) == (MHA_MACS, 303_038_464)


def test_multihead_attention_train_mode_same_macs() -> None:
    model = SelfAttention(nn.MultiheadAttention(512, 8, batch_first=True)).train()
    report = rooflens.analyze(model, torch.randn(1, 128, 512))
    assert "aten._native_multi_head_attention" not in report.by_operator()
    assert report.total().macs == MHA_MACS


def test_native_mha_cross_attention_with_mask() -> None:
    # query (1, 10, 32), key/value (1, 6, 32), D=32, H=4 (head size 8), a mask given
    call = make_call(
        "aten._native_multi_head_attention",
        {"query": tm(1, 10, 32), "key": tm(1, 6, 32), "value": tm(1, 6, 32), "embed_dim": 32, "num_head": 4,
         "qkv_weight": tm(96, 32), "qkv_bias": tm(96), "proj_weight": tm(32, 32), "proj_bias": tm(32),
         "mask": tm(10, 6), "need_weights": False},
        (tm(1, 10, 32), tm(0)),
    )
    cost = cost_of(call)
    # q-proj 10*32*32 = 10240; k,v-proj 2*6*32*32 = 12288; scores 4*10*6 = 240, QK^T+PV 2*240*8 = 3840;
    # out-proj 10240 -> MACs 36608
    # FLOPs: projections 2*(10240+12288+10240) + bias adds (320 + 384 + 320) = 65536 + 1024 = 66560;
    # attention 2*3840 + (1 + 5 + 1 mask) * 240 = 7680 + 1680 = 9360 -> 75920
    assert (cost.macs, cost.flops) == (36608, 75920)


# ---- nn.TransformerEncoderLayer ---------------------------------------------------------------------

# d_model D=32, nhead H=4, dim_feedforward F=64, x (B=2, L=10, D): rows = 20
# in-proj 20*32*96 = 61,440; QK^T+PV 2*2*10*10*32 = 12,800; out-proj 20*32*32 = 20,480;
# FFN 2 * 20*32*64 = 81,920  -> MACs 176,640
ENC_MACS = 176_640


def test_transformer_encoder_layer_fast_path() -> None:
    layer = nn.TransformerEncoderLayer(32, 4, 64, batch_first=True).eval()
    with torch.no_grad():
        report = rooflens.analyze(layer, torch.randn(2, 10, 32))
    assert [r.op for r in report.records] == ["aten._transformer_encoder_layer_fwd"]
    # FLOPs (fma):
    # in-proj  2*61,440 + 20*96      = 124,800
    # attention (scores 2*4*10*10 = 800) 2*12,800 + 6*800 = 30,400
    # out-proj 2*20,480 + 20*32      =  41,600
    # FFN1     2*40,960 + 20*64      =  83,200
    # FFN2     2*40,960 + 20*32      =  82,560
    # ReLU     20*64                 =   1,280
    # 2 layer norms 2 * 8 * 640      =  10,240
    # 2 residual adds 2 * 640        =   1,280
    # total                          = 375,360
    assert (report.total().macs, report.total().flops) == (ENC_MACS, 375_360)


def test_transformer_encoder_layer_gelu() -> None:
    layer = nn.TransformerEncoderLayer(32, 4, 64, activation="gelu", batch_first=True).eval()
    with torch.no_grad():
        report = rooflens.analyze(layer, torch.randn(2, 10, 32))
    assert [r.op for r in report.records] == ["aten._transformer_encoder_layer_fwd"]
    # GELU 5 per element instead of ReLU 1: 375,360 + 4*1,280 = 380,480
    assert (report.total().macs, report.total().flops) == (ENC_MACS, 380_480)


def test_transformer_encoder_layer_train_same_macs() -> None:
    layer = nn.TransformerEncoderLayer(32, 4, 64, batch_first=True).train()
    report = rooflens.analyze(layer, torch.randn(2, 10, 32))
    assert "aten._transformer_encoder_layer_fwd" not in report.by_operator()
    assert report.total().macs == ENC_MACS


def test_transformer_encoder_layer_mask_exact() -> None:
    call = make_call(
        "aten._transformer_encoder_layer_fwd",
        {"src": tm(2, 10, 32), "embed_dim": 32, "num_heads": 4, "qkv_weight": tm(96, 32), "qkv_bias": tm(96),
         "proj_weight": tm(32, 32), "proj_bias": tm(32), "use_gelu": False, "norm_first": False, "eps": 1e-5,
         "norm_weight_1": tm(32), "norm_bias_1": tm(32), "norm_weight_2": tm(32), "norm_bias_2": tm(32),
         "ffn_weight_1": tm(64, 32), "ffn_bias_1": tm(64), "ffn_weight_2": tm(32, 64), "ffn_bias_2": tm(32),
         "mask": tm(10, 10)},
        (tm(2, 10, 32),),
        convention=Convention.EXACT,
    )
    cost = cost_of(call)
    # exact: linears with bias 2*MACs = 2*(61,440 + 20,480 + 81,920) = 327,680;
    # attention: QK^T 2*6,400 - 800 = 12,000, PV 2*6,400 - 2*4*10*8 (640) = 12,160, + 7*800 (mask) = 5,600;
    # ReLU 1,280 + norms 10,240 + residuals 1,280 -> 327,680 + 29,760 + 12,800 = 370,240
    assert (cost.macs, cost.flops) == (ENC_MACS, 370_240)


# ---- the CUDA kernels, by hand-built calls ----------------------------------------------------------

BHLE = (2, 4, 16, 8)  # (B, H, L, E)
BLHE = (2, 16, 4, 8)  # (B, L, H, E) of _flash_attention_forward / _efficient_attention_forward


@pytest.mark.parametrize(
    ("op", "extra", "expected_flops"),
    [
        ("aten._scaled_dot_product_flash_attention", {}, FLOPS),
        ("aten._scaled_dot_product_efficient_attention", {"attn_bias": None, "compute_log_sumexp": True}, FLOPS),
        ("aten._scaled_dot_product_efficient_attention", {"attn_bias": tm(2, 4, 16, 16),
                                                          "compute_log_sumexp": True}, FLOPS_MASKED),
        ("aten._scaled_dot_product_cudnn_attention", {"attn_bias": None, "compute_log_sumexp": True,
                                                      "is_causal": True}, FLOPS),
        ("aten._scaled_dot_product_cudnn_attention", {"attn_bias": tm(16, 16), "compute_log_sumexp": True},
         FLOPS_MASKED),
        ("aten._scaled_dot_product_fused_attention_overrideable", {}, FLOPS),
        ("aten._scaled_dot_product_fused_attention_overrideable", {"attn_bias": tm(16, 16)}, FLOPS_MASKED),
        ("aten._scaled_dot_product_flash_attention_for_cpu", {"attn_mask": tm(16, 16)}, FLOPS_MASKED),
    ],
)
def test_fused_sdpa_variants(op: str, extra: dict[str, Any], expected_flops: int) -> None:
    half: dict[str, Any] = {"dtype": "float16", "itemsize": 2}
    call = make_call(op, {"query": tm(*BHLE, **half), "key": tm(*BHLE, **half), "value": tm(*BHLE, **half),
                          **extra}, (tm(*BHLE, **half),))
    cost = cost_of(call)
    assert (cost.macs, cost.flops) == (MACS, expected_flops)


def test_flash_attention_forward_blhe_layout() -> None:
    call = make_call(
        "aten._flash_attention_forward",
        {"query": tm(*BLHE), "key": tm(*BLHE), "value": tm(*BLHE), "max_q": 16, "max_k": 16, "dropout_p": 0.0,
         "is_causal": True, "return_debug_mask": False},
        (tm(*BLHE),),
    )
    # (B, L, H, E) = (2, 16, 4, 8): the same 2048 scores as the (B, H, L, E) case
    assert (cost_of(call).macs, cost_of(call).flops) == (MACS, FLOPS)


def test_flash_attention_forward_varlen() -> None:
    # two packed sequences of 16: q/k/v (32, H=4, E=8), cum_seq (3,), max 16
    call = make_call(
        "aten._flash_attention_forward",
        {"query": tm(32, 4, 8), "key": tm(32, 4, 8), "value": tm(32, 4, 8), "cum_seq_q": tm(3, dtype="int32"),
         "cum_seq_k": tm(3, dtype="int32"), "max_q": 16, "max_k": 16, "dropout_p": 0.0, "is_causal": False,
         "return_debug_mask": False},
        (tm(32, 4, 8),),
    )
    # scores H * min(32*16, 32*16) = 4*512 = 2048: as dense (2, 4, 16, 16)
    assert (cost_of(call).macs, cost_of(call).flops) == (MACS, FLOPS)


def test_efficient_attention_forward() -> None:
    dense = make_call(
        "aten._efficient_attention_forward",
        {"query": tm(*BLHE), "key": tm(*BLHE), "value": tm(*BLHE), "bias": tm(2, 4, 16, 16), "dropout_p": 0.0,
         "custom_mask_type": 0},
        (tm(*BLHE),),
    )
    # (B, L, H, E) layout, with a bias (mask): 79872
    assert (cost_of(dense).macs, cost_of(dense).flops) == (MACS, FLOPS_MASKED)
    varlen = make_call(
        "aten._efficient_attention_forward",
        {"query": tm(1, 32, 4, 8), "key": tm(1, 24, 4, 8), "value": tm(1, 24, 4, 8),
         "cu_seqlens_q": tm(3, dtype="int32"), "cu_seqlens_k": tm(3, dtype="int32"), "max_seqlen_q": 16,
         "max_seqlen_k": 12, "dropout_p": 0.0, "custom_mask_type": 0},
        (tm(1, 32, 4, 8),),
    )
    # 2 sequences, q 32 total (max 16), k 24 total (max 12): pairs min(32*12, 24*16) = 384;
    # scores 4*384 = 1536; MACs 1536*8*2 = 24576
    assert cost_of(varlen).macs == 24576


def test_registry_entries_documented() -> None:
    for op in ("aten._scaled_dot_product_flash_attention_for_cpu", "aten._scaled_dot_product_flash_attention",
               "aten._scaled_dot_product_efficient_attention", "aten._scaled_dot_product_cudnn_attention",
               "aten._scaled_dot_product_fused_attention_overrideable", "aten._flash_attention_forward",
               "aten._efficient_attention_forward", "aten._native_multi_head_attention",
               "aten._transformer_encoder_layer_fwd"):
        entry = REGISTRY.get(op)
        assert entry is not None, op
        assert entry.family == "attention" and entry.doc, op
