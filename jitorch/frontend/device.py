"""`jitorch.device`: only the CPU exists, plus 'meta' for symbolic tensors (a shape and dtype, no data)."""
from __future__ import annotations

from typing import Any


class device:  # noqa: N801 - PyTorch's name
    """Only the CPU exists; asking for another device fails at once with a clear message."""

    def __init__(self, kind: Any = "cpu", index: int | None = None) -> None:
        name = kind.type if isinstance(kind, device) else str(kind)
        base = name.split(":")[0]
        if base not in ("cpu", "meta"):
            raise RuntimeError(f"device '{name}' is not available: jitorch runs on the CPU only "
                               f"(jitorch.cuda.is_available() is False)")
        self.type = base

    def __eq__(self, other: object) -> bool:
        return str(self) == str(other.type if isinstance(other, device) else other)

    def __hash__(self) -> int:
        return hash(self.type)

    def __repr__(self) -> str:
        return f"device(type='{self.type}')"

    def __str__(self) -> str:
        return self.type


CPU = device("cpu")


def _check_device(value: Any) -> bool:
    """Validate a device argument; True when it asks for a symbolic ('meta') tensor."""
    if value is None:
        return False
    return device(value).type == "meta"
