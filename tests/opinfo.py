"""The OpInfo table: one record per public op, driving the op tests (test_ops.py, test_autograd.py).

An entry calls its op (`op`) on jitorch tensors and a numpy reference (`ref`) on numpy arrays standing
for the same arguments. Its `samples` are built per dtype by a `Maker`: 0-d tensors, size-1 dims,
broadcasting pairs, non-contiguous inputs (transposed or strided views of a bigger tensor), Python scalars
on either side, values drawn from the entry's `domain`. `ref` returns PyTorch's result, dtype included
(int / int -> float32, int * 2.5 -> float32, sum of int32 -> int64), so comparing dtypes checks promotion.
`primitives` names the registry ops the entry's samples dispatch (forward, and backward when
differentiable); test_ops checks each entry really dispatches them and that together they cover every
op in `jitorch.ir.ops.OPS`.
"""
from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import jitorch as torch
from jitorch.frontend import tensor as tensor_module

FLOAT = ("float32", "float64")
INT = ("int32", "int64")
ALL = (*FLOAT, *INT, "bool")
TORCH_DTYPES = {name: getattr(torch, name) for name in ALL}
NUMPY_DTYPES = {TORCH_DTYPES[name]: np.dtype(name) for name in ALL}
F32 = np.dtype(np.float32)
I64 = np.dtype(np.int64)


# ----------------------------------------------------------------------------------------------------
# sample arguments


@dataclass(frozen=True, eq=False)
class Arg:
    """A tensor argument: its values as the op sees them, and the memory layout it arrives in.

    "transposed": a `.T` view of a contiguous tensor; "strided": every other row (`[::2]`) of a tensor
    twice as tall. `differentiable=False` marks index tensors and masks.
    """

    value: np.ndarray
    layout: str = "contiguous"
    differentiable: bool = True

    @property
    def grad_ok(self) -> bool:
        return self.differentiable and self.value.dtype.kind == "f"

    def storage(self) -> np.ndarray:
        """The contiguous array the leaf tensor owns."""
        if self.layout == "transposed":
            return np.ascontiguousarray(self.value.T)
        if self.layout == "strided":
            storage = np.zeros((2 * self.value.shape[0], *self.value.shape[1:]), self.value.dtype)
            storage[::2] = self.value
            return storage
        return self.value.copy()

    def arrange(self, leaf: torch.Tensor) -> torch.Tensor:
        """The argument as the op receives it, made from a leaf holding `storage()`."""
        if self.layout == "transposed":
            return leaf.T
        if self.layout == "strided":
            return leaf[::2]
        return leaf

    def describe(self) -> str:
        mark = {"contiguous": "", "transposed": "T", "strided": "S"}[self.layout]
        return f"{self.value.dtype.name}{list(self.value.shape)}{mark}"


@dataclass(frozen=True, eq=False)
class Sample:
    args: tuple
    kwargs: dict = field(default_factory=dict)

    def map(self, fn: Callable[[Arg], Any]) -> tuple[tuple, dict]:
        """args and kwargs with every Arg (also inside tuples, lists, dicts) replaced by fn(arg)."""
        def convert(value: Any) -> Any:
            if isinstance(value, Arg):
                return fn(value)
            if isinstance(value, (tuple, list)):
                return type(value)(convert(v) for v in value)
            if isinstance(value, dict):
                return {k: convert(v) for k, v in value.items()}
            return value
        return convert(self.args), convert(self.kwargs)

    def arg_list(self) -> list[Arg]:
        found: list[Arg] = []
        self.map(lambda a: found.append(a))
        return found

    def numpy_args(self) -> tuple[tuple, dict]:
        """The reference's arguments: arrays for Args, numpy dtypes for jitorch dtypes."""
        args, kwargs = self.map(lambda a: a.value)
        return (tuple(NUMPY_DTYPES.get(a, a) if isinstance(a, torch.dtype) else a for a in args),
                {k: NUMPY_DTYPES.get(v, v) if isinstance(v, torch.dtype) else v for k, v in kwargs.items()})

    def tensor_args(self) -> tuple[tuple, dict]:
        return self.map(lambda a: a.arrange(torch.tensor(a.storage())))

    def grad_function(self, op: Callable) -> tuple[list[torch.Tensor], Callable]:
        """Float64 leaves requiring grad for the differentiable Args, and a function of them calling op."""
        diff = [a for a in self.arg_list() if a.grad_ok]
        leaves = [torch.tensor(a.storage(), requires_grad=True) for a in diff]

        def fn(*given: torch.Tensor) -> Any:
            by_arg = {id(a): t for a, t in zip(diff, given)}
            args, kwargs = self.map(lambda a: a.arrange(by_arg[id(a)] if id(a) in by_arg else
                                                        torch.tensor(a.storage())))
            return op(*args, **kwargs)
        return leaves, fn

    def describe(self) -> str:
        def show(value: Any) -> str:
            if isinstance(value, Arg):
                return value.describe()
            if isinstance(value, (tuple, list)):
                return "(" + ",".join(show(v) for v in value) + ")"
            return repr(value)
        parts = [show(a) for a in self.args] + [f"{k}={show(v)}" for k, v in self.kwargs.items()]
        return ", ".join(parts)


class Maker:
    """Builds the sample Args of one dtype: values from the entry's domain, with a fixed seed."""

    def __init__(self, dtype: str, domain: tuple[float, float], seed: int = 0) -> None:
        self.dtype, self.domain = dtype, domain
        self.torch_dtype = TORCH_DTYPES[dtype]
        self.rng = np.random.default_rng(seed)

    def __call__(self, *shape: int, layout: str = "contiguous", domain: tuple[float, float] | None = None,
                 nonzero: bool = False, dtype: str | None = None) -> Arg:
        dtype = dtype or self.dtype
        low, high = domain or self.domain
        if dtype == "bool":
            value = np.ones(shape, bool) if nonzero else self.rng.random(shape) < 0.5
        elif dtype in INT:
            choices = np.arange(math.ceil(low), math.floor(high) + 1)
            value = self.rng.choice(choices[choices != 0] if nonzero else choices, size=shape)
        else:
            value = self.rng.uniform(low, high, size=shape)
            if nonzero:
                value = np.where(np.abs(value) < 0.5, value + np.copysign(0.5, value), value)
        return Arg(np.asarray(value).astype(dtype), layout)

    def index(self, high: int, *shape: int, low: int = 0) -> Arg:
        return Arg(self.rng.integers(low, high, size=shape).astype(np.int64), differentiable=False)

    def mask(self, *shape: int) -> Arg:
        return Arg(self.rng.random(shape) < 0.5, differentiable=False)

    def given(self, values: Any, dtype: str | None = None) -> Arg:
        return Arg(np.asarray(values).astype(dtype or self.dtype))


# ----------------------------------------------------------------------------------------------------
# the record


@dataclass(frozen=True, eq=False)
class OpInfo:
    name: str
    op: Callable[..., Any]  # called with jitorch tensors in place of the Args
    ref: Callable[..., Any]  # called with numpy arrays in place of the Args: PyTorch's result and dtype
    samples: Callable[[Maker], list[Sample]]
    primitives: tuple[str, ...]  # registry ops the samples dispatch (forward, and backward if differentiable)
    dtypes: tuple[str, ...] = ALL
    domain: tuple[float, float] = (-3.0, 3.0)
    differentiable: bool = True
    aliases: bool = False  # the result may share memory with the first input (views, `to` the same dtype)
    gradgrad: bool = False  # elementwise: second derivatives are checked too
    atol: float = 0.0  # extra absolute tolerance, for statistical checks of random ops

    def sample_list(self, dtype: str) -> list[Sample]:
        return self.samples(Maker(dtype, self.domain))


