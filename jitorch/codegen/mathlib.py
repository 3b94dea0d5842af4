"""Vectorizable math in LLVM IR: exp, expm1, log, log1p, tanh, sigmoid, erf, sin, cos, pow and sqrt, and
exp_nonpositive (exp for arguments known not to be positive, which the code generator picks for softmax's
exp(x - max(x))).

Hot loops may not call libm, because the loop vectorizer cannot widen a call. Each function here is
emitted into the kernel's own module, once, as an `internal alwaysinline` function named
`jitorch.<name>.<f32|f64>` whose body is straight-line code: arithmetic, integer bit tricks through
bitcast, `select`, and the intrinsics fma, fabs, floor, rint, sqrt and copysign, which all have vector
forms. After inlining, a loop applying one of them becomes 8-wide AVX2 (or wider) code.

    exp = get_function(module, "exp", ir.FloatType())
    y = builder.call(exp, [x])

Every function reduces its argument to a small interval (Cody–Waite subtraction of multiples of ln2 or
π/2 with FMA, or exponent extraction), evaluates a polynomial there and reconstructs. Polynomial
coefficients are minimax fits made for mathlib: a Remez exchange in 40-digit arithmetic, minimizing
the error named at each table, then rounded to the target precision one coefficient at a time, lowest
degree first, re-fitting the rest. f32 pow runs in f64 internally; everything else stays in its type.
The tables and constants are in `mathlib_constants`; `mathlib_ops` has the IRBuilder shorthands (`_Ops`).

Accuracy against numpy (the float64 result rounded to the type), checked by tests/test_mathlib.py over
every 97th float32 and a million random float64: at most 1 ulp (2 for f32 sigmoid and for f64 expm1,
tanh, sigmoid and erf; exp_nonpositive: 1 over its domain), and special values (nan, ±inf, ±0,
subnormals, overflow, underflow) exactly as numpy gives them, signs of zeros included.

Huge arguments to sin and cos: x = n·π/2 + r with π/2 in three parts, the first product exact and the
others split exactly by FMA, so r carries about twice the format's precision. That is accurate while n
is exact and rounding it (with 2/π in the format) keeps r within the polynomials' range: for
|x| < 2^21 in f32 (every float there is within 1 ulp) and |x| < 2^47 in f64. Beyond, r is clamped to
that range, so results stay in [-1, 1] but are not the exact ones numpy gives: exact reduction of huge
arguments (Payne–Hanek) needs table lookups and wide products that every element would pay for, as
branch-free code computes all paths. sin and cos of ±inf are nan.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

from llvmlite import ir

from jitorch.codegen.mathlib_constants import (
    _COS_C,
    _ERFC_G,
    _ERF_E,
    _ERF_LIMIT,
    _EXPM1_LOW,
    _EXP_P,
    _EXP_RANGE,
    _LN2,
    _LOG2E,
    _LOG_DD_R,
    _LOG_Q,
    _MAX_FINITE,
    _MIN_NORMAL,
    _NONPOSITIVE_SCALE,
    _PIO2,
    _REDUCED_BOUND,
    _SIN_S,
    _SQRT_HALF_BITS,
    _SUBNORMAL_SCALE,
    _TANH_LIMIT,
    _TANH_POLY_LIMIT,
    _TANH_T,
    _TWO_OVER_PI,
    _TWO_OVER_SQRT_PI,
    _TWO_THIRDS,
)
from jitorch.codegen.mathlib_ops import F32, F64, _Ops


# ---------------------------------------------------------------------------------------------------------
# exp, expm1, sigmoid, tanh


def _reduce_ln2(o: _Ops, x: ir.Value, x_lo: ir.Value | None = None) -> tuple[ir.Value, ir.Value]:
    """(n, r) with x (+ x_lo) = n·ln2 + r, |r| <= ln2/2, for finite x within exp's range.

    The first FMA is exact (n·ln2_hi and x agree in all the bits r does not have), so r is accurate to
    half an ulp once the tails of x and ln2 are folded in.
    """
    n = o.rint(o.mul(x, o.fmt[_LOG2E]))
    return n, _minus_n_ln2(o, n, x, x_lo)


def _minus_n_ln2(o: _Ops, n: ir.Value, x: ir.Value, x_lo: ir.Value | None = None) -> ir.Value:
    """x (+ x_lo) - n·ln2, with ln2 in two parts (see `_reduce_ln2`)."""
    ln2_hi, ln2_lo = o.fmt[_LN2]
    r = o.fma(n, -ln2_hi, x)
    if x_lo is not None:
        r = o.add(r, x_lo)
    return o.fma(n, -ln2_lo, r)


def _expm1_reduced(o: _Ops, r: ir.Value) -> ir.Value:
    return o.fma(o.mul(r, r), o.poly(r, o.fmt[_EXP_P]), r)


def _exp_core(o: _Ops, x: ir.Value, x_lo: ir.Value | None = None) -> ir.Value:
    """exp(x + x_lo) for every x but nan (nan gives 0): exp(n·ln2 + r) = 2^n·(1 + expm1(r)).
    x_lo, if given, is a tail below ulp(x), as pow's double-double exponent has."""
    low, high = o.fmt[_EXP_RANGE]
    clamped = o.clamp(x, low, high)
    if x_lo is not None:
        x_lo = o.select(o.eq(clamped, x), x_lo, 0.0)  # no tail once clamped (it may be nan then)
    n, r = _reduce_ln2(o, clamped, x_lo)
    return o.ldexp(o.add(_expm1_reduced(o, r), 1.0), o.to_int(n))


