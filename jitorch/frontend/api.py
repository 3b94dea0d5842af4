"""The `torch.*` function forms of tensor methods (`torch.exp(x)`, `torch.sum(x, dim=1)`, ...) and the
functions with no method form (`cat`, `stack`, `where`, ...)."""
from __future__ import annotations

from typing import Any, Callable, Sequence

from jitorch.frontend import functional
from jitorch.frontend.creation import tensor as _tensor
from jitorch.frontend.tensor import Tensor
from jitorch.ir import dtypes
from jitorch.ir.types import DTypeError
from jitorch.ir.vocabulary_base import broadcast_shapes as _broadcast_shapes

_METHODS = (
    "abs", "add", "sub", "mul", "div", "true_divide", "floor_divide", "remainder", "fmod", "pow", "neg",
    "negative", "exp", "exp2", "expm1", "log", "log2", "log10", "log1p", "sqrt", "rsqrt", "square", "sin", "cos",
    "tan", "tanh", "sigmoid", "relu", "erf", "reciprocal", "sign", "floor", "ceil", "round", "trunc", "clamp",
    "clip", "clamp_min", "clamp_max", "maximum", "minimum", "eq", "ne", "lt", "le", "gt", "ge", "logical_not",
    "logical_and", "logical_or", "logical_xor", "bitwise_not", "bitwise_and", "bitwise_or", "bitwise_xor",
    "isnan", "isinf", "isfinite", "nan_to_num", "lerp",
    "sum", "prod", "mean", "var", "std", "amax", "amin", "max", "min", "argmax", "argmin", "all", "any",
    "logsumexp", "softmax", "log_softmax", "cumsum",
    "reshape", "flatten", "unflatten", "squeeze", "unsqueeze", "transpose", "swapaxes", "swapdims", "t", "permute",
    "movedim", "moveaxis", "narrow", "select", "flip", "split", "chunk", "unbind", "gather", "scatter_add",
    "index_select", "take_along_dim", "masked_fill", "masked_select", "nonzero", "matmul", "mm", "bmm", "dot",
    "mv", "outer", "ger", "clone", "detach", "numel", "is_floating_point", "broadcast_to",
)


def _function(name: str) -> Callable:
    method = getattr(Tensor, name)

    def fn(input: Tensor, *args: Any, **kwargs: Any) -> Any:  # noqa: A002 - PyTorch's parameter name
        if not isinstance(input, Tensor):
            raise TypeError(f"{name}(): argument 'input' (position 1) must be Tensor, not {type(input).__name__}")
        return method(input, *args, **kwargs)
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"`jitorch.{name}(x, ...)` is `x.{name}(...)`."
    return fn


globals().update({name: _function(name) for name in _METHODS})


def cat(tensors: Sequence[Tensor], dim: int = 0, *, out: Any = None) -> Tensor:
    tensors = list(tensors)
    if not tensors:
        raise RuntimeError("cat(): expected a non-empty list of Tensors")
    return tensors[0]._cat(tensors, dim)


concat = concatenate = cat


def stack(tensors: Sequence[Tensor], dim: int = 0, *, out: Any = None) -> Tensor:
    tensors = list(tensors)
    if not tensors:
        raise RuntimeError("stack expects a non-empty TensorList")
    return tensors[0]._stack(tensors, dim)


def hstack(tensors: Sequence[Tensor]) -> Tensor:
    return cat(tensors, 0 if tensors[0].ndim == 1 else 1)


def vstack(tensors: Sequence[Tensor]) -> Tensor:
    return cat([t.reshape(1, -1) if t.ndim == 1 else t for t in tensors], 0)


def where(condition: Tensor, input: Any = None, other: Any = None) -> Any:  # noqa: A002
    if condition.dtype is not dtypes.bool_:
        raise DTypeError(f"where expected condition to be a boolean tensor, but got a tensor with dtype "
                         f"{condition.dtype.name}")
    if input is None and other is None:
        return condition.nonzero(as_tuple=True)
    return condition.if_else(input, other)


def broadcast_shapes(*shapes: Sequence[int]) -> tuple[int, ...]:
    from jitorch.frontend.tensor import Size
    return Size(_broadcast_shapes("broadcast_shapes", *shapes))


def broadcast_tensors(*tensors: Tensor) -> tuple[Tensor, ...]:
    shape = _broadcast_shapes("broadcast_tensors", *(t.shape for t in tensors))
    return tuple(t.expand(*shape) for t in tensors)


def is_tensor(obj: Any) -> bool:
    return isinstance(obj, Tensor)


def numel(input: Tensor) -> int:  # noqa: A002
    return input.numel()


def allclose(input: Tensor, other: Tensor, rtol: float = 1e-5, atol: float = 1e-8, equal_nan: bool = False) -> bool:
    return bool(isclose(input, other, rtol, atol, equal_nan).all())


def isclose(input: Tensor, other: Any, rtol: float = 1e-5, atol: float = 1e-8, equal_nan: bool = False) -> Tensor:  # noqa: A002
    other = other if isinstance(other, Tensor) else _tensor(other)
    close = (input - other).abs() <= atol + rtol * other.abs()
    close = close | (input == other)
    if equal_nan:
        close = close | (input.isnan() & other.isnan())
    return close


def equal(input: Tensor, other: Tensor) -> bool:  # noqa: A002
    return tuple(input.shape) == tuple(other.shape) and bool((input == other).all())


def einsum(equation: str, *operands: Any) -> Tensor:
    """Einstein summation for the common two-operand and one-operand forms, via permute/reshape/matmul."""
    from jitorch.frontend.einsum import einsum as _einsum
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    return _einsum(equation, *operands)


def tril(input: Tensor, diagonal: int = 0) -> Tensor:  # noqa: A002
    return _triangle(input, diagonal, lower=True)


def triu(input: Tensor, diagonal: int = 0) -> Tensor:  # noqa: A002
    return _triangle(input, diagonal, lower=False)


def _triangle(x: Tensor, diagonal: int, lower: bool) -> Tensor:
    rows, cols = x.shape[-2], x.shape[-1]
    r = x._apply("arange", start=0, step=1, size=rows, dtype=dtypes.int64).reshape(rows, 1)
    c = x._apply("arange", start=0, step=1, size=cols, dtype=dtypes.int64).reshape(1, cols)
    keep = (c - r <= diagonal) if lower else (c - r >= diagonal)
    return keep.if_else(x, x.new_zeros(()))  # a 0-d zero of x's dtype: bool stays bool


Tensor.tril = tril  # type: ignore[attr-defined]
Tensor.triu = triu  # type: ignore[attr-defined]
softmax = functional.softmax  # noqa: F811 - the function form takes dtype too
log_softmax = functional.log_softmax  # noqa: F811

__all__ = [*_METHODS, "cat", "concat", "concatenate", "stack", "hstack", "vstack", "where", "broadcast_shapes",
           "broadcast_tensors", "is_tensor", "numel", "allclose", "isclose", "equal", "einsum", "tril", "triu"]
