"""Elementwise operators without a transcendental function: arithmetic, comparisons, logical ops,
rounding, square roots and reciprocals, and the piecewise-linear activations (ReLU, hardtanh, leaky ReLU,
hardsigmoid, hardswish ...). Those that evaluate exp, log, tanh, erf, trigonometric or special functions
(sigmoid, SiLU, GELU, softplus ...) are the transcendental family.

Every count is FLOPs per *output* element (broadcasting makes the output the iteration space) and no
MACs. Square roots, reciprocals and divides count 1 FLOP each, like an add (so do the transcendental
family's function evaluations).
Bytes: the default rule (each distinct input read once, each output written once; an in-place op reads
and writes ``self``). Derivations, one line each, are next to every formula below; the first docstring
line is the rule printed in ``docs/operators.md``.

Conventions stated once:
* ``alpha`` of add/sub and ``value`` of addcmul/addcdiv are scalings that the kernels fold into the
  multiply-add; they are not counted.
* A compare-and-select (``x > 0 ? x : 0``) is 1 FLOP; a ``select`` on its own costs nothing.
* Composite operators that torch always splits before dispatch (``relu6``, ``prelu``, ``selu``,
  ``square``, ``clip``, ...) are listed too, so that the table answers for them; when they are split,
  their parts are counted instead.
"""

from __future__ import annotations

from rooflens.formulas.registry import Formula, OpCall, formula
from rooflens.types import Cost


def elementwise(flops: int, doc: str) -> Formula:
    """A formula of ``flops`` FLOPs per output element (shared with the transcendental family)."""

    def fn(call: OpCall) -> Cost:
        return Cost(flops=flops * call.out.numel) if call.outputs else Cost()

    fn.__doc__ = doc
    fn.__qualname__ = fn.__name__ = f"elementwise_{flops}"
    return fn


# ---- binary and ternary arithmetic ------------------------------------------------------------------

# One arithmetic operation per output element: out[i] = a[i] (op) b[i].
formula(
    "aten.add", "aten.add_", "aten.sub", "aten.sub_", "aten.rsub",
    "aten.mul", "aten.mul_", "aten.div", "aten.div_", "aten.true_divide", "aten.true_divide_",
    "aten.floor_divide", "aten.floor_divide_",
    "aten.pow", "aten.pow_", "aten.float_power", "aten.float_power_",
    "aten.maximum", "aten.minimum", "aten.fmax", "aten.fmin",
    "aten.remainder", "aten.remainder_", "aten.fmod", "aten.fmod_",
    "aten.atan2", "aten.atan2_", "aten.hypot", "aten.hypot_", "aten.copysign", "aten.copysign_",
    "aten.xlogy", "aten.xlogy_", "aten.heaviside", "aten.heaviside_",
    "aten.logaddexp", "aten.logaddexp2", "aten.special_xlog1py", "aten.special_zeta",
)(elementwise(1, "1 per output element (binary arithmetic; alpha scaling not counted)"))

# One compare / logical operation per output element; ``where`` is one select per element.
formula(
    "aten.eq", "aten.eq_", "aten.ne", "aten.ne_", "aten.lt", "aten.lt_", "aten.le", "aten.le_",
    "aten.gt", "aten.gt_", "aten.ge", "aten.ge_",
    "aten.isnan", "aten.isinf", "aten.isfinite", "aten.isposinf", "aten.isneginf", "aten.signbit",
    "aten.logical_and", "aten.logical_and_", "aten.logical_or", "aten.logical_or_",
    "aten.logical_xor", "aten.logical_xor_", "aten.logical_not", "aten.logical_not_",
    "aten.bitwise_and", "aten.bitwise_and_", "aten.bitwise_or", "aten.bitwise_or_",
    "aten.bitwise_xor", "aten.bitwise_xor_", "aten.bitwise_not", "aten.bitwise_not_",
    "aten.bitwise_left_shift", "aten.bitwise_left_shift_", "aten.bitwise_right_shift", "aten.bitwise_right_shift_",
    "aten.where",
)(elementwise(1, "1 per output element (comparison, logical op, where)"))

# addcmul: self + value * t1 * t2 -> a multiply and an add (value folded);
# addcdiv: self + value * t1 / t2 -> a divide and an add.
formula("aten.addcmul", "aten.addcmul_", "aten.addcdiv", "aten.addcdiv_")(
    elementwise(2, "2 per output element (t1 * t2 or t1 / t2, then + self; value scaling not counted)")
)