def _exp(o: _Ops, x: ir.Value) -> ir.Value:
    return o.select(o.is_nan(x), x, _exp_core(o, x))


def _expm1(o: _Ops, x: ir.Value) -> ir.Value:
    """2^n·expm1(r) + (2^n - 1), computed as 2·(t·expm1(r) + (t - 1/2)) with t = 2^(n-1), so that 2^n
    never overflows before the result does. t - 1/2 is exact while it matters (n <= 24 in f32), and
    n = 0 gives expm1(r) exactly."""
    n, r = _reduce_ln2(o, o.clamp(x, o.fmt[_EXPM1_LOW], o.fmt[_EXP_RANGE][1]))
    t = o.pow2(o.isub(o.to_int(n), 1))
    result = o.mul(2.0, o.fma(t, _expm1_reduced(o, r), o.sub(t, 0.5)))
    result = o.select(o.eq(x, 0.0), x, result)  # keeps the sign of zero
    return o.select(o.is_nan(x), x, result)


def _exp_nonpositive(o: _Ops, x: ir.Value) -> ir.Value:
    """e^x for x <= 0 (and nan), cheaper than `_exp` (about 14 vector instructions against 25), for
    arguments known not to be positive: softmax's x - max(x) and sigmoid's -|x|.

    Adding the shifter 1.5·2^mantissa_bits to x·log2(e) rounds it to the integer n (in one FMA) and
    leaves n in the low bits of the sum, so 2^(n + NONPOSITIVE_SCALE) comes from those bits by one shift.
    That scale is normal for every n down to exp's underflow limit; e^r comes pre-multiplied by
    2^-NONPOSITIVE_SCALE (Horner's rule on coefficients scaled by a power of two gives exactly the scaled
    value: every FMA result stays normal), so their product is e^x rounded once, into subnormals if need
    be. nan stays nan through the clamp and everything after it; -inf clamps to give +0.
    """
    shifter = 1.5 * 2.0 ** o.fmt.mantissa_bits
    low = o.fmt[_EXP_RANGE][0]
    a = o.select(o.lt(x, low), low, x)
    shifted = o.fma(a, o.fmt[_LOG2E], shifter)
    r = _minus_n_ln2(o, o.sub(shifted, shifter), a)
    unit = 2.0 ** -_NONPOSITIVE_SCALE
    p = o.poly(r, [unit, unit] + [c * unit for c in o.fmt[_EXP_P]])
    scale = o.from_bits(o.shl(o.iadd(o.bits(shifted), o.fmt.bias + _NONPOSITIVE_SCALE), o.fmt.mantissa_bits))
    return o.mul(p, scale)


def _sigmoid(o: _Ops, x: ir.Value) -> ir.Value:
    """1/(1 + e) for x >= 0 and e/(1 + e) below, e = e^-|x| <= 1, so nothing overflows."""
    e = _exp_nonpositive(o, o.neg(o.abs(x)))
    return o.div(o.select(o.ge(x, 0.0), 1.0, e), o.add(e, 1.0))


