"""Scalar code in LLVM IR: the value types, and one rule per elementwise op of the registry computing
one element (the `scalar["llvm"]` slot, filled here at import). Transcendental functions come from
mathlib, inlined. Used by llvm.py, which builds the loops around these rules.
"""
from __future__ import annotations

from typing import Any, Callable

from llvmlite import ir

from jitorch.codegen import mathlib
from jitorch.ir.dtypes import DType
from jitorch.ir.ops import ELEMENTWISE, OPS

I1, I8, I32, I64 = ir.IntType(1), ir.IntType(8), ir.IntType(32), ir.IntType(64)
F32, F64 = ir.FloatType(), ir.DoubleType()
PTR = ir.PointerType()
_VALUE_TYPES = {"bool": I1, "int32": I32, "int64": I64, "float32": F32, "float64": F64}


def value_type(dtype: DType) -> ir.Type:
    return _VALUE_TYPES[dtype.name]


def memory_type(dtype: DType) -> ir.Type:
    return I8 if dtype.is_bool else value_type(dtype)


def constant(value: Any, dtype: DType) -> ir.Constant:
    if dtype.is_floating_point:
        return ir.Constant(value_type(dtype), float(value))
    return ir.Constant(value_type(dtype), int(value) & ((1 << value_type(dtype).width) - 1))


# ----------------------------------------------------------------------------------------------------
# scalar code: one emitter per kernel body


class Scalar:
    """What an elementwise rule emits with: the builder, and the kernel's error flag."""

    def __init__(self, builder: ir.IRBuilder, status: ir.AllocaInstr) -> None:
        self.builder = builder
        self.status = status

    @property
    def module(self) -> ir.Module:
        return self.builder.module

    def intrinsic(self, name: str, *args: ir.Value) -> ir.Value:
        ty = args[0].type
        function = self.module.declare_intrinsic(name, [ty], ir.FunctionType(ty, [a.type for a in args]))
        return self.builder.call(function, list(args))

    def math(self, name: str, *args: ir.Value) -> ir.Value:
        return self.builder.call(mathlib.get_function(self.module, name, args[0].type), list(args))

    def fail_if(self, condition: ir.Value, code: int) -> None:
        """Record error `code` when `condition` holds (branch-free: the flag is OR-ed)."""
        b = self.builder
        flag = b.select(condition, I32(code), I32(0))
        b.store(b.or_(b.load(self.status, typ=I32), flag), self.status)

    def is_nan(self, x: ir.Value) -> ir.Value:
        return self.builder.fcmp_unordered("uno", x, x)


Rule = Callable[[Scalar, list[ir.Value], list[DType], DType, dict], ir.Value]


def _float_or_int(on_float: Callable, on_int: Callable, on_bool: Callable | None = None) -> Rule:
    def rule(s: Scalar, args: list[ir.Value], types: list[DType], out: DType, attrs: dict) -> ir.Value:
        kind = types[0]
        if kind.is_floating_point:
            return on_float(s, *args)
        if kind.is_bool and on_bool is not None:
            return on_bool(s, *args)
        return on_int(s, *args)
    return rule


def _sign_float(s: Scalar, x: ir.Value) -> ir.Value:
    b, zero = s.builder, ir.Constant(x.type, 0.0)
    inner = b.select(b.fcmp_ordered("==", x, zero), zero, x)  # nan stays nan
    inner = b.select(b.fcmp_ordered("<", x, zero), ir.Constant(x.type, -1.0), inner)
    return b.select(b.fcmp_ordered(">", x, zero), ir.Constant(x.type, 1.0), inner)


def _sign_int(s: Scalar, x: ir.Value) -> ir.Value:
    b, zero = s.builder, ir.Constant(x.type, 0)
    return b.sub(b.zext(b.icmp_signed(">", x, zero), x.type), b.zext(b.icmp_signed("<", x, zero), x.type))


