"""The elementwise op family of the vocabulary: operators and arithmetic with PyTorch's dtype promotion
and broadcasting, comparisons, logical ops, `where`, and unary math. `OpVocabulary` composes it.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from jitorch.ir import dtypes
from jitorch.ir.types import DTypeError
from jitorch.ir.vocabulary_base import Scalar, VocabularyBase, broadcast_shapes, literal


def _as_they_are(a: Any, b: Any, result: str) -> tuple[Any, Any] | None:
    """The operands of a binary op that needs no promotion and no broadcast, the usual case: two tensors of
    one dtype and shape, or a float tensor and a Python number (its literal). None for anything else, which
    the general path sorts out. An add of two small tensors spent 7 of its 18 µs working that out."""
    if isinstance(a, VocabularyBase):
        if isinstance(b, VocabularyBase):
            same = a.dtype is b.dtype and a.shape == b.shape and (result == "promote" or a.dtype.is_floating_point)
            return (a, b) if same else None
        if type(b) in (int, float) and a.dtype.is_floating_point:
            return a, literal(b, a.dtype)
    elif type(a) in (int, float) and isinstance(b, VocabularyBase) and b.dtype.is_floating_point:
        return literal(a, b.dtype), b
    return None


class ElementwiseOps(VocabularyBase):
    """Operators, arithmetic, comparisons, logic, `where` and unary math, written with `_apply`."""

    __slots__ = ()

    # ---------------------------------------------------------------------------------------------
    # elementwise with promotion and broadcasting

    def _elementwise(self, name: str, *operands: Any, result: str = "promote") -> Any:
        """Promote, broadcast and apply an elementwise op.

        result: "promote" (PyTorch's result type), "float" (ints promote to the default float),
        "bitwise" (bool/int only).
        """
        if len(operands) == 2 and result != "bitwise":
            ready = _as_they_are(*operands, result)
            if ready is not None:
                return self._apply(name, *ready)
        tensors, dims, zero_dims, scalars = [], [], [], []
        converted = []
        for value in operands:
            if not isinstance(value, VocabularyBase) and not isinstance(value, Scalar):
                value = self._coerce(value)
            converted.append(value)
            if isinstance(value, VocabularyBase):
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
        args = [v.to(dtype)._broadcast_to(shape) if isinstance(v, VocabularyBase) else literal(v, dtype)
                for v in converted]
        return self._apply(name, *args)

    def _binary(name: str, result: str = "promote", reverse: bool = False) -> Any:  # noqa: N805
        def method(self: VocabularyBase, other: Any) -> Any:
            if not isinstance(other, (VocabularyBase, *Scalar, list, tuple, np.ndarray)):
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
            other_dtype = other.dtype if isinstance(other, VocabularyBase) else dtypes.scalar_dtype(other)
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
        return self.to(dtypes.bool_) & (other.to(dtypes.bool_) if isinstance(other, VocabularyBase) else bool(other))

    def logical_or(self, other: Any) -> Any:
        return self.to(dtypes.bool_) | (other.to(dtypes.bool_) if isinstance(other, VocabularyBase) else bool(other))

    def logical_xor(self, other: Any) -> Any:
        return self.to(dtypes.bool_) ^ (other.to(dtypes.bool_) if isinstance(other, VocabularyBase) else bool(other))

    bitwise_and, bitwise_or, bitwise_xor = __and__, __or__, __xor__
    bitwise_not = __invert__

    def if_else(self, a: Any, b: Any) -> Any:
        """`where(self, a, b)` with this bool tensor as the condition."""
        tensors = [v for v in (a, b) if isinstance(v, VocabularyBase)]
        if not tensors:
            dtype = dtypes.result_type([], [], [dtypes.scalar_dtype(a), dtypes.scalar_dtype(b)])
            a = self.new_full((), a, dtype=dtype)
            tensors = [a]
        dims = [t.dtype for t in tensors if t.ndim]
        zero = [t.dtype for t in tensors if not t.ndim]
        scalars = [dtypes.scalar_dtype(v) for v in (a, b) if not isinstance(v, VocabularyBase)]
        dtype = dtypes.result_type(dims, zero, scalars)
        cond = self if self.dtype is dtypes.bool_ else self.to(dtypes.bool_)
        shape = broadcast_shapes("where", cond.shape, *(t.shape for t in tensors))
        args = [v.to(dtype)._broadcast_to(shape) if isinstance(v, VocabularyBase) else literal(v, dtype)
                for v in (a, b)]
        return self._apply("where", cond._broadcast_to(shape), *args)

    def where(self, condition: Any, other: Any) -> Any:
        """PyTorch's `x.where(cond, y)`: elements of x where cond holds, else y."""
        return condition.if_else(self, other)

    # ---------------------------------------------------------------------------------------------
    # unary math

    def _float_unary(name: str) -> Any:  # noqa: N805
        def method(self: VocabularyBase) -> Any:
            x = self if self.dtype.is_floating_point else self.to(dtypes.get_default_dtype())
            return x._apply(name, x)
        method.__name__ = name
        return method

    exp, expm1, log, log1p = _float_unary("exp"), _float_unary("expm1"), _float_unary("log"), _float_unary("log1p")
    sqrt, sin, cos, tanh = _float_unary("sqrt"), _float_unary("sin"), _float_unary("cos"), _float_unary("tanh")
    sigmoid, erf, reciprocal = _float_unary("sigmoid"), _float_unary("erf"), _float_unary("reciprocal")
    del _float_unary

    def _same_unary(name: str) -> Any:  # noqa: N805
        def method(self: VocabularyBase) -> Any:
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
