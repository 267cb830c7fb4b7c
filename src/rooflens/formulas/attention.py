"""Attention: every fused scaled-dot-product-attention kernel, and the fused multi-head-attention and
transformer-encoder-layer fast paths that most counters miss.

Derivation, for ``q (B, H, L, E)``, ``k (B, H, S, E)``, ``v (B, H, S, Ev)`` (``B x H x L x S`` scores):

* ``scores = q @ k^T``:  ``B·H·L·S·E`` MACs, ``B·H·L·S`` outputs, each an E-term dot product;
* ``out = P @ v``:       ``B·H·L·S·Ev`` MACs, ``B·H·L·Ev`` outputs, each an S-term dot product;
* FLOPs = those two products by :func:`dot_flops` (so both conventions hold) + per score:
  1 for the scaling by ``1/sqrt(E)``, 5 for the softmax (max, subtract, exp, sum, divide: the count
  the pointwise family uses for softmax), 1 for an additive mask when one is given.

Conventions and simplifications, stated once for every variant below:

* **Causal and sliding-window masks are counted dense**, as if every score were computed (a causal
  kernel skips about half of them). Only an explicit mask/bias tensor adds its 1 FLOP per score.
* Dropout (``dropout_p > 0``, training only) is not counted.
* Grouped-query / multi-query attention (fewer key/value heads): the products are per *query* head,
  so ``H`` is the query's head count.
* Variable-length (packed, "varlen"/nested) calls give only the packed totals, not each sequence's
  length (those are tensor *values*). The score count is taken as
  ``H x min(total_q x max_k, total_k x max_q)``: exact when every sequence has the same length, an
  upper bound otherwise.
"""

from __future__ import annotations

from math import prod

from rooflens.formulas.registry import OpCall, dot_flops, formula
from rooflens.types import Convention, Cost, TensorMeta

# FLOPs per attention score besides the two products (see the module docstring).
SCALE_FLOPS = 1
SOFTMAX_FLOPS = 5  # max, subtract, exp, sum, divide
MASK_FLOPS = 1  # additive mask / bias, only when one is given

# Per-element counts of the non-MAC parts of the fused encoder layer (the counts the norm and pointwise
# families use): layer norm with affine 8, ReLU 1, exact GELU 5, residual add 1.
LAYER_NORM_FLOPS = 8
RELU_FLOPS = 1
GELU_EXACT_FLOPS = 5
ADD_FLOPS = 1


def attention_core_cost(
    scores: int,
    query_rows: int,
    e: int,
    ev: int,
    *,
    has_mask: bool,
    convention: Convention = Convention.FMA,
) -> Cost:
    """Cost of softmax(q k^T * scale + mask) v from its counts.

    ``scores``: number of attention scores (B·H·L·S for dense shapes); ``query_rows``: number of query
    vectors (B·H·L); ``e``/``ev``: query/key and value head dimensions. Shared by every variant.
    """
    macs_qk = scores * e
    macs_av = scores * ev
    per_score = SCALE_FLOPS + SOFTMAX_FLOPS + (MASK_FLOPS if has_mask else 0)
    flops = (
        dot_flops(macs_qk, scores, 0, convention)
        + dot_flops(macs_av, query_rows * ev, 0, convention)
        + per_score * scores
    )
    return Cost(macs=macs_qk + macs_av, flops=flops)


def sdpa_cost(
    q_shape: tuple[int, ...],
    k_shape: tuple[int, ...],
    v_shape: tuple[int, ...],
    *,
    has_mask: bool,
    convention: Convention = Convention.FMA,
) -> Cost:
    """Dense ``(..., L, E)``, ``(..., S, E)``, ``(..., S, Ev)`` shapes; the leading dims are the query's."""
    bh, l_len, e = prod(q_shape[:-2]), q_shape[-2], q_shape[-1]
    s_len, ev = k_shape[-2], v_shape[-1]
    return attention_core_cost(bh * l_len * s_len, bh * l_len, e, ev, has_mask=has_mask, convention=convention)


def _has(call: OpCall, *names: str) -> bool:
    return any(call.args.get(n) is not None for n in names)


def _varlen(
    q_total: int, k_total: int, heads: int, e: int, ev: int, max_q: object, max_k: object, *, has_mask: bool,
    convention: Convention,
) -> Cost:
    """Packed sequences: score count H x min(total_q x max_k, total_k x max_q) (see module docstring)."""
    bounds = []
    if isinstance(max_k, int):
        bounds.append(q_total * max_k)
    if isinstance(max_q, int):
        bounds.append(k_total * max_q)
    pairs = min(bounds) if bounds else q_total * k_total  # no maxima: everything attends everything
    return attention_core_cost(heads * pairs, heads * q_total, e, ev, has_mask=has_mask, convention=convention)


