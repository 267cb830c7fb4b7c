"""Matrix products: mm, addmm, bmm, baddbmm, addbmm, mv, addmv, dot, vdot, addr, the fused, integer,
scaled (fp8), grouped and weight-only-quantised variants, and linear where it reaches dispatch. On
complex tensors a complex multiply-accumulate (4 real multiplies, 4 real adds) counts as 4 real MACs,
8 FLOPs under fma.

Derivation. Every output element of a matrix product is a ``K``-term dot product, so

* ``mm``  ``(M, K) @ (K, N)``:            ``MACs = M x N x K``, outputs ``M x N``;
* ``bmm`` ``(B, M, K) @ (B, K, N)``:      ``MACs = B x M x N x K``, outputs ``B x M x N``;
* ``addbmm`` sums the ``B`` products into one ``(M, N)`` output, so each output is a ``B x K``-term dot
  product: ``MACs = B x M x N x K``, outputs ``M x N``;
* ``mv`` ``(M, K) @ (K,)``: ``MACs = M x K``; ``dot``/``vdot``: ``MACs = K``, one output;
* ``addr`` (outer product added to ``self``): each output is a 1-term product, ``MACs = M x N``.

FLOPs come from :func:`dot_flops`: ``fma`` = 2 x MACs (+ 1 per output for the bias); ``exact`` = 2 x MACs
- outputs (an n-term dot product has n - 1 adds), the bias add filling the missing add.

The ``add`` operators (``addmm``, ``baddbmm``, ``addbmm``, ``addmv``, ``addr`` and their in-place
``addmm_`` ... forms, registered with them) add their ``self``
(``input``) tensor: 1 FLOP per output element, counted as the bias add. Their ``alpha``/``beta``
scalings are ignored (they are 1 in every ``nn.Linear`` and almost everywhere else; with ``beta = 0`` the
add is still counted).

Composite operators never reach dispatch as themselves: ``nn.Linear``/``F.linear`` become ``addmm``
(or ``mm`` + ``add`` without bias, folding leading dimensions into ``M``), ``torch.matmul`` folds or
broadcasts into ``mm``/``bmm``, ``einsum``/``tensordot``/``inner`` into ``bmm``/``mm``, ``outer``/``ger``
into an elementwise ``mul`` (counted by the pointwise family, no MACs), ``nn.Bilinear`` into
``_trilinear``. ``linear`` and ``mkldnn_linear`` are registered all the same for the rare paths
(MKLDNN tensors, other front-ends) that see them.

Complex dtypes (complex64/128, the output's dtype decides): a complex multiply-accumulate is 4 real
multiplies and 4 real adds, so it counts as 4 real MACs, 8 FLOPs under ``fma`` (``exact``: an n-term
complex dot product is 4n multiplies + 4n - 2 adds); a complex bias add is 2 real adds (see
:func:`~rooflens.formulas.registry.dot_cost`). This holds for mm, bmm, addmm, baddbmm, addbmm, mv, dot,
vdot, addmv, addr, linear and _trilinear; the fp8, integer and quantised kernels have no complex form.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Sequence
from math import prod

from rooflens.formulas.registry import OpCall, default_bytes, dot_cost, dot_flops, formula, is_complex
from rooflens.types import Convention, Cost, TensorKind, TensorMeta

# Extra FLOPs per element of the activations fused into ``_addmm_activation`` (same counts as the
# pointwise family): ReLU is one compare/select; exact (erf) GELU is 5 (x/sqrt2, erf, +1, x*, *0.5).
RELU_FLOPS = 1
GELU_EXACT_FLOPS = 5


def matmul_cost(
    batch: int, m: int, n: int, k: int, *, has_bias: bool, convention: Convention = Convention.FMA,
    complex_dtype: bool = False,
) -> Cost:
    """Compute cost of ``batch`` products ``(m, k) @ (k, n)`` with an optional bias on every output.

    Shared with other front-ends (ONNX ``MatMul``/``Gemm``): MACs = batch x m x n x k (x 4 for complex).
    """
    outputs = batch * m * n
    return dot_cost(outputs * k, outputs, outputs if has_bias else 0, convention, complex_dtype=complex_dtype)


def linear_cost(
    in_shape: Sequence[int], weight_shape: Sequence[int], *, has_bias: bool, convention: Convention = Convention.FMA,
    complex_dtype: bool = False,
) -> Cost:
    """``y = x @ W.T (+ b)`` with ``W`` of shape ``(N, K)``: MACs = prod(x.shape[:-1]) x N x K."""
    rows = prod(in_shape[:-1])
    n = weight_shape[0] if len(weight_shape) == 2 else 1
    return matmul_cost(1, rows, n, in_shape[-1], has_bias=has_bias, convention=convention,
                       complex_dtype=complex_dtype)


def _contraction(call: OpCall, mat1: TensorMeta) -> tuple[int, int]:
    """(outputs, K) of a product whose output is ``call.out`` and whose left operand is ``mat1``."""
    return call.out.numel, mat1.shape[-1] if mat1.shape else 1


@formula("aten.mm", "aten.bmm", "aten._int_mm")
def mm(call: OpCall) -> Cost:
    """MACs = (B x) M x N x K; FLOPs = 2 x MACs (fma) or (2K - 1) x outputs (exact)

    ``mm`` (M, K) @ (K, N); ``bmm`` (B, M, K) @ (B, K, N); ``_int_mm`` is ``mm`` on int8 with int32
    accumulation (its integer operations are counted as FLOPs, as they are "OPs" on the datasheets).
    MACs = out.numel x K with K the last dimension of ``self``.
    """
    outputs, k = _contraction(call, call.first_tensor("self"))
    return dot_cost(outputs * k, outputs, 0, call.convention, complex_dtype=is_complex(call.out))


@formula("aten.addmm", "aten.addmm_", "aten.baddbmm", "aten.baddbmm_")
def addmm(call: OpCall) -> Cost:
    """MACs = (B x) M x N x K; FLOPs = 2 x MACs + 1 per output for the input add (fma); 2K x outputs (exact)

    ``addmm(self, mat1 (M, K), mat2 (K, N))``, ``baddbmm(self, batch1 (B, M, K), batch2 (B, K, N))``.
    ``self`` (the bias of ``nn.Linear``) is added once per output; alpha/beta scaling ignored.
    """
    outputs, k = _contraction(call, call.first_tensor("mat1", "batch1"))
    return dot_cost(outputs * k, outputs, outputs, call.convention, complex_dtype=is_complex(call.out))


@formula("aten._addmm_activation")
def addmm_activation(call: OpCall) -> Cost:
    """MACs = M x N x K; FLOPs = addmm's + the fused activation per output (ReLU 1, GELU 5)

    MACs = M x N x K; FLOPs = addmm's (2 x MACs + 1 per output for the input add) + the activation per
    output: ReLU 1, GELU 5 (the CPU kernel applies exact, erf-based GELU; cuBLASLt's GELU epilogue is
    the tanh approximation, counted here as the exact one too, since the formula cannot see the device).
    """
    base = addmm(call)
    per = GELU_EXACT_FLOPS if call.args.get("use_gelu") else RELU_FLOPS
    return Cost(macs=base.macs, flops=base.flops + per * call.out.numel)


@formula("aten.addbmm", "aten.addbmm_")
def addbmm(call: OpCall) -> Cost:
    """MACs = B x M x N x K (the B products summed into one (M, N)); FLOPs = 2 x MACs + 1 per output

    Each of the M x N outputs is a (B x K)-term dot product plus the input add (alpha/beta ignored).
    """
    bsz, _, k = call.first_tensor("batch1").shape
    outputs = call.out.numel  # M x N
    return dot_cost(bsz * outputs * k, outputs, outputs, call.convention, complex_dtype=is_complex(call.out))


@formula("aten.mv", "aten.dot", "aten.vdot")
def mv(call: OpCall) -> Cost:
    """MACs = M x K (mv) or K (dot, vdot); FLOPs = 2 x MACs (fma) or (2K - 1) x outputs (exact)"""
    outputs, k = _contraction(call, call.first_tensor("self"))
    return dot_cost(outputs * k, outputs, 0, call.convention, complex_dtype=is_complex(call.out))


@formula("aten.addmv", "aten.addmv_")
def addmv(call: OpCall) -> Cost:
    """MACs = M x K; FLOPs = 2 x MACs + 1 per output for the input add (alpha/beta ignored)"""
    outputs, k = _contraction(call, call.first_tensor("mat"))
    return dot_cost(outputs * k, outputs, outputs, call.convention, complex_dtype=is_complex(call.out))


@formula("aten.addr", "aten.addr_")
def addr(call: OpCall) -> Cost:
    """MACs = M x N (outer product, 1-term dot products); FLOPs = 2 x MACs + 1 per output for the input add

    ``addr(self (M, N), vec1 (M,), vec2 (N,))``: one multiply per output plus the add of ``self``
    (alpha/beta ignored): fma 3 x M x N, exact 2 x M x N.
    """
    outputs = call.out.numel
    return dot_cost(outputs, outputs, outputs, call.convention, complex_dtype=is_complex(call.out))


@formula("aten.linear", "aten.mkldnn_linear")
def linear(call: OpCall) -> Cost:
    """MACs = prod(x.shape[:-1]) x N x K for W (N, K); FLOPs = 2 x MACs (+1 per output for the bias)"""
    x, w = call.first_tensor("input", "self"), call.first_tensor("weight")
    return linear_cost(x.shape, w.shape, has_bias=call.args.get("bias") is not None, convention=call.convention,
                       complex_dtype=is_complex(call.out))


@formula("aten._scaled_mm", "aten._scaled_mm_v2")
def scaled_mm(call: OpCall) -> Cost:
    """MACs = M x N x K (fp8); FLOPs = 2 x MACs + 1 per output for the scaling (+1 for a bias)

    ``_scaled_mm(self (M, K), mat2 (K, N), scale_a, scale_b, bias?)``: the dequantising scale
    ``scale_a x scale_b`` is applied once per output (1 FLOP, the two scales' product taken as one
    factor); a bias adds 1 per output.
    """
    outputs, k = _contraction(call, call.first_tensor("self"))
    macs = outputs * k
    bias = outputs if call.args.get("bias") is not None else 0
    return Cost(macs=macs, flops=dot_flops(macs, outputs, bias, call.convention) + outputs)


def _grouped_macs(call: OpCall) -> tuple[int, int]:
    """(MACs, outputs) of a grouped product; the groups are slices along ``offs`` or a leading dimension.

    2-d x 3-d (MoE tokens x per-expert weights), 3-d x 2-d and 3-d x 3-d: each output is a K-term dot
    product with K = ``self.shape[-1]``. 2-d x 2-d: the groups split K, so every (M, N) output block of
    each group is computed over its K slice: MACs = M x N x K_total. Without ``offs`` values (a shape
    only), rows of a 2-d operand are taken as all belonging to some group (an upper bound).
    """
    a, b = call.first_tensor("self"), call.first_tensor("mat2")
    outputs = call.out.numel
    if len(a.shape) == 2 and len(b.shape) == 2:
        return a.shape[0] * a.shape[1] * b.shape[1], outputs
    return outputs * a.shape[-1], outputs


# Mixture-of-experts routing: the experts a grouped product's routed rows are taken to reach. Which experts
# the router picks depends on values; what is known is the top-k (set by whoever knows the model, e.g.
# rooflens.llm from the config). None: every expert's weights are read (an upper bound).
_TOP_K: contextvars.ContextVar[int | None] = contextvars.ContextVar("rooflens_moe_top_k", default=None)


@contextlib.contextmanager
def expert_routing(*, top_k: int) -> Iterator[None]:
    """Within this block, a grouped product over E experts whose 2-d input holds ``T x top_k`` routed rows
    reads the weights of the experts those tokens are expected to reach when each picks ``top_k`` distinct
    experts uniformly: ``E x (1 - (1 - top_k / E) ** T)`` (``top_k`` at one token, all E for many)."""
    token = _TOP_K.set(top_k)
    try:
        yield
    finally:
        _TOP_K.reset(token)


def expected_experts(experts: int, tokens: float, top_k: int) -> float:
    """Distinct experts that ``tokens`` tokens reach when each picks ``top_k`` of ``experts`` uniformly."""
    return float(experts * (1 - (1 - min(top_k, experts) / experts) ** tokens))


def _grouped_bytes(call: OpCall) -> tuple[int, int]:
    """Every input once; of a per-expert weight, the experts the routed rows reach (all without a top-k)

    The top-k comes from :func:`expert_routing`; without it every expert's weights are read."""
    read, written = default_bytes(call)
    top_k = _TOP_K.get()
    a, b = call.first_tensor("self"), call.first_tensor("mat2")
    if top_k is None or len(a.shape) != 2 or len(b.shape) != 3 or b.kind is TensorKind.ACTIVATION:
        return read, written
    experts = b.shape[0]
    reached = expected_experts(experts, a.shape[0] / top_k, top_k)
    return read - round(b.nbytes * (1 - reached / experts)), written