# lerp: self + weight * (end - self) -> subtract, multiply, add.
formula("aten.lerp", "aten.lerp_")(elementwise(3, "3 per output element (end - self, x weight, + self)"))

# linalg.cross of 3-vectors: each component a_j b_k - a_k b_j -> 2 multiplies and a subtract.
formula("aten.linalg_cross")(
    elementwise(3, "3 per output element (each component of a x b: 2 multiplies, 1 subtract)")
)


# ---- unary math --------------------------------------------------------------------------------------

# One operation per element (the transcendental functions are the transcendental family's).
formula(
    "aten.neg", "aten.neg_", "aten.negative", "aten.abs", "aten.abs_", "aten.absolute",
    "aten.sqrt", "aten.sqrt_", "aten.rsqrt", "aten.rsqrt_", "aten.square", "aten.square_",
    "aten.reciprocal", "aten.reciprocal_", "aten.sign", "aten.sign_", "aten.sgn", "aten.sgn_",
    "aten.floor", "aten.floor_", "aten.ceil", "aten.ceil_", "aten.round", "aten.round_",
    "aten.trunc", "aten.trunc_", "aten.fix", "aten.frac", "aten.frac_",
    "aten.nan_to_num", "aten.nan_to_num_",
    "aten.deg2rad", "aten.deg2rad_", "aten.rad2deg", "aten.rad2deg_",
)(elementwise(1, "1 per element (one unary operation)"))


@formula("aten.clamp", "aten.clamp_", "aten.clip", "aten.clip_")
def clamp(call: OpCall) -> Cost:
    """1 per element per bound given (min and max: 2)"""
    # clamp(x, min, max) = min(max(x, lo), hi): one compare-select per bound that is not None.
    bounds = sum(call.args.get(k) is not None for k in ("min", "max"))
    return Cost(flops=max(bounds, 1) * call.out.numel)


# clamp_min / clamp_max: one bound, one compare-select.
formula("aten.clamp_min", "aten.clamp_min_", "aten.clamp_max", "aten.clamp_max_")(
    elementwise(1, "1 per element (one bound)")
)


# ---- activations -------------------------------------------------------------------------------------

# relu: max(x, 0); threshold: x > t ? x : v -- one compare-select.
formula("aten.relu", "aten.relu_", "aten.threshold", "aten.threshold_")(
    elementwise(1, "1 per element (compare-select)")
)

# hardtanh / relu6: min(max(x, lo), hi) -- two compare-selects.
# leaky_relu / prelu: x > 0 ? x : a * x -- a multiply and a compare-select.
# hardshrink: |x| > lambda ? x : 0 -- abs and compare-select.
# rrelu (random slope, sampled in training): a multiply and a compare-select.
formula(
    "aten.hardtanh", "aten.hardtanh_", "aten.relu6", "aten.relu6_",
    "aten.leaky_relu", "aten.leaky_relu_", "aten.prelu", "aten._prelu_kernel",
    "aten.hardshrink", "aten.rrelu", "aten.rrelu_with_noise", "aten.rrelu_with_noise_",
)(elementwise(2, "2 per element (two compare-selects, or a multiply and a compare-select)"))

# softshrink: x > l ? x - l : (x < -l ? x + l : 0) -- two compare-selects and an add/subtract.
formula("aten.softshrink")(elementwise(3, "3 per element (2 compare-selects, 1 add)"))

# hardsigmoid: min(max(x + 3, 0), 6) / 6 -- add, two compare-selects, divide.
formula("aten.hardsigmoid", "aten.hardsigmoid_")(
    elementwise(4, "4 per element (add, 2 compare-selects, divide)")
)

# hardswish: x * min(max(x + 3, 0), 6) / 6 -- add, two compare-selects, multiply, divide.
formula("aten.hardswish", "aten.hardswish_")(
    elementwise(5, "5 per element (add, 2 compare-selects, multiply, divide)")
)


@formula("aten.native_dropout")
def native_dropout(call: OpCall) -> Cost:
    """2 per element in training (compare with p, scale by 1/(1-p)); 0 when train=False"""
    # Training: mask = rand < 1 - p (the compare; random bits are integer work), out = x * mask * 1/(1-p)
    # with the scale folded into one multiply. Evaluation: the input is passed through.
    train = call.args.get("train")
    return Cost(flops=2 * call.out.numel) if train or train is None else Cost()