def _tanh(o: _Ops, x: ir.Value) -> ir.Value:
    """tanh|x| by an odd polynomial for small |x| and as 1 - 2/(e^(2|x|) + 1) above, where nothing
    cancels; the sign of x is copied last, so tanh(-0) = -0."""
    limit = o.fmt[_TANH_LIMIT]
    a = o.abs(x)
    a = o.select(o.lt(a, limit), a, limit)  # also maps nan and inf to the limit, fixed below
    z = o.mul(a, a)
    small = o.fma(o.mul(a, z), o.poly(z, o.fmt[_TANH_T]), a)
    large = o.sub(1.0, o.div(2.0, o.add(_exp_core(o, o.mul(a, 2.0)), 1.0)))
    result = o.copysign(o.select(o.lt(a, _TANH_POLY_LIMIT), small, large), x)
    return o.select(o.is_nan(x), x, result)


# ---------------------------------------------------------------------------------------------------------
# log, log1p


def _log_reduce(o: _Ops, x: ir.Value, subnormals: bool) -> tuple[ir.Value, ir.Value]:
    """(e, f) with x = 2^e·(1 + f), 1 + f in [√½, √2), for finite x > 0; e as a float, f exact."""
    exponent_adjust = o.int(0)
    if subnormals:
        scale = o.fmt[_SUBNORMAL_SCALE]
        subnormal = o.lt(x, o.fmt[_MIN_NORMAL])
        x = o.select(subnormal, o.mul(x, 2.0**scale), x)
        exponent_adjust = o.builder.select(subnormal, o.int(-scale), o.int(0))
    # Subtracting √½'s bits moves the exponent's boundary from 1 down to √½.
    sqrt_half = o.fmt[_SQRT_HALF_BITS]
    offset = o.isub(o.bits(x), sqrt_half)
    e = o.to_float(o.iadd(o.ashr(offset, o.fmt.mantissa_bits), exponent_adjust))
    m = o.from_bits(o.iadd(o.iand(offset, (1 << o.fmt.mantissa_bits) - 1), sqrt_half))
    return e, o.sub(m, 1.0)


def _log_core(o: _Ops, x: ir.Value, subnormals: bool = True) -> ir.Value:
    """log(x) for finite x > 0: e·ln2 + log(1+f), with log(1+f) = 2·atanh(s) by _LOG_Q, reassembled as
    e·ln2_hi + (f - (f²/2 - (s·(f²/2 + s·z·Q) + e·ln2_lo))) so that the large terms add last."""
    e, f = _log_reduce(o, x, subnormals)
    s = o.div(f, o.add(f, 2.0))
    z = o.mul(s, s)
    half_f2 = o.mul(o.mul(f, f), 0.5)
    ln2_hi, ln2_lo = o.fmt[_LN2]
    tail = o.fma(s, o.fma(z, o.poly(z, o.fmt[_LOG_Q]), half_f2), o.mul(e, ln2_lo))
    return o.fma(e, ln2_hi, o.sub(f, o.sub(half_f2, tail)))


def _log_special(o: _Ops, x: ir.Value, result: ir.Value) -> ir.Value:
    """log's answers at 0 (-inf), +inf (inf), below 0 and at nan (nan), over `result`."""
    result = o.select(o.eq(x, float("inf")), x, result)
    result = o.select(o.eq(x, 0.0), float("-inf"), result)
    return o.select(o.builder.fcmp_unordered("<", x, o.const(0.0)), float("nan"), result)


def _log(o: _Ops, x: ir.Value) -> ir.Value:
    return _log_special(o, x, _log_core(o, x))


def _log1p(o: _Ops, x: ir.Value) -> ir.Value:
    """log(u) + c/u with u = fl(1 + x) and c = (1 + x) - u, the exact rounding error of u; u is never
    subnormal."""
    u = o.add(x, 1.0)
    small = o.le(o.abs(x), 1.0)
    correction = o.select(small, o.sub(x, o.sub(u, 1.0)), o.sub(1.0, o.sub(u, x)))
    result = o.add(_log_core(o, u, subnormals=False), o.div(correction, u))
    result = _log_special(o, u, result)
    return o.select(o.eq(x, 0.0), x, result)  # keeps the sign of zero


