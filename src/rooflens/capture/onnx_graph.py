"""The ONNX front-end: an ONNX file in, the operator records and the module tree a torch analysis gives out.

Nothing runs: the graph's shapes come from ONNX shape inference (``onnx.shape_inference`` with data
propagation, then ONNX Runtime's symbolic shape inference for what it leaves open, such as the contrib
operators ONNX Runtime's optimizer writes) after the given input sizes have bound the symbolic dimensions
of the inputs. Each node is counted by :mod:`rooflens.formulas.onnx_ops`; a node without a formula is
recorded as unsupported with its bytes, as in torch.

* **Modules** from the node names exporters write (``/layer1/layer1.0/conv1/Conv`` is the node ``Conv``
  of ``layer1.0.conv1``), or from the ``pkg.torch.onnx.name_scopes`` metadata that
  ``torch.onnx.export(dynamo=True)`` writes (with the classes of ``pkg.torch.onnx.class_hierarchy``);
  a graph whose names carry no hierarchy is flat: one module per node, under the root.
* **Parameters** are the initializers (and ``Constant`` tensors) the operators read as data, each once;
  the running statistics of a BatchNormalization and integer tensors (indices) are buffers; tensors read
  only as arguments (shapes, axes, scales of a Resize) and scalars outside quantization are neither.
* **QDQ**: a node whose floating-point inputs all come from DequantizeLinear nodes and whose outputs all
  go to one QuantizeLinear each is counted as the int8 node ONNX Runtime fuses it into (QLinearConv ...),
  reading and writing int8 (see :func:`rooflens.formulas.onnx_ops.qdq_unit_cost`).
* **NCHWc**: the operators ONNX Runtime's "layout"/"all" optimisation writes for a CPU (domain
  ``com.microsoft.nchwc``) get their shapes from the rules of ONNX Runtime's schemas (:func:`_infer_nchwc`),
  are counted on the blocked tensors, padded channels included, and are placed in the module of the node
  whose output they are named after (:func:`original_node_name`); docs/onnx.md, "ONNX Runtime's NCHWc graphs".

The ``onnx`` package is imported here, lazily: ``pip install rooflens[onnx]``.
"""

from __future__ import annotations

import ast
import contextlib
import io
import logging
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rooflens.errors import InputError, ModelError, first_names
from rooflens.formulas.onnx_ops import (
    MS_DOMAIN,
    NCHWC_DOMAIN,
    VIEW_OPS,
    OnnxCall,
    OnnxEntry,
    lookup,
    op_name,
    qdq_unit_cost,
)
from rooflens.types import ZERO, Convention, Cost, ModuleNode, OpRecord, ParamStats, TensorKind, TensorMeta, Widths

INSTALL_HINT = "pip install 'rooflens[onnx]'"
EXECUTED = "onnx (shape inference on the graph: nothing computed)"
KNOWN_DOMAINS = frozenset({"", "ai.onnx", MS_DOMAIN, NCHWC_DOMAIN, "ai.onnx.ml"})
SCOPES_KEY = "pkg.torch.onnx.name_scopes"
CLASSES_KEY = "pkg.torch.onnx.class_hierarchy"
REWRITE_KEY = "pkg.onnxscript.rewriter.rule_name"
MAX_LISTED = 5

# ONNX element types: (name as torch spells it, bytes per element, bits per element when under a byte,
# floating point). Integer and boolean tensors keep their width whatever the precision settings say.
_DTYPES: dict[int, tuple[str, int, int, bool]] = {
    1: ("float32", 4, 0, True), 2: ("uint8", 1, 0, False), 3: ("int8", 1, 0, False), 4: ("uint16", 2, 0, False),
    5: ("int16", 2, 0, False), 6: ("int32", 4, 0, False), 7: ("int64", 8, 0, False), 8: ("string", 8, 0, False),
    9: ("bool", 1, 0, False), 10: ("float16", 2, 0, True), 11: ("float64", 8, 0, True),
    12: ("uint32", 4, 0, False), 13: ("uint64", 8, 0, False), 14: ("complex64", 8, 0, False),
    15: ("complex128", 16, 0, False), 16: ("bfloat16", 2, 0, True), 17: ("float8_e4m3fn", 1, 0, True),
    18: ("float8_e4m3fnuz", 1, 0, True), 19: ("float8_e5m2", 1, 0, True), 20: ("float8_e5m2fnuz", 1, 0, True),
    21: ("uint4", 1, 4, False), 22: ("int4", 1, 4, False), 23: ("float4_e2m1fn", 1, 4, True),
    24: ("float8_e8m0fnu", 1, 0, True), 25: ("uint2", 1, 2, False), 26: ("int2", 1, 2, False),
    27: ("float6_e2m3", 1, 6, True), 28: ("float6_e3m2", 1, 6, True),
}
_INDEX_DTYPES = frozenset({"int64", "uint64", "bool", "string"})  # indices, masks, shapes: buffers when read as data
_QUANT_OPS = frozenset({
    "QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger",
    "DynamicQuantizeLinear", "QGemm", "MatMulIntegerToFloat", "DynamicQuantizeMatMul", "MatMulNBits",
    "QLinearAdd", "QLinearMul", "QLinearSigmoid", "QLinearLeakyRelu", "QLinearGlobalAveragePool",
    "QLinearAveragePool", "QLinearSoftmax", "QLinearConcat",
})
_INT8 = frozenset({"int8", "uint8", "int4", "uint4", "int16", "uint16"})

Shape = Sequence[int]


@dataclass
class OnnxCapture:
    """What the ONNX front-end found: records, module tree, parameters and notes."""

    records: list[OpRecord]
    modules: dict[str, ModuleNode]
    params: ParamStats
    inputs: tuple[TensorMeta, ...]
    diagnostics: list[str] = field(default_factory=list)
    float_dtype: str | None = None  # dtype of the first floating-point parameter
    quantized: bool = False  # integer products (QLinearConv, MatMulInteger, QDQ units) are in the graph
    name: str = ""


# ---- loading -------------------------------------------------------------------------------------------


def import_onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise InputError(f"analysing ONNX models needs the onnx package: {INSTALL_HINT}") from None
    return onnx


def load(source: str | os.PathLike[str] | Any) -> tuple[Any, Path]:
    """The ModelProto (external data not loaded: its files are checked) and the folder its data lives in."""
    onnx = import_onnx()
    if isinstance(source, onnx.ModelProto):
        model = source  # read only: the analysis works on a copy with its inputs bound
        base = Path.cwd()
        where = f"the model {model.graph.name or '(unnamed)'}"
    else:
        if not isinstance(source, (str, os.PathLike)):
            raise InputError(f"analyze_onnx() expects a path to an .onnx file or an onnx.ModelProto, "
                             f"got {type(source).__name__}")
        path = Path(source)
        where = str(path)
        if not path.exists():
            raise InputError(f"{where}: no such file")
        if path.is_dir():
            raise InputError(f"{where} is a folder, not an ONNX file")
        try:
            model = onnx.load(str(path), load_external_data=False)
        except Exception as e:  # noqa: BLE001 - protobuf's DecodeError and friends: not an ONNX file
            raise InputError(f"{where} is not an ONNX model (it does not parse as one: {_one_line(e)})") from None
        base = path.resolve().parent
    if model.ir_version <= 0 or not model.HasField("graph") or not (model.graph.node or model.graph.output):
        raise InputError(f"{where} is not an ONNX model (no IR version or no graph)")
    _check_versions(onnx, model, where)
    _check_external_data(onnx, model, base, where)
    return model, base


def _check_versions(onnx: Any, model: Any, where: str) -> None:
    if model.ir_version > onnx.IR_VERSION:
        raise InputError(f"{where} has IR version {model.ir_version}, newer than the onnx package knows "
                         f"({onnx.IR_VERSION}, onnx {onnx.__version__}): upgrade onnx")
    opsets = {("" if o.domain == "ai.onnx" else o.domain): o.version for o in model.opset_import}
    newest = onnx.defs.onnx_opset_version()
    default = opsets.get("")
    if default is not None and default > newest:
        raise InputError(f"{where} uses opset {default} of ai.onnx; the onnx package knows up to {newest} "
                         f"(onnx {onnx.__version__}): upgrade onnx")
    if default is not None and default < 1:
        raise InputError(f"{where} declares opset {default} of ai.onnx, which does not exist")
    uses_default = any(n.domain in ("", "ai.onnx") for n in model.graph.node)
    if default is None and uses_default:
        raise InputError(f"{where} has ai.onnx operators but imports no ai.onnx opset")


