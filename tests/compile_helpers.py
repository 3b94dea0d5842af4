"""Shared pieces of the compile() tests: small modules built on jitorch.nn's Module, and comparisons of
compiled results with eager ones (values, dtypes, shapes, and requires_grad, through nested outputs)."""
from __future__ import annotations

from typing import Any

import numpy as np

import jitorch
from jitorch.frontend.pytree import flatten

try:  # the package namespace once jitorch/nn/__init__.py exports it; the defining modules until then
    from jitorch.nn import Buffer, Module, Parameter
except ImportError:
    from jitorch.nn.modules import Module
    from jitorch.nn.parameter import Buffer, Parameter

__all__ = ["BACKEND", "MLP", "Buffer", "Linear", "Module", "Parameter", "assert_same", "leaves_of", "tensor"]

BACKEND = "interpreter"
RTOL, ATOL = 1e-6, 1e-6


def tensor(array: Any, requires_grad: bool = False) -> jitorch.Tensor:
    return jitorch.tensor(np.asarray(array), requires_grad=requires_grad)


def leaves_of(tree: Any) -> list[Any]:
    found: list[Any] = []
    flatten(tree, "output", found, [])
    return found


def assert_same(got: Any, want: Any, rtol: float = RTOL, atol: float = ATOL, where: str = "") -> None:
    """`got` (compiled) matches `want` (eager): structure, non-tensor leaves, and per tensor its dtype, shape,
    requires_grad, values, and the sign of zeros (simplification must be IEEE-exact)."""
    got_leaves, want_leaves = leaves_of(got), leaves_of(want)
    assert len(got_leaves) == len(want_leaves), \
        f"{where}: {len(got_leaves)} outputs, eager gives {len(want_leaves)}"
    for i, (g, w) in enumerate(zip(got_leaves, want_leaves)):
        at = f"{where} output {i}"
        if not isinstance(w, jitorch.Tensor):
            assert g == w, f"{at}: {g!r} != {w!r}"
            continue
        assert isinstance(g, jitorch.Tensor), f"{at}: expected a tensor, got {g!r}"
        assert (g.dtype, tuple(g.shape)) == (w.dtype, tuple(w.shape)), f"{at}: {g.dtype}{list(g.shape)} vs " \
                                                                         f"{w.dtype}{list(w.shape)}"
        assert g.requires_grad == w.requires_grad, \
            f"{at}: requires_grad {g.requires_grad} vs {w.requires_grad}"
        g_data, w_data = g.detach().numpy(), w.detach().numpy()
        if w.dtype.is_floating_point:
            np.testing.assert_allclose(g_data, w_data, rtol=rtol, atol=atol, err_msg=at)
            zeros = (g_data == 0) & (w_data == 0)
            np.testing.assert_array_equal(np.signbit(g_data[zeros]), np.signbit(w_data[zeros]),
                                          err_msg=f"{at}: signs of zeros")
        else:
            np.testing.assert_array_equal(g_data, w_data, err_msg=at)


class Linear(Module):
    """y = x @ weight.T * scale (+ bias when use_bias): plain non-tensor attributes the trace reads."""

    def __init__(self, inputs: int, outputs: int, scale: float = 1.0) -> None:
        super().__init__()
        self.weight = Parameter(jitorch.randn(outputs, inputs) * (1.0 / inputs ** 0.5))
        self.bias = Parameter(jitorch.randn(outputs) * 0.1)
        self.scale = scale
        self.use_bias = True

    def forward(self, x: jitorch.Tensor) -> jitorch.Tensor:
        y = x.matmul(self.weight.T) * self.scale
        return y + self.bias if self.use_bias else y


class MLP(Module):
    def __init__(self, inputs: int = 4, hidden: int = 8, outputs: int = 3) -> None:
        super().__init__()
        self.l1 = Linear(inputs, hidden)
        self.l2 = Linear(hidden, outputs)

    def forward(self, x: jitorch.Tensor) -> jitorch.Tensor:
        return self.l2(self.l1(x).relu())
