"""The kernel description between a fused group and LLVM IR: loops, index maps, scalar expressions, stages.

A `Kernel` runs `outer` loops (the rows; the first one may be split across threads) and, for each outer
point, a sequence of `Stage`s, each an inner loop nest over its own `loops` with a body of statements:

- `Reduction`: folds an expression into a per-row scalar (`Local`) that later stages read;
- `Store`: writes an expression to an output buffer;
- `Accumulate`: folds an expression into a buffer element (column reductions: the accumulator is an
  array over the kept dims, and the reduced loop runs outside the kept one so accesses stay contiguous).

Buffers are flat and contiguous; every buffer access is an `Affine` offset in the loop variables. Index
maps of movement ops compose into these offsets: expand is a zero coefficient, permute reorders
coefficients, slicing adds a constant and scales, flip is a negative coefficient, and a reshape of
contiguous data keeps the flat offset. A reshape the algebra cannot express affinely becomes a `DivMod`
atom (an exact floor division or remainder by a constant), so every map is representable.

`format_kernel` prints a kernel as pseudo-C (the `kernels` dump):

    kernel e_64x128_add_relu(f32 out0[8192], f32 in0[8192], f32 in1[128])   parallel i0
      for i0 in [start, end) (64):
        for i1 in 0..128:
          out0[128*i0 + i1] = relu(add(in0[128*i0 + i1], in1[i1]))
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Union

from jitorch.ir.dtypes import DType

# The kernel ABI: the entry reads each buffer's data pointer at this offset of its numpy array object
# (offsetof(PyArrayObject, data) on 64-bit CPython: after ob_refcnt and ob_type), and returns 0 or an OR
# of these error codes.
ARRAY_DATA_OFFSET = 16
ERRORS = {1: "integer division by zero", 2: "integer to a negative power", 4: "index out of range"}


# ----------------------------------------------------------------------------------------------------
# index algebra


@dataclass(frozen=True)
class DivMod:
    """`inner // divisor` ("div") or `inner % divisor` ("mod"), for an `inner` that is never negative."""

    kind: str
    inner: Affine
    divisor: int

    def __str__(self) -> str:
        return f"({self.inner}){'/' if self.kind == 'div' else '%'}{self.divisor}"


Atom = Union[str, DivMod]


def _atom_key(atom: Atom) -> tuple[int, str]:
    return (0, atom) if isinstance(atom, str) else (1, str(atom))


@dataclass(frozen=True)
class Affine:
    """`const + sum(coefficient * atom)`: an index in loop variables (atoms are variable names or DivMods)."""

    terms: tuple[tuple[Atom, int], ...] = ()
    const: int = 0

    @staticmethod
    def of(atom: Atom) -> Affine:
        return Affine(((atom, 1),))

    @staticmethod
    def _make(coefficients: dict[Any, int], const: int) -> Affine:
        terms = tuple(sorted(((a, c) for a, c in coefficients.items() if c != 0), key=lambda t: _atom_key(t[0])))
        return Affine(terms, const)

    def __add__(self, other: Affine | int) -> Affine:
        if isinstance(other, int):
            return Affine(self.terms, self.const + other)
        coefficients = dict(self.terms)
        for atom, c in other.terms:
            coefficients[atom] = coefficients.get(atom, 0) + c
        return Affine._make(coefficients, self.const + other.const)

    def __mul__(self, k: int) -> Affine:
        if k == 0:
            return Affine()
        return Affine(tuple((a, c * k) for a, c in self.terms), self.const * k)

    def coefficient(self, atom: Atom) -> int:
        return dict(self.terms).get(atom, 0)

    def variables(self) -> set[str]:
        found: set[str] = set()
        for atom, _ in self.terms:
            if isinstance(atom, str):
                found.add(atom)
            else:
                found |= atom.inner.variables()
        return found

    def is_constant(self) -> bool:
        return not self.terms

    def __str__(self) -> str:
        parts = [(str(atom) if c == 1 else f"{c}*{atom}") for atom, c in self.terms]
        if self.const or not parts:
            parts.append(str(self.const))
        return " + ".join(parts).replace("+ -", "- ")


def bounds(index: Affine, extents: dict[str, int]) -> tuple[int, int]:
    """Inclusive lower and upper bounds of `index` with each variable v in [0, extents[v])."""
    low = high = index.const
    for atom, c in index.terms:
        if isinstance(atom, str):
            a_low, a_high = 0, max(extents[atom] - 1, 0)
        else:
            inner_low, inner_high = bounds(atom.inner, extents)
            if atom.kind == "div":
                a_low, a_high = inner_low // atom.divisor, inner_high // atom.divisor
            else:
                a_low, a_high = (inner_low, inner_high) if 0 <= inner_low and inner_high < atom.divisor \
                    else (0, atom.divisor - 1)
        low, high = (low + c * a_low, high + c * a_high) if c > 0 else (low + c * a_high, high + c * a_low)
    return low, high


def divmod_index(index: Affine, divisor: int, extents: dict[str, int]) -> tuple[Affine, Affine]:
    """(index // divisor, index % divisor) for a non-negative index, affine where the split is exact."""
    if divisor == 1:
        return index, Affine()
    quotient: dict[Any, int] = {}
    remainder: dict[Any, int] = {}
    for atom, c in index.terms:
        if c % divisor == 0:
            quotient[atom] = c // divisor
        else:
            remainder[atom] = c
    rest = Affine._make(remainder, index.const % divisor)
    low, high = bounds(rest, extents)
    if 0 <= low and high < divisor:
        return Affine._make(quotient, index.const // divisor), rest
    low, high = bounds(index, extents)
    if 0 <= low and high < divisor:
        return Affine(), index
    return Affine.of(DivMod("div", index, divisor)), Affine.of(DivMod("mod", index, divisor))


def ravel(coords: tuple[Affine, ...], shape: tuple[int, ...]) -> Affine:
    """The flat offset of `coords` in a contiguous array of `shape`."""
    offset, stride = Affine(), 1
    for coord, size in zip(reversed(coords), reversed(shape)):
        offset = offset + coord * stride
        stride *= size
    return offset


def unravel(offset: Affine, shape: tuple[int, ...], extents: dict[str, int]) -> tuple[Affine, ...]:
    """The coordinates of flat `offset` in a contiguous array of `shape` (an empty array has no element
    to find: its loops never run, and any coordinates do)."""
    if 0 in shape:
        return tuple(Affine() for _ in shape)
    coords: list[Affine] = []
    for size in reversed(shape):
        if size == 1:
            coords.append(Affine())
            continue
        offset, coordinate = divmod_index(offset, size, extents)
        coords.append(coordinate)
    return tuple(reversed(coords))


def substitute(index: Affine, mapping: dict[str, Affine], extents: dict[str, int]) -> Affine:
    """`index` with variables replaced by affine expressions (extents are those of the new variables)."""
    out = Affine((), index.const)
    for atom, c in index.terms:
        if isinstance(atom, str):
            out = out + (mapping[atom] if atom in mapping else Affine.of(atom)) * c
        else:
            inner = substitute(atom.inner, mapping, extents)
            quotient, remainder = divmod_index(inner, atom.divisor, extents)
            out = out + (quotient if atom.kind == "div" else remainder) * c
    return out


# ----------------------------------------------------------------------------------------------------
# scalar expressions


@dataclass(frozen=True)
class Const:
    value: bool | int | float
    dtype: DType


@dataclass(frozen=True)
class Load:
    param: int  # index into Kernel.params
    offset: Affine
    dtype: DType


@dataclass(frozen=True)
class Gather:
    """A load at an offset that depends on data: `offset` plus, per term (index, stride, size, wraps),
    stride times the index value, checked against [0, size) after adding size to a negative one when
    `wraps` (an index op's negative indices); an index out of range reads element 0 and reports an error."""

    param: int
    offset: Affine
    terms: tuple[tuple[Expr, int, int, bool], ...]
    dtype: DType


@dataclass(frozen=True)
class Local:
    """A per-row scalar: the result of a `Reduction` in an earlier stage of the same outer point."""

    name: str
    dtype: DType


@dataclass(frozen=True)
class Apply:
    """An elementwise op from the registry applied to scalar operands; attrs as sorted (key, value) pairs."""

    op: str
    args: tuple[Expr, ...]
    attrs: tuple[tuple[str, Any], ...]
    dtype: DType


@dataclass(frozen=True)
class IndexValue:
    """A loop index expression as an int64 value (arange, argmax positions)."""

    index: Affine
    dtype: DType


@dataclass(frozen=True)
class Random:
    """Element `counter` of the counter-based generator for `seed`: ops.random_bits/uniform_from_bits."""

    kind: str  # "uniform" | "normal"
    seed: Expr
    counter: Affine
    dtype: DType


Expr = Union[Const, Load, Gather, Local, Apply, IndexValue, Random]


def map_affines(expr: Expr, fn: Callable[[Affine], Affine]) -> Expr:
    """`expr` with every index in it replaced by `fn(index)`."""
    kind = type(expr)
    if kind is Load:
        return Load(expr.param, fn(expr.offset), expr.dtype)
    if kind is Apply:
        return Apply(expr.op, tuple(map_affines(a, fn) for a in expr.args), expr.attrs, expr.dtype)
    if kind is IndexValue:
        return IndexValue(fn(expr.index), expr.dtype)
    if kind is Random:
        return Random(expr.kind, map_affines(expr.seed, fn), fn(expr.counter), expr.dtype)
    if kind is Gather:
        terms = tuple((map_affines(index, fn), stride, size, wraps) for index, stride, size, wraps in expr.terms)
        return Gather(expr.param, fn(expr.offset), terms, expr.dtype)
    return expr


def affines(expr: Expr) -> list[Affine]:
    """Every index used in `expr`."""
    found: list[Affine] = []
    map_affines(expr, lambda index: found.append(index) or index)
    return found


def identity(op: str, dtype: DType) -> bool | int | float:
    """The value reduction `op` starts from (argmax/argmin: the best value so far starts there too)."""
    op = {"argmax": "amax", "argmin": "amin"}.get(op, op)
    if op in ("sum", "prod"):
        one = op == "prod"
        return one if dtype.is_bool else int(one) if dtype.is_integer else float(one)
    low = op == "amax"
    if dtype.is_bool:
        return not low
    if dtype.is_integer:
        bits = dtype.itemsize * 8 - 1
        return -(1 << bits) if low else (1 << bits) - 1
    return float("-inf") if low else float("inf")


# ----------------------------------------------------------------------------------------------------
# statements, stages, kernels


@dataclass(frozen=True)
class Loop:
    var: str
    extent: int


@dataclass(frozen=True)
class Reduction:
    """`local = op over the stage's loops of expr`; argmax/argmin also track `position` (the reduced index)."""

    local: str
    op: str
    expr: Expr
    dtype: DType  # the result's dtype (int64 for argmax/argmin)
    position: Affine | None = None


@dataclass(frozen=True)
class Store:
    param: int
    offset: Affine
    expr: Expr


@dataclass(frozen=True)
class Accumulate:
    """`param[offset] = op(param[offset], expr)`: a reduction into an array accumulator."""

    param: int
    offset: Affine
    op: str
    expr: Expr


Statement = Union[Reduction, Store, Accumulate]


@dataclass(frozen=True)
class Stage:
    loops: tuple[Loop, ...]
    body: tuple[Statement, ...]


@dataclass(frozen=True)
class Param:
    """A buffer argument: `role` is "in", "out", "inout" (an input the output overwrites, element by element)
    or "scratch" (allocated by the runtime, lives one step)."""

    name: str
    dtype: DType
    size: int
    role: str


@dataclass(frozen=True)
class Kernel:
    name: str
    params: tuple[Param, ...]
    outer: tuple[Loop, ...]
    stages: tuple[Stage, ...]
    # the variable whose loop runs over [start, end) instead of [0, extent): threads get disjoint ranges
    parallel: str | None = None
    parallel_extent: int = 1
    elements: int = 0  # iterations of the innermost bodies, summed over stages: the work estimate
    in_place: bool = False  # the output is written over the step's `in_place` input (its "inout" param)
    notes: tuple[str, ...] = field(default=())

    def extents(self) -> dict[str, int]:
        found = {loop.var: loop.extent for loop in self.outer}
        for stage in self.stages:
            found.update({loop.var: loop.extent for loop in stage.loops})
        return found


def map_statement(statement: Statement, fn: Callable[[Affine], Affine]) -> Statement:
    """`statement` with every index in it replaced by `fn(index)`."""
    expr = map_affines(statement.expr, fn)
    if isinstance(statement, Reduction):
        position = fn(statement.position) if statement.position is not None else None
        return Reduction(statement.local, statement.op, expr, statement.dtype, position)
    if isinstance(statement, Store):
        return Store(statement.param, fn(statement.offset), expr)
    return Accumulate(statement.param, fn(statement.offset), statement.op, expr)


def statement_affines(statement: Statement) -> list[Affine]:
    found: list[Affine] = []
    map_statement(statement, lambda index: found.append(index) or index)
    return found


# ----------------------------------------------------------------------------------------------------
# pseudo-C


def format_expr(expr: Expr, params: tuple[Param, ...]) -> str:
    if isinstance(expr, Const):
        return str(expr.value).lower() if expr.dtype.is_bool else repr(expr.value)
    if isinstance(expr, Load):
        return f"{params[expr.param].name}[{expr.offset}]"
    if isinstance(expr, Gather):
        terms = "".join(f" + {stride}*checked({format_expr(index, params)}, {size}{', wraps' if wraps else ''})"
                        for index, stride, size, wraps in expr.terms)
        return f"{params[expr.param].name}[{expr.offset}{terms}]"
    if isinstance(expr, Local):
        return expr.name
    if isinstance(expr, IndexValue):
        return f"(i64)({expr.index})"
    if isinstance(expr, Random):
        return f"rand_{expr.kind}_{expr.dtype.short}({format_expr(expr.seed, params)}, {expr.counter})"
    args = [format_expr(a, params) for a in expr.args]
    args += [f"{k}={v.short if isinstance(v, DType) else v}" for k, v in expr.attrs]
    return f"{expr.op}({', '.join(args)})"


def _format_statement(statement: Statement, params: tuple[Param, ...]) -> str:
    if isinstance(statement, Reduction):
        at = f" at {statement.position}" if statement.position is not None else ""
        return f"{statement.local} = {statement.op}({statement.local}, {format_expr(statement.expr, params)}){at}"
    target = f"{params[statement.param].name}[{statement.offset}]"
    if isinstance(statement, Accumulate):
        return f"{target} = {statement.op}({target}, {format_expr(statement.expr, params)})"
    return f"{target} = {format_expr(statement.expr, params)}"


def _format_loop(loop: Loop, parallel: str | None) -> str:
    if loop.var == parallel:
        return f"for {loop.var} in [start, end) ({loop.extent}):"
    return f"for {loop.var} in 0..{loop.extent}:"


def format_kernel(kernel: Kernel) -> str:
    """The kernel as pseudo-C, one statement per line."""
    params = ", ".join(f"{p.dtype.short} {p.name}[{p.size}]" for p in kernel.params)
    head = f"kernel {kernel.name}({params})"
    if kernel.parallel is not None:
        head += f"   parallel {kernel.parallel}"
    lines = [head] + [f"  // {note}" for note in kernel.notes]
    depth = 1
    for loop in kernel.outer:
        lines.append("  " * depth + _format_loop(loop, kernel.parallel))
        depth += 1
    for stage in kernel.stages:
        inner = depth
        for statement in stage.body:
            if isinstance(statement, Reduction):
                lines.append("  " * inner + f"{statement.dtype.short} {statement.local} = {statement.op}.identity")
        for loop in stage.loops:
            lines.append("  " * inner + _format_loop(loop, kernel.parallel))
            inner += 1
        lines.extend("  " * inner + _format_statement(s, kernel.params) for s in stage.body)
    return "\n".join(lines)