def _check_external_data(onnx: Any, model: Any, base: Path, where: str) -> None:
    for tensor in _initializer_protos(model):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        info = {e.key: e.value for e in tensor.external_data}
        location = info.get("location", "")
        file = base / location
        if not location or not file.is_file():
            raise InputError(f"{where}: the external data of initializer {tensor.name!r} is missing: "
                             f"{str(file)!r} does not exist (keep the data file beside the .onnx file)")
        end = int(info.get("offset", 0) or 0) + int(info.get("length", 0) or 0)
        if end > file.stat().st_size:
            raise InputError(f"{where}: the external data file {str(file)!r} is shorter than initializer "
                             f"{tensor.name!r} needs ({end} bytes)")


def _initializer_protos(model: Any) -> Iterator[Any]:
    yield from model.graph.initializer
    for sparse in model.graph.sparse_initializer:
        yield sparse.values


def _one_line(message: object) -> str:
    return " ".join(str(message).split())[:300]


# ---- binding the inputs and inferring shapes ---------------------------------------------------------


def graph_inputs(model: Any) -> list[Any]:
    """The graph's inputs that are not initializers (IR < 4 lists the initializers among the inputs)."""
    init = {t.name for t in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in init]


def _declared(value_info: Any) -> list[int | str | None] | None:
    """The declared dims of a tensor input: ints, symbol names, None for an anonymous one; None without a shape."""
    tt = value_info.type.tensor_type
    if not tt.HasField("shape"):
        return None
    dims: list[int | str | None] = []
    for d in tt.shape.dim:
        if d.HasField("dim_value"):
            dims.append(int(d.dim_value))
        elif d.HasField("dim_param"):
            dims.append(d.dim_param)
        else:
            dims.append(None)
    return dims


def bind_inputs(
    model: Any, sizes: Sequence[Shape] | None, named: Mapping[str, Shape] | None, where: str
) -> dict[str, tuple[int, ...]]:
    """Every graph input's shape: given by position (``sizes``) or by name (``named``), else declared; an
    InputError names an input whose dimension stays symbolic, a size that does not fit, an unknown name."""
    inputs = graph_inputs(model)
    names = [i.name for i in inputs]
    given: dict[str, tuple[int, ...]] = {}
    if sizes is not None:
        if len(sizes) > len(inputs):
            raise InputError(f"{len(sizes)} input sizes given, but {where} has {len(inputs)} input(s): "
                             f"{', '.join(map(repr, names))}")
        given.update({i.name: _shape(s, i.name) for i, s in zip(inputs, sizes, strict=False)})
    for name, s in (named or {}).items():
        if name not in names:
            raise InputError(f"{where} has no input named {name!r}; its inputs: {', '.join(map(repr, names))}")
        given[name] = _shape(s, name)
    bound: dict[str, tuple[int, ...]] = {}
    for vi in inputs:
        if not vi.type.HasField("tensor_type"):
            raise InputError(f"input {vi.name!r} of {where} is not a tensor (a sequence, map or optional): "
                             "rooflens analyses tensor inputs only")
        declared = _declared(vi)
        shape = given.get(vi.name)
        if shape is None:
            if declared is None:
                raise InputError(f"input {vi.name!r} of {where} declares no shape: give it, e.g. "
                                 f"input_size={{{vi.name!r}: (1, 3, 224, 224)}}")
            open_dims = [(i, d) for i, d in enumerate(declared) if not isinstance(d, int) or d <= 0]
            if open_dims:
                i, d = open_dims[0]
                label = f" ({d!r})" if isinstance(d, str) else ""
                raise InputError(
                    f"input {vi.name!r} of {where} has a symbolic dimension {i}{label} "
                    f"(shape {_dims_text(declared)}): give its size, e.g. input_size=(...) or "
                    f"input_size={{{vi.name!r}: (...)}} (--input-size on the command line)"
                )
            shape = tuple(int(d) for d in declared)  # type: ignore[arg-type]
        elif declared is not None:
            if len(declared) != len(shape):
                raise InputError(f"input {vi.name!r} of {where} has {len(declared)} dimensions "
                                 f"{_dims_text(declared)}; the size given, {list(shape)}, has {len(shape)}")
            for i, (d, size) in enumerate(zip(declared, shape, strict=True)):
                if isinstance(d, int) and d > 0 and d != size:
                    raise InputError(f"input {vi.name!r} of {where} has dimension {i} fixed at {d} "
                                     f"(shape {_dims_text(declared)}); the size given says {size}")
        bound[vi.name] = shape
    return bound


def _shape(value: Any, name: str) -> tuple[int, ...]:
    if isinstance(value, int) or not isinstance(value, Iterable):
        raise InputError(f"the size of input {name!r} must be a sequence of positive integers, got {value!r}")
    shape = tuple(value)
    if not shape or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape):
        raise InputError(f"the size of input {name!r} must be a sequence of positive integers, got {value!r}")
    return shape


def _dims_text(dims: Sequence[int | str | None]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"


def _with_bound_inputs(onnx: Any, model: Any, bound: Mapping[str, tuple[int, ...]]) -> Any:
    """A copy whose inputs have the bound shapes and whose other shapes are left for inference to fill."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for vi in graph_inputs(out):
        shape = vi.type.tensor_type.shape
        shape.ClearField("dim")
        for s in bound[vi.name]:
            shape.dim.add().dim_value = s
    del out.graph.value_info[:]
    for vi in out.graph.output:
        if vi.type.HasField("tensor_type"):
            vi.type.tensor_type.ClearField("shape")
    if out.functions:
        from onnx import inliner

        out = inliner.inline_local_functions(out)
    return out


TensorInfo = tuple[int, "tuple[int, ...] | None"]  # (element type, shape; None when unknown)


def _collect(model: Any) -> dict[str, TensorInfo]:
    """Element type and shape of every tensor shape inference knows (None dims: unknown)."""
    info: dict[str, TensorInfo] = {}
    for vi in [*model.graph.input, *model.graph.value_info, *model.graph.output]:
        if not vi.type.HasField("tensor_type"):
            continue
        tt = vi.type.tensor_type
        shape: tuple[int, ...] | None = None
        if tt.HasField("shape"):
            dims = [int(d.dim_value) if d.HasField("dim_value") else -1 for d in tt.shape.dim]
            shape = None if any(d < 0 for d in dims) else tuple(dims)
        known = info.get(vi.name)
        if known is None or (known[1] is None and shape is not None):
            info[vi.name] = (tt.elem_type, shape)
    for t in model.graph.initializer:
        info[t.name] = (t.data_type, tuple(int(d) for d in t.dims))
    for sparse in model.graph.sparse_initializer:
        info[sparse.values.name] = (sparse.values.data_type, tuple(int(d) for d in sparse.dims))
    for node in model.graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx") and node.output:
            constant = _constant_info(node)
            if constant is not None:
                info[node.output[0]] = constant
    return info


def _constant_info(node: Any) -> TensorInfo | None:
    for a in node.attribute:
        if a.name == "value":
            return a.t.data_type, tuple(int(d) for d in a.t.dims)
        if a.name == "sparse_value":
            return a.sparse_tensor.values.data_type, tuple(int(d) for d in a.sparse_tensor.dims)
        if a.name == "value_float":
            return 1, ()
        if a.name == "value_int":
            return 7, ()
        if a.name == "value_floats":
            return 1, (len(a.floats),)
        if a.name == "value_ints":
            return 7, (len(a.ints),)
    return None


def infer_shapes(onnx: Any, model: Any, diagnostics: list[str]) -> tuple[Any, dict[str, TensorInfo]]:
    """ONNX shape inference with data propagation; where tensors the nodes use stay unknown, a pass that
    computes the small tensors made from shapes and constants (the exporters' shape arithmetic: Shape,
    Gather, Mod, Concat ... feeding a Pad or a Reshape) node by node; then ONNX Runtime's symbolic shape
    inference (contrib operators)."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model, check_type=False, strict_mode=False, data_prop=True)
    except Exception as e:  # noqa: BLE001 - a model onnx's inference rejects: try the other ways
        diagnostics.append(f"ONNX shape inference failed ({_one_line(e)}); the node-by-node pass was tried")
        inferred = model
    info = _collect(inferred)
    unknown = _unknown(inferred, info)
    for _ in range(3):  # the two passes feed each other (a fused MatMul before an attention ...)
        if not unknown:
            break
        _propagate(onnx, inferred, info)
        if _unknown(inferred, info):
            _symbolic(onnx, inferred, info, diagnostics)
        now = _unknown(inferred, info)
        if len(now) >= len(unknown):
            break
        unknown = now
    return inferred, info


def _symbolic(onnx: Any, model: Any, info: dict[str, TensorInfo], diagnostics: list[str]) -> None:
    """ONNX Runtime's symbolic shape inference, told what is known so far; what it finds fills ``info``."""
    try:
        from onnxruntime.tools import symbolic_shape_infer
    except ImportError:
        return
    logger = logging.getLogger(symbolic_shape_infer.__name__)
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)  # it warns for every guess it makes: nothing of that is printed
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            symbolic = _run_symbolic(symbolic_shape_infer.SymbolicShapeInference, _with_value_info(onnx, model, info))
    except Exception as e:  # noqa: BLE001 - its asserts and errors on models it does not know
        note = f"ONNX Runtime's symbolic shape inference failed: {_one_line(e)}"
        if note not in diagnostics:
            diagnostics.append(note)
        return
    finally:
        logger.setLevel(level)
    if symbolic is not None:
        for name, (elem, shape) in _collect(symbolic).items():
            known = info.get(name)
            if known is None or known[1] is None:
                info[name] = (elem, shape)


