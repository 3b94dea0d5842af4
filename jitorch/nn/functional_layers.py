"""Layer-level functions: convolution, pooling, padding, resizing, normalization, dropout, embedding.

Every function is a composite of registry primitives, so a traced model reaches the compiler as
slices, elementwise ops, reductions and matmuls it can fuse. Convolution is im2col: one strided
`slice` per kernel offset, stacked, then a single (grouped) matmul with the reshaped weight;
transposed convolution zero-inserts the input and runs that convolution with the flipped kernel;
pooling reduces the same stacked slices with `amax` or `sum`. The helpers work for any number of
spatial dims; the public names cover PyTorch's 1-d and 2-d forms.
`jitorch.nn.functional` re-exports the names in `__all__`.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

import jitorch
from jitorch import Tensor

__all__ = [
    "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_max_pool1d", "adaptive_max_pool2d",
    "avg_pool1d", "avg_pool2d", "batch_norm", "conv1d", "conv2d", "conv_transpose1d", "conv_transpose2d",
    "dropout", "dropout1d", "dropout2d", "dropout3d", "embedding", "fold", "group_norm", "instance_norm",
    "interpolate", "max_pool1d", "max_pool2d", "pad", "unfold",
]

Pair = int | Sequence[int]


def _tuple(value: Pair, n: int, what: str) -> tuple[int, ...]:
    """An int or a length-n sequence of ints -> an n-tuple (PyTorch's `_pair`, with a clear error)."""
    if isinstance(value, (int, np.integer)):
        return (int(value),) * n
    values = tuple(int(v) for v in value)
    if len(values) == 1:
        return values * n
    if len(values) != n:
        raise ValueError(f"{what} must be an int or a tuple of {n} ints, got {value!r}")
    return values


def _batched(x: Tensor, nd: int, name: str) -> tuple[Tensor, bool]:
    """Accept (N, C, *spatial) or unbatched (C, *spatial) input; the flag says which it was."""
    if x.ndim == nd + 2:
        return x, True
    if x.ndim == nd + 1:
        return x.unsqueeze(0), False
    raise RuntimeError(f"{name}: expected {nd + 1}D (unbatched) or {nd + 2}D (batched) input, but got input of "
                       f"size: {list(x.shape)}")


def _unbatch(out: Tensor, batched: bool) -> Tensor:
    return out if batched else out.squeeze(0)


def _arange(n: int) -> Tensor:
    return jitorch.arange(n)


def _contiguous(x: Tensor) -> Tensor:
    """x laid out row-major, as PyTorch's layer outputs are, so that `.view(n, -1)` works on them. Flattening
    copies in row-major order exactly when x is not laid out so (Tensor.contiguous() keeps numpy's order)."""
    return x.reshape(-1).reshape(*x.shape) if x.ndim > 1 else x


def _flat_pad(pads: Sequence[tuple[int, int]]) -> list[int]:
    """Per-spatial-dim (before, after) pairs, first dim first -> `pad`'s last-dim-first flat list."""
    return [p for pair in reversed(pads) for p in pair]


# ----------------------------------------------------------------------------------------------------
# padding


def pad(input: Tensor, pad: Sequence[int], mode: str = "constant", value: float | None = None) -> Tensor:
    """Pad (positive) or crop (negative) the last len(pad)//2 dims; `pad` lists the last dim first."""
    pad = [int(p) for p in pad]
    if len(pad) % 2 or len(pad) // 2 > input.ndim:
        raise RuntimeError(f"pad: padding length must be divisible by 2 and at most twice the input's "
                           f"{input.ndim} dims, got {len(pad)}")
    pairs = {input.ndim - 1 - i: (pad[2 * i], pad[2 * i + 1]) for i in range(len(pad) // 2)}
    if mode != "constant" and value not in (None, 0):
        raise RuntimeError(f"Padding mode \"{mode}\" doesn't take in value argument")
    x = input
    if any(a < 0 or b < 0 for a, b in pairs.values()):
        starts = tuple(max(-pairs.get(d, (0, 0))[0], 0) for d in range(x.ndim))
        stops = tuple(s - max(-pairs.get(d, (0, 0))[1], 0) for d, s in enumerate(x.shape))
        if any(b <= a for a, b in zip(starts, stops)):
            raise RuntimeError(f"pad: negative padding {pad} leaves nothing of input of shape {list(input.shape)}")
        x = x.slice(starts=starts, stops=stops, steps=(1,) * x.ndim)
        pairs = {d: (max(a, 0), max(b, 0)) for d, (a, b) in pairs.items()}
    if not any(a or b for a, b in pairs.values()):
        return _contiguous(x)
    if mode == "constant":
        shape = tuple(s + sum(pairs.get(d, (0, 0))) for d, s in enumerate(x.shape))
        starts = tuple(pairs.get(d, (0, 0))[0] for d in range(x.ndim))
        stops = tuple(a + s for a, s in zip(starts, x.shape))
        return x.new_full(shape, 0 if value is None else value).slice_scatter(
            x, starts=starts, stops=stops, steps=(1,) * x.ndim)
    if mode not in ("reflect", "replicate", "circular"):
        raise NotImplementedError(f"pad: unsupported padding mode {mode!r}; use constant, reflect, replicate "
                                  f"or circular")
    for dim, (before, after) in sorted(pairs.items()):
        x = _pad_dim(x, dim, before, after, mode, list(input.shape))
    return x


def _pad_dim(x: Tensor, dim: int, before: int, after: int, mode: str, shape: list[int]) -> Tensor:
    size = x.shape[dim]
    limit = size if mode == "circular" else size - 1 if mode == "reflect" else math.inf
    if max(before, after) > limit or size == 0:
        raise RuntimeError(f"pad ({mode}): padding ({before}, {after}) at dimension {dim} is too large for input "
                           f"of shape {shape}")
    if mode == "reflect":
        left, right = x.narrow(dim, 1, before).flip(dim), x.narrow(dim, size - 1 - after, after).flip(dim)
    elif mode == "replicate":
        edge = list(x.shape)
        left = x.narrow(dim, 0, 1).expand(*edge[:dim], before, *edge[dim + 1:])
        right = x.narrow(dim, size - 1, 1).expand(*edge[:dim], after, *edge[dim + 1:])
    else:
        left, right = x.narrow(dim, size - before, before), x.narrow(dim, 0, after)
    return jitorch.cat([t for t in (left, x, right) if t.shape[dim]], dim)


# ----------------------------------------------------------------------------------------------------
# im2col and convolution


def _windows(lead: Sequence[int], kernel: Sequence[int], stride: Sequence[int], dilation: Sequence[int],
             out_size: Sequence[int]) -> Iterator[dict[str, tuple[int, ...]]]:
    """Slice bounds, one per kernel offset in row-major order, of the grid of elements that offset touches
    in every window; the first two dims (sizes `lead`) are taken whole."""
    for offset in itertools.product(*(range(k) for k in kernel)):
        starts = (0, 0, *(o * d for o, d in zip(offset, dilation)))
        stops = (*lead, *(first + s * (o - 1) + 1 for first, s, o in zip(starts[2:], stride, out_size)))
        yield {"starts": starts, "stops": stops, "steps": (1, 1, *stride)}


def _patches(x: Tensor, kernel: Sequence[int], stride: Sequence[int], dilation: Sequence[int],
             out_size: Sequence[int], axis: int = 2) -> Tensor:
    """(A, B, *spatial) -> the windows stacked as a new dim of size prod(kernel) at `axis`:
    (A, B, K, *out_size) for axis=2, (A, K, B, *out_size) for axis=1. One strided slice per kernel offset."""
    pieces = [x.slice(**bounds).unsqueeze(axis)
              for bounds in _windows(x.shape[:2], kernel, stride, dilation, out_size)]
    return pieces[0] if len(pieces) == 1 else jitorch.cat(pieces, axis)


def _out_size(name: str, size: Sequence[int], kernel: Sequence[int], stride: Sequence[int],
              dilation: Sequence[int]) -> tuple[int, ...]:
    """Output size of a sliding window over already-padded input; a window larger than it is an error."""
    span = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation))
    if any(w > s for w, s in zip(span, size)):
        raise RuntimeError(f"{name}: calculated padded input size per channel: ({' x '.join(map(str, size))}). "
                           f"Kernel size: ({' x '.join(map(str, span))}). Kernel size can't be greater than "
                           f"actual input size")
    return tuple((s - w) // st + 1 for s, w, st in zip(size, span, stride))


def _conv_padding(padding: Any, kernel: Sequence[int], dilation: Sequence[int], stride: Sequence[int],
                  name: str) -> list[tuple[int, int]]:
    nd = len(kernel)
    if isinstance(padding, str):
        if padding == "valid":
            return [(0, 0)] * nd
        if padding != "same":
            raise ValueError(f"{name}: invalid padding string {padding!r}, should be one of ['valid', 'same']")
        if any(s != 1 for s in stride):
            raise RuntimeError(f"{name}: padding='same' is not supported for strided convolutions")
        # the odd extra element goes on the right, as in PyTorch
        totals = [d * (k - 1) for k, d in zip(kernel, dilation)]
        return [(t // 2, t - t // 2) for t in totals]
    pads = _tuple(padding, nd, "padding")
    if any(p < 0 for p in pads):
        raise RuntimeError(f"{name}: negative padding is not supported, got {pads}")
    return [(p, p) for p in pads]


def _conv(name: str, nd: int, input: Tensor, weight: Tensor, bias: Tensor | None, stride: Pair,
          padding: Any, dilation: Pair, groups: int) -> Tensor:
    x, batched = _batched(input, nd, name)
    if weight.ndim != nd + 2:
        raise RuntimeError(f"{name}: expected a {nd + 2}D weight, got weight of size {list(weight.shape)}")
    stride, dilation = _tuple(stride, nd, "stride"), _tuple(dilation, nd, "dilation")
    if any(s <= 0 for s in stride) or any(d <= 0 for d in dilation) or groups <= 0:
        raise RuntimeError(f"{name}: stride, dilation and groups must be positive, got stride={stride}, "
                           f"dilation={dilation}, groups={groups}")
    out_channels, group_channels, kernel = weight.shape[0], weight.shape[1], tuple(weight.shape[2:])
    if out_channels % groups:
        raise RuntimeError(f"{name}: given groups={groups}, expected weight to be divisible by {groups} at dimension "
                           f"0, but got weight of size {list(weight.shape)} instead")
    if x.shape[1] != group_channels * groups:
        raise RuntimeError(f"{name}: given groups={groups}, weight of size {list(weight.shape)}, expected "
                           f"input{list(input.shape)} to have {group_channels * groups} channels, but got "
                           f"{x.shape[1]} channels instead")
    pads = _conv_padding(padding, kernel, dilation, stride, name)
    if any(a or b for a, b in pads):
        x = pad(x, _flat_pad(pads))
    out_size = _out_size(name, x.shape[2:], kernel, stride, dilation)
    # columns laid out (C, K, N, *out) so the product is one GEMM per group: (O/G, C/G*K) @ (C/G*K, N*L)
    n = x.shape[0]
    columns = _patches(x.transpose(0, 1), kernel, stride, dilation, out_size, axis=1)
    columns = columns.reshape(groups, group_channels * math.prod(kernel), n * math.prod(out_size))
    out = weight.reshape(groups, out_channels // groups, -1).matmul(columns)
    out = _contiguous(out.reshape(out_channels, n, *out_size).transpose(0, 1))
    if bias is not None:
        out = out + bias.reshape(out_channels, *(1,) * nd)
    return _unbatch(out, batched)


def conv1d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride: Pair = 1,
           padding: Any = 0, dilation: Pair = 1, groups: int = 1) -> Tensor:
    return _conv("conv1d", 1, input, weight, bias, stride, padding, dilation, groups)


def conv2d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride: Pair = 1,
           padding: Any = 0, dilation: Pair = 1, groups: int = 1) -> Tensor:
    return _conv("conv2d", 2, input, weight, bias, stride, padding, dilation, groups)


def _conv_transpose(name: str, nd: int, input: Tensor, weight: Tensor, bias: Tensor | None,
                    stride: Pair, padding: Pair, output_padding: Pair, groups: int, dilation: Pair) -> Tensor:
    x, batched = _batched(input, nd, name)
    stride, dilation = _tuple(stride, nd, "stride"), _tuple(dilation, nd, "dilation")
    padding, output_padding = _tuple(padding, nd, "padding"), _tuple(output_padding, nd, "output_padding")
    if weight.ndim != nd + 2 or x.shape[1] != weight.shape[0] or weight.shape[0] % groups:
        raise RuntimeError(f"{name}: given transposed=1, weight of size {list(weight.shape)}, expected "
                           f"input{list(input.shape)} to have {weight.shape[0]} channels, but got {x.shape[1]} "
                           f"channels instead")
    if any(op >= s and op >= d for op, s, d in zip(output_padding, stride, dilation)):
        raise RuntimeError(f"{name}: output padding must be smaller than either stride or dilation, got "
                           f"output_padding={output_padding}, stride={stride}, dilation={dilation}")
    kernel = tuple(weight.shape[2:])
    if any(s > 1 for s in stride):
        n, c, *size = x.shape
        spread = tuple((i - 1) * s + 1 for i, s in zip(size, stride))
        x = x.new_zeros(n, c, *spread).slice_scatter(
            x, starts=(0,) * (nd + 2), stops=(n, c, *spread), steps=(1, 1, *stride))
    # a transposed convolution is a stride-1 convolution of the zero-spread input with the flipped kernel
    edges = [(d * (k - 1) - p, d * (k - 1) - p + op) for k, d, p, op in zip(kernel, dilation, padding, output_padding)]
    out_size = [i + a + b - d * (k - 1) for i, (a, b), k, d in zip(x.shape[2:], edges, kernel, dilation)]
    if any(s <= 0 for s in out_size):
        raise RuntimeError(f"{name}: given input size {list(input.shape)}, the calculated output size {out_size} "
                           f"is too small")
    if any(a or b for a, b in edges):
        x = pad(x, _flat_pad(edges))
    c_in, c_out = weight.shape[0] // groups, weight.shape[1]
    flipped = weight.reshape(groups, c_in, c_out, *kernel).transpose(1, 2).reshape(groups * c_out, c_in, *kernel)
    flipped = flipped.flip(tuple(range(2, nd + 2)))
    out = _conv(name, nd, x, flipped, bias, 1, 0, dilation, groups)
    return _unbatch(out, batched)


def conv_transpose1d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride: Pair = 1,
                     padding: Pair = 0, output_padding: Pair = 0, groups: int = 1, dilation: Pair = 1) -> Tensor:
    return _conv_transpose("conv_transpose1d", 1, input, weight, bias, stride, padding, output_padding, groups,
                           dilation)


def conv_transpose2d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride: Pair = 1,
                     padding: Pair = 0, output_padding: Pair = 0, groups: int = 1, dilation: Pair = 1) -> Tensor:
    return _conv_transpose("conv_transpose2d", 2, input, weight, bias, stride, padding, output_padding, groups,
                           dilation)


def unfold(input: Tensor, kernel_size: Pair, dilation: Pair = 1, padding: Pair = 0,
           stride: Pair = 1) -> Tensor:
    """im2col: (N, C, H, W) -> (N, C*kh*kw, L), channel-major like PyTorch."""
    x, batched = _batched(input, 2, "unfold")
    kernel, dilation = _tuple(kernel_size, 2, "kernel_size"), _tuple(dilation, 2, "dilation")
    padding, stride = _tuple(padding, 2, "padding"), _tuple(stride, 2, "stride")
    if any(padding):
        x = pad(x, _flat_pad([(p, p) for p in padding]))
    out_size = _out_size("unfold", x.shape[2:], kernel, stride, dilation)
    columns = _patches(x, kernel, stride, dilation, out_size)
    return _unbatch(columns.reshape(x.shape[0], -1, math.prod(out_size)), batched)


def fold(input: Tensor, output_size: Pair, kernel_size: Pair, dilation: Pair = 1, padding: Pair = 0,
         stride: Pair = 1) -> Tensor:
    """col2im, the adjoint of `unfold`: overlapping patches are summed."""
    batched = input.ndim == 3
    x = input if batched else input.unsqueeze(0)
    size, kernel = _tuple(output_size, 2, "output_size"), _tuple(kernel_size, 2, "kernel_size")
    dilation, padding, stride = (_tuple(v, 2, w) for v, w in ((dilation, "dilation"), (padding, "padding"),
                                                                  (stride, "stride")))
    padded = tuple(s + 2 * p for s, p in zip(size, padding))
    out_size = _out_size("fold", padded, kernel, stride, dilation)
    k = math.prod(kernel)
    if x.ndim != 3 or x.shape[1] % k or x.shape[2] != math.prod(out_size):
        raise RuntimeError(f"fold: expected input of shape (N, C*{k}, {math.prod(out_size)}), got "
                           f"{list(input.shape)}")
    n, c = x.shape[0], x.shape[1] // k
    columns = x.reshape(n, c, k, *out_size)
    out = x.new_zeros(n, c, *padded)
    for i, bounds in enumerate(_windows((n, c), kernel, stride, dilation, out_size)):
        out = out.slice_scatter(out.slice(**bounds) + columns.select(2, i), **bounds)
    out = pad(out, _flat_pad([(-p, -p) for p in padding])) if any(padding) else out
    return _unbatch(out, batched)


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


# ----------------------------------------------------------------------------------------------------
# normalization


def _stat_axes(x: Tensor) -> tuple[int, ...]:
    return (0, *range(2, x.ndim))


def _channel_shape(x: Tensor) -> tuple[int, ...]:
    return (x.shape[1], *(1,) * (x.ndim - 2))


def batch_norm(input: Tensor, running_mean: Tensor | None, running_var: Tensor | None,
               weight: Tensor | None = None, bias: Tensor | None = None, training: bool = False,
               momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """Normalize over the batch (and spatial dims) per channel. Training uses the batch statistics and
    moves the running ones toward them in place (the variance unbiased, as PyTorch); eval uses the running ones."""
    if input.ndim < 2:
        raise ValueError(f"batch_norm: expected 2D or more input, got {input.ndim}D input")
    axes, shape = _stat_axes(input), _channel_shape(input)
    for what, t in (("running_mean", running_mean), ("running_var", running_var), ("weight", weight),
                    ("bias", bias)):
        if t is not None and t.numel() != input.shape[1]:
            raise RuntimeError(f"batch_norm: {what} should contain {input.shape[1]} elements not {t.numel()}")
    if training:
        count = input.numel() // input.shape[1]
        if count <= 1:
            raise ValueError(f"Expected more than 1 value per channel when training, got input size "
                             f"{list(input.shape)}")
        mean = input.mean(axes, keepdim=True)
        centered = input - mean
        variance = (centered * centered).mean(axes, keepdim=True)
        if running_mean is not None:
            with jitorch.no_grad():
                running_mean.copy_(running_mean * (1 - momentum) + mean.detach().reshape(-1) * momentum)
        if running_var is not None:
            with jitorch.no_grad():
                unbiased = variance.detach().reshape(-1) * (count / (count - 1))
                running_var.copy_(running_var * (1 - momentum) + unbiased * momentum)
    else:
        if running_mean is None or running_var is None:
            raise RuntimeError("batch_norm: running_mean and running_var must be given when training=False")
        centered = input - running_mean.reshape(shape).to(input.dtype)
        variance = running_var.reshape(shape).to(input.dtype)
    out = centered * (variance + eps).rsqrt()
    if weight is not None:
        out = out * weight.reshape(shape)
    if bias is not None:
        out = out + bias.reshape(shape)
    return out


def instance_norm(input: Tensor, running_mean: Tensor | None = None, running_var: Tensor | None = None,
                  weight: Tensor | None = None, bias: Tensor | None = None, use_input_stats: bool = True,
                  momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """Batch norm of each sample on its own: (N, C, ...) seen as (1, N*C, ...); running stats are averaged over N."""
    if input.ndim < 3:
        raise ValueError(f"instance_norm: expected 3D or more input, got {input.ndim}D input")
    n, c = input.shape[:2]
    folded_mean = running_mean.repeat(n) if running_mean is not None else None
    folded_var = running_var.repeat(n) if running_var is not None else None
    out = batch_norm(input.reshape(1, n * c, *input.shape[2:]), folded_mean, folded_var, None, None,
                     use_input_stats, momentum, eps).reshape(*input.shape)
    if use_input_stats:
        with jitorch.no_grad():
            for running, folded in ((running_mean, folded_mean), (running_var, folded_var)):
                if running is not None:
                    running.copy_(folded.reshape(n, c).mean(0))
    shape = _channel_shape(input)
    if weight is not None:
        out = out * weight.reshape(shape)
    if bias is not None:
        out = out + bias.reshape(shape)
    return out


def group_norm(input: Tensor, num_groups: int, weight: Tensor | None = None,
               bias: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    if input.ndim < 2 or input.shape[1] % num_groups:
        raise RuntimeError(f"group_norm: expected input with a channel count divisible by num_groups={num_groups}, "
                           f"got input of shape {list(input.shape)}")
    n = input.shape[0]
    grouped = input.reshape(n, num_groups, -1)
    mean = grouped.mean(2, keepdim=True)
    centered = grouped - mean
    variance = (centered * centered).mean(2, keepdim=True)
    out = (centered * (variance + eps).rsqrt()).reshape(*input.shape)
    shape = _channel_shape(input)
    if weight is not None:
        out = out * weight.reshape(shape)
    if bias is not None:
        out = out + bias.reshape(shape)
    return out


# ----------------------------------------------------------------------------------------------------
# dropout


def _check_p(p: float) -> None:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")


def _dropout(input: Tensor, p: float, training: bool, inplace: bool, mask_shape: tuple[int, ...]) -> Tensor:
    _check_p(p)
    if not training or p == 0.0:
        return input
    if p == 1.0:
        out = input * 0.0
    else:
        keep = jitorch.rand(*mask_shape, dtype=input.dtype if input.dtype.is_floating_point else None) >= p
        out = keep.if_else(input * (1.0 / (1.0 - p)), 0.0)
    return input.copy_(out) if inplace else out


def dropout(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """Zero each element with probability p and scale the rest by 1/(1-p); the identity when not training."""
    return _dropout(input, p, training, inplace, tuple(input.shape))


def _feature_dropout(name: str, nd: int, input: Tensor, p: float, training: bool, inplace: bool) -> Tensor:
    if input.ndim not in (nd + 1, nd + 2):
        raise RuntimeError(f"{name}: expected {nd + 1}D or {nd + 2}D input, got {input.ndim}D input")
    channels = input.ndim - nd
    return _dropout(input, p, training, inplace, (*input.shape[:channels], *(1,) * nd))


def dropout1d(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    return _feature_dropout("dropout1d", 1, input, p, training, inplace)


def dropout2d(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """Zero whole channels: one mask value per (sample, channel)."""
    if input.ndim == 3:
        # PyTorch's historical behaviour: 3-D input is (N, C, L), dropped per channel
        _check_p(p)
        return _dropout(input, p, training, inplace, (*input.shape[:2], 1))
    return _feature_dropout("dropout2d", 2, input, p, training, inplace)


def dropout3d(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    return _feature_dropout("dropout3d", 3, input, p, training, inplace)


# ----------------------------------------------------------------------------------------------------
# embedding


def _padding_index(padding_idx: int | None, num_embeddings: int) -> int | None:
    if padding_idx is None:
        return None
    if not -num_embeddings <= padding_idx < num_embeddings:
        raise AssertionError(f"Padding_idx must be within num_embeddings, got {padding_idx} for {num_embeddings}")
    return padding_idx % num_embeddings


def embedding(input: Tensor, weight: Tensor, padding_idx: int | None = None,
              max_norm: float | None = None, norm_type: float = 2.0, scale_grad_by_freq: bool = False,
              sparse: bool = False) -> Tensor:
    """Rows of `weight` picked by the integer `input`; an index outside [0, num_embeddings) raises IndexError."""
    if input.dtype.is_floating_point or input.dtype.is_bool:
        raise RuntimeError(f"embedding: expected an integer index tensor, got {input.dtype.name}")
    if weight.ndim != 2:
        raise RuntimeError(f"embedding: weight must be 2-D, got weight of shape {list(weight.shape)}")
    if scale_grad_by_freq:
        raise NotImplementedError("embedding: scale_grad_by_freq=True is not supported")
    padding_idx = _padding_index(padding_idx, weight.shape[0])
    flat = input.reshape(-1, 1).to(jitorch.int64)
    columns = flat.expand(flat.shape[0], weight.shape[1])
    if max_norm is not None:
        with jitorch.no_grad():
            rows = weight.gather(0, columns)
            norms = (rows.abs() ** norm_type).sum(1, keepdim=True) ** (1.0 / norm_type)
            scale = (norms > max_norm).if_else(max_norm / (norms + 1e-7), 1.0)
            weight.copy_(weight.index_put((flat.reshape(-1),), rows * scale))
    # gather, unlike index, refuses negative indices, as PyTorch's embedding does
    out = weight.gather(0, columns)
    if padding_idx is not None:
        keep = (flat != padding_idx).expand(*columns.shape)
        out = keep.if_else(out, out.detach())
    return out.reshape(*input.shape, weight.shape[1])
