"""Loop nests to LLVM IR: the only file that builds LLVM IR (with mathlib, which it calls).

Every kernel becomes two functions in one module per graph:

    i32 @name(ptr %arrays, i64 %start, i64 %end)     ; what the runtime calls
    i32 @name.body(ptr noalias %p0, ..., i64 %start, i64 %end)   ; internal, always inlined

`%arrays` holds the addresses of the numpy array objects (Python `id`s); the entry reads each data
pointer from the array object (ARRAY_DATA_OFFSET, checked by the runtime at import) and calls the body,
whose `noalias` buffer pointers survive inlining as scoped alias metadata, so the loop vectorizer
needs no runtime overlap checks. `start`/`end` bound the kernel's parallel loop. The result is a
status: 0, or an error code (ERRORS) after which the runtime re-runs the step eagerly to raise the
exact error eager mode raises; kernels never trap (integer division guards its divisor).

Values live in registers as i1 (bool), i32, i64, float, double; bool is a byte in memory. Elementwise
ops are emitted by the `scalar["llvm"]` rules this module registers in the op registry; transcendental
functions are mathlib's inlined polynomial code, so hot loops contain no calls.

Float sums and products are reduced with `reassoc` adds/multiplies only: that lets LLVM keep several
vector accumulators (lanes x interleave), so results match eager within rounding, not bit for bit.
Float sums over rows longer than BLOCKED_ROWS sum each block of SUM_BLOCK in their dtype and add the block
sums in float64, which keeps their error at or below numpy's pairwise summation's however long the row:
within a block each vector lane adds only a few values in a row, so even a run of equal values, which
round the same way every time, cannot pile up error (a horizontal add and a float64 add per block cost
10-20% of a plain sum, which shorter rows, their lanes adding few values in a row anyway, do without). Column
sums (an accumulator per kept element, the reduced dim outside) add in float32 in order. Max/min
reductions (NaN-propagating `llvm.maximum`) and integer reductions are exact.
"""
from __future__ import annotations

import functools
import math
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from llvmlite import ir

from jitorch.codegen import mathlib
from jitorch.codegen.loopnest import (
    ARRAY_DATA_OFFSET, Accumulate, Affine, Const, Expr, Gather, IndexValue, Kernel, Load, Local, Loop, Random,
    Reduction, Store, identity)
from jitorch.ir import dtypes
from jitorch.ir.dtypes import DType
from jitorch.ir.ops import ELEMENTWISE, OPS

I1, I8, I32, I64 = ir.IntType(1), ir.IntType(8), ir.IntType(32), ir.IntType(64)
F32, F64 = ir.FloatType(), ir.DoubleType()
PTR = ir.PointerType()
SUM_BLOCK = 256  # float sums over rows longer than BLOCKED_ROWS add per-block sums in float64
BLOCKED_ROWS = 1024  # up to this, each vector lane adds at most 32 values in a row: no blocks needed
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


# ----------------------------------------------------------------------------------------------------
# kernels


@contextmanager
def _for_range(builder: ir.IRBuilder, start: ir.Value, stop: ir.Value, name: str) -> Iterator[ir.Value]:
    """A counted loop `for (i = start; i < stop; i++)` with an i64 induction variable."""
    before = builder.block
    function = builder.function
    header = function.append_basic_block(f"{name}.header")
    body = function.append_basic_block(f"{name}.body")
    done = function.append_basic_block(f"{name}.end")
    builder.branch(header)
    builder.position_at_end(header)
    index = builder.phi(I64, name=name)
    index.add_incoming(start, before)
    builder.cbranch(builder.icmp_signed("<", index, stop), body, done)
    builder.position_at_end(body)
    yield index
    following = builder.add(index, I64(1), flags=("nsw",))
    index.add_incoming(following, builder.block)
    builder.branch(header)
    builder.position_at_end(done)


