"""The counts agree with themselves and with torch's own counter (issue 10, section 6).

1. The module tree adds up, for every module of all 80 torchvision classifiers: ``own + sum of the
   children's cumulative == cumulative`` (all four Cost fields), ``own`` and ``cumulative`` equal the sums
   of the operator records made in the module and in its subtree (summed here from the records alone,
   independently of rooflens's bookkeeping), and the root's cumulative is ``report.total()`` and the sum
   of every record.
2. ``torch.utils.flop_counter.FlopCounterMode`` counts only matrix products, convolutions and attention
   (the operators of its ``flop_registry``), at 2 FLOPs per multiply-accumulate, no bias. rooflens's
   2 x MACs over the same operators must equal it per operator, per module and in total; every difference
   is listed with its exact value and the reason. Where FlopCounterMode meets an operator it has no
   formula for, it runs the operator's decomposition if torch has one (and counts its parts) and counts
   nothing otherwise: that is the source of every difference below.

Time, measured on this 2-core machine while other jobs shared it (load 2-4): the 80 classifiers 55 s
(52 s of CPU; 90 s at the busiest), building the models included; analysing a meta model costs the same at
any image size, so each runs at its native resolution. The FlopCounterMode cases 11 s. The whole file
65 s: under the 2-minute budget, so no ``slow`` marker.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, flop_registry
from torchvision import models
from torchvision.models.regnet import BlockParams

import rooflens
from rooflens.types import ZERO, Cost, OpRecord

from _helpers import Fn

# ---------------------------------------------------------------------------------------------------------
# 1. The module tree adds up
# ---------------------------------------------------------------------------------------------------------

CLASSIFIERS = models.list_models(module=models)
# Native resolutions. Every classifier takes 224 x 224 but inception_v3, built for 299 x 299. ViTs and
# maxvit need exactly their configured size (224 with weights=None: vit_h_14's 518 belongs to its weights).
# Smaller inputs would not be faster: on the meta device the analysis costs the same at any image size.
IMAGE_SIZE = {"inception_v3": 299}


def test_all_80_torchvision_classifiers_are_listed() -> None:
    assert len(CLASSIFIERS) == 80, CLASSIFIERS


def _ancestors(path: str) -> Iterator[str]:
    """``path``, its parent, ..., the root ``""`` (written here, not rooflens's own helper)."""
    while path:
        yield path
        path = path.rpartition(".")[0]
    yield ""


def _sums_from_records(records: tuple[OpRecord, ...]) -> tuple[dict[str, Cost], dict[str, Cost]]:
    """Per module path: the cost of the records made in it (own) and in its subtree (cumulative)."""
    own: dict[str, Cost] = {}
    cumulative: dict[str, Cost] = {}
    for r in records:
        own[r.module] = own.get(r.module, ZERO) + r.cost
        for path in _ancestors(r.module):
            cumulative[path] = cumulative.get(path, ZERO) + r.cost
    return own, cumulative


def _build_on_meta(name: str, monkeypatch: pytest.MonkeyPatch) -> nn.Module:
    # RegNet's builder computes its stage widths with tensors and reads them back (``.tolist()``), which
    # cannot work under ``torch.device("meta")``: that arithmetic runs on the CPU, the modules on meta.
    original = BlockParams.from_init_params.__func__

    def widths_on_cpu(cls: type[BlockParams], *args: Any, **kwargs: Any) -> BlockParams:
        with torch.device("cpu"):
            return original(cls, *args, **kwargs)

    monkeypatch.setattr(BlockParams, "from_init_params", classmethod(widths_on_cpu))
    with torch.device("meta"):
        model: nn.Module = models.get_model(name, weights=None).eval()
    return model


@pytest.mark.filterwarnings("ignore:The default weight initialization:FutureWarning")  # googlenet, inception_v3
@pytest.mark.parametrize("name", CLASSIFIERS)
def test_module_tree_adds_up(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    model = _build_on_meta(name, monkeypatch)
    assert all(p.device.type == "meta" for p in model.parameters())
    size = IMAGE_SIZE.get(name, 224)
    report = rooflens.analyze(model, input_size=(1, 3, size, size))
    nodes = report.modules
    assert report.records and report.total().macs > 0

    # the tree is whole: every node but the root is the child of its parent, and only of it
    listed = [c for node in nodes.values() for c in node.children]
    assert sorted(listed) == sorted(p for p in nodes if p), "a node missing from, or twice in, children lists"
    for path, node in nodes.items():
        for child in node.children:
            assert child.rpartition(".")[0] == path, (path, child)
    strays = {r.module for r in report.records} - set(nodes)
    assert not strays, f"records made in modules that are not in the tree: {sorted(strays)}"

    own, cumulative = _sums_from_records(report.records)
    wrong: list[str] = []
    for path, node in nodes.items():
        parts = node.own + sum((nodes[c].cumulative for c in node.children), ZERO)
        if parts != node.cumulative:
            wrong.append(f"{path!r}: own + children {parts.as_dict()} != cumulative {node.cumulative.as_dict()}")
        if node.own != own.get(path, ZERO):
            wrong.append(f"{path!r}: own {node.own.as_dict()} != its records {own.get(path, ZERO).as_dict()}")
        if node.cumulative != cumulative.get(path, ZERO):
            wrong.append(
                f"{path!r}: cumulative {node.cumulative.as_dict()} != its subtree's records "
                f"{cumulative.get(path, ZERO).as_dict()}"
            )
    assert not wrong, "\n".join(wrong[:20])

    every_record = Cost(
        sum(r.cost.macs for r in report.records),
        sum(r.cost.flops for r in report.records),
        sum(r.cost.bytes_read for r in report.records),
        sum(r.cost.bytes_written for r in report.records),
    )
    assert nodes[""].cumulative == report.total() == every_record


# ---------------------------------------------------------------------------------------------------------
# 2. Against torch.utils.flop_counter.FlopCounterMode
# ---------------------------------------------------------------------------------------------------------

FC_OPERATORS = frozenset(str(op) for op in flop_registry)  # "aten.mm", "aten.convolution", ...
# The fused kernels rooflens records and FlopCounterMode does not have in its registry. rooflens's fake run
# is on a CPU fake device without grad, so nn.MultiheadAttention and nn.TransformerEncoderLayer take their
# fused fast paths and SDPA its CPU flash kernel. FlopCounterMode, given meta tensors, sees the slow paths
# (the fast paths need CPU or CUDA tensors) and SDPA's math decomposition into bmm; given real CPU tensors,
# it sees the same kernels as rooflens and, having neither a formula nor a decomposition for them, counts
# nothing for them.
MHA = "aten._native_multi_head_attention"  # nn.MultiheadAttention's fused fast path (eval, no grad)
ENCODER_LAYER = "aten._transformer_encoder_layer_fwd"  # nn.TransformerEncoderLayer's fused fast path
CPU_FLASH = "aten._scaled_dot_product_flash_attention_for_cpu"  # F.scaled_dot_product_attention on CPU
# In these models only these families have MACs (checked per record), so 2 x MACs restricted to them is
# the same set of operators FlopCounterMode counts, directly or through the decompositions above.
MAC_FAMILIES = {"conv", "matmul", "attention"}


@dataclass(frozen=True)
class Flops:
    """FLOPs in FlopCounterMode's terms (2 per MAC) in total, per operator and per module (cumulative)."""

    total: int
    by_op: dict[str, int]
    by_module: dict[str, int]  # module path as rooflens writes it ("" the root)


def flop_counter(model: nn.Module, *args: Any, **kwargs: Any) -> Flops:
    counter = FlopCounterMode(display=False)
    with counter:
        model(*args, **kwargs)
    counts = counter.get_flop_counts()
    root = type(model).__name__  # FlopCounterMode names modules "<RootType>.<path>", and "Global" the total
    by_module: dict[str, int] = {}
    for key, ops in counts.items():
        if key == "Global":
            continue
        assert key == root or key.startswith(root + "."), key
        if sum(ops.values()):
            by_module[key[len(root) + 1 :]] = sum(ops.values())
    by_op = {str(op): n for op, n in counts.get("Global", {}).items() if n}
    assert counter.get_total_flops() == sum(by_op.values())
    return Flops(counter.get_total_flops(), by_op, by_module)


def rooflens_flops(report: rooflens.Report) -> Flops:
    """2 x rooflens's MACs, from the records (not the module tree), per operator and per module."""
    by_op: dict[str, int] = {}
    by_module: dict[str, int] = {}
    for r in report.records:
        if not r.cost.macs:
            continue
        assert r.family in MAC_FAMILIES, f"{r.op} ({r.family}) has MACs that FlopCounterMode does not count"
        assert r.op in FC_OPERATORS | {MHA, ENCODER_LAYER, CPU_FLASH}, r.op
        by_op[r.op] = by_op.get(r.op, 0) + 2 * r.cost.macs
        for path in _ancestors(r.module):
            by_module[path] = by_module.get(path, 0) + 2 * r.cost.macs
    return Flops(sum(by_op.values()), by_op, by_module)


def assert_differences(
    ours: Flops, theirs: Flops, *, by_op: dict[str, int] | None = None, by_module: dict[str, int] | None = None
) -> None:
    """rooflens minus FlopCounterMode is exactly ``by_op`` per operator and ``by_module`` per module (zero
    wherever not listed), and the totals differ by the sum of ``by_op``."""
    by_op, by_module = by_op or {}, by_module or {}
    op_delta = {op: ours.by_op.get(op, 0) - theirs.by_op.get(op, 0) for op in ours.by_op.keys() | theirs.by_op}
    assert {op: d for op, d in op_delta.items() if d} == by_op, (ours.by_op, theirs.by_op)
    paths = ours.by_module.keys() | theirs.by_module
    module_delta = {p: ours.by_module.get(p, 0) - theirs.by_module.get(p, 0) for p in paths}
    assert {p: d for p, d in module_delta.items() if d} == by_module, (ours.by_module, theirs.by_module)
    assert ours.total - theirs.total == sum(by_op.values())
    assert ours.total > 0


def _meta_classifier(name: str) -> nn.Module:
    with torch.device("meta"):
        model: nn.Module = models.get_model(name, weights=None).eval()
    return model


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2"])
def test_cnns_match_flop_counter(name: str) -> None:
    # convolutions (mobilenet_v2: depthwise too; both count out.numel x Cin/groups x Kh x Kw) and the
    # classifier's addmm only: the same operators, identical per module
    model = _meta_classifier(name)
    x = torch.empty(1, 3, 224, 224, device="meta")
    ours = rooflens_flops(rooflens.analyze(model, x))
    assert set(ours.by_op) == {"aten.convolution", "aten.addmm"}
    assert_differences(ours, flop_counter(model, x))


def test_vit_b_16_matches_flop_counter() -> None:
    model = _meta_classifier("vit_b_16")
    x = torch.empty(1, 3, 224, 224, device="meta")
    ours = rooflens_flops(rooflens.analyze(model, x))
    theirs = flop_counter(model, x)
    # Same total, other operators. rooflens records each encoder block's attention as the fused fast path
    # (aten._native_multi_head_attention); FlopCounterMode on meta tensors sees the slow path: the q/k/v and
    # output projections as addmm, q k^T and P v (SDPA's math decomposition) as bmm. Both credit it to the
    # same module (encoder.layers.encoder_layer_N.self_attention), so per module they agree.
    layers, tokens, d = 12, 14 * 14 + 1, 768  # L = S = 197 tokens (196 patches + the class token), B = 1
    projections = layers * 2 * 4 * tokens * d * d  # in-projection (3 D x D) + out-projection, per token
    products = layers * 2 * 2 * tokens * tokens * d  # q k^T and P v: L S E per head, E x 12 heads = D
    assert_differences(
        ours, theirs, by_op={MHA: projections + products, "aten.addmm": -projections, "aten.bmm": -products}
    )


def _encoder() -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(64, 4, 128, batch_first=True)
    return nn.TransformerEncoder(layer, 2, enable_nested_tensor=False).eval()


# the small attention models below: batch B, sequence L = S, model width D, heads H (head size D / H),
# feed-forward width F
B, L, D, H, F = 2, 10, 64, 4, 128
ATTN_PROJECTIONS = 2 * 4 * B * L * D * D  # q, k, v in-projections and the out-projection
ATTN_IN_PROJECTIONS = 2 * 3 * B * L * D * D
ATTN_OUT_PROJECTION = 2 * B * L * D * D
ATTN_PRODUCTS = 2 * 2 * B * L * L * D  # q k^T and P v: B H L S (D / H) each
FEED_FORWARD = 2 * 2 * B * L * D * F  # linear1 (D -> F) and linear2 (F -> D)
ENCODER_LAYER_FLOPS = ATTN_PROJECTIONS + ATTN_PRODUCTS + FEED_FORWARD  # 1,361,920


def test_transformer_encoder_on_meta_matches_flop_counter() -> None:
    with torch.device("meta"):
        model = _encoder()
    x = torch.empty(B, L, D, device="meta")
    ours = rooflens_flops(rooflens.analyze(model, x))
    theirs = flop_counter(model, x)
    # Same total. rooflens records each layer as the fused fast path (one aten._transformer_encoder_layer_fwd
    # per layer, credited to layers.N: its submodules do not run); FlopCounterMode (meta tensors: the
    # slow path) sees in-projections as mm (a 3-d input through F.linear), the out-projection and the
    # feed-forward linears as addmm, attention as bmm, credited to layers.N.self_attn / linear1 / linear2.
    # ``layers`` is a ModuleList: never called, so FlopCounterMode has no entry for it; rooflens's tree
    # gives it the sum of its children.
    assert_differences(
        ours,
        theirs,
        by_op={
            ENCODER_LAYER: 2 * ENCODER_LAYER_FLOPS,
            "aten.mm": -2 * ATTN_IN_PROJECTIONS,
            "aten.addmm": -2 * (ATTN_OUT_PROJECTION + FEED_FORWARD),
            "aten.bmm": -2 * ATTN_PRODUCTS,
        },
        by_module={
            "layers": 2 * ENCODER_LAYER_FLOPS,
            **{f"layers.{i}.self_attn": -(ATTN_PROJECTIONS + ATTN_PRODUCTS) for i in range(2)},
            **{f"layers.{i}.linear{j}": -FEED_FORWARD // 2 for i in range(2) for j in (1, 2)},
        },
    )


def test_transformer_encoder_fast_path_on_cpu_is_missed_by_flop_counter() -> None:
    torch.manual_seed(0)
    model = _encoder()
    x = torch.randn(B, L, D)
    ours = rooflens_flops(rooflens.analyze(model, x))
    with torch.no_grad():
        theirs = flop_counter(model, x)
    # A real CPU forward without grad takes the fused fast path: FlopCounterMode has no formula for
    # aten._transformer_encoder_layer_fwd and torch no decomposition of it, so it counts nothing at all.
    assert theirs.total == 0
    assert_differences(
        ours,
        theirs,
        by_op={ENCODER_LAYER: 2 * ENCODER_LAYER_FLOPS},
        by_module={
            "": 2 * ENCODER_LAYER_FLOPS,
            "layers": 2 * ENCODER_LAYER_FLOPS,
            "layers.0": ENCODER_LAYER_FLOPS,
            "layers.1": ENCODER_LAYER_FLOPS,
        },
    )


def test_multihead_attention_on_meta_matches_flop_counter() -> None:
    with torch.device("meta"):
        model = nn.MultiheadAttention(D, H, batch_first=True).eval()
    x = torch.empty(B, L, D, device="meta")
    ours = rooflens_flops(rooflens.analyze(model, (x, x, x)))
    theirs = flop_counter(model, x, x, x)
    # Same total: rooflens records the fused fast path, FlopCounterMode (meta tensors: the slow path)
    # the in-projections as mm, the out-projection as addmm, q k^T and P v (need_weights: explicit) as bmm.
    assert_differences(
        ours,
        theirs,
        by_op={
            MHA: ATTN_PROJECTIONS + ATTN_PRODUCTS,
            "aten.mm": -ATTN_IN_PROJECTIONS,
            "aten.addmm": -ATTN_OUT_PROJECTION,
            "aten.bmm": -ATTN_PRODUCTS,
        },
    )


def test_multihead_attention_on_cpu_flash_attention_is_missed_by_flop_counter() -> None:
    torch.manual_seed(0)
    model = nn.MultiheadAttention(D, H, batch_first=True).eval()
    x = torch.randn(B, L, D)
    ours = rooflens_flops(rooflens.analyze(model, {"query": x, "key": x, "value": x, "need_weights": False}))
    theirs = flop_counter(model, x, x, x, need_weights=False)
    # Real CPU forward in grad mode: the slow path, whose attention (need_weights=False) is
    # F.scaled_dot_product_attention -> aten._scaled_dot_product_flash_attention_for_cpu. That kernel is not
    # in FlopCounterMode's registry and has no decomposition: q k^T and P v go uncounted.
    assert_differences(
        ours,
        theirs,
        by_op={
            MHA: ATTN_PROJECTIONS + ATTN_PRODUCTS,
            "aten.mm": -ATTN_IN_PROJECTIONS,
            "aten.addmm": -ATTN_OUT_PROJECTION,
        },
        by_module={"": ATTN_PRODUCTS},
    )


def test_multihead_attention_fast_path_on_cpu_is_missed_by_flop_counter() -> None:
    torch.manual_seed(0)
    model = nn.MultiheadAttention(D, H, batch_first=True).eval()
    x = torch.randn(B, L, D)
    ours = rooflens_flops(rooflens.analyze(model, (x, x, x)))
    with torch.no_grad():
        theirs = flop_counter(model, x, x, x)
    # Real CPU forward without grad: the fused aten._native_multi_head_attention, which FlopCounterMode
    # neither counts nor decomposes.
    assert theirs.total == 0
    assert_differences(
        ours, theirs, by_op={MHA: ATTN_PROJECTIONS + ATTN_PRODUCTS}, by_module={"": ATTN_PROJECTIONS + ATTN_PRODUCTS}
    )


class ConvTransposeNet(nn.Module):
    """Strided, grouped and dilated transposed convolutions, 2-d and 1-d."""

    def __init__(self) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(8, 4, 3, stride=2)
        self.grouped = nn.ConvTranspose2d(4, 6, 4, stride=2, padding=1, groups=2, bias=False)
        self.dilated = nn.ConvTranspose1d(3, 5, 3, dilation=2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.grouped(self.up(x))
        return y, self.dilated(y.flatten(2)[:, :3])


def test_conv_transpose_matches_flop_counter() -> None:
    torch.manual_seed(0)
    model = ConvTransposeNet().eval()
    x = torch.randn(1, 8, 8, 8)
    ours = rooflens_flops(rooflens.analyze(model, x))
    theirs = flop_counter(model, x)
    # A transposed convolution scatters each input element over Cout/groups x K weights (FlopCounterMode:
    # "each point in the *input* spatial dimension"); by hand:
    #   up:      in 8 x 8 x 8 = 512 elements x 4 x 3 x 3     = 18,432 MACs (output 4 x 17 x 17)
    #   grouped: in 4 x 17 x 17 = 1,156 x 6/2 x 4 x 4        = 55,488 MACs (output 6 x 34 x 34)
    #   dilated: in 3 x 1,156 = 3,468 x 5 x 3                 = 52,020 MACs
    assert ours.by_module == {"": 2 * 125_940, "up": 2 * 18_432, "grouped": 2 * 55_488, "dilated": 2 * 52_020}
    assert_differences(ours, theirs)


def _variants() -> dict[str, tuple[nn.Module, tuple[torch.Tensor, ...]]]:
    torch.manual_seed(0)
    r = torch.randn
    return {
        "conv3d_grouped_strided": (nn.Conv3d(4, 6, 3, stride=2, padding=1, groups=2), (r(2, 4, 9, 9, 9),)),
        "conv_transpose3d_output_padding": (
            nn.ConvTranspose3d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2),
            (r(2, 4, 5, 5, 5),),
        ),
        "conv2d_dilated": (nn.Conv2d(4, 8, 3, dilation=3, padding=2, stride=2), (r(3, 4, 20, 17),)),
        "conv1d_same": (nn.Conv1d(4, 8, 5, padding="same"), (r(3, 4, 20),)),
        "linear_on_a_vector": (nn.Linear(7, 3), (r(7),)),
        "matmul_4d": (Fn(torch.matmul), (r(2, 3, 5, 7), r(2, 3, 7, 4))),
        "matmul_broadcast": (Fn(torch.matmul), (r(2, 3, 5, 7), r(7, 4))),
        "einsum": (Fn(lambda a, b: torch.einsum("bij,bjk->bik", a, b)), (r(2, 5, 7), r(2, 7, 4))),
        "baddbmm": (Fn(torch.baddbmm), (r(2, 5, 4), r(2, 5, 7), r(2, 7, 4))),
    }


@pytest.mark.parametrize("case", list(_variants()))
def test_conv_and_matmul_variants_match_flop_counter(case: str) -> None:
    # operators FlopCounterMode has formulas for, in the shapes where counters tend to slip (padding, dilation,
    # output_padding, groups, broadcasting, 1-d inputs): identical per operator, real CPU forward
    model, args = _variants()[case]
    ours = rooflens_flops(rooflens.analyze(model.eval(), args))
    assert_differences(ours, flop_counter(model, *args))


def _llama(meta: bool) -> nn.Module:
    import transformers  # a dev dependency; imported here, where it is used, as it takes seconds

    config = transformers.LlamaConfig(
        vocab_size=128,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        attn_implementation="sdpa",
    )
    torch.manual_seed(0)
    if meta:
        with torch.device("meta"):
            model: nn.Module = transformers.LlamaForCausalLM(config).eval()
    else:
        model = transformers.LlamaForCausalLM(config).eval()
    return model


# Llama: 2 layers, 16 tokens, 4 query heads of 16 (2 key/value heads, grouped-query): per layer the
# attention products are 2 x B H L S (E + Ev) = 2 x 1 x 4 x 16 x 16 x (16 + 16) FLOPs, causal or not
# (neither counter skips the masked half).
LLAMA_SEQ = 16
LLAMA_ATTENTION = 2 * 1 * 4 * LLAMA_SEQ * LLAMA_SEQ * (16 + 16)  # 65,536 per layer


def test_llama_on_meta_matches_flop_counter() -> None:
    model = _llama(meta=True)
    ids = torch.zeros(1, LLAMA_SEQ, dtype=torch.long, device="meta")
    ours = rooflens_flops(rooflens.analyze(model, (ids,)))
    theirs = flop_counter(model, ids)
    # Projections, MLP and lm_head: mm in both. Attention: rooflens's fake run on a CPU fake device
    # records the CPU flash kernel; FlopCounterMode on meta tensors sees SDPA's math decomposition (bmm).
    # Both credit it to model.layers.N.self_attn. model.layers is a ModuleList (never called): no entry in
    # FlopCounterMode, the sum of its children in rooflens.
    layers = sum(v for k, v in theirs.by_module.items() if k.count(".") == 2 and k.startswith("model.layers."))
    assert_differences(
        ours,
        theirs,
        by_op={CPU_FLASH: 2 * LLAMA_ATTENTION, "aten.bmm": -2 * LLAMA_ATTENTION},
        by_module={"model.layers": layers},
    )


def test_llama_on_cpu_flash_attention_is_missed_by_flop_counter() -> None:
    model = _llama(meta=False)
    ids = torch.zeros(1, LLAMA_SEQ, dtype=torch.long)
    ours = rooflens_flops(rooflens.analyze(model, (ids,)))
    theirs = flop_counter(model, ids)
    # A real CPU forward runs aten._scaled_dot_product_flash_attention_for_cpu, which FlopCounterMode does
    # not count (nor decompose): the attention products of each layer are missing from it.
    layers = sum(v for k, v in theirs.by_module.items() if k.count(".") == 2 and k.startswith("model.layers."))
    assert_differences(
        ours,
        theirs,
        by_op={CPU_FLASH: 2 * LLAMA_ATTENTION},
        by_module={
            "": 2 * LLAMA_ATTENTION,
            "model": 2 * LLAMA_ATTENTION,
            "model.layers": layers + 2 * LLAMA_ATTENTION,  # the ModuleList: see the meta case
            **{f"model.layers.{i}": LLAMA_ATTENTION for i in range(2)},
            **{f"model.layers.{i}.self_attn": LLAMA_ATTENTION for i in range(2)},
        },
    )