@contextmanager
def record_dispatch() -> Iterator[list[str]]:
    """The registry ops dispatched inside the block that returned a result, in order (a dispatch that
    raises is not counted). dispatch is wrapped wherever it was imported."""
    original = tensor_module.dispatch
    seen: list[str] = []

    def spy(name: str, operands: tuple, attrs: dict) -> Any:
        out = original(name, operands, attrs)
        seen.append(name)
        return out

    holders = [(module, attr) for name, module in list(sys.modules.items()) if name.startswith("jitorch")
               and module is not None for attr, value in list(vars(module).items()) if value is original]
    for module, attr in holders:
        setattr(module, attr, spy)
    try:
        yield seen
    finally:
        for module, attr in holders:
            setattr(module, attr, original)


# ----------------------------------------------------------------------------------------------------
# references: PyTorch's dtype rules written out for numpy

_LATTICE = [np.dtype(name) for name in ("bool", "int32", "int64", "float32", "float64")]


def _category(dtype: np.dtype) -> int:
    return {"b": 0, "i": 1, "f": 2}[dtype.kind]


def _highest(found: list[np.dtype]) -> np.dtype | None:
    return max(found, key=_LATTICE.index) if found else None


def result_type(*operands: Any) -> np.dtype:
    """PyTorch's result dtype: tensors with dims decide, then 0-d tensors, then Python scalars; a lower
    group counts only when its category (bool < int < float) is higher. Python floats are float32."""
    def combine(higher: np.dtype | None, lower: np.dtype | None) -> np.dtype | None:
        if higher is None or lower is None:
            return higher if lower is None else lower
        return _highest([higher, lower]) if _category(lower) > _category(higher) else higher

    arrays = [o for o in operands if isinstance(o, np.ndarray)]
    scalars = [np.dtype(bool) if isinstance(o, bool) else I64 if isinstance(o, int) else F32
               for o in operands if not isinstance(o, np.ndarray)]
    dims = _highest([a.dtype for a in arrays if a.ndim])
    zero_dims = _highest([a.dtype for a in arrays if not a.ndim])
    return combine(dims, combine(zero_dims, _highest(scalars)))


def floating(dtype: np.dtype) -> np.dtype:
    return dtype if dtype.kind == "f" else F32


def accumulate(dtype: np.dtype) -> np.dtype:
    """sum/prod/cumsum of bool and integer tensors give int64."""
    return dtype if dtype.kind == "f" else I64


def _as(dtype: np.dtype, operands: tuple) -> list[np.ndarray]:
    return [np.asarray(o, dtype) for o in operands]


def elementwise(fn: Callable, result: str = "promote") -> Callable:
    """A reference for an elementwise op: operands promoted as PyTorch does, then `fn`."""
    def ref(*operands: Any) -> np.ndarray:
        dtype = result_type(*operands)
        if result == "float":
            dtype = floating(dtype)
        with np.errstate(all="ignore"):
            out = np.asarray(fn(*_as(dtype, operands)))
        return out if result == "bool" else out.astype(dtype)
    return ref


def unary_float(fn: Callable) -> Callable:
    def ref(x: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            return np.asarray(fn(x.astype(floating(x.dtype)))).astype(floating(x.dtype))
    return ref


def _erf(x: np.ndarray) -> np.ndarray:
    return np.vectorize(math.erf, otypes=[np.float64])(x)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _clamp(x: np.ndarray, min: Any = None, max: Any = None) -> np.ndarray:
    dtype = result_type(*(v for v in (x, min, max) if v is not None))
    out = x.astype(dtype)
    if min is not None:
        out = np.maximum(out, np.asarray(min, dtype))
    if max is not None:
        out = np.minimum(out, np.asarray(max, dtype))
    return out


def _where(cond: np.ndarray, a: Any, b: Any) -> np.ndarray:
    dtype = result_type(a, b)
    return np.where(cond, np.asarray(a, dtype), np.asarray(b, dtype)).astype(dtype)


def _keep(dim: Any, keepdim: bool) -> dict:
    return {"axis": dim, "keepdims": keepdim}


def _reduce(fn: Callable, dtype_rule: Callable = lambda d: d) -> Callable:
    def ref(x: np.ndarray, dim: Any = None, keepdim: bool = False) -> np.ndarray:
        return np.asarray(fn(x, **_keep(dim, keepdim))).astype(dtype_rule(x.dtype))
    return ref


def _with_index(fn: Callable, arg: Callable) -> Callable:
    """max/min along a dim: (values, indices), the first extreme index as PyTorch documents."""
    def ref(x: np.ndarray, dim: int, keepdim: bool = False) -> tuple:
        flat = x.reshape(1) if x.ndim == 0 else x
        values, indices = fn(flat, axis=dim, keepdims=True), arg(flat, axis=dim, keepdims=True)
        if x.ndim == 0:
            return values.reshape(()), indices.reshape(()).astype(np.int64)
        if not keepdim:
            values, indices = np.squeeze(values, dim), np.squeeze(indices, dim)
        return values, indices.astype(np.int64)
    return ref


def _arg(fn: Callable) -> Callable:
    def ref(x: np.ndarray, dim: Any = None, keepdim: bool = False) -> np.ndarray:
        if dim is None:
            out = np.asarray(fn(x.reshape(-1)))
            return out.reshape((1,) * x.ndim if keepdim else ()).astype(np.int64)
        return np.asarray(fn(x, axis=dim, keepdims=keepdim)).astype(np.int64)
    return ref


def _var(x: np.ndarray, dim: Any = None, unbiased: bool = True, keepdim: bool = False,
         correction: float | None = None) -> np.ndarray:
    ddof = correction if correction is not None else (1 if unbiased else 0)
    return np.asarray(np.var(x, axis=dim, ddof=ddof, keepdims=keepdim)).astype(x.dtype)


def _std(x: np.ndarray, **kwargs: Any) -> np.ndarray:
    return np.sqrt(_var(x, **kwargs))


def _logsumexp(x: np.ndarray, dim: Any, keepdim: bool = False) -> np.ndarray:
    peak = np.max(x, axis=dim, keepdims=True)
    out = np.log(np.sum(np.exp(x - peak), axis=dim, keepdims=True)) + peak
    return out if keepdim else np.squeeze(out, dim)


def _softmax(x: np.ndarray, dim: int) -> np.ndarray:
    e = np.exp(x - np.max(x, axis=dim, keepdims=True))
    return e / np.sum(e, axis=dim, keepdims=True)


def _log_softmax(x: np.ndarray, dim: int) -> np.ndarray:
    shifted = x - np.max(x, axis=dim, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=dim, keepdims=True))


def _matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    dtype = result_type(a, b)
    return np.asarray(np.matmul(a.astype(dtype), b.astype(dtype))).astype(dtype)


def _split(x: np.ndarray, sizes: Any, dim: int = 0) -> list[np.ndarray]:
    n = x.shape[dim]
    if isinstance(sizes, int):
        sizes = [min(sizes, n - start) for start in range(0, n, sizes)]
    return np.split(x, np.cumsum(sizes)[:-1], axis=dim)


