"""Gradient checkers: analytical Jacobians from `jitorch.autograd.grad` against central finite differences.

`gradcheck(func, inputs)` builds, for every differentiable output and every input that requires grad,
the full numerical Jacobian (one pair of perturbed evaluations per input element) and the analytical
one (one backward pass per output element), and compares them with `|a - n| <= atol + rtol * |n|`.
With `fast_mode=True` it compares one random projection `v^T J u` per pair instead, which costs two
evaluations per input and one backward pass per output. `gradgradcheck` runs gradcheck on the function
that computes the first derivatives with `create_graph=True`, checking second derivatives.

    >>> x = jitorch.randn(3, dtype=jitorch.float64, requires_grad=True)
    >>> gradcheck(lambda t: (t * t).sum(), (x,))
    True
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from jitorch.frontend import autograd_engine
from jitorch.frontend.tensor import Tensor
from jitorch.ir import dtypes


class GradcheckError(RuntimeError):
    """The analytical and numerical gradients of a function disagree."""


def _as_tuple(value: Any) -> tuple:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


def _differentiable(outputs: tuple) -> list[int]:
    """Positions of the outputs gradients flow through."""
    return [i for i, out in enumerate(outputs) if isinstance(out, Tensor) and out.requires_grad]


def _values(outputs: tuple, positions: Sequence[int]) -> list[np.ndarray]:
    return [np.array(outputs[i].detach().numpy(), dtype=np.float64) for i in positions]


def _check_inputs(inputs: tuple) -> list[Tensor]:
    wanted = [x for x in inputs if isinstance(x, Tensor) and x.requires_grad]
    if not wanted:
        raise ValueError("gradcheck expects at least one input tensor to require gradient, but none of them "
                         "have requires_grad=True.")
    for i, x in enumerate(wanted):
        if x.dtype is not dtypes.float64:
            raise ValueError(f"gradcheck: input #{i} requires gradient and is {x.dtype.name}; finite differences "
                             f"with eps=1e-6 need float64 inputs (use .double())")
    return wanted


class _Checker:
    """One gradcheck run: the function, its inputs, and the outputs of the unperturbed call."""

    def __init__(self, func: Callable, inputs: tuple, eps: float) -> None:
        self.func, self.inputs, self.eps = func, inputs, eps
        self.wanted = _check_inputs(inputs)
        self.outputs = _as_tuple(func(*inputs))
        self.positions = _differentiable(self.outputs)

    def evaluate(self, positions: Sequence[int]) -> list[np.ndarray]:
        return _values(_as_tuple(self.func(*self.inputs)), positions)

    def directional(self, x: Tensor, direction: np.ndarray, positions: Sequence[int]) -> list[np.ndarray]:
        """(f(x + eps d) - f(x - eps d)) / 2 eps for each output in `positions`, perturbing x's memory."""
        data = x._data
        original = data.copy()
        try:
            data += self.eps * direction
            plus = self.evaluate(positions)
            np.copyto(data, original - self.eps * direction)
            minus = self.evaluate(positions)
        finally:
            np.copyto(data, original)
        return [(p - m) / (2 * self.eps) for p, m in zip(plus, minus)]

    def numerical(self, positions: Sequence[int]) -> list[list[np.ndarray]]:
        """jacobians[output][input], each (output numel, input numel), by central differences."""
        jacobians = [[np.zeros((self.outputs[o].numel(), x.numel())) for x in self.wanted] for o in positions]
        for j, x in enumerate(self.wanted):
            for k, index in enumerate(np.ndindex(*x.shape)):
                direction = np.zeros(x.shape)
                direction[index] = 1.0
                for o, column in enumerate(self.directional(x, direction, positions)):
                    jacobians[o][j][:, k] = column.ravel()
        return jacobians

    def vjp(self, o: int, seed: np.ndarray) -> list[np.ndarray]:
        """seed^T J for output o, per input (zeros for inputs it does not depend on)."""
        out = self.outputs[o]
        grads = autograd_engine.grad(out, self.wanted, grad_outputs=Tensor._wrap(seed, out.dtype), retain_graph=True,
                              allow_unused=True)
        rows = []
        for j, (x, g) in enumerate(zip(self.wanted, grads)):
            if g is None:
                rows.append(np.zeros(x.numel()))
                continue
            if tuple(g.shape) != tuple(x.shape):
                raise GradcheckError(f"Gradient for input #{j} has shape {tuple(g.shape)}, expected {tuple(x.shape)}")
            if g.dtype is not x.dtype:
                raise GradcheckError(f"Gradient for input #{j} has dtype {g.dtype.name}, expected {x.dtype.name}")
            rows.append(np.array(g.detach().numpy(), dtype=np.float64).ravel())
        return rows

    def analytical(self) -> list[list[np.ndarray]]:
        jacobians = [[np.zeros((self.outputs[o].numel(), x.numel())) for x in self.wanted] for o in self.positions]
        for n, o in enumerate(self.positions):
            out = self.outputs[o]
            for m in range(out.numel()):
                seed = np.zeros(out.shape)
                seed.flat[m] = 1.0
                for j, row in enumerate(self.vjp(o, seed)):
                    jacobians[n][j][m, :] = row
        return jacobians


def _mismatch(o: int, j: int, numerical: np.ndarray, analytical: np.ndarray) -> str:
    return (f"Jacobian mismatch for output {o} with respect to input {j},\n"
            f"numerical:{Tensor._wrap(numerical, dtypes.float64)!r}\n"
            f"analytical:{Tensor._wrap(analytical, dtypes.float64)!r}\n")


