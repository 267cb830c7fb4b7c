"""rooflens's ONNX front-end against onnx-tool, a peer that profiles ONNX files: agreement and every disagreement.

Per model (torchvision classifiers, ``weights=None``: random weights, nothing downloaded): build it in eval
mode, perturb its weights and buffers (a fresh model's equal tensors, such as every BatchNorm's weight and
running variance of ones, would be stored once by the exporter; ``--raw-init`` keeps them), export it with the
TorchScript exporter (``torch.onnx.export(dynamo=False, opset_version=17)``, nn.MultiheadAttention's fused
fast path off) into a temporary folder at 1x3x224x224 (Inception v3 at 299), then count the one file with
both tools:

* rooflens: ``rooflens.analyze_onnx(path, input_size=...)``: MACs (conv + matmul only), FLOPs (fma
  convention), parameters, bytes read + written; per record: its ONNX node, op type, MACs, FLOPs, bytes.
* onnx-tool (its Python API, not its CLI): ``onnx_tool.Model(path)``, ``graph.shape_infer({input: zeros})``,
  ``graph.profile()`` over every node (the CLI hides shape-only nodes from its table; the totals of
  ``profile()`` with nothing excluded are what its API returns): ``graph.macs[0]``, ``graph.params``,
  ``graph.memory`` and per node ``node.macs``, ``node.params``, ``node.memory``.
* the torch side, as a third column: ``rooflens.analyze(model, input_size=...)`` MACs (``--no-torch`` skips it).

Every MAC difference is attributed to an ONNX op type: both tools' per-node MACs are summed per op type and
the difference printed with its cause (``CAUSES``: read from onnx-tool's ``node.py`` and rooflens's
formulas) and with the per-output-element rates each tool used, measured from the nodes. The exact checks:

* conv + matmul: onnx-tool's Conv/Gemm/MatMul MACs minus the bias adds it adds (one per output element of
  a Conv or Gemm with a bias input) against rooflens's MACs, node by node, by node name;
* parameters: onnx-tool counts the elements of every initializer a node reads, once (a scalar counts 0:
  its ``volume(())`` is 0; int64 shape tensors count); rooflens counts the floating-point initializers the
  operators read as data (no shapes, axes, scalars); the difference is split by the kind of initializer;
* memory: onnx-tool's ``memory`` is initializer bytes (once) + every node's output bytes (no reads);
  rebuilt from rooflens's records as parameter bytes + bytes written, the difference split by the nodes
  rooflens does not record (views: Reshape, Flatten, Identity, Shape, ... cost nothing in rooflens) and the
  rank-0 outputs onnx-tool counts as 0 elements.

Prints a table per model, the per-op-type breakdown of the differences (every model, then the sum over the
models) and then one JSON line ``{"bench": "onnx_peers", ...}`` with every row and the summary.

    python bench/onnx_peers.py [--models resnet18,vit_b_16 | all] [--no-torch] [--per-model] [--raw-init]

Results, how each tool counts and every cause: docs/onnx_peers.md.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import shutil
import sys
import tempfile
import time
import warnings
from collections import defaultdict
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
import torchvision

import rooflens

DEFAULT_MODELS = (
    "resnet18", "resnet50", "mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0", "shufflenet_v2_x1_0",
    "squeezenet1_0", "densenet121", "regnet_y_400mf", "vgg11", "convnext_tiny", "vit_b_16", "swin_t", "googlenet",
)
OPSET = 17
FIXED_SIZE = {"inception_v3": 299}
MARGIN_BYTES = 1 << 30
CONV_MATMUL = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul", "Einsum"})
BIASED = frozenset({"Conv", "ConvTranspose", "Gemm"})  # onnx-tool adds 1 MAC per output element for the bias

# Why the two tools' MACs differ, per ONNX op type. onnx-tool (node.py, 1.0.1) counts every operator's
# arithmetic as "MACs", with per-element costs of its own: MUL/ADD/CMP 1, DIV 4, EXP 32, SQRT 24, LOG 43,
# TANH 38, and its FLOPs are 2 x MACs. rooflens counts MACs for conv and matmul only (a bias add is 1 FLOP,
# no MAC); every other operator has FLOPs and no MACs (docs/operators.md).
CAUSES: dict[str, str] = {
    "Conv": "conv bias add: onnx-tool counts 1 MAC per output element for a Conv with a bias input "
            "(rooflens: 1 FLOP, no MAC); the products agree exactly",
    "ConvTranspose": "bias add: onnx-tool 1 MAC per output element (rooflens: 1 FLOP, no MAC)",
    "Gemm": "Gemm bias (C) add: onnx-tool 1 MAC per output element (rooflens: 1 FLOP, no MAC); "
            "the products agree exactly",
    "MatMul": "none expected: both count M x N x K per batch",
    "Relu": "activation: onnx-tool 1 MAC (CMP) per element; rooflens 1 FLOP, no MAC",
    "Clip": "onnx-tool 2 MACs (2 CMP) per element whatever bounds are given; rooflens 1 FLOP per bound given "
            "(ReLU6 = Clip(x, 0, 6): 2), no MAC",
    "Exp": "onnx-tool 32 MACs per element (its EXP cost); rooflens 1 FLOP (one transcendental), no MAC",
    "ReduceL2": "onnx-tool (ADD + SQRT 24) = 25 MACs per input element (the root charged per input element, "
                "not per output); rooflens 2 FLOPs per input element + 1 per output, no MAC",
    "Einsum": "none expected: both count the product of every index's extent (contractions here)",
    "HardSigmoid": "activation: onnx-tool 4 MACs per element (MUL + ADD + 2 CMP); rooflens FLOPs only",
    "HardSwish": "activation: onnx-tool 5 MACs per element (2 MUL + ADD + 2 CMP); rooflens FLOPs only",
    "Sigmoid": "activation: onnx-tool 32 MACs per element (its EXP cost); rooflens FLOPs only",
    "Tanh": "activation: onnx-tool 2 x 38 MACs per element (its Tanh sets ratio 2); rooflens FLOPs only",
    "Erf": "none in MACs: onnx-tool counts Erf as 0 (a FusedBase node); rooflens 1 FLOP per element",
    "Equal": "comparison: onnx-tool 1 MAC (CMP) per output element; rooflens 1 FLOP, no MAC",
    "Not": "logical op: onnx-tool 1 MAC (CMP) per output element; rooflens 1 FLOP, no MAC",
    "Mod": "element-wise: onnx-tool 1 MAC (ADD) per output element (here on scalars and 1-element tensors); "
           "rooflens 1 FLOP, no MAC",
    "Where": "none in MACs: onnx-tool 0; rooflens 1 FLOP (select) per element",
    "Add": "element-wise: onnx-tool 1 MAC per output element; rooflens 1 FLOP, no MAC",
    "Sub": "element-wise: onnx-tool 1 MAC per output element; rooflens 1 FLOP, no MAC",
    "Mul": "element-wise: onnx-tool 1 MAC per output element; rooflens 1 FLOP, no MAC",
    "Div": "element-wise: onnx-tool 4 MACs per output element (its DIV cost); rooflens 1 FLOP, no MAC",
    "Pow": "element-wise: onnx-tool 32 MACs per element (POW = EXP), 0 for a scalar output (its volume(()) is 0);"
           " rooflens 1 FLOP, no MAC",
    "Sqrt": "element-wise: onnx-tool 24 MACs per element, 0 for a scalar output; rooflens 1 FLOP, no MAC",
    "Softmax": "onnx-tool 36 MACs per element (EXP 32 + DIV 4); rooflens FLOPs only (exp, sum, divide)",
    "MaxPool": "pooling: onnx-tool kh x kw MACs (CMP) per output element; rooflens FLOPs only",
    "AveragePool": "pooling: onnx-tool kh x kw MACs (ADD) per output element, the divide not counted; "
                   "rooflens FLOPs only",
    "GlobalAveragePool": "pooling: onnx-tool 1 MAC per input element + 4 (DIV) per output element; "
                         "rooflens FLOPs only",
    "ReduceMean": "reduction: onnx-tool 1 MAC per input element (the divide not counted); rooflens FLOPs only",
    "BatchNormalization": "onnx-tool 31 MACs per element (ADD + SQRT 24 + DIV 4 + ADD + MUL: the statistics "
                          "recomputed per element); rooflens FLOPs only",
    "LayerNormalization": "onnx-tool 7 MACs per element + 29 per normalised row (ADD + SQRT + DIV); rooflens "
                          "FLOPs only",
    "InstanceNormalization": "onnx-tool 7 MACs per element; rooflens FLOPs only",
}
NO_MAC_OPS = "no arithmetic in either: 0 MACs in both"
NO_MAC_FLOPS = "0 MACs in both; rooflens counts FLOPs"


def input_side(name: str) -> int:
    return FIXED_SIZE.get(name, 224)


def cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} CPUs"
    except OSError:
        pass
    return f"{platform.machine()} {platform.processor()}".strip()


def versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "machine": cpu()}
    for pkg in ("rooflens", "onnx-tool", "onnx", "torch", "torchvision"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "?"
    return out


def trained_like(model: torch.nn.Module) -> None:
    """Perturb every floating-point parameter and buffer, as training would: a fresh model's BatchNorm
    weights and running variances are all ones and its biases and running means all zeros, and the
    exporter stores equal tensors once (the others become Identity nodes of it), so a BatchNorm's weight and
    its running variance would be one initializer. Shapes, hence MACs, do not change."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=gen))
        for name, b in model.named_buffers():
            if b.is_floating_point():
                if name.endswith("running_var"):
                    b.mul_(0.5 + torch.rand(b.shape, generator=gen))
                else:
                    b.add_(0.01 * torch.randn(b.shape, generator=gen))