def _chunk(x: np.ndarray, chunks: int, dim: int = 0) -> list[np.ndarray]:
    return _split(x, -(-x.shape[dim] // chunks), dim)


def _cat(*xs: np.ndarray, dim: int = 0) -> np.ndarray:
    dtype = result_type(*xs)
    return np.concatenate([x.astype(dtype) for x in xs], axis=dim)


def _repeat(x: np.ndarray, *sizes: int) -> np.ndarray:
    return np.tile(x.reshape((1,) * (len(sizes) - x.ndim) + x.shape), sizes)


def _unflatten(x: np.ndarray, dim: int, sizes: tuple) -> np.ndarray:
    axis = dim % x.ndim
    sizes = list(sizes)
    if -1 in sizes:
        sizes[sizes.index(-1)] = x.shape[axis] // -math.prod(sizes)
    return x.reshape(x.shape[:axis] + tuple(sizes) + x.shape[axis + 1:])


def _flatten(x: np.ndarray, start_dim: int = 0, end_dim: int = -1) -> np.ndarray:
    if x.ndim == 0:
        return x.reshape(1)
    start, end = start_dim % x.ndim, end_dim % x.ndim
    return x.reshape(x.shape[:start] + (-1,) + x.shape[end + 1:])


def _squeeze(x: np.ndarray, dim: Any = None) -> np.ndarray:
    if dim is None:
        return np.squeeze(x)
    dims = (dim,) if isinstance(dim, int) else dim
    return np.squeeze(x, tuple(d for d in dims if x.shape[d] == 1))


def _expand(x: np.ndarray, *sizes: int) -> np.ndarray:
    lead = len(sizes) - x.ndim
    shape = tuple(x.shape[i - lead] if s == -1 else s for i, s in enumerate(sizes))
    return np.broadcast_to(x, shape).copy()


def _setitem(x: Any, index: Any, value: Any) -> Any:
    out = x.clone() if isinstance(x, torch.Tensor) else x.copy()
    out[index] = value
    return out


def _gather(x: np.ndarray, dim: int, index: np.ndarray) -> np.ndarray:
    region = tuple(slice(0, n) if d != dim % x.ndim else slice(None) for d, n in enumerate(index.shape))
    return np.take_along_axis(x[region], index, axis=dim)


def _scatter_add(x: np.ndarray, dim: int, index: np.ndarray, src: np.ndarray) -> np.ndarray:
    out = x.copy()
    grid = list(np.indices(index.shape, sparse=True))
    grid[dim % x.ndim] = index
    np.add.at(out, tuple(grid), src.astype(x.dtype))
    return out


def _masked_fill(x: np.ndarray, mask: np.ndarray, value: Any) -> np.ndarray:
    return np.where(mask, np.asarray(value).astype(x.dtype), x)


def _triangle(fn: Callable) -> Callable:
    return lambda x, diagonal=0: fn(x, diagonal)


def _cumsum(x: np.ndarray, dim: int) -> np.ndarray:
    return np.cumsum(x.reshape(x.shape or (1,)), axis=dim, dtype=accumulate(x.dtype)).reshape(x.shape)


def _div_rounding(a: Any, b: Any, rounding_mode: str) -> np.ndarray:
    dtype = result_type(a, b)
    a, b = _as(dtype, (a, b))
    with np.errstate(all="ignore"):
        if rounding_mode == "floor":
            return np.floor_divide(a, b).astype(dtype)
        if dtype.kind == "f":
            return np.trunc(a / b).astype(dtype)
    return (np.abs(a) // np.abs(b) * np.sign(a) * np.sign(b)).astype(dtype)


# ----------------------------------------------------------------------------------------------------
# sample sets


def unary_samples(make: Maker) -> list[Sample]:
    return [Sample((make(),)), Sample((make(5),)), Sample((make(3, 4),)), Sample((make(1, 4),)),
            Sample((make(4, 3, layout="transposed"),)), Sample((make(3, 2, layout="strided"),)),
            Sample((make(0, 3),))]


def binary_samples(make: Maker, lhs: dict | None = None, rhs: dict | None = None,
                   scalars: tuple = (2, 2.5), mixed: tuple[str, ...] = ("float64", "int64")) -> list[Sample]:
    """Same shapes, broadcasting pairs, 0-d operands, non-contiguous operands, Python scalars on either
    side, and operands of another dtype (0-d and not) for promotion."""
    lhs, rhs = lhs or {}, rhs or {}
    out = [Sample((make(3, 4, **lhs), make(3, 4, **rhs))),
           Sample((make(3, 4, **lhs), make(4, **rhs))),
           Sample((make(3, 1, **lhs), make(1, 4, **rhs))),
           Sample((make(**lhs), make(2, 3, **rhs))),
           Sample((make(2, 3, **lhs), make(**rhs))),
           Sample((make(4, 3, layout="transposed", **lhs), make(4, 3, layout="strided", **rhs))),
           Sample((make(2, 3, 4, layout="transposed", **lhs), make(3, 1, **rhs)))]
    for s in scalars:
        out += [Sample((make(3, 4, **lhs), s)), Sample((s, make(3, 4, **rhs)))]
    for dtype in mixed:
        out += [Sample((make(2, 3, **lhs), make(3, dtype=dtype, **rhs))),
                Sample((make(2, 3, **lhs), make(dtype=dtype, **rhs)))]
    return out


def tensor_pairs(make: Maker) -> list[Sample]:
    return binary_samples(make, scalars=())


def reduce_samples(make: Maker) -> list[Sample]:
    return [Sample((make(),)), Sample((make(3, 4),)), Sample((make(3, 4),), {"dim": 1}),
            Sample((make(3, 4),), {"dim": 0, "keepdim": True}), Sample((make(2, 3, 4),), {"dim": (0, 2)}),
            Sample((make(4, 3, layout="transposed"),), {"dim": -1}), Sample((make(1, 5),), {"dim": 0}),
            Sample((make(3, 2, layout="strided"),), {"dim": 0})]


def nonempty_reduce_samples(make: Maker) -> list[Sample]:
    return [s for s in reduce_samples(make) if s.args[0].value.size]


def dim_samples(make: Maker) -> list[Sample]:
    return [Sample((make(3, 4), 1)), Sample((make(3, 4), 0)), Sample((make(2, 3, 4), -1)),
            Sample((make(4, 3, layout="transposed"), 0)), Sample((make(), 0)),
            Sample((make(3, 4), 1), {"keepdim": True})]


def matmul_samples(make: Maker) -> list[Sample]:
    return [Sample((make(3), make(3))), Sample((make(2, 3), make(3))), Sample((make(3), make(3, 4))),
            Sample((make(2, 3), make(3, 4))), Sample((make(4, 3, layout="transposed"), make(3, 2, layout="strided"))),
            Sample((make(2, 2, 3), make(3, 4))), Sample((make(2, 1, 2, 3), make(3, 3, 2))),
            Sample((make(3), make(2, 3, 4))), Sample((make(2, 3), make(3, 4, dtype="float64")))]


# ----------------------------------------------------------------------------------------------------
# the table

OPINFOS: list[OpInfo] = []


def add(name: str, op: Callable, ref: Callable, samples: Callable, primitives: tuple[str, ...],
        **options: Any) -> None:
    OPINFOS.append(OpInfo(name, op, ref, samples, primitives, **options))


NONZERO = {"nonzero": True}

# arithmetic, with tensors and Python scalars on either side
add("add", lambda a, b: a + b, elementwise(np.add), binary_samples, ("add", "expand", "reshape", "cast"),
    gradgrad=True)
add("add_alpha", lambda a, b: torch.add(a, b, alpha=2), elementwise(lambda a, b: a + b * 2), tensor_pairs,
    ("add", "mul"), dtypes=(*FLOAT, *INT))
add("sub", lambda a, b: a - b, elementwise(np.subtract), binary_samples, ("sub",), dtypes=(*FLOAT, *INT),
    gradgrad=True)
add("mul", lambda a, b: a * b, elementwise(np.multiply), binary_samples, ("mul",), gradgrad=True)
add("div", lambda a, b: a / b, elementwise(np.true_divide, "float"),
    lambda make: binary_samples(make, rhs=NONZERO, lhs=NONZERO), ("div", "cast"), gradgrad=True)
add("div_rounding", lambda a, b, **kw: torch.div(a, b, **kw), _div_rounding,
    lambda make: [Sample(s.args, {"rounding_mode": mode}) for mode in ("floor", "trunc")
                  for s in binary_samples(make, rhs=NONZERO, lhs=NONZERO)[:6]],
    ("floordiv", "div"), dtypes=(*FLOAT, *INT))
add("floordiv", lambda a, b: a // b, elementwise(np.floor_divide),
    lambda make: binary_samples(make, rhs=NONZERO, lhs=NONZERO), ("floordiv",), dtypes=(*FLOAT, *INT),
    differentiable=False)
add("mod", lambda a, b: a % b, elementwise(np.mod), lambda make: binary_samples(make, rhs=NONZERO, lhs=NONZERO),
    ("mod",), dtypes=(*FLOAT, *INT))
add("pow", lambda a, b: a ** b, elementwise(np.power),
    lambda make: binary_samples(make, lhs={"domain": (0.5, 2.5)}, rhs={"domain": (0.0, 2.5)}),
    ("pow",), dtypes=(*FLOAT, *INT), gradgrad=True)
add("pow_scalar", lambda x, e: x ** e, elementwise(np.power),
    lambda make: [Sample((make(3, 4), e)) for e in (2, 3, 0, 0.5, -1.5, 2.5)]
    + [Sample((make(5, domain=(-3, 3)), 3)), Sample((make(4, 3, layout="transposed"), 2))],
    ("pow",), dtypes=(*FLOAT, *INT), domain=(0.5, 2.5), gradgrad=True)
add("rpow", lambda b, x: b ** x, elementwise(np.power),
    lambda make: [Sample((2, make(3, 4))), Sample((2.5, make(3, 4))), Sample((2.5, make()))],
    ("pow",), dtypes=(*FLOAT, *INT), domain=(0.0, 2.5))
add("neg", lambda x: -x, elementwise(np.negative), unary_samples, ("neg",), dtypes=(*FLOAT, *INT), gradgrad=True)
add("maximum", torch.maximum, elementwise(np.maximum), tensor_pairs, ("maximum",), gradgrad=True)
add("minimum", torch.minimum, elementwise(np.minimum), tensor_pairs, ("minimum",), gradgrad=True)

# comparisons and bitwise ops cut the graph
for _name, _fn, _np in (("eq", lambda a, b: a == b, np.equal), ("ne", lambda a, b: a != b, np.not_equal),
                        ("lt", lambda a, b: a < b, np.less), ("le", lambda a, b: a <= b, np.less_equal),
                        ("gt", lambda a, b: a > b, np.greater), ("ge", lambda a, b: a >= b, np.greater_equal)):
    add(_name, _fn, elementwise(_np, "bool"), binary_samples, (_name,), differentiable=False)
for _name, _fn, _np in (("bitwise_and", lambda a, b: a & b, np.bitwise_and),
                        ("bitwise_or", lambda a, b: a | b, np.bitwise_or),
                        ("bitwise_xor", lambda a, b: a ^ b, np.bitwise_xor)):
    add(_name, _fn, elementwise(_np), lambda make: binary_samples(make, scalars=(3,), mixed=("int64",)),
        (_name,), dtypes=(*INT, "bool"), differentiable=False)
add("bitwise_not", lambda x: ~x, lambda x: np.invert(x), unary_samples, ("bitwise_not",), dtypes=(*INT, "bool"),
    differentiable=False)
for _name, _np in (("logical_and", np.logical_and), ("logical_or", np.logical_or),
                   ("logical_xor", np.logical_xor)):
    add(_name, getattr(torch, _name), _np, tensor_pairs, ("cast",), differentiable=False)
add("logical_not", torch.logical_not, np.logical_not, unary_samples, ("bitwise_not",), differentiable=False)

# elementwise math (integer and bool inputs give float32)
for _name, _np, _domain in (("exp", np.exp, (-3, 3)), ("log", np.log, (0.1, 3)), ("log1p", np.log1p, (-0.9, 3)),
                            ("expm1", np.expm1, (-3, 3)), ("sqrt", np.sqrt, (0.1, 3)), ("sin", np.sin, (-3, 3)),
                            ("cos", np.cos, (-3, 3)), ("tanh", np.tanh, (-3, 3)), ("sigmoid", _sigmoid, (-3, 3)),
                            ("erf", _erf, (-2, 2))):
    add(_name, getattr(torch, _name), unary_float(_np), unary_samples, (_name, "cast"), domain=_domain, gradgrad=True)
add("rsqrt", torch.rsqrt, unary_float(lambda x: 1 / np.sqrt(x)), unary_samples, ("sqrt", "reciprocal"),
    domain=(0.1, 3), gradgrad=True)
add("reciprocal", torch.reciprocal, unary_float(np.reciprocal), lambda make: unary_samples(make), ("reciprocal",),
    domain=(0.5, 3), gradgrad=True)
add("log2", torch.log2, unary_float(np.log2), unary_samples, ("log", "mul"), domain=(0.1, 3))
add("log10", torch.log10, unary_float(np.log10), unary_samples, ("log", "mul"), domain=(0.1, 3))
add("exp2", torch.exp2, unary_float(np.exp2), unary_samples, ("exp", "mul"))
add("tan", torch.tan, unary_float(np.tan), unary_samples, ("sin", "cos", "div"), domain=(-1.2, 1.2))
add("square", torch.square, lambda x: np.square(x), unary_samples, ("mul",), dtypes=(*FLOAT, *INT), gradgrad=True)
add("relu", torch.relu, lambda x: np.maximum(x, 0).astype(x.dtype), unary_samples, ("relu",),
    dtypes=(*FLOAT, *INT), gradgrad=True)
add("abs", torch.abs, np.abs, unary_samples, ("abs", "sign"), dtypes=(*FLOAT, *INT), gradgrad=True)
for _name in ("sign", "floor", "ceil", "round"):
    add(_name, getattr(torch, _name), getattr(np, _name), unary_samples, (_name,), dtypes=(*FLOAT, *INT))
add("round_decimals", lambda x: torch.round(x, decimals=2), lambda x: np.round(x, 2), unary_samples,
    ("round", "mul", "div"), dtypes=FLOAT)
add("trunc", torch.trunc, np.trunc, unary_samples, ("floor", "ceil", "where"), dtypes=(*FLOAT, *INT))
add("clamp", lambda x, **kw: torch.clamp(x, **kw), _clamp,
    lambda make: [Sample((make(3, 4),), {"min": -1}), Sample((make(3, 4),), {"max": 1}),
                  Sample((make(3, 4),), {"min": -1.5, "max": 0.5}), Sample((make(),), {"min": 0.5}),
                  Sample((make(4, 3, layout="transposed"),), {"min": make(3), "max": make(4, 1, domain=(3, 5))}),
                  Sample((make(3, 4),), {"min": 2, "max": 1})],
    ("where", "lt", "gt"), dtypes=(*FLOAT, *INT), gradgrad=True)
add("where", torch.where, _where,
    lambda make: [Sample((make.mask(3, 4), make(3, 4), make(3, 4))), Sample((make.mask(3, 1), make(4), make(3, 4))),
                  Sample((make.mask(4), make(3, 4, layout="transposed"), 1.5)), Sample((make.mask(), make(), 0)),
                  Sample((make.mask(2, 3), make(2, 3), make(3, dtype="float64")))],
    ("where",), gradgrad=True)
add("masked_fill", lambda x, mask, value: x.masked_fill(mask, value), _masked_fill,
    lambda make: [Sample((make(3, 4), make.mask(3, 4), 2.5)), Sample((make(3, 4), make.mask(4), -1)),
                  Sample((make(4, 3, layout="transposed"), make.mask(4, 3), make())),
                  Sample((make(), make.mask(), 0))],
    ("where",))
add("lerp", lambda a, b, w: torch.lerp(a, b, w), lambda a, b, w: a + (b - a) * np.asarray(w, a.dtype),
    lambda make: [Sample((make(3, 4), make(3, 4), 0.25)), Sample((make(3, 4), make(4), make(3, 4)))],
    ("sub", "mul", "add"), dtypes=FLOAT)

# reductions
add("sum", lambda x, **kw: x.sum(**kw), _reduce(np.sum, accumulate),
    lambda make: reduce_samples(make) + [Sample((make(0, 3),)), Sample((make(0, 3),), {"dim": 0})],
    ("sum", "cast", "expand"))
add("sum_dtype", lambda x: x.sum(dtype=torch.float64), lambda x: np.sum(x, dtype=np.float64), unary_samples,
    ("sum", "cast"))
add("mean", lambda x, **kw: x.mean(**kw), _reduce(np.mean), reduce_samples, ("sum", "div"), dtypes=FLOAT)
add("prod", lambda x, **kw: x.prod(**kw), _reduce(np.prod, accumulate),
    lambda make: reduce_samples(make) + [Sample((make.given([[1.5, 0.0, 2.0], [0.0, 0.0, 3.0]]),), {"dim": 1}),
                                         Sample((make.given([2.0, 0.0, -1.5]),))],
    ("prod", "where", "eq"), domain=(0.5, 1.5))
add("amax", lambda x, **kw: x.amax(**kw), _reduce(np.max), nonempty_reduce_samples, ("amax",))
add("amin", lambda x, **kw: x.amin(**kw), _reduce(np.min), nonempty_reduce_samples, ("amin",))
add("max", torch.max, np.max, lambda make: unary_samples(make)[:-1], ("amax",))
add("min", torch.min, np.min, lambda make: unary_samples(make)[:-1], ("amin",))
add("max_dim", torch.max, _with_index(np.max, np.argmax), dim_samples, ("argmax", "gather", "scatter_add"))
add("min_dim", torch.min, _with_index(np.min, np.argmin), dim_samples, ("argmin", "gather", "scatter_add"))
add("max_binary", torch.max, elementwise(np.maximum), lambda make: tensor_pairs(make)[:3], ("maximum",))
add("argmax", lambda x, **kw: x.argmax(**kw), _arg(np.argmax),
    lambda make: [Sample((make(3, 4),)), Sample((make(3, 4),), {"dim": 1}), Sample((make(),)),
                  Sample((make(4, 3, layout="transposed"),), {"dim": 0, "keepdim": True}),
                  Sample((make(3, 4),), {"keepdim": True})],
    ("argmax",), dtypes=(*FLOAT, *INT), differentiable=False)
add("argmin", lambda x, **kw: x.argmin(**kw), _arg(np.argmin),
    lambda make: [Sample((make(3, 4),)), Sample((make(3, 4),), {"dim": -1}), Sample((make(2, 3, 4),), {"dim": 1})],
    ("argmin",), dtypes=(*FLOAT, *INT), differentiable=False)
_VAR_SAMPLES = [({}, (3, 4)), ({"dim": 1}, (3, 4)), ({"dim": 0, "unbiased": False}, (3, 4)),
                ({"dim": (0, 1), "correction": 0}, (2, 3)), ({"correction": 2, "dim": 1, "keepdim": True}, (2, 5))]
add("var", lambda x, **kw: x.var(**kw), _var,
    lambda make: [Sample((make(*shape),), kw) for kw, shape in _VAR_SAMPLES]
    + [Sample((make(4, 3, layout="transposed"),), {"dim": 0})], ("sum", "sub", "mul", "div"), dtypes=FLOAT)
add("std", lambda x, **kw: x.std(**kw), _std,
    lambda make: [Sample((make(*shape),), kw) for kw, shape in _VAR_SAMPLES], ("sqrt", "sum"), dtypes=FLOAT)
add("logsumexp", lambda x, dim, **kw: torch.logsumexp(x, dim, **kw), _logsumexp,
    lambda make: [Sample((make(3, 4), 1)), Sample((make(3, 4), 0), {"keepdim": True}), Sample((make(2, 3, 4), (0, 2))),
                  Sample((make(4, 3, layout="transposed"), -1)), Sample((make.given([1000.0, 1000.0, -5.0]), 0))],
    ("amax", "exp", "log", "sum", "detach"), dtypes=FLOAT)
add("all", lambda x, **kw: x.all(**kw), _reduce(np.all, lambda d: np.dtype(bool)),
    lambda make: reduce_samples(make)[:5], ("amin", "cast"),
    differentiable=False)
add("any", lambda x, **kw: x.any(**kw), _reduce(np.any, lambda d: np.dtype(bool)),
    lambda make: reduce_samples(make)[:5], ("amax", "cast"),
    differentiable=False)
add("softmax", lambda x, dim: torch.softmax(x, dim), _softmax, lambda make: dim_samples(make)[:4],
    ("amax", "detach", "exp", "sum", "div"), dtypes=FLOAT)
add("log_softmax", lambda x, dim: torch.log_softmax(x, dim), _log_softmax, lambda make: dim_samples(make)[:4],
    ("amax", "exp", "sum", "log", "sub"), dtypes=FLOAT)
add("cumsum", lambda x, dim: torch.cumsum(x, dim), _cumsum,
    lambda make: [Sample((make(5), 0)), Sample((make(3, 4), 1)), Sample((make(3, 4), 0)),
                  Sample((make(4, 3, layout="transposed"), -1)), Sample((make(3, 2, layout="strided"), 0)),
                  Sample((make(), 0)), Sample((make(0, 3), 0)), Sample((make(2, 3, 4), -2))],
    ("cumsum", "flip"))

# matrix products
add("matmul", lambda a, b: a @ b, _matmul, matmul_samples, ("matmul", "expand"), dtypes=(*FLOAT, *INT))
add("mm", torch.mm, _matmul,
    lambda make: [Sample((make(2, 3), make(3, 4))), Sample((make(4, 3, layout="transposed"), make(3, 1))),
                  Sample((make(1, 3), make(3, 2, layout="strided")))], ("matmul",), dtypes=(*FLOAT, *INT))
add("bmm", torch.bmm, _matmul,
    lambda make: [Sample((make(2, 2, 3), make(2, 3, 4))), Sample((make(3, 2, 2, layout="transposed"), make(3, 2, 1)))],
    ("matmul",), dtypes=(*FLOAT, *INT))
add("dot", torch.dot, _matmul, lambda make: [Sample((make(3), make(3))), Sample((make(4, layout="strided"), make(4)))],
    ("matmul", "reshape"), dtypes=(*FLOAT, *INT))
add("mv", torch.mv, _matmul, lambda make: [Sample((make(2, 3), make(3)))], ("matmul",), dtypes=(*FLOAT, *INT))
add("outer", torch.outer, lambda a, b: np.multiply.outer(a, b), lambda make: [Sample((make(3), make(4)))], ("mul",))
add("einsum", lambda eq, *xs: torch.einsum(eq, *xs), lambda eq, *xs: np.einsum(eq, *xs),
    lambda make: [Sample(("ij,jk->ik", make(2, 3), make(3, 4))), Sample(("bij,bjk->bik", make(2, 2, 3), make(2, 3, 2))),
                  Sample(("i,j->ij", make(3), make(2))), Sample(("ij->ji", make(2, 3))), Sample(("ij->", make(2, 3))),
                  Sample(("bi,bi->b", make(4, 3, layout="transposed"), make(4, 3))),
                  Sample(("ij,j", make(2, 3), make(3)))],
    ("permute", "reshape", "mul", "sum"), dtypes=(*FLOAT, *INT), aliases=True)

# shapes and views
add("view", lambda x, *shape: x.view(*shape), lambda x, *shape: x.reshape(shape),
    lambda make: [Sample((make(3, 4), 2, 6)), Sample((make(3, 4), -1)), Sample((make(), 1)), Sample((make(1, 4), 4, 1)),
                  Sample((make(0, 3), 3, 0))], ("reshape",), aliases=True)
add("reshape", lambda x, *shape: x.reshape(*shape), lambda x, *shape: x.reshape(*shape),
    lambda make: [Sample((make(3, 4), (4, 3))), Sample((make(3, 4), (-1,))), Sample((make(), (1, 1))),
                  Sample((make(4, 3, layout="transposed"), (12,))), Sample((make(2, 3, 4), (6, -1))),
                  Sample((make(3, 2, layout="strided"), (2, 3)))], ("reshape",), aliases=True)
add("flatten", lambda x, *a: x.flatten(*a), _flatten,
    lambda make: [Sample((make(2, 3, 4),)), Sample((make(2, 3, 4), 1)), Sample((make(2, 3, 4), 0, 1)),
                  Sample((make(),)), Sample((make(4, 3, layout="transposed"),))], ("reshape",), aliases=True)
add("unflatten", lambda x, dim, sizes: x.unflatten(dim, sizes), _unflatten,
    lambda make: [Sample((make(2, 12), 1, (3, 4))), Sample((make(2, 12), -1, (-1, 2))),
                  Sample((make(6, 2, layout="transposed"), 0, (2, 3)))], ("reshape",), aliases=True)
add("squeeze", lambda x, *dim: x.squeeze(*dim), _squeeze,
    lambda make: [Sample((make(1, 3, 1),)), Sample((make(1, 3, 1), 0)), Sample((make(1, 3, 1), -1)),
                  Sample((make(1, 3, 1), 1)), Sample((make(1, 3, 1), (0, 2))), Sample((make(),))], ("reshape",),
    aliases=True)
add("unsqueeze", lambda x, dim: x.unsqueeze(dim), np.expand_dims,
    lambda make: [Sample((make(3, 4), 0)), Sample((make(3, 4), -1)), Sample((make(3, 4), 1)), Sample((make(), 0)),
                  Sample((make(4, 3, layout="transposed"), 2))], ("reshape",), aliases=True)
add("transpose", lambda x, a, b: x.transpose(a, b), lambda x, a, b: np.swapaxes(x, a, b),
    lambda make: [Sample((make(2, 3, 4), 0, 2)), Sample((make(2, 3, 4), -1, -2)), Sample((make(3, 4), 0, 1)),
                  Sample((make(4, 3, layout="transposed"), 1, 0))], ("permute",), aliases=True)
add("t", torch.t, lambda x: x.T, lambda make: [Sample((make(3, 4),)), Sample((make(3),)), Sample((make(),))],
    ("permute",), aliases=True)
add("T", lambda x: x.T, lambda x: x.T,
    lambda make: [Sample((make(2, 3, 4),)), Sample((make(3, 4, layout="transposed"),))], ("permute",), aliases=True)
add("mT", lambda x: x.mT, lambda x: np.swapaxes(x, -1, -2), lambda make: [Sample((make(2, 3, 4),))], ("permute",),
    aliases=True)
add("permute", lambda x, *p: x.permute(*p), lambda x, *p: np.transpose(x, p),
    lambda make: [Sample((make(2, 3, 4), 2, 0, 1)), Sample((make(2, 3, 4), 1, -1, 0)),
                  Sample((make(4, 3, layout="transposed"), 1, 0))], ("permute",), aliases=True)
add("movedim", torch.movedim, np.moveaxis, lambda make: [Sample((make(2, 3, 4), 0, 2)), Sample((make(2, 3, 4), -1, 0))],
    ("permute",), aliases=True)
add("expand", lambda x, *s: x.expand(*s), _expand,
    lambda make: [Sample((make(3, 1), 3, 4)), Sample((make(1, 3), 2, -1, 3)), Sample((make(), 2, 3)),
                  Sample((make(2, 1, 3, layout="transposed"), 2, 4, 3))], ("expand", "reshape", "sum"), aliases=True)
add("expand_as", lambda x, other: x.expand_as(other), lambda x, other: np.broadcast_to(x, other.shape).copy(),
    lambda make: [Sample((make(1, 4), make(3, 4))), Sample((make(3, 1), make(2, 3, 5)))], ("expand",), aliases=True)
add("broadcast_to", torch.broadcast_to, lambda x, shape: np.broadcast_to(x, shape).copy(),
    lambda make: [Sample((make(3), (2, 3)))], ("expand",), aliases=True)
add("repeat", lambda x, *s: x.repeat(*s), _repeat,
    lambda make: [Sample((make(2, 3), 2, 1)), Sample((make(2, 3), 1, 2, 2)), Sample((make(), 3)),
                  Sample((make(3, 2, layout="transposed"), 2, 2)), Sample((make(1, 3), 4, 1)),
                  Sample((make(2, 3), 1, 1))],
    ("reshape", "expand", "cast"))
add("cat", lambda *xs, **kw: torch.cat(xs, **kw), _cat,
    lambda make: [Sample((make(2, 3), make(1, 3), make(4, 3))), Sample((make(2, 1), make(2, 3)), {"dim": 1}),
                  Sample((make(3, 2, layout="transposed"), make(3, 2, layout="strided")), {"dim": -1}),
                  Sample((make(2, 3), make(2, 3, dtype="float64"))), Sample((make(3),))],
    ("cat", "slice", "slice_scatter"))
add("stack", lambda *xs, **kw: torch.stack(xs, **kw), lambda *xs, dim=0: np.stack(xs, axis=dim),
    lambda make: [Sample((make(3), make(3))), Sample((make(2, 3), make(2, 3)), {"dim": 1}),
                  Sample((make(2, 3), make(2, 3, layout="transposed")), {"dim": -1}), Sample((make(), make(), make()))],
    ("cat", "reshape"))
add("split", lambda x, *a: x.split(*a), _split,
    lambda make: [Sample((make(5, 2), 2)), Sample((make(5, 2), [1, 4])), Sample((make(3, 4), 3, 1)),
                  Sample((make(3, 4, layout="transposed"), [3, 1], 1))], ("slice",), aliases=True)
add("chunk", lambda x, *a: x.chunk(*a), _chunk,
    lambda make: [Sample((make(5, 2), 3)), Sample((make(6), 2)), Sample((make(2, 7), 4, 1))], ("slice",), aliases=True)
add("unbind", lambda x, *a: x.unbind(*a), lambda x, dim=0: [np.take(x, i, axis=dim) for i in range(x.shape[dim])],
    lambda make: [Sample((make(3, 2),)), Sample((make(3, 2), 1))], ("slice", "reshape"), aliases=True)
add("narrow", torch.narrow, lambda x, dim, start, length: np.take(x, range(start, start + length), axis=dim),
    lambda make: [Sample((make(4, 5), 1, 1, 3)), Sample((make(4, 5), 0, -2, 2))], ("slice",), aliases=True)
add("select", torch.select, lambda x, dim, i: np.take(x, i, axis=dim),
    lambda make: [Sample((make(4, 5), 1, 2)), Sample((make(4, 5), 0, -1))], ("slice", "reshape"), aliases=True)
add("flip", lambda x, *dims: x.flip(*dims),
    lambda x, *dims: np.flip(x, dims[0] if isinstance(dims[0], tuple) else dims).copy(),
    lambda make: [Sample((make(3, 4), 0)), Sample((make(3, 4), 0, 1)), Sample((make(4, 3, layout="transposed"), -1)),
                  Sample((make(2, 3, 4), (0, 2)))], ("flip",))
add("contiguous", lambda x: x.contiguous(), lambda x: x,
    lambda make: [Sample((make(4, 3, layout="transposed"),)), Sample((make(3, 4),))], ("cast",), aliases=True)
add("clone", torch.clone, lambda x: x.copy(), unary_samples, ("cast",))
add("detach", torch.detach, lambda x: x, unary_samples, ("detach",), differentiable=False, aliases=True)
add("to", lambda x, dtype: x.to(dtype), lambda x, dtype: x.astype(dtype),
    lambda make: [Sample((make(3, 4), dtype)) for dtype in TORCH_DTYPES.values()]
    + [Sample((make(4, 3, layout="transposed"), torch.float64))], ("cast",), aliases=True)
add("double", lambda x: x.double(), lambda x: x.astype(np.float64), unary_samples, ("cast",), aliases=True)
add("int_conversions", lambda x: (x.int(), x.long(), x.bool()),
    lambda x: tuple(x.astype(d) for d in (np.int32, np.int64, np.bool_)),
    lambda make: [Sample((make(3, 4),))], ("cast",), differentiable=False, aliases=True)

# indexing
_BASIC = [(1,), (-1,), (slice(1, 3),), (slice(None, None, 2),), (slice(1, None, 2), slice(-3, None)), (None,),
          (Ellipsis, 1), (slice(None), None, 2), (1, 2), (slice(-2, None), slice(None, None, 3)), (slice(0, 0),),
          (Ellipsis, None), (slice(None, None, 3), -2)]
add("getitem_basic", lambda x, index: x[index], lambda x, index: x[index].copy(),
    lambda make: [Sample((make(4, 5), index)) for index in _BASIC]
    + [Sample((make(2, 3, 4), (Ellipsis, slice(None, None, 2)))), Sample((make(2, 3, 4), (0, Ellipsis, None))),
       Sample((make(2, 3, 4, layout="transposed"), (slice(1, None), None, slice(None), -1))),
       Sample((make(), None)), Sample((make(), Ellipsis))],
    ("slice", "reshape", "slice_scatter"), aliases=True)
add("getitem_tensor", lambda x, index: x[index], lambda x, index: x[index],
    lambda make: [Sample((make(4, 5), make.index(4, 3))), Sample((make(4, 5), make.index(4, 2, 2))),
                  Sample((make(4, 5), (slice(None), make.index(5, 3)))),
                  Sample((make(4, 5), (make.index(4, 3), make.index(5, 3)))),
                  Sample((make(3, 4, 5), (make.index(3, 2), slice(None), make.index(5, 2)))),
                  Sample((make(3, 4, 5), (slice(1, None), make.index(4, 2, 1), make.index(5, 3)))),
                  Sample((make(4, 5), [0, 2, 2])), Sample((make(4, 5), make.index(4, 3, low=-4))),
                  Sample((make(4, 5, layout="transposed"), (make.index(4, 3), slice(1, None)))),
                  Sample((make(4, 5), (1, make.index(5, 2))))],
    ("index", "index_put"))
add("getitem_mask", lambda x, index: x[index], lambda x, index: x[index],
    lambda make: [Sample((make(3, 4), make.mask(3, 4))), Sample((make(3, 4), make.mask(3))),
                  Sample((make(3, 4), (slice(None), make.mask(4)))),
                  Sample((make(4, 3, layout="transposed"), make.mask(4, 3)))],
    ("index", "index_put"))
add("gather", torch.gather, _gather,
    lambda make: [Sample((make(3, 4), 1, make.index(4, 3, 2))), Sample((make(3, 4), 0, make.index(3, 2, 4))),
                  Sample((make(3, 4), -1, make.index(4, 2, 2))),
                  Sample((make(4, 3, layout="transposed"), 0, make.index(4, 4, 3)))],
    ("gather", "scatter_add"))
add("take_along_dim", torch.take_along_dim, lambda x, index, dim: np.take_along_axis(x, index, dim),
    lambda make: [Sample((make(3, 4), make.index(4, 3, 2), 1))], ("gather",))
add("index_select", torch.index_select, lambda x, dim, index: np.take(x, index, axis=dim),
    lambda make: [Sample((make(3, 4), 0, make.index(3, 5))), Sample((make(3, 4), 1, make.index(4, 2))),
                  Sample((make(2, 3, 4, layout="transposed"), -1, make.index(2, 3)))],
    ("gather", "scatter_add"))
add("masked_select", torch.masked_select, lambda x, mask: x[np.broadcast_to(mask, x.shape)],
    lambda make: [Sample((make(3, 4), make.mask(3, 4))), Sample((make(3, 4), make.mask(4)))], ("index",))
add("scatter_add", torch.scatter_add, _scatter_add,
    lambda make: [Sample((make(3, 4), 1, make.index(4, 3, 2), make(3, 2))),
                  Sample((make(3, 4), 0, make.index(3, 5, 4), make(5, 4))),
                  Sample((make(4, 3, layout="transposed"), -1, make.index(3, 4, 3), make(4, 3)))],
    ("scatter_add", "gather"), dtypes=(*FLOAT, *INT))
add("tril", torch.tril, _triangle(np.tril),
    lambda make: [Sample((make(4, 4),)), Sample((make(3, 5), 1)), Sample((make(3, 5), -1)), Sample((make(2, 3, 3),)),
                  Sample((make(4, 3, layout="transposed"),))], ("where", "arange"))
add("triu", torch.triu, _triangle(np.triu),
    lambda make: [Sample((make(4, 4),)), Sample((make(3, 5), 1)), Sample((make(2, 3, 3), -1))], ("where", "arange"))
add("setitem_basic", _setitem, _setitem,
    lambda make: [Sample((make(4, 5), (slice(1, 3), slice(None, None, 2)), make(2, 3))),
                  Sample((make(4, 5), 1, make(5))), Sample((make(4, 5), (Ellipsis, -1), 2.5)),
                  Sample((make(4, 5), (slice(None), None, 1), make(1))), Sample((make(4, 5), -2, make(1, 5))),
                  Sample((make(4, 5, layout="transposed"), (slice(None, None, 2),), make(5)))],
    ("cast",))
add("setitem_advanced", _setitem, _setitem,
    lambda make: [Sample((make(4, 5), make.given([0, 3, 2], "int64"), make(3, 5))),
                  Sample((make(4, 5), (slice(None), make.given([4, 0], "int64")), make(4, 2))),
                  Sample((make(4, 5), (slice(None), make.given([4, 0], "int64")), make(2))),
                  Sample((make(4, 5), (make.given([1, 2], "int64"), make.given([0, 4], "int64")), 1.5)),
                  Sample((make(3, 4, 5), (slice(None), make.given([[0, 1]], "int64"), slice(1, 3)), make(3, 1, 2, 2))),
                  Sample((make(4, 5), [0, -1], make(5)))],
    ("index_put", "index"))
add("setitem_mask", _setitem, _setitem,
    lambda make: [Sample((make(3, 4), make.mask(3, 4), 2)), Sample((make(3, 4), make.mask(3), make(4))),
                  Sample((make(3, 4), make.given([[True, False, True, False]] * 3, "bool"), make(6)))],
    ("where", "index_put"))

# creation: no tensor inputs, the dtype from the test
add("zeros", lambda *size, dtype: torch.zeros(*size, dtype=dtype), lambda *size, dtype: np.zeros(size, dtype),
    lambda make: [Sample((2, 3), {"dtype": make.torch_dtype}), Sample((), {"dtype": make.torch_dtype})], ("full",),
    differentiable=False)
add("ones", lambda size, dtype: torch.ones(size, dtype=dtype), lambda size, dtype: np.ones(size, dtype),
    lambda make: [Sample(((2, 3),), {"dtype": make.torch_dtype}), Sample(([0, 4],), {"dtype": make.torch_dtype})],
    ("full",), differentiable=False)
add("full", lambda size, value, dtype: torch.full(size, value, dtype=dtype),
    lambda size, value, dtype: np.full(size, value, dtype),
    lambda make: [Sample(((2, 3), 1), {"dtype": make.torch_dtype}), Sample(((4,), 0), {"dtype": make.torch_dtype})],
    ("full",), differentiable=False)
add("like", lambda x: (torch.zeros_like(x), torch.ones_like(x), torch.full_like(x, 1), torch.empty_like(x).shape),
    lambda x: (np.zeros_like(x), np.ones_like(x), np.full_like(x, 1), x.shape), unary_samples, ("full",),
    differentiable=False)
add("arange", lambda *a, dtype: torch.arange(*a, dtype=dtype), lambda *a, dtype: np.arange(*a, dtype=dtype),
    lambda make: [Sample((5,), {"dtype": make.torch_dtype}), Sample((1, 7, 2), {"dtype": make.torch_dtype}),
                  Sample((6, -3, -2), {"dtype": make.torch_dtype})],
    ("arange",), dtypes=(*FLOAT, *INT), differentiable=False)
add("linspace", lambda *a, dtype: torch.linspace(*a, dtype=dtype), lambda *a, dtype: np.linspace(*a, dtype=dtype),
    lambda make: [Sample((0, 1, 5), {"dtype": make.torch_dtype}), Sample((-2, 3, 1), {"dtype": make.torch_dtype})],
    ("arange",), dtypes=FLOAT, differentiable=False)
add("eye", lambda *a, dtype: torch.eye(*a, dtype=dtype), lambda *a, dtype: np.eye(*a, dtype=dtype),
    lambda make: [Sample((3,), {"dtype": make.torch_dtype}), Sample((2, 4), {"dtype": make.torch_dtype})],
    ("arange", "eq"), differentiable=False)


def _uniform_stats(x: torch.Tensor) -> torch.Tensor:
    return torch.stack([x.min(), x.max(), x.mean(), x.std()])


def _normal_stats(x: torch.Tensor) -> torch.Tensor:
    return torch.stack([x.mean(), x.std(), (x.abs() < 1).to(x.dtype).mean()])


def _frequencies(x: torch.Tensor, low: int, high: int, dtype: torch.dtype) -> tuple:
    """How often each value in [low, high) was drawn (summing to 1: nothing outside), and the dtype check."""
    return (x.unsqueeze(1) == torch.arange(low, high)).to(torch.float64).mean(0), x.dtype is dtype


# random: checked by statistics of 20,000 draws (5 standard errors and more)
add("rand", lambda *size, dtype: _uniform_stats(torch.rand(*size, dtype=dtype)),
    lambda *size, dtype: np.array([0.0, 1.0, 0.5, math.sqrt(1 / 12)], dtype),
    lambda make: [Sample((100, 200), {"dtype": make.torch_dtype})], ("rand_uniform",), dtypes=FLOAT,
    differentiable=False, atol=0.015)
add("randn", lambda *size, dtype: _normal_stats(torch.randn(*size, dtype=dtype)),
    lambda *size, dtype: np.array([0.0, 1.0, math.erf(1 / math.sqrt(2))], dtype),
    lambda make: [Sample((20000,), {"dtype": make.torch_dtype})], ("rand_normal",), dtypes=FLOAT,
    differentiable=False, atol=0.04)
add("rand_like", lambda x: (torch.rand_like(x).shape, torch.randn_like(x).dtype, bool(torch.rand_like(x).max() < 1)),
    lambda x: (x.shape, x.dtype, True), lambda make: [Sample((make(3, 4),))], ("rand_uniform", "rand_normal"),
    dtypes=FLOAT, differentiable=False)
add("randint",
    lambda low, high, size, dtype: _frequencies(torch.randint(low, high, size, dtype=dtype), low, high, dtype),
    lambda low, high, size, dtype: (np.full(high - low, 1 / (high - low)), True),
    lambda make: [Sample((2, 6, (5000,)), {"dtype": make.torch_dtype})], ("rand_uniform",), dtypes=INT,
    differentiable=False, atol=0.03)
add("randperm", lambda n: (torch.randperm(n).unsqueeze(0) == torch.arange(n).unsqueeze(1)).sum(1),
    lambda n: np.ones(n, np.int64), lambda make: [Sample((10,)), Sample((1,))], ("eq", "sum"), dtypes=("int64",),
    differentiable=False)
