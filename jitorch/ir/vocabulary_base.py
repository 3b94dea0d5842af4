"""The base of the operator vocabulary: argument helpers and `VocabularyBase`.

The helpers are shared by every op family and by the frontend: dim normalization, size arguments,
broadcasting with PyTorch's messages, scalars as `Literal`s. `VocabularyBase` is the interface a
subclass implements (`shape`, `dtype`, `_apply`, `_coerce`) plus the basics every family uses: sizes,
casts (`to`), constants (`new_full`) and `detach`. `OpVocabulary` (in `vocabulary`) composes the families
built on it.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from jitorch.ir.dtypes import DType
from jitorch.ir.types import Literal, ShapeError

Scalar = (bool, int, float, np.bool_, np.integer, np.floating)


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


class VocabularyBase:
    """What every op family is written against: the interface a subclass implements, and the basics."""

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
        return isinstance(value, VocabularyBase)

    def to(self, *args: Any, **kwargs: Any) -> Any:
        dtype = kwargs.get("dtype")
        for arg in args:
            if isinstance(arg, DType):
                dtype = arg
            elif isinstance(arg, VocabularyBase):
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
