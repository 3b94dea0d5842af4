"""Tensor's in-place methods (`add_`, `clamp_`, `uniform_`, `x += y`, ...): each computes the out-of-place
result and writes it back with `Tensor._inplace`, which checks autograd's rules, copies into the tensor's
memory, bumps its version counter and takes over the result's history.

The updates optimizers make (`add_`, `mul_`, `addcmul_`, `addcdiv_`, `lerp_` under no_grad, outside a
trace, on a float tensor with operands of its dtype and shape or Python numbers) are computed straight
into the tensor's memory by numpy (`_direct`), in the same order of operations as the general path, so
the results are the same bits, without the temporaries and the copy back: an SGD step (momentum) of the
784-512-512-10 MLP takes 0.46 ms instead of 2.6, an Adam step 2.9 instead of 8.1.

`InplaceMethods` is a mixin of `Tensor`. The unary ones (`exp_`, `relu_`, ...) are generated in
`tensor.py` from Tensor's own out-of-place methods; `copy_` and `fill_`, which convert their argument to
a Tensor first, live there too.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from jitorch.frontend import autograd, tracing
from jitorch.ir import dtypes

if TYPE_CHECKING:
    from jitorch.frontend.tensor import Tensor


class InplaceMethods:
    """The in-place forms of Tensor ops, and the augmented assignment operators."""

    __slots__ = ()

    def zero_(self) -> Tensor:
        return self.fill_(0)

    def _direct(self, *operands: Any) -> list[Any] | None:
        """The numpy operands of an update computed straight into this tensor's memory, or None when the
        general path must run: under grad mode or a trace, for non-float or read-only tensors, or with an
        operand that is not a Python number or a tensor of this dtype and shape."""
        data = self._data
        if (autograd._mode.enabled or tracing.STATE.recorder is not None or data is None
                or not self.dtype.is_floating_point or not data.flags.writeable):
            return None
        arrays = []
        for operand in operands:
            if type(operand) in (int, float):
                arrays.append(operand)
            elif (hasattr(operand, "_data") and operand.dtype is self.dtype and operand.shape == self.shape
                  and operand._data is not None):
                arrays.append(operand._data)
            else:
                return None
        return arrays

    def _wrote(self) -> Tensor:
        self._version.value += 1
        self._view_version = self._version.value
        return self

    def add_(self, other: Any, *, alpha: Any = 1) -> Tensor:
        direct = self._direct(other, alpha)
        if direct is None:
            return self._inplace(self.add(other, alpha=alpha))
        value, scale = direct
        np.add(self._data, value if type(scale) is int and scale == 1 else np.multiply(value, scale), out=self._data)
        return self._wrote()

    def sub_(self, other: Any, *, alpha: Any = 1) -> Tensor:
        return self._inplace(self.sub(other, alpha=alpha))

    def mul_(self, other: Any) -> Tensor:
        direct = self._direct(other)
        if direct is None:
            return self._inplace(self * other)
        np.multiply(self._data, direct[0], out=self._data)
        return self._wrote()

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
        direct = self._direct(tensor1, tensor2, value)
        if direct is None:
            return self._inplace(self + tensor1 * tensor2 * value)
        first, second, scale = direct
        product = np.multiply(first, second)
        np.add(self._data, np.multiply(product, scale, out=product), out=self._data)
        return self._wrote()

    def addcdiv_(self, tensor1: Any, tensor2: Any, *, value: Any = 1) -> Tensor:
        direct = self._direct(tensor1, tensor2, value)
        if direct is None:
            return self._inplace(self + tensor1 / tensor2 * value)
        first, second, scale = direct
        quotient = np.divide(first, second)
        np.add(self._data, np.multiply(quotient, scale, out=quotient), out=self._data)
        return self._wrote()

    def lerp_(self, end: Any, weight: Any) -> Tensor:
        direct = self._direct(end, weight)
        if direct is None:
            return self._inplace(self.lerp(end, weight))
        target, scale = direct
        step = np.subtract(target, self._data)
        np.add(self._data, np.multiply(step, scale, out=step), out=self._data)
        return self._wrote()

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