# ---------------------------------------------------------------------------------------------------------
# erf


def _erf(o: _Ops, x: ir.Value) -> ir.Value:
    """Odd polynomial for |x| <= 1; 1 - exp(-x²)·G(|x|) above, with G piecewise on [1, limit]."""
    limit = o.fmt[_ERF_LIMIT]
    a = o.abs(x)
    a = o.select(o.lt(a, limit), a, limit)  # also maps nan and inf to the limit, fixed below
    z = o.mul(a, a)
    c_hi, c_lo = o.fmt[_TWO_OVER_SQRT_PI]
    small = o.fma(a, c_hi, o.mul(a, o.fma(z, o.poly(z, o.fmt[_ERF_E]), c_lo)))
    erfc = o.mul(_exp_core(o, o.neg(z)), _piecewise_poly(o, a, o.fmt[_ERFC_G]))
    result = o.copysign(o.select(o.le(a, 1.0), small, o.sub(1.0, erfc)), x)
    return o.select(o.is_nan(x), x, result)


def _piecewise_poly(o: _Ops, a: ir.Value, pieces: Sequence[tuple[float, float, Sequence[float]]]) -> ir.Value:
    """The polynomial, in a - center, of the first piece whose upper end exceeds a (else the last one),
    choosing coefficients by select: one evaluation, whatever the piece."""
    degree = max(len(coefficients) for _, _, coefficients in pieces)

    def padded(coefficients: Sequence[float]) -> list[float]:
        return list(coefficients) + [0.0] * (degree - len(coefficients))

    *inner, (_, last_center, last_coefficients) = pieces
    center, coefficients = o.const(last_center), [o.const(c) for c in padded(last_coefficients)]
    for upper, piece_center, piece_coefficients in reversed(inner):
        inside = o.lt(a, upper)
        center = o.select(inside, piece_center, center)
        coefficients = [o.select(inside, c, previous)
                        for c, previous in zip(padded(piece_coefficients), coefficients)]
    return o.poly(o.sub(a, center), coefficients)


# ---------------------------------------------------------------------------------------------------------
# sin, cos


def _reduce_pio2(o: _Ops, a: ir.Value) -> tuple[ir.Value, ir.Value, ir.Value]:
    """(q, r_hi, r_lo) with a = n·π/2 + r_hi + r_lo, q = n mod 4 and |r| <= ~π/4, for finite a >= 0.

    n is rounded by adding 1.5·2^p (p = mantissa bits), which leaves n in the low bits of the sum.
    a - n·p1 is exact; n·p2 is split exactly with FMA, so r carries about twice the format's precision.
    """
    magic = 1.5 * 2.0**o.fmt.mantissa_bits
    shifted = o.fma(a, o.fmt[_TWO_OVER_PI], magic)
    n = o.sub(shifted, magic)
    q = o.iand(o.bits(shifted), 3)
    p1, p2, p3 = o.fmt[_PIO2]
    r1 = o.fma(n, -p1, a)
    product = o.mul(n, p2)
    product_error = o.fma(n, p2, o.neg(product))
    r_hi, error = o.two_sum(r1, o.neg(product))
    r_lo = o.fma(n, -p3, o.sub(error, product_error))
    r_hi, r_lo = o.fast_two_sum(r_hi, r_lo)
    # Past the accurate range, only keep the results in [-1, 1].
    bound = o.fmt[_REDUCED_BOUND]
    clamped = o.clamp(r_hi, -bound, bound)
    return q, clamped, o.select(o.eq(clamped, r_hi), r_lo, 0.0)


def _sin_reduced(o: _Ops, r: ir.Value, r_lo: ir.Value, z: ir.Value) -> ir.Value:
    # sin(r + r_lo) = sin(r) + r_lo·cos(r), cos(r) ~ 1 - z/2 being plenty for the tiny r_lo.
    correction = o.fma(o.mul(r, z), o.poly(z, o.fmt[_SIN_S]), o.fma(o.mul(z, -0.5), r_lo, r_lo))
    return o.add(r, correction)


