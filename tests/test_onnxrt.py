"""ONNX Runtime measurement layer (rooflens.measurement.onnxrt): optimised graphs, latency, the per-node
profile, int8 models, and its errors. Tiny graphs built with onnx.helper; CPU provider only."""

from __future__ import annotations

import builtins
import collections
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

np = pytest.importorskip("numpy")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper

from rooflens.errors import InputError
from rooflens.measurement.onnxrt import (
    NodeProfile,
    measure_onnx,
    node_name,
    optimize_onnx,
    parse_profile,
    profile_onnx,
    quantize_onnx,
)

SIZE = (2, 3, 16, 16)


def _init(rng: Any, name: str, shape: tuple[int, ...], positive: bool = False) -> Any:
    a = rng.standard_normal(shape).astype(np.float32)
    return numpy_helper.from_array(np.abs(a) + 0.5 if positive else a, name)


def conv_model(path: Path) -> Path:
    """x[N, 3, 16, 16] -> Conv 3x3 (8) -> BatchNormalization -> Relu -> GlobalAveragePool -> Flatten -> Gemm (4)."""
    rng = np.random.default_rng(1)
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="/conv/Conv", pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "s", "bb", "m", "v"], ["n"], name="/bn/BatchNormalization"),
        helper.make_node("Relu", ["n"], ["r"], name="/relu/Relu"),
        helper.make_node("GlobalAveragePool", ["r"], ["p"], name="/pool/GlobalAveragePool"),
        helper.make_node("Flatten", ["p"], ["f"], name="/Flatten"),
        helper.make_node("Gemm", ["f", "fw", "fb"], ["y"], name="/fc/Gemm", transB=1),
    ]
    inits = [_init(rng, "w", (8, 3, 3, 3)), _init(rng, "b", (8,)), _init(rng, "s", (8,)), _init(rng, "bb", (8,)),
             _init(rng, "m", (8,)), _init(rng, "v", (8,), positive=True), _init(rng, "fw", (4, 8)),
             _init(rng, "fb", (4,))]
    graph = helper.make_graph(nodes, "tiny_cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def mlp_model(path: Path) -> Path:
    """x[batch, 16] -> MatMul (32) -> Add -> Relu -> MatMul (4); plus an int64 input that is only passed through."""
    rng = np.random.default_rng(2)
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"], name="/fc1/MatMul"),
        helper.make_node("Add", ["h", "b1"], ["hb"], name="/fc1/Add"),
        helper.make_node("Relu", ["hb"], ["r"], name="/act/Relu"),
        helper.make_node("MatMul", ["r", "w2"], ["y"], name="/fc2/MatMul"),
        helper.make_node("Identity", ["ids"], ["ids_out"], name="/ids/Identity"),
    ]
    inits = [_init(rng, "w1", (16, 32)), _init(rng, "b1", (32,)), _init(rng, "w2", (32, 4))]
    graph = helper.make_graph(
        nodes, "tiny_mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16]),
         helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4]),
         helper.make_tensor_value_info("ids_out", TensorProto.INT64, ["batch", 5])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def op_types(path: Path) -> collections.Counter[tuple[str, str]]:
    return collections.Counter((n.domain, n.op_type) for n in onnx.load(str(path)).graph.node)


