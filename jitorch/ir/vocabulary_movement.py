"""The movement op family of the vocabulary: reshaping, permuting, expanding, slicing, splitting and
joining, and the indexing primitives (`gather`, `scatter_add`, `index`, `index_put`). `OpVocabulary`
composes it.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

from jitorch.ir import dtypes
from jitorch.ir.dtypes import DType
from jitorch.ir.vocabulary_base import VocabularyBase, normalize_dim, normalize_dims, shape_args


class MovementOps(VocabularyBase):
    """Shape changes, slices, joins and indexing primitives, written with `_apply`."""

    __slots__ = ()

    # ---------------------------------------------------------------------------------------------
    # shape

    def reshape(self, *shape: Any) -> Any:
        shape = shape_args(shape)
        size = self.numel()
        if shape.count(-1) > 1:
            raise RuntimeError("only one dimension can be inferred")
        if -1 in shape:
            known = math.prod(s for s in shape if s != -1)
            if known == 0 or size % known:
                raise RuntimeError(f"shape '{list(shape)}' is invalid for input of size {size}")
            shape = tuple(size // known if s == -1 else s for s in shape)
        if math.prod(shape) != size or any(s < 0 for s in shape):
            raise RuntimeError(f"shape '{list(shape)}' is invalid for input of size {size}")
        if shape == tuple(self.shape):
            return self
        return self._apply("reshape", self, shape=shape)

    def view_as(self, other: Any) -> Any:
        return self.view(*other.shape)

    def reshape_as(self, other: Any) -> Any:
        return self.reshape(*other.shape)

    def view(self, *shape: Any) -> Any:
        if len(shape) == 1 and isinstance(shape[0], DType):
            raise NotImplementedError("view(dtype) reinterprets bits, which jitorch does not support")
        return self.reshape(*shape)

    def flatten(self, start_dim: int = 0, end_dim: int = -1) -> Any:
        if self.ndim == 0:
            return self.reshape(1)
        start, end = normalize_dim(start_dim, self.ndim), normalize_dim(end_dim, self.ndim)
        if start > end:
            raise RuntimeError("flatten() has invalid args: start_dim cannot come after end_dim")
        shape = self.shape[:start] + (math.prod(self.shape[start:end + 1]),) + self.shape[end + 1:]
        return self.reshape(*shape)

    def unflatten(self, dim: int, sizes: Sequence[int]) -> Any:
        axis = normalize_dim(dim, self.ndim)
        sizes = list(sizes)
        if -1 in sizes:
            known = math.prod(s for s in sizes if s != -1)
            sizes[sizes.index(-1)] = self.shape[axis] // max(known, 1)
        if math.prod(sizes) != self.shape[axis]:
            raise RuntimeError(f"unflatten: provided sizes {list(sizes)} don't multiply up to the size of dim "
                               f"{dim} ({self.shape[axis]}) in the input tensor")
        return self.reshape(*self.shape[:axis], *sizes, *self.shape[axis + 1:])

    def squeeze(self, dim: Any = None) -> Any:
        if dim is None:
            axes = tuple(i for i, s in enumerate(self.shape) if s == 1)
        else:
            axes = tuple(a for a in normalize_dims(dim, self.ndim) if self.shape[a] == 1)
        return self._squeeze_axes(axes) if axes else self

    def unsqueeze(self, dim: int) -> Any:
        axis = normalize_dim(dim, self.ndim + 1)
        return self.reshape(*self.shape[:axis], 1, *self.shape[axis:])

    def permute(self, *dims: Any) -> Any:
        dims = shape_args(dims)
        if len(dims) != self.ndim:
            raise RuntimeError(f"permute(sparse_coo): number of dimensions in the tensor input does not match "
                               f"the length of the desired ordering of dimensions i.e. input.dim() = "
                               f"{self.ndim} is not equal to len(dims) = {len(dims)}")
        perm = tuple(normalize_dim(d, self.ndim) for d in dims)
        if len(set(perm)) != len(perm):
            raise RuntimeError("permute(): duplicate dims are not allowed.")
        if perm == tuple(range(self.ndim)):
            return self
        return self._apply("permute", self, perm=perm)

    def transpose(self, dim0: int, dim1: int) -> Any:
        if self.ndim < 2 and dim0 in (0, -1) and dim1 in (0, -1):
            return self
        a, b = normalize_dim(dim0, self.ndim), normalize_dim(dim1, self.ndim)
        perm = list(range(self.ndim))
        perm[a], perm[b] = perm[b], perm[a]
        return self.permute(*perm)

    swapaxes = swapdims = transpose

    def t(self) -> Any:
        if self.ndim > 2:
            raise RuntimeError(f"t() expects a tensor with <= 2 dimensions, but self is {self.ndim}D")
        return self.transpose(0, -1) if self.ndim == 2 else self

    @property
    def T(self) -> Any:  # noqa: N802 - PyTorch's name
        return self.permute(*reversed(range(self.ndim)))

    @property
    def mT(self) -> Any:  # noqa: N802
        return self.transpose(-2, -1)

    def movedim(self, source: Any, destination: Any) -> Any:
        sources = [normalize_dim(d, self.ndim) for d in ((source,) if isinstance(source, int) else source)]
        dests = [normalize_dim(d, self.ndim) for d in ((destination,) if isinstance(destination, int) else destination)]
        order = [d for d in range(self.ndim) if d not in sources]
        for dest, src in sorted(zip(dests, sources)):
            order.insert(dest, src)
        return self.permute(*order)

    moveaxis = movedim

    def expand(self, *sizes: Any) -> Any:
        sizes = shape_args(sizes)
        if len(sizes) < self.ndim:
            raise RuntimeError(f"expand: the number of sizes provided ({len(sizes)}) must be greater or equal "
                               f"to the number of dimensions in the tensor ({self.ndim})")
        lead = len(sizes) - self.ndim
        target = []
        for i, size in enumerate(sizes):
            current = self.shape[i - lead] if i >= lead else 1
            if size == -1:
                if i < lead:
                    raise RuntimeError("expand: -1 is not allowed in a leading, non-existing dimension")
                size = current
            if current != 1 and size != current:
                raise RuntimeError(f"The expanded size of the tensor ({size}) must match the existing size "
                                   f"({current}) at non-singleton dimension {i}.  Target sizes: {list(sizes)}.  "
                                   f"Tensor sizes: {list(self.shape)}")
            target.append(size)
        return self._broadcast_to(tuple(target))

    def _broadcast_to(self, shape: tuple[int, ...]) -> Any:
        if tuple(self.shape) == shape:
            return self
        x = self
        if self.ndim < len(shape):
            x = x.reshape(*((1,) * (len(shape) - self.ndim) + tuple(self.shape)))
        return x._apply("expand", x, shape=shape)

    def expand_as(self, other: Any) -> Any:
        return self.expand(*other.shape)

    def broadcast_to(self, shape: Sequence[int]) -> Any:
        return self.expand(*shape)

    def repeat(self, *sizes: Any) -> Any:
        sizes = shape_args(sizes)
        if len(sizes) < self.ndim:
            raise RuntimeError("Number of dimensions of repeat dims can not be smaller than number of "
                               "dimensions of tensor")
        shape = (1,) * (len(sizes) - self.ndim) + tuple(self.shape)
        interleaved = [d for pair in ((1, s) for s in shape) for d in pair]
        expanded = [d for pair in zip(sizes, shape) for d in pair]
        tiled = self.reshape(*interleaved).expand(*expanded)
        # repeat returns new memory: materialize the expanded (stride-0) tensor once, then reshape it
        copied = tiled._apply("cast", tiled, dtype=tiled.dtype)
        return copied.reshape(*(r * s for r, s in zip(sizes, shape)))

    def slice(self, *, starts: tuple[int, ...], stops: tuple[int, ...], steps: tuple[int, ...]) -> Any:
        """The `slice` primitive on normalized, in-range bounds."""
        if starts == (0,) * self.ndim and stops == tuple(self.shape) and steps == (1,) * self.ndim:
            return self
        return self._apply("slice", self, starts=tuple(starts), stops=tuple(stops), steps=tuple(steps))

    def slice_scatter(self, src: Any, *, starts: tuple[int, ...], stops: tuple[int, ...],
                      steps: tuple[int, ...]) -> Any:
        return self._apply("slice_scatter", self, src, starts=tuple(starts), stops=tuple(stops), steps=tuple(steps))

    def narrow(self, dim: int, start: int, length: int) -> Any:
        axis = normalize_dim(dim, self.ndim)
        size = self.shape[axis]
        if start < 0:
            start += size
        if not (0 <= start and length >= 0 and start + length <= size):
            raise IndexError(f"narrow(): start ({start}) + length ({length}) exceeds dimension size ({size}).")
        starts = tuple(start if i == axis else 0 for i in range(self.ndim))
        stops = tuple(start + length if i == axis else s for i, s in enumerate(self.shape))
        return self.slice(starts=starts, stops=stops, steps=(1,) * self.ndim)

    def select(self, dim: int, index: int) -> Any:
        axis = normalize_dim(dim, self.ndim)
        size = self.shape[axis]
        if not -size <= index < size:
            raise IndexError(f"select(): index {index} out of range for tensor of size {list(self.shape)} "
                             f"at dimension {dim}")
        return self.narrow(axis, index % size, 1)._squeeze_axes((axis,))

    def flip(self, *dims: Any) -> Any:
        dims = shape_args(dims) if dims and not (len(dims) == 1 and isinstance(dims[0], int)) else dims
        axes = normalize_dims(dims, self.ndim)
        return self._apply("flip", self, axes=axes) if axes else self

    def split(self, split_size_or_sections: Any, dim: int = 0) -> tuple:
        axis = normalize_dim(dim, self.ndim)
        size = self.shape[axis]
        if isinstance(split_size_or_sections, int):
            step = split_size_or_sections
            if step <= 0 and size:
                raise RuntimeError(f"split_size can only be 0 if dimension size is 0, but got dimension size of "
                                   f"{size}")
            sections = [min(step, size - start) for start in range(0, size, step)] if size else [0]
        else:
            sections = list(split_size_or_sections)
            if sum(sections) != size:
                raise RuntimeError(f"split_with_sizes expects split_sizes to sum exactly to {size} (input tensor's "
                                   f"size at dimension {dim}), but got split_sizes={sections}")
        pieces, offset = [], 0
        for length in sections:
            pieces.append(self.narrow(axis, offset, length))
            offset += length
        return tuple(pieces)

    def chunk(self, chunks: int, dim: int = 0) -> tuple:
        size = self.shape[normalize_dim(dim, self.ndim)]
        return self.split(max(1, -(-size // chunks)), dim)

    def unbind(self, dim: int = 0) -> tuple:
        axis = normalize_dim(dim, self.ndim)
        return tuple(self.select(axis, i) for i in range(self.shape[axis]))

    def _cat(self, tensors: Sequence[Any], dim: int) -> Any:
        tensors = [t if isinstance(t, VocabularyBase) else self._coerce(t) for t in tensors]
        if not tensors:
            raise RuntimeError("cat: expected a non-empty list of Tensors")
        # PyTorch skips legacy empty 1-D tensors in cat
        kept = [t for t in tensors if not (t.ndim == 1 and t.shape[0] == 0)] or tensors[:1]
        dtype = tensors[0].dtype
        for t in tensors[1:]:
            dtype = dtypes.promote_types(dtype, t.dtype)
        axis = normalize_dim(dim, kept[0].ndim)
        kept = [t.to(dtype) for t in kept]
        return self._apply("cat", *kept, axis=axis)  # also for one tensor: cat returns a new tensor

    def _stack(self, tensors: Sequence[Any], dim: int) -> Any:
        tensors = list(tensors)
        if not tensors:
            raise RuntimeError("stack expects a non-empty TensorList")
        shapes = {tuple(t.shape) for t in tensors}
        if len(shapes) != 1:
            sizes = [list(t.shape) for t in tensors]
            raise RuntimeError(f"stack expects each tensor to be equal size, but got {sizes}")
        axis = normalize_dim(dim, tensors[0].ndim + 1)
        return self._cat([t.unsqueeze(axis) for t in tensors], axis)

    # ---------------------------------------------------------------------------------------------
    # indexing primitives

    def gather(self, dim: int, index: Any) -> Any:
        return self._apply("gather", self, index, axis=normalize_dim(dim, self.ndim))

    def scatter_add(self, dim: int, index: Any, src: Any) -> Any:
        return self._apply("scatter_add", self, index, src.to(self.dtype), axis=normalize_dim(dim, self.ndim))

    def index(self, indices: Sequence[Any]) -> Any:
        """The `index` primitive: `x[i0, i1, ...]` over leading dims with same-shaped int tensors."""
        return self._apply("index", self, *indices)

    def index_put(self, indices: Sequence[Any], values: Any, accumulate: bool = False) -> Any:
        indices = tuple(indices)
        if not isinstance(values, VocabularyBase):
            values = self.new_full((), values)
        target = tuple(indices[0].shape) + tuple(self.shape[len(indices):])
        values = values.to(self.dtype)._broadcast_to(target)
        return self._apply("index_put", self, *indices, values, accumulate=accumulate)

    def index_select(self, dim: int, index: Any) -> Any:
        axis = normalize_dim(dim, self.ndim)
        if index.ndim > 1:
            raise IndexError("index_select(): Index is supposed to be a vector")
        # gather, unlike index, refuses negative indices, as PyTorch's index_select does (in eager and
        # compiled code alike, since the check is the primitive's)
        shape = tuple(index.numel() if d == axis else size for d, size in enumerate(self.shape))
        lined_up = index.reshape(*(index.numel() if d == axis else 1 for d in range(self.ndim)))
        return self.gather(axis, lined_up.expand(*shape))

    def take_along_dim(self, indices: Any, dim: int) -> Any:
        return self.gather(dim, indices)