def _cos_reduced(o: _Ops, r: ir.Value, r_lo: ir.Value, z: ir.Value) -> ir.Value:
    # cos(r + r_lo) = cos(r) - r_lo·sin(r); w = 1 - z/2 rounds, and its error is added back.
    half_z = o.mul(z, 0.5)
    w = o.sub(1.0, half_z)
    tail = o.fma(o.mul(z, z), o.poly(z, o.fmt[_COS_C]), o.neg(o.mul(r, r_lo)))
    return o.add(w, o.add(o.sub(o.sub(1.0, w), half_z), tail))


def _sin_cos(o: _Ops, x: ir.Value, quadrant_offset: int, odd: bool) -> ir.Value:
    """sin (offset 0, odd) or cos (offset 1, even) of x: by quadrant, ±sin(r) or ±cos(r)."""
    a = o.abs(x)
    finite = o.le(a, o.fmt[_MAX_FINITE])
    q, r, r_lo = _reduce_pio2(o, o.select(finite, a, 0.0))
    q = o.iadd(q, quadrant_offset)
    z = o.mul(r, r)
    use_cos = o.builder.icmp_unsigned("!=", o.iand(q, 1), o.int(0))
    value = o.select(use_cos, _cos_reduced(o, r, r_lo, z), _sin_reduced(o, r, r_lo, z))
    # Quadrants 2 and 3 negate; sin is odd, so a negative x flips the sign again.
    width = o.fmt.int_type.width
    sign = o.shl(o.iand(q, 2), width - 2)
    if odd:
        sign = o.builder.xor(sign, o.iand(o.bits(x), -(1 << (width - 1))))
    value = o.from_bits(o.builder.xor(o.bits(value), sign))
    return o.select(finite, value, float("nan"))


def _sin(o: _Ops, x: ir.Value) -> ir.Value:
    return _sin_cos(o, x, 0, odd=True)


def _cos(o: _Ops, x: ir.Value) -> ir.Value:
    return _sin_cos(o, x, 1, odd=False)


# ---------------------------------------------------------------------------------------------------------
# pow


def _log_double_double(o: _Ops, x: ir.Value) -> tuple[ir.Value, ir.Value]:
    """log(x) as hi + lo with about 2^-64 relative error, for finite x > 0 (f64).

    Same reduction as _log_core; 2·atanh(s) = 2s + (2/3)s³ + s⁵·R(z) with the first two terms in
    double-double arithmetic, since pow multiplies the logarithm's error by |y·log x| (up to ~745).
    """
    e, f = _log_reduce(o, x, subnormals=True)
    # s = f/(2 + f) in double-double: the denominator split exactly, the quotient's remainder by FMA.
    d_hi, d_lo = o.fast_two_sum(o.const(2.0), f)
    s_hi = o.div(f, d_hi)
    s_lo = o.div(o.fma(o.neg(s_hi), d_lo, o.fma(o.neg(s_hi), d_hi, f)), d_hi)
    z_hi = o.mul(s_hi, s_hi)
    z_lo = o.fma(o.mul(s_hi, 2.0), s_lo, o.fma(s_hi, s_hi, o.neg(z_hi)))
    cube_hi = o.mul(s_hi, z_hi)
    cube_lo = o.fma(s_hi, z_lo, o.fma(s_lo, z_hi, o.fma(s_hi, z_hi, o.neg(cube_hi))))
    third_hi, third_lo = _TWO_THIRDS
    b_hi = o.mul(cube_hi, third_hi)
    b_lo = o.fma(cube_lo, third_hi, o.fma(cube_hi, third_lo, o.fma(cube_hi, third_hi, o.neg(b_hi))))
    tail = o.mul(o.mul(cube_hi, z_hi), o.poly(z_hi, _LOG_DD_R))
    ln2_hi, ln2_lo = _LN2["f64"]
    e_hi = o.mul(e, ln2_hi)
    e_lo = o.fma(e, ln2_lo, o.fma(e, ln2_hi, o.neg(e_hi)))
    # Sum the large parts exactly, then the small ones.
    atanh_hi, atanh_error = o.two_sum(o.mul(s_hi, 2.0), b_hi)
    hi, hi_error = o.two_sum(e_hi, atanh_hi)
    small = o.add(o.add(o.add(hi_error, atanh_error), o.fma(s_lo, 2.0, b_lo)), o.add(tail, e_lo))
    return o.fast_two_sum(hi, small)


