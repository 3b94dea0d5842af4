"""Static types of IR values (TensorType), inline scalar literals, and the errors shape rules raise."""
from __future__ import annotations

from dataclasses import dataclass
from math import prod

from jitorch.ir.dtypes import DType


class ShapeError(RuntimeError):
    """A shape rule rejected its inputs. A RuntimeError, as PyTorch raises for shape mismatches."""


class DTypeError(TypeError, RuntimeError):
    """A dtype rule rejected its inputs: a TypeError, and a RuntimeError as PyTorch raises for unsupported dtypes."""


@dataclass(frozen=True)
class TensorType:
    """The shape and dtype of a value: everything the compiler knows statically."""

    shape: tuple[int, ...]
    dtype: DType

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def numel(self) -> int:
        return prod(self.shape)

    def __str__(self) -> str:
        return f"{self.dtype.short}[{','.join(map(str, self.shape))}]"


@dataclass(frozen=True)
class Literal:
    """A scalar constant written inline as an operand (`add(%x, 2.0)`): a 0-d value of `dtype`.

    Literals are the one exception to "the IR never broadcasts": an elementwise op applies a literal
    to every element. Everything else the frontend makes explicit with `expand`.
    """

    value: bool | int | float
    dtype: DType

    @property
    def type(self) -> TensorType:
        return TensorType((), self.dtype)

    @property
    def shape(self) -> tuple[int, ...]:
        return ()

    def numpy_value(self):  # noqa: ANN201 - a numpy scalar of the literal's dtype
        return self.dtype.numpy.type(self.value)

    def __str__(self) -> str:
        if self.dtype.is_bool:
            return "true" if self.value else "false"
        if self.dtype.is_floating_point:
            return f"{float(self.value)!r}:{self.dtype.short}"
        return f"{int(self.value)}:{self.dtype.short}"


def describe(types: list[TensorType | Literal] | tuple[TensorType | Literal, ...]) -> str:
    """`f32[3,4], f32[5,2]`: how an op's operand types are named in error messages.

    Operands may be TensorTypes, Literals, tensors or IR values: only their shape and dtype are shown.
    """
    return ", ".join(str(TensorType(tuple(t.shape), t.dtype)) for t in types)
