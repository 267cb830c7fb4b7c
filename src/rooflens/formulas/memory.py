"""Memory-only operators: copies, concatenation, padding, factories, gathers and scatters, RNG.

These are *supported*: they cost 0 FLOPs (except where stated) and their memory traffic is what
counts. The bytes rules, from the most to the least common:

* copy-like (cat, clone, ``_to_copy``, repeat, flip, pads, pixel shuffle, ``*_copy`` views made
  real ...): the default rule -- every input read once, the output written once.
* factories (zeros, ones, full, arange, linspace, eye, ``*_like``, ``new_*``): nothing read, the
  output written. A ``*_like``/``new_*`` tensor argument only lends its shape.
* overwriting in place (``fill_``, ``zero_``, ``copy_``, RNG ``*_`` ops): ``self`` is written, not read
  (a memset/memcpy does not load the destination); the other tensor arguments (``copy_``'s ``src``,
  ``fill_``'s 0-dim value) are read.
* gathers (embedding, index_select, gather, ``index``, take, masked_select): the indices and the
  gathered elements are read -- as many source elements as the output has -- never the whole table;
  the output is written.
* scatters in place (``index_put_``, ``scatter_``, ``index_copy_`` ...): the indices and the source
  values are read and only the addressed elements of ``self`` written (accumulating ones also read
  them). The out-of-place forms copy ``self`` first: the default rule.

FLOPs: 0, except accumulating scatters (``scatter_add``, ``index_add``, ``scatter_reduce``,
``index_put`` with ``accumulate=True``: 1 per accumulated element), ``embedding_bag`` (1 per
gathered element for the sum / max, +1 per gathered element with per-sample weights, +1 per output
element for ``mean``), ``col2im`` (fold: 1 per input element, the overlap-add), and random number
generation: 1 per generated element (the transform of the random bits into the distribution: a
scale for uniform, the compare against ``p`` for bernoulli; the integer bit generation itself is not
floating point).
"""

from __future__ import annotations

from collections.abc import Iterable
from math import prod
from typing import Any

from rooflens.formulas.registry import BytesRule, OpCall, default_bytes, formula, output_only_bytes
from rooflens.types import Cost, TensorMeta


def _tensors(value: Any) -> Iterable[TensorMeta]:
    if isinstance(value, TensorMeta):
        yield value
    elif isinstance(value, (list, tuple)):
        for v in value:
            if isinstance(v, TensorMeta):
                yield v


def _arg_bytes(call: OpCall, *, skip: tuple[str, ...]) -> int:
    """Bytes of every tensor argument (lists included) except those named in ``skip``."""
    return sum(t.nbytes for name, v in call.args.items() if name not in skip for t in _tensors(v))


def _written(call: OpCall) -> int:
    return sum(t.nbytes for t in call.outputs)


def overwrite_bytes(call: OpCall) -> tuple[int, int]:
    """Reads the tensor arguments other than self (self is only written); writes the output"""
    return _arg_bytes(call, skip=("self",)), _written(call)


def _source(call: OpCall, name: str) -> TensorMeta:
    src = call.tensor(name)
    return src if src is not None else call.inputs[0]


def gather_bytes(source: str = "self") -> BytesRule:
    """Bytes rule of a gather from argument ``source``: indices + gathered elements read, output written."""

    def rule(call: OpCall) -> tuple[int, int]:
        src = _source(call, source)
        gathered = src.bytes_of(call.out.numel if call.outputs else 0)
        return _arg_bytes(call, skip=(source,)) + gathered, _written(call)

    rule.__doc__ = "Reads the indices and the gathered elements (output-sized), not the whole source; writes the output"
    rule.__qualname__ = rule.__name__ = f"gather_bytes({source})"
    return rule


# ---- copies and layout changes ----------------------------------------------------------------------


