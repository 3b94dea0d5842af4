"""Tensor's in-place methods (`add_`, `clamp_`, `uniform_`, `x += y`, ...): each computes the out-of-place
result and writes it back with `Tensor._inplace`, which checks autograd's rules, copies into the tensor's
memory, bumps its version counter and takes over the result's history.

`InplaceMethods` is a mixin of `Tensor`. The unary ones (`exp_`, `relu_`, ...) are generated in
`tensor.py` from Tensor's own out-of-place methods; `copy_` and `fill_`, which convert their argument to
a Tensor first, live there too.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from jitorch.ir import dtypes

if TYPE_CHECKING:
    from jitorch.frontend.tensor import Tensor


class InplaceMethods:
    """The in-place forms of Tensor ops, and the augmented assignment operators."""

    __slots__ = ()

    def zero_(self) -> Tensor:
        return self.fill_(0)

    def add_(self, other: Any, *, alpha: Any = 1) -> Tensor:
        return self._inplace(self.add(other, alpha=alpha))

    def sub_(self, other: Any, *, alpha: Any = 1) -> Tensor:
        return self._inplace(self.sub(other, alpha=alpha))

    def mul_(self, other: Any) -> Tensor:
        return self._inplace(self * other)

    def div_(self, other: Any, *, rounding_mode: str | None = None) -> Tensor:
        return self._inplace(self.div(other, rounding_mode=rounding_mode))

    def pow_(self, exponent: Any) -> Tensor:
        return self._inplace(self ** exponent)

    def clamp_(self, min: Any = None, max: Any = None) -> Tensor:  # noqa: A002
        return self._inplace(self.clamp(min, max))

    clip_ = clamp_

    def masked_fill_(self, mask: Tensor, value: Any) -> Tensor:
        return self._inplace(self.masked_fill(mask, value))

    def addcmul_(self, tensor1: Any, tensor2: Any, *, value: Any = 1) -> Tensor:
        return self._inplace(self + tensor1 * tensor2 * value)

    def addcdiv_(self, tensor1: Any, tensor2: Any, *, value: Any = 1) -> Tensor:
        return self._inplace(self + tensor1 / tensor2 * value)

    def lerp_(self, end: Any, weight: Any) -> Tensor:
        return self._inplace(self.lerp(end, weight))

    def uniform_(self, a: float = 0.0, b: float = 1.0, *, generator: Any = None) -> Tensor:
        from jitorch.frontend.random import rand_like
        return self._inplace(rand_like(self, generator=generator) * (b - a) + a)

    def normal_(self, mean: float = 0.0, std: float = 1.0, *, generator: Any = None) -> Tensor:
        from jitorch.frontend.random import randn_like
        return self._inplace(randn_like(self, generator=generator) * std + mean)

    def bernoulli_(self, p: float = 0.5, *, generator: Any = None) -> Tensor:
        from jitorch.frontend.random import rand_like
        return self._inplace(rand_like(self, dtype=dtypes.float32, generator=generator) < p)

    def __iadd__(self, other: Any) -> Tensor:
        return self.add_(other)

    def __isub__(self, other: Any) -> Tensor:
        return self.sub_(other)

    def __imul__(self, other: Any) -> Tensor:
        return self.mul_(other)

    def __itruediv__(self, other: Any) -> Tensor:
        return self.div_(other)

    def __ifloordiv__(self, other: Any) -> Tensor:
        return self._inplace(self // other)

    def __imod__(self, other: Any) -> Tensor:
        return self._inplace(self % other)

    def __ipow__(self, other: Any) -> Tensor:
        return self.pow_(other)

    def __iand__(self, other: Any) -> Tensor:
        return self._inplace(self & other)

    def __ior__(self, other: Any) -> Tensor:
        return self._inplace(self | other)

    def __ixor__(self, other: Any) -> Tensor:
        return self._inplace(self ^ other)