@formula("aten._grouped_mm", bytes=_grouped_bytes)
def grouped_mm(call: OpCall) -> Cost:
    """MACs = out.numel x K (grouped GEMM, MoE experts); FLOPs = 2 x MACs (+1 per output for a bias)"""
    macs, outputs = _grouped_macs(call)
    bias = outputs if call.args.get("bias") is not None else 0
    return Cost(macs=macs, flops=dot_flops(macs, outputs, bias, call.convention))


@formula("aten._scaled_grouped_mm", "aten._scaled_grouped_mm_v2")
def scaled_grouped_mm(call: OpCall) -> Cost:
    """MACs = out.numel x K (fp8 grouped GEMM); FLOPs = 2 x MACs + 1 per output for the scaling (+1 bias)"""
    macs, outputs = _grouped_macs(call)
    bias = outputs if call.args.get("bias") is not None else 0
    return Cost(macs=macs, flops=dot_flops(macs, outputs, bias, call.convention) + outputs)


@formula("aten._weight_int8pack_mm", "aten._weight_int4pack_mm", "aten._weight_int4pack_mm_for_cpu")
def weight_only_quant_mm(call: OpCall) -> Cost:
    """MACs = M x N x K (int8/int4 weights, dequantised on the fly); FLOPs = 2 x MACs + 1 per output

    ``self`` is the activation (M, K); N is read off the output (the packed weight's shape is a storage
    layout). The per-channel/per-group dequantisation is counted as 1 FLOP per output (int8: scales per
    output channel; int4: the group scales/zeros, folded into the accumulation's per-group partial sums,
    taken as 1 per output as well).
    """
    outputs, k = _contraction(call, call.first_tensor("self"))
    macs = outputs * k
    return Cost(macs=macs, flops=dot_flops(macs, outputs, 0, call.convention) + outputs)