@formula(
    "aten.cat", "aten.stack", "aten.clone", "aten._to_copy", "aten.contiguous",
    "aten.repeat", "aten.tile", "aten.repeat_interleave", "aten.flip", "aten.roll",
    "aten.tril", "aten.tril_", "aten.triu", "aten.triu_", "aten.diag_embed", "aten.block_diag",
    "aten.constant_pad_nd", "aten.pad", "aten._pad_circular",
    "aten.reflection_pad1d", "aten.reflection_pad2d", "aten.reflection_pad3d",
    "aten.replication_pad1d", "aten.replication_pad2d", "aten.replication_pad3d",
    "aten.pixel_shuffle", "aten.pixel_unshuffle", "aten.channel_shuffle", "aten.native_channel_shuffle",
    "aten.im2col",
    "aten.slice_scatter", "aten.select_scatter", "aten.diagonal_scatter", "aten.as_strided_scatter",
    "aten.masked_fill", "aten.index_fill", "aten.index_copy", "aten.masked_scatter",
    "aten.scatter",
    # the view operators' out-of-place forms (functionalisation produces them)
    "aten.alias_copy", "aten.detach_copy", "aten.expand_copy", "aten.permute_copy", "aten.transpose_copy",
    "aten.t_copy", "aten.view_copy", "aten._reshape_copy", "aten.unsqueeze_copy", "aten.squeeze_copy",
    "aten.slice_copy", "aten.select_copy", "aten.narrow_copy", "aten.as_strided_copy", "aten.unfold_copy",
    "aten.diagonal_copy", "aten.split_copy", "aten.split_with_sizes_copy", "aten.unbind_copy",
    "aten.nonzero", "aten.nonzero_static",
    # an LU factorisation unpacked into P, L and U (torch.lu_unpack): copies and a permutation matrix
    "aten.lu_unpack",
)
def copy_like(call: OpCall) -> Cost:
    """0 (data movement)"""
    return Cost()


formula("aten.copy", "aten.copy_", "aten.fill", "aten.fill_", "aten.zero", "aten.zero_", bytes=overwrite_bytes)(
    copy_like
)

formula(
    "aten.zeros", "aten.ones", "aten.full", "aten.scalar_tensor", "aten.arange", "aten.linspace",
    "aten.logspace", "aten.eye", "aten.tril_indices", "aten.triu_indices",
    "aten.zeros_like", "aten.ones_like", "aten.full_like", "aten.new_zeros", "aten.new_ones", "aten.new_full",
    bytes=output_only_bytes,
)(copy_like)


@formula("aten.col2im")
def col2im(call: OpCall) -> Cost:
    """1 per input element (fold: overlapping patches are summed)"""
    return Cost(flops=call.inputs[0].numel)


# ---- random numbers ---------------------------------------------------------------------------------


def _rng(call: OpCall) -> Cost:
    """1 per generated element (the transform of random bits into the distribution)"""
    return Cost(flops=call.out.numel if call.outputs else 0)


formula(
    "aten.rand", "aten.randn", "aten.randint", "aten.randperm",
    "aten.rand_like", "aten.randn_like", "aten.randint_like",
    bytes=output_only_bytes,
)(_rng)
formula(
    "aten.bernoulli_", "aten.uniform_", "aten.normal_", "aten.random_", "aten.exponential_", "aten.normal",
    bytes=overwrite_bytes,
)(_rng)


def bernoulli_bytes(call: OpCall) -> tuple[int, int]:
    """Reads self when it holds the probabilities (not with a float p); writes the output"""
    if isinstance(call.args.get("p"), (int, float)):
        return overwrite_bytes(call)
    return default_bytes(call)


formula("aten.bernoulli", bytes=bernoulli_bytes)(_rng)


@formula("aten.multinomial")
def multinomial(call: OpCall) -> Cost:
    """1 per probability (the cumulative distribution) + ceil(log2 n) per sample (a binary search)"""
    probs = _source(call, "self")
    n = probs.shape[-1] if probs.shape else 1
    search = max(1, (n - 1).bit_length())  # ceil(log2 n) for n >= 2
    return Cost(flops=probs.numel + (call.out.numel if call.outputs else 0) * search)


# ---- gathers ----------------------------------------------------------------------------------------

formula(
    "aten.gather", "aten.index_select", "aten.index", "aten._unsafe_index", "aten.take",
    "aten.masked_select", bytes=gather_bytes("self"),
)(copy_like)
formula("aten.embedding", bytes=gather_bytes("weight"))(copy_like)


def _gathered_rows(call: OpCall) -> tuple[TensorMeta, int]:
    weight = _source(call, "weight")
    indices = call.tensor("indices")
    row = prod(weight.shape[1:])
    return weight, (indices.numel if indices is not None else 0) * row


def embedding_bag_bytes(call: OpCall) -> tuple[int, int]:
    """Reads indices, offsets, per-sample weights and the gathered rows (not the table); writes the outputs"""
    weight, gathered = _gathered_rows(call)
    return _arg_bytes(call, skip=("weight",)) + weight.bytes_of(gathered), _written(call)