def _slow(checker: _Checker, atol: float, rtol: float, nondet_tol: float) -> str | None:
    """The full comparison; the failure message, or None when the Jacobians agree."""
    if not checker.positions:
        floating = [i for i, out in enumerate(checker.outputs)
                    if isinstance(out, Tensor) and out.dtype.is_floating_point]
        for row in checker.numerical(floating):
            for jacobian in row:
                if not np.allclose(jacobian, 0.0, rtol=rtol, atol=atol):
                    return "Numerical gradient for function expected to be zero"
        return None
    numerical = checker.numerical(checker.positions)
    analytical = checker.analytical()
    for n, (num_row, ana_row) in enumerate(zip(numerical, analytical)):
        for j, (num, ana) in enumerate(zip(num_row, ana_row)):
            if not np.allclose(ana, num, rtol=rtol, atol=atol, equal_nan=True):
                return _mismatch(n, j, num, ana)
    again = checker.analytical()
    for ana_row, again_row in zip(analytical, again):
        for ana, repeat in zip(ana_row, again_row):
            if np.abs(ana - repeat).max(initial=0.0) > nondet_tol:
                return ("Backward is not reentrant, i.e., running backward with same input and grad_output "
                        "multiple times gives different values, although analytical gradient matches numerical "
                        f"gradient. The tolerance for nondeterminism was {nondet_tol}.")
    return None


def _fast(checker: _Checker, atol: float, rtol: float) -> str | None:
    """Compare v^T J u per (output, input) pair with random non-negative unit vectors u and v."""
    if not checker.positions:
        return _slow(checker, atol, rtol, 0.0)
    rng = np.random.default_rng(0)

    def unit(shape: tuple[int, ...]) -> np.ndarray:
        vector = rng.random(shape)
        norm = np.linalg.norm(vector)
        return vector / norm if norm else vector

    us = [unit(tuple(x.shape)) for x in checker.wanted]
    vs = [unit(tuple(checker.outputs[o].shape)) for o in checker.positions]
    for j, (x, u) in enumerate(zip(checker.wanted, us)):
        for n, (jacobian_u, v) in enumerate(zip(checker.directional(x, u, checker.positions), vs)):
            numerical = float(np.sum(v * jacobian_u))
            analytical = float(np.dot(checker.vjp(checker.positions[n], v)[j], u.ravel()))
            # |v^T (A - N) u| <= v^T E u for an all-atol E: atol scales with sum(u) * sum(v)
            scaled_atol = atol * float(u.sum()) * float(v.sum())
            if not np.isclose(analytical, numerical, rtol=rtol, atol=scaled_atol, equal_nan=True):
                slow = _slow(checker, atol, rtol, 0.0)
                return (_mismatch(n, j, np.array(numerical), np.array(analytical))
                        + "\nThe above quantities relating the numerical and analytical jacobians are computed in "
                        "fast mode (v^T J u for random unit vectors u and v). Below, we recompute numerical and "
                        "analytical jacobians in slow mode:\n\n"
                        + (slow or "the full Jacobians agree: loosen atol/rtol if the fast-mode error is rounding"))
    return None


def gradcheck(func: Callable[..., Any], inputs: Any, *, eps: float = 1e-6, atol: float = 1e-5, rtol: float = 1e-3,
              raise_exception: bool = True, nondet_tol: float = 0.0, fast_mode: bool = False) -> bool:
    """True when the gradients of `func` at `inputs` (float64 tensors requiring grad) match finite differences.

    Raises GradcheckError naming the first mismatching output/input pair, or returns False with
    `raise_exception=False`. Outputs that do not require grad are skipped; when none does, the numerical
    gradient of every floating-point output must be zero.
    """
    checker = _Checker(func, _as_tuple(inputs), eps)
    failure = _fast(checker, atol, rtol) if fast_mode else _slow(checker, atol, rtol, nondet_tol)
    if failure is not None and raise_exception:
        raise GradcheckError(failure)
    return failure is None


def gradgradcheck(func: Callable[..., Any], inputs: Any, grad_outputs: Any = None, *, eps: float = 1e-6,
                  atol: float = 1e-5, rtol: float = 1e-3, raise_exception: bool = True, nondet_tol: float = 0.0,
                  fast_mode: bool = False) -> bool:
    """gradcheck of the first derivatives: second derivatives of `func` against finite differences.

    The first derivatives are `autograd.grad(func(*inputs), inputs, grad_outputs, create_graph=True)`;
    without `grad_outputs`, random float64 ones (fixed seed) requiring grad are used, so the check covers
    the derivatives with respect to them too.
    """
    inputs = _as_tuple(inputs)
    if grad_outputs is None:
        rng = np.random.default_rng(0)
        outputs = _as_tuple(func(*inputs))
        grad_outputs = tuple(Tensor._wrap(rng.uniform(-1.0, 1.0, tuple(outputs[i].shape)), dtypes.float64)
                             .requires_grad_() for i in _differentiable(outputs))
    grad_outputs = _as_tuple(grad_outputs)
    count = len(grad_outputs)

    def first_derivatives(*args: Any) -> tuple:
        given, seeds = args[:len(args) - count], args[len(args) - count:]
        outputs = _as_tuple(func(*given))
        wanted = [x for x in given if isinstance(x, Tensor) and x.requires_grad]
        grads = autograd_engine.grad([outputs[i] for i in _differentiable(outputs)], wanted, list(seeds),
                              create_graph=True, allow_unused=True)
        return tuple(g for g in grads if g is not None)

    return gradcheck(first_derivatives, inputs + grad_outputs, eps=eps, atol=atol, rtol=rtol,
                     raise_exception=raise_exception, nondet_tol=nondet_tol, fast_mode=fast_mode)
