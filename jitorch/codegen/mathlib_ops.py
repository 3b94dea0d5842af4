"""IR-building shorthands for mathlib: the float formats (`F32`, `F64`) and `_Ops`, an IRBuilder wrapper
for branch-free math in one format (float arithmetic, ordered comparisons, bit tricks, Horner polynomials,
exact two-sums). The functions built with it are in `mathlib`.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from llvmlite import ir

Operand = ir.Value | float


@dataclass(frozen=True)
class _Format:
    """What the math depends on in a float type."""

    short: str
    type: ir.Type
    int_type: ir.IntType
    mantissa_bits: int
    bias: int

    def __getitem__(self, table: dict[str, object]) -> object:
        return table[self.short]


F32 = _Format("f32", ir.FloatType(), ir.IntType(32), 23, 127)
F64 = _Format("f64", ir.DoubleType(), ir.IntType(64), 52, 1023)


class _Ops:
    """IRBuilder shorthands for branch-free math in one float format; Python floats become constants."""

    def __init__(self, builder: ir.IRBuilder, fmt: _Format) -> None:
        self.builder = builder
        self.fmt = fmt

    def const(self, value: Operand) -> ir.Value:
        return value if isinstance(value, ir.Value) else ir.Constant(self.fmt.type, float(value))

    def int(self, value: ir.Value | int) -> ir.Value:
        return value if isinstance(value, ir.Value) else ir.Constant(self.fmt.int_type, value)

    # Float arithmetic
    def add(self, a: Operand, b: Operand) -> ir.Value:
        return self.builder.fadd(self.const(a), self.const(b))

    def sub(self, a: Operand, b: Operand) -> ir.Value:
        return self.builder.fsub(self.const(a), self.const(b))

    def mul(self, a: Operand, b: Operand) -> ir.Value:
        return self.builder.fmul(self.const(a), self.const(b))

    def div(self, a: Operand, b: Operand) -> ir.Value:
        return self.builder.fdiv(self.const(a), self.const(b))

    def neg(self, a: ir.Value) -> ir.Value:
        return self.builder.fneg(a)

    def fma(self, a: Operand, b: Operand, c: Operand) -> ir.Value:
        """a·b + c, rounded once."""
        return self._intrinsic("llvm.fma", a, b, c)

    def abs(self, a: ir.Value) -> ir.Value:
        return self._intrinsic("llvm.fabs", a)

    def floor(self, a: ir.Value) -> ir.Value:
        return self._intrinsic("llvm.floor", a)

    def rint(self, a: ir.Value) -> ir.Value:
        """Round to the nearest integer, ties to even."""
        return self._intrinsic("llvm.rint", a)

    def sqrt(self, a: ir.Value) -> ir.Value:
        return self._intrinsic("llvm.sqrt", a)

    def copysign(self, magnitude: Operand, sign: ir.Value) -> ir.Value:
        return self._intrinsic("llvm.copysign", magnitude, sign)

    def _intrinsic(self, name: str, *args: Operand) -> ir.Value:
        ty = self.fmt.type
        function = self.builder.module.declare_intrinsic(name, [ty], ir.FunctionType(ty, [ty] * len(args)))
        return self.builder.call(function, [self.const(arg) for arg in args])

    # Comparisons: ordered ones are false when an operand is nan
    def lt(self, a: Operand, b: Operand) -> ir.Value:
        return self.builder.fcmp_ordered("<", self.const(a), self.const(b))

    def le(self, a: Operand, b: Operand) -> ir.Value:
        return self.builder.fcmp_ordered("<=", self.const(a), self.const(b))

    def eq(self, a: Operand, b: Operand) -> ir.Value:
        return self.builder.fcmp_ordered("==", self.const(a), self.const(b))

    def ne(self, a: Operand, b: Operand) -> ir.Value:
        return self.builder.fcmp_ordered("!=", self.const(a), self.const(b))

    def ge(self, a: Operand, b: Operand) -> ir.Value:
        return self.builder.fcmp_ordered(">=", self.const(a), self.const(b))

    def is_nan(self, a: ir.Value) -> ir.Value:
        return self.builder.fcmp_unordered("uno", a, a)

    def select(self, condition: ir.Value, a: Operand, b: Operand) -> ir.Value:
        return self.builder.select(condition, self.const(a), self.const(b))

    def clamp(self, x: ir.Value, low: float, high: float) -> ir.Value:
        """x limited to [low, high]; nan becomes `low`, so the integer code after it stays defined."""
        at_least_low = self.select(self.lt(low, x), x, low)
        return self.select(self.lt(at_least_low, high), at_least_low, high)

    # Integers of the format's width, and the bits of floats
    def bits(self, x: ir.Value) -> ir.Value:
        return self.builder.bitcast(x, self.fmt.int_type)

    def from_bits(self, i: ir.Value) -> ir.Value:
        return self.builder.bitcast(i, self.fmt.type)

    def to_int(self, x: ir.Value) -> ir.Value:
        return self.builder.fptosi(x, self.fmt.int_type)

    def to_float(self, i: ir.Value) -> ir.Value:
        return self.builder.sitofp(i, self.fmt.type)

    def iadd(self, a: ir.Value | int, b: ir.Value | int) -> ir.Value:
        return self.builder.add(self.int(a), self.int(b))

    def isub(self, a: ir.Value | int, b: ir.Value | int) -> ir.Value:
        return self.builder.sub(self.int(a), self.int(b))

    def iand(self, a: ir.Value | int, b: ir.Value | int) -> ir.Value:
        return self.builder.and_(self.int(a), self.int(b))

    def shl(self, a: ir.Value | int, b: ir.Value | int) -> ir.Value:
        return self.builder.shl(self.int(a), self.int(b))

    def ashr(self, a: ir.Value | int, b: ir.Value | int) -> ir.Value:
        return self.builder.ashr(self.int(a), self.int(b))

    # Building blocks
    def poly(self, x: ir.Value, coefficients: Sequence[Operand]) -> ir.Value:
        """c0 + x·(c1 + x·(c2 + …)) by Horner's rule with FMA."""
        result = self.const(coefficients[-1])
        for coefficient in reversed(coefficients[:-1]):
            result = self.fma(result, x, coefficient)
        return result

    def pow2(self, k: ir.Value) -> ir.Value:
        """2^k for an integer k in the normal exponent range, built from its bits."""
        return self.from_bits(self.shl(self.iadd(k, self.fmt.bias), self.fmt.mantissa_bits))

    def ldexp(self, x: ir.Value, k: ir.Value) -> ir.Value:
        """x·2^k for |k| up to twice the exponent range, rounding once, into subnormals if need be."""
        half = self.ashr(k, 1)
        return self.mul(self.mul(x, self.pow2(half)), self.pow2(self.isub(k, half)))

    def two_sum(self, a: ir.Value, b: ir.Value) -> tuple[ir.Value, ir.Value]:
        """(s, e) with s = fl(a + b) and s + e = a + b exactly (Knuth)."""
        s = self.add(a, b)
        b_virtual = self.sub(s, a)
        e = self.add(self.sub(a, self.sub(s, b_virtual)), self.sub(b, b_virtual))
        return s, e

    def fast_two_sum(self, a: ir.Value, b: Operand) -> tuple[ir.Value, ir.Value]:
        """(s, e) with s + e = a + b exactly, given |a| >= |b| (Dekker)."""
        s = self.add(a, b)
        return s, self.sub(b, self.sub(s, a))
