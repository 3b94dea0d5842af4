"""dtypes: the five element types jitorch supports, their numpy mapping and PyTorch's promotion rules."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class DType:
    """An element type. There is exactly one object per dtype, so `is` and `==` agree."""

    name: str  # "float32"
    short: str  # "f32", used in the IR text and kernel names
    numpy: np.dtype
    rank: int  # position in the promotion lattice: bool < int32 < int64 < float32 < float64

    @property
    def is_floating_point(self) -> bool:
        return self.rank >= 3

    @property
    def is_integer(self) -> bool:
        return self.rank in (1, 2)

    @property
    def is_bool(self) -> bool:
        return self.rank == 0

    @property
    def itemsize(self) -> int:
        return self.numpy.itemsize

    def __repr__(self) -> str:
        return f"jitorch.{self.name}"

    def __reduce__(self) -> str:
        # pickling a dtype (whole-module saves) refers back to the module-level singleton
        return self.name


bool_ = DType("bool", "b8", np.dtype(np.bool_), 0)
int32 = DType("int32", "i32", np.dtype(np.int32), 1)
int64 = DType("int64", "i64", np.dtype(np.int64), 2)
float32 = DType("float32", "f32", np.dtype(np.float32), 3)
float64 = DType("float64", "f64", np.dtype(np.float64), 4)

ALL: tuple[DType, ...] = (bool_, int32, int64, float32, float64)
BY_NAME: dict[str, DType] = {d.name: d for d in ALL}
BY_SHORT: dict[str, DType] = {d.short: d for d in ALL}
_BY_NUMPY: dict[np.dtype, DType] = {d.numpy: d for d in ALL}
# numpy types without a jitorch dtype map to the nearest one, as torch.from_numpy would reject them
_NUMPY_FALLBACK = {
    np.dtype(np.float16): float32, np.dtype(np.int8): int32, np.dtype(np.int16): int32,
    np.dtype(np.uint8): int32, np.dtype(np.uint16): int32, np.dtype(np.uint32): int64,
}

_default_float = float32


def get_default_dtype() -> DType:
    return _default_float


def set_default_dtype(dtype: DType) -> None:
    global _default_float
    if not dtype.is_floating_point:
        raise TypeError(f"set_default_dtype: only floating-point types are supported, got {dtype.name}")
    _default_float = dtype


def from_numpy(dtype: np.dtype, *, exact: bool = False) -> DType:
    """The jitorch dtype for a numpy dtype; with `exact`, types jitorch lacks raise TypeError."""
    try:  # an array's dtype, the usual argument, is a key as it is: np.dtype() would double the time
        found = _BY_NUMPY.get(dtype)
    except TypeError:  # unhashable: a structured dtype's field list
        found = None
    if found is None:
        found = _BY_NUMPY.get(np.dtype(dtype))
    if found is not None:
        return found
    if not exact and np.dtype(dtype) in _NUMPY_FALLBACK:
        return _NUMPY_FALLBACK[np.dtype(dtype)]
    raise TypeError(f"can't convert np.ndarray of type numpy.{np.dtype(dtype)}; the supported types are: "
                    + ", ".join(d.numpy.name for d in ALL))


def as_dtype(value: object) -> DType:
    """Accept a jitorch dtype, a numpy dtype/type, a Python type or a dtype name."""
    if isinstance(value, DType):
        return value
    if value is float:
        return _default_float
    if value is int:
        return int64
    if value is bool:
        return bool_
    if isinstance(value, str):
        if value in BY_NAME:
            return BY_NAME[value]
        aliases = {"float": float32, "double": float64, "long": int64, "int": int32}
        if value in aliases:
            return aliases[value]
        raise TypeError(f"unknown dtype {value!r}")
    try:
        return from_numpy(np.dtype(value))  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"unknown dtype {value!r}") from None


def promote_types(a: DType, b: DType) -> DType:
    """The smallest dtype both convert to (torch.promote_types); on this lattice, the higher one."""
    return a if a.rank >= b.rank else b


def scalar_dtype(value: object) -> DType:
    """The dtype PyTorch gives a Python scalar taking part in an op (a 'wrapped number')."""
    if isinstance(value, (bool, np.bool_)):
        return bool_
    if isinstance(value, (int, np.integer)):
        return int64
    if isinstance(value, (float, np.floating)):
        return _default_float
    raise TypeError(f"unsupported scalar type {type(value).__name__}")


def _combine(higher: DType | None, lower: DType | None) -> DType | None:
    """PyTorch's combine_categories: a lower-priority operand wins only when its category is higher."""
    if higher is None:
        return lower
    if lower is None or higher.is_floating_point:
        return higher
    if higher.is_bool or lower.is_floating_point:
        return promote_types(higher, lower)
    return higher


def result_type(dims: list[DType], zero_dims: list[DType], scalars: list[DType]) -> DType:
    """PyTorch's result_type: dimensioned tensors, then 0-d tensors, then Python scalars, by priority.

    `int32_tensor * 2.5` is float32, `float32_tensor + 1.0` stays float32, `int32_tensor + int64_0d`
    stays int32, `int32_tensor + float64_0d` is float64.
    """
    def fold(group: list[DType]) -> DType | None:
        out = None
        for d in group:
            out = d if out is None else promote_types(out, d)
        return out

    found = _combine(fold(dims), _combine(fold(zero_dims), fold(scalars)))
    assert found is not None, "result_type needs at least one operand"
    return found
