"""THE op registry: one entry per primitive, holding everything every layer needs to know about it.

Each `Op` has a kind (for fusion), a shape/dtype rule `infer`, a numpy implementation `eager`, a
gradient rule `vjp` written in the shared operator vocabulary (so it runs on eager tensors and on IR
values alike), and a `scalar` slot filled by the code generator. Nothing else in jitorch switches on
op names: new behaviour goes into this table.

Conventions:
- operands are TensorTypes, Tensors, IR values or `Literal`s: anything with `.shape` and `.dtype`;
- the IR never broadcasts or promotes implicitly (the frontend inserts `expand` and `cast`), except
  that an elementwise op applies a `Literal` operand to every element;
- reductions keep reduced dims (size 1); `axes` is a sorted tuple of non-negative ints;
- `vjp(g, out, *inputs, **attrs)` returns one gradient per input (None where there is none).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from jitorch.ir import dtypes
from jitorch.ir.dtypes import DType
from jitorch.ir.types import DTypeError, Literal, ShapeError, TensorType, describe

ELEMENTWISE, REDUCE, MOVEMENT, INDEX, EXTERN, RANDOM, SOURCE, SCAN = (
    "elementwise", "reduce", "movement", "index", "extern", "random", "source", "scan")


class IndexOutOfRange(IndexError, RuntimeError):
    """An index outside its dimension: an IndexError (and, as PyTorch's gather raises, a RuntimeError)."""


@dataclass(frozen=True, eq=False)
class Op:
    name: str
    kind: str
    infer: Callable[..., TensorType]
    eager: Callable[..., np.ndarray]
    vjp: Callable[..., tuple] | None = None
    # what backward keeps alive: "none", "inputs", "output" or "both" (unsaved inputs become shape stubs)
    saves: str = "inputs"
    # the result aliases operand 0's memory (a view): it shares the version counter of its base
    view: bool = False
    # for views: unview(base, new_view, **attrs) -> base with the view's elements replaced by new_view,
    # how a traced in-place write through a view updates its base (None: such writes are not traced)
    unview: Callable[..., Any] | None = None
    # codegen rule for elementwise ops, filled in by jitorch.codegen
    scalar: dict[str, Any] = field(default_factory=dict)

    @property
    def differentiable(self) -> bool:
        return self.vjp is not None

    def __repr__(self) -> str:
        return f"Op({self.name})"


OPS: dict[str, Op] = {}


def register(name: str, kind: str, infer: Callable, eager: Callable, vjp: Callable | None = None,
             **options: Any) -> Op:
    op = Op(name, kind, infer, eager, vjp, **options)
    assert name not in OPS, f"op {name} registered twice"
    OPS[name] = op
    return op


# ----------------------------------------------------------------------------------------------------
# shape/dtype rules


def _fail(name: str, operands: tuple, why: str, error: type[Exception] = ShapeError) -> Exception:
    return error(f"{name}({describe(operands)}): {why}")


def _elementwise_shape(name: str, operands: tuple) -> tuple[int, ...]:
    shapes = [tuple(o.shape) for o in operands if not isinstance(o, Literal)]
    if not shapes:
        return ()
    for shape in shapes[1:]:
        if shape != shapes[0]:
            raise _fail(name, operands, "operand shapes differ (the IR does not broadcast implicitly)")
    return shapes[0]


def _same_dtype(name: str, operands: tuple) -> DType:
    kinds = {o.dtype for o in operands}
    if len(kinds) != 1:
        raise _fail(name, operands, "operand dtypes differ (the IR does not promote implicitly)", DTypeError)
    return operands[0].dtype


def same_infer(*allowed: str) -> Callable[..., TensorType]:
    """An elementwise rule: equal shapes and dtypes in, the same out; `allowed` limits the dtype family."""
    def infer(*operands: Any, _name: str = "") -> TensorType:
        dtype = _same_dtype(_name, operands)
        if allowed and not any(getattr(dtype, f"is_{family}") for family in allowed):
            raise _fail(_name, operands, f"not supported for dtype {dtype.name}", DTypeError)
        return TensorType(_elementwise_shape(_name, operands), dtype)
    return infer


def compare_infer(*operands: Any, _name: str = "") -> TensorType:
    _same_dtype(_name, operands)
    return TensorType(_elementwise_shape(_name, operands), dtypes.bool_)


def _axes_ok(name: str, x: Any, axes: tuple[int, ...]) -> None:
    if any(not 0 <= a < x.ndim for a in axes) or list(axes) != sorted(set(axes)):
        raise _fail(name, (x,), f"bad reduction axes {axes}", IndexError)


def _keepdims_shape(x: Any, axes: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(1 if i in axes else s for i, s in enumerate(x.shape))


# ----------------------------------------------------------------------------------------------------
# numpy helpers


def _quiet(fn: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
    """Run a numpy function without floating-point warnings: PyTorch returns inf/nan silently."""
    def run(*arrays: Any, **attrs: Any) -> np.ndarray:
        with np.errstate(all="ignore"):
            return fn(*arrays, **attrs)
    run.__name__ = getattr(fn, "__name__", "eager")
    return run


def _int_divide(fn: Callable) -> Callable:
    def run(a: Any, b: Any) -> np.ndarray:
        if np.issubdtype(np.result_type(a), np.integer) and not np.all(b):
            raise ZeroDivisionError("integer division by zero")
        return fn(a, b)
    return run


def _erf(x: np.ndarray) -> np.ndarray:
    # numpy has no erf; math.erf is exact to double rounding and fine for the reference semantics
    flat = np.asarray(x, dtype=np.float64).ravel()
    out = np.fromiter((math.erf(v) for v in flat), dtype=np.float64, count=flat.size)
    return out.reshape(np.shape(x)).astype(np.result_type(x))


def _check_indices(name: str, index: np.ndarray, size: int, axis: int, negative_ok: bool) -> None:
    if index.size == 0:
        return
    low, high = int(index.min()), int(index.max())
    if high >= size or low < (-size if negative_ok else 0):
        bad = high if high >= size else low
        raise IndexOutOfRange(f"{name}: index {bad} is out of bounds for dimension {axis} with size {size}")


def _splitmix64(counter: np.ndarray) -> np.ndarray:
    """A counter-based hash (splitmix64): random bits for element i depend only on (seed, i)."""
    z = counter + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def random_bits(seed: int, count: int, offset: int = 0) -> np.ndarray:
    """`count` 64-bit random words for a seed; the generated kernels compute the same function."""
    base = np.uint64((seed * 0xD1B54A32D192ED03) & 0xFFFFFFFFFFFFFFFF)
    return _splitmix64(base + np.arange(offset, offset + count, dtype=np.uint64))


def uniform_from_bits(bits: np.ndarray, dtype: DType) -> np.ndarray:
    """Uniform [0, 1) floats from random words: 24 (f32) or 53 (f64) top bits."""
    if dtype is dtypes.float64:
        return (bits >> np.uint64(11)).astype(np.float64) * 2.0 ** -53
    return ((bits >> np.uint64(40)).astype(np.float32) * np.float32(2.0 ** -24)).astype(np.float32)


def _rand_uniform(seed: np.ndarray, shape: tuple[int, ...], dtype: DType) -> np.ndarray:
    count = math.prod(shape)
    return uniform_from_bits(random_bits(int(seed), count), dtype).reshape(shape)


def _rand_normal(seed: np.ndarray, shape: tuple[int, ...], dtype: DType) -> np.ndarray:
    # Box-Muller on two independent uniform streams; 1 - u keeps the log argument in (0, 1]
    count = math.prod(shape)
    u1 = 1.0 - uniform_from_bits(random_bits(int(seed), count), dtypes.float64)
    u2 = uniform_from_bits(random_bits(int(seed), count, offset=1 << 62), dtypes.float64)
    out = np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * math.pi * u2)
    return out.astype(dtype.numpy).reshape(shape)


# ----------------------------------------------------------------------------------------------------
# elementwise ops


def _unary(name: str, eager: Callable, vjp: Callable | None, *allowed: str, saves: str = "inputs") -> None:
    infer = same_infer(*allowed)
    register(name, ELEMENTWISE, lambda x, _i=infer, _n=name: _i(x, _name=_n), _quiet(eager), vjp, saves=saves)


def _binary(name: str, eager: Callable, vjp: Callable | None, *allowed: str, saves: str = "inputs") -> None:
    infer = same_infer(*allowed)
    register(name, ELEMENTWISE, lambda a, b, _i=infer, _n=name: _i(a, b, _name=_n), _quiet(eager), vjp,
             saves=saves)


def _zero_grad(g: Any, out: Any, x: Any) -> tuple:
    return (g.full_like(0.0),)


_unary("neg", np.negative, lambda g, out, x: (-g,), "floating_point", "integer", saves="none")
_unary("abs", np.abs, lambda g, out, x: (g * x.sign(),))
_unary("sign", np.sign, _zero_grad, saves="none")
_unary("floor", np.floor, _zero_grad, "floating_point", "integer", saves="none")
_unary("ceil", np.ceil, _zero_grad, "floating_point", "integer", saves="none")
_unary("round", np.round, _zero_grad, "floating_point", "integer", saves="none")
_unary("relu", lambda x: np.maximum(x, x.dtype.type(0)),
       lambda g, out, x: ((out > 0).if_else(g, 0.0),), "floating_point", "integer", saves="output")
_unary("exp", np.exp, lambda g, out, x: (g * out,), "floating_point", saves="output")
_unary("expm1", np.expm1, lambda g, out, x: (g * (out + 1.0),), "floating_point", saves="output")
_unary("log", np.log, lambda g, out, x: (g / x,), "floating_point")
_unary("log1p", np.log1p, lambda g, out, x: (g / (x + 1.0),), "floating_point")
_unary("sqrt", np.sqrt, lambda g, out, x: (g / (out * 2.0),), "floating_point", saves="output")
_unary("sin", np.sin, lambda g, out, x: (g * x.cos(),), "floating_point")
_unary("cos", np.cos, lambda g, out, x: (-(g * x.sin()),), "floating_point")
_unary("tanh", np.tanh, lambda g, out, x: (g * (1.0 - out * out),), "floating_point", saves="output")
def _sigmoid(x: np.ndarray) -> np.ndarray:
    # 1/(1 + e^-x) for x >= 0 and e^x/(1 + e^x) below: e^-|x| <= 1 never overflows (np.logaddexp would do, at
    # ten times the cost)
    e = np.exp(-np.abs(x))
    return np.divide(np.where(x >= 0, x.dtype.type(1), e), e + x.dtype.type(1))


_unary("sigmoid", _sigmoid, lambda g, out, x: (g * out * (1.0 - out),), "floating_point", saves="output")
_unary("erf", _erf, lambda g, out, x: (g * (x * x * -1.0).exp() * (2.0 / math.sqrt(math.pi)),),
       "floating_point")
_unary("reciprocal", lambda x: np.reciprocal(x), lambda g, out, x: (-(g * out * out),), "floating_point",
       saves="output")
_unary("bitwise_not", lambda x: np.logical_not(x) if x.dtype == np.bool_ else np.invert(x), None,
       "bool", "integer")

_binary("add", np.add, lambda g, out, a, b: (g, g), saves="none")
_binary("sub", np.subtract, lambda g, out, a, b: (g, -g), "floating_point", "integer", saves="none")
_binary("mul", np.multiply, lambda g, out, a, b: (g * b, g * a))
_binary("div", np.divide, lambda g, out, a, b: (g / b, -(g * out) / b), "floating_point", saves="both")
_binary("floordiv", _int_divide(np.floor_divide), None, "floating_point", "integer")
_binary("mod", _int_divide(np.mod), lambda g, out, a, b: (g, -(g * (a / b).floor())),
        "floating_point", "integer")


def _pow_vjp(g: Any, out: Any, a: Any, b: Any) -> tuple:
    # d/da a^b = b a^(b-1), taken as 0 where b == 0 (as PyTorch does, avoiding 0 * inf)
    if isinstance(b, (int, float)):
        grad_a = g.full_like(0.0) if b == 0 else g * (a ** (b - 1)) * b
        return grad_a, None
    if isinstance(a, (int, float)):
        # d/db a^b = a^b log a for a scalar base; 0 where a == 0, as for tensor bases
        return None, (g.full_like(0.0) if a == 0 else g * out * (math.log(a) if a > 0 else math.nan))
    grad_a = (b == 0).if_else(0.0, g * b * a ** (b - 1.0))
    # d/db a^b = a^b log a, taken as 0 where a == 0 and b >= 0
    grad_b = ((a == 0) & (b >= 0)).if_else(0.0, g * out * a.log())
    return grad_a, grad_b


def _pow_eager(a: np.ndarray, b: Any) -> np.ndarray:
    if np.issubdtype(np.result_type(a), np.integer) and np.any(np.asarray(b) < 0):
        raise RuntimeError("pow: integers to negative integer powers are not allowed")
    return np.power(a, b)


_binary("pow", _pow_eager, _pow_vjp, "floating_point", "integer", saves="both")


def _max_min_vjp(g: Any, out: Any, a: Any, b: Any) -> tuple:
    # ties split the gradient evenly, as PyTorch's maximum/minimum do
    tie = a == b
    half = g * 0.5
    return (tie.if_else(half, (a == out).if_else(g, 0.0)),
            tie.if_else(half, (b == out).if_else(g, 0.0)))


_binary("maximum", np.maximum, _max_min_vjp, saves="both")
_binary("minimum", np.minimum, _max_min_vjp, saves="both")
_binary("bitwise_and", np.bitwise_and, None, "bool", "integer")
_binary("bitwise_or", np.bitwise_or, None, "bool", "integer")
_binary("bitwise_xor", np.bitwise_xor, None, "bool", "integer")

for _name, _fn in (("eq", np.equal), ("ne", np.not_equal), ("lt", np.less), ("le", np.less_equal),
                   ("gt", np.greater), ("ge", np.greater_equal)):
    register(_name, ELEMENTWISE, lambda a, b, _n=_name: compare_infer(a, b, _name=_n), _quiet(_fn))


def _where_infer(cond: Any, a: Any, b: Any) -> TensorType:
    if cond.dtype is not dtypes.bool_:
        raise _fail("where", (cond, a, b), "condition must be a bool tensor", DTypeError)
    dtype = _same_dtype("where", (a, b))
    return TensorType(_elementwise_shape("where", (cond, a, b)), dtype)


register("where", ELEMENTWISE, _where_infer, np.where,
         lambda g, out, c, a, b: (None, c.if_else(g, 0.0), c.if_else(0.0, g)))


def _cast_infer(x: Any, *, dtype: DType) -> TensorType:
    return TensorType(tuple(x.shape), dtype)


def _cast_vjp(g: Any, out: Any, x: Any, *, dtype: DType) -> tuple:
    return (g.to(x.dtype) if x.dtype.is_floating_point else None,)


def _cast_eager(x: np.ndarray, *, dtype: DType) -> np.ndarray:
    out = x.astype(dtype.numpy, order="C")
    if x.dtype.kind == "f" and dtype.is_integer:
        # nan and values out of range become INT_MIN, the x86 "integer indefinite" (what numpy gives
        # there, and the LLVM backend everywhere), not whatever another CPU's conversion gives
        limit = float(2 ** (8 * dtype.itemsize - 1))
        fits = (x >= -limit) & (x < limit)
        if not fits.all():
            out[~fits] = np.iinfo(dtype.numpy).min
    return out


# PyTorch casts nan and inf to integers silently: _quiet keeps numpy's "invalid value" warning away
register("cast", ELEMENTWISE, _cast_infer, _quiet(_cast_eager), _cast_vjp, saves="none")
# an identity that stops gradients: how detach() and values treated as constants appear in a graph
register("detach", ELEMENTWISE, lambda x: TensorType(tuple(x.shape), x.dtype), lambda x: x, None)


# ----------------------------------------------------------------------------------------------------
# reductions (keep dims)


def _reduce_infer(name: str, *allowed: str, out_dtype: DType | None = None) -> Callable:
    def infer(x: Any, *, axes: tuple[int, ...]) -> TensorType:
        _axes_ok(name, x, axes)
        if allowed and not any(getattr(x.dtype, f"is_{family}") for family in allowed):
            raise _fail(name, (x,), f"not supported for dtype {x.dtype.name}", DTypeError)
        if name in ("amax", "amin", "argmax", "argmin") and any(x.shape[a] == 0 for a in axes):
            raise _fail(name, (x,), "cannot reduce over a zero-size dimension: the operation has no identity",
                        IndexError)
        return TensorType(_keepdims_shape(x, axes), out_dtype or x.dtype)
    return infer


def _sum_vjp(g: Any, out: Any, x: Any, *, axes: tuple[int, ...]) -> tuple:
    return (g.expand(*x.shape),)


def _prod_vjp(g: Any, out: Any, x: Any, *, axes: tuple[int, ...]) -> tuple:
    # d prod / dx_i is the product of the others: out / x_i where x_i != 0; where x_i == 0 it is the
    # product of the nonzero others if x_i is the only zero, else 0
    is_zero = x == 0
    nonzero_prod = is_zero.if_else(1.0, x).prod_axes(axes).expand(*x.shape)
    zero_count = is_zero.to(x.dtype).sum_axes(axes).expand(*x.shape)
    at_zero = (zero_count == 1).if_else(nonzero_prod, 0.0)
    return (g.expand(*x.shape) * is_zero.if_else(at_zero, out.expand(*x.shape) / x),)


def _extreme_vjp(g: Any, out: Any, x: Any, *, axes: tuple[int, ...]) -> tuple:
    # ties share the gradient evenly, as PyTorch's amax/amin do
    hit = x == out.expand(*x.shape)
    count = hit.to(g.dtype).sum_axes(axes)
    return (hit.if_else((g / count).expand(*x.shape), 0.0),)


def _np_reduce(fn: Callable) -> Callable:
    return _quiet(lambda x, *, axes: fn(x, axis=axes, keepdims=True))


register("sum", REDUCE, _reduce_infer("sum", "floating_point", "integer"), _np_reduce(np.sum), _sum_vjp,
         saves="none")
register("prod", REDUCE, _reduce_infer("prod", "floating_point", "integer"), _np_reduce(np.prod),
         _prod_vjp, saves="both")
register("amax", REDUCE, _reduce_infer("amax"), _np_reduce(np.max), _extreme_vjp, saves="both")
register("amin", REDUCE, _reduce_infer("amin"), _np_reduce(np.min), _extreme_vjp, saves="both")


def _arg_eager(fn: Callable) -> Callable:
    def run(x: np.ndarray, *, axes: tuple[int, ...]) -> np.ndarray:
        (axis,) = axes
        return fn(x, axis=axis, keepdims=True)
    return run


def _arg_infer(name: str) -> Callable:
    base = _reduce_infer(name, out_dtype=dtypes.int64)

    def infer(x: Any, *, axes: tuple[int, ...]) -> TensorType:
        if len(axes) != 1:
            raise _fail(name, (x,), "reduces exactly one axis")
        return base(x, axes=axes)
    return infer


register("argmax", REDUCE, _arg_infer("argmax"), _arg_eager(np.argmax))
register("argmin", REDUCE, _arg_infer("argmin"), _arg_eager(np.argmin))


# ----------------------------------------------------------------------------------------------------
# movement


def _reshape_infer(x: Any, *, shape: tuple[int, ...]) -> TensorType:
    if math.prod(shape) != math.prod(x.shape) or any(s < 0 for s in shape):
        raise _fail("reshape", (x,), f"shape {list(shape)} is invalid for input of size {math.prod(x.shape)}")
    return TensorType(tuple(shape), x.dtype)


register("reshape", MOVEMENT, _reshape_infer, lambda x, *, shape: np.reshape(x, shape),
         lambda g, out, x, *, shape: (g.reshape(*x.shape),), saves="none", view=True,
         unview=lambda base, new, *, shape: new.reshape(*base.shape))


def _permute_infer(x: Any, *, perm: tuple[int, ...]) -> TensorType:
    if sorted(perm) != list(range(x.ndim)):
        raise _fail("permute", (x,), f"perm {perm} is not a permutation of the {x.ndim} dims")
    return TensorType(tuple(x.shape[p] for p in perm), x.dtype)


def _inverse_permutation(perm: tuple[int, ...]) -> list[int]:
    inverse = [0] * len(perm)
    for i, p in enumerate(perm):
        inverse[p] = i
    return inverse


register("permute", MOVEMENT, _permute_infer, lambda x, *, perm: np.transpose(x, perm),
         lambda g, out, x, *, perm: (g.permute(*_inverse_permutation(perm)),), saves="none", view=True,
         unview=lambda base, new, *, perm: new.permute(*_inverse_permutation(perm)))


def _expand_infer(x: Any, *, shape: tuple[int, ...]) -> TensorType:
    if len(shape) != x.ndim or any(s != t and s != 1 for s, t in zip(x.shape, shape)):
        raise _fail("expand", (x,), f"cannot expand to {list(shape)} (dims must match or be 1, same rank)")
    return TensorType(tuple(shape), x.dtype)


def _expand_vjp(g: Any, out: Any, x: Any, *, shape: tuple[int, ...]) -> tuple:
    axes = tuple(i for i, (s, t) in enumerate(zip(x.shape, shape)) if s != t)
    return (g.sum_axes(axes) if axes else g,)


register("expand", MOVEMENT, _expand_infer, lambda x, *, shape: np.broadcast_to(x, shape), _expand_vjp,
         saves="none", view=True)


def slice_shape(shape: tuple[int, ...], starts: tuple[int, ...], stops: tuple[int, ...],
                steps: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(max(0, -(-(stop - start) // step)) for start, stop, step in zip(starts, stops, steps))


def _slice_infer(x: Any, *, starts: tuple[int, ...], stops: tuple[int, ...], steps: tuple[int, ...]) -> TensorType:
    if not (len(starts) == len(stops) == len(steps) == x.ndim):
        raise _fail("slice", (x,), "needs a start, stop and step for every dim")
    if any(not (0 <= a <= b <= s) or st <= 0 for a, b, st, s in zip(starts, stops, steps, x.shape)):
        raise _fail("slice", (x,), f"bounds {starts}:{stops}:{steps} outside shape {tuple(x.shape)}")
    return TensorType(slice_shape(tuple(x.shape), starts, stops, steps), x.dtype)


def _slice_index(starts: tuple[int, ...], stops: tuple[int, ...], steps: tuple[int, ...]) -> tuple[slice, ...]:
    return tuple(slice(a, b, s) for a, b, s in zip(starts, stops, steps))


def _slice_vjp(g: Any, out: Any, x: Any, **bounds: tuple[int, ...]) -> tuple:
    return (g.new_full(tuple(x.shape), 0.0).slice_scatter(g, **bounds),)


register("slice", MOVEMENT, _slice_infer, lambda x, **bounds: x[_slice_index(**bounds)], _slice_vjp,
         saves="none", view=True, unview=lambda base, new, **bounds: base.slice_scatter(new, **bounds))


def _slice_scatter_infer(base: Any, src: Any, **bounds: tuple[int, ...]) -> TensorType:
    region = _slice_infer(base, **bounds)
    if tuple(src.shape) != region.shape or src.dtype is not base.dtype:
        raise _fail("slice_scatter", (base, src), f"source must be {region} to fill the slice")
    return TensorType(tuple(base.shape), base.dtype)


def _slice_scatter_eager(base: np.ndarray, src: np.ndarray, **bounds: tuple[int, ...]) -> np.ndarray:
    out = np.array(base, copy=True)
    out[_slice_index(**bounds)] = src
    return out


def _slice_scatter_vjp(g: Any, out: Any, base: Any, src: Any, **bounds: tuple[int, ...]) -> tuple:
    return g.slice_scatter(g.new_full(tuple(src.shape), 0.0), **bounds), g.slice(**bounds)


register("slice_scatter", MOVEMENT, _slice_scatter_infer, _slice_scatter_eager, _slice_scatter_vjp,
         saves="none")


def _flip_infer(x: Any, *, axes: tuple[int, ...]) -> TensorType:
    _axes_ok("flip", x, axes)
    return TensorType(tuple(x.shape), x.dtype)


register("flip", MOVEMENT, _flip_infer, lambda x, *, axes: np.flip(x, axes).copy(),
         lambda g, out, x, *, axes: (g.flip(axes),), saves="none")


def _cat_infer(*xs: Any, axis: int) -> TensorType:
    if not xs:
        raise ShapeError("cat: expected a non-empty list of tensors")
    first = xs[0]
    if not 0 <= axis < first.ndim:
        raise _fail("cat", xs, f"dimension {axis} out of range", IndexError)
    _same_dtype("cat", xs)
    for x in xs[1:]:
        if x.ndim != first.ndim or any(a != b for i, (a, b) in enumerate(zip(x.shape, first.shape)) if i != axis):
            raise _fail("cat", xs, f"sizes of tensors must match except in dimension {axis}")
    shape = list(first.shape)
    shape[axis] = sum(x.shape[axis] for x in xs)
    return TensorType(tuple(shape), first.dtype)


def _cat_vjp(g: Any, out: Any, *xs: Any, axis: int) -> tuple:
    grads, offset = [], 0
    for x in xs:
        grads.append(g.narrow(axis, offset, x.shape[axis]))
        offset += x.shape[axis]
    return tuple(grads)


register("cat", MOVEMENT, _cat_infer, lambda *xs, axis: np.concatenate(xs, axis=axis), _cat_vjp, saves="none")


# ----------------------------------------------------------------------------------------------------
# indexing


def _index_dtype_ok(name: str, operands: tuple, index: Any) -> None:
    if not index.dtype.is_integer:
        raise _fail(name, operands, f"index must be an integer tensor, got {index.dtype.name}", DTypeError)


def _gather_infer(x: Any, index: Any, *, axis: int) -> TensorType:
    _index_dtype_ok("gather", (x, index), index)
    if index.ndim != x.ndim or not 0 <= axis < x.ndim:
        raise _fail("gather", (x, index), "index must have as many dims as the input")
    if any(i > s for d, (i, s) in enumerate(zip(index.shape, x.shape)) if d != axis):
        raise _fail("gather", (x, index), f"index is larger than the input outside dimension {axis}")
    return TensorType(tuple(index.shape), x.dtype)


def _gather_eager(x: np.ndarray, index: np.ndarray, *, axis: int) -> np.ndarray:
    _check_indices("gather", index, x.shape[axis], axis, negative_ok=False)
    region = tuple(slice(0, n) if d != axis else slice(None) for d, n in enumerate(index.shape))
    return np.take_along_axis(x[region], index, axis=axis)


register("gather", INDEX, _gather_infer, _gather_eager,
         lambda g, out, x, index, *, axis: (g.new_full(tuple(x.shape), 0.0).scatter_add(axis, index, g), None),
         saves="inputs")


def _scatter_add_infer(base: Any, index: Any, src: Any, *, axis: int) -> TensorType:
    _index_dtype_ok("scatter_add", (base, index, src), index)
    if tuple(index.shape) != tuple(src.shape) or index.ndim != base.ndim or src.dtype is not base.dtype:
        raise _fail("scatter_add", (base, index, src), "index and src must match and have the base's rank")
    return TensorType(tuple(base.shape), base.dtype)


def _scatter_add_eager(base: np.ndarray, index: np.ndarray, src: np.ndarray, *, axis: int) -> np.ndarray:
    _check_indices("scatter_add", index, base.shape[axis], axis, negative_ok=False)
    out = np.array(base, copy=True)
    grid = list(np.indices(index.shape, sparse=True))
    grid[axis] = index
    np.add.at(out, tuple(grid), src)
    return out


register("scatter_add", INDEX, _scatter_add_infer, _scatter_add_eager,
         lambda g, out, base, index, src, *, axis: (g, None, g.gather(axis, index)), saves="inputs")


def _index_infer(x: Any, *indices: Any) -> TensorType:
    operands = (x, *indices)
    if not indices or len(indices) > x.ndim:
        raise _fail("index", operands, "needs between 1 and ndim index tensors")
    for index in indices:
        _index_dtype_ok("index", operands, index)
        if tuple(index.shape) != tuple(indices[0].shape):
            raise _fail("index", operands, "index tensors must have one shape (the frontend broadcasts)")
    return TensorType(tuple(indices[0].shape) + tuple(x.shape[len(indices):]), x.dtype)


def _index_eager(x: np.ndarray, *indices: np.ndarray) -> np.ndarray:
    for axis, index in enumerate(indices):
        _check_indices("index", index, x.shape[axis], axis, negative_ok=True)
    return x[indices]


def _index_vjp(g: Any, out: Any, x: Any, *indices: Any) -> tuple:
    return (g.new_full(tuple(x.shape), 0.0).index_put(indices, g, accumulate=True), *([None] * len(indices)))


register("index", INDEX, _index_infer, _index_eager, _index_vjp, saves="inputs")


def _index_put_infer(base: Any, *operands: Any, accumulate: bool) -> TensorType:
    *indices, values = operands
    expected = _index_infer(base, *indices)
    if tuple(values.shape) != expected.shape or values.dtype is not base.dtype:
        raise _fail("index_put", (base, *operands), f"values must be {expected}")
    return TensorType(tuple(base.shape), base.dtype)


def _index_put_eager(base: np.ndarray, *operands: np.ndarray, accumulate: bool) -> np.ndarray:
    *indices, values = operands
    for axis, index in enumerate(indices):
        _check_indices("index_put", index, base.shape[axis], axis, negative_ok=True)
    out = np.array(base, copy=True)
    if accumulate:
        np.add.at(out, tuple(indices), values)
    else:
        out[tuple(indices)] = values
    return out


def _index_put_vjp(g: Any, out: Any, base: Any, *operands: Any, accumulate: bool) -> tuple:
    *indices, values = operands
    grad_base = g if accumulate else g.index_put(indices, values.new_full(tuple(values.shape), 0.0),
                                                 accumulate=False)
    return (grad_base, *([None] * len(indices)), g.index(indices))


register("index_put", INDEX, _index_put_infer, _index_put_eager, _index_put_vjp, saves="inputs")


# ----------------------------------------------------------------------------------------------------
# matmul (an extern call: BLAS through numpy)


def _matmul_infer(a: Any, b: Any) -> TensorType:
    if a.ndim < 2 or b.ndim != a.ndim or tuple(a.shape[:-2]) != tuple(b.shape[:-2]):
        raise _fail("matmul", (a, b), "operands must be batched matrices of one rank and batch shape "
                    "(the frontend broadcasts)")
    if a.shape[-1] != b.shape[-2]:
        raise _fail("matmul", (a, b), f"mat1 and mat2 shapes cannot be multiplied "
                    f"({a.shape[-2]}x{a.shape[-1]} and {b.shape[-2]}x{b.shape[-1]})")
    dtype = _same_dtype("matmul", (a, b))
    if dtype.is_bool:
        raise _fail("matmul", (a, b), "not supported for bool", DTypeError)
    return TensorType(tuple(a.shape[:-1]) + (b.shape[-1],), dtype)


def _matmul_vjp(g: Any, out: Any, a: Any, b: Any) -> tuple:
    return g.matmul(b.transpose(-1, -2)), a.transpose(-1, -2).matmul(g)


register("matmul", EXTERN, _matmul_infer, np.matmul, _matmul_vjp)


# ----------------------------------------------------------------------------------------------------
# scans: prefix sums along one axis. Not fusable: the fusion pass runs an op of this kind as an eager
# step, numpy's cumsum, linear in time and memory


def _cumsum_infer(x: Any, *, axis: int) -> TensorType:
    if not 0 <= axis < x.ndim:
        raise _fail("cumsum", (x,), f"axis {axis} out of range for {x.ndim} dims (the frontend reshapes 0-d)",
                    IndexError)
    if not (x.dtype.is_floating_point or x.dtype.is_integer):
        raise _fail("cumsum", (x,), f"not supported for dtype {x.dtype.name}", DTypeError)
    return TensorType(tuple(x.shape), x.dtype)


def _cumsum_eager(x: np.ndarray, *, axis: int) -> np.ndarray:
    # float32 sums run in float64, as PyTorch's CPU kernel does: the error of a long prefix sum stays
    # that of one rounding, not of n float32 additions in a row
    accumulator = np.float64 if x.dtype == np.float32 else x.dtype
    return np.cumsum(x, axis=axis, dtype=accumulator).astype(x.dtype, copy=False)


def _cumsum_vjp(g: Any, out: Any, x: Any, *, axis: int) -> tuple:
    # out_i = sum_{j <= i} x_j, so dx_j = sum_{i >= j} g_i: a prefix sum of g taken from the end
    return (g.flip(axis).cumsum_axis(axis).flip(axis),)


register("cumsum", SCAN, _cumsum_infer, _quiet(_cumsum_eager), _cumsum_vjp, saves="none")


# ----------------------------------------------------------------------------------------------------
# sources and random numbers (no tensor inputs but a seed)


def _full_infer(*, shape: tuple[int, ...], value: Any, dtype: DType) -> TensorType:
    return TensorType(tuple(shape), dtype)


register("full", SOURCE, _full_infer, lambda *, shape, value, dtype: np.full(shape, value, dtype=dtype.numpy))


def _arange_infer(*, start: Any, step: Any, size: int, dtype: DType) -> TensorType:
    return TensorType((size,), dtype)


def _arange_eager(*, start: Any, step: Any, size: int, dtype: DType) -> np.ndarray:
    return (start + step * np.arange(size, dtype=np.float64 if dtype.is_floating_point else np.int64)
            ).astype(dtype.numpy)


register("arange", SOURCE, _arange_infer, _arange_eager)


def _random_infer(seed: Any, *, shape: tuple[int, ...], dtype: DType) -> TensorType:
    if tuple(seed.shape) != () or seed.dtype is not dtypes.int64:
        raise _fail("random", (seed,), "the seed must be an int64 scalar", DTypeError)
    if not dtype.is_floating_point:
        raise DTypeError(f"random numbers are floating point, not {dtype.name}")
    return TensorType(tuple(shape), dtype)


register("rand_uniform", RANDOM, _random_infer, _rand_uniform)
register("rand_normal", RANDOM, _random_infer, _rand_normal)


def infer(name: str, *operands: Any, **attrs: Any) -> TensorType:
    """The output type of op `name` applied to operands (anything with .shape and .dtype)."""
    return OPS[name].infer(*operands, **attrs)