@formula(
    "aten._embedding_bag", "aten._embedding_bag_forward_only", "aten.embedding_bag", bytes=embedding_bag_bytes
)
def embedding_bag(call: OpCall) -> Cost:
    """1 per gathered element (the bag sum / max); +1 per gathered with per_sample_weights; +1 per output for mean"""
    _, gathered = _gathered_rows(call)
    flops = gathered
    if call.tensor("per_sample_weights") is not None:
        flops += gathered
    if call.args.get("mode") == 1:  # mode 0 sum, 1 mean, 2 max
        flops += call.out.numel
    return Cost(flops=flops)


# ---- scatters ---------------------------------------------------------------------------------------


def _index_put_addressed(call: OpCall) -> int:
    """Elements of ``self`` that ``self[indices]`` addresses (a bool mask counted as all its elements)."""
    x = _source(call, "self")
    indices = call.args.get("indices") or []
    dims_used = 0
    shapes: list[tuple[int, ...]] = []
    for idx in indices:
        if isinstance(idx, TensorMeta):
            if idx.dtype in ("bool", "uint8"):
                shapes.append((idx.numel,))
                dims_used += len(idx.shape)
            else:
                shapes.append(idx.shape)
                dims_used += 1
        else:  # None: a full slice of that dimension, kept in the rest below
            dims_used += 1
    rest = prod(x.shape[i] for i, idx in enumerate(indices) if idx is None and i < len(x.shape))
    rest *= prod(x.shape[dims_used:])
    return _broadcast_numel(shapes) * rest


def _broadcast_numel(shapes: list[tuple[int, ...]]) -> int:
    if not shapes:
        return 1
    ndim = max(len(s) for s in shapes)
    out = []
    for i in range(ndim):
        sizes = [s[len(s) - ndim + i] for s in shapes if len(s) - ndim + i >= 0]
        out.append(max(sizes) if sizes else 1)
    return prod(out)


def _addressed(call: OpCall) -> int:
    """Elements of self written by an in-place scatter."""
    x = _source(call, "self")
    if "indices" in call.args:  # index_put family
        return min(_index_put_addressed(call), x.numel)
    source = call.tensor("source")
    if source is not None:  # index_copy_ / index_add_: every source element lands once
        return source.numel
    index = call.tensor("index")
    if index is None:  # masked_fill_ / masked_scatter_: the masked positions are unknown: all of self
        return x.numel
    if call.op.startswith("aten.index_fill"):  # whole slices along dim, one per index entry
        dim = int(call.args.get("dim", 0))
        return index.numel * (x.numel // x.shape[dim] if x.shape and x.shape[dim] else 1)
    return index.numel  # scatter_ family: one element per index entry


def _accumulates(call: OpCall) -> bool:
    return (
        call.op in ("aten.scatter_add", "aten.scatter_add_", "aten.index_add", "aten.index_add_",
                    "aten.scatter_reduce", "aten.scatter_reduce_", "aten._unsafe_masked_index_put_accumulate")
        or bool(call.args.get("accumulate"))
        or call.args.get("reduce") is not None
    )


def scatter_inplace_bytes(call: OpCall) -> tuple[int, int]:
    """Reads indices and source values (+ the addressed elements when accumulating); writes the addressed elements"""
    x = _source(call, "self")
    touched = x.bytes_of(_addressed(call))
    read = _arg_bytes(call, skip=("self",)) + (touched if _accumulates(call) else 0)
    return read, touched


def _scatter_flops(call: OpCall) -> Cost:
    return Cost(flops=_addressed(call) if _accumulates(call) else 0)


@formula(
    "aten.scatter_", "aten.scatter_add_", "aten.scatter_reduce_", "aten.index_copy_", "aten.index_add_",
    "aten.index_fill_", "aten.index_put_", "aten._index_put_impl_", "aten.masked_fill_", "aten.masked_scatter_",
    bytes=scatter_inplace_bytes,
)
def scatter_inplace(call: OpCall) -> Cost:
    """0; accumulating (scatter_add, index_add, reduce, accumulate=True): 1 per addressed element"""
    return _scatter_flops(call)


@formula(
    "aten.scatter_add", "aten.scatter_reduce", "aten.index_add", "aten.index_put", "aten._unsafe_index_put",
    "aten._unsafe_masked_index_put_accumulate",
)
def scatter_functional(call: OpCall) -> Cost:
    """0; accumulating (scatter_add, index_add, reduce, accumulate=True): 1 per addressed element"""
    return _scatter_flops(call)


formula("aten._unsafe_masked_index", bytes=gather_bytes("self"))(copy_like)