@formula(
    "aten._scaled_dot_product_flash_attention_for_cpu",
    "aten._scaled_dot_product_flash_attention",
    "aten._scaled_dot_product_efficient_attention",
    "aten._scaled_dot_product_cudnn_attention",
    "aten._scaled_dot_product_fused_attention_overrideable",
    "aten.scaled_dot_product_attention",
    "aten._scaled_dot_product_attention_math",
    "aten._scaled_dot_product_attention_math_for_mps",
)
def sdpa(call: OpCall) -> Cost:
    """MACs = B·H·L·S·(E + Ev); FLOPs = the two products + 6 per score (scale 1, softmax 5) + 1 with a mask

    q (B, H, L, E), k (B, H(kv), S, E), v (B, H(kv), S, Ev). The mask is ``attn_mask`` or ``attn_bias``
    (whichever the schema has); causal masks are counted dense, dropout not at all.
    """
    return sdpa_cost(
        call.first_tensor("query").shape,
        call.first_tensor("key").shape,
        call.first_tensor("value").shape,
        has_mask=_has(call, "attn_mask", "attn_bias"),
        convention=call.convention,
    )


@formula("aten._cudnn_attention_forward")
def cudnn_attention_forward(call: OpCall) -> Cost:
    """MACs = B·H·L·S·(E + Ev), FLOPs as scaled_dot_product_attention; packed (T, H, E) with cum_seq_q"""
    q, k, v = call.first_tensor("query"), call.first_tensor("key"), call.first_tensor("value")
    has_mask = _has(call, "attn_bias")
    if call.args.get("cum_seq_q") is not None and len(q.shape) == 3:
        return _varlen(q.shape[0], k.shape[0], q.shape[1], q.shape[2], v.shape[2],
                       call.args.get("max_q"), call.args.get("max_k"), has_mask=has_mask, convention=call.convention)
    return sdpa_cost(q.shape, k.shape, v.shape, has_mask=has_mask, convention=call.convention)


@formula("aten._flash_attention_forward")
def flash_attention_forward(call: OpCall) -> Cost:
    """MACs = B·H·L·S·(E + Ev), FLOPs as scaled_dot_product_attention; layout (B, L, H, E) or packed (T, H, E)

    ``_flash_attention_forward(query (B, L, H, E), key (B, S, Hkv, E), value (B, S, Hkv, Ev), cum_seq_q,
    cum_seq_k, max_q, max_k, ...)``: the scores are B·H·L·S. With ``cum_seq_q`` (varlen) the inputs are
    packed to (total, H, E); a sliding window (``window_size_left/right``) is counted dense.
    """
    q, k, v = call.first_tensor("query"), call.first_tensor("key"), call.first_tensor("value")
    if call.args.get("cum_seq_q") is not None and len(q.shape) == 3:
        return _varlen(q.shape[0], k.shape[0], q.shape[1], q.shape[2], v.shape[2],
                       call.args.get("max_q"), call.args.get("max_k"), has_mask=False, convention=call.convention)
    b, l_len, h, e = q.shape
    s_len, ev = k.shape[1], v.shape[-1]
    return attention_core_cost(b * h * l_len * s_len, b * h * l_len, e, ev, has_mask=False,
                               convention=call.convention)


@formula("aten._efficient_attention_forward")
def efficient_attention_forward(call: OpCall) -> Cost:
    """MACs = B·H·L·S·(E + Ev), FLOPs as scaled_dot_product_attention; layout (B, L, H, E) or packed (1, T, H, E)

    ``_efficient_attention_forward(query (B, L, H, E), key (B, S, H, E), value (B, S, H, Ev), bias?,
    cu_seqlens_q?, cu_seqlens_k?, max_seqlen_q?, max_seqlen_k?, dropout_p, custom_mask_type, ...)``:
    ``bias`` is the additive mask (1 FLOP per score); ``custom_mask_type`` (causal) is counted dense.
    """
    q, k, v = call.first_tensor("query"), call.first_tensor("key"), call.first_tensor("value")
    has_mask = _has(call, "bias")
    if call.args.get("cu_seqlens_q") is not None:
        q_total, h, e = prod(q.shape[:-2]), q.shape[-2], q.shape[-1]
        return _varlen(q_total, prod(k.shape[:-2]), h, e, v.shape[-1], call.args.get("max_seqlen_q"),
                       call.args.get("max_seqlen_k"), has_mask=has_mask, convention=call.convention)
    b, l_len, h, e = q.shape
    s_len, ev = k.shape[1], v.shape[-1]
    return attention_core_cost(b * h * l_len * s_len, b * h * l_len, e, ev, has_mask=has_mask,
                               convention=call.convention)


def _linear(rows: int, k: int, n: int, convention: Convention) -> Cost:
    """``rows`` x (K -> N) projection with a bias on every output."""
    macs = rows * k * n
    return Cost(macs=macs, flops=dot_flops(macs, rows * n, rows * n, convention))


