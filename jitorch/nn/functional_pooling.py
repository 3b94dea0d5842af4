"""Pooling and resizing layer functions: max, average and adaptive pooling, and `interpolate`.

Pooling reduces the stacked windows of `functional_conv._patches` (one strided slice per kernel offset)
with `amax` or `sum`; adaptive average pooling and linear resizing are separable, one dim at a time.
The helpers work for any number of spatial dims; the public names cover PyTorch's 1-d and 2-d forms.
`jitorch.nn.functional` re-exports them.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

import jitorch
from jitorch import Tensor
from jitorch.nn.functional_conv import Pair, _arange, _batched, _contiguous, _flat_pad, _patches, _tuple, _unbatch, pad

__all__ = [
    "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_max_pool1d", "adaptive_max_pool2d",
    "avg_pool1d", "avg_pool2d", "interpolate", "max_pool1d", "max_pool2d",
]


# ----------------------------------------------------------------------------------------------------
# pooling


def _pool_geometry(name: str, x: Tensor, kernel: tuple[int, ...], stride: tuple[int, ...],
                   padding: tuple[int, ...], dilation: tuple[int, ...], ceil_mode: bool
                   ) -> tuple[tuple[int, ...], list[tuple[int, int]]]:
    """Output size and the (before, after) padding that keeps every window, ceil_mode ones too, in range."""
    if any(k <= 0 for k in kernel) or any(s <= 0 for s in stride) or any(d <= 0 for d in dilation):
        raise RuntimeError(f"{name}: kernel_size, stride and dilation must be positive, got kernel_size={kernel}, "
                           f"stride={stride}, dilation={dilation}")
    if any(p < 0 or p > (d * (k - 1) + 1) // 2 for p, k, d in zip(padding, kernel, dilation)):
        raise RuntimeError(f"{name}: pad should be at most half of effective kernel size, but got pad={padding}, "
                           f"kernel_size={kernel} and dilation={dilation}")
    out_size, pads = [], []
    for size, k, s, p, d in zip(x.shape[2:], kernel, stride, padding, dilation):
        span = d * (k - 1) + 1
        room = size + 2 * p - span
        out = (-(-room // s) if ceil_mode else room // s) + 1
        if ceil_mode and (out - 1) * s >= size + p:
            out -= 1  # the last window must start inside the input or its left padding
        if out <= 0:
            raise RuntimeError(f"{name}: given input size {list(x.shape[1:])}, the calculated output size is "
                               f"too small (kernel_size={kernel}, stride={stride}, padding={padding})")
        out_size.append(out)
        pads.append((p, max(p, (out - 1) * s + span - size - p)))
    return tuple(out_size), pads


def _pool_args(nd: int, kernel_size: Pair, stride: Pair | None, padding: Pair, dilation: Pair
               ) -> tuple[tuple[int, ...], ...]:
    kernel = _tuple(kernel_size, nd, "kernel_size")
    stride = kernel if stride is None or (not isinstance(stride, int) and len(stride) == 0) else \
        _tuple(stride, nd, "stride")
    return kernel, stride, _tuple(padding, nd, "padding"), _tuple(dilation, nd, "dilation")


def _lowest(x: Tensor) -> float:
    return -math.inf if x.dtype.is_floating_point else int(np.iinfo(x.dtype.numpy).min)


def _max_pool(name: str, nd: int, input: Tensor, kernel_size: Pair, stride: Pair | None,
              padding: Pair, dilation: Pair, ceil_mode: bool, return_indices: bool) -> Any:
    x, batched = _batched(input, nd, name)
    kernel, stride, padding, dilation = _pool_args(nd, kernel_size, stride, padding, dilation)
    out_size, pads = _pool_geometry(name, x, kernel, stride, padding, dilation, ceil_mode)
    windows = _patches(pad(x, _flat_pad(pads), value=_lowest(x)), kernel, stride, dilation, out_size)
    out = _unbatch(windows.amax(2), batched)
    if not return_indices:
        return out
    # the flat input position of each window's first maximum, as PyTorch's max_pool returns
    offset, index = windows.argmax(2), None
    for dim in reversed(range(nd)):
        within = offset % kernel[dim]
        offset = offset // kernel[dim]
        start = (_arange(out_size[dim]) * stride[dim] - padding[dim]).reshape(-1, *(1,) * (nd - 1 - dim))
        position = (start + within * dilation[dim]) * math.prod(x.shape[3 + dim:])
        index = position if index is None else index + position
    return out, _unbatch(index, batched)


def max_pool1d(input: Tensor, kernel_size: Pair, stride: Pair | None = None, padding: Pair = 0,
               dilation: Pair = 1, ceil_mode: bool = False, return_indices: bool = False) -> Any:
    return _max_pool("max_pool1d", 1, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices)


def max_pool2d(input: Tensor, kernel_size: Pair, stride: Pair | None = None, padding: Pair = 0,
               dilation: Pair = 1, ceil_mode: bool = False, return_indices: bool = False) -> Any:
    return _max_pool("max_pool2d", 2, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices)


def _window_counts(size: int, out: int, k: int, s: int, p: int, include_pad: bool) -> Tensor:
    """How many elements each window along one dim averages, by PyTorch's avg_pool rule."""
    start = _arange(out) * s - p
    end = (start + k).clamp(max=size + p)
    if include_pad:
        return end - start
    return end.clamp(max=size) - start.clamp(min=0)


