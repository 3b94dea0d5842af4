"""Parameters to one flat vector and back (e.g. for second-order methods or evolution strategies)."""
from __future__ import annotations

from collections.abc import Iterable

import jitorch
from jitorch import Tensor


def parameters_to_vector(parameters: Iterable[Tensor]) -> Tensor:
    """All parameters flattened and concatenated, in iteration order (differentiable)."""
    return jitorch.cat([p.reshape(-1) for p in parameters])


def vector_to_parameters(vec: Tensor, parameters: Iterable[Tensor]) -> None:
    """Copy consecutive slices of `vec` into the parameters' data, in iteration order."""
    if not isinstance(vec, Tensor):
        raise TypeError(f"expected torch.Tensor, but got: {type(vec).__name__}")
    offset = 0
    for param in parameters:
        count = param.numel()
        param.data = vec[offset:offset + count].reshape(*param.shape).data
        offset += count