def export(model: torch.nn.Module, x: torch.Tensor, path: Path) -> None:
    """TorchScript exporter; nn.MultiheadAttention's fast path off (its fused op has no ONNX export)."""
    sink = io.StringIO()
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=OPSET)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)


def _volume(shape: Any) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


def onnx_tool_side(path: Path, shape: tuple[int, ...]) -> dict[str, Any]:
    """onnx-tool's totals and per-node counts (its prints and warnings swallowed)."""
    import onnx_tool

    sink = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        warnings.simplefilter("ignore")
        model = onnx_tool.Model(str(path))
        g = model.graph
        g.shape_infer({g.input[0]: np.zeros(shape, dtype=np.float32)})
        g.profile()
    nodes = {}
    for name, node in g.nodemap.items():
        outs = [g.tensormap[t] for t in node.output if t]
        ins = [g.tensormap[t] for t in node.input if t]
        out_elems = _volume(outs[0].get_shape()) if outs and outs[0].get_shape() else 0
        scalar = bool(outs) and len(outs[0].get_shape()) == 0  # onnx-tool's volume(()) is 0: counted as nothing
        in_elems = _volume(ins[0].get_shape()) if ins and ins[0].get_shape() else 0
        bias = out_elems if node.op_type in BIASED and len(node.input) > 2 and node.input[2] else 0
        out_bytes = 0 if node.op_type == "Constant" else sum(t.get_memsize() for t in outs)
        nodes[name] = {
            "op": node.op_type, "macs": float(node.macs[0]), "params": int(node.params),
            "memory": int(node.memory), "out_elems": out_elems, "in_elems": in_elems, "bias_adds": bias,
            "out_bytes": int(out_bytes), "scalar": scalar,
        }
    # its parameter count split by the kind of initializer (rooflens: floating-point weights are parameters,
    # BatchNormalization's running mean and variance are buffers, integer tensors are buffers or arguments)
    init = {t.name: t for t in onnx.load(str(path), load_external_data=False).graph.initializer}
    split = {"float": 0, "bn_stats": 0, "integer": 0, "scalars": 0}
    seen: set[str] = set()
    consumers: dict[str, list[tuple[Any, int]]] = defaultdict(list)
    for node in g.nodemap.values():
        for p, t in enumerate(node.input):
            consumers[t].append((node, p))

    def uses(tensor: str) -> list[tuple[str, int]]:  # (op type, input position), through Identity nodes
        out = []
        for node, p in consumers[tensor]:
            out += uses(node.output[0]) if node.op_type == "Identity" else [(node.op_type, p)]
        return out

    for node in g.nodemap.values():
        for t in node.input:
            if t in g.initials and t not in seen:
                seen.add(t)
                shape = g.tensormap[t].get_shape()
                if not shape:
                    split["scalars"] += 1  # counted 0 by onnx-tool: volume(()) is 0
                    continue
                if init[t].data_type not in (1, 10, 11, 16):
                    kind = "integer"
                elif all(op == "BatchNormalization" and p in (3, 4) for op, p in uses(t)):
                    kind = "bn_stats"
                else:
                    kind = "float"
                split[kind] += _volume(shape)
    weight_bytes = sum(g.tensormap[t].get_memsize() for t in seen if g.tensormap[t].get_shape())
    totals = {"macs": float(g.macs[0]), "params": int(g.params), "memory": int(g.memory), "nodes": nodes,
              "params_split": split, "weight_bytes": int(weight_bytes)}
    # what its CLI prints: the same profile with its NoMacsOps (Reshape, Concat, Gather, Slice, ...) left out
    with warnings.catch_warnings(), contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        warnings.simplefilter("ignore")
        g.profile(exclude_ops=set(onnx_tool.NoMacsOps))
    totals["cli"] = {"macs": float(g.macs[0]), "params": int(g.params), "memory": int(g.memory)}
    return totals


