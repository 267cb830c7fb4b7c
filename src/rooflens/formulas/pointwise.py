"""Elementwise operators: arithmetic, comparisons, logical ops, unary math and activations.

Every count is FLOPs per *output* element (broadcasting makes the output the iteration space) and no
MACs. Transcendentals (exp, log, tanh, erf, sqrt, rsqrt, sin, cos ...) count 1 FLOP each, like an add.
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


def _elementwise(flops: int, doc: str) -> Formula:
    """A formula of ``flops`` FLOPs per output element (defined here so the family reads 'pointwise')."""

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
)(_elementwise(1, "1 per output element (binary arithmetic; alpha scaling not counted)"))

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
)(_elementwise(1, "1 per output element (comparison, logical op, where)"))

# addcmul: self + value * t1 * t2 -> a multiply and an add (value folded);
# addcdiv: self + value * t1 / t2 -> a divide and an add.
formula("aten.addcmul", "aten.addcmul_", "aten.addcdiv", "aten.addcdiv_")(
    _elementwise(2, "2 per output element (t1 * t2 or t1 / t2, then + self; value scaling not counted)")
)

# lerp: self + weight * (end - self) -> subtract, multiply, add.
formula("aten.lerp", "aten.lerp_")(_elementwise(3, "3 per output element (end - self, x weight, + self)"))


# ---- unary math --------------------------------------------------------------------------------------

# One operation (or one transcendental) per element.
formula(
    "aten.neg", "aten.neg_", "aten.negative", "aten.abs", "aten.abs_", "aten.absolute",
    "aten.sqrt", "aten.sqrt_", "aten.rsqrt", "aten.rsqrt_", "aten.square", "aten.square_",
    "aten.exp", "aten.exp_", "aten.exp2", "aten.exp2_", "aten.expm1", "aten.expm1_",
    "aten.log", "aten.log_", "aten.log2", "aten.log2_", "aten.log10", "aten.log10_", "aten.log1p", "aten.log1p_",
    "aten.sin", "aten.sin_", "aten.cos", "aten.cos_", "aten.tan", "aten.tan_",
    "aten.asin", "aten.asin_", "aten.acos", "aten.acos_", "aten.atan", "aten.atan_",
    "aten.sinh", "aten.sinh_", "aten.cosh", "aten.cosh_",
    "aten.asinh", "aten.asinh_", "aten.acosh", "aten.acosh_", "aten.atanh", "aten.atanh_",
    "aten.erf", "aten.erf_", "aten.erfc", "aten.erfc_", "aten.erfinv", "aten.erfinv_",
    "aten.reciprocal", "aten.reciprocal_", "aten.sign", "aten.sign_", "aten.sgn", "aten.sgn_",
    "aten.floor", "aten.floor_", "aten.ceil", "aten.ceil_", "aten.round", "aten.round_",
    "aten.trunc", "aten.trunc_", "aten.fix", "aten.frac", "aten.frac_",
    "aten.lgamma", "aten.lgamma_", "aten.digamma", "aten.digamma_", "aten.i0", "aten.i0_",
    "aten.nan_to_num", "aten.nan_to_num_", "aten.logit", "aten.logit_",
    "aten.deg2rad", "aten.deg2rad_", "aten.rad2deg", "aten.rad2deg_",
    "aten.special_erfcx", "aten.special_i0e", "aten.special_i1", "aten.special_i1e", "aten.special_ndtri",
    "aten.tanh", "aten.tanh_",  # the tanh activation: a single transcendental
)(_elementwise(1, "1 per element (one unary operation or transcendental)"))


@formula("aten.clamp", "aten.clamp_", "aten.clip", "aten.clip_")
def clamp(call: OpCall) -> Cost:
    """1 per element per bound given (min and max: 2)"""
    # clamp(x, min, max) = min(max(x, lo), hi): one compare-select per bound that is not None.
    bounds = sum(call.args.get(k) is not None for k in ("min", "max"))
    return Cost(flops=max(bounds, 1) * call.out.numel)


# clamp_min / clamp_max: one bound, one compare-select.
formula("aten.clamp_min", "aten.clamp_min_", "aten.clamp_max", "aten.clamp_max_")(
    _elementwise(1, "1 per element (one bound)")
)


# ---- activations -------------------------------------------------------------------------------------

# relu: max(x, 0); threshold: x > t ? x : v -- one compare-select.
formula("aten.relu", "aten.relu_", "aten.threshold", "aten.threshold_")(
    _elementwise(1, "1 per element (compare-select)")
)

# hardtanh / relu6: min(max(x, lo), hi) -- two compare-selects.
# leaky_relu / prelu: x > 0 ? x : a * x -- a multiply and a compare-select.
# hardshrink: |x| > lambda ? x : 0 -- abs and compare-select.
# rrelu (random slope, sampled in training): a multiply and a compare-select.
formula(
    "aten.hardtanh", "aten.hardtanh_", "aten.relu6", "aten.relu6_",
    "aten.leaky_relu", "aten.leaky_relu_", "aten.prelu", "aten._prelu_kernel",
    "aten.hardshrink", "aten.rrelu", "aten.rrelu_with_noise", "aten.rrelu_with_noise_",
)(_elementwise(2, "2 per element (two compare-selects, or a multiply and a compare-select)"))

# softshrink: x > l ? x - l : (x < -l ? x + l : 0) -- two compare-selects and an add/subtract.
# softplus: log1p(exp(beta * x)) / beta -- exp, log1p and the beta scaling (threshold select not counted).
formula("aten.softshrink", "aten.softplus")(
    _elementwise(3, "3 per element (softplus: exp, log1p, beta scale; softshrink: 2 compares, 1 add)")
)

# sigmoid: 1 / (1 + exp(-x)) -- neg, exp, add, divide.
# hardsigmoid: min(max(x + 3, 0), 6) / 6 -- add, two compare-selects, divide.
# log_sigmoid: -softplus(-x), computed as min(x, 0) - log1p(exp(-|x|)) -- abs/neg, exp, log1p, subtract.
# elu/celu/selu: x > 0 ? s*x : s*a*(exp(x) - 1) -- exp, subtract, multiply, compare-select
#   (selu's outer scale is folded into the multiply).
formula(
    "aten.sigmoid", "aten.sigmoid_", "aten.hardsigmoid", "aten.hardsigmoid_",
    "aten.log_sigmoid", "aten.log_sigmoid_forward",
    "aten.elu", "aten.elu_", "aten.celu", "aten.celu_", "aten.selu", "aten.selu_",
)(_elementwise(4, "4 per element (sigmoid: neg, exp, add, divide; elu family: exp, sub, mul, select)"))

# silu: x * sigmoid(x) -- sigmoid (4) + multiply.
# hardswish: x * min(max(x + 3, 0), 6) / 6 -- add, two compare-selects, multiply, divide.
# mish: x * tanh(softplus(x)) -- softplus (exp, log1p), tanh, multiply; 5 as stated for the family.
formula(
    "aten.silu", "aten.silu_", "aten.hardswish", "aten.hardswish_", "aten.mish", "aten.mish_",
)(_elementwise(5, "5 per element (silu: sigmoid 4 + mul; hardswish: add, 2 clamps, mul, div; mish)"))


@formula("aten.gelu", "aten.gelu_")
def gelu(call: OpCall) -> Cost:
    """exact: 5 per element; approximate='tanh': 9 per element"""
    # exact:  0.5 * x * (1 + erf(x / sqrt(2)))  -> x/sqrt2 (mul), erf, +1, *x, *0.5 = 5
    # tanh:   0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x^3)))
    #         -> x^2, x^3 (2 mul), *0.044715, +x, *sqrt(2/pi), tanh, +1, *x, *0.5 = 9
    per = 9 if call.args.get("approximate") == "tanh" else 5
    return Cost(flops=per * call.out.numel)


@formula("aten.glu")
def glu(call: OpCall) -> Cost:
    """5 per output element (sigmoid of the gate 4 + multiply 1)"""
    # glu(x) = a * sigmoid(b), x split in halves a, b along dim: the output has half the input's elements.
    return Cost(flops=5 * call.out.numel)


@formula("aten.native_dropout")
def native_dropout(call: OpCall) -> Cost:
    """2 per element in training (compare with p, scale by 1/(1-p)); 0 when train=False"""
    # Training: mask = rand < 1 - p (the compare; random bits are integer work), out = x * mask * 1/(1-p)
    # with the scale folded into one multiply. Evaluation: the input is passed through.
    train = call.args.get("train")
    return Cost(flops=2 * call.out.numel) if train or train is None else Cost()
