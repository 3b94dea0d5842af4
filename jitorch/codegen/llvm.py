"""Loop nests to LLVM IR: kernels, their loops and reductions (with llvm_scalar.py for the element of each op
and mathlib for transcendental functions, the only other files that build LLVM IR).

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
ops are emitted by the `scalar["llvm"]` rules llvm_scalar.py registers in the op registry; transcendental
functions are mathlib's inlined polynomial code, so hot loops contain no calls.

Float sums and products are reduced with `reassoc` adds/multiplies only: that lets LLVM keep several
vector accumulators (lanes x interleave), so results match eager within rounding, not bit for bit.
Float sums over rows longer than BLOCKED_ROWS (counting every loop of the stage) sum each block of SUM_BLOCK
(a run of the innermost loop at most) in their dtype and add the block sums in float64, which keeps their
error at or below numpy's pairwise summation's however long the row:
within a block each vector lane adds only a few values in a row, so even a run of equal values, which
round the same way every time, cannot pile up error (a horizontal add and a float64 add per block cost
10-20% of a plain sum, which shorter rows, their lanes adding few values in a row anyway, do without). Float32
sums of at most SHORT_SUMS values add in float64: LLVM unrolls such loops rather than vectorizing them, which
would add their values one after another. Column
sums (an accumulator per kept element, the reduced dim outside) add in float32 in order. Max/min
reductions (NaN-propagating `llvm.maximum`) and integer reductions are exact.
"""
from __future__ import annotations

import functools
import math
from contextlib import contextmanager
from typing import Callable, Iterator

from llvmlite import ir

from jitorch.codegen.loopnest import (
    ARRAY_DATA_OFFSET, Accumulate, Affine, Apply, Const, Expr, Gather, IndexValue, Kernel, Load, Local, Loop,
    Random, Reduction, Store, identity)
from jitorch.codegen.llvm_scalar import F32, F64, I1, I8, I32, I64, PTR, Scalar, constant, memory_type, value_type
from jitorch.ir import dtypes
from jitorch.ir.dtypes import DType
from jitorch.ir.ops import OPS

SUM_BLOCK = 256  # float sums over rows longer than BLOCKED_ROWS add per-block sums in float64
SHORT_SUMS = 128  # float32 sums over at most this many values add in float64 (LLVM unrolls, not vectorizes)
BLOCKED_ROWS = 1024  # up to this, each vector lane adds at most 32 values in a row: no blocks needed


# ----------------------------------------------------------------------------------------------------
# kernels


INTERLEAVE = 4  # vector iterations an innermost loop runs side by side (llvm.loop.interleave.count)


class _LoopID(ir.values.MDValue):
    """A loop's `!llvm.loop` node, which LLVM wants distinct and naming itself first."""

    def descr(self, buf: list[str]) -> None:
        options = ", ".join(option.get_reference() for option in self.operands)
        buf += (f"distinct !{{ {self.get_reference()}, {options} }}", "\n")


def _interleaved(module: ir.Module) -> _LoopID:
    """A loop ID asking the vectorizer to interleave INTERLEAVE vector iterations. Its cost model picks 1
    for loops with long math bodies (exp's polynomial), whose latency then stalls each iteration; four
    independent chains run a tanh-GELU loop 1.6x faster (in cache) and cost nothing on short bodies,
    which it interleaves by four anyway."""
    option = module.add_metadata(["llvm.loop.interleave.count", I32(INTERLEAVE)])
    return _LoopID(module, [option], name=str(len(module.metadata)))