def _run_symbolic(inference: Any, model: Any) -> Any:
    """``SymbolicShapeInference.infer_shapes`` without its last step: when it cannot infer every shape it
    saves the model to ``sym_shape_infer_temp.onnx`` in the working folder and raises; here what it did
    infer is kept and nothing is written."""
    run = inference(2**31 - 1, True, False, 0)  # int_max, auto_merge, guess_output_rank, verbose
    run._preprocess(model)
    while run.run_:
        run._infer_impl()
    run._update_output_from_vi()
    return run.out_mp_


def _with_value_info(onnx: Any, model: Any, info: Mapping[str, TensorInfo]) -> Any:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    listed = {vi.name for vi in [*out.graph.input, *out.graph.output]} | {t.name for t in out.graph.initializer}
    del out.graph.value_info[:]
    for name, (elem, shape) in info.items():
        if name not in listed and shape is not None:
            out.graph.value_info.append(onnx.helper.make_tensor_value_info(name, elem, shape))
    return out


VALUE_LIMIT = 1 << 16  # elements of a tensor the node-by-node pass computes (shape arithmetic, masks)
_RANDOM = frozenset({"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Bernoulli",
                     "Multinomial"})


def _propagate(onnx: Any, model: Any, info: dict[str, TensorInfo]) -> None:
    """One pass over the nodes in order: the values of small tensors computed from constants and shapes
    (ONNX's reference implementation, one evaluator per distinct operator and attributes), and the output
    shapes of nodes shape inference left open, inferred again with those values."""
    import numpy as np
    from onnx import numpy_helper
    from onnx.reference import ReferenceEvaluator

    opset = {("" if o.domain == "ai.onnx" else o.domain): o.version for o in model.opset_import}
    values: dict[str, Any] = {}
    for t in model.graph.initializer:
        if t.data_location != onnx.TensorProto.EXTERNAL and _numel(t.dims) <= VALUE_LIMIT:
            with contextlib.suppress(Exception):
                values[t.name] = numpy_helper.to_array(t)
    evaluators: dict[bytes, Any] = {}
    consumers: dict[str, list[Any]] | None = None
    for node in model.graph.node:
        if node.domain == NCHWC_DOMAIN:
            if not all(n in info and info[n][1] is not None for n in node.output if n):
                if consumers is None:
                    consumers = {}
                    for user in model.graph.node:
                        for name in user.input:
                            consumers.setdefault(name, []).append(user)
                _infer_nchwc(onnx, node, info, values, opset, model, consumers)
            continue
        if node.domain == MS_DOMAIN:
            if not all(n in info and info[n][1] is not None for n in node.output if n):
                _infer_contrib(onnx, node, info, values, opset, model)
            continue
        if node.domain not in ("", "ai.onnx") or any(a.type in (5, 10) for a in node.attribute):  # graphs
            continue
        inputs = [n for n in node.input if n]
        if node.op_type == "Constant":
            with contextlib.suppress(Exception):
                values[node.output[0]] = numpy_helper.to_array(_constant_tensor(onnx, node))
            continue
        if node.op_type == "Shape" and inputs and (known := info.get(inputs[0])) and known[1] is not None:
            attrs = {a.name: a.i for a in node.attribute}
            values[node.output[0]] = np.array(known[1], dtype=np.int64)[attrs.get("start", 0):attrs.get("end")]
        elif node.op_type == "Size" and inputs and (known := info.get(inputs[0])) and known[1] is not None:
            values[node.output[0]] = np.array(_numel(known[1]), dtype=np.int64)
        elif (inputs and all(n in values for n in inputs) and node.op_type not in _RANDOM
              and _small_result(node, values)):
            results = _evaluate(onnx, node, values, evaluators, ReferenceEvaluator)
            for name, value in zip(node.output, results, strict=False):
                if name and value is not None and np.asarray(value).size <= VALUE_LIMIT:
                    values[name] = np.asarray(value)
        for name in node.output:
            if name in values:
                value = values[name]
                with contextlib.suppress(Exception):
                    info[name] = (onnx.helper.np_dtype_to_tensor_dtype(value.dtype), tuple(value.shape))
        if all(n in info and info[n][1] is not None for n in node.output if n):
            continue
        _infer_node(onnx, node, info, values, opset, model)


def _constant_tensor(onnx: Any, node: Any) -> Any:
    for a in node.attribute:
        if a.name == "value":
            return a.t
        value = onnx.helper.get_attribute_value(a)
        if a.name in ("value_float", "value_floats"):
            return onnx.helper.make_tensor(node.output[0], 1, [] if a.name == "value_float" else [len(value)],
                                           [value] if a.name == "value_float" else value)
        if a.name in ("value_int", "value_ints"):
            return onnx.helper.make_tensor(node.output[0], 7, [] if a.name == "value_int" else [len(value)],
                                           [value] if a.name == "value_int" else value)
    raise ValueError("a Constant without a tensor value")


def _small_result(node: Any, values: Mapping[str, Any]) -> bool:
    """Whether the operators that make tensors larger than their inputs stay under the limit."""
    import numpy as np

    ins = [values[n] for n in node.input if n]
    try:
        if node.op_type == "ConstantOfShape":
            return _numel(ins[0].tolist()) <= VALUE_LIMIT
        if node.op_type == "Expand":
            return _numel(np.broadcast_shapes(ins[0].shape, tuple(ins[1].tolist()))) <= VALUE_LIMIT
        if node.op_type == "Range":
            start, limit, delta = (float(v) for v in ins[:3])
            return delta != 0 and abs((limit - start) / delta) <= VALUE_LIMIT
        if node.op_type == "Tile":
            return int(ins[0].size) * _numel(ins[1].tolist()) <= VALUE_LIMIT
    except Exception:  # noqa: BLE001 - inputs the operator would reject: not evaluated
        return False
    return True


def _evaluate(onnx: Any, node: Any, values: Mapping[str, Any], evaluators: dict[bytes, Any], reference: Any) -> list[Any]:
    """The node's outputs computed by ONNX's reference implementation (evaluators shared by equal nodes)."""
    canonical = onnx.helper.make_node(
        node.op_type, [f"i{i}" if n else "" for i, n in enumerate(node.input)],
        [f"o{i}" if n else "" for i, n in enumerate(node.output)], domain=node.domain)
    canonical.attribute.extend(node.attribute)
    key = canonical.SerializeToString()
    try:
        evaluator = evaluators.get(key)
        if evaluator is None:
            evaluator = evaluators[key] = reference(canonical)
        feeds = {f"i{i}": values[n] for i, n in enumerate(node.input) if n}
        return list(evaluator.run(None, feeds))
    except Exception:  # noqa: BLE001 - an operator the reference cannot run on these values: not evaluated
        return []


