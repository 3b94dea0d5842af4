"""The operator vocabulary shared by eager tensors and IR values.

`OpVocabulary` turns PyTorch-style calls (`a + 2`, `x.sum(dim=1)`, `x.transpose(0, 1)`, `a @ b`) into
primitive ops from the registry, doing the work the IR refuses to do implicitly: dtype promotion
(inserting `cast`), broadcasting (inserting `reshape` + `expand`), dim normalization, scalars as
`Literal`s. A subclass supplies `shape`, `dtype` and `_apply(op, *operands, **attrs)`: the frontend
Tensor computes with numpy and records autograd; an IR value emits a node into a graph. So the VJP
rules in `ops.py`, written with these methods, run unchanged in eager backward and in the autodiff pass.
"""
from __future__ import annotations

import math
from collections import namedtuple
from typing import Any, Sequence

import numpy as np

from jitorch.ir import dtypes
from jitorch.ir.dtypes import DType
from jitorch.ir.types import DTypeError, Literal, ShapeError

Scalar = (bool, int, float, np.bool_, np.integer, np.floating)
ValuesIndices = namedtuple("ValuesIndices", ["values", "indices"])


def normalize_dim(dim: int, ndim: int, name: str = "dim") -> int:
    """A dim in [-ndim, ndim) made non-negative; 0-d tensors accept dims 0 and -1, as in PyTorch."""
    bound = max(ndim, 1)
    if not isinstance(dim, (int, np.integer)) or isinstance(dim, bool):
        raise TypeError(f"{name} must be an int, got {type(dim).__name__}")
    if not -bound <= dim < bound:
        raise IndexError(f"Dimension out of range (expected to be in range of [{-bound}, {bound - 1}], "
                         f"but got {dim})")
    return int(dim) % bound


def normalize_dims(dims: Any, ndim: int) -> tuple[int, ...]:
    """dim=None | int | sequence -> sorted tuple of non-negative axes (None means all)."""
    if dims is None:
        return tuple(range(ndim))
    if isinstance(dims, (int, np.integer)):
        dims = (dims,)
    axes = tuple(sorted({normalize_dim(d, ndim) for d in dims}))
    if len(axes) != len(tuple(dims)):
        raise RuntimeError(f"dim {tuple(dims)} appears multiple times in the list of dims")
    return tuple(a for a in axes if a < ndim)


def shape_args(args: tuple) -> tuple[int, ...]:
    """Sizes given as `f(2, 3)` or `f((2, 3))` or `f([2, 3])` -> (2, 3)."""
    if len(args) == 1 and isinstance(args[0], (tuple, list)):
        args = tuple(args[0])
    if len(args) == 1 and hasattr(args[0], "tolist") and not isinstance(args[0], Scalar):
        args = tuple(args[0].tolist())
    out = []
    for s in args:
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)):
            raise TypeError(f"sizes must be ints, got {type(s).__name__}")
        out.append(int(s))
    return tuple(out)


def broadcast_shapes(name: str, *shapes: Sequence[int]) -> tuple[int, ...]:
    """numpy/PyTorch broadcasting, raising PyTorch's message naming the op on a mismatch."""
    ndim = max((len(s) for s in shapes), default=0)
    out = [1] * ndim
    for axis in reversed(range(ndim)):  # from the last dim, so the reported mismatch is PyTorch's
        for shape in shapes:
            size = shape[axis - ndim + len(shape)] if axis >= ndim - len(shape) else 1
            if size != 1:
                if out[axis] not in (1, size):
                    raise ShapeError(
                        f"{name}: the size of tensor a ({out[axis]}) must match the size of tensor b ({size}) "
                        f"at non-singleton dimension {axis}; shapes {', '.join(str(tuple(s)) for s in shapes)}")
                out[axis] = size
    return tuple(out)


def literal(value: Any, dtype: DType) -> Literal:
    if dtype.is_floating_point:
        return Literal(float(value), dtype)
    if dtype.is_bool:
        return Literal(bool(value), dtype)
    return Literal(int(value), dtype)