def rooflens_side(path: Path, shape: tuple[int, ...]) -> dict[str, Any]:
    report = rooflens.analyze_onnx(path, input_size=shape)
    t = report.total()
    nodes: dict[str, dict[str, Any]] = {}
    for r in report.records:
        slot = nodes.setdefault(r.node, {"op": r.op.rsplit(".", 1)[-1], "macs": 0, "flops": 0, "read": 0,
                                         "written": 0, "out_elems": 0, "family": r.family, "supported": True})
        slot["macs"] += r.cost.macs
        slot["flops"] += r.cost.flops
        slot["read"] += r.cost.bytes_read
        slot["written"] += r.cost.bytes_written
        slot["out_elems"] += _volume(r.outputs[0].shape) if r.outputs else 0
        slot["supported"] = slot["supported"] and r.supported
    return {"macs": t.macs, "flops": t.flops, "bytes_read": t.bytes_read, "bytes_written": t.bytes_written,
            "params": report.params.total, "param_bytes": report.params.bytes, "buffers": report.params.buffers,
            "buffer_bytes": report.params.buffer_bytes,
            "nodes": nodes, "unsupported": report.unsupported_ops()}


def by_op_type(ot: dict[str, Any], rl: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per ONNX op type: nodes, both tools' MACs, rooflens FLOPs, the output elements, onnx-tool's bias adds."""
    rows: dict[str, dict[str, Any]] = defaultdict(lambda: {
        "nodes": 0, "onnx_tool_macs": 0.0, "rooflens_macs": 0, "rooflens_flops": 0, "out_elems": 0,
        "in_elems": 0, "bias_adds": 0, "rooflens_nodes": 0, "rooflens_out_elems": 0, "scalar_nodes": 0,
        "rooflens_scalar_flops": 0})
    for n in ot["nodes"].values():
        row = rows[n["op"]]
        row["nodes"] += 1
        row["onnx_tool_macs"] += n["macs"]
        row["out_elems"] += n["out_elems"]
        row["in_elems"] += n["in_elems"]
        row["bias_adds"] += n["bias_adds"]
    for name, n in rl["nodes"].items():
        if ot["nodes"].get(name, {}).get("scalar"):
            rows[n["op"]]["scalar_nodes"] += 1
            rows[n["op"]]["rooflens_scalar_flops"] += n["flops"]
        row = rows[n["op"]]
        row["rooflens_nodes"] += 1
        row["rooflens_macs"] += n["macs"]
        row["rooflens_flops"] += n["flops"]
        row["rooflens_out_elems"] += n["out_elems"]
    for row in rows.values():
        row["diff"] = row["onnx_tool_macs"] - row["rooflens_macs"]
    return dict(rows)


def conv_matmul_check(ot: dict[str, Any], rl: dict[str, Any]) -> dict[str, Any]:
    """Node by node: onnx-tool's conv/matmul MACs less its bias adds against rooflens's MACs."""
    checked = equal = 0
    ot_sum = rl_sum = 0
    mismatches = []
    for name, n in ot["nodes"].items():
        if n["op"] not in CONV_MATMUL:
            continue
        checked += 1
        products = n["macs"] - n["bias_adds"]
        mine = rl["nodes"].get(name, {}).get("macs", 0)
        ot_sum += int(products)
        rl_sum += mine
        if int(products) == mine:
            equal += 1
        else:
            mismatches.append({"node": name, "op": n["op"], "onnx_tool": int(products), "rooflens": mine})
    # rooflens MACs outside conv/matmul nodes (none, by its convention: a bug if any)
    stray = {name: n["macs"] for name, n in rl["nodes"].items() if n["macs"] and n["op"] not in CONV_MATMUL}
    return {"nodes": checked, "equal": equal, "onnx_tool": ot_sum, "rooflens": rl_sum,
            "mismatches": mismatches[:10], "rooflens_macs_outside_conv_matmul": stray}


def memory_check(ot: dict[str, Any], rl: dict[str, Any]) -> dict[str, Any]:
    """onnx-tool's memory (weights once + every node's outputs) rebuilt from rooflens, and what differs."""
    recorded_out = sum(n["out_bytes"] for name, n in ot["nodes"].items() if name in rl["nodes"])
    unrecorded: dict[str, int] = defaultdict(int)
    for name, n in ot["nodes"].items():
        if name not in rl["nodes"] and n["out_bytes"]:
            unrecorded[n["op"]] += n["out_bytes"]
    scalar_written = sum(rl["nodes"][name]["written"] for name, n in ot["nodes"].items()
                         if n["scalar"] and name in rl["nodes"])
    rebuilt = rl["param_bytes"] + rl["bytes_written"]
    return {"onnx_tool": ot["memory"], "rooflens_weights_plus_written": rebuilt,
            "onnx_tool_weights": ot["weight_bytes"], "rooflens_param_bytes": rl["param_bytes"],
            "rooflens_buffer_bytes": rl["buffer_bytes"],
            "onnx_tool_outputs_of_recorded_nodes": recorded_out, "rooflens_bytes_written": rl["bytes_written"],
            "outputs_equal": recorded_out == rl["bytes_written"],
            "outputs_equal_but_scalars": recorded_out == rl["bytes_written"] - scalar_written,
            "rooflens_scalar_bytes_written": scalar_written,
            "onnx_tool_outputs_of_view_nodes": dict(unrecorded)}


def compare(name: str, with_torch: bool, raw_init: bool) -> dict[str, Any]:
    start = time.perf_counter()
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # googlenet's and inception's notice about their initialisation
        model = torchvision.models.get_model(name, weights=None).eval()
    if not raw_init:
        trained_like(model)
    side = input_side(name)
    shape = (1, 3, side, side)
    row: dict[str, Any] = {"model": name, "input": list(shape)}
    params = sum(p.numel() for p in model.parameters())
    free = shutil.disk_usage(tempfile.gettempdir()).free
    if 4 * params * 1.1 > free - MARGIN_BYTES:
        return {**row, "skipped": f"the file (~{4 * params / 1e9:.1f} GB) does not fit in the free disk space"}
    if with_torch:
        row["torch_macs"] = rooflens.analyze(model, input_size=shape).total().macs
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"{name}.onnx"
        try:
            export(model, torch.randn(shape), path)
        except Exception as e:  # noqa: BLE001 - an exporter's failure is a row of the table
            return {**row, "skipped": f"export failed: {type(e).__name__}: {' '.join(str(e).split())[:160]}"}
        del model
        try:
            rl = rooflens_side(path, shape)
        except Exception as e:  # noqa: BLE001 - reported as a row
            return {**row, "skipped": f"rooflens.analyze_onnx failed: {type(e).__name__}: {str(e)[:200]}"}
        try:
            ot = onnx_tool_side(path, shape)
        except Exception as e:  # noqa: BLE001 - reported as a row
            return {**row, "skipped": f"onnx-tool failed: {type(e).__name__}: {str(e)[:200]}"}
    ops = by_op_type(ot, rl)
    cm = conv_matmul_check(ot, rl)
    return {
        **row,
        "rooflens_macs": rl["macs"], "rooflens_flops": rl["flops"], "rooflens_params": rl["params"],
        "rooflens_bytes": rl["bytes_read"] + rl["bytes_written"], "rooflens_unsupported": rl["unsupported"],
        "onnx_tool_macs": ot["macs"], "onnx_tool_flops": 2 * ot["macs"], "onnx_tool_params": ot["params"],
        "onnx_tool_params_split": ot["params_split"], "onnx_tool_memory": ot["memory"], "onnx_tool_cli": ot["cli"],
        "ratio": ot["macs"] / rl["macs"] if rl["macs"] else None,
        "conv_matmul": cm,
        "conv_matmul_agree": cm["equal"] == cm["nodes"] and cm["onnx_tool"] == cm["rooflens"],
        "rooflens_buffers": rl["buffers"],
        "params_agree": ot["params"] == rl["params"],
        "params_agree_float": ot["params_split"]["float"] == rl["params"],
        "memory": memory_check(ot, rl),
        "ops": ops,
        "seconds": round(time.perf_counter() - start, 2),
    }


def _g(x: float) -> str:
    return f"{x / 1e9:.4f}"


def params_status(r: dict[str, Any]) -> str:
    """equal; or what onnx-tool counts beyond rooflens's parameters (BN statistics, integer tensors); or DIFF."""
    if r["params_agree"]:
        return "equal"
    if not r["params_agree_float"]:
        return "DIFF"
    split = r["onnx_tool_params_split"]
    extra = [f"{label}" for key, label in (("bn_stats", "+BN stats"), ("integer", "+int")) if split[key]]
    return " ".join(extra) or "DIFF"