# ONNX Runtime contrib operators (what its optimizer writes) whose outputs have the shape of an ai.onnx
# operator's on some of their inputs: (operator, input positions, attributes to drop, output element type
# from: an input position, or None for float32). ONNX Runtime's symbolic shape inference lacks them.
_CONTRIB_SHAPES: dict[str, tuple[str, tuple[int, ...], frozenset[str], int | None]] = {
    "FusedConv": ("Conv", (0, 1, 2), frozenset({"activation", "activation_params"}), 0),
    "FusedGemm": ("Gemm", (0, 1, 2), frozenset({"activation", "activation_alpha", "activation_beta",
                                                "activation_gamma"}), 0),
    "QGemm": ("Gemm", (0, 3, 6), frozenset(), 0),
    "MatMulIntegerToFloat": ("MatMul", (0, 1), frozenset(), None),
    "DynamicQuantizeMatMul": ("MatMul", (0, 1), frozenset(), None),
    "QLinearAveragePool": ("AveragePool", (0,), frozenset({"channels_last"}), 0),
    "QLinearGlobalAveragePool": ("GlobalAveragePool", (0,), frozenset({"channels_last"}), 0),
    "QLinearSigmoid": ("Identity", (0,), frozenset(), 0),
    "QLinearLeakyRelu": ("Identity", (0,), frozenset({"alpha"}), 0),
    "QLinearSoftmax": ("Identity", (0,), frozenset({"axis", "opset"}), 0),
    "QuickGelu": ("Identity", (0,), frozenset({"alpha"}), 0),
    "BiasGelu": ("Identity", (0,), frozenset(), 0),
    "FastGelu": ("Identity", (0,), frozenset(), 0),
    "Gelu": ("Identity", (0,), frozenset(), 0),
}


def _infer_contrib(onnx: Any, node: Any, info: dict[str, TensorInfo], values: Mapping[str, Any],
                   opset: Mapping[str, int], model: Any) -> None:
    if node.op_type == "FusedMatMul":
        _infer_fused_matmul(node, info)
        return
    if node.op_type == "QLinearConcat":  # y_scale, y_zero_point, then (x, scale, zero point) per operand
        rule: tuple[str, tuple[int, ...], frozenset[str], int | None] = (
            "Concat", tuple(range(2, len(node.input), 3)), frozenset(), 2)
    elif node.op_type in _CONTRIB_SHAPES:
        rule = _CONTRIB_SHAPES[node.op_type]
    else:
        return
    op, positions, dropped, elem_from = rule
    inputs = [node.input[p] if p < len(node.input) else "" for p in positions]
    while inputs and not inputs[-1]:
        inputs.pop()
    proxy = onnx.helper.make_node(op, inputs, [node.output[0]])
    proxy.attribute.extend(a for a in node.attribute if a.name not in dropped)
    _infer_node(onnx, proxy, info, values, opset, model, as_float=True)
    known = info.get(node.output[0])
    if known is not None and known[1] is not None:
        source = info.get(node.input[elem_from]) if elem_from is not None else None
        info[node.output[0]] = (source[0] if source is not None else 1, known[1])


# ONNX Runtime's NCHWc operators (domain com.microsoft.nchwc) whose output shapes are their ai.onnx
# namesakes' on the same inputs and attributes: the graph declares the blocked tensors 4-d, [N, C_b, H, W]
# (C_b: the channels rounded up to the block), as ONNX Runtime's schemas infer them
# (onnxruntime/core/graph/contrib_ops/nchwc_schema_defs.cc).
_NCHWC_SHAPES: dict[str, tuple[str, tuple[int, ...], frozenset[str]]] = {
    "Conv": ("Conv", (0, 1, 2), frozenset({"activation", "activation_params"})),
    "MaxPool": ("MaxPool", (0,), frozenset()),
    "AveragePool": ("AveragePool", (0,), frozenset()),
    "GlobalAveragePool": ("GlobalAveragePool", (0,), frozenset()),
    "GlobalMaxPool": ("GlobalMaxPool", (0,), frozenset()),
}


def _infer_nchwc(onnx: Any, node: Any, info: dict[str, TensorInfo], values: Mapping[str, Any],
                 opset: Mapping[str, int], model: Any, consumers: Mapping[str, Sequence[Any]]) -> None:
    """Output shapes of the NCHWc operators, by the rules of ONNX Runtime's schemas: Conv and the pools as
    their ai.onnx namesakes; Upsample scales every dimension by its integer ``scales``; ReorderOutput gives
    ``channels`` channels (last with ``channels_last``); ReorderInput rounds the channels up to the block,
    read off the convolutions it feeds (see :func:`_nchwc_channels`)."""
    if node.op_type in _NCHWC_SHAPES:
        op, positions, dropped = _NCHWC_SHAPES[node.op_type]
        inputs = [node.input[p] if p < len(node.input) else "" for p in positions]
        while inputs and not inputs[-1]:
            inputs.pop()
        proxy = onnx.helper.make_node(op, inputs, [node.output[0]])
        proxy.attribute.extend(a for a in node.attribute if a.name not in dropped)
        _infer_node(onnx, proxy, info, values, opset, model)
        return
    elem, shape = info.get(node.input[0], (0, None)) if node.input else (0, None)
    if shape is None or len(shape) < 2 or not node.output:
        return
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    last = bool(attrs.get("channels_last", 0))
    out: tuple[int, ...] | None = None
    if node.op_type == "Upsample":
        scales = [int(s) for s in attrs.get("scales", [])]
        if len(scales) == len(shape):
            out = tuple(d * s for d, s in zip(shape, scales, strict=True))
    elif node.op_type == "ReorderOutput":
        channels = int(attrs.get("channels", 0))
        if channels > 0:
            out = (shape[0], *shape[2:], channels) if last else (shape[0], channels, *shape[2:])
    elif node.op_type == "ReorderInput":
        channels = shape[-1] if last else shape[1]
        spatial = shape[1:-1] if last else shape[2:]
        out = (shape[0], _nchwc_channels(node.output[0], channels, info, consumers), *spatial)
    if out is not None:
        info[node.output[0]] = (elem, out)


def _nchwc_channels(name: str, channels: int, info: Mapping[str, TensorInfo],
                    consumers: Mapping[str, Sequence[Any]]) -> int:
    """The channels of a ReorderInput's blocked output: ``channels`` rounded up to the block size, which the
    graph does not state; the NCHWc convolutions that read it do (``W.shape[1] x group`` input channels).
    ONNX Runtime reorders inputs for convolutions and pools only, and a pool's channels are a multiple of
    the block already: without a convolution to read, the channels stay as they are."""
    padded = channels
    for user in consumers.get(name, []):
        if user.domain != NCHWC_DOMAIN or user.op_type != "Conv" or len(user.input) < 2 or user.input[0] != name:
            continue
        weight = info.get(user.input[1])
        if weight is None or weight[1] is None or len(weight[1]) < 2:
            continue
        group = next((int(a.i) for a in user.attribute if a.name == "group"), 1)
        padded = max(padded, weight[1][1] * group)
    return padded


def _infer_fused_matmul(node: Any, info: dict[str, TensorInfo]) -> None:
    """FusedMatMul: MatMul of A (transA) and B (transB), batch dimensions broadcast."""
    a, b = info.get(node.input[0]), info.get(node.input[1])
    if a is None or b is None or a[1] is None or b[1] is None or len(a[1]) < 2 or len(b[1]) < 2:
        return
    attrs = {x.name: x.i for x in node.attribute}
    sa, sb = list(a[1]), list(b[1])
    if attrs.get("transA"):
        sa[-2], sa[-1] = sa[-1], sa[-2]
    if attrs.get("transB"):
        sb[-2], sb[-1] = sb[-1], sb[-2]
    batch_a, batch_b = sa[:-2], sb[:-2]
    rank = max(len(batch_a), len(batch_b))
    batch_a, batch_b = [1] * (rank - len(batch_a)) + batch_a, [1] * (rank - len(batch_b)) + batch_b
    batch = [max(x, y) for x, y in zip(batch_a, batch_b, strict=True)]
    info[node.output[0]] = (a[0], (*batch, sa[-2], sb[-1]))