def _int_divisor(s: Scalar, a: ir.Value, d: ir.Value) -> tuple[ir.Value, ir.Value]:
    """A divisor that cannot trap (0 and -1 become 1), and whether d was -1; flags d == 0."""
    b, ty = s.builder, d.type
    zero, minus_one = ir.Constant(ty, 0), ir.Constant(ty, -1)
    is_zero = b.icmp_signed("==", d, zero)
    s.fail_if(is_zero, 1)
    is_minus_one = b.icmp_signed("==", d, minus_one)
    return b.select(b.or_(is_zero, is_minus_one), ir.Constant(ty, 1), d), is_minus_one


def _floordiv_int(s: Scalar, a: ir.Value, d: ir.Value) -> ir.Value:
    b, zero = s.builder, ir.Constant(a.type, 0)
    safe, minus_one = _int_divisor(s, a, d)
    q, r = b.sdiv(a, safe), b.srem(a, safe)
    adjust = b.and_(b.icmp_signed("!=", r, zero), b.xor(b.icmp_signed("<", r, zero), b.icmp_signed("<", d, zero)))
    q = b.sub(q, b.zext(adjust, a.type))
    return b.select(minus_one, b.sub(zero, a), q)  # a // -1 wraps like numpy's


def _mod_int(s: Scalar, a: ir.Value, d: ir.Value) -> ir.Value:
    b, zero = s.builder, ir.Constant(a.type, 0)
    safe, _ = _int_divisor(s, a, d)
    r = b.srem(a, safe)
    adjust = b.and_(b.icmp_signed("!=", r, zero), b.xor(b.icmp_signed("<", r, zero), b.icmp_signed("<", d, zero)))
    return b.select(adjust, b.add(r, d), r)


def _divmod_float(s: Scalar, a: ir.Value, d: ir.Value) -> tuple[ir.Value, ir.Value]:
    """numpy's npy_divmod: (floor quotient, remainder with the divisor's sign)."""
    b, ty = s.builder, a.type
    zero, one = ir.Constant(ty, 0.0), ir.Constant(ty, 1.0)
    mod = b.frem(a, d)
    div = b.fdiv(b.fsub(a, mod), d)
    fix = b.and_(b.fcmp_ordered("!=", mod, zero),
                 b.xor(b.fcmp_ordered("<", d, zero), b.fcmp_ordered("<", mod, zero)))
    mod = b.select(fix, b.fadd(mod, d), b.select(b.fcmp_ordered("==", mod, zero), s.intrinsic("llvm.copysign", zero, d),
                                                    mod))
    div = b.select(fix, b.fsub(div, one), div)
    floor = s.intrinsic("llvm.floor", div)
    floor = b.select(b.fcmp_ordered(">", b.fsub(div, floor), ir.Constant(ty, 0.5)), b.fadd(floor, one), floor)
    quotient = b.select(b.fcmp_ordered("==", div, zero), s.intrinsic("llvm.copysign", zero, b.fdiv(a, d)), floor)
    # by zero: numpy's quotient is a / 0 (inf or nan); the remainder is already fmod's nan
    return b.select(b.fcmp_ordered("==", d, zero), b.fdiv(a, d), quotient), mod


def _pow_int(s: Scalar, base: ir.Value, exponent: ir.Value) -> ir.Value:
    """base ** exponent wrapping like numpy's; a negative exponent is an error (as in eager)."""
    s.fail_if(s.builder.icmp_signed("<", exponent, ir.Constant(exponent.type, 0)), 2)
    return s.builder.call(_integer_power(s.module, base.type), [base, exponent])


