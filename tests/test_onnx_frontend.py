"""The ONNX front-end on tiny graphs built with onnx.helper: every operator family against a hand derivation,
the module tree from node names and from dynamo metadata, parameters, QDQ units, errors, API and CLI.

Every expected number is written out by hand with its arithmetic in a comment; none is recomputed with
rooflens's own formulas.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

onnx = pytest.importorskip("onnx")
np = pytest.importorskip("numpy")
from onnx import TensorProto, helper, numpy_helper

import rooflens
from rooflens import InputError
from rooflens.capture.onnx_graph import original_node_name, path_from_name
from rooflens.cli import main
from rooflens.formulas import onnx_ops
from rooflens.types import TensorKind

F, U8, I8, I32, I64 = TensorProto.FLOAT, TensorProto.UINT8, TensorProto.INT8, TensorProto.INT32, TensorProto.INT64
MS = "com.microsoft"


def tensor(name: str, shape: Sequence[int], dtype: int = F, value: float | None = None, seed: int = 0) -> Any:
    """An initializer of random values (or all ``value``)."""
    np_dtype = helper.tensor_dtype_to_np_dtype(dtype)
    rng = np.random.default_rng(seed)
    if value is not None:
        data = np.full(shape, value, dtype=np_dtype)
    elif np.issubdtype(np_dtype, np.integer):
        data = rng.integers(1, 5, size=shape).astype(np_dtype)
    else:
        data = (rng.standard_normal(shape) + 3.0).astype(np_dtype)  # no zeros: non-zero counts are the sizes
    return numpy_helper.from_array(data, name)


def model(
    nodes: list[Any], inputs: list[tuple[str, int, Sequence[int | str]]], outputs: list[tuple[str, int]],
    inits: Sequence[Any] = (), opset: int = 21, ms: bool = False, name: str = "g",
) -> Any:
    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info(n, t, list(s)) for n, t, s in inputs],
        [helper.make_tensor_value_info(n, t, None) for n, t in outputs],
        initializer=list(inits),
    )
    opsets = [helper.make_opsetid("", opset)] + ([helper.make_opsetid(MS, 1)] if ms else [])
    return helper.make_model(graph, opset_imports=opsets, ir_version=10)


def one(m: Any, **kwargs: Any) -> rooflens.OpRecord:
    """The only record of an analysed model."""
    records = rooflens.analyze_onnx(m, **kwargs).records
    assert len(records) == 1, [r.op for r in records]
    return records[0]


# ---- convolutions ---------------------------------------------------------------------------------------


def conv_model(bias: bool = True) -> Any:
    node = helper.make_node("Conv", ["x", "w"] + (["b"] if bias else []), ["y"], pads=[1, 1, 1, 1], name="conv")
    inits = [tensor("w", (4, 3, 3, 3))] + ([tensor("b", (4,))] if bias else [])
    return model([node], [("x", F, (1, 3, 8, 8))], [("y", F)], inits)


def test_conv_counts_and_bytes() -> None:
    r = one(conv_model())
    # out 1x4x8x8 = 256 elements, each a 3x3x3 = 27-term dot product: 256 x 27 = 6912 MACs
    assert r.cost.macs == 6912
    # fma: 2 x 6912 + 256 bias adds = 14080
    assert r.cost.flops == 14080
    # read x 3x8x8x4 B = 768, w 108x4 = 432, b 16 -> 1216; written 256 x 4 = 1024
    assert (r.cost.bytes_read, r.cost.bytes_written) == (1216, 1024)
    assert (r.op, r.family, r.node) == ("onnx.Conv", "conv", "conv")
    assert [t.kind for t in r.inputs] == [TensorKind.ACTIVATION, TensorKind.PARAMETER, TensorKind.PARAMETER]


def test_conv_exact_convention() -> None:
    # exact: (2 x 27 - 1) x 256 without the bias = 13568; with it the bias fills the -1: 2 x 27 x 256 = 13824
    assert one(conv_model(bias=False), convention="exact").cost.flops == 13568
    assert one(conv_model(bias=True), convention="exact").cost.flops == 13824


def test_depthwise_and_transposed_conv() -> None:
    dw = model([helper.make_node("Conv", ["x", "w"], ["y"], group=4)], [("x", F, (1, 4, 6, 6))], [("y", F)],
               [tensor("w", (4, 1, 3, 3))])
    # out 1x4x4x4 = 64 elements x (Cin/groups = 1) x 9 taps = 576 MACs
    assert one(dw).cost.macs == 576
    ct = model([helper.make_node("ConvTranspose", ["x", "w"], ["y"], strides=[2, 2])], [("x", F, (1, 2, 3, 3))],
               [("y", F)], [tensor("w", (2, 3, 2, 2))])
    # each of the 1x2x3x3 = 18 inputs scattered to Cout/groups 3 x 2x2 taps: 18 x 12 = 216 MACs (out 1x3x6x6)
    r = one(ct)
    assert r.cost.macs == 216 and r.outputs[0].shape == (1, 3, 6, 6)


# ---- matrix products ------------------------------------------------------------------------------------


def test_gemm() -> None:
    node = helper.make_node("Gemm", ["a", "w", "c"], ["y"], transB=1)
    r = one(model([node], [("a", F, (2, 5))], [("y", F)], [tensor("w", (3, 5)), tensor("c", (3,))]))
    # M 2 x N 3 x K 5 = 30 MACs; fma 60 + 6 bias adds = 66 FLOPs
    assert (r.cost.macs, r.cost.flops) == (30, 66)
    # read a 40 + w 60 + c 12 = 112 bytes; written 2x3x4 = 24
    assert (r.cost.bytes_read, r.cost.bytes_written) == (112, 24)


def test_matmul_broadcast_both_conventions() -> None:
    m = model([helper.make_node("MatMul", ["a", "b"], ["y"])], [("a", F, (2, 4, 5))], [("y", F)],
              [tensor("b", (5, 6))])
    # (2, 4, 5) @ (5, 6) -> (2, 4, 6): 48 outputs x K 5 = 240 MACs; fma 480; exact 480 - 48 outputs = 432
    assert (one(m).cost.macs, one(m).cost.flops) == (240, 480)
    assert one(m, convention="exact").cost.flops == 432


def test_einsum() -> None:
    bmm = model([helper.make_node("Einsum", ["a", "b"], ["y"], equation="bij,bjk->bik")],
                [("a", F, (2, 3, 4)), ("b", F, (2, 4, 5))], [("y", F)])
    # b 2 x i 3 x j 4 x k 5 = 120 MACs, 240 FLOPs
    assert (one(bmm).cost.macs, one(bmm).cost.flops) == (120, 240)
    outer = model([helper.make_node("Einsum", ["a", "b"], ["y"], equation="i,j->ij")],
                  [("a", F, (3,)), ("b", F, (4,))], [("y", F)])
    # nothing contracted: 3 x 4 = 12 multiplies, no MACs
    assert (one(outer).cost.macs, one(outer).cost.flops) == (0, 12)
    total = model([helper.make_node("Einsum", ["a"], ["y"], equation="ij->")], [("a", F, (3, 4))], [("y", F)])
    # a sum over 12 elements: 12 FLOPs
    assert one(total).cost.flops == 12


def test_fused_matmul_and_integer_products() -> None:
    fused = helper.make_node("FusedMatMul", ["a", "b"], ["y"], domain=MS, transB=1, alpha=0.5)
    r = one(model([fused], [("a", F, (2, 3))], [("y", F)], [tensor("b", (4, 3))], ms=True))
    # (2, 3) @ (4, 3)^T -> (2, 4): 8 x 3 = 24 MACs; 48 FLOPs + 8 for the alpha scaling = 56
    assert (r.cost.macs, r.cost.flops) == (24, 56)
    mmi = helper.make_node("MatMulInteger", ["a", "b"], ["y"])
    r = one(model([mmi], [("a", U8, (2, 3))], [("y", I32)], [tensor("b", (3, 4), I8)]))
    # 8 outputs x K 3 = 24 int8 MACs, 48 OPs; read a 6 B + b 12 B; written 8 x int32 = 32 B
    assert (r.cost.macs, r.cost.flops, r.cost.bytes_read, r.cost.bytes_written) == (24, 48, 18, 32)


# ---- attention --------------------------------------------------------------------------------------


def test_attention_opset_23() -> None:
    node = helper.make_node("Attention", ["q", "k", "v"], ["y"])
    m = model([node], [("q", F, (1, 2, 4, 8)), ("k", F, (1, 2, 6, 8)), ("v", F, (1, 2, 6, 8))], [("y", F)], opset=23)
    r = one(m)
    # scores 1 x 2 heads x 4 x 6 = 48; MACs 48 x 8 (q k^T) + 48 x 8 (P v) = 768
    # FLOPs 2 x 768 + 6 per score (scale 1, softmax 5) x 48 = 1536 + 288 = 1824
    assert (r.cost.macs, r.cost.flops) == (768, 1824)
    masked = helper.make_node("Attention", ["q", "k", "v", "mask"], ["y"], q_num_heads=2, kv_num_heads=2)
    m = model([masked], [("q", F, (1, 4, 16)), ("k", F, (1, 6, 16)), ("v", F, (1, 6, 16)), ("mask", F, (4, 6))],
              [("y", F)], opset=23)
    # 3-d inputs, 2 heads of 8: the same 768 MACs; + 1 per score for the mask: 1824 + 48 = 1872
    r = one(m)
    assert (r.cost.macs, r.cost.flops) == (768, 1872)


def test_contrib_attention_and_mha() -> None:
    node = helper.make_node("Attention", ["x", "w", "b"], ["y"], domain=MS, num_heads=2)
    m = model([node], [("x", F, (1, 4, 8))], [("y", F)], [tensor("w", (8, 24)), tensor("b", (24,))], ms=True)
    r = one(m)
    # projection 4 rows x 8 x 24 = 768 MACs, 2 x 768 + 96 bias adds = 1632 FLOPs
    # attention: 2 heads of 4, 1 x 2 x 4 x 4 = 32 scores: 32 x 4 x 2 = 256 MACs, 512 + 6 x 32 = 704 FLOPs
    assert (r.cost.macs, r.cost.flops) == (768 + 256, 1632 + 704)
    assert r.outputs[0].shape == (1, 4, 8)  # ONNX Runtime's shape inference knows the contrib operator
    mha = helper.make_node("MultiHeadAttention", ["q", "k", "v"], ["y"], domain=MS, num_heads=2)
    m = model([mha], [("q", F, (1, 4, 8)), ("k", F, (1, 6, 8)), ("v", F, (1, 6, 8))], [("y", F)], ms=True)
    # 2 heads of 4: 1 x 2 x 4 x 6 = 48 scores; MACs 48 x 4 x 2 = 384; FLOPs 768 + 6 x 48 = 1056
    r = one(m)
    assert (r.cost.macs, r.cost.flops) == (384, 1056)


# ---- normalisation, activations, elementwise -----------------------------------------------------------


def test_norms() -> None:
    ln = helper.make_node("LayerNormalization", ["x", "s", "b"], ["y"], axis=-1)
    r = one(model([ln], [("x", F, (2, 3, 8))], [("y", F)], [tensor("s", (8,)), tensor("b", (8,))]))
    # 48 elements x 8 (mean 1, variance 3, normalise 2, scale 1, shift 1) = 384
    assert r.cost.flops == 384 and r.family == "norm"
    ln_no_bias = helper.make_node("LayerNormalization", ["x", "s"], ["y"], axis=-1)
    # without the shift: 7 per element, 336
    assert one(model([ln_no_bias], [("x", F, (2, 3, 8))], [("y", F)], [tensor("s", (8,))])).cost.flops == 336
    bn = helper.make_node("BatchNormalization", ["x", "s", "b", "mean", "var"], ["y"])
    m = model([bn], [("x", F, (1, 4, 2, 2))], [("y", F)],
              [tensor("s", (4,)), tensor("b", (4,)), tensor("mean", (4,)), tensor("var", (4,), seed=1)])
    report = rooflens.analyze_onnx(m)
    # inference: one scale and shift per element, 2 x 16 = 32
    assert report.total().flops == 32
    # scale and shift are parameters (8); the running statistics buffers (8), as in torch
    assert (report.params.total, report.params.buffers) == (8, 8)
    skip = helper.make_node("SkipLayerNormalization", ["x", "skip", "g", "beta", "bias"], ["y"], domain=MS)
    m = model([skip], [("x", F, (2, 3, 8)), ("skip", F, (2, 3, 8))], [("y", F)],
              [tensor("g", (8,)), tensor("beta", (8,)), tensor("bias", (8,))], ms=True)
    # per element: + skip 1, + bias 1, layer norm 8 -> 10 x 48 = 480
    assert one(m).cost.flops == 480


@pytest.mark.parametrize(("op", "attrs", "per_element", "domain"), [
    ("Relu", {}, 1, ""),  # max(x, 0): one compare-select
    ("Sigmoid", {}, 4, ""),  # neg, exp, add, divide
    ("Gelu", {}, 5, ""),  # x/sqrt2, erf, +1, *x, *0.5
    ("Gelu", {"approximate": "tanh"}, 9, ""),  # x^2, x^3, *c, +x, *sqrt(2/pi), tanh, +1, *x, *0.5
    ("HardSwish", {}, 5, ""),  # add, 2 compare-selects, multiply, divide
    ("LeakyRelu", {}, 2, ""),  # multiply, compare-select
    ("Tanh", {}, 1, ""),
    ("FastGelu", {}, 9, MS),  # the tanh approximation
    ("QuickGelu", {}, 6, MS),  # alpha x 1, sigmoid 4, x * 1
])
def test_activations(op: str, attrs: dict[str, Any], per_element: int, domain: str) -> None:
    node = helper.make_node(op, ["x"], ["y"], domain=domain, **attrs)
    r = one(model([node], [("x", F, (2, 8))], [("y", F)], opset=21, ms=bool(domain)))
    assert r.cost.flops == per_element * 16 and r.cost.macs == 0
    assert (r.cost.bytes_read, r.cost.bytes_written) == (64, 64)  # 16 float32 in, 16 out


def test_bias_gelu_clip_and_broadcast_add() -> None:
    bg = helper.make_node("BiasGelu", ["x", "b"], ["y"], domain=MS)
    # + bias 1, exact GELU 5: 6 x 16 = 96
    assert one(model([bg], [("x", F, (2, 8))], [("y", F)], [tensor("b", (8,))], ms=True)).cost.flops == 96
    clip = helper.make_node("Clip", ["x", "lo", "hi"], ["y"])
    m = model([clip], [("x", F, (2, 8))], [("y", F)], [tensor("lo", (), value=0.0), tensor("hi", (), value=6.0)])
    # two bounds: 2 compare-selects x 16 = 32; the bounds are arguments, not read: 64 B read
    r = one(m)
    assert (r.cost.flops, r.cost.bytes_read) == (32, 64)
    add = helper.make_node("Add", ["a", "b"], ["y"])
    r = one(model([add], [("a", F, (2, 3)), ("b", F, (3,))], [("y", F)]))
    # 6 output elements, 1 add each; read 24 + 12 B, written 24 B
    assert (r.cost.flops, r.cost.bytes_read, r.cost.bytes_written) == (6, 36, 24)


# ---- pooling, resampling, reductions ---------------------------------------------------------------------


def test_pools_and_resize() -> None:
    mp = helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], strides=[2, 2])
    # 4 outputs (1x1x2x2) x window 4 = 16
    assert one(model([mp], [("x", F, (1, 1, 4, 4))], [("y", F)])).cost.flops == 16
    ap = helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[2, 2], strides=[2, 2])
    # 4 outputs x (4 adds + 1 divide) = 20
    assert one(model([ap], [("x", F, (1, 1, 4, 4))], [("y", F)])).cost.flops == 20
    gap = helper.make_node("GlobalAveragePool", ["x"], ["y"])
    # as aten.mean: 18 input elements + 2 divides = 20
    assert one(model([gap], [("x", F, (1, 2, 3, 3))], [("y", F)])).cost.flops == 20
    scales = tensor("scales", (4,), value=1.0)
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], dtype=np.float32), "scales")
    for mode, per_output in (("linear", 7), ("nearest", 0)):  # bilinear: 4 taps, 4 mul + 3 add; nearest: a gather
        node = helper.make_node("Resize", ["x", "", "scales"], ["y"], mode=mode)
        r = one(model([node], [("x", F, (1, 1, 2, 2))], [("y", F)], [scales]))
        assert r.outputs[0].shape == (1, 1, 4, 4)
        assert r.cost.flops == per_output * 16
        assert r.cost.bytes_read == 16  # the scales are an argument: only x's 4 floats are read


def test_reductions_and_softmax() -> None:
    mean = helper.make_node("ReduceMean", ["x", "axes"], ["y"], keepdims=0)
    m = model([mean], [("x", F, (2, 3, 4))], [("y", F)], [numpy_helper.from_array(np.array([2]), "axes")], opset=18)
    # 24 input elements + 6 divides = 30
    assert one(m).cost.flops == 30
    sm = helper.make_node("Softmax", ["x"], ["y"], axis=-1)
    # 5 per element (max, subtract, exp, sum, divide) x 10 = 50
    assert one(model([sm], [("x", F, (2, 5))], [("y", F)])).cost.flops == 50
    topk = helper.make_node("TopK", ["x", "k"], ["v", "i"], axis=-1)
    m = model([topk], [("x", F, (2, 16))], [("v", F), ("i", I64)], [numpy_helper.from_array(np.array([4]), "k")])
    # rows 2 x n 16 x ceil(log2 4) = 2 -> 64 compares
    assert one(m).cost.flops == 64


# ---- recurrent layers -------------------------------------------------------------------------------


def test_lstm_and_gru() -> None:
    lstm = helper.make_node("LSTM", ["x", "w", "r", "b"], ["y"], hidden_size=5)
    m = model([lstm], [("x", F, (3, 2, 4))], [("y", F)],
              [tensor("w", (1, 20, 4)), tensor("r", (1, 20, 5)), tensor("b", (1, 40))])
    r = one(m)
    # rows T 3 x B 2 = 6; MACs 6 x I 4 x 4H 20 + 6 x H 5 x 20 = 480 + 600 = 1080
    # FLOPs 2 x 480 + 120 (ih bias) + 2 x 600 + 120 (hh bias) + 22 x 6 x 5 (gates) = 3060
    assert (r.cost.macs, r.cost.flops) == (1080, 3060)
    bi = helper.make_node("LSTM", ["x", "w", "r", "b"], ["y"], hidden_size=5, direction="bidirectional")
    m = model([bi], [("x", F, (3, 2, 4))], [("y", F)],
              [tensor("w", (2, 20, 4)), tensor("r", (2, 20, 5)), tensor("b", (2, 40))])
    assert one(m).cost.macs == 2 * 1080  # two directions
    gru = helper.make_node("GRU", ["x", "w", "r", "b"], ["y"], hidden_size=5)
    m = model([gru], [("x", F, (3, 2, 4))], [("y", F)],
              [tensor("w", (1, 15, 4)), tensor("r", (1, 15, 5)), tensor("b", (1, 30))])
    # MACs 6 x 4 x 15 + 6 x 5 x 15 = 360 + 450 = 810; FLOPs 720 + 90 + 900 + 90 + 16 x 30 = 2280
    r = one(m)
    assert (r.cost.macs, r.cost.flops) == (810, 2280)


# ---- quantized ----------------------------------------------------------------------------------------


def qlinear_conv_model() -> Any:
    node = helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"], ["y"])
    inits = [
        tensor("xs", (), value=0.1), tensor("xz", (), U8, value=128), tensor("w", (3, 2, 1, 1), I8),
        tensor("ws", (), value=0.05), tensor("wz", (), I8, value=0), tensor("ys", (), value=0.2),
        tensor("yz", (), U8, value=128), tensor("b", (3,), I32),
    ]
    return model([node], [("x", U8, (1, 2, 4, 4))], [("y", U8)], inits)


def test_qlinear_conv_int8() -> None:
    report = rooflens.analyze_onnx(qlinear_conv_model())
    (r,) = report.records
    # out 1x3x4x4 = 48 outputs x Cin 2 = 96 int8 MACs; 192 + 48 bias adds + 5 x 48 requantisation = 480
    assert (r.cost.macs, r.cost.flops) == (96, 480)
    # read x 32 B (uint8) + w 6 B (int8) + b 12 B (int32) + scales 3 x 4 B + zero points 3 x 1 B = 65; written 48 B
    assert (r.cost.bytes_read, r.cost.bytes_written) == (65, 48)
    assert [t.dtype for t in r.inputs[:3]] == ["uint8", "int8", "int32"]
    assert report.precision is rooflens.Precision.INT8  # a quantized graph defaults to the int8 peak
    # parameters: w 6 + b 3 + 6 scales and zero points = 15 elements; 6 + 12 + 3 x 4 + 3 x 1 = 33 bytes
    assert (report.params.total, report.params.bytes) == (15, 33)


def test_qlinear_matmul_and_dynamic_quantize() -> None:
    node = helper.make_node("QLinearMatMul", ["a", "as", "az", "b", "bs", "bz", "ys", "yz"], ["y"])
    inits = [tensor("as", (), value=0.1), tensor("az", (), U8, value=0), tensor("b", (3, 4), I8),
             tensor("bs", (), value=0.1), tensor("bz", (), I8, value=0), tensor("ys", (), value=0.1),
             tensor("yz", (), U8, value=0)]
    r = one(model([node], [("a", U8, (2, 3))], [("y", U8)], inits))
    # 8 outputs x K 3 = 24 MACs; 48 + 5 x 8 requantisation = 88
    assert (r.cost.macs, r.cost.flops) == (24, 88)
    dql = helper.make_node("DynamicQuantizeLinear", ["x"], ["y", "s", "z"])
    r = one(model([dql], [("x", F, (2, 3))], [("y", U8), ("s", F), ("z", U8)]))
    # 6 elements x (min and max 2 + quantize 5) = 42
    assert r.cost.flops == 42


def qdq_conv_model() -> Any:
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"], name="quant_x"),
        helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"], name="dq_x"),
        helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wd"], name="dq_w"),
        helper.make_node("Conv", ["xd", "wd"], ["y"], name="conv"),
        helper.make_node("QuantizeLinear", ["y", "ys", "z"], ["yq"], name="quant_y"),
        helper.make_node("DequantizeLinear", ["yq", "ys", "z"], ["out"], name="dq_out"),
    ]
    inits = [tensor("s", (), value=0.1), tensor("z", (), U8, value=128), tensor("w", (3, 2, 1, 1), I8),
             tensor("ws", (), value=0.05), tensor("wz", (), I8, value=0), tensor("ys", (), value=0.2)]
    return model(nodes, [("x", F, (1, 2, 4, 4))], [("out", F)], inits)


def test_qdq_unit_counted_as_fused_int8() -> None:
    report = rooflens.analyze_onnx(qdq_conv_model())
    by_node = {r.node: r for r in report.records}
    assert sorted(by_node) == ["conv", "dq_out", "quant_x"]  # dq_x, dq_w and quant_y are fused into the unit
    conv = by_node["conv"]
    assert conv.via == "QDQ"
    # 48 outputs x 2 = 96 int8 MACs; 192 + 5 x 48 requantisation = 432
    assert (conv.cost.macs, conv.cost.flops) == (96, 432)
    # read xq 32 B (uint8) + w 6 B (int8) + s, ws, ys 3 x 4 B + z, wz 2 x 1 B = 52; written yq 48 B (uint8)
    assert (conv.cost.bytes_read, conv.cost.bytes_written) == (52, 48)
    # the input's QuantizeLinear: 5 x 32 = 160; the last DequantizeLinear: 2 x 48 = 96
    assert by_node["quant_x"].cost.flops == 160 and by_node["dq_out"].cost.flops == 96
    assert report.precision is rooflens.Precision.INT8


# ---- memory, views, unsupported ----------------------------------------------------------------------------


def test_views_are_free_and_transpose_moves_data() -> None:
    nodes = [
        helper.make_node("Reshape", ["x", "shape"], ["r"]),
        helper.make_node("Transpose", ["r"], ["t"], perm=[1, 0]),
        helper.make_node("Flatten", ["t"], ["y"]),
    ]
    m = model(nodes, [("x", F, (2, 3, 4))], [("y", F)], [numpy_helper.from_array(np.array([6, 4]), "shape")])
    r = one(m)
    # Reshape and Flatten are views (not recorded); Transpose copies 24 floats: 96 B read, 96 B written, 0 FLOPs
    assert (r.op, r.family, r.cost.flops, r.cost.bytes_read, r.cost.bytes_written) == (
        "onnx.Transpose", "memory", 0, 96, 96)


def test_unsupported_operator_keeps_its_bytes() -> None:
    node = helper.make_node("Det", ["x"], ["y"])
    report = rooflens.analyze_onnx(model([node], [("x", F, (2, 3, 3))], [("y", F)]))
    (r,) = report.records
    assert not r.supported
    # read 18 floats = 72 B, written 2 floats = 8 B
    assert (r.cost.flops, r.cost.bytes_read, r.cost.bytes_written) == (0, 72, 8)
    assert report.unsupported_ops() == {"onnx.Det": 1}


def test_gather_reads_the_rows_it_gathers() -> None:
    node = helper.make_node("Gather", ["table", "ids"], ["y"])
    report = rooflens.analyze_onnx(model([node], [("ids", I64, (1, 4))], [("y", F)], [tensor("table", (100, 8))]))
    (r,) = report.records
    # indices 4 x 8 B = 32 + the 4 x 8 gathered floats (128 B), not the 3200 B table; written 128 B
    assert (r.cost.bytes_read, r.cost.bytes_written) == (160, 128)
    assert report.params.total == 800


def test_shape_arithmetic_is_computed() -> None:
    """A pad computed from the input's shape, (4 - H % 4) % 4, with Mod (no data propagation in ONNX's own
    shape inference): the node-by-node pass computes it."""
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Gather", ["shape", "two"], ["h"], axis=0),
        helper.make_node("Mod", ["h", "four"], ["rem"]),
        helper.make_node("Sub", ["four", "rem"], ["gap"]),
        helper.make_node("Mod", ["gap", "four"], ["pad"]),
        helper.make_node("Concat", ["zeros6", "pad", "pad"], ["pads"], axis=0),
        helper.make_node("Pad", ["x", "pads"], ["p"]),
        helper.make_node("Conv", ["p", "w"], ["y"]),
    ]
    inits = [numpy_helper.from_array(np.array([2]), "two"), numpy_helper.from_array(np.array([4]), "four"),
             numpy_helper.from_array(np.zeros(6, dtype=np.int64), "zeros6"), tensor("w", (2, 1, 1, 1))]
    report = rooflens.analyze_onnx(model(nodes, [("x", F, (1, 1, 5, 5))], [("y", F)], inits))
    conv = next(r for r in report.records if r.op == "onnx.Conv")
    # H = 5: 5 % 4 = 1, (4 - 1) % 4 = 3 -> padded to 8 x 8; 1x2x8x8 = 128 outputs x 1 tap = 128 MACs
    assert conv.outputs[0].shape == (1, 2, 8, 8) and conv.cost.macs == 128
    assert report.unsupported_ops() == {}


# ---- modules and parameters ----------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "path"), [
    ("/layer1/layer1.0/conv1/Conv", "layer1.0.conv1"),
    ("/features/features.1/conv/conv.0/conv.0.0/Conv", "features.1.conv.0.0"),
    ("/blocks.0/attn/MatMul", "blocks.0.attn"),  # a numbered child called from the root's forward
    ("/fc/Gemm", "fc"),
    ("/Flatten", ""),
    ("Conv_0", ""),
    # ONNX Runtime's optimised graphs: NCHWc nodes named after the tensor they write, fusions after the node
    # they replaced, "_token_<n>" on a name already taken
    ("/layer1/layer1.0/conv2/Conv_output_0_nchwc", "layer1.0.conv2"),
    ("/layer1/layer1.0/relu/Relu_output_0_nchwc_token_7", "layer1.0.relu"),
    ("/bn/BatchNormalization_output_0_bn_nchwc", "bn"),
    ("/features/features.0/features.0.2/Mul/QuickGeluFusion/", "features.0.2"),
    ("ReorderOutput_token_3", ""),
])
def test_path_from_name(name: str, path: str) -> None:
    assert path_from_name(name) == path


@pytest.mark.parametrize(("name", "original"), [
    ("/layer1/layer1.0/conv2/Conv_output_0_nchwc", "/layer1/layer1.0/conv2/Conv"),
    ("/maxpool/MaxPool_output_0_nchwc_token_12", "/maxpool/MaxPool"),
    ("/bn/BatchNormalization_output_0_bn_nchwc", "/bn/BatchNormalization"),
    ("/a/Mul/QuickGeluFusion/", "/a/Mul"),
    ("34_nchwc", "34"),
    ("/layer1/layer1.0/conv1/Conv", "/layer1/layer1.0/conv1/Conv"),  # untouched
    ("conv_output_0", "conv_output_0"),  # an "_output_<n>" only goes with an NCHWc suffix
])
def test_original_node_name(name: str, original: str) -> None:
    assert original_node_name(name) == original


def test_module_tree_from_node_names() -> None:
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["a"], name="/layer1/layer1.0/conv1/Conv"),
        helper.make_node("Relu", ["a"], ["b"], name="/layer1/layer1.0/relu/Relu"),
        helper.make_node("Conv", ["b", "w2"], ["c"], name="/layer1/layer1.1/conv1/Conv"),
        helper.make_node("Flatten", ["c"], ["f"], name="/Flatten"),
        helper.make_node("Gemm", ["f", "wf"], ["y"], transB=1, name="/fc/Gemm"),
    ]
    m = model(nodes, [("x", F, (1, 2, 2, 2))], [("y", F)],
              [tensor("w1", (2, 2, 1, 1)), tensor("w2", (2, 2, 1, 1)), tensor("wf", (3, 8))])
    report = rooflens.analyze_onnx(m, name="tiny")
    mods = report.by_module()
    assert list(mods) == ["", "layer1", "layer1.0", "layer1.0.conv1", "layer1.0.relu", "layer1.1",
                          "layer1.1.conv1", "fc"]
    assert mods["layer1"].type_name == "Sequential"  # numbered children
    assert mods["layer1.0.conv1"].type_name == "Conv" and mods["fc"].type_name == "Gemm"
    # conv1: 1x2x2x2 = 8 outputs x 2 = 16 MACs, in both blocks; fc 3 x 8 = 24
    assert mods["layer1.0"].cumulative.macs == 16 and mods["layer1"].cumulative.macs == 32
    assert mods[""].cumulative.macs == 32 + 24 == report.total().macs
    assert mods["layer1.0.conv1"].params.total == 4 and mods["fc"].own_params == 24
    assert mods["layer1"].output_shapes == ((1, 2, 2, 2),)
    assert mods["fc"].output_shapes == ((1, 3),)
    assert report.model == "tiny" and report.params.total == 4 + 4 + 24


def test_flat_graph_has_one_module_per_node() -> None:
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="first.relu"), helper.make_node("Neg", ["a"], ["y"])]
    mods = rooflens.analyze_onnx(model(nodes, [("x", F, (4,))], [("y", F)])).by_module()
    assert list(mods) == ["", "first_relu", "Neg_1"]
    assert mods["first_relu"].type_name == "Relu" and mods["first_relu"].cumulative.flops == 4


def test_dynamo_metadata_gives_paths_and_classes() -> None:
    node = helper.make_node("Gemm", ["x", "w"], ["y"], transB=1, name="node_linear")
    for key, value in {
        "pkg.torch.onnx.name_scopes": "['', 'head', 'head.fc', 'linear']",
        "pkg.torch.onnx.class_hierarchy": "['my.Net', 'torch.nn.modules.container.Sequential', "
                                          "'torch.nn.modules.linear.Linear', 'aten.linear.default']",
    }.items():
        node.metadata_props.add(key=key, value=value)
    report = rooflens.analyze_onnx(model([node], [("x", F, (1, 4))], [("y", F)], [tensor("w", (2, 4))]))
    mods = report.by_module()
    assert [(p, n.type_name) for p, n in mods.items()] == [("", "Net"), ("head", "Sequential"), ("head.fc", "Linear")]


def test_shared_initializer_counted_once() -> None:
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["a"], name="/enc/proj/MatMul"),
        helper.make_node("MatMul", ["a", "w"], ["y"], name="/dec/proj/MatMul"),
    ]
    report = rooflens.analyze_onnx(model(nodes, [("x", F, (1, 4))], [("y", F)], [tensor("w", (4, 4))]))
    mods = report.by_module()
    # one 4x4 weight read by two modules: 16 parameters, held by their common ancestor (the root)
    assert report.params.total == 16 and report.params.bytes == 64
    assert mods["enc"].params.total == 0 and mods[""].own_params == 16
    assert report.params.nonzero == 16


# ---- inputs, errors, files ----------------------------------------------------------------------------


def symbolic_conv() -> Any:
    node = helper.make_node("Conv", ["x", "w"], ["y"])
    return model([node], [("x", F, ("N", 3, 4, 4))], [("y", F)], [tensor("w", (2, 3, 1, 1))])


def test_symbolic_dims_bound_by_position_and_by_name() -> None:
    # N = 2: 2x2x4x4 = 64 outputs x 3 = 192 MACs
    assert rooflens.analyze_onnx(symbolic_conv(), input_size=(2, 3, 4, 4)).total().macs == 192
    assert rooflens.analyze_onnx(symbolic_conv(), input_size={"x": (1, 3, 4, 4)}).total().macs == 96
    assert rooflens.analyze_onnx(symbolic_conv(), input_size=[(1, 3, 4, 4)]).inputs[0].shape == (1, 3, 4, 4)


def test_symbolic_dim_left_open_is_an_error_naming_it() -> None:
    with pytest.raises(InputError, match=r"input 'x' .*symbolic dimension 0 \('N'\)"):
        rooflens.analyze_onnx(symbolic_conv())


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"input_size": (1, 3, 4)}, "has 4 dimensions"),
    ({"input_size": (1, 5, 4, 4)}, "dimension 1 fixed at 3"),
    ({"input_size": {"y": (1, 3, 4, 4)}}, "no input named 'y'"),
    ({"input_size": [(1, 3, 4, 4), (1, 2)]}, "2 input sizes given"),
    ({"input_size": (1, 0, 4, 4)}, "positive integers"),
])
def test_bad_input_sizes(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InputError, match=message):
        rooflens.analyze_onnx(symbolic_conv(), **kwargs)


def test_file_errors(tmp_path: Path) -> None:
    text = tmp_path / "notes.onnx"
    text.write_bytes(b"this is not a protobuf \xff\xfe")
    with pytest.raises(InputError, match="is not an ONNX model"):
        rooflens.analyze_onnx(text)
    with pytest.raises(InputError, match="no such file"):
        rooflens.analyze_onnx(tmp_path / "missing.onnx")
    future = conv_model()
    future.opset_import[0].version = 99
    with pytest.raises(InputError, match="opset 99"):
        rooflens.analyze_onnx(future)


def test_external_data(tmp_path: Path) -> None:
    m = conv_model()
    path = tmp_path / "ext.onnx"
    onnx.save_model(m, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location="ext.data",
                    size_threshold=0)
    report = rooflens.analyze_onnx(path)
    assert report.total().macs == 6912 and report.model == "ext"
    assert report.params.nonzero == 112  # 108 + 4 values read from the data file
    (tmp_path / "ext.data").unlink()
    with pytest.raises(InputError, match="external data of initializer 'w' is missing"):
        rooflens.analyze_onnx(path)


def test_missing_onnx_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_onnx(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "onnx" or name.startswith("onnx."):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_onnx)
    with pytest.raises(InputError, match=r"pip install 'rooflens\[onnx\]'"):
        rooflens.analyze_onnx("model.onnx")


# ---- the report: precision, roofline, JSON ---------------------------------------------------------------


def test_precision_widths_and_roofline() -> None:
    report = rooflens.analyze_onnx(conv_model(), hardware="a100-80gb", act_bits=8)
    (r,) = report.records
    # activations at 8 bits: x 192 B, y 256 B; weights at their width (432 + 16 B)
    assert (r.cost.bytes_read, r.cost.bytes_written) == (192 + 432 + 16, 256)
    assert report.roofline.total_seconds > 0 and report.precision is rooflens.Precision.FP32
    int8 = rooflens.analyze_onnx(qlinear_conv_model(), weight_bits=4, act_bits=4)
    # integer tensors keep their width (x uint8, w int8, b int32); the float32 scales are weights: 4 bits
    assert [t.storage_bits for t in int8.records[0].inputs[:4]] == [8, 8, 32, 4]
    # read x 32 + w 6 + b 12 + 3 scales at half a byte (1 B each, rounded up) + 3 zero points 1 B = 56
    assert int8.records[0].cost.bytes_read == 56
    data = report.to_dict()
    assert data["operators"][0]["node"] == "conv" and data["executed"].startswith("onnx")


def test_every_onnx_operator_is_documented() -> None:
    page = (Path(__file__).resolve().parents[1] / "docs" / "onnx.md").read_text(encoding="utf-8")
    assert onnx_ops.markdown_table() in page, f"regenerate the table: {onnx_ops.REGENERATE}"


# ---- command line ---------------------------------------------------------------------------------------


def test_cli_profile_and_roofline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "net.onnx"
    onnx.save_model(symbolic_conv(), str(path))
    assert main(["profile", str(path), "--input-size", "2,3,4,4", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["total"]["macs"] == 192 and data["model"] == "net"
    assert main(["roofline", str(path), "-i", "1,3,4,4", "--hw", "a100-80gb", "--width", "120"]) == 0
    out = capsys.readouterr().out
    assert "A100" in out and "96" in out
    assert main(["profile", str(path)]) == 2
    assert "symbolic dimension 0 ('N')" in capsys.readouterr().err
    assert main(["profile", str(path), "-i", "1,3,4,4", "--dtype", "float16"]) == 2
    assert "--dtype" in capsys.readouterr().err
    assert main(["memory", str(path), "-i", "1,3,4,4"]) == 2  # the commands that run a torch model say so
    assert "is an ONNX file" in capsys.readouterr().err


def test_onnxruntime_quantized_models_count_as_int8(tmp_path: Path) -> None:
    """A small CNN exported and quantized by onnxruntime.quantization: the QDQ file (counted as ONNX Runtime
    fuses it) and the QOperator file (QLinearConv, QGemm ... written out) give the same MACs as fp32 and
    the same FLOPs as each other; their weights take about a quarter of the bytes."""
    torch = pytest.importorskip("torch")
    quantization = pytest.importorskip("onnxruntime.quantization")
    import contextlib
    import io
    import logging
    import warnings

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
        torch.nn.Conv2d(8, 16, 3, stride=2), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
        torch.nn.Linear(16, 10),
    ).eval()
    fp32 = tmp_path / "fp32.onnx"
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notices
        torch.onnx.export(net, (torch.randn(1, 3, 16, 16),), str(fp32), dynamo=False, input_names=["x"])

    class Batches(quantization.CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            rng = np.random.default_rng(0)
            self.batches = iter([{"x": rng.random((1, 3, 16, 16), dtype=np.float32)} for _ in range(4)])

        def get_next(self) -> dict[str, Any] | None:
            return next(self.batches, None)

    reports = {"fp32": rooflens.analyze_onnx(fp32)}
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizer's advice to pre-process
    try:
        for fmt in ("QDQ", "QOperator"):
            path = tmp_path / f"{fmt}.onnx"
            quantization.quantize_static(str(fp32), str(path), Batches(),
                                         quant_format=getattr(quantization.QuantFormat, fmt))
            reports[fmt] = rooflens.analyze_onnx(path)
    finally:
        root.setLevel(level)
    # conv 8 x 16 x 16 outputs x 27 + conv 16 x 7 x 7 x 72 + linear 10 x 16 = 55296 + 56448 + 160 = 111904
    assert {k: r.total().macs for k, r in reports.items()} == {"fp32": 111904, "QDQ": 111904, "QOperator": 111904}
    qdq, qop = reports["QDQ"], reports["QOperator"]
    assert qdq.total().flops == qop.total().flops
    assert qdq.unsupported_ops() == qop.unsupported_ops() == {}
    assert {r.op for r in qdq.records if r.via == "QDQ"} == {"onnx.Conv", "onnx.Gemm", "onnx.GlobalAveragePool"}
    assert {"onnx.QLinearConv", "com.microsoft.QGemm"} <= {r.op for r in qop.records}
    assert qdq.precision is qop.precision is rooflens.Precision.INT8
    # 1562 float32 parameters, 6248 B; int8 weights + int32 biases + scales: about a quarter
    assert reports["fp32"].params.bytes == 6248
    assert 0.2 < qdq.params.bytes / 6248 < 0.3


# ---- ONNX Runtime's NCHWc layout (the "layout"/"all" optimisation levels on a CPU) -----------------------

NCHWC = "com.microsoft.nchwc"


def test_nchwc_shapes_and_costs_from_the_attributes() -> None:
    """The NCHWc operators on a hand-written graph (what ONNX Runtime writes for a CPU of 16-channel blocks):
    shapes from the attributes as ONNX Runtime's schemas infer them, costs as the plain operators'."""
    nodes = [
        helper.make_node("ReorderInput", ["x"], ["xb"], domain=NCHWC, name="ReorderInput"),
        helper.make_node("Conv", ["xb", "w", "b"], ["c"], domain=NCHWC, name="/conv/Conv_output_0_nchwc",
                         kernel_shape=[3, 3], pads=[1, 1, 1, 1], activation="Relu"),
        helper.make_node("Upsample", ["c"], ["u"], domain=NCHWC, name="/up/Resize_output_0_nchwc",
                         scales=[1, 1, 2, 2], mode="nearest"),
        helper.make_node("AveragePool", ["u"], ["p"], domain=NCHWC, name="/pool/AveragePool_output_0_nchwc",
                         kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("ReorderOutput", ["p"], ["y"], domain=NCHWC, name="ReorderOutput_token_1",
                         channels=20, channels_last=1),
    ]
    # 24 input channels padded to 32; 20 output channels padded to 32 (zero rows in w and b)
    m = model(nodes, [("x", F, (1, 24, 6, 6))], [("y", F)], [tensor("w", (32, 32, 3, 3)), tensor("b", (32,))])
    m.opset_import.append(helper.make_opsetid(NCHWC, 1))
    report = rooflens.analyze_onnx(m)
    assert report.unsupported_ops() == {}
    reorder_in, conv, up, pool, reorder_out = report.records
    # ReorderInput: the channels rounded up to what the convolution reads, 32 x 1 = 32: (1, 32, 6, 6)
    assert reorder_in.outputs[0].shape == (1, 32, 6, 6) and reorder_in.op == f"{NCHWC}.ReorderInput"
    # a copy: reads 24 x 36 x 4 = 3456 B, writes 32 x 36 x 4 = 4608 B, no FLOPs
    assert (reorder_in.cost.flops, reorder_in.cost.bytes_read, reorder_in.cost.bytes_written) == (0, 3456, 4608)
    # conv: 32 x 6 x 6 = 1152 outputs x 32 x 3 x 3 = 288 taps = 331776 MACs (padded channels included);
    # FLOPs 2 x 331776 + 1152 bias adds + 1152 fused Relu = 665856
    assert conv.outputs[0].shape == (1, 32, 6, 6)
    assert (conv.cost.macs, conv.cost.flops, conv.family) == (331776, 665856, "conv")
    # Upsample x2 nearest: (1, 32, 12, 12), no FLOPs; AveragePool 2x2/2: 1152 outputs x (4 adds + 1 divide)
    assert up.outputs[0].shape == (1, 32, 12, 12) and up.cost.flops == 0
    assert pool.outputs[0].shape == (1, 32, 6, 6) and pool.cost.flops == 5760
    # ReorderOutput: 20 channels, last: (1, 6, 6, 20); reads 1152 x 4 = 4608 B, writes 720 x 4 = 2880 B
    assert reorder_out.outputs[0].shape == (1, 6, 6, 20)
    assert (reorder_out.cost.bytes_read, reorder_out.cost.bytes_written) == (4608, 2880)
    # modules: the NCHWc nodes by the tensor they are named after; the reorders by the tensor they convert
    assert [r.module for r in report.records] == ["", "conv", "up", "pool", ""]
    assert any("NCHWc" in d for d in report.diagnostics)


def _export(net: Any, size: Sequence[int], path: Path) -> Path:
    import contextlib
    import io
    import warnings

    torch = pytest.importorskip("torch")
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notices
        torch.onnx.export(net.eval(), (torch.randn(*size),), str(path), dynamo=False)
    return path


def _optimized(path: Path, level: str) -> Path:
    pytest.importorskip("onnxruntime")
    from rooflens.measurement.onnxrt import optimize_onnx

    return optimize_onnx(path, level=level, output=path.with_suffix(f".{level}.onnx"))


def _nchwc_ops(report: rooflens.Report) -> set[str]:
    ops = {r.op for r in report.records if r.op.startswith(NCHWC)}
    if not ops:
        pytest.skip("ONNX Runtime wrote no NCHWc operators on this CPU")
    return ops


def test_nchwc_graph_of_a_small_net_counts_by_hand(tmp_path: Path) -> None:
    """A small residual CNN optimised by ONNX Runtime at level "all": NCHWc convolutions with the activation and
    the residual add fused in, pools and a reorder; 16 channels make whole blocks of 8 or 16, so the counts
    are the original graph's."""
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1, self.act1 = nn.Conv2d(3, 16, 3, padding=1), nn.ReLU()
            self.pool = nn.MaxPool2d(2)
            self.conv2, self.act2 = nn.Conv2d(16, 16, 3, padding=1), nn.ReLU()
            self.conv3, self.act3 = nn.Conv2d(16, 16, 3, padding=1), nn.ReLU()
            self.gap, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(16, 10)

        def forward(self, x: Any) -> Any:
            p = self.pool(self.act1(self.conv1(x)))
            y = self.act3(self.conv3(self.act2(self.conv2(p))) + p)
            return self.fc(self.gap(y).flatten(1))

    torch.manual_seed(0)
    original = _export(Net(), (1, 3, 16, 16), tmp_path / "net.onnx")
    report = rooflens.analyze_onnx(_optimized(original, "all"))
    assert _nchwc_ops(report) == {f"{NCHWC}.{op}" for op in ("Conv", "MaxPool", "GlobalAveragePool", "ReorderOutput")}
    assert report.unsupported_ops() == {}
    # conv1 3 -> 16 on 16x16: 4096 outputs x 27 taps = 110592; conv2, conv3 16 -> 16 on 8x8: 1024 x 144 = 147456
    # each; fc 16 x 10 = 160: 110592 + 2 x 147456 + 160 = 405664 MACs
    assert report.total().macs == 405664
    # conv1 2 x 110592 + 4096 bias + 4096 Relu = 229376; max pool 1024 outputs x 4 = 4096; conv2 2 x 147456
    # + 1024 bias + 1024 Relu = 296960; conv3 the same + 1024 for the fused residual add = 297984; global
    # average pool 1024 adds + 16 divides = 1040; fc 2 x 160 + 10 bias = 330: 829786, the original's
    assert report.total().flops == 829786
    assert rooflens.analyze_onnx(original).total().flops == 829786
    conv3 = next(r for r in report.records if r.module == "conv3")
    # reads act2's output 1024 x 4 = 4096 B, w 16 x 144 x 4 = 9216 B, b 64 B and the residual 4096 B: 17472
    assert (conv3.op, conv3.cost.bytes_read, conv3.cost.bytes_written) == (f"{NCHWC}.Conv", 17472, 4096)
    # conv1 and conv2 were fused with their Relu before the NCHWc rewrite and carry its output's name
    modules = {r.op.rsplit(".", 1)[-1] + ":" + r.module for r in report.records}
    assert modules == {"Conv:act1", "MaxPool:pool", "Conv:act2", "Conv:conv3", "GlobalAveragePool:gap",
                       "ReorderOutput:gap", "Gemm:fc"}