def _infer_node(onnx: Any, node: Any, info: dict[str, TensorInfo], values: Mapping[str, Any],
                opset: Mapping[str, int], model: Any, *, as_float: bool = False) -> None:
    """The output shapes of one ai.onnx node from its inputs' (``as_float``: typed float32, for a contrib
    operator's int8 inputs that its ai.onnx counterpart's type constraints would refuse)."""
    from onnx import numpy_helper

    try:
        schema = onnx.defs.get_schema(node.op_type, opset.get("", 1), "")
    except Exception:  # noqa: BLE001 - no schema: nothing to infer with
        return
    types = {}
    for name in node.input:
        if not name:
            continue
        known = info.get(name)
        if known is None:
            return
        elem = onnx.TensorProto.FLOAT if as_float else known[0]
        types[name] = onnx.helper.make_tensor_type_proto(elem, list(known[1]) if known[1] is not None else None)
    data = {}
    for name in node.input:
        if name and name in values:
            with contextlib.suppress(Exception):
                data[name] = numpy_helper.from_array(values[name], name)
    try:
        outputs = onnx.shape_inference.infer_node_outputs(schema, node, types, data,
                                                          opset_imports=list(model.opset_import))
    except Exception:  # noqa: BLE001 - inference that fails on this node: its outputs stay unknown
        return
    for name, tp in outputs.items():
        if not tp.HasField("tensor_type") or not tp.tensor_type.HasField("shape"):
            continue
        dims = tp.tensor_type.shape.dim
        if all(d.HasField("dim_value") for d in dims):
            known = info.get(name)
            if known is None or known[1] is None:
                info[name] = (tp.tensor_type.elem_type, tuple(int(d.dim_value) for d in dims))


def _unknown(model: Any, info: Mapping[str, TensorInfo]) -> list[str]:
    """Tensors that counted nodes read or write whose shapes are unknown."""
    out = []
    for node in model.graph.node:
        if node.domain in ("", "ai.onnx") and node.op_type in VIEW_OPS:
            continue
        for name in [*node.input, *node.output]:
            if name and (name not in info or info[name][1] is None):
                out.append(name)
    return out


# ---- module paths ------------------------------------------------------------------------------------


def _atoms(text: str) -> list[str]:
    return [a for a in text.split(".") if a]


_ORT_TOKEN = re.compile(r"_token_\d+$")  # ONNX Runtime's suffix for a node name already taken
_NCHWC_SUFFIX = re.compile(r"(_bn)?_nchwc$")
_OUTPUT_SUFFIX = re.compile(r"_output_\d+$")


def original_node_name(name: str) -> str:
    """The name of the node an ONNX Runtime rewrite replaced, as the exporter wrote it.

    * ``_token_<n>``: ONNX Runtime's suffix for a name already taken, dropped;
    * ``<node>/<Fusion>/`` (``/features/features.0/features.0.2/Mul/QuickGeluFusion/``): a fusion names its
      node after the node it replaced: ``<node>``;
    * the NCHWc transformer names its nodes after the tensor they write, ``<tensor>_nchwc`` (a batch norm made
      a convolution ``<tensor>_bn_nchwc``), and the exporters name tensors ``<node>_output_<n>``:
      ``/layer1/layer1.0/conv2/Conv_output_0_nchwc`` -> ``/layer1/layer1.0/conv2/Conv``.

    Any other name is returned as it is."""
    name = _ORT_TOKEN.sub("", name)
    if name.endswith("/") and name.strip("/").count("/"):
        name = name.rstrip("/").rsplit("/", 1)[0]
    stripped = _NCHWC_SUFFIX.sub("", name)
    if stripped != name:
        name = _OUTPUT_SUFFIX.sub("", stripped)
    return name


def path_from_name(name: str) -> str:
    """The module path in a node name as exporters write it: ``/layer1/layer1.0/conv1/Conv`` ->
    ``layer1.0.conv1``; ``""`` for a name without one. Names ONNX Runtime's optimizer gives the nodes it
    writes are read as the names of the nodes they replaced (:func:`original_node_name`).

    torch's TorchScript exporter names each scope by the module's name with its numeric parents:
    ``layer1.0`` under ``layer1``, ``conv.0.0`` under ``...conv.0``. A scope extends its parent's path
    by what it does not repeat of it."""
    segments = [s for s in original_node_name(name).split("/") if s]
    path: list[str] = []
    for segment in segments[:-1]:
        atoms = _atoms(segment)
        overlap = 0
        for j in range(len(atoms) - 1, 0, -1):
            if len(path) >= j and path[-j:] == atoms[:j]:
                overlap = j
                break
        path += atoms[overlap:]
    return ".".join(path)


def _metadata(node: Any) -> dict[str, str]:
    return {p.key: p.value for p in node.metadata_props}


def _literal_list(text: str) -> list[str]:
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return []
    return [str(v) for v in value] if isinstance(value, (list, tuple)) else []


_CALL_SUFFIX = re.compile(r"@\d+$")


def scopes_from_metadata(meta: Mapping[str, str]) -> list[tuple[str, str]] | None:
    """``(module path, class name)`` from the root down, from the metadata of dynamo exports; None without."""
    if SCOPES_KEY not in meta:
        return None
    scopes = [_CALL_SUFFIX.sub("", s) for s in _literal_list(meta[SCOPES_KEY])]
    classes = _literal_list(meta.get(CLASSES_KEY, "[]"))
    if not scopes:
        return None
    out = []
    for i, scope in enumerate(scopes[:-1]):  # the last one names the operator, not a module
        cls = classes[i].rsplit(".", 1)[-1] if i < len(classes) else ""
        out.append((scope, cls))
    return out or [("", "")]


def _sanitise(name: str) -> str:
    return re.sub(r"[.\s]+", "_", name).strip("_")


# ---- the walk ----------------------------------------------------------------------------------------


@dataclass
class _Graph:
    """The indexes the walk needs: producers, consumers, constants and their kinds."""

    nodes: list[Any]
    info: dict[str, TensorInfo]
    producer: dict[str, int]
    consumers: dict[str, list[int]]
    constants: dict[str, Any]  # name -> TensorProto (initializers and Constant values)
    outputs: set[str]


def _index(model: Any, info: dict[str, TensorInfo]) -> _Graph:
    nodes = list(model.graph.node)
    producer: dict[str, int] = {}
    consumers: dict[str, list[int]] = {}
    for i, node in enumerate(nodes):
        for name in node.output:
            if name:
                producer[name] = i
        for name in node.input:
            if name:
                consumers.setdefault(name, []).append(i)
    constants: dict[str, Any] = {t.name: t for t in model.graph.initializer}
    for sparse in model.graph.sparse_initializer:
        constants[sparse.values.name] = sparse.values
    for node in nodes:
        if _is(node, "Constant") and node.output:
            for a in node.attribute:
                if a.name == "value":
                    constants[node.output[0]] = a.t
                elif a.name == "sparse_value":
                    constants[node.output[0]] = a.sparse_tensor.values
                elif a.name.startswith("value_"):
                    constants[node.output[0]] = a
    return _Graph(nodes, info, producer, consumers, constants, {o.name for o in model.graph.output})


def _is(node: Any, op_type: str) -> bool:
    return bool(node.op_type == op_type and node.domain in ("", "ai.onnx", MS_DOMAIN))


def _is_view(node: Any) -> bool:
    return node.domain in ("", "ai.onnx") and node.op_type in VIEW_OPS


def _floating(g: _Graph, name: str) -> bool:
    known = g.info.get(name)
    return known is not None and _DTYPES.get(known[0], ("", 0, 0, False))[3]


@dataclass(frozen=True)
class _Unit:
    """A QDQ node unit: its DequantizeLinear nodes by input position and QuantizeLinear nodes by output."""

    dq: dict[int, int]
    q: dict[int, int]


