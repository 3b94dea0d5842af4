"""Tensor conversions: dtype and device shorthands for `to`, and values leaving for Python and numpy.

`ConversionMethods` is a mixin of `Tensor`, written against `to`, `_need_data` and `unbind`. Reading a
value into Python (`item()`, `bool(t)`, ...) goes through `_need_data`, which tells an active trace.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

from jitorch.frontend.device import device
from jitorch.frontend.formatting import tensor_repr
from jitorch.ir import dtypes

if TYPE_CHECKING:
    from jitorch.frontend.tensor import Tensor


class ConversionMethods:
    """`float()`, `cpu()`, `numpy()`, `item()`, `bool(t)`, `len(t)`, `iter(t)`, `repr(t)`, ... of a Tensor."""

    __slots__ = ()

    def cpu(self) -> Tensor:
        return self

    def cuda(self, *args: Any, **kwargs: Any) -> Tensor:
        device("cuda")
        return self

    def float(self) -> Tensor:
        return self.to(dtypes.float32)

    def double(self) -> Tensor:
        return self.to(dtypes.float64)

    def long(self) -> Tensor:
        return self.to(dtypes.int64)

    def int(self) -> Tensor:
        return self.to(dtypes.int32)

    def bool(self) -> Tensor:
        return self.to(dtypes.bool_)

    def type_as(self, other: Tensor) -> Tensor:
        return self.to(other.dtype)

    def numpy(self, *, force: bool = False) -> np.ndarray:
        if self._requires_grad and not force:
            raise RuntimeError("Can't call numpy() on Tensor that requires grad. Use tensor.detach().numpy() "
                               "instead.")
        return self._need_data("numpy()")

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        arr = self._need_data("__array__")
        return arr if dtype is None else arr.astype(dtype)

    def tolist(self) -> Any:
        return self._need_data("tolist()").tolist()

    def item(self) -> Any:
        return self._scalar("item()")

    def __bool__(self) -> bool:
        if self.numel() != 1:
            raise RuntimeError("Boolean value of Tensor with more than one value is ambiguous")
        return bool(self._need_data("bool()").reshape(()))

    def __float__(self) -> float:
        return float(self._scalar("float()"))

    def __int__(self) -> int:
        return int(self._scalar("int()"))

    def _scalar(self, what: str) -> Any:
        if self.numel() != 1:
            raise RuntimeError(f"a Tensor with {self.numel()} elements cannot be converted to Scalar")
        return self._need_data(what).reshape(()).item()

    def __index__(self) -> int:
        if self.dtype.is_floating_point or self.numel() != 1:
            raise TypeError("only integer tensors of a single element can be converted to an index")
        return int(self.item())

    def __len__(self) -> int:
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def __iter__(self) -> Iterator[Tensor]:
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return iter(self.unbind(0))

    def __repr__(self) -> str:
        return tensor_repr(self)

    def __format__(self, spec: str) -> str:
        if self.ndim == 0 and self._data is not None:
            return format(self.item(), spec)
        return format(repr(self), spec)