def model_table(rows: list[dict[str, Any]]) -> str:
    head = (f"{'model':<20} {'rooflens GMACs':>14} {'onnx-tool GMACs':>15} {'ratio':>6} {'torch GMACs':>11} "
            f"{'conv+matmul':>15} {'rooflens params':>15} {'onnx-tool params':>16} {'params':>15} "
            f"{'rl GFLOPs':>9} {'ot GFLOPs':>9} {'rl MB r+w':>9} {'ot mem MB':>9} {'s':>5}")
    lines = [head, "-" * len(head)]
    for r in rows:
        if "skipped" in r:
            lines.append(f"{r['model']:<20} skipped: {r['skipped']}")
            continue
        cm = r["conv_matmul"]
        agree = f"{cm['equal']}/{cm['nodes']} exact" if r["conv_matmul_agree"] else f"{cm['equal']}/{cm['nodes']} DIFF"
        params = params_status(r)
        torch_macs = _g(r["torch_macs"]) if "torch_macs" in r else "-"
        lines.append(
            f"{r['model']:<20} {_g(r['rooflens_macs']):>14} {_g(r['onnx_tool_macs']):>15} {r['ratio']:>6.3f} "
            f"{torch_macs:>11} {agree:>15} {r['rooflens_params']:>15,} {r['onnx_tool_params']:>16,} {params:>15} "
            f"{r['rooflens_flops'] / 1e9:>9.3f} {r['onnx_tool_flops'] / 1e9:>9.3f} "
            f"{r['rooflens_bytes'] / 1e6:>9.1f} {r['onnx_tool_memory'] / 1e6:>9.1f} {r['seconds']:>5.1f}"
        )
    return "\n".join(lines)