def find_qdq_units(g: _Graph) -> tuple[dict[int, _Unit], set[int]]:
    """The nodes ONNX Runtime runs as int8 units, and the DequantizeLinear/QuantizeLinear nodes they absorb."""
    units: dict[int, _Unit] = {}
    for i, node in enumerate(g.nodes):
        if _is(node, "DequantizeLinear") or _is(node, "QuantizeLinear"):
            continue
        entry = lookup(node.domain, node.op_type)
        if entry is None and not _is_view(node):
            continue
        data = (range(len(node.input)) if entry is None or entry.reads is None else entry.reads) if entry else [0]
        floats = [(p, node.input[p]) for p in data if p < len(node.input) and node.input[p]
                  and _floating(g, node.input[p])]
        if not floats:
            continue
        dq: dict[int, int] = {}
        for p, name in floats:
            j = g.producer.get(name)
            if j is None or not _is(g.nodes[j], "DequantizeLinear"):
                break
            dq[p] = j
        else:
            q: dict[int, int] = {}
            outs = [(p, n) for p, n in enumerate(node.output) if n and _floating(g, n)]
            for p, name in outs:
                users = g.consumers.get(name, [])
                if name in g.outputs or len(users) != 1 or not _is(g.nodes[users[0]], "QuantizeLinear"):
                    break
                q[p] = users[0]
            else:
                if outs:
                    units[i] = _Unit(dq, q)
    fused = set(units)
    absorbed: set[int] = {j for u in units.values() for j in u.q.values()}
    for u in units.values():
        for j in u.dq.values():
            out = g.nodes[j].output[0]
            if out not in g.outputs and all(c in fused for c in g.consumers.get(out, [])):
                absorbed.add(j)
    return units, absorbed


