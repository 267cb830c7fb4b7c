"""Reductions, scans, sorting and softmax.

FLOPs, no MACs. Reductions are counted per *input* element: reducing ``n`` values to one takes
``n - 1`` operations, counted as ``n`` (the first one is the initialisation); operations done once per
output element are added where they matter (the divide of a mean).

* sum, prod, max/min/amax/amin, argmax/argmin, any/all, count_nonzero, nansum: 1 per input element.
  ``max``/``min`` with a second tensor (``max.other``) are elementwise maximum/minimum: 1 per output.
* mean: 1 per input element + 1 per output element (the divide).
* var/std (and var_mean/std_mean): 3 per input element (subtract the mean, square, accumulate; the
  mean's own accumulation is done in the same pass and not counted again), + 1 per output for the
  divide by ``n - correction``; std +1 per output for the sqrt; var_mean/std_mean +1 per output for
  the mean's divide.
* norm / linalg_vector_norm: 2 per input element (``|x|^p`` or ``x*x``, accumulate) + 1 per output
  for the root.
* logsumexp: ``m + log(sum(exp(x - m)))`` with ``m = max(x)``: 4 per input element (max, subtract,
  exp, accumulate) + 2 per output (log, add back m). (Counted like softmax, rather than as a plain
  reduction, because it does a softmax's work.)
* softmax / log_softmax: 5 per element -- max, subtract, exp, sum, divide (log_softmax: max,
  subtract, exp, sum, subtract the log-sum; the one log per row is not counted).
* cumsum/cumprod/cummax/cummin: 1 per element (one add/multiply/compare per scan step).
* sort: ``n * ceil(log2 n)`` compares per row of length ``n`` (a comparison sort's bound);
  topk: ``n * max(1, ceil(log2 k))`` per row (heap selection of ``k`` from ``n``); kthvalue/median:
  ``n`` per row (quickselect, linear); mode: as a sort; unique: as a sort of the flattened tensor
  (unique_consecutive: ``n`` compares); searchsorted: ``ceil(log2 n)`` compares per value
  (binary search in a sequence of ``n``).

Bytes: the default rule (input read once, outputs written once).
"""

from __future__ import annotations

import math

from rooflens.formulas.registry import OpCall, formula
from rooflens.types import Cost, TensorMeta


def _self(call: OpCall) -> TensorMeta:
    x = call.tensor("self") or call.tensor("input") or call.tensor("x")
    return x if x is not None else call.inputs[0]


