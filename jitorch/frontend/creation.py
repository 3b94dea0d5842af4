"""Creating tensors: from Python data and numpy arrays, filled, ranges, identity, and the `*_like` forms."""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from jitorch.frontend.device import _check_device
from jitorch.frontend.tensor import Tensor, dispatch
from jitorch.ir import dtypes
from jitorch.ir.dtypes import DType
from jitorch.ir.types import TensorType, check_size
from jitorch.ir.vocabulary_base import shape_args


def _infer_dtype(data: Any) -> DType:
    """The dtype torch.tensor gives Python data: bool, int64 or the default float."""
    if isinstance(data, Tensor):
        return data.dtype
    if isinstance(data, np.ndarray):
        return dtypes.from_numpy(data.dtype)
    if isinstance(data, (list, tuple)):
        found = [_infer_dtype(item) for item in data]
        return max(found, key=lambda d: d.rank) if found else dtypes.get_default_dtype()
    if isinstance(data, np.generic):
        return dtypes.from_numpy(data.dtype)
    return dtypes.scalar_dtype(data)


def _plain(data: Any) -> Any:
    """Nested lists with tensors and numpy values inside turned into plain Python/numpy values."""
    if isinstance(data, Tensor):
        return data._need_data("tensor()")
    if isinstance(data, (list, tuple)):
        return [_plain(item) for item in data]
    return data


def as_array(data: Any, dtype: DType | None = None) -> np.ndarray:
    target = dtypes.as_dtype(dtype) if dtype is not None else _infer_dtype(data)
    try:
        arr = np.array(_plain(data), dtype=target.numpy)
    except (ValueError, TypeError) as error:
        raise ValueError(f"tensor(): cannot build a tensor from {type(data).__name__} data: {error}") from None
    return arr


def tensor(data: Any, *, dtype: Any = None, device: Any = None, requires_grad: bool = False,
           pin_memory: bool = False) -> Tensor:
    """A new tensor copying `data` (nested lists, scalars, numpy arrays or tensors)."""
    meta = _check_device(device)
    arr = as_array(data, dtype)
    out = Tensor._symbolic(arr.shape, dtypes.from_numpy(arr.dtype)) if meta else Tensor._wrap(arr, None)
    if requires_grad:
        out.requires_grad_()
    return out


def as_tensor(data: Any, dtype: Any = None, device: Any = None) -> Tensor:
    """Like tensor(), but shares memory with a tensor or numpy array of the right dtype."""
    _check_device(device)
    if isinstance(data, Tensor):
        return data if dtype is None else data.to(dtypes.as_dtype(dtype))
    if isinstance(data, np.ndarray) and (dtype is None or dtypes.as_dtype(dtype).numpy == data.dtype):
        return from_numpy(data)
    return tensor(data, dtype=dtype)