def _pow_f64(o: _Ops, x: ir.Value, y: ir.Value, precise: bool) -> ir.Value:
    """x^y = ±exp(y·log|x|) (f64), with C99's special cases. `precise` carries log|x| and y·log|x| in
    double-double, as f64 results need; f32's pow calls this without it."""
    a = o.abs(x)
    finite_positive = o.builder.and_(o.lt(0.0, a), o.le(a, _MAX_FINITE["f64"]))
    safe = o.select(finite_positive, a, 1.0)
    log_hi, log_lo = _log_double_double(o, safe) if precise else (_log_core(o, safe), None)
    log_hi = _log_special(o, a, log_hi)
    t_hi = o.mul(y, log_hi)
    t_lo = None if log_lo is None else o.fma(y, log_lo, o.fma(y, log_hi, o.neg(t_hi)))
    magnitude = o.select(o.is_nan(t_hi), t_hi, _exp_core(o, t_hi, t_lo))
    # Signs and C99's exceptions: negative bases need integer exponents, odd ones keep the sign.
    y_integer = o.eq(o.floor(y), y)  # true for ±inf, as C99 treats them
    half_y = o.mul(y, 0.5)
    y_odd = o.builder.and_(y_integer, o.ne(o.floor(half_y), half_y))
    negative = o.builder.icmp_signed("<", o.bits(x), o.int(0))
    result = o.select(o.builder.and_(negative, y_odd), o.neg(magnitude), magnitude)
    not_integer_power = o.builder.and_(o.lt(x, 0.0), o.builder.not_(y_integer))
    result = o.select(o.builder.and_(not_integer_power, o.ne(x, float("-inf"))), float("nan"), result)
    one = o.builder.or_(o.builder.or_(o.eq(y, 0.0), o.eq(x, 1.0)),
                        o.builder.and_(o.eq(a, 1.0), o.eq(o.abs(y), float("inf"))))
    return o.select(one, 1.0, result)


def _pow(o: _Ops, x: ir.Value, y: ir.Value) -> ir.Value:
    if o.fmt is F64:
        return _pow_f64(o, x, y, precise=True)
    # In f64, log and exp are ~2^-52 accurate: ample for an f32 result, rounded once at the end.
    wide = _Ops(o.builder, F64)
    result = _pow_f64(wide, o.builder.fpext(x, F64.type), o.builder.fpext(y, F64.type), precise=False)
    return o.builder.fptrunc(result, o.fmt.type)


def _sqrt(o: _Ops, x: ir.Value) -> ir.Value:
    return o.sqrt(x)


_BUILDERS: dict[str, Callable[..., ir.Value]] = {
    "exp": _exp, "expm1": _expm1, "log": _log, "log1p": _log1p, "tanh": _tanh, "sigmoid": _sigmoid,
    "erf": _erf, "sin": _sin, "cos": _cos, "pow": _pow, "sqrt": _sqrt, "exp_nonpositive": _exp_nonpositive,
}
NAMES = tuple(_BUILDERS)
_BINARY = ("pow",)


def get_function(module: ir.Module, name: str, ty: ir.Type) -> ir.Function:
    """`jitorch.<name>.<f32|f64>` in `module`, defined on first request: `T name(T)` (`T pow(T, T)`)."""
    if isinstance(ty, ir.FloatType):
        fmt = F32
    elif isinstance(ty, ir.DoubleType):
        fmt = F64
    else:
        raise TypeError(f"mathlib.{name}: no {ty} version; only float and double")
    if name not in _BUILDERS:
        raise ValueError(f"mathlib has no function {name!r}; it has {', '.join(NAMES)}")
    symbol = f"jitorch.{name}.{fmt.short}"
    if symbol in module.globals:
        return module.globals[symbol]
    arity = 2 if name in _BINARY else 1
    function = ir.Function(module, ir.FunctionType(fmt.type, [fmt.type] * arity), symbol)
    function.linkage = "internal"
    function.attributes.add("alwaysinline")
    function.attributes.add("nounwind")
    builder = ir.IRBuilder(function.append_basic_block("entry"))
    builder.ret(_BUILDERS[name](_Ops(builder, fmt), *function.args))
    return function