def _prefer_vector_width(function: ir.Function, bits: int | None) -> None:
    """Ask the vectorizer for `bits`-wide vectors (LLVM's tuning for some AVX-512 CPUs prefers 256 bits,
    yet 512-bit code runs this file's transcendental-heavy loops about 1.4x faster there). llvmlite only
    accepts attribute names from a fixed list, so the string attribute joins the set directly."""
    if bits is not None:
        set.add(function.attributes, f'"prefer-vector-width"="{bits}"')


class _KernelBuilder:
    def __init__(self, module: ir.Module, kernel: Kernel, vector_bits: int | None) -> None:
        self.module = module
        self.kernel = kernel
        self.vector_bits = vector_bits

    def build(self) -> None:
        kernel = self.kernel
        passed = [p for p in kernel.params if p.role != "stack"]
        count = len(passed)
        body = ir.Function(self.module, ir.FunctionType(I32, [PTR] * count + [I64, I64]), f"{kernel.name}.body")
        body.linkage = "internal"
        body.attributes.add("alwaysinline")
        body.attributes.add("nounwind")
        _prefer_vector_width(body, self.vector_bits)
        for argument in body.args[:count]:
            argument.add_attribute("noalias")
        self.start, self.end = body.args[count:]
        entry = body.append_basic_block("entry")
        self.builder = builder = ir.IRBuilder(entry)
        arguments = iter(body.args[:count])
        self.pointers = []
        for param in kernel.params:  # stack rows: per call, so each thread has its own
            if param.role == "stack":
                row = builder.alloca(memory_type(param.dtype), size=I64(param.size))
                row.align = 64
                self.pointers.append(row)
            else:
                self.pointers.append(next(arguments))
        self.status = builder.alloca(I32, name="status")
        builder.store(I32(0), self.status)
        self.scalar = Scalar(builder, self.status)
        self.vars: dict[str, ir.Value] = {}
        self.locals: dict[str, ir.Value] = {}
        self.allocas: dict[str, tuple[ir.Value, ir.Value | None]] = {}
        self.partials: dict[str, ir.Value] = {}  # per-block float32 sums, inside _blocks
        self._loops(list(kernel.outer), self._stages)
        builder.ret(builder.load(self.status, typ=I32))
        self._entry(body)

    def _entry(self, body: ir.Function) -> None:
        entry = ir.Function(self.module, ir.FunctionType(I32, [PTR, I64, I64]), self.kernel.name)
        entry.attributes.add("nounwind")
        _prefer_vector_width(entry, self.vector_bits)
        builder = ir.IRBuilder(entry.append_basic_block("entry"))
        arrays, start, end = entry.args
        pointers = []
        for k in range(sum(1 for p in self.kernel.params if p.role != "stack")):
            address = builder.load(builder.gep(arrays, [I64(k)], inbounds=True, source_etype=I64), typ=I64, align=8)
            header = builder.inttoptr(address, PTR)
            field = builder.gep(header, [I64(ARRAY_DATA_OFFSET)], inbounds=True, source_etype=I8)
            pointers.append(builder.load(field, typ=PTR, align=8))
        builder.ret(builder.call(body, pointers + [start, end]))

    def _loops(self, loops: list[Loop], inside: Callable[[], None]) -> None:
        if not loops:
            inside()
            return
        loop, rest = loops[0], loops[1:]
        if loop.var == self.kernel.parallel:
            start, stop = self.start, self.end
        else:
            start, stop = I64(0), I64(loop.extent)
        with _for_range(self.builder, start, stop, loop.var) as index:
            self.vars[loop.var] = index
            self._loops(rest, inside)

    def _stages(self) -> None:
        for stage in self.kernel.stages:
            reductions = [s for s in stage.body if isinstance(s, Reduction)]
            long_rows = bool(stage.loops) and stage.loops[-1].extent > BLOCKED_ROWS
            blocked = {r.local for r in reductions if long_rows and r.op == "sum" and r.dtype.is_floating_point}
            for reduction in reductions:
                self._init_reduction(reduction, reduction.local in blocked)
            if blocked:
                *outer, last = stage.loops
                sums = [r for r in reductions if r.local in blocked]
                self._loops(outer, functools.partial(self._blocks, last, stage.body, sums))
            else:
                self._loops(list(stage.loops), lambda body=stage.body: self._body(body))
            for reduction in reductions:
                accumulator, position = self.allocas[reduction.local]
                if position is not None:
                    loaded = self.builder.load(position, typ=I64)
                elif reduction.local in blocked and reduction.dtype is dtypes.float32:
                    loaded = self.builder.fptrunc(self.builder.load(accumulator, typ=F64), F32)
                else:
                    loaded = self.builder.load(accumulator, typ=value_type(reduction.dtype))
                self.locals[reduction.local] = loaded

    def _blocks(self, loop: Loop, body: tuple, blocked: list[Reduction]) -> None:
        """The innermost loop of a stage with long float sums, in blocks of SUM_BLOCK: each block sums in
        partials of the sum's dtype (vectorized, reassociated), added to float64 totals after the block."""
        b = self.builder
        count = -(-loop.extent // SUM_BLOCK)
        with _for_range(b, I64(0), I64(count), f"{loop.var}.block") as block:
            for reduction in blocked:
                kind = value_type(reduction.dtype)
                if reduction.local not in self.partials:
                    self.partials[reduction.local] = self._alloca(kind)
                b.store(ir.Constant(kind, 0.0), self.partials[reduction.local])
            start = b.mul(block, I64(SUM_BLOCK))
            stop = b.add(start, I64(SUM_BLOCK))
            stop = b.select(b.icmp_signed("<", stop, I64(loop.extent)), stop, I64(loop.extent))
            with _for_range(b, start, stop, loop.var) as index:
                self.vars[loop.var] = index
                self._body(body)
            for reduction in blocked:
                total = self.allocas[reduction.local][0]
                partial = b.load(self.partials[reduction.local], typ=value_type(reduction.dtype))
                if reduction.dtype is dtypes.float32:
                    partial = b.fpext(partial, F64)
                b.store(b.fadd(b.load(total, typ=F64), partial), total)
        self.partials = {}

    def _alloca(self, ty: ir.Type) -> ir.Value:
        with self.builder.goto_entry_block():
            return self.builder.alloca(ty)

    def _init_reduction(self, reduction: Reduction, blocked: bool) -> None:
        source = dtypes.float64 if blocked else reduction.expr.dtype
        accumulator = self.allocas.get(reduction.local, (None, None))[0]
        if accumulator is None:
            accumulator = self._alloca(value_type(source))
            position = self._alloca(I64) if reduction.op in ("argmax", "argmin") else None
            self.allocas[reduction.local] = (accumulator, position)
        start = identity(reduction.op, source)
        self.builder.store(constant(start, source), accumulator)
        if self.allocas[reduction.local][1] is not None:
            self.builder.store(I64(0), self.allocas[reduction.local][1])

    def _body(self, statements: tuple) -> None:
        memo: dict[Expr, ir.Value] = {}
        b = self.builder
        for statement in statements:
            value = self._expr(statement.expr, memo)
            if isinstance(statement, Store):
                self._store(statement.param, statement.offset, statement.expr.dtype, value)
            elif isinstance(statement, Accumulate):
                dtype = statement.expr.dtype
                pointer = self._address(statement.param, statement.offset, dtype)
                current = self._load_from(pointer, dtype)
                self._store_to(pointer, dtype, _combine(self.scalar, statement.op, current, value, dtype))
            else:
                accumulator, position = self.allocas[statement.local]
                accumulator = self.partials.get(statement.local, accumulator)
                dtype = statement.expr.dtype
                current = b.load(accumulator, typ=value_type(dtype))
                if position is None:
                    b.store(_combine(self.scalar, statement.op, current, value, dtype), accumulator)
                    continue
                better = _arg_better(self.scalar, statement.op, value, current, dtype)
                b.store(b.select(better, value, current), accumulator)
                where = self._index(statement.position)
                b.store(b.select(better, where, b.load(position, typ=I64)), position)

    # values --------------------------------------------------------------------------------------------

    def _gather(self, expr: Gather, memo: dict[Expr, ir.Value]) -> ir.Value:
        """A load at a checked data-dependent offset: a bad index reports error 4 and reads element 0 of
        its dim instead (an empty dim reads nothing), so the load itself is always in bounds."""
        b = self.builder
        if any(size == 0 for _, _, size, _ in expr.terms):
            self.scalar.fail_if(I1(1), 4)
            return constant(0, expr.dtype)
        total = self._index(expr.offset)
        for index, stride, size, wraps in expr.terms:
            position = self._expr(index, memo)
            if position.type.width < 64:
                position = b.sext(position, I64)
            if wraps:
                position = b.select(b.icmp_signed("<", position, I64(0)), b.add(position, I64(size)), position)
            bad = b.icmp_unsigned(">=", position, I64(size))  # negative ones too, as unsigned
            self.scalar.fail_if(bad, 4)
            total = b.add(total, b.mul(b.select(bad, I64(0), position), I64(stride)))
        pointer = b.gep(self.pointers[expr.param], [total], inbounds=True, source_etype=memory_type(expr.dtype))
        return self._load_from(pointer, expr.dtype)

    def _index(self, index: Affine) -> ir.Value:
        b = self.builder
        total: ir.Value = I64(index.const)
        for atom, c in index.terms:
            if isinstance(atom, str):
                term = self.vars[atom]
            else:
                inner = self._index(atom.inner)
                term = (b.udiv if atom.kind == "div" else b.urem)(inner, I64(atom.divisor))
            total = b.add(total, term if c == 1 else b.mul(term, I64(c)))
        return total

    def _address(self, param: int, offset: Affine, dtype: DType) -> ir.Value:
        return self.builder.gep(self.pointers[param], [self._index(offset)], inbounds=True,
                                source_etype=memory_type(dtype))

    def _load_from(self, pointer: ir.Value, dtype: DType) -> ir.Value:
        value = self.builder.load(pointer, typ=memory_type(dtype), align=dtype.itemsize)
        return self.builder.icmp_unsigned("!=", value, I8(0)) if dtype.is_bool else value

    def _store_to(self, pointer: ir.Value, dtype: DType, value: ir.Value) -> None:
        if dtype.is_bool:
            value = self.builder.zext(value, I8)
        self.builder.store(value, pointer, align=dtype.itemsize)

    def _store(self, param: int, offset: Affine, dtype: DType, value: ir.Value) -> None:
        self._store_to(self._address(param, offset, dtype), dtype, value)

    def _expr(self, expr: Expr, memo: dict[Expr, ir.Value]) -> ir.Value:
        found = memo.get(expr)
        if found is not None:
            return found
        if isinstance(expr, Const):
            value = constant(expr.value, expr.dtype)
        elif isinstance(expr, Load):
            value = self._load_from(self._address(expr.param, expr.offset, expr.dtype), expr.dtype)
        elif isinstance(expr, Gather):
            value = self._gather(expr, memo)
        elif isinstance(expr, Local):
            value = self.locals[expr.name]
        elif isinstance(expr, IndexValue):
            value = self._index(expr.index)
        elif isinstance(expr, Random):
            value = _random(self.scalar, expr.kind, self._expr(expr.seed, memo), self._index(expr.counter), expr.dtype)
        else:
            args = [self._expr(a, memo) for a in expr.args]
            rule = OPS[expr.op].scalar["llvm"]
            value = rule(self.scalar, args, [a.dtype for a in expr.args], expr.dtype, dict(expr.attrs))
        memo[expr] = value
        return value


def _combine(s: Scalar, op: str, current: ir.Value, value: ir.Value, dtype: DType) -> ir.Value:
    """One step of reduction `op`; float sums and products may be reassociated (see the docstring)."""
    b = s.builder
    if dtype.is_floating_point:
        if op == "sum":
            return b.fadd(current, value, flags=("reassoc",))
        if op == "prod":
            return b.fmul(current, value, flags=("reassoc",))
        return s.intrinsic("llvm.maximum" if op == "amax" else "llvm.minimum", current, value)
    if dtype.is_bool:
        return b.or_(current, value) if op in ("amax", "sum") else b.and_(current, value)
    if op == "sum":
        return b.add(current, value)
    if op == "prod":
        return b.mul(current, value)
    return b.select(b.icmp_signed(">" if op == "amax" else "<", value, current), value, current)


def _arg_better(s: Scalar, op: str, value: ir.Value, best: ir.Value, dtype: DType) -> ir.Value:
    """Whether `value` replaces `best` in argmax/argmin: strictly better, or the first nan (numpy's rule)."""
    b, symbol = s.builder, ">" if op == "argmax" else "<"
    if dtype.is_floating_point:
        first_nan = b.and_(s.is_nan(value), b.not_(s.is_nan(best)))
        return b.or_(b.fcmp_ordered(symbol, value, best), first_nan)
    if dtype.is_bool:
        return b.icmp_unsigned(symbol, value, best)
    return b.icmp_signed(symbol, value, best)


# random numbers: ops.random_bits / uniform_from_bits / _rand_normal, in 64-bit modular arithmetic

def _random_bits(s: Scalar, seed: ir.Value, counter: ir.Value) -> ir.Value:
    b = s.builder
    z = b.add(b.add(b.mul(seed, I64(0xD1B54A32D192ED03)), counter), I64(0x9E3779B97F4A7C15))
    z = b.mul(b.xor(z, b.lshr(z, I64(30))), I64(0xBF58476D1CE4E5B9))
    z = b.mul(b.xor(z, b.lshr(z, I64(27))), I64(0x94D049BB133111EB))
    return b.xor(z, b.lshr(z, I64(31)))


def _uniform(s: Scalar, bits: ir.Value, dtype: DType) -> ir.Value:
    b = s.builder
    if dtype is dtypes.float64:
        return b.fmul(b.uitofp(b.lshr(bits, I64(11)), F64), F64(2.0 ** -53))
    return b.fmul(b.uitofp(b.lshr(bits, I64(40)), F32), F32(2.0 ** -24))


def _random(s: Scalar, kind: str, seed: ir.Value, counter: ir.Value, dtype: DType) -> ir.Value:
    if kind == "uniform":
        return _uniform(s, _random_bits(s, seed, counter), dtype)
    b = s.builder
    u1 = b.fsub(F64(1.0), _uniform(s, _random_bits(s, seed, counter), dtypes.float64))
    u2 = _uniform(s, _random_bits(s, seed, b.add(counter, I64(1 << 62))), dtypes.float64)
    radius = s.intrinsic("llvm.sqrt", b.fmul(F64(-2.0), s.math("log", u1)))
    value = b.fmul(radius, s.math("cos", b.fmul(F64(2.0 * math.pi), u2)))
    return value if dtype is dtypes.float64 else b.fptrunc(value, F32)


def build_module(name: str, kernels: list[Kernel], vector_bits: int | None = None) -> str:
    """The LLVM IR text of a module defining every kernel (entry points named by `Kernel.name`), with
    loops vectorized `vector_bits` wide when given (else as the target machine prefers)."""
    module = ir.Module(name=name)
    for kernel in kernels:
        _KernelBuilder(module, kernel, vector_bits).build()
    return str(module)