class OpVocabulary:
    """Mixin: PyTorch-style methods written in terms of `_apply` (see the module docstring)."""

    __slots__ = ()
    shape: tuple[int, ...]
    dtype: DType

    def _apply(self, name: str, *operands: Any, **attrs: Any) -> Any:
        raise NotImplementedError

    def _coerce(self, value: Any) -> Any:
        """Turn a non-scalar operand (list, array) into this class, or raise TypeError."""
        raise TypeError(f"unsupported operand type {type(value).__name__}")

    # ---------------------------------------------------------------------------------------------
    # basics

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def dim(self) -> int:
        return len(self.shape)

    def numel(self) -> int:
        return math.prod(self.shape)

    def _is_operand(self, value: Any) -> bool:
        return isinstance(value, OpVocabulary)

    def to(self, *args: Any, **kwargs: Any) -> Any:
        dtype = kwargs.get("dtype")
        for arg in args:
            if isinstance(arg, DType):
                dtype = arg
            elif isinstance(arg, OpVocabulary):
                dtype = arg.dtype
        if dtype is None or dtype is self.dtype:
            return self
        return self._apply("cast", self, dtype=dtype)

    def new_full(self, size: Sequence[int], fill_value: Any, *, dtype: DType | None = None) -> Any:
        dtype = dtype or self.dtype
        return self._apply("full", shape=shape_args((size,)), value=literal(fill_value, dtype).value, dtype=dtype)

    def new_zeros(self, *size: Any, dtype: DType | None = None) -> Any:
        return self.new_full(shape_args(size), 0, dtype=dtype)

    def new_ones(self, *size: Any, dtype: DType | None = None) -> Any:
        return self.new_full(shape_args(size), 1, dtype=dtype)

    def detach(self) -> Any:
        """The same values, cut off from gradient computation."""
        return self._apply("detach", self)

    def full_like(self, value: Any) -> Any:
        return self.new_full(tuple(self.shape), value)

    # ---------------------------------------------------------------------------------------------
    # elementwise with promotion and broadcasting

    def _elementwise(self, name: str, *operands: Any, result: str = "promote") -> Any:
        """Promote, broadcast and apply an elementwise op.

        result: "promote" (PyTorch's result type), "float" (ints promote to the default float),
        "bitwise" (bool/int only).
        """
        tensors, dims, zero_dims, scalars = [], [], [], []
        converted = []
        for value in operands:
            if not isinstance(value, OpVocabulary) and not isinstance(value, Scalar):
                value = self._coerce(value)
            converted.append(value)
            if isinstance(value, OpVocabulary):
                tensors.append(value)
                (dims if value.ndim else zero_dims).append(value.dtype)
            else:
                scalars.append(dtypes.scalar_dtype(value))
        dtype = dtypes.result_type(dims, zero_dims, scalars)
        if result == "float" and not dtype.is_floating_point:
            dtype = dtypes.get_default_dtype()
        if result == "bitwise" and dtype.is_floating_point:
            raise DTypeError(f"{name}: not supported for floating-point dtype {dtype.name}")
        shape = broadcast_shapes(name, *(t.shape for t in tensors))
        args = [v.to(dtype)._broadcast_to(shape) if isinstance(v, OpVocabulary) else literal(v, dtype)
                for v in converted]
        return self._apply(name, *args)

    def _broadcast_to(self, shape: tuple[int, ...]) -> Any:
        if tuple(self.shape) == shape:
            return self
        x = self
        if self.ndim < len(shape):
            x = x.reshape(*((1,) * (len(shape) - self.ndim) + tuple(self.shape)))
        return x._apply("expand", x, shape=shape)

    def _binary(name: str, result: str = "promote", reverse: bool = False) -> Any:  # noqa: N805
        def method(self: OpVocabulary, other: Any) -> Any:
            if not isinstance(other, (OpVocabulary, *Scalar, list, tuple, np.ndarray)):
                return NotImplemented
            return self._elementwise(name, other, self, result=result) if reverse else \
                self._elementwise(name, self, other, result=result)
        method.__name__ = name
        return method

    __add__, __radd__ = _binary("add"), _binary("add", reverse=True)
    __sub__, __rsub__ = _binary("sub"), _binary("sub", reverse=True)
    __mul__, __rmul__ = _binary("mul"), _binary("mul", reverse=True)
    __truediv__, __rtruediv__ = _binary("div", "float"), _binary("div", "float", reverse=True)
    __floordiv__, __rfloordiv__ = _binary("floordiv"), _binary("floordiv", reverse=True)
    __mod__, __rmod__ = _binary("mod"), _binary("mod", reverse=True)
    __pow__, __rpow__ = _binary("pow"), _binary("pow", reverse=True)
    __and__, __rand__ = _binary("bitwise_and", "bitwise"), _binary("bitwise_and", "bitwise", reverse=True)
    __or__, __ror__ = _binary("bitwise_or", "bitwise"), _binary("bitwise_or", "bitwise", reverse=True)
    __xor__, __rxor__ = _binary("bitwise_xor", "bitwise"), _binary("bitwise_xor", "bitwise", reverse=True)
    __lt__, __le__ = _binary("lt"), _binary("le")
    __gt__, __ge__ = _binary("gt"), _binary("ge")
    __eq__, __ne__ = _binary("eq"), _binary("ne")  # type: ignore[assignment]
    __hash__ = object.__hash__
    del _binary

    def __neg__(self) -> Any:
        if self.dtype.is_bool:
            raise DTypeError("neg: negation, the `-` operator, on a bool tensor is not supported; "
                             "use the `~` or `logical_not()` operator instead")
        return self._apply("neg", self)

    def __pos__(self) -> Any:
        return self

    def __invert__(self) -> Any:
        return self._apply("bitwise_not", self)

    def __abs__(self) -> Any:
        return self.abs()

    def __matmul__(self, other: Any) -> Any:
        return self.matmul(other)

    def __rmatmul__(self, other: Any) -> Any:
        return self._coerce(other).matmul(self)

    def add(self, other: Any, *, alpha: Any = 1) -> Any:
        return self + (other * alpha if alpha != 1 else other)

    def sub(self, other: Any, *, alpha: Any = 1) -> Any:
        return self - (other * alpha if alpha != 1 else other)

    def mul(self, other: Any) -> Any:
        return self * other

    def div(self, other: Any, *, rounding_mode: str | None = None) -> Any:
        if rounding_mode is None:
            return self / other
        if rounding_mode == "floor":
            return self // other
        if rounding_mode == "trunc":
            other_dtype = other.dtype if isinstance(other, OpVocabulary) else dtypes.scalar_dtype(other)
            return (self / other).trunc().to(dtypes.promote_types(self.dtype, other_dtype))
        raise ValueError(f"div expected rounding_mode to be one of None, 'trunc', or 'floor' but found "
                         f"'{rounding_mode}'")

    true_divide = divide = div
    multiply = mul
    subtract = sub

    def floor_divide(self, other: Any) -> Any:
        return self // other

    def remainder(self, other: Any) -> Any:
        return self % other

    def fmod(self, other: Any) -> Any:
        return self - (self / other).trunc() * other

    def pow(self, exponent: Any) -> Any:
        return self ** exponent

    def maximum(self, other: Any) -> Any:
        return self._elementwise("maximum", self, other)

    def minimum(self, other: Any) -> Any:
        return self._elementwise("minimum", self, other)

    def eq(self, other: Any) -> Any:
        return self == other

    def ne(self, other: Any) -> Any:
        return self != other

    def lt(self, other: Any) -> Any:
        return self < other

    def le(self, other: Any) -> Any:
        return self <= other

    def gt(self, other: Any) -> Any:
        return self > other

    def ge(self, other: Any) -> Any:
        return self >= other

    def logical_not(self) -> Any:
        return self.to(dtypes.bool_).__invert__()

    def logical_and(self, other: Any) -> Any:
        return self.to(dtypes.bool_) & (other.to(dtypes.bool_) if isinstance(other, OpVocabulary) else bool(other))

    def logical_or(self, other: Any) -> Any:
        return self.to(dtypes.bool_) | (other.to(dtypes.bool_) if isinstance(other, OpVocabulary) else bool(other))

    def logical_xor(self, other: Any) -> Any:
        return self.to(dtypes.bool_) ^ (other.to(dtypes.bool_) if isinstance(other, OpVocabulary) else bool(other))

    bitwise_and, bitwise_or, bitwise_xor = __and__, __or__, __xor__
    bitwise_not = __invert__

    def if_else(self, a: Any, b: Any) -> Any:
        """`where(self, a, b)` with this bool tensor as the condition."""
        tensors = [v for v in (a, b) if isinstance(v, OpVocabulary)]
        if not tensors:
            dtype = dtypes.result_type([], [], [dtypes.scalar_dtype(a), dtypes.scalar_dtype(b)])
            a = self.new_full((), a, dtype=dtype)
            tensors = [a]
        dims = [t.dtype for t in tensors if t.ndim]
        zero = [t.dtype for t in tensors if not t.ndim]
        scalars = [dtypes.scalar_dtype(v) for v in (a, b) if not isinstance(v, OpVocabulary)]
        dtype = dtypes.result_type(dims, zero, scalars)
        cond = self if self.dtype is dtypes.bool_ else self.to(dtypes.bool_)
        shape = broadcast_shapes("where", cond.shape, *(t.shape for t in tensors))
        args = [v.to(dtype)._broadcast_to(shape) if isinstance(v, OpVocabulary) else literal(v, dtype)
                for v in (a, b)]
        return self._apply("where", cond._broadcast_to(shape), *args)

    def where(self, condition: Any, other: Any) -> Any:
        """PyTorch's `x.where(cond, y)`: elements of x where cond holds, else y."""
        return condition.if_else(self, other)

    # ---------------------------------------------------------------------------------------------
    # unary math

    def _float_unary(name: str) -> Any:  # noqa: N805
        def method(self: OpVocabulary) -> Any:
            x = self if self.dtype.is_floating_point else self.to(dtypes.get_default_dtype())
            return x._apply(name, x)
        method.__name__ = name
        return method

    exp, expm1, log, log1p = _float_unary("exp"), _float_unary("expm1"), _float_unary("log"), _float_unary("log1p")
    sqrt, sin, cos, tanh = _float_unary("sqrt"), _float_unary("sin"), _float_unary("cos"), _float_unary("tanh")
    sigmoid, erf, reciprocal = _float_unary("sigmoid"), _float_unary("erf"), _float_unary("reciprocal")
    del _float_unary

    def _same_unary(name: str) -> Any:  # noqa: N805
        def method(self: OpVocabulary) -> Any:
            # on bool these are all the identity, as in PyTorch
            return self if self.dtype.is_bool else self._apply(name, self)
        method.__name__ = name
        return method

    abs, sign, relu = _same_unary("abs"), _same_unary("sign"), _same_unary("relu")
    floor, ceil = _same_unary("floor"), _same_unary("ceil")
    del _same_unary

    def round(self, decimals: int = 0) -> Any:
        if self.dtype.is_bool:
            return self
        if decimals == 0 or self.dtype.is_integer:
            return self._apply("round", self)
        scaled = self * 10.0 ** decimals
        return scaled._apply("round", scaled) / 10.0 ** decimals

    def trunc(self) -> Any:
        if self.dtype.is_integer:
            return self.floor()  # a copy, as PyTorch returns
        if self.dtype.is_bool:
            return self
        return (self < 0).if_else(self.ceil(), self.floor())

    def rsqrt(self) -> Any:
        return self.sqrt().reciprocal()

    def square(self) -> Any:
        return self * self

    def log2(self) -> Any:
        return self.log() * (1.0 / math.log(2.0))

    def log10(self) -> Any:
        return self.log() * (1.0 / math.log(10.0))

    def exp2(self) -> Any:
        return (self * math.log(2.0)).exp()

    def tan(self) -> Any:
        return self.sin() / self.cos()

    def clamp(self, min: Any = None, max: Any = None) -> Any:  # noqa: A002 - PyTorch's names
        if min is None and max is None:
            raise RuntimeError("clamp: at least one of 'min' or 'max' must not be None")
        # written with where so the gradient passes where min <= x <= max, inclusive, as in PyTorch
        out = self
        if min is not None:
            out = (out < min).if_else(min, out)
        if max is not None:
            out = (out > max).if_else(max, out)
        return out

    clip = clamp

    def clamp_min(self, min: Any) -> Any:  # noqa: A002
        return self.clamp(min=min)

    def clamp_max(self, max: Any) -> Any:  # noqa: A002
        return self.clamp(max=max)

    def isnan(self) -> Any:
        return self != self

    def isinf(self) -> Any:
        return self.abs() == math.inf

    def isfinite(self) -> Any:
        return (self - self) == 0

    def nan_to_num(self, nan: float = 0.0, posinf: float | None = None, neginf: float | None = None) -> Any:
        info = np.finfo(self.dtype.numpy) if self.dtype.is_floating_point else None
        if info is None:
            return self
        out = self.isnan().if_else(nan, self)
        out = (out == math.inf).if_else(info.max if posinf is None else posinf, out)
        return (out == -math.inf).if_else(info.min if neginf is None else neginf, out)

    def lerp(self, end: Any, weight: Any) -> Any:
        return self + (end - self) * weight

    # ---------------------------------------------------------------------------------------------
    # reductions

    def sum_axes(self, axes: tuple[int, ...]) -> Any:
        """The `sum` primitive: reduce `axes`, keeping them as size-1 dims."""
        return self._apply("sum", self, axes=tuple(axes))

    def prod_axes(self, axes: tuple[int, ...]) -> Any:
        return self._apply("prod", self, axes=tuple(axes))

    def cumsum_axis(self, axis: int) -> Any:
        """The `cumsum` primitive: prefix sums along a non-negative `axis`, in this dtype."""
        return self._apply("cumsum", self, axis=axis)

    def _squeeze_axes(self, axes: tuple[int, ...]) -> Any:
        return self.reshape(*(s for i, s in enumerate(self.shape) if i not in axes))

    def _reduce(self, name: str, dim: Any, keepdim: bool, dtype: DType | None = None) -> Any:
        axes = normalize_dims(dim, self.ndim)
        x = self
        if dtype is not None:
            x = x.to(dtype)
        elif name in ("sum", "prod") and not x.dtype.is_floating_point:
            x = x.to(dtypes.int64)
        out = x._apply(name, x, axes=axes)
        return out if keepdim else out._squeeze_axes(axes)

    def sum(self, dim: Any = None, keepdim: bool = False, *, dtype: DType | None = None) -> Any:
        return self._reduce("sum", dim, keepdim, dtype)

    def prod(self, dim: Any = None, keepdim: bool = False, *, dtype: DType | None = None) -> Any:
        return self._reduce("prod", dim, keepdim, dtype)

    def _count(self, dim: Any) -> int:
        return math.prod(self.shape[a] for a in normalize_dims(dim, self.ndim))

    def mean(self, dim: Any = None, keepdim: bool = False, *, dtype: DType | None = None) -> Any:
        x = self.to(dtype) if dtype is not None else self
        if not x.dtype.is_floating_point:
            raise RuntimeError(f"mean(): could not infer output dtype. Input dtype must be either a floating "
                               f"point or complex dtype. Got: {x.dtype.name}")
        return x.sum(dim, keepdim) / x._count(dim)

    def var(self, dim: Any = None, unbiased: bool | None = None, keepdim: bool = False, *,
            correction: float | None = None) -> Any:
        if correction is None:
            correction = 1 if unbiased is None or unbiased else 0
        x = self if self.dtype.is_floating_point else self.to(dtypes.get_default_dtype())
        centered = x - x.mean(dim, keepdim=True)
        return (centered * centered).sum(dim, keepdim) / max(x._count(dim) - correction, 0)

    def std(self, dim: Any = None, unbiased: bool | None = None, keepdim: bool = False, *,
            correction: float | None = None) -> Any:
        return self.var(dim, unbiased, keepdim, correction=correction).sqrt()

    def amax(self, dim: Any = (), keepdim: bool = False) -> Any:
        return self._reduce("amax", None if dim == () else dim, keepdim)

    def amin(self, dim: Any = (), keepdim: bool = False) -> Any:
        return self._reduce("amin", None if dim == () else dim, keepdim)

    def _extreme(self, name: str, dim: Any, keepdim: bool) -> Any:
        if dim is None:
            return self._reduce("a" + name, None, False)
        if isinstance(dim, OpVocabulary):
            return getattr(self, "maximum" if name == "max" else "minimum")(dim)
        # max(dim) sends the gradient to the chosen index only, as PyTorch does
        indices = self._arg("arg" + name, dim, keepdim=True)
        axis = normalize_dim(dim, self.ndim)
        values = self.gather(axis, indices) if self.ndim else self.reshape(1).gather(0, indices.reshape(1)).reshape()
        if not keepdim and self.ndim:
            values, indices = values._squeeze_axes((axis,)), indices._squeeze_axes((axis,))
        return ValuesIndices(values, indices)

    def max(self, dim: Any = None, keepdim: bool = False) -> Any:
        return self._extreme("max", dim, keepdim)

    def min(self, dim: Any = None, keepdim: bool = False) -> Any:
        return self._extreme("min", dim, keepdim)

    def _arg(self, name: str, dim: Any, keepdim: bool) -> Any:
        if dim is None:
            flat = self.reshape(-1)
            return flat._apply(name, flat, axes=(0,)).reshape(*((1,) * self.ndim if keepdim else ()))
        axis = normalize_dim(dim, self.ndim)
        x = self.reshape(1) if self.ndim == 0 else self
        out = x._apply(name, x, axes=(axis,))
        if self.ndim == 0:
            return out.reshape()
        return out if keepdim else out._squeeze_axes((axis,))

    def argmax(self, dim: Any = None, keepdim: bool = False) -> Any:
        return self._arg("argmax", dim, keepdim)

    def argmin(self, dim: Any = None, keepdim: bool = False) -> Any:
        return self._arg("argmin", dim, keepdim)

    def all(self, dim: Any = None, keepdim: bool = False) -> Any:
        return self.to(dtypes.bool_)._reduce("amin", dim, keepdim) if self.numel() else \
            self.new_full((), True, dtype=dtypes.bool_)

    def any(self, dim: Any = None, keepdim: bool = False) -> Any:
        return self.to(dtypes.bool_)._reduce("amax", dim, keepdim) if self.numel() else \
            self.new_full((), False, dtype=dtypes.bool_)

    def logsumexp(self, dim: Any, keepdim: bool = False) -> Any:
        x = self if self.dtype.is_floating_point else self.to(dtypes.get_default_dtype())
        axes = normalize_dims(dim, x.ndim)
        kept = tuple(1 if i in axes else s for i, s in enumerate(x.shape))
        peak = x._apply("amax", x, axes=axes).detach() if x.numel() else x.new_full(kept, 0.0)
        peak = (peak.abs() == math.inf).if_else(0.0, peak)
        out = (x - peak._broadcast_to(tuple(x.shape))).exp().sum_axes(axes).log() + peak
        return out if keepdim else out._squeeze_axes(axes)

    # ---------------------------------------------------------------------------------------------
    # shape

    def reshape(self, *shape: Any) -> Any:
        shape = shape_args(shape)
        size = self.numel()
        if shape.count(-1) > 1:
            raise RuntimeError("only one dimension can be inferred")
        if -1 in shape:
            known = math.prod(s for s in shape if s != -1)
            if known == 0 or size % known:
                raise RuntimeError(f"shape '{list(shape)}' is invalid for input of size {size}")
            shape = tuple(size // known if s == -1 else s for s in shape)
        if math.prod(shape) != size or any(s < 0 for s in shape):
            raise RuntimeError(f"shape '{list(shape)}' is invalid for input of size {size}")
        if shape == tuple(self.shape):
            return self
        return self._apply("reshape", self, shape=shape)

    def view_as(self, other: Any) -> Any:
        return self.view(*other.shape)

    def reshape_as(self, other: Any) -> Any:
        return self.reshape(*other.shape)

    def view(self, *shape: Any) -> Any:
        if len(shape) == 1 and isinstance(shape[0], DType):
            raise NotImplementedError("view(dtype) reinterprets bits, which jitorch does not support")
        return self.reshape(*shape)

    def flatten(self, start_dim: int = 0, end_dim: int = -1) -> Any:
        if self.ndim == 0:
            return self.reshape(1)
        start, end = normalize_dim(start_dim, self.ndim), normalize_dim(end_dim, self.ndim)
        if start > end:
            raise RuntimeError("flatten() has invalid args: start_dim cannot come after end_dim")
        shape = self.shape[:start] + (math.prod(self.shape[start:end + 1]),) + self.shape[end + 1:]
        return self.reshape(*shape)

    def unflatten(self, dim: int, sizes: Sequence[int]) -> Any:
        axis = normalize_dim(dim, self.ndim)
        sizes = list(sizes)
        if -1 in sizes:
            known = math.prod(s for s in sizes if s != -1)
            sizes[sizes.index(-1)] = self.shape[axis] // max(known, 1)
        if math.prod(sizes) != self.shape[axis]:
            raise RuntimeError(f"unflatten: provided sizes {list(sizes)} don't multiply up to the size of dim "
                               f"{dim} ({self.shape[axis]}) in the input tensor")
        return self.reshape(*self.shape[:axis], *sizes, *self.shape[axis + 1:])

    def squeeze(self, dim: Any = None) -> Any:
        if dim is None:
            axes = tuple(i for i, s in enumerate(self.shape) if s == 1)
        else:
            axes = tuple(a for a in normalize_dims(dim, self.ndim) if self.shape[a] == 1)
        return self._squeeze_axes(axes) if axes else self

    def unsqueeze(self, dim: int) -> Any:
        axis = normalize_dim(dim, self.ndim + 1)
        return self.reshape(*self.shape[:axis], 1, *self.shape[axis:])

    def permute(self, *dims: Any) -> Any:
        dims = shape_args(dims)
        if len(dims) != self.ndim:
            raise RuntimeError(f"permute(sparse_coo): number of dimensions in the tensor input does not match "
                               f"the length of the desired ordering of dimensions i.e. input.dim() = "
                               f"{self.ndim} is not equal to len(dims) = {len(dims)}")
        perm = tuple(normalize_dim(d, self.ndim) for d in dims)
        if len(set(perm)) != len(perm):
            raise RuntimeError("permute(): duplicate dims are not allowed.")
        if perm == tuple(range(self.ndim)):
            return self
        return self._apply("permute", self, perm=perm)

    def transpose(self, dim0: int, dim1: int) -> Any:
        if self.ndim < 2 and dim0 in (0, -1) and dim1 in (0, -1):
            return self
        a, b = normalize_dim(dim0, self.ndim), normalize_dim(dim1, self.ndim)
        perm = list(range(self.ndim))
        perm[a], perm[b] = perm[b], perm[a]
        return self.permute(*perm)

    swapaxes = swapdims = transpose

    def t(self) -> Any:
        if self.ndim > 2:
            raise RuntimeError(f"t() expects a tensor with <= 2 dimensions, but self is {self.ndim}D")
        return self.transpose(0, -1) if self.ndim == 2 else self

    @property
    def T(self) -> Any:  # noqa: N802 - PyTorch's name
        return self.permute(*reversed(range(self.ndim)))

    @property
    def mT(self) -> Any:  # noqa: N802
        return self.transpose(-2, -1)

    def movedim(self, source: Any, destination: Any) -> Any:
        sources = [normalize_dim(d, self.ndim) for d in ((source,) if isinstance(source, int) else source)]
        dests = [normalize_dim(d, self.ndim) for d in ((destination,) if isinstance(destination, int) else destination)]
        order = [d for d in range(self.ndim) if d not in sources]
        for dest, src in sorted(zip(dests, sources)):
            order.insert(dest, src)
        return self.permute(*order)

    moveaxis = movedim

    def expand(self, *sizes: Any) -> Any:
        sizes = shape_args(sizes)
        if len(sizes) < self.ndim:
            raise RuntimeError(f"expand: the number of sizes provided ({len(sizes)}) must be greater or equal "
                               f"to the number of dimensions in the tensor ({self.ndim})")
        lead = len(sizes) - self.ndim
        target = []
        for i, size in enumerate(sizes):
            current = self.shape[i - lead] if i >= lead else 1
            if size == -1:
                if i < lead:
                    raise RuntimeError("expand: -1 is not allowed in a leading, non-existing dimension")
                size = current
            if current != 1 and size != current:
                raise RuntimeError(f"The expanded size of the tensor ({size}) must match the existing size "
                                   f"({current}) at non-singleton dimension {i}.  Target sizes: {list(sizes)}.  "
                                   f"Tensor sizes: {list(self.shape)}")
            target.append(size)
        return self._broadcast_to(tuple(target))

    def expand_as(self, other: Any) -> Any:
        return self.expand(*other.shape)

    def broadcast_to(self, shape: Sequence[int]) -> Any:
        return self.expand(*shape)

    def repeat(self, *sizes: Any) -> Any:
        sizes = shape_args(sizes)
        if len(sizes) < self.ndim:
            raise RuntimeError("Number of dimensions of repeat dims can not be smaller than number of "
                               "dimensions of tensor")
        shape = (1,) * (len(sizes) - self.ndim) + tuple(self.shape)
        interleaved = [d for pair in ((1, s) for s in shape) for d in pair]
        expanded = [d for pair in zip(sizes, shape) for d in pair]
        tiled = self.reshape(*interleaved).expand(*expanded)
        # repeat returns new memory: materialize the expanded (stride-0) tensor once, then reshape it
        copied = tiled._apply("cast", tiled, dtype=tiled.dtype)
        return copied.reshape(*(r * s for r, s in zip(sizes, shape)))

    def slice(self, *, starts: tuple[int, ...], stops: tuple[int, ...], steps: tuple[int, ...]) -> Any:
        """The `slice` primitive on normalized, in-range bounds."""
        if starts == (0,) * self.ndim and stops == tuple(self.shape) and steps == (1,) * self.ndim:
            return self
        return self._apply("slice", self, starts=tuple(starts), stops=tuple(stops), steps=tuple(steps))

    def slice_scatter(self, src: Any, *, starts: tuple[int, ...], stops: tuple[int, ...],
                      steps: tuple[int, ...]) -> Any:
        return self._apply("slice_scatter", self, src, starts=tuple(starts), stops=tuple(stops), steps=tuple(steps))

    def narrow(self, dim: int, start: int, length: int) -> Any:
        axis = normalize_dim(dim, self.ndim)
        size = self.shape[axis]
        if start < 0:
            start += size
        if not (0 <= start and length >= 0 and start + length <= size):
            raise IndexError(f"narrow(): start ({start}) + length ({length}) exceeds dimension size ({size}).")
        starts = tuple(start if i == axis else 0 for i in range(self.ndim))
        stops = tuple(start + length if i == axis else s for i, s in enumerate(self.shape))
        return self.slice(starts=starts, stops=stops, steps=(1,) * self.ndim)

    def select(self, dim: int, index: int) -> Any:
        axis = normalize_dim(dim, self.ndim)
        size = self.shape[axis]
        if not -size <= index < size:
            raise IndexError(f"select(): index {index} out of range for tensor of size {list(self.shape)} "
                             f"at dimension {dim}")
        return self.narrow(axis, index % size, 1)._squeeze_axes((axis,))

    def flip(self, *dims: Any) -> Any:
        dims = shape_args(dims) if dims and not (len(dims) == 1 and isinstance(dims[0], int)) else dims
        axes = normalize_dims(dims, self.ndim)
        return self._apply("flip", self, axes=axes) if axes else self

    def split(self, split_size_or_sections: Any, dim: int = 0) -> tuple:
        axis = normalize_dim(dim, self.ndim)
        size = self.shape[axis]
        if isinstance(split_size_or_sections, int):
            step = split_size_or_sections
            if step <= 0 and size:
                raise RuntimeError(f"split_size can only be 0 if dimension size is 0, but got dimension size of "
                                   f"{size}")
            sections = [min(step, size - start) for start in range(0, size, step)] if size else [0]
        else:
            sections = list(split_size_or_sections)
            if sum(sections) != size:
                raise RuntimeError(f"split_with_sizes expects split_sizes to sum exactly to {size} (input tensor's "
                                   f"size at dimension {dim}), but got split_sizes={sections}")
        pieces, offset = [], 0
        for length in sections:
            pieces.append(self.narrow(axis, offset, length))
            offset += length
        return tuple(pieces)

    def chunk(self, chunks: int, dim: int = 0) -> tuple:
        size = self.shape[normalize_dim(dim, self.ndim)]
        return self.split(max(1, -(-size // chunks)), dim)

    def unbind(self, dim: int = 0) -> tuple:
        axis = normalize_dim(dim, self.ndim)
        return tuple(self.select(axis, i) for i in range(self.shape[axis]))

    def _cat(self, tensors: Sequence[Any], dim: int) -> Any:
        tensors = [t if isinstance(t, OpVocabulary) else self._coerce(t) for t in tensors]
        if not tensors:
            raise RuntimeError("cat: expected a non-empty list of Tensors")
        # PyTorch skips legacy empty 1-D tensors in cat
        kept = [t for t in tensors if not (t.ndim == 1 and t.shape[0] == 0)] or tensors[:1]
        dtype = tensors[0].dtype
        for t in tensors[1:]:
            dtype = dtypes.promote_types(dtype, t.dtype)
        axis = normalize_dim(dim, kept[0].ndim)
        kept = [t.to(dtype) for t in kept]
        return self._apply("cat", *kept, axis=axis)  # also for one tensor: cat returns a new tensor

    def _stack(self, tensors: Sequence[Any], dim: int) -> Any:
        tensors = list(tensors)
        if not tensors:
            raise RuntimeError("stack expects a non-empty TensorList")
        shapes = {tuple(t.shape) for t in tensors}
        if len(shapes) != 1:
            sizes = [list(t.shape) for t in tensors]
            raise RuntimeError(f"stack expects each tensor to be equal size, but got {sizes}")
        axis = normalize_dim(dim, tensors[0].ndim + 1)
        return self._cat([t.unsqueeze(axis) for t in tensors], axis)

    # ---------------------------------------------------------------------------------------------
    # indexing primitives

    def gather(self, dim: int, index: Any) -> Any:
        return self._apply("gather", self, index, axis=normalize_dim(dim, self.ndim))

    def scatter_add(self, dim: int, index: Any, src: Any) -> Any:
        return self._apply("scatter_add", self, index, src.to(self.dtype), axis=normalize_dim(dim, self.ndim))

    def index(self, indices: Sequence[Any]) -> Any:
        """The `index` primitive: `x[i0, i1, ...]` over leading dims with same-shaped int tensors."""
        return self._apply("index", self, *indices)

    def index_put(self, indices: Sequence[Any], values: Any, accumulate: bool = False) -> Any:
        indices = tuple(indices)
        if not isinstance(values, OpVocabulary):
            values = self.new_full((), values)
        target = tuple(indices[0].shape) + tuple(self.shape[len(indices):])
        values = values.to(self.dtype)._broadcast_to(target)
        return self._apply("index_put", self, *indices, values, accumulate=accumulate)

    def index_select(self, dim: int, index: Any) -> Any:
        axis = normalize_dim(dim, self.ndim)
        if index.ndim > 1:
            raise IndexError("index_select(): Index is supposed to be a vector")
        # gather, unlike index, refuses negative indices, as PyTorch's index_select does (in eager and
        # compiled code alike, since the check is the primitive's)
        shape = tuple(index.numel() if d == axis else size for d, size in enumerate(self.shape))
        lined_up = index.reshape(*(index.numel() if d == axis else 1 for d in range(self.ndim)))
        return self.gather(axis, lined_up.expand(*shape))

    def take_along_dim(self, indices: Any, dim: int) -> Any:
        return self.gather(dim, indices)

    # ---------------------------------------------------------------------------------------------
    # matrix products

    def matmul(self, other: Any) -> Any:
        if not isinstance(other, OpVocabulary):
            other = self._coerce(other)
        a, b = self, other
        if a.ndim == 0 or b.ndim == 0:
            raise RuntimeError(f"matmul: both arguments to matmul need to be at least 1D, but they are "
                               f"{a.ndim}D and {b.ndim}D")
        dtype = dtypes.promote_types(a.dtype, b.dtype)
        a, b = a.to(dtype), b.to(dtype)
        squeeze_rows, squeeze_cols = a.ndim == 1, b.ndim == 1
        if squeeze_rows:
            a = a.reshape(1, a.shape[0])
        if squeeze_cols:
            b = b.reshape(b.shape[0], 1)
        if a.shape[-1] != b.shape[-2]:
            raise RuntimeError(f"matmul: mat1 and mat2 shapes cannot be multiplied ({a.shape[-2]}x{a.shape[-1]} "
                               f"and {b.shape[-2]}x{b.shape[-1]}); input shapes {tuple(self.shape)} and "
                               f"{tuple(other.shape)}")
        batch = broadcast_shapes("matmul", a.shape[:-2], b.shape[:-2])
        a = a._broadcast_to(batch + tuple(a.shape[-2:]))
        b = b._broadcast_to(batch + tuple(b.shape[-2:]))
        out = a._apply("matmul", a, b)
        if squeeze_rows or squeeze_cols:
            shape = list(out.shape)
            if squeeze_cols:
                shape.pop(-1)
            if squeeze_rows:
                shape.pop(-1 if squeeze_cols else -2)
            out = out.reshape(*shape)
        return out

    def mm(self, other: Any) -> Any:
        if self.ndim != 2 or other.ndim != 2:
            raise RuntimeError(f"mm: both arguments must be 2D, got {self.ndim}D and {other.ndim}D")
        return self.matmul(other)

    def bmm(self, other: Any) -> Any:
        if self.ndim != 3 or other.ndim != 3 or self.shape[0] != other.shape[0]:
            raise RuntimeError(f"bmm: expected two 3D tensors with the same batch size, got shapes "
                               f"{tuple(self.shape)} and {tuple(other.shape)}")
        return self.matmul(other)

    def dot(self, other: Any) -> Any:
        if self.ndim != 1 or other.ndim != 1:
            raise RuntimeError(f"1D tensors expected, but got {self.ndim}D and {other.ndim}D tensors")
        if self.shape[0] != other.shape[0]:
            raise RuntimeError(f"inconsistent tensor size, expected tensor [{self.shape[0]}] and src "
                               f"[{other.shape[0]}] to have the same number of elements, but got "
                               f"{self.shape[0]} and {other.shape[0]} elements respectively")
        return self.matmul(other)

    def mv(self, vec: Any) -> Any:
        return self.matmul(vec)

    def outer(self, other: Any) -> Any:
        return self.reshape(-1, 1) * other.reshape(1, -1)

    ger = outer