def _avg_pool(name: str, nd: int, input: Tensor, kernel_size: Pair, stride: Pair | None,
              padding: Pair, ceil_mode: bool, count_include_pad: bool, divisor_override: int | None) -> Tensor:
    x, batched = _batched(input, nd, name)
    kernel, stride, padding, dilation = _pool_args(nd, kernel_size, stride, padding, 1)
    if any(p > k // 2 for p, k in zip(padding, kernel)):
        raise RuntimeError(f"{name}: pad should be at most half of kernel size, but got pad={padding} and "
                           f"kernel_size={kernel}")
    out_size, pads = _pool_geometry(name, x, kernel, stride, padding, dilation, ceil_mode)
    windows = _patches(pad(x, _flat_pad(pads)), kernel, stride, dilation, out_size)
    total = windows.sum(2)
    if divisor_override is not None:
        if divisor_override == 0:
            raise RuntimeError(f"{name}: divisor must be not zero")
        return _unbatch(total / divisor_override, batched)
    uniform = all((o - 1) * s + k <= size + 2 * p and (count_include_pad or p == 0)
                  for o, s, k, p, size in zip(out_size, stride, kernel, padding, x.shape[2:]))
    if uniform:
        return _unbatch(total / math.prod(kernel), batched)
    divisor = None
    for dim in range(nd):
        counts = _window_counts(x.shape[2 + dim], out_size[dim], kernel[dim], stride[dim], padding[dim],
                                count_include_pad).reshape(-1, *(1,) * (nd - 1 - dim))
        divisor = counts if divisor is None else divisor * counts
    return _unbatch(total / divisor.to(total.dtype), batched)


def avg_pool1d(input: Tensor, kernel_size: Pair, stride: Pair | None = None, padding: Pair = 0,
               ceil_mode: bool = False, count_include_pad: bool = True) -> Tensor:
    return _avg_pool("avg_pool1d", 1, input, kernel_size, stride, padding, ceil_mode, count_include_pad, None)


def avg_pool2d(input: Tensor, kernel_size: Pair, stride: Pair | None = None, padding: Pair = 0,
               ceil_mode: bool = False, count_include_pad: bool = True, divisor_override: int | None = None) -> Tensor:
    return _avg_pool("avg_pool2d", 2, input, kernel_size, stride, padding, ceil_mode, count_include_pad,
                     divisor_override)


def _adaptive_sizes(name: str, x: Tensor, output_size: Any, nd: int) -> tuple[int, ...]:
    sizes = (output_size,) * nd if isinstance(output_size, int) or output_size is None else tuple(output_size)
    if len(sizes) == 1:
        sizes = sizes * nd
    if len(sizes) != nd:
        raise ValueError(f"{name}: output_size must be an int or a tuple of {nd} ints, got {output_size!r}")
    sizes = tuple(x.shape[2 + i] if s is None else int(s) for i, s in enumerate(sizes))
    if any(s <= 0 for s in sizes) or any(i == 0 for i in x.shape[2:]):
        raise RuntimeError(f"{name}: cannot pool input of size {list(x.shape)} to output size {list(sizes)}")
    return sizes


def _adaptive_bounds(size: int, out: int) -> list[tuple[int, int]]:
    """PyTorch's adaptive windows: [floor(i*size/out), ceil((i+1)*size/out))."""
    return [(i * size // out, -(-(i + 1) * size // out)) for i in range(out)]


def _adaptive_avg_pool(name: str, nd: int, input: Tensor, output_size: Any) -> Tensor:
    x, batched = _batched(input, nd, name)
    sizes = _adaptive_sizes(name, x, output_size, nd)
    if all(s == 1 for s in sizes):
        return _unbatch(x.mean(tuple(range(2, nd + 2)), keepdim=True), batched)
    # averaging is separable: one (in, out) weight matrix per spatial dim, applied with matmul
    for dim, (size, out) in enumerate(zip(x.shape[2:], sizes)):
        if size == out:
            continue
        position = _arange(size).reshape(size, 1)
        index = _arange(out).reshape(1, out)
        start, end = index * size // out, ((index + 1) * size + out - 1) // out
        inside = (position >= start) & (position < end)
        weights = inside.to(x.dtype) / (end - start).to(x.dtype)
        x = x.movedim(2 + dim, -1).matmul(weights).movedim(-1, 2 + dim)
    return _unbatch(_contiguous(x), batched)


def _adaptive_max_pool(name: str, nd: int, input: Tensor, output_size: Any, return_indices: bool) -> Any:
    x, batched = _batched(input, nd, name)
    sizes = _adaptive_sizes(name, x, output_size, nd)
    # the max over a box is the max over each dim in turn; going last dim first and keeping each row's
    # first argmax gives the box's first maximum in row-major order, the index PyTorch returns
    index = None
    for dim in reversed(range(nd)):
        axis = 2 + dim
        values, indices = [], []
        for start, end in _adaptive_bounds(x.shape[axis], sizes[dim]):
            window = x.narrow(axis, start, end - start)
            values.append(window.amax(axis, keepdim=True))
            if return_indices:
                local = window.argmax(axis, keepdim=True)
                inner = math.prod(input.shape[input.ndim - nd + dim + 1:])
                flat = (local + start) * inner
                if index is not None:
                    flat = flat + index.narrow(axis, start, end - start).gather(axis, local)
                indices.append(flat)
        x = jitorch.cat(values, axis)
        if return_indices:
            index = jitorch.cat(indices, axis)
    return (_unbatch(x, batched), _unbatch(index, batched)) if return_indices else _unbatch(x, batched)


def adaptive_avg_pool1d(input: Tensor, output_size: Any) -> Tensor:
    return _adaptive_avg_pool("adaptive_avg_pool1d", 1, input, output_size)


def adaptive_avg_pool2d(input: Tensor, output_size: Any) -> Tensor:
    return _adaptive_avg_pool("adaptive_avg_pool2d", 2, input, output_size)


def adaptive_max_pool1d(input: Tensor, output_size: Any, return_indices: bool = False) -> Any:
    return _adaptive_max_pool("adaptive_max_pool1d", 1, input, output_size, return_indices)


def adaptive_max_pool2d(input: Tensor, output_size: Any, return_indices: bool = False) -> Any:
    return _adaptive_max_pool("adaptive_max_pool2d", 2, input, output_size, return_indices)


# ----------------------------------------------------------------------------------------------------
# resizing

_LINEAR_MODES = {"linear": 1, "bilinear": 2, "trilinear": 3}


def interpolate(input: Tensor, size: Any = None, scale_factor: Any = None, mode: str = "nearest",
                align_corners: bool | None = None, recompute_scale_factor: bool | None = None,
                antialias: bool = False) -> Tensor:
    """Resize the spatial dims with PyTorch's source-index formulas ('nearest', 'nearest-exact',
    'linear'/'bilinear'/'trilinear', 'area')."""
    nd = input.ndim - 2
    if nd < 1:
        raise ValueError(f"interpolate: expected an input with a batch and a channel dim, got {list(input.shape)}")
    if mode in _LINEAR_MODES and _LINEAR_MODES[mode] != nd:
        raise NotImplementedError(f"interpolate: got {input.ndim}D input, but {mode} mode needs "
                                  f"{_LINEAR_MODES[mode] + 2}D input")
    if mode not in (*_LINEAR_MODES, "nearest", "nearest-exact", "area"):
        raise NotImplementedError(f"interpolate: unsupported mode {mode!r}")
    if align_corners is not None and mode not in _LINEAR_MODES:
        raise ValueError("align_corners option can only be set with the interpolating modes: linear | bilinear | "
                         "bicubic | trilinear")
    if antialias:
        raise NotImplementedError("interpolate: antialias=True is not supported")
    if (size is None) == (scale_factor is None):
        raise ValueError("only one of size or scale_factor should be defined")
    in_size = tuple(input.shape[2:])
    if size is not None:
        out_size = _tuple(size, nd, "size")
        scales: tuple[float | None, ...] = (None,) * nd
    else:
        factors = tuple(float(f) for f in (scale_factor if isinstance(scale_factor, (tuple, list))
                                           else (scale_factor,) * nd))
        if len(factors) != nd:
            raise ValueError(f"interpolate: scale_factor must have {nd} elements, got {scale_factor!r}")
        out_size = tuple(math.floor(i * f) for i, f in zip(in_size, factors))
        scales = (None,) * nd if recompute_scale_factor else factors
    if mode == "area":
        return _adaptive_avg_pool("interpolate", nd, input, out_size)
    x = input
    for dim in range(nd):
        x = _resize_dim(x, 2 + dim, out_size[dim], scales[dim], mode, bool(align_corners))
    return _contiguous(x)


def _resize_dim(x: Tensor, axis: int, out: int, scale_factor: float | None, mode: str,
                align_corners: bool) -> Tensor:
    size = x.shape[axis]
    if out == size and scale_factor in (None, 1.0):
        return x
    ratio = 1.0 / scale_factor if scale_factor else size / out
    if mode in ("nearest", "nearest-exact"):
        # PyTorch computes nearest source indices in float32 whatever the input dtype
        position = _arange(out).to(jitorch.float32)
        source = (position + 0.5) * ratio if mode == "nearest-exact" else position * ratio
        return x.index_select(axis, source.floor().to(jitorch.int64).clamp(max=size - 1))
    position = _arange(out).to(jitorch.float64 if x.dtype is jitorch.float64 else jitorch.float32)
    if align_corners:
        source = position * ((size - 1) / (out - 1) if out > 1 else 0.0)
    else:
        source = ((position + 0.5) * ratio - 0.5).clamp(min=0.0)
    low = source.floor().to(jitorch.int64).clamp(max=size - 1)
    high = (low + 1).clamp(max=size - 1)
    weight = (source - low.to(source.dtype)).to(x.dtype).reshape(-1, *(1,) * (x.ndim - 1 - axis))
    below, above = x.index_select(axis, low), x.index_select(axis, high)
    return below + (above - below) * weight
