"""The reduction op family of the vocabulary: sums, means, variances, extremes and their indices,
`all`/`any`, `logsumexp`, and the matrix products (`matmul` and its 1-d/2-d/batched forms).
`OpVocabulary` composes it.
"""
from __future__ import annotations

import math
from collections import namedtuple
from typing import Any

from jitorch.ir import dtypes
from jitorch.ir.dtypes import DType
from jitorch.ir.vocabulary_base import VocabularyBase, broadcast_shapes, normalize_dim, normalize_dims

ValuesIndices = namedtuple("ValuesIndices", ["values", "indices"])


class ReductionOps(VocabularyBase):
    """Reductions over dims and matrix products, written with `_apply`."""

    __slots__ = ()

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
        """Drop size-1 `axes` (a reduction's kept dims): the reshape primitive, as the shape is valid by
        construction (reshape()'s parsing and checks were a third of a small sum's time)."""
        if not axes:
            return self
        return self._apply("reshape", self, shape=tuple(s for i, s in enumerate(self.shape) if i not in axes))

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
        if isinstance(dim, VocabularyBase):
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
    # matrix products

    def matmul(self, other: Any) -> Any:
        if not isinstance(other, VocabularyBase):
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