@contextmanager
def _for_range(builder: ir.IRBuilder, start: ir.Value, stop: ir.Value, name: str,
               hint: Callable[[], ir.MDValue | None] = lambda: None) -> Iterator[ir.Value]:
    """A counted loop `for (i = start; i < stop; i++)` with an i64 induction variable; `hint()`, called
    once the body is built, gives the back edge's `llvm.loop` metadata (None: none)."""
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
    back_edge = builder.branch(header)
    loop_id = hint()
    if loop_id is not None:
        back_edge.set_metadata("llvm.loop", loop_id)
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
        self.wide: set[str] = set()  # float32 sums of the current stage adding in float64
        self.open_loops: list[bool] = []  # per open loop: no loop inside it yet
        self.maxima: dict[str, tuple[Expr, tuple[Loop, ...]]] = {}  # float amax locals: (what, over which loops)
        self.stage_loops: tuple[Loop, ...] = ()
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
        with self._range(start, stop, loop.var) as index:
            self.vars[loop.var] = index
            self._loops(rest, inside)

    @contextmanager
    def _range(self, start: ir.Value, stop: ir.Value, name: str) -> Iterator[ir.Value]:
        """A loop of the kernel; innermost loops (no loop inside) are interleaved (`_interleaved`)."""
        if self.open_loops:
            self.open_loops[-1] = False
        self.open_loops.append(True)
        try:
            with _for_range(self.builder, start, stop, name, self._innermost_hint) as index:
                yield index
        finally:
            self.open_loops.pop()

    def _innermost_hint(self) -> ir.MDValue | None:
        return _interleaved(self.module) if self.open_loops[-1] else None

    def _stages(self) -> None:
        for stage in self.kernel.stages:
            self.stage_loops = stage.loops
            reductions = [s for s in stage.body if isinstance(s, Reduction)]
            # what one accumulator adds up: every loop of the stage (a reduction over dims that did not
            # merge into one loop, `where(mask[j], a, x[i, j]).sum()`, runs several)
            count = math.prod(loop.extent for loop in stage.loops)
            sums = [r for r in reductions if r.op == "sum" and r.dtype.is_floating_point]
            blocked = {r.local for r in sums} if count > BLOCKED_ROWS else set()
            # LLVM unrolls short loops fully instead of vectorizing them: their float32 sums would add one
            # value after another (64 x 0.4: 8 ulp off, numpy 1), so they add in float64 instead
            self.wide = {r.local for r in sums if r.expr.dtype is dtypes.float32} if count <= SHORT_SUMS else set()
            for reduction in reductions:
                self._init_reduction(reduction, reduction.local in blocked or reduction.local in self.wide)
            if blocked:
                *outer, last = stage.loops
                self._loops(outer, functools.partial(self._blocks, last, stage.body, sums))
            else:
                self._loops(list(stage.loops), lambda body=stage.body: self._body(body))
            for reduction in reductions:
                if reduction.op == "amax" and reduction.dtype.is_floating_point:
                    self.maxima[reduction.local] = (reduction.expr, stage.loops)
                accumulator, position = self.allocas[reduction.local]
                if position is not None:
                    loaded = self.builder.load(position, typ=I64)
                elif reduction.local in blocked | self.wide and reduction.dtype is dtypes.float32:
                    loaded = self.builder.fptrunc(self.builder.load(accumulator, typ=F64), F32)
                else:
                    loaded = self.builder.load(accumulator, typ=value_type(reduction.dtype))
                self.locals[reduction.local] = loaded

    def _blocks(self, loop: Loop, body: tuple, blocked: list[Reduction]) -> None:
        """The innermost loop of a stage with long float sums, in blocks of SUM_BLOCK: each block sums in
        partials of the sum's dtype (vectorized, reassociated), added to float64 totals after the block."""
        b = self.builder
        count = -(-loop.extent // SUM_BLOCK)
        with self._range(I64(0), I64(count), f"{loop.var}.block") as block:
            for reduction in blocked:
                kind = value_type(reduction.dtype)
                if reduction.local not in self.partials:
                    self.partials[reduction.local] = self._alloca(kind)
                b.store(ir.Constant(kind, 0.0), self.partials[reduction.local])
            start = b.mul(block, I64(SUM_BLOCK))
            stop = b.add(start, I64(SUM_BLOCK))
            stop = b.select(b.icmp_signed("<", stop, I64(loop.extent)), stop, I64(loop.extent))
            with self._range(start, stop, loop.var) as index:
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
                if statement.local in self.wide:  # a short float32 sum, added in float64
                    value, dtype = b.fpext(value, F64), dtypes.float64
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
        elif expr.op == "exp" and self._nonpositive(expr.args[0]):
            value = self.scalar.math("exp_nonpositive", self._expr(expr.args[0], memo))
        else:
            args = [self._expr(a, memo) for a in expr.args]
            rule = OPS[expr.op].scalar["llvm"]
            value = rule(self.scalar, args, [a.dtype for a in expr.args], expr.dtype, dict(expr.attrs))
        memo[expr] = value
        return value

    def _nonpositive(self, expr: Expr) -> bool:
        """Whether a float `expr` is never positive (or nan): x - max(x), with the max taken over the loops
        this stage runs, as softmax, log_softmax and cross-entropy have. Its exp is a cheaper one."""
        if not (isinstance(expr, Apply) and expr.op == "sub" and expr.dtype.is_floating_point):
            return False
        value, peak = expr.args
        return isinstance(peak, Local) and self.maxima.get(peak.name) == (value, self.stage_loops)


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