@pytest.fixture(scope="module")
def resnet18_graphs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    torchvision = pytest.importorskip("torchvision")
    original = _export(torchvision.models.resnet18(weights=None), (1, 3, 64, 64),
                       tmp_path_factory.mktemp("resnet18") / "resnet18.onnx")
    return {"original": original, "extended": _optimized(original, "extended"), "all": _optimized(original, "all")}


def test_nchwc_resnet18_counts_the_original_macs(resnet18_graphs: dict[str, Path]) -> None:
    reports = {level: rooflens.analyze_onnx(path) for level, path in resnet18_graphs.items()}
    assert _nchwc_ops(reports["all"]) >= {f"{NCHWC}.Conv", f"{NCHWC}.MaxPool", f"{NCHWC}.GlobalAveragePool"}
    # 64x64: conv1 64 x 32 x 32 x 3 x 49 = 9633792; layer1 4 x 64 x 16 x 16 x 64 x 9 = 37748736; layers 2-4
    # each 4718592 (the strided conv) + 524288 (downsample) + 3 x 9437184 = 33554432; fc 512000:
    # 9633792 + 37748736 + 3 x 33554432 + 512000 = 148557824 (channels 64 ... 512: whole blocks, nothing padded)
    assert {level: r.total().macs for level, r in reports.items()} == dict.fromkeys(reports, 148557824)
    assert reports["all"].unsupported_ops() == {}
    modules = {r.node: r.module for r in reports["all"].records}
    assert modules["/layer1/layer1.0/conv2/Conv_output_0_nchwc"] == "layer1.0.conv2"
    assert modules["/layer2/layer2.0/downsample/downsample.0/Conv_output_0_nchwc"] == "layer2.0.downsample.0"
    assert modules["/maxpool/MaxPool_output_0_nchwc"] == "maxpool"
    # conv1 + bn1 + relu, fused at level "extended", is named after relu's output: in layer1.0.relu
    assert modules["/layer1/layer1.0/relu/Relu_output_0_nchwc"] == "layer1.0.relu"
    extended = {r.node: r.module for r in reports["extended"].records}
    assert extended["/layer1/layer1.0/conv1/Conv"] == "layer1.0.conv1"  # FusedConv keeps the Conv's name
    assert {r.op for r in reports["extended"].records if r.module == "layer1.0.conv1"} == {"com.microsoft.FusedConv"}


