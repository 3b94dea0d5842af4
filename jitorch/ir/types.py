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


# More memory than any machine has: asking for it fails at once with a clear error, where the attempt
# would end in numpy's MemoryError at best and the OOM killer at worst.
MAX_BYTES = 1 << 46
# A view allocates nothing, but numpy (and int64 strides) cannot index more bytes than this.
MAX_VIEW_BYTES = (1 << 63) - 1


def check_size(out_type: TensorType, op: str = "", operands: tuple = (), view: bool = False) -> None:
    """Raise RuntimeError for a tensor that cannot exist, before anything is allocated.

    `op` and `operands` name who asks for it (`expand(f32[1,3]): cannot ...`); a view may be as large as
    int64 indexing allows, anything else up to MAX_BYTES.
    """
    nbytes = out_type.numel * out_type.dtype.itemsize
    if nbytes <= (MAX_VIEW_BYTES if view else MAX_BYTES):
        return
    where = f"{op}({describe(operands)}): " if op else ""
    shape, dtype = list(out_type.shape), out_type.dtype.name
    if view:
        raise RuntimeError(f"{where}cannot make a view of shape {shape} and dtype {dtype}: {nbytes} bytes, "
                           f"more than int64 offsets can address")
    raise RuntimeError(f"{where}cannot allocate a tensor of shape {shape} and dtype {dtype}: "
                       f"{nbytes / 2 ** 30:.0f} GiB")


def describe(types: list[TensorType | Literal] | tuple[TensorType | Literal, ...]) -> str:
    """`f32[3,4], f32[5,2]`: how an op's operand types are named in error messages.

    Operands may be TensorTypes, Literals, tensors or IR values: only their shape and dtype are shown.
    """
    return ", ".join(str(TensorType(tuple(t.shape), t.dtype)) for t in types)
