"""`x[index]` and `x[index] = value`, PyTorch's rules, built from slice/reshape/index primitives.

Basic indexing (ints, slices with positive steps, None, ...) gives views that share memory. Integer
tensors and lists are advanced indices: they select with the `index` primitive, their broadcast shape
placed where PyTorch places it (at the first advanced dim if the advanced dims are adjacent, else in
front). Boolean masks select their True positions.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from jitorch.frontend.tensor import Tensor
from jitorch.ir import dtypes
from jitorch.ir.vocabulary_base import Scalar, broadcast_shapes


@dataclass
class _Plan:
    """What an index does: a view of the base (slices, unsqueezes, selects) then advanced indices."""

    view: Tensor
    advanced: list[tuple[int, Tensor]] = field(default_factory=list)  # (dim of view, index tensor)


def _as_index_tensor(value: Any, base: Tensor) -> Tensor:
    if isinstance(value, Tensor):
        return value
    arr = np.asarray(value)
    if arr.dtype == np.bool_:
        return Tensor._wrap(arr, dtypes.bool_)
    if arr.size == 0:
        arr = arr.astype(np.int64)
    if arr.dtype.kind not in "iu":
        raise IndexError("tensors used as indices must be long, int, byte or bool tensors")
    return Tensor._wrap(arr.astype(np.int64), dtypes.int64)


def _expand_ellipsis(items: tuple, ndim: int) -> tuple:
    consumed = 0
    for item in items:
        if item is None or item is Ellipsis:
            continue
        if isinstance(item, Tensor) and item.dtype is dtypes.bool_:
            consumed += max(item.ndim, 1)
        elif isinstance(item, np.ndarray) and item.dtype == np.bool_:
            consumed += max(item.ndim, 1)
        else:
            consumed += 1
    if sum(item is Ellipsis for item in items) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    if consumed > ndim:
        raise IndexError(f"too many indices for tensor of dimension {ndim}")
    if Ellipsis in [i for i in items if not isinstance(i, (Tensor, np.ndarray, list))]:
        at = next(i for i, item in enumerate(items) if item is Ellipsis)
        return items[:at] + (slice(None),) * (ndim - consumed) + items[at + 1:]
    return items + (slice(None),) * (ndim - consumed)


def _plan(base: Tensor, index: Any) -> _Plan:
    items = index if isinstance(index, tuple) else (index,)
    items = _expand_ellipsis(items, base.ndim)
    x = base
    dim = 0  # the dim of x the next item applies to
    selects: list[int] = []
    advanced: list[tuple[int, Tensor]] = []
    for item in items:
        if item is None:
            x = x.unsqueeze(dim)
            selects_shift = [s + 1 if s >= dim else s for s in selects]
            selects = selects_shift
            advanced = [(d + 1 if d >= dim else d, t) for d, t in advanced]
            dim += 1
        elif isinstance(item, slice):
            size = x.shape[dim]
            start, stop, step = item.indices(size)
            if item.step is not None and item.step <= 0:
                raise ValueError("step must be greater than zero")
            stop = max(stop, start)
            starts = tuple(start if d == dim else 0 for d in range(x.ndim))
            stops = tuple(stop if d == dim else s for d, s in enumerate(x.shape))
            steps = tuple(step if d == dim else 1 for d in range(x.ndim))
            x = x.slice(starts=starts, stops=stops, steps=steps)
            dim += 1
        elif isinstance(item, (bool, np.bool_)):
            raise IndexError("indexing with a Python bool is not supported; use a bool tensor")
        elif isinstance(item, (float, np.floating)):
            raise IndexError(f"only integers, slices (`:`), ellipsis (`...`), None and long or byte Variables are "
                             f"valid indices (got {type(item).__name__})")
        elif isinstance(item, Scalar) or (isinstance(item, Tensor) and item.ndim == 0 and not item.dtype.is_bool
                                          and not item.dtype.is_floating_point and item._data is not None
                                          and not _tracing()):
            k = int(item)
            size = x.shape[dim]
            if not -size <= k < size:
                raise IndexError(f"index {k} is out of bounds for dimension {dim} with size {size}")
            x = x.narrow(dim, k % size, 1)
            selects.append(dim)
            dim += 1
        else:
            tensor = _as_index_tensor(item, base)
            if tensor.dtype is dtypes.bool_:
                expected = tuple(x.shape[dim:dim + tensor.ndim])
                if tuple(tensor.shape) != expected:
                    raise IndexError(f"The shape of the mask {list(tensor.shape)} at index {dim} does not match "
                                     f"the shape of the indexed tensor {list(x.shape)}")
                for k, positions in enumerate(tensor.nonzero(as_tuple=True)):
                    advanced.append((dim + k, positions))
                dim += max(tensor.ndim, 1)
            elif tensor.dtype.is_floating_point:
                raise IndexError("tensors used as indices must be long, int, byte or bool tensors")
            else:
                advanced.append((dim, tensor))
                dim += 1
    if selects:
        kept = [d for d in range(x.ndim) if d not in selects]
        x = x._squeeze_axes(tuple(selects))
        advanced = [(kept.index(d), t) for d, t in advanced]
    return _Plan(x, advanced)


def _tracing() -> bool:
    from jitorch.frontend import tracing
    return tracing.STATE.recorder is not None


def _advanced_layout(plan: _Plan) -> tuple[list[int], tuple[int, ...], list[Tensor], bool]:
    dims = [d for d, _ in plan.advanced]
    shape = broadcast_shapes("index", *(t.shape for _, t in plan.advanced))
    indices = [t.expand(*shape) if tuple(t.shape) != shape else t for _, t in plan.advanced]
    adjacent = dims == list(range(dims[0], dims[0] + len(dims)))
    return dims, shape, indices, adjacent


def _front(view: Tensor, dims: list[int]) -> Tensor:
    order = dims + [d for d in range(view.ndim) if d not in dims]
    return view.permute(*order)


def getitem(x: Tensor, index: Any) -> Tensor:
    plan = _plan(x, index)
    if not plan.advanced:
        return plan.view
    dims, shape, indices, adjacent = _advanced_layout(plan)
    out = _front(plan.view, dims).index(indices)
    if adjacent and dims[0] > 0:
        order = list(range(len(shape), len(shape) + dims[0])) + list(range(len(shape))) + \
            list(range(len(shape) + dims[0], out.ndim))
        out = out.permute(*order)
    return out


def _drop_leading_ones(value: Any, ndim: int) -> Any:
    """PyTorch drops a value's leading size-1 dims beyond the indexed region's rank before broadcasting."""
    if not isinstance(value, Tensor):
        return value
    lead = 0
    while value.ndim - lead > ndim and value.shape[lead] == 1:
        lead += 1
    return value.reshape(*value.shape[lead:]) if lead else value


def setitem(x: Tensor, index: Any, value: Any) -> None:
    if isinstance(value, (list, tuple, np.ndarray)):
        value = x._coerce(value)
    single = index if not isinstance(index, tuple) else (index[0] if len(index) == 1 else None)
    if isinstance(single, Tensor) and single.dtype is dtypes.bool_ and \
            tuple(single.shape) == tuple(x.shape[:single.ndim]) and \
            (not isinstance(value, Tensor) or value.numel() == 1):
        # a mask and one value: a select, with no data-dependent shape
        mask = single.reshape(*single.shape, *([1] * (x.ndim - single.ndim))).expand(*x.shape)
        x.masked_fill_(mask, value.reshape(()) if isinstance(value, Tensor) else value)
        return
    plan = _plan(x, index)
    if not plan.advanced:
        value = _drop_leading_ones(value, plan.view.ndim)
        plan.view.copy_(value) if isinstance(value, Tensor) else plan.view.fill_(value)
        return
    dims, shape, indices, adjacent = _advanced_layout(plan)
    target = _front(plan.view, dims)
    rest = tuple(target.shape[len(dims):])
    value = _drop_leading_ones(value, len(shape) + len(rest))
    if isinstance(value, Tensor) and adjacent and dims[0] > 0:
        # the value broadcasts against x[index], whose indexed dims sit at dims[0]: move them to the front
        lead = dims[0]
        value = value.expand(*rest[:lead], *shape, *rest[lead:])
        order = list(range(lead, lead + len(shape))) + list(range(lead)) + list(range(lead + len(shape), value.ndim))
        value = value.permute(*order)
    target._inplace(target.index_put(indices, value))
