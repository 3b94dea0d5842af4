"""Convolution-shaped layer functions: padding, convolution (plain and transposed), unfold and fold.

Convolution is im2col: one strided `slice` per kernel offset, stacked, then a single (grouped) matmul
with the reshaped weight, so a traced model reaches the compiler as slices and a matmul it can fuse;
transposed convolution zero-inserts the input and runs that convolution with the flipped kernel. The
window stacking (`_patches`), `pad` and the argument helpers (`_tuple`, `_batched`, ...) are shared with
`functional_pooling`. They work for any number of spatial dims; the public names cover PyTorch's 1-d and
2-d forms. `jitorch.nn.functional` re-exports them.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

import jitorch
from jitorch import Tensor

__all__ = ["conv1d", "conv2d", "conv_transpose1d", "conv_transpose2d", "fold", "pad", "unfold"]

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