class _Walker:
    """Turns nodes into records; keeps the tensor kinds and the parameters each record reads."""

    def __init__(self, onnx: Any, g: _Graph, convention: Convention, widths: Widths, diagnostics: list[str]) -> None:
        self.onnx = onnx
        self.g = g
        self.convention = convention
        self.widths = widths
        self.diagnostics = diagnostics
        self.kinds: dict[str, TensorKind | None] = {}  # constants and what they make; None: an argument
        self.unknown: list[str] = []  # nodes whose shapes stayed unknown
        self.failed: list[str] = []

    # -- tensors
    def meta(self, name: str) -> TensorMeta | None:
        known = self.g.info.get(name)
        if known is None:
            return None
        elem, shape = known
        if shape is None:
            return None
        dtype, itemsize, sub_bits, floating = _DTYPES.get(elem, (f"onnx_type_{elem}", 0, 0, False))
        kind = self.kinds.get(name) or TensorKind.ACTIVATION
        bits = self.widths.bits_for(kind) if floating else None
        if bits is None:
            bits = sub_bits
        return TensorMeta(shape=shape, dtype=dtype, itemsize=itemsize, kind=kind,
                          bits=bits if bits and bits != 8 * itemsize else 0)

    def call(
        self, node: Any, entry: OnnxEntry | None, inputs: Sequence[str], outputs: Sequence[str],
        reads: Sequence[str] | None = None,
    ) -> tuple[OnnxCall | None, list[str]]:
        """The node's call; None (and the tensors it could not see) when some shape is unknown."""
        missing = [n for n in [*inputs, *outputs] if n and self.meta(n) is None]
        if missing:
            return None, missing
        if reads is None:
            positions = entry.reads if entry is not None and entry.reads is not None else range(len(inputs))
            reads = [inputs[p] for p in positions if p < len(inputs) and inputs[p]]
        metas = {n: self.meta(n) for n in dict.fromkeys(reads)}
        call = OnnxCall(
            op_type=node.op_type,
            domain=node.domain,
            inputs=tuple(self.meta(n) if n else None for n in inputs),
            outputs=tuple(self.meta(n) if n else None for n in outputs),
            attrs=self.attributes(node),
            reads=tuple(m for m in metas.values() if m is not None),
            convention=self.convention,
        )
        return call, []

    def attributes(self, node: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for a in node.attribute:
            try:
                value = self.onnx.helper.get_attribute_value(a)
            except Exception:  # noqa: BLE001, S112 - an attribute this onnx cannot decode: no formula needs it
                continue
            if isinstance(value, bytes):  # strings: "tanh", b"tanh" in the proto
                value = value.decode("utf-8", "replace")
            elif isinstance(value, list) and value and isinstance(value[0], bytes):
                value = [v.decode("utf-8", "replace") for v in value]
            out[a.name] = value
        return out

    # -- kinds of constants and of what is computed from them alone
    def classify(self, units: Mapping[int, _Unit], absorbed: set[int]) -> None:
        g = self.g
        data_uses: dict[str, list[tuple[Any, int]]] = {}  # constant -> (consumer node, input position)
        for i, node in enumerate(g.nodes):
            if i in absorbed or _is_view(node):
                continue
            entry = lookup(node.domain, node.op_type)
            positions = set(entry.reads) if entry is not None and entry.reads is not None else None
            for p, name in enumerate(self.unit_inputs(node, units.get(i))):
                if not name:
                    continue
                if positions is None or p in positions or (i in units and p >= len(node.input)):
                    for origin in self.origins(name, absorbed):
                        data_uses.setdefault(origin, []).append((node, p))
        used = {n for node in g.nodes for n in node.input if n}
        for name, tensor in g.constants.items():
            uses = data_uses.get(name, [])
            self.kinds[name] = self._kind(name, tensor, uses, name in used)
        for node in g.nodes:  # views of constants and nodes computed from constants only
            data = [n for n in node.input if n]
            if not data or not node.output:
                continue
            kinds = [self.kinds.get(n) for n in data]
            if all(k is not None for k in kinds) or (_is_view(node) and kinds[0] is not None):
                kind = next(k for k in kinds if k is not None)
                for out in node.output:
                    if out and out not in self.kinds:
                        self.kinds[out] = kind

    def unit_inputs(self, node: Any, unit: _Unit | None) -> list[str]:
        """The tensors a node reads: a QDQ unit's are its DequantizeLinear nodes' inputs (appended)."""
        names = list(node.input)
        if unit is not None:
            for j in unit.dq.values():
                names += [n for n in self.g.nodes[j].input]
            for j in unit.q.values():
                names += [n for n in self.g.nodes[j].input[1:]]
        return names

    def origins(self, name: str, absorbed: set[int]) -> list[str]:
        """The constants a tensor is, through views (and absorbed DequantizeLinear nodes)."""
        g = self.g
        if name in g.constants:
            return [name]
        j = g.producer.get(name)
        if j is None:
            return []
        node = g.nodes[j]
        if _is_view(node) and node.input and node.input[0]:
            return self.origins(node.input[0], absorbed)
        if j in absorbed and _is(node, "DequantizeLinear"):
            return [o for n in node.input if n for o in self.origins(n, absorbed)]
        return []

    def _kind(self, name: str, tensor: Any, uses: list[tuple[Any, int]], used: bool) -> TensorKind | None:
        """PARAMETER, BUFFER, or None for an argument (a shape, axes, a scalar outside quantization)."""
        elem, shape = self.g.info.get(name, (0, ()))
        dtype = _DTYPES.get(elem, ("", 0, 0, False))[0]
        numel = _numel(shape or ())
        if not uses:
            # read as an argument only (shapes, axes, Resize scales), or not at all: a dangling initializer
            # is a parameter the file stores (as an unused head's weights are in torch)
            return None if used or dtype in _INDEX_DTYPES else TensorKind.PARAMETER
        if dtype in _INDEX_DTYPES:
            return TensorKind.BUFFER
        quant = any(n.op_type in _QUANT_OPS for n, _ in uses)
        if numel <= 1 and not quant:
            return None  # a scalar constant: an argument, as a Python number is in torch
        if all(_is(n, "BatchNormalization") and p in (3, 4) for n, p in uses):
            return TensorKind.BUFFER
        return TensorKind.PARAMETER


def _numel(shape: Sequence[int]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


@dataclass
class _Built:
    records: list[OpRecord]
    reads: list[set[str]]  # per record: the constants it reads (through views)
    nodes: list[int]  # per record: the node index
    quantized: bool = False


def _records(
    walker: _Walker, units: Mapping[int, _Unit], absorbed: set[int], modules: Sequence[str]
) -> _Built:
    g = walker.g
    built = _Built([], [], [])
    for i, node in enumerate(g.nodes):
        if i in absorbed or _is_view(node):
            continue
        entry = lookup(node.domain, node.op_type)
        name = op_name(node.domain, node.op_type)
        unit = units.get(i)
        if unit is not None and entry is not None:
            record = _unit_record(walker, node, entry, unit, modules[i])
            if record is None:
                continue  # a view between a DequantizeLinear and a QuantizeLinear: nothing runs
            reads = [n for n in walker.unit_inputs(node, unit) if n]
        else:
            reads = [n for n in node.input if n]
            record = _node_record(walker, node, entry, name, modules[i])
        if record.cost.macs and record.inputs and record.inputs[0].dtype in _INT8:
            built.quantized = True
        built.records.append(record)
        built.reads.append({o for n in reads for o in walker.origins(n, absorbed)})
        built.nodes.append(i)
    return built


def _node_record(walker: _Walker, node: Any, entry: OnnxEntry | None, name: str, module: str) -> OpRecord:
    call, missing = walker.call(node, entry, list(node.input), list(node.output))
    if call is None:
        walker.unknown.append(f"{node.name or node.op_type} ({node.op_type}: {', '.join(missing[:3])})")
        return _unsupported(walker, node, name, module)
    if entry is None:
        return _unsupported(walker, node, name, module)
    try:
        compute = entry.formula(call)
        read, written = entry.bytes(call)
    except Exception as e:  # noqa: BLE001 - a formula that fails on a node must not cost the whole analysis
        walker.failed.append(f"{node.name or node.op_type} ({name}): {type(e).__name__}: {_one_line(e)}")
        return _unsupported(walker, node, name, module)
    return OpRecord(name, module, call.reads, call.written, Cost(compute.macs, compute.flops, read, written),
                    family=entry.family, node=node.name)


def _unsupported(walker: _Walker, node: Any, name: str, module: str) -> OpRecord:
    """Bytes only: every input it has a shape for read once, every output written."""
    ins = tuple(m for n in dict.fromkeys(x for x in node.input if x) if (m := walker.meta(n)) is not None)
    outs = tuple(m for n in node.output if n and (m := walker.meta(n)) is not None)
    cost = Cost(0, 0, sum(t.nbytes for t in ins), sum(t.nbytes for t in outs))
    return OpRecord(name, module, ins, outs, cost, supported=False, node=node.name)


def _unit_record(walker: _Walker, node: Any, entry: OnnxEntry, unit: _Unit, module: str) -> OpRecord | None:
    """A QDQ node unit as one int8 record: the DequantizeLinear inputs read, the QuantizeLinear outputs written."""
    g = walker.g
    if _is_view(node):
        return None
    inputs = list(node.input)
    for p, j in unit.dq.items():
        inputs[p] = g.nodes[j].input[0]
    outputs = list(node.output)
    for p, j in unit.q.items():
        outputs[p] = g.nodes[j].output[0]
    positions = entry.reads if entry.reads is not None else range(len(inputs))
    data = [inputs[p] for p in positions if p < len(inputs) and inputs[p]]
    scales = [n for j in unit.dq.values() for n in g.nodes[j].input[1:] if n]
    scales += [n for j in unit.q.values() for n in g.nodes[j].input[1:] if n]
    name = op_name(node.domain, node.op_type)
    call, missing = walker.call(node, entry, inputs, outputs, reads=data + scales)
    if call is None:
        walker.unknown.append(f"{node.name or node.op_type} ({node.op_type}: {', '.join(missing[:3])})")
        return _unsupported(walker, node, name, module)
    dequantized = [m for p in unit.dq if (m := call.input(p)) is not None and p in set(positions)]
    try:
        compute = qdq_unit_cost(entry, call, dequantized)
        read, written = entry.bytes(call)
    except Exception as e:  # noqa: BLE001 - as for any node
        walker.failed.append(f"{node.name or node.op_type} ({name}, QDQ): {type(e).__name__}: {_one_line(e)}")
        return _unsupported(walker, node, name, module)
    cost = Cost(compute.macs, compute.flops, read, written)
    return OpRecord(name, module, call.reads, call.written, cost, via="QDQ", family=entry.family, node=node.name)


# ---- modules -----------------------------------------------------------------------------------------


@dataclass
class _Tree:
    paths: list[str]  # per node: its module
    classes: dict[str, str]  # module -> class name (dynamo exports)
    flat: bool


def module_paths(g: _Graph) -> _Tree:
    """Each node's module path: dynamo metadata first, then the node's name; flat when neither has one."""
    paths: list[str] = []
    classes: dict[str, str] = {}
    hierarchy = False
    for node in g.nodes:
        meta = _metadata(node)
        scopes = scopes_from_metadata(meta)
        if scopes is not None:
            hierarchy = True
            for path, cls in scopes:
                if cls:
                    classes.setdefault(path, cls)
            path = scopes[-1][0]
            path = _fused_weight_path(g, node, meta, path)
        else:
            path = path_from_name(_reordered_tensor(node) or node.name)
            hierarchy = hierarchy or bool(path)
        paths.append(path)
    if not hierarchy:
        seen: dict[str, int] = {}
        for i, node in enumerate(g.nodes):
            base = _sanitise(node.name) or f"{node.op_type}_{i}"
            seen[base] = seen.get(base, 0) + 1
            paths[i] = base if seen[base] == 1 else f"{base}_{seen[base]}"
    return _Tree(paths, classes, not hierarchy)


def _reordered_tensor(node: Any) -> str:
    """An NCHWc ReorderInput's input or ReorderOutput's output: the tensor, named by the node that wrote it
    in the original graph, whose layout it changes (the node itself is named ``ReorderOutput_token_<n>``)."""
    if node.domain != NCHWC_DOMAIN:
        return ""
    if node.op_type == "ReorderOutput" and node.output:
        return str(node.output[0])
    if node.op_type == "ReorderInput" and node.input:
        return str(node.input[0])
    return ""


def _fused_weight_path(g: _Graph, node: Any, meta: Mapping[str, str], path: str) -> str:
    """A node the exporter's optimizer fused (Conv + BatchNormalization) carries the metadata of the last
    node it replaced (the batch norm); its weight, named by the module that owns it (``conv1.weight``),
    says where the product belongs."""
    if "Fuse" not in meta.get(REWRITE_KEY, "") or len(node.input) < 2:
        return path
    weight = node.input[1]
    if weight not in g.constants or not weight.endswith(".weight"):
        return path
    owner = weight.removesuffix(".weight")
    parent = owner.rsplit(".", 1)[0] if "." in owner else ""
    return owner if path == parent or path.startswith(parent + ".") or not parent else path


def _lineage(path: str) -> Iterator[str]:
    while path:
        yield path
        path = path.rsplit(".", 1)[0] if "." in path else ""
    yield ""


def build_modules(
    g: _Graph, tree: _Tree, built: _Built, walker: _Walker, root_type: str, count_nonzero: bool, base: Path,
) -> tuple[dict[str, ModuleNode], ParamStats]:
    """The module tree: own and cumulative cost, parameters (each once, at the lowest module all its readers
    share), output shapes (tensors a module's nodes produce that a node outside it or the graph reads)."""
    nodes: dict[str, ModuleNode] = {"": ModuleNode(path="", type_name=root_type, calls=1)}

    def add(path: str) -> None:
        if path in nodes:
            return
        parent = path.rsplit(".", 1)[0] if "." in path else ""
        add(parent)
        nodes[path] = ModuleNode(path=path, type_name="", calls=1)
        nodes[parent].children.append(path)

    own: dict[str, Cost] = {}
    op_types: dict[str, list[str]] = {}
    for record, i in zip(built.records, built.nodes, strict=True):
        add(record.module)
        own[record.module] = own.get(record.module, ZERO) + record.cost
        op_types.setdefault(record.module, [])
        if g.nodes[i].op_type not in op_types[record.module]:
            op_types[record.module].append(g.nodes[i].op_type)
    # parameters: owned by the lowest common module of the records that read them
    owners: dict[str, str] = {}
    for record, reads in zip(built.records, built.reads, strict=True):
        for name in reads:
            owners[name] = record.module if name not in owners else _common(owners[name], record.module)
    tensors: dict[str, list[str]] = {}
    for name in g.constants:
        if walker.kinds.get(name) is not None:
            tensors.setdefault(owners.get(name, ""), []).append(name)
    for path, node in nodes.items():
        node.type_name = tree.classes.get(path) or node.type_name or _structural_type(path, node, op_types)
    nodes[""].type_name = tree.classes.get("", root_type)
    _output_shapes(g, tree, built, nodes)
    stats: dict[str, ParamStats] = {}
    for path in reversed(list(nodes)):
        node = nodes[path]
        mine = tensors.get(path, [])
        own_stats = _stats(g, walker, mine)
        node.own_params = own_stats.total
        total = own_stats
        for child in node.children:
            total = _add_stats(total, stats.pop(child))
        stats[path] = total
        node.params = total
        node.own = own.get(path, ZERO)
        node.cumulative = node.own + sum((nodes[c].cumulative for c in node.children), ZERO)
    root = stats[""]
    if count_nonzero:
        every = [n for names in tensors.values() for n in names]
        root = ParamStats(root.total, root.trainable, _nonzero(g, walker, every, base), root.bytes, root.buffers,
                          root.buffer_bytes)
        nodes[""].params = root
    return nodes, root


def _structural_type(path: str, node: ModuleNode, op_types: Mapping[str, list[str]]) -> str:
    """A module without a class name (TorchScript exports): its operators for a leaf (``Conv``,
    ``MatMul+Add``); ``Sequential`` for a container of numbered children; else ``Module``."""
    if not node.children:
        return "+".join(op_types.get(path, [])) or "Module"
    if all(c.rsplit(".", 1)[-1].isdigit() for c in node.children):
        return "Sequential"
    return "Module"


def _common(a: str, b: str) -> str:
    if a == b:
        return a
    ancestors = set(_lineage(a))
    return next(p for p in _lineage(b) if p in ancestors)


def _output_shapes(g: _Graph, tree: _Tree, built: _Built, nodes: dict[str, ModuleNode]) -> None:
    module_of = dict(zip(built.nodes, (r.module for r in built.records), strict=True))
    found: dict[str, list[tuple[int, ...]]] = {p: [] for p in nodes}
    for i, node in enumerate(g.nodes):
        producer = module_of.get(i, tree.paths[i] if i < len(tree.paths) else "")
        if i not in module_of:
            continue
        for out in node.output:
            info = g.info.get(out)
            if not out or info is None or info[1] is None:
                continue
            users = {module_of.get(c, tree.paths[c]) for c in g.consumers.get(out, [])}
            for path in _lineage(producer):
                if path not in found:
                    continue
                inside = path == "" or all(u == path or u.startswith(path + ".") for u in users)
                if out in g.outputs or not inside:
                    found[path].append(info[1])
    for path, shapes in found.items():
        nodes[path].output_shapes = tuple(shapes)


def _stats(g: _Graph, walker: _Walker, names: Iterable[str]) -> ParamStats:
    total = nbytes = buffers = buffer_bytes = 0
    for name in names:
        elem, shape = g.info.get(name, (0, ()))
        numel = _numel(shape or ())
        _, itemsize, sub_bits, _ = _DTYPES.get(elem, ("", 0, 0, False))
        size = (numel * sub_bits + 7) // 8 if sub_bits else numel * itemsize
        if walker.kinds.get(name) is TensorKind.BUFFER:
            buffers, buffer_bytes = buffers + numel, buffer_bytes + size
        else:
            total, nbytes = total + numel, nbytes + size
    return ParamStats(total=total, trainable=total, nonzero=None, bytes=nbytes, buffers=buffers,
                      buffer_bytes=buffer_bytes)


def _add_stats(a: ParamStats, b: ParamStats) -> ParamStats:
    return ParamStats(a.total + b.total, a.trainable + b.trainable, None, a.bytes + b.bytes, a.buffers + b.buffers,
                      a.buffer_bytes + b.buffer_bytes)


def _nonzero(g: _Graph, walker: _Walker, names: Iterable[str], base: Path) -> int | None:
    """Non-zero elements of the parameters (not the buffers), read from the file; None when one cannot be."""
    try:
        import numpy as np
        from onnx import numpy_helper
    except ImportError:  # pragma: no cover - onnx depends on numpy
        return None
    count = 0
    for name in names:
        if walker.kinds.get(name) is not TensorKind.PARAMETER:
            continue
        tensor = g.constants[name]
        try:
            if not hasattr(tensor, "dims"):  # a Constant's value_float(s)/value_int(s) attribute
                values = np.asarray(walker.onnx.helper.get_attribute_value(tensor))
            else:
                values = numpy_helper.to_array(tensor, base_dir=str(base))
            count += int(np.count_nonzero(values))
        except Exception:  # noqa: BLE001 - a dtype numpy cannot hold: the count is unknown
            return None
    return count


# ---- entry point -------------------------------------------------------------------------------------


def capture_onnx(
    source: str | os.PathLike[str] | Any,
    *,
    input_sizes: Sequence[Shape] | None = None,
    named_inputs: Mapping[str, Shape] | None = None,
    convention: Convention = Convention.FMA,
    widths: Widths | None = None,
) -> OnnxCapture:
    """Count an ONNX model: load it, bind its inputs, infer its shapes, and record every node."""
    onnx = import_onnx()
    model, base = load(source)
    where = str(source) if isinstance(source, (str, os.PathLike)) else f"the model {model.graph.name!r}"
    diagnostics: list[str] = []
    bound = bind_inputs(model, input_sizes, named_inputs, where)
    try:
        bound_model = _with_bound_inputs(onnx, model, bound)
    except Exception as e:  # noqa: BLE001 - the inliner on a malformed function
        raise ModelError(f"{where}: its local functions could not be inlined: {_one_line(e)}") from None
    inferred, info = infer_shapes(onnx, bound_model, diagnostics)
    g = _index(inferred, info)
    walker = _Walker(onnx, g, convention, widths or Widths(), diagnostics)
    units, absorbed = find_qdq_units(g)
    walker.classify(units, absorbed)
    tree = module_paths(g)
    built = _records(walker, units, absorbed, tree.paths)
    root_type = "Graph"
    modules, params = build_modules(g, tree, built, walker, root_type, count_nonzero=True, base=base)
    inputs = tuple(m for name in bound if (m := walker.meta(name)) is not None)
    _notes(diagnostics, model, walker, units, tree)
    float_dtype = next((m.dtype for name in g.constants if walker.kinds.get(name) is TensorKind.PARAMETER
                        if (m := walker.meta(name)) is not None and _is_float(m.dtype)), None)
    return OnnxCapture(built.records, modules, params, inputs, diagnostics, float_dtype, built.quantized,
                       model.graph.name)


def _is_float(dtype: str) -> bool:
    return dtype.startswith(("float", "bfloat"))


def _notes(diagnostics: list[str], model: Any, walker: _Walker, units: Mapping[int, _Unit], tree: _Tree) -> None:
    opsets = ", ".join(f"{o.domain or 'ai.onnx'} {o.version}" for o in model.opset_import)
    producer = f"{model.producer_name} {model.producer_version}".strip()
    diagnostics.insert(0, f"ONNX model: IR {model.ir_version}, opsets {opsets}"
                          + (f", produced by {producer}" if producer else ""))
    if tree.flat:
        diagnostics.append("the node names carry no module hierarchy: one module per node, under the root")
    nchwc = sum(n.domain == NCHWC_DOMAIN for n in model.graph.node)
    if nchwc:
        diagnostics.append(f"{nchwc} node(s) of ONNX Runtime's NCHWc layout ({NCHWC_DOMAIN}: ONNX Runtime's 'layout' or "
                           "'all' optimisation on a CPU), counted on the blocked tensors as they run: channels padded "
                           "to the block (8 or 16) are counted, in MACs, FLOPs and bytes; a convolution fused "
                           "with its activation is named, and placed, after the activation's output")
    if units:
        diagnostics.append(f"{len(units)} QDQ node unit(s) (DequantizeLinear -> op -> QuantizeLinear) counted as "
                           "the int8 operators ONNX Runtime fuses them into (records with via 'QDQ')")
    if walker.unknown:
        diagnostics.append(f"shape inference left the shapes of {len(walker.unknown)} node(s) unknown, counted as "
                           f"unsupported with the bytes of the tensors it knows: {first_names(walker.unknown, MAX_LISTED, '; ')}")
    if walker.failed:
        diagnostics.append(f"the formulas of {len(walker.failed)} node(s) failed, counted as unsupported: "
                           f"{first_names(walker.failed, MAX_LISTED, '; ')}")
    unknown_domains = sorted({n.domain for n in model.graph.node if n.domain not in KNOWN_DOMAINS})
    if unknown_domains:
        diagnostics.append(f"operators of domains rooflens has no formulas for: {', '.join(unknown_domains)}")
