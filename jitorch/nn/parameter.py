"""`nn.Parameter` (a tensor a Module registers as learnable) and `nn.Buffer` (one it registers as state).

Both share memory with the tensor they wrap, as in PyTorch: `Parameter(t)` is a new leaf over t's data.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import jitorch
from jitorch import Tensor

if TYPE_CHECKING:
    from typing_extensions import Self


def _alias(cls: type, data: Tensor | None) -> Any:
    """A new leaf of class `cls` sharing `data`'s memory (an empty float tensor when `data` is None)."""
    if data is None:
        data = jitorch.empty(0)
    if not isinstance(data, Tensor):
        raise TypeError(f"{cls.__name__}: expected a Tensor to wrap, got {type(data).__name__}")
    out = Tensor.__new__(cls)
    Tensor.__init__(out)
    out.data = data
    return out


class Parameter(Tensor):
    """A tensor that is a module parameter: assigning one to a Module attribute registers it.

    >>> p = Parameter(jitorch.zeros(2))
    >>> p
    Parameter containing:
    tensor([0., 0.], requires_grad=True)
    """

    def __new__(cls, data: Tensor | None = None, requires_grad: bool = True) -> Self:
        out = _alias(cls, data)
        out.requires_grad_(requires_grad)
        return out

    def __init__(self, data: Tensor | None = None, requires_grad: bool = True) -> None:
        """All the work is in __new__; Tensor.__init__ would replace the shared data."""

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()


class _BufferMeta(type):
    def __instancecheck__(cls, instance: Any) -> bool:
        return isinstance(instance, Tensor) and instance.__dict__.get("_is_buffer", False)


class Buffer(metaclass=_BufferMeta):
    """Marks a tensor as a buffer: `self.running = nn.Buffer(t, persistent=False)` registers it.

    Like PyTorch's, `Buffer(t)` returns a plain tensor sharing t's memory, tagged for registration.
    """

    def __new__(cls, data: Tensor | None = None, *, persistent: bool = True) -> Any:  # type: ignore[misc]
        out = _alias(Tensor, data)
        out.__dict__.update(_is_buffer=True, persistent=persistent)
        return out