def rates(row: dict[str, Any]) -> str:
    """onnx-tool MACs and rooflens FLOPs per output element, as measured over the nodes."""
    ot = (row["onnx_tool_macs"] - row["bias_adds"]) / (row["out_elems"] or 1)
    return f"{ot:>8.2f} {row['rooflens_flops'] / (row['rooflens_out_elems'] or 1):>8.2f}"


def same_count(op: str, row: dict[str, Any]) -> str:
    """Whether onnx-tool's "MACs" of the op type equal rooflens's FLOPs (outside conv/matmul: the same count,
    named differently) or, for conv/matmul, rooflens's FLOPs equal 2 x MACs + onnx-tool's bias adds."""
    if op in CONV_MATMUL:
        return "fma" if row["rooflens_flops"] == 2 * row["rooflens_macs"] + row["bias_adds"] else "no"
    if not row["onnx_tool_macs"] and not row["rooflens_flops"]:
        return "-"
    if int(row["onnx_tool_macs"]) == row["rooflens_flops"]:
        return "="
    if row["rooflens_scalar_flops"] and int(row["onnx_tool_macs"]) == row["rooflens_flops"] - row[
            "rooflens_scalar_flops"]:
        return "=*"  # equal but for the scalar outputs onnx-tool counts as 0
    return "no"