def _integer_power(module: ir.Module, ty: ir.IntType) -> ir.Function:
    """`jitorch.ipow.i<n>`: square-and-multiply while exponent bits remain. A loop, not unrolled: integer
    powers are rare and 64 unrolled vector steps cost LLVM seconds."""
    name = f"jitorch.ipow.i{ty.width}"
    if name in module.globals:
        return module.globals[name]
    function = ir.Function(module, ir.FunctionType(ty, [ty, ty]), name)
    function.linkage = "internal"
    function.attributes.add("nounwind")
    base, exponent = function.args
    entry, loop, done = (function.append_basic_block(label) for label in ("entry", "loop", "done"))
    b = ir.IRBuilder(entry)
    zero, one = ir.Constant(ty, 0), ir.Constant(ty, 1)
    b.cbranch(b.icmp_signed(">", exponent, zero), loop, done)
    b.position_at_end(loop)
    result, square, rest = b.phi(ty), b.phi(ty), b.phi(ty)
    result.add_incoming(one, entry)
    square.add_incoming(base, entry)
    rest.add_incoming(exponent, entry)
    odd = b.icmp_signed("!=", b.and_(rest, one), zero)
    next_result = b.select(odd, b.mul(result, square), result)
    next_rest = b.lshr(rest, one)
    result.add_incoming(next_result, loop)
    square.add_incoming(b.mul(square, square), loop)
    rest.add_incoming(next_rest, loop)
    b.cbranch(b.icmp_signed(">", next_rest, zero), loop, done)
    b.position_at_end(done)
    final = b.phi(ty)
    final.add_incoming(one, entry)
    final.add_incoming(next_result, loop)
    b.ret(final)
    return function


def _max_min(greater: bool) -> Rule:
    def on_float(s: Scalar, a: ir.Value, c: ir.Value) -> ir.Value:
        b = s.builder
        wins = b.fcmp_ordered(">" if greater else "<", a, c)
        return b.select(b.or_(wins, s.is_nan(a)), a, c)  # np.maximum: a if a > c or a is nan, else c

    def on_int(s: Scalar, a: ir.Value, c: ir.Value) -> ir.Value:
        return s.builder.select(s.builder.icmp_signed(">" if greater else "<", a, c), a, c)

    def on_bool(s: Scalar, a: ir.Value, c: ir.Value) -> ir.Value:
        return s.builder.or_(a, c) if greater else s.builder.and_(a, c)
    return _float_or_int(on_float, on_int, on_bool)


def _compare(op: str) -> Rule:
    def rule(s: Scalar, args: list[ir.Value], types: list[DType], out: DType, attrs: dict) -> ir.Value:
        a, c = args
        if types[0].is_floating_point:
            return s.builder.fcmp_unordered(op, a, c) if op == "!=" else s.builder.fcmp_ordered(op, a, c)
        if types[0].is_bool:
            return s.builder.icmp_unsigned(op, a, c)
        return s.builder.icmp_signed(op, a, c)
    return rule


def _cast(s: Scalar, args: list[ir.Value], types: list[DType], out: DType, attrs: dict) -> ir.Value:
    (x,), source, b = args, types[0], s.builder
    target = value_type(out)
    if source is out:
        return x
    if out.is_bool:
        if source.is_floating_point:
            return b.fcmp_unordered("!=", x, ir.Constant(x.type, 0.0))  # nan is true, as in numpy
        return b.icmp_signed("!=", x, ir.Constant(x.type, 0))
    if source.is_bool:
        return b.uitofp(x, target) if out.is_floating_point else b.zext(x, target)
    if source.is_floating_point and out.is_floating_point:
        return b.fpext(x, target) if out.itemsize > source.itemsize else b.fptrunc(x, target)
    if source.is_floating_point:
        # truncation where the result fits; nan and values out of range give the "integer indefinite"
        # INT_MIN, as x86's conversions (and so numpy's astype and eager mode) do. The select keeps
        # fptosi's result, undefined out of range, out of those lanes.
        limit = float(2 ** (target.width - 1))
        fits = b.and_(b.fcmp_ordered(">=", x, ir.Constant(x.type, -limit)),
                      b.fcmp_ordered("<", x, ir.Constant(x.type, limit)))
        return b.select(fits, b.fptosi(x, target), ir.Constant(target, -(1 << (target.width - 1))))
    if out.is_floating_point:
        return b.sitofp(x, target)
    return b.sext(x, target) if out.itemsize > source.itemsize else b.trunc(x, target)


def _unary(on_float: Callable, on_int: Callable | None = None, on_bool: Callable | None = None) -> Rule:
    return _float_or_int(on_float, on_int or (lambda s, x: x), on_bool)


def _binary(on_float: Callable, on_int: Callable, on_bool: Callable | None = None) -> Rule:
    return _float_or_int(on_float, on_int, on_bool)