@pytest.fixture(scope="module")
def cnn(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return conv_model(tmp_path_factory.mktemp("onnx") / "cnn.onnx")


# ---- optimize_onnx -----------------------------------------------------------------------------------


def test_optimize_levels_on_cpu(cnn: Path, tmp_path: Path) -> None:
    before = cnn.read_bytes()
    seen = {level: op_types(optimize_onnx(cnn, level=level, output=tmp_path / f"{level}.onnx"))
            for level in ("disabled", "basic", "extended", "all")}
    assert cnn.read_bytes() == before  # the user's file is not touched
    assert seen["disabled"] == op_types(cnn)
    # basic: BatchNormalization folded into the Conv's weights; Relu stays a node of its own
    assert seen["basic"] == collections.Counter(
        {("", "Conv"): 1, ("", "Relu"): 1, ("", "GlobalAveragePool"): 1, ("", "Flatten"): 1, ("", "Gemm"): 1})
    # extended: Conv + Relu fused into ONNX Runtime's own FusedConv (activation attribute)
    assert seen["extended"] == collections.Counter(
        {("com.microsoft", "FusedConv"): 1, ("", "GlobalAveragePool"): 1, ("", "Flatten"): 1, ("", "Gemm"): 1})
    fused = next(n for n in onnx.load(str(tmp_path / "extended.onnx")).graph.node if n.op_type == "FusedConv")
    assert helper.get_attribute_value(next(a for a in fused.attribute if a.name == "activation")) == b"Relu"
    # all: nothing of BatchNormalization/Relu left; on x86 the NCHWc layout (a blocked Conv and a reorder back)
    assert not {("", "BatchNormalization"), ("", "Relu")} & set(seen["all"])
    if ("com.microsoft.nchwc", "Conv") in seen["all"]:
        assert ("com.microsoft.nchwc", "ReorderOutput") in seen["all"]
    # each saved graph runs (the "all" one on this machine only) and gives the original's outputs
    x = np.random.default_rng(0).random(SIZE, dtype=np.float32)
    ref = ort.InferenceSession(str(cnn), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    for level in seen:
        out = ort.InferenceSession(str(tmp_path / f"{level}.onnx"), providers=["CPUExecutionProvider"]).run(
            None, {"x": x})[0]
        np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)


def test_optimize_default_output_and_no_overwrite(cnn: Path, tmp_path: Path) -> None:
    out = optimize_onnx(cnn, level="basic")
    try:
        assert out.parent != cnn.parent and out.name == "cnn.basic.cpu.onnx" and out.is_file()
    finally:
        import shutil

        shutil.rmtree(out.parent)
    with pytest.raises(InputError, match="input model itself"):
        optimize_onnx(cnn, output=cnn)
    with pytest.raises(InputError, match="does not exist"):
        optimize_onnx(cnn, output=tmp_path / "nowhere" / "x.onnx")
    with pytest.raises(InputError, match="level='fast'"):
        optimize_onnx(cnn, level="fast", output=tmp_path / "x.onnx")


# ---- measure_onnx ------------------------------------------------------------------------------------


def test_measure_statistics(cnn: Path) -> None:
    state = np.random.get_state()
    seen: list[tuple[str, int, int]] = []
    m = measure_onnx(cnn, input_size=SIZE, warmup=2, iters=7, threads=1, progress=lambda *a: seen.append(a))
    assert np.random.get_state()[1].tolist() == state[1].tolist()  # the global RNG is untouched
    assert m.iters == 7 and m.warmup == 2 and m.batch_size == 2 and m.threads == 1
    assert 0 < m.min_seconds <= m.median_seconds <= m.p90_seconds <= m.p99_seconds <= m.max_seconds
    assert m.device == "cpu" and m.dtype == "float32"
    assert m.provider == "CPUExecutionProvider" and m.runtime == f"onnxruntime {ort.__version__}"
    d = m.as_dict(samples=False)
    assert d["runtime"] == m.runtime and d["provider"] == "CPUExecutionProvider" and d["iters"] == 7
    assert seen[:2] == [("warmup", 1, 2), ("warmup", 2, 2)] and seen[-1] == ("timing", 7, 7)
    m2 = measure_onnx(cnn, input_size={"x": (3, 3, 16, 16)}, warmup=0, iters=2, min_seconds=1e-9)
    assert m2.batch_size == 3 and m2.warmup == 1 and m2.iters >= 2 and m2.threads is None


def test_measure_feeds_and_integer_inputs(tmp_path: Path) -> None:
    mlp = mlp_model(tmp_path / "mlp.onnx")
    m = measure_onnx(mlp, input_size=[(4, 16), (4, 5)], iters=3)
    assert m.batch_size == 4 and m.dtype == "float32"
    feeds = {"x": np.ones((2, 16), np.float32), "ids": np.zeros((2, 5), np.int64)}
    assert measure_onnx(mlp, feeds=feeds, iters=3).batch_size == 2
    with pytest.raises(InputError, match=r"feeds\['ids'\] is int32; the model's input 'ids' is int64"):
        measure_onnx(mlp, feeds={**feeds, "ids": np.zeros((2, 5), np.int32)})
    with pytest.raises(InputError, match=r"missing \['ids'\]"):
        measure_onnx(mlp, feeds={"x": feeds["x"]})
    with pytest.raises(InputError, match="'batch' is 4 in input 'x' and 3 in input 'ids'"):
        measure_onnx(mlp, input_size=[(4, 16), (3, 5)])
    with pytest.raises(InputError, match="size 8 in dimension 1; the model fixes it at 16"):
        measure_onnx(mlp, input_size=[(4, 8), (4, 5)])
    with pytest.raises(InputError, match="1 shape.*2 input"):
        measure_onnx(mlp, input_size=(4, 16))
    with pytest.raises(InputError, match="not both"):
        measure_onnx(mlp, input_size=[(4, 16), (4, 5)], feeds=feeds)


# ---- profile_onnx ------------------------------------------------------------------------------------


def test_profile_names_every_node_of_the_optimised_graph(cnn: Path, tmp_path: Path) -> None:
    for level in ("extended", "all"):
        optimised = optimize_onnx(cnn, level=level, output=tmp_path / f"{level}.onnx")
        names = {n.name for n in onnx.load(str(optimised)).graph.node}
        p = profile_onnx(cnn, input_size=SIZE, level=level, runs=6, warmup=2, threads=1)
        assert isinstance(p, NodeProfile) and p.runs == 6 and p.warmup == 2
        assert {n.name for n in p.nodes} == names  # the session's names are those of the saved graph
        assert all(n.calls == 6 and n.provider == "CPUExecutionProvider" and n.seconds >= 0 for n in p.nodes)
        assert 0 < p.kernel_seconds <= p.run_seconds and p.overhead_seconds >= 0
        if level == "extended":
            assert [n.op_type for n in p.nodes] == ["FusedConv", "GlobalAveragePool", "Flatten", "Gemm"]
            assert p.nodes[0].name == "/conv/Conv"
    # the saved graph run as it is (level "disabled") shows the same nodes
    again = profile_onnx(tmp_path / "extended.onnx", input_size=SIZE, level="disabled", runs=3, warmup=1)
    assert [n.name for n in again.nodes] == ["/conv/Conv", "/pool/GlobalAveragePool", "/Flatten", "/fc/Gemm"]
    d = again.as_dict()
    assert d["runs"] == 3 and len(d["nodes"]) == 4 and d["nodes"][0]["op_type"] == "FusedConv"
    assert sum(again.by_op_type().values()) == pytest.approx(sum(n.seconds for n in again.nodes))
    assert not list(tmp_path.glob("*.json"))  # the profiler's trace is removed


def test_parse_profile_by_hand() -> None:
    def node(name: str, ts: float, dur: float, op: str = "Conv") -> dict[str, Any]:
        return {"cat": "Node", "name": name, "ts": ts, "dur": dur, "ph": "X",
                "args": {"op_name": op, "provider": "CPUExecutionProvider"}}

    def run(ts: float, dur: float) -> dict[str, Any]:
        return {"cat": "Session", "name": "model_run", "ts": ts, "dur": dur, "ph": "X", "args": {}}

    events = [
        {"cat": "Session", "name": "session_initialization", "ts": 0, "dur": 50, "ph": "X", "args": {}},
        run(100, 100), node("/a/Conv_kernel_time", 110, 90),  # warm-up run: dropped
        run(300, 50), node("/a/Conv_fence_before", 301, 1), node("/a/Conv_kernel_time", 302, 20),
        node("/a/Conv_fence_after", 322, 1), node("/b/Relu_kernel_time", 330, 10, "Relu"),
        run(400, 60), node("/a/Conv_kernel_time", 405, 30), node("/b/Relu_kernel_time", 440, 4, "Relu"),
        node("/b/Relu_kernel_time", 445, 4, "Relu"),  # a node that runs twice in a run (a loop body)
        run(500, 40), node("/a/Conv_kernel_time", 505, 25),
    ]
    p = parse_profile(events, warmup=1, provider="CPUExecutionProvider", threads=None, runtime="onnxruntime x")
    assert p.runs == 3 and p.run_seconds == pytest.approx(50e-6)  # mean of 50, 60, 40
    assert [(n.name, n.op_type, n.calls) for n in p.nodes] == [("/a/Conv", "Conv", 3), ("/b/Relu", "Relu", 3)]
    assert p.nodes[0].seconds == pytest.approx(25e-6)  # mean of 20, 30, 25
    assert p.nodes[1].seconds == pytest.approx(6e-6)  # mean of 10, 8, 0 (it did not run in the third)
    # mean of 30, 38, 25 = 31: the nodes' means add up to it (25 + 6), so a profile's shares sum to 100 %
    assert p.kernel_seconds == pytest.approx(31e-6) == p.nodes[0].seconds + p.nodes[1].seconds
    assert node_name("/x/Conv_fence_after") == "/x/Conv" and node_name("/x/Conv_kernel_time") == "/x/Conv"
    with pytest.raises(Exception, match="model_run"):
        parse_profile(events[:3], warmup=1, provider="p", threads=None, runtime="r")


# ---- quantize_onnx -----------------------------------------------------------------------------------


def test_quantize_dynamic(tmp_path: Path) -> None:
    mlp = mlp_model(tmp_path / "mlp.onnx")
    out = quantize_onnx(mlp, output=tmp_path / "mlp.int8.onnx")
    ops = op_types(out)
    assert ops[("", "DynamicQuantizeLinear")] >= 1 and ops[("", "MatMulInteger")] == 2
    assert ("", "MatMul") not in ops
    assert measure_onnx(out, input_size=[(2, 16), (2, 5)], iters=2).median_seconds > 0
    with pytest.raises(InputError, match="format='qdq' is for static"):
        quantize_onnx(mlp, output=tmp_path / "q.onnx", format="qdq")


def test_quantize_static_qdq_and_qoperator(cnn: Path, tmp_path: Path) -> None:
    state = np.random.get_state()
    qdq = quantize_onnx(cnn, output=tmp_path / "qdq.onnx", mode="static", input_size=(1, 3, 16, 16),
                        calibration_batches=2)
    ops = op_types(qdq)
    assert ops[("", "QuantizeLinear")] >= 1 and ops[("", "DequantizeLinear")] >= 3 and ops[("", "Conv")] == 1
    # ONNX Runtime turns the QDQ pairs into int8 kernels at the extended level
    fused = op_types(optimize_onnx(qdq, level="extended", output=tmp_path / "qdq.opt.onnx"))
    assert ("com.microsoft", "QLinearConv") in fused or ("", "QLinearConv") in fused
    qop = quantize_onnx(cnn, output=tmp_path / "qop.onnx", mode="static", format="qoperator",
                        input_size=(1, 3, 16, 16), calibration_batches=2)
    ops = op_types(qop)
    assert ops[("", "QLinearConv")] == 1 and ("", "Conv") not in ops and ops[("", "QuantizeLinear")] == 1
    assert np.random.get_state()[1].tolist() == state[1].tolist()
    assert measure_onnx(qop, input_size=SIZE, iters=2).median_seconds > 0
    with pytest.raises(InputError, match=r"input 'x' \['N', 3, 16, 16\]: dimension 0 \('N'\) is symbolic"):
        quantize_onnx(cnn, output=tmp_path / "q.onnx", mode="static")


# ---- errors ------------------------------------------------------------------------------------------


def test_errors(cnn: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InputError, match="provider='tpu': use one of cpu, cuda"):
        measure_onnx(cnn, input_size=SIZE, provider="tpu")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(InputError, match="no CUDAExecutionProvider.*onnxruntime-gpu"):
            measure_onnx(cnn, input_size=SIZE, provider="cuda")
    with pytest.raises(InputError, match=r"input 'x' \['N', 3, 16, 16\]: dimension 0 \('N'\) is symbolic.*\(1, 3, 16, 16\)"):
        measure_onnx(cnn)
    with pytest.raises(InputError, match="dimension 0 .* is symbolic"):
        profile_onnx(cnn)
    junk = tmp_path / "junk.onnx"
    junk.write_text("this is not a model")
    leftovers = set(Path(tempfile.gettempdir()).glob("rooflens-ort-*"))
    for call in (measure_onnx, profile_onnx, optimize_onnx):
        with pytest.raises(InputError, match="not an ONNX model"):
            call(junk)
    with pytest.raises(InputError, match="provider='tpu'"):
        optimize_onnx(cnn, provider="tpu")
    assert set(Path(tempfile.gettempdir()).glob("rooflens-ort-*")) <= leftovers  # no temporary folder left behind
    with pytest.raises(InputError, match="no such file"):
        measure_onnx(tmp_path / "missing.onnx")
    with pytest.raises(InputError, match="iters=0"):
        measure_onnx(cnn, input_size=SIZE, iters=0)
    with pytest.raises(InputError, match="mode='float'"):
        quantize_onnx(cnn, output=tmp_path / "q.onnx", mode="float")

    real_import = builtins.__import__

    def no_onnxruntime(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "onnxruntime" or name.startswith("onnxruntime."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "onnxruntime")
    monkeypatch.setattr(builtins, "__import__", no_onnxruntime)
    with pytest.raises(InputError, match=r"pip install rooflens\[onnx\]"):
        measure_onnx(cnn, input_size=SIZE)