def cause_of(op: str, row: dict[str, Any]) -> str:
    """The cause of an op type's difference; UNEXPLAINED where the numbers do not bear it out."""
    if row["bias_adds"]:
        if row["diff"] == row["bias_adds"]:
            return f"bias adds {int(row['bias_adds']):,} = the whole difference"
        return f"bias adds {int(row['bias_adds']):,}, rest UNEXPLAINED"
    if op in CONV_MATMUL:
        return CAUSES.get(op, "") if not row["diff"] else "UNEXPLAINED conv/matmul difference"
    if row["rooflens_macs"]:
        return "UNEXPLAINED: rooflens MACs outside conv and matmul"
    if not row["onnx_tool_macs"]:
        return CAUSES.get(op, NO_MAC_FLOPS if row["rooflens_flops"] else NO_MAC_OPS)
    return CAUSES.get(op, "onnx-tool counts its arithmetic as MACs (ot/elem per output element); rooflens "
                          "counts FLOPs, no MACs (only conv and matmul have MACs)")


def op_table(ops: dict[str, dict[str, Any]], total_ot: float, title: str, only_diff: bool) -> str:
    head = (f"  {'op type':<20} {'nodes':>6} {'onnx-tool MACs':>16} {'rooflens MACs':>16} {'difference':>16} "
            f"{'% of ot':>7} {'ot/elem':>8} {'rl F/el':>8} {'ot=rlF':>6}  cause")
    lines = [title, head]
    for op, row in sorted(ops.items(), key=lambda kv: -abs(kv[1]["diff"])):
        if only_diff and not row["diff"]:
            continue
        cause = cause_of(op, row)
        share = 100 * row["diff"] / total_ot if total_ot else 0.0
        lines.append(f"  {op:<20} {row['nodes']:>6} {int(row['onnx_tool_macs']):>16,} {row['rooflens_macs']:>16,} "
                     f"{int(row['diff']):>16,} {share:>7.2f} {rates(row)} {same_count(op, row):>6}  {cause}")
    return "\n".join(lines)


