"""Elementwise operators that evaluate a transcendental function: exp, log, trigonometric and hyperbolic
functions, erf, special functions, and the activations built on them (sigmoid, tanh, SiLU, GELU, ELU,
softplus, Mish, GLU). Each function evaluation counts 1 FLOP, like an add; the rest of each formula is
ordinary arithmetic.

A family of its own because their cost per element is not what their FLOPs suggest: a vectorised exp or
erf takes many instructions, so on a CPU they run several times slower per byte than an add (the
calibrated latency model reads them off the sigmoid and GELU micro-benchmarks, not the add one).

Every count is FLOPs per *output* element and no MACs; bytes: the default rule. Derivations are next to
every formula below.
"""

from __future__ import annotations

from rooflens.formulas.pointwise import elementwise
from rooflens.formulas.registry import OpCall, formula
from rooflens.types import Cost

FAMILY = "transcendental"  # the shared per-element formulas are made in pointwise.py: name the family

# One function evaluation per element.
formula(
    "aten.exp", "aten.exp_", "aten.exp2", "aten.exp2_", "aten.expm1", "aten.expm1_",
    "aten.log", "aten.log_", "aten.log2", "aten.log2_", "aten.log10", "aten.log10_", "aten.log1p", "aten.log1p_",
    "aten.sin", "aten.sin_", "aten.cos", "aten.cos_", "aten.tan", "aten.tan_",
    "aten.asin", "aten.asin_", "aten.acos", "aten.acos_", "aten.atan", "aten.atan_",
    "aten.sinh", "aten.sinh_", "aten.cosh", "aten.cosh_",
    "aten.asinh", "aten.asinh_", "aten.acosh", "aten.acosh_", "aten.atanh", "aten.atanh_",
    "aten.erf", "aten.erf_", "aten.erfc", "aten.erfc_", "aten.erfinv", "aten.erfinv_",
    "aten.lgamma", "aten.lgamma_", "aten.digamma", "aten.digamma_", "aten.i0", "aten.i0_",
    "aten.logit", "aten.logit_",
    "aten.special_erfcx", "aten.special_i0e", "aten.special_i1", "aten.special_i1e", "aten.special_ndtri",
    "aten.tanh", "aten.tanh_",  # the tanh activation: a single transcendental
    family=FAMILY,
)(elementwise(1, "1 per element (one transcendental function)"))

# softplus: log1p(exp(beta * x)) / beta -- exp, log1p and the beta scaling (threshold select not counted).
formula("aten.softplus", family=FAMILY)(elementwise(3, "3 per element (exp, log1p, beta scale)"))

# sigmoid: 1 / (1 + exp(-x)) -- neg, exp, add, divide.
# log_sigmoid: -softplus(-x), computed as min(x, 0) - log1p(exp(-|x|)) -- abs/neg, exp, log1p, subtract.
# elu/celu/selu: x > 0 ? s*x : s*a*(exp(x) - 1) -- exp, subtract, multiply, compare-select
#   (selu's outer scale is folded into the multiply).
formula(
    "aten.sigmoid", "aten.sigmoid_", "aten.log_sigmoid", "aten.log_sigmoid_forward",
    "aten.elu", "aten.elu_", "aten.celu", "aten.celu_", "aten.selu", "aten.selu_",
    family=FAMILY,
)(elementwise(4, "4 per element (sigmoid: neg, exp, add, divide; elu family: exp, sub, mul, select)"))

# silu: x * sigmoid(x) -- sigmoid (4) + multiply.
# mish: x * tanh(softplus(x)) -- softplus (exp, log1p), tanh, multiply; 5 as stated for the family.
formula("aten.silu", "aten.silu_", "aten.mish", "aten.mish_", family=FAMILY)(
    elementwise(5, "5 per element (silu: sigmoid 4 + mul; mish: softplus, tanh, mul)")
)


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