def test_nchwc_mobilenet_v2_counts_the_padded_channels(tmp_path: Path) -> None:
    """MobileNetV2's 24-channel layers run padded to the block: 24 rounded up to 16 is 32 (to 8: 24). The kernel
    computes the padded channels, and rooflens counts them."""
    torchvision = pytest.importorskip("torchvision")
    original = _export(torchvision.models.mobilenet_v2(weights=None), (1, 3, 64, 64), tmp_path / "mnv2.onnx")
    optimized = _optimized(original, "all")
    report = rooflens.analyze_onnx(optimized)
    _nchwc_ops(report)
    assert report.unsupported_ops() == {}
    # the padded channel count, read off the weight of features.2's projection (24 output channels)
    graph = onnx.load(str(optimized)).graph
    weight = next(n.input[1] for n in graph.node if n.name == "/features/features.2/conv/conv.2/Conv_output_0_nchwc")
    padded = next(t.dims[0] for t in graph.initializer if t.name == weight)
    assert padded in (24, 32)
    # at 64x64 the 24-channel tensors are 16x16 = 256 positions; padded channels computed by 1x1 convolutions:
    # features.2 projection 96 -> 24 (96 taps per padded output), features.3 expansion 24 -> 144 (144 outputs
    # per padded input), features.3 projection 144 -> 24 (144 taps), features.4 expansion 24 -> 144 (144):
    # (padded - 24) x 256 x (96 + 3 x 144) = (padded - 24) x 135168 MACs; 1081344 at 32
    assert report.total().macs - rooflens.analyze_onnx(original).total().macs == (padded - 24) * 135168


def test_the_model_given_is_left_as_it_was() -> None:
    m = symbolic_conv()
    before = m.SerializeToString()
    rooflens.analyze_onnx(m, input_size=(2, 3, 4, 4))
    assert m.SerializeToString() == before  # its symbolic input and its missing shapes untouched