@formula("aten._native_multi_head_attention", "aten._triton_multi_head_attention")
def native_multi_head_attention(call: OpCall) -> Cost:
    """MACs = q/k/v in-projections + B·L·S·D (q k^T) + B·L·S·D (P v) + out-projection; FLOPs as linear + SDPA

    ``nn.MultiheadAttention``'s fast path (eval mode, no grad, batch_first, q/k/v of one embed size):
    query (B, L, D), key/value (B, S, D), ``num_head`` H heads of D/H.

    * in-projections from ``qkv_weight`` (3D, D) with ``qkv_bias``: B·L·D·D (q) + 2·B·S·D·D (k, v)
      MACs, 2 x MACs + 1 bias add per output (self-attention: B·L·D·3D);
    * attention: as scaled_dot_product_attention with B·H·L·S scores of head size D/H (scale 1, softmax
      5, mask 1 when ``mask`` is given, per score);
    * out-projection ``proj_weight`` (D, D) with ``proj_bias``: B·L·D·D MACs;
    * ``need_weights`` with ``average_attn_weights``: the head average of the returned weights, H FLOPs
      per (B, L, S) weight ((H - 1) adds and one divide), i.e. 1 per score.
    """
    q, k = call.first_tensor("query"), call.first_tensor("key")
    d = int(call.args["embed_dim"])
    h = int(call.args["num_head"])
    rows_q, rows_k = prod(q.shape[:-1]), prod(k.shape[:-1])
    l_len, s_len = (q.shape[-2] if len(q.shape) > 1 else 1), (k.shape[-2] if len(k.shape) > 1 else 1)
    batch = rows_q // l_len
    cost = _linear(rows_q, d, d, call.convention) + _linear(rows_k, d, 2 * d, call.convention)
    scores = batch * h * l_len * s_len
    cost += attention_core_cost(scores, batch * h * l_len, d // h, d // h,
                                has_mask=_has(call, "mask"), convention=call.convention)
    cost += _linear(rows_q, d, d, call.convention)
    if call.args.get("need_weights", False) and call.args.get("average_attn_weights", False):
        cost += Cost(flops=scores)
    return cost


@formula("aten._transformer_encoder_layer_fwd")
def transformer_encoder_layer(call: OpCall) -> Cost:
    """MACs = B·L·D·3D + 2·B·L·L·D + B·L·D·D + 2·B·L·D·F; FLOPs add 2 layer norms, activation, 2 residuals

    ``nn.TransformerEncoderLayer``'s fast path (eval mode, no grad): src (B, L, D), ``num_heads`` H,
    feed-forward width F = ``ffn_weight_1.shape[0]``. Counted as:

    * self-attention: in-projection B·L·D·3D MACs (+ bias), attention B·H·L·L scores of head size
      D/H (2·B·L·L·D MACs; scale 1, softmax 5, mask 1 if ``mask`` is given, per score), out-projection
      B·L·D·D MACs (+ bias);
    * feed-forward: B·L·D·F + B·L·F·D MACs (+ biases), activation on B·L·F elements: ReLU 1 FLOP, GELU
      5 (the fused kernel applies exact GELU, whatever approximation the module was built with);
    * two layer norms (with affine): 8 FLOPs per element each, 2 x 8·B·L·D;
    * two residual adds: 2·B·L·D.

    Linear FLOPs follow the convention (2 x MACs + 1 bias add per output under fma; 2 x MACs exact).
    """
    src = call.first_tensor("src")
    d = int(call.args["embed_dim"])
    h = int(call.args["num_heads"])
    f = call.first_tensor("ffn_weight_1").shape[0]
    rows = prod(src.shape[:-1])
    l_len = src.shape[-2] if len(src.shape) > 1 else 1
    batch = rows // l_len
    conv = call.convention
    attn = _linear(rows, d, 3 * d, conv)
    attn += attention_core_cost(batch * h * l_len * l_len, batch * h * l_len, d // h, d // h,
                                has_mask=_has(call, "mask"), convention=conv)
    attn += _linear(rows, d, d, conv)
    ffn = _linear(rows, d, f, conv) + _linear(rows, f, d, conv)
    act = (GELU_EXACT_FLOPS if call.args.get("use_gelu") else RELU_FLOPS) * rows * f
    norms = 2 * LAYER_NORM_FLOPS * rows * d
    residuals = 2 * ADD_FLOPS * rows * d
    return attn + ffn + Cost(flops=act + norms + residuals)


@formula("higher_order.flex_attention")
def flex_attention(call: OpCall) -> Cost:
    """MACs = B·H·L·S·(E + Ev), counted dense: every block the block mask could skip is counted.

    ``flex_attention(query, key, value, score_mod, block_mask, ...)`` (a higher-order operator; its
    arguments by position). The block mask's sparsity is data (the numbers of kept blocks), which a fake
    run does not have; the score_mod and mask_mod functions are not counted (a few FLOPs per score).
    """
    q, k, v = (call.args.get(f"arg{i}") for i in range(3))
    if not all(isinstance(t, TensorMeta) for t in (q, k, v)):
        raise ValueError("flex_attention: query, key and value must be the first three arguments")
    return sdpa_cost(q.shape, k.shape, v.shape, has_mask=False, convention=call.convention)  # type: ignore[union-attr]