def merge_ops(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    total: dict[str, dict[str, Any]] = {}
    for r in rows:
        for op, row in r.get("ops", {}).items():
            acc = total.setdefault(op, {k: 0 for k in row} | {"models": 0})
            for k, v in row.items():
                acc[k] += v
            acc["models"] += 1
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", help="comma-separated names, or 'all' (every torchvision classifier); "
                                         f"default: {','.join(DEFAULT_MODELS)}")
    parser.add_argument("--no-torch", action="store_true", help="skip the torch-side rooflens.analyze column")
    parser.add_argument("--per-model", action="store_true", help="print each model's per-op-type breakdown")
    parser.add_argument("--raw-init", action="store_true",
                        help="export the freshly initialised weights (equal tensors merged by the exporter)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for the exports (default 1)")
    args = parser.parse_args(argv)
    if args.models == "all":
        names = torchvision.models.list_models(module=torchvision.models)
    else:
        names = args.models.split(",") if args.models else list(DEFAULT_MODELS)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    rows = []
    for name in names:
        row = compare(name, with_torch=not args.no_torch, raw_init=args.raw_init)
        rows.append(row)
        print(f"{name}: {'skipped: ' + row['skipped'] if 'skipped' in row else 'done'} "
              f"({row.get('seconds', 0):.1f} s)", file=sys.stderr, flush=True)
    wall = time.perf_counter() - start
    done = [r for r in rows if "skipped" not in r]
    info = versions()
    print(f"onnx-tool {info['onnx-tool']} vs rooflens {info['rooflens']} (onnx {info['onnx']}, torch {info['torch']}, "
          f"torchvision {info['torchvision']}, opset {OPSET}, TorchScript exporter), {info['machine']}, "
          f"python {info['python']}")
    print("ratio = onnx-tool MACs / rooflens MACs; conv+matmul = nodes whose onnx-tool MACs less its bias adds "
          "equal rooflens's; params: equal, or what onnx-tool counts beyond rooflens's parameters (+BN stats: "
          "BatchNormalization running mean and variance, +int: integer initializers; rooflens: buffers), DIFF; "
          "ot GFLOPs = 2 x onnx-tool MACs (its FLOPs); rl MB r+w = rooflens bytes read + written; ot mem MB = "
          "onnx-tool memory (weights once + every node's output)\n")
    print(model_table(rows))
    if args.per_model:
        for r in done:
            print()
            print(op_table(r["ops"], r["onnx_tool_macs"], f"{r['model']}: MAC differences by op type", True))
    merged = merge_ops(done)
    total_ot = sum(r["onnx_tool_macs"] for r in done)
    print()
    print(op_table(merged, total_ot, f"All {len(done)} models: MACs by ONNX op type (difference = onnx-tool - "
                                     "rooflens; ot/elem = onnx-tool MACs per output element, bias excluded; "
                                     "rl F/el = rooflens FLOPs per output element)", False))
    print()
    print("Memory (MB): onnx-tool's memory = initializer bytes once + every node's output bytes (nothing read)")
    for r in done:
        m = r["memory"]
        views = ", ".join(f"{k} {v / 1e6:.2f}" for k, v in sorted(m["onnx_tool_outputs_of_view_nodes"].items()))
        same = "equal" if m["outputs_equal"] else (
            f"equal but for {m['rooflens_scalar_bytes_written']} B of scalar outputs onnx-tool counts as 0"
            if m["outputs_equal_but_scalars"] else "DIFFERENT")
        print(f"  {r['model']:<20} onnx-tool {m['onnx_tool'] / 1e6:8.2f} = weights {m['onnx_tool_weights'] / 1e6:7.2f}"
              f" + outputs of the nodes rooflens records {m['onnx_tool_outputs_of_recorded_nodes'] / 1e6:7.2f} "
              f"(rooflens's bytes written {m['rooflens_bytes_written'] / 1e6:.2f}: {same}) + outputs of views "
              f"[{views or '-'}]; rooflens parameters {m['rooflens_param_bytes'] / 1e6:7.2f} + buffers "
              f"{m['rooflens_buffer_bytes'] / 1e6:.2f}")
    cli = [r for r in done if (r["onnx_tool_cli"]["params"], r["onnx_tool_cli"]["memory"])
           != (r["onnx_tool_params"], r["onnx_tool_memory"])]
    if cli:
        print("\nonnx-tool's CLI (its NoMacsOps hidden) against its API totals (every node):")
        for r in cli:
            c = r["onnx_tool_cli"]
            print(f"  {r['model']:<20} params {c['params']:,} (API {r['onnx_tool_params']:,}), memory "
                  f"{c['memory'] / 1e6:.2f} MB (API {r['onnx_tool_memory'] / 1e6:.2f} MB)")
    unexplained = sorted(op for op, row in merged.items() if "UNEXPLAINED" in cause_of(op, row))
    stray = {r["model"]: r["conv_matmul"]["rooflens_macs_outside_conv_matmul"] for r in done
             if r["conv_matmul"]["rooflens_macs_outside_conv_matmul"]}
    summary = {
        "models": len(rows), "compared": len(done), "skipped": [r["model"] for r in rows if "skipped" in r],
        "conv_matmul_exact": sum(r["conv_matmul_agree"] for r in done),
        "params_equal": sum(r["params_agree"] for r in done),
        "params_equal_float": sum(r["params_agree_float"] for r in done),
        "memory_outputs_equal": sum(r["memory"]["outputs_equal"] for r in done),
        "memory_outputs_equal_but_scalars": sum(r["memory"]["outputs_equal_but_scalars"] for r in done),
        "ratio_min": min((r["ratio"] for r in done), default=None),
        "ratio_max": max((r["ratio"] for r in done), default=None),
        "unexplained_op_types": unexplained, "rooflens_macs_outside_conv_matmul": stray,
        "wall_s": round(wall, 1),
    }
    print(f"\nwall time {wall:.1f} s")
    slim = [{k: v for k, v in r.items()} for r in rows]
    print(json.dumps({"bench": "onnx_peers", "versions": info, "opset": OPSET, "summary": summary,
                      "ops_all_models": merged, "rows": slim}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