@formula("aten._trilinear")
def trilinear(call: OpCall) -> Cost:
    """MACs = out.numel x prod(summed dims) (nn.Bilinear: B x O x I1 x I2); FLOPs = 2 x MACs

    ``_trilinear(i1, i2, i3, expand1, expand2, expand3, sumdim)``: each operand is unsqueezed at its
    ``expand`` dims, the three are multiplied with broadcasting and the ``sumdim`` dims are summed. For
    ``nn.Bilinear`` (x1 (B, I1), W (O, I1, I2), x2 (B, I2)) every output is an I1 x I2-term bilinear
    form, evaluated as (x1 W) x2, whose cost is dominated by B x O x I1 x I2 MACs (the B x O x I2
    MACs of the second contraction are left out).
    """
    shapes = []
    for t_name, e_name in (("i1", "expand1"), ("i2", "expand2"), ("i3", "expand3")):
        shape = list(call.first_tensor(t_name).shape)
        for d in sorted(call.args.get(e_name) or ()):
            shape.insert(d, 1)
        shapes.append(shape)
    ndim = max(len(s) for s in shapes)
    full = [max(s[d] if d < len(s) else 1 for s in shapes) for d in range(ndim)]
    summed = prod(full[d] for d in (call.args.get("sumdim") or ()))
    outputs = call.out.numel
    return dot_cost(outputs * summed, outputs, 0, call.convention, complex_dtype=is_complex(call.out))


# ---- pairwise distances ----------------------------------------------------------------------------
# cdist(x1 (B, P, M), x2 (B, R, M)) -> (B, P, R); pdist(x (N, M)) -> N(N-1)/2 distances.
# Each distance over M coordinates: M subtracts, M |.|^p (a multiply for p = 2), M - 1 adds and one root:
# counted as 3 FLOPs per coordinate. Not a dot product of the weights, so no MACs (even where the p = 2
# kernel is computed through a matrix product internally).
DISTANCE_FLOPS_PER_COORD = 3


@formula("aten._cdist_forward")
def cdist(call: OpCall) -> Cost:
    """3 FLOPs per coordinate per distance (subtract, power, accumulate); no MACs"""
    x1 = call.tensor("x1")
    assert x1 is not None
    return Cost(flops=DISTANCE_FLOPS_PER_COORD * x1.shape[-1] * call.out.numel)


@formula("aten._pdist_forward")
def pdist(call: OpCall) -> Cost:
    """3 FLOPs per coordinate per pair, N(N-1)/2 pairs; no MACs"""
    x = call.tensor("self")
    assert x is not None
    return Cost(flops=DISTANCE_FLOPS_PER_COORD * x.shape[-1] * call.out.numel)