def from_numpy(array: np.ndarray) -> Tensor:
    """A tensor sharing memory with `array` (writes through either are seen by both)."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"expected np.ndarray (got {type(array).__name__})")
    dtype = dtypes.from_numpy(array.dtype, exact=True)
    return Tensor._wrap(array, dtype)


def _new(shape: Any, value: Any, dtype: Any, device: Any, requires_grad: bool) -> Tensor:
    dtype = dtypes.as_dtype(dtype) if dtype is not None else (
        dtypes.get_default_dtype() if value is None or isinstance(value, float) else dtypes.scalar_dtype(value))
    shape = shape_args(shape)
    if any(s < 0 for s in shape):
        raise RuntimeError(f"Trying to create tensor with negative dimension {min(shape)}: {list(shape)}")
    if _check_device(device):
        out = Tensor._symbolic(shape, dtype)
    else:
        out = dispatch("full", (), {"shape": shape, "value": 0 if value is None else value, "dtype": dtype})
    if requires_grad:
        out.requires_grad_()
    return out


def zeros(*size: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False, out: Any = None) -> Tensor:
    return _new(size, 0.0 if dtype is None else 0, dtype, device, requires_grad)


def ones(*size: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False, out: Any = None) -> Tensor:
    return _new(size, 1.0 if dtype is None else 1, dtype, device, requires_grad)


def empty(*size: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False, **kwargs: Any) -> Tensor:
    return _new(size, None, dtype, device, requires_grad)


def full(size: Sequence[int], fill_value: Any, *, dtype: Any = None, device: Any = None,
         requires_grad: bool = False) -> Tensor:
    if isinstance(fill_value, Tensor):
        fill_value = fill_value.item()
    return _new((size,), fill_value, dtype, device, requires_grad)


def _like(t: Tensor, value: Any, dtype: Any, requires_grad: bool) -> Tensor:
    return _new(tuple(t.shape), value, dtype or t.dtype, None, requires_grad)


def zeros_like(t: Tensor, *, dtype: Any = None, device: Any = None, requires_grad: bool = False, **kw: Any) -> Tensor:
    return _like(t, 0, dtype, requires_grad)


def ones_like(t: Tensor, *, dtype: Any = None, device: Any = None, requires_grad: bool = False, **kw: Any) -> Tensor:
    return _like(t, 1, dtype, requires_grad)


def empty_like(t: Tensor, *, dtype: Any = None, device: Any = None, requires_grad: bool = False, **kw: Any) -> Tensor:
    return _like(t, 0, dtype, requires_grad)


def full_like(t: Tensor, fill_value: Any, *, dtype: Any = None, device: Any = None, requires_grad: bool = False,
              **kw: Any) -> Tensor:
    return _like(t, fill_value, dtype, requires_grad)


def arange(start: Any, end: Any = None, step: Any = 1, *, dtype: Any = None, device: Any = None,
           requires_grad: bool = False) -> Tensor:
    if end is None:
        start, end = 0, start
    start, end, step = (v.item() if isinstance(v, Tensor) else v for v in (start, end, step))
    if step == 0:
        raise RuntimeError("arange: step must be nonzero")
    if (end - start) * step < 0:
        raise RuntimeError(f"arange: upper bound and larger bound inconsistent with step sign "
                           f"(start={start}, end={end}, step={step})")
    if dtype is None:
        dtype = dtypes.get_default_dtype() if any(isinstance(v, float) for v in (start, end, step)) else dtypes.int64
    dtype = dtypes.as_dtype(dtype)
    size = max(0, math.ceil((end - start) / step))
    _check_device(device)
    out = dispatch("arange", (), {"start": start, "step": step, "size": size, "dtype": dtype})
    if requires_grad:
        out.requires_grad_()
    return out


def linspace(start: float, end: float, steps: int, *, dtype: Any = None, device: Any = None,
             requires_grad: bool = False) -> Tensor:
    dtype = dtypes.as_dtype(dtype) if dtype is not None else dtypes.get_default_dtype()
    step = (end - start) / (steps - 1) if steps > 1 else 0.0
    out = dispatch("arange", (), {"start": float(start), "step": float(step), "size": int(steps), "dtype": dtype})
    if requires_grad:
        out.requires_grad_()
    return out


def logspace(start: float, end: float, steps: int, base: float = 10.0, *, dtype: Any = None) -> Tensor:
    return (linspace(start, end, steps, dtype=dtypes.float64) * math.log(base)).exp().to(
        dtypes.as_dtype(dtype) if dtype is not None else dtypes.get_default_dtype())


def eye(n: int, m: int | None = None, *, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    m = n if m is None else m
    dtype = dtypes.as_dtype(dtype) if dtype is not None else dtypes.get_default_dtype()
    check_size(TensorType((n, m), dtype))  # before the two aranges, which alone may not fit
    out = (arange(n).reshape(n, 1) == arange(m).reshape(1, m)).to(dtype)
    if requires_grad:
        out.requires_grad_()
    return out
