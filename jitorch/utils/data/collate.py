"""Turning a list of samples into a batch: `default_collate` (stack tensors, convert numbers and arrays,
recurse into tuples, lists, dicts and namedtuples) and `default_convert` (no batching)."""
from __future__ import annotations

import collections.abc
import copy
import re
from collections.abc import Callable
from typing import Any

import numpy as np

import jitorch

_STRING_OR_OBJECT = re.compile(r"[SaUO]")
_COLLATE_ERROR = "default_collate: batch must contain tensors, numpy arrays, numbers, dicts or lists; found {}"


def _as_tensor(array: np.ndarray | np.generic) -> jitorch.Tensor:
    """Share memory where the dtype exists in jitorch; otherwise copy to the nearest dtype (uint8 -> int32)."""
    try:
        return jitorch.as_tensor(array)
    except TypeError:
        return jitorch.tensor(np.asarray(array))


def collate_tensor_fn(batch: list, *, collate_fn_map: dict | None = None) -> jitorch.Tensor:
    return jitorch.stack(batch, 0)


def collate_numpy_array_fn(batch: list, *, collate_fn_map: dict | None = None) -> Any:
    if _STRING_OR_OBJECT.search(batch[0].dtype.str) is not None:
        raise TypeError(_COLLATE_ERROR.format(batch[0].dtype))
    return collate([_as_tensor(b) for b in batch], collate_fn_map=collate_fn_map)


def collate_numpy_scalar_fn(batch: list, *, collate_fn_map: dict | None = None) -> jitorch.Tensor:
    return _as_tensor(np.asarray(batch))


def collate_float_fn(batch: list, *, collate_fn_map: dict | None = None) -> jitorch.Tensor:
    return jitorch.tensor(batch, dtype=jitorch.float64)


def collate_int_fn(batch: list, *, collate_fn_map: dict | None = None) -> jitorch.Tensor:
    return jitorch.tensor(batch)


def collate_str_fn(batch: list, *, collate_fn_map: dict | None = None) -> list:
    return batch


default_collate_fn_map: dict[type | tuple[type, ...], Callable] = {
    jitorch.Tensor: collate_tensor_fn,
    np.ndarray: collate_numpy_array_fn,
    (np.bool_, np.number): collate_numpy_scalar_fn,
    float: collate_float_fn,
    int: collate_int_fn,
    str: collate_str_fn,
    bytes: collate_str_fn,
}


def collate(batch: list, *, collate_fn_map: dict | None = None) -> Any:
    """Collate `batch` with the functions in `collate_fn_map` (by exact type, then by isinstance), recursing
    into mappings, namedtuples and sequences."""
    elem = batch[0]
    elem_type = type(elem)
    if collate_fn_map is not None:
        if elem_type in collate_fn_map:
            return collate_fn_map[elem_type](batch, collate_fn_map=collate_fn_map)
        for collate_type, fn in collate_fn_map.items():
            if isinstance(elem, collate_type):
                return fn(batch, collate_fn_map=collate_fn_map)
    if isinstance(elem, collections.abc.Mapping):
        fields = {key: collate([d[key] for d in batch], collate_fn_map=collate_fn_map) for key in elem}
        try:
            if isinstance(elem, collections.abc.MutableMapping):
                clone = copy.copy(elem)
                clone.update(fields)
                return clone
            return elem_type(fields)
        except TypeError:  # the mapping type cannot be built from a dict
            return fields
    if isinstance(elem, tuple) and hasattr(elem, "_fields"):
        return elem_type(*(collate(list(samples), collate_fn_map=collate_fn_map) for samples in zip(*batch)))
    if isinstance(elem, collections.abc.Sequence):
        size = len(elem)
        if any(len(e) != size for e in batch):
            raise RuntimeError("each element in list of batch should be of equal size")
        transposed = [collate(list(samples), collate_fn_map=collate_fn_map) for samples in zip(*batch)]
        if isinstance(elem, tuple):
            return transposed  # a batch of tuples is a list, as in PyTorch
        try:
            if isinstance(elem, collections.abc.MutableSequence):
                clone = copy.copy(elem)
                for i, item in enumerate(transposed):
                    clone[i] = item
                return clone
            return elem_type(transposed)
        except TypeError:
            return transposed
    raise TypeError(_COLLATE_ERROR.format(elem_type))


def default_collate(batch: list) -> Any:
    """Stack a list of samples into a batch.

    >>> default_collate([(jitorch.zeros(2), 1), (jitorch.ones(2), 2)])
    [tensor([[0., 0.],
            [1., 1.]]), tensor([1, 2])]
    """
    return collate(batch, collate_fn_map=default_collate_fn_map)


def default_convert(data: Any) -> Any:
    """Numpy arrays and scalars inside `data` become tensors; everything else is kept (batch_size=None)."""
    elem_type = type(data)
    if isinstance(data, jitorch.Tensor):
        return data
    if isinstance(data, np.ndarray):
        return data if _STRING_OR_OBJECT.search(data.dtype.str) is not None else _as_tensor(data)
    if isinstance(data, (np.bool_, np.number)):
        return _as_tensor(data)
    if isinstance(data, collections.abc.Mapping):
        fields = {key: default_convert(data[key]) for key in data}
        try:
            if isinstance(data, collections.abc.MutableMapping):
                clone = copy.copy(data)
                clone.update(fields)
                return clone
            return elem_type(fields)
        except TypeError:
            return fields
    if isinstance(data, tuple) and hasattr(data, "_fields"):
        return elem_type(*(default_convert(d) for d in data))
    if isinstance(data, tuple):
        return [default_convert(d) for d in data]
    if isinstance(data, collections.abc.Sequence) and not isinstance(data, (str, bytes)):
        converted = [default_convert(d) for d in data]
        try:
            if isinstance(data, collections.abc.MutableSequence):
                clone = copy.copy(data)
                for i, item in enumerate(converted):
                    clone[i] = item
                return clone
            return elem_type(converted)
        except TypeError:
            return converted
    return data
