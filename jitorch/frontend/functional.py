"""Composites written with primitives, so fusion and codegen only ever see primitives.

Everything here uses the operator vocabulary only, so it works on eager tensors and inside traces.
`jitorch.nn.functional` builds the layer-level functions on top of these.
"""
from __future__ import annotations

import math
from typing import Any

from jitorch.frontend.tensor import Tensor
from jitorch.ir import dtypes
from jitorch.ir.dtypes import DType
from jitorch.ir.vocabulary_base import normalize_dim


def _floating(x: Tensor, dtype: DType | None) -> Tensor:
    if dtype is not None:
        return x.to(dtype)
    return x if x.dtype.is_floating_point else x.to(dtypes.get_default_dtype())


def softmax(x: Tensor, dim: int, dtype: DType | None = None) -> Tensor:
    x = _floating(x, dtype)
    if x.ndim == 0:
        return x.full_like(1.0)
    axis = normalize_dim(dim, x.ndim)
    shifted = x - x.amax(axis, keepdim=True).detach()
    e = shifted.exp()
    return e / e.sum(axis, keepdim=True)


def log_softmax(x: Tensor, dim: int, dtype: DType | None = None) -> Tensor:
    x = _floating(x, dtype)
    if x.ndim == 0:
        return x.full_like(0.0)
    axis = normalize_dim(dim, x.ndim)
    shifted = x - x.amax(axis, keepdim=True).detach()
    return shifted - shifted.exp().sum(axis, keepdim=True).log()


def cumsum(x: Tensor, dim: int, dtype: DType | None = None) -> Tensor:
    """Prefix sums along `dim`: the `cumsum` primitive, after bool and integer inputs become int64."""
    if dtype is not None:
        x = x.to(dtype)
    elif not x.dtype.is_floating_point:
        x = x.to(dtypes.int64)
    axis = normalize_dim(dim, x.ndim)
    if x.ndim == 0:
        return x.reshape(1).cumsum_axis(0).reshape(())
    return x.cumsum_axis(axis)


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    out = x.matmul(weight.t() if weight.ndim == 2 else weight)
    return out + bias if bias is not None else out


def gelu(x: Tensor, approximate: str = "none") -> Tensor:
    if approximate == "tanh":
        # x/2·(1 + tanh(u)) written as x·sigmoid(2u): the same function, one exp per element where tanh
        # costs a polynomial and an exp, and no cancellation in 1 + tanh(u) for large negative u
        scale = 2.0 * math.sqrt(2.0 / math.pi)
        inner = x * (x * x * (0.044715 * scale) + scale)  # 2u = 2·√(2/π)·(x + 0.044715x³)
        return x * inner.sigmoid()
    if approximate != "none":
        raise ValueError(f"approximate argument must be either none or tanh, got {approximate!r}")
    return x * 0.5 * ((x * (1.0 / math.sqrt(2.0))).erf() + 1.0)


def silu(x: Tensor) -> Tensor:
    return x * x.sigmoid()


def layer_norm(x: Tensor, normalized_shape: Any, weight: Tensor | None = None, bias: Tensor | None = None,
               eps: float = 1e-5) -> Tensor:
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if tuple(x.shape[x.ndim - len(shape):]) != shape:
        raise RuntimeError(f"layer_norm: given normalized_shape={list(shape)}, expected input with shape "
                           f"[*, {', '.join(map(str, shape))}], but got input of size {list(x.shape)}")
    axes = tuple(range(x.ndim - len(shape), x.ndim))
    mean = x.mean(axes, keepdim=True)
    centered = x - mean
    variance = (centered * centered).mean(axes, keepdim=True)
    out = centered * (variance + eps).rsqrt()
    if weight is not None:
        out = out * weight
    if bias is not None:
        out = out + bias
    return out