def _rows_len(call: OpCall) -> tuple[int, int]:
    """(number of rows, row length) for an operator working along ``dim`` of ``self``."""
    x = _self(call)
    if not x.shape:
        return 1, 1
    dim = call.args.get("dim", -1)
    n = int(x.shape[int(dim) if dim is not None else -1])
    return (x.numel // n if n else 0), n


def _log2ceil(n: int) -> int:
    return math.ceil(math.log2(n)) if n > 1 else 0


def _outputs_numel(call: OpCall) -> int:
    return call.out.numel if call.outputs else 0


@formula(
    "aten.sum", "aten.prod", "aten.amax", "aten.amin", "aten.argmax", "aten.argmin",
    "aten.any", "aten.all", "aten.count_nonzero", "aten.nansum",
)
def reduce(call: OpCall) -> Cost:
    """1 per input element"""
    return Cost(flops=_self(call).numel)


@formula("aten.max", "aten.min")
def max_min(call: OpCall) -> Cost:
    """1 per input element (reduction); 1 per output element with a second tensor (elementwise)"""
    if call.tensor("other") is not None:  # max.other / min.other: elementwise maximum / minimum
        return Cost(flops=call.out.numel)
    return Cost(flops=_self(call).numel)


@formula("aten.mean", "aten.nanmean")
def mean(call: OpCall) -> Cost:
    """1 per input element + 1 per output element (the divide)"""
    return Cost(flops=_self(call).numel + _outputs_numel(call))


@formula("aten.aminmax")
def aminmax(call: OpCall) -> Cost:
    """2 per input element (a compare for the min and one for the max)"""
    return Cost(flops=2 * _self(call).numel)


@formula("aten.var")
def var(call: OpCall) -> Cost:
    """3 per input element + 1 per output (divide by n - correction)"""
    return Cost(flops=3 * _self(call).numel + _outputs_numel(call))


@formula("aten.std", "aten.var_mean")
def std(call: OpCall) -> Cost:
    """3 per input element + 2 per output (std: divide, sqrt; var_mean: two divides)"""
    return Cost(flops=3 * _self(call).numel + 2 * _outputs_numel(call))


@formula("aten.std_mean")
def std_mean(call: OpCall) -> Cost:
    """3 per input element + 3 per output (divide, sqrt, the mean's divide)"""
    return Cost(flops=3 * _self(call).numel + 3 * _outputs_numel(call))


@formula("aten.norm", "aten.linalg_vector_norm")
def norm(call: OpCall) -> Cost:
    """2 per input element (|x|^p, accumulate) + 1 per output (the root)"""
    return Cost(flops=2 * _self(call).numel + _outputs_numel(call))


@formula("aten.logsumexp")
def logsumexp(call: OpCall) -> Cost:
    """4 per input element (max, subtract, exp, accumulate) + 2 per output (log, add max)"""
    return Cost(flops=4 * _self(call).numel + 2 * _outputs_numel(call))


@formula("aten._softmax", "aten._log_softmax", "aten.softmax", "aten.log_softmax", "aten._safe_softmax")
def softmax(call: OpCall) -> Cost:
    """5 per element (max, subtract, exp, sum, divide; log_softmax: subtract instead of divide)"""
    return Cost(flops=5 * _self(call).numel)


@formula(
    "aten.cumsum", "aten.cumsum_", "aten.cumprod", "aten.cumprod_", "aten.cummax", "aten.cummin",
)
def scan(call: OpCall) -> Cost:
    """1 per element (one add, multiply or compare per scan step)"""
    return Cost(flops=_self(call).numel)


@formula("aten.sort", "aten.argsort", "aten.mode")
def sort(call: OpCall) -> Cost:
    """n x ceil(log2 n) compares per row of length n"""
    rows, n = _rows_len(call)
    return Cost(flops=rows * n * _log2ceil(n))


@formula("aten.topk")
def topk(call: OpCall) -> Cost:
    """n x max(1, ceil(log2 k)) compares per row of length n (heap selection of k)"""
    rows, n = _rows_len(call)
    k = int(call.args.get("k", 1))
    return Cost(flops=rows * n * max(1, _log2ceil(k)))


@formula("aten.kthvalue", "aten.median", "aten.nanmedian")
def select_kth(call: OpCall) -> Cost:
    """n compares per row of length n (quickselect)"""
    return Cost(flops=_self(call).numel)


@formula("aten._unique2", "aten.unique_dim")
def unique(call: OpCall) -> Cost:
    """n x ceil(log2 n) compares, n = input elements (a sort), + n to compare neighbours"""
    n = _self(call).numel
    return Cost(flops=n * _log2ceil(n) + n)


@formula("aten.unique_consecutive")
def unique_consecutive(call: OpCall) -> Cost:
    """1 per input element (compare with the neighbour)"""
    return Cost(flops=_self(call).numel)


@formula("aten.searchsorted", "aten.bucketize")
def searchsorted(call: OpCall) -> Cost:
    """ceil(log2 n) compares per value (binary search in a sequence of n)"""
    seq = call.tensor("sorted_sequence") or call.tensor("boundaries")
    n = seq.shape[-1] if seq is not None and seq.shape else 1
    return Cost(flops=_outputs_numel(call) * max(1, _log2ceil(n)))


@formula("aten.bincount", "aten.histc")
def histogram(call: OpCall) -> Cost:
    """1 per input element (one count increment; histc's bin index computation not counted)"""
    return Cost(flops=_self(call).numel)