def _mathlib(name: str) -> Rule:
    return _unary(lambda s, *xs: s.math(name, *xs))


RULES: dict[str, Rule] = {
    "neg": _unary(lambda s, x: s.builder.fneg(x), lambda s, x: s.builder.sub(ir.Constant(x.type, 0), x)),
    "abs": _unary(lambda s, x: s.intrinsic("llvm.fabs", x),
                  lambda s, x: s.builder.call(s.module.declare_intrinsic(
                      "llvm.abs", [x.type], ir.FunctionType(x.type, [x.type, I1])), [x, I1(0)]),
                  lambda s, x: x),
    "sign": _unary(_sign_float, _sign_int, lambda s, x: x),
    "floor": _unary(lambda s, x: s.intrinsic("llvm.floor", x)),
    "ceil": _unary(lambda s, x: s.intrinsic("llvm.ceil", x)),
    "round": _unary(lambda s, x: s.intrinsic("llvm.rint", x)),
    "relu": _unary(lambda s, x: s.builder.select(s.builder.fcmp_unordered(">", x, ir.Constant(x.type, 0.0)), x,
                                                 ir.Constant(x.type, 0.0)),
                   lambda s, x: s.builder.select(s.builder.icmp_signed(">", x, ir.Constant(x.type, 0)), x,
                                                 ir.Constant(x.type, 0))),
    **{name: _mathlib(name) for name in ("exp", "expm1", "log", "log1p", "tanh", "sigmoid", "erf", "sin", "cos")},
    "sqrt": _unary(lambda s, x: s.intrinsic("llvm.sqrt", x)),
    "reciprocal": _unary(lambda s, x: s.builder.fdiv(ir.Constant(x.type, 1.0), x)),
    "bitwise_not": _unary(lambda s, x: x, lambda s, x: s.builder.not_(x), lambda s, x: s.builder.not_(x)),
    "add": _binary(lambda s, a, c: s.builder.fadd(a, c), lambda s, a, c: s.builder.add(a, c),
                   lambda s, a, c: s.builder.or_(a, c)),
    "sub": _binary(lambda s, a, c: s.builder.fsub(a, c), lambda s, a, c: s.builder.sub(a, c)),
    "mul": _binary(lambda s, a, c: s.builder.fmul(a, c), lambda s, a, c: s.builder.mul(a, c),
                   lambda s, a, c: s.builder.and_(a, c)),
    "div": lambda s, args, types, out, attrs: s.builder.fdiv(*args),
    "floordiv": _binary(lambda s, a, c: _divmod_float(s, a, c)[0], _floordiv_int),
    "mod": _binary(lambda s, a, c: _divmod_float(s, a, c)[1], _mod_int),
    "pow": _binary(lambda s, a, c: s.math("pow", a, c), _pow_int),
    "maximum": _max_min(True),
    "minimum": _max_min(False),
    "bitwise_and": _binary(lambda s, a, c: s.builder.and_(a, c), lambda s, a, c: s.builder.and_(a, c)),
    "bitwise_or": _binary(lambda s, a, c: s.builder.or_(a, c), lambda s, a, c: s.builder.or_(a, c)),
    "bitwise_xor": _binary(lambda s, a, c: s.builder.xor(a, c), lambda s, a, c: s.builder.xor(a, c)),
    **{name: _compare(op) for name, op in (("eq", "=="), ("ne", "!="), ("lt", "<"), ("le", "<="), ("gt", ">"),
                                           ("ge", ">="))},
    "where": lambda s, args, types, out, attrs: s.builder.select(*args),
    "cast": _cast,
    "detach": lambda s, args, types, out, attrs: args[0],
}


def register_rules() -> None:
    """Fill the registry's `scalar["llvm"]` slot of every elementwise op."""
    missing = [name for name, op in OPS.items() if op.kind == ELEMENTWISE and name not in RULES]
    assert not missing, f"no LLVM rule for elementwise ops {missing}"
    for name, rule in RULES.items():
        OPS[name].scalar["llvm"] = rule


register_rules()
